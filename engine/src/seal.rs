//! The safe streaming API: seal an object of unknown length, open it whole or by range.
//!
//! Callers never see a nonce or a data key. [`ObjectSealer`] draws a fresh data key from the
//! [`KeyProvider`] and a random nonce prefix per object, owns the chunk counter and refuses to
//! pass 2^32 chunks. [`ObjectOpener`] authenticates the header and metadata first, then
//! releases each chunk's plaintext only after that chunk's tag verified.
//!
//! Chunks travel in *batches*: one buffer holding consecutive chunks at a stride of
//! `chunk_size + 16`, i.e. exactly their on-disk layout, so a sealed batch is written with
//! one positioned write and a read batch is decrypted in place. Memory is bounded by the
//! batch size whatever the object size.

use std::io::{self, Read};

use dare_envelope::KeyProvider;
use zeroize::Zeroize;

use crate::backend::{AeadBackend, AeadKey};
use crate::batch;
use crate::error::{FormatError, OpenError, SealError};
use crate::format::{
    self, Geometry, Header, MARKER_CHUNK, MARKER_FINAL, MARKER_META, MAX_CHUNKS, PREFIX_LEN, Suite,
    TAG_LEN,
};
use crate::storage::ReadAt;

/// Default batch size in bytes: how much plaintext is sealed or opened per parallel step.
pub const DEFAULT_BATCH_BYTES: usize = 4 << 20;

/// How to seal one object.
#[derive(Debug, Clone)]
pub struct SealOptions<'a> {
    /// The object's name (bound into its header).
    pub name: &'a str,
    /// log2 of the chunk size, 12..=22.
    pub chunk_shift: u8,
    /// User metadata, stored encrypted.
    pub meta: &'a [(String, String)],
    /// The AEAD backend.
    pub backend: AeadBackend,
}

/// Encrypts one object. Emit [`head`](Self::head) first, then every batch in order.
#[derive(Debug)]
pub struct ObjectSealer {
    key: Option<AeadKey>,
    prefix: [u8; PREFIX_LEN],
    aad: [u8; 32],
    chunk_size: usize,
    next_index: u64,
    finished: bool,
    head: Vec<u8>,
}

impl ObjectSealer {
    /// Starts a new object. With a provider the object is encrypted under a fresh data key;
    /// with `None` it is stored in clear (a bucket created with encryption off).
    pub fn new(
        provider: Option<&dyn KeyProvider>,
        opts: &SealOptions<'_>,
    ) -> Result<Self, SealError> {
        format::check_name(opts.name)?;
        let meta_plain = format::encode_meta(opts.meta)?;
        let (suite, key_block, data_key) = match provider {
            Some(p) => {
                let (dk, kb) = p.new_data_key().map_err(SealError::Key)?;
                (Suite::Aes256Gcm, Some(kb), Some(dk))
            }
            None => (Suite::Plaintext, None, None),
        };
        let mut prefix = [0u8; PREFIX_LEN];
        if data_key.is_some() {
            getrandom::fill(&mut prefix).map_err(|_| SealError::Rng)?;
        }
        let tag = if data_key.is_some() { TAG_LEN } else { 0 };
        let meta_len = u32::try_from(meta_plain.len() + tag).map_err(|_| SealError::TooLarge)?;
        let header = Header {
            suite,
            chunk_shift: opts.chunk_shift,
            nonce_prefix: prefix,
            name: opts.name.to_owned(),
            key_block,
            meta_len,
        };
        let mut head = header.to_bytes()?;
        let aad = format::header_digest(&head);
        let key = data_key.map(|dk| AeadKey::new(opts.backend, dk.expose_secret()));
        let mut meta = meta_plain;
        if let Some(k) = &key {
            let t = k.seal_in_place(&format::nonce(&prefix, 0, MARKER_META), &aad, &mut meta);
            meta.extend_from_slice(&t);
        }
        head.extend_from_slice(&meta);
        Ok(ObjectSealer {
            key,
            prefix,
            aad,
            chunk_size: 1 << opts.chunk_shift,
            next_index: 0,
            finished: false,
            head,
        })
    }

    /// Header and metadata block: the first bytes of the object.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Plaintext chunk size.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Bytes each chunk occupies in a batch buffer and on disk (chunk + tag, or chunk alone
    /// for plaintext objects).
    pub fn stride(&self) -> usize {
        self.chunk_size + if self.key.is_some() { TAG_LEN } else { 0 }
    }

    /// Whether the object is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// Seals the next batch in place. `batch` holds `plain_len` bytes of plaintext placed at
    /// the chunk slots (slot `i` starts at `i * stride`); every chunk but the last is full.
    /// `is_final` says the batch ends the object. Returns the length of the sealed batch,
    /// which is the prefix of `batch` to write.
    pub fn seal_batch(
        &mut self,
        batch: &mut [u8],
        plain_len: usize,
        is_final: bool,
    ) -> Result<usize, SealError> {
        if self.finished {
            return Err(SealError::Format(FormatError::Invalid(
                "object already finished",
            )));
        }
        let c = self.chunk_size;
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
        let Some(key) = &self.key else {
            return Ok(plain_len);
        };
        let stride = self.stride();
        let sealed_len = plain_len + chunks * TAG_LEN;
        let buf = batch
            .get_mut(..sealed_len)
            .ok_or(SealError::Format(FormatError::Invalid(
                "batch buffer too small",
            )))?;
        let (prefix, aad) = (self.prefix, self.aad);
        batch::for_each_chunk(buf, stride, |i, chunk| {
            let index = first + i as u64;
            let marker = if is_final && index + 1 == after {
                MARKER_FINAL
            } else {
                MARKER_CHUNK
            };
            let (data, tag) = chunk.split_at_mut(chunk.len() - TAG_LEN);
            // `index < 2^32` was checked above, so the cast keeps every bit.
            let t = key.seal_in_place(&format::nonce(&prefix, index as u32, marker), &aad, data);
            tag.copy_from_slice(&t);
            Ok::<(), ()>(())
        })
        .map_err(|_| SealError::Format(FormatError::Invalid("seal failed")))?;
        Ok(sealed_len)
    }
}

/// Reads plaintext from `r` into the chunk slots of `buf` (stride `stride`, `chunk` bytes
/// each), carrying one byte of look-ahead in `carry` so the caller learns whether the stream
/// ended. Returns `(plain_len, is_final)`.
pub fn fill_batch<R: Read + ?Sized>(
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

/// An authenticated view of a stored object: header and metadata verified, data key ready.
#[derive(Debug)]
pub struct ObjectOpener {
    header: Header,
    key: Option<AeadKey>,
    aad: [u8; 32],
    geometry: Geometry,
    body_offset: u64,
    meta: Vec<(String, String)>,
}

impl ObjectOpener {
    /// Reads and authenticates the header and metadata block of the object in `src`
    /// (`file_len` bytes long). `provider` resolves the data key of encrypted objects.
    pub fn new<S: ReadAt + ?Sized>(
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
        let (header, hlen) = match Header::parse(&buf) {
            Err(FormatError::Truncated { need }) if need <= file_len && need > buf.len() as u64 => {
                buf.resize(need as usize, 0);
                src.read_exact_at(&mut buf, 0)?;
                Header::parse(&buf)?
            }
            other => other?,
        };
        let aad = format::header_digest(&buf[..hlen]);
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
                let p = provider.ok_or(OpenError::Key(dare_envelope::KeyError::Provider(
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
            header,
            key,
            aad,
            geometry,
            body_offset,
            meta,
        })
    }

    /// The verified header.
    pub fn header(&self) -> &Header {
        &self.header
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
    pub fn open_batch(&self, buf: &mut [u8], first: u64, count: u64) -> Result<usize, OpenError> {
        let Some(key) = &self.key else {
            return Ok(buf.len());
        };
        let g = self.geometry;
        let stride = (g.chunk_size as usize) + TAG_LEN;
        let prefix = self.header.nonce_prefix;
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
            key.open_in_place(&nonce, &self.aad, data, &tag)
                .map_err(|_| OpenError::ChunkAuth { index })
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
    pub fn classify_failure(&self, stored: &[u8], index: u64) -> OpenError {
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
        let nonce = format::nonce(&self.header.nonce_prefix, index as u32, other);
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

    /// Opens `len` bytes at `offset`, reading chunks from `src` batch by batch and handing
    /// each verified piece of plaintext to `sink` in order. Nothing of a chunk reaches `sink`
    /// before its tag verified.
    pub fn open_range<S: ReadAt + ?Sized>(
        &self,
        src: &S,
        offset: u64,
        len: u64,
        batch_bytes: usize,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), OpenError> {
        batch::open_range_pipelined(self, src, offset, len, batch_bytes, sink)
    }
}

/// Seals `data` into an in-memory object (header, metadata, chunks), `batch_bytes` at a time.
/// The store uses the pipelined file path; this one serves tests, fuzzing and embedders
/// that keep objects in memory.
pub fn seal_to_vec(
    provider: Option<&dyn KeyProvider>,
    opts: &SealOptions<'_>,
    data: &[u8],
    batch_bytes: usize,
) -> Result<Vec<u8>, SealError> {
    let mut sealer = ObjectSealer::new(provider, opts)?;
    let body =
        Geometry::body_len(opts.chunk_shift, data.len() as u64).ok_or(SealError::TooLarge)?;
    let mut out = Vec::with_capacity(
        sealer.head().len() + usize::try_from(body).map_err(|_| SealError::TooLarge)?,
    );
    out.extend_from_slice(sealer.head());
    let stride = sealer.stride();
    let mut buf = vec![0u8; batch::chunks_per_batch(batch_bytes, stride) * stride];
    let mut carry = None;
    let mut reader = data;
    loop {
        let (plain, fin) = fill_batch(
            &mut reader,
            &mut buf,
            sealer.chunk_size(),
            stride,
            &mut carry,
        )?;
        let n = sealer.seal_batch(&mut buf, plain, fin)?;
        out.extend_from_slice(&buf[..n]);
        if fin {
            return Ok(out);
        }
    }
}

/// User metadata: key/value pairs.
pub type Metadata = Vec<(String, String)>;

/// Opens a whole in-memory object: returns its plaintext and user metadata, or an error and
/// no plaintext at all.
pub fn open_from_slice(
    object: &[u8],
    provider: Option<&dyn KeyProvider>,
    backend: AeadBackend,
    batch_bytes: usize,
) -> Result<(Vec<u8>, Metadata), OpenError> {
    let opener = ObjectOpener::new(object, object.len() as u64, provider, backend)?;
    let mut out = Vec::new();
    if opener.plaintext_len() == 0 {
        let (off, n) = opener.chunk_extent(0, 1);
        let mut buf = vec![0u8; n as usize];
        object.read_exact_at(&mut buf, off)?;
        if let Err(e) = opener.open_batch(&mut buf, 0, 1) {
            let stored = object
                .get(off as usize..(off + n) as usize)
                .unwrap_or_default();
            return Err(match e {
                OpenError::ChunkAuth { index } => opener.classify_failure(stored, index),
                e => e,
            });
        }
    } else {
        let r = opener.open_range(object, 0, opener.plaintext_len(), batch_bytes, &mut |p| {
            out.extend_from_slice(p);
            Ok(())
        });
        if let Err(e) = r {
            out.zeroize();
            return Err(e);
        }
    }
    Ok((out, opener.meta.clone()))
}

/// Opens `len` bytes at `offset` of an in-memory object.
pub fn open_range_from_slice(
    object: &[u8],
    provider: Option<&dyn KeyProvider>,
    backend: AeadBackend,
    offset: u64,
    len: u64,
    batch_bytes: usize,
) -> Result<Vec<u8>, OpenError> {
    let opener = ObjectOpener::new(object, object.len() as u64, provider, backend)?;
    let mut out = Vec::new();
    let r = opener.open_range(object, offset, len, batch_bytes, &mut |p| {
        out.extend_from_slice(p);
        Ok(())
    });
    match r {
        Ok(()) => Ok(out),
        Err(e) => {
            out.zeroize();
            Err(e)
        }
    }
}
