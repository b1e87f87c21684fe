//! Metric plumbing beyond the `metrics` facade: histogram buckets, and gauge tables.
//!
//! **Buckets.** Every histogram is exported as a Prometheus histogram. Durations share
//! [`LATENCY_BUCKETS`]; metrics whose values live on another scale get buckets of their own
//! ([`runtime_buckets`], and [`OperatorFactory::histogram_buckets`](crate::OperatorFactory)
//! for an operator's own histograms).
//!
//! **Gauge tables.** A gauge of the `metrics` facade lives until the process ends: once a label
//! set was used, its series is exported forever. That is right for a fixed set (operators,
//! topics, partitions) but not for a set that changes as the data does, such as "the cells
//! surging most right now": cells leaving it would linger at their last value. A
//! [`GaugeTable`] holds a few gauges that share one label set per row, and its rows are
//! replaced as a whole; `/metrics` renders exactly the rows of the last replacement, so a row
//! left out disappears at the next scrape. The table's owner bounds its size.

use std::fmt::Write;
use std::sync::{Arc, PoisonError, RwLock};

/// Buckets of every duration histogram (`*_seconds`), from half a millisecond to five minutes.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];

/// Buckets of `surgeflow_event_to_output_seconds`: event time to commit spans milliseconds
/// (routers) to the tens of seconds a windowed operator waits for lateness and ticks.
pub const EVENT_TO_OUTPUT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
    120.0, 300.0, 600.0,
];

/// Buckets of `surgeflow_restore_duration_seconds`, up to the runtime's restore timeout.
pub const RESTORE_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Buckets of `surgeflow_batch_records`: 1, 2 and 5 times powers of ten below `max_batch`,
/// which is a bucket of its own (a batch that reaches it means the operator runs flat out).
pub fn batch_buckets(max_batch: usize) -> Vec<f64> {
    let max = max_batch.max(1) as f64;
    let mut buckets: Vec<f64> = [1.0, 2.0, 5.0]
        .iter()
        .flat_map(|m| (0..7).map(move |e| m * 10f64.powi(e)))
        .filter(|b| *b < max)
        .collect();
    buckets.push(max);
    buckets.sort_by(f64::total_cmp);
    buckets.dedup();
    buckets
}

/// The runtime's histograms whose buckets are not [`LATENCY_BUCKETS`].
pub fn runtime_buckets(max_batch: usize) -> Vec<(&'static str, Vec<f64>)> {
    vec![
        ("surgeflow_batch_records", batch_buckets(max_batch)),
        (
            "surgeflow_event_to_output_seconds",
            EVENT_TO_OUTPUT_BUCKETS.to_vec(),
        ),
        (
            "surgeflow_restore_duration_seconds",
            RESTORE_BUCKETS.to_vec(),
        ),
    ]
}

/// One gauge of a [`GaugeTable`]: its name and help text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GaugeSpec {
    pub name: &'static str,
    pub help: &'static str,
}

/// One row of a [`GaugeTable`]: a value for each label, and a value for each gauge.
#[derive(Debug, Clone, PartialEq)]
pub struct GaugeRow {
    pub labels: Vec<String>,
    pub values: Vec<f64>,
}

/// Gauges sharing a label set per row, whose rows are replaced as a whole (see the module
/// documentation). Shared between the thread that fills it and the HTTP server.
#[derive(Debug)]
pub struct GaugeTable {
    label_names: &'static [&'static str],
    gauges: &'static [GaugeSpec],
    rows: RwLock<Vec<GaugeRow>>,
}

impl GaugeTable {
    /// An empty table of `gauges`, each with the labels `label_names`.
    pub fn new(label_names: &'static [&'static str], gauges: &'static [GaugeSpec]) -> Arc<Self> {
        Arc::new(GaugeTable {
            label_names,
            gauges,
            rows: RwLock::new(Vec::new()),
        })
    }

    /// Replaces every row. Rows whose label or value count does not match the table are
    /// dropped (a bug in the caller, which must not break `/metrics`).
    pub fn replace(&self, mut rows: Vec<GaugeRow>) {
        rows.retain(|r| {
            r.labels.len() == self.label_names.len() && r.values.len() == self.gauges.len()
        });
        *self.rows.write().unwrap_or_else(PoisonError::into_inner) = rows;
    }

    /// The rows now exported.
    pub fn rows(&self) -> Vec<GaugeRow> {
        self.rows
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Appends the table in the Prometheus text format. A gauge without rows is left out.
    pub fn render(&self, out: &mut String) {
        let rows = self.rows.read().unwrap_or_else(PoisonError::into_inner);
        if rows.is_empty() {
            return;
        }
        for (i, gauge) in self.gauges.iter().enumerate() {
            let _ = writeln!(out, "# HELP {} {}", gauge.name, gauge.help);
            let _ = writeln!(out, "# TYPE {} gauge", gauge.name);
            for row in rows.iter() {
                out.push_str(gauge.name);
                out.push('{');
                for (j, (name, value)) in self.label_names.iter().zip(&row.labels).enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    out.push_str(name);
                    out.push_str("=\"");
                    escape_label_value(value, out);
                    out.push('"');
                }
                out.push_str("} ");
                write_value(row.values[i], out);
                out.push('\n');
            }
            out.push('\n');
        }
    }
}

fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_value(value: f64, out: &mut String) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAUGES: &[GaugeSpec] = &[
        GaugeSpec {
            name: "surgeflow_test_a",
            help: "first",
        },
        GaugeSpec {
            name: "surgeflow_test_b",
            help: "second",
        },
    ];

    fn row(cell: &str, a: f64, b: f64) -> GaugeRow {
        GaugeRow {
            labels: vec!["op".into(), cell.into()],
            values: vec![a, b],
        }
    }

    #[test]
    fn renders_every_row_of_every_gauge() {
        let table = GaugeTable::new(&["operator", "cell"], GAUGES);
        let mut text = String::new();
        table.render(&mut text);
        assert_eq!(text, "", "an empty table exports nothing");
        table.replace(vec![
            row("dr5ru7", 1.5, 3.0),
            row("a\"b\\c\nd", f64::NAN, 0.25),
        ]);
        table.render(&mut text);
        assert_eq!(
            text,
            "# HELP surgeflow_test_a first\n# TYPE surgeflow_test_a gauge\n\
             surgeflow_test_a{operator=\"op\",cell=\"dr5ru7\"} 1.5\n\
             surgeflow_test_a{operator=\"op\",cell=\"a\\\"b\\\\c\\nd\"} NaN\n\n\
             # HELP surgeflow_test_b second\n# TYPE surgeflow_test_b gauge\n\
             surgeflow_test_b{operator=\"op\",cell=\"dr5ru7\"} 3\n\
             surgeflow_test_b{operator=\"op\",cell=\"a\\\"b\\\\c\\nd\"} 0.25\n\n"
        );
    }

    #[test]
    fn a_replacement_drops_the_rows_left_out() {
        let table = GaugeTable::new(&["operator", "cell"], GAUGES);
        table.replace(vec![row("u4pruy", 2.0, 1.0), row("dr5ru7", 1.0, 1.0)]);
        table.replace(vec![row("dr5ru7", 1.2, 4.0)]);
        assert_eq!(table.rows(), vec![row("dr5ru7", 1.2, 4.0)]);
        let mut text = String::new();
        table.render(&mut text);
        assert!(!text.contains("u4pruy"), "{text}");
    }

    #[test]
    fn malformed_rows_are_dropped() {
        let table = GaugeTable::new(&["operator", "cell"], GAUGES);
        table.replace(vec![
            GaugeRow {
                labels: vec!["op".into()],
                values: vec![1.0, 2.0],
            },
            GaugeRow {
                labels: vec!["op".into(), "x".into()],
                values: vec![1.0],
            },
            row("ok", 1.0, 2.0),
        ]);
        assert_eq!(table.rows(), vec![row("ok", 1.0, 2.0)]);
    }

    #[test]
    fn batch_buckets_end_at_max_batch() {
        assert_eq!(
            batch_buckets(1000),
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
        );
        assert_eq!(
            batch_buckets(300),
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 300.0]
        );
        assert_eq!(batch_buckets(1), vec![1.0]);
        assert_eq!(batch_buckets(0), vec![1.0]);
    }
}
