//! Test support: object identities, sealing and opening helpers, an in-memory data file, a
//! test key provider, and independent reference encoders of both object formats.
//!
//! The reference encoders are written from docs/FORMAT.md (format 2: §2–§7; format 1: §9 and
//! the format-1 layout) with RustCrypto `aes-gcm`, `sha2` and `crc32c` directly, none of the
//! engine's code: when the engine's output equals theirs byte for byte, the engine writes the
//! documented format.
#![allow(dead_code)]

use std::io;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use dare_engine::format::v2::FileHeader;
use dare_engine::pipeline::{open_from_slice, seal_to_vec};
use dare_engine::storage::{DataFile, ReadAt};
use dare_engine::{
    AeadBackend, ObjectIdentity, ObjectOpener, ObjectParams, ObjectSealer, OpenError, Protection,
    Suite,
};
use dare_envelope::{DataKey, Envelope, KeyError, KeyKind, KeyProvider};
use sha2::{Digest, Sha256};

/// The store every test object lives in.
pub const STORE_ID: [u8; 16] = *b"dare-test-store!";
/// Length of the format-2 data file header.
pub const HEAD: usize = 32;

pub type Meta = Vec<(String, String)>;

/// The identity of test object `n` named `name` in bucket 7.
pub fn ident(name: &str, n: u8) -> ObjectIdentity<'_> {
    ObjectIdentity {
        store_id: STORE_ID,
        bucket_id: 7,
        object_id: [n; 16],
        name,
    }
}

pub fn key() -> DataKey {
    DataKey::generate().unwrap()
}

pub fn meta(pairs: &[(&str, &str)]) -> Meta {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A sealed format-2 object: its data file and what its row records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub file: Vec<u8>,
    pub meta_block: Vec<u8>,
    pub suite: Suite,
    pub chunk_shift: u8,
    pub prefix: [u8; 7],
    pub size: u64,
    pub etag: String,
}

impl Sealed {
    /// The row's parameters.
    pub fn params(&self) -> ObjectParams<'_> {
        ObjectParams {
            suite: self.suite,
            chunk_shift: self.chunk_shift,
            nonce_prefix: self.prefix,
            size: self.size,
            meta_block: &self.meta_block,
            etag: &self.etag,
        }
    }

    /// Bytes each chunk takes in the data file.
    pub fn stride(&self) -> usize {
        (1usize << self.chunk_shift)
            + if self.suite == Suite::Plaintext {
                0
            } else {
                16
            }
    }

    /// The stored bytes of chunk `i`.
    pub fn chunk(&self, i: usize) -> &[u8] {
        let s = HEAD + i * self.stride();
        &self.file[s..(s + self.stride()).min(self.file.len())]
    }
}

/// Seals `data` and `meta` with the engine.
pub fn seal_with(
    id: &ObjectIdentity<'_>,
    protection: Protection<'_>,
    shift: u8,
    data: &[u8],
    meta: &[(String, String)],
    backend: AeadBackend,
    batch: usize,
) -> Sealed {
    let mut s = ObjectSealer::new(id, protection, shift, backend).unwrap();
    let meta_block = s.seal_meta(meta).unwrap();
    let file = seal_to_vec(&mut s, data, batch).unwrap();
    let sum = s.summary().expect("sealed to the end");
    assert_eq!(sum.size, data.len() as u64);
    Sealed {
        file,
        meta_block,
        suite: s.suite(),
        chunk_shift: s.chunk_shift(),
        prefix: s.nonce_prefix(),
        size: sum.size,
        etag: sum.etag,
    }
}

/// Seals `data` (4 KiB chunks, no metadata) under `key` on the best backend.
pub fn seal(id: &ObjectIdentity<'_>, key: &DataKey, data: &[u8]) -> Sealed {
    seal_with(
        id,
        Protection::Encrypted(key),
        12,
        data,
        &[],
        AeadBackend::best(),
        1 << 20,
    )
}

/// Opens a whole data file against its row: plaintext and metadata, or the error.
pub fn open_with(
    id: &ObjectIdentity<'_>,
    p: &ObjectParams<'_>,
    file: &[u8],
    key: Option<&DataKey>,
    backend: AeadBackend,
    batch: usize,
) -> Result<(Vec<u8>, Meta), OpenError> {
    let o = ObjectOpener::new(id, p, key, backend)?;
    let pt = open_from_slice(&o, file, batch)?;
    Ok((pt, o.meta().to_vec()))
}

/// Opens `s` on the best backend, three chunks per batch.
pub fn open(id: &ObjectIdentity<'_>, s: &Sealed, key: &DataKey) -> Result<Vec<u8>, OpenError> {
    open_with(
        id,
        &s.params(),
        &s.file,
        Some(key),
        AeadBackend::best(),
        3 * s.stride(),
    )
    .map(|(p, _)| p)
}

/// A data file in memory, read-only: lets the tests drive [`dare_engine::ObjectReader`]'s
/// streaming reads without a file system.
#[derive(Debug)]
pub struct MemFile(pub Vec<u8>);

impl ReadAt for MemFile {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, off)
    }
}

impl DataFile for MemFile {
    fn write_prefix_at(
        &self,
        buf: Vec<u8>,
        _range: std::ops::Range<usize>,
        _off: u64,
    ) -> (io::Result<()>, Vec<u8>) {
        (Err(io::Error::other("read-only test file")), buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.len() as u64)
    }
    fn set_len(&self, _len: u64) -> io::Result<()> {
        Err(io::Error::other("read-only test file"))
    }
}

/// What a streaming read handed to its sink, and how it ended.
pub fn stream(
    read: impl FnOnce(&mut dyn FnMut(&[u8]) -> io::Result<()>) -> Result<(), OpenError>,
) -> (Result<(), OpenError>, Vec<u8>) {
    let mut got = Vec::new();
    let r = read(&mut |p| {
        got.extend_from_slice(p);
        Ok(())
    });
    (r, got)
}

/// A key provider for format-1 objects whose envelope is the raw data key (kind "store root"):
/// the engine only hands the envelope over, so how a provider unwraps does not matter to it.
#[derive(Debug)]
pub struct RawKeyProvider;

impl RawKeyProvider {
    pub fn envelope(key: &[u8; 32]) -> Envelope {
        Envelope {
            kind: KeyKind::StoreRoot,
            bytes: key.to_vec(),
        }
    }
}

impl KeyProvider for RawKeyProvider {
    fn new_data_key(&self) -> Result<(DataKey, Envelope), KeyError> {
        let k = DataKey::generate()?;
        let e = Self::envelope(k.expose_secret());
        Ok((k, e))
    }
    fn open_data_key(&self, e: &Envelope) -> Result<DataKey, KeyError> {
        if e.kind != KeyKind::StoreRoot {
            return Err(KeyError::WrongKind {
                expected: 1,
                found: e.kind.to_byte(),
            });
        }
        let k: [u8; 32] = e.bytes[..]
            .try_into()
            .map_err(|_| KeyError::Malformed("test envelope is not 32 bytes"))?;
        Ok(DataKey::from_bytes(k))
    }
}

// ---- independent reference encoders -----------------------------------------------------

fn ref_nonce(prefix: &[u8; 7], i: u32, marker: u8) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&i.to_be_bytes());
    n[11] = marker;
    n
}

fn ref_gcm(key: &[u8; 32], nonce: &[u8; 12], ad: &[u8], data: &mut Vec<u8>) -> [u8; 16] {
    Aes256Gcm::new(key.into())
        .encrypt_inout_detached(nonce.into(), ad, data.as_mut_slice().into())
        .unwrap()
        .into()
}

/// User metadata encoding: count, then (key length, key, value length, value), all u16 LE.
pub fn ref_encode_meta(meta: &[(String, String)]) -> Vec<u8> {
    let mut out = (meta.len() as u16).to_le_bytes().to_vec();
    for (k, v) in meta {
        for s in [k, v] {
            out.extend_from_slice(&(s.len() as u16).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

/// The chunks of `pt` (at least one) sealed with `nonce(prefix, i, 0 | 1 if last)`, each
/// followed by its tag; and the tags.
fn ref_chunks(
    key: &[u8; 32],
    prefix: &[u8; 7],
    ad: &[u8],
    shift: u8,
    pt: &[u8],
) -> (Vec<u8>, Vec<[u8; 16]>) {
    let c = 1usize << shift;
    let n = pt.len().div_ceil(c).max(1);
    let (mut out, mut tags) = (Vec::new(), Vec::new());
    for i in 0..n {
        let mut piece = pt[i * c..pt.len().min((i + 1) * c)].to_vec();
        let marker = u8::from(i + 1 == n);
        let tag = ref_gcm(key, &ref_nonce(prefix, i as u32, marker), ad, &mut piece);
        out.extend_from_slice(&piece);
        out.extend_from_slice(&tag);
        tags.push(tag);
    }
    (out, tags)
}

/// Format 2 (`key` `None`: in clear): the data file, the row's metadata block and ETag of an
/// object with this identity, chunk size, nonce prefix, metadata and plaintext.
pub fn reference_v2(
    id: &ObjectIdentity<'_>,
    key: Option<&[u8; 32]>,
    shift: u8,
    prefix: &[u8; 7],
    meta: &[(String, String)],
    pt: &[u8],
) -> (Vec<u8>, Vec<u8>, String) {
    let suite = u8::from(key.is_some());
    let prefix = if key.is_some() { *prefix } else { [0; 7] };
    let mut file = b"DARE".to_vec();
    file.extend_from_slice(&[2, suite, shift, 0]);
    file.extend_from_slice(&id.object_id);
    file.extend_from_slice(&prefix);
    file.push(0);
    let mut meta_block = ref_encode_meta(meta);
    let Some(key) = key else {
        file.extend_from_slice(pt);
        return (file, meta_block, format!("{:08x}", crc32c::crc32c(pt)));
    };
    let mut ad = Sha256::new();
    ad.update(b"dare/v2/object\0");
    ad.update(id.store_id);
    ad.update(id.bucket_id.to_le_bytes());
    ad.update(id.object_id);
    ad.update([suite, shift]);
    ad.update(prefix);
    ad.update((id.name.len() as u16).to_le_bytes());
    ad.update(id.name.as_bytes());
    let ad = ad.finalize();
    let tag = ref_gcm(key, &ref_nonce(&prefix, 0, 2), &ad, &mut meta_block);
    meta_block.extend_from_slice(&tag);
    let (body, tags) = ref_chunks(key, &prefix, &ad, shift, pt);
    file.extend_from_slice(&body);
    let mut e = Sha256::new();
    e.update(b"dare/v2/etag\0");
    for t in &tags {
        e.update(t);
    }
    let etag = e.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (file, meta_block, etag)
}

/// Format 1: the object file (header with the name and key block, metadata block, chunks).
/// `key` is the data key and the key block (kind byte, bytes); `None` for a plaintext object.
pub fn reference_v1(
    name: &str,
    key: Option<(&[u8; 32], u8, &[u8])>,
    shift: u8,
    prefix: &[u8; 7],
    meta: &[(String, String)],
    pt: &[u8],
) -> Vec<u8> {
    let mut meta_block = ref_encode_meta(meta);
    let (suite, kind, kb): (u8, u8, &[u8]) = match key {
        Some((_, kind, kb)) => (1, kind, kb),
        None => (0, 0, &[]),
    };
    let prefix = if key.is_some() { *prefix } else { [0; 7] };
    let meta_len = meta_block.len() + if key.is_some() { 16 } else { 0 };
    let mut h = b"DARE".to_vec();
    h.extend_from_slice(&[1, suite, shift, kind]);
    h.extend_from_slice(&prefix);
    h.push(0);
    h.extend_from_slice(&(name.len() as u16).to_le_bytes());
    h.extend_from_slice(&(kb.len() as u16).to_le_bytes());
    h.extend_from_slice(&(meta_len as u32).to_le_bytes());
    h.extend_from_slice(name.as_bytes());
    h.extend_from_slice(kb);
    let Some((key, _, _)) = key else {
        h.extend_from_slice(&meta_block);
        h.extend_from_slice(pt);
        return h;
    };
    let ad: [u8; 32] = Sha256::digest(&h).into();
    let tag = ref_gcm(key, &ref_nonce(&prefix, 0, 2), &ad, &mut meta_block);
    let mut out = h;
    out.extend_from_slice(&meta_block);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&ref_chunks(key, &prefix, &ad, shift, pt).0);
    out
}

/// Format 1 object under the raw-key provider ([`RawKeyProvider`]).
pub fn reference_v1_raw(
    name: &str,
    key: &[u8; 32],
    shift: u8,
    prefix: &[u8; 7],
    meta: &[(String, String)],
    pt: &[u8],
) -> Vec<u8> {
    reference_v1(name, Some((key, 1, key)), shift, prefix, meta, pt)
}

/// Rewrites the (unauthenticated) header of a format-2 data file to name `id` and these
/// parameters, as an attacker who moves a file would.
pub fn rehead(file: &mut [u8], id: &ObjectIdentity<'_>, suite: Suite, shift: u8, prefix: &[u8; 7]) {
    let h = FileHeader {
        suite,
        chunk_shift: shift,
        object_id: id.object_id,
        nonce_prefix: *prefix,
    };
    file[..HEAD].copy_from_slice(&h.to_bytes());
}

/// The header of a format-2 data file, parsed.
pub fn file_header(file: &[u8]) -> FileHeader {
    FileHeader::parse(file).unwrap()
}
