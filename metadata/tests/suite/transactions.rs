//! Atomicity, snapshots and concurrent writers.

use super::*;

// Transactions

pub fn rollback_on_drop(f: &Fixture) {
    let db = &*f.db;
    let b = seed_bucket(db);
    {
        let mut tx = db.write().expect("begin");
        tx.insert_namespace(&new_namespace("ghost"))
            .expect("insert");
        tx.put_object(&object(b, "ghost", 1)).expect("put");
        let s = tx.store().expect("store").expect("row");
        tx.update_store(&StoreRecord { key_epoch: 42, ..s })
            .expect("update");
        // Visible inside the transaction itself.
        assert!(tx.object(b, "ghost").expect("read").is_some());
    }
    read(db, |tx| {
        assert_eq!(tx.namespace(By::Name("ghost"))?, None);
        assert_eq!(tx.object(b, "ghost")?, None);
        assert_eq!(tx.store()?.map(|s| s.key_epoch), Some(0));
        Ok(())
    });
    // The handle is still usable for writes (nothing was left open).
    put(db, b, &["real"]);
    assert_eq!(read(db, |tx| tx.object_count(b)), 1);
}

pub fn commit_is_visible(f: &Fixture) {
    let db = &*f.db;
    let b = seed_bucket(db);
    let other = (f.reopen)();
    let mut tx = db.write().expect("begin");
    tx.put_object(&object(b, "new", 1)).expect("put");
    // Not visible before the commit, to this handle or another.
    assert_eq!(read(&*other, |r| r.object(b, "new")), None);
    tx.commit().expect("commit");
    assert!(read(db, |r| r.object(b, "new")).is_some());
    assert!(read(&*other, |r| r.object(b, "new")).is_some());
}

/// A read transaction pins one snapshot while a writer on `writer` commits.
fn snapshot_survives(reader: &dyn Metadata, writer: &dyn Metadata, b: u64) {
    put(writer, b, &["a", "b"]);
    let mut r = reader.read().expect("begin read");
    let store = r.store().expect("store").expect("row");
    let listed = r.objects(b, NameRange::default(), 100).expect("list");
    assert_eq!(names(&listed), ["a", "b"]);

    write(writer, |tx| {
        tx.update_store(&StoreRecord {
            key_epoch: 7,
            ..store.clone()
        })?;
        tx.put_object(&object(b, "c", 3))?;
        tx.delete_object(b, "a")?;
        tx.insert_namespace(&new_namespace("later"))
    });

    assert_eq!(r.store().expect("store"), Some(store.clone()));
    assert_eq!(
        r.objects(b, NameRange::default(), 100).expect("list"),
        listed
    );
    assert_eq!(r.object_count(b).expect("count"), 2);
    assert_eq!(r.namespace(By::Name("later")).expect("ns"), None);
    drop(r);

    read(reader, |tx| {
        assert_eq!(tx.store()?.map(|s| s.key_epoch), Some(7));
        assert_eq!(
            names(&tx.objects(b, NameRange::default(), 100)?),
            ["b", "c"]
        );
        Ok(())
    });
}

pub fn read_keeps_its_snapshot_across_handles(f: &Fixture) {
    let b = seed_bucket(&*f.db);
    let other = (f.reopen)();
    snapshot_survives(&*f.db, &*other, b);
}

pub fn read_keeps_its_snapshot_on_one_handle(f: &Fixture) {
    let b = seed_bucket(&*f.db);
    snapshot_survives(&*f.db, &*f.db, b);
}

// ---------------------------------------------------------------------------------------
// Concurrency

const THREADS: usize = 2;
const PER_THREAD: usize = 200;

/// Each writer inserts `PER_THREAD` buckets and bumps the store's key epoch (a read, then a
/// CAS update) as many times; nothing may be lost.
fn concurrent_writers(handles: &[&dyn Metadata]) {
    let db = handles[0];
    seed(db);
    let ns = write(db, |tx| tx.insert_namespace(&new_namespace("ns")));
    std::thread::scope(|s| {
        for (t, h) in handles.iter().enumerate() {
            let h = *h;
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let name = format!("t{t}-{i}");
                    write(h, |tx| tx.insert_bucket(&new_bucket(ns, &name)));
                    write(h, |tx| {
                        let s = tx.store()?.expect("store");
                        tx.update_store(&StoreRecord {
                            key_epoch: s.key_epoch + 1,
                            ..s
                        })
                    });
                }
            });
        }
    });
    let total = handles.len() * PER_THREAD;
    let buckets = read(db, |tx| tx.buckets(Some(ns)));
    assert_eq!(buckets.len(), total);
    let mut ids: Vec<u64> = buckets.iter().map(|b| b.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), total);
    let store = read(db, |tx| tx.store()).expect("store");
    assert_eq!(store.key_epoch, total as u64);
    assert_eq!(store.row_version, 1 + total as u64);
}

pub fn writers_on_threads_lose_nothing(f: &Fixture) {
    let handles: Vec<&dyn Metadata> = vec![&*f.db; THREADS];
    concurrent_writers(&handles);
}

pub fn writers_on_handles_lose_nothing(f: &Fixture) {
    let others: Vec<Box<dyn Metadata>> = (1..THREADS).map(|_| (f.reopen)()).collect();
    let mut handles: Vec<&dyn Metadata> = vec![&*f.db];
    handles.extend(others.iter().map(|o| &**o));
    concurrent_writers(&handles);
}
