//! What `up`, `down` and `status` report.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The two services of the dev stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// The Kafka broker (combined KRaft broker + controller).
    Kafka,
    /// Apicurio Registry with its Confluent-compatible API.
    Registry,
}

impl Service {
    /// Both services, in start order.
    pub const ALL: [Service; 2] = [Service::Kafka, Service::Registry];

    /// `kafka` or `registry`.
    pub fn name(self) -> &'static str {
        match self {
            Service::Kafka => "kafka",
            Service::Registry => "registry",
        }
    }

    /// The version this crate installs.
    pub fn version(self) -> &'static str {
        match self {
            Service::Kafka => crate::KAFKA_VERSION,
            Service::Registry => crate::APICURIO_VERSION,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The observed state of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    /// Our process runs and answers.
    Running,
    /// Our process runs but does not answer (yet).
    Starting,
    /// No process of ours; nothing answers.
    Stopped,
    /// No process of ours, but something else answers on the address.
    Foreign,
}

impl ServiceState {
    fn label(self) -> &'static str {
        match self {
            ServiceState::Running => "running",
            ServiceState::Starting => "starting",
            ServiceState::Stopped => "stopped",
            ServiceState::Foreign => "foreign",
        }
    }
}

impl fmt::Display for ServiceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.label())
    }
}

/// One service's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceStatus {
    /// Which service.
    pub service: Service,
    /// Version installed by this crate.
    pub version: &'static str,
    /// Address clients connect to.
    pub address: SocketAddr,
    /// Pid of our process (from our pid file, verified against `/proc/<pid>/cmdline`).
    pub pid: Option<u32>,
    /// Whether the service answered a protocol-level probe.
    pub answering: bool,
    /// True when the `up` call that produced this status started the process.
    pub started: bool,
    /// stdout+stderr of the process.
    pub log: PathBuf,
}

impl ServiceStatus {
    /// The combined state.
    pub fn state(&self) -> ServiceState {
        match (self.pid.is_some(), self.answering) {
            (true, true) => ServiceState::Running,
            (true, false) => ServiceState::Starting,
            (false, false) => ServiceState::Stopped,
            (false, true) => ServiceState::Foreign,
        }
    }

    /// Running (ours) and answering.
    pub fn is_running(&self) -> bool {
        self.state() == ServiceState::Running
    }
}

/// Status of the whole stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackStatus {
    /// The Kafka broker.
    pub kafka: ServiceStatus,
    /// The schema registry.
    pub registry: ServiceStatus,
    /// The registry's Confluent-compatible base URL.
    pub registry_url: String,
}

impl StackStatus {
    /// `bootstrap.servers` for Kafka clients, e.g. `127.0.0.1:9092`.
    pub fn bootstrap_servers(&self) -> String {
        self.kafka.address.to_string()
    }

    /// The Confluent-compatible registry URL, e.g. `http://127.0.0.1:8081/apis/ccompat/v7`.
    pub fn registry_url(&self) -> &str {
        &self.registry_url
    }

    /// Both services are ours and answer.
    pub fn is_ready(&self) -> bool {
        self.kafka.is_running() && self.registry.is_running()
    }

    /// Both services, Kafka first.
    pub fn services(&self) -> [&ServiceStatus; 2] {
        [&self.kafka, &self.registry]
    }
}

impl fmt::Display for StackStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<[String; 6]> = self
            .services()
            .iter()
            .map(|s| {
                [
                    s.service.name().to_owned(),
                    s.version.to_owned(),
                    s.address.to_string(),
                    s.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
                    s.state().label().to_owned(),
                    s.log.display().to_string(),
                ]
            })
            .collect();
        let header = ["SERVICE", "VERSION", "ADDRESS", "PID", "STATE", "LOG"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let mut line = |cells: [&str; 6]| -> fmt::Result {
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    writeln!(f, "{cell}")?;
                } else {
                    write!(f, "{cell:<w$}  ", w = widths[i])?;
                }
            }
            Ok(())
        };
        line(header)?;
        for row in &rows {
            line(row.each_ref().map(String::as_str))?;
        }
        writeln!(f)?;
        writeln!(f, "bootstrap.servers: {}", self.bootstrap_servers())?;
        write!(f, "schema registry:   {}", self.registry_url)
    }
}

/// What `down` did for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// Stopped by SIGTERM.
    Stopped {
        /// The pid that was stopped.
        pid: u32,
    },
    /// Ignored SIGTERM for the stop timeout and was killed with SIGKILL.
    Killed {
        /// The pid that was killed.
        pid: u32,
    },
    /// Nothing of ours was running (a stale pid file, if any, was removed).
    NotRunning,
}

/// Result of [`crate::DevStack::down`] / [`crate::DevStack::purge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownReport {
    /// One entry per service.
    pub services: Vec<(Service, StopOutcome)>,
    /// The dev-state directory deleted by `purge`.
    pub purged: Option<PathBuf>,
}

impl DownReport {
    /// Whether any process was stopped.
    pub fn stopped_any(&self) -> bool {
        self.services
            .iter()
            .any(|(_, o)| *o != StopOutcome::NotRunning)
    }
}

impl fmt::Display for DownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (service, outcome)) in self.services.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match outcome {
                StopOutcome::Stopped { pid } => write!(f, "{service:<8}  stopped (pid {pid})")?,
                StopOutcome::Killed { pid } => {
                    write!(f, "{service:<8}  killed (pid {pid} ignored SIGTERM)")?;
                }
                StopOutcome::NotRunning => write!(f, "{service:<8}  not running")?,
            }
        }
        if let Some(dir) = &self.purged {
            write!(f, "\npurged {}", dir.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(pid: Option<u32>, answering: bool) -> StackStatus {
        StackStatus {
            kafka: ServiceStatus {
                service: Service::Kafka,
                version: "4.4.0",
                address: "127.0.0.1:9092".parse().unwrap(),
                pid,
                answering,
                started: false,
                log: "/p/.surgeflow/dev/kafka/kafka.log".into(),
            },
            registry: ServiceStatus {
                service: Service::Registry,
                version: "3.0.9",
                address: "127.0.0.1:8081".parse().unwrap(),
                pid: None,
                answering: false,
                started: false,
                log: "/p/.surgeflow/dev/registry/registry.log".into(),
            },
            registry_url: "http://127.0.0.1:8081/apis/ccompat/v7".into(),
        }
    }

    #[test]
    fn states() {
        assert_eq!(status(Some(5), true).kafka.state(), ServiceState::Running);
        assert_eq!(status(Some(5), false).kafka.state(), ServiceState::Starting);
        assert_eq!(status(None, false).kafka.state(), ServiceState::Stopped);
        assert_eq!(status(None, true).kafka.state(), ServiceState::Foreign);
        assert!(!status(Some(5), true).is_ready());
    }

    #[test]
    fn display_table() {
        let s = status(Some(12345), true);
        let expected = "\
SERVICE   VERSION  ADDRESS         PID    STATE    LOG
kafka     4.4.0    127.0.0.1:9092  12345  running  /p/.surgeflow/dev/kafka/kafka.log
registry  3.0.9    127.0.0.1:8081  -      stopped  /p/.surgeflow/dev/registry/registry.log

bootstrap.servers: 127.0.0.1:9092
schema registry:   http://127.0.0.1:8081/apis/ccompat/v7";
        assert_eq!(s.to_string(), expected);
        assert_eq!(s.bootstrap_servers(), "127.0.0.1:9092");
        assert_eq!(s.registry_url(), "http://127.0.0.1:8081/apis/ccompat/v7");
    }

    #[test]
    fn down_report_display() {
        let r = DownReport {
            services: vec![
                (Service::Registry, StopOutcome::Stopped { pid: 7 }),
                (Service::Kafka, StopOutcome::NotRunning),
            ],
            purged: Some("/p/.surgeflow/dev".into()),
        };
        assert_eq!(
            r.to_string(),
            "registry  stopped (pid 7)\nkafka     not running\npurged /p/.surgeflow/dev"
        );
        assert!(r.stopped_any());
    }
}
