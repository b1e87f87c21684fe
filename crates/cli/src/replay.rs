//! `surgeflow replay FILE`: real taxi trips (DEBS 2015 / NYC TLC 2013 format, sorted by
//! drop-off time) turned into `location.update` and `trip.*` events by `surgeflow-replay` and
//! produced as Avro in event-time order, through the same producer as `surgeflow simulate`.
//!
//! Pacing: by default the file's clock runs in real time; `--speed N` runs it N times faster,
//! `--speed max` as fast as the producer goes. Event times are the file's own (New York local
//! time converted to UTC) unless `--start-ms` moves the first event to a given instant (or
//! `now`). The conversion rules are in `docs/replay.md`.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use surgeflow_replay::time::{Utc, parse_new_york_ms};
use surgeflow_replay::{DirtyClass, Replay, ReplayConfig, ReplayStats, Until};
use surgeflow_sim::TOPICS;
use surgeflow_topology::Topology;

use crate::produce::{EventProducer, Progress, now_ms, parse_duration};
use crate::{Failure, Outcome, load_topology};

/// How many unparseable rows are printed one by one; the rest are only counted.
const PRINTED_ROW_ERRORS: u64 = 10;

#[derive(Args)]
pub struct ReplayArgs {
    /// The trip file: 17 comma-separated fields per line (DEBS 2015 / NYC TLC 2013), sorted by
    /// drop-off time.
    file: PathBuf,
    /// How fast the file's clock runs: N times real time, or `max` (as fast as the producer
    /// goes).
    #[arg(long, value_parser = parse_speed, default_value = "1")]
    speed: Speed,
    /// Move every event time by the same amount so that the first event is at this instant:
    /// UTC milliseconds since the epoch, or `now`. Default: the file's own times.
    #[arg(long, value_parser = parse_start)]
    start_ms: Option<Start>,
    /// Produce only events before this point of the file's time: a New York local time
    /// (`2013-01-01 00:30:00`), or a duration after the first event (`15m`).
    #[arg(long, value_parser = parse_until)]
    until: Option<Until>,
    /// Read at most this many rows of the file.
    #[arg(long)]
    max_rows: Option<u64>,
    /// Stop after this many events.
    #[arg(long)]
    max_events: Option<u64>,
    /// Time between two pings of a taxi [default: 4s].
    #[arg(long, value_parser = parse_duration)]
    ping_interval: Option<Duration>,
    /// How long a taxi is online before the first pickup and after the last drop-off of a
    /// shift [default: 2m].
    #[arg(long, value_parser = parse_duration)]
    session_edge: Option<Duration>,
    /// The longest wait for the next fare within a shift; a longer gap takes the taxi offline
    /// [default: 1h].
    #[arg(long, value_parser = parse_duration)]
    max_idle_gap: Option<Duration>,
    /// Longer trips are implausible: their trip events are produced, the taxi's pings ignore
    /// them [default: 2h].
    #[arg(long, value_parser = parse_duration)]
    max_trip: Option<Duration>,
    /// Write to `<PREFIX>.location.update`, `<PREFIX>.trip.requested`, ... instead (for
    /// namespaced environments sharing a cluster).
    #[arg(long)]
    topic_prefix: Option<String>,
}

/// How fast the file's clock runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Speed {
    Times(f64),
    Max,
}

impl std::fmt::Display for Speed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Speed::Times(n) => write!(f, "{n}x"),
            Speed::Max => write!(f, "max"),
        }
    }
}

fn parse_speed(text: &str) -> Result<Speed, String> {
    if text == "max" {
        return Ok(Speed::Max);
    }
    match text.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok(Speed::Times(n)),
        _ => Err(format!("expected a positive factor or `max`, got `{text}`")),
    }
}

/// Where the first event goes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Start {
    Now,
    At(i64),
}

fn parse_start(text: &str) -> Result<Start, String> {
    if text == "now" {
        return Ok(Start::Now);
    }
    text.parse::<i64>()
        .map(Start::At)
        .map_err(|_| format!("expected UTC milliseconds since the epoch or `now`, got `{text}`"))
}

fn parse_until(text: &str) -> Result<Until, String> {
    if let Ok(at) = parse_new_york_ms(text) {
        return Ok(Until::At(at));
    }
    parse_duration(text)
        .map(|d| Until::AfterFirstEvent(d.as_millis().min(i64::MAX as u128) as i64))
        .map_err(|_| {
            format!(
                "expected a time like `2013-01-01 00:30:00` or a duration like 15m, got `{text}`"
            )
        })
}

fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// The conversion parameters the flags give.
fn config(args: &ReplayArgs) -> ReplayConfig {
    let defaults = ReplayConfig::default();
    ReplayConfig {
        ping_interval_ms: args.ping_interval.map_or(defaults.ping_interval_ms, millis),
        session_edge_ms: args.session_edge.map_or(defaults.session_edge_ms, millis),
        max_idle_gap_ms: args.max_idle_gap.map_or(defaults.max_idle_gap_ms, millis),
        max_trip_ms: args.max_trip.map_or(defaults.max_trip_ms, millis),
        until: args.until,
        max_rows: args.max_rows,
        ..defaults
    }
}

/// The routers' time limits, to warn when the replayed times will be dead-lettered.
struct TimeLimits {
    /// The smallest non-zero `max_age_ms` of the two routers (0: no age check).
    max_age_ms: i64,
    max_future_ms: i64,
    warned_old: bool,
    warned_future: bool,
}

impl TimeLimits {
    fn of(topology: &Topology) -> Self {
        let ops = &topology.operators;
        let ages = [
            ops.location_router.as_ref().map(|o| o.params.max_age_ms),
            ops.trip_router.as_ref().map(|o| o.params.max_age_ms),
        ];
        let futures = [
            ops.location_router.as_ref().map(|o| o.params.max_future_ms),
            ops.trip_router.as_ref().map(|o| o.params.max_future_ms),
        ];
        TimeLimits {
            max_age_ms: ages
                .into_iter()
                .flatten()
                .filter(|a| *a > 0)
                .min()
                .unwrap_or(0) as i64,
            max_future_ms: futures.into_iter().flatten().min().unwrap_or(u64::MAX) as i64,
            warned_old: false,
            warned_future: false,
        }
    }

    /// Warns, once each, when an event is older or further ahead than the routers accept.
    fn check(&mut self, event_ms: i64, now: i64) {
        if !self.warned_old && self.max_age_ms > 0 && event_ms < now - self.max_age_ms {
            self.warned_old = true;
            eprintln!(
                "surgeflow: note: events are {} old, beyond the routers' max_age_ms ({} ms): they will be dead-lettered as too_old. Replay with --start-ms now (or a recent instant), or set the routers' max_age_ms to 0 for historical replays.",
                age(now - event_ms),
                self.max_age_ms
            );
        }
        if !self.warned_future && event_ms > now.saturating_add(self.max_future_ms) {
            self.warned_future = true;
            eprintln!(
                "surgeflow: note: event time is now {} ahead of the wall clock, beyond the routers' max_future_ms ({} ms): such events are dead-lettered as future_timestamp. Give --start-ms an instant further in the past, or lower --speed.",
                age(event_ms - now),
                self.max_future_ms
            );
        }
    }
}

/// A duration for humans: `3.2 s`, `12 min`, `4748 days`.
fn age(ms: i64) -> String {
    let s = ms as f64 / 1000.0;
    if s < 120.0 {
        format!("{s:.1} s")
    } else if s < 7_200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3_600.0)
    } else {
        format!("{:.0} days", s / 86_400.0)
    }
}

pub fn run(args: ReplayArgs, path: &Path) -> Outcome {
    let topology = load_topology(path)?;
    EventProducer::check_declared(&topology, path, args.topic_prefix.as_deref())?;
    let unreadable =
        |e: std::io::Error| Failure::usage(format!("cannot read {}: {e}", args.file.display()));
    let file = File::open(&args.file).map_err(unreadable)?;
    if !file.metadata().map_err(unreadable)?.is_file() {
        return Err(Failure::usage(format!(
            "cannot read {}: not a file",
            args.file.display()
        )));
    }
    let mut config = config(&args);
    if let Some(router) = &topology.operators.trip_router {
        config.max_trip_speed_mps = router.params.max_trip_speed_mps;
    }
    config.validate().map_err(Failure::usage)?;
    let mut producer = EventProducer::connect(&topology, path, args.topic_prefix.as_deref())?;
    let mut limits = TimeLimits::of(&topology);

    config.start_ms = match args.start_ms {
        Some(Start::Now) => Some(now_ms()),
        Some(Start::At(ms)) => Some(ms),
        None => None,
    };
    let mut replay =
        Replay::new(BufReader::with_capacity(1 << 16, file), config).map_err(Failure::usage)?;
    let reading =
        |e: std::io::Error| Failure::runtime(format!("reading {}: {e}", args.file.display()));
    let progress = Progress::new();
    let started = Instant::now();
    let mut progress_due = Duration::from_secs(1);
    let mut clock: Option<(i64, Instant)> = None;
    let mut printed_errors = 0u64;
    let max_events = args.max_events.unwrap_or(u64::MAX);
    while producer.produced() < max_events {
        let Some(event) = replay.next_event().map_err(reading)? else {
            break;
        };
        for error in replay.drain_errors() {
            printed_errors += 1;
            if printed_errors <= PRINTED_ROW_ERRORS {
                eprintln!("surgeflow: {}: {error}", args.file.display());
            }
            if printed_errors == PRINTED_ROW_ERRORS + 1 {
                eprintln!("surgeflow: further unparseable rows are only counted");
            }
        }
        let t = event.event_time();
        let (t0, wall0) = *clock.get_or_insert((t, Instant::now()));
        if let Speed::Times(n) = args.speed {
            let due = Duration::from_secs_f64(((t - t0) as f64 / 1000.0 / n).max(0.0));
            while wall0.elapsed() < due {
                producer.poll();
                std::thread::sleep(
                    due.saturating_sub(wall0.elapsed())
                        .min(Duration::from_millis(50)),
                );
                show(&progress, &mut progress_due, started, &producer, &replay);
            }
        }
        limits.check(t, now_ms());
        producer.send(&event)?;
        producer.poll();
        show(&progress, &mut progress_due, started, &producer, &replay);
    }
    let delivered = producer.finish();
    progress.finish();
    summary(&args, &replay, started.elapsed());
    delivered?;
    Ok(0)
}

/// The progress line, once a second.
fn show<R>(
    progress: &Progress,
    due: &mut Duration,
    started: Instant,
    producer: &EventProducer,
    replay: &Replay<R>,
) {
    let elapsed = started.elapsed();
    if elapsed < *due {
        return;
    }
    *due = elapsed + Duration::from_secs(1);
    progress.show(elapsed, producer.produced(), || {
        let s = replay.stats();
        let (first, last) = (s.first_event_ms.unwrap_or(0), s.last_event_ms.unwrap_or(0));
        format!(
            "event time {} (+{}s) | rows {} | pings {} requests {} completed {} | dirty rows {}",
            Utc(last),
            (last - first) / 1000,
            s.rows,
            s.events_to("location.update"),
            s.events_to("trip.requested"),
            s.events_to("trip.completed"),
            s.dirty_rows,
        )
    });
}

/// Where each dirty class ends up.
fn fate(class: DirtyClass) -> &'static str {
    match class {
        DirtyClass::NullIsland
        | DirtyClass::LatitudeOutOfRange
        | DirtyClass::LongitudeOutOfRange
        | DirtyClass::NonFiniteCoordinate => {
            "routers dead-letter the events at that position (dlq.location.update, dlq.trip)"
        }
        DirtyClass::OutsideArea => "routed as given",
        DirtyClass::ZeroDuration | DirtyClass::NegativeDuration => {
            "trip.completed dead-lettered as bad_duration when the meter time is 0 or less (dlq.trip)"
        }
        DirtyClass::ZeroDistance => "routed as given (no router rule rejects it)",
        DirtyClass::ImpossibleSpeed => {
            "trip.completed dead-lettered when the meter says so (bad_duration, implausible_speed); the pricer drops pings beyond 70 m/s"
        }
        DirtyClass::TooLong => "trip events produced; the taxi's pings ignore the trip",
        DirtyClass::Overlapping => "the earlier trip is cut short in the pings",
        DirtyClass::Late => "trip events produced out of order; pings ignore the trip",
    }
}

fn summary<R>(args: &ReplayArgs, replay: &Replay<R>, elapsed: Duration) {
    let s: &ReplayStats = replay.stats();
    let total = s.total_events();
    let secs = elapsed.as_secs_f64();
    let span = match (s.first_event_ms, s.last_event_ms) {
        (Some(first), Some(last)) => format!(
            ", event time {} to {} ({:.1} min)",
            Utc(first),
            Utc(last),
            (last - first) as f64 / 60_000.0
        ),
        _ => String::new(),
    };
    println!(
        "replayed {total} events from {} rows of {} in {secs:.1}s ({:.0}/s, speed {}){span}",
        s.rows,
        args.file.display(),
        total as f64 / secs.max(1e-9),
        args.speed,
    );
    for (topic, count) in TOPICS.iter().zip(s.events) {
        println!("  {topic:<20} {count}");
    }
    println!(
        "rows: {} trips, {} taxis, {} unparseable{}",
        s.trips,
        s.drivers,
        s.parse_error_total(),
        if s.headers > 0 {
            ", header skipped"
        } else {
            ""
        }
    );
    for (class, count) in &s.parse_errors {
        println!("  {class:<24} {count}");
    }
    println!("dirty rows (converted as recorded): {}", s.dirty_rows);
    for class in DirtyClass::ALL {
        let count = s.dirty(class);
        if count > 0 {
            println!("  {:<24} {count:>8}  {}", class.label(), fate(class));
        }
    }
    if !s.rejected.is_empty() {
        println!("events the routers will reject, by reason (expect them in the DLQ):");
        for ((topic, reason), count) in &s.rejected {
            println!("  {topic:<20} {reason:<24} {count}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_speeds_starts_and_windows() {
        assert_eq!(parse_speed("max"), Ok(Speed::Max));
        assert_eq!(parse_speed("60"), Ok(Speed::Times(60.0)));
        assert_eq!(parse_speed("0.5"), Ok(Speed::Times(0.5)));
        for bad in ["0", "-2", "inf", "fast"] {
            assert!(parse_speed(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_start("now"), Ok(Start::Now));
        assert_eq!(
            parse_start("1700000000000"),
            Ok(Start::At(1_700_000_000_000))
        );
        assert!(parse_start("yesterday").is_err());
        assert_eq!(
            parse_until("2013-01-01 00:30:00"),
            Ok(Until::At(1_357_018_200_000))
        );
        assert_eq!(parse_until("15m"), Ok(Until::AfterFirstEvent(900_000)));
        assert!(parse_until("soon").is_err());
        assert_eq!(age(1_500), "1.5 s");
        assert_eq!(age(600_000), "10 min");
        assert_eq!(age(410_000_000_000), "4745 days");
    }
}
