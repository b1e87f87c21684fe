//! An exclusive `flock(2)` held for the lifetime of a guard.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::error::{DevStackError, IoContext};

/// Holds an exclusive advisory lock on a file until dropped (closing the file releases it).
///
/// Each guard opens its own file description, so two threads of one process exclude each
/// other just like two processes do.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Blocks until the exclusive lock on `path` (created if missing) is held.
    ///
    /// # Errors
    ///
    /// I/O errors creating or locking the file.
    pub fn exclusive(path: &Path) -> Result<Self, DevStackError> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .ctx(|| format!("opening lock file {}", path.display()))?;
        loop {
            // SAFETY: flock(2) on a descriptor we own; no memory is involved.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(Self { _file: file });
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err).ctx(|| format!("locking {}", path.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;
    use std::time::Duration;

    #[test]
    fn threads_exclude_each_other() {
        let dir =
            std::env::temp_dir().join(format!("surgeflow-devstack-lock-{}", std::process::id()));
        let path = dir.join("dev/.lock");
        let inside = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (path, inside) = (path.clone(), Arc::clone(&inside));
                thread::spawn(move || {
                    for _ in 0..5 {
                        let _guard = FileLock::exclusive(&path).unwrap();
                        assert_eq!(
                            inside.fetch_add(1, Ordering::SeqCst),
                            0,
                            "two holders at once"
                        );
                        thread::sleep(Duration::from_millis(2));
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
