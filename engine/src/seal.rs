//! Sealing and opening objects chunk by chunk: the cryptography of the data path.
//!
//! Callers never see a nonce. [`ObjectSealer`] takes the object's identity and its data key
//! (or [`Protection::Clear`] for a bucket created with encryption off), draws the random nonce
//! prefix, owns the chunk counter and refuses to pass 2^32 chunks. [`ObjectOpener`] verifies
//! the user-metadata block first, then releases each chunk's plaintext only after that
//! chunk's tag verified (`pipeline`).
//!
//! Chunks travel in *batches*: one buffer holding consecutive chunks at a stride of
//! `chunk_size + 16`, i.e. exactly their on-disk layout, so a sealed batch is written with
//! one positioned write and a read batch is decrypted in place. Memory is bounded by the
//! batch size whatever the object size. The batch functions are crate-private: only the
//! pipelines call them, with batches they cut themselves, so no caller can seal a short
//! chunk in the middle of an object or choose a chunk count.

use std::io::{self, Read};

use dare_envelope::{DataKey, KeyError, KeyProvider};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::backend::{AeadBackend, AeadKey};
use crate::batch;
use crate::error::{FormatError, OpenError, SealError};
use crate::format::v1;
use crate::format::v2::{self, FileHeader, ObjectIdentity};
use crate::format::{
    self, Geometry, MARKER_CHUNK, MARKER_FINAL, MARKER_META, MAX_CHUNKS, MAX_META_LEN, PREFIX_LEN,
    Suite, TAG_LEN,
};
use crate::storage::ReadAt;

/// Default batch size in bytes: how much plaintext is sealed or opened per parallel step.
pub const DEFAULT_BATCH_BYTES: usize = 4 << 20;

/// How a new object's data is protected. The control plane picks it from the bucket's
/// encryption policy; there is no way to ask for "encrypted" without a data key.
#[derive(Debug, Clone, Copy)]
pub enum Protection<'a> {
    /// AES-256-GCM under this (fresh, per-object) data key.
    Encrypted(&'a DataKey),
    /// Stored in clear: only for buckets created with encryption off.
    Clear,
}

/// What a sealed object's row must record besides its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealSummary {
    /// Plaintext size in bytes.
    pub size: u64,
    /// The entity tag (FORMAT.md §7).
    pub etag: String,
}

/// Running ETag state: a digest of the chunk tags (encrypted) or CRC-32C of the content.
#[derive(Debug, Clone)]
enum EtagState {
    Tags(Sha256),
    Crc(u32),
}

/// Encrypts one object (format 2). Write [`head`](Self::head) first, then every batch.
#[derive(Debug)]
pub struct ObjectSealer {
    key: Option<AeadKey>,
    prefix: [u8; PREFIX_LEN],
    aad: [u8; 32],
    chunk_shift: u8,
    next_index: u64,
    finished: bool,
    head: [u8; v2::HEADER_LEN],
    size: u64,
    etag: EtagState,
}

impl ObjectSealer {
    /// Starts object `id`: draws its nonce prefix (encrypted objects) and computes its
    /// associated data. `chunk_shift` is 12..=22.
    pub fn new(
        id: &ObjectIdentity<'_>,
        protection: Protection<'_>,
        chunk_shift: u8,
        backend: AeadBackend,
    ) -> Result<Self, SealError> {
        let mut prefix = [0u8; PREFIX_LEN];
        if let Protection::Encrypted(_) = protection {
            getrandom::fill(&mut prefix).map_err(|_| SealError::Rng)?;
        }
        Self::with_prefix(id, protection, chunk_shift, backend, prefix)
    }

    /// [`new`](Self::new) with a caller-chosen nonce prefix, so that a fuzz input replays
    /// exactly and the sealer's output can be compared with a reference encoder. Never
    /// outside the `fuzzing` feature: a repeated prefix under one data key repeats nonces.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn with_prefix_for_fuzzing(
        id: &ObjectIdentity<'_>,
        protection: Protection<'_>,
        chunk_shift: u8,
        backend: AeadBackend,
        prefix: [u8; PREFIX_LEN],
    ) -> Result<Self, SealError> {
        Self::with_prefix(id, protection, chunk_shift, backend, prefix)
    }

    /// The constructor behind [`new`](Self::new); `prefix` is ignored in clear (zero there).
    fn with_prefix(
        id: &ObjectIdentity<'_>,
        protection: Protection<'_>,
        chunk_shift: u8,
        backend: AeadBackend,
        mut prefix: [u8; PREFIX_LEN],
    ) -> Result<Self, SealError> {
        let (suite, key) = match protection {
            Protection::Encrypted(dk) => (
                Suite::Aes256Gcm,
                Some(AeadKey::new(backend, dk.expose_secret())),
            ),
            Protection::Clear => {
                prefix = [0; PREFIX_LEN];
                (Suite::Plaintext, None)
            }
        };
        let aad = v2::associated_data(id, suite, chunk_shift, &prefix)?;
        let head = FileHeader {
            suite,
            chunk_shift,
            object_id: id.object_id,
            nonce_prefix: prefix,
        }
        .to_bytes();
        let etag = if key.is_some() {
            let mut h = Sha256::new();
            h.update(v2::ETAG_LABEL);
            h.update([0u8]);
            EtagState::Tags(h)
        } else {
            EtagState::Crc(0)
        };
        Ok(ObjectSealer {
            key,
            prefix,
            aad,
            chunk_shift,
            next_index: 0,
            finished: false,
            head,
            size: 0,
            etag,
        })
    }

    /// The user-metadata block to store in the object's row: the encoding of `meta`
    /// (FORMAT.md §5), sealed under the data key when the object is encrypted.
    pub fn seal_meta(&self, meta: &[(String, String)]) -> Result<Vec<u8>, SealError> {
        let mut block = format::encode_meta(meta)?;
        if let Some(k) = &self.key {
            let t = k.seal_in_place(
                &format::nonce(&self.prefix, 0, MARKER_META),
                &self.aad,
                &mut block,
            );
            block.extend_from_slice(&t);
        }
        Ok(block)
    }

    /// The data file header: the first bytes of the data file.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Body protection.
    pub fn suite(&self) -> Suite {
        if self.key.is_some() {
            Suite::Aes256Gcm
        } else {
            Suite::Plaintext
        }
    }

    /// The random nonce prefix (zero in clear), for the object's row.
    pub fn nonce_prefix(&self) -> [u8; PREFIX_LEN] {
        self.prefix
    }

    /// log2 of the chunk size.
    pub fn chunk_shift(&self) -> u8 {
        self.chunk_shift
    }

    /// Plaintext chunk size.
    pub fn chunk_size(&self) -> usize {
        1 << self.chunk_shift
    }

    /// Bytes each chunk occupies in a batch buffer and on disk (chunk + tag, or chunk alone
    /// in clear).
    pub fn stride(&self) -> usize {
        self.chunk_size() + if self.key.is_some() { TAG_LEN } else { 0 }
    }

    /// Whether the object is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// Size and ETag, once the final batch is sealed; `None` before.
    pub fn summary(&self) -> Option<SealSummary> {
        if !self.finished {
            return None;
        }
        let etag = match &self.etag {
            EtagState::Tags(h) => {
                let d = h.clone().finalize();
                format::hex(&d[..16])
            }
            EtagState::Crc(c) => format!("{c:08x}"),
        };
        Some(SealSummary {
            size: self.size,
            etag,
        })
    }

    /// Seals the next batch in place. `batch` holds `plain_len` bytes of plaintext placed at
    /// the chunk slots (slot `i` starts at `i * stride`); every chunk but the last is full.
    /// `is_final` says the batch ends the object. Returns the length of the sealed batch,
    /// which is the prefix of `batch` to write.
    pub(crate) fn seal_batch(
        &mut self,
        batch: &mut [u8],
        plain_len: usize,
        is_final: bool,
    ) -> Result<usize, SealError> {
        let r = self.reserve(plain_len, is_final)?;
        if let Some(key) = &self.key {
            seal_chunks(key, &self.prefix, &self.aad, self.stride(), batch, &r)?;
        }
        self.absorb(batch, &r)?;
        Ok(r.sealed_len)
    }

    /// Accounts for the next batch (`plain_len` bytes, `is_final` if it ends the object):
    /// gives it its chunk indices, refusing a batch past the chunk limit, an empty batch
    /// anywhere but as a whole empty object, or one after the final batch. The batch is then
    /// sealed by `seal_chunks` and its tags absorbed by [`absorb`](Self::absorb) in batch
    /// order.
    fn reserve(&mut self, plain_len: usize, is_final: bool) -> Result<Reserved, SealError> {
        if self.finished {
            return Err(SealError::Format(FormatError::Invalid(
                "object already finished",
            )));
        }
        let c = self.chunk_size();
        let chunks = if plain_len == 0 {
            if !(is_final && self.next_index == 0) {
                return Err(SealError::Format(FormatError::Invalid("empty batch")));
            }
            1
        } else {
            plain_len.div_ceil(c)
        };
        let first = self.next_index;
        let after = first + chunks as u64;
        if after > MAX_CHUNKS {
            return Err(SealError::TooLarge);
        }
        self.next_index = after;
        self.finished = is_final;
        self.size += plain_len as u64;
        let sealed_len = if self.key.is_some() {
            plain_len + chunks * TAG_LEN
        } else {
            plain_len
        };
        Ok(Reserved {
            first,
            after,
            is_final,
            plain_len,
            sealed_len,
        })
    }

    /// Adds sealed batch `r` to the ETag (its tags, or in clear its content's CRC-32C).
    /// Batches must be absorbed in the order they were reserved.
    fn absorb(&mut self, batch: &[u8], r: &Reserved) -> Result<(), SealError> {
        let too_small = || SealError::Format(FormatError::Invalid("batch buffer too small"));
        let stride = self.stride();
        match &mut self.etag {
            EtagState::Crc(crc) => {
                let data = batch.get(..r.plain_len).ok_or_else(too_small)?;
                *crc = crc32c::crc32c_append(*crc, data);
            }
            EtagState::Tags(h) => {
                let sealed = batch.get(..r.sealed_len).ok_or_else(too_small)?;
                for chunk in sealed.chunks(stride) {
                    h.update(&chunk[chunk.len() - TAG_LEN..]);
                }
            }
        }
        Ok(())
    }
}

/// A batch accounted for by [`ObjectSealer::reserve`]: its chunks `first..after`.
#[derive(Debug, Clone, Copy)]
struct Reserved {
    first: u64,
    after: u64,
    is_final: bool,
    plain_len: usize,
    sealed_len: usize,
}

/// Seals the chunks of reserved batch `r` in place, each with its own nonce (chunk index and
/// final marker) and its tag after it.
fn seal_chunks(
    key: &AeadKey,
    prefix: &[u8; PREFIX_LEN],
    aad: &[u8; 32],
    stride: usize,
    batch: &mut [u8],
    r: &Reserved,
) -> Result<(), SealError> {
    let buf = batch
        .get_mut(..r.sealed_len)
        .ok_or(SealError::Format(FormatError::Invalid(
            "batch buffer too small",
        )))?;
    let (first, after, is_final) = (r.first, r.after, r.is_final);
    batch::for_each_chunk(buf, stride, |i, chunk| {
        let index = first + i as u64;
        let marker = if is_final && index + 1 == after {
            MARKER_FINAL
        } else {
            MARKER_CHUNK
        };
        let (data, tag) = chunk.split_at_mut(chunk.len() - TAG_LEN);
        // `index < 2^32` was checked by `reserve`, so the cast keeps every bit.
        let t = key.seal_in_place(&format::nonce(prefix, index as u32, marker), aad, data);
        tag.copy_from_slice(&t);
        Ok::<(), ()>(())
    })
    .map_err(|_| SealError::Format(FormatError::Invalid("seal failed")))
}

/// The CRC-32C ETag of an object in clear: exactly 8 lower-case hex digits (FORMAT.md §7).
fn parse_crc_etag(etag: &str) -> Result<u32, FormatError> {
    let bad = FormatError::Invalid("ETag of an object in clear is not a CRC-32C");
    if etag.len() != 8 || !etag.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad);
    }
    u32::from_str_radix(etag, 16).map_err(|_| bad)
}

/// Reads plaintext from `r` into the chunk slots of `buf` (stride `stride`, `chunk` bytes
/// each), carrying one byte of look-ahead in `carry` so the caller learns whether the stream
/// ended. Returns `(plain_len, is_final)`.
pub(crate) fn fill_batch<R: Read + ?Sized>(
    r: &mut R,
    buf: &mut [u8],
    chunk: usize,
    stride: usize,
    carry: &mut Option<u8>,
) -> io::Result<(usize, bool)> {
    let slots = buf.len() / stride;
    let mut total = 0;
    for s in 0..slots {
        let slot = &mut buf[s * stride..s * stride + chunk];
        let mut n = 0;
        if let Some(b) = carry.take() {
            slot[0] = b;
            n = 1;
        }
        while n < chunk {
            match r.read(&mut slot[n..]) {
                Ok(0) => return Ok((total + n, true)),
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        total += n;
    }
    // The batch is full: look one byte ahead to learn whether the stream ended.
    let mut one = [0u8; 1];
    loop {
        match r.read(&mut one) {
            Ok(0) => return Ok((total, true)),
            Ok(_) => {
                *carry = Some(one[0]);
                return Ok((total, false));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// What the object table records about a format-2 object, besides its identity and envelope.
#[derive(Debug, Clone, Copy)]
pub struct ObjectParams<'a> {
    /// Body protection.
    pub suite: Suite,
    /// log2 of the chunk size.
    pub chunk_shift: u8,
    /// The random nonce prefix (zero in clear).
    pub nonce_prefix: [u8; PREFIX_LEN],
    /// Plaintext size.
    pub size: u64,
    /// The stored user-metadata block.
    pub meta_block: &'a [u8],
    /// The stored ETag (for objects in clear it is the CRC-32C that whole reads check).
    pub etag: &'a str,
}

/// An authenticated view of a stored object: user metadata verified, data key ready.
#[derive(Debug)]
pub struct ObjectOpener {
    format: u8,
    suite: Suite,
    key: Option<AeadKey>,
    prefix: [u8; PREFIX_LEN],
    aad: [u8; 32],
    geometry: Geometry,
    body_offset: u64,
    meta: Vec<(String, String)>,
    clear_crc: Option<u32>,
    v1_header: Option<v1::Header>,
    v2_header: Option<[u8; v2::HEADER_LEN]>,
}

impl Drop for ObjectOpener {
    /// The decrypted user metadata is wiped (the key schedule wipes itself).
    fn drop(&mut self) {
        for (k, v) in &mut self.meta {
            k.zeroize();
            v.zeroize();
        }
    }
}

impl ObjectOpener {
    /// Opens a format-2 object from its row: verifies and decrypts its user-metadata block
    /// under `key` (encrypted objects; a missing or wrong key, or a substituted envelope,
    /// fails here with [`OpenError::HeaderAuth`] or [`OpenError::Key`]). The data file is
    /// checked later ([`check_file_len`](Self::check_file_len), then every chunk's tag).
    pub fn new(
        id: &ObjectIdentity<'_>,
        p: &ObjectParams<'_>,
        key: Option<&DataKey>,
        backend: AeadBackend,
    ) -> Result<Self, OpenError> {
        let aad = v2::associated_data(id, p.suite, p.chunk_shift, &p.nonce_prefix)?;
        let chunk_size = 1u64 << p.chunk_shift;
        let chunks = p.size.div_ceil(chunk_size).max(1);
        if chunks > MAX_CHUNKS {
            return Err(FormatError::BadLength.into());
        }
        let geometry = Geometry {
            chunk_size,
            chunks,
            plaintext_len: p.size,
        };
        let (key, meta_plain, clear_crc) = match p.suite {
            Suite::Aes256Gcm => {
                let dk = key.ok_or(OpenError::Key(KeyError::Provider(
                    "object is encrypted but no data key was given".into(),
                )))?;
                let key = AeadKey::new(backend, dk.expose_secret());
                let block = p.meta_block;
                if block.len() < TAG_LEN + 2 || block.len() > MAX_META_LEN + TAG_LEN {
                    return Err(OpenError::HeaderAuth);
                }
                let split = block.len() - TAG_LEN;
                let mut data = block[..split].to_vec();
                let tag: [u8; TAG_LEN] = block[split..]
                    .try_into()
                    .map_err(|_| OpenError::HeaderAuth)?;
                key.open_in_place(
                    &format::nonce(&p.nonce_prefix, 0, MARKER_META),
                    &aad,
                    &mut data,
                    &tag,
                )
                .map_err(|_| OpenError::HeaderAuth)?;
                (Some(key), data, None)
            }
            _ => {
                if p.nonce_prefix != [0; PREFIX_LEN] {
                    return Err(
                        FormatError::Invalid("a plaintext object has a nonce prefix").into(),
                    );
                }
                let crc = parse_crc_etag(p.etag)?;
                (None, p.meta_block.to_vec(), Some(crc))
            }
        };
        let meta = format::decode_meta(&meta_plain).map_err(|_| OpenError::HeaderAuth)?;
        let v2_header = FileHeader {
            suite: p.suite,
            chunk_shift: p.chunk_shift,
            object_id: id.object_id,
            nonce_prefix: p.nonce_prefix,
        }
        .to_bytes();
        Ok(ObjectOpener {
            format: v2::VERSION,
            suite: p.suite,
            key,
            prefix: p.nonce_prefix,
            aad,
            geometry,
            body_offset: v2::HEADER_LEN as u64,
            meta,
            clear_crc,
            v1_header: None,
            v2_header: Some(v2_header),
        })
    }

    /// Opens a format-1 object: reads and authenticates the header and metadata block of
    /// the object in `src` (`file_len` bytes long); `provider` resolves the envelope stored
    /// in its header.
    pub fn open_v1<S: ReadAt + ?Sized>(
        src: &S,
        file_len: u64,
        provider: Option<&dyn KeyProvider>,
        backend: AeadBackend,
    ) -> Result<Self, OpenError> {
        if file_len == 0 {
            return Err(FormatError::Empty.into());
        }
        // Most headers fit in 4 KiB; read more only when the fixed part says so.
        let mut buf = vec![0u8; file_len.min(4096) as usize];
        src.read_exact_at(&mut buf, 0)?;
        let (header, hlen) = match v1::Header::parse(&buf) {
            Err(FormatError::Truncated { need }) if need <= file_len && need > buf.len() as u64 => {
                buf.resize(need as usize, 0);
                src.read_exact_at(&mut buf, 0)?;
                v1::Header::parse(&buf)?
            }
            other => other?,
        };
        let aad = v1::header_digest(&buf[..hlen]);
        let body_offset = header.body_offset();
        if body_offset > file_len {
            return Err(FormatError::Truncated { need: body_offset }.into());
        }
        let body_len = file_len - body_offset;
        // The metadata block usually sits inside the first read already; read it only if not.
        let meta_end = hlen + header.meta_len as usize;
        let mut meta_block = match buf.get(hlen..meta_end) {
            Some(m) => m.to_vec(),
            None => {
                let mut m = vec![0u8; header.meta_len as usize];
                src.read_exact_at(&mut m, hlen as u64)?;
                m
            }
        };
        let (key, geometry, meta_plain) = match &header.key_block {
            None => {
                let g = Geometry {
                    chunk_size: header.chunk_size(),
                    chunks: body_len.div_ceil(header.chunk_size()).max(1),
                    plaintext_len: body_len,
                };
                (None, g, meta_block)
            }
            Some(kb) => {
                let p = provider.ok_or(OpenError::Key(KeyError::Provider(
                    "object is encrypted but no key provider was given".into(),
                )))?;
                let dk = p.open_data_key(kb).map_err(OpenError::Key)?;
                let key = AeadKey::new(backend, dk.expose_secret());
                let split = meta_block.len() - TAG_LEN;
                let (data, tag) = meta_block.split_at_mut(split);
                let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| OpenError::HeaderAuth)?;
                key.open_in_place(
                    &format::nonce(&header.nonce_prefix, 0, MARKER_META),
                    &aad,
                    data,
                    &tag,
                )
                .map_err(|_| OpenError::HeaderAuth)?;
                meta_block.truncate(split);
                let g = Geometry::from_body_len(header.chunk_shift, body_len)?;
                (Some(key), g, meta_block)
            }
        };
        let meta = format::decode_meta(&meta_plain).map_err(|_| OpenError::HeaderAuth)?;
        Ok(ObjectOpener {
            format: v1::VERSION,
            suite: header.suite,
            key,
            prefix: header.nonce_prefix,
            aad,
            geometry,
            body_offset,
            meta,
            clear_crc: None,
            v1_header: Some(header),
            v2_header: None,
        })
    }

    /// For a format-1 object stored in clear: whole reads must match this ETag, the CRC-32C
    /// of the content computed when the store was migrated (format-1 clear files carry no
    /// checksum of their own). A no-op for encrypted objects, which are authenticated.
    pub fn with_clear_checksum(mut self, etag: &str) -> Result<Self, OpenError> {
        if self.key.is_none() {
            let crc = parse_crc_etag(etag)?;
            self.clear_crc = Some(crc);
        }
        Ok(self)
    }

    /// The object format (1 or 2).
    pub fn format(&self) -> u8 {
        self.format
    }

    /// Body protection.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The verified header of a format-1 object.
    pub fn v1_header(&self) -> Option<&v1::Header> {
        self.v1_header.as_ref()
    }

    /// The length a format-2 data file of this object has: its header and the body.
    pub fn expected_file_len(&self) -> u64 {
        let body = if self.key.is_some() {
            Geometry::body_len(self.chunk_shift(), self.geometry.plaintext_len).unwrap_or(u64::MAX)
        } else {
            self.geometry.plaintext_len
        };
        self.body_offset.saturating_add(body)
    }

    fn chunk_shift(&self) -> u8 {
        self.geometry.chunk_size.trailing_zeros() as u8
    }

    /// Refuses a format-2 data file whose length is not the one the object table implies
    /// (cut or extended); format-1 lengths were checked when the header was read.
    pub fn check_file_len(&self, file_len: u64) -> Result<(), OpenError> {
        if self.format == v1::VERSION {
            return Ok(());
        }
        let expected = self.expected_file_len();
        if file_len == expected {
            Ok(())
        } else {
            Err(OpenError::FileLength {
                expected,
                actual: file_len,
            })
        }
    }

    /// Refuses a format-2 data file whose 32-byte header (`head`, its first bytes) does not
    /// say what the row says. The header is not what protects the data — the associated data
    /// does — but a file that claims to be another object is swapped or damaged, and is
    /// reported as such rather than served. Format 1: a no-op (its header is authenticated).
    pub fn check_file_header(&self, head: &[u8]) -> Result<(), OpenError> {
        match &self.v2_header {
            Some(want) if head.get(..v2::HEADER_LEN) != Some(&want[..]) => {
                Err(OpenError::HeaderMismatch)
            }
            _ => Ok(()),
        }
    }

    /// Plaintext length of the object.
    pub fn plaintext_len(&self) -> u64 {
        self.geometry.plaintext_len
    }

    /// The decrypted user metadata.
    pub fn meta(&self) -> &[(String, String)] {
        &self.meta
    }

    /// Whether the object is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// The chunk geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Offset in the file of the first body byte.
    pub fn body_offset(&self) -> u64 {
        self.body_offset
    }

    /// The CRC-32C a whole read of a format-2 object in clear must match.
    pub(crate) fn clear_crc(&self) -> Option<u32> {
        self.clear_crc
    }

    /// Checks a range against the object and returns the chunks `[first, last]` covering it.
    pub fn plan_range(&self, offset: u64, len: u64) -> Result<(u64, u64), OpenError> {
        let size = self.geometry.plaintext_len;
        if len == 0 {
            return Err(OpenError::EmptyRange);
        }
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= size)
            .ok_or(OpenError::RangeOutOfBounds { offset, len, size })?;
        let c = self.geometry.chunk_size;
        Ok((offset / c, (end - 1) / c))
    }

    /// Bytes each chunk occupies in the file (chunk + tag, or the chunk alone in clear).
    pub fn stride(&self) -> u64 {
        self.geometry.chunk_size
            + if self.key.is_some() {
                TAG_LEN as u64
            } else {
                0
            }
    }

    /// File extent `(offset, length)` holding chunks `first..first+count` (`count >= 1`).
    pub fn chunk_extent(&self, first: u64, count: u64) -> (u64, u64) {
        let stride = self.stride();
        let last = first + count - 1;
        let tag = stride - self.geometry.chunk_size;
        let start = self.body_offset + first * stride;
        let end = self.body_offset + last * stride + self.geometry.chunk_plain_len(last) + tag;
        (start, end - start)
    }

    /// Verifies and decrypts, in place, the batch `buf` holding chunks `first..first+count`
    /// exactly as stored. Returns the plaintext length; the plaintext of chunk `i` of the
    /// batch sits at `i * stride`. On failure every byte of `buf` is zeroed.
    pub(crate) fn open_batch(
        &self,
        buf: &mut [u8],
        first: u64,
        count: u64,
    ) -> Result<usize, OpenError> {
        // Every chunk lies wholly inside `0..u64::MAX`, so each is opened whole.
        self.open_batch_range(buf, first, count, 0, u64::MAX)
    }

    /// Like [`Self::open_batch`] for a batch read to serve the plaintext range `lo..hi` of
    /// the object (`lo < hi`, the range lying within chunks `first..first+count`): every
    /// chunk's tag is verified over the whole chunk, but a chunk the range covers only partly
    /// is decrypted only over the part it contributes (its start rounded down to a block,
    /// [`AeadKey::open_part`](crate::backend::AeadKey::open_part)); fully covered chunks are
    /// opened whole. Returns the plaintext length as `open_batch` does. On success, for
    /// chunk `i` of the batch, only the bytes `i * stride + (max(lo, start) - start) ..
    /// i * stride + (min(hi, end) - start)` are plaintext (`start..end` the chunk's
    /// plaintext extent); the rest of `buf` is unspecified and must not be delivered. On
    /// failure every byte of `buf` is zeroed, and the error is the same as `open_batch`'s.
    pub(crate) fn open_batch_range(
        &self,
        buf: &mut [u8],
        first: u64,
        count: u64,
        lo: u64,
        hi: u64,
    ) -> Result<usize, OpenError> {
        let Some(key) = &self.key else {
            return Ok(buf.len());
        };
        let g = self.geometry;
        let stride = (g.chunk_size as usize) + TAG_LEN;
        let prefix = self.prefix;
        let last_chunk = g.chunks - 1;
        let result = batch::for_each_chunk(buf, stride, |i, chunk| {
            let index = first + i as u64;
            let marker = if index == last_chunk {
                MARKER_FINAL
            } else {
                MARKER_CHUNK
            };
            let split = chunk
                .len()
                .checked_sub(TAG_LEN)
                .ok_or(OpenError::Truncated)?;
            let (data, tag) = chunk.split_at_mut(split);
            let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| OpenError::Truncated)?;
            let nonce = format::nonce(&prefix, index as u32, marker);
            // The part of this chunk's plaintext the range wants, relative to the chunk.
            let start = index * g.chunk_size;
            let end = start + data.len() as u64;
            let a = lo.clamp(start, end) - start;
            let b = hi.clamp(start, end) - start;
            let a = a.min(b) as usize;
            let b = b as usize;
            let r = if a == 0 && b == data.len() {
                key.open_in_place(&nonce, &self.aad, data, &tag)
            } else {
                key.open_part(&nonce, &self.aad, data, &tag, a..b)
            };
            r.map_err(|_| OpenError::ChunkAuth { index })
        });
        match result {
            Ok(()) => Ok(buf.len() - (count as usize) * TAG_LEN),
            Err(e) => {
                buf.zeroize();
                Err(e)
            }
        }
    }

    /// Tells why chunk `index`, whose stored bytes are `stored`, failed to verify: a last
    /// chunk that verifies as a middle chunk means the object was cut at a chunk boundary; a
    /// middle chunk that verifies as final means data was appended after the real end. The
    /// trial decryption happens in a scratch copy that is zeroed afterwards; nothing leaves.
    pub(crate) fn classify_failure(&self, stored: &[u8], index: u64) -> OpenError {
        let generic = OpenError::ChunkAuth { index };
        let Some(key) = &self.key else { return generic };
        let Some(split) = stored.len().checked_sub(TAG_LEN) else {
            return generic;
        };
        let Ok(tag) = <[u8; TAG_LEN]>::try_from(&stored[split..]) else {
            return generic;
        };
        let is_last = index + 1 == self.geometry.chunks;
        let other = if is_last { MARKER_CHUNK } else { MARKER_FINAL };
        let mut scratch = stored[..split].to_vec();
        let nonce = format::nonce(&self.prefix, index as u32, other);
        let verified = key
            .open_in_place(&nonce, &self.aad, &mut scratch, &tag)
            .is_ok();
        scratch.zeroize();
        match (verified, is_last) {
            (true, true) => OpenError::Truncated,
            (true, false) => OpenError::Extended,
            (false, _) => generic,
        }
    }
}
