//! Positioned std I/O: the fallback where io_uring is unavailable, and the reference the
//! io_uring path is tested against.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

pub(super) fn read_exact_at(file: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    file.read_exact_at(buf, off)
}

pub(super) fn write_all_at(file: &File, buf: &[u8], off: u64) -> io::Result<()> {
    file.write_all_at(buf, off)
}

/// O_DIRECT read of an aligned window; stops at the end of the file (a read that ends off a
/// block boundary, or returns nothing).
pub(super) fn read_direct_at(file: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                done += n;
                if !n.is_multiple_of(super::DIRECT_ALIGN) {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `posix_fadvise(POSIX_FADV_WILLNEED)`: starts reading `[off, off + len)` into the page cache
/// without waiting for it. A hint; its result is ignored.
#[allow(unsafe_code)]
pub(super) fn will_need(file: &File, off: u64, len: u64) {
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(off), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: posix_fadvise reads no memory of ours; it takes the descriptor of `file`, which
    // is open for the whole call, and two integers.
    let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), off, len, libc::POSIX_FADV_WILLNEED) };
}
