//! [`DevStack`]: `up`, `down`, `purge` and `status`.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use crate::StackConfig;
use crate::error::{DevStackError, IoContext};
use crate::install;
use crate::lock::FileLock;
use crate::probe;
use crate::process::{self, is_ours, read_pid_file, remove_if_exists, send_signal, wait_gone};
use crate::status::{DownReport, Service, ServiceStatus, StackStatus, StopOutcome};

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(250);
const LOG_TAIL_LINES: usize = 30;

/// A local Kafka broker plus schema registry, managed as two detached JVM processes.
#[derive(Debug, Clone)]
pub struct DevStack {
    config: StackConfig,
}

impl DevStack {
    /// A stack with the given configuration (a [`crate::StackPaths`] converts into the
    /// documented defaults).
    pub fn new(config: impl Into<StackConfig>) -> Self {
        Self {
            config: config.into(),
        }
    }

    /// The project's stack: `$SURGEFLOW_DEV_DIR` or `<project>/.surgeflow`, default ports.
    pub fn discover() -> Self {
        Self::new(StackConfig::discover())
    }

    /// The configuration.
    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    /// Checks Java and fills the download cache (Kafka and Apicurio, via Maven) without
    /// starting anything, e.g. to warm a CI cache. Returns true when it downloaded.
    ///
    /// # Errors
    ///
    /// Java 17+ missing; Maven missing (only when a download is needed); a failed download.
    pub fn install(&self) -> Result<bool, DevStackError> {
        install::check_java(&self.config)?;
        install::ensure_downloaded(&self.config)
    }

    /// Makes sure both services run and answer, starting what is missing; idempotent.
    ///
    /// Holds `<root>/dev/.lock` throughout, so concurrent callers (threads or processes)
    /// serialise: the first one starts the stack, the others find it running. When both
    /// services already run and answer, nothing is restarted. The first call downloads
    /// Kafka and Apicurio into the cache with Maven and formats Kafka's storage.
    ///
    /// # Errors
    ///
    /// Java 17+ or (for the first download) Maven missing; a needed port taken by a
    /// process that is not ours ([`DevStackError::PortInUse`]); a failed download or
    /// format; a service exiting during startup or not answering within
    /// [`StackConfig::startup_timeout`] (the error names the log and quotes its tail).
    pub fn up(&self) -> Result<StackStatus, DevStackError> {
        let _lock = FileLock::exclusive(&self.config.paths.lock_file())?;
        let mut pids = Service::ALL.map(|s| self.live_pid(s, true));
        let fast = Service::ALL
            .iter()
            .zip(&pids)
            .all(|(&s, pid)| pid.is_some() && self.answers(s));
        if fast {
            return Ok(self.snapshot([false, false]));
        }

        let missing: Vec<Service> = Service::ALL
            .into_iter()
            .zip(&pids)
            .filter_map(|(s, pid)| pid.is_none().then_some(s))
            .collect();
        let mut started = [false, false];
        if !missing.is_empty() {
            install::check_java(&self.config)?;
            for &service in &missing {
                for (what, addr) in self.ports(service) {
                    if probe::port_in_use(addr) {
                        return Err(DevStackError::PortInUse {
                            service: what,
                            port: addr.port(),
                            address: addr,
                        });
                    }
                }
            }
            install::ensure_downloaded(&self.config)?;
            for &service in &missing {
                let i = index(service);
                pids[i] = Some(self.start(service)?);
                started[i] = true;
            }
        }
        self.wait_ready(&pids)?;
        Ok(self.snapshot(started))
    }

    /// Stops the processes this stack started and removes their pid files; data stays,
    /// so a later [`DevStack::up`] continues where this left off.
    ///
    /// Only a process whose `/proc/<pid>/cmdline` carries this stack's marker argument
    /// (`-Dsurgeflow.devstack=<root>/dev/<service>`) is signalled, so a recycled pid is
    /// never killed: normally the pid from our pid file, or, if that file was lost, the
    /// process found carrying the marker. SIGTERM, then SIGKILL after
    /// [`StackConfig::stop_timeout`].
    ///
    /// # Errors
    ///
    /// Lock or pid-file I/O errors; [`DevStackError::StopFailed`] when a process survives
    /// SIGKILL.
    pub fn down(&self) -> Result<DownReport, DevStackError> {
        let _lock = FileLock::exclusive(&self.config.paths.lock_file())?;
        self.down_locked()
    }

    /// [`DevStack::down`], then deletes the dev state (`<root>/dev`: Kafka data, registry
    /// database, logs). The download cache is kept.
    ///
    /// # Errors
    ///
    /// As [`DevStack::down`], plus I/O errors deleting the state.
    pub fn purge(&self) -> Result<DownReport, DevStackError> {
        let _lock = FileLock::exclusive(&self.config.paths.lock_file())?;
        let mut report = self.down_locked()?;
        let dev = self.config.paths.dev();
        let lock_file = self.config.paths.lock_file();
        for entry in fs::read_dir(&dev).ctx(|| format!("reading {}", dev.display()))? {
            let path = entry.ctx(|| format!("reading {}", dev.display()))?.path();
            if path == lock_file {
                continue; // others may be waiting on it
            }
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.ctx(|| format!("deleting {}", path.display()))?;
        }
        report.purged = Some(dev);
        Ok(report)
    }

    /// The current state of both services (read-only; takes no lock).
    pub fn status(&self) -> StackStatus {
        self.snapshot([false, false])
    }

    fn snapshot(&self, started: [bool; 2]) -> StackStatus {
        let service = |s: Service| ServiceStatus {
            service: s,
            version: s.version(),
            address: self.address(s),
            pid: self.live_pid(s, false),
            answering: self.answers(s),
            started: started[index(s)],
            log: self.log(s),
        };
        StackStatus {
            kafka: service(Service::Kafka),
            registry: service(Service::Registry),
            registry_url: self.config.registry_url(),
        }
    }

    fn address(&self, s: Service) -> SocketAddr {
        match s {
            Service::Kafka => self.config.kafka_addr(),
            Service::Registry => self.config.registry_addr(),
        }
    }

    fn ports(&self, s: Service) -> Vec<(&'static str, SocketAddr)> {
        match s {
            Service::Kafka => vec![
                ("kafka", self.config.kafka_addr()),
                ("kafka controller", self.config.controller_addr()),
            ],
            Service::Registry => vec![("registry", self.config.registry_addr())],
        }
    }

    fn log(&self, s: Service) -> PathBuf {
        match s {
            Service::Kafka => self.config.paths.kafka_log(),
            Service::Registry => self.config.paths.registry_log(),
        }
    }

    fn pid_file(&self, s: Service) -> PathBuf {
        match s {
            Service::Kafka => self.config.paths.kafka_pid(),
            Service::Registry => self.config.paths.registry_pid(),
        }
    }

    fn service_dir(&self, s: Service) -> PathBuf {
        match s {
            Service::Kafka => self.config.paths.kafka_dir(),
            Service::Registry => self.config.paths.registry_dir(),
        }
    }

    fn answers(&self, s: Service) -> bool {
        match s {
            Service::Kafka => probe::kafka_answers(self.address(s), PROBE_TIMEOUT),
            Service::Registry => probe::registry_answers(self.address(s), PROBE_TIMEOUT),
        }
    }

    /// Our live process for `s`: the pid from our pid file if that process still carries
    /// our marker; else (the pid file was lost or is stale) a process found carrying the
    /// marker in `/proc`. With `clean`, the pid file is rewritten to match (adopting a
    /// found process) or removed when nothing of ours runs.
    fn live_pid(&self, s: Service, clean: bool) -> Option<u32> {
        let file = self.pid_file(s);
        let marker = self.config.marker(s);
        if let Some(pid) = read_pid_file(&file).filter(|&pid| is_ours(pid, &marker)) {
            return Some(pid);
        }
        let found = process::find_by_marker(&marker).first().copied();
        if clean {
            let _ = match found {
                Some(pid) => process::write_pid_file(&file, pid),
                None => remove_if_exists(&file),
            };
        }
        found
    }

    fn start(&self, s: Service) -> Result<u32, DevStackError> {
        let dir = self.service_dir(s);
        fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let args = match s {
            Service::Kafka => {
                let p = &self.config.paths;
                write(
                    &p.kafka_properties(),
                    &self.config.render_server_properties(),
                )?;
                write(&p.kafka_log4j(), &self.config.render_log4j2_properties())?;
                install::ensure_formatted(&self.config)?;
                self.config.kafka_args()
            }
            Service::Registry => {
                let db = self.config.paths.registry_db_dir();
                fs::create_dir_all(&db).ctx(|| format!("creating {}", db.display()))?;
                self.config.registry_args()
            }
        };
        let log = self.log(s);
        rotate(&log);
        let pid = process::spawn_detached(&self.config.java, &args, &log, &dir)
            .ctx(|| format!("starting {s} (log: {})", log.display()))?;
        let pid_file = self.pid_file(s);
        process::write_pid_file(&pid_file, pid)
            .ctx(|| format!("writing {}", pid_file.display()))?;
        Ok(pid)
    }

    fn wait_ready(&self, pids: &[Option<u32>; 2]) -> Result<(), DevStackError> {
        let deadline = Instant::now() + self.config.startup_timeout;
        let mut ready = [false, false];
        loop {
            for s in Service::ALL {
                let i = index(s);
                if ready[i] {
                    continue;
                }
                let pid = pids[i].expect("every service has a pid by now");
                if self.answers(s) {
                    ready[i] = true;
                } else if !is_ours(pid, &self.config.marker(s)) {
                    let _ = remove_if_exists(&self.pid_file(s));
                    return Err(DevStackError::Exited {
                        service: s.name(),
                        log: self.log(s),
                        tail: process::tail(&self.log(s), LOG_TAIL_LINES),
                    });
                }
            }
            if ready.iter().all(|&r| r) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let s = Service::ALL[ready.iter().position(|&r| !r).expect("one is not ready")];
                return Err(DevStackError::StartTimeout {
                    service: s.name(),
                    address: self.address(s),
                    timeout: self.config.startup_timeout,
                    log: self.log(s),
                    tail: process::tail(&self.log(s), LOG_TAIL_LINES),
                });
            }
            thread::sleep(POLL);
        }
    }

    fn down_locked(&self) -> Result<DownReport, DevStackError> {
        // SIGTERM everything first so both shut down in parallel.
        let mut signalled = Vec::new();
        let mut services = Vec::new();
        for s in [Service::Registry, Service::Kafka] {
            let pid = self.live_pid(s, false);
            let gone = match pid {
                Some(pid) => match send_signal(pid, libc::SIGTERM) {
                    Ok(()) => {
                        signalled.push((s, pid));
                        false
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => true,
                    Err(e) => return Err(e).ctx(|| format!("sending SIGTERM to {s} (pid {pid})")),
                },
                None => true,
            };
            if gone {
                remove_if_exists(&self.pid_file(s))
                    .ctx(|| format!("removing stale pid file of {s}"))?;
                services.push((s, StopOutcome::NotRunning));
            }
        }
        let deadline = Instant::now() + self.config.stop_timeout;
        for (s, pid) in signalled {
            let marker = self.config.marker(s);
            let outcome = if wait_gone(
                pid,
                &marker,
                deadline.saturating_duration_since(Instant::now()),
            ) {
                StopOutcome::Stopped { pid }
            } else {
                let _ = send_signal(pid, libc::SIGKILL);
                if !wait_gone(pid, &marker, Duration::from_secs(10)) {
                    return Err(DevStackError::StopFailed {
                        service: s.name(),
                        pid,
                    });
                }
                StopOutcome::Killed { pid }
            };
            remove_if_exists(&self.pid_file(s)).ctx(|| format!("removing pid file of {s}"))?;
            services.push((s, outcome));
        }
        services.sort_by_key(|(s, _)| index(*s));
        Ok(DownReport {
            services,
            purged: None,
        })
    }
}

fn index(s: Service) -> usize {
    match s {
        Service::Kafka => 0,
        Service::Registry => 1,
    }
}

fn write(path: &Path, content: &str) -> Result<(), DevStackError> {
    fs::write(path, content).ctx(|| format!("writing {}", path.display()))
}

/// Keeps the previous run's log as `<log>.1`.
fn rotate(log: &Path) {
    let mut old = log.as_os_str().to_owned();
    old.push(".1");
    let _ = fs::rename(log, old);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StackPaths;
    use std::net::TcpListener;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("surgeflow-devstack-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn status_of_a_fresh_root_is_stopped() {
        let root = scratch("fresh");
        let mut config = StackConfig::new(StackPaths::new(&root));
        // Ports nobody listens on (bound then released).
        config.kafka_port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        config.registry_port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = DevStack::new(config).status();
        assert_eq!(s.kafka.pid, None);
        assert!(!s.kafka.answering && !s.registry.answering);
        assert!(!s.is_ready());
        assert!(!root.exists(), "status must not create state");
    }

    #[test]
    fn down_cleans_stale_pid_files_and_never_kills_strangers() {
        let root = scratch("stale");
        let stack = DevStack::new(StackPaths::new(&root));
        let paths = &stack.config().paths;
        fs::create_dir_all(paths.kafka_dir()).unwrap();
        fs::create_dir_all(paths.registry_dir()).unwrap();
        // Our own pid: alive, but without the stack's marker, so not ours.
        process::write_pid_file(&paths.kafka_pid(), std::process::id()).unwrap();
        fs::write(paths.registry_pid(), "garbage").unwrap();
        let report = stack.down().unwrap();
        assert!(!report.stopped_any(), "{report}");
        assert!(!paths.kafka_pid().exists() && !paths.registry_pid().exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn up_refuses_a_port_taken_by_a_stranger() {
        let root = scratch("taken");
        let stranger = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut config = StackConfig::new(StackPaths::new(&root));
        config.kafka_port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        config.controller_port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        config.registry_port = stranger.local_addr().unwrap().port();
        let port = config.registry_port;
        match DevStack::new(config).up() {
            Err(e @ DevStackError::PortInUse { .. }) => {
                let msg = e.to_string();
                let expected = format!("port {port} (registry) is already in use");
                assert!(msg.starts_with(&expected), "{msg}");
            }
            Err(DevStackError::JavaNotFound { .. }) => {} // no Java on this machine
            other => panic!("expected PortInUse, got {other:?}"),
        }
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_process_with_our_marker_is_adopted_and_stopped_without_pid_file() {
        let root = scratch("adopt");
        let stack = DevStack::new(StackPaths::new(&root));
        let paths = &stack.config().paths;
        fs::create_dir_all(paths.kafka_dir()).unwrap();
        let marker = stack.config().marker(Service::Kafka);
        let args: Vec<std::ffi::OsString> =
            vec!["-c".into(), "sleep 30; true".into(), marker.into()];
        let pid =
            process::spawn_detached(Path::new("sh"), &args, &paths.kafka_log(), &root).unwrap();
        assert!(!paths.kafka_pid().exists());
        assert_eq!(stack.status().kafka.pid, Some(pid));
        let report = stack.down().unwrap();
        assert_eq!(
            report.services,
            vec![
                (Service::Kafka, StopOutcome::Stopped { pid }),
                (Service::Registry, StopOutcome::NotRunning)
            ]
        );
        assert_eq!(stack.status().kafka.pid, None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn purge_keeps_cache_and_lock() {
        let root = scratch("purge");
        let stack = DevStack::new(StackPaths::new(&root));
        let paths = &stack.config().paths;
        fs::create_dir_all(paths.kafka_data()).unwrap();
        fs::create_dir_all(paths.registry_db_dir()).unwrap();
        fs::create_dir_all(&paths.cache).unwrap();
        fs::write(paths.cache.join("keep"), "").unwrap();
        let report = stack.purge().unwrap();
        assert_eq!(report.purged.as_deref(), Some(paths.dev().as_path()));
        assert!(!paths.kafka_dir().exists() && !paths.registry_dir().exists());
        assert!(paths.lock_file().exists() && paths.cache.join("keep").exists());
        fs::remove_dir_all(&root).unwrap();
    }
}
