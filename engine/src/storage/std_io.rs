//! Positioned std I/O: the fallback where io_uring is unavailable, and the reference the
//! io_uring path is tested against.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub(super) fn read_exact_at(file: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    file.read_exact_at(buf, off)
}

pub(super) fn write_all_at(file: &File, buf: &[u8], off: u64) -> io::Result<()> {
    file.write_all_at(buf, off)
}
