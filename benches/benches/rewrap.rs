//! Rewrapping envelopes after a key rotation, on the embedded SQLite metadata database: how
//! many object envelopes per second `Dare::rewrap` moves to the new rotation version (one
//! RFC 5649 unwrap and wrap each, swapped in the object table 1000 per transaction; no data
//! file is touched). Each iteration first rotates the keys, so every envelope is stale again.
//!
//! `cargo bench -p dare-benches --bench rewrap`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dare::{Dare, Options};
use dare_envelope::KeyProvider;
use dare_keys::HierarchyProvider;
use dare_metadata::{By, ObjectRecord, read_with, write_with};

const OBJECTS: u64 = 20_000;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Dare::create(&dir.path().join("store"), 65536, &Options::default()).expect("create");
    d.create_bucket("bkt", "default", None).expect("bucket");
    let b = read_with(&**d.metadata(), |tx| tx.bucket(By::Name("bkt")))
        .expect("read")
        .expect("bucket row");
    let provider =
        HierarchyProvider::new(d.keys().clone(), &b, dare_keys::CacheMode::On).expect("provider");
    // Rows with real envelopes (the data files do not matter to a rewrap).
    for chunk in 0..OBJECTS / 1000 {
        write_with(
            &**d.metadata(),
            |_: &dare_metadata::MetaError| false,
            |tx| {
                for i in 0..1000 {
                    let n = chunk * 1000 + i;
                    let (_, env) = provider.new_data_key().expect("data key");
                    let mut object_id = [0u8; 16];
                    object_id[..8].copy_from_slice(&n.to_le_bytes());
                    tx.put_object(&ObjectRecord {
                        bucket_id: b.id,
                        name: format!("objects/{n:08}"),
                        object_id,
                        size: 0,
                        created_ms: 0,
                        etag: String::new(),
                        format: 2,
                        suite: 1,
                        chunk_shift: 16,
                        nonce_prefix: [1; 7],
                        envelope_kind: Some(env.kind.to_byte()),
                        envelope: Some(env.bytes),
                        meta: vec![0; 18],
                        row_version: 1,
                    })?;
                }
                Ok(())
            },
        )
        .expect("insert rows");
    }
    let mut g = c.benchmark_group("rewrap-sqlite");
    g.throughput(Throughput::Elements(OBJECTS));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("envelopes", |bch| {
        bch.iter_batched(
            || {
                let id = d.keys().start_rotation().expect("start");
                d.keys()
                    .run_rotation(id, &Default::default())
                    .expect("rotate");
            },
            |()| {
                let r = d.rewrap("bkt", &mut |_| {}).expect("rewrap");
                assert_eq!(r.rewrapped, OBJECTS);
                black_box(r)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
