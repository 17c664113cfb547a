//! Rows to records: column lists, decoders and checked integer conversions.
//!
//! Every u64 goes in through [`int`] (refused above `i64::MAX`); u32 and u8 fields go in
//! widened (bigint, smallint). Every stored integer comes out through a checked conversion:
//! a negative or out-of-range value, a value of an unexpected type, a name that is not UTF-8
//! or a fixed-size bytea of the wrong length can only come from a damaged database or
//! another writer, and is [`MetaError::Corrupt`] naming the column (never its value).

use postgres::Row;
use postgres::types::Type;

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

/// A u64 for a bigint parameter; [`MetaError::Database`] above `i64::MAX` (the caller sent
/// an invalid record).
pub(super) fn int(v: u64, what: &'static str) -> Result<i64, MetaError> {
    i64::try_from(v).map_err(|_| MetaError::Database(format!("{what} is above 2^63 - 1")))
}

/// An optional u64 for a bigint parameter.
pub(super) fn opt_int(v: Option<u64>, what: &'static str) -> Result<Option<i64>, MetaError> {
    v.map(|v| int(v, what)).transpose()
}

/// The record of a `store` row.
pub(super) fn store(r: &Row) -> Result<StoreRecord, MetaError> {
    Ok(StoreRecord {
        store_id: fixed(r, 0)?,
        chunk_shift: num(r, 1)?,
        root_of_trust: text(r, 2)?.to_owned(),
        rt_data_key: bytes(r, 3)?.to_vec(),
        active_master: num(r, 4)?,
        active_rotation: num(r, 5)?,
        key_epoch: num(r, 6)?,
        created: num(r, 7)?,
        row_version: num(r, 8)?,
    })
}

/// The record of a `master_keys` row.
pub(super) fn master_key(r: &Row) -> Result<MasterKeyRecord, MetaError> {
    Ok(MasterKeyRecord {
        version: num(r, 0)?,
        state: MasterState::parse(text(r, 1)?)
            .ok_or_else(|| bad(r, 1, "holds an unknown state"))?,
        wrapped: bytes(r, 2)?.to_vec(),
        created: num(r, 3)?,
        retired: opt_num(r, 4)?,
        root: MasterRoot {
            root_of_trust: opt_text(r, 5)?.map(str::to_owned),
            management: opt_text(r, 6)?.map(str::to_owned),
            key_id: opt_text(r, 7)?.map(str::to_owned),
            rt_wrapped: opt_bytes(r, 8)?.map(<[u8]>::to_vec),
            deactivated: opt_num(r, 9)?,
            deactivation: opt_text(r, 10)?.map(str::to_owned),
        },
    })
}

/// The record of a `rotation_keys` row.
pub(super) fn rotation_key(r: &Row) -> Result<RotationKeyRecord, MetaError> {
    Ok(RotationKeyRecord {
        version: num(r, 0)?,
        master_version: num(r, 1)?,
        wrapped: bytes(r, 2)?.to_vec(),
        created: num(r, 3)?,
        row_version: num(r, 4)?,
    })
}

/// The record of a `namespaces` row.
pub(super) fn namespace(r: &Row) -> Result<NamespaceRecord, MetaError> {
    Ok(NamespaceRecord {
        id: num(r, 0)?,
        name: text(r, 1)?.to_owned(),
        encryption: flag(r, 2)?,
        master_version: num(r, 3)?,
        wrapped_key: bytes(r, 4)?.to_vec(),
        created: num(r, 5)?,
        row_version: num(r, 6)?,
    })
}

/// The record of a `buckets` row.
pub(super) fn bucket(r: &Row) -> Result<BucketRecord, MetaError> {
    Ok(BucketRecord {
        id: num(r, 0)?,
        name: text(r, 1)?.to_owned(),
        namespace_id: num(r, 2)?,
        encryption: flag(r, 3)?,
        wrapped_key: opt_bytes(r, 4)?.map(<[u8]>::to_vec),
        kms_key_id: opt_text(r, 5)?.map(str::to_owned),
        created: num(r, 6)?,
        row_version: num(r, 7)?,
    })
}

/// The record of a `tasks` row.
pub(super) fn task(r: &Row) -> Result<TaskRecord, MetaError> {
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
pub(super) fn object(r: &Row) -> Result<ObjectRecord, MetaError> {
    let name = std::str::from_utf8(bytes(r, 1)?).map_err(|_| bad(r, 1, "is not UTF-8"))?;
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
        envelope: opt_bytes(r, 11)?.map(<[u8]>::to_vec),
        meta: bytes(r, 12)?.to_vec(),
        row_version: num(r, 13)?,
    })
}

/// The record of a `kms_keys` row.
pub(super) fn kms_key(r: &Row) -> Result<KmsKeyRecord, MetaError> {
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
        material_fingerprint: opt_bytes(r, 15)?.map(<[u8]>::to_vec),
        min_decryption_version: num(r, 16)?,
        import: kms_import(r, 17)?,
        deleted_ms: opt_num(r, 22)?,
        row_version: num(r, 23)?,
    })
}

/// The import parameters in the five columns from `i`: all NULL (none) or none NULL.
fn kms_import(r: &Row, i: usize) -> Result<Option<KmsImportParams>, MetaError> {
    let token_id = opt_bytes(r, i)?;
    let algorithm = opt_text(r, i + 1)?;
    let sealed_private_key = opt_bytes(r, i + 2)?;
    let public_key = opt_bytes(r, i + 3)?;
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
pub(super) fn kms_version(r: &Row) -> Result<KmsVersionRecord, MetaError> {
    Ok(KmsVersionRecord {
        key_id: text(r, 0)?.to_owned(),
        version: num(r, 1)?,
        material: opt_bytes(r, 2)?.map(<[u8]>::to_vec),
        created_ms: num(r, 3)?,
        encryptions: num(r, 4)?,
    })
}

/// The record of a `kms_registrations` row.
pub(super) fn kms_registration(r: &Row) -> Result<KmsRegistration, MetaError> {
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
pub(super) fn site(r: &Row) -> Result<SiteRecord, MetaError> {
    Ok(SiteRecord {
        name: text(r, 0)?.to_owned(),
        fingerprint: fixed(r, 1)?,
        public_key: bytes(r, 2)?.to_vec(),
        granted: num(r, 3)?,
    })
}

/// The record of a `site_keys` row.
pub(super) fn site_key(r: &Row) -> Result<SiteKeyRecord, MetaError> {
    Ok(SiteKeyRecord {
        fingerprint: fixed(r, 0)?,
        blob_hash: fixed(r, 1)?,
        wrapped: bytes(r, 2)?.to_vec(),
    })
}

/// The record of a `kms_audit` row.
pub(super) fn kms_audit(r: &Row) -> Result<KmsAuditRecord, MetaError> {
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
        mac: bytes(r, 9)?.to_vec(),
    })
}

/// The `kms_audit_head` row (`seq, mac`).
pub(super) fn kms_audit_head(r: &Row) -> Result<KmsAuditHead, MetaError> {
    Ok(KmsAuditHead {
        seq: num(r, 0)?,
        mac: bytes(r, 1)?.to_vec(),
    })
}

/// A count (`count(*)` is bigint).
pub(super) fn count(r: &Row) -> Result<u64, MetaError> {
    num(r, 0)
}

/// An id returned by an INSERT.
pub(super) fn id(r: &Row) -> Result<u64, MetaError> {
    num(r, 0)
}

/// [`MetaError::Corrupt`] naming column `i`.
fn bad(r: &Row, i: usize, why: &str) -> MetaError {
    let column = r.columns().get(i).map_or("?", |c| c.name());
    MetaError::Corrupt(format!("column {column} {why}"))
}

/// A non-negative integer that fits `T`.
fn num<T: TryFrom<i64>>(r: &Row, i: usize) -> Result<T, MetaError> {
    opt_num(r, i)?.ok_or_else(|| bad(r, i, "is NULL"))
}

/// An integer column of any width (smallint, integer, bigint), checked into `T`.
fn opt_num<T: TryFrom<i64>>(r: &Row, i: usize) -> Result<Option<T>, MetaError> {
    let ty = r.columns().get(i).map(|c| c.type_().clone());
    let v: Option<i64> = match ty {
        Some(Type::INT8) => r.try_get(i).map_err(|_| bad(r, i, "cannot be read"))?,
        Some(Type::INT4) => r
            .try_get::<_, Option<i32>>(i)
            .map_err(|_| bad(r, i, "cannot be read"))?
            .map(i64::from),
        Some(Type::INT2) => r
            .try_get::<_, Option<i16>>(i)
            .map_err(|_| bad(r, i, "cannot be read"))?
            .map(i64::from),
        _ => return Err(bad(r, i, "is not an integer")),
    };
    match v {
        None => Ok(None),
        Some(v) if v >= 0 => T::try_from(v)
            .map(Some)
            .map_err(|_| bad(r, i, "is out of range")),
        Some(_) => Err(bad(r, i, "is negative")),
    }
}

fn flag(r: &Row, i: usize) -> Result<bool, MetaError> {
    r.try_get::<_, Option<bool>>(i)
        .map_err(|_| bad(r, i, "is not a boolean"))?
        .ok_or_else(|| bad(r, i, "is NULL"))
}

fn bytes(r: &Row, i: usize) -> Result<&[u8], MetaError> {
    opt_bytes(r, i)?.ok_or_else(|| bad(r, i, "is NULL"))
}

fn opt_bytes(r: &Row, i: usize) -> Result<Option<&[u8]>, MetaError> {
    r.try_get(i).map_err(|_| bad(r, i, "is not bytea"))
}

fn fixed<const N: usize>(r: &Row, i: usize) -> Result<[u8; N], MetaError> {
    bytes(r, i)?
        .try_into()
        .map_err(|_| bad(r, i, "has the wrong length"))
}

fn text(r: &Row, i: usize) -> Result<&str, MetaError> {
    opt_text(r, i)?.ok_or_else(|| bad(r, i, "is NULL"))
}

fn opt_text(r: &Row, i: usize) -> Result<Option<&str>, MetaError> {
    r.try_get(i).map_err(|_| bad(r, i, "is not text"))
}
