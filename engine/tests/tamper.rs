//! Every form of tampering is detected with its own error, and no plaintext of a failing
//! chunk is released.

mod common;

use common::{RootKeys, pattern};
use dare_engine::seal::{open_from_slice, open_range_from_slice, seal_to_vec};
use dare_engine::{AeadBackend, FormatError, ObjectOpener, OpenError, SealOptions};
use dare_keys::KeyError;

const C: usize = 4096;
const STRIDE: usize = C + 16;

fn seal(keys: &RootKeys, data: &[u8], name: &str) -> (Vec<u8>, usize) {
    let o = SealOptions {
        name,
        chunk_shift: 12,
        meta: &[],
        backend: AeadBackend::best(),
    };
    let obj = seal_to_vec(Some(keys), &o, data, 1 << 20).unwrap();
    let body = obj.len() - (data.len() + data.len().div_ceil(C).max(1) * 16);
    (obj, body)
}

fn open(keys: &RootKeys, obj: &[u8]) -> Result<Vec<u8>, OpenError> {
    open_from_slice(obj, Some(keys), AeadBackend::best(), 3 * STRIDE).map(|(p, _)| p)
}

#[test]
fn every_single_byte_flip_fails() {
    let keys = RootKeys::random();
    let data = pattern(3 * C + 100, 1);
    let (obj, _) = seal(&keys, &data, "o");
    for i in 0..obj.len() {
        let mut t = obj.clone();
        t[i] ^= 0x01;
        assert!(open(&keys, &t).is_err(), "flip at byte {i} went unnoticed");
    }
}

#[test]
fn flipped_chunk_bit_names_the_chunk_and_releases_nothing_of_it() {
    let keys = RootKeys::random();
    let data = pattern(5 * C, 2);
    let (mut obj, body) = seal(&keys, &data, "o");
    obj[body + 2 * STRIDE + 10] ^= 0x80;
    assert!(matches!(
        open(&keys, &obj),
        Err(OpenError::ChunkAuth { index: 2 })
    ));
    // Range read through a sink: chunks 0 and 1 verify and are delivered; nothing of chunk 2.
    let opener = ObjectOpener::new(
        obj.as_slice(),
        obj.len() as u64,
        Some(&keys),
        AeadBackend::best(),
    )
    .unwrap();
    let mut got = Vec::new();
    let r = opener.open_range(obj.as_slice(), 0, data.len() as u64, STRIDE, &mut |p| {
        got.extend_from_slice(p);
        Ok(())
    });
    assert!(matches!(r, Err(OpenError::ChunkAuth { index: 2 })));
    assert_eq!(
        got,
        &data[..2 * C],
        "only verified chunks before the bad one were released"
    );
}

#[test]
fn header_tampering_is_header_auth_or_format_error() {
    let keys = RootKeys::random();
    let (obj, body) = seal(&keys, &pattern(C, 3), "o");
    // Byte 4 is the version, 5 the suite, 6 the chunk size, 7 the key kind.
    let mut t = obj.clone();
    t[4] = 2;
    assert!(matches!(
        open(&keys, &t),
        Err(OpenError::Format(FormatError::UnsupportedVersion(2)))
    ));
    let mut t = obj.clone();
    t[0] = b'X';
    assert!(matches!(
        open(&keys, &t),
        Err(OpenError::Format(FormatError::BadMagic))
    ));
    // Nonce prefix byte: parses fine, fails authentication of the metadata block.
    let mut t = obj.clone();
    t[9] ^= 1;
    assert!(matches!(open(&keys, &t), Err(OpenError::HeaderAuth)));
    // Name byte.
    let mut t = obj.clone();
    t[24] ^= 1;
    assert!(matches!(open(&keys, &t), Err(OpenError::HeaderAuth)));
    // Wrapped key byte: unwrap fails.
    let mut t = obj.clone();
    t[30] ^= 1;
    assert!(matches!(
        open(&keys, &t),
        Err(OpenError::Key(KeyError::UnwrapFailed))
    ));
    // Metadata block byte.
    let mut t = obj;
    t[body - 1] ^= 1;
    assert!(matches!(open(&keys, &t), Err(OpenError::HeaderAuth)));
}

#[test]
fn truncation_and_extension() {
    let keys = RootKeys::random();
    let data = pattern(4 * C, 4);
    let (obj, body) = seal(&keys, &data, "o");
    // Cut the final chunk off at a chunk boundary.
    assert!(matches!(
        open(&keys, &obj[..body + 3 * STRIDE]),
        Err(OpenError::Truncated)
    ));
    // Cut inside a tag: no valid object has that length.
    assert!(matches!(
        open(&keys, &obj[..body + 3 * STRIDE + 8]),
        Err(OpenError::Format(FormatError::BadLength))
    ));
    // Cut inside the last chunk's data.
    assert!(matches!(
        open(&keys, &obj[..obj.len() - 100]),
        Err(OpenError::ChunkAuth { index: 3 })
    ));
    // Cut into the header.
    assert!(matches!(
        open(&keys, &obj[..20]),
        Err(OpenError::Format(FormatError::Truncated { .. }))
    ));
    assert!(matches!(
        open(&keys, &[]),
        Err(OpenError::Format(FormatError::Empty))
    ));
    // Append a whole chunk's worth of bytes: the real final chunk is now in the middle.
    let mut t = obj.clone();
    t.extend_from_slice(&obj[body..body + STRIDE]);
    assert!(matches!(open(&keys, &t), Err(OpenError::Extended)));
    // Append a few bytes.
    let mut t = obj.clone();
    t.extend_from_slice(&[0; 5]);
    assert!(matches!(
        open(&keys, &t),
        Err(OpenError::Format(FormatError::BadLength))
    ));
    // Empty object: cut or extended.
    let (e, _) = seal(&keys, &[], "e");
    assert_eq!(open(&keys, &e).unwrap(), Vec::<u8>::new());
    assert!(open(&keys, &e[..e.len() - 1]).is_err());
    let mut t = e.clone();
    t.extend_from_slice(&obj[body..body + STRIDE]);
    assert!(open(&keys, &t).is_err());
}

#[test]
fn swapped_duplicated_and_spliced_chunks() {
    let keys = RootKeys::random();
    let data = pattern(4 * C, 5);
    let (obj, body) = seal(&keys, &data, "o");
    let chunk = |o: &[u8], i: usize| o[body + i * STRIDE..body + (i + 1) * STRIDE].to_vec();
    let mut swapped = obj.clone();
    swapped[body + STRIDE..body + 2 * STRIDE].copy_from_slice(&chunk(&obj, 2));
    swapped[body + 2 * STRIDE..body + 3 * STRIDE].copy_from_slice(&chunk(&obj, 1));
    assert!(matches!(
        open(&keys, &swapped),
        Err(OpenError::ChunkAuth { index: 1 })
    ));
    let mut dup = obj.clone();
    dup[body + 2 * STRIDE..body + 3 * STRIDE].copy_from_slice(&chunk(&obj, 1));
    assert!(matches!(
        open(&keys, &dup),
        Err(OpenError::ChunkAuth { index: 2 })
    ));
    // Same name, same key provider, same length: only the chunk comes from elsewhere.
    let (other, body2) = seal(&keys, &data, "o");
    assert_eq!(body, body2);
    let mut spliced = obj.clone();
    spliced[body + STRIDE..body + 2 * STRIDE].copy_from_slice(&chunk(&other, 1));
    assert!(matches!(
        open(&keys, &spliced),
        Err(OpenError::ChunkAuth { index: 1 })
    ));
}

#[test]
fn wrong_key_and_missing_key() {
    let keys = RootKeys::random();
    let (obj, _) = seal(&keys, &pattern(100, 6), "o");
    assert!(matches!(
        open(&RootKeys::random(), &obj),
        Err(OpenError::Key(KeyError::UnwrapFailed))
    ));
    assert!(matches!(
        open_from_slice(&obj, None, AeadBackend::Portable, 1 << 20),
        Err(OpenError::Key(_))
    ));
}

#[test]
fn bad_ranges() {
    let keys = RootKeys::random();
    let (obj, _) = seal(&keys, &pattern(1000, 7), "o");
    let r = |off, len| {
        open_range_from_slice(&obj, Some(&keys), AeadBackend::Portable, off, len, 1 << 20)
    };
    assert!(matches!(r(0, 0), Err(OpenError::EmptyRange)));
    assert!(matches!(
        r(999, 2),
        Err(OpenError::RangeOutOfBounds { size: 1000, .. })
    ));
    assert!(matches!(
        r(1000, 1),
        Err(OpenError::RangeOutOfBounds { .. })
    ));
    assert!(matches!(
        r(u64::MAX, 2),
        Err(OpenError::RangeOutOfBounds { .. })
    ));
    assert_eq!(r(999, 1).unwrap().len(), 1);
}
