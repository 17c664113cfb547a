//! dare-keys: the key side of dare's data-at-rest encryption.
//!
//! The engine (`dare-engine`) never sees a key-encryption key. For every object it asks a
//! [`KeyProvider`] for a fresh [`DataKey`] together with the opaque [`Envelope`] to store for
//! the object (the wrapped data key and the reference to the key that wrapped it), and on read
//! it hands the envelope back to get the data key. Which hierarchy sits behind the provider (a
//! store root key, the ECS-style master/namespace/bucket hierarchy, a customer-supplied SSE-C
//! key, a PKCS#11 HSM, later a KMIP server) is invisible to the data path.
//!
//! The hierarchy follows the Dell ECS D@RE white paper §2.1 (docs/KEYS.md is the exact spec):
//!
//! ```text
//! root of trust (root key file | passphrase/Argon2id | PKCS#11 HSM | later KMIP)
//!   └ wraps master key MK_v (rotated) and RT data key RT
//!       VMK_v = HMAC-SHA256(MK_v, label || v || RT)            never stored
//!         └ wraps rotation keys RK_r and namespace keys NK_n   (RFC 5649)
//!             NK_n wraps bucket keys BK_b                      (RFC 5649)
//!             VBK = HMAC-SHA256(RK_r, label || n || b || r || BK_b)   never stored
//!               └ wraps each object's data key                 (RFC 5649)
//! ```
//!
//! - [`KeyStore`]: the key records of the resource table, kept in the metadata database
//!   behind [`dare_metadata::Metadata`] (SQLite by default): [`KeyStore::create_in`] writes a
//!   new store into the caller's transaction, [`KeyStore::open`] checks the root of trust, and
//!   the store hands out wrapped keys for the namespace and bucket rows the control plane
//!   inserts ([`KeyStore::new_namespace_key`], [`KeyStore::new_bucket_key`]). A store keeps a
//!   snapshot of its key records and refreshes it when the store row's version moves.
//! - Rotation ([`KeyStore::start_rotation`], [`KeyStore::run_rotation`], ...): a task in the
//!   metadata `tasks` table whose five steps each commit in one transaction guarded by row
//!   versions, run by one runner at a time across nodes: the runner holds the task's lease
//!   (owner, expiry, fencing token), and each step's transaction checks the token, so a runner
//!   whose lease expired can never commit a step after another took over.
//! - Providers: [`HierarchyProvider`] (with [`HierarchyProvider::rewrap`] to move an envelope
//!   to the active rotation version), [`StoreRootProvider`], [`CustomerKeyProvider`],
//!   [`NoCustomerKey`].
//! - [`RootOfTrust`]: [`RootKeyFile`], [`PassphraseRoot`]; `dare-hsm` adds a PKCS#11 HSM.
//! - [`site`]: a new site joins (ECS §2.5): an RSA key pair per site, the master keys
//!   granted to it with RSA-OAEP, [`SiteRoot`] to open the store with the grant.
//! - [`legacy`]: the one-time import of a key store file made by the previous release.
//!
//! Every secret type here zeroizes on drop, prints only its kind in `Debug`, has no `Display`
//! and compares in constant time. The library reads no environment variable; the rotation's
//! crash hook exists only with the `test-hooks` feature.
#![forbid(unsafe_code)]

mod cache;
pub mod derive;
mod error;
pub mod files;
mod hierarchy;
pub mod legacy;
mod rekey;
mod root;
mod rotation;
pub mod site;
mod sse_c;
mod store;
mod store_root;
pub mod wrap;

#[doc(hidden)]
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;

pub use cache::KeyCache;
pub use dare_envelope::{DataKey, Envelope, KeyKind, KeyProvider, Secret32};
/// Key and task states, as stored in the metadata database (re-exported for status output).
pub use dare_metadata::{MasterState, TaskState};
pub use error::{KeyError, StoreError};
pub use hierarchy::{CacheMode, HIERARCHY_BLOCK_LEN, HierarchyBlock, HierarchyProvider};
pub use rekey::{KeyRef, KeysInfo, MasterInfo, TaskReport};
pub use root::{
    Argon2Params, MIN_PASSPHRASE_LEN, Management, PassphraseRoot, ProviderKey, RekeyRoots,
    RootKeyFile, RootOfTrust, check_new_passphrase, read_passphrase_file,
};
#[cfg(feature = "test-hooks")]
pub use rotation::StepHook;
pub use rotation::{
    DEFAULT_LEASE_TTL, MASTER_KEY_ATTEMPTS, MAX_LEASE_TTL, RotationOptions, RotationStatus,
    process_lease_owner, step_name,
};
pub use site::{SiteError, SiteInfo, SiteKey, SitePublicKey, SiteRoot};
pub use sse_c::{
    CUSTOMER_BLOCK_LEN, CustomerKeyProvider, NoCustomerKey, customer_key_md5, parse_customer_key,
    read_customer_key_file,
};
pub use store::{BucketKeyService, KeyStore, KeyVersions, StoreOptions, dump_json_of};
pub use store_root::StoreRootProvider;
