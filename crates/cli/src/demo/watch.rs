//! What feeds the view: a consumer of the pipeline's outputs and a scraper of the operators'
//! HTTP endpoints.
//!
//! The consumer reads `surge.multiplier`, `match.proposal` and `match.unfilled` with
//! `read_committed` (what any downstream service sees), from where each partition ended when
//! the demo started, assigning the partitions itself: no consumer group, no commits, so
//! watching never moves anybody's offsets. The scraper reads every operator's `/metrics` and
//! the pricer's view of its cells every couple of seconds.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use surgeflow_kafka::{ClientFactory, DecodeError, Registry, SchemaCache};
use surgeflow_schema::{AvroRecord, MatchProposal, MatchUnfilled, SurgeMultiplier};
use surgeflow_topology::Topology;

use super::view::{PricerCell, ViewState};

/// How often the scraper reads the operators' endpoints.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(2);

/// The output topics the view is built from.
#[derive(Debug, Clone)]
pub struct OutputTopics {
    pub surge: String,
    pub proposal: String,
    pub unfilled: String,
}

/// Locks the view, recovering it if a thread panicked while holding it (the view stays
/// consistent record by record).
pub fn lock(view: &Mutex<ViewState>) -> std::sync::MutexGuard<'_, ViewState> {
    view.lock().unwrap_or_else(|e| e.into_inner())
}

/// Assigns every partition of the output topics at its current end and starts the thread
/// that feeds their records into `view` until `stop` is set.
///
/// # Errors
/// The consumer cannot be created, or a topic's partitions or offsets cannot be read.
pub fn start_consumer(
    topology: &Topology,
    topics: OutputTopics,
    view: Arc<Mutex<ViewState>>,
    handle: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, String> {
    let factory = ClientFactory::from_topology(&topology.connection.kafka);
    let registry = Registry::from_topology(&topology.connection.registry)
        .map_err(|e| format!("registry settings: {e}"))?;
    let consumer: BaseConsumer = factory
        .consumer_config(&format!("surgeflow-demo-{}", std::process::id()))
        .create()
        .map_err(|e| format!("kafka client settings: {e}"))?;
    let mut assignment = TopicPartitionList::new();
    for topic in [&topics.surge, &topics.proposal, &topics.unfilled] {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .map_err(|e| format!("reading the partitions of {topic}: {e}"))?;
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len());
        if partitions == 0 {
            return Err(format!("topic {topic} does not exist in the cluster"));
        }
        for p in 0..partitions as i32 {
            let (_, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .map_err(|e| format!("reading the end of {topic}/{p}: {e}"))?;
            assignment
                .add_partition_offset(topic, p, Offset::Offset(high))
                .map_err(|e| e.to_string())?;
        }
    }
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    let cache = SchemaCache::new(registry);
    std::thread::Builder::new()
        .name("demo-outputs".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Some(result) = consumer.poll(Duration::from_millis(200)) else {
                    continue;
                };
                let Ok(message) = result else {
                    continue; // transient broker errors: librdkafka retries by itself
                };
                let payload = message.payload().unwrap_or_default();
                let topic = message.topic();
                if topic == topics.surge {
                    match decode::<SurgeMultiplier>(&cache, &handle, payload) {
                        Ok(r) => lock(&view).apply_surge(&r),
                        Err(_) => lock(&view).record_undecodable(),
                    }
                } else if topic == topics.proposal {
                    match decode::<MatchProposal>(&cache, &handle, payload) {
                        Ok(r) => lock(&view).apply_proposal(&r),
                        Err(_) => lock(&view).record_undecodable(),
                    }
                } else if topic == topics.unfilled {
                    match decode::<MatchUnfilled>(&cache, &handle, payload) {
                        Ok(r) => lock(&view).apply_unfilled(&r),
                        Err(_) => lock(&view).record_undecodable(),
                    }
                }
            }
        })
        .map_err(|e| format!("starting the consumer thread: {e}"))
}

/// Decodes from the cache, fetching the writer's schema from the registry the first time.
fn decode<T: AvroRecord>(
    cache: &SchemaCache,
    handle: &tokio::runtime::Handle,
    payload: &[u8],
) -> Result<T, DecodeError> {
    match cache.decode_cached::<T>(payload) {
        Err(DecodeError::RegistryUnavailable { .. }) => handle.block_on(cache.decode::<T>(payload)),
        other => other,
    }
}

/// An operator to scrape.
#[derive(Debug, Clone)]
pub struct ScrapeTarget {
    pub name: String,
    pub http_port: u16,
}

/// Scrapes every target's `/metrics` and the pricer's `/cells` every [`SCRAPE_INTERVAL`],
/// forever (the caller aborts the task).
pub async fn scrape(view: Arc<Mutex<ViewState>>, targets: Vec<ScrapeTarget>) {
    let Ok(client) = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(1500))
        .build()
    else {
        return;
    };
    let mut tick = tokio::time::interval(SCRAPE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for target in &targets {
            let base = format!("http://127.0.0.1:{}", target.http_port);
            match get_text(&client, &format!("{base}/metrics")).await {
                Some(text) => lock(&view).apply_metrics(&target.name, &text, super::now_ms()),
                None => lock(&view).scrape_failed(&target.name),
            }
            if target.name == "surge-pricer"
                && let Some(cells) = pricer_cells(&client, &base).await
            {
                lock(&view).apply_pricer_cells(&cells);
            }
        }
    }
}

async fn get_text(client: &reqwest::Client, url: &str) -> Option<String> {
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

/// The pricer's view of every cell it tracks.
async fn pricer_cells(client: &reqwest::Client, base: &str) -> Option<Vec<PricerCell>> {
    #[derive(serde::Deserialize)]
    struct Answer {
        cells: Vec<PricerCell>,
    }
    let text = get_text(client, &format!("{base}/cells?bbox=-90,-180,90,180")).await?;
    serde_json::from_str::<Answer>(&text).ok().map(|a| a.cells)
}
