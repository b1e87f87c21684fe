//! The matcher inside the whole pipeline, closed loop: the simulated city's pings and trip
//! requests go through both routers in real time, the surge-pricer publishes multipliers, the
//! matcher proposes drivers, and a scripted driver population answers every proposal it reads
//! (accept, decline, ignore so the offer lapses, or the rider cancels), its answers going back
//! through the trip-router as the trip service's events would.
//!
//! The checks are the matcher's promises seen from outside, on `read_committed` output:
//! - every request gets a proposal or an unfilled report, and nothing after its end;
//! - no driver is in two open proposals of one region at once (an offer is open from its
//!   `proposed_at` until the driver's answer, or until `expires_at` when nobody answers);
//! - accept, decline, timeout and cancel each lead where they should: an accepted or
//!   cancelled trip gets no further proposal, a declined or lapsed one gets the next attempt
//!   (or an unfilled report after the last);
//! - every multiplier quoted is one the pricer published for the pickup cell and product (or
//!   1.0 before it published one), and some are above 1.0.

#[path = "../../surge-pricer/tests/short_windows/mod.rs"]
mod short_windows;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_yaml_ng::Value;
use surgeflow_domain::geo::LatLon;
use surgeflow_domain::routing::Geometry;
use surgeflow_kafka::{Encoder, SchemaCache};
use surgeflow_schema::{
    AvroRecord, CancelledBy, LocationUpdate, MatchProposal, MatchUnfilled, SurgeMultiplier,
    TripAccepted, TripCancelled, TripDeclined, TripRequested, UnfilledReason,
};
use surgeflow_sim::{CityConfig, Hotspot, SimEvent, Simulation};
use surgeflow_testkit::{
    OperatorProcess, TestTopology, clients, read_committed, registry, send_record, workspace_binary,
};

const OFFER_TIMEOUT_MS: i64 = 4_000;
const MAX_ATTEMPTS: i32 = 3;
const REQUEST_DEADLINE_MS: i64 = 30_000;
/// Event time the city runs for, in real time.
const CITY_MS: i64 = 35_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Short offers, retries and deadlines, and the pricer's short windows, so that seconds of
/// real time exercise every path.
fn quick(doc: &mut Value) {
    short_windows::short_windows(doc);
    let params = &mut doc["operators"]["matcher"]["params"];
    params["offer_timeout_ms"] = Value::from(OFFER_TIMEOUT_MS);
    params["max_attempts"] = Value::from(MAX_ATTEMPTS);
    params["request_deadline_ms"] = Value::from(REQUEST_DEADLINE_MS);
}

/// A tight market around one hotspot: demand outgrows supply there, so cells surge and some
/// requests find no driver.
fn city(start_ms: i64) -> CityConfig {
    let base = CityConfig::default();
    CityConfig {
        radius_m: 3_000.0,
        drivers: 300,
        requests_per_s: 6.0,
        start_time_ms: start_ms,
        hotspots: vec![Hotspot {
            lat: base.center_lat,
            lon: base.center_lon,
            radius_m: 600.0,
            weight: 1.0,
        }],
        churn: None,
        ..base
    }
}

/// What the scripted driver does with an offer: a fixed function of the trip and attempt, so
/// that a run covers every answer in proportions that do not depend on timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    Accept,
    Decline,
    Ignore,
    RiderCancels,
}

fn answer(trip: &str, attempt: i32) -> Answer {
    let h = trip
        .bytes()
        .chain(attempt.to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    match h % 100 {
        0..45 => Answer::Accept,
        45..70 => Answer::Decline,
        70..90 => Answer::Ignore,
        _ => Answer::RiderCancels,
    }
}

/// Writes Avro records of one type to one topic, stamped with their event time.
struct Sink<T: AvroRecord> {
    topic: String,
    encoder: Encoder<T>,
}

impl<T: AvroRecord> Sink<T> {
    async fn new(t: &TestTopology, name: &str) -> Self {
        let topic = t.topic(name);
        let encoder = Encoder::register(&registry(), &format!("{topic}-value"))
            .await
            .expect("registering a schema");
        Sink { topic, encoder }
    }

    fn send(&self, producer: &BaseProducer, key: &str, value: &T, time: i64) {
        let payload = self.encoder.encode(value).expect("encode");
        send_record(
            producer,
            BaseRecord::to(&self.topic)
                .key(key.as_bytes())
                .payload(payload.as_slice())
                .timestamp(time),
        );
    }
}

/// A read_committed consumer of every partition of a topic, from the beginning.
fn follow(topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = clients()
        .consumer_config(&format!("{topic}.follower"))
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut list = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        list.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).expect("assign");
    consumer
}

/// One proposal as the scripted driver saw it, with its answer and when it was given.
#[derive(Debug, Clone)]
struct Seen {
    proposal: MatchProposal,
    answer: Answer,
    answered_at: Option<i64>,
}

#[tokio::test(flavor = "multi_thread")]
async fn proposals_in_the_closed_loop_keep_every_promise() {
    let t = TestTopology::with("match-loop", quick);
    t.apply().await;
    let _operators = [
        ("surgeflow-location-router", "location-router"),
        ("surgeflow-trip-router", "trip-router"),
        ("surgeflow-surge-pricer", "surge-pricer"),
    ]
    .map(|(package, bin)| OperatorProcess::start(workspace_binary(package, bin), &t, "loop-0"));
    let _matcher = OperatorProcess::start(env!("CARGO_BIN_EXE_matcher"), &t, "loop-0");

    let pings = Sink::<LocationUpdate>::new(&t, "location.update").await;
    let requests = Sink::<TripRequested>::new(&t, "trip.requested").await;
    let accepts = Sink::<TripAccepted>::new(&t, "trip.accepted").await;
    let declines = Sink::<TripDeclined>::new(&t, "trip.declined").await;
    let cancels = Sink::<TripCancelled>::new(&t, "trip.cancelled").await;
    let producer = clients().producer().expect("producer");
    let proposals_in = follow(&t.topic("match.proposal"));
    let decoder = SchemaCache::new(registry());

    let start = now_ms();
    let mut sim = Simulation::new(city(start), 11).expect("city");
    let mut sent: BTreeMap<String, TripRequested> = BTreeMap::new();
    let mut seen: Vec<Seen> = Vec::new();
    let mut events = Vec::new();
    let mut last_proposal = Instant::now();
    // The city runs in real time; then the loop keeps answering until no proposal came for
    // longer than a whole request's life could still produce one.
    while now_ms() < start + CITY_MS || last_proposal.elapsed() < Duration::from_secs(12) {
        let now = now_ms();
        if now < start + CITY_MS {
            sim.advance_to(now, &mut events);
            for event in events.drain(..) {
                match event {
                    SimEvent::LocationUpdate(p) => {
                        pings.send(&producer, &p.driver_id, &p, p.event_time)
                    }
                    SimEvent::TripRequested(r) => {
                        requests.send(&producer, &r.trip_id, &r, r.event_time);
                        sent.insert(r.trip_id.clone(), r);
                    }
                    // The scripted drivers below answer the matcher, not the city's own
                    // dispatcher.
                    _ => {}
                }
            }
        }
        while let Some(message) = proposals_in.poll(Duration::from_millis(50)) {
            let message = message.expect("consuming proposals");
            let proposal: MatchProposal = decoder
                .decode(message.payload().unwrap_or_default())
                .await
                .expect("a proposal");
            last_proposal = Instant::now();
            let request = &sent[&proposal.trip_id];
            let answer = answer(&proposal.trip_id, proposal.attempt);
            let at = now_ms().max(proposal.proposed_at + 1);
            let driver = proposal.driver_id.clone();
            let key = proposal.trip_id.as_str();
            match answer {
                Answer::Accept => accepts.send(
                    &producer,
                    key,
                    &TripAccepted {
                        trip_id: request.trip_id.clone(),
                        rider_id: request.rider_id.clone(),
                        product: request.product,
                        pickup_lat: request.pickup_lat,
                        pickup_lon: request.pickup_lon,
                        driver_id: driver,
                        proposal_id: Some(proposal.proposal_id.clone()),
                        event_time: at,
                    },
                    at,
                ),
                Answer::Decline => declines.send(
                    &producer,
                    key,
                    &TripDeclined {
                        trip_id: request.trip_id.clone(),
                        rider_id: request.rider_id.clone(),
                        product: request.product,
                        pickup_lat: request.pickup_lat,
                        pickup_lon: request.pickup_lon,
                        driver_id: driver,
                        proposal_id: Some(proposal.proposal_id.clone()),
                        event_time: at,
                    },
                    at,
                ),
                Answer::RiderCancels => cancels.send(
                    &producer,
                    key,
                    &TripCancelled {
                        trip_id: request.trip_id.clone(),
                        rider_id: request.rider_id.clone(),
                        product: request.product,
                        pickup_lat: request.pickup_lat,
                        pickup_lon: request.pickup_lon,
                        driver_id: Some(driver),
                        cancelled_by: CancelledBy::Rider,
                        reason: Some("changed plans".into()),
                        event_time: at,
                    },
                    at,
                ),
                Answer::Ignore => {}
            }
            seen.push(Seen {
                proposal,
                answer,
                answered_at: (answer != Answer::Ignore).then_some(at),
            });
        }
        producer.poll(Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    producer.flush(Duration::from_secs(30)).expect("flush");

    let unfilled =
        read_committed::<MatchUnfilled>(&t.topic("match.unfilled"), 1, Duration::from_secs(20))
            .await
            .into_iter()
            .map(|r| r.value)
            .collect::<Vec<_>>();
    let published =
        read_committed::<SurgeMultiplier>(&t.topic("surge.multiplier"), 1, Duration::from_secs(10))
            .await;
    eprintln!(
        "{} requests, {} proposals, {} unfilled, {} multipliers published",
        sent.len(),
        seen.len(),
        unfilled.len(),
        published.len()
    );

    check_every_request_decided(&sent, &seen, &unfilled);
    check_no_driver_offered_twice(&t, &sent, &seen);
    check_answers_lead_where_they_should(&seen, &unfilled);
    check_quoted_multipliers(&t, &sent, &seen, &published);
}

/// Every request gets a proposal or an unfilled report.
fn check_every_request_decided(
    sent: &BTreeMap<String, TripRequested>,
    seen: &[Seen],
    unfilled: &[MatchUnfilled],
) {
    let decided: BTreeSet<&str> = seen
        .iter()
        .map(|s| s.proposal.trip_id.as_str())
        .chain(unfilled.iter().map(|u| u.trip_id.as_str()))
        .collect();
    let undecided: Vec<&String> = sent
        .keys()
        .filter(|t| !decided.contains(t.as_str()))
        .collect();
    assert!(
        undecided.is_empty(),
        "{} of {} requests got neither a proposal nor an unfilled report: {undecided:?}",
        undecided.len(),
        sent.len()
    );
    let reasons: BTreeSet<String> = unfilled.iter().map(|u| format!("{:?}", u.reason)).collect();
    eprintln!("unfilled reasons seen: {reasons:?}");
}

/// No driver is in two open offers of one region: sorted by `proposed_at`, each offer to a
/// driver starts no earlier than the previous one ended (its answer, or its expiry).
fn check_no_driver_offered_twice(
    t: &TestTopology,
    sent: &BTreeMap<String, TripRequested>,
    seen: &[Seen],
) {
    let geo = &t.topology.geo;
    let geometry = Geometry {
        cell_precision: geo.cell_precision,
        region_precision: geo.region_precision,
        halo_m: geo.halo_m,
    };
    let mut offers: BTreeMap<(String, String), Vec<&Seen>> = BTreeMap::new();
    for s in seen {
        let request = &sent[&s.proposal.trip_id];
        let pickup = LatLon {
            lat: request.pickup_lat,
            lon: request.pickup_lon,
        };
        let region = geometry.route(pickup).expect("a routable pickup").home;
        offers
            .entry((region.to_string(), s.proposal.driver_id.clone()))
            .or_default()
            .push(s);
    }
    let mut overlaps = Vec::new();
    for ((region, driver), mut list) in offers {
        list.sort_by_key(|s| s.proposal.proposed_at);
        for pair in list.windows(2) {
            let ended = pair[0].answered_at.unwrap_or(pair[0].proposal.expires_at);
            if pair[1].proposal.proposed_at < ended {
                overlaps.push(format!(
                    "{driver} in {region}: {} (until {ended}) and {} from {}",
                    pair[0].proposal.trip_id,
                    pair[1].proposal.trip_id,
                    pair[1].proposal.proposed_at
                ));
            }
        }
    }
    assert!(
        overlaps.is_empty(),
        "drivers in two open offers:\n{}",
        overlaps.join("\n")
    );
}

/// Accepted and cancelled trips get nothing more; declined and lapsed offers lead to the next
/// attempt, or after the last one to an unfilled report; every kind of answer occurred.
fn check_answers_lead_where_they_should(seen: &[Seen], unfilled: &[MatchUnfilled]) {
    let mut trips: BTreeMap<&str, Vec<&Seen>> = BTreeMap::new();
    for s in seen {
        trips.entry(&s.proposal.trip_id).or_default().push(s);
    }
    let unfilled: HashMap<&str, &MatchUnfilled> =
        unfilled.iter().map(|u| (u.trip_id.as_str(), u)).collect();
    let mut answers_followed: BTreeMap<Answer, usize> = BTreeMap::new();
    for (trip, mut offers) in trips {
        offers.sort_by_key(|s| s.proposal.attempt);
        let attempts: Vec<i32> = offers.iter().map(|s| s.proposal.attempt).collect();
        let expected: Vec<i32> = (1..=attempts.len() as i32).collect();
        assert_eq!(attempts, expected, "{trip}: attempts repeated or skipped");
        for (i, s) in offers.iter().enumerate() {
            let next = offers.get(i + 1);
            let report = unfilled.get(trip);
            match s.answer {
                Answer::Accept | Answer::RiderCancels => {
                    assert!(
                        next.is_none() && report.is_none(),
                        "{trip}: {:?} of attempt {} was followed by more",
                        s.answer,
                        s.proposal.attempt
                    );
                }
                Answer::Decline | Answer::Ignore => {
                    if let Some(next) = next {
                        if s.answer == Answer::Ignore {
                            assert!(
                                next.proposal.proposed_at >= s.proposal.expires_at,
                                "{trip}: attempt {} came before attempt {} lapsed",
                                next.proposal.attempt,
                                s.proposal.attempt
                            );
                        }
                    } else {
                        let report = report.unwrap_or_else(|| {
                            panic!("{trip}: {:?} of the last offer led nowhere", s.answer)
                        });
                        if s.proposal.attempt == MAX_ATTEMPTS {
                            assert_eq!(report.reason, UnfilledReason::MaxAttempts, "{trip}");
                        }
                    }
                }
            }
            *answers_followed.entry(s.answer).or_default() += 1;
        }
    }
    eprintln!("answers given and followed: {answers_followed:?}");
    for answer in [
        Answer::Accept,
        Answer::Decline,
        Answer::Ignore,
        Answer::RiderCancels,
    ] {
        assert!(
            answers_followed.get(&answer).copied().unwrap_or(0) > 0,
            "no offer was answered with {answer:?}"
        );
    }
}

/// Each quoted multiplier is one the pricer published for the pickup cell and product, or 1.0
/// (nothing published yet); the market is tight, so some are above 1.0.
fn check_quoted_multipliers(
    t: &TestTopology,
    sent: &BTreeMap<String, TripRequested>,
    seen: &[Seen],
    published: &[surgeflow_testkit::Received<SurgeMultiplier>],
) {
    let precision = t.topology.geo.cell_precision;
    let mut by_key: HashMap<(String, String), Vec<f64>> = HashMap::new();
    for p in published {
        by_key
            .entry((p.value.cell.clone(), p.value.product.symbol().to_string()))
            .or_default()
            .push(p.value.multiplier);
    }
    let mut surged = 0;
    for s in seen {
        let request = &sent[&s.proposal.trip_id];
        let cell = surgeflow_domain::geo::Cell::from_lat_lon(
            request.pickup_lat,
            request.pickup_lon,
            precision,
        )
        .expect("a valid pickup")
        .to_string();
        let quoted = s.proposal.surge_multiplier;
        let key = (cell, request.product.symbol().to_string());
        let known = by_key.get(&key).map(Vec::as_slice).unwrap_or_default();
        assert!(
            quoted == 1.0 || known.contains(&quoted),
            "{}: quoted {quoted} at {key:?}, the pricer published {known:?}",
            s.proposal.trip_id
        );
        if quoted > 1.0 {
            surged += 1;
        }
    }
    eprintln!("{surged} of {} proposals quoted a surge", seen.len());
    assert!(
        surged > 0,
        "no proposal carried a published surge multiplier"
    );
}
