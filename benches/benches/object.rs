//! Whole-object seal and open (format 2: data file header, chunks in batches on the rayon
//! pool; the metadata block and its check included) of a 16 MiB object with 64 KiB chunks, on
//! pools of 1 and 2 threads: shows how the batch pipeline scales with cores. In memory, so the
//! drive is not measured (`dare bench overhead` does that). Opening decrypts valid ciphertext.
//!
//! `cargo bench -p dare-benches --bench object`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dare_engine::pipeline::{open_from_slice, seal_to_vec};
use dare_engine::{
    AeadBackend, ObjectIdentity, ObjectOpener, ObjectParams, ObjectSealer, Protection,
};
use dare_envelope::DataKey;

const SIZE: usize = 16 << 20;
const BATCH: usize = 4 << 20;
const SHIFT: u8 = 16;

fn bench(c: &mut Criterion) {
    let key = DataKey::from_bytes([9; 32]);
    let id = ObjectIdentity {
        store_id: [1; 16],
        bucket_id: 1,
        object_id: [2; 16],
        name: "bench",
    };
    let data = vec![0x5a_u8; SIZE];
    let backend = AeadBackend::best();
    let seal = || {
        let mut s = ObjectSealer::new(&id, Protection::Encrypted(&key), SHIFT, backend).unwrap();
        let meta_block = s.seal_meta(&[]).unwrap();
        let file = seal_to_vec(&mut s, &data, BATCH).unwrap();
        (s, meta_block, file)
    };
    let (sealer, meta_block, file) = seal();
    let etag = sealer.summary().unwrap().etag;
    let params = ObjectParams {
        suite: sealer.suite(),
        chunk_shift: SHIFT,
        nonce_prefix: sealer.nonce_prefix(),
        size: SIZE as u64,
        meta_block: &meta_block,
        etag: &etag,
    };
    let mut g = c.benchmark_group(format!("object-16MiB/{}", backend.name()));
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(20);
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        g.bench_with_input(BenchmarkId::new("seal", threads), &threads, |b, _| {
            b.iter(|| pool.install(|| black_box(seal())))
        });
        g.bench_with_input(BenchmarkId::new("open", threads), &threads, |b, _| {
            b.iter(|| {
                pool.install(|| {
                    let o = ObjectOpener::new(&id, &params, Some(&key), backend).unwrap();
                    black_box(open_from_slice(&o, &file, BATCH).unwrap())
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
