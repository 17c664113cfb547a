//! Helpers shared by the key-store tests: a SQLite metadata database in a temporary directory,
//! and namespace/bucket rows inserted the way the control plane does.
#![allow(dead_code)] // each test binary uses a subset

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use dare_keys::{KeyStore, RootKeyFile, RootOfTrust, Secret32, StoreError, StoreOptions};
use dare_metadata::{
    BucketRecord, By, Metadata, NamespaceRecord, NewBucket, NewNamespace, SqliteMetadata,
    SqliteOptions, read_with, write_with,
};

pub const DB_FILE: &str = "dare.db";

pub fn opts() -> StoreOptions {
    StoreOptions {
        cache_capacity: 64,
        refresh_interval: Duration::ZERO,
    }
}

pub fn root(b: u8) -> Arc<dyn RootOfTrust> {
    Arc::new(RootKeyFile::from_secret(Secret32::from_bytes(
        "root", [b; 32],
    )))
}

/// A new, empty metadata database in `dir`.
pub fn new_db(dir: &Path) -> Arc<dyn Metadata> {
    Arc::new(SqliteMetadata::create(&dir.join(DB_FILE), SqliteOptions::default()).unwrap())
}

/// Another handle on the database in `dir`, as another process would open it.
pub fn open_db(dir: &Path) -> Arc<dyn Metadata> {
    Arc::new(SqliteMetadata::open(&dir.join(DB_FILE), SqliteOptions::default()).unwrap())
}

/// Writes a new store (chunk shift 16) into `meta`, in its own transaction.
pub fn init(meta: &dyn Metadata, root: &dyn RootOfTrust) {
    write_with(
        meta,
        |_: &StoreError| false,
        |tx| KeyStore::create_in(tx, root, [0x5a; 16], 16),
    )
    .unwrap();
}

/// A new database in `dir` with a store, opened.
pub fn new_store(dir: &Path, root: Arc<dyn RootOfTrust>) -> Arc<KeyStore> {
    let meta = new_db(dir);
    init(&*meta, &*root);
    Arc::new(KeyStore::open(meta, root, opts()).unwrap())
}

/// Inserts a namespace row with a key from `store`, as the control plane does.
pub fn add_namespace(store: &KeyStore, name: &str, encryption: bool) -> NamespaceRecord {
    let (master_version, wrapped_key) = store.new_namespace_key().unwrap();
    assert_eq!(wrapped_key.len(), 40);
    write_with(
        &**store.metadata(),
        |_: &StoreError| false,
        |tx| {
            let id = tx.insert_namespace(&NewNamespace {
                id: None,
                name: name.into(),
                encryption,
                master_version,
                wrapped_key: wrapped_key.clone(),
                created: 1,
            })?;
            Ok(tx.namespace(By::Id(id))?.unwrap())
        },
    )
    .unwrap()
}

/// Inserts a bucket row in namespace `ns` (its record as stored now).
pub fn add_bucket(store: &KeyStore, ns: &str, name: &str, encryption: bool) -> BucketRecord {
    let ns = namespace(store, ns);
    let wrapped_key = encryption.then(|| store.new_bucket_key(&ns).unwrap());
    write_with(
        &**store.metadata(),
        |_: &StoreError| false,
        |tx| {
            let id = tx.insert_bucket(&NewBucket {
                id: None,
                name: name.into(),
                namespace_id: ns.id,
                encryption,
                wrapped_key: wrapped_key.clone(),
                kms_key_id: None,
                created: 1,
            })?;
            Ok(tx.bucket(By::Id(id))?.unwrap())
        },
    )
    .unwrap()
}

pub fn namespace(store: &KeyStore, name: &str) -> NamespaceRecord {
    read_with::<_, StoreError>(&**store.metadata(), |tx| Ok(tx.namespace(By::Name(name))?))
        .unwrap()
        .unwrap()
}

pub fn bucket(store: &KeyStore, name: &str) -> BucketRecord {
    read_with::<_, StoreError>(&**store.metadata(), |tx| Ok(tx.bucket(By::Name(name))?))
        .unwrap()
        .unwrap()
}

/// An encrypted namespace `ns1` with one encrypted bucket `bkt1`.
pub fn setup(root: Arc<dyn RootOfTrust>) -> (tempfile::TempDir, Arc<KeyStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = new_store(dir.path(), root);
    add_namespace(&store, "ns1", true);
    add_bucket(&store, "ns1", "bkt1", true);
    (dir, store)
}
