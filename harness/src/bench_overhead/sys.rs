//! The few system calls the benchmark needs and std does not offer: process CPU time,
//! dropping a file from the page cache, syncing a whole file system, and naming it.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// User + system CPU seconds of this process so far, all threads included.
pub fn cpu_seconds() -> f64 {
    // SAFETY: `rusage` is a plain C struct of integers, for which all-zero bytes are valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY:
    // - `ru` is a valid, writable `rusage` that outlives the call;
    // - RUSAGE_SELF is a valid `who`, so the call only writes `ru`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
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
