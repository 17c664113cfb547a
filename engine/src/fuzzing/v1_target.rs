//! The `open_v1` target: format-1 objects (written before foundation v2, still read), opened
//! with [`ObjectOpener::open_v1`].

use std::sync::OnceLock;

use dare_envelope::{DataKey, Envelope, KeyError, KeyKind, KeyProvider};

use super::{FUZZ_DATA_KEY, FUZZ_PREFIX, Input, batch_bytes, edit_file, reference};
use crate::backend::AeadBackend;
use crate::format::{MIN_CHUNK_SHIFT, PREFIX_LEN, Suite, TAG_LEN, v1};
use crate::pipeline;
use crate::seal::ObjectOpener;

/// Number of fixed valid format-1 objects ([`fixed_object_v1`]).
pub const OBJECT_VARIANTS_V1: u8 = 6;

/// The key provider of the format-1 targets: it hands out [`FUZZ_DATA_KEY`] for *any*
/// envelope, so an edited key block is refused only because format 1 authenticates its whole
/// header (envelope included) — never because unwrapping happened to fail.
#[derive(Debug)]
struct AnyEnvelope;

impl KeyProvider for AnyEnvelope {
    fn new_data_key(&self) -> Result<(DataKey, Envelope), KeyError> {
        Err(KeyError::Provider("format 1 is only read".into()))
    }
    fn open_data_key(&self, _: &Envelope) -> Result<DataKey, KeyError> {
        Ok(DataKey::from_bytes(FUZZ_DATA_KEY))
    }
}

/// A valid format-1 object and what it must open to.
#[derive(Debug)]
pub struct FixedObjectV1 {
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

/// Fixed valid format-1 object number `v % OBJECT_VARIANTS_V1`, 4 KiB chunks: empty, 1 byte,
/// one full chunk, 2 chunks + 100 bytes, 3 full chunks (all encrypted, a 40-byte store-root
/// envelope), and a 300-byte plaintext object. Built by the reference encoder.
pub fn fixed_object_v1(v: u8) -> &'static FixedObjectV1 {
    static OBJECTS: OnceLock<Vec<FixedObjectV1>> = OnceLock::new();
    let all = OBJECTS.get_or_init(|| {
        let specs: [(usize, bool, bool); OBJECT_VARIANTS_V1 as usize] = [
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
                let plaintext = super::fixed_plaintext(len);
                let meta = super::fixed_meta(with_meta);
                let header = v1::Header {
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
                        bytes: vec![0x77; 40],
                    }),
                    meta_len: 0,
                };
                let dk = encrypted.then_some(&FUZZ_DATA_KEY);
                let bytes = reference::seal_v1(&header, dk, &meta, &plaintext)
                    .expect("fixed object is valid");
                let (h, _) = v1::Header::parse(&bytes).expect("fixed header parses");
                FixedObjectV1 {
                    body_offset: h.body_offset() as usize,
                    stride: 4096 + if encrypted { TAG_LEN } else { 0 },
                    bytes,
                    plaintext,
                    meta,
                }
            })
            .collect()
    });
    &all[usize::from(v % OBJECT_VARIANTS_V1)]
}

/// After `object` opened to `(pt, meta)`: it is byte for byte the reference encoding of that
/// plaintext and metadata under its own header and data key. So every accepted byte was
/// authenticated (or, for a plaintext object, canonical).
fn assert_canonical(object: &[u8], pt: &[u8], meta: &[(String, String)]) {
    let (h, _) = v1::Header::parse(object).expect("opened object: header does not parse");
    let dk = h.key_block.is_some().then_some(&FUZZ_DATA_KEY);
    let expected =
        reference::seal_v1(&h, dk, meta, pt).expect("opened object: cannot be re-encoded");
    assert!(
        expected == object,
        "accepted object is not the canonical encoding of what it opened to"
    );
}

/// Whether `object` claims to be stored in clear: it then opens to its stored body with or
/// without a provider; refusing it in an encrypted bucket is the control plane's policy.
fn claims_plaintext(object: &[u8]) -> bool {
    matches!(v1::Header::parse(object), Ok((h, _)) if h.suite == Suite::Plaintext)
}

type Opened = Result<(Vec<u8>, Vec<(String, String)>), String>;

/// `open_v1` target. Byte 0 with bit 7 set: the rest is a stored format-1 object. Otherwise
/// byte 0 picks a fixed object, byte 1 the batch size, and the rest edits it (xor a byte,
/// truncate, append, copy a chunk over another, delete a range, duplicate a chunk).
/// Properties: every backend gives the same result; an accepted object is canonical; an
/// edited encrypted object is accepted only if unchanged, and then opens to exactly its
/// plaintext and metadata; an unchanged object is never refused; through the streaming reader
/// only verified chunks reach the sink.
pub fn open_v1(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (object, fixed, batch) = if mode & 0x80 != 0 {
        (rest.to_vec(), None, batch_bytes(mode, 4096 + TAG_LEN))
    } else {
        let f = fixed_object_v1(mode);
        let (&b, edits) = rest.split_first().unwrap_or((&0, &[]));
        let mut o = f.bytes.clone();
        let mut r = Input(edits);
        while let Some(op) = r.u8() {
            edit_file(&mut o, op, &mut r, f.body_offset, f.stride);
        }
        (o, Some(f), batch_bytes(b, f.stride))
    };
    let mut first: Option<Opened> = None;
    for backend in AeadBackend::available() {
        let opener = ObjectOpener::open_v1(
            object.as_slice(),
            object.len() as u64,
            Some(&AnyEnvelope),
            backend,
        );
        let r: Opened = opener.as_ref().map_err(|e| format!("{e:?}")).and_then(|o| {
            pipeline::open_from_slice(o, &object, batch)
                .map(|pt| (pt, o.meta().to_vec()))
                .map_err(|e| format!("{e:?}"))
        });
        match &r {
            Ok((pt, meta)) => {
                assert_canonical(&object, pt, meta);
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
        // Streaming: whatever reaches the sink is genuine content from offset 0.
        if let (Ok(o), Some(f)) = (&opener, fixed) {
            let content: &[u8] = if claims_plaintext(&object) {
                object.get(o.body_offset() as usize..).unwrap_or_default()
            } else {
                &f.plaintext
            };
            let mut got = Vec::new();
            let res = pipeline::read_all(o, None, object.as_slice(), batch, &mut |p| {
                got.extend_from_slice(p);
                Ok(())
            });
            assert!(
                content.starts_with(&got),
                "{backend}: sink got unverified data"
            );
            if res.is_ok() {
                assert!(got == content, "{backend}: streaming read differs");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_v1_objects_open_and_edits_are_refused() {
        for v in 0..OBJECT_VARIANTS_V1 {
            let f = fixed_object_v1(v);
            open_v1(&[v, 0]);
            open_v1(&[v, 1, 0, 30, 0, 1]);
            open_v1(&[v, 2, 1, 0x10, 0]);
            let mut raw = vec![0x80 | v];
            raw.extend_from_slice(&f.bytes);
            open_v1(&raw);
        }
        // The key-block bytes are authenticated although the provider ignores them.
        let f = fixed_object_v1(1);
        let at = v1::FIXED_LEN + "fuzz-object".len() + 3;
        let mut t = f.bytes.clone();
        t[at] ^= 1;
        assert!(
            ObjectOpener::open_v1(
                t.as_slice(),
                t.len() as u64,
                Some(&AnyEnvelope),
                AeadBackend::Portable
            )
            .is_err()
        );
    }
}
