//! Per-object key cost: `new_data_key` + `open_data_key` for each provider, with the
//! hierarchy's derived-key cache on and off (ECS white paper §3: deriving the virtual bucket
//! key per request cost ~10% of S3 TPS). Everything is measured in the same run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dare_keys::{
    CacheMode, CustomerKeyProvider, HierarchyProvider, KeyProvider, KeyStore, RootKeyFile,
    Secret32, StoreOptions, StoreRootProvider,
};

fn roundtrip(p: &dyn KeyProvider) {
    let (dk, block) = p.new_data_key().expect("new data key");
    let opened = p.open_data_key(&block).expect("open data key");
    assert!(opened == dk);
    black_box(opened);
}

fn keypath(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Arc::new(RootKeyFile::from_secret(
        Secret32::generate("root").expect("rng"),
    ));
    // Refresh interval long enough that no `stat` of the store file happens in the loop.
    let opts = StoreOptions {
        cache_capacity: 4096,
        refresh_interval: Duration::from_secs(3600),
    };
    let store = KeyStore::init(dir.path(), root, opts).expect("init");
    store.create_namespace("bench", true).expect("namespace");
    store.create_bucket("bench", "bench", None).expect("bucket");
    let store = Arc::new(store);
    // One rotation, so the chain includes a rewrapped rotation key like a real store.
    let id = store.start_rotation().expect("start");
    store.run_rotation(id).expect("rotate");

    let on = HierarchyProvider::new(store.clone(), "bench", CacheMode::On).expect("provider");
    let off = HierarchyProvider::new(store.clone(), "bench", CacheMode::Off).expect("provider");
    let sse_c = CustomerKeyProvider::new(Secret32::generate("ck").expect("rng"));
    let store_root = StoreRootProvider::new(Secret32::generate("root").expect("rng"));

    let mut g = c.benchmark_group("keypath/new+open");
    g.throughput(Throughput::Elements(1));
    g.bench_function("hierarchy cache on", |b| b.iter(|| roundtrip(&on)));
    g.bench_function("hierarchy cache off", |b| b.iter(|| roundtrip(&off)));
    g.bench_function("sse-c", |b| b.iter(|| roundtrip(&sse_c)));
    g.bench_function("store root", |b| b.iter(|| roundtrip(&store_root)));
    g.finish();

    // Read path alone: open an existing object's key.
    let (_, block) = on.new_data_key().expect("new data key");
    let mut g = c.benchmark_group("keypath/open");
    g.throughput(Throughput::Elements(1));
    g.bench_function("hierarchy cache on", |b| {
        b.iter(|| black_box(on.open_data_key(&block).expect("open")))
    });
    g.bench_function("hierarchy cache off", |b| {
        b.iter(|| black_box(off.open_data_key(&block).expect("open")))
    });
    g.finish();
}

criterion_group!(benches, keypath);
criterion_main!(benches);
