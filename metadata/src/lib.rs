//! dare-metadata: where dare keeps everything that is not object data.
//!
//! Dell ECS keeps the wrapped object keys in an *object table* and the wrapped key-encryption
//! keys in a *resource table*, both key-value stores, apart from the object data (D@RE white
//! paper §2.1). dare does the same on a real database:
//!
//! - the **resource table**: the store row (store id, chunk size, root-of-trust blob of the RT
//!   data key, active key versions, key epoch), master key versions, rotation key versions,
//!   namespaces and buckets with their wrapped keys, and background tasks (key rotation);
//! - the **object table**: one row per visible object — bucket, name, object id (which names
//!   its data file), size, creation time, ETag, the format parameters, the *envelope* (the
//!   wrapped data key and its key reference) and the encrypted user metadata.
//!
//! Everything is reached through transactions ([`Metadata::read`], [`Metadata::write`]) with
//! typed records ([`records`]). Rows that several writers may change carry a `row_version`;
//! an update names the version it read and fails with [`MetaError::Conflict`] if another
//! writer got there first — never a read-modify-write of a whole table. Ids are allocated by
//! the database and never reused.
//!
//! [`SqliteMetadata`] is the embedded default: one database file in WAL mode, schema versioned
//! with migrations (docs/METADATA.md specifies it column by column). [`PostgresMetadata`]
//! keeps the same tables on a PostgreSQL server, for several nodes sharing one store. The
//! same test suite (`tests/suite/`) runs against every implementation of the trait.
#![deny(unsafe_code)]

mod columns;
mod error;
pub mod kms;
pub mod postgres;
pub mod records;
pub mod sqlite;
mod tx;

pub use error::MetaError;
pub use kms::{
    KmsAuditHead, KmsAuditRecord, KmsBy, KmsImportParams, KmsKeyRecord, KmsKeyState, KmsOrigin,
    KmsRegistration, KmsVersionRecord,
};
pub use records::{
    BucketRecord, MasterKeyRecord, MasterRoot, MasterState, NameRange, NamespaceRecord, NewBucket,
    NewNamespace, NewTask, ObjectRecord, RotationKeyRecord, SiteKeyRecord, SiteRecord, StoreRecord,
    TaskKind, TaskRecord, TaskState,
};
// `self::`: the module shares its name with the `postgres` client crate.
pub use self::postgres::{PostgresMetadata, PostgresOptions};
pub use sqlite::{SqliteMetadata, SqliteOptions};
pub use tx::{By, Metadata, ReadTx, WRITE_ATTEMPTS, WriteTx, read_with, write_with};
