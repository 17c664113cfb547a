//! Whole-object seal and open (header, metadata, chunks in batches on the rayon pool) of a
//! 16 MiB object with 64 KiB chunks, on pools of 1 and 2 threads: shows how the batch
//! pipeline scales with cores. In memory, so the drive is not measured (`dare bench
//! overhead` does that).
//!
//! `cargo bench -p dare-benches --bench object`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dare_engine::seal::{open_from_slice, seal_to_vec};
use dare_engine::{AeadBackend, SealOptions};
use dare_keys::{Secret32, StoreRootProvider};

const SIZE: usize = 16 << 20;
const BATCH: usize = 4 << 20;

fn bench(c: &mut Criterion) {
    let keys = StoreRootProvider::new(Secret32::from_bytes("bench root", [9; 32]));
    let data = vec![0x5a_u8; SIZE];
    let backend = AeadBackend::best();
    let opts = SealOptions {
        name: "bench",
        chunk_shift: 16,
        meta: &[],
        backend,
    };
    let sealed = seal_to_vec(Some(&keys), &opts, &data, BATCH).unwrap();
    let mut g = c.benchmark_group(format!("object-16MiB/{}", backend.name()));
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(20);
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        g.bench_with_input(BenchmarkId::new("seal", threads), &threads, |b, _| {
            b.iter(|| {
                pool.install(|| black_box(seal_to_vec(Some(&keys), &opts, &data, BATCH).unwrap()))
            })
        });
        g.bench_with_input(BenchmarkId::new("open", threads), &threads, |b, _| {
            b.iter(|| {
                pool.install(|| {
                    black_box(open_from_slice(&sealed, Some(&keys), backend, BATCH).unwrap())
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
