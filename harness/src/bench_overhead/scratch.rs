//! The benchmark's scratch directory (`<dir>/dare-bench-XXXXXX`), which must never outlive
//! its run unless `--keep` asks for it:
//!
//! - a run that ends, well or with an error, removes it (`TempDir`);
//! - a run stopped by SIGINT, SIGTERM or SIGHUP removes it from the signal handler and exits
//!   with 130 (the shell's "interrupted");
//! - a run killed outright (SIGKILL, a crash, a power cut) cannot clean up, so each run
//!   names its directory after its process id, `dare-bench-<pid>-XXXXXX` (one `mkdir`: there
//!   is no moment at which the directory exists without its owner), and the next run in the
//!   same `--dir` removes every such directory whose owner process no longer exists. `--keep`
//!   renames the store to `dare-bench-kept-XXXXXX`, which no run removes. Directories of
//!   older versions name their owner in `<scratch>/owner.pid` and are swept the same way.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result};

/// The name prefix of scratch directories.
pub const PREFIX: &str = "dare-bench-";
/// The file that named a scratch directory's owner process (older versions; still swept).
pub const OWNER_FILE: &str = "owner.pid";
/// The name prefix of stores kept with `--keep`.
const KEPT_PREFIX: &str = "dare-bench-kept-";

/// The scratch directory the signal handler removes.
static CURRENT: Mutex<Option<PathBuf>> = Mutex::new(None);
static HANDLER: OnceLock<Result<(), String>> = OnceLock::new();
/// Set by the signal handler before it removes the directory: the workload then fails on
/// missing files, and the run must wait for the handler's exit (130) instead of reporting
/// that failure.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// If a signal is being handled, waits for the handler to end the process.
fn wait_if_interrupted() {
    if INTERRUPTED.load(Ordering::SeqCst) {
        loop {
            std::thread::park();
        }
    }
}

/// A scratch directory, removed on drop, on SIGINT/SIGTERM/SIGHUP and by a later run.
#[derive(Debug)]
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
}

/// Removes the scratch directories in `base` left by runs that were killed; returns them.
pub fn sweep(base: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir(base) else {
        return removed;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let is_scratch = name.to_str().is_some_and(|n| n.starts_with(PREFIX));
        if !is_scratch || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = e.path();
        let from_name = name.to_str().and_then(owner_from_name);
        let Some(pid) = from_name.or_else(|| {
            fs::read_to_string(path.join(OWNER_FILE))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
        }) else {
            continue; // kept by --keep, or not ours: leave it
        };
        if !alive(pid) && fs::remove_dir_all(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// The owner's process id in a scratch directory's name, `dare-bench-<pid>-XXXXXX`.
fn owner_from_name(name: &str) -> Option<u32> {
    let (pid, _) = name.strip_prefix(PREFIX)?.split_once('-')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` is running (a zombie, killed but not yet reaped, is not).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S ...`: the state follows the last `)`.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

impl Scratch {
    /// Sweeps `base` and creates a new scratch directory in it.
    pub fn create(base: &Path) -> Result<Scratch> {
        for p in sweep(base) {
            let _ = crate::out::note_line(&format!(
                "removed {} (left by a benchmark that was killed)",
                p.display()
            ));
        }
        let prefix = format!("{PREFIX}{}-", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(base)
            .with_context(|| {
                format!(
                    "cannot create a scratch directory in {} (is it writable?)",
                    base.display()
                )
            })?;
        set_current(Some(dir.path().to_path_buf()));
        install_handler();
        Ok(Scratch { dir: Some(dir) })
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().map_or(Path::new(""), |d| d.path())
    }

    /// Keeps the directory, renamed `dare-bench-kept-XXXXXX` so that no later run removes
    /// it; returns its path (the old one if the rename failed: it is then swept later).
    pub fn keep(mut self) -> PathBuf {
        wait_if_interrupted();
        set_current(None);
        let d = self.dir.take().map(|d| d.keep()).unwrap_or_default();
        let suffix = d
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit_once('-'))
            .map(|(_, s)| s.to_string());
        match (suffix, d.parent()) {
            (Some(s), Some(parent)) => {
                let kept = parent.join(format!("{KEPT_PREFIX}{s}"));
                if fs::rename(&d, &kept).is_ok() {
                    kept
                } else {
                    d
                }
            }
            _ => d,
        }
    }

    /// Removes the directory now.
    pub fn close(mut self) -> Result<()> {
        wait_if_interrupted();
        set_current(None);
        if let Some(d) = self.dir.take() {
            let p = d.path().to_path_buf();
            d.close()
                .with_context(|| format!("removing the scratch store {}", p.display()))?;
        }
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        wait_if_interrupted();
        if self.dir.is_some() {
            set_current(None);
        }
    }
}

fn set_current(p: Option<PathBuf>) {
    *CURRENT.lock().unwrap_or_else(|e| e.into_inner()) = p;
}

/// Installs the SIGINT/SIGTERM/SIGHUP handler once per process (ctrlc runs it on a thread of
/// its own, so it may take the lock and remove files).
fn install_handler() {
    HANDLER.get_or_init(|| {
        ctrlc::set_handler(|| {
            INTERRUPTED.store(true, Ordering::SeqCst);
            let current = CURRENT.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(p) = current {
                // The workload may still be creating files in it until it trips over the
                // removal: try again for up to a second.
                for _ in 0..100 {
                    if fs::remove_dir_all(&p).is_ok() || !p.exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                let _ = crate::out::note_line(&format!(
                    "interrupted: removed the scratch store {}",
                    p.display()
                ));
            }
            std::process::exit(130);
        })
        .map_err(|e| e.to_string())
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_read_from_the_name_only_when_it_is_a_number() {
        assert_eq!(owner_from_name("dare-bench-4242-a1B2c3"), Some(4242));
        assert_eq!(owner_from_name("dare-bench-kept-a1B2c3"), None);
        assert_eq!(owner_from_name("dare-bench-a1B2c3"), None);
        assert_eq!(owner_from_name("dare-bench--x"), None);
        assert_eq!(owner_from_name("other-12-x"), None);
    }

    #[test]
    fn sweep_removes_dead_owners_and_keeps_the_rest() {
        let base = tempfile::tempdir().unwrap();
        // pid 0 is never a user process's id; our own pid is alive.
        let dead = base.path().join(format!("{PREFIX}0-dead"));
        let alive = base
            .path()
            .join(format!("{PREFIX}{}-live", std::process::id()));
        let kept = base.path().join(format!("{KEPT_PREFIX}k"));
        let old = base.path().join(format!("{PREFIX}oldfmt"));
        for d in [&dead, &alive, &kept, &old] {
            fs::create_dir(d).unwrap();
        }
        fs::write(old.join(OWNER_FILE), "0\n").unwrap();
        let mut removed = sweep(base.path());
        removed.sort();
        let mut want = vec![dead.clone(), old.clone()];
        want.sort();
        assert_eq!(removed, want);
        assert!(alive.exists() && kept.exists());
    }
}
