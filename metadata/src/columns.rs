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
        "version, state, wrapped, created, retired"
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
        "id, name, namespace_id, encryption, wrapped_key, created, row_version"
    };
}
/// Columns of `tasks`, in the order of each backend's `rows::task` decoder.
macro_rules! task_columns {
    () => {
        "id, kind, state, step, started, ended, outcome, error, previous_master, new_master, \
         new_rotation, master_attempts, row_version, lease_owner, lease_expires, lease_token"
    };
}
/// Columns of `objects`, in the order of each backend's `rows::object` decoder.
macro_rules! object_columns {
    () => {
        "bucket_id, name, object_id, size, created_ms, etag, format, suite, chunk_shift, \
         nonce_prefix, envelope_kind, envelope, meta, row_version"
    };
}
pub(crate) use {
    bucket_columns, master_key_columns, namespace_columns, object_columns, rotation_key_columns,
    store_columns, task_columns,
};
