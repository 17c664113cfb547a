//! The key store file: framing, checksum, atomic replacement and the writer lock.
//!
//! Layout (docs/KEYS.md §6.1), all integers little-endian:
//!
//! ```text
//! 0   magic            8 bytes  "DAREKEYS"
//! 8   format version   u32      1
//! 12  body length      u64      n
//! 20  checksum         32 bytes SHA-256(bytes 0..20 || body)
//! 52  body             n bytes  UTF-8 JSON of the table
//! ```
//!
//! A write replaces the whole file: write `keystore.dat.tmp`, fsync it, rename it over
//! `keystore.dat`, fsync the directory. A reader therefore sees either the old or the new
//! table, never a mix, and needs no lock. Writers serialize their read-modify-write cycles
//! with an exclusive `flock` on `keystore.lock` (a separate file, because the data file's
//! inode changes with every rename).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use sha2::{Digest, Sha256};

use super::table::Table;
use crate::StoreError;

/// Name of the store file inside the store directory.
pub const STORE_FILE: &str = "keystore.dat";
/// Name of the writer lock file inside the store directory.
pub const LOCK_FILE: &str = "keystore.lock";
/// Name of the lock file held for the whole run of a rotation task.
pub const ROTATION_LOCK_FILE: &str = "rotation.lock";
const TMP_FILE: &str = "keystore.dat.tmp";

/// File magic.
pub const MAGIC: &[u8; 8] = b"DAREKEYS";
/// The only store format version this build reads and writes.
pub const STORE_FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 52;
/// Refuse bodies beyond this size before allocating (a real store is kilobytes).
const MAX_BODY: u64 = 256 * 1024 * 1024;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn checksum(header: &[u8], body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(header);
    h.update(body);
    h.finalize().into()
}

/// Serializes a table into the framed file contents.
pub(crate) fn encode(table: &Table) -> Result<Vec<u8>, StoreError> {
    let body = serde_json::to_vec(table)
        .map_err(|e| StoreError::Corrupt(format!("cannot serialize table: {e}")))?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&STORE_FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let sum = checksum(&out[..20], &body);
    out.extend_from_slice(&sum);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Parses and checks framed file contents. Never panics; every defect is a typed error.
pub(crate) fn decode(bytes: &[u8]) -> Result<Table, StoreError> {
    let corrupt = |m: &str| StoreError::Corrupt(m.to_string());
    if bytes.len() < HEADER_LEN {
        return Err(corrupt("file shorter than its 52-byte header (truncated?)"));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt("bad magic: not a dare key store"));
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[8..12]);
    let version = u32::from_le_bytes(v);
    if version != STORE_FORMAT_VERSION {
        return Err(StoreError::UnsupportedFormat(version));
    }
    let mut l = [0u8; 8];
    l.copy_from_slice(&bytes[12..20]);
    let len = u64::from_le_bytes(l);
    let have = (bytes.len() - HEADER_LEN) as u64;
    if len > MAX_BODY || len != have {
        return Err(corrupt(
            "body length does not match the file size (truncated?)",
        ));
    }
    let body = &bytes[HEADER_LEN..];
    let sum = checksum(&bytes[..20], body);
    // Integrity, not authenticity: the checksum is public, so a plain comparison is fine.
    if sum[..] != bytes[20..52] {
        return Err(corrupt("checksum mismatch"));
    }
    let table: Table = serde_json::from_slice(body)
        .map_err(|e| StoreError::Corrupt(format!("undecodable table: {e}")))?;
    table.validate()?;
    Ok(table)
}

/// Identity of the file currently at a path, to notice replacement without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime: i64,
    ctime_nsec: i64,
}

pub(crate) fn stamp(path: &Path) -> Result<FileStamp, StoreError> {
    let m = fs::metadata(path).map_err(io_err("stat", path))?;
    Ok(FileStamp {
        ino: m.ino(),
        size: m.size(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
        ctime: m.ctime(),
        ctime_nsec: m.ctime_nsec(),
    })
}

/// Reads and decodes the store file of `dir`.
pub(crate) fn read(dir: &Path) -> Result<(Table, FileStamp), StoreError> {
    let path = dir.join(STORE_FILE);
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::NotInitialized(dir.to_path_buf()));
        }
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    // Stamp the opened file (not the path) so the stamp matches the bytes we read.
    let m = f.metadata().map_err(io_err("stat", &path))?;
    let st = FileStamp {
        ino: m.ino(),
        size: m.size(),
        mtime: m.mtime(),
        mtime_nsec: m.mtime_nsec(),
        ctime: m.ctime(),
        ctime_nsec: m.ctime_nsec(),
    };
    let bytes = {
        use std::io::Read;
        let mut v = Vec::new();
        (&f).take(MAX_BODY + HEADER_LEN as u64 + 1)
            .read_to_end(&mut v)
            .map_err(io_err("read", &path))?;
        v
    };
    Ok((decode(&bytes)?, st))
}

/// Atomically replaces the store file of `dir` with `table`. Call with the writer lock held.
pub(crate) fn write(dir: &Path, table: &Table) -> Result<FileStamp, StoreError> {
    let bytes = encode(table)?;
    let tmp = dir.join(TMP_FILE);
    let path = dir.join(STORE_FILE);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        f.write_all(&bytes).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("sync", &tmp))?;
    }
    fs::rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
    sync_dir(dir)?;
    stamp(&path)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync directory", dir))
}

/// An exclusive `flock`, released when dropped (the file is closed).
#[derive(Debug)]
pub(crate) struct LockGuard {
    _file: File,
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_err("open lock file", path))
}

/// Blocks until this process holds the writer lock of `dir`.
pub(crate) fn lock_writer(dir: &Path) -> Result<LockGuard, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = open_lock_file(&path)?;
    loop {
        match flock(&file, FlockOperation::LockExclusive) {
            Ok(()) => return Ok(LockGuard { _file: file }),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io_err("lock", &path)(e.into())),
        }
    }
}

/// Takes the rotation lock of `dir` without waiting; `None` if another process holds it.
pub(crate) fn try_lock_rotation(dir: &Path) -> Result<Option<LockGuard>, StoreError> {
    let path: PathBuf = dir.join(ROTATION_LOCK_FILE);
    let file = open_lock_file(&path)?;
    match flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(LockGuard { _file: file })),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(e) => Err(io_err("lock", &path)(e.into())),
    }
}
