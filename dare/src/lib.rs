//! dare: data-at-rest encryption for object storage — the control plane.
//!
//! This is the library a storage system embeds and that the `dare` command and (next) the S3
//! endpoint call. It owns namespaces, buckets and objects and their encryption policy, key
//! rotation and rewrap, listing, fsck and backup; it ties together the crates below.
//!
//! # Layout
//!
//! ```text
//! dare (this crate)  control plane: [`Dare`] — namespaces, buckets, objects, policy, tasks
//!  ├─ dare-metadata  the resource table and object table behind one transactional trait
//!  │                 (SQLite embedded by default, or PostgreSQL)      docs/METADATA.md
//!  ├─ dare-keys      key hierarchy (ECS: master → namespace → bucket, virtual keys), roots
//!  │                 of trust, rotation, SSE-C, the derived-key cache  docs/KEYS.md
//!  ├─ dare-kms       key management service: customer master keys, data keys, import,
//!  │                 audit trail, SSE-KMS bucket keys ([`Dare::kms`])   docs/KMS.md
//!  ├─ dare-hsm       the PKCS#11 HSM root of trust ([`Root::Pkcs11`])  docs/KEYS.md §5.4
//!  ├─ dare-engine    data plane: chunked AES-256-GCM, CPU-dispatched kernels, io_uring
//!  │                 pipelines, the data-file volume                  docs/FORMAT.md
//!  └─ dare-envelope  the only key types the data plane sees: data keys, envelopes, providers
//! ```
//!
//! A store directory holds `dare.db` (metadata), `objects/` (data files named by object id)
//! and `root.key` (unless a passphrase or a PKCS#11 HSM key protects the store); see
//! [`layout`]. Several nodes share one store through a PostgreSQL metadata database
//! ([`MetadataLocation::Postgres`]) and a store directory on a shared filesystem, which then
//! holds `metadata.json` instead of `dare.db` (docs/METADATA.md §8, docs/NODES.md).
//!
//! # The data path
//!
//! **PUT** ([`Dare::put`], [`object`]): look the bucket up → pick the protection from its
//! policy: its bucket key (a fresh data key wrapped under the bucket's virtual bucket key, of
//! the active rotation version), a customer key (SSE-C), or clear for a bucket created with
//! encryption off → draw a random object id → the engine seals the data into a new data file,
//! chunk by chunk, with the object's identity (store, bucket, object id, name) as associated
//! data, and syncs it → commit the row (envelope, nonce prefix, size, ETag, sealed user
//! metadata) in one transaction: **the commit publishes the object**; an overwritten object's
//! old data file is removed after it.
//!
//! **GET** ([`Dare::get`]): read the row → unwrap the envelope through the key hierarchy (or
//! the customer key) → verify and decrypt the user metadata → read the chunks a range needs,
//! releasing each only after its tag verified.
//!
//! Rewrapping ([`Dare::rewrap`]) moves envelopes to a new rotation version with one metadata
//! update each; the data files are never touched.
#![forbid(unsafe_code)]

mod error;
pub mod fsck;
pub mod layout;
pub mod list;
mod migrate;
pub mod namespace;
pub mod object;
mod opened;
mod pages;
mod range;
pub mod rekey;
pub mod rewrap;
pub mod site;
pub mod store;

pub use error::{Error, printable};
pub use fsck::{FsckOptions, FsckReport};
pub use layout::DEFAULT_NAMESPACE;
pub use list::{INTERNAL_PREFIX, ListPage, ListQuery};
pub use namespace::{Bucket, Namespace, check_bucket_name};
pub use object::{GetOptions, KeyRef, Object, ObjectInfo, PutOptions};
pub use range::parse_range;
pub use rewrap::RewrapReport;
pub use store::{Dare, MetadataLocation, Options, PostgresUrl, Root};

// What embedders need from the crates below, so that `dare` alone is enough to use the store.
pub use dare_engine::{AeadBackend, DiskOptions, IoMode, StoreConfig};
pub use dare_envelope::{KeyError, Secret32};
pub use dare_hsm::{HsmConfig, HsmError, Pin as HsmPin};
pub use dare_keys::{
    CacheMode, KeyRef as MasterKeyRef, KeysInfo, MasterInfo, RotationOptions, RotationStatus,
    SiteError, SiteInfo, SitePublicKey, StoreError as KeyStoreError, TaskReport, TaskState,
    read_customer_key_file, read_passphrase_file, step_name,
};
pub use dare_kmip::{ClusterConfig as KmipClusterConfig, KmipConfig, KmipError};
pub use dare_kms::KmsError;
pub use dare_metadata::{MetaError, PostgresOptions, SqliteOptions};
