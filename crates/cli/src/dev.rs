//! `surgeflow dev up | down | status`: a local Kafka broker and schema registry for
//! development, tests and demos (see `surgeflow-devstack`).

use std::path::Path;

use clap::Subcommand;
use surgeflow_devstack::DevStack;

use crate::{Failure, Outcome};

#[derive(Subcommand)]
pub enum DevCommand {
    /// Download (once) and start Kafka and the registry; waits until both answer.
    Up,
    /// Stop what `up` started. Data is kept for the next `up` unless `--purge`.
    Down {
        /// Also delete the broker's and registry's data.
        #[arg(long)]
        purge: bool,
    },
    /// Say what runs, with versions, ports and log files.
    Status,
}

pub fn run(command: DevCommand, _topology: &Path) -> Outcome {
    let stack = DevStack::discover();
    match command {
        DevCommand::Up => {
            let status = stack.up().map_err(|e| Failure::runtime(e.to_string()))?;
            println!("{status}");
            Ok(0)
        }
        DevCommand::Down { purge } => {
            let report = if purge { stack.purge() } else { stack.down() }
                .map_err(|e| Failure::runtime(e.to_string()))?;
            println!("{report}");
            Ok(0)
        }
        DevCommand::Status => {
            let status = stack.status();
            println!("{status}");
            Ok(if status.is_ready() { 0 } else { 3 })
        }
    }
}
