//! Import of a key store made by the previous release (key store file format 1).
//!
//! Before foundation v2 the resource table was one file, `<store>/keystore.dat` (KEYS.md §6 of
//! format 1: a 52-byte header with a SHA-256 checksum, then the table as JSON), rewritten whole
//! under a `flock`. This module only *reads* that file: [`import_v1`] validates it exactly as
//! the previous release did on every load (framing, checksum, JSON with no unknown field, the
//! table invariants; every defect a typed error, never a panic) and copies its records into a
//! metadata write transaction, once, during migration.
//!
//! Namespace, bucket and task ids are kept: namespace and bucket ids are bound into every
//! hierarchy envelope and into the virtual bucket key derivation (KEYS.md §3.2, §4.2), so
//! existing objects open only under the same ids. Key versions, wrapped keys, master states
//! and the key epoch are copied verbatim; nothing is unwrapped, so no root of trust is needed.

mod file;
mod table;

use std::collections::BTreeMap;
use std::path::Path;

use dare_metadata::{
    MasterKeyRecord, NewBucket, NewNamespace, NewTask, RotationKeyRecord, StoreRecord, TaskKind,
    WriteTx,
};

use crate::StoreError;

/// Name of the format-1 store file inside a store directory.
pub const STORE_FILE: &str = "keystore.dat";
/// The key store file format version this module reads.
pub const FORMAT_VERSION: u32 = 1;

/// What [`import_v1`] copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacySummary {
    /// Master key versions imported.
    pub master_keys: usize,
    /// Rotation key versions imported.
    pub rotation_keys: usize,
    /// Namespaces imported (with their ids).
    pub namespaces: usize,
    /// Every bucket imported: name → id (object files of format 1 live under the name).
    pub buckets: BTreeMap<String, u64>,
    /// Rotation tasks imported (their history; at most one unfinished).
    pub tasks: usize,
}

/// Whether `dir` holds a format-1 key store file (`keystore.dat`).
pub fn has_v1_store(dir: &Path) -> bool {
    dir.join(STORE_FILE).is_file()
}

/// Parses and validates the bytes of a format-1 key store file without importing them: `Ok`
/// exactly when [`import_v1`] would accept the file.
pub fn check_v1_file(bytes: &[u8]) -> Result<(), StoreError> {
    file::decode(bytes).map(|_| ())
}

/// Reads and validates `dir/keystore.dat` and writes its records into `tx`: the store row
/// (with the given new `store_id` and `chunk_shift`; root of trust, RT data key blob, creation
/// time, active versions and key epoch from the file; row version 1), every master key,
/// rotation key, namespace and bucket with its id, and every rotation task with its fields.
/// The caller commits (and moves object files using [`LegacySummary::buckets`]).
///
/// Fails with [`StoreError::NotFound`] without a store file, [`StoreError::Corrupt`] or
/// [`StoreError::UnsupportedFormat`] for a file the previous release would have refused too,
/// and [`StoreError::AlreadyInitialized`] when `tx` already holds a store.
pub fn import_v1(
    dir: &Path,
    tx: &mut dyn WriteTx,
    store_id: [u8; 16],
    chunk_shift: u8,
) -> Result<LegacySummary, StoreError> {
    let t = file::read(dir)?;
    if tx.store()?.is_some() {
        return Err(StoreError::AlreadyInitialized(
            "the metadata database".to_string(),
        ));
    }
    tx.insert_store(&StoreRecord {
        store_id,
        chunk_shift,
        root_of_trust: t.root_of_trust.clone(),
        rt_data_key: t.rt_data_key.wrapped.0.clone(),
        active_master: t.active_master,
        active_rotation: t.active_rotation,
        key_epoch: t.key_epoch,
        created: t.created,
        row_version: 1,
    })?;
    for m in &t.masters {
        tx.insert_master_key(&MasterKeyRecord {
            version: m.version,
            state: m.state.into(),
            wrapped: m.wrapped.0.clone(),
            created: m.created,
            retired: m.retired,
            root: Default::default(),
        })?;
    }
    for r in &t.rotation_keys {
        tx.insert_rotation_key(&RotationKeyRecord {
            version: r.version,
            master_version: r.master_version,
            wrapped: r.wrapped.0.clone(),
            created: r.created,
            row_version: 1,
        })?;
    }
    for n in &t.namespaces {
        let id = tx.insert_namespace(&NewNamespace {
            id: Some(n.id),
            name: n.name.clone(),
            encryption: n.encryption,
            master_version: n.master_version,
            wrapped_key: n.wrapped_key.0.clone(),
            created: n.created,
        })?;
        check_id("namespace", n.id, id)?;
    }
    let mut buckets = BTreeMap::new();
    for b in &t.buckets {
        let id = tx.insert_bucket(&NewBucket {
            id: Some(b.id),
            name: b.name.clone(),
            namespace_id: b.namespace_id,
            encryption: b.encryption,
            wrapped_key: b.wrapped_key.as_ref().map(|k| k.0.clone()),
            kms_key_id: None,
            created: b.created,
        })?;
        check_id("bucket", b.id, id)?;
        buckets.insert(b.name.clone(), id);
    }
    // Oldest first, each brought to its saved state before the next is inserted: the database
    // allows one unfinished task per kind, and the file held at most one.
    let mut tasks: Vec<_> = t.tasks.iter().collect();
    tasks.sort_by_key(|x| x.id);
    for old in tasks {
        let id = tx.insert_task(&NewTask {
            id: Some(old.id),
            kind: TaskKind::Rotation,
            started: old.started,
            previous_master: old.previous_master,
            target_root: None,
        })?;
        check_id("rotation task", old.id, id)?;
        let mut rec = tx.task(id)?.ok_or(StoreError::NotFound {
            what: "rotation task",
            name: id.to_string(),
        })?;
        rec.state = old.state.into();
        rec.step = old.step;
        rec.ended = old.ended;
        rec.outcome = old.outcome.clone();
        rec.error = old.error.clone();
        rec.new_master = old.new_master;
        rec.new_rotation = old.new_rotation;
        rec.master_attempts = old.master_attempts;
        tx.update_task(&rec)?;
    }
    Ok(LegacySummary {
        master_keys: t.masters.len(),
        rotation_keys: t.rotation_keys.len(),
        namespaces: t.namespaces.len(),
        buckets,
        tasks: t.tasks.len(),
    })
}

/// The metadata must keep imported ids: they are bound into existing envelopes.
fn check_id(what: &str, want: u64, got: u64) -> Result<(), StoreError> {
    if want == got {
        Ok(())
    } else {
        Err(StoreError::Corrupt(format!(
            "the metadata database gave imported {what} {want} the id {got}; envelopes name {want}"
        )))
    }
}

#[cfg(any(test, feature = "fuzzing"))]
/// Decode, and if valid check that encoding and decoding again gives the same table.
pub(crate) fn fuzz_roundtrip(bytes: &[u8]) {
    if let Ok(t) = file::decode(bytes) {
        let again = file::encode(&t).and_then(|b| file::decode(&b));
        assert!(
            matches!(again, Ok(ref t2) if *t2 == t),
            "valid store did not round-trip"
        );
    }
}
