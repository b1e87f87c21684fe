//! `surgeflow`: the admin and developer command line.
//!
//! One binary, subcommands named so scripts and docs can rely on them. Every subcommand reads
//! `--topology FILE` (default `./topology.yaml`, or `SURGEFLOW_TOPOLOGY`). Errors go to stderr;
//! the exit code is 2 for bad input or configuration, 1 for anything else that failed.

mod demo;
mod dev;
mod produce;
mod replay;
mod simulate;
mod tail;
mod topology_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// surgeflow: surge pricing and driver matching on Kafka.
#[derive(Parser)]
#[command(name = "surgeflow", version, about, long_about = None)]
struct Cli {
    /// The topology file.
    #[arg(
        long,
        global = true,
        env = "SURGEFLOW_TOPOLOGY",
        default_value = "topology.yaml"
    )]
    topology: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start, stop or inspect a local Kafka broker and schema registry (no Docker needed).
    #[command(subcommand)]
    Dev(dev::DevCommand),
    /// Validate topology.yaml, or make a cluster match it.
    #[command(subcommand)]
    Topology(topology_cmd::TopologyCommand),
    /// Run a synthetic city that produces driver pings and trip events.
    Simulate(simulate::SimulateArgs),
    /// Replay real taxi trips (DEBS 2015 / NYC TLC 2013 format) as driver pings and trip
    /// events, in event-time order.
    Replay(replay::ReplayArgs),
    /// Print the records of a topic as JSON lines.
    Tail(tail::TailArgs),
    /// Everything at once: local stack, topics, operators, a feeder, and a live view in the
    /// terminal and on a local web page.
    Demo(demo::DemoArgs),
}

/// A failed command: its message and exit code.
pub struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Bad input or configuration (exit code 2).
    pub fn usage(message: impl std::fmt::Display) -> Self {
        Failure {
            code: 2,
            message: message.to_string(),
        }
    }

    /// Anything else (exit code 1).
    pub fn runtime(message: impl std::fmt::Display) -> Self {
        Failure {
            code: 1,
            message: message.to_string(),
        }
    }
}

/// The result of a subcommand: `Ok` carries the exit code (0, or 1 for `diff --exit-code`).
pub type Outcome = Result<u8, Failure>;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SURGEFLOW_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Dev(cmd) => dev::run(cmd, &cli.topology),
        Command::Topology(cmd) => topology_cmd::run(cmd, &cli.topology),
        Command::Simulate(args) => simulate::run(args, &cli.topology),
        Command::Replay(args) => replay::run(args, &cli.topology),
        Command::Tail(args) => tail::run(args, &cli.topology),
        Command::Demo(args) => demo::run(args, &cli.topology),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("surgeflow: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Loads and validates the topology, mapping every problem to exit code 2.
fn load_topology(path: &std::path::Path) -> Result<surgeflow_topology::Topology, Failure> {
    surgeflow_topology::Topology::load(path)
        .map_err(|errors| Failure::usage(format!("{}:\n{errors}", path.display())))
}

/// A multi-threaded tokio runtime for the subcommands that talk to Kafka or the registry.
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(format!("starting the async runtime: {e}")))
}
