//! Per-object AES-256-GCM key cost: every object has its own data key, so every GET and PUT
//! builds a key schedule (AES round keys and the GHASH key powers), uses it for a chunk or a
//! few, and wipes it. Measured for every engine backend this CPU supports against aws-lc-rs
//! and ring in the same run:
//!
//! - `new+drop`: building the key and dropping it (the engine's wipes its schedule on drop);
//! - `new+seal4K+drop`: the whole cryptographic cost of a one-chunk 4 KiB object;
//! - `new+open4K+drop`: the same for a GET (valid ciphertext opened in place: each iteration
//!   copies it into the working buffer first, in every arm).
//!
//! `cargo bench -p dare-benches --bench keysetup`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use dare_engine::AeadBackend;
use dare_engine::raw::RawAead;

const KEY: [u8; 32] = [0x42; 32];
const NONCE: [u8; 12] = [7; 12];
const AAD: [u8; 32] = [3; 32];
const SIZE: usize = 4096;

type NewDropFn = Box<dyn Fn(&[u8; 32])>;
type SealFn = Box<dyn Fn(&[u8; 32], &mut [u8]) -> [u8; 16]>;
type OpenFn = Box<dyn Fn(&[u8; 32], &mut [u8], &[u8; 16]) -> bool>;

/// One implementation: builds a key, uses it once (or not), drops it.
struct Imp {
    name: String,
    new_drop: NewDropFn,
    seal: SealFn,
    open: OpenFn,
}

fn implementations() -> Vec<Imp> {
    let mut v = Vec::new();
    for b in AeadBackend::available() {
        v.push(Imp {
            name: format!("dare-{}", b.name()),
            new_drop: Box::new(move |k| drop(black_box(RawAead::new(b, k)))),
            seal: Box::new(move |k, buf| RawAead::new(b, k).seal_in_place(&NONCE, &AAD, buf)),
            open: Box::new(move |k, buf, tag| {
                RawAead::new(b, k).open_in_place(&NONCE, &AAD, buf, tag)
            }),
        });
    }
    {
        use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let key = |k: &[u8; 32]| LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k).unwrap());
        v.push(Imp {
            name: "aws-lc-rs".into(),
            new_drop: Box::new(move |k| {
                black_box(key(k));
            }),
            seal: Box::new(move |k, buf| {
                let t = key(k)
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(NONCE),
                        Aad::from(&AAD),
                        buf,
                    )
                    .unwrap();
                t.as_ref().try_into().unwrap()
            }),
            open: Box::new(move |k, buf, tag| {
                // aws-lc-rs opens in place only with the tag after the ciphertext; the
                // separate-tag form is out of place, into a buffer of its own.
                let mut out = [0u8; SIZE];
                key(k)
                    .open_separate_gather(
                        Nonce::assume_unique_for_key(NONCE),
                        Aad::from(&AAD),
                        buf,
                        tag,
                        &mut out[..buf.len()],
                    )
                    .is_ok()
            }),
        });
    }
    {
        use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
        let key = |k: &[u8; 32]| LessSafeKey::new(UnboundKey::new(&AES_256_GCM, k).unwrap());
        v.push(Imp {
            name: "ring".into(),
            new_drop: Box::new(move |k| {
                black_box(key(k));
            }),
            seal: Box::new(move |k, buf| {
                let t = key(k)
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(NONCE),
                        Aad::from(&AAD),
                        buf,
                    )
                    .unwrap();
                t.as_ref().try_into().unwrap()
            }),
            open: Box::new(move |k, buf, tag| {
                key(k)
                    .open_in_place_separate_tag(
                        Nonce::assume_unique_for_key(NONCE),
                        Aad::from(&AAD),
                        Tag::from(*tag),
                        buf,
                        0..,
                    )
                    .is_ok()
            }),
        });
    }
    v
}

fn bench(c: &mut Criterion) {
    let imps = implementations();
    let plain = vec![0x5au8; SIZE];
    let mut sealed = plain.clone();
    let tag = RawAead::new(AeadBackend::Portable, &KEY).seal_in_place(&NONCE, &AAD, &mut sealed);

    let mut g = c.benchmark_group("key");
    for imp in &imps {
        g.bench_function(BenchmarkId::new("new+drop", &imp.name), |b| {
            b.iter(|| (imp.new_drop)(black_box(&KEY)))
        });
    }
    let mut buf = plain.clone();
    for imp in &imps {
        g.bench_function(BenchmarkId::new("new+seal4K+drop", &imp.name), |b| {
            b.iter(|| {
                buf.copy_from_slice(&plain);
                black_box((imp.seal)(black_box(&KEY), &mut buf))
            })
        });
    }
    for imp in &imps {
        assert!(
            (imp.open)(&KEY, &mut sealed.clone(), &tag),
            "{} open",
            imp.name
        );
        g.bench_function(BenchmarkId::new("new+open4K+drop", &imp.name), |b| {
            b.iter(|| {
                buf.copy_from_slice(&sealed);
                black_box((imp.open)(black_box(&KEY), &mut buf, &tag))
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
