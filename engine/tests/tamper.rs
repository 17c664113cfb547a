//! Every form of tampering with a format-2 object — its data file, its row, or the pairing of
//! the two — is detected with its own error, and no plaintext of a failing chunk is released.

mod common;

use common::*;
use dare_engine::pipeline::{open_from_slice, open_range_from_slice};
use dare_engine::{
    AeadBackend, FormatError, ObjectIdentity, ObjectOpener, ObjectParams, ObjectReader, OpenError,
    Protection, Suite,
};
use dare_envelope::KeyError;

const C: usize = 4096;
const STRIDE: usize = C + 16;

/// A streaming whole read of `file` against the row `p`: how it ended and what it released.
fn stream_all(
    id: &ObjectIdentity<'_>,
    p: &ObjectParams<'_>,
    file: &[u8],
    key: &dare_envelope::DataKey,
    batch: usize,
) -> (Result<(), OpenError>, Vec<u8>) {
    let o = match ObjectOpener::new(id, p, Some(key), AeadBackend::best()) {
        Ok(o) => o,
        Err(e) => return (Err(e), Vec::new()),
    };
    let r = match ObjectReader::new(Box::new(MemFile(file.to_vec())), o, batch) {
        Ok(r) => r,
        Err(e) => return (Err(e), Vec::new()),
    };
    stream(|sink| r.read_all(sink))
}

/// Every single flipped byte of an encrypted data file's body fails, and a streaming read
/// releases only verified chunks before the one holding the flipped byte.
#[test]
fn every_single_byte_flip_of_the_body_fails() {
    let k = key();
    let id = ident("o", 1);
    let data = pattern(3 * C + 100, 1);
    let s = seal(&id, &k, &data);
    for i in HEAD..s.file.len() {
        let mut t = s.file.clone();
        t[i] ^= 0x01;
        let chunk = (i - HEAD) / STRIDE;
        let r = open_with(&id, &s.params(), &t, Some(&k), AeadBackend::best(), STRIDE);
        assert!(
            matches!(r, Err(OpenError::ChunkAuth { index }) if index == chunk as u64),
            "flip at byte {i}: {r:?}"
        );
        let (r, got) = stream_all(&id, &s.params(), &t, &k, STRIDE);
        assert!(r.is_err(), "flip at byte {i} went unnoticed");
        assert!(
            got.len() <= chunk * C && got[..] == data[..got.len()],
            "flip at byte {i}: released {} bytes",
            got.len()
        );
    }
}

/// The 32 header bytes of a format-2 data file are not what protects it — the associated data
/// binds the row's identity and parameters (see `identity_binding`) — but the reader compares
/// them with what the row says, so a flipped header byte is refused as `HeaderMismatch` (a
/// swapped or damaged file) by whole reads, range reads and the streaming reader alike, for
/// encrypted objects and objects in clear.
#[test]
fn flipped_header_bytes_are_refused_as_a_mismatch() {
    let k = key();
    let id = ident("o", 2);
    let data = pattern(2 * C + 7, 2);
    let clear = seal_with(
        &id,
        dare_engine::Protection::Clear,
        12,
        &data,
        &[],
        AeadBackend::best(),
        1 << 20,
    );
    for s in [seal(&id, &k, &data), clear] {
        let o = ObjectOpener::new(&id, &s.params(), Some(&k), AeadBackend::best()).unwrap();
        for i in 0..HEAD {
            for x in [0x01u8, 0x80, 0xff] {
                let mut t = s.file.clone();
                t[i] ^= x;
                let r = open_with(&id, &s.params(), &t, Some(&k), AeadBackend::best(), STRIDE);
                assert!(
                    matches!(r, Err(OpenError::HeaderMismatch)),
                    "byte {i}: {r:?}"
                );
                let r = open_range_from_slice(&o, &t, 0, 1, STRIDE);
                assert!(
                    matches!(r, Err(OpenError::HeaderMismatch)),
                    "byte {i}: {r:?}"
                );
                let o2 =
                    ObjectOpener::new(&id, &s.params(), Some(&k), AeadBackend::best()).unwrap();
                let r = ObjectReader::new(Box::new(MemFile(t)), o2, STRIDE).map(|_| ());
                assert!(
                    matches!(r, Err(OpenError::HeaderMismatch)),
                    "byte {i}: {r:?}"
                );
            }
        }
    }
}

/// Two objects' data files swapped (same length): the header names the other object.
/// With the header rewritten to match (it is not authenticated), the chunks still refuse.
#[test]
fn a_data_file_of_another_object_is_refused() {
    let k = key();
    let (a_id, b_id) = (ident("a", 20), ident("b", 21));
    let data = pattern(2 * C, 20);
    let (a, b) = (seal(&a_id, &k, &data), seal(&b_id, &k, &data));
    let swapped = Sealed {
        file: b.file.clone(),
        ..a.clone()
    };
    assert!(matches!(
        open(&a_id, &swapped, &k),
        Err(OpenError::HeaderMismatch)
    ));
    let mut file = b.file.clone();
    file[..HEAD].copy_from_slice(&a.file[..HEAD]);
    let reheaded = Sealed { file, ..a.clone() };
    assert!(matches!(
        open(&a_id, &reheaded, &k),
        Err(OpenError::ChunkAuth { index: 0 })
    ));
    assert_eq!(open(&a_id, &a, &k).unwrap(), data, "control");
}

#[test]
fn flipped_chunk_bit_names_the_chunk_and_releases_nothing_of_it() {
    let k = key();
    let id = ident("o", 3);
    let data = pattern(5 * C, 2);
    let mut s = seal(&id, &k, &data);
    s.file[HEAD + 2 * STRIDE + 10] ^= 0x80;
    assert!(matches!(
        open(&id, &s, &k),
        Err(OpenError::ChunkAuth { index: 2 })
    ));
    // One chunk per batch: chunks 0 and 1 verify and are delivered; nothing of chunk 2 or later.
    let (r, got) = stream_all(&id, &s.params(), &s.file, &k, STRIDE);
    assert!(matches!(r, Err(OpenError::ChunkAuth { index: 2 })));
    assert_eq!(
        got,
        &data[..2 * C],
        "only verified chunks before the bad one were released"
    );
    // A batch holding the bad chunk releases nothing of that batch.
    let (r, got) = stream_all(&id, &s.params(), &s.file, &k, 4 * STRIDE);
    assert!(matches!(r, Err(OpenError::ChunkAuth { index: 2 })));
    assert!(
        got.is_empty(),
        "released {} bytes of a failing batch",
        got.len()
    );
    // The same through a range read; a range that avoids the bad chunk still reads.
    let o = ObjectOpener::new(&id, &s.params(), Some(&k), AeadBackend::best()).unwrap();
    let rd = ObjectReader::new(Box::new(MemFile(s.file.clone())), o, STRIDE).unwrap();
    let (r, got) = stream(|sink| rd.read_range(C as u64 + 5, 2 * C as u64, sink));
    assert!(matches!(r, Err(OpenError::ChunkAuth { index: 2 })));
    assert_eq!(got, &data[C + 5..2 * C]);
    let (r, got) = stream(|sink| rd.read_range(3 * C as u64, 2 * C as u64, sink));
    r.unwrap();
    assert_eq!(got, &data[3 * C..]);
}

/// The metadata block is authenticated under the data key: every flipped byte, a cut and an
/// extension fail before any chunk is read. Also for empty metadata, whose encoding (two zero
/// bytes) is what a failed decryption leaves behind in the zeroed buffer: the tag, not the
/// decoder, must refuse it.
#[test]
fn metadata_block_tampering_is_header_auth() {
    let k = key();
    let id = ident("o", 4);
    for m in [meta(&[("owner", "alice")]), Vec::new()] {
        let s = seal_with(
            &id,
            dare_engine::Protection::Encrypted(&k),
            12,
            b"x",
            &m,
            AeadBackend::best(),
            C,
        );
        let try_block = |block: &[u8]| {
            let mut t = s.clone();
            t.meta_block = block.to_vec();
            ObjectOpener::new(&id, &t.params(), Some(&k), AeadBackend::best()).map(|_| ())
        };
        try_block(&s.meta_block).unwrap();
        for i in 0..s.meta_block.len() {
            let mut b = s.meta_block.clone();
            b[i] ^= 4;
            assert!(
                matches!(try_block(&b), Err(OpenError::HeaderAuth)),
                "{} entries, byte {i}",
                m.len()
            );
        }
        let mut longer = s.meta_block.clone();
        longer.push(0);
        for b in [
            &s.meta_block[..s.meta_block.len() - 1],
            &[],
            &[0; 17],
            &[0; 18],
            &longer[..],
        ] {
            assert!(
                matches!(try_block(b), Err(OpenError::HeaderAuth)),
                "{} bytes",
                b.len()
            );
        }
    }
}

#[test]
fn truncation_and_extension_of_the_data_file() {
    let k = key();
    let id = ident("o", 5);
    let data = pattern(4 * C, 4);
    let s = seal(&id, &k, &data);
    let len = s.file.len() as u64;
    let file_len = |f: &[u8]| open_with(&id, &s.params(), f, Some(&k), AeadBackend::best(), C);
    let mut appended_chunk = s.file.clone();
    appended_chunk.extend_from_slice(s.chunk(0));
    let mut appended_bytes = s.file.clone();
    appended_bytes.extend_from_slice(&[0; 5]);
    for f in [
        &s.file[..HEAD + 3 * STRIDE], // the final chunk cut off at a chunk boundary
        &s.file[..HEAD + 3 * STRIDE + 8], // cut inside a tag
        &s.file[..s.file.len() - 100], // cut inside the last chunk
        &s.file[..20],                // cut inside the header
        &[],
        &appended_chunk,
        &appended_bytes,
    ] {
        let r = file_len(f);
        assert!(
            matches!(r, Err(OpenError::FileLength { expected, actual }) if expected == len && actual == f.len() as u64),
            "{} bytes: {r:?}",
            f.len()
        );
        let (r, got) = stream_all(&id, &s.params(), f, &k, C);
        assert!(matches!(r, Err(OpenError::FileLength { .. })) && got.is_empty());
    }
}

/// Below the file-length check: a row whose size was forged to match a cut or extended data
/// file. The final-chunk marker in the nonce still catches both.
#[test]
fn truncation_and_extension_with_a_forged_size() {
    let k = key();
    let id = ident("o", 6);
    let data = pattern(4 * C, 5);
    let s = seal(&id, &k, &data);
    let forged = |file: Vec<u8>, size: u64| {
        let mut t = s.clone();
        t.file = file;
        t.size = size;
        t
    };
    // Cut at a chunk boundary: chunk 2 was sealed as a middle chunk.
    let t = forged(s.file[..HEAD + 3 * STRIDE].to_vec(), 3 * C as u64);
    assert!(matches!(open(&id, &t, &k), Err(OpenError::Truncated)));
    let (r, got) = stream_all(&id, &t.params(), &t.file, &k, STRIDE);
    assert!(matches!(r, Err(OpenError::Truncated)));
    assert_eq!(
        got,
        &data[..2 * C],
        "chunks before the cut verified; nothing of chunk 2"
    );
    // A whole chunk appended: the real final chunk is now in the middle.
    let mut f = s.file.clone();
    f.extend_from_slice(s.chunk(1));
    let t = forged(f, 5 * C as u64);
    assert!(matches!(open(&id, &t, &k), Err(OpenError::Extended)));
    let (r, got) = stream_all(&id, &t.params(), &t.file, &k, STRIDE);
    assert!(matches!(r, Err(OpenError::Extended)));
    assert_eq!(got, &data[..3 * C]);
    // Cut inside the last chunk's data: its tag fails.
    let t = forged(s.file[..s.file.len() - 100].to_vec(), 4 * C as u64 - 100);
    assert!(matches!(
        open(&id, &t, &k),
        Err(OpenError::ChunkAuth { index: 3 })
    ));
    // The empty object (one empty final chunk), cut or extended.
    let e = seal(&id, &k, &[]);
    assert_eq!(open(&id, &e, &k).unwrap(), Vec::<u8>::new());
    let mut f = e.file.clone();
    f.extend_from_slice(&s.chunk(0)[..C]);
    let t = {
        let mut t = e.clone();
        t.file = f;
        t.size = C as u64;
        t
    };
    assert!(matches!(
        open(&id, &t, &k),
        Err(OpenError::ChunkAuth { index: 0 })
    ));
    let mut f = e.file.clone();
    f.extend_from_slice(s.chunk(0));
    let t = {
        let mut t = e.clone();
        t.file = f;
        t.size = C as u64;
        t
    };
    assert!(open(&id, &t, &k).is_err());
    let t = {
        let mut t = e.clone();
        t.file.truncate(HEAD);
        t.size = 0;
        t
    };
    assert!(
        open(&id, &t, &k).is_err(),
        "empty object without its final chunk"
    );
    // A range read opens only the chunks it needs, so a cut beyond them is not its concern:
    // what it releases is still genuine.
    let t = forged(s.file[..HEAD + 3 * STRIDE].to_vec(), 3 * C as u64);
    let o = ObjectOpener::new(&id, &t.params(), Some(&k), AeadBackend::best()).unwrap();
    assert_eq!(
        open_range_from_slice(&o, &t.file, 0, C as u64, C).unwrap(),
        &data[..C]
    );
}

#[test]
fn swapped_duplicated_and_spliced_chunks() {
    let k = key();
    let id = ident("o", 7);
    let data = pattern(4 * C, 5);
    let s = seal(&id, &k, &data);
    let with_chunk = |base: &Sealed, at: usize, chunk: &[u8]| {
        let mut t = base.clone();
        t.file[HEAD + at * STRIDE..HEAD + (at + 1) * STRIDE].copy_from_slice(chunk);
        t
    };
    let swapped = with_chunk(&with_chunk(&s, 1, s.chunk(2)), 2, s.chunk(1));
    assert!(matches!(
        open(&id, &swapped, &k),
        Err(OpenError::ChunkAuth { index: 1 })
    ));
    let dup = with_chunk(&s, 2, s.chunk(1));
    assert!(matches!(
        open(&id, &dup, &k),
        Err(OpenError::ChunkAuth { index: 2 })
    ));
    // Same identity, same data key, same length: only the nonce prefix differs.
    let other = seal(&id, &k, &data);
    let spliced = with_chunk(&s, 1, other.chunk(1));
    assert!(matches!(
        open(&id, &spliced, &k),
        Err(OpenError::ChunkAuth { index: 1 })
    ));
    // Even with the same data key AND nonce prefix (which the sealer never repeats), a chunk
    // of another object fails: the associated data binds the object's identity.
    let kb = k.expose_secret();
    let other_id = ident("o", 8);
    let (other_file, _, _) = reference_v2(&other_id, Some(kb), 12, &s.prefix, &[], &data);
    let spliced = with_chunk(&s, 1, &other_file[HEAD + STRIDE..HEAD + 2 * STRIDE]);
    assert!(matches!(
        open(&id, &spliced, &k),
        Err(OpenError::ChunkAuth { index: 1 })
    ));
    let (same_file, _, _) = reference_v2(&id, Some(kb), 12, &s.prefix, &[], &data);
    assert!(
        same_file == s.file,
        "control: the reference rebuilds this very object"
    );
}

/// The same data file (and row) read as another object: every field of the identity and
/// every cryptographic parameter of the row is bound. The metadata block fails first; with a
/// metadata block re-sealed for the changed identity (as if the row had been moved by someone
/// holding the data key) and the unauthenticated file header rewritten to match, the data
/// file's own chunks still refuse.
#[test]
fn identity_binding() {
    let k = key();
    let kb = k.expose_secret();
    let name = "photos/cat.jpg";
    let id = ident(name, 9);
    let data = pattern(1000, 9); // one chunk, so a changed chunk size keeps the file length
    let s = seal(&id, &k, &data);
    let other_ids = [
        ObjectIdentity {
            object_id: [10; 16],
            ..id
        },
        ObjectIdentity { bucket_id: 8, ..id },
        ObjectIdentity {
            store_id: [0; 16],
            ..id
        },
        ObjectIdentity {
            name: "photos/dog.jpg",
            ..id
        },
        ObjectIdentity {
            name: "photos/cat.jpg ",
            ..id
        },
    ];
    for oid in &other_ids {
        assert!(
            matches!(open(oid, &s, &k), Err(OpenError::HeaderAuth)),
            "{oid:?}"
        );
        // The row moved to the other identity by someone holding the data key: the data file's
        // header names the object id (a mismatch); with the header rewritten too, the chunks
        // refuse, because the associated data binds every field of the identity.
        let (_, meta_block, _) = reference_v2(oid, Some(kb), 12, &s.prefix, &[], &data);
        let mut t = Sealed {
            meta_block,
            ..s.clone()
        };
        let r = open(oid, &t, &k);
        assert!(
            matches!(r, Err(OpenError::ChunkAuth { index: 0 }))
                || (oid.object_id != id.object_id && matches!(r, Err(OpenError::HeaderMismatch))),
            "{oid:?}: {r:?}"
        );
        rehead(&mut t.file, oid, Suite::Aes256Gcm, 12, &s.prefix);
        assert!(
            matches!(open(oid, &t, &k), Err(OpenError::ChunkAuth { index: 0 })),
            "{oid:?}"
        );
    }
    let mut prefix = s.prefix;
    prefix[6] ^= 1;
    for (shift, prefix) in [(12, prefix), (13, s.prefix), (22, s.prefix)] {
        let t = Sealed {
            chunk_shift: shift,
            prefix,
            ..s.clone()
        };
        assert!(
            matches!(open(&id, &t, &k), Err(OpenError::HeaderAuth)),
            "shift {shift}"
        );
        let (_, meta_block, _) = reference_v2(&id, Some(kb), shift, &prefix, &[], &data);
        let mut t = Sealed { meta_block, ..t };
        assert!(
            matches!(open(&id, &t, &k), Err(OpenError::HeaderMismatch)),
            "shift {shift} prefix {prefix:?}"
        );
        rehead(&mut t.file, &id, Suite::Aes256Gcm, shift, &prefix);
        assert!(
            matches!(open(&id, &t, &k), Err(OpenError::ChunkAuth { index: 0 })),
            "shift {shift} prefix {prefix:?}"
        );
    }
    // A row that calls an encrypted object's file "clear" (a downgrade by row edit): refused
    // while it keeps its nonce prefix. Whether a bucket may hold objects in clear at all is the
    // control plane's policy (OpenError::NotEncrypted there).
    let t = Sealed {
        suite: Suite::Plaintext,
        ..s.clone()
    };
    assert!(matches!(
        ObjectOpener::new(&id, &t.params(), Some(&k), AeadBackend::best()),
        Err(OpenError::Format(_))
    ));
    assert_eq!(
        open(&id, &s, &k).unwrap(),
        data,
        "control: the untouched object opens"
    );
}

/// Another object's envelope in this object's row yields another data key: refused at the
/// metadata block; and were that check skipped (a metadata block valid under the substituted
/// key), chunk 0's tag refuses it.
#[test]
fn envelope_substitution_wrong_and_missing_keys() {
    let id = ident("o", 11);
    let (k, k_other) = (key(), key());
    let data = pattern(3 * C, 11);
    let s = seal(&id, &k, &data);
    // Object "other" and its key: its own row and file open with it.
    let other_id = ident("other", 12);
    let other = seal(&other_id, &k_other, &data);
    assert_eq!(open(&other_id, &other, &k_other).unwrap(), data);
    assert!(matches!(
        open(&id, &s, &k_other),
        Err(OpenError::HeaderAuth)
    ));
    let (_, meta_block, _) =
        reference_v2(&id, Some(k_other.expose_secret()), 12, &s.prefix, &[], &[]);
    let t = Sealed {
        meta_block,
        ..s.clone()
    };
    assert!(matches!(
        open(&id, &t, &k_other),
        Err(OpenError::ChunkAuth { index: 0 })
    ));
    let (r, got) = stream_all(&id, &t.params(), &t.file, &k_other, STRIDE);
    assert!(matches!(r, Err(OpenError::ChunkAuth { index: 0 })) && got.is_empty());
    // A random key, and no key.
    assert!(matches!(open(&id, &s, &key()), Err(OpenError::HeaderAuth)));
    assert!(matches!(
        ObjectOpener::new(&id, &s.params(), None, AeadBackend::best()),
        Err(OpenError::Key(KeyError::Provider(_)))
    ));
    assert_eq!(open(&id, &s, &k).unwrap(), data);
}

#[test]
fn bad_ranges() {
    let k = key();
    let id = ident("o", 13);
    let s = seal(&id, &k, &pattern(1000, 7));
    let o = ObjectOpener::new(&id, &s.params(), Some(&k), AeadBackend::Portable).unwrap();
    let r = |off, len| open_range_from_slice(&o, &s.file, off, len, 1 << 20);
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
    let e = seal(&id, &k, &[]);
    let o = ObjectOpener::new(&id, &e.params(), Some(&k), AeadBackend::Portable).unwrap();
    assert!(matches!(
        open_range_from_slice(&o, &e.file, 0, 1, C),
        Err(OpenError::RangeOutOfBounds { size: 0, .. })
    ));
    assert_eq!(open_from_slice(&o, &e.file, C).unwrap(), Vec::<u8>::new());
}

/// Rows the opener refuses before touching any key material: chunk sizes out of range, names
/// the format does not allow, sizes beyond 2^32 chunks.
#[test]
fn malformed_rows() {
    let k = key();
    let id = ident("o", 14);
    let s = seal(&id, &k, b"abc");
    for shift in [11u8, 23] {
        let t = Sealed {
            chunk_shift: shift,
            ..s.clone()
        };
        assert!(matches!(
            ObjectOpener::new(&id, &t.params(), Some(&k), AeadBackend::Portable),
            Err(OpenError::Format(FormatError::BadChunkSize))
        ));
    }
    assert!(matches!(
        ObjectOpener::new(&ident("", 14), &s.params(), Some(&k), AeadBackend::Portable),
        Err(OpenError::Format(FormatError::BadName(_)))
    ));
    let t = Sealed {
        size: u64::MAX,
        ..s.clone()
    };
    assert!(matches!(
        ObjectOpener::new(&id, &t.params(), Some(&k), AeadBackend::Portable),
        Err(OpenError::Format(FormatError::BadLength))
    ));
    // The largest size the format allows passes the row checks, then fails the file length.
    let t = Sealed {
        size: (1u64 << 32) << 12,
        ..s.clone()
    };
    let o = ObjectOpener::new(&id, &t.params(), Some(&k), AeadBackend::Portable).unwrap();
    assert!(matches!(
        open_from_slice(&o, &t.file, C),
        Err(OpenError::FileLength { .. })
    ));
    let t = Sealed {
        size: ((1u64 << 32) << 12) + 1,
        ..s.clone()
    };
    assert!(ObjectOpener::new(&id, &t.params(), Some(&k), AeadBackend::Portable).is_err());
}

/// Range reads decrypt only the bytes they deliver of a chunk they cover partly, but verify
/// the whole chunk first: on every backend, ranges starting and ending mid-chunk and across
/// chunk and batch boundaries return the right bytes, and a flipped bit anywhere in a touched
/// chunk — inside the range's part of it, outside that part, or in its tag — fails the read
/// with that chunk's error and releases nothing.
#[test]
fn ranges_verify_whole_chunks_they_decrypt_only_in_part() {
    let k = key();
    let id = ident("parts", 6);
    let data = pattern(8 * C + 777, 6);
    let n = data.len() as u64;
    let c = C as u64;
    for &backend in &AeadBackend::available() {
        let s = seal_with(
            &id,
            Protection::Encrypted(&k),
            12,
            &data,
            &[],
            backend,
            1 << 20,
        );
        let o = ObjectOpener::new(&id, &s.params(), Some(&k), backend).unwrap();
        let ranges = [
            (5, 10),
            (17, 1),
            (c - 10, 20),
            (c + 1, c - 2),
            (2 * c + 100, 3 * c),
            (3 * c - 1, 2 * c + 2),
            (8 * c + 700, 77),
            (n - 1, 1),
            (8 * c, 777),
            (0, n),
            (1, n - 1),
        ];
        for (off, len) in ranges {
            for batch in [STRIDE, 3 * STRIDE, 1 << 20] {
                let got = open_range_from_slice(&o, &s.file, off, len, batch).unwrap();
                assert_eq!(
                    got,
                    &data[off as usize..(off + len) as usize],
                    "{backend} {off}+{len} batch {batch}"
                );
            }
        }
        // (range, byte of chunk 2 to flip, counted from the chunk's start; C.. is the tag)
        let cases = [
            ((2 * c + 2000, 50), 10),           // before the part
            ((2 * c + 2000, 50), 3000),         // after the part
            ((2 * c + 2000, 50), 2020),         // inside the part
            ((2 * c + 2000, 50), C + 3),        // the tag
            ((2 * c - 10, 20), C - 1),          // range across chunks 1-2, flip past its part
            ((2 * c + C as u64 - 5, 10), 0),    // across chunks 2-3, flip before its part
            ((2 * c + 1, C as u64 - 2), C - 1), // all but the chunk's first and last byte
        ];
        for ((off, len), at) in cases {
            let mut t = s.file.clone();
            t[HEAD + 2 * STRIDE + at] ^= 0x20;
            for batch in [STRIDE, 1 << 20] {
                let o = ObjectOpener::new(&id, &s.params(), Some(&k), backend).unwrap();
                let rd = ObjectReader::new(Box::new(MemFile(t.clone())), o, batch).unwrap();
                let (r, got) = stream(|sink| rd.read_range(off, len, sink));
                assert!(
                    matches!(r, Err(OpenError::ChunkAuth { index: 2 })),
                    "{backend} {off}+{len} flip at {at}: {r:?}"
                );
                // Only verified chunks before chunk 2 (batches of one chunk) may have been
                // delivered; nothing of chunk 2.
                let before = (2 * c).saturating_sub(off) as usize;
                assert!(
                    got.len() <= before && got[..] == data[off as usize..off as usize + got.len()],
                    "{backend} {off}+{len} flip at {at}: released {} bytes",
                    got.len()
                );
                if batch > 2 * STRIDE {
                    assert!(got.is_empty(), "{backend}: a failing batch released bytes");
                }
            }
        }
    }
}
