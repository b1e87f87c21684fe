//! Offline checks of the Grafana dashboards and Prometheus rules in `k8s/observability`:
//!
//! - every dashboard parses, has the `datasource` variable, and every panel a query through it,
//!   a unit and thresholds; every operator of the topology has its dashboard;
//! - the market view's Geomap places cells by geohash, from the `cell` label the pricer emits;
//! - every metric a dashboard or rule reads is documented in `docs/metrics.md`, and every
//!   documented metric exists in the code (and the other way round);
//! - the rules follow the conventions, pass `promtool check rules` and their unit tests
//!   (`promtool test rules`), which make every alert fire and not fire;
//! - the kustomization ships every dashboard and rule file.
//!
//! `tests/prometheus.rs` evaluates the same queries against a live Prometheus.

mod observability;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use observability::{
    Intervals, QueryKind, dashboards, documented_metrics, documented_name, metric_names,
    observability_dir, panel_queries, panels, rule_files, rule_queries, rule_test_files, rules,
    selectors, title, variable_queries,
};
use serde_json::Value;
use surgeflow_testkit::project_root;

/// Fails with every problem found, one per line.
#[track_caller]
fn assert_none(problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_promql_helpers_work() {
    observability::self_check();
}

/// Balanced brackets outside string literals: a cheap syntax check before Prometheus sees it.
fn balanced(expr: &str) -> bool {
    let mut stack = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in expr.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return false;
                }
            }
            _ => {}
        }
    }
    stack.is_empty() && quote.is_none()
}

fn uses_datasource_variable(v: &Value) -> bool {
    v["uid"] == "${datasource}" && v["type"] == "prometheus"
}

#[test]
fn dashboards_have_the_datasource_variable_and_every_panel_a_query_a_unit_and_thresholds() {
    let all = dashboards();
    assert!(
        all.len() >= 6,
        "expected at least six dashboards, found {}",
        all.len()
    );
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    for (file, d) in &all {
        let uid = d["uid"].as_str().unwrap_or_default();
        if uid.is_empty() || !uids.insert(uid.to_string()) {
            problems.push(format!("{file}: missing or duplicate uid `{uid}`"));
        }
        if d["title"].as_str().unwrap_or_default().is_empty() {
            problems.push(format!("{file}: no title"));
        }
        if d["schemaVersion"].as_u64().unwrap_or(0) < 39 {
            problems.push(format!("{file}: schemaVersion below 39"));
        }
        let vars = d["templating"]["list"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ds: Vec<&Value> = vars.iter().filter(|v| v["name"] == "datasource").collect();
        match ds.as_slice() {
            [v] if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            _ => problems.push(format!(
                "{file}: needs one `datasource` variable of type datasource, query prometheus"
            )),
        }
        for var in vars.iter().filter(|v| v["type"] == "query") {
            if !uses_datasource_variable(&var["datasource"]) {
                problems.push(format!(
                    "{file}: variable {} does not query through ${{datasource}}",
                    var["name"]
                ));
            }
        }
        let all_panels = panels(d);
        if all_panels.is_empty() {
            problems.push(format!("{file}: no panels"));
        }
        let mut ids = BTreeSet::new();
        for panel in all_panels {
            let at = format!("{file} / {}", title(panel));
            if !ids.insert(panel["id"].as_u64().unwrap_or(0)) {
                problems.push(format!("{at}: duplicate or missing panel id"));
            }
            let grid = &panel["gridPos"];
            let (x, w) = (grid["x"].as_u64(), grid["w"].as_u64());
            if !matches!((x, w), (Some(x), Some(w)) if w > 0 && x + w <= 24)
                || grid["h"].as_u64().unwrap_or(0) == 0
            {
                problems.push(format!("{at}: gridPos out of the 24 columns"));
            }
            if !uses_datasource_variable(&panel["datasource"]) {
                problems.push(format!("{at}: panel datasource is not ${{datasource}}"));
            }
            let targets = panel["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problems.push(format!("{at}: no query"));
            }
            for t in &targets {
                let expr = t["expr"].as_str().unwrap_or_default();
                if expr.trim().is_empty() {
                    problems.push(format!("{at}: target {} has no expr", t["refId"]));
                }
                if !uses_datasource_variable(&t["datasource"]) {
                    problems.push(format!(
                        "{at}: target {} does not use ${{datasource}}",
                        t["refId"]
                    ));
                }
                if !balanced(expr) {
                    problems.push(format!("{at}: unbalanced brackets in `{expr}`"));
                }
                if selectors(expr).is_empty() {
                    problems.push(format!("{at}: `{expr}` reads no metric"));
                }
            }
            let defaults = &panel["fieldConfig"]["defaults"];
            if defaults["unit"]
                .as_str()
                .unwrap_or_default()
                .trim()
                .is_empty()
            {
                problems.push(format!("{at}: no unit (fieldConfig.defaults.unit)"));
            }
            let steps = defaults["thresholds"]["steps"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let values: Vec<Option<f64>> = steps.iter().map(|s| s["value"].as_f64()).collect();
            let well_formed = defaults["thresholds"]["mode"] == "absolute"
                && !steps.is_empty()
                && steps[0]["value"].is_null()
                && values[1..].iter().all(Option::is_some)
                && values[1..].windows(2).all(|w| w[0] < w[1])
                && steps
                    .iter()
                    .all(|s| s["color"].as_str().is_some_and(|c| !c.is_empty()));
            if !well_formed {
                problems.push(format!(
                    "{at}: thresholds must be absolute steps from a null base, increasing"
                ));
            }
        }
    }
    // Every query substitutes cleanly (unknown variables panic with their source).
    let queries = panel_queries(&Intervals::default());
    assert!(queries.iter().all(|q| q.kind == QueryKind::Panel));
    let _ = variable_queries(&Intervals::default());
    assert_none(&problems);
}

#[test]
fn there_is_an_overview_a_market_view_and_a_dashboard_per_operator() {
    let topology = surgeflow_topology::Topology::load(project_root().join("topology.yaml"))
        .unwrap_or_else(|e| panic!("topology.yaml: {e}"));
    let all = dashboards();
    let names: BTreeSet<&str> = all.iter().map(|(f, _)| f.as_str()).collect();
    let mut problems = Vec::new();
    for required in ["overview.json", "market.json"] {
        if !names.contains(required) {
            problems.push(format!("missing {required}"));
        }
    }
    for operator in topology.operators.iter().map(|o| o.name) {
        let file = format!("{operator}.json");
        let Some((_, d)) = all.iter().find(|(f, _)| *f == file) else {
            problems.push(format!("no dashboard {file} for operator {operator}"));
            continue;
        };
        let wanted = format!("operator=\"{operator}\"");
        for panel in panels(d) {
            for t in panel["targets"].as_array().into_iter().flatten() {
                if !t["expr"].as_str().unwrap_or_default().contains(&wanted) {
                    problems.push(format!(
                        "{file} / {}: query {} is not restricted to {wanted}",
                        title(panel),
                        t["refId"]
                    ));
                }
            }
        }
    }
    assert_none(&problems);
}

#[test]
fn the_geomap_places_cells_by_geohash_from_the_label_the_pricer_emits() {
    let cell_gauges: BTreeSet<&str> = surgeflow_surge_pricer::CELL_GAUGES
        .iter()
        .map(|g| g.name)
        .collect();
    let mut geomaps = 0;
    let mut problems = Vec::new();
    for (file, d) in dashboards() {
        for panel in panels(&d).into_iter().filter(|p| p["type"] == "geomap") {
            geomaps += 1;
            let at = format!("{file} / {}", title(panel));
            let layers = panel["options"]["layers"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if layers.is_empty() {
                problems.push(format!("{at}: no layer"));
            }
            let renamed = &panel["transformations"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["id"] == "organize")
                .map(|t| t["options"]["renameByName"].clone())
                .unwrap_or(Value::Null);
            let labels_to_fields = panel["transformations"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| t["id"] == "labelsToFields");
            for layer in &layers {
                let location = &layer["location"];
                if location["mode"] != "geohash" {
                    problems.push(format!(
                        "{at}: layer location mode is {}, not geohash",
                        location["mode"]
                    ));
                    continue;
                }
                let field = location["geohash"].as_str().unwrap_or_default();
                // The field must be a label the pricer really exports with the geohash.
                if field != "cell" || !surgeflow_surge_pricer::CELL_LABELS.contains(&field) {
                    problems.push(format!(
                        "{at}: geohash field `{field}` is not the pricer's `cell` label ({:?})",
                        surgeflow_surge_pricer::CELL_LABELS
                    ));
                }
                if renamed.get(field).is_some() {
                    problems.push(format!("{at}: the `{field}` field is renamed away"));
                }
                for t in panel["targets"].as_array().into_iter().flatten() {
                    let expr = t["expr"].as_str().unwrap_or_default();
                    // A table-format query turns labels into fields, as labelsToFields does.
                    if t["format"] != "table" && !labels_to_fields {
                        problems.push(format!(
                            "{at}: target {} neither has format table nor a labelsToFields transformation",
                            t["refId"]
                        ));
                    }
                    if !expr.contains(&format!("by ({field})")) {
                        problems.push(format!("{at}: `{expr}` does not keep the `{field}` label"));
                    }
                    for name in metric_names(expr) {
                        if !cell_gauges.contains(name.as_str()) {
                            problems.push(format!("{at}: `{name}` is not a per-cell gauge"));
                        }
                    }
                }
                if let Some(color) = layer["config"]["style"]["color"]["field"].as_str() {
                    let produced = renamed
                        .as_object()
                        .is_some_and(|m| m.values().any(|v| v == color));
                    if !produced {
                        problems.push(format!("{at}: colour field `{color}` is not produced"));
                    }
                }
            }
        }
    }
    assert!(geomaps >= 1, "no Geomap panel in any dashboard");
    assert_none(&problems);
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source of the crates and operators (`src/` only: what runs).
fn sources() -> Vec<(PathBuf, String)> {
    let root = project_root();
    let mut files = Vec::new();
    for parent in ["crates", "operators"] {
        for member in std::fs::read_dir(root.join(parent))
            .into_iter()
            .flatten()
            .flatten()
        {
            rust_files(&member.path().join("src"), &mut files);
        }
    }
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            (p, text)
        })
        .collect()
}

/// Metric names the code registers: literal names given to the `metrics` macros, the names of
/// gauge-table gauges and string constants named `surgeflow_...`.
fn metrics_in_code(sources: &[(PathBuf, String)]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (_, text) in sources {
        for marker in [
            "counter!(",
            "gauge!(",
            "histogram!(",
            "name: \"",
            "&str = \"",
        ] {
            for (at, _) in text.match_indices(marker) {
                let rest = text[at + marker.len()..].trim_start();
                let rest = rest.strip_prefix('"').unwrap_or(rest);
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name.starts_with("surgeflow_") && !name.starts_with("surgeflow_test") {
                    out.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn every_metric_read_is_documented_and_every_documented_metric_exists() {
    let documented = documented_metrics();
    assert!(
        !documented.is_empty(),
        "docs/metrics.md documents no metric"
    );
    let mut problems = Vec::new();
    let intervals = Intervals::default();
    let mut read: Vec<(String, String)> = Vec::new();
    for q in panel_queries(&intervals).into_iter().chain(rule_queries()) {
        for name in metric_names(&q.expr) {
            read.push((q.source.clone(), name));
        }
    }
    for (source, selector, _) in variable_queries(&intervals) {
        for name in metric_names(&selector) {
            read.push((source.clone(), name));
        }
    }
    for (source, name) in &read {
        if !documented.contains(documented_name(name, &documented)) {
            problems.push(format!(
                "{source}: `{name}` is not documented in docs/metrics.md"
            ));
        }
    }

    let sources = sources();
    let in_code = metrics_in_code(&sources);
    let recorded: BTreeSet<String> = rules()
        .into_iter()
        .filter(|r| !r.alert)
        .map(|r| r.name)
        .collect();
    for name in &documented {
        if name.contains(':') {
            if !recorded.contains(name) {
                problems.push(format!(
                    "docs/metrics.md: recording rule `{name}` is in no rule file"
                ));
            }
        } else {
            let quoted = format!("\"{name}\"");
            if !sources.iter().any(|(_, text)| text.contains(&quoted)) {
                problems.push(format!(
                    "docs/metrics.md: `{name}` appears nowhere in the code"
                ));
            }
        }
    }
    for name in &in_code {
        if !documented.contains(name) {
            problems.push(format!(
                "the code exports `{name}`, which docs/metrics.md does not document"
            ));
        }
    }
    for name in &recorded {
        if !documented.contains(name) {
            problems.push(format!(
                "recording rule `{name}` is not documented in docs/metrics.md"
            ));
        }
    }
    assert!(in_code.len() >= 20, "found only {in_code:?} in the code");
    assert_none(&problems);
}

/// `promtool`, or a failure that says how to get it.
fn promtool() -> String {
    let ok = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "promtool not found: install Debian's Prometheus package (`apt-get install prometheus`)"
    );
    "promtool".to_string()
}

#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let promtool = promtool();
    let dir = observability_dir().join("rules");
    let files = rule_files();
    let tests = rule_test_files();
    assert!(!files.is_empty(), "no *.rules.yaml in {}", dir.display());
    assert!(!tests.is_empty(), "no *.test.yaml in {}", dir.display());
    for (what, list) in [("check", &files), ("test", &tests)] {
        let output = Command::new(&promtool)
            .arg(what)
            .arg("rules")
            .args(list.iter())
            .current_dir(&dir)
            .output()
            .expect("running promtool");
        assert!(
            output.status.success(),
            "promtool {what} rules failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn every_alert_has_a_severity_a_runbook_and_tests_that_fire_and_do_not() {
    let all = rules();
    let mut problems = Vec::new();
    let alerts: Vec<_> = all.iter().filter(|r| r.alert).collect();
    let names: BTreeSet<&str> = alerts.iter().map(|r| r.name.as_str()).collect();
    for required in [
        "SurgeflowConsumerLagGrowing",
        "SurgeflowDeadLetterRate",
        "SurgeflowWatermarkStale",
        "SurgeflowRestoreTooLong",
        "SurgeflowTransactionAborts",
        "SurgeflowNoOutput",
    ] {
        if !names.contains(required) {
            problems.push(format!("no alert {required}"));
        }
    }
    let operations = ["docs/operations.md", "docs/dashboards-and-alerts.md"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(project_root().join(p)).ok())
        .collect::<Vec<_>>()
        .join("\n");
    for rule in &alerts {
        let at = format!("alert {}", rule.name);
        let raw = &rule.raw;
        if raw["for"].as_str().is_none_or(str::is_empty) {
            problems.push(format!("{at}: no `for:`"));
        }
        if !matches!(
            raw["labels"]["severity"].as_str(),
            Some("critical" | "warning" | "info")
        ) {
            problems.push(format!("{at}: severity must be critical, warning or info"));
        }
        for key in ["summary", "description"] {
            if raw["annotations"][key].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{at}: no {key} annotation"));
            }
        }
        if !raw["annotations"]["runbook_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("docs/operations.md#dashboards-and-alerts"))
        {
            problems.push(format!(
                "{at}: runbook_url must point at docs/operations.md#dashboards-and-alerts"
            ));
        }
        if !operations.contains(&rule.name) {
            problems.push(format!("{at}: not described in docs/operations.md"));
        }
    }
    // Each alert is shown to fire (a non-empty exp_alerts) and not to (an empty one).
    let mut cases: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for file in rule_test_files() {
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for test in doc["tests"].as_sequence().into_iter().flatten() {
            for case in test["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = case["alertname"].as_str().unwrap_or_default().to_string();
                let fires = case["exp_alerts"]
                    .as_sequence()
                    .is_some_and(|a| !a.is_empty());
                let entry = cases.entry(name).or_default();
                if fires {
                    entry.0 = true;
                } else {
                    entry.1 = true;
                }
            }
        }
    }
    for name in &names {
        match cases.get(*name) {
            Some((true, true)) => {}
            Some((fires, quiet)) => problems.push(format!(
                "alert {name}: unit tests must make it fire ({fires}) and not fire ({quiet})"
            )),
            None => problems.push(format!("alert {name}: no unit test")),
        }
    }
    assert_none(&problems);
}

#[test]
fn the_kustomization_ships_every_dashboard_and_rule_file() {
    let dir = observability_dir();
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
            .unwrap();
    let mut dashboards_shipped = BTreeSet::new();
    let mut rules_shipped = BTreeSet::new();
    let mut problems = Vec::new();
    for generator in doc["configMapGenerator"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        let name = generator["name"].as_str().unwrap_or_default();
        let dashboard_label =
            generator["options"]["labels"]["grafana_dashboard"].as_str() == Some("1");
        for file in generator["files"].as_sequence().into_iter().flatten() {
            let file = file.as_str().unwrap_or_default();
            if !dir.join(file).is_file() {
                problems.push(format!("{name}: {file} does not exist"));
            }
            if let Some(d) = file.strip_prefix("dashboards/") {
                if !dashboard_label {
                    problems.push(format!(
                        "{name}: a dashboard ConfigMap needs grafana_dashboard: \"1\""
                    ));
                }
                dashboards_shipped.insert(d.to_string());
            } else if let Some(r) = file.strip_prefix("rules/") {
                rules_shipped.insert(r.to_string());
            }
        }
    }
    let dashboards_present: BTreeSet<String> = dashboards().into_iter().map(|(f, _)| f).collect();
    if dashboards_shipped != dashboards_present {
        problems.push(format!(
            "dashboards shipped {dashboards_shipped:?} differ from those present {dashboards_present:?}"
        ));
    }
    let rules_present: BTreeSet<String> = rule_files()
        .iter()
        .map(|p| observability::file_name(p))
        .collect();
    if rules_shipped != rules_present {
        problems.push(format!(
            "rule files shipped {rules_shipped:?} differ from those present {rules_present:?}"
        ));
    }
    assert_none(&problems);
}
