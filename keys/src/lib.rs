//! dare-keys: the key side of dare's data-at-rest encryption.
//!
//! The engine (`dare-engine`) never sees a key-encryption key. For every object it asks a
//! [`KeyProvider`] for a fresh [`DataKey`] together with the opaque [`Envelope`] that the
//! object header stores (the wrapped data key and the reference to the key that wrapped it),
//! and on read it hands the stored block back to get the data key. Which hierarchy sits behind
//! the provider (a store root key, the ECS-style master/namespace/bucket hierarchy, a
//! customer-supplied SSE-C key, later an HSM or KMIP server) is invisible to the data path.
//!
//! The hierarchy follows the Dell ECS D@RE white paper §2.1 (docs/KEYS.md is the exact spec):
//!
//! ```text
//! root of trust (root key file | passphrase/Argon2id | later HSM/KMIP)
//!   └ wraps master key MK_v (rotated) and RT data key RT
//!       VMK_v = HMAC-SHA256(MK_v, label || v || RT)            never stored
//!         └ wraps rotation keys RK_r and namespace keys NK_n   (RFC 5649)
//!             NK_n wraps bucket keys BK_b                      (RFC 5649)
//!             VBK = HMAC-SHA256(RK_r, label || n || b || r || BK_b)   never stored
//!               └ wraps each object's data key                 (RFC 5649)
//! ```
//!
//! - [`KeyStore`]: the resource table (one crash-safe file), namespaces and buckets,
//!   rotation tasks ([`KeyStore::start_rotation`], ...).
//! - Providers: [`HierarchyProvider`], [`StoreRootProvider`], [`CustomerKeyProvider`],
//!   [`NoCustomerKey`].
//! - [`RootOfTrust`]: [`RootKeyFile`], [`PassphraseRoot`].
//!
//! Every secret type here zeroizes on drop, prints only its kind in `Debug`, has no `Display`
//! and compares in constant time.
#![forbid(unsafe_code)]

mod cache;
pub mod derive;
mod error;
mod hierarchy;
mod root;
mod rotation;
mod sse_c;
mod store;
mod store_root;
pub mod wrap;

#[doc(hidden)]
pub mod fuzzing;

pub use cache::KeyCache;
pub use dare_envelope::{DataKey, Envelope, KeyKind, KeyProvider, Secret32};
pub use error::{KeyError, StoreError};
pub use hierarchy::{CacheMode, HIERARCHY_BLOCK_LEN, HierarchyBlock, HierarchyProvider};
pub use root::{Argon2Params, PassphraseRoot, RootKeyFile, RootOfTrust, read_passphrase_file};
pub use rotation::{CRASH_AFTER_STEP_ENV, MASTER_KEY_ATTEMPTS, RotationStatus, step_name};
pub use sse_c::{
    CUSTOMER_BLOCK_LEN, CustomerKeyProvider, NoCustomerKey, customer_key_md5, parse_customer_key,
    read_customer_key_file,
};
pub use store::{
    Bucket, KeyStore, KeyVersions, LOCK_FILE, MasterState, Namespace, ROTATION_LOCK_FILE,
    STORE_FILE, STORE_FORMAT_VERSION, StoreOptions, TaskState, dump_json_of, fuzz_load,
    is_initialized, store_file,
};
pub use store_root::StoreRootProvider;
