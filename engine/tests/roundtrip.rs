//! Format-2 seal/open round trips and range reads on every AEAD backend this CPU supports;
//! the sealer's output against the independent reference encoder; objects in clear.

mod common;

use common::*;
use dare_engine::format::v2::FileHeader;
use dare_engine::format::{Geometry, MAX_META_LEN};
use dare_engine::pipeline::{open_from_slice, open_range_from_slice, seal_to_vec};
use dare_engine::{
    AeadBackend, FormatError, ObjectOpener, ObjectSealer, OpenError, Protection, SealError, Suite,
};
use proptest::prelude::*;

/// Seal on every backend, open on the next one (so every pair of neighbours is cross-checked),
/// at the edge sizes of two chunk sizes and three batch sizes.
#[test]
fn edge_sizes_every_backend() {
    let backends = AeadBackend::available();
    let m = meta(&[("content-type", "text/plain")]);
    let id = ident("obj", 1);
    for (bi, &backend) in backends.iter().enumerate() {
        let reader = backends[(bi + 1) % backends.len()];
        let k = key();
        for shift in [12u8, 16] {
            let c = 1usize << shift;
            for len in [0, 1, c - 1, c, c + 1, 2 * c, 5 * c + 3, (3 << 20) + 17] {
                for batch in [c, 4 * c + 1, 1 << 22] {
                    let data = pattern(len, len as u64 + u64::from(shift));
                    let s = seal_with(
                        &id,
                        Protection::Encrypted(&k),
                        shift,
                        &data,
                        &m,
                        backend,
                        batch,
                    );
                    let body = Geometry::body_len(shift, len as u64).unwrap();
                    assert_eq!(s.file.len() as u64, HEAD as u64 + body);
                    let (back, got_meta) =
                        open_with(&id, &s.params(), &s.file, Some(&k), reader, batch).unwrap();
                    assert!(
                        back == data,
                        "sealed on {backend}, opened on {reader}: shift {shift} len {len} batch {batch}"
                    );
                    assert_eq!(got_meta, m);
                }
            }
        }
    }
}

/// The engine writes exactly what the format specifies: the data file, metadata block and ETag
/// equal the independent reference encoder's for the sealer's own nonce prefix.
#[test]
fn sealer_output_is_the_reference_encoding() {
    let m = meta(&[("a", ""), ("ключ", "значение"), ("x-amz-meta-n", "1")]);
    for &backend in &AeadBackend::available() {
        for (i, name) in ["o", "photos/2026/cat.jpg", &"é".repeat(512)]
            .into_iter()
            .enumerate()
        {
            let id = ident(name, 40 + i as u8);
            for (shift, len) in [
                (12u8, 0usize),
                (12, 1),
                (12, 4096),
                (12, 3 * 4096 + 5),
                (13, 20_000),
            ] {
                let data = pattern(len, len as u64);
                let k = key();
                for protection in [Protection::Encrypted(&k), Protection::Clear] {
                    let s = seal_with(&id, protection, shift, &data, &m, backend, 2 * 4096);
                    let dk =
                        matches!(protection, Protection::Encrypted(_)).then(|| k.expose_secret());
                    let (file, meta_block, etag) =
                        reference_v2(&id, dk, shift, &s.prefix, &m, &data);
                    assert!(s.file == file, "{backend} {name} {len}: data file differs");
                    assert_eq!(s.meta_block, meta_block, "{backend} {name}: metadata block");
                    assert_eq!(s.etag, etag, "{backend} {name} {len}: ETag");
                    let h = file_header(&s.file);
                    assert_eq!(
                        h,
                        FileHeader {
                            suite: s.suite,
                            chunk_shift: shift,
                            object_id: id.object_id,
                            nonce_prefix: s.prefix,
                        }
                    );
                }
            }
        }
    }
}

#[test]
fn clear_objects_roundtrip_and_are_stored_as_is() {
    let id = ident("plain", 2);
    let m = meta(&[("k", "v")]);
    for len in [0usize, 1, 4096, 70_000] {
        let data = pattern(len, 3);
        let s = seal_with(
            &id,
            Protection::Clear,
            12,
            &data,
            &m,
            AeadBackend::Portable,
            8192,
        );
        assert_eq!(s.suite, Suite::Plaintext);
        assert_eq!(s.prefix, [0; 7], "no nonce prefix in clear");
        assert_eq!(s.file.len(), HEAD + len, "header + body, no tags");
        assert_eq!(&s.file[HEAD..], &data[..]);
        assert_eq!(s.meta_block, ref_encode_meta(&m), "metadata in clear");
        assert_eq!(s.etag, format!("{:08x}", crc32c::crc32c(&data)));
        // No data key is needed, and one given is not used.
        let (back, got_meta) =
            open_with(&id, &s.params(), &s.file, None, AeadBackend::Portable, 8192).unwrap();
        assert_eq!((back, got_meta), (data.clone(), m.clone()));
        let k = key();
        let (back, _) = open_with(
            &id,
            &s.params(),
            &s.file,
            Some(&k),
            AeadBackend::Portable,
            8192,
        )
        .unwrap();
        assert_eq!(back, data);
        if len > 1 {
            let o = ObjectOpener::new(&id, &s.params(), None, AeadBackend::Portable).unwrap();
            assert!(!o.is_encrypted());
            let r = open_range_from_slice(&o, &s.file, 1, len as u64 - 1, 4096).unwrap();
            assert_eq!(r, data[1..]);
        }
    }
}

/// A body byte of an object in clear flipped on the drive: a whole read fails its CRC-32C.
/// (A range read cannot check it: the CRC covers the whole object.)
#[test]
fn clear_object_crc_is_checked_on_whole_reads() {
    let id = ident("plain", 3);
    let data = pattern(3 * 4096 + 11, 4);
    let s = seal_with(
        &id,
        Protection::Clear,
        12,
        &data,
        &[],
        AeadBackend::Portable,
        1 << 20,
    );
    for at in [HEAD, HEAD + 4096, s.file.len() - 1] {
        let mut f = s.file.clone();
        f[at] ^= 0x20;
        let r = open_with(&id, &s.params(), &f, None, AeadBackend::Portable, 4096);
        assert!(
            matches!(r, Err(OpenError::ChecksumMismatch)),
            "byte {at}: {r:?}"
        );
        // Through the streaming reader the bytes went to the sink; the error says discard them.
        let o = ObjectOpener::new(&id, &s.params(), None, AeadBackend::Portable).unwrap();
        let rd = dare_engine::ObjectReader::new(Box::new(MemFile(f)), o, 4096).unwrap();
        let (r, _) = stream(|sink| rd.read_all(sink));
        assert!(matches!(r, Err(OpenError::ChecksumMismatch)));
    }
    // The row's ETag is the checksum: another one fails, a malformed one is refused upfront.
    let mut bad = s.clone();
    bad.etag = format!("{:08x}", crc32c::crc32c(&data) ^ 1);
    assert!(matches!(
        open_with(
            &id,
            &bad.params(),
            &bad.file,
            None,
            AeadBackend::Portable,
            4096
        ),
        Err(OpenError::ChecksumMismatch)
    ));
    for etag in ["", "1234567", "123456789", "zzzzzzzz", "\"abcdef01\""] {
        bad.etag = etag.to_string();
        assert!(
            matches!(
                ObjectOpener::new(&id, &bad.params(), None, AeadBackend::Portable),
                Err(OpenError::Format(_))
            ),
            "{etag:?}"
        );
    }
    // The empty object's CRC is 0.
    let e = seal_with(
        &id,
        Protection::Clear,
        12,
        &[],
        &[],
        AeadBackend::Portable,
        4096,
    );
    assert_eq!(e.etag, "00000000");
    let mut bad = e.clone();
    bad.etag = "00000001".into();
    assert!(matches!(
        open_with(
            &id,
            &bad.params(),
            &bad.file,
            None,
            AeadBackend::Portable,
            4096
        ),
        Err(OpenError::ChecksumMismatch)
    ));
}

#[test]
fn ciphertext_is_not_plaintext_and_prefixes_are_fresh() {
    let k = key();
    let id = ident("o", 4);
    let data = vec![0u8; 10_000];
    let objs: Vec<Sealed> = (0..32).map(|_| seal(&id, &k, &data)).collect();
    let mut prefixes: Vec<[u8; 7]> = objs.iter().map(|s| s.prefix).collect();
    prefixes.sort();
    prefixes.dedup();
    assert_eq!(
        prefixes.len(),
        objs.len(),
        "a fresh random nonce prefix per object"
    );
    assert_ne!(
        objs[0].file[HEAD..],
        objs[1].file[HEAD..],
        "same key, same identity: the prefix differs"
    );
    assert_ne!(objs[0].etag, objs[1].etag);
    for s in &objs[..2] {
        assert!(
            !s.file[HEAD..]
                .windows(64)
                .any(|w| w.iter().all(|&x| x == 0)),
            "zeros leaked into ciphertext"
        );
        assert_eq!(s.etag.len(), 32);
    }
}

#[test]
fn ranges_at_chunk_boundaries() {
    let c = 4096u64;
    let data = pattern(10 * c as usize + 100, 9);
    let id = ident("ranges", 5);
    let n = data.len() as u64;
    for &backend in &AeadBackend::available() {
        let k = key();
        let s = seal_with(
            &id,
            Protection::Encrypted(&k),
            12,
            &data,
            &[],
            backend,
            3 * c as usize,
        );
        let o = ObjectOpener::new(&id, &s.params(), Some(&k), backend).unwrap();
        assert_eq!(o.plaintext_len(), n);
        for (off, len) in [
            (0, 1),
            (0, c),
            (c - 1, 2),
            (c, c),
            (c - 1, c + 2),
            (3 * c + 5, 4 * c),
            (n - 1, 1),
            (0, n),
            (10 * c, 100),
        ] {
            for batch in [c as usize, 2 * c as usize, 1 << 22] {
                let got = open_range_from_slice(&o, &s.file, off, len, batch).unwrap();
                assert_eq!(
                    got,
                    &data[off as usize..(off + len) as usize],
                    "{backend} {off}+{len}"
                );
            }
        }
    }
}

#[test]
fn the_sealer_refuses_what_the_format_cannot_hold() {
    let k = key();
    let b = AeadBackend::Portable;
    for shift in [0u8, 11, 23, 255] {
        assert!(matches!(
            ObjectSealer::new(&ident("o", 1), Protection::Encrypted(&k), shift, b),
            Err(SealError::Format(FormatError::BadChunkSize))
        ));
    }
    let long = "n".repeat(1025);
    for name in ["", long.as_str()] {
        assert!(matches!(
            ObjectSealer::new(&ident(name, 1), Protection::Clear, 12, b),
            Err(SealError::Format(FormatError::BadName(_)))
        ));
    }
    // Any UTF-8 of 1..=1024 bytes is a name: names never become paths.
    let max = "n".repeat(1024);
    for name in ["..", "a/b", "a\0b", ".dare-tmp", max.as_str()] {
        ObjectSealer::new(&ident(name, 1), Protection::Encrypted(&k), 12, b).unwrap();
    }
    let s = ObjectSealer::new(&ident("o", 1), Protection::Encrypted(&k), 12, b).unwrap();
    assert!(s.summary().is_none(), "no summary before the final chunk");
    assert!(
        s.seal_meta(&meta(&[("", "v")])).is_err(),
        "empty metadata key"
    );
    let big = vec![("k".to_string(), "v".repeat(MAX_META_LEN))];
    assert!(s.seal_meta(&big).is_err(), "metadata over 64 KiB");
    // A sealer seals one object: once finished, it refuses more.
    let mut s = ObjectSealer::new(&ident("o", 1), Protection::Encrypted(&k), 12, b).unwrap();
    seal_to_vec(&mut s, b"abc", 4096).unwrap();
    assert!(seal_to_vec(&mut s, b"abc", 4096).is_err());
}

#[test]
fn opener_reports_what_the_row_says() {
    let k = key();
    let id = ident("o", 6);
    let m = meta(&[("owner", "alice")]);
    let data = pattern(9000, 6);
    let s = seal_with(
        &id,
        Protection::Encrypted(&k),
        12,
        &data,
        &m,
        AeadBackend::best(),
        1 << 20,
    );
    let o = ObjectOpener::new(&id, &s.params(), Some(&k), AeadBackend::best()).unwrap();
    assert_eq!(o.format(), 2);
    assert_eq!(o.suite(), Suite::Aes256Gcm);
    assert!(o.is_encrypted());
    assert_eq!(o.meta(), &m[..]);
    assert_eq!(o.plaintext_len(), 9000);
    assert_eq!(o.body_offset(), HEAD as u64);
    assert_eq!(o.expected_file_len(), s.file.len() as u64);
    assert!(o.v1_header().is_none());
    assert_eq!(open_from_slice(&o, &s.file, 4096).unwrap(), data);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
    #[test]
    fn random_sizes_chunks_and_ranges(
        len in prop_oneof![0usize..20_000, 0usize..(3 << 20)],
        shift in 12u8..=16,
        batch_chunks in 1usize..9,
        seed in any::<u64>(),
        r in any::<(u64, u64)>(),
        clear in any::<bool>(),
    ) {
        let k = key();
        let id = ident("prop", 8);
        let data = pattern(len, seed);
        let batch = batch_chunks << shift;
        let backend = AeadBackend::best();
        let protection = if clear { Protection::Clear } else { Protection::Encrypted(&k) };
        let s = seal_with(&id, protection, shift, &data, &[], backend, batch);
        let o = ObjectOpener::new(&id, &s.params(), Some(&k), backend).unwrap();
        let back = open_from_slice(&o, &s.file, batch).unwrap();
        prop_assert!(back == data);
        if len > 0 {
            let off = r.0 % len as u64;
            let rlen = 1 + r.1 % (len as u64 - off);
            let got = open_range_from_slice(&o, &s.file, off, rlen, batch).unwrap();
            prop_assert!(got == data[off as usize..(off + rlen) as usize]);
        }
    }
}
