//! The conformance suite of the [`Metadata`] trait, written once and run against every
//! implementation (as ripgrep's `rgtest!` runs each test under every engine).
//!
//! A backend's test file declares `#[macro_use] mod suite;` and invokes
//! `metadata_suite!(backend_name, fixture_expression)`; the expression is evaluated once per
//! test and must give a fresh, empty database (schema applied, no store row) in a
//! [`Fixture`]. Nothing here knows which database is behind the trait; errors are matched by
//! variant, and `what`/`name` only where the trait's documentation fixes them.

#![allow(dead_code)] // Each backend's test crate uses every item through the macro.

use std::any::Any;

mod kms;
mod objects;
mod records;
mod sites;
mod transactions;

pub use kms::*;
pub use objects::*;
pub use records::*;
pub use sites::*;
pub use transactions::*;

use dare_metadata::{
    BucketRecord, By, MasterKeyRecord, MasterState, MetaError, Metadata, NameRange,
    NamespaceRecord, NewBucket, NewNamespace, NewTask, ObjectRecord, ReadTx, RotationKeyRecord,
    StoreRecord, TaskKind, TaskRecord, TaskState, WriteTx, read_with, write_with,
};

/// A fresh database under test.
pub struct Fixture {
    /// The database.
    pub db: Box<dyn Metadata>,
    /// Opens another handle on the same database, with connections of its own (as a second
    /// process would).
    pub reopen: Box<dyn Fn() -> Box<dyn Metadata>>,
    /// Whatever the database lives in (a temporary directory, a server schema), dropped last.
    pub keep: Box<dyn Any>,
}

/// Expands to one `#[test]` per suite function, in a module named after the backend.
macro_rules! metadata_suite {
    ($backend:ident, $fixture:expr) => {
        metadata_suite!(@tests $backend, $fixture, [
            store_round_trip,
            master_keys_round_trip,
            rotation_keys_round_trip,
            namespaces_round_trip,
            buckets_round_trip,
            tasks_round_trip,
            objects_round_trip,
            ids_are_never_reused,
            imported_ids_are_kept,
            names_are_unique,
            cas_conflicts_change_nothing,
            missing_rows,
            invalid_records_are_refused,
            rollback_on_drop,
            commit_is_visible,
            read_keeps_its_snapshot_across_handles,
            read_keeps_its_snapshot_on_one_handle,
            objects_sort_bytewise,
            object_ranges,
            object_ranges_after_is_raw_bytes,
            object_pages_and_count,
            put_object_returns_the_replaced_row,
            swap_envelope_is_a_cas,
            delete_object_returns_the_row,
            delete_bucket_removes_its_objects,
            delete_namespace_refused_while_it_holds_buckets,
            one_open_task_per_kind,
            writers_on_threads_lose_nothing,
            writers_on_handles_lose_nothing,
            kms_keys_round_trip,
            kms_ids_and_aliases_are_unique,
            kms_key_cas_conflicts_change_nothing,
            kms_invalid_records_are_refused,
            kms_versions_round_trip,
            kms_registrations_round_trip,
            kms_audit_appends_and_moves_the_head,
            kms_audit_appenders_lose_nothing,
            update_bucket_is_a_cas,
            sites_round_trip,
        ]);
    };
    (@tests $backend:ident, $fixture:expr, [$($test:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[test]
                fn $test() {
                    let fixture = $fixture;
                    crate::suite::$test(&fixture);
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------------------
// Helpers

/// Runs `f` in a write transaction and commits it; panics on error.
pub fn write<T>(db: &dyn Metadata, f: impl FnMut(&mut dyn WriteTx) -> Result<T, MetaError>) -> T {
    write_with(db, MetaError::is_retryable, f).expect("write transaction")
}

/// Runs `f` in a read transaction; panics on error.
pub fn read<T>(db: &dyn Metadata, f: impl FnOnce(&mut dyn ReadTx) -> Result<T, MetaError>) -> T {
    read_with(db, f).expect("read transaction")
}

/// Runs `f` in a write transaction that is dropped, not committed, and returns its error.
fn fails<T: std::fmt::Debug>(
    db: &dyn Metadata,
    f: impl FnOnce(&mut dyn WriteTx) -> Result<T, MetaError>,
) -> MetaError {
    let mut tx = db.write().expect("begin");
    f(&mut *tx).expect_err("the change should fail")
}

fn store_record() -> StoreRecord {
    StoreRecord {
        store_id: [7; 16],
        chunk_shift: 16,
        root_of_trust: "passphrase".into(),
        rt_data_key: vec![0xa5; 60],
        active_master: 1,
        active_rotation: 1,
        key_epoch: 0,
        created: 1_700_000_000,
        row_version: 1,
    }
}

fn master_key(version: u32, state: MasterState) -> MasterKeyRecord {
    MasterKeyRecord {
        version,
        state,
        wrapped: vec![version as u8; 60],
        created: 1_700_000_000 + u64::from(version),
        retired: None,
        root: Default::default(),
    }
}

fn rotation_key(version: u32, master_version: u32) -> RotationKeyRecord {
    RotationKeyRecord {
        version,
        master_version,
        wrapped: vec![0x40 + version as u8; 40],
        created: 1_700_000_100,
        row_version: 1,
    }
}

/// The store row, master key 1 and rotation key 1: what every namespace needs.
pub fn seed(db: &dyn Metadata) {
    write(db, |tx| {
        tx.insert_store(&store_record())?;
        tx.insert_master_key(&master_key(1, MasterState::Active))?;
        tx.insert_rotation_key(&rotation_key(1, 1))
    });
}

fn new_namespace(name: &str) -> NewNamespace {
    NewNamespace {
        id: None,
        name: name.into(),
        encryption: true,
        master_version: 1,
        wrapped_key: vec![0x11; 40],
        created: 1_700_000_200,
    }
}

fn new_bucket(namespace_id: u64, name: &str) -> NewBucket {
    NewBucket {
        id: None,
        name: name.into(),
        namespace_id,
        encryption: true,
        wrapped_key: Some(vec![0x22; 40]),
        kms_key_id: None,
        created: 1_700_000_300,
    }
}

/// Seeds the store and makes one namespace with one bucket; returns the bucket's id.
pub fn seed_bucket(db: &dyn Metadata) -> u64 {
    seed(db);
    write(db, |tx| {
        let ns = tx.insert_namespace(&new_namespace("ns"))?;
        tx.insert_bucket(&new_bucket(ns, "bucket"))
    })
}

pub fn object(bucket_id: u64, name: &str, n: u8) -> ObjectRecord {
    ObjectRecord {
        bucket_id,
        name: name.into(),
        object_id: [n; 16],
        size: 1 << 20,
        created_ms: 1_700_000_000_123,
        etag: format!("\"etag-{n}\""),
        format: 2,
        suite: 1,
        chunk_shift: 16,
        nonce_prefix: [n ^ 0x5a; 7],
        envelope_kind: Some(1),
        envelope: Some(vec![n; 48]),
        meta: vec![n; 29],
        row_version: 1,
    }
}

pub fn put(db: &dyn Metadata, bucket_id: u64, names: &[&str]) {
    write(db, |tx| {
        for (i, name) in names.iter().enumerate() {
            tx.put_object(&object(bucket_id, name, i as u8))?;
        }
        Ok(())
    });
}

fn names(objects: &[ObjectRecord]) -> Vec<&str> {
    objects.iter().map(|o| o.name.as_str()).collect()
}

fn list(db: &dyn Metadata, bucket_id: u64, range: NameRange<'_>, limit: usize) -> Vec<String> {
    read(db, |tx| tx.objects(bucket_id, range, limit))
        .into_iter()
        .map(|o| o.name)
        .collect()
}

fn sorted_bytewise(names: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    v.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    v
}
