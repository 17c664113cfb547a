//! Rows to records and back: column lists, decoders and checked integer conversions.
//!
//! SQLite stores integers as i64. Every u64 goes in through [`int`] (refused above
//! `i64::MAX`), and every stored integer comes out through a checked conversion: a negative
//! or out-of-range value, a value of the wrong type, a name that is not UTF-8 or a fixed-size
//! blob of the wrong length can only come from a damaged or foreign file, and is
//! [`MetaError::Corrupt`] naming the column (never its value).

use rusqlite::Row;
use rusqlite::types::ValueRef;

use crate::MetaError;
use crate::kms::{
    KmsAuditHead, KmsAuditRecord, KmsImportParams, KmsKeyRecord, KmsKeyState, KmsOrigin,
    KmsRegistration, KmsVersionRecord,
};
use crate::records::{
    BucketRecord, MasterKeyRecord, MasterRoot, MasterState, NamespaceRecord, ObjectRecord,
    RotationKeyRecord, SiteKeyRecord, SiteRecord, StoreRecord, TaskKind, TaskRecord, TaskState,
};

pub(super) use crate::columns::{
    bucket_columns, kms_audit_columns, kms_key_columns, kms_key_written_columns,
    kms_registration_columns, kms_version_columns, master_key_columns, namespace_columns,
    object_columns, rotation_key_columns, site_columns, site_key_columns, store_columns,
    task_columns,
};

/// A u64 for a statement; [`MetaError::Database`] above `i64::MAX` (the caller sent an
/// invalid record).
pub(super) fn int(v: u64, what: &'static str) -> Result<i64, MetaError> {
    i64::try_from(v).map_err(|_| MetaError::Database(format!("{what} is above 2^63 - 1")))
}

/// An optional u64 for a statement.
pub(super) fn opt_int(v: Option<u64>, what: &'static str) -> Result<Option<i64>, MetaError> {
    v.map(|v| int(v, what)).transpose()
}

/// The record of a `store` row.
pub(super) fn store(r: &Row<'_>) -> Result<StoreRecord, MetaError> {
    Ok(StoreRecord {
        store_id: fixed(r, 0)?,
        chunk_shift: num(r, 1)?,
        root_of_trust: text(r, 2)?.to_owned(),
        rt_data_key: blob(r, 3)?.to_vec(),
        active_master: num(r, 4)?,
        active_rotation: num(r, 5)?,
        key_epoch: num(r, 6)?,
        created: num(r, 7)?,
        row_version: num(r, 8)?,
    })
}

/// The record of a `master_keys` row.
pub(super) fn master_key(r: &Row<'_>) -> Result<MasterKeyRecord, MetaError> {
    Ok(MasterKeyRecord {
        version: num(r, 0)?,
        state: MasterState::parse(text(r, 1)?)
            .ok_or_else(|| bad(r, 1, "holds an unknown state"))?,
        wrapped: blob(r, 2)?.to_vec(),
        created: num(r, 3)?,
        retired: opt_num(r, 4)?,
        root: MasterRoot {
            root_of_trust: opt_text(r, 5)?.map(str::to_owned),
            management: opt_text(r, 6)?.map(str::to_owned),
            key_id: opt_text(r, 7)?.map(str::to_owned),
            rt_wrapped: opt_blob(r, 8)?.map(<[u8]>::to_vec),
            deactivated: opt_num(r, 9)?,
            deactivation: opt_text(r, 10)?.map(str::to_owned),
        },
    })
}

/// The record of a `rotation_keys` row.
pub(super) fn rotation_key(r: &Row<'_>) -> Result<RotationKeyRecord, MetaError> {
    Ok(RotationKeyRecord {
        version: num(r, 0)?,
        master_version: num(r, 1)?,
        wrapped: blob(r, 2)?.to_vec(),
        created: num(r, 3)?,
        row_version: num(r, 4)?,
    })
}

/// The record of a `namespaces` row.
pub(super) fn namespace(r: &Row<'_>) -> Result<NamespaceRecord, MetaError> {
    Ok(NamespaceRecord {
        id: num(r, 0)?,
        name: text(r, 1)?.to_owned(),
        encryption: flag(r, 2)?,
        master_version: num(r, 3)?,
        wrapped_key: blob(r, 4)?.to_vec(),
        created: num(r, 5)?,
        row_version: num(r, 6)?,
    })
}

/// The record of a `buckets` row.
pub(super) fn bucket(r: &Row<'_>) -> Result<BucketRecord, MetaError> {
    Ok(BucketRecord {
        id: num(r, 0)?,
        name: text(r, 1)?.to_owned(),
        namespace_id: num(r, 2)?,
        encryption: flag(r, 3)?,
        wrapped_key: opt_blob(r, 4)?.map(<[u8]>::to_vec),
        kms_key_id: opt_text(r, 5)?.map(str::to_owned),
        created: num(r, 6)?,
        row_version: num(r, 7)?,
    })
}

/// The record of a `tasks` row.
pub(super) fn task(r: &Row<'_>) -> Result<TaskRecord, MetaError> {
    Ok(TaskRecord {
        id: num(r, 0)?,
        kind: TaskKind::parse(text(r, 1)?).ok_or_else(|| bad(r, 1, "holds an unknown kind"))?,
        state: TaskState::parse(text(r, 2)?).ok_or_else(|| bad(r, 2, "holds an unknown state"))?,
        step: num(r, 3)?,
        started: num(r, 4)?,
        ended: opt_num(r, 5)?,
        outcome: opt_text(r, 6)?.map(str::to_owned),
        error: opt_text(r, 7)?.map(str::to_owned),
        previous_master: num(r, 8)?,
        new_master: opt_num(r, 9)?,
        new_rotation: opt_num(r, 10)?,
        master_attempts: num(r, 11)?,
        row_version: num(r, 12)?,
        lease_owner: opt_text(r, 13)?.map(str::to_owned),
        lease_expires: opt_num(r, 14)?,
        lease_token: num(r, 15)?,
        target_root: opt_text(r, 16)?.map(str::to_owned),
        updated: opt_num(r, 17)?,
    })
}

/// The record of an `objects` row.
pub(super) fn object(r: &Row<'_>) -> Result<ObjectRecord, MetaError> {
    let name = std::str::from_utf8(blob(r, 1)?).map_err(|_| bad(r, 1, "is not UTF-8"))?;
    Ok(ObjectRecord {
        bucket_id: num(r, 0)?,
        name: name.to_owned(),
        object_id: fixed(r, 2)?,
        size: num(r, 3)?,
        created_ms: num(r, 4)?,
        etag: text(r, 5)?.to_owned(),
        format: num(r, 6)?,
        suite: num(r, 7)?,
        chunk_shift: num(r, 8)?,
        nonce_prefix: fixed(r, 9)?,
        envelope_kind: opt_num(r, 10)?,
        envelope: opt_blob(r, 11)?.map(<[u8]>::to_vec),
        meta: blob(r, 12)?.to_vec(),
        row_version: num(r, 13)?,
    })
}

/// The record of a `kms_keys` row.
pub(super) fn kms_key(r: &Row<'_>) -> Result<KmsKeyRecord, MetaError> {
    Ok(KmsKeyRecord {
        key_id: text(r, 0)?.to_owned(),
        alias: opt_text(r, 1)?.map(str::to_owned),
        description: text(r, 2)?.to_owned(),
        state: KmsKeyState::parse(text(r, 3)?)
            .ok_or_else(|| bad(r, 3, "holds an unknown state"))?,
        origin: KmsOrigin::parse(text(r, 4)?)
            .ok_or_else(|| bad(r, 4, "holds an unknown origin"))?,
        default_key: flag(r, 5)?,
        created_ms: num(r, 6)?,
        rotation_enabled: flag(r, 7)?,
        rotation_days: num(r, 8)?,
        last_rotation_ms: num(r, 9)?,
        rotations: num(r, 10)?,
        last_manual_rotation_ms: opt_num(r, 11)?,
        deletion_due_ms: opt_num(r, 12)?,
        state_before: opt_text(r, 13)?
            .map(|s| KmsKeyState::parse(s).ok_or_else(|| bad(r, 13, "holds an unknown state")))
            .transpose()?,
        material_expires_ms: opt_num(r, 14)?,
        material_fingerprint: opt_blob(r, 15)?.map(<[u8]>::to_vec),
        min_decryption_version: num(r, 16)?,
        import: kms_import(r, 17)?,
        deleted_ms: opt_num(r, 22)?,
        row_version: num(r, 23)?,
    })
}

/// The import parameters in the five columns from `i`: all NULL (none) or none NULL.
fn kms_import(r: &Row<'_>, i: usize) -> Result<Option<KmsImportParams>, MetaError> {
    let token_id = opt_blob(r, i)?;
    let algorithm = opt_text(r, i + 1)?;
    let sealed_private_key = opt_blob(r, i + 2)?;
    let public_key = opt_blob(r, i + 3)?;
    let expires_ms = opt_num(r, i + 4)?;
    match (
        token_id,
        algorithm,
        sealed_private_key,
        public_key,
        expires_ms,
    ) {
        (None, None, None, None, None) => Ok(None),
        (Some(t), Some(a), Some(k), Some(p), Some(e)) => Ok(Some(KmsImportParams {
            token_id: t.to_vec(),
            algorithm: a.to_owned(),
            sealed_private_key: k.to_vec(),
            public_key: p.to_vec(),
            expires_ms: e,
        })),
        _ => Err(bad(r, i, "and the other import columns are partly NULL")),
    }
}

/// The record of a `kms_versions` row.
pub(super) fn kms_version(r: &Row<'_>) -> Result<KmsVersionRecord, MetaError> {
    Ok(KmsVersionRecord {
        key_id: text(r, 0)?.to_owned(),
        version: num(r, 1)?,
        material: opt_blob(r, 2)?.map(<[u8]>::to_vec),
        created_ms: num(r, 3)?,
        encryptions: num(r, 4)?,
    })
}

/// The record of a `kms_registrations` row.
pub(super) fn kms_registration(r: &Row<'_>) -> Result<KmsRegistration, MetaError> {
    Ok(KmsRegistration {
        key_id: text(r, 0)?.to_owned(),
        resource: text(r, 1)?.to_owned(),
        version: num(r, 2)?,
        description: text(r, 3)?.to_owned(),
        created_ms: num(r, 4)?,
        updated_ms: num(r, 5)?,
    })
}

/// The record of a `sites` row.
pub(super) fn site(r: &Row<'_>) -> Result<SiteRecord, MetaError> {
    Ok(SiteRecord {
        name: text(r, 0)?.to_owned(),
        fingerprint: fixed(r, 1)?,
        public_key: blob(r, 2)?.to_vec(),
        granted: num(r, 3)?,
    })
}

/// The record of a `site_keys` row.
pub(super) fn site_key(r: &Row<'_>) -> Result<SiteKeyRecord, MetaError> {
    Ok(SiteKeyRecord {
        fingerprint: fixed(r, 0)?,
        blob_hash: fixed(r, 1)?,
        wrapped: blob(r, 2)?.to_vec(),
    })
}

/// The record of a `kms_audit` row.
pub(super) fn kms_audit(r: &Row<'_>) -> Result<KmsAuditRecord, MetaError> {
    Ok(KmsAuditRecord {
        seq: num(r, 0)?,
        time_ms: num(r, 1)?,
        actor: text(r, 2)?.to_owned(),
        operation: text(r, 3)?.to_owned(),
        key_id: opt_text(r, 4)?.map(str::to_owned),
        version: opt_num(r, 5)?,
        request_id: text(r, 6)?.to_owned(),
        outcome: text(r, 7)?.to_owned(),
        detail: text(r, 8)?.to_owned(),
        mac: blob(r, 9)?.to_vec(),
    })
}

/// The `kms_audit_head` row (`seq, mac`).
pub(super) fn kms_audit_head(r: &Row<'_>) -> Result<KmsAuditHead, MetaError> {
    Ok(KmsAuditHead {
        seq: num(r, 0)?,
        mac: blob(r, 1)?.to_vec(),
    })
}

/// [`MetaError::Corrupt`] naming column `i`.
fn bad(r: &Row<'_>, i: usize, why: &str) -> MetaError {
    let column = r.as_ref().column_name(i).unwrap_or("?");
    MetaError::Corrupt(format!("column {column} {why}"))
}

fn value<'r>(r: &'r Row<'_>, i: usize) -> Result<ValueRef<'r>, MetaError> {
    r.get_ref(i).map_err(|_| bad(r, i, "is missing"))
}

/// A non-negative integer that fits `T`.
fn num<T: TryFrom<i64>>(r: &Row<'_>, i: usize) -> Result<T, MetaError> {
    opt_num(r, i)?.ok_or_else(|| bad(r, i, "is NULL"))
}

fn opt_num<T: TryFrom<i64>>(r: &Row<'_>, i: usize) -> Result<Option<T>, MetaError> {
    match value(r, i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(v) if v >= 0 => T::try_from(v)
            .map(Some)
            .map_err(|_| bad(r, i, "is out of range")),
        ValueRef::Integer(_) => Err(bad(r, i, "is negative")),
        _ => Err(bad(r, i, "is not an integer")),
    }
}

fn flag(r: &Row<'_>, i: usize) -> Result<bool, MetaError> {
    match num::<u8>(r, i)? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(bad(r, i, "is not 0 or 1")),
    }
}

fn blob<'r>(r: &'r Row<'_>, i: usize) -> Result<&'r [u8], MetaError> {
    opt_blob(r, i)?.ok_or_else(|| bad(r, i, "is NULL"))
}

fn opt_blob<'r>(r: &'r Row<'_>, i: usize) -> Result<Option<&'r [u8]>, MetaError> {
    match value(r, i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(b) => Ok(Some(b)),
        _ => Err(bad(r, i, "is not a blob")),
    }
}

fn fixed<const N: usize>(r: &Row<'_>, i: usize) -> Result<[u8; N], MetaError> {
    blob(r, i)?
        .try_into()
        .map_err(|_| bad(r, i, "has the wrong length"))
}

fn text<'r>(r: &'r Row<'_>, i: usize) -> Result<&'r str, MetaError> {
    opt_text(r, i)?.ok_or_else(|| bad(r, i, "is NULL"))
}

fn opt_text<'r>(r: &'r Row<'_>, i: usize) -> Result<Option<&'r str>, MetaError> {
    match value(r, i)? {
        ValueRef::Null => Ok(None),
        ValueRef::Text(b) => std::str::from_utf8(b)
            .map(Some)
            .map_err(|_| bad(r, i, "is not UTF-8")),
        _ => Err(bad(r, i, "is not text")),
    }
}
