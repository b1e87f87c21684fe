//! The `surgeflow` binary as users run it: exit codes, messages, and the simulate → tail path
//! against the real broker and registry.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use surgeflow_testkit::{cluster, project_root, unique_name};

fn surgeflow(args: &[&str], topology: &Path) -> Output {
    let cluster = cluster();
    Command::new(env!("CARGO_BIN_EXE_surgeflow"))
        .args(args)
        .arg("--topology")
        .arg(topology)
        .env("SURGEFLOW_KAFKA_BOOTSTRAP", &cluster.bootstrap_servers)
        .env("SURGEFLOW_REGISTRY_URL", &cluster.registry_url)
        .output()
        .expect("running surgeflow")
}

fn project_topology() -> PathBuf {
    project_root().join("topology.yaml")
}

/// A copy of the project's topology with `edit` applied to its text, next to a copy of the
/// schemas it references.
fn broken_topology(edit: impl FnOnce(String) -> String) -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name("surgeflow-cli"));
    std::fs::create_dir_all(dir.join("schemas")).unwrap();
    for entry in std::fs::read_dir(project_root().join("schemas")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join("schemas").join(entry.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(project_topology()).unwrap();
    let path = dir.join("topology.yaml");
    std::fs::write(&path, edit(text)).unwrap();
    path
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn check_accepts_the_project_topology() {
    let out = Command::new(env!("CARGO_BIN_EXE_surgeflow"))
        .args(["topology", "check", "--topology"])
        .arg(project_topology())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (18 topics, 4 operators)"));
}

#[test]
fn a_broken_topology_exits_2_naming_the_field() {
    let cases: [(&str, &str, &str); 4] = [
        (
            "  cell_precision: 6\n",
            "  cell_precision: 6\n  cell_precison: 7\n",
            "geo.cell_precison",
        ),
        (
            "  region_precision: 4\n",
            "  region_precision: 7\n",
            "geo.region_precision",
        ),
        (
            "    inputs: [location.update]\n",
            "    inputs: [location.updates]\n",
            "operators.location-router.inputs",
        ),
        (
            "    value: schemas/geo_trip.avsc\n",
            "    value: schemas/geo_trips.avsc\n",
            "topics.geo.trip.value",
        ),
    ];
    for (from, to, field) in cases {
        let path = broken_topology(|t| {
            assert!(t.contains(from), "fixture drifted: {from:?}");
            t.replacen(from, to, 1)
        });
        let out = Command::new(env!("CARGO_BIN_EXE_surgeflow"))
            .args(["topology", "check", "--topology"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{field}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(field),
            "{field} not named in: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_missing_topology_file_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_surgeflow"))
        .args([
            "topology",
            "check",
            "--topology",
            "/nonexistent/topology.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn simulate_produces_records_that_tail_decodes() {
    let topology = project_topology();
    let apply = surgeflow(&["topology", "apply"], &topology);
    assert!(apply.status.success(), "apply: {}", stderr(&apply));
    let again = surgeflow(&["topology", "diff", "--exit-code"], &topology);
    assert!(
        again.status.success(),
        "diff after apply: {}",
        String::from_utf8_lossy(&again.stdout)
    );

    let sim = surgeflow(
        &[
            "simulate",
            "--rate",
            "max",
            "--duration",
            "20s",
            "--max-events",
            "4000",
            "--seed",
            "42",
            "--drivers",
            "300",
        ],
        &topology,
    );
    assert!(sim.status.success(), "simulate: {}", stderr(&sim));
    let summary = String::from_utf8_lossy(&sim.stdout);
    assert!(summary.contains("produced 4000 events"), "{summary}");

    for (topic, fields) in [
        (
            "location.update",
            &["driver_id", "lat", "lon", "status", "product", "event_time"][..],
        ),
        (
            "trip.requested",
            &["trip_id", "rider_id", "pickup_lat", "pickup_lon", "product"][..],
        ),
    ] {
        let out = surgeflow(
            &[
                "tail",
                topic,
                "--from-beginning",
                "--max",
                "5",
                "--idle-timeout-s",
                "20",
            ],
            &topology,
        );
        assert!(out.status.success(), "tail {topic}: {}", stderr(&out));
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{topic}: not JSON ({e}): {l}"))
            })
            .collect();
        assert_eq!(lines.len(), 5, "{topic}");
        for line in &lines {
            for field in fields {
                assert!(
                    line.get(field).is_some(),
                    "{topic}: {field} missing in {line}"
                );
            }
        }
    }
}
