//! The processes the demo starts: the four operators and the feeder (`surgeflow simulate` or
//! `surgeflow replay`), each with its output in a log file, and how they are found, built,
//! watched and stopped.
//!
//! Children run in a process group of their own, so a Ctrl-C typed in the terminal reaches
//! only the demo, which then stops them in order (the feeder first, then every operator with
//! SIGTERM and time to commit its last transaction). On Linux each child also gets SIGTERM
//! from the kernel if the demo itself dies without cleaning up.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Each operator: its binary and the Cargo package that builds it.
pub const OPERATORS: [(&str, &str); 4] = [
    ("location-router", "surgeflow-location-router"),
    ("trip-router", "surgeflow-trip-router"),
    ("surge-pricer", "surgeflow-surge-pricer"),
    ("matcher", "surgeflow-matcher"),
];

/// A process the demo started, with its output going to `log`.
pub struct Supervised {
    pub name: String,
    pub log: PathBuf,
    child: std::process::Child,
    exit: Option<ExitStatus>,
}

impl Supervised {
    /// Starts `command` with stdin closed and stdout and stderr appended to `log` (which is
    /// truncated first), in a process group of its own.
    ///
    /// # Errors
    /// The log cannot be created or the program cannot be started.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> io::Result<Self> {
        let out = File::create(log)?;
        let err = out.try_clone()?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: the closure runs in the forked child before exec and only calls
        // async-signal-safe functions (prctl, getppid, kill), touching no shared state.
        unsafe {
            command.pre_exec(|| {
                // SIGTERM when the demo's main thread (which spawns every child) ends.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The demo died before prctl took effect: nobody would stop this child.
                if libc::getppid() == 1 {
                    libc::kill(libc::getpid(), libc::SIGTERM);
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        Ok(Supervised {
            name: name.to_string(),
            log: log.to_path_buf(),
            child,
            exit: None,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once the process is gone (reaps it), else `None`.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Ok(Some(status)) = self.child.try_wait()
        {
            self.exit = Some(status);
        }
        self.exit
    }

    /// Sends `signal` unless the process is already gone.
    pub fn signal(&mut self, signal: libc::c_int) {
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is our own child,
            // not yet reaped, so it cannot have been recycled.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

/// How a process ended when it was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It had already exited on its own.
    AlreadyGone(Option<i32>),
    /// It exited after SIGTERM, with this code (`None`: by a signal).
    Exited(Option<i32>),
    /// It did not exit within the grace period and was killed.
    Killed,
}

/// Sends SIGTERM to every process still running, waits up to `grace` for all of them, then
/// kills the rest. Returns how each one ended, in order.
pub fn stop_all(children: &mut [Supervised], grace: Duration) -> Vec<Stopped> {
    let mut outcome: Vec<Option<Stopped>> = children
        .iter_mut()
        .map(|c| c.exited().map(|status| Stopped::AlreadyGone(status.code())))
        .collect();
    for (c, o) in children.iter_mut().zip(&outcome) {
        if o.is_none() {
            c.signal(libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    loop {
        for (c, o) in children.iter_mut().zip(outcome.iter_mut()) {
            if o.is_none()
                && let Some(status) = c.exited()
            {
                *o = Some(Stopped::Exited(status.code()));
            }
        }
        if outcome.iter().all(Option::is_some) || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    children
        .iter_mut()
        .zip(outcome)
        .map(|(c, o)| {
            o.unwrap_or_else(|| {
                let _ = c.child.kill();
                let _ = c.child.wait();
                c.exit = None;
                Stopped::Killed
            })
        })
        .collect()
}

/// The last `lines` lines of a file (empty when it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Where the operator binaries are and, when some are missing, how to build them.
#[derive(Debug)]
pub struct OperatorBinaries {
    /// The directory searched (the demo's own, unless `--bin-dir`).
    pub dir: PathBuf,
    /// The operators whose binary is not there: `(binary, package)`.
    pub missing: Vec<(&'static str, &'static str)>,
}

impl OperatorBinaries {
    /// Looks for every operator binary in `dir`.
    pub fn find(dir: &Path) -> Self {
        OperatorBinaries {
            dir: dir.to_path_buf(),
            missing: OPERATORS
                .into_iter()
                .filter(|(bin, _)| !dir.join(bin).is_file())
                .collect(),
        }
    }

    /// The path of an operator's binary.
    pub fn path(&self, bin: &str) -> PathBuf {
        self.dir.join(bin)
    }
}

/// How to build `operators` (`(binary, package)`) with the same Cargo profile as the running
/// binary, into its directory: the workspace root, and the arguments after `cargo`. `None`
/// when neither the working directory nor this binary lies in a surgeflow workspace.
pub fn build_plan(
    exe_dir: &Path,
    cwd: &Path,
    operators: &[(&str, &str)],
) -> Option<(PathBuf, Vec<String>)> {
    let workspace = cwd
        .ancestors()
        .chain(exe_dir.ancestors())
        .find(|d| is_surgeflow_workspace(d))?
        .to_path_buf();
    // <target dir>/<profile>/surgeflow: the profile is the directory's name ("debug" is
    // what Cargo calls the dev profile).
    let profile = exe_dir.file_name()?.to_str()?.to_string();
    let target_dir = exe_dir.parent()?;
    let mut args = vec!["build".to_string()];
    match profile.as_str() {
        "debug" => {}
        "release" => args.push("--release".into()),
        other => args.extend(["--profile".into(), other.to_string()]),
    }
    args.extend(["--target-dir".into(), target_dir.display().to_string()]);
    for (bin, package) in operators {
        args.extend([
            "-p".into(),
            (*package).to_string(),
            "--bin".into(),
            (*bin).to_string(),
        ]);
    }
    Some((workspace, args))
}

fn is_surgeflow_workspace(dir: &Path) -> bool {
    dir.join("operators/matcher/Cargo.toml").is_file()
        && std::fs::read_to_string(dir.join("Cargo.toml"))
            .is_ok_and(|s| s.lines().any(|l| l.trim() == "[workspace]"))
}

/// Runs Cargo (`$CARGO`, else `cargo` on the path) with `args` in `workspace`, its output
/// going to the terminal so the user sees the build progress.
///
/// # Errors
/// Cargo cannot be started or the build fails.
pub fn run_cargo(workspace: &Path, args: &[String]) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| format!("starting {}: {e}", cargo.to_string_lossy()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("surgeflow-demo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn finds_missing_binaries() {
        let dir = scratch("bins");
        std::fs::write(dir.join("matcher"), "").unwrap();
        let found = OperatorBinaries::find(&dir);
        assert_eq!(found.missing.len(), 3);
        assert!(!found.missing.iter().any(|(b, _)| *b == "matcher"));
        assert_eq!(found.path("matcher"), dir.join("matcher"));
    }

    #[test]
    fn builds_with_the_profile_of_the_running_binary() {
        let root = scratch("ws");
        std::fs::create_dir_all(root.join("operators/matcher")).unwrap();
        std::fs::write(root.join("operators/matcher/Cargo.toml"), "").unwrap();
        std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        let release = root.join("target/release");
        let missing = [("matcher", "surgeflow-matcher")];
        let (ws, args) = build_plan(&release, Path::new("/"), &missing).unwrap();
        assert_eq!(ws, root);
        assert_eq!(
            args,
            [
                "build",
                "--release",
                "--target-dir",
                &root.join("target").display().to_string(),
                "-p",
                "surgeflow-matcher",
                "--bin",
                "matcher"
            ]
        );
        let (_, args) = build_plan(&root.join("target/debug"), &root, &missing).unwrap();
        assert_eq!(args[1], "--target-dir");
        let (_, args) = build_plan(&root.join("target/bench"), &root, &missing).unwrap();
        assert_eq!(args[1..3], ["--profile", "bench"]);
        // Installed elsewhere, run outside any workspace: nothing to build with.
        let lone = scratch("lone");
        assert!(build_plan(&lone, &lone, &missing).is_none());
    }

    #[test]
    fn supervises_logs_exit_codes_and_stops() {
        let dir = scratch("procs");
        let mut quick = Command::new("sh");
        quick.args(["-c", "echo one; echo two >&2; exit 3"]);
        let mut quick = Supervised::spawn("quick", quick, &dir.join("quick.log")).unwrap();
        let mut stubborn = Command::new("sh");
        stubborn.args(["-c", "trap '' TERM; echo ready; exec sleep 30"]);
        let stubborn = Supervised::spawn("stubborn", stubborn, &dir.join("stubborn.log")).unwrap();
        let mut polite = Command::new("sleep");
        polite.arg("30");
        let polite = Supervised::spawn("polite", polite, &dir.join("polite.log")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while quick.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(quick.exited().and_then(|s| s.code()), Some(3));
        assert_eq!(quick.log_tail(5), "one\ntwo");
        assert_eq!(quick.log_tail(1), "two");
        // Let the shell install its trap before it is asked to stop.
        while !log_tail(&stubborn.log, 1).contains("ready") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut all = vec![quick, stubborn, polite];
        let outcome = stop_all(&mut all, Duration::from_millis(500));
        assert_eq!(
            outcome,
            [
                Stopped::AlreadyGone(Some(3)),
                Stopped::Killed,
                Stopped::Exited(None)
            ]
        );
    }
}
