//! dare-engine: the data plane of dare, a data-at-rest encryption engine.
//!
//! An object travels this path (docs/FORMAT.md specifies every byte):
//!
//! 1. [`ObjectSealer`] asks a [`KeyProvider`](dare_envelope::KeyProvider) for a fresh data key
//!    and the key block to store, draws a random nonce prefix, and writes the authenticated
//!    header and the encrypted user metadata;
//! 2. plaintext is cut into chunks (64 KiB by default), gathered into batches laid out as on
//!    disk, and each batch is sealed with AES-256-GCM (across the rayon pool when it is large
//!    enough to pay for the hand-off, `batch`) on the
//!    fastest backend this CPU supports ([`backend`]);
//! 3. [`ObjectStore`] writes batches with io_uring — several 512 KiB slots in flight on one
//!    ring, so the next slot is sealed while earlier ones are written; optionally `O_DIRECT`
//!    with block-aligned writes — or with positioned std I/O and a writer thread where
//!    io_uring is unavailable; then syncs and publishes the object atomically (temp + rename);
//! 4. reads go the other way: [`ObjectOpener`] authenticates header and metadata, then range
//!    reads fetch only the chunks they need and release a chunk only after its tag verified.
#![deny(unsafe_code)]

pub mod backend;
mod batch;
pub mod error;
pub mod format;
pub mod seal;
pub mod storage;
pub mod store;

pub use backend::{AeadBackend, CpuFeatures};
pub use error::{FormatError, OpenError, SealError, StoreError};
pub use seal::{ObjectOpener, ObjectSealer, SealOptions};
pub use storage::IoMode;
pub use store::{ObjectInfo, ObjectStore, StoreConfig};

/// A nonce-taking AES-256-GCM interface for benchmarks and differential tests (`raw-aead`).
#[cfg(feature = "raw-aead")]
#[doc(hidden)]
pub mod raw;

/// Fuzz-target entry points (`fuzzing` feature).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
