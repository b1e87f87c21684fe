//! `matcher`: proposes a driver for every trip request, retries with the next best driver when
//! one declines or lets the offer lapse, and reports the requests it gives up on, exactly
//! once, to `match.proposal` and `match.unfilled` (both keyed by trip id).
//!
//! It reads the region-keyed `geo.driver` and `geo.trip` topics, which are co-partitioned
//! (partition p of both carries the same regions), and keeps one
//! [`Matcher`](surgeflow_domain::matching::Matcher) engine per partition: the driver index,
//! scoring, the offer state machine, reservations, retries, deadlines and the restore
//! protocol are all there, pure and tested; this crate is the thin shell that feeds it
//! records, the tables and a clock, and publishes what it returns.
//!
//! **Inputs.** Every ping is fed, halo copies included, so a pickup near a region border sees
//! the drivers across it. Trip events are fed only from their home region's copy: a trip is
//! decided by exactly one engine, and its halo copies (there for the surge pricer's
//! smoothing) are skipped. Requests become `on_request`, answers `on_accepted` /
//! `on_declined`, cancellations `on_cancelled`; later lifecycle events only move the clock.
//!
//! **Tables.** `driver.profile` (ratings and acceptance rates, for scores) and
//! `surge.multiplier` (the multiplier a request is quoted at its pickup cell, carried by all its
//! proposals) are read whole by every instance, like Kafka Streams' global tables, with a
//! consumer of its own that never commits: read to their end before processing starts, then
//! polled without waiting once per batch (see `tables.rs`).
//!
//! **Time.** The engine's clock is event time: each home trip record advances it to its event
//! time before being applied, live and in replay alike, so answers and offer lapses keep the
//! order they had. Between records the clock runs on with the processing clock from the last
//! one (once per batch), so an offer lapses on time in a quiet partition, yet never runs
//! ahead of a backlog by more than the time between two batches.
//!
//! **Restore.** After a crash or a rebalance the runtime replays the last
//! [`replay_horizon_ms`] of a new partition's input with output suppressed. On the first
//! replayed record the partition's engine is created in restore mode and seeded with what was
//! already published (read back once per restore, see `published.rs`); when the runtime hands
//! the partition over, the restore ends and whatever it returns (decisions the lost instance
//! never published) is published. The seeds go in before the replay, not after: the engine
//! takes every decision the replay reaches from them, which is what makes a restored engine
//! continue exactly like one that never stopped. Seeded afterwards, answers replayed before
//! their offer exists would be ignored and accepted trips offered again.
//!
//! Metrics are listed in this crate's README.

mod published;
mod records;
mod tables;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use metrics::{Counter, Histogram};
use surgeflow_domain::matching::{
    MatchCounters, MatchOutput, MatchWeights, Matcher as Engine, MatcherConfig, REPLAY_MARGIN_MS,
    TripStatus, UnfilledReason, replay_horizon_ms,
};
use surgeflow_kafka::{ClientFactory, Encoder, Registry, SchemaCache};
use surgeflow_runtime::{
    Context, Operator, OperatorFactory, OutputTopic, Record, RecordError, TopicPartition,
};
use surgeflow_schema::{
    AvroRecord, DriverProfile, GeoDriver, GeoTrip, MatchProposal, MatchUnfilled, Product,
    SurgeMultiplier,
};
use surgeflow_topology::Topology;

use crate::published::Seeds;
use crate::records::{
    BlockingDecoder, ProfileChange, TripAction, driver_ping, proposal_record, trip_action,
    unfilled_record,
};
use crate::tables::Tables;

/// The operator's name in `topology.yaml`.
pub const NAME: &str = "matcher";

/// The engine settings from the topology.
///
/// # Errors
/// When the topology has no matcher section or its parameters are out of range.
pub fn engine_config(topology: &Topology) -> anyhow::Result<MatcherConfig> {
    let spec = topology
        .operators
        .matcher
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("topology has no operators.{NAME} section"))?;
    let p = &spec.params;
    let config = MatcherConfig {
        radius_m: p.radius_m,
        detour_factor: p.detour_factor,
        speed_mps: p.speed_mps,
        offer_timeout_ms: p.offer_timeout_ms,
        max_attempts: p.max_attempts,
        request_deadline_ms: p.request_deadline_ms,
        driver_ttl_ms: p.driver_ttl_ms,
        default_rating: p.default_rating,
        default_acceptance_rate: p.default_acceptance_rate,
        weights: MatchWeights {
            eta: p.weights.eta,
            rating: p.weights.rating,
            acceptance: p.weights.acceptance,
        },
        batch_window_ms: p.batch_window_ms,
        batch_max_trips: p.batch_max_trips,
        ..MatcherConfig::default()
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("operators.{NAME}.params: {e}"))?;
    Ok(config)
}

/// The topic among `topics` (the operator's `list`, for the message) whose values have `T`'s
/// schema: topics are recognised by their contract, not their name, which deployments
/// namespace.
fn topic_of<T: AvroRecord>(
    topology: &Topology,
    topics: &[String],
    list: &str,
) -> anyhow::Result<String> {
    topics
        .iter()
        .find(|t| {
            topology
                .topic(t)
                .and_then(|s| s.value.avro())
                .is_some_and(|a| a.declared_path().ends_with(T::SCHEMA_FILE))
        })
        .cloned()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "operators.{NAME}.{list}: no topic with the {} schema",
                T::SCHEMA_FILE
            )
        })
}

/// The engine clock for a batch tick: the clock after the partition's latest trip record
/// (`anchor.0`), run on by the processing time since that record was processed
/// (`anchor.1`).
fn tick_clock(anchor: (i64, i64), now_ms: i64) -> i64 {
    let (clock, seen_at) = anchor;
    clock.saturating_add(now_ms.saturating_sub(seen_at).max(0))
}

/// The matcher's own metrics, registered once (see the README).
struct Meters {
    proposals: Counter,
    accepted: Counter,
    declined: Counter,
    timeouts: Counter,
    unfilled_no_driver: Counter,
    unfilled_max_attempts: Counter,
    unfilled_deadline: Counter,
    request_to_proposal: Histogram,
}

impl Meters {
    fn register() -> Self {
        let unfilled = |reason: &'static str| metrics::counter!("surgeflow_match_unfilled_total", "operator" => NAME, "reason" => reason);
        Meters {
            proposals: metrics::counter!("surgeflow_match_proposals_total", "operator" => NAME),
            accepted: metrics::counter!("surgeflow_match_accepted_total", "operator" => NAME),
            declined: metrics::counter!("surgeflow_match_declined_total", "operator" => NAME),
            timeouts: metrics::counter!("surgeflow_match_timeouts_total", "operator" => NAME),
            unfilled_no_driver: unfilled("no_driver_in_radius"),
            unfilled_max_attempts: unfilled("max_attempts"),
            unfilled_deadline: unfilled("deadline"),
            request_to_proposal: metrics::histogram!("surgeflow_request_to_proposal_seconds", "operator" => NAME),
        }
    }

    /// Counts the answers and lapses an engine applied since `reported`, and moves
    /// `reported` up to `now`. Proposals and unfilled reports are counted as published
    /// instead, since a restore re-makes published offers.
    fn count_events(&self, reported: &mut MatchCounters, now: &MatchCounters) {
        self.accepted
            .increment(now.accepted.saturating_sub(reported.accepted));
        self.declined
            .increment(now.declined.saturating_sub(reported.declined));
        self.timeouts
            .increment(now.timeouts.saturating_sub(reported.timeouts));
        *reported = *now;
    }
}

/// One output topic and its encoder.
struct Sink<T: AvroRecord> {
    topic: OutputTopic,
    encoder: Encoder<T>,
}

impl<T: AvroRecord> Sink<T> {
    async fn register(outputs: &[String], name: &str, registry: &Registry) -> anyhow::Result<Self> {
        Ok(Sink {
            topic: OutputTopic::resolve(outputs, name).map_err(anyhow::Error::msg)?,
            encoder: Encoder::register(registry, &format!("{name}-value")).await?,
        })
    }

    fn emit(
        &self,
        ctx: &mut Context<'_>,
        key: &str,
        at: i64,
        value: &T,
    ) -> Result<(), RecordError> {
        ctx.out
            .emit_with(self.topic, key.as_bytes(), Some(at), |buf| {
                self.encoder.encode_into(value, buf)
            })
            .map_err(|e| RecordError::Fatal(e.to_string()))
    }
}

/// Where the engines' outputs go.
struct Publisher {
    proposals: Sink<MatchProposal>,
    unfilled: Sink<MatchUnfilled>,
    meters: Meters,
}

impl Publisher {
    /// Publishes outputs: proposals stamped with `proposed_at`, unfilled reports with
    /// `decided_at`, both keyed by trip id. Nothing while restoring (it was published
    /// before). `requested_at` holds the request times of trips not decided yet, for the
    /// request-to-proposal latency.
    fn publish(
        &self,
        outputs: Vec<MatchOutput<Product>>,
        requested_at: &mut HashMap<String, i64>,
        ctx: &mut Context<'_>,
    ) -> Result<(), RecordError> {
        if ctx.restoring {
            return Ok(());
        }
        for output in outputs {
            let requested = requested_at.remove(output.trip_id());
            match output {
                MatchOutput::Proposal(p) => {
                    if let Some(at) = requested {
                        let waited = ctx.now_ms.saturating_sub(at).max(0);
                        self.meters
                            .request_to_proposal
                            .record(waited as f64 / 1000.0);
                    }
                    self.meters.proposals.increment(1);
                    self.proposals
                        .emit(ctx, &p.trip_id, p.proposed_at, &proposal_record(&p))?;
                }
                MatchOutput::Unfilled(u) => {
                    match u.reason {
                        UnfilledReason::NoDriverInRadius => &self.meters.unfilled_no_driver,
                        UnfilledReason::MaxAttempts => &self.meters.unfilled_max_attempts,
                        UnfilledReason::Deadline => &self.meters.unfilled_deadline,
                    }
                    .increment(1);
                    self.unfilled
                        .emit(ctx, &u.trip_id, u.decided_at, &unfilled_record(&u))?;
                }
            }
        }
        Ok(())
    }
}

/// The engine of one partition number and what the shell keeps beside it.
struct Partition {
    engine: Engine<Product>,
    /// The engine clock after the latest home trip record, and the processing time it was
    /// processed at: batch ticks run the clock on from there.
    anchor: Option<(i64, i64)>,
    /// Request event times of live trips without a first decision yet (batched mode).
    requested_at: HashMap<String, i64>,
    /// The engine's counters already exported.
    reported: MatchCounters,
}

/// Applies a `driver.profile` change to an engine.
fn apply_profile(engine: &mut Engine<Product>, change: &ProfileChange) {
    match change {
        ProfileChange::Upsert(driver, profile) => {
            // The tables only hold profiles that passed the same check.
            if let Err(e) = engine.upsert_profile(driver, *profile) {
                tracing::warn!(operator = NAME, driver, error = %e, "profile not applied");
            }
        }
        ProfileChange::Remove(driver) => engine.remove_profile(driver),
    }
}

/// The matcher operator.
pub struct Matcher {
    config: MatcherConfig,
    driver_topic: String,
    trip_topic: String,
    proposal_topic: String,
    unfilled_topic: String,
    factory: ClientFactory,
    group_id: String,
    tables: Tables,
    partitions: BTreeMap<i32, Partition>,
    /// The published outputs read back for the restore under way, shared by every
    /// partition it restores; dropped when the restore ends.
    seeds: Option<Seeds>,
    publisher: Publisher,
    /// Profile changes taken from the table in this batch (kept to reuse its allocation).
    changes: Vec<ProfileChange>,
}

impl Matcher {
    fn horizon_ms(&self) -> i64 {
        i64::try_from(replay_horizon_ms(&self.config)).unwrap_or(i64::MAX)
    }

    /// Creates the engine of partition `number` on its first record: restoring (and seeded)
    /// while the runtime replays, live otherwise. Either way it starts with every profile.
    fn ensure_partition(&mut self, number: i32, ctx: &Context<'_>) -> Result<(), RecordError> {
        if self.partitions.contains_key(&number) {
            return Ok(());
        }
        let mut engine =
            Engine::new(self.config.clone()).map_err(|e| RecordError::Fatal(e.to_string()))?;
        for (driver, profile) in self.tables.profiles() {
            apply_profile(
                &mut engine,
                &ProfileChange::Upsert(driver.to_owned(), profile),
            );
        }
        if ctx.restoring {
            engine.begin_restore();
            if self.seeds.is_none() {
                // The runtime replays from `horizon` before its own clock, read just before
                // this; the margin covers that and outputs stamped a little before their
                // request's broker time.
                let from = ctx
                    .now_ms
                    .saturating_sub(self.horizon_ms())
                    .saturating_sub(REPLAY_MARGIN_MS as i64);
                self.seeds = Some(Seeds::read(
                    &self.factory,
                    &self.group_id,
                    &self.proposal_topic,
                    &self.unfilled_topic,
                    from,
                    ctx,
                )?);
            }
            if let Some(seeds) = &self.seeds {
                seeds.plant(&mut engine);
            }
        }
        self.partitions.insert(
            number,
            Partition {
                engine,
                anchor: None,
                requested_at: HashMap::new(),
                reported: MatchCounters::default(),
            },
        );
        Ok(())
    }

    fn partition(&mut self, number: i32) -> Result<&mut Partition, RecordError> {
        self.partitions
            .get_mut(&number)
            .ok_or_else(|| RecordError::Fatal(format!("partition {number} has no engine")))
    }

    fn process_trip(
        &mut self,
        record: &Record<'_>,
        ctx: &mut Context<'_>,
    ) -> Result<(), RecordError> {
        let trip: GeoTrip = ctx.decode(record.payload)?;
        if trip.halo {
            // Decided by the engine of the trip's home region.
            return Ok(());
        }
        let event_time = trip.event_time;
        let tables = &self.tables;
        let action = trip_action(trip, |cell, product| tables.surge_at(cell, product))?;
        self.ensure_partition(record.partition, ctx)?;
        let part = self
            .partitions
            .get_mut(&record.partition)
            .ok_or_else(|| RecordError::Fatal("partition vanished".into()))?;
        let mut out = part.engine.advance(event_time);
        part.anchor = Some((part.engine.clock(), ctx.now_ms));
        let mut requested_trip = None;
        match action {
            TripAction::Request(request) => {
                let trip_id = request.trip_id.clone();
                let requested = request.event_time;
                out.extend(
                    part.engine
                        .on_request(request)
                        .map_err(|e| RecordError::invalid("bad_request", e))?,
                );
                if !ctx.restoring {
                    part.requested_at
                        .entry(trip_id.clone())
                        .or_insert(requested);
                    requested_trip = Some(trip_id);
                }
            }
            TripAction::Accept {
                trip_id,
                driver_id,
                event_time,
            } => {
                part.engine.on_accepted(&trip_id, &driver_id, event_time);
            }
            TripAction::Decline {
                trip_id,
                driver_id,
                event_time,
            } => out.extend(part.engine.on_declined(&trip_id, &driver_id, event_time)),
            TripAction::Cancel {
                trip_id,
                event_time,
            } => {
                part.engine.on_cancelled(&trip_id, event_time);
                part.requested_at.remove(&trip_id);
            }
            TripAction::Progress => {}
        }
        self.publisher.publish(out, &mut part.requested_at, ctx)?;
        // Publishing took the request time of a trip decided at once; one still waiting for
        // its first decision (batched mode) keeps it, a duplicate request leaves none behind.
        if let Some(trip_id) = requested_trip
            && !matches!(
                part.engine.trip_status(&trip_id),
                Some(TripStatus::Open {
                    attempts: 0,
                    offered: false
                })
            )
        {
            part.requested_at.remove(&trip_id);
        }
        Ok(())
    }
}

impl Operator for Matcher {
    fn process(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<(), RecordError> {
        if record.topic == self.trip_topic {
            return self.process_trip(record, ctx);
        }
        if record.topic != self.driver_topic {
            return Err(RecordError::Fatal(format!(
                "{NAME} does not read {}",
                record.topic
            )));
        }
        let driver: GeoDriver = ctx.decode(record.payload)?;
        self.ensure_partition(record.partition, ctx)?;
        self.partition(record.partition)?
            .engine
            .on_driver_ping(&driver_ping(&driver))
            .map_err(|e| RecordError::invalid("bad_position", e))?;
        Ok(())
    }

    fn on_tick(&mut self, ctx: &mut Context<'_>) -> Result<(), RecordError> {
        self.tables.poll(&*ctx, &mut self.changes)?;
        for part in self.partitions.values_mut() {
            for change in &self.changes {
                apply_profile(&mut part.engine, change);
            }
            if part.engine.is_restoring() {
                continue;
            }
            // Only a caught-up input runs the clock on by processing time: during a backlog a
            // pause is a slow commit or a busy machine, and offers would lapse that the
            // records still queued answer in time.
            if let Some(anchor) = part.anchor
                && ctx.caught_up
            {
                let out = part.engine.advance(tick_clock(anchor, ctx.now_ms));
                self.publisher.publish(out, &mut part.requested_at, ctx)?;
            }
            self.publisher
                .meters
                .count_events(&mut part.reported, part.engine.counters());
        }
        self.changes.clear();
        Ok(())
    }

    fn on_assigned(&mut self, partitions: &[TopicPartition], ctx: &mut Context<'_>) {
        // The restore (if any) is over: its seeds are no longer needed.
        self.seeds = None;
        let mut restored = Vec::new();
        for (number, part) in &mut self.partitions {
            if !part.engine.is_restoring() {
                continue;
            }
            let late = part.engine.end_restore();
            part.reported = *part.engine.counters();
            restored.push((*number, late.len()));
            if let Err(e) = self.publisher.publish(late, &mut part.requested_at, ctx) {
                // Encoding what the engine returns cannot fail short of a bug; say so loudly.
                tracing::error!(operator = NAME, partition = number, error = %e, "publishing after a restore");
            }
        }
        tracing::info!(
            operator = NAME,
            ?partitions,
            ?restored,
            "partitions assigned; (partition, decisions made at the end of the restore)"
        );
    }

    fn on_revoked(&mut self, partitions: &[TopicPartition]) {
        let numbers: BTreeSet<i32> = partitions.iter().map(|p| p.partition).collect();
        for number in numbers {
            self.partitions.remove(&number);
        }
    }

    fn restore_horizon_ms(&self) -> Option<i64> {
        Some(self.horizon_ms())
    }

    fn state_sizes(&self) -> Vec<(&'static str, f64)> {
        let (mut drivers, mut reservations, mut open) = (0, 0, 0);
        for part in self.partitions.values() {
            drivers += part.engine.drivers_indexed();
            reservations += part.engine.open_reservations();
            open += part.engine.open_requests();
        }
        let (profiles, multipliers) = self.tables.sizes();
        vec![
            ("drivers", drivers as f64),
            ("reservations", reservations as f64),
            ("open_requests", open as f64),
            ("profiles", profiles as f64),
            ("multipliers", multipliers as f64),
        ]
    }
}

impl OperatorFactory for Matcher {
    const NAME: &'static str = NAME;

    async fn build(topology: &Topology, registry: &Registry) -> anyhow::Result<Self> {
        let config = engine_config(topology)?;
        let spec = topology
            .operators
            .get(NAME)
            .ok_or_else(|| anyhow::anyhow!("topology has no operators.{NAME} section"))?;
        let driver_topic = topic_of::<GeoDriver>(topology, spec.inputs, "inputs")?;
        let trip_topic = topic_of::<GeoTrip>(topology, spec.inputs, "inputs")?;
        if let Some(other) = spec
            .inputs
            .iter()
            .find(|t| **t != driver_topic && **t != trip_topic)
        {
            anyhow::bail!(
                "operators.{NAME}.inputs: {other} is neither the GeoDriver nor the GeoTrip topic \
                 (reference data belongs under `tables`)"
            );
        }
        let profile_topic = topic_of::<DriverProfile>(topology, spec.tables, "tables")?;
        let surge_topic = topic_of::<SurgeMultiplier>(topology, spec.tables, "tables")?;
        let proposal_topic = topic_of::<MatchProposal>(topology, spec.outputs, "outputs")?;
        let unfilled_topic = topic_of::<MatchUnfilled>(topology, spec.outputs, "outputs")?;
        let publisher = Publisher {
            proposals: Sink::register(spec.outputs, &proposal_topic, registry).await?,
            unfilled: Sink::register(spec.outputs, &unfilled_topic, registry).await?,
            meters: Meters::register(),
        };
        let factory = ClientFactory::from_topology(&topology.connection.kafka);
        let group_id = spec.group_id.clone();
        let tables = {
            let (factory, group_id) = (factory.clone(), group_id.clone());
            let (profile_topic, surge_topic) = (profile_topic.clone(), surge_topic.clone());
            let decoder = BlockingDecoder {
                schemas: SchemaCache::new(registry.clone()),
                handle: tokio::runtime::Handle::current(),
            };
            // Blocking reads, and registry calls blocked on from outside the async tasks.
            tokio::task::spawn_blocking(move || {
                Tables::load(&factory, &group_id, &profile_topic, &surge_topic, &decoder)
            })
            .await??
        };
        Ok(Matcher {
            config,
            driver_topic,
            trip_topic,
            proposal_topic,
            unfilled_topic,
            factory,
            group_id,
            tables,
            partitions: BTreeMap::new(),
            seeds: None,
            publisher,
            changes: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_topology() -> Topology {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        Topology::load(root.join("topology.yaml")).unwrap()
    }

    #[test]
    fn the_project_topology_gives_a_valid_engine_config() {
        let config = engine_config(&project_topology()).unwrap();
        assert_eq!(config.radius_m, 2000.0);
        assert_eq!(config.offer_timeout_ms, 15_000);
        assert_eq!(config.max_attempts, 3);
        assert_eq!(config.weights.rating, 0.2);
        assert_eq!(replay_horizon_ms(&config), 330_000);
    }

    #[test]
    fn topics_are_found_by_their_schema() {
        let topology = project_topology();
        let spec = topology.operators.get(NAME).unwrap();
        let of = |list: &[String], which: &str| match which {
            "driver" => topic_of::<GeoDriver>(&topology, list, "inputs"),
            "trip" => topic_of::<GeoTrip>(&topology, list, "inputs"),
            "profile" => topic_of::<DriverProfile>(&topology, list, "tables"),
            "surge" => topic_of::<SurgeMultiplier>(&topology, list, "tables"),
            "proposal" => topic_of::<MatchProposal>(&topology, list, "outputs"),
            _ => topic_of::<MatchUnfilled>(&topology, list, "outputs"),
        };
        assert_eq!(of(spec.inputs, "driver").unwrap(), "geo.driver");
        assert_eq!(of(spec.inputs, "trip").unwrap(), "geo.trip");
        assert_eq!(of(spec.tables, "profile").unwrap(), "driver.profile");
        assert_eq!(of(spec.tables, "surge").unwrap(), "surge.multiplier");
        assert_eq!(of(spec.outputs, "proposal").unwrap(), "match.proposal");
        assert_eq!(of(spec.outputs, "unfilled").unwrap(), "match.unfilled");
        let missing = of(spec.inputs, "profile").unwrap_err().to_string();
        assert!(
            missing.contains("operators.matcher.tables: no topic with the driver_profile.avsc"),
            "{missing}"
        );
    }

    #[test]
    fn ticks_run_the_clock_on_with_processing_time_only() {
        // 300 ms of processing since the last trip record moved the clock to 1_000.
        assert_eq!(tick_clock((1_000, 50_000), 50_300), 1_300);
        // A processing clock that went back (NTP) does not move the engine clock back.
        assert_eq!(tick_clock((1_000, 50_000), 49_000), 1_000);
        assert_eq!(tick_clock((i64::MAX - 1, 0), 10), i64::MAX);
    }
}
