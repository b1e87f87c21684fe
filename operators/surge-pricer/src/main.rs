//! The `surge-pricer` binary: see the library for what it does.

fn main() -> std::process::ExitCode {
    surgeflow_runtime::app::run::<surgeflow_surge_pricer::SurgePricer>()
}
