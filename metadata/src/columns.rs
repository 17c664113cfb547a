//! The column lists of every table, in the order both backends' row decoders read them:
//! one list for SQLite and PostgreSQL, which share the schema's column names and order
//! (METADATA.md §2).

/// Columns of `store`, in the order of each backend's `rows::store` decoder.
macro_rules! store_columns {
    () => {
        "store_id, chunk_shift, root_of_trust, rt_data_key, active_master, active_rotation, \
         key_epoch, created, row_version"
    };
}
/// Columns of `master_keys`, in the order of each backend's `rows::master_key` decoder.
macro_rules! master_key_columns {
    () => {
        "version, state, wrapped, created, retired, root_of_trust, management, key_id, \
         rt_wrapped, deactivated, deactivation"
    };
}
/// Columns of `rotation_keys`, in the order of each backend's `rows::rotation_key` decoder.
macro_rules! rotation_key_columns {
    () => {
        "version, master_version, wrapped, created, row_version"
    };
}
/// Columns of `namespaces`, in the order of each backend's `rows::namespace` decoder.
macro_rules! namespace_columns {
    () => {
        "id, name, encryption, master_version, wrapped_key, created, row_version"
    };
}
/// Columns of `buckets`, in the order of each backend's `rows::bucket` decoder.
macro_rules! bucket_columns {
    () => {
        "id, name, namespace_id, encryption, wrapped_key, kms_key_id, created, row_version"
    };
}
/// Columns of `tasks`, in the order of each backend's `rows::task` decoder.
macro_rules! task_columns {
    () => {
        "id, kind, state, step, started, ended, outcome, error, previous_master, new_master, \
         new_rotation, master_attempts, row_version, lease_owner, lease_expires, lease_token, \
         target_root, updated"
    };
}
/// Columns of `objects`, in the order of each backend's `rows::object` decoder.
macro_rules! object_columns {
    () => {
        "bucket_id, name, object_id, size, created_ms, etag, format, suite, chunk_shift, \
         nonce_prefix, envelope_kind, envelope, meta, row_version"
    };
}
/// Columns of `kms_keys`, in the order of each backend's `rows::kms_key` decoder (the fields
/// of `KmsKeyRecord`, its import parameters as five columns).
macro_rules! kms_key_columns {
    () => {
        "key_id, alias, description, state, origin, default_key, created_ms, \
         rotation_enabled, rotation_days, last_rotation_ms, rotations, last_manual_rotation_ms, \
         deletion_due_ms, state_before, material_expires_ms, material_fingerprint, \
         min_decryption_version, import_token_id, import_algorithm, import_private_key, \
         import_public_key, import_expires_ms, deleted_ms, row_version"
    };
}
/// The columns of `kms_keys` that `insert_kms_key` and `update_kms_key` write from the
/// record, in the order of their statements' first 22 parameters: every column but
/// `created_ms` and `row_version`.
macro_rules! kms_key_written_columns {
    () => {
        "key_id, alias, description, state, origin, default_key, rotation_enabled, \
         rotation_days, last_rotation_ms, rotations, last_manual_rotation_ms, deletion_due_ms, \
         state_before, material_expires_ms, material_fingerprint, min_decryption_version, \
         import_token_id, import_algorithm, import_private_key, import_public_key, \
         import_expires_ms, deleted_ms"
    };
}
/// Columns of `kms_versions`, in the order of each backend's `rows::kms_version` decoder.
macro_rules! kms_version_columns {
    () => {
        "key_id, version, material, created_ms, encryptions"
    };
}
/// Columns of `kms_registrations`, in the order of each backend's `rows::kms_registration`
/// decoder.
macro_rules! kms_registration_columns {
    () => {
        "key_id, resource, version, description, created_ms, updated_ms"
    };
}
/// Columns of `kms_audit`, in the order of each backend's `rows::kms_audit` decoder.
macro_rules! kms_audit_columns {
    () => {
        "seq, time_ms, actor, operation, key_id, version, request_id, outcome, detail, mac"
    };
}
/// Columns of `sites`, in the order of each backend's `rows::site` decoder.
macro_rules! site_columns {
    () => {
        "name, fingerprint, public_key, granted"
    };
}
/// Columns of `site_keys`, in the order of each backend's `rows::site_key` decoder.
macro_rules! site_key_columns {
    () => {
        "fingerprint, blob_hash, wrapped"
    };
}
pub(crate) use {
    bucket_columns, kms_audit_columns, kms_key_columns, kms_key_written_columns,
    kms_registration_columns, kms_version_columns, master_key_columns, namespace_columns,
    object_columns, rotation_key_columns, site_columns, site_key_columns, store_columns,
    task_columns,
};
