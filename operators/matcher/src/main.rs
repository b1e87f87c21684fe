//! The `matcher` binary: see the library for what it does.

fn main() -> std::process::ExitCode {
    surgeflow_runtime::app::run::<surgeflow_matcher::Matcher>()
}
