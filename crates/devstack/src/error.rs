//! The error type of this crate.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while managing the local dev stack.
///
/// Every message says what to do next (install something, free a port, read a log).
#[derive(Debug, thiserror::Error)]
pub enum DevStackError {
    /// `java` could not be run.
    #[error(
        "Java 17+ not found on PATH: install openjdk-17-jre-headless (running `{java}` failed: {detail})"
    )]
    JavaNotFound {
        /// The java executable we tried.
        java: String,
        /// Why it failed.
        detail: String,
    },

    /// `java` runs but is older than 17.
    #[error("Java 17+ required, but `{java}` is Java {found}: install openjdk-17-jre-headless")]
    JavaTooOld {
        /// The java executable we tried.
        java: String,
        /// The major version it reported.
        found: u32,
    },

    /// `mvn` could not be run (it is only needed for the one-time download).
    #[error(
        "Maven not found: install maven (needed once to download Kafka and Apicurio into {cache}; running `{mvn}` failed: {detail})"
    )]
    MavenNotFound {
        /// The mvn executable we tried.
        mvn: String,
        /// The cache directory the download is for.
        cache: PathBuf,
        /// Why it failed.
        detail: String,
    },

    /// Maven ran but the download failed.
    #[error(
        "downloading {what} with Maven failed ({status}); last lines of Maven's output:\n{output}"
    )]
    Download {
        /// What was being downloaded.
        what: String,
        /// The exit status.
        status: String,
        /// The tail of Maven's output.
        output: String,
    },

    /// A port we need is taken by a process we did not start.
    #[error(
        "port {port} ({service}) is already in use on {address} by a process this dev stack did not start (e.g. another checkout's dev stack or a manually started Kafka/registry); stop that process or configure another port"
    )]
    PortInUse {
        /// The service that needs the port (`kafka`, `kafka controller`, `registry`).
        service: &'static str,
        /// The port number.
        port: u16,
        /// The full address.
        address: SocketAddr,
    },

    /// `kafka.tools.StorageTool format` failed.
    #[error("formatting Kafka storage in {dir} failed ({status}):\n{output}")]
    Format {
        /// The Kafka data directory.
        dir: PathBuf,
        /// The exit status.
        status: String,
        /// The tool's output.
        output: String,
    },

    /// The Kafka storage was formatted for a different controller port.
    #[error(
        "Kafka storage in {dir} was formatted for controller port {formatted}, but the configured controller port is {configured}; purge the dev state (`surgeflow dev down --purge`) or configure port {formatted}"
    )]
    ControllerPortChanged {
        /// The Kafka data directory.
        dir: PathBuf,
        /// The port recorded at format time.
        formatted: u16,
        /// The port configured now.
        configured: u16,
    },

    /// A service we started exited before it answered.
    #[error("{service} exited during startup; see {log}; last lines:\n{tail}")]
    Exited {
        /// The service name.
        service: &'static str,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },

    /// A service did not answer in time.
    #[error("{service} did not answer on {address} within {}s (the process is left running, so a retry keeps waiting for it; `surgeflow dev down` stops it); see {log}; last lines:\n{tail}", timeout.as_secs())]
    StartTimeout {
        /// The service name.
        service: &'static str,
        /// The address we probed.
        address: SocketAddr,
        /// How long we waited.
        timeout: Duration,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },

    /// A process survived SIGKILL.
    #[error("{service} (pid {pid}) did not exit after SIGTERM and SIGKILL")]
    StopFailed {
        /// The service name.
        service: &'static str,
        /// Its pid.
        pid: u32,
    },

    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Adds a human context to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, DevStackError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, DevStackError> {
        self.map_err(|source| DevStackError::Io {
            context: context(),
            source,
        })
    }
}
