//! End to end against real JVMs: the project's stack (default ports, left running for the
//! other test suites) and a scratch stack on free ports for the down/up persistence check.
//!
//! The first run on a machine downloads Kafka and Apicurio with Maven into
//! `<project>/.surgeflow/cache` (shared by both stacks).

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use surgeflow_devstack::probe::{self, HttpResponse};
use surgeflow_devstack::{DevStack, ServiceState, StackConfig, StackPaths, StopOutcome};

const TIMEOUT: Duration = Duration::from_secs(10);

fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
    probe::http_request(
        addr,
        method,
        &format!("/apis/ccompat/v7{path}"),
        body,
        TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Pulls `"id":<n>` out of a registry JSON answer.
fn schema_id(json: &str) -> u64 {
    let rest = &json[json
        .find("\"id\":")
        .unwrap_or_else(|| panic!("no id in {json}"))
        + 5..];
    rest.trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad id in {json}"))
}

#[test]
fn project_stack_comes_up_once_and_stays_up() {
    let stack = DevStack::discover();
    let t = Instant::now();
    // Several threads racing to start it: the lock makes exactly one of them start it.
    let statuses: Vec<_> = (0..3)
        .map(|_| {
            let stack = stack.clone();
            thread::spawn(move || stack.up())
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap()
                .unwrap_or_else(|e| panic!("up failed: {e}"))
        })
        .collect();
    eprintln!("project stack: up took {:.1?}", t.elapsed());
    let first = &statuses[0];
    eprintln!("{first}");
    assert!(first.is_ready(), "{first}");
    for s in &statuses {
        assert_eq!(
            (s.kafka.pid, s.registry.pid),
            (first.kafka.pid, first.registry.pid)
        );
    }
    assert!(statuses.iter().filter(|s| s.kafka.started).count() <= 1);
    assert!(statuses.iter().filter(|s| s.registry.started).count() <= 1);

    // Both really answer.
    let apis = probe::kafka_api_versions(first.kafka.address, TIMEOUT).expect("Kafka ApiVersions");
    assert!(
        apis > 20,
        "a Kafka 4 broker advertises dozens of APIs, got {apis}"
    );
    let subjects = http(first.registry.address, "GET", "/subjects", None);
    assert_eq!(subjects.status, 200, "{subjects:?}");
    // The documented ports, unless the environment moved them.
    let config = stack.config();
    assert_eq!(
        first.bootstrap_servers(),
        format!("127.0.0.1:{}", config.kafka_port)
    );
    assert_eq!(
        first.registry_url(),
        format!("http://127.0.0.1:{}/apis/ccompat/v7", config.registry_port)
    );

    // A second `up` is a no-op.
    let t = Instant::now();
    let again = stack.up().unwrap();
    eprintln!("project stack: second up took {:.1?}", t.elapsed());
    assert_eq!(
        (again.kafka.pid, again.registry.pid),
        (first.kafka.pid, first.registry.pid)
    );
    assert!(!again.kafka.started && !again.registry.started);

    let status = stack.status();
    assert_eq!(status.kafka.state(), ServiceState::Running);
    assert_eq!(status.registry.state(), ServiceState::Running);
    assert!(status.to_string().contains("running"));
    // Deliberately no `down`: the other suites reuse this stack.
}

#[test]
fn scratch_stack_keeps_schemas_and_data_across_down_and_up() {
    let project = StackPaths::discover();
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("devstack-it");
    let mut config = StackConfig::new(StackPaths::new(&root).with_cache(&project.cache));
    config.kafka_port = free_port();
    config.controller_port = free_port();
    config.registry_port = free_port();
    let stack = DevStack::new(config.clone());
    stack.purge().unwrap(); // leftovers of an interrupted earlier run

    let t = Instant::now();
    let up = stack.up().unwrap_or_else(|e| panic!("up failed: {e}"));
    eprintln!(
        "scratch stack: fresh up (format + start) took {:.1?}",
        t.elapsed()
    );
    assert!(
        up.is_ready() && up.kafka.started && up.registry.started,
        "{up}"
    );
    let meta = fs::read_to_string(config.paths.kafka_data().join("meta.properties")).unwrap();

    let schema = r#"{"schema":"{\"type\":\"record\",\"name\":\"X\",\"namespace\":\"surgeflow.devstack.it\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}"}"#;
    let posted = http(
        config.registry_addr(),
        "POST",
        "/subjects/x-value/versions",
        Some(schema),
    );
    assert_eq!(posted.status, 200, "{posted:?}");
    let id = schema_id(&posted.body);

    let t = Instant::now();
    let down = stack.down().unwrap();
    eprintln!("scratch stack: down took {:.1?}\n{down}", t.elapsed());
    for (service, outcome) in &down.services {
        assert!(
            matches!(outcome, StopOutcome::Stopped { .. }),
            "{service}: {outcome:?}"
        );
    }
    assert!(!config.paths.kafka_pid().exists() && !config.paths.registry_pid().exists());
    for addr in [
        config.kafka_addr(),
        config.controller_addr(),
        config.registry_addr(),
    ] {
        assert!(!probe::port_in_use(addr), "{addr} still in use after down");
    }
    let stopped = stack.status();
    assert_eq!(stopped.kafka.state(), ServiceState::Stopped);
    assert_eq!(stopped.registry.state(), ServiceState::Stopped);
    assert!(
        !stack.down().unwrap().stopped_any(),
        "a second down has nothing to stop"
    );

    let t = Instant::now();
    let again = stack
        .up()
        .unwrap_or_else(|e| panic!("second up failed: {e}"));
    eprintln!("scratch stack: warm up took {:.1?}", t.elapsed());
    assert!(again.is_ready());
    assert_ne!(again.kafka.pid, up.kafka.pid);
    // Same Kafka cluster (not re-formatted) ...
    assert_eq!(
        fs::read_to_string(config.paths.kafka_data().join("meta.properties")).unwrap(),
        meta
    );
    // ... and the registry still knows the schema under the same id.
    let latest = http(
        config.registry_addr(),
        "GET",
        "/subjects/x-value/versions/latest",
        None,
    );
    assert_eq!(latest.status, 200, "{latest:?}");
    assert_eq!(schema_id(&latest.body), id, "{}", latest.body);
    assert!(
        latest.body.contains("surgeflow.devstack.it"),
        "{}",
        latest.body
    );
    // New schemas get fresh ids (the id sequence survived too).
    let other = schema.replace("\\\"X\\\"", "\\\"Y\\\"");
    let posted = http(
        config.registry_addr(),
        "POST",
        "/subjects/y-value/versions",
        Some(&other),
    );
    assert_eq!(posted.status, 200, "{posted:?}");
    assert_ne!(schema_id(&posted.body), id);

    let purged = stack.purge().unwrap();
    assert!(purged.stopped_any());
    assert!(!config.paths.kafka_dir().exists());
}
