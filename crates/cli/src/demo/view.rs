//! What the demo shows: one plain, synchronous struct fed by the records the pipeline
//! publishes (`surge.multiplier`, `match.proposal`, `match.unfilled`), by the Prometheus text
//! each operator serves on `/metrics`, and by the pricer's queryable view of every cell it
//! tracks. The web page (as JSON) and the terminal summary (as text) are both rendered from
//! it, so they always agree, and everything here is tested without Kafka or HTTP.
//!
//! Time is passed in (`now_ms`, UTC milliseconds) rather than read, for the same reason.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;

use serde::Serialize;
use surgeflow_domain::geo::Cell;
use surgeflow_schema::{MatchProposal, MatchUnfilled, SurgeMultiplier, UnfilledReason};

/// How many match proposals the page lists.
const RECENT_PROPOSALS: usize = 12;
/// How many cells the "top surge" lists hold.
const TOP_CELLS: usize = 10;
/// Rates are averaged over this much of the latest scrapes, so a pricer that publishes once
/// per tick does not flicker between zero and a burst.
const RATE_WINDOW_MS: i64 = 10_000;

/// The simulated city: a disc, drawn as the outline of the map.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Area {
    pub center_lat: f64,
    pub center_lon: f64,
    pub radius_m: f64,
}

/// What feeds the pipeline, and how it is doing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feeder {
    /// `simulate` or `replay`.
    pub kind: &'static str,
    /// A short description (city size, or the file and speed).
    pub detail: String,
    /// `running`, or how it ended.
    pub state: String,
}

/// The lifecycle of a process the demo started, as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessState {
    /// Started, `/metrics` not answered yet.
    Starting,
    /// Its `/metrics` answered at the last scrape.
    Running,
    /// Running, but the last scrape got no answer.
    NotAnswering,
    /// Asked to stop.
    Stopping,
    /// Gone, with its exit code (`None`: killed by a signal).
    Exited(Option<i32>),
}

impl ProcessState {
    fn label(&self) -> String {
        match self {
            ProcessState::Starting => "starting".into(),
            ProcessState::Running => "running".into(),
            ProcessState::NotAnswering => "no answer".into(),
            ProcessState::Stopping => "stopping".into(),
            ProcessState::Exited(Some(code)) => format!("exited {code}"),
            ProcessState::Exited(None) => "killed".into(),
        }
    }
}

/// One operator as shown: its process and the rates derived from its metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OperatorView {
    pub name: String,
    pub pid: Option<u32>,
    pub http_port: u16,
    pub log: String,
    pub state: ProcessState,
    /// Records consumed, total and per second over the last scrape interval.
    pub records_in: f64,
    pub in_per_s: f64,
    /// Records produced (outputs, not DLQ), total and per second.
    pub records_out: f64,
    pub out_per_s: f64,
    /// Records sent to the dead-letter topic.
    pub dlq: f64,
    /// Consumer lag summed over its input partitions (records).
    pub lag: f64,
    /// Recent scrapes: (time, records in, records out), oldest first.
    #[serde(skip)]
    history: VecDeque<(i64, f64, f64)>,
}

/// Match statistics: proposals and unfilled requests counted from the topics, the drivers'
/// answers from the matcher's counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MatchStats {
    pub proposals: u64,
    /// Proposals that were a request's first attempt.
    pub first_attempts: u64,
    pub accepted: f64,
    pub declined: f64,
    pub timeouts: f64,
    pub unfilled: u64,
    pub unfilled_no_driver: u64,
    pub unfilled_max_attempts: u64,
    pub unfilled_deadline: u64,
    /// Mean ETA of the proposals, seconds.
    pub mean_eta_s: f64,
    #[serde(skip)]
    eta_sum: f64,
}

/// A match proposal as listed on the page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProposalView {
    pub trip_id: String,
    pub driver_id: String,
    pub product: &'static str,
    pub eta_s: f64,
    pub distance_m: f64,
    pub surge_multiplier: f64,
    pub attempt: i32,
    pub proposed_at: i64,
}

/// The latest published multiplier of one (cell, product).
#[derive(Debug, Clone, PartialEq)]
struct Published {
    multiplier: f64,
    supply: i32,
    demand: i32,
    stale: bool,
}

/// The pricer's current view of one cell, summed over products.
#[derive(Debug, Clone, Default, PartialEq)]
struct Tracked {
    multiplier: f64,
    supply: u32,
    demand: u32,
    /// (supply, demand) by product.
    by_product: BTreeMap<String, (u32, u32)>,
}

/// One (cell, product) of the pricer's queryable view (`GET /cells?bbox=...`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct PricerCell {
    pub cell: String,
    pub product: String,
    pub multiplier: f64,
    pub supply: u32,
    pub demand: u32,
}

/// A cell as drawn: its geohash, extent and colour-giving multiplier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellView {
    pub geohash: String,
    /// `[min_lat, min_lon, max_lat, max_lon]`.
    pub bbox: [f64; 4],
    /// The highest current multiplier over the products.
    pub multiplier: f64,
    /// The product that multiplier is for (`None` when nothing was published for the cell).
    pub product: Option<String>,
    /// Published multipliers by product.
    pub products: BTreeMap<String, f64>,
    /// Available drivers and requests in the demand window, all products together.
    pub supply: u32,
    pub demand: u32,
    /// The same for `product` alone (what its multiplier comes from).
    pub product_supply: Option<u32>,
    pub product_demand: Option<u32>,
}

/// Everything the page polls, as one JSON document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub now_ms: i64,
    pub uptime_s: f64,
    pub phase: String,
    pub feeder: Option<Feeder>,
    pub area: Option<Area>,
    /// `[min_lat, min_lon, max_lat, max_lon]` of what to draw: the area and every cell.
    pub bounds: Option<[f64; 4]>,
    /// The colour scale: 1.0 up to the pricer's cap.
    pub scale_max: f64,
    pub cells: Vec<CellView>,
    pub surging_cells: usize,
    pub max_multiplier: f64,
    pub top_cells: Vec<CellView>,
    pub operators: Vec<OperatorView>,
    pub matches: MatchStats,
    pub recent_proposals: Vec<ProposalView>,
    pub surge_records: u64,
    pub undecodable_records: u64,
}

/// The demo's view of the pipeline.
#[derive(Debug, Clone)]
pub struct ViewState {
    started_ms: i64,
    phase: String,
    cap: f64,
    area: Option<Area>,
    feeder: Option<Feeder>,
    published: BTreeMap<Cell, BTreeMap<&'static str, Published>>,
    tracked: BTreeMap<Cell, Tracked>,
    operators: Vec<OperatorView>,
    matches: MatchStats,
    recent: VecDeque<ProposalView>,
    surge_records: u64,
    undecodable: u64,
}

impl ViewState {
    /// An empty view; `cap` is the highest multiplier the pricer publishes (the top of the
    /// colour scale).
    pub fn new(started_ms: i64, cap: f64) -> Self {
        ViewState {
            started_ms,
            phase: "starting".into(),
            cap: if cap.is_finite() && cap > 1.0 {
                cap
            } else {
                3.0
            },
            area: None,
            feeder: None,
            published: BTreeMap::new(),
            tracked: BTreeMap::new(),
            operators: Vec::new(),
            matches: MatchStats::default(),
            recent: VecDeque::new(),
            surge_records: 0,
            undecodable: 0,
        }
    }

    /// What the demo is doing (`starting the local stack`, `running`, `stopping`...).
    pub fn set_phase(&mut self, phase: impl Into<String>) {
        self.phase = phase.into();
    }

    /// The simulated city, drawn as the map's outline.
    pub fn set_area(&mut self, area: Option<Area>) {
        self.area = area;
    }

    /// What feeds the pipeline.
    pub fn set_feeder(&mut self, feeder: Feeder) {
        self.feeder = Some(feeder);
    }

    /// Updates the feeder's state (`running`, `finished`, `exited 2`...).
    pub fn set_feeder_state(&mut self, state: impl Into<String>) {
        if let Some(f) = &mut self.feeder {
            f.state = state.into();
        }
    }

    /// Declares an operator (in display order) before its first scrape.
    pub fn add_operator(&mut self, name: &str, http_port: u16, log: &str) {
        self.operators.push(OperatorView {
            name: name.to_string(),
            pid: None,
            http_port,
            log: log.to_string(),
            state: ProcessState::Starting,
            records_in: 0.0,
            in_per_s: 0.0,
            records_out: 0.0,
            out_per_s: 0.0,
            dlq: 0.0,
            lag: 0.0,
            history: VecDeque::new(),
        });
    }

    fn operator_mut(&mut self, name: &str) -> Option<&mut OperatorView> {
        self.operators.iter_mut().find(|o| o.name == name)
    }

    /// The operators, in display order.
    #[cfg(test)]
    pub fn operators(&self) -> &[OperatorView] {
        &self.operators
    }

    /// Records an operator's process id.
    pub fn set_pid(&mut self, name: &str, pid: u32) {
        if let Some(o) = self.operator_mut(name) {
            o.pid = Some(pid);
        }
    }

    /// Sets an operator's process state (started, stopping, exited).
    pub fn set_state(&mut self, name: &str, state: ProcessState) {
        if let Some(o) = self.operator_mut(name) {
            o.state = state;
        }
    }

    /// A scrape of `name`'s `/metrics` failed: shown as not answering, unless the process is
    /// still starting or already gone.
    pub fn scrape_failed(&mut self, name: &str) {
        if let Some(o) = self.operator_mut(name)
            && o.state == ProcessState::Running
        {
            o.state = ProcessState::NotAnswering;
        }
    }

    /// Applies one scrape of `name`'s `/metrics` (Prometheus text) taken at `now_ms`.
    pub fn apply_metrics(&mut self, name: &str, text: &str, now_ms: i64) {
        let samples = parse_prometheus(text);
        // `+ 0.0`: an empty sum of floats is -0.0, which would print as "-0".
        let total = |metric: &str| -> f64 {
            samples
                .iter()
                .filter(|s| s.name == metric)
                .map(|s| s.value)
                .sum::<f64>()
                + 0.0
        };
        let records_in = total("surgeflow_records_in_total");
        let records_out = total("surgeflow_records_out_total");
        let dlq = total("surgeflow_dlq_records_total");
        let lag = total("surgeflow_consumer_lag_records");
        if name == "matcher" {
            self.matches.accepted = total("surgeflow_match_accepted_total");
            self.matches.declined = total("surgeflow_match_declined_total");
            self.matches.timeouts = total("surgeflow_match_timeouts_total");
        }
        let Some(o) = self.operator_mut(name) else {
            return;
        };
        if o.history
            .back()
            .is_some_and(|&(_, i, out)| records_in < i || records_out < out)
        {
            o.history.clear(); // the process restarted: its counters began again
        }
        o.history.push_back((now_ms, records_in, records_out));
        // Keep one scrape at or before the start of the window, and every later one.
        while o
            .history
            .get(1)
            .is_some_and(|&(t, _, _)| t <= now_ms - RATE_WINDOW_MS)
        {
            o.history.pop_front();
        }
        match o.history.front() {
            Some(&(at, before_in, before_out)) if at < now_ms => {
                let seconds = (now_ms - at) as f64 / 1000.0;
                o.in_per_s = (records_in - before_in) / seconds;
                o.out_per_s = (records_out - before_out) / seconds;
            }
            _ => {
                o.in_per_s = 0.0;
                o.out_per_s = 0.0;
            }
        }
        o.records_in = records_in;
        o.records_out = records_out;
        o.dlq = dlq;
        o.lag = lag;
        if matches!(o.state, ProcessState::Starting | ProcessState::NotAnswering) {
            o.state = ProcessState::Running;
        }
    }

    /// Applies one record of `surge.multiplier`.
    pub fn apply_surge(&mut self, record: &SurgeMultiplier) {
        self.surge_records += 1;
        let Ok(cell) = Cell::parse(&record.cell) else {
            self.undecodable += 1;
            return;
        };
        let product = record.product.symbol();
        let products = self.published.entry(cell).or_default();
        products.insert(
            product,
            Published {
                multiplier: if record.stale { 1.0 } else { record.multiplier },
                supply: record.supply,
                demand: record.demand,
                stale: record.stale,
            },
        );
        if products.values().all(|p| p.stale) {
            // The pricer forgot the cell: so does the map (unless the pricer tracks it again).
            self.published.remove(&cell);
        }
    }

    /// Replaces the pricer's view of the cells it tracks (one `GET /cells` answer).
    pub fn apply_pricer_cells(&mut self, cells: &[PricerCell]) {
        let mut tracked: BTreeMap<Cell, Tracked> = BTreeMap::new();
        for c in cells {
            let Ok(cell) = Cell::parse(&c.cell) else {
                continue;
            };
            let t = tracked.entry(cell).or_default();
            t.multiplier = t.multiplier.max(c.multiplier);
            t.supply += c.supply;
            t.demand += c.demand;
            t.by_product.insert(c.product.clone(), (c.supply, c.demand));
        }
        self.tracked = tracked;
    }

    /// Applies one record of `match.proposal`.
    pub fn apply_proposal(&mut self, p: &MatchProposal) {
        let m = &mut self.matches;
        m.proposals += 1;
        if p.attempt <= 1 {
            m.first_attempts += 1;
        }
        if p.eta_s.is_finite() {
            m.eta_sum += p.eta_s;
        }
        m.mean_eta_s = m.eta_sum / m.proposals as f64;
        self.recent.push_front(ProposalView {
            trip_id: p.trip_id.clone(),
            driver_id: p.driver_id.clone(),
            product: p.product.symbol(),
            eta_s: p.eta_s,
            distance_m: p.distance_m,
            surge_multiplier: p.surge_multiplier,
            attempt: p.attempt,
            proposed_at: p.proposed_at,
        });
        self.recent.truncate(RECENT_PROPOSALS);
    }

    /// Applies one record of `match.unfilled`.
    pub fn apply_unfilled(&mut self, u: &MatchUnfilled) {
        let m = &mut self.matches;
        m.unfilled += 1;
        match u.reason {
            UnfilledReason::NoDriverInRadius => m.unfilled_no_driver += 1,
            UnfilledReason::MaxAttempts => m.unfilled_max_attempts += 1,
            UnfilledReason::Deadline => m.unfilled_deadline += 1,
        }
    }

    /// Counts a record that did not decode.
    pub fn record_undecodable(&mut self) {
        self.undecodable += 1;
    }

    /// Every cell to draw: those with a published multiplier and those the pricer tracks.
    fn cells(&self) -> Vec<CellView> {
        let mut keys: Vec<Cell> = self.published.keys().copied().collect();
        keys.extend(self.tracked.keys().copied());
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
            .map(|cell| {
                let b = cell.bbox();
                let published = self.published.get(&cell);
                let tracked = self.tracked.get(&cell);
                let products: BTreeMap<String, f64> = published
                    .into_iter()
                    .flatten()
                    .map(|(p, v)| ((*p).to_string(), v.multiplier))
                    .collect();
                let top = published.and_then(|ps| {
                    ps.iter()
                        .max_by(|a, b| a.1.multiplier.total_cmp(&b.1.multiplier))
                        .map(|(p, v)| ((*p).to_string(), v.multiplier))
                });
                let (multiplier, product) = match top {
                    Some((p, m)) => (m, Some(p)),
                    None => (tracked.map_or(1.0, |t| t.multiplier.max(1.0)), None),
                };
                let (supply, demand) = match (tracked, published) {
                    (Some(t), _) => (t.supply, t.demand),
                    (None, Some(ps)) => ps.values().fold((0, 0), |(s, d), v| {
                        (s + v.supply.max(0) as u32, d + v.demand.max(0) as u32)
                    }),
                    (None, None) => (0, 0),
                };
                // The pricer's current view of the product, else what was published with it.
                let of_product = product.as_deref().and_then(|p| {
                    tracked
                        .and_then(|t| t.by_product.get(p).copied())
                        .or_else(|| {
                            published
                                .and_then(|ps| ps.get(p))
                                .map(|v| (v.supply.max(0) as u32, v.demand.max(0) as u32))
                        })
                });
                CellView {
                    geohash: cell.to_string(),
                    bbox: [b.min_lat, b.min_lon, b.max_lat, b.max_lon],
                    multiplier,
                    product,
                    products,
                    supply,
                    demand,
                    product_supply: of_product.map(|(s, _)| s),
                    product_demand: of_product.map(|(_, d)| d),
                }
            })
            .collect()
    }

    /// The JSON the page polls.
    pub fn snapshot(&self, now_ms: i64) -> Snapshot {
        let cells = self.cells();
        let bounds = match self.area {
            Some(area) => Some(
                cells
                    .iter()
                    .fold(area_bounds(area), |b, c| union(b, c.bbox)),
            ),
            None => data_bounds(&cells),
        };
        let mut top: Vec<CellView> = cells
            .iter()
            .filter(|c| c.multiplier > 1.0)
            .cloned()
            .collect();
        top.sort_by(|a, b| {
            b.multiplier
                .total_cmp(&a.multiplier)
                .then(b.demand.cmp(&a.demand))
                .then(a.geohash.cmp(&b.geohash))
        });
        let surging_cells = top.len();
        let max_multiplier = top.first().map_or(1.0, |c| c.multiplier);
        top.truncate(TOP_CELLS);
        Snapshot {
            now_ms,
            uptime_s: ((now_ms - self.started_ms) as f64 / 1000.0).max(0.0),
            phase: self.phase.clone(),
            feeder: self.feeder.clone(),
            area: self.area,
            bounds,
            scale_max: self.cap,
            cells,
            surging_cells,
            max_multiplier,
            top_cells: top,
            operators: self.operators.clone(),
            matches: self.matches.clone(),
            recent_proposals: self.recent.iter().cloned().collect(),
            surge_records: self.surge_records,
            undecodable_records: self.undecodable,
        }
    }

    /// The terminal summary: a few lines, no colours, fit for a log as well as a terminal.
    pub fn summary(&self, now_ms: i64, page_url: &str) -> String {
        let s = self.snapshot(now_ms);
        let mut out = String::new();
        let feeder = s.feeder.as_ref().map_or_else(
            || "none".to_string(),
            |f| format!("{} ({}) {}", f.kind, f.detail, f.state),
        );
        let _ = writeln!(
            out,
            "surgeflow demo: {} {} {} | feeder: {feeder} | page: {page_url}",
            s.phase,
            if s.phase == "stopped" { "after" } else { "for" },
            clock(s.uptime_s),
        );
        let _ = writeln!(
            out,
            "  {:<16} {:<10} {:>9} {:>9} {:>8} {:>6}",
            "operator", "state", "in/s", "out/s", "lag", "dlq"
        );
        for o in &s.operators {
            let _ = writeln!(
                out,
                "  {:<16} {:<10} {:>9.1} {:>9.1} {:>8.0} {:>6.0}",
                o.name,
                o.state.label(),
                o.in_per_s,
                o.out_per_s,
                o.lag,
                o.dlq
            );
        }
        let m = &s.matches;
        let _ = writeln!(
            out,
            "  matches: {} proposals ({} first attempts, mean ETA {:.0} s), {:.0} accepted, {:.0} declined, {:.0} timed out; {} unfilled (no driver {}, max attempts {}, deadline {})",
            m.proposals,
            m.first_attempts,
            m.mean_eta_s,
            m.accepted,
            m.declined,
            m.timeouts,
            m.unfilled,
            m.unfilled_no_driver,
            m.unfilled_max_attempts,
            m.unfilled_deadline,
        );
        let _ = write!(
            out,
            "  surge: {} of {} cells above 1.0",
            s.surging_cells,
            s.cells.len()
        );
        if s.top_cells.is_empty() {
            out.push('\n');
        } else {
            out.push_str("; top:");
            for c in s.top_cells.iter().take(5) {
                let _ = write!(
                    out,
                    " {} x{:.1} ({} {}/{})",
                    c.geohash,
                    c.multiplier,
                    c.product.as_deref().unwrap_or("-"),
                    c.product_demand.unwrap_or(c.demand),
                    c.product_supply.unwrap_or(c.supply)
                );
            }
            out.push_str("  [demand/supply]\n");
        }
        out
    }
}

/// `1h02m03s`, `2m05s`, `7s`.
fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, min, sec) => format!("{min}m{sec:02}s"),
        (h, min, sec) => format!("{h}h{min:02}m{sec:02}s"),
    }
}

/// The smallest box holding both boxes (`[min_lat, min_lon, max_lat, max_lon]`).
fn union(a: [f64; 4], b: [f64; 4]) -> [f64; 4] {
    [
        a[0].min(b[0]),
        a[1].min(b[1]),
        a[2].max(b[2]),
        a[3].max(b[3]),
    ]
}

/// What to draw when the area is unknown (a replay): where the activity is. Each cell
/// weighs its available drivers and requests, and the box keeps the middle 96 % of the
/// weight along each axis, so the cells crossed by stray GPS fixes far from the city (taxis
/// "driving" across the sea) do not shrink the city to a dot. Below 50 cells, or before
/// any activity, every cell counts the same.
fn data_bounds(cells: &[CellView]) -> Option<[f64; 4]> {
    const ALL_BELOW: usize = 50;
    const TRIM: f64 = 0.02;
    let first = cells.first()?;
    if cells.len() < ALL_BELOW {
        return Some(cells.iter().fold(first.bbox, |b, c| union(b, c.bbox)));
    }
    let activity = |c: &CellView| f64::from(c.supply) + f64::from(c.demand);
    let quiet = cells.iter().all(|c| activity(c) == 0.0);
    let weight = |c: &CellView| if quiet { 1.0 } else { activity(c) };
    let total: f64 = cells.iter().map(weight).sum();
    // The range of one axis (`lo`, `hi`: the cell's edges on it) holding the middle weight.
    let range = |lo: usize, hi: usize| -> (f64, f64) {
        let mut by_centre: Vec<(f64, f64, f64)> = cells
            .iter()
            .map(|c| {
                (
                    (c.bbox[lo] + c.bbox[hi]) / 2.0,
                    c.bbox[hi] - c.bbox[lo],
                    weight(c),
                )
            })
            .collect();
        by_centre.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut seen = 0.0;
        let mut low = None;
        let mut high = by_centre[by_centre.len() - 1];
        for &entry in &by_centre {
            seen += entry.2;
            if low.is_none() && seen > total * TRIM {
                low = Some(entry);
            }
            if seen >= total * (1.0 - TRIM) {
                high = entry;
                break;
            }
        }
        let low = low.unwrap_or(by_centre[0]);
        (low.0 - low.1 / 2.0, high.0 + high.1 / 2.0)
    };
    let (min_lat, max_lat) = range(0, 2);
    let (min_lon, max_lon) = range(1, 3);
    Some([min_lat, min_lon, max_lat, max_lon])
}

/// The bounding box of the city disc, `[min_lat, min_lon, max_lat, max_lon]`.
fn area_bounds(a: Area) -> [f64; 4] {
    const M_PER_DEGREE: f64 = 111_320.0;
    let dlat = a.radius_m / M_PER_DEGREE;
    let dlon = a.radius_m / (M_PER_DEGREE * a.center_lat.to_radians().cos().max(0.01));
    [
        a.center_lat - dlat,
        a.center_lon - dlon,
        a.center_lat + dlat,
        a.center_lon + dlon,
    ]
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses the Prometheus text exposition format: comments skipped, one sample per line,
/// `name{label="value",...} number [timestamp]`. Lines that do not parse are skipped: a
/// metric this view does not know must not hide the ones it does.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_sample).collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y\"z"}` (after the opening brace); returns the labels and what follows
/// the closing brace.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = text.find('=')?;
        let key = text[..eq].trim().to_string();
        let mut chars = text[eq + 1..].char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut end = None;
        let mut escaped = false;
        for (i, c) in chars {
            match (escaped, c) {
                (true, 'n') => {
                    value.push('\n');
                    escaped = false;
                }
                (true, c) => {
                    value.push(c);
                    escaped = false;
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        labels.push((key, value));
        text = &text[end?..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use surgeflow_schema::Product;

    fn surge(cell: &str, product: Product, multiplier: f64, stale: bool) -> SurgeMultiplier {
        SurgeMultiplier {
            cell: cell.into(),
            product,
            multiplier,
            supply: 2,
            demand: 7,
            stale,
            window_start: 0,
            window_end: 300_000,
            computed_at: 300_000,
        }
    }

    fn proposal(trip: &str, attempt: i32, eta_s: f64) -> MatchProposal {
        MatchProposal {
            proposal_id: format!("{trip}:{attempt}"),
            trip_id: trip.into(),
            rider_id: "rider-1".into(),
            driver_id: "driver-9".into(),
            product: Product::Economy,
            distance_m: 800.0,
            eta_s,
            score: 1.0,
            surge_multiplier: 1.4,
            attempt,
            proposed_at: 1_000,
            expires_at: 16_000,
        }
    }

    fn unfilled(reason: UnfilledReason) -> MatchUnfilled {
        MatchUnfilled {
            trip_id: "trip-1".into(),
            rider_id: "rider-1".into(),
            product: Product::Xl,
            pickup_lat: 40.75,
            pickup_lon: -73.98,
            attempts: 3,
            reason,
            decided_at: 5_000,
        }
    }

    const METRICS: &str = r#"# TYPE surgeflow_records_in_total counter
surgeflow_records_in_total{operator="matcher",topic="p.geo.driver"} 100
surgeflow_records_in_total{operator="matcher",topic="p.geo.trip"} 20
surgeflow_records_out_total{operator="matcher",topic="p.match.proposal"} 7
surgeflow_dlq_records_total{operator="matcher",reason="malformed"} 1
surgeflow_consumer_lag_records{operator="matcher",topic="p.geo.driver",partition="0"} 3
surgeflow_consumer_lag_records{operator="matcher",topic="p.geo.driver",partition="1"} 4
surgeflow_match_accepted_total{operator="matcher"} 5
surgeflow_match_declined_total{operator="matcher"} 1
surgeflow_match_timeouts_total{operator="matcher"} 2
surgeflow_batch_records_bucket{operator="matcher",le="+Inf"} 12
"#;

    #[test]
    fn parses_prometheus_text() {
        let samples = parse_prometheus(
            "# HELP x help\n\
             up 1\n\
             a_total{k=\"v\",q=\"with \\\"quote\\\", comma\"} 2.5 1700000000\n\
             b{le=\"+Inf\"} +Inf\n\
             broken{k=\"v\" 3\n\
             \n",
        );
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].name, "up");
        assert_eq!(samples[0].value, 1.0);
        assert_eq!(
            samples[1].labels,
            vec![
                ("k".to_string(), "v".to_string()),
                ("q".to_string(), "with \"quote\", comma".to_string())
            ]
        );
        assert_eq!(samples[1].value, 2.5);
        assert_eq!(samples[2].value, f64::INFINITY);
    }

    #[test]
    fn rates_come_from_two_scrapes() {
        let mut view = ViewState::new(0, 3.0);
        view.add_operator("matcher", 9104, "matcher.log");
        view.apply_metrics("matcher", METRICS, 10_000);
        let o = &view.operators()[0];
        assert_eq!(o.state, ProcessState::Running);
        assert_eq!(
            (o.records_in, o.records_out, o.dlq, o.lag),
            (120.0, 7.0, 1.0, 7.0)
        );
        assert_eq!(o.in_per_s, 0.0, "one scrape gives no rate yet");
        let later = METRICS
            .replace("} 100", "} 300")
            .replace("p.match.proposal\"} 7", "p.match.proposal\"} 17");
        view.apply_metrics("matcher", &later, 12_000);
        let o = &view.operators()[0];
        assert_eq!(o.in_per_s, 100.0);
        assert_eq!(o.out_per_s, 5.0);
        // Later scrapes average over the last ten seconds.
        let at = |records: u32| later.replace("} 300", &format!("}} {records}"));
        view.apply_metrics("matcher", &at(500), 14_000);
        assert_eq!(view.operators()[0].in_per_s, 100.0, "(520 - 120) / 4 s");
        view.apply_metrics("matcher", &at(500), 20_000);
        assert_eq!(view.operators()[0].in_per_s, 40.0, "(520 - 120) / 10 s");
        view.apply_metrics("matcher", &at(500), 22_000);
        assert_eq!(view.operators()[0].in_per_s, 20.0, "(520 - 320) / 10 s");
        view.apply_metrics("matcher", &at(500), 40_000);
        assert_eq!(view.operators()[0].in_per_s, 0.0, "nothing new for 18 s");
        // A restarted process starts its counters again: no negative rate.
        view.apply_metrics("matcher", METRICS, 42_000);
        assert_eq!(view.operators()[0].in_per_s, 0.0);
        view.apply_metrics("matcher", &at(140), 44_000);
        assert_eq!(view.operators()[0].in_per_s, 20.0);
        let m = view.snapshot(14_000).matches;
        assert_eq!((m.accepted, m.declined, m.timeouts), (5.0, 1.0, 2.0));
    }

    #[test]
    fn scrape_failures_and_exits_show_in_the_state() {
        let mut view = ViewState::new(0, 3.0);
        view.add_operator("surge-pricer", 9103, "p.log");
        view.scrape_failed("surge-pricer");
        assert_eq!(view.operators()[0].state, ProcessState::Starting);
        view.apply_metrics("surge-pricer", "", 1);
        view.scrape_failed("surge-pricer");
        assert_eq!(view.operators()[0].state, ProcessState::NotAnswering);
        view.set_state("surge-pricer", ProcessState::Exited(Some(1)));
        view.scrape_failed("surge-pricer");
        assert_eq!(
            view.operators()[0].state,
            ProcessState::Exited(Some(1)),
            "a gone process stays gone"
        );
        assert!(view.summary(1_000, "http://x/").contains("exited 1"));
    }

    #[test]
    fn cells_take_the_highest_product_and_stale_ones_leave() {
        let mut view = ViewState::new(0, 3.0);
        view.apply_surge(&surge("dr5ru7", Product::Economy, 1.5, false));
        view.apply_surge(&surge("dr5ru7", Product::Xl, 2.2, false));
        view.apply_surge(&surge("dr5ruk", Product::Economy, 1.2, false));
        let s = view.snapshot(60_000);
        assert_eq!(s.cells.len(), 2);
        let c = &s.cells[0];
        assert_eq!(c.geohash, "dr5ru7");
        assert_eq!((c.multiplier, c.product.as_deref()), (2.2, Some("XL")));
        assert_eq!(c.products.len(), 2);
        assert_eq!((c.supply, c.demand), (4, 14));
        assert_eq!((c.product_supply, c.product_demand), (Some(2), Some(7)));
        let b = Cell::parse("dr5ru7").unwrap().bbox();
        assert_eq!(c.bbox, [b.min_lat, b.min_lon, b.max_lat, b.max_lon]);
        assert_eq!(s.surging_cells, 2);
        assert_eq!(s.max_multiplier, 2.2);
        assert_eq!(s.top_cells[0].geohash, "dr5ru7");
        assert_eq!(s.uptime_s, 60.0);

        // XL goes back to 1.0 (stale); Economy still surges, so the cell stays at 1.5.
        view.apply_surge(&surge("dr5ru7", Product::Xl, 1.0, true));
        assert_eq!(view.snapshot(0).cells[0].multiplier, 1.5);
        view.apply_surge(&surge("dr5ru7", Product::Economy, 1.0, true));
        let s = view.snapshot(0);
        assert_eq!(
            s.cells.len(),
            1,
            "a cell stale in every product is forgotten"
        );
        assert_eq!(s.cells[0].geohash, "dr5ruk");
        assert_eq!(s.surge_records, 5);
        view.apply_surge(&surge("not a geohash", Product::Economy, 1.2, false));
        assert_eq!(view.snapshot(0).undecodable_records, 1);
    }

    #[test]
    fn the_pricer_view_adds_calm_cells_with_supply_and_demand() {
        let mut view = ViewState::new(0, 3.0);
        view.apply_surge(&surge("dr5ru7", Product::Economy, 1.5, false));
        let report = |cell: &str, product: &str, multiplier, supply, demand| PricerCell {
            cell: cell.into(),
            product: product.into(),
            multiplier,
            supply,
            demand,
        };
        view.apply_pricer_cells(&[
            report("dr5ru7", "ECONOMY", 1.5, 1, 6),
            report("dr5ru7", "XL", 1.0, 2, 0),
            report("dr5rsz", "ECONOMY", 1.0, 9, 1),
        ]);
        let s = view.snapshot(0);
        assert_eq!(s.cells.len(), 2);
        let calm = s.cells.iter().find(|c| c.geohash == "dr5rsz").unwrap();
        assert_eq!((calm.multiplier, calm.product.clone()), (1.0, None));
        assert_eq!((calm.supply, calm.demand), (9, 1));
        let hot = s.cells.iter().find(|c| c.geohash == "dr5ru7").unwrap();
        assert_eq!((hot.multiplier, hot.supply, hot.demand), (1.5, 3, 6));
        assert_eq!((hot.product_supply, hot.product_demand), (Some(1), Some(6)));
        assert_eq!((calm.product_supply, calm.product_demand), (None, None));
        assert_eq!(s.surging_cells, 1);
        // The next answer replaces the previous one.
        view.apply_pricer_cells(&[]);
        assert_eq!(view.snapshot(0).cells.len(), 1);
    }

    #[test]
    fn bounds_cover_the_area_and_every_cell() {
        let mut view = ViewState::new(0, 3.0);
        assert_eq!(view.snapshot(0).bounds, None);
        view.set_area(Some(Area {
            center_lat: 40.758,
            center_lon: -73.9855,
            radius_m: 1_000.0,
        }));
        let b = view.snapshot(0).bounds.unwrap();
        assert!((b[2] - b[0] - 2.0 * 1_000.0 / 111_320.0).abs() < 1e-9);
        assert!(
            b[3] - b[1] > b[2] - b[0],
            "a degree of longitude is shorter"
        );
        // A cell far outside the city widens the bounds.
        view.apply_surge(&surge("dr72h8", Product::Economy, 1.3, false));
        let wide = view.snapshot(0).bounds.unwrap();
        let cell = Cell::parse("dr72h8").unwrap().bbox();
        assert!(wide[2] >= cell.max_lat && wide[2] > b[2]);
    }

    #[test]
    fn without_an_area_a_few_stray_cells_do_not_set_the_bounds() {
        let mut view = ViewState::new(0, 3.0);
        view.apply_surge(&surge("dr5ru7", Product::Economy, 1.3, false));
        view.apply_surge(&surge("dr5ruk", Product::Economy, 1.3, false));
        let b = view.snapshot(0).bounds.unwrap();
        let (one, two) = (
            Cell::parse("dr5ru7").unwrap().bbox(),
            Cell::parse("dr5ruk").unwrap().bbox(),
        );
        assert_eq!(b[0], one.min_lat.min(two.min_lat));
        assert_eq!(b[3], one.max_lon.max(two.max_lon));
        // A city of 81 busy cells around Midtown, and a line of quiet ones across the sea.
        let strays: Vec<(f64, f64)> = (0..40)
            .map(|i| (41.45, -70.0 + f64::from(i)))
            .chain([(30.0, -60.0), (40.0, -75.0), (0.5, 0.5)])
            .collect();
        let reports: Vec<PricerCell> = Cell::parse("dr5ru7")
            .unwrap()
            .disk(4)
            .map(|c| (c, 8))
            .chain(
                strays
                    .iter()
                    .map(|&(lat, lon)| (Cell::from_lat_lon(lat, lon, 6).unwrap(), 0)),
            )
            .map(|(c, supply)| PricerCell {
                cell: c.to_string(),
                product: "ECONOMY".into(),
                multiplier: 1.0,
                supply,
                demand: 0,
            })
            .collect();
        view.apply_pricer_cells(&reports);
        let b = view.snapshot(0).bounds.unwrap();
        assert!(b[0] > 40.5 && b[2] < 41.0, "{b:?}");
        assert!(b[1] > -74.3 && b[3] < -73.7, "{b:?}");
        // With the simulated city's disc, everything is drawn.
        view.set_area(Some(Area {
            center_lat: 40.758,
            center_lon: -73.9855,
            radius_m: 8_000.0,
        }));
        assert!(view.snapshot(0).bounds.unwrap()[0] < 30.0);
    }

    #[test]
    fn match_stats_count_proposals_and_unfilled_requests() {
        let mut view = ViewState::new(0, 3.0);
        for i in 0..15 {
            view.apply_proposal(&proposal(&format!("trip-{i}"), 1 + i % 2, 100.0));
        }
        view.apply_unfilled(&unfilled(UnfilledReason::NoDriverInRadius));
        view.apply_unfilled(&unfilled(UnfilledReason::MaxAttempts));
        view.apply_unfilled(&unfilled(UnfilledReason::NoDriverInRadius));
        let s = view.snapshot(0);
        let m = &s.matches;
        assert_eq!((m.proposals, m.first_attempts), (15, 8));
        assert_eq!(m.mean_eta_s, 100.0);
        assert_eq!(
            (
                m.unfilled,
                m.unfilled_no_driver,
                m.unfilled_max_attempts,
                m.unfilled_deadline
            ),
            (3, 2, 1, 0)
        );
        assert_eq!(s.recent_proposals.len(), RECENT_PROPOSALS);
        assert_eq!(s.recent_proposals[0].trip_id, "trip-14", "newest first");
    }

    #[test]
    fn the_snapshot_is_the_json_the_page_reads() {
        let mut view = ViewState::new(0, 2.5);
        view.set_phase("running");
        view.set_feeder(Feeder {
            kind: "simulate",
            detail: "2000 drivers".into(),
            state: "running".into(),
        });
        view.add_operator("location-router", 9101, "/l.log");
        view.set_pid("location-router", 42);
        view.apply_surge(&surge("dr5ru7", Product::Economy, 1.5, false));
        view.apply_proposal(&proposal("trip-1", 1, 90.0));
        let json = serde_json::to_value(view.snapshot(3_000)).unwrap();
        assert_eq!(json["phase"], "running");
        assert_eq!(json["scale_max"], 2.5);
        assert_eq!(json["feeder"]["kind"], "simulate");
        assert_eq!(json["operators"][0]["name"], "location-router");
        assert_eq!(json["operators"][0]["pid"], 42);
        assert_eq!(json["operators"][0]["state"], "starting");
        assert_eq!(json["cells"][0]["geohash"], "dr5ru7");
        assert_eq!(json["cells"][0]["bbox"].as_array().unwrap().len(), 4);
        assert_eq!(json["matches"]["proposals"], 1);
        assert_eq!(json["recent_proposals"][0]["product"], "ECONOMY");
        view.set_state("location-router", ProcessState::Exited(Some(2)));
        let json = serde_json::to_value(view.snapshot(3_000)).unwrap();
        assert_eq!(json["operators"][0]["state"]["exited"], 2);
    }

    #[test]
    fn the_summary_names_rates_matches_and_top_cells() {
        let mut view = ViewState::new(0, 3.0);
        view.set_phase("running");
        view.add_operator("matcher", 9104, "m.log");
        view.apply_metrics("matcher", METRICS, 0);
        view.apply_surge(&surge("dr5ru7", Product::Economy, 2.0, false));
        view.apply_proposal(&proposal("trip-1", 1, 60.0));
        view.apply_unfilled(&unfilled(UnfilledReason::Deadline));
        let text = view.summary(125_000, "http://127.0.0.1:8088/");
        assert!(text.contains("running for 2m05s"), "{text}");
        assert!(text.contains("http://127.0.0.1:8088/"), "{text}");
        assert!(text.contains("matcher"), "{text}");
        assert!(text.contains("1 proposals"), "{text}");
        assert!(text.contains("5 accepted"), "{text}");
        assert!(text.contains("1 unfilled"), "{text}");
        assert!(text.contains("dr5ru7 x2.0 (ECONOMY 7/2)"), "{text}");
        assert_eq!(clock(3_725.0), "1h02m05s");
        assert_eq!(clock(7.9), "7s");
    }
}
