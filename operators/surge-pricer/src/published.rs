//! Reading back the multipliers already published, to seed a restored engine.
//!
//! `surge.multiplier` is compacted and keyed by `<cell>:<product>`, so reading it to its end
//! with `read_committed` gives, per key, the last multiplier committed together with the
//! input offsets the restore replays up to.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use surgeflow_domain::geo::Cell;
use surgeflow_kafka::{ClientFactory, Registry, SchemaCache};
use surgeflow_schema::{Product, SurgeMultiplier};

/// The latest (cell, product, multiplier) of every key in `topic`.
///
/// # Errors
/// A message when the topic cannot be read to its end within two minutes.
pub fn read_all(
    factory: &ClientFactory,
    registry: &Registry,
    topic: &str,
) -> Result<Vec<(Cell, Product, f64)>, String> {
    let consumer: BaseConsumer = factory
        .consumer_config(&format!(
            "surgeflow.surge-pricer.readback.{}",
            std::process::id()
        ))
        .create()
        .map_err(|e| e.to_string())?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len() as i32);
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        if high > 0 {
            ends.insert(p, high);
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .map_err(|e| e.to_string())?;
        }
    }
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let schemas = SchemaCache::new(registry.clone());
    let mut latest: HashMap<(Cell, Product), f64> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("{topic} not read to its end in time"));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                if let Some(payload) = m.payload()
                    && let Ok(v) = runtime.block_on(schemas.decode::<SurgeMultiplier>(payload))
                    && let Ok(cell) = Cell::parse(&v.cell)
                {
                    latest.insert((cell, v.product), v.multiplier);
                }
                if ends
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    ends.remove(&m.partition());
                }
            }
            Some(Err(e)) => return Err(e.to_string()),
            None => {
                // The last offsets can be transaction markers, never delivered.
                if let Ok(positions) = consumer.position() {
                    for e in positions.elements() {
                        if let Offset::Offset(pos) = e.offset()
                            && ends.get(&e.partition()).is_some_and(|end| pos >= *end)
                        {
                            ends.remove(&e.partition());
                        }
                    }
                }
            }
        }
    }
    Ok(latest.into_iter().map(|((c, p), m)| (c, p, m)).collect())
}
