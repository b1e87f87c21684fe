//! Reading back the multipliers already published, to seed a restored engine.
//!
//! `surge.multiplier` is compacted and keyed by `<cell>:<product>`, so reading it to its end
//! with `read_committed` gives, per key, the last multiplier committed together with the
//! input offsets the restore replays up to.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use surgeflow_domain::geo::Cell;
use surgeflow_kafka::{ClientFactory, Registry, SchemaCache};
use surgeflow_runtime::catch_up::{self, Start};
use surgeflow_schema::{Product, SurgeMultiplier};

/// How long reading back may take before the restore gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The latest (cell, product, multiplier) of every key in `topic`.
///
/// # Errors
/// When the topic cannot be read to its end in time. Records that do not decode are skipped
/// (they were never published by this operator).
pub fn read_all(
    factory: &ClientFactory,
    registry: &Registry,
    topic: &str,
) -> anyhow::Result<Vec<(Cell, Product, f64)>> {
    let started = Instant::now();
    let consumer: BaseConsumer = factory
        .consumer_config(&format!(
            "surgeflow.surge-pricer.readback.{}",
            std::process::id()
        ))
        .create()?;
    let mut ends = catch_up::assign(&consumer, &[topic], Start::Beginning)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let schemas = SchemaCache::new(registry.clone());
    let mut latest: HashMap<(Cell, Product), f64> = HashMap::new();
    catch_up::read_to_end(&consumer, &mut ends, started + READ_TIMEOUT, |m| {
        if let Some(payload) = m.payload()
            && let Ok(v) = runtime.block_on(schemas.decode::<SurgeMultiplier>(payload))
            && let Ok(cell) = Cell::parse(&v.cell)
        {
            latest.insert((cell, v.product), v.multiplier);
        }
        Ok(())
    })?;
    Ok(latest.into_iter().map(|((c, p), m)| (c, p, m)).collect())
}
