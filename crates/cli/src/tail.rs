//! `surgeflow tail TOPIC`: print a topic's records as JSON lines, one record per line, with
//! the field names of the writer's schema, so anyone can look at what flows.
//!
//! It reads committed records only (what downstream consumers see), assigns every partition
//! itself (no consumer group, no commits: looking never moves anyone's offsets), and starts at
//! the end unless `--from-beginning`.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use surgeflow_kafka::{ClientFactory, Registry, SchemaCache};
use surgeflow_topology::PayloadFormat;

use crate::{Failure, Outcome, load_topology, runtime};

#[derive(Args)]
pub struct TailArgs {
    /// A topic declared in the topology.
    topic: String,
    /// Start at the oldest record instead of the newest.
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<u64>,
    /// Stop when no record arrived for this many seconds (default: wait forever).
    #[arg(long)]
    idle_timeout_s: Option<u64>,
    /// Wrap each record with its partition, offset, key, timestamp and headers.
    #[arg(long)]
    with_metadata: bool,
}

pub fn run(args: TailArgs, path: &Path) -> Outcome {
    let topology = load_topology(path)?;
    let spec = topology
        .topic(&args.topic)
        .ok_or_else(|| {
            Failure::usage(format!(
                "topic {} is not declared in {}",
                args.topic,
                path.display()
            ))
        })?
        .clone();
    let factory = ClientFactory::from_topology(&topology.connection.kafka);
    let registry =
        Registry::from_topology(&topology.connection.registry).map_err(Failure::usage)?;
    let cache = SchemaCache::new(registry);
    let consumer: BaseConsumer = factory
        .consumer_config(&format!("surgeflow-tail-{}", std::process::id()))
        .create()
        .map_err(|e| Failure::usage(format!("kafka client settings: {e}")))?;
    let metadata = consumer
        .fetch_metadata(Some(&args.topic), Duration::from_secs(10))
        .map_err(|e| Failure::runtime(format!("reading metadata of {}: {e}", args.topic)))?;
    let partitions = metadata
        .topics()
        .first()
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        return Err(Failure::runtime(format!(
            "topic {} does not exist in the cluster (run `surgeflow topology apply`)",
            args.topic
        )));
    }
    let start = if args.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment
            .add_partition_offset(&args.topic, p, start)
            .map_err(|e| Failure::runtime(e.to_string()))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| Failure::runtime(e.to_string()))?;

    let rt = runtime()?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    loop {
        if args.max.is_some_and(|max| printed >= max) {
            break;
        }
        if args
            .idle_timeout_s
            .is_some_and(|s| last_record.elapsed() >= Duration::from_secs(s))
        {
            break;
        }
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = result.map_err(|e| Failure::runtime(format!("consuming: {e}")))?;
        last_record = Instant::now();
        let value = render(&rt, &cache, &spec.value, message.payload());
        let line = if args.with_metadata {
            let headers: serde_json::Map<String, serde_json::Value> = message
                .headers()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            let v = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                            (h.key.to_string(), v.into())
                        })
                        .collect()
                })
                .unwrap_or_default();
            serde_json::json!({
                "partition": message.partition(),
                "offset": message.offset(),
                "timestamp_ms": message.timestamp().to_millis(),
                "key": render(&rt, &cache, &spec.key, message.key()),
                "headers": headers,
                "value": value,
            })
        } else {
            value
        };
        if writeln!(out, "{line}").is_err() {
            break; // the reader went away (e.g. `| head`)
        }
        printed += 1;
    }
    Ok(0)
}

/// Renders a key or value by its declared format. A payload that does not decode is shown
/// with the reason instead of stopping the tail: tail is for looking at bad data too.
fn render(
    rt: &tokio::runtime::Runtime,
    cache: &SchemaCache,
    format: &PayloadFormat,
    bytes: Option<&[u8]>,
) -> serde_json::Value {
    let Some(bytes) = bytes else {
        return serde_json::Value::Null;
    };
    match format {
        PayloadFormat::String => String::from_utf8_lossy(bytes).into_owned().into(),
        PayloadFormat::Raw => serde_json::json!({ "bytes_hex": hex(bytes) }),
        PayloadFormat::Avro { .. } => match rt.block_on(cache.decode_json(bytes)) {
            Ok(value) => value,
            Err(e) => {
                serde_json::json!({ "undecodable": e.reason(), "error": e.to_string(), "bytes_hex": hex(bytes) })
            }
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
