//! Seal/open round trips and range reads, on every AEAD backend this CPU supports.

mod common;

use common::{RootKeys, pattern};
use dare_engine::seal::{open_from_slice, open_range_from_slice, seal_to_vec};
use dare_engine::{AeadBackend, SealOptions};
use proptest::prelude::*;

fn opts(backend: AeadBackend, shift: u8, meta: &[(String, String)]) -> SealOptions<'_> {
    SealOptions {
        name: "obj",
        chunk_shift: shift,
        meta,
        backend,
    }
}

#[test]
fn edge_sizes_every_backend() {
    let keys = RootKeys::random();
    let meta = vec![("content-type".to_string(), "text/plain".to_string())];
    for &backend in &AeadBackend::available() {
        for shift in [12u8, 16] {
            let c = 1usize << shift;
            for len in [0, 1, c - 1, c, c + 1, 2 * c, 5 * c + 3, (3 << 20) + 17] {
                for batch in [c, 4 * c + 1, 1 << 22] {
                    let data = pattern(len, len as u64 + u64::from(shift));
                    let obj = seal_to_vec(Some(&keys), &opts(backend, shift, &meta), &data, batch)
                        .unwrap();
                    let (back, m) = open_from_slice(&obj, Some(&keys), backend, batch).unwrap();
                    assert!(
                        back == data,
                        "{backend} shift {shift} len {len} batch {batch}"
                    );
                    assert_eq!(m, meta);
                }
            }
        }
    }
}

#[test]
fn plaintext_objects_roundtrip_and_carry_no_key() {
    for len in [0usize, 1, 4096, 70_000] {
        let data = pattern(len, 3);
        let obj = seal_to_vec(None, &opts(AeadBackend::Portable, 12, &[]), &data, 8192).unwrap();
        assert_eq!(
            obj.len(),
            24 + 3 + 2 + len,
            "header + name + empty meta + body"
        );
        let (back, _) = open_from_slice(&obj, None, AeadBackend::Portable, 8192).unwrap();
        assert_eq!(back, data);
        if len > 0 {
            assert_eq!(
                open_range_from_slice(
                    &obj,
                    None,
                    AeadBackend::Portable,
                    1.min(len as u64 - 1),
                    1,
                    4096
                )
                .unwrap(),
                data[1.min(len - 1)..][..1]
            );
        }
    }
}

#[test]
fn ciphertext_is_not_plaintext_and_keys_differ_per_object() {
    let keys = RootKeys::random();
    let data = vec![0u8; 10_000];
    let a = seal_to_vec(
        Some(&keys),
        &opts(AeadBackend::Portable, 12, &[]),
        &data,
        1 << 20,
    )
    .unwrap();
    let b = seal_to_vec(
        Some(&keys),
        &opts(AeadBackend::Portable, 12, &[]),
        &data,
        1 << 20,
    )
    .unwrap();
    assert_eq!(a.len(), b.len());
    assert_ne!(a, b, "fresh data key and nonce prefix per object");
    assert!(
        !a.windows(64).any(|w| w.iter().all(|&x| x == 0)),
        "zeros leaked into ciphertext"
    );
}

#[test]
fn ranges_at_chunk_boundaries() {
    let keys = RootKeys::random();
    let c = 4096u64;
    let data = pattern(10 * c as usize + 100, 9);
    for &backend in &AeadBackend::available() {
        let obj = seal_to_vec(Some(&keys), &opts(backend, 12, &[]), &data, 3 * c as usize).unwrap();
        let n = data.len() as u64;
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
            let got = open_range_from_slice(&obj, Some(&keys), backend, off, len, 2 * c as usize)
                .unwrap();
            assert_eq!(
                got,
                &data[off as usize..(off + len) as usize],
                "{off}+{len}"
            );
        }
    }
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
    ) {
        let keys = RootKeys::random();
        let data = pattern(len, seed);
        let batch = batch_chunks << shift;
        let backend = AeadBackend::best();
        let obj = seal_to_vec(Some(&keys), &opts(backend, shift, &[]), &data, batch).unwrap();
        let (back, _) = open_from_slice(&obj, Some(&keys), backend, batch).unwrap();
        prop_assert!(back == data);
        if len > 0 {
            let off = r.0 % len as u64;
            let rlen = 1 + r.1 % (len as u64 - off);
            let got = open_range_from_slice(&obj, Some(&keys), backend, off, rlen, batch).unwrap();
            prop_assert!(got == data[off as usize..(off + rlen) as usize]);
        }
    }
}
