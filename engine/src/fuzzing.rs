//! Entry points for the cargo-fuzz targets (fuzz/, docs/FUZZING.md). Compiled only with the
//! `fuzzing` feature.

// ---- fuzz targets (fuzz/fuzz_targets/*.rs, docs/FUZZING.md) --------------------------
//
// Each entry point takes the raw libFuzzer input and asserts a property, not only "no
// panic". Root key, data key and nonce prefix are fixed so that a crashing input replays
// exactly (the real sealer draws the last two at random).

use std::sync::OnceLock;

use crate::backend::{AeadBackend, AeadKey};

use dare_keys::{Envelope, KeyKind, KeyProvider, Secret32, StoreRootProvider, wrap};

use crate::error::{FormatError, OpenError};
use crate::format::{
    self, Geometry, Header, MARKER_CHUNK, MARKER_FINAL, MARKER_META, MIN_CHUNK_SHIFT, PREFIX_LEN,
    Suite, TAG_LEN,
};
use crate::seal::{self, ObjectOpener, SealOptions};

/// The store root key of every fuzzed object.
pub const FUZZ_ROOT_KEY: [u8; 32] = [0x5a; 32];
const FUZZ_DATA_KEY: [u8; 32] = [0xd4; 32];
const FUZZ_PREFIX: [u8; PREFIX_LEN] = *b"fuzzpfx";
/// Number of fixed valid objects ([`fixed_object`]).
pub const OBJECT_VARIANTS: u8 = 6;

/// The provider every fuzz target opens with: data keys wrapped by [`FUZZ_ROOT_KEY`].
pub fn fuzz_provider() -> StoreRootProvider {
    StoreRootProvider::new(Secret32::from_bytes("fuzz root", FUZZ_ROOT_KEY))
}

/// A valid object and what it must open to.
#[derive(Debug)]
pub struct FixedObject {
    /// The stored object.
    pub bytes: Vec<u8>,
    /// Its plaintext.
    pub plaintext: Vec<u8>,
    /// Its user metadata.
    pub meta: Vec<(String, String)>,
    /// Offset of chunk 0.
    pub body_offset: usize,
    /// Bytes per stored chunk.
    pub stride: usize,
}

/// Fixed valid object number `v % OBJECT_VARIANTS`, 4 KiB chunks: empty, 1 byte, one full
/// chunk, 2 chunks + 100 bytes, 3 full chunks (all encrypted), and a 300-byte plaintext
/// object. Built once per process by [`reference_seal`].
pub fn fixed_object(v: u8) -> &'static FixedObject {
    static OBJECTS: OnceLock<Vec<FixedObject>> = OnceLock::new();
    let all = OBJECTS.get_or_init(|| {
        let meta = vec![
            (
                "content-type".to_owned(),
                "application/octet-stream".to_owned(),
            ),
            ("k".to_owned(), String::new()),
        ];
        let specs: [(usize, bool, bool); OBJECT_VARIANTS as usize] = [
            (0, true, false),
            (1, true, true),
            (4096, true, false),
            (2 * 4096 + 100, true, true),
            (3 * 4096, true, false),
            (300, false, true),
        ];
        specs
            .iter()
            .map(|&(len, encrypted, with_meta)| {
                let plaintext: Vec<u8> = (0..len).map(|i| (i * 31 + (i >> 8)) as u8).collect();
                let meta = if with_meta { meta.clone() } else { Vec::new() };
                let root = Secret32::from_bytes("fuzz root", FUZZ_ROOT_KEY);
                let data_key = Secret32::from_bytes("fuzz data key", FUZZ_DATA_KEY);
                let header = Header {
                    suite: if encrypted {
                        Suite::Aes256Gcm
                    } else {
                        Suite::Plaintext
                    },
                    chunk_shift: MIN_CHUNK_SHIFT,
                    nonce_prefix: if encrypted {
                        FUZZ_PREFIX
                    } else {
                        [0; PREFIX_LEN]
                    },
                    name: "fuzz-object".to_owned(),
                    key_block: encrypted.then(|| Envelope {
                        kind: KeyKind::StoreRoot,
                        bytes: wrap::wrap_key(&root, &data_key).to_vec(),
                    }),
                    meta_len: 0,
                };
                let dk = encrypted.then_some(&FUZZ_DATA_KEY);
                let bytes =
                    reference_seal(&header, dk, &meta, &plaintext).expect("fixed object is valid");
                let (h, _) = Header::parse(&bytes).expect("fixed header parses");
                FixedObject {
                    body_offset: h.body_offset() as usize,
                    stride: 4096 + if encrypted { TAG_LEN } else { 0 },
                    bytes,
                    plaintext,
                    meta,
                }
            })
            .collect()
    });
    &all[usize::from(v % OBJECT_VARIANTS)]
}

/// An independent, deterministic sealer written from docs/FORMAT.md: the object that
/// header `h` (its `meta_len` recomputed), `data_key`, `meta` and `plaintext` must give.
/// `None` when a field is out of its limits.
pub fn reference_seal(
    h: &Header,
    data_key: Option<&[u8; 32]>,
    meta: &[(String, String)],
    plaintext: &[u8],
) -> Option<Vec<u8>> {
    let mut meta_block = format::encode_meta(meta).ok()?;
    let mut h = h.clone();
    let tag_len = if data_key.is_some() { TAG_LEN } else { 0 };
    h.meta_len = u32::try_from(meta_block.len() + tag_len).ok()?;
    let mut out = h.to_bytes().ok()?;
    let Some(dk) = data_key else {
        out.extend_from_slice(&meta_block);
        out.extend_from_slice(plaintext);
        return Some(out);
    };
    let aad = format::header_digest(&out);
    let key = AeadKey::new(AeadBackend::Portable, dk);
    let prefix = h.nonce_prefix;
    let tag = key.seal_in_place(
        &format::nonce(&prefix, 0, MARKER_META),
        &aad,
        &mut meta_block,
    );
    out.extend_from_slice(&meta_block);
    out.extend_from_slice(&tag);
    let c = usize::try_from(h.chunk_size()).ok()?;
    let n = plaintext.len().div_ceil(c).max(1);
    for i in 0..n {
        let mut piece = plaintext[i * c..plaintext.len().min((i + 1) * c)].to_vec();
        let marker = if i + 1 == n {
            MARKER_FINAL
        } else {
            MARKER_CHUNK
        };
        let nonce = format::nonce(&prefix, u32::try_from(i).ok()?, marker);
        let tag = key.seal_in_place(&nonce, &aad, &mut piece);
        out.extend_from_slice(&piece);
        out.extend_from_slice(&tag);
    }
    Some(out)
}

/// Little-endian reader over fuzz input; reads past the end give `None`.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(
            u64::from(self.u16()?)
                | u64::from(self.u16()?) << 16
                | u64::from(self.u16()?) << 32
                | u64::from(self.u16()?) << 48,
        )
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (h, t) = self.0.split_at(n.min(self.0.len()));
        self.0 = t;
        h
    }
}

/// Batch size for a fixed object (4 KiB chunks): 1, 2 or 3 chunks per batch, or the default.
fn batch_bytes(b: u8, stride: usize) -> usize {
    match b % 4 {
        0 => seal::DEFAULT_BATCH_BYTES,
        k => usize::from(k) * stride,
    }
}

/// Edits a copy of a fixed object. Each edit is an opcode byte and its operands: xor a
/// byte, truncate, append bytes, copy one stored chunk over another, delete a range,
/// duplicate a chunk.
fn apply_edits(f: &FixedObject, edits: &[u8]) -> Vec<u8> {
    let mut o = f.bytes.clone();
    let mut r = Input(edits);
    let chunk = |o: &Vec<u8>, i: u8| {
        let n = o
            .len()
            .saturating_sub(f.body_offset)
            .div_ceil(f.stride)
            .max(1);
        let start = (f.body_offset + usize::from(i) % n * f.stride).min(o.len());
        start..(start + f.stride).min(o.len())
    };
    while let Some(op) = r.u8() {
        match op % 6 {
            0 => {
                let (at, x) = (r.u16().unwrap_or(0), r.u8().unwrap_or(1));
                if !o.is_empty() {
                    let i = usize::from(at) % o.len();
                    o[i] ^= x;
                }
            }
            1 => {
                let n = usize::from(r.u16().unwrap_or(0));
                o.truncate(n % (o.len() + 1));
            }
            2 => {
                let n = usize::from(r.u8().unwrap_or(1));
                o.extend_from_slice(r.take(n));
            }
            3 => {
                let (a, b) = (
                    chunk(&o, r.u8().unwrap_or(0)),
                    chunk(&o, r.u8().unwrap_or(1)),
                );
                let src = o[a].to_vec();
                o.splice(b, src);
            }
            4 => {
                let at = usize::from(r.u16().unwrap_or(0)) % (o.len() + 1);
                let n = usize::from(r.u16().unwrap_or(1));
                o.drain(at..at.saturating_add(n).min(o.len()));
            }
            _ => {
                let (a, b) = (
                    chunk(&o, r.u8().unwrap_or(0)),
                    chunk(&o, r.u8().unwrap_or(1)),
                );
                let src = o[a].to_vec();
                o.splice(b.start..b.start, src);
            }
        }
    }
    o
}

/// After `object` opened to `(pt, meta)`: the object is byte for byte the reference
/// encoding of that plaintext and metadata under its own header and data key. So every
/// accepted byte was authenticated (or, for a plaintext object, canonical): nothing in an
/// accepted object can be changed without changing what it opens to.
fn assert_canonical(object: &[u8], pt: &[u8], meta: &[(String, String)], p: &dyn KeyProvider) {
    let (h, _) = Header::parse(object).expect("opened object: header does not parse");
    let dk = h.key_block.as_ref().map(|kb| {
        p.open_data_key(kb)
            .expect("opened object: key block does not unwrap")
    });
    let expected = reference_seal(&h, dk.as_ref().map(|k| k.expose_secret()), meta, pt)
        .expect("opened object: cannot be re-encoded");
    assert!(
        expected == object,
        "accepted object is not the canonical encoding of what it opened to"
    );
}

/// Whether `object` claims to be stored in clear. Such an object opens to its stored body
/// with or without a provider; refusing it for an encrypted bucket is the caller's policy.
fn claims_plaintext(object: &[u8]) -> bool {
    matches!(Header::parse(object), Ok((h, _)) if h.suite == Suite::Plaintext)
}

type Opened = Result<(Vec<u8>, Vec<(String, String)>), String>;

/// `open_object` target. Byte 0 with bit 7 set: the rest is a stored object. Otherwise
/// byte 0 picks a fixed object, byte 1 the batch size, and the rest edits it. Properties:
/// every backend gives the same result; an accepted object is canonical
/// (`assert_canonical`); an edited encrypted object is accepted only if unchanged, and then
/// opens to exactly its plaintext and metadata; an unchanged object is never refused.
pub fn open_object(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let provider = fuzz_provider();
    let (object, fixed, batch) = if mode & 0x80 != 0 {
        (rest.to_vec(), None, batch_bytes(mode, 4096 + TAG_LEN))
    } else {
        let f = fixed_object(mode);
        let (&b, edits) = rest.split_first().unwrap_or((&0, &[]));
        (apply_edits(f, edits), Some(f), batch_bytes(b, f.stride))
    };
    let mut first: Option<Opened> = None;
    for backend in AeadBackend::available() {
        let r: Opened = seal::open_from_slice(&object, Some(&provider), backend, batch)
            .map_err(|e| format!("{e:?}"));
        match &r {
            Ok((pt, meta)) => {
                assert_canonical(&object, pt, meta, &provider);
                if let Some(f) = fixed
                    && !claims_plaintext(&object)
                {
                    assert!(object == f.bytes, "{backend}: accepted an edited object");
                    assert!(
                        *pt == f.plaintext && *meta == f.meta,
                        "{backend}: wrong plaintext"
                    );
                }
            }
            Err(e) => {
                if let Some(f) = fixed {
                    assert!(object != f.bytes, "{backend}: refused a valid object: {e}");
                }
            }
        }
        match &first {
            None => first = Some(r),
            Some(f0) => assert!(
                *f0 == r,
                "{backend} disagrees with {}",
                AeadBackend::available()[0]
            ),
        }
    }
}

/// `open_range` target. Byte 0 picks a fixed object and batch size; then offset and length
/// (small, relative to the object, or with bit 6 of byte 0 arbitrary u64s); the rest edits
/// the object. Properties: a range read returns exactly the plaintext slice or an error;
/// a valid range of an unchanged object is never refused and an invalid range always is;
/// through the streaming API, whatever reaches the sink before an error is genuine
/// plaintext from the requested offset on (only verified chunks are released).
pub fn open_range(data: &[u8]) {
    let mut r = Input(data);
    let sel = r.u8().unwrap_or(0);
    let f = fixed_object(sel);
    let batch = batch_bytes(sel >> 3, f.stride);
    let size = f.plaintext.len() as u64;
    let (offset, len) = if sel & 0x40 != 0 {
        (r.u64().unwrap_or(0), r.u64().unwrap_or(0))
    } else {
        let span = size + 2;
        (
            u64::from(r.u16().unwrap_or(0)) % span,
            u64::from(r.u16().unwrap_or(1)) % span,
        )
    };
    let object = apply_edits(f, r.0);
    let end = offset.checked_add(len).filter(|&e| len > 0 && e <= size);
    let expected = end.map(|e| &f.plaintext[offset as usize..e as usize]);
    // What the object holds: its plaintext, or, for an object edited into a (another)
    // plaintext object, its own stored body.
    let content: &[u8] = if claims_plaintext(&object) {
        let body = Header::parse(&object)
            .map(|(h, _)| h.body_offset())
            .unwrap_or(0);
        object.get(body as usize..).unwrap_or_default()
    } else {
        &f.plaintext
    };
    let model = offset
        .checked_add(len)
        .filter(|&e| len > 0 && e <= content.len() as u64)
        .map(|e| &content[offset as usize..e as usize]);
    // Chunks are released one by one as they verify, so a failing read may have delivered
    // a prefix; it must be genuine content at the requested position.
    let released = usize::try_from(offset)
        .ok()
        .and_then(|o| content.get(o..))
        .unwrap_or_default();
    let provider = fuzz_provider();
    for backend in AeadBackend::available() {
        match seal::open_range_from_slice(&object, Some(&provider), backend, offset, len, batch) {
            Ok(v) => assert!(
                Some(v.as_slice()) == model,
                "{backend}: wrong range plaintext"
            ),
            Err(e) => {
                if object == f.bytes {
                    assert!(expected.is_none(), "{backend}: refused a valid range: {e}");
                    assert!(
                        matches!(
                            e,
                            OpenError::EmptyRange | OpenError::RangeOutOfBounds { .. }
                        ),
                        "{backend}: invalid range gave {e:?}"
                    );
                }
            }
        }
        let Ok(opener) = ObjectOpener::new(
            object.as_slice(),
            object.len() as u64,
            Some(&provider),
            backend,
        ) else {
            continue;
        };
        let mut got = Vec::new();
        let res = opener.open_range(object.as_slice(), offset, len, batch, &mut |p| {
            got.extend_from_slice(p);
            Ok(())
        });
        match res {
            Ok(()) => assert!(
                Some(got.as_slice()) == model,
                "{backend}: sink got wrong data"
            ),
            Err(_) => assert!(
                released.starts_with(&got),
                "{backend}: sink got unverified data"
            ),
        }
    }
}

/// `header` target (format.rs on raw bytes). Whenever `Header::parse` accepts, `to_bytes`
/// gives back exactly the parsed prefix and `header_len` is its length; a `Truncated`
/// error asks for the fixed part of a shorter input, and else names a length beyond the
/// input that, once supplied, is not reported truncated again (the opener's two-step read
/// relies on it). Metadata that decodes re-encodes to the
/// same bytes; `Geometry::from_body_len` is the exact inverse of `Geometry::body_len`.
pub fn header(data: &[u8]) {
    let mut meta_bytes = data;
    match Header::parse(data) {
        Ok((h, n)) => {
            assert_eq!(n as u64, h.header_len(), "header_len disagrees with parse");
            let b = h.to_bytes().expect("parsed header does not serialize");
            assert!(b == data[..n], "header does not round-trip");
            assert_eq!(Header::parse(&b).ok(), Some((h.clone(), n)));
            let end = data.len().min(n + h.meta_len as usize);
            meta_bytes = &data[n..end];
        }
        Err(FormatError::Truncated { need }) if data.len() < format::FIXED_LEN => {
            assert_eq!(
                need,
                format::FIXED_LEN as u64,
                "short input: need the fixed part"
            );
        }
        Err(FormatError::Truncated { need }) => {
            assert!(
                need > data.len() as u64,
                "Truncated needs {need} of {}",
                data.len()
            );
            let mut v = data.to_vec();
            v.resize(usize::try_from(need).expect("need fits"), 0);
            assert!(
                !matches!(Header::parse(&v), Err(FormatError::Truncated { .. })),
                "still truncated at the length it asked for"
            );
        }
        Err(_) => {}
    }
    if let Ok(m) = format::decode_meta(meta_bytes)
        && meta_bytes.len() <= format::MAX_META_LEN
    {
        assert!(
            format::encode_meta(&m).ok().as_deref() == Some(meta_bytes),
            "metadata does not round-trip"
        );
    }
    let mut r = Input(data);
    let shift = MIN_CHUNK_SHIFT + r.u8().unwrap_or(0) % 11;
    let body_len = r.u64().unwrap_or(0) >> (r.u8().unwrap_or(0) % 64);
    let stride = (1u64 << shift) + TAG_LEN as u64;
    match Geometry::from_body_len(shift, body_len) {
        Ok(g) => {
            assert_eq!(Geometry::body_len(shift, g.plaintext_len), Some(body_len));
            assert_eq!(g.chunks, g.plaintext_len.div_ceil(g.chunk_size).max(1));
            let last = g.chunk_plain_len(g.chunks - 1);
            assert!(last <= g.chunk_size && (last > 0 || g.plaintext_len == 0));
        }
        Err(_) => {
            let k = body_len.div_ceil(stride);
            for k in [k.saturating_sub(1), k, k + 1] {
                if let Some(p) = k
                    .checked_mul(TAG_LEN as u64)
                    .and_then(|t| body_len.checked_sub(t))
                {
                    assert!(
                        Geometry::body_len(shift, p) != Some(body_len),
                        "valid body length {body_len} refused"
                    );
                }
            }
        }
    }
}

/// `roundtrip` target. Byte 0: chunk shift 12..=16 (low bits), encrypted unless bit 7,
/// object name from the input if bit 6; byte 1: batch size; then plaintext length
/// extension, metadata, and the plaintext. Properties: seal fails only for a name or
/// metadata the format refuses; the sealed object has the length the format gives, opens
/// on every backend to exactly the input and metadata, is canonical (the real sealer agrees
/// with `reference_seal`), and every range read returns the right slice.
pub fn roundtrip(data: &[u8]) {
    let mut r = Input(data);
    let cfg = r.u8().unwrap_or(0);
    let shift = MIN_CHUNK_SHIFT + cfg % 5;
    let stride = (1usize << shift) + TAG_LEN;
    let batch = match r.u8().unwrap_or(0) % 5 {
        0 => seal::DEFAULT_BATCH_BYTES,
        k => usize::from(k) * stride,
    };
    let extend = usize::from(r.u16().unwrap_or(0)) % (3 << shift);
    let mut meta = Vec::new();
    for _ in 0..r.u8().unwrap_or(0) % 4 {
        let k = r.u8().unwrap_or(0);
        let k = String::from_utf8_lossy(r.take(usize::from(k % 16))).into_owned();
        let v = r.u8().unwrap_or(0);
        let v = String::from_utf8_lossy(r.take(usize::from(v))).into_owned();
        meta.push((k, v));
    }
    let name = if cfg & 0x40 != 0 {
        let n = r.u8().unwrap_or(0);
        String::from_utf8_lossy(r.take(usize::from(n))).into_owned()
    } else {
        "roundtrip".to_owned()
    };
    let (ra, rb) = (r.u16().unwrap_or(0), r.u16().unwrap_or(0));
    let src = r.0;
    let mut pt = src.to_vec();
    pt.extend((0..extend).map(|i| match src.len() {
        0 => i as u8,
        n => src[i % n] ^ (i >> 8) as u8,
    }));
    let provider = fuzz_provider();
    let p: Option<&dyn KeyProvider> = if cfg & 0x80 == 0 {
        Some(&provider)
    } else {
        None
    };
    for backend in AeadBackend::available() {
        let opts = SealOptions {
            name: &name,
            chunk_shift: shift,
            meta: &meta,
            backend,
        };
        let object = match seal::seal_to_vec(p, &opts, &pt, batch) {
            Ok(o) => o,
            Err(e) => {
                assert!(
                    format::check_name(&name).is_err() || format::encode_meta(&meta).is_err(),
                    "{backend}: seal refused a valid object: {e}"
                );
                return;
            }
        };
        let (h, _) = Header::parse(&object).expect("sealed header parses");
        assert_eq!((h.name.as_str(), h.chunk_shift), (name.as_str(), shift));
        assert_eq!(h.suite == Suite::Aes256Gcm, p.is_some());
        let body = if p.is_some() {
            Geometry::body_len(shift, pt.len() as u64)
        } else {
            Some(pt.len() as u64)
        };
        assert_eq!(
            Some(object.len() as u64),
            body.map(|b| b + h.body_offset()),
            "object length"
        );
        for b2 in AeadBackend::available() {
            let (got, got_meta) = seal::open_from_slice(&object, p, b2, batch)
                .unwrap_or_else(|e| panic!("sealed on {backend}, open on {b2}: {e}"));
            assert!(got == pt, "{backend}/{b2}: plaintext differs");
            assert!(got_meta == meta, "{backend}/{b2}: metadata differs");
        }
        assert_canonical(&object, &pt, &meta, &provider);
        let size = pt.len() as u64;
        if size > 0 {
            let off = u64::from(ra) * size / 65536;
            let len = (u64::from(rb) % (size - off)) + 1;
            let got = seal::open_range_from_slice(&object, p, backend, off, len, batch)
                .unwrap_or_else(|e| panic!("{backend}: range {off}+{len} of {size}: {e}"));
            assert!(
                got == pt[off as usize..(off + len) as usize],
                "{backend}: range differs"
            );
        }
    }
}
