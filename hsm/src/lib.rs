//! dare-hsm: a PKCS#11 hardware security module as dare's root of trust (docs/KEYS.md §5.4).
//!
//! [`PkcsRoot`] implements [`dare_keys::RootOfTrust`]: the store's master keys and its RT data
//! key are wrapped and unwrapped *inside the HSM* by an AES-256 key that never leaves it
//! (`CKA_EXTRACTABLE = false`, `CKA_SENSITIVE = true`), found on its token by label, with
//! `CKM_AES_KEY_WRAP_PAD` — AES key wrap with padding, RFC 5649 / NIST SP 800-38F KWP. The
//! blob the store keeps is the HSM's wrap output behind a small header: a format byte, the
//! mechanism, and a fingerprint of the wrapping key, so that a blob is tied to the key that
//! made it and a blob of another key is refused before the HSM is asked ([`blob`]).
//!
//! What is refused when the root is opened, each with its own [`HsmError`]: a module that
//! cannot be loaded or that another user could replace, a token label no slot has, a wrong or
//! locked PIN, a key label the token does not hold (or holds twice), a key that is extractable
//! or not sensitive (the whole point is that it never leaves the HSM), a key that is not a
//! 256-bit AES key or may not wrap and unwrap, and a token without the mechanism.
//!
//! The PIN ([`Pin`]) comes from a file with the same checks as a passphrase file
//! (`dare_keys::files`) or from a value the caller read (the CLI's `DARE_HSM_PIN`); it is never
//! printed (`Debug` redacts it) and is zeroed when dropped. The library reads no environment
//! variable.
//!
//! Why its own crate: it loads the HSM vendor's native library into the process and calls it
//! through C (cryptoki and libloading), which is a different kind of dependency — and trust —
//! from the pure-Rust key hierarchy; `dare-keys` stays free of it, and its tests need no HSM.
//! This crate itself has no `unsafe` code: cryptoki's API is safe.
#![forbid(unsafe_code)]

pub mod blob;
mod error;
mod module;
mod pin;
mod root;

pub use error::HsmError;
pub use pin::{MAX_PIN_LEN, Pin};
pub use root::{HsmConfig, PkcsRoot, create_key, uri_of};

/// The prefix of every HSM root of trust's description (`store.root_of_trust`): an RFC 7512
/// PKCS#11 URI.
pub const URI_PREFIX: &str = "pkcs11:";

/// Whether a store's recorded root of trust (`store.root_of_trust`) is a PKCS#11 HSM.
pub fn is_hsm_description(recorded: &str) -> bool {
    recorded.starts_with(URI_PREFIX)
}
