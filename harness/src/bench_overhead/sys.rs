//! The few system calls the benchmark needs and std does not offer: thread and process CPU
//! time, dropping a file from the page cache, syncing a whole file system, and naming it.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// CPU time (user + system) of one clock, in seconds; 0 if the clock cannot be read.
fn clock_seconds(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY:
    // - `ts` is a valid, writable `timespec` that outlives the call;
    // - both clocks used here are valid clock ids, so the call only writes `ts`.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return 0.0;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// User + system CPU seconds of the calling thread so far (`CLOCK_THREAD_CPUTIME_ID`): only
/// what this thread ran, in user space and in the kernel on its behalf.
pub fn thread_cpu_seconds() -> f64 {
    clock_seconds(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// User + system CPU seconds of the whole process so far (`CLOCK_PROCESS_CPUTIME_ID`): every
/// thread, live or exited, including the kernel's io_uring worker threads, which belong to
/// the process.
pub fn process_cpu_seconds() -> f64 {
    clock_seconds(libc::CLOCK_PROCESS_CPUTIME_ID)
}

/// Syncs `path` and drops its pages from the page cache, so the next read comes from the
/// drive. Dirty pages cannot be dropped, hence the sync first.
pub fn drop_from_page_cache(path: &Path) -> io::Result<()> {
    let f = File::open(path)?;
    f.sync_data()?;
    // SAFETY: `f` is an open file descriptor for the whole call; posix_fadvise only reads its
    // arguments and touches no memory of ours.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if r != 0 {
        return Err(io::Error::from_raw_os_error(r));
    }
    Ok(())
}

/// `syncfs` on the file system holding `dir`: writes back everything pending (deletions of
/// the previous pass, unsynced puts) so it does not land inside the next timed pass.
pub fn sync_file_system(dir: &Path) -> io::Result<()> {
    let f = File::open(dir)?;
    // SAFETY: `f` is an open descriptor for the whole call; syncfs touches no memory of ours.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The name of the file system type holding `path` (ext4, xfs, btrfs, tmpfs, …).
pub fn fs_type(path: &Path) -> String {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return "unknown".into();
    };
    // SAFETY: `statfs` is a plain C struct of integers, for which all-zero bytes are valid.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY:
    // - `c` is a NUL-terminated string that outlives the call;
    // - `st` is a valid, writable `statfs` that outlives the call.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return "unknown".into();
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    let magic = st.f_type as u64;
    match magic {
        0xEF53 => "ext4".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x6969 => "nfs".into(),
        0xF2F5_2010 => "f2fs".into(),
        0x6573_5546 => "fuse".into(),
        m => format!("unknown (magic {m:#x})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thread clock counts only the calling thread; the process clock counts the others
    /// too. CPU time, not wall time: the worker spins until its own clock shows 50 ms.
    #[test]
    fn thread_clock_leaves_out_other_threads() {
        let (p0, t0) = (process_cpu_seconds(), thread_cpu_seconds());
        let worker = std::thread::spawn(|| {
            let start = thread_cpu_seconds();
            let mut x = 0u64;
            while thread_cpu_seconds() - start < 0.05 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            thread_cpu_seconds() - start
        });
        let spun = worker.join().unwrap();
        let (t1, p1) = (thread_cpu_seconds(), process_cpu_seconds());
        assert!(spun >= 0.05);
        assert!(
            p1 - p0 >= spun,
            "process clock {} < worker's {spun}",
            p1 - p0
        );
        assert!(
            t1 - t0 < spun / 2.0,
            "this thread's clock counted the worker: {} s",
            t1 - t0
        );
    }
}
