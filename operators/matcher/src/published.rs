//! Reading back what was already published, to seed engines being restored.
//!
//! A replay of the input alone does not reproduce the offers a lost instance made (the inputs
//! interleave differently the second time, and its clock also moved between records); the
//! engine settles that with the published outputs, seeded before the replay (see
//! `surgeflow_domain::matching::Matcher::begin_restore`). They are read with `read_committed`
//! up to the end of `match.proposal` and `match.unfilled`: whatever a lost transaction held
//! was aborted, whatever was committed went out together with the input offsets the replay
//! stops at.

use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use surgeflow_domain::matching::{Matcher as Engine, Proposal, Unfilled};
use surgeflow_kafka::ClientFactory;
use surgeflow_runtime::RecordError;
use surgeflow_schema::{MatchProposal, MatchUnfilled, Product};

use crate::NAME;
use crate::records::{Decoder, proposal_seed, unfilled_seed};
use surgeflow_runtime::catch_up::{self, Start};

/// Longest a read-back may take before the restore gives up (and the instance restarts).
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The published outputs of every trip, from some time on.
#[derive(Debug, Default)]
pub(crate) struct Seeds {
    proposals: Vec<Proposal<Product>>,
    unfilled: Vec<Unfilled<Product>>,
}

impl Seeds {
    /// Reads every record of `proposal_topic` and `unfilled_topic` stamped at or after
    /// `from_ms`, in all partitions (outputs are keyed by trip, not by region, so any
    /// partition may hold this instance's trips).
    ///
    /// # Errors
    /// `Fatal` when the topics cannot be read to their end in time, or a record cannot be
    /// decoded for want of the registry: restoring without them could repeat offers.
    pub(crate) fn read(
        factory: &ClientFactory,
        group_id: &str,
        proposal_topic: &str,
        unfilled_topic: &str,
        from_ms: i64,
        decoder: &impl Decoder,
    ) -> Result<Seeds, RecordError> {
        let started = Instant::now();
        let fatal = |e: anyhow::Error| {
            RecordError::Fatal(format!(
                "reading back {proposal_topic} and {unfilled_topic}: {e:#}"
            ))
        };
        let consumer: BaseConsumer = factory
            .consumer_config(&format!("{group_id}.readback.{}", std::process::id()))
            .create()
            .map_err(|e| fatal(e.into()))?;
        let mut ends = catch_up::assign(
            &consumer,
            &[proposal_topic, unfilled_topic],
            Start::Time(from_ms),
        )
        .map_err(fatal)?;
        let mut seeds = Seeds::default();
        catch_up::read_to_end(&consumer, &mut ends, started + READ_TIMEOUT, |m| {
            let seeded = if m.topic() == proposal_topic {
                decoder
                    .decode::<MatchProposal>(m.payload())
                    .and_then(|p| {
                        proposal_seed(p).map_err(|e| RecordError::invalid("bad_attempt", e))
                    })
                    .map(|p| seeds.proposals.push(p))
            } else {
                decoder
                    .decode::<MatchUnfilled>(m.payload())
                    .map(|u| seeds.unfilled.push(unfilled_seed(u)))
            };
            match seeded {
                // Not ours to fix, and nothing to seed from it.
                Err(RecordError::Invalid { reason, message }) => {
                    tracing::warn!(
                        operator = NAME,
                        topic = m.topic(),
                        offset = m.offset(),
                        reason,
                        message,
                        "published record not seeded"
                    );
                    Ok(())
                }
                Err(RecordError::Fatal(e)) => Err(anyhow::anyhow!(e)),
                Ok(()) => Ok(()),
            }
        })
        .map_err(fatal)?;
        tracing::info!(
            operator = NAME,
            proposals = seeds.proposals.len(),
            unfilled = seeds.unfilled.len(),
            seconds = started.elapsed().as_secs_f64(),
            "published outputs read back"
        );
        Ok(seeds)
    }

    /// Seeds an engine that has begun restoring. Seeds of trips its replay never sees are
    /// dropped by the engine at the end of the restore, so every engine gets them all.
    pub(crate) fn plant(&self, engine: &mut Engine<Product>) {
        for p in &self.proposals {
            if let Err(e) = engine.seed_proposal(p.clone()) {
                // An attempt beyond today's `max_attempts`: published under older settings.
                tracing::warn!(operator = NAME, error = %e, "proposal not seeded");
            }
        }
        for u in &self.unfilled {
            if let Err(e) = engine.seed_unfilled(u.clone()) {
                tracing::warn!(operator = NAME, error = %e, "unfilled report not seeded");
            }
        }
    }
}
