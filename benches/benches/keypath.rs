//! Per-object key cost: `new_data_key` + `open_data_key` for each provider, with the
//! hierarchy's derived-key cache on and off (ECS white paper §3: deriving the virtual bucket
//! key per request cost ~10% of S3 TPS). Everything is measured in the same run. With the cache
//! off, each request also reads the bucket's namespace record from the metadata database
//! (SQLite here), as a real deployment does.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dare_keys::{
    CacheMode, CustomerKeyProvider, HierarchyProvider, KeyProvider, KeyStore, RootKeyFile,
    RootOfTrust, RotationOptions, Secret32, StoreError, StoreOptions, StoreRootProvider,
};
use dare_metadata::{
    BucketRecord, By, Metadata, NewBucket, NewNamespace, SqliteMetadata, SqliteOptions, write_with,
};

fn roundtrip(p: &dyn KeyProvider) {
    let (dk, env) = p.new_data_key().expect("new data key");
    let opened = p.open_data_key(&env).expect("open data key");
    assert!(opened == dk);
    black_box(opened);
}

/// An encrypted namespace and bucket, inserted the way the control plane does: keys from the
/// store, rows in one metadata transaction.
fn encrypted_bucket(store: &KeyStore, name: &str) -> BucketRecord {
    let (master_version, wrapped_key) = store.new_namespace_key().expect("namespace key");
    let meta = &**store.metadata();
    let never = |_: &StoreError| false;
    let ns = write_with(meta, never, |tx| {
        let id = tx.insert_namespace(&NewNamespace {
            id: None,
            name: name.into(),
            encryption: true,
            master_version,
            wrapped_key: wrapped_key.clone(),
            created: 0,
        })?;
        Ok(tx.namespace(By::Id(id))?.expect("namespace just inserted"))
    })
    .expect("insert namespace");
    let bk = store.new_bucket_key(&ns).expect("bucket key");
    write_with(meta, never, |tx| {
        let id = tx.insert_bucket(&NewBucket {
            id: None,
            name: name.into(),
            namespace_id: ns.id,
            encryption: true,
            wrapped_key: Some(bk.clone()),
            kms_key_id: None,
            created: 0,
        })?;
        Ok(tx.bucket(By::Id(id))?.expect("bucket just inserted"))
    })
    .expect("insert bucket")
}

fn keypath(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root: Arc<dyn RootOfTrust> = Arc::new(RootKeyFile::from_secret(
        Secret32::generate("root").expect("rng"),
    ));
    let meta: Arc<dyn Metadata> = Arc::new(
        SqliteMetadata::create(&dir.path().join("dare.db"), SqliteOptions::default())
            .expect("create database"),
    );
    write_with(
        &*meta,
        |_: &StoreError| false,
        |tx| KeyStore::create_in(tx, &*root, [0; 16], 16),
    )
    .expect("init");
    // Refresh interval long enough that no database read happens in the loop.
    let opts = StoreOptions {
        cache_capacity: 4096,
        refresh_interval: Duration::from_secs(3600),
    };
    let store = Arc::new(KeyStore::open(meta, root, opts).expect("open"));
    let bucket = encrypted_bucket(&store, "bench");
    // One rotation, so the chain includes a rewrapped rotation key like a real store.
    let id = store.start_rotation().expect("start");
    store
        .run_rotation(id, &RotationOptions::default())
        .expect("rotate");

    let on = HierarchyProvider::new(store.clone(), &bucket, CacheMode::On).expect("provider");
    let off = HierarchyProvider::new(store.clone(), &bucket, CacheMode::Off).expect("provider");
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
    let (_, env) = on.new_data_key().expect("new data key");
    let mut g = c.benchmark_group("keypath/open");
    g.throughput(Throughput::Elements(1));
    g.bench_function("hierarchy cache on", |b| {
        b.iter(|| black_box(on.open_data_key(&env).expect("open")))
    });
    g.bench_function("hierarchy cache off", |b| {
        b.iter(|| black_box(off.open_data_key(&env).expect("open")))
    });
    g.finish();
}

criterion_group!(benches, keypath);
criterion_main!(benches);
