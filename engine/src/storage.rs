//! Positioned file I/O for object files, with an io_uring implementation and a std fallback.
//!
//! The engine needs only three things from storage: read bytes at an offset, write a buffer
//! at an offset, and make written data durable. Both paths give identical results and both
//! are tested. Buffered files use positioned std I/O by default (`DiskOptions::default`:
//! measured faster for cold reads, docs/PERFORMANCE.md §14); io_uring, with several requests
//! in flight per object, is the path for `O_DIRECT` and can be chosen for any file.
//! [`IoMode::detect`] probes once whether a ring is allowed here (an old kernel or a
//! container's seccomp profile can refuse it) and falls back to std.
//!
//! Files may be opened with `O_DIRECT` (io_uring path only): reads then go through
//! block-aligned windows, and the put pipeline writes only whole aligned blocks (see
//! `batch::seal_uring_direct`). The object format itself is not block-aligned, so the same
//! files read identically with or without `O_DIRECT`.

use std::fs::File;
use std::io;
use std::sync::OnceLock;

mod std_io;
#[cfg(target_os = "linux")]
pub(crate) mod uring;

#[cfg(target_os = "linux")]
pub(crate) use uring::with_queue;

/// A data file as the pipelines see it: positioned reads and writes, a data sync, its length.
/// This is the storage seam (redb's `StorageBackend` is the model): [`IoFile`] implements it
/// on a real file with io_uring or std I/O, and the crash-consistency tests implement it on
/// memory that keeps a live and a durable image.
#[allow(clippy::len_without_is_empty)] // a file's length (a syscall), not a collection's size
pub trait DataFile: ReadAt + Send + Sync + std::fmt::Debug {
    /// Writes `buf[range]` (all of `buf` when `range` is the empty `0..0`) at `off`; returns
    /// the buffer (io_uring owns it while the write is in flight).
    fn write_prefix_at(
        &self,
        buf: Vec<u8>,
        range: std::ops::Range<usize>,
        off: u64,
    ) -> (io::Result<()>, Vec<u8>);
    /// Makes the written data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Current length.
    fn len(&self) -> io::Result<u64>;
    /// Cuts or extends the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Whether the file was opened with `O_DIRECT` (writes then need io_uring and whole
    /// aligned blocks).
    fn is_direct(&self) -> bool {
        false
    }
    /// Hints that `[off, off + len)` will be read soon, so the drive starts on it while the
    /// caller does other work (a GET unwraps the object's key and verifies its metadata
    /// meanwhile). Only a hint: nothing is waited for, and failures are ignored.
    fn prefetch(&self, _off: u64, _len: u64) {}
}

/// Reads at positions. `Sync` so a reader thread can prefetch the next batch.
pub trait ReadAt: Sync {
    /// Fills `buf` from offset `off`; an early end of file is `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()>;

    /// The file behind this source, when it is read with io_uring, and whether it was opened
    /// with `O_DIRECT`: the pipelines then keep several batches in flight on one ring instead
    /// of using a reader thread.
    fn uring_file(&self) -> Option<(&File, bool)> {
        None
    }
}

impl ReadAt for [u8] {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let start = usize::try_from(off).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.as_slice().read_exact_at(buf, off)
    }
}

/// O_DIRECT transfers must start, end and sit in memory on this boundary.
pub const DIRECT_ALIGN: usize = 4096;

/// Rounds `x` up to a multiple of [`DIRECT_ALIGN`].
pub(crate) fn align_up(x: u64) -> u64 {
    x.div_ceil(DIRECT_ALIGN as u64) * DIRECT_ALIGN as u64
}

/// Offset into `buf` of its first [`DIRECT_ALIGN`]-aligned byte. Computed from the address
/// each time: a `Vec` that reallocates moves.
pub(crate) fn aligned_start(buf: &[u8]) -> usize {
    let addr = buf.as_ptr() as usize;
    (DIRECT_ALIGN - addr % DIRECT_ALIGN) % DIRECT_ALIGN
}

/// How object files are read and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoMode {
    /// io_uring, several requests in flight per batch.
    Uring,
    /// Positioned `pread`/`pwrite` through std.
    Std,
}

impl IoMode {
    /// io_uring if this kernel and sandbox allow a ring, else std (for `O_DIRECT`, or a
    /// caller that prefers the ring; not the default of buffered files). Probed once per
    /// process.
    /// (The CLI's `--io std` / `DARE_IO=std` forces the fallback; the library reads no
    /// environment variable.)
    pub fn detect() -> IoMode {
        static MODE: OnceLock<IoMode> = OnceLock::new();
        *MODE.get_or_init(|| {
            if uring_available() {
                IoMode::Uring
            } else {
                IoMode::Std
            }
        })
    }

    /// The mode's name for reports.
    pub fn name(self) -> &'static str {
        match self {
            IoMode::Uring => "io_uring",
            IoMode::Std => "std",
        }
    }
}

/// Whether an io_uring can be created and completes a no-op here.
pub fn uring_available() -> bool {
    #[cfg(target_os = "linux")]
    {
        uring::probe()
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// A file opened for positioned I/O in one [`IoMode`].
#[derive(Debug)]
pub struct IoFile {
    file: File,
    mode: IoMode,
    direct: bool,
}

impl IoFile {
    /// Wraps an open file.
    pub fn new(file: File, mode: IoMode) -> IoFile {
        IoFile {
            file,
            mode,
            direct: false,
        }
    }

    /// Wraps a file opened with `O_DIRECT`: reads go through an aligned bounce window; the
    /// put pipeline writes only aligned blocks to it.
    pub fn new_direct(file: File, mode: IoMode) -> IoFile {
        IoFile {
            file,
            mode,
            direct: true,
        }
    }

    /// O_DIRECT read: the aligned window around `[off, off + len)` into a bounce buffer,
    /// then the requested bytes out of it.
    fn read_direct(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let end = off
            .checked_add(buf.len() as u64)
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        if end > DataFile::len(self)? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let a0 = off - off % DIRECT_ALIGN as u64;
        let window = (align_up(end) - a0) as usize;
        let mut bounce = vec![0u8; window + DIRECT_ALIGN];
        let base = aligned_start(&bounce);
        let w = &mut bounce[base..base + window];
        match self.mode {
            #[cfg(target_os = "linux")]
            IoMode::Uring => uring::read_direct_at(&self.file, w, a0)?,
            _ => std_io::read_direct_at(&self.file, w, a0)?,
        }
        let from = (off - a0) as usize;
        buf.copy_from_slice(&w[from..from + buf.len()]);
        Ok(())
    }

    /// The underlying file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The I/O mode in use.
    pub fn mode(&self) -> IoMode {
        self.mode
    }

    /// Writes all of `buf` at `off`. Takes and returns the buffer: with io_uring the kernel
    /// reads it while the request is in flight, so the buffer is owned for the duration.
    pub fn write_all_at(&self, buf: Vec<u8>, off: u64) -> (io::Result<()>, Vec<u8>) {
        self.write_prefix_at(buf, 0..0, off)
    }

    /// Writes `buf[range]` (all of `buf` when `range` is empty `0..0`) at `off`, returning the buffer.
    pub fn write_prefix_at(
        &self,
        buf: Vec<u8>,
        range: std::ops::Range<usize>,
        off: u64,
    ) -> (io::Result<()>, Vec<u8>) {
        let range = if range.is_empty() {
            0..buf.len()
        } else {
            range
        };
        match self.mode {
            #[cfg(target_os = "linux")]
            IoMode::Uring => uring::write_all_at(&self.file, buf, range, off),
            _ => {
                let r = std_io::write_all_at(&self.file, &buf[range], off);
                (r, buf)
            }
        }
    }
}

impl DataFile for IoFile {
    fn write_prefix_at(
        &self,
        buf: Vec<u8>,
        range: std::ops::Range<usize>,
        off: u64,
    ) -> (io::Result<()>, Vec<u8>) {
        IoFile::write_prefix_at(self, buf, range, off)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn is_direct(&self) -> bool {
        self.direct
    }

    fn prefetch(&self, off: u64, len: u64) {
        // O_DIRECT reads bypass the page cache the hint would fill.
        if !self.direct {
            std_io::will_need(&self.file, off, len);
        }
    }
}

impl ReadAt for IoFile {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        if self.direct {
            return self.read_direct(buf, off);
        }
        match self.mode {
            #[cfg(target_os = "linux")]
            IoMode::Uring => uring::read_exact_at(&self.file, buf, off),
            _ => std_io::read_exact_at(&self.file, buf, off),
        }
    }

    fn uring_file(&self) -> Option<(&File, bool)> {
        (self.mode == IoMode::Uring).then_some((&self.file, self.direct))
    }
}
