//! One-time setup: tool checks, Maven downloads into the project-local cache, and
//! formatting Kafka's KRaft storage.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::error::{DevStackError, IoContext};
use crate::lock::FileLock;
use crate::process::remove_if_exists;
use crate::{APICURIO_VERSION, KAFKA_VERSION, StackConfig};

const MARKER: &str = ".complete";

/// The dependency plugin, pinned so every Maven version behaves the same. Not 3.x: it
/// insists on reading `io.apicurio:apicurio-registry-app`'s parent POM, which Apicurio
/// never published to Maven Central, so `unpack` fails there; 2.8 (Maven 3.8's default)
/// only needs the artifact itself.
const DEPENDENCY_PLUGIN: &str = "org.apache.maven.plugins:maven-dependency-plugin:2.8";

/// Extracts the major version from `java -version` output
/// (`openjdk version "17.0.15"` → 17, `java version "1.8.0_292"` → 8, `"21"` → 21).
pub fn parse_java_major(version_output: &str) -> Option<u32> {
    let line = version_output.lines().find(|l| l.contains("version \""))?;
    let quoted = line.split('"').nth(1)?;
    let mut parts = quoted.split(['.', '_', '-', '+']);
    let first: u32 = parts.next()?.parse().ok()?;
    if first == 1 {
        parts.next()?.parse().ok()
    } else {
        Some(first)
    }
}

/// Checks that `java` runs and is version 17 or newer; returns the major version.
///
/// # Errors
///
/// [`DevStackError::JavaNotFound`] or [`DevStackError::JavaTooOld`].
pub fn check_java(config: &StackConfig) -> Result<u32, DevStackError> {
    let java = config.java.display().to_string();
    let not_found = |detail: String| DevStackError::JavaNotFound {
        java: java.clone(),
        detail,
    };
    let out = Command::new(&config.java)
        .arg("-version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| not_found(e.to_string()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let major = parse_java_major(&text).ok_or_else(|| {
        not_found(format!(
            "unrecognised `java -version` output: {}",
            text.trim()
        ))
    })?;
    if major < 17 {
        return Err(DevStackError::JavaTooOld { java, found: major });
    }
    Ok(major)
}

fn check_maven(config: &StackConfig) -> Result<(), DevStackError> {
    let not_found = |detail: String| DevStackError::MavenNotFound {
        mvn: config.mvn.display().to_string(),
        cache: config.paths.cache.clone(),
        detail,
    };
    let out = Command::new(&config.mvn)
        .args(["-B", "-q", "-v"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| not_found(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(not_found(format!("`mvn -v` exited with {}", out.status)))
    }
}

/// Whether the Kafka classpath in the cache is complete.
pub fn kafka_installed(config: &StackConfig) -> bool {
    let home = config.paths.kafka_home();
    home.join(MARKER).is_file() && dir_has_jar(&config.paths.kafka_lib(), "kafka_2.13-")
}

/// Whether the Apicurio distribution in the cache is complete.
pub fn apicurio_installed(config: &StackConfig) -> bool {
    config.paths.apicurio_home().join(MARKER).is_file() && config.paths.apicurio_jar().is_file()
}

fn dir_has_jar(dir: &Path, prefix: &str) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
    })
}

/// Downloads Kafka and Apicurio into the cache unless already complete.
/// Returns true when something was downloaded.
///
/// A `.complete` marker is written after each successful download; a directory without
/// it (an interrupted download) is deleted and downloaded again. The cache has its own
/// lock, so stacks sharing one cache never download concurrently.
///
/// # Errors
///
/// Missing Maven, a failed download, or I/O errors.
pub fn ensure_downloaded(config: &StackConfig) -> Result<bool, DevStackError> {
    if kafka_installed(config) && apicurio_installed(config) {
        return Ok(false);
    }
    let cache = &config.paths.cache;
    fs::create_dir_all(cache).ctx(|| format!("creating cache directory {}", cache.display()))?;
    let _lock = FileLock::exclusive(&cache.join(".lock"))?;
    let mut downloaded = false;
    if !kafka_installed(config) {
        check_maven(config)?;
        download_kafka(config)?;
        downloaded = true;
    }
    if !apicurio_installed(config) {
        check_maven(config)?;
        download_apicurio(config)?;
        downloaded = true;
    }
    Ok(downloaded)
}

fn reset_dir(dir: &Path) -> Result<(), DevStackError> {
    if dir.exists() {
        fs::remove_dir_all(dir)
            .ctx(|| format!("removing incomplete download {}", dir.display()))?;
    }
    fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))
}

fn mvn(config: &StackConfig, cwd: &Path) -> Command {
    let mut cmd = Command::new(&config.mvn);
    cmd.current_dir(cwd)
        .stdin(Stdio::null())
        .arg("-B")
        .arg("-q")
        .arg(format!(
            "-Dmaven.repo.local={}",
            config.paths.m2().display()
        ));
    cmd
}

fn run_download(mut cmd: Command, what: &str) -> Result<(), DevStackError> {
    let out = cmd
        .output()
        .ctx(|| format!("running Maven to download {what}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DevStackError::Download {
            what: what.to_owned(),
            status: out.status.to_string(),
            output: output_tail(&out, 40),
        })
    }
}

pub(crate) fn output_tail(out: &Output, n: usize) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn download_kafka(config: &StackConfig) -> Result<(), DevStackError> {
    let home = config.paths.kafka_home();
    reset_dir(&home)?;
    let pom = home.join("pom.xml");
    fs::write(&pom, config.render_kafka_pom()).ctx(|| format!("writing {}", pom.display()))?;
    let mut cmd = mvn(config, &home);
    cmd.arg("-f")
        .arg(&pom)
        .arg(format!("{DEPENDENCY_PLUGIN}:copy-dependencies"))
        .arg(format!(
            "-DoutputDirectory={}",
            config.paths.kafka_lib().display()
        ))
        .arg("-DincludeScope=runtime");
    run_download(cmd, &format!("Kafka {KAFKA_VERSION}"))?;
    fs::write(home.join(MARKER), KAFKA_VERSION)
        .ctx(|| format!("writing {}/{MARKER}", home.display()))
}

fn download_apicurio(config: &StackConfig) -> Result<(), DevStackError> {
    let home = config.paths.apicurio_home();
    reset_dir(&home)?;
    // `unpack` needs no project, but writes its marker files to
    // `./${project.basedir}/target/...`: run it in a scratch directory deleted afterwards.
    let work = home.join(".mvn-work");
    fs::create_dir_all(&work).ctx(|| format!("creating {}", work.display()))?;
    let mut cmd = mvn(config, &work);
    cmd.arg(format!("{DEPENDENCY_PLUGIN}:unpack"))
        .arg(format!(
            "-Dartifact=io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:zip:all"
        ))
        .arg(format!("-DoutputDirectory={}", home.display()));
    run_download(cmd, &format!("Apicurio Registry {APICURIO_VERSION}"))?;
    fs::remove_dir_all(&work).ctx(|| format!("removing {}", work.display()))?;
    if !config.paths.apicurio_jar().is_file() {
        return Err(DevStackError::Download {
            what: format!("Apicurio Registry {APICURIO_VERSION}"),
            status: "succeeded".into(),
            output: format!("but {} is missing", config.paths.apicurio_jar().display()),
        });
    }
    fs::write(home.join(MARKER), APICURIO_VERSION)
        .ctx(|| format!("writing {}/{MARKER}", home.display()))
}

/// A Kafka cluster id: 16 random bytes shaped like a version-4 UUID, URL-safe base64
/// without padding (22 characters), never starting with `-` (as `Uuid.randomUuid`).
pub fn new_cluster_id() -> Result<String, DevStackError> {
    loop {
        let mut bytes = [0u8; 16];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .ctx(|| "reading /dev/urandom".to_owned())?;
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let id = base64url_nopad(&bytes);
        if !id.starts_with('-') {
            return Ok(id);
        }
    }
}

fn base64url_nopad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
        }
    }
    out
}

/// Formats Kafka's storage once (when `meta.properties` is missing) and records the
/// controller port it was formatted for; returns true when it formatted.
///
/// # Errors
///
/// [`DevStackError::Format`], [`DevStackError::ControllerPortChanged`] or I/O errors.
pub fn ensure_formatted(config: &StackConfig) -> Result<bool, DevStackError> {
    let data = config.paths.kafka_data();
    let port_file = config.paths.kafka_dir().join("controller.port");
    if data.join("meta.properties").is_file() {
        let formatted = fs::read_to_string(&port_file)
            .ok()
            .and_then(|s| s.trim().parse::<u16>().ok());
        return match formatted {
            Some(formatted) if formatted != config.controller_port => {
                Err(DevStackError::ControllerPortChanged {
                    dir: data,
                    formatted,
                    configured: config.controller_port,
                })
            }
            _ => Ok(false),
        };
    }
    // Never formatted, or a format was interrupted: start from an empty directory.
    reset_dir(&data)?;
    let cluster_id = new_cluster_id()?;
    let out = Command::new(&config.java)
        .args(config.kafka_format_args(&cluster_id))
        .current_dir(config.paths.kafka_dir())
        .stdin(Stdio::null())
        .output()
        .ctx(|| format!("running {} to format Kafka storage", config.java.display()))?;
    if !out.status.success() || !data.join("meta.properties").is_file() {
        let _ = remove_if_exists(&data.join("meta.properties"));
        return Err(DevStackError::Format {
            dir: data,
            status: out.status.to_string(),
            output: output_tail(&out, 40),
        });
    }
    fs::write(&port_file, format!("{}\n", config.controller_port))
        .ctx(|| format!("writing {}", port_file.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_versions() {
        assert_eq!(
            parse_java_major("openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime Environment"),
            Some(17)
        );
        assert_eq!(parse_java_major("java version \"1.8.0_292\""), Some(8));
        assert_eq!(
            parse_java_major("openjdk version \"21\" 2023-09-19"),
            Some(21)
        );
        assert_eq!(parse_java_major("openjdk version \"25-ea\" 2025"), Some(25));
        assert_eq!(parse_java_major("bash: java: command not found"), None);
    }

    #[test]
    fn base64url() {
        assert_eq!(base64url_nopad(b""), "");
        assert_eq!(base64url_nopad(b"f"), "Zg");
        assert_eq!(base64url_nopad(b"fo"), "Zm8");
        assert_eq!(base64url_nopad(b"foo"), "Zm9v");
        assert_eq!(base64url_nopad(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn cluster_ids() {
        let a = new_cluster_id().unwrap();
        let b = new_cluster_id().unwrap();
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        assert!(!a.starts_with('-'));
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn missing_java_is_reported_clearly() {
        let mut c = StackConfig::new(crate::StackPaths::new("/nonexistent"));
        c.java = "/nonexistent/bin/java".into();
        let err = check_java(&c).unwrap_err().to_string();
        assert!(
            err.starts_with("Java 17+ not found on PATH: install openjdk-17-jre-headless"),
            "{err}"
        );
    }

    #[test]
    fn missing_maven_is_reported_clearly() {
        let mut c = StackConfig::new(crate::StackPaths::new("/nonexistent"));
        c.mvn = "/nonexistent/bin/mvn".into();
        let err = check_maven(&c).unwrap_err().to_string();
        assert!(err.starts_with("Maven not found: install maven"), "{err}");
    }
}
