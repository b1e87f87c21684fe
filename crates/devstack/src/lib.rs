//! A real local Kafka broker and Confluent-compatible schema registry, without Docker.
//!
//! # Why
//!
//! surgeflow is a stream-processing pipeline over Apache Kafka with Avro schemas in a
//! Confluent-compatible registry. Mocks of either drift from the real thing (offsets,
//! transactions, rebalances, schema ids, compatibility rules), so every test and demo runs
//! against a real broker and a real registry. This crate provides them on any machine
//! with Java 17+ — no Docker, no system-wide install:
//!
//! - **Kafka 4.4.0** in KRaft mode (one combined broker+controller node), its classpath
//!   resolved from Maven Central (`org.apache.kafka:kafka_2.13` plus log4j2);
//! - **Apicurio Registry 3.0.9** (its Confluent-compatible API at
//!   `/apis/ccompat/v7`), with a file-based H2 database so schema ids stay valid across
//!   restarts, just like the records in Kafka that carry them.
//!
//! Downloads happen once, with Maven, into a project-local cache (`.surgeflow/cache`,
//! including the Maven repository `cache/m2`) that CI can cache; afterwards neither Maven
//! nor the network is needed. The services run as detached background JVMs that outlive
//! the `cargo test` or `surgeflow dev up` that started them, so later runs reuse them.
//!
//! # Use
//!
//! ```no_run
//! use surgeflow_devstack::DevStack;
//!
//! let stack = DevStack::discover(); // <project>/.surgeflow or $SURGEFLOW_DEV_DIR
//! let status = stack.up()?;         // idempotent; starts only what is not running
//! println!("{status}");
//! let _bootstrap = status.bootstrap_servers(); // "127.0.0.1:9092"
//! let _registry = status.registry_url();       // "http://127.0.0.1:8081/apis/ccompat/v7"
//! # Ok::<(), surgeflow_devstack::DevStackError>(())
//! ```
//!
//! `up`, `down` and `purge` hold an exclusive `flock` on `<root>/dev/.lock`, so test
//! threads and concurrent processes calling `up` at once start the stack exactly once.
//! Processes are identified by a marker argument naming the state directory
//! (`-Dsurgeflow.devstack=<root>/dev/kafka`): `down` only signals a process whose
//! `/proc/<pid>/cmdline` carries it (the pid file says which one; a recycled pid never
//! matches), and a process carrying it is adopted even if its pid file was lost.
//!
//! See [`StackPaths`] for the on-disk layout and [`StackConfig`] for ports and timeouts.

mod config;
mod error;
mod install;
mod lock;
pub mod probe;
mod process;
mod stack;
mod status;

pub use config::{
    APICURIO_VERSION, CCOMPAT_PATH, DEFAULT_CONTROLLER_PORT, DEFAULT_KAFKA_PORT,
    DEFAULT_REGISTRY_PORT, DEV_DIR_ENV, KAFKA_VERSION, LOG4J_VERSION, StackConfig, StackPaths,
    find_project_root, project_root,
};
pub use error::DevStackError;
pub use install::check_java;
pub use stack::DevStack;
pub use status::{DownReport, Service, ServiceState, ServiceStatus, StackStatus, StopOutcome};
