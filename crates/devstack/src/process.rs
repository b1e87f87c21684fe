//! Pid files, `/proc/<pid>/cmdline` matching, detached spawning and signals.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Parses the content of a pid file: a positive decimal pid, surrounding whitespace allowed.
pub fn parse_pid(content: &str) -> Option<u32> {
    content.trim().parse::<u32>().ok().filter(|&pid| pid > 1)
}

/// Reads a pid file; `None` when it is missing or does not hold a pid.
pub fn read_pid_file(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok().as_deref().and_then(parse_pid)
}

/// Writes a pid file atomically (temporary file + rename).
pub fn write_pid_file(path: &Path, pid: u32) -> io::Result<()> {
    let tmp = path.with_extension("pid.tmp");
    fs::write(&tmp, format!("{pid}\n"))?;
    fs::rename(&tmp, path)
}

/// Removes a file, ignoring "not found".
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether a raw `/proc/<pid>/cmdline` (NUL-separated arguments) contains `marker`
/// as one whole argument.
pub fn cmdline_matches(raw: &[u8], marker: &str) -> bool {
    raw.split(|&b| b == 0).any(|arg| arg == marker.as_bytes())
}

/// Whether `pid` is alive and its command line carries `marker` (so a recycled pid
/// belonging to some other program never matches; a zombie has an empty cmdline).
pub fn is_ours(pid: u32, marker: &str) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|raw| cmdline_matches(&raw, marker))
}

/// All live processes carrying `marker` (by scanning `/proc`), lowest pid first; used to
/// find our processes when a pid file was lost.
pub fn find_by_marker(marker: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(parse_pid))
        .filter(|&pid| pid != std::process::id() && is_ours(pid, marker))
        .collect();
    pids.sort_unstable();
    pids
}

/// Sends `signal` to `pid`.
pub fn send_signal(pid: u32, signal: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "pid out of range"))?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Polls until `pid` no longer carries `marker` or `timeout` passes; true when it is gone.
pub fn wait_gone(pid: u32, marker: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_ours(pid, marker) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Starts `program args...` fully detached and returns its pid.
///
/// A short-lived `sh` (in its own process group) starts the program in the background and
/// exits, so the program is re-parented to init: it outlives the calling process (e.g. a
/// test binary), is never left as our zombie, and Ctrl-C in the caller's terminal does not
/// reach it. Its stdin is `/dev/null`; stdout and stderr are appended to `log`.
pub fn spawn_detached(
    program: &Path,
    args: &[OsString],
    log: &Path,
    cwd: &Path,
) -> io::Result<u32> {
    const SCRIPT: &str = r#"log=$1; shift; "$@" </dev/null >>"$log" 2>&1 & echo $!"#;
    let out = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("sh")
        .arg(log)
        .arg(program)
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .process_group(0)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match parse_pid(&stdout) {
        Some(pid) if out.status.success() => Ok(pid),
        _ => Err(io::Error::other(format!(
            "starting {} via sh failed ({}): {}{}",
            program.display(),
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// The last `n` lines of a (possibly large) log file; reads at most the final 64 KiB.
pub fn tail(path: &Path, n: usize) -> String {
    const MAX: u64 = 64 * 1024;
    let Ok(mut f) = fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > MAX && f.seek(SeekFrom::Start(len - MAX)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    last_lines(&String::from_utf8_lossy(&buf), n)
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_parsing() {
        assert_eq!(parse_pid("1234\n"), Some(1234));
        assert_eq!(parse_pid("  42 "), Some(42));
        assert_eq!(parse_pid(""), None);
        assert_eq!(parse_pid("abc"), None);
        assert_eq!(parse_pid("-5"), None);
        assert_eq!(parse_pid("0"), None);
        assert_eq!(parse_pid("1"), None, "never signal init");
    }

    #[test]
    fn cmdline_matching_is_whole_argument() {
        let raw = b"java\0-Xmx512m\0-Dsurgeflow.devstack=/p/dev/kafka\0-cp\0lib/*\0kafka.Kafka\0";
        assert!(cmdline_matches(raw, "-Dsurgeflow.devstack=/p/dev/kafka"));
        assert!(!cmdline_matches(
            raw,
            "-Dsurgeflow.devstack=/p/dev/registry"
        ));
        assert!(!cmdline_matches(raw, "-Dsurgeflow.devstack=/p/dev/kaf"));
        assert!(!cmdline_matches(raw, "-Dsurgeflow.devstack=/p/dev/kafka/x"));
        assert!(!cmdline_matches(b"", "-Dsurgeflow.devstack=/p/dev/kafka"));
    }

    #[test]
    fn own_process_matches_only_own_marker() {
        let me = std::process::id();
        let raw = fs::read(format!("/proc/{me}/cmdline")).unwrap();
        let arg0 = String::from_utf8_lossy(raw.split(|&b| b == 0).next().unwrap()).into_owned();
        assert!(is_ours(me, &arg0));
        assert!(!is_ours(me, "-Dsurgeflow.devstack=/nowhere"));
        assert!(!is_ours(u32::MAX - 1, &arg0), "a missing pid is never ours");
    }

    #[test]
    fn processes_are_found_by_marker() {
        let dir =
            std::env::temp_dir().join(format!("surgeflow-devstack-find-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let marker = format!("-Dsurgeflow.devstack={}/kafka", dir.display());
        assert!(find_by_marker(&marker).is_empty());
        // `; true` keeps sh itself (with the marker as $0) alive instead of exec'ing sleep.
        let args: Vec<OsString> = vec!["-c".into(), "sleep 30; true".into(), marker.clone().into()];
        let pid = spawn_detached(Path::new("sh"), &args, &dir.join("log"), &dir).unwrap();
        assert_eq!(find_by_marker(&marker), vec![pid]);
        assert!(find_by_marker(&format!("{marker}x")).is_empty());
        send_signal(pid, libc::SIGKILL).unwrap();
        assert!(wait_gone(pid, &marker, Duration::from_secs(5)));
        assert!(find_by_marker(&marker).is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pid_file_round_trip_and_stale_detection() {
        let dir =
            std::env::temp_dir().join(format!("surgeflow-devstack-pid-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x.pid");
        assert_eq!(read_pid_file(&f), None);
        write_pid_file(&f, 4321).unwrap();
        assert_eq!(read_pid_file(&f), Some(4321));
        remove_if_exists(&f).unwrap();
        remove_if_exists(&f).unwrap();
        assert_eq!(read_pid_file(&f), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn detached_spawn_signal_and_wait() {
        let dir =
            std::env::temp_dir().join(format!("surgeflow-devstack-spawn-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("out.log");
        let marker = format!("surgeflow-test-marker-{}", std::process::id());
        let args: Vec<OsString> = vec![
            "-c".into(),
            "echo started; exec sleep 30".into(),
            marker.clone().into(),
        ];
        let pid = spawn_detached(Path::new("sh"), &args, &log, &dir).unwrap();
        // `sh -c script name` puts `name` in argv, then exec replaces it: wait for the echo.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("started")
        {
            assert!(Instant::now() < deadline, "log never written");
            thread::sleep(Duration::from_millis(20));
        }
        assert!(fs::metadata(format!("/proc/{pid}")).is_ok());
        send_signal(pid, libc::SIGTERM).unwrap();
        assert!(wait_gone(pid, "30", Duration::from_secs(5)));
        assert_eq!(tail(&log, 5), "started");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn last_lines_of_text() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
        assert_eq!(last_lines("", 5), "");
    }
}
