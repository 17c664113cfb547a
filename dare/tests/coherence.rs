//! Cache coherence between nodes (issue 10 item 4, docs/KEYS.md §9): two handles on one
//! metadata database and one data directory, as two nodes would have them. After node A
//! rotates the keys,
//! - an object A writes under the new rotation key reads on node B at once (a read naming an
//!   unknown key version refreshes B's key snapshot before it fails);
//! - B's own new objects move to the new rotation key within B's refresh interval (plus one
//!   metadata read), the documented bound.
//!
//! Run against SQLite (two connections to one file) and a real PostgreSQL server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dare::{Dare, GetOptions, KeyRef, Options, PutOptions};
use dare_engine::{DiskOptions, DiskVolume, Volume};
use dare_keys::{RootKeyFile, RootOfTrust, Secret32};
use dare_metadata::{Metadata, PostgresMetadata, PostgresOptions, SqliteMetadata, SqliteOptions};
use dare_testkit::PgServer;

const REFRESH: Duration = Duration::from_millis(400);

fn rotation_version(d: &Dare, name: &str) -> u32 {
    match d.head("bkt", name).unwrap().key_ref {
        KeyRef::Hierarchy {
            rotation_version, ..
        } => rotation_version,
        other => panic!("{name}: {other:?}"),
    }
}

fn put(d: &Dare, name: &str, data: &[u8]) {
    d.put("bkt", name, &mut &data[..], &PutOptions::default())
        .unwrap();
}

fn get(d: &Dare, name: &str) -> Vec<u8> {
    d.get("bkt", name, &GetOptions::default())
        .unwrap()
        .to_vec()
        .unwrap()
}

/// Two nodes on the databases `open` makes (each call a new handle with its own
/// connections).
fn two_nodes(open: &dyn Fn() -> Arc<dyn Metadata>) {
    let dir = tempfile::tempdir().unwrap();
    let volume = || -> Arc<dyn Volume> {
        Arc::new(DiskVolume::new(&dir.path().join("objects"), DiskOptions::default()).unwrap())
    };
    let root_key = Secret32::generate("root").unwrap();
    let root = || -> Arc<dyn RootOfTrust> { Arc::new(RootKeyFile::from_secret(root_key.clone())) };
    let mut opts = Options::default();
    opts.keys.refresh_interval = REFRESH;

    let a = Dare::create_parts(open(), volume(), root(), 12, &opts).unwrap();
    a.create_bucket("bkt", dare::DEFAULT_NAMESPACE, None)
        .unwrap();
    let b = Dare::open_parts(open(), volume(), root(), &opts).unwrap();
    put(&b, "before", b"written by B before the rotation");
    assert_eq!(rotation_version(&b, "before"), 1);

    // A rotates. B's snapshot is at most REFRESH old: make it fresh now, so the bound below
    // is measured from the rotation, not from B's last refresh.
    let _ = b.head("bkt", "before").unwrap();
    let id = a.keys().start_rotation().unwrap();
    a.keys().run_rotation(id, &Default::default()).unwrap();
    let rotated = Instant::now();
    put(&a, "from-a", b"written by A under rotation key 2");
    assert_eq!(rotation_version(&a, "from-a"), 2);

    // At once: B reads A's new object although its snapshot may not know version 2 yet.
    assert_eq!(get(&b, "from-a"), b"written by A under rotation key 2");
    assert_eq!(get(&a, "before"), b"written by B before the rotation");

    // Within the bound, B's new objects use rotation key 2.
    let deadline = rotated + REFRESH + Duration::from_millis(100);
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    put(&b, "after", b"written by B after the bound");
    assert_eq!(
        rotation_version(&b, "after"),
        2,
        "B still wraps under the old key"
    );
    assert_eq!(get(&a, "after"), b"written by B after the bound");
}

#[test]
fn sqlite_nodes_see_each_others_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dare.db");
    drop(SqliteMetadata::create(&db, SqliteOptions::default()).unwrap());
    two_nodes(&|| Arc::new(SqliteMetadata::open(&db, SqliteOptions::default()).unwrap()));
}

#[test]
fn postgres_nodes_see_each_others_rotation() {
    let server = PgServer::start();
    let url = server.create_database("coherence");
    two_nodes(&|| Arc::new(PostgresMetadata::open(&url, PostgresOptions::default()).unwrap()));
}
