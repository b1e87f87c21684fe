//! `surgeflow demo`: the whole pipeline on one machine, with a live view of what it does.
//!
//! In order: bind the web page (so a taken port fails before anything starts); build the
//! operators with Cargo when run from the workspace (a no-op when they are fresh), else find
//! them next to this executable; start the local Kafka and registry unless they run already (only when
//! the topology points at them); apply the topology; start watching the output topics at
//! their current end; start the four operators, then the feeder (`surgeflow simulate`, or
//! `surgeflow replay FILE` with `--replay`), each as a child process logging to a file; and
//! refresh a summary in the terminal while the page polls `/api/state`.
//!
//! Ctrl-C, SIGTERM or the end of `--duration` stop, in order, the feeder, the operators
//! (SIGTERM, then time to commit their last transaction, then SIGKILL), and the local stack
//! if the demo started it; the exit code is then 0. A second Ctrl-C exits at once.
//!
//! Modules: [`supervisor`] (child processes), [`view`] (what is shown, pure), [`watch`]
//! (the consumer and the scraper feeding the view), [`web`] (the page and its JSON).

mod supervisor;
mod view;
mod watch;
mod web;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use surgeflow_devstack::{DevStack, StackPaths};
use surgeflow_kafka::ClientFactory;
use surgeflow_kafka::admin;
use surgeflow_topology::Topology;

use crate::{Failure, Outcome, load_topology, runtime};
use supervisor::{OperatorBinaries, Stopped, Supervised};
use view::{Area, Feeder, ProcessState, ViewState};
use watch::{OutputTopics, ScrapeTarget, lock};

/// How long operators get to commit and leave their group after SIGTERM.
const OPERATOR_GRACE: Duration = Duration::from_secs(20);
/// How long the feeder gets after SIGTERM.
const FEEDER_GRACE: Duration = Duration::from_secs(5);
/// Lines of a log quoted when its process fails.
const LOG_TAIL_LINES: usize = 20;

#[derive(Args)]
pub struct DemoArgs {
    /// Address of the web page.
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// Feed a recorded trip data set (`surgeflow replay FILE`) instead of the simulated city.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// Replay speed, a multiple of real time or `max` (with `--replay`).
    #[arg(long, default_value = "10", requires = "replay")]
    speed: String,
    /// Stop by itself after this long (`90s`, `10m`, `1h`); default: run until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Drivers in the simulated city.
    #[arg(long, default_value_t = 2000)]
    drivers: u32,
    /// Trip requests per second in the simulated city (the simulator's default, 5, already
    /// makes a tight market; a little more makes hotspots surge within a minute or two).
    #[arg(long, default_value_t = 7.0)]
    requests_per_s: f64,
    /// Radius of the simulated city, metres (around Times Square).
    #[arg(long, default_value_t = 8000.0)]
    radius_m: f64,
    /// Seed of the simulated city.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Topic prefix handed to the feeder; default: the one the topology's topics carry
    /// (`<prefix>.location.update`), if any.
    #[arg(long)]
    topic_prefix: Option<String>,
    /// Time between two terminal summaries.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    refresh: Duration,
    /// Where the logs of every process the demo starts go (default: `.surgeflow/demo` in
    /// the project).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Where the operator binaries are (default: next to this executable).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Do not build the operators, use the binaries as they are (run from the workspace, the
    /// demo otherwise builds them first, which does nothing when they are fresh).
    #[arg(long)]
    no_build: bool,
    /// Leave the local Kafka and registry running on exit, even when the demo started them.
    #[arg(long)]
    keep_stack: bool,
    /// Do not start the local Kafka and registry: use the cluster the topology names.
    #[arg(long)]
    no_stack: bool,
}

/// Parses `500ms`, `10s`, `5m`, `2h` (a bare number is seconds).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let value: f64 = text[..digits]
        .parse()
        .map_err(|_| format!("expected a duration like 90s or 10m, got `{text}`"))?;
    let factor = match &text[digits..] {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        unit => return Err(format!("unknown unit `{unit}` in `{text}` (ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(value * factor).map_err(|e| format!("`{text}`: {e}"))
}

/// UTC milliseconds now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs the demo; see the module documentation.
pub fn run(args: DemoArgs, topology_path: &Path) -> Outcome {
    let topology = load_topology(topology_path)?;
    let topology_file = std::path::absolute(topology_path)
        .map_err(|e| Failure::usage(format!("{}: {e}", topology_path.display())))?;
    let plan = Plan::new(&args, &topology)?;
    let rt = runtime()?;
    let signals = Arc::new(AtomicU32::new(0));
    rt.spawn(count_signals(signals.clone()));
    // The top of the colour scale: the highest multiplier the pricer can publish.
    let cap = topology.operators.surge_pricer.as_ref().map_or(3.0, |p| {
        let curve_top = p
            .params
            .curve
            .iter()
            .map(|c| c.multiplier)
            .fold(1.0, f64::max);
        curve_top.min(p.params.cap)
    });
    let view = Arc::new(Mutex::new(ViewState::new(now_ms(), cap)));
    let mut demo = Demo {
        args,
        topology,
        topology_file,
        plan,
        rt,
        signals,
        view,
        operators: Vec::new(),
        feeder: None,
        stack: None,
        stack_started: false,
        consumer: None,
        consumer_stop: Arc::new(AtomicBool::new(false)),
        scraper: None,
        server: None,
        page_url: String::new(),
    };
    let result = demo.start_and_watch();
    let teardown = demo.teardown();
    match (result, teardown) {
        (Err(e), _) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => Ok(0),
    }
}

/// Counts SIGINT and SIGTERM; the second one exits at once (children get SIGTERM from the
/// kernel through their parent-death signal).
async fn count_signals(count: Arc<AtomicU32>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("surgeflow demo: cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if count.fetch_add(1, Ordering::SeqCst) >= 1 {
            eprintln!("surgeflow demo: interrupted again: exiting now");
            std::process::exit(130);
        }
    }
}

/// What the topology says the demo runs: operators, ports, topics.
struct Plan {
    /// `(name, http port)` in pipeline order.
    operators: Vec<(&'static str, u16)>,
    prefix: Option<String>,
    outputs: OutputTopics,
}

impl Plan {
    fn new(args: &DemoArgs, topology: &Topology) -> Result<Self, Failure> {
        let mut operators = Vec::new();
        for (name, _) in supervisor::OPERATORS {
            let spec = topology.operators.get(name).ok_or_else(|| {
                Failure::usage(format!(
                    "the demo runs every operator, but the topology has no operators.{name}"
                ))
            })?;
            operators.push((spec.name, spec.http_port));
        }
        let prefix = match &args.topic_prefix {
            Some(p) => Some(p.clone()),
            None => topic_prefix(topology)?,
        };
        let topic = |name: &str| -> Result<String, Failure> {
            let full = match &prefix {
                Some(p) => format!("{p}.{name}"),
                None => name.to_string(),
            };
            if topology.topic(&full).is_none() {
                return Err(Failure::usage(format!(
                    "topic {full} is not declared in the topology"
                )));
            }
            Ok(full)
        };
        topic("location.update")?;
        let outputs = OutputTopics {
            surge: topic("surge.multiplier")?,
            proposal: topic("match.proposal")?,
            unfilled: topic("match.unfilled")?,
        };
        Ok(Plan {
            operators,
            prefix,
            outputs,
        })
    }
}

/// The prefix of the topology's topics: none when `location.update` is declared as is,
/// `P` when it is declared as `P.location.update` (next to `P.surge.multiplier`).
fn topic_prefix(topology: &Topology) -> Result<Option<String>, Failure> {
    if topology.topic("location.update").is_some() {
        return Ok(None);
    }
    let prefixes: Vec<&str> = topology
        .topics
        .keys()
        .filter_map(|t| t.strip_suffix(".location.update"))
        // `<prefix>.dlq.location.update` ends the same way: a prefix has outputs too.
        .filter(|p| topology.topic(&format!("{p}.surge.multiplier")).is_some())
        .collect();
    match prefixes[..] {
        [one] => Ok(Some(one.to_string())),
        [] => Err(Failure::usage(
            "the topology declares no location.update topic to feed",
        )),
        _ => Err(Failure::usage(format!(
            "several location.update topics ({}): choose with --topic-prefix",
            prefixes.join(", ")
        ))),
    }
}

struct Demo {
    args: DemoArgs,
    topology: Topology,
    topology_file: PathBuf,
    plan: Plan,
    rt: tokio::runtime::Runtime,
    signals: Arc<AtomicU32>,
    view: Arc<Mutex<ViewState>>,
    operators: Vec<Supervised>,
    feeder: Option<Supervised>,
    stack: Option<DevStack>,
    stack_started: bool,
    consumer: Option<std::thread::JoinHandle<()>>,
    consumer_stop: Arc<AtomicBool>,
    scraper: Option<tokio::task::JoinHandle<()>>,
    server: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
    page_url: String,
}

/// Why starting stopped early: a signal (not an error) or a failure.
enum Interrupt {
    Signal,
    Failed(Failure),
}

impl From<Failure> for Interrupt {
    fn from(f: Failure) -> Self {
        Interrupt::Failed(f)
    }
}

impl Demo {
    fn interrupted(&self) -> bool {
        self.signals.load(Ordering::SeqCst) > 0
    }

    fn check(&self) -> Result<(), Interrupt> {
        if self.interrupted() {
            Err(Interrupt::Signal)
        } else {
            Ok(())
        }
    }

    fn phase(&self, phase: &str) {
        lock(&self.view).set_phase(phase);
    }

    fn start_and_watch(&mut self) -> Result<(), Failure> {
        match self.start() {
            Ok(()) => {}
            Err(Interrupt::Signal) => {
                println!("interrupted while starting");
                return Ok(());
            }
            Err(Interrupt::Failed(f)) => return Err(f),
        }
        self.watch()
    }

    fn start(&mut self) -> Result<(), Interrupt> {
        self.serve_page()?;
        self.check_ports()?;
        let binaries = self.find_binaries()?;
        self.check()?;
        self.start_stack()?;
        self.check()?;
        self.apply_topology()?;
        self.check()?;
        self.start_watching()?;
        self.start_operators(&binaries)?;
        self.check()?;
        self.start_feeder()?;
        self.phase("running");
        println!(
            "\nrunning: open {} (Ctrl-C stops everything the demo started)\n",
            self.page_url
        );
        Ok(())
    }

    /// Binds the page's address first, so a taken port fails before anything starts, and
    /// serves it right away (it shows the start-up phases too).
    fn serve_page(&mut self) -> Result<(), Failure> {
        let listen = self.args.listen;
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind(listen))
            .map_err(|e| {
                Failure::runtime(format!(
                    "serving the page on {listen}: {e} (another demo running? choose another address with --listen, e.g. --listen 127.0.0.1:8090)"
                ))
            })?;
        let bound = listener.local_addr().map_err(Failure::runtime)?;
        self.page_url = format!("http://{bound}/");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = self
            .rt
            .spawn(web::serve(listener, self.view.clone(), async {
                let _ = rx.await;
            }));
        self.server = Some((tx, server));
        println!("surgeflow demo: the page is at {}", self.page_url);
        Ok(())
    }

    /// Fails early, naming the operator, when one of their HTTP ports is taken.
    fn check_ports(&self) -> Result<(), Failure> {
        for &(name, port) in &self.plan.operators {
            if port == 0 {
                continue;
            }
            if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                return Err(Failure::runtime(format!(
                    "port {port} ({name}'s http_port in the topology) cannot be bound: {e}. \
                     Is a demo or an operator already running? Stop it, or move the port, e.g. \
                     SURGEFLOW__OPERATORS__{}__HTTP_PORT={}",
                    name.replace('-', "_").to_uppercase(),
                    port + 100
                )));
            }
        }
        Ok(())
    }

    /// The operator binaries. Run from the workspace, the demo builds them first with the
    /// profile of its own binary (a no-op when they are fresh, and it keeps them in step with
    /// the topology file); installed elsewhere, they must lie next to it (or in `--bin-dir`).
    fn find_binaries(&self) -> Result<OperatorBinaries, Failure> {
        let exe = std::env::current_exe()
            .map_err(|e| Failure::runtime(format!("locating this executable: {e}")))?;
        let exe_dir = exe.parent().unwrap_or(Path::new(".")).to_path_buf();
        let dir = self.args.bin_dir.clone().unwrap_or_else(|| exe_dir.clone());
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        let build = if self.args.no_build || self.args.bin_dir.is_some() {
            None
        } else {
            supervisor::build_plan(&exe_dir, &cwd, &supervisor::OPERATORS)
        };
        if let Some((workspace, cargo_args)) = build {
            let missing = OperatorBinaries::find(&dir).missing;
            self.phase("building the operators");
            if missing.is_empty() {
                println!(
                    "checking that the operators are up to date: cargo {}",
                    cargo_args.join(" ")
                );
            } else {
                println!(
                    "building the operators (the first time takes a few minutes): cargo {}",
                    cargo_args.join(" ")
                );
            }
            supervisor::run_cargo(&workspace, &cargo_args).map_err(Failure::runtime)?;
        }
        let found = OperatorBinaries::find(&dir);
        if found.missing.is_empty() {
            return Ok(found);
        }
        let names: Vec<&str> = found.missing.iter().map(|(b, _)| *b).collect();
        Err(Failure::runtime(format!(
            "operator binaries missing in {}: {}; build them (`cargo build --release`) or say where they are with --bin-dir",
            dir.display(),
            names.join(", ")
        )))
    }

    /// Starts the local Kafka and registry when the topology points at them and they do not
    /// run yet.
    fn start_stack(&mut self) -> Result<(), Failure> {
        let bootstrap = &self.topology.connection.kafka.bootstrap_servers;
        if self.args.no_stack {
            println!("using the cluster at {bootstrap} (--no-stack)");
            return Ok(());
        }
        let stack = DevStack::discover();
        let local = stack.config().bootstrap_servers();
        if normalise_host(bootstrap) != normalise_host(&local) {
            println!("using the cluster at {bootstrap} (the topology's, not the local stack)");
            return Ok(());
        }
        self.phase("starting the local Kafka and registry");
        let running = stack.status();
        if running.kafka.is_running() && running.registry.is_running() {
            println!("the local Kafka and registry run already: {local}");
        } else {
            println!(
                "starting the local Kafka and registry (the first time downloads them into .surgeflow/cache: a few minutes)..."
            );
        }
        let status = stack.up().map_err(|e| Failure::runtime(e.to_string()))?;
        let started = [status.kafka.started, status.registry.started];
        if started.iter().any(|&s| s) {
            println!("{status}");
        }
        // Stopped on exit only when none of it ran before: a stack someone else started
        // stays up.
        self.stack_started = started.iter().all(|&s| s);
        self.stack = Some(stack);
        Ok(())
    }

    /// Creates the topics and registers the schemas, as `surgeflow topology apply` does.
    fn apply_topology(&self) -> Result<(), Failure> {
        self.phase("applying the topology");
        let topology = &self.topology;
        let applied = self.rt.block_on(async {
            let (changes, admin, registry) = crate::topology_cmd::read_plan(topology).await?;
            if !changes.is_empty() {
                admin::apply(topology, &changes, &admin, &registry)
                    .await
                    .map_err(|e| Failure::runtime(format!("applying the topology: {e}")))?;
            }
            Ok::<_, Failure>(changes)
        })?;
        let manual = applied.iter().filter(|c| c.is_manual()).count();
        println!(
            "topology {}: {}",
            self.topology_file.display(),
            if applied.is_empty() {
                "in sync".to_string()
            } else {
                format!("applied {} change(s)", applied.len() - manual)
            }
        );
        for change in applied.iter().filter(|c| c.is_manual()) {
            println!("  needs an operator: {change}");
        }
        if !applied.is_empty() {
            self.wait_for_topics()?;
        }
        Ok(())
    }

    /// Waits until the broker's metadata lists every declared topic: topics just created are
    /// not visible to every client at once, and the feeder checks they exist.
    fn wait_for_topics(&self) -> Result<(), Failure> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = ClientFactory::from_topology(&self.topology.connection.kafka)
            .base()
            .create()
            .map_err(|e| Failure::usage(format!("kafka client settings: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        // One topic per request: a shared cluster may hold thousands of topics.
        let visible = |topic: &str| {
            consumer
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .is_ok_and(|m| {
                    m.topics().iter().any(|t| {
                        t.name() == topic && t.error().is_none() && !t.partitions().is_empty()
                    })
                })
        };
        let mut missing: Vec<&String> = self.topology.topics.keys().collect();
        loop {
            missing.retain(|t| !visible(t));
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Failure::runtime(format!(
                    "topics created but still not visible after 30 s: {}",
                    missing
                        .iter()
                        .map(|t| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn start_watching(&mut self) -> Result<(), Failure> {
        let consumer = watch::start_consumer(
            &self.topology,
            self.plan.outputs.clone(),
            self.view.clone(),
            self.rt.handle().clone(),
            self.consumer_stop.clone(),
        )
        .map_err(Failure::runtime)?;
        self.consumer = Some(consumer);
        let targets = self
            .plan
            .operators
            .iter()
            .map(|&(name, http_port)| ScrapeTarget {
                name: name.to_string(),
                http_port,
            })
            .collect();
        self.scraper = Some(self.rt.spawn(watch::scrape(self.view.clone(), targets)));
        Ok(())
    }

    fn log_dir(&self) -> Result<PathBuf, Failure> {
        let dir = match &self.args.log_dir {
            Some(d) => d.clone(),
            None => StackPaths::discover().root.join("demo"),
        };
        std::fs::create_dir_all(&dir)
            .map_err(|e| Failure::runtime(format!("creating {}: {e}", dir.display())))?;
        Ok(std::path::absolute(&dir).unwrap_or(dir))
    }

    fn start_operators(&mut self, binaries: &OperatorBinaries) -> Result<(), Failure> {
        self.phase("starting the operators");
        let logs = self.log_dir()?;
        if self.args.replay.is_some() {
            println!(
                "replaying the file's own event times: the routers' age check is off (max_age_ms: 0)"
            );
        }
        for &(name, port) in &self.plan.operators.clone() {
            let log = logs.join(format!("{name}.log"));
            lock(&self.view).add_operator(name, port, &log.display().to_string());
            let mut command = Command::new(binaries.path(name));
            command
                .arg("--topology")
                .arg(&self.topology_file)
                .args(["--instance-id", "0"])
                .env_remove("SURGEFLOW_HTTP_PORT")
                .env_remove("SURGEFLOW_INSTANCE_ID")
                .env_remove("SURGEFLOW_TOPOLOGY");
            if self.args.replay.is_some() {
                without_age_check(&mut command);
            }
            let child = Supervised::spawn(name, command, &log)
                .map_err(|e| Failure::runtime(format!("starting {name}: {e}")))?;
            println!(
                "started {name:<16} pid {:<7} http://127.0.0.1:{port}/metrics  log {}",
                child.pid(),
                log.display()
            );
            lock(&self.view).set_pid(name, child.pid());
            self.operators.push(child);
        }
        Ok(())
    }

    fn start_feeder(&mut self) -> Result<(), Failure> {
        let exe = std::env::current_exe()
            .map_err(|e| Failure::runtime(format!("locating this executable: {e}")))?;
        let mut command = Command::new(exe);
        command
            .arg("--topology")
            .arg(&self.topology_file)
            .env_remove("SURGEFLOW_TOPOLOGY");
        let feeder = match &self.args.replay {
            Some(file) => {
                let file = std::path::absolute(file).unwrap_or_else(|_| file.clone());
                command
                    .arg("replay")
                    .arg(&file)
                    .args(["--speed", &self.args.speed]);
                without_age_check(&mut command);
                lock(&self.view).set_area(None);
                Feeder {
                    kind: "replay",
                    detail: format!("{} at speed {}", file.display(), self.args.speed),
                    state: "running".into(),
                }
            }
            None => {
                // Far longer than any demo: the demo stops it.
                let duration = self
                    .args
                    .duration
                    .map_or("8760h".to_string(), |d| format!("{}s", d.as_secs() + 60));
                command.arg("simulate").args([
                    "--duration",
                    &duration,
                    "--seed",
                    &self.args.seed.to_string(),
                    "--drivers",
                    &self.args.drivers.to_string(),
                    "--requests-per-s",
                    &self.args.requests_per_s.to_string(),
                    "--radius-m",
                    &self.args.radius_m.to_string(),
                ]);
                let city = surgeflow_sim::CityConfig::default();
                lock(&self.view).set_area(Some(Area {
                    center_lat: city.center_lat,
                    center_lon: city.center_lon,
                    radius_m: self.args.radius_m,
                }));
                Feeder {
                    kind: "simulate",
                    detail: format!(
                        "{} drivers, {} requests/s, {:.1} km radius, seed {}",
                        self.args.drivers,
                        self.args.requests_per_s,
                        self.args.radius_m / 1000.0,
                        self.args.seed
                    ),
                    state: "running".into(),
                }
            }
        };
        if let Some(prefix) = &self.plan.prefix {
            command.args(["--topic-prefix", prefix]);
        }
        let log = self.log_dir()?.join(format!("{}.log", feeder.kind));
        let child = Supervised::spawn(feeder.kind, command, &log)
            .map_err(|e| Failure::runtime(format!("starting {}: {e}", feeder.kind)))?;
        println!(
            "started {:<16} pid {:<7} {}  log {}",
            feeder.kind,
            child.pid(),
            feeder.detail,
            log.display()
        );
        lock(&self.view).set_feeder(feeder);
        self.feeder = Some(child);
        Ok(())
    }

    /// Refreshes the terminal summary until a signal, the end of `--duration`, or a failed
    /// process.
    fn watch(&mut self) -> Result<(), Failure> {
        let started = Instant::now();
        let terminal = std::io::stdout().is_terminal();
        let mut next_summary = started + Duration::from_secs(2);
        loop {
            if self.interrupted() {
                println!("\ninterrupted: stopping");
                return Ok(());
            }
            if self.args.duration.is_some_and(|d| started.elapsed() >= d) {
                println!("\n--duration reached: stopping");
                return Ok(());
            }
            for child in &mut self.operators {
                if let Some(status) = child.exited() {
                    lock(&self.view).set_state(&child.name, ProcessState::Exited(status.code()));
                    return Err(Failure::runtime(format!(
                        "{} exited ({status}); the end of {}:\n{}",
                        child.name,
                        child.log.display(),
                        child.log_tail(LOG_TAIL_LINES)
                    )));
                }
            }
            if let Some(feeder) = &mut self.feeder
                && let Some(status) = feeder.exited()
            {
                let (name, log, tail) = (
                    feeder.name.clone(),
                    feeder.log.clone(),
                    feeder.log_tail(LOG_TAIL_LINES),
                );
                self.feeder = None;
                if !status.success() {
                    lock(&self.view).set_feeder_state(format!("failed ({status})"));
                    return Err(Failure::runtime(format!(
                        "{name} exited ({status}); the end of {}:\n{tail}",
                        log.display()
                    )));
                }
                lock(&self.view).set_feeder_state("finished");
                println!("{name} finished; the operators keep running until Ctrl-C");
            }
            if Instant::now() >= next_summary {
                let summary = lock(&self.view).summary(now_ms(), &self.page_url);
                if terminal {
                    // Redraw in place: home, clear to the end of the screen.
                    print!(
                        "\x1b[H\x1b[J{summary}\nlogs in {} | Ctrl-C stops everything the demo started\n",
                        self.log_dir()?.display()
                    );
                } else {
                    println!("{summary}");
                }
                next_summary += self.args.refresh.max(Duration::from_millis(500));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops everything the demo started, in order. Runs after success and failure alike.
    fn teardown(&mut self) -> Result<(), Failure> {
        self.phase("stopping");
        let mut problems = Vec::new();
        if let Some(mut feeder) = self.feeder.take() {
            let name = feeder.name.clone();
            let outcome = supervisor::stop_all(std::slice::from_mut(&mut feeder), FEEDER_GRACE);
            println!("stopped {name}: {}", describe(outcome[0]));
            lock(&self.view).set_feeder_state("stopped");
        }
        if !self.operators.is_empty() {
            println!(
                "stopping the operators (they commit their last batch; at most {} s)...",
                OPERATOR_GRACE.as_secs()
            );
            for child in &self.operators {
                lock(&self.view).set_state(&child.name, ProcessState::Stopping);
            }
            let outcome = supervisor::stop_all(&mut self.operators, OPERATOR_GRACE);
            for (child, stopped) in self.operators.iter().zip(outcome) {
                println!("stopped {}: {}", child.name, describe(stopped));
                let code = match stopped {
                    Stopped::AlreadyGone(c) | Stopped::Exited(c) => c,
                    Stopped::Killed => None,
                };
                lock(&self.view).set_state(&child.name, ProcessState::Exited(code));
            }
        }
        self.consumer_stop.store(true, Ordering::Relaxed);
        if let Some(consumer) = self.consumer.take() {
            let _ = consumer.join();
        }
        if let Some(scraper) = self.scraper.take() {
            scraper.abort();
        }
        if let Some((tx, server)) = self.server.take() {
            let _ = tx.send(());
            let _ = self
                .rt
                .block_on(async { tokio::time::timeout(Duration::from_secs(3), server).await });
        }
        if let Some(stack) = &self.stack {
            if self.stack_started && !self.args.keep_stack {
                println!("stopping the local Kafka and registry (the demo started them)...");
                match stack.down() {
                    Ok(report) => println!("{report}"),
                    Err(e) => problems.push(format!("stopping the local stack: {e}")),
                }
            } else if self.stack_started {
                println!(
                    "the local Kafka and registry keep running (--keep-stack): `surgeflow dev down` stops them"
                );
            } else {
                println!("the local Kafka and registry keep running (they ran before the demo)");
            }
        }
        self.phase("stopped");
        if !self.operators.is_empty() {
            let summary = lock(&self.view).summary(now_ms(), &self.page_url);
            println!("{summary}");
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Failure::runtime(problems.join("\n")))
        }
    }
}

/// A replay keeps the file's own event times, years old: the routers' age check must not
/// reject them (`max_age_ms: 0` turns it off), for the operators and for the replay's own
/// warning about it.
fn without_age_check(command: &mut Command) {
    for router in ["LOCATION_ROUTER", "TRIP_ROUTER"] {
        command.env(
            format!("SURGEFLOW__OPERATORS__{router}__PARAMS__MAX_AGE_MS"),
            "0",
        );
    }
}

fn describe(stopped: Stopped) -> String {
    match stopped {
        Stopped::AlreadyGone(Some(c)) => format!("had exited with code {c}"),
        Stopped::AlreadyGone(None) => "had been killed".into(),
        Stopped::Exited(Some(c)) => format!("exited with code {c}"),
        Stopped::Exited(None) => "exited on the signal".into(),
        Stopped::Killed => "did not stop in time: killed".into(),
    }
}

/// `localhost:9092` and `127.0.0.1:9092` are the same broker.
fn normalise_host(servers: &str) -> String {
    servers.trim().replace("localhost", "127.0.0.1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn the_prefix_comes_from_the_location_topic() {
        let root = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
        let text = std::fs::read_to_string(root.join("topology.yaml")).unwrap();
        let plain =
            Topology::from_yaml_str(&text, &root, &Default::default()).expect("topology.yaml");
        assert_eq!(topic_prefix(&plain).ok(), Some(None));
        let mut prefixed = plain.clone();
        prefixed.topics = std::mem::take(&mut prefixed.topics)
            .into_iter()
            .map(|(name, spec)| (format!("t-1.{name}"), spec))
            .collect();
        assert_eq!(topic_prefix(&prefixed).ok(), Some(Some("t-1".to_string())));
        let mut none = plain;
        none.topics.clear();
        assert!(topic_prefix(&none).is_err());
        assert_eq!(normalise_host("localhost:9092"), "127.0.0.1:9092");
    }
}
