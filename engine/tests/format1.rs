//! Format-1 objects (written before foundation v2) still open: objects built by the reference
//! encoder of `common` and files written by the last format-1 release (`tests/fixtures/v1`),
//! whole and by range, with tampering still detected.

mod common;

use common::*;
use dare_engine::format::v1::Header;
use dare_engine::pipeline::{open_from_slice, open_range_from_slice};
use dare_engine::{AeadBackend, FormatError, ObjectOpener, OpenError, Suite};
use dare_envelope::{DataKey, Envelope, KeyError, KeyKind, KeyProvider};

const C: usize = 4096;
const KEY: [u8; 32] = [0x42; 32];
const PREFIX: [u8; 7] = *b"v1-pfx!";

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/v1")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn open_v1(
    obj: &[u8],
    p: Option<&dyn KeyProvider>,
    backend: AeadBackend,
    batch: usize,
) -> Result<(Vec<u8>, Meta), OpenError> {
    let o = ObjectOpener::open_v1(obj, obj.len() as u64, p, backend)?;
    assert_eq!(o.format(), 1);
    let pt = open_from_slice(&o, obj, batch)?;
    Ok((pt, o.meta().to_vec()))
}

/// A provider that hands out one fixed key whatever the envelope says (as a wrong root key
/// would, if unwrapping could not fail).
struct FixedKey([u8; 32]);
impl KeyProvider for FixedKey {
    fn new_data_key(&self) -> Result<(DataKey, Envelope), KeyError> {
        unreachable!("format 1 is only read")
    }
    fn open_data_key(&self, _: &Envelope) -> Result<DataKey, KeyError> {
        Ok(DataKey::from_bytes(self.0))
    }
}

#[test]
fn reference_objects_open_whole_and_by_range_on_every_backend() {
    let m = meta(&[("content-type", "text/plain"), ("k", "")]);
    for &backend in &AeadBackend::available() {
        for shift in [12u8, 14] {
            let c = 1usize << shift;
            for len in [0, 1, c - 1, c, c + 1, 3 * c + 100] {
                let data = pattern(len, len as u64);
                let enc = reference_v1_raw("report.pdf", &KEY, shift, &PREFIX, &m, &data);
                let clear = reference_v1("report.pdf", None, shift, &PREFIX, &m, &data);
                for obj in [&enc, &clear] {
                    for batch in [c, 2 * (c + 16), 1 << 20] {
                        let (pt, got_meta) =
                            open_v1(obj, Some(&RawKeyProvider), backend, batch).unwrap();
                        assert!(pt == data, "{backend} shift {shift} len {len}");
                        assert_eq!(got_meta, m);
                    }
                    if len > 2 {
                        let o = ObjectOpener::open_v1(
                            &obj[..],
                            obj.len() as u64,
                            Some(&RawKeyProvider),
                            backend,
                        )
                        .unwrap();
                        let r = open_range_from_slice(&o, obj, 1, len as u64 - 2, 2 * c).unwrap();
                        assert_eq!(r, data[1..len - 1]);
                    }
                }
                // A plaintext object needs no provider.
                assert_eq!(open_v1(&clear, None, backend, c).unwrap().0, data);
            }
        }
    }
}

#[test]
fn the_opener_exposes_the_verified_header() {
    let obj = reference_v1_raw("a name", &KEY, 12, &PREFIX, &[], b"hello");
    let o = ObjectOpener::open_v1(
        &obj[..],
        obj.len() as u64,
        Some(&RawKeyProvider),
        AeadBackend::Portable,
    )
    .unwrap();
    let h = o.v1_header().unwrap();
    assert_eq!(
        (h.name.as_str(), h.suite, h.chunk_shift, h.nonce_prefix),
        ("a name", Suite::Aes256Gcm, 12, PREFIX)
    );
    assert_eq!(h.key_block, Some(RawKeyProvider::envelope(&KEY)));
    assert_eq!(o.body_offset(), h.body_offset());
    assert_eq!(o.plaintext_len(), 5);
    o.check_file_len(0).unwrap(); // format-1 lengths were checked when the header was read
}

/// Files written by the last format-1 release: the ones in clear open and are exactly what the
/// reference encoder writes; the encrypted one parses and is refused without its real key.
#[test]
fn files_from_the_last_format1_release() {
    let input = fixture("in5000");
    for (file, name, plaintext, m) in [
        ("readme", "readme", b"R".to_vec(), Vec::new()),
        ("data", "data", input.clone(), meta(&[("k", "v")])),
    ] {
        let obj = fixture(file);
        let (pt, got_meta) = open_v1(&obj, None, AeadBackend::best(), 1 << 20).unwrap();
        assert_eq!((&pt, &got_meta), (&plaintext, &m), "{file}");
        assert!(
            reference_v1(name, None, 12, &[0; 7], &m, &plaintext) == obj,
            "{file}: not the reference encoding"
        );
    }
    let obj = fixture("cat.jpg");
    let (h, _) = Header::parse(&obj).unwrap();
    assert_eq!(
        (h.name.as_str(), h.suite, h.chunk_shift),
        ("cat.jpg", Suite::Aes256Gcm, 12)
    );
    let kb = h.key_block.as_ref().unwrap();
    assert_eq!((kb.kind, kb.bytes.len()), (KeyKind::Hierarchy, 60));
    assert_eq!(
        obj.len() as u64,
        h.body_offset() + 5000 + 2 * 16,
        "two chunks of 5000 bytes"
    );
    assert!(matches!(
        open_v1(&obj, Some(&RawKeyProvider), AeadBackend::best(), C),
        Err(OpenError::Key(KeyError::WrongKind {
            expected: 1,
            found: 2
        }))
    ));
    assert!(matches!(
        open_v1(&obj, Some(&FixedKey(KEY)), AeadBackend::best(), C),
        Err(OpenError::HeaderAuth)
    ));
    assert!(matches!(
        open_v1(&obj, None, AeadBackend::best(), C),
        Err(OpenError::Key(_))
    ));
}

/// Format 1 authenticates its whole header (name and envelope included): with a provider that
/// would hand out the right key for any envelope, every flipped byte of the object still fails,
/// and a streaming read releases nothing of a failing chunk.
#[test]
fn every_flipped_byte_of_a_format1_object_fails() {
    let p = FixedKey(KEY);
    // With metadata, and without (whose two-byte encoding is what a zeroed buffer decodes to).
    for (len, m) in [(100, Vec::new()), (3 * C + 100, meta(&[("a", "b")]))] {
        let data = pattern(len, 1);
        let obj = reference_v1_raw("o", &KEY, 12, &PREFIX, &m, &data);
        let (h, hlen) = Header::parse(&obj).unwrap();
        let body = h.body_offset() as usize;
        for i in 0..obj.len() {
            let mut t = obj.clone();
            t[i] ^= 0x01;
            let r = open_v1(&t, Some(&p), AeadBackend::best(), C + 16);
            match i {
                _ if i >= body => assert!(
                    matches!(r, Err(OpenError::ChunkAuth { index }) if index == ((i - body) / (C + 16)) as u64),
                    "body byte {i}: {r:?}"
                ),
                _ if i >= hlen => assert!(
                    matches!(r, Err(OpenError::HeaderAuth)),
                    "metadata byte {i}: {r:?}"
                ),
                _ => assert!(
                    matches!(
                        r,
                        Err(OpenError::HeaderAuth | OpenError::Format(_) | OpenError::Key(_))
                    ),
                    "header byte {i}: {r:?}"
                ),
            }
        }
    }
    let data = pattern(3 * C + 100, 1);
    let obj = reference_v1_raw("o", &KEY, 12, &PREFIX, &meta(&[("a", "b")]), &data);
    let body = Header::parse(&obj).unwrap().0.body_offset() as usize;
    // Range read through the sink with chunk 2 flipped: chunks 0 and 1 only.
    let mut t = obj.clone();
    t[body + 2 * (C + 16) + 3] ^= 0x10;
    let o = ObjectOpener::open_v1(&t[..], t.len() as u64, Some(&p), AeadBackend::best()).unwrap();
    let rd = dare_engine::ObjectReader::new(Box::new(MemFile(t.clone())), o, C + 16).unwrap();
    let (r, got) = stream(|sink| rd.read_all(sink));
    assert!(matches!(r, Err(OpenError::ChunkAuth { index: 2 })));
    assert_eq!(got, &data[..2 * C]);
}

#[test]
fn format1_truncation_extension_and_keys() {
    let data = pattern(4 * C, 4);
    let obj = reference_v1_raw("o", &KEY, 12, &PREFIX, &[], &data);
    let body = Header::parse(&obj).unwrap().0.body_offset() as usize;
    let stride = C + 16;
    let open =
        |o: &[u8]| open_v1(o, Some(&RawKeyProvider), AeadBackend::best(), 3 * stride).map(|r| r.0);
    assert_eq!(open(&obj).unwrap(), data);
    assert!(matches!(
        open(&obj[..body + 3 * stride]),
        Err(OpenError::Truncated)
    ));
    assert!(matches!(
        open(&obj[..body + 3 * stride + 8]),
        Err(OpenError::Format(FormatError::BadLength))
    ));
    assert!(matches!(
        open(&obj[..20]),
        Err(OpenError::Format(FormatError::Truncated { .. }))
    ));
    assert!(matches!(
        open(&[]),
        Err(OpenError::Format(FormatError::Empty))
    ));
    let mut t = obj.clone();
    t.extend_from_slice(&obj[body..body + stride]);
    assert!(matches!(open(&t), Err(OpenError::Extended)));
    // The same object under another name, or another key: refused.
    let renamed = reference_v1_raw("p", &KEY, 12, &PREFIX, &[], &data);
    let mut spliced = obj.clone();
    spliced[body + stride..body + 2 * stride]
        .copy_from_slice(&renamed[body + stride..body + 2 * stride]);
    assert!(matches!(
        open(&spliced),
        Err(OpenError::ChunkAuth { index: 1 })
    ));
    assert!(matches!(
        open_v1(&obj, Some(&FixedKey([0; 32])), AeadBackend::best(), C),
        Err(OpenError::HeaderAuth)
    ));
    assert!(matches!(
        open_v1(&obj, None, AeadBackend::best(), C),
        Err(OpenError::Key(_))
    ));
    // A format-2 data file is not a format-1 object.
    let v2 = seal(&ident("o", 1), &key(), b"abc");
    assert!(matches!(
        open_v1(&v2.file, Some(&RawKeyProvider), AeadBackend::best(), C),
        Err(OpenError::Format(FormatError::UnsupportedVersion(2)))
    ));
}

/// A format-1 object in clear carries no checksum; the CRC-32C recorded at migration (the
/// row's ETag) makes whole reads check it. Encrypted objects ignore it (they are authenticated).
#[test]
fn format1_clear_objects_with_a_migration_checksum() {
    let data = pattern(3 * C + 9, 12);
    let crc = format!("{:08x}", crc32c::crc32c(&data));
    let clear = reference_v1("legacy", None, 12, &[0; 7], &[], &data);
    let with = |obj: &[u8], etag: &str| {
        ObjectOpener::open_v1(obj, obj.len() as u64, None, AeadBackend::best())?
            .with_clear_checksum(etag)
    };
    let o = with(&clear, &crc).unwrap();
    assert!(open_from_slice(&o, &clear, C).unwrap() == data);
    let mut t = clear.clone();
    *t.last_mut().unwrap() ^= 1;
    let o = with(&t, &crc).unwrap();
    assert!(matches!(
        open_from_slice(&o, &t, C),
        Err(OpenError::ChecksumMismatch)
    ));
    // Without the checksum the same damage goes unnoticed: format 1 had none.
    let o = ObjectOpener::open_v1(&t[..], t.len() as u64, None, AeadBackend::best()).unwrap();
    assert_eq!(open_from_slice(&o, &t, C).unwrap().len(), data.len());
    for bad in ["", "0000000", "not-hex!", "000000000"] {
        assert!(
            matches!(with(&clear, bad), Err(OpenError::Format(_))),
            "{bad:?}"
        );
    }
    // Encrypted: a no-op, whatever the ETag says (format-1 ETags are object ids).
    let enc = reference_v1_raw("legacy", &KEY, 12, &PREFIX, &[], &data);
    let o = ObjectOpener::open_v1(
        &enc[..],
        enc.len() as u64,
        Some(&RawKeyProvider),
        AeadBackend::best(),
    )
    .unwrap()
    .with_clear_checksum("00112233445566778899aabbccddeeff")
    .unwrap();
    assert!(open_from_slice(&o, &enc, C).unwrap() == data);
}
