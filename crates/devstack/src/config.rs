//! Where the stack lives on disk, which ports it uses, and the files rendered for it.

use std::env;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Kafka version downloaded from Maven Central (`org.apache.kafka:kafka_2.13`).
pub const KAFKA_VERSION: &str = "4.4.0";
/// log4j2 version used as Kafka's logging backend.
pub const LOG4J_VERSION: &str = "2.25.3";
/// Apicurio Registry version (`io.apicurio:apicurio-registry-app:<v>:zip:all`; the `all`
/// zip is only published on Maven Central up to 3.0.x).
pub const APICURIO_VERSION: &str = "3.0.9";
/// Environment variable overriding the state root (default `<project>/.surgeflow`).
pub const DEV_DIR_ENV: &str = "SURGEFLOW_DEV_DIR";
/// Path of the Confluent-compatible API below the registry's base URL.
pub const CCOMPAT_PATH: &str = "/apis/ccompat/v7";

/// Default Kafka (PLAINTEXT) port.
pub const DEFAULT_KAFKA_PORT: u16 = 9092;
/// Default KRaft controller port.
pub const DEFAULT_CONTROLLER_PORT: u16 = 9093;
/// Default registry HTTP port.
pub const DEFAULT_REGISTRY_PORT: u16 = 8081;

/// The on-disk layout: a download cache and the per-stack dev state.
///
/// ```text
/// <root>/                      default <project>/.surgeflow, or $SURGEFLOW_DEV_DIR
///   cache/                     downloads, safe to cache in CI (see `cache`)
///     m2/                      project-local Maven repository
///     kafka-4.4.0/{pom.xml,lib/,.complete}
///     apicurio-3.0.9/{apicurio-registry-app-3.0.9-runner.jar,lib/,.complete}
///   dev/
///     .lock                    flock taken around up/down/purge
///     kafka/{server.properties,log4j2.properties,data/,kafka.log,kafka.pid}
///     registry/{h2/,registry.log,registry.pid}
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackPaths {
    /// The state root.
    pub root: PathBuf,
    /// The download cache (default `<root>/cache`); may be shared between roots.
    pub cache: PathBuf,
}

impl StackPaths {
    /// Paths below `root` (made absolute against the current directory).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = absolute(root.into());
        let cache = root.join("cache");
        Self { root, cache }
    }

    /// Paths for the project containing `dir`: `<project>/.surgeflow` (see [`find_project_root`]).
    /// `$SURGEFLOW_DEV_DIR` is not consulted; use [`StackPaths::discover`] for that.
    pub fn for_project(dir: &Path) -> Self {
        Self::new(find_project_root(dir).join(".surgeflow"))
    }

    /// `$SURGEFLOW_DEV_DIR` when set and non-empty, else `<project of cwd>/.surgeflow`.
    pub fn discover() -> Self {
        Self::from_env_or(env::var_os(DEV_DIR_ENV), &current_dir())
    }

    fn from_env_or(var: Option<OsString>, cwd: &Path) -> Self {
        match var {
            Some(v) if !v.is_empty() => Self::new(cwd.join(v)),
            _ => Self::for_project(cwd),
        }
    }

    /// Use another download cache (e.g. one shared between several roots).
    #[must_use]
    pub fn with_cache(mut self, cache: impl Into<PathBuf>) -> Self {
        self.cache = absolute(cache.into());
        self
    }

    /// `<cache>/m2`, the project-local Maven repository.
    pub fn m2(&self) -> PathBuf {
        self.cache.join("m2")
    }
    /// `<cache>/kafka-<version>`.
    pub fn kafka_home(&self) -> PathBuf {
        self.cache.join(format!("kafka-{KAFKA_VERSION}"))
    }
    /// `<cache>/kafka-<version>/lib`, Kafka's classpath.
    pub fn kafka_lib(&self) -> PathBuf {
        self.kafka_home().join("lib")
    }
    /// `<cache>/apicurio-<version>`.
    pub fn apicurio_home(&self) -> PathBuf {
        self.cache.join(format!("apicurio-{APICURIO_VERSION}"))
    }
    /// The Apicurio runner jar.
    pub fn apicurio_jar(&self) -> PathBuf {
        self.apicurio_home().join(format!(
            "apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
        ))
    }
    /// `<root>/dev`.
    pub fn dev(&self) -> PathBuf {
        self.root.join("dev")
    }
    /// `<root>/dev/.lock`.
    pub fn lock_file(&self) -> PathBuf {
        self.dev().join(".lock")
    }
    /// `<root>/dev/kafka`.
    pub fn kafka_dir(&self) -> PathBuf {
        self.dev().join("kafka")
    }
    /// Kafka's `log.dirs`.
    pub fn kafka_data(&self) -> PathBuf {
        self.kafka_dir().join("data")
    }
    /// The rendered `server.properties`.
    pub fn kafka_properties(&self) -> PathBuf {
        self.kafka_dir().join("server.properties")
    }
    /// The rendered log4j2 configuration.
    pub fn kafka_log4j(&self) -> PathBuf {
        self.kafka_dir().join("log4j2.properties")
    }
    /// Kafka's stdout+stderr.
    pub fn kafka_log(&self) -> PathBuf {
        self.kafka_dir().join("kafka.log")
    }
    /// Kafka's pid file.
    pub fn kafka_pid(&self) -> PathBuf {
        self.kafka_dir().join("kafka.pid")
    }
    /// `<root>/dev/registry`.
    pub fn registry_dir(&self) -> PathBuf {
        self.dev().join("registry")
    }
    /// Directory of the registry's file-based H2 database.
    pub fn registry_db_dir(&self) -> PathBuf {
        self.registry_dir().join("h2")
    }
    /// The registry's stdout+stderr.
    pub fn registry_log(&self) -> PathBuf {
        self.registry_dir().join("registry.log")
    }
    /// The registry's pid file.
    pub fn registry_pid(&self) -> PathBuf {
        self.registry_dir().join("registry.pid")
    }
}

/// Full configuration of a dev stack: paths, addresses, timeouts and tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    /// On-disk layout.
    pub paths: StackPaths,
    /// Address every service binds to and advertises (default 127.0.0.1).
    pub host: IpAddr,
    /// Kafka PLAINTEXT port (default 9092).
    pub kafka_port: u16,
    /// KRaft controller port (default 9093). Recorded when the storage is formatted.
    pub controller_port: u16,
    /// Registry HTTP port (default 8081).
    pub registry_port: u16,
    /// How long `up` waits for both services to answer (default 120 s).
    pub startup_timeout: Duration,
    /// How long `down` waits after SIGTERM before SIGKILL (default 20 s).
    pub stop_timeout: Duration,
    /// The `java` executable (default `java` from `PATH`).
    pub java: PathBuf,
    /// The `mvn` executable (default `mvn` from `PATH`); only needed for the first download.
    pub mvn: PathBuf,
    /// Kafka's `-Xmx` in MiB (default 2048). A broker's heap grows with its partition count,
    /// and a dev broker shared by test runs collects thousands of namespaced partitions;
    /// 512 MiB ran out of heap at about 13,000.
    pub kafka_heap_mb: u32,
    /// The registry's `-Xmx` in MiB (default 384).
    pub registry_heap_mb: u32,
    /// Extra JVM options for Kafka (default `-XX:+UseZGC`, and full JIT, since pipeline
    /// throughput and latency measured against the dev broker should be realistic). With the
    /// JVM's default G1 the broker paused about 60 ms per young collection on two shared
    /// cores, and still about 20 ms with Kafka's own G1 settings (`MaxGCPauseMillis=20`):
    /// those pauses were the p99 of every latency benchmark. ZGC's pauses are well under a
    /// millisecond, for some more CPU in its concurrent phases.
    pub kafka_jvm_args: Vec<String>,
    /// Extra JVM options for the registry (default `-XX:TieredStopAtLevel=1
    /// -XX:+UseSerialGC`: it mostly serves cached schemas, and C1-only roughly halves its
    /// start time on a small machine).
    pub registry_jvm_args: Vec<String>,
}

impl From<StackPaths> for StackConfig {
    fn from(paths: StackPaths) -> Self {
        Self::new(paths)
    }
}

impl StackConfig {
    /// The documented defaults for the given paths.
    pub fn new(paths: StackPaths) -> Self {
        Self {
            paths,
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            kafka_port: DEFAULT_KAFKA_PORT,
            controller_port: DEFAULT_CONTROLLER_PORT,
            registry_port: DEFAULT_REGISTRY_PORT,
            startup_timeout: Duration::from_secs(120),
            stop_timeout: Duration::from_secs(20),
            java: PathBuf::from("java"),
            mvn: PathBuf::from("mvn"),
            kafka_heap_mb: 2048,
            registry_heap_mb: 384,
            kafka_jvm_args: vec!["-XX:+UseZGC".into()],
            registry_jvm_args: vec!["-XX:TieredStopAtLevel=1".into(), "-XX:+UseSerialGC".into()],
        }
    }

    /// Moves the ports as `SURGEFLOW_DEV_KAFKA_PORT`, `SURGEFLOW_DEV_CONTROLLER_PORT` and
    /// `SURGEFLOW_DEV_REGISTRY_PORT` say, for a machine where the defaults are taken.
    #[must_use]
    pub fn with_env_ports(mut self) -> Self {
        let port = |name: &str, default: u16| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        self.kafka_port = port("SURGEFLOW_DEV_KAFKA_PORT", self.kafka_port);
        self.controller_port = port("SURGEFLOW_DEV_CONTROLLER_PORT", self.controller_port);
        self.registry_port = port("SURGEFLOW_DEV_REGISTRY_PORT", self.registry_port);
        self
    }

    /// Defaults with [`StackPaths::discover`] and the ports from the environment.
    pub fn discover() -> Self {
        Self::new(StackPaths::discover()).with_env_ports()
    }

    /// Kafka's client address (`bootstrap.servers`).
    pub fn kafka_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.kafka_port)
    }
    /// The KRaft controller address.
    pub fn controller_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.controller_port)
    }
    /// The registry's HTTP address.
    pub fn registry_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.registry_port)
    }
    /// `host:port` for Kafka clients.
    pub fn bootstrap_servers(&self) -> String {
        self.kafka_addr().to_string()
    }
    /// The Confluent-compatible registry URL, e.g. `http://127.0.0.1:8081/apis/ccompat/v7`.
    pub fn registry_url(&self) -> String {
        format!("http://{}{CCOMPAT_PATH}", self.registry_addr())
    }

    /// Kafka's `server.properties` (single combined broker+controller node, KRaft).
    pub fn render_server_properties(&self) -> String {
        let kafka = self.kafka_addr();
        let controller = self.controller_addr();
        let data = escape_properties_value(&self.paths.kafka_data().to_string_lossy());
        format!(
            "# Generated by surgeflow-devstack on every start; edits are overwritten.\n\
             process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.bootstrap.servers={controller}\n\
             listeners=PLAINTEXT://{kafka},CONTROLLER://{controller}\n\
             advertised.listeners=PLAINTEXT://{kafka}\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             inter.broker.listener.name=PLAINTEXT\n\
             log.dirs={data}\n\
             # Topics come from `surgeflow topology apply`, never from a typo in a producer.\n\
             auto.create.topics.enable=false\n\
             num.partitions=1\n\
             offsets.topic.replication.factor=1\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n"
        )
    }

    /// Kafka's log4j2 configuration: everything at INFO to stdout (which goes to `kafka.log`).
    pub fn render_log4j2_properties(&self) -> String {
        "# Generated by surgeflow-devstack.\n\
         status = warn\n\
         appender.console.type = Console\n\
         appender.console.name = STDOUT\n\
         appender.console.layout.type = PatternLayout\n\
         appender.console.layout.pattern = [%d] %p %m (%c)%n\n\
         rootLogger.level = info\n\
         rootLogger.appenderRef.stdout.ref = STDOUT\n"
            .to_owned()
    }

    /// The Maven project whose runtime dependencies are Kafka's classpath.
    pub fn render_kafka_pom(&self) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by surgeflow-devstack: the runtime classpath of a local Kafka broker. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.surgeflow.devstack</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{KAFKA_VERSION}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{LOG4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"#
        )
    }

    /// The JDBC URL of the registry's file-based H2 database (survives restarts).
    pub fn registry_jdbc_url(&self) -> String {
        format!(
            "jdbc:h2:file:{}",
            self.paths
                .registry_db_dir()
                .join("registry")
                .to_string_lossy()
        )
    }

    /// The marker argument identifying a process as this stack's `service`
    /// (`-Dsurgeflow.devstack=<dev dir>/<service>`); `down` only kills processes
    /// whose `/proc/<pid>/cmdline` contains it.
    pub fn marker(&self, service: crate::Service) -> String {
        let dir = match service {
            crate::Service::Kafka => self.paths.kafka_dir(),
            crate::Service::Registry => self.paths.registry_dir(),
        };
        format!("-Dsurgeflow.devstack={}", dir.to_string_lossy())
    }

    /// Arguments of `java` starting the Kafka broker.
    pub fn kafka_args(&self) -> Vec<OsString> {
        let p = &self.paths;
        let mut cp = p.kafka_lib().into_os_string();
        cp.push("/*");
        let mut log4j = OsString::from("-Dlog4j2.configurationFile=");
        log4j.push(p.kafka_log4j());
        let mut args: Vec<OsString> = vec![
            format!("-Xmx{}m", self.kafka_heap_mb).into(),
            self.marker(crate::Service::Kafka).into(),
        ];
        args.extend(self.kafka_jvm_args.iter().map(OsString::from));
        args.extend([
            "-Djava.awt.headless=true".into(),
            log4j,
            "-cp".into(),
            cp,
            "kafka.Kafka".into(),
            p.kafka_properties().into_os_string(),
        ]);
        args
    }

    /// Arguments of `java` formatting Kafka's storage with `cluster_id`.
    pub fn kafka_format_args(&self, cluster_id: &str) -> Vec<OsString> {
        let mut cp = self.paths.kafka_lib().into_os_string();
        cp.push("/*");
        vec![
            format!("-Xmx{}m", self.kafka_heap_mb).into(),
            "-cp".into(),
            cp,
            "kafka.tools.StorageTool".into(),
            "format".into(),
            "--standalone".into(),
            "-t".into(),
            cluster_id.into(),
            "-c".into(),
            self.paths.kafka_properties().into_os_string(),
        ]
    }

    /// Arguments of `java` starting Apicurio Registry with file-based H2 storage.
    pub fn registry_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            format!("-Xmx{}m", self.registry_heap_mb).into(),
            self.marker(crate::Service::Registry).into(),
        ];
        args.extend(self.registry_jvm_args.iter().map(OsString::from));
        args.extend([
            format!("-Dquarkus.http.host={}", self.host).into(),
            format!("-Dquarkus.http.port={}", self.registry_port).into(),
            // Persistence: the default is an in-memory H2 database (`jdbc:h2:mem:...`);
            // records in Kafka carry schema ids, so the schemas must survive a restart too.
            "-Dapicurio.storage.kind=sql".into(),
            "-Dapicurio.storage.sql.kind=h2".into(),
            format!("-Dapicurio.datasource.url={}", self.registry_jdbc_url()).into(),
            // The default pool (20 initial connections) is sized for a server, not a laptop.
            "-Dapicurio.datasource.jdbc.initial-size=2".into(),
            "-Dapicurio.datasource.jdbc.min-size=2".into(),
            "-Dapicurio.datasource.jdbc.max-size=20".into(),
            "-jar".into(),
            self.paths.apicurio_jar().into_os_string(),
        ]);
        args
    }
}

/// The project root for `start`: the nearest ancestor (or `start` itself) containing
/// `topology.yaml` next to a `Cargo.toml` or `.git`; else the nearest ancestor containing
/// `.git`; else the nearest one whose `Cargo.toml` declares a `[workspace]`; else `start`.
pub fn find_project_root(start: &Path) -> PathBuf {
    let start = absolute(start.to_path_buf());
    let ancestors = || start.ancestors();
    ancestors()
        .find(|d| {
            d.join("topology.yaml").is_file()
                && (d.join("Cargo.toml").is_file() || d.join(".git").exists())
        })
        .or_else(|| ancestors().find(|d| d.join(".git").exists()))
        .or_else(|| {
            ancestors().find(|d| {
                std::fs::read_to_string(d.join("Cargo.toml"))
                    .is_ok_and(|s| s.lines().any(|l| l.trim() == "[workspace]"))
            })
        })
        .unwrap_or(&start)
        .to_path_buf()
}

/// [`find_project_root`] of the current directory.
pub fn project_root() -> PathBuf {
    find_project_root(&current_dir())
}

fn current_dir() -> PathBuf {
    env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

/// One canonical spelling of a path, whether or not it exists yet: absolute, symlinks of
/// the existing part resolved, `.` and `..` removed. The state root's spelling ends up in
/// the marker argument that identifies our processes, so `/p/tests/../.surgeflow` and
/// `/p/.surgeflow` must come out the same.
pub(crate) fn normalize(p: PathBuf) -> PathBuf {
    use std::path::Component;
    let p = std::path::absolute(&p).unwrap_or(p);
    let components: Vec<Component<'_>> = p.components().collect();
    for existing in (1..=components.len()).rev() {
        let prefix: PathBuf = components[..existing].iter().collect();
        if let Ok(mut out) = std::fs::canonicalize(&prefix) {
            for c in &components[existing..] {
                match c {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::CurDir => {}
                    other => out.push(other),
                }
            }
            return out;
        }
    }
    p
}

fn absolute(p: PathBuf) -> PathBuf {
    normalize(p)
}

/// Escapes a value for a Java `.properties` file (backslashes and leading spaces).
fn escape_properties_value(v: &str) -> String {
    let escaped = v.replace('\\', "\\\\");
    match escaped.strip_prefix(' ') {
        Some(rest) => format!("\\ {rest}"),
        None => escaped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StackConfig {
        StackConfig::new(StackPaths::new("/p/.surgeflow"))
    }

    #[test]
    fn layout_below_root() {
        let p = StackPaths::new("/p/.surgeflow");
        assert_eq!(p.m2(), Path::new("/p/.surgeflow/cache/m2"));
        assert_eq!(
            p.kafka_lib(),
            Path::new("/p/.surgeflow/cache/kafka-4.4.0/lib")
        );
        assert_eq!(
            p.apicurio_jar(),
            Path::new("/p/.surgeflow/cache/apicurio-3.0.9/apicurio-registry-app-3.0.9-runner.jar")
        );
        assert_eq!(
            p.kafka_pid(),
            Path::new("/p/.surgeflow/dev/kafka/kafka.pid")
        );
        assert_eq!(
            p.registry_log(),
            Path::new("/p/.surgeflow/dev/registry/registry.log")
        );
        assert_eq!(p.lock_file(), Path::new("/p/.surgeflow/dev/.lock"));
        let shared = p.with_cache("/shared");
        assert_eq!(shared.m2(), Path::new("/shared/m2"));
        assert_eq!(shared.kafka_dir(), Path::new("/p/.surgeflow/dev/kafka"));
    }

    #[test]
    fn paths_are_normalized() {
        let tmp =
            std::env::temp_dir().join(format!("surgeflow-devstack-norm-{}", std::process::id()));
        let tests = tmp.join("proj/tests");
        std::fs::create_dir_all(&tests).unwrap();
        let canonical = std::fs::canonicalize(tmp.join("proj")).unwrap();
        // Existing and not-yet-existing parts, with `..` and `.` in both.
        assert_eq!(normalize(tests.join("..")), canonical);
        assert_eq!(
            normalize(tests.join("../.surgeflow")),
            canonical.join(".surgeflow")
        );
        assert_eq!(
            normalize(tests.join("./../.surgeflow/x/../dev")),
            canonical.join(".surgeflow/dev")
        );
        assert_eq!(
            StackPaths::new(tests.join("../.surgeflow")),
            StackPaths::new(tmp.join("proj/.surgeflow"))
        );
        std::fs::write(tests.join("../topology.yaml"), "").unwrap();
        std::fs::write(tests.join("../Cargo.toml"), "").unwrap();
        assert_eq!(
            StackPaths::for_project(&tests.join("..")).root,
            canonical.join(".surgeflow")
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn relative_root_is_made_absolute() {
        assert!(StackPaths::new("rel/.surgeflow").root.is_absolute());
    }

    #[test]
    fn env_override_wins() {
        let p = StackPaths::from_env_or(Some("/elsewhere".into()), Path::new("/p"));
        assert_eq!(p.root, Path::new("/elsewhere"));
        let rel = StackPaths::from_env_or(Some("state".into()), Path::new("/p"));
        assert_eq!(rel.root, Path::new("/p/state"));
    }

    #[test]
    fn server_properties() {
        let mut c = config();
        c.kafka_port = 19092;
        c.controller_port = 19093;
        let s = c.render_server_properties();
        let lines: Vec<&str> = s.lines().collect();
        for expected in [
            "process.roles=broker,controller",
            "node.id=1",
            "controller.quorum.bootstrap.servers=127.0.0.1:19093",
            "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093",
            "advertised.listeners=PLAINTEXT://127.0.0.1:19092",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "log.dirs=/p/.surgeflow/dev/kafka/data",
            "auto.create.topics.enable=false",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
        ] {
            assert!(lines.contains(&expected), "missing {expected:?} in\n{s}");
        }
    }

    #[test]
    fn ipv6_host_is_bracketed() {
        let mut c = config();
        c.host = "::1".parse().unwrap();
        assert!(
            c.render_server_properties()
                .contains("listeners=PLAINTEXT://[::1]:9092,")
        );
        assert_eq!(c.bootstrap_servers(), "[::1]:9092");
        assert_eq!(c.registry_url(), "http://[::1]:8081/apis/ccompat/v7");
    }

    #[test]
    fn pom_pins_versions() {
        let pom = config().render_kafka_pom();
        assert!(pom.contains("<packaging>pom</packaging>"));
        assert!(pom.contains("<artifactId>kafka_2.13</artifactId><version>4.4.0</version>"));
        assert!(pom.contains("<artifactId>log4j-slf4j-impl</artifactId><version>2.25.3</version>"));
        assert!(!pom.contains("kafka-tools"));
    }

    #[test]
    fn registry_args_persist_to_h2_file() {
        let c = config();
        let args: Vec<String> = c
            .registry_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert!(
            args.contains(
                &"-Dapicurio.datasource.url=jdbc:h2:file:/p/.surgeflow/dev/registry/h2/registry"
                    .to_owned()
            )
        );
        assert!(args.contains(&"-Dquarkus.http.port=8081".to_owned()));
        assert!(args.contains(&"-Dsurgeflow.devstack=/p/.surgeflow/dev/registry".to_owned()));
        assert_eq!(
            args.last().unwrap(),
            &c.paths.apicurio_jar().to_string_lossy()
        );
    }

    #[test]
    fn kafka_args_carry_marker_and_classpath() {
        let c = config();
        let args: Vec<String> = c
            .kafka_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(args[1], "-Dsurgeflow.devstack=/p/.surgeflow/dev/kafka");
        assert!(args.contains(&"/p/.surgeflow/cache/kafka-4.4.0/lib/*".to_owned()));
        assert_eq!(
            &args[args.len() - 2..],
            ["kafka.Kafka", "/p/.surgeflow/dev/kafka/server.properties"]
        );
    }

    #[test]
    fn urls() {
        let c = config();
        assert_eq!(c.bootstrap_servers(), "127.0.0.1:9092");
        assert_eq!(c.registry_url(), "http://127.0.0.1:8081/apis/ccompat/v7");
    }

    #[test]
    fn properties_escaping() {
        assert_eq!(escape_properties_value(r"C:\x"), r"C:\\x");
        assert_eq!(escape_properties_value(" a"), r"\ a");
    }

    #[test]
    fn project_root_discovery() {
        let tmp =
            std::env::temp_dir().join(format!("surgeflow-devstack-root-{}", std::process::id()));
        let nested = tmp.join("proj/crates/x/src");
        std::fs::create_dir_all(&nested).unwrap();
        // Nothing marks a project: fall back to the start directory.
        assert!(
            find_project_root(&nested).ends_with("proj/crates/x/src")
                || find_project_root(&nested).join(".git").exists()
        );
        std::fs::write(tmp.join("proj/Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        assert_eq!(find_project_root(&nested), tmp.join("proj"));
        std::fs::write(tmp.join("proj/crates/x/Cargo.toml"), "[package]\n").unwrap();
        std::fs::write(tmp.join("proj/crates/x/topology.yaml"), "").unwrap();
        assert_eq!(find_project_root(&nested), tmp.join("proj/crates/x"));
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
