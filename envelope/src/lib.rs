//! dare-envelope: the small interface between dare's data plane and key management.
//!
//! The data plane (`dare-engine`) encrypts each object under a fresh random [`DataKey`]. What
//! protects that data key is key management's business: it hands back an [`Envelope`] — the
//! kind of key management ([`KeyKind`]) and the kind-specific bytes (a key reference and the
//! wrapped data key, docs/KEYS.md §4) — which the control plane stores in the object table.
//! A [`KeyProvider`] makes new data keys with their envelopes and opens stored envelopes.
//!
//! This crate holds only those types, so the data plane depends on them and not on the key
//! store, its database, Argon2 or any root of trust behind them (as ripgrep's `grep-searcher`
//! depends on the `grep-matcher` trait crate, not on a regex engine).
//!
//! Every secret type here zeroizes on drop, prints only its kind in `Debug`, has no `Display`
//! and compares in constant time.
#![forbid(unsafe_code)]

mod error;
mod provider;
mod secret;

pub use error::KeyError;
pub use provider::{Envelope, KeyKind, KeyProvider};
pub use secret::{DataKey, Secret32};
