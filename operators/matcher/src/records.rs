//! Between the topics' records (`surgeflow_schema`) and the matching engine's types
//! (`surgeflow_domain::matching`): what each input record asks of the engine, what each
//! engine output looks like on its topic, and how published outputs become restore seeds.
//!
//! Kept apart from the operator so every mapping is a plain function with a unit test.

use surgeflow_domain::geo::{Cell, LatLon};
use surgeflow_domain::matching::{
    self, DriverPing, Proposal, TripRequest, Unfilled, UnfilledReason as Reason,
};
use surgeflow_kafka::SchemaCache;
use surgeflow_runtime::{Context, RecordError};
use surgeflow_schema::{
    AvroRecord, DriverProfile, DriverStatus, GeoDriver, GeoTrip, MatchProposal, MatchUnfilled,
    Product, SurgeMultiplier, TripEventKind, UnfilledReason,
};

/// Decodes wire-format values. While processing, the runtime's [`Context`] does it (with its
/// registry retries); before processing starts, when the tables are first read, a
/// [`BlockingDecoder`] does.
pub(crate) trait Decoder {
    /// Decodes `payload` as `T`.
    ///
    /// # Errors
    /// As [`Context::decode`]: `Invalid` for a bad payload, `Fatal` when the registry cannot
    /// be reached.
    fn decode<T: AvroRecord>(&self, payload: Option<&[u8]>) -> Result<T, RecordError>;
}

impl Decoder for Context<'_> {
    fn decode<T: AvroRecord>(&self, payload: Option<&[u8]>) -> Result<T, RecordError> {
        Context::decode(self, payload)
    }
}

/// Decodes by blocking on the registry client from a thread that is not running async tasks.
pub(crate) struct BlockingDecoder {
    pub(crate) schemas: SchemaCache,
    pub(crate) handle: tokio::runtime::Handle,
}

impl Decoder for BlockingDecoder {
    fn decode<T: AvroRecord>(&self, payload: Option<&[u8]>) -> Result<T, RecordError> {
        let payload =
            payload.ok_or_else(|| RecordError::invalid("null_payload", "record has no value"))?;
        self.handle
            .block_on(self.schemas.decode::<T>(payload))
            .map_err(RecordError::from)
    }
}

/// What a `geo.trip` record asks of the engine.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TripAction {
    /// `REQUESTED`.
    Request(TripRequest<Product>),
    /// `ACCEPTED` by a driver.
    Accept {
        trip_id: String,
        driver_id: String,
        event_time: i64,
    },
    /// `DECLINED` by a driver.
    Decline {
        trip_id: String,
        driver_id: String,
        event_time: i64,
    },
    /// `CANCELLED`, by anyone.
    Cancel { trip_id: String, event_time: i64 },
    /// `DRIVER_ARRIVED`, `STARTED`, `COMPLETED`: after the match, nothing to decide; they
    /// only move the engine's clock.
    Progress,
}

/// The engine's driver status.
pub(crate) fn driver_status(status: DriverStatus) -> matching::DriverStatus {
    match status {
        DriverStatus::Available => matching::DriverStatus::Available,
        DriverStatus::Dispatched => matching::DriverStatus::Dispatched,
        DriverStatus::OnTrip => matching::DriverStatus::OnTrip,
        DriverStatus::Offline => matching::DriverStatus::Offline,
    }
}

/// A `geo.driver` record (home or halo copy) as the engine's ping.
pub(crate) fn driver_ping(d: &GeoDriver) -> DriverPing<'_, Product> {
    DriverPing {
        driver_id: &d.driver_id,
        position: LatLon {
            lat: d.lat,
            lon: d.lon,
        },
        status: driver_status(d.status),
        product: d.product,
        event_time: d.event_time,
    }
}

/// The action a non-halo `geo.trip` record asks for. `surge_at` gives the multiplier quoted at
/// the pickup cell, which a request carries for all its attempts.
///
/// # Errors
/// `Invalid` (`bad_cell`) for cell bits that are no cell, (`missing_driver_id`) for an answer
/// that does not say which driver gave it.
pub(crate) fn trip_action(
    t: GeoTrip,
    surge_at: impl FnOnce(Cell, Product) -> f64,
) -> Result<TripAction, RecordError> {
    let answerer = |driver_id: Option<String>| {
        driver_id.ok_or_else(|| {
            RecordError::invalid(
                "missing_driver_id",
                format!("{:?} without a driver_id", t.kind),
            )
        })
    };
    Ok(match t.kind {
        TripEventKind::Requested => {
            let cell =
                Cell::from_bits(t.cell as u64).map_err(|e| RecordError::invalid("bad_cell", e))?;
            TripAction::Request(TripRequest {
                surge_multiplier: surge_at(cell, t.product),
                trip_id: t.trip_id,
                rider_id: t.rider_id,
                product: t.product,
                pickup: LatLon {
                    lat: t.pickup_lat,
                    lon: t.pickup_lon,
                },
                event_time: t.event_time,
            })
        }
        TripEventKind::Accepted => TripAction::Accept {
            driver_id: answerer(t.driver_id)?,
            trip_id: t.trip_id,
            event_time: t.event_time,
        },
        TripEventKind::Declined => TripAction::Decline {
            driver_id: answerer(t.driver_id)?,
            trip_id: t.trip_id,
            event_time: t.event_time,
        },
        TripEventKind::Cancelled => TripAction::Cancel {
            trip_id: t.trip_id,
            event_time: t.event_time,
        },
        TripEventKind::DriverArrived | TripEventKind::Started | TripEventKind::Completed => {
            TripAction::Progress
        }
    })
}

/// The schema's reason for the engine's.
pub(crate) fn reason_record(reason: Reason) -> UnfilledReason {
    match reason {
        Reason::NoDriverInRadius => UnfilledReason::NoDriverInRadius,
        Reason::MaxAttempts => UnfilledReason::MaxAttempts,
        Reason::Deadline => UnfilledReason::Deadline,
    }
}

/// The engine's reason for the schema's.
pub(crate) fn reason_seed(reason: UnfilledReason) -> Reason {
    match reason {
        UnfilledReason::NoDriverInRadius => Reason::NoDriverInRadius,
        UnfilledReason::MaxAttempts => Reason::MaxAttempts,
        UnfilledReason::Deadline => Reason::Deadline,
    }
}

/// A proposal as published on `match.proposal`.
pub(crate) fn proposal_record(p: &Proposal<Product>) -> MatchProposal {
    MatchProposal {
        proposal_id: p.proposal_id.clone(),
        trip_id: p.trip_id.clone(),
        rider_id: p.rider_id.clone(),
        driver_id: p.driver_id.clone(),
        product: p.product,
        distance_m: p.distance_m,
        eta_s: p.eta_s,
        score: p.score,
        surge_multiplier: p.surge_multiplier,
        // Attempts are bounded by `max_attempts`, a u32 the topology keeps small.
        attempt: i32::try_from(p.attempt).unwrap_or(i32::MAX),
        proposed_at: p.proposed_at,
        expires_at: p.expires_at,
    }
}

/// An unfilled report as published on `match.unfilled`.
pub(crate) fn unfilled_record(u: &Unfilled<Product>) -> MatchUnfilled {
    MatchUnfilled {
        trip_id: u.trip_id.clone(),
        rider_id: u.rider_id.clone(),
        product: u.product,
        pickup_lat: u.pickup.lat,
        pickup_lon: u.pickup.lon,
        attempts: i32::try_from(u.attempts).unwrap_or(i32::MAX),
        reason: reason_record(u.reason),
        decided_at: u.decided_at,
    }
}

/// A published proposal read back as a restore seed.
///
/// # Errors
/// A message for a negative attempt number, which this operator never publishes.
pub(crate) fn proposal_seed(p: MatchProposal) -> Result<Proposal<Product>, String> {
    let attempt = u32::try_from(p.attempt)
        .map_err(|_| format!("proposal {} has attempt {}", p.proposal_id, p.attempt))?;
    Ok(Proposal {
        proposal_id: p.proposal_id,
        trip_id: p.trip_id,
        rider_id: p.rider_id,
        driver_id: p.driver_id,
        product: p.product,
        distance_m: p.distance_m,
        eta_s: p.eta_s,
        score: p.score,
        surge_multiplier: p.surge_multiplier,
        attempt,
        proposed_at: p.proposed_at,
        expires_at: p.expires_at,
    })
}

/// A published unfilled report read back as a restore seed (a negative attempt count, which
/// this operator never publishes, reads as 0).
pub(crate) fn unfilled_seed(u: MatchUnfilled) -> Unfilled<Product> {
    Unfilled {
        trip_id: u.trip_id,
        rider_id: u.rider_id,
        product: u.product,
        pickup: LatLon {
            lat: u.pickup_lat,
            lon: u.pickup_lon,
        },
        attempts: u32::try_from(u.attempts).unwrap_or(0),
        reason: reason_seed(u.reason),
        decided_at: u.decided_at,
    }
}

/// A change to the `driver.profile` table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ProfileChange {
    /// The driver's profile is now this.
    Upsert(String, matching::DriverProfile),
    /// Tombstone: the defaults apply to the driver again.
    Remove(String),
}

/// The change a `driver.profile` record (key = driver id; `None` for a tombstone) makes.
///
/// # Errors
/// `Invalid` for a rating or acceptance rate out of range (`bad_profile`): a corrupt profile
/// must not dominate every score.
pub(crate) fn profile_change(
    key: &str,
    value: Option<DriverProfile>,
) -> Result<ProfileChange, RecordError> {
    let Some(v) = value else {
        return Ok(ProfileChange::Remove(key.to_owned()));
    };
    let profile = matching::DriverProfile::new(v.rating, v.acceptance_rate)
        .map_err(|e| RecordError::invalid("bad_profile", e))?;
    // Keyed like the tombstones that may follow: the key is the table's identity.
    Ok(ProfileChange::Upsert(key.to_owned(), profile))
}

/// The product whose Avro symbol is `symbol`.
fn product_of(symbol: &str) -> Option<Product> {
    Product::ALL.into_iter().find(|p| p.symbol() == symbol)
}

/// The (cell, product) a `surge.multiplier` key `<cell>:<product>` names.
fn surge_key(key: &str) -> Result<(Cell, Product), RecordError> {
    let bad = || RecordError::invalid("bad_key", format!("`{key}` is not `<cell>:<product>`"));
    let (cell, product) = key.split_once(':').ok_or_else(bad)?;
    Ok((
        Cell::parse(cell).map_err(|_| bad())?,
        product_of(product).ok_or_else(bad)?,
    ))
}

/// The change a `surge.multiplier` record (key `<cell>:<product>`; `None` for a tombstone)
/// makes: the multiplier now quoted for the cell and product, or `None` for none (1.0).
///
/// # Errors
/// `Invalid` for an unreadable key or cell (`bad_key`), or a multiplier that is not finite and
/// positive (`bad_multiplier`), which the engine would refuse for every request of the cell.
pub(crate) fn surge_change(
    key: &str,
    value: Option<SurgeMultiplier>,
) -> Result<((Cell, Product), Option<f64>), RecordError> {
    let Some(v) = value else {
        return Ok((surge_key(key)?, None));
    };
    let cell = Cell::parse(&v.cell)
        .map_err(|e| RecordError::invalid("bad_key", format!("cell `{}`: {e}", v.cell)))?;
    if !(v.multiplier.is_finite() && v.multiplier > 0.0) {
        return Err(RecordError::invalid(
            "bad_multiplier",
            format!("multiplier {} for {key}", v.multiplier),
        ));
    }
    Ok(((cell, v.product), Some(v.multiplier)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CELL: &str = "dr5ru7";

    fn reason_of(e: RecordError) -> &'static str {
        match e {
            RecordError::Invalid { reason, .. } => reason,
            RecordError::Fatal(m) => panic!("fatal: {m}"),
        }
    }

    fn geo_trip(kind: TripEventKind, driver_id: Option<&str>) -> GeoTrip {
        GeoTrip {
            kind,
            trip_id: "t1".into(),
            rider_id: "r1".into(),
            product: Product::Comfort,
            pickup_lat: 40.75,
            pickup_lon: -73.98,
            driver_id: driver_id.map(str::to_owned),
            proposal_id: None,
            cell: Cell::parse(CELL).unwrap().to_bits() as i64,
            region: 0,
            halo: false,
            event_time: 1_000,
        }
    }

    #[test]
    fn trip_kinds_map_to_engine_calls() {
        let mut asked = None;
        let request = trip_action(geo_trip(TripEventKind::Requested, None), |cell, product| {
            asked = Some((cell.to_string(), product));
            1.7
        })
        .unwrap();
        assert_eq!(asked, Some((CELL.to_string(), Product::Comfort)));
        assert_eq!(
            request,
            TripAction::Request(TripRequest {
                trip_id: "t1".into(),
                rider_id: "r1".into(),
                product: Product::Comfort,
                pickup: LatLon {
                    lat: 40.75,
                    lon: -73.98
                },
                event_time: 1_000,
                surge_multiplier: 1.7,
            })
        );
        let no_surge = |_, _| unreachable!("only requests are priced");
        assert_eq!(
            trip_action(geo_trip(TripEventKind::Accepted, Some("d1")), no_surge).unwrap(),
            TripAction::Accept {
                trip_id: "t1".into(),
                driver_id: "d1".into(),
                event_time: 1_000
            }
        );
        assert_eq!(
            trip_action(geo_trip(TripEventKind::Declined, Some("d2")), no_surge).unwrap(),
            TripAction::Decline {
                trip_id: "t1".into(),
                driver_id: "d2".into(),
                event_time: 1_000
            }
        );
        assert_eq!(
            trip_action(geo_trip(TripEventKind::Cancelled, None), no_surge).unwrap(),
            TripAction::Cancel {
                trip_id: "t1".into(),
                event_time: 1_000
            }
        );
        for kind in [
            TripEventKind::DriverArrived,
            TripEventKind::Started,
            TripEventKind::Completed,
        ] {
            assert_eq!(
                trip_action(geo_trip(kind, Some("d1")), no_surge).unwrap(),
                TripAction::Progress
            );
        }
    }

    #[test]
    fn bad_trip_records_are_rejected_with_a_reason() {
        for kind in [TripEventKind::Accepted, TripEventKind::Declined] {
            let e = trip_action(geo_trip(kind, None), |_, _| 1.0).unwrap_err();
            assert_eq!(reason_of(e), "missing_driver_id");
        }
        let mut t = geo_trip(TripEventKind::Requested, None);
        t.cell = 0;
        assert_eq!(
            reason_of(trip_action(t, |_, _| 1.0).unwrap_err()),
            "bad_cell"
        );
    }

    #[test]
    fn driver_records_become_pings() {
        let d = GeoDriver {
            driver_id: "d1".into(),
            lat: 40.75,
            lon: -73.98,
            accuracy_m: None,
            speed_mps: None,
            heading_deg: None,
            status: DriverStatus::OnTrip,
            product: Product::Xl,
            cell: 0,
            region: 0,
            halo: true,
            event_time: 5,
        };
        let ping = driver_ping(&d);
        assert_eq!(
            (ping.driver_id, ping.position.lat, ping.position.lon),
            ("d1", 40.75, -73.98)
        );
        assert_eq!(ping.status, matching::DriverStatus::OnTrip);
        assert_eq!((ping.product, ping.event_time), (Product::Xl, 5));
        for (schema, engine) in [
            (DriverStatus::Available, matching::DriverStatus::Available),
            (DriverStatus::Dispatched, matching::DriverStatus::Dispatched),
            (DriverStatus::Offline, matching::DriverStatus::Offline),
        ] {
            assert_eq!(driver_status(schema), engine);
        }
    }

    #[test]
    fn outputs_round_trip_through_their_records() {
        let proposal = Proposal {
            proposal_id: "t1#2".into(),
            trip_id: "t1".into(),
            rider_id: "r1".into(),
            driver_id: "d1".into(),
            product: Product::Premium,
            distance_m: 120.5,
            eta_s: 19.6,
            score: -0.1,
            surge_multiplier: 1.4,
            attempt: 2,
            proposed_at: 10,
            expires_at: 15_010,
        };
        let record = proposal_record(&proposal);
        assert_eq!((record.attempt, record.expires_at), (2, 15_010));
        assert_eq!(proposal_seed(record.clone()).unwrap(), proposal);
        let negative = MatchProposal {
            attempt: -1,
            ..record
        };
        assert!(proposal_seed(negative).unwrap_err().contains("t1#2"));

        for reason in [
            Reason::NoDriverInRadius,
            Reason::MaxAttempts,
            Reason::Deadline,
        ] {
            let unfilled = Unfilled {
                trip_id: "t2".into(),
                rider_id: "r2".into(),
                product: Product::Economy,
                pickup: LatLon { lat: 1.5, lon: 2.5 },
                attempts: 3,
                reason,
                decided_at: 99,
            };
            let record = unfilled_record(&unfilled);
            assert_eq!(
                (record.pickup_lat, record.pickup_lon, record.attempts),
                (1.5, 2.5, 3)
            );
            assert_eq!(unfilled_seed(record), unfilled);
        }
        assert_eq!(
            reason_record(Reason::NoDriverInRadius),
            UnfilledReason::NoDriverInRadius
        );
    }

    #[test]
    fn profile_records_upsert_or_remove() {
        let v = DriverProfile {
            driver_id: "d1".into(),
            rating: 4.9,
            acceptance_rate: 0.95,
            products: vec![Product::Economy],
            updated_at: 0,
        };
        assert_eq!(
            profile_change("d1", Some(v.clone())).unwrap(),
            ProfileChange::Upsert(
                "d1".into(),
                matching::DriverProfile {
                    rating: 4.9,
                    acceptance_rate: 0.95
                }
            )
        );
        assert_eq!(
            profile_change("d1", None).unwrap(),
            ProfileChange::Remove("d1".into())
        );
        let corrupt = DriverProfile { rating: 7.0, ..v };
        assert_eq!(
            reason_of(profile_change("d1", Some(corrupt)).unwrap_err()),
            "bad_profile"
        );
    }

    #[test]
    fn surge_records_set_or_clear_a_cell() {
        let cell = Cell::parse(CELL).unwrap();
        let v = SurgeMultiplier {
            cell: CELL.into(),
            product: Product::Xl,
            multiplier: 1.8,
            supply: 1,
            demand: 4,
            stale: false,
            window_start: 0,
            window_end: 1,
            computed_at: 1,
        };
        let key = format!("{CELL}:XL");
        assert_eq!(
            surge_change(&key, Some(v.clone())).unwrap(),
            ((cell, Product::Xl), Some(1.8))
        );
        assert_eq!(
            surge_change(&key, None).unwrap(),
            ((cell, Product::Xl), None)
        );
        for bad in ["dr5ru7", "dr5ru7:SEDAN", "not a cell:XL"] {
            assert_eq!(reason_of(surge_change(bad, None).unwrap_err()), "bad_key");
        }
        let zero = SurgeMultiplier {
            multiplier: 0.0,
            ..v
        };
        assert_eq!(
            reason_of(surge_change(&key, Some(zero)).unwrap_err()),
            "bad_multiplier"
        );
    }
}
