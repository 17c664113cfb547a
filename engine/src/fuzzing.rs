//! Entry points for the cargo-fuzz targets (fuzz/, docs/FUZZING.md). Compiled only with the
//! `fuzzing` feature.
//!
//! Each entry point takes the raw libFuzzer input and asserts a property, not only "no panic".
//! Data keys, identities and nonce prefixes are fixed so that a crashing input replays exactly
//! (the real sealer draws the prefix at random; `ObjectSealer::with_prefix_for_fuzzing`
//! exists for this module only). The valid objects the targets start from are sealed by the
//! real sealer and checked, once per process, against the independent encoder of
//! [`reference`].
//!
//! Here: the fixed objects, the input reader and the data-file edits every object target
//! shares, and the `header` and `roundtrip` targets; `open_v2`: `open_object` and `open_range`
//! (format 2, with edits to the data file, row, identity and key); `v1_target`: `open_v1`.

use std::sync::OnceLock;

use dare_envelope::DataKey;

use crate::backend::AeadBackend;
use crate::error::FormatError;
use crate::format::v2::{self, FileHeader, ObjectIdentity};
use crate::format::{self, Geometry, MIN_CHUNK_SHIFT, PREFIX_LEN, Suite, TAG_LEN, v1};
use crate::pipeline;
use crate::seal::{self, ObjectOpener, ObjectParams, ObjectSealer, Protection};

mod open_v2;
pub mod reference;
mod v1_target;

pub use open_v2::{encode_raw_case, open_object, open_range};
pub use reference::RefIdentity;
pub use v1_target::{FixedObjectV1, OBJECT_VARIANTS_V1, fixed_object_v1, open_v1};

/// The data key of every fuzzed object.
pub const FUZZ_DATA_KEY: [u8; 32] = [0xd4; 32];
/// Another object's data key: what a substituted envelope would yield.
pub const OTHER_DATA_KEY: [u8; 32] = [0x3c; 32];
/// The nonce prefix of every fuzzed encrypted object.
pub const FUZZ_PREFIX: [u8; PREFIX_LEN] = *b"fuzzpfx";
/// Number of fixed valid objects ([`fixed_object`]).
pub const OBJECT_VARIANTS: u8 = 6;
/// Chunk size exponent of the fixed objects (4 KiB).
const SHIFT: u8 = MIN_CHUNK_SHIFT;

/// The identity of fixed object `v`.
fn fixed_identity(v: u8) -> RefIdentity {
    RefIdentity {
        store_id: *b"fuzz-store-id-16",
        bucket_id: 42,
        object_id: [0xa0 | v; 16],
        name: "fuzz/object name".to_owned(),
    }
}

fn borrow(id: &RefIdentity) -> ObjectIdentity<'_> {
    ObjectIdentity {
        store_id: id.store_id,
        bucket_id: id.bucket_id,
        object_id: id.object_id,
        name: &id.name,
    }
}

/// What the object table records about a format-2 object (owned, so edits can change it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Body protection.
    pub suite: Suite,
    /// log2 of the chunk size.
    pub chunk_shift: u8,
    /// Nonce prefix.
    pub nonce_prefix: [u8; PREFIX_LEN],
    /// Plaintext size.
    pub size: u64,
    /// The user-metadata block.
    pub meta_block: Vec<u8>,
    /// The ETag.
    pub etag: String,
}

impl Row {
    fn params(&self) -> ObjectParams<'_> {
        ObjectParams {
            suite: self.suite,
            chunk_shift: self.chunk_shift,
            nonce_prefix: self.nonce_prefix,
            size: self.size,
            meta_block: &self.meta_block,
            etag: &self.etag,
        }
    }
}

/// A valid format-2 object and what it must open to.
#[derive(Debug)]
pub struct FixedObject {
    /// Who it is.
    pub id: RefIdentity,
    /// Its data file.
    pub file: Vec<u8>,
    /// Its row.
    pub row: Row,
    /// Its plaintext.
    pub plaintext: Vec<u8>,
    /// Its user metadata.
    pub meta: Vec<(String, String)>,
    /// Bytes per stored chunk.
    pub stride: usize,
}

fn fixed_meta(with: bool) -> Vec<(String, String)> {
    if !with {
        return Vec::new();
    }
    vec![
        (
            "content-type".to_owned(),
            "application/octet-stream".to_owned(),
        ),
        ("k".to_owned(), String::new()),
    ]
}

fn fixed_plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + (i >> 8)) as u8).collect()
}

/// Seals with the real sealer under the fixed prefix: the data file, row and summary.
fn real_seal(
    id: &RefIdentity,
    key: Option<&[u8; 32]>,
    shift: u8,
    meta: &[(String, String)],
    pt: &[u8],
    backend: AeadBackend,
    batch: usize,
) -> Result<(Vec<u8>, Row), crate::SealError> {
    let dk = key.map(|k| DataKey::from_bytes(*k));
    let protection = dk.as_ref().map_or(Protection::Clear, Protection::Encrypted);
    let mut s = ObjectSealer::with_prefix_for_fuzzing(
        &borrow(id),
        protection,
        shift,
        backend,
        FUZZ_PREFIX,
    )?;
    let meta_block = s.seal_meta(meta)?;
    let file = pipeline::seal_to_vec(&mut s, pt, batch)?;
    let sum = s.summary().expect("seal_to_vec seals the final chunk");
    let row = Row {
        suite: s.suite(),
        chunk_shift: s.chunk_shift(),
        nonce_prefix: s.nonce_prefix(),
        size: sum.size,
        meta_block,
        etag: sum.etag,
    };
    Ok((file, row))
}

/// Fixed valid object number `v % OBJECT_VARIANTS`, 4 KiB chunks: empty, 1 byte, one full
/// chunk, 2 chunks + 100 bytes, 3 full chunks (all encrypted), and 300 bytes in clear.
pub fn fixed_object(v: u8) -> &'static FixedObject {
    static OBJECTS: OnceLock<Vec<FixedObject>> = OnceLock::new();
    let all = OBJECTS.get_or_init(|| {
        let specs: [(usize, bool, bool); OBJECT_VARIANTS as usize] = [
            (0, true, false),
            (1, true, true),
            (4096, true, false),
            (2 * 4096 + 100, true, true),
            (3 * 4096, true, false),
            (300, false, true),
        ];
        (0..OBJECT_VARIANTS)
            .zip(specs)
            .map(|(v, (len, encrypted, with_meta))| {
                let id = fixed_identity(v);
                let plaintext = fixed_plaintext(len);
                let meta = fixed_meta(with_meta);
                let key = encrypted.then_some(&FUZZ_DATA_KEY);
                let (file, row) = real_seal(
                    &id,
                    key,
                    SHIFT,
                    &meta,
                    &plaintext,
                    AeadBackend::Portable,
                    1 << 20,
                )
                .expect("fixed object seals");
                let r = reference::seal_v2(&id, key, SHIFT, &FUZZ_PREFIX, &meta, &plaintext)
                    .expect("fixed object is valid");
                assert!(
                    (&r.file, &r.meta_block, &r.etag) == (&file, &row.meta_block, &row.etag),
                    "fixed object {v}: the sealer disagrees with the reference encoder"
                );
                FixedObject {
                    id,
                    file,
                    row,
                    plaintext,
                    meta,
                    stride: 4096 + if encrypted { TAG_LEN } else { 0 },
                }
            })
            .collect()
    });
    &all[usize::from(v % OBJECT_VARIANTS)]
}

/// Little-endian reader over fuzz input; reads past the end give `None`.
pub(crate) struct Input<'a>(pub(crate) &'a [u8]);

impl<'a> Input<'a> {
    pub(crate) fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    pub(crate) fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from(self.u16()?) | u32::from(self.u16()?) << 16)
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from(self.u32()?) | u64::from(self.u32()?) << 32)
    }
    pub(crate) fn take(&mut self, n: usize) -> &'a [u8] {
        let (h, t) = self.0.split_at(n.min(self.0.len()));
        self.0 = t;
        h
    }
}

/// Batch size for objects with 4 KiB chunks: 1, 2 or 3 chunks per batch, or the default.
pub(crate) fn batch_bytes(b: u8, stride: usize) -> usize {
    match b % 4 {
        0 => seal::DEFAULT_BATCH_BYTES,
        k => usize::from(k) * stride,
    }
}

/// Applies one data-file edit (opcode `op % 6`, operands from `r`) to `o`, whose chunks start
/// at `body` with stride `stride`: xor a byte, truncate, append bytes, copy one stored chunk
/// over another, delete a range, duplicate a chunk.
pub(crate) fn edit_file(o: &mut Vec<u8>, op: u8, r: &mut Input<'_>, body: usize, stride: usize) {
    let chunk = |o: &Vec<u8>, i: u8| {
        let n = o.len().saturating_sub(body).div_ceil(stride).max(1);
        let start = (body + usize::from(i) % n * stride).min(o.len());
        start..(start + stride).min(o.len())
    };
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
            let (a, b) = (chunk(o, r.u8().unwrap_or(0)), chunk(o, r.u8().unwrap_or(1)));
            let src = o[a].to_vec();
            o.splice(b, src);
        }
        4 => {
            let at = usize::from(r.u16().unwrap_or(0)) % (o.len() + 1);
            let n = usize::from(r.u16().unwrap_or(1));
            o.drain(at..at.saturating_add(n).min(o.len()));
        }
        _ => {
            let (a, b) = (chunk(o, r.u8().unwrap_or(0)), chunk(o, r.u8().unwrap_or(1)));
            let src = o[a].to_vec();
            o.splice(b.start..b.start, src);
        }
    }
}

/// `header` target (format.rs on raw bytes). The format-2 data file header: whenever
/// `FileHeader::parse` accepts, `to_bytes` gives back exactly the 32 parsed bytes; it is
/// `Truncated { need: 32 }` exactly when the input is shorter. The format-1 header: whenever
/// `v1::Header::parse` accepts, `to_bytes` gives back exactly the parsed prefix and
/// `header_len` is its length; a `Truncated` error asks for the fixed part of a shorter input,
/// and else names a length beyond the input that, once supplied, is not reported truncated
/// again (the opener's two-step read relies on it). Metadata that decodes re-encodes to the
/// same bytes; `Geometry::from_body_len` is the exact inverse of `Geometry::body_len`.
pub fn header(data: &[u8]) {
    match FileHeader::parse(data) {
        Ok(h) => {
            assert!(
                h.to_bytes()[..] == data[..v2::HEADER_LEN],
                "v2 header does not round-trip"
            );
            assert!(h.suite != Suite::Plaintext || h.nonce_prefix == [0; PREFIX_LEN]);
        }
        Err(FormatError::Truncated { need }) => {
            assert!(
                data.len() < v2::HEADER_LEN && need == v2::HEADER_LEN as u64,
                "v2 Truncated"
            );
        }
        Err(_) => assert!(
            data.len() >= v2::HEADER_LEN,
            "short v2 input not reported truncated"
        ),
    }
    let mut meta_bytes = data;
    match v1::Header::parse(data) {
        Ok((h, n)) => {
            assert_eq!(n as u64, h.header_len(), "header_len disagrees with parse");
            let b = h.to_bytes().expect("parsed header does not serialize");
            assert!(b == data[..n], "header does not round-trip");
            assert_eq!(v1::Header::parse(&b).ok(), Some((h.clone(), n)));
            let end = data.len().min(n + h.meta_len as usize);
            meta_bytes = &data[n..end];
        }
        Err(FormatError::Truncated { need }) if data.len() < v1::FIXED_LEN => {
            assert_eq!(
                need,
                v1::FIXED_LEN as u64,
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
                !matches!(v1::Header::parse(&v), Err(FormatError::Truncated { .. })),
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
        assert!(
            reference::encode_meta(&m).as_deref() == Some(meta_bytes),
            "reference encoding differs"
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

/// `roundtrip` target. Byte 0: chunk shift 12..=16 (low bits), in clear if bit 7, object name
/// from the input if bit 6; byte 1: batch size; byte 2: object id; then plaintext length
/// extension, metadata, name, range and the plaintext. Properties: sealing fails only for a
/// name or metadata the format refuses; on every backend the data file, metadata block and
/// ETag equal the reference encoder's (canonical), the file has the length the format gives
/// and its header says what the row says; the object opens on every backend to exactly the
/// input and metadata, and a range read returns the right slice; a sealer with a random prefix
/// produces the reference encoding for its own prefix.
pub fn roundtrip(data: &[u8]) {
    let mut r = Input(data);
    let cfg = r.u8().unwrap_or(0);
    let shift = MIN_CHUNK_SHIFT + cfg % 5;
    let stride = (1usize << shift) + TAG_LEN;
    let batch = match r.u8().unwrap_or(0) % 5 {
        0 => seal::DEFAULT_BATCH_BYTES,
        k => usize::from(k) * stride,
    };
    let mut id = fixed_identity(r.u8().unwrap_or(0));
    let extend = usize::from(r.u16().unwrap_or(0)) % (3 << shift);
    let mut meta = Vec::new();
    for _ in 0..r.u8().unwrap_or(0) % 4 {
        let k = r.u8().unwrap_or(0);
        let k = String::from_utf8_lossy(r.take(usize::from(k % 16))).into_owned();
        let v = r.u8().unwrap_or(0);
        let v = String::from_utf8_lossy(r.take(usize::from(v))).into_owned();
        meta.push((k, v));
    }
    if cfg & 0x40 != 0 {
        let n = r.u8().unwrap_or(0);
        id.name = String::from_utf8_lossy(r.take(usize::from(n))).into_owned();
    }
    let (ra, rb) = (r.u16().unwrap_or(0), r.u16().unwrap_or(0));
    let src = r.0;
    let mut pt = src.to_vec();
    pt.extend((0..extend).map(|i| match src.len() {
        0 => i as u8,
        n => src[i % n] ^ (i >> 8) as u8,
    }));
    let key = (cfg & 0x80 == 0).then_some(&FUZZ_DATA_KEY);
    let Some(want) = reference::seal_v2(&id, key, shift, &FUZZ_PREFIX, &meta, &pt) else {
        // The format cannot hold it: the sealer must refuse too.
        let refused = real_seal(&id, key, shift, &meta, &pt, AeadBackend::Portable, batch).is_err();
        assert!(
            refused,
            "the sealer accepted a name or metadata the format refuses"
        );
        return;
    };
    let dk = key.map(|k| DataKey::from_bytes(*k));
    for backend in AeadBackend::available() {
        let (file, row) = real_seal(&id, key, shift, &meta, &pt, backend, batch)
            .unwrap_or_else(|e| panic!("{backend}: seal refused a valid object: {e}"));
        assert!(
            file == want.file,
            "{backend}: data file differs from the reference"
        );
        assert!(
            row.meta_block == want.meta_block,
            "{backend}: metadata block differs"
        );
        assert_eq!(row.etag, want.etag, "{backend}: ETag differs");
        assert_eq!(row.size, pt.len() as u64);
        let body = if key.is_some() {
            Geometry::body_len(shift, pt.len() as u64)
        } else {
            Some(pt.len() as u64)
        };
        assert_eq!(
            Some(file.len() as u64),
            body.map(|b| b + v2::HEADER_LEN as u64),
            "file length"
        );
        let h = FileHeader::parse(&file).expect("sealed header parses");
        assert_eq!(
            (h.suite, h.chunk_shift, h.object_id, h.nonce_prefix),
            (row.suite, shift, id.object_id, row.nonce_prefix)
        );
        for b2 in AeadBackend::available() {
            let o = ObjectOpener::new(&borrow(&id), &row.params(), dk.as_ref(), b2)
                .unwrap_or_else(|e| panic!("sealed on {backend}, open on {b2}: {e}"));
            assert!(o.meta() == meta, "{backend}/{b2}: metadata differs");
            let got = pipeline::open_from_slice(&o, &file, batch)
                .unwrap_or_else(|e| panic!("sealed on {backend}, open on {b2}: {e}"));
            assert!(got == pt, "{backend}/{b2}: plaintext differs");
        }
        let size = pt.len() as u64;
        if size > 0 {
            let off = u64::from(ra) * size / 65536;
            let len = (u64::from(rb) % (size - off)) + 1;
            let o = ObjectOpener::new(&borrow(&id), &row.params(), dk.as_ref(), backend)
                .expect("opens");
            let got = pipeline::open_range_from_slice(&o, &file, off, len, batch)
                .unwrap_or_else(|e| panic!("{backend}: range {off}+{len} of {size}: {e}"));
            assert!(
                got == pt[off as usize..(off + len) as usize],
                "{backend}: range differs"
            );
        }
    }
    // The production constructor (random prefix) writes the same format.
    let protection = dk.as_ref().map_or(Protection::Clear, Protection::Encrypted);
    let mut s = ObjectSealer::new(&borrow(&id), protection, shift, AeadBackend::best())
        .expect("valid object");
    let meta_block = s.seal_meta(&meta).expect("valid metadata");
    let file = pipeline::seal_to_vec(&mut s, &pt, batch).expect("seals");
    let r = reference::seal_v2(&id, key, shift, &s.nonce_prefix(), &meta, &pt).expect("valid");
    assert!(
        file == r.file && meta_block == r.meta_block,
        "random-prefix sealer differs from the reference"
    );
    assert_eq!(s.summary().map(|x| x.etag), Some(r.etag));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_objects_open_and_entry_points_accept_their_seeds() {
        for v in 0..OBJECT_VARIANTS {
            let f = fixed_object(v);
            open_object(&[v, 0]);
            open_object(&[v, 1, 0, 40, 0, 1]);
            open_object(&[v, 2, 14, 0, 0]);
            let mut raw = vec![0x80 | v];
            raw.extend_from_slice(&encode_raw_case(f));
            open_object(&raw);
            open_range(&[v, 0, 0, 0x10, 0]);
            header(&f.file);
            header(&f.row.meta_block);
        }
        roundtrip(&[0, 0, 0, 0, 0]);
        roundtrip(&[
            0x41, 1, 3, 0xff, 0x2f, 1, 1, b'a', 1, b'b', 4, b'n', b'/', b'm', b'e', 0, 0, 9, 9, 1,
            2, 3,
        ]);
        roundtrip(&[0xc1, 2, 1, 0, 0x20, 0, 0, 0, 0, 0, 0, b'b']); // empty name: refused by both
    }
}
