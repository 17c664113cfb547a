//! The format-1 key store file: framing and checksum (reader; the writer is gone).
//!
//! Layout (KEYS.md §6.1 of format 1), all integers little-endian:
//!
//! ```text
//! 0   magic            8 bytes  "DAREKEYS"
//! 8   format version   u32      1
//! 12  body length      u64      n
//! 20  checksum         32 bytes SHA-256(bytes 0..20 || body)
//! 52  body             n bytes  UTF-8 JSON of the table
//! ```
//!
//! The previous release replaced the whole file atomically (write, fsync, rename), so a reader
//! sees one complete table and needs no lock.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::table::Table;
use crate::StoreError;

/// File magic.
const MAGIC: &[u8; 8] = b"DAREKEYS";
const HEADER_LEN: usize = 52;
/// Refuse bodies beyond this size before allocating (a real store is kilobytes).
const MAX_BODY: u64 = 256 * 1024 * 1024;

/// A [`StoreError::Corrupt`] that says which file format it is about.
pub(super) fn corrupt(why: &str) -> StoreError {
    StoreError::Corrupt(format!("format-1 key store file is corrupt: {why}"))
}

fn checksum(header: &[u8], body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(header);
    h.update(body);
    h.finalize().into()
}

#[cfg(any(test, feature = "fuzzing"))] // the fuzz round trip re-encodes; migration only reads
/// Serializes a table into framed file contents (the fuzz round trip only).
pub(crate) fn encode(table: &Table) -> Result<Vec<u8>, StoreError> {
    let body = serde_json::to_vec(table)
        .map_err(|e| StoreError::Corrupt(format!("cannot serialize a format-1 table: {e}")))?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&super::FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let sum = checksum(&out[..20], &body);
    out.extend_from_slice(&sum);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Parses and checks framed file contents. Never panics; every defect is a typed error.
pub(crate) fn decode(bytes: &[u8]) -> Result<Table, StoreError> {
    if bytes.len() < HEADER_LEN {
        return Err(corrupt("file shorter than its 52-byte header (truncated?)"));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt("bad magic: not a dare key store"));
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[8..12]);
    let version = u32::from_le_bytes(v);
    if version != super::FORMAT_VERSION {
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
    let table: Table =
        serde_json::from_slice(body).map_err(|e| corrupt(&format!("undecodable table: {e}")))?;
    table.validate()?;
    Ok(table)
}

/// Reads and decodes the store file of `dir`.
pub(crate) fn read(dir: &Path) -> Result<Table, StoreError> {
    let path = dir.join(super::STORE_FILE);
    let io = |op| {
        let path = path.clone();
        move |source| StoreError::Io { op, path, source }
    };
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::NotFound {
                what: "format-1 key store file",
                name: path.display().to_string(),
            });
        }
        Err(e) => return Err(io("open")(e)),
    };
    let mut bytes = Vec::new();
    f.take(MAX_BODY + HEADER_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read"))?;
    decode(&bytes)
}
