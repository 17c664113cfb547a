//! dare-keys: the key side of dare's data-at-rest encryption.
//!
//! The engine (`dare-engine`) never sees a key-encryption key. For every object it asks a
//! [`KeyProvider`] for a fresh [`DataKey`] together with the opaque [`KeyBlock`] that the
//! object header stores (the wrapped data key and the reference to the key that wrapped it),
//! and on read it hands the stored block back to get the data key. Which hierarchy sits behind
//! the provider (a store root key, the ECS-style master/namespace/bucket hierarchy, a
//! customer-supplied SSE-C key, later an HSM or KMIP server) is invisible to the data path.
//!
//! Every secret type here zeroizes on drop, prints only its kind in `Debug`, has no `Display`
//! and compares in constant time.
#![forbid(unsafe_code)]

mod error;
mod provider;
mod secret;
pub mod wrap;

pub use error::KeyError;
pub use provider::{KeyBlock, KeyKind, KeyProvider};
pub use secret::{DataKey, Secret32};
