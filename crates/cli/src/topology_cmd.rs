//! `surgeflow topology check | apply | diff`.

use std::path::Path;

use clap::Subcommand;
use surgeflow_kafka::admin::{self, ClusterState};
use surgeflow_kafka::{ClientFactory, Registry};
use surgeflow_topology::Topology;

use crate::{Failure, Outcome, load_topology, runtime};

#[derive(Subcommand)]
pub enum TopologyCommand {
    /// Validate the file: fields, schema files, topic references, parameters (exit 2 on error).
    Check,
    /// Create or update topics and register schemas so the cluster matches the file.
    Apply {
        /// Print the plan without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show how the cluster differs from the file.
    Diff {
        /// Exit with 1 when there are differences (like `git diff --exit-code`).
        #[arg(long)]
        exit_code: bool,
    },
}

pub fn run(command: TopologyCommand, path: &Path) -> Outcome {
    let topology = load_topology(path)?;
    match command {
        TopologyCommand::Check => {
            println!(
                "{}: ok ({} topics, {} operators)",
                path.display(),
                topology.topics.len(),
                topology.operators.iter().count()
            );
            Ok(0)
        }
        TopologyCommand::Apply { dry_run } => runtime()?.block_on(apply(&topology, dry_run)),
        TopologyCommand::Diff { exit_code } => runtime()?.block_on(diff(&topology, exit_code)),
    }
}

/// The changes that would make the cluster match `topology`, with the clients that read it.
pub(crate) async fn read_plan(
    topology: &Topology,
) -> Result<
    (
        Vec<admin::Change>,
        rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>,
        Registry,
    ),
    Failure,
> {
    let admin = ClientFactory::from_topology(&topology.connection.kafka)
        .admin()
        .map_err(|e| Failure::usage(format!("kafka client settings: {e}")))?;
    let registry =
        Registry::from_topology(&topology.connection.registry).map_err(Failure::usage)?;
    let state = ClusterState::read(topology, &admin, &registry)
        .await
        .map_err(|e| Failure::runtime(format!("reading the cluster: {e}")))?;
    let changes = admin::plan(topology, &state).map_err(Failure::usage)?;
    Ok((changes, admin, registry))
}

fn print_changes(changes: &[admin::Change]) {
    if changes.is_empty() {
        println!("in sync: nothing to change");
    }
    for change in changes {
        println!("{change}");
    }
}

async fn diff(topology: &Topology, exit_code: bool) -> Outcome {
    let (changes, _, _) = read_plan(topology).await?;
    print_changes(&changes);
    Ok(if exit_code && !changes.is_empty() {
        1
    } else {
        0
    })
}

async fn apply(topology: &Topology, dry_run: bool) -> Outcome {
    let (changes, admin, registry) = read_plan(topology).await?;
    print_changes(&changes);
    if dry_run || changes.is_empty() {
        return Ok(0);
    }
    admin::apply(topology, &changes, &admin, &registry)
        .await
        .map_err(|e| Failure::runtime(format!("applying: {e}")))?;
    let applied = changes.iter().filter(|c| !c.is_manual()).count();
    let manual = changes.len() - applied;
    println!("applied {applied} change(s)");
    if manual > 0 {
        println!("{manual} change(s) marked ! need an operator");
    }
    Ok(0)
}
