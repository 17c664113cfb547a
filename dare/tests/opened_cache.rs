//! The opened-object cache (`dare/src/opened.rs`, docs/PERFORMANCE.md §10): GETs of a hot
//! object reuse its opener, and nothing stale is ever served from it — an overwrite, a
//! delete, a rotation with rewrap, a deleted bucket and a row changed behind the library's
//! back each make the next GET open the object afresh (or fail as it must).

use std::sync::Arc;

use dare::{Dare, Error, GetOptions, Options, PutOptions};
use dare_engine::{DiskOptions, DiskVolume, OpenError, Volume};
use dare_keys::{CacheMode, RootKeyFile, RootOfTrust, Secret32};
use dare_metadata::{Metadata, SqliteMetadata, SqliteOptions};

fn put(d: &Dare, bucket: &str, name: &str, data: &[u8]) {
    d.put(bucket, name, &mut &data[..], &PutOptions::default())
        .unwrap();
}

fn get(d: &Dare, bucket: &str, name: &str) -> Result<Vec<u8>, Error> {
    d.get(bucket, name, &GetOptions::default())?.to_vec()
}

fn range(d: &Dare, name: &str, off: u64, len: u64) -> Vec<u8> {
    let o = d.get("bkt", name, &GetOptions::default()).unwrap();
    let mut out = Vec::new();
    o.read_range(off, len, &mut |p| {
        out.extend_from_slice(p);
        Ok(())
    })
    .unwrap();
    out
}

struct Store {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    d: Dare,
}

fn store(cache: CacheMode) -> Store {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dare.db");
    let meta: Arc<dyn Metadata> =
        Arc::new(SqliteMetadata::create(&db, SqliteOptions::default()).unwrap());
    let volume: Arc<dyn Volume> =
        Arc::new(DiskVolume::new(&dir.path().join("objects"), DiskOptions::default()).unwrap());
    let root: Arc<dyn RootOfTrust> = Arc::new(RootKeyFile::from_secret(
        Secret32::generate("root").unwrap(),
    ));
    let opts = Options {
        key_cache: cache,
        ..Options::default()
    };
    let d = Dare::create_parts(meta, volume, root, 12, &opts).unwrap();
    d.create_bucket("bkt", dare::DEFAULT_NAMESPACE, None)
        .unwrap();
    Store { _dir: dir, db, d }
}

fn data(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
}

#[test]
fn hot_objects_are_kept_and_ranges_reuse_them() {
    let s = store(CacheMode::On);
    let a = data(50_000, 1);
    put(&s.d, "bkt", "a", &a);
    assert_eq!(s.d.opened_objects(), 0, "a PUT opens nothing");
    assert_eq!(get(&s.d, "bkt", "a").unwrap(), a);
    assert_eq!(
        s.d.opened_objects(),
        0,
        "an object opened once is not kept (admission on the second open)"
    );
    assert_eq!(get(&s.d, "bkt", "a").unwrap(), a);
    assert_eq!(s.d.opened_objects(), 1, "the second open keeps it");
    for (off, len) in [(0, 1), (4095, 2), (10_000, 30_000), (49_999, 1)] {
        assert_eq!(
            range(&s.d, "a", off, len),
            &a[off as usize..(off + len) as usize]
        );
    }
    assert_eq!(s.d.opened_objects(), 1, "range GETs reuse the entry");
    assert_eq!(s.d.opened_cache_stats(), (4, 2));
    // The user metadata comes from the cached (verified) opener too.
    let m = vec![("colour".to_string(), "blue".to_string())];
    s.d.put(
        "bkt",
        "m",
        &mut &b"x"[..],
        &PutOptions {
            meta: m.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    for _ in 0..3 {
        let o = s.d.get("bkt", "m", &GetOptions::default()).unwrap();
        assert_eq!(o.meta(), &m[..]);
    }
    assert_eq!(s.d.opened_objects(), 2);
    assert_eq!(s.d.opened_cache_stats(), (5, 4), "the third GET of m hit");
}

/// GETs that each read a different object once (a cold workload) keep nothing: inserting
/// and evicting every object cost more than the cache saved (docs/PERFORMANCE.md §14).
#[test]
fn objects_read_once_are_not_kept() {
    let s = store(CacheMode::On);
    for i in 0..40 {
        put(&s.d, "bkt", &format!("o{i}"), &data(3_000, i as u8));
    }
    let read_all = || {
        for i in 0..40 {
            assert_eq!(
                get(&s.d, "bkt", &format!("o{i}")).unwrap(),
                data(3_000, i as u8)
            );
        }
    };
    read_all();
    assert_eq!(s.d.opened_objects(), 0);
    assert_eq!(s.d.opened_cache_stats(), (0, 40));
    // Each read twice in a row is admitted on its second open, whatever else shares its
    // doorkeeper set (an earlier open of it may have been pushed out by other objects');
    // a third round then hits every one.
    for i in 0..40 {
        for _ in 0..2 {
            get(&s.d, "bkt", &format!("o{i}")).unwrap();
        }
    }
    assert_eq!(s.d.opened_objects(), 40);
    let (hits, misses) = s.d.opened_cache_stats();
    read_all();
    assert_eq!(s.d.opened_cache_stats(), (hits + 40, misses));
}

#[test]
fn overwrite_and_delete_invalidate() {
    let s = store(CacheMode::On);
    let (v1, v2) = (data(9_000, 1), data(7_000, 2));
    put(&s.d, "bkt", "x", &v1);
    assert_eq!(get(&s.d, "bkt", "x").unwrap(), v1);
    assert_eq!(get(&s.d, "bkt", "x").unwrap(), v1);
    assert_eq!(s.d.opened_objects(), 1);
    put(&s.d, "bkt", "x", &v2);
    assert_eq!(
        s.d.opened_objects(),
        0,
        "the overwrite dropped the old entry"
    );
    assert_eq!(get(&s.d, "bkt", "x").unwrap(), v2);
    assert_eq!(range(&s.d, "x", 100, 5_000), &v2[100..5_100]);
    assert_eq!(s.d.opened_objects(), 1, "the new object, opened twice");
    s.d.delete("bkt", "x").unwrap();
    assert_eq!(s.d.opened_objects(), 0, "the delete dropped the entry");
    assert!(matches!(
        get(&s.d, "bkt", "x"),
        Err(Error::NoSuchObject { .. })
    ));
}

#[test]
fn rotation_and_rewrap_invalidate() {
    let s = store(CacheMode::On);
    let a = data(20_000, 3);
    put(&s.d, "bkt", "a", &a);
    for _ in 0..3 {
        assert_eq!(get(&s.d, "bkt", "a").unwrap(), a);
    }
    assert_eq!(s.d.opened_objects(), 1);
    assert_eq!(
        s.d.opened_cache_stats(),
        (1, 2),
        "the third GET reused the second's"
    );
    let id = s.d.keys().start_rotation().unwrap();
    s.d.keys().run_rotation(id, &Default::default()).unwrap();
    // The rotation bumped the key epoch: the next lookup empties the cache, then re-opens
    // (and, the object being hot, keeps it at once).
    assert_eq!(get(&s.d, "bkt", "a").unwrap(), a);
    assert_eq!(
        s.d.opened_cache_stats(),
        (1, 3),
        "opened afresh after the rotation"
    );
    assert_eq!(s.d.opened_objects(), 1);
    s.d.rewrap("bkt", &mut |_| {}).unwrap();
    // The rewrap changed the row (envelope, row version): the entry no longer matches.
    assert_eq!(range(&s.d, "a", 5, 10), &a[5..15]);
    assert_eq!(
        s.d.opened_cache_stats(),
        (1, 4),
        "opened afresh after the rewrap"
    );
    assert_eq!(range(&s.d, "a", 7, 10), &a[7..17]);
    assert_eq!(s.d.opened_cache_stats(), (2, 4));
    assert_eq!(s.d.opened_objects(), 1);
    match s.d.head("bkt", "a").unwrap().key_ref {
        dare::KeyRef::Hierarchy {
            rotation_version, ..
        } => assert_eq!(rotation_version, 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_row_changed_behind_the_library_is_not_served_from_the_cache() {
    let s = store(CacheMode::On);
    let a = data(5_000, 4);
    put(&s.d, "bkt", "a", &a);
    put(&s.d, "bkt", "b", &data(5_000, 5));
    assert_eq!(get(&s.d, "bkt", "a").unwrap(), a);
    assert_eq!(get(&s.d, "bkt", "a").unwrap(), a);
    assert_eq!(s.d.opened_objects(), 1);
    // Give `a` the sealed metadata block of `b`: its verification must fail on the next GET,
    // as it would without the cache, instead of the cached opener hiding the change.
    let c = rusqlite::Connection::open(&s.db).unwrap();
    let n = c
        .execute(
            "UPDATE objects SET meta = (SELECT meta FROM objects WHERE name = x'62') \
             WHERE name = x'61'",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(c);
    assert!(
        matches!(
            get(&s.d, "bkt", "a"),
            Err(Error::Open(OpenError::HeaderAuth))
        ),
        "a changed row is opened afresh"
    );
}

#[test]
fn deleting_the_bucket_empties_its_entries() {
    let s = store(CacheMode::On);
    s.d.create_bucket("other", dare::DEFAULT_NAMESPACE, None)
        .unwrap();
    put(&s.d, "bkt", "a", b"in bkt");
    put(&s.d, "other", "a", b"in other");
    for _ in 0..2 {
        get(&s.d, "bkt", "a").unwrap();
        get(&s.d, "other", "a").unwrap();
    }
    assert_eq!(s.d.opened_objects(), 2);
    s.d.delete_bucket("bkt", true).unwrap();
    assert_eq!(
        s.d.opened_objects(),
        1,
        "only the other bucket's entry stays"
    );
    assert_eq!(get(&s.d, "other", "a").unwrap(), b"in other");
}

#[test]
fn with_the_key_cache_off_nothing_is_cached() {
    let s = store(CacheMode::Off);
    put(&s.d, "bkt", "a", b"data");
    for _ in 0..3 {
        assert_eq!(get(&s.d, "bkt", "a").unwrap(), b"data");
    }
    assert_eq!(s.d.opened_objects(), 0);
}
