//! `surgeflow demo` end to end: the built binary runs the whole pipeline against the test
//! cluster in a namespace of its own, its page is loaded in headless Chromium while it runs
//! (the rendered DOM must hold heatmap cells and live numbers; a screenshot is saved under
//! `target/test-output/demo/`), and Ctrl-C must stop everything it started and exit 0.
//!
//! Needs Chromium (Debian: `apt-get install chromium`; or name a binary in
//! `SURGEFLOW_CHROMIUM`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use surgeflow_testkit::{TestTopology, cluster, free_port, project_root, workspace_binary};

/// Operator binaries and the packages that build them.
const OPERATORS: [(&str, &str); 4] = [
    ("location-router", "surgeflow-location-router"),
    ("trip-router", "surgeflow-trip-router"),
    ("surge-pricer", "surgeflow-surge-pricer"),
    ("matcher", "surgeflow-matcher"),
];

/// How long the pipeline gets to show surging cells and proposals.
const SURGE_TIMEOUT: Duration = Duration::from_secs(120);

/// The demo process, killed if the test fails before stopping it (its children then get
/// SIGTERM through their parent-death signal).
struct Demo(Child);

/// Deletes the test's topics when dropped, pass or fail: the shared broker keeps every
/// partition of every test in memory otherwise.
struct DeleteTopics(Vec<String>);

impl Drop for DeleteTopics {
    fn drop(&mut self) {
        let Ok(admin) = surgeflow_testkit::clients().admin() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        let names: Vec<&str> = self.0.iter().map(String::as_str).collect();
        let options =
            rdkafka::admin::AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let _ = rt.block_on(admin.delete_topics(&names, &options));
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SURGEFLOW_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// `GET path` on loopback, HTTP/1.0 (so the body is never chunked): the status and body.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn api_state(port: u16) -> Option<serde_json::Value> {
    match http_get(port, "/api/state")? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// Runs headless Chromium with `args` and the page URL, killing it after `timeout`.
fn run_chromium(chromium: &Path, profile: &Path, args: &[String], url: &str) -> (bool, String) {
    let out = profile.with_extension("out");
    let err = profile.with_extension("err");
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--disable-crash-reporter",
            "--no-first-run",
            "--no-default-browser-check",
            "--mute-audio",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("chromium stdout file"))
        .stderr(std::fs::File::create(&err).expect("chromium stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", chromium.display()));
    let deadline = Instant::now() + Duration::from_secs(90);
    let ok = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.success();
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    if !ok {
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        panic!("chromium {args:?} failed or timed out; stderr:\n{stderr}");
    }
    (ok, stdout)
}

/// The numbers in the text of the element with `id` in the DOM, e.g. `1,234` → 1234.
fn number_in_element(dom: &str, id: &str) -> Option<f64> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let text = &dom[start..];
    let text = &text[text.find('>')? + 1..];
    let text = &text[..text.find('<')?];
    text.chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect::<String>()
        .parse()
        .ok()
}

/// The `data-multiplier` values of every heatmap cell in the DOM, by geohash.
fn heatmap_cells(dom: &str) -> Vec<(String, f64)> {
    let attribute = |tag: &str, name: &str| -> Option<String> {
        let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let len = tag[start..].find('"')?;
        Some(tag[start..start + len].to_string())
    };
    dom.split("<rect")
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>')?];
            let geohash = attribute(tag, "data-geohash")?;
            let multiplier = attribute(tag, "data-multiplier")?.parse().ok()?;
            Some((geohash, multiplier))
        })
        .collect()
}

/// The number in the cell of class `class` in the pipeline row of `operator`.
fn pipeline_number(dom: &str, operator: &str, class: &str) -> Option<f64> {
    let row = &dom[dom.find(&format!("data-operator=\"{operator}\""))?..];
    let row = &row[..row.find("</tr>")?];
    let cell = &row[row.find(&format!("class=\"num {class}\""))?..];
    let text = &cell[cell.find('>')? + 1..cell.find("</td>")?];
    text.replace(',', "").parse().ok()
}

fn alive(pid: u64) -> bool {
    // A zombie has an empty command line; a live process has its program's path.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
}

#[test]
fn demo_serves_a_live_heatmap_and_stops_everything_on_ctrl_c() {
    let Some(chromium) = chromium() else {
        panic!(
            "this test loads the demo's page in headless Chromium, which is not installed: \
             run `apt-get install chromium` (Debian), or set SURGEFLOW_CHROMIUM to a Chromium binary"
        );
    };
    let out_dir = project_root().join("target/test-output/demo");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).expect("creating the test output folder");

    cluster();
    let surgeflow = workspace_binary("surgeflow-cli", "surgeflow");
    for (bin, package) in OPERATORS {
        workspace_binary(package, bin);
    }
    let ports: Vec<u16> = OPERATORS.iter().map(|_| free_port()).collect();
    let topology = TestTopology::with("demo", |doc| {
        for ((bin, _), port) in OPERATORS.iter().zip(&ports) {
            doc["operators"][*bin]["http_port"] = (*port).into();
        }
    });
    let _cleanup = DeleteTopics(topology.topology.topics.keys().cloned().collect());
    let listen = free_port();
    let url = format!("http://127.0.0.1:{listen}/");

    let started = Instant::now();
    let demo_out = out_dir.join("demo.out");
    let child = Command::new(&surgeflow)
        .arg("--topology")
        .arg(&topology.path)
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--duration",
            "170s",
            "--no-build",
            "--requests-per-s",
            "10",
            "--refresh",
            "5s",
            "--log-dir",
        ])
        .arg(out_dir.join("logs"))
        .current_dir(project_root())
        .env("SURGEFLOW_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&demo_out).expect("demo output file"))
        .stderr(std::fs::File::create(out_dir.join("demo.err")).expect("demo error file"))
        .spawn()
        .expect("starting surgeflow demo");
    let mut demo = Demo(child);
    let output = || {
        format!(
            "{}\n{}",
            std::fs::read_to_string(&demo_out).unwrap_or_default(),
            std::fs::read_to_string(out_dir.join("demo.err")).unwrap_or_default()
        )
    };

    // Wait until the page's API shows surging cells and match proposals.
    let deadline = Instant::now() + SURGE_TIMEOUT;
    let state = loop {
        if let Ok(Some(status)) = demo.0.try_wait() {
            panic!("the demo exited early ({status}):\n{}", output());
        }
        if let Some(state) = api_state(listen) {
            let surging = state["surging_cells"].as_u64().unwrap_or(0);
            let proposals = state["matches"]["proposals"].as_u64().unwrap_or(0);
            let cells = state["cells"].as_array().map_or(0, Vec::len);
            let flowing = state["operators"]
                .as_array()
                .is_some_and(|ops| ops.iter().all(|o| o["in_per_s"].as_f64() > Some(0.0)));
            if surging >= 1 && proposals >= 1 && cells >= 20 && flowing {
                break state;
            }
            if Instant::now() >= deadline {
                panic!(
                    "no surge within {SURGE_TIMEOUT:?}: {surging} surging of {cells} cells, {proposals} proposals, operators {}\n{}",
                    state["operators"],
                    output()
                );
            }
        } else if Instant::now() >= deadline {
            panic!("the page's API never answered on {url}:\n{}", output());
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    println!(
        "surge after {:.0?}: {} surging of {} cells, {} proposals",
        started.elapsed(),
        state["surging_cells"],
        state["cells"].as_array().map_or(0, Vec::len),
        state["matches"]["proposals"]
    );

    // The page as a browser renders it: polls /api/state and draws.
    let dom_args = vec![
        "--virtual-time-budget=8000".to_string(),
        "--dump-dom".to_string(),
    ];
    let (_, dom) = run_chromium(&chromium, &out_dir.join("chromium-dom"), &dom_args, &url);
    std::fs::write(out_dir.join("page.html"), &dom).expect("saving the DOM");
    let screenshot = out_dir.join("demo.png");
    let shot_args = vec![
        "--virtual-time-budget=8000".to_string(),
        "--window-size=1440,1000".to_string(),
        format!("--screenshot={}", screenshot.display()),
    ];
    run_chromium(&chromium, &out_dir.join("chromium-shot"), &shot_args, &url);
    let state_now = api_state(listen).expect("the API answers while the page is loaded");
    std::fs::write(
        out_dir.join("state.json"),
        serde_json::to_string_pretty(&state_now).unwrap(),
    )
    .expect("saving the state");

    let cells = heatmap_cells(&dom);
    assert!(
        cells.len() >= 20,
        "the heatmap has {} cells (see {}/page.html)",
        cells.len(),
        out_dir.display()
    );
    assert!(
        cells.iter().any(|(_, m)| *m > 1.0),
        "no surging cell on the heatmap: {cells:?}"
    );
    assert!(
        cells
            .iter()
            .all(|(g, _)| g.len() == 6 && g.chars().all(|c| c.is_ascii_alphanumeric())),
        "cells are precision-6 geohashes: {cells:?}"
    );
    assert!(
        dom.contains("data-outline=\"city\""),
        "the city outline is drawn"
    );
    assert!(dom.contains("id=\"legend\""), "the legend is there");
    let proposals = number_in_element(&dom, "stat-proposals").expect("a proposals count");
    assert!(proposals >= 1.0, "proposals shown: {proposals}");
    let surging = number_in_element(&dom, "stat-surging").expect("a surging-cells count");
    assert!(surging >= 1.0, "surging cells shown: {surging}");
    for (bin, _) in OPERATORS {
        let rate = pipeline_number(&dom, bin, "in")
            .unwrap_or_else(|| panic!("no input rate for {bin} on the page"));
        assert!(rate > 0.0, "{bin} consumes nothing according to the page");
    }
    assert!(
        pipeline_number(&dom, "location-router", "out").is_some_and(|r| r > 0.0),
        "the router's output rate is shown"
    );
    assert!(
        dom.matches("<td><code>trip-").count() >= 1,
        "recent proposals are listed"
    );
    let png = std::fs::metadata(&screenshot).expect("the screenshot was saved");
    assert!(
        png.len() > 20_000,
        "a blank screenshot? {} bytes",
        png.len()
    );

    // Ctrl-C: everything stops and the demo exits 0.
    let pids: Vec<u64> = state_now["operators"]
        .as_array()
        .expect("operators")
        .iter()
        .filter_map(|o| o["pid"].as_u64())
        .collect();
    assert_eq!(pids.len(), 4, "{}", state_now["operators"]);
    assert!(pids.iter().all(|&p| alive(p)), "the operators run");
    let _ = Command::new("kill")
        .args(["-INT", &demo.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Ok(Some(status)) = demo.0.try_wait() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not stop within 60 s of SIGINT:\n{}",
            output()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = output();
    assert_eq!(status.code(), Some(0), "exit after SIGINT:\n{out}");
    assert!(out.contains("interrupted: stopping"), "{out}");
    for (bin, _) in OPERATORS {
        assert!(
            out.contains(&format!("stopped {bin}: exited with code 0")),
            "{bin} did not shut down cleanly:\n{out}"
        );
    }
    for pid in pids {
        assert!(
            !alive(pid),
            "operator pid {pid} still runs after the demo exited"
        );
    }
    for port in ports.iter().copied().chain([listen]) {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "something still listens on {port}"
        );
    }
    println!(
        "demo test done in {:.0?}; screenshot: {}",
        started.elapsed(),
        screenshot.display()
    );
}
