//! The lookup tables every matcher instance holds whole: `driver.profile` (rating and
//! acceptance rate per driver, used in scores) and `surge.multiplier` (the multiplier quoted
//! per cell and product, carried by each request's proposals).
//!
//! Like a Kafka Streams `GlobalKTable`, they are not read through the consumer group: their
//! partitioning (by driver, by cell) has nothing to do with the regions an instance owns, and
//! any region may need any driver's profile. A consumer of this instance's own reads all of
//! their partitions from the beginning and never commits: [`Tables::load`] reads them to their
//! end before processing starts, [`Tables::poll`] takes what arrived since, without waiting,
//! once per batch.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::{BorrowedMessage, Message};
use surgeflow_domain::geo::Cell;
use surgeflow_domain::matching;
use surgeflow_kafka::ClientFactory;
use surgeflow_runtime::RecordError;
use surgeflow_schema::{DriverProfile, Product, SurgeMultiplier};

use crate::NAME;
use crate::records::{Decoder, ProfileChange, profile_change, surge_change};
use surgeflow_runtime::catch_up::{self, Start};

/// Longest the first full read of the tables may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// Most table records taken per batch, so a burst of profile updates cannot stall the
/// processing of trips for long; the rest are taken in the next batches.
const MAX_PER_POLL: usize = 5_000;

/// Which table a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Table {
    Profiles,
    Surge,
}

/// The two tables and the consumer that keeps them current.
pub(crate) struct Tables {
    consumer: BaseConsumer,
    state: State,
}

/// What the tables hold.
struct State {
    profile_topic: String,
    surge_topic: String,
    profiles: HashMap<String, matching::DriverProfile>,
    surge: HashMap<(Cell, Product), f64>,
}

impl Tables {
    /// Opens the tables and reads them to their current end.
    ///
    /// Blocking: call it from a thread where blocking is allowed, with a decoder that may
    /// block too.
    ///
    /// # Errors
    /// When the topics cannot be read to their end in time, or a record cannot be decoded for
    /// want of the registry.
    pub(crate) fn load(
        factory: &ClientFactory,
        group_id: &str,
        profile_topic: &str,
        surge_topic: &str,
        decoder: &impl Decoder,
    ) -> anyhow::Result<Tables> {
        // Never committed nor used for group membership, but librdkafka wants a group id; one
        // per process keeps instances from ever sharing anything through it.
        let consumer: BaseConsumer = factory
            .consumer_config(&format!("{group_id}.tables.{}", std::process::id()))
            .create()?;
        let mut ends =
            catch_up::assign(&consumer, &[profile_topic, surge_topic], Start::Beginning)?;
        let mut state = State {
            profile_topic: profile_topic.to_owned(),
            surge_topic: surge_topic.to_owned(),
            profiles: HashMap::new(),
            surge: HashMap::new(),
        };
        let started = Instant::now();
        catch_up::read_to_end(&consumer, &mut ends, started + LOAD_TIMEOUT, |message| {
            state
                .apply(message, decoder)
                .map(drop)
                .map_err(|e| anyhow::anyhow!("{}: {e}", message.topic()))
        })?;
        tracing::info!(
            operator = NAME,
            profiles = state.profiles.len(),
            multipliers = state.surge.len(),
            seconds = started.elapsed().as_secs_f64(),
            "tables loaded"
        );
        Ok(Tables { consumer, state })
    }

    /// Applies the table records that arrived since the last call (up to a bound), without
    /// waiting; the profile changes are appended to `changes` for the engines to apply.
    ///
    /// # Errors
    /// `Fatal` when a record cannot be decoded for want of the registry; the instance then
    /// restarts and reads the tables again.
    pub(crate) fn poll(
        &mut self,
        decoder: &impl Decoder,
        changes: &mut Vec<ProfileChange>,
    ) -> Result<(), RecordError> {
        for _ in 0..MAX_PER_POLL {
            match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(message)) => {
                    if let Some(change) = self.state.apply(&message, decoder)? {
                        changes.push(change);
                    }
                }
                // Transient (a broker restart, say): librdkafka retries by itself.
                Some(Err(e)) => tracing::warn!(operator = NAME, error = %e, "reading the tables"),
            }
        }
        Ok(())
    }

    /// The multiplier quoted for `product` at `cell`: 1.0 (no surge) when the pricer has
    /// published none.
    pub(crate) fn surge_at(&self, cell: Cell, product: Product) -> f64 {
        self.state
            .surge
            .get(&(cell, product))
            .copied()
            .unwrap_or(1.0)
    }

    /// Every profile, for an engine created after they were read.
    pub(crate) fn profiles(&self) -> impl Iterator<Item = (&str, matching::DriverProfile)> {
        self.state.profiles.iter().map(|(id, p)| (id.as_str(), *p))
    }

    /// (profiles, multipliers) held.
    pub(crate) fn sizes(&self) -> (usize, usize) {
        (self.state.profiles.len(), self.state.surge.len())
    }
}

impl State {
    /// Applies one table record; a bad one is counted and skipped (tables have no DLQ: the
    /// record stays in its topic for its owner to fix).
    fn apply(
        &mut self,
        message: &BorrowedMessage<'_>,
        decoder: &impl Decoder,
    ) -> Result<Option<ProfileChange>, RecordError> {
        let table = if message.topic() == self.profile_topic {
            Table::Profiles
        } else if message.topic() == self.surge_topic {
            Table::Surge
        } else {
            return Ok(None);
        };
        let key = message
            .key()
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        let applied = match table {
            Table::Profiles => self.apply_profile(&key, message.payload(), decoder),
            Table::Surge => self.apply_surge(&key, message.payload(), decoder),
        };
        match applied {
            Err(RecordError::Invalid {
                reason,
                message: text,
            }) => {
                tracing::warn!(
                    operator = NAME,
                    topic = message.topic(),
                    offset = message.offset(),
                    reason,
                    text,
                    "table record skipped"
                );
                metrics::counter!("surgeflow_records_dropped_total", "operator" => NAME,
                    "topic" => message.topic().to_owned(), "reason" => reason)
                .increment(1);
                Ok(None)
            }
            other => other,
        }
    }

    fn apply_profile(
        &mut self,
        key: &str,
        payload: Option<&[u8]>,
        decoder: &impl Decoder,
    ) -> Result<Option<ProfileChange>, RecordError> {
        let value = payload
            .map(|p| decoder.decode::<DriverProfile>(Some(p)))
            .transpose()?;
        let change = profile_change(key, value)?;
        match &change {
            ProfileChange::Upsert(driver, profile) => {
                self.profiles.insert(driver.clone(), *profile);
            }
            ProfileChange::Remove(driver) => {
                self.profiles.remove(driver);
            }
        }
        Ok(Some(change))
    }

    fn apply_surge(
        &mut self,
        key: &str,
        payload: Option<&[u8]>,
        decoder: &impl Decoder,
    ) -> Result<Option<ProfileChange>, RecordError> {
        let value = payload
            .map(|p| decoder.decode::<SurgeMultiplier>(Some(p)))
            .transpose()?;
        match surge_change(key, value)? {
            (at, Some(multiplier)) => self.surge.insert(at, multiplier),
            (at, None) => self.surge.remove(&at),
        };
        Ok(None)
    }
}
