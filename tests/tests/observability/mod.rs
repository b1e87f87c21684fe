//! What `dashboards.rs` (offline) and `prometheus.rs` (live) both need: the Grafana dashboards
//! and Prometheus rules of `k8s/observability`, their queries with Grafana's variables
//! substituted, and just enough PromQL lexing to find the metric selectors in a query and to
//! drop the threshold comparisons of an alert.
//!
//! Each test binary uses a part of this module.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use surgeflow_testkit::project_root;

/// `k8s/observability`.
pub fn observability_dir() -> PathBuf {
    project_root().join("k8s").join("observability")
}

/// Every dashboard: (file name, JSON), by file name.
///
/// # Panics
/// When a file is not valid JSON.
pub fn dashboards() -> Vec<(String, Value)> {
    let dir = observability_dir().join("dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            (file_name(&p), json)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every panel of a dashboard, those nested in rows included.
pub fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            if let Some(nested) = panel.get("panels") {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// A panel's title, for messages.
pub fn title(panel: &Value) -> &str {
    panel["title"].as_str().unwrap_or("<untitled>")
}

/// One query to evaluate: where it comes from, and its text.
#[derive(Debug, Clone)]
pub struct Query {
    /// `overview.json / Records in / A`, `rule SurgeflowNoOutput`, ...
    pub source: String,
    pub expr: String,
    pub kind: QueryKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    /// A dashboard panel's target: must return data as it is.
    Panel,
    /// A recording rule: must return data as it is.
    Recording,
    /// An alert: empty while it does not fire, so its thresholds are dropped first.
    Alert,
}

/// Every panel target of every dashboard, Grafana variables substituted.
///
/// # Panics
/// When a query uses a variable the dashboard does not define.
pub fn panel_queries(intervals: &Intervals) -> Vec<Query> {
    let mut out = Vec::new();
    for (file, dashboard) in dashboards() {
        for panel in panels(&dashboard) {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let Some(expr) = target["expr"].as_str() else {
                    continue;
                };
                let source = format!(
                    "{file} / {} / {}",
                    title(panel),
                    target["refId"].as_str().unwrap_or("?")
                );
                let expr = substitute(expr, &dashboard, intervals)
                    .unwrap_or_else(|e| panic!("{source}: {e}"));
                out.push(Query {
                    source,
                    expr,
                    kind: QueryKind::Panel,
                });
            }
        }
    }
    out
}

/// The queries of the dashboards' query variables (`label_values(selector, label)`), as
/// (source, selector, label), Grafana variables substituted.
pub fn variable_queries(intervals: &Intervals) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (file, dashboard) in dashboards() {
        for var in dashboard["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if var["type"] != "query" {
                continue;
            }
            let name = var["name"].as_str().unwrap_or("?");
            let query = var["query"]["query"]
                .as_str()
                .or_else(|| var["query"].as_str())
                .unwrap_or_default();
            let source = format!("{file} / variable {name}");
            let (selector, label) = parse_label_values(query).unwrap_or_else(|| {
                panic!("{source}: `{query}` is not label_values(selector, label)")
            });
            let selector = substitute(&selector, &dashboard, intervals)
                .unwrap_or_else(|e| panic!("{source}: {e}"));
            out.push((source, selector, label));
        }
    }
    out
}

/// `label_values(selector, label)` → (selector, label).
pub fn parse_label_values(query: &str) -> Option<(String, String)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim().to_string(), label.trim().to_string()))
}

/// What Grafana's interval variables stand for in a test.
#[derive(Debug, Clone)]
pub struct Intervals {
    pub rate_interval: String,
    pub interval: String,
    pub range: String,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            rate_interval: "1m".into(),
            interval: "15s".into(),
            range: "5m".into(),
        }
    }
}

/// Substitutes Grafana's variables in `expr`: the interval ones, and the dashboard's template
/// variables by their current value (`All` becomes the variable's `allValue`, else `.*`).
///
/// # Errors
/// A variable the dashboard does not define.
pub fn substitute(expr: &str, dashboard: &Value, intervals: &Intervals) -> Result<String, String> {
    let value_of = |name: &str| -> Option<String> {
        match name {
            "__rate_interval" => return Some(intervals.rate_interval.clone()),
            "__interval" => return Some(intervals.interval.clone()),
            "__range" => return Some(intervals.range.clone()),
            _ => {}
        }
        let var = dashboard["templating"]["list"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == name)?;
        let current = &var["current"]["value"];
        let values: Vec<String> = match current {
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        };
        if values.is_empty() || values.iter().any(|v| v == "$__all") {
            return Some(var["allValue"].as_str().unwrap_or(".*").to_string());
        }
        Some(values.join("|"))
    };
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in `{expr}`"))?;
            // `${name:format}`: the formats change nothing for single regex-safe values.
            let inner = &braced[..end];
            let name = inner.split(':').next().unwrap_or_default();
            (name, end + 2)
        } else {
            let len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..len], len)
        };
        if name.is_empty() {
            return Err(format!("a lone `$` in `{expr}`"));
        }
        let value =
            value_of(name).ok_or_else(|| format!("unknown variable ${name} in `{expr}`"))?;
        out.push_str(&value);
        rest = &after[consumed..];
    }
    out.push_str(rest);
    if out.contains("[[") {
        return Err(format!("old-style [[variable]] in `{expr}`"));
    }
    Ok(out)
}

/// One rule of the rule files.
#[derive(Debug, Clone)]
pub struct Rule {
    pub group: String,
    /// The recorded metric or the alert's name.
    pub name: String,
    pub alert: bool,
    pub expr: String,
    pub raw: serde_yaml_ng::Value,
}

/// The rule files (`k8s/observability/rules/*.rules.yaml`).
pub fn rule_files() -> Vec<PathBuf> {
    let dir = observability_dir().join("rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| file_name(p).ends_with(".rules.yaml"))
        .collect();
    files.sort();
    files
}

/// The rule unit-test files (`k8s/observability/rules/*.test.yaml`).
pub fn rule_test_files() -> Vec<PathBuf> {
    let dir = observability_dir().join("rules");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| file_name(p).ends_with(".test.yaml"))
        .collect();
    files.sort();
    files
}

/// Every rule of every rule file.
pub fn rules() -> Vec<Rule> {
    let mut out = Vec::new();
    for file in rule_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for group in doc["groups"].as_sequence().into_iter().flatten() {
            let group_name = group["name"].as_str().unwrap_or_default().to_string();
            for rule in group["rules"].as_sequence().into_iter().flatten() {
                let (name, alert) = match (rule["record"].as_str(), rule["alert"].as_str()) {
                    (Some(r), None) => (r.to_string(), false),
                    (None, Some(a)) => (a.to_string(), true),
                    _ => panic!("{}: a rule needs one of record or alert", file.display()),
                };
                out.push(Rule {
                    group: group_name.clone(),
                    name,
                    alert,
                    expr: rule["expr"].as_str().unwrap_or_default().to_string(),
                    raw: rule.clone(),
                });
            }
        }
    }
    out
}

/// The rules as queries to evaluate.
pub fn rule_queries() -> Vec<Query> {
    rules()
        .into_iter()
        .map(|r| Query {
            source: format!(
                "{} {}",
                if r.alert { "alert" } else { "recording rule" },
                r.name
            ),
            kind: if r.alert {
                QueryKind::Alert
            } else {
                QueryKind::Recording
            },
            expr: r.expr,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// PromQL, lexically.

/// A metric selector in a query: the metric name and its label matchers as written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Selector {
    pub metric: String,
    /// The text between the braces, empty without.
    pub matchers: String,
}

impl Selector {
    /// The selector as PromQL.
    pub fn promql(&self) -> String {
        if self.matchers.trim().is_empty() {
            self.metric.clone()
        } else {
            format!("{}{{{}}}", self.metric, self.matchers)
        }
    }
}

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Index just past the string literal starting at `i` (its quote).
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() {
        if chars[j] == '\\' && quote != '`' {
            j += 2;
            continue;
        }
        if chars[j] == quote {
            return j + 1;
        }
        j += 1;
    }
    chars.len()
}

/// Index just past the bracket closing the one at `i`, strings skipped.
fn skip_group(chars: &[char], i: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    let mut j = i;
    while j < chars.len() {
        match chars[j] {
            '"' | '\'' | '`' => {
                j = skip_string(chars, j);
                continue;
            }
            c if c == open => depth += 1,
            c if c == close => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    chars.len()
}

fn next_non_space(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

/// The identifier starting at `i` (empty when none does).
fn word_at(chars: &[char], i: usize) -> String {
    chars[i.min(chars.len())..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
        .collect()
}

/// Every metric selector in `expr`, in order of appearance.
pub fn selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(&chars, i);
        } else if c == '[' {
            i = skip_group(&chars, i, '[', ']');
        } else if c == '{' {
            // A selector without a metric name: not used here, and not a metric to check.
            i = skip_group(&chars, i, '{', '}');
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = next_non_space(&chars, i);
            let lower = word.to_ascii_lowercase();
            if LABEL_LISTS.contains(&lower.as_str()) {
                if chars.get(next) == Some(&'(') {
                    i = skip_group(&chars, next, '(', ')');
                }
            } else if KEYWORDS.contains(&lower.as_str())
                || chars.get(next) == Some(&'(')
                || ["by", "without"].contains(&word_at(&chars, next).to_ascii_lowercase().as_str())
            {
                // An operator keyword, a function, or an aggregation (`sum by (l) (...)`).
            } else if chars.get(next) == Some(&'{') {
                let end = skip_group(&chars, next, '{', '}');
                let matchers: String = chars[next + 1..end.saturating_sub(1)].iter().collect();
                out.push(Selector {
                    metric: word,
                    matchers,
                });
                i = end;
            } else {
                out.push(Selector {
                    metric: word,
                    matchers: String::new(),
                });
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The metric names `expr` reads.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    selectors(expr).into_iter().map(|s| s.metric).collect()
}

/// `expr` without its comparisons against a number (`> 0.01`, `== 0`, `> bool 1`), so that an
/// alert's expression returns the values it compares even while it does not fire.
pub fn strip_thresholds(expr: &str) -> String {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = String::with_capacity(expr.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                let end = skip_string(&chars, i);
                out.extend(&chars[i..end]);
                i = end;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                let end = skip_group(&chars, i, c, close);
                out.extend(&chars[i..end]);
                i = end;
            }
            '>' | '<' | '=' | '!' => {
                let op_len = if chars.get(i + 1) == Some(&'=') { 2 } else { 1 };
                if (c == '=' || c == '!') && op_len == 1 {
                    out.push(c);
                    i += 1;
                    continue;
                }
                let mut j = next_non_space(&chars, i + op_len);
                let word: String = chars[j..].iter().take(4).collect();
                if word == "bool" {
                    j = next_non_space(&chars, j + 4);
                }
                let number_start = j;
                if matches!(chars.get(j), Some('-' | '+')) {
                    j += 1;
                }
                while j < chars.len()
                    && (chars[j].is_ascii_digit()
                        || chars[j] == '.'
                        || chars[j] == 'e'
                        || chars[j] == 'E'
                        || ((chars[j] == '-' || chars[j] == '+')
                            && matches!(chars[j - 1], 'e' | 'E')))
                {
                    j += 1;
                }
                let number: String = chars[number_start..j].iter().collect();
                if number.parse::<f64>().is_ok() {
                    i = j;
                } else {
                    out.extend(&chars[i..i + op_len]);
                    i += op_len;
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The metric as documented: histogram series (`_bucket`, `_sum`, `_count`) name their
/// histogram.
pub fn documented_name<'a>(name: &'a str, documented: &BTreeSet<String>) -> &'a str {
    if documented.contains(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && documented.contains(base)
        {
            return base;
        }
    }
    name
}

/// The metric names `docs/metrics.md` documents: the first cell of its tables' rows.
pub fn documented_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(project_root().join("docs/metrics.md"))
        .expect("reading docs/metrics.md");
    text.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(name, _)| name.to_string()))
        .filter(|name| name.starts_with("surgeflow_") || name.contains(':'))
        .collect()
}

/// Checks of the lexing itself, run by the offline test.
pub fn self_check() {
    let found = selectors(
        r#"histogram_quantile(0.99, sum by (operator, le) (rate(surgeflow_x_bucket{operator="a", instance=~"b|c"}[1m]))) / on (operator) group_left(topic) sum without (pod) (rate(surgeflow_y_total[5m] offset 1m)) and ignoring(le) up > bool 1e3"#,
    );
    assert_eq!(
        found,
        vec![
            Selector {
                metric: "surgeflow_x_bucket".into(),
                matchers: r#"operator="a", instance=~"b|c""#.into()
            },
            Selector {
                metric: "surgeflow_y_total".into(),
                matchers: String::new()
            },
            Selector {
                metric: "up".into(),
                matchers: String::new()
            },
        ]
    );
    assert_eq!(
        metric_names(
            "operator:surgeflow_lag:sum > 10 and label_replace(a, \"b\", \"c\", \"d\", \"e\")"
        ),
        BTreeSet::from(["operator:surgeflow_lag:sum".to_string(), "a".to_string()])
    );
    assert_eq!(
        strip_thresholds(
            "(sum(a{x!=\"1\", y=\"2\"}) > 10000) and (rate(b[5m]) == 0) or c > bool 1e-3 and d >= -2.5"
        ),
        "(sum(a{x!=\"1\", y=\"2\"}) ) and (rate(b[5m]) ) or c  and d "
    );
    assert_eq!(
        strip_thresholds("a / b > c"),
        "a / b > c",
        "vector comparisons stay"
    );
    let dashboard = serde_json::json!({"templating": {"list": [
        {"name": "instance", "type": "query", "allValue": ".*", "current": {"value": ["$__all"]}},
        {"name": "product", "type": "query", "current": {"value": ["ECONOMY", "XL"]}},
        {"name": "op", "type": "custom", "current": {"value": "matcher"}},
    ]}});
    let intervals = Intervals::default();
    assert_eq!(
        substitute(
            r#"rate(x{instance=~"$instance", kind=~"${product:regex}", operator="$op"}[$__rate_interval]) + y[${__interval}]"#,
            &dashboard,
            &intervals
        )
        .unwrap(),
        r#"rate(x{instance=~".*", kind=~"ECONOMY|XL", operator="matcher"}[1m]) + y[15s]"#
    );
    assert!(substitute("x{a=\"$nope\"}", &dashboard, &intervals).is_err());
    assert_eq!(
        parse_label_values(r#"label_values(surgeflow_x{operator="m"}, instance)"#),
        Some((
            r#"surgeflow_x{operator="m"}"#.to_string(),
            "instance".to_string()
        ))
    );
}
