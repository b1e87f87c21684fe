//! The shared `main` of every operator binary: arguments, configuration, metrics, the HTTP
//! endpoints, signals, and the processing thread.
//!
//! `NAME --topology FILE [--instance-id ID]`: the operator's section of `topology.yaml` gives
//! its topics, delivery mode, batch settings and HTTP port. The instance id (default: the
//! `SURGEFLOW_INSTANCE_ID` variable, else the host name, which is stable for a StatefulSet pod)
//! makes the transactional id `<prefix>.<instance id>`, so a restarted instance fences its
//! predecessor. Exit codes: 0 after a clean shutdown, 2 for bad configuration, 1 otherwise.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use surgeflow_kafka::{ClientFactory, Registry, SchemaCache};
use surgeflow_topology::Topology;

use metrics_exporter_prometheus::Matcher;

use crate::http::serve;
use crate::operator::OperatorFactory;
use crate::telemetry::{LATENCY_BUCKETS, runtime_buckets};
use crate::worker::{Health, Worker, WorkerSettings};

/// How often histogram samples are drained into their buckets between scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Command-line arguments shared by every operator binary.
#[derive(Debug, clap::Parser)]
struct Args {
    /// The topology file.
    #[arg(long, env = "SURGEFLOW_TOPOLOGY", default_value = "topology.yaml")]
    topology: PathBuf,
    /// Stable identity of this instance within its group (transactional id suffix).
    #[arg(long, env = "SURGEFLOW_INSTANCE_ID")]
    instance_id: Option<String>,
    /// Address the HTTP endpoints bind to (the port comes from the topology).
    #[arg(long, env = "SURGEFLOW_HTTP_HOST", default_value = "127.0.0.1")]
    http_host: std::net::IpAddr,
    /// Override of the topology's HTTP port (0 picks a free one).
    #[arg(long, env = "SURGEFLOW_HTTP_PORT")]
    http_port: Option<u16>,
}

fn instance_id(given: Option<String>) -> String {
    given
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "0".to_string())
}

/// Runs operator `O` as a process: call it from the binary's `main`.
pub fn run<O: OperatorFactory>() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SURGEFLOW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = <Args as clap::Parser>::parse();
    match run_with::<O>(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            tracing::error!(operator = O::NAME, "{message}");
            eprintln!("{}: {message}", O::NAME);
            ExitCode::from(code)
        }
    }
}

fn run_with<O: OperatorFactory>(args: Args) -> Result<(), (u8, String)> {
    let topology = Topology::load(&args.topology)
        .map_err(|e| (2, format!("{}:\n{e}", args.topology.display())))?;
    let spec = topology.operators.get(O::NAME).ok_or_else(|| {
        (
            2,
            format!(
                "{} has no operators.{} section",
                args.topology.display(),
                O::NAME
            ),
        )
    })?;
    let instance = instance_id(args.instance_id);
    let settings = WorkerSettings {
        operator: O::NAME,
        group_id: spec.group_id.clone(),
        group_instance_id: format!("{}.{instance}", spec.group_id),
        transactional_id: format!("{}.{instance}", spec.transactional_id_prefix),
        inputs: spec.inputs.to_vec(),
        outputs: spec.outputs.to_vec(),
        dlq: spec.dlq.to_string(),
        delivery: spec.delivery,
        commit_interval: Duration::from_millis(spec.commit_interval_ms),
        max_batch: spec.max_batch,
        registry_retry: Duration::from_secs(60),
    };
    let port = args.http_port.unwrap_or(spec.http_port);

    let mut builder = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(LATENCY_BUCKETS)
        .map_err(|e| (1, format!("metrics: {e}")))?;
    for (name, buckets) in runtime_buckets(spec.max_batch)
        .into_iter()
        .chain(O::histogram_buckets(&topology))
    {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_string()), &buckets)
            .map_err(|e| (1, format!("metrics: buckets of {name}: {e}")))?;
    }
    let prometheus = builder
        .install_recorder()
        .map_err(|e| (1, format!("metrics: {e}")))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| (1, format!("async runtime: {e}")))?;
    let registry =
        Registry::from_topology(&topology.connection.registry).map_err(|e| (2, e.to_string()))?;
    let operator = runtime
        .block_on(O::build(&topology, &registry))
        .map_err(|e| (1, format!("starting: {e:#}")))?;
    let routes = operator.routes();
    let tables = operator.gauge_tables();

    let health = Arc::new(Health::default());
    let addr = SocketAddr::new(args.http_host, port);
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| (1, format!("binding the HTTP endpoints to {addr}: {e}")))?;
    let bound = listener.local_addr().map_err(|e| (1, e.to_string()))?;
    // Histogram samples wait in the recorder until drained: drain them between scrapes too, so
    // their memory stays bounded however rarely Prometheus scrapes.
    let upkeep = prometheus.clone();
    runtime.spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    runtime.spawn(serve(listener, prometheus, health.clone(), routes, tables));
    tracing::info!(operator = O::NAME, %bound, transactional_id = %settings.transactional_id, "started");

    let shutdown = Arc::new(AtomicBool::new(false));
    runtime.spawn(wait_for_signal(shutdown.clone()));

    let factory = ClientFactory::from_topology(&topology.connection.kafka);
    let schemas = SchemaCache::new(registry);
    let handle = runtime.handle().clone();
    let worker = Worker::new(operator, settings, factory, schemas, handle, health)
        .map_err(|e| (1, e.to_string()))?;
    let thread = std::thread::Builder::new()
        .name(format!("{}-worker", O::NAME))
        .spawn(move || {
            let consumer = worker.consumer()?;
            worker.run(&consumer, &shutdown)
        })
        .map_err(|e| (1, format!("starting the worker thread: {e}")))?;
    let result = thread
        .join()
        .map_err(|_| (1, "the worker thread panicked".to_string()))?;
    runtime.shutdown_timeout(Duration::from_secs(2));
    result.map_err(|e| (1, e.to_string()))
}

/// Sets `shutdown` on SIGTERM or SIGINT; the worker then finishes its batch, commits and
/// leaves the group.
async fn wait_for_signal(shutdown: Arc<AtomicBool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("signal received: finishing the batch and leaving the group");
    shutdown.store(true, std::sync::atomic::Ordering::Relaxed);
}
