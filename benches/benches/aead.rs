//! AES-256-GCM seal and open throughput: every engine backend this CPU supports against
//! aws-lc-rs, ring and RustCrypto `aes-gcm`, in the same run, at 4 KiB, 64 KiB and 1 MiB,
//! on one thread and on two (each thread its own key and buffers). Open decrypts *valid*
//! ciphertext out of place where the API allows (engine, aws-lc-rs, RustCrypto); ring opens in
//! place only, so its open includes a copy of the ciphertext into the working buffer (placed
//! half a page from the source, away from 4K aliasing). `dare bench aead` opens every
//! implementation on the one footing they share: copy, then open in place.
//!
//! The `open_part` group compares, per engine backend, a partial open of a 64 KiB chunk (tag
//! by GHASH over the chunk, AES-CTR over the part only) with the full open of that chunk.
//!
//! `cargo bench -p dare-benches --bench aead` (`-- open_part` for the partial opens only)

use std::hint::black_box;

use aes_gcm::aead::{AeadInOut, KeyInit};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dare_engine::AeadBackend;
use dare_engine::raw::RawAead;

const KEY: [u8; 32] = [0x42; 32];
const NONCE: [u8; 12] = [7; 12];
const AAD: [u8; 32] = [3; 32];
const SIZES: [usize; 3] = [4096, 65536, 1 << 20];

type SealFn = Box<dyn Fn(&mut [u8]) -> [u8; 16] + Send + Sync>;
type OpenFn = Box<dyn Fn(&[u8], &[u8; 16], &mut [u8]) -> bool + Send + Sync>;

fn implementations() -> Vec<(String, SealFn, OpenFn)> {
    let mut v: Vec<(String, SealFn, OpenFn)> = Vec::new();
    for b in AeadBackend::available() {
        let (k1, k2) = (RawAead::new(b, &KEY), RawAead::new(b, &KEY));
        v.push((
            format!("dare-{}", b.name()),
            Box::new(move |buf| k1.seal_in_place(&NONCE, &AAD, buf)),
            Box::new(move |ct, tag, out| k2.open_to(&NONCE, &AAD, ct, out, tag)),
        ));
    }
    {
        use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let k1 = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).unwrap());
        let k2 = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).unwrap());
        v.push((
            "aws-lc-rs".into(),
            Box::new(move |buf| {
                let t = k1
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(NONCE),
                        Aad::from(&AAD),
                        buf,
                    )
                    .unwrap();
                t.as_ref().try_into().unwrap()
            }),
            Box::new(move |ct, tag, out| {
                k2.open_separate_gather(
                    Nonce::assume_unique_for_key(NONCE),
                    Aad::from(&AAD),
                    ct,
                    tag,
                    out,
                )
                .is_ok()
            }),
        ));
    }
    {
        use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
        let k1 = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).unwrap());
        let k2 = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &KEY).unwrap());
        v.push((
            "ring".into(),
            Box::new(move |buf| {
                let t = k1
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(NONCE),
                        Aad::from(&AAD),
                        buf,
                    )
                    .unwrap();
                t.as_ref().try_into().unwrap()
            }),
            Box::new(move |ct, tag, out| {
                out.copy_from_slice(ct);
                let tag = Tag::try_from(&tag[..]).unwrap();
                k2.open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(NONCE),
                    Aad::from(&AAD),
                    tag,
                    out,
                    0..,
                )
                .is_ok()
            }),
        ));
    }
    {
        let k1 = aes_gcm::Aes256Gcm::new(&KEY.into());
        let k2 = aes_gcm::Aes256Gcm::new(&KEY.into());
        v.push((
            "rustcrypto-aes-gcm".into(),
            Box::new(move |buf| {
                k1.encrypt_inout_detached(&NONCE.into(), &AAD, buf.into())
                    .unwrap()
                    .into()
            }),
            Box::new(move |ct, tag, out| {
                let io = aes_gcm::aead::inout::InOutBuf::new(ct, out).unwrap();
                k2.decrypt_inout_detached(&NONCE.into(), &AAD, io, tag.into())
                    .is_ok()
            }),
        ));
    }
    v
}

fn bench(c: &mut Criterion) {
    let imps = implementations();
    for threads in [1usize, 2] {
        for &size in &SIZES {
            let mut g = c.benchmark_group(format!("seal/{threads}t"));
            g.throughput(Throughput::Bytes((size * threads) as u64));
            for (name, seal, _) in &imps {
                g.bench_with_input(BenchmarkId::new(name, size), &size, |b, &size| {
                    b.iter_custom(|iters| {
                        run_threads(threads, iters, size, |buf, _, _| {
                            black_box(seal(buf));
                        })
                    })
                });
            }
            g.finish();
            let mut g = c.benchmark_group(format!("open/{threads}t"));
            g.throughput(Throughput::Bytes((size * threads) as u64));
            for (name, _, open) in &imps {
                g.bench_with_input(BenchmarkId::new(name, size), &size, |b, &size| {
                    b.iter_custom(|iters| {
                        run_threads(threads, iters, size, |ct, tag, out| {
                            assert!(open(black_box(ct), tag, out))
                        })
                    })
                });
            }
            g.finish();
        }
    }
}

/// Runs `iters` operations on each of `threads` threads; returns the wall time of the
/// slowest. Each thread seals its buffer once first, so open sees valid ciphertext.
fn run_threads(
    threads: usize,
    iters: u64,
    size: usize,
    op: impl Fn(&mut [u8], &[u8; 16], &mut [u8]) + Sync,
) -> std::time::Duration {
    let reference_seal = |buf: &mut [u8]| {
        // Valid ciphertext for open, sealed with the reference so every implementation opens
        // the same bytes.
        let k = aes_gcm::Aes256Gcm::new(&KEY.into());
        let t: [u8; 16] = k
            .encrypt_inout_detached(&NONCE.into(), &AAD, buf.into())
            .unwrap()
            .into();
        t
    };
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut buf = vec![0x5a_u8; size];
                    // The output (ring's working buffer) starts half a page from `buf`
                    // modulo 4096: a copy between buffers at the same page offset stalls on
                    // 4K aliasing, which made ring's open look 3-4x slow at 4 and 64 KiB
                    // (PERFORMANCE.md §13.2).
                    let mut work = vec![0u8; size + 4096];
                    let d = (work.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize) % 4096;
                    let at = (2048 + 4096 - d) % 4096;
                    let out = &mut work[at..at + size];
                    let tag = reference_seal(&mut buf);
                    let start = std::time::Instant::now();
                    for _ in 0..iters {
                        op(&mut buf, &tag, out);
                    }
                    start.elapsed()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap_or_default()
    })
}

/// Partial chunk opens for range reads (issue 13): on each engine backend, one 64 KiB chunk,
/// verified whole and decrypted only over a part (`open_part`: GHASH over the chunk, AES-CTR
/// over the part) against the full open of the chunk (`open_in_place`). Both arms open a fresh
/// copy of the valid ciphertext, made outside the timed section (`iter_batched_ref`), so they
/// are on the same footing; `copy-only` times that copy alone. Parts:
/// none (verification only), 4 KiB and 32 KiB at an unaligned offset, the whole chunk.
/// Throughput is the chunk's 64 KiB in every arm, so the reported rates compare directly.
fn bench_open_part(c: &mut Criterion) {
    const CHUNK: usize = 65536;
    const OFF: usize = 12_345;
    let pt = vec![0x5a_u8; CHUNK];
    let mut ct = pt.clone();
    let tag: [u8; 16] = aes_gcm::Aes256Gcm::new(&KEY.into())
        .encrypt_inout_detached(&NONCE.into(), &AAD, ct.as_mut_slice().into())
        .unwrap()
        .into();
    let mut g = c.benchmark_group("open_part");
    g.throughput(Throughput::Bytes(CHUNK as u64));
    for b in AeadBackend::available() {
        let k = RawAead::new(b, &KEY);
        g.bench_function(BenchmarkId::new(format!("dare-{b}"), "full-open"), |bch| {
            bch.iter_batched_ref(
                || ct.clone(),
                |buf| assert!(k.open_in_place(&NONCE, &AAD, buf, &tag)),
                BatchSize::SmallInput,
            )
        });
        let mut buf = ct.clone();
        assert!(k.open_in_place(&NONCE, &AAD, &mut buf, &tag));
        assert_eq!(buf, pt);
        // The copy the arms do not time: on this host a 64 KiB copy cost more than the
        // opens themselves (PERFORMANCE.md §12), so timing it would hide the difference.
        g.bench_function(BenchmarkId::new(format!("dare-{b}"), "copy-only"), |bch| {
            bch.iter(|| buf.copy_from_slice(black_box(&ct)))
        });
        for (name, part) in [
            ("part-0", OFF..OFF),
            ("part-4KiB", OFF..OFF + 4096),
            ("part-32KiB", OFF..OFF + 32768),
            ("part-64KiB", 0..CHUNK),
        ] {
            g.bench_function(BenchmarkId::new(format!("dare-{b}"), name), |bch| {
                bch.iter_batched_ref(
                    || ct.clone(),
                    |buf| assert!(k.open_part(&NONCE, &AAD, buf, &tag, part.clone())),
                    BatchSize::SmallInput,
                )
            });
            let mut buf = ct.clone();
            assert!(k.open_part(&NONCE, &AAD, &mut buf, &tag, part.clone()));
            assert_eq!(buf[part.clone()], pt[part]);
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench, bench_open_part
}
criterion_main!(benches);
