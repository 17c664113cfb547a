//! The CPU a GET spends on encryption: whole GETs of small objects from a plaintext and an
//! encrypted bucket of one store, alternating, page cache warm — so the difference between the
//! two is what the encrypted path computes per request (metadata row, key unwrap, key
//! schedule, metadata-block and chunk verification), without the drive's time, which
//! `dare bench overhead` measures. Each bucket holds more objects than the opened-object cache
//! keeps (1,024), and GETs cycle through them, so every encrypted GET opens its object from
//! scratch, as a cold GET does.
//!
//! At 1 MiB the encrypted GET decrypts on two cores (the overlapped GET's crypto worker and the
//! requesting thread): set against `cargo bench --bench aead`'s single-thread open of 1 MiB,
//! this shows what the overlap's hand-offs cost.
//!
//! `cargo bench -p dare-benches --bench getpath`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dare::{Dare, GetOptions, Options, PutOptions};

/// Objects per bucket and size: twice the opened-object cache for small objects; for 1 MiB,
/// where the decrypt dominates, fewer (the page cache must hold them all).
fn objects(size: usize) -> usize {
    if size <= 65536 { 2048 } else { 64 }
}

fn getpath(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::default();
    opts.data.sync = false; // set-up speed only; GETs never sync
    let d = Dare::create(&dir.path().join("store"), 65536, &opts).unwrap();
    d.create_namespace("plain", false).unwrap();
    d.create_bucket("plain", "plain", Some(false)).unwrap();
    d.create_bucket("enc", dare::DEFAULT_NAMESPACE, Some(true))
        .unwrap();
    const SIZES: [usize; 3] = [4096, 65536, 1 << 20];
    // Every object first, so a profile of one benchmark (`--profile-time`) sees GETs only.
    for size in SIZES {
        let data = vec![0x5a_u8; size];
        for bucket in ["plain", "enc"] {
            for i in 0..objects(size) {
                let mut r = &data[..];
                d.put(
                    bucket,
                    &format!("{size}-{i}"),
                    &mut r,
                    &PutOptions::default(),
                )
                .unwrap();
            }
        }
    }
    for size in SIZES {
        let mut g = c.benchmark_group(format!("get-{}KiB", size >> 10));
        g.throughput(Throughput::Bytes(size as u64));
        for bucket in ["plain", "enc"] {
            let mut i = 0usize;
            g.bench_function(BenchmarkId::from_parameter(bucket), |b| {
                b.iter(|| {
                    i = (i + 1) % objects(size);
                    let obj = d
                        .get(bucket, &format!("{size}-{i}"), &GetOptions::default())
                        .unwrap();
                    let mut n = 0usize;
                    obj.read_all(&mut |b: &[u8]| {
                        n += black_box(b).len();
                        Ok(())
                    })
                    .unwrap();
                    assert_eq!(n, size);
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, getpath);
criterion_main!(benches);
