//! dare-engine: the data plane of dare, a data-at-rest encryption engine.
//!
//! It encrypts object data on its way to the drive and verifies it on its way back; it does
//! not decide which key protects an object or when an object becomes visible — the control
//! plane (the `dare` crate) does, with the object table. An object travels this path
//! (docs/FORMAT.md specifies every byte):
//!
//! 1. the control plane gets a fresh data key and its envelope from a key provider
//!    (`dare-envelope`), draws a random object id, and builds an [`ObjectSealer`] from the
//!    object's identity ([`ObjectIdentity`]: store, bucket, object id, name) and the key —
//!    or [`Protection::Clear`] for a bucket created with encryption off;
//! 2. [`DataStore::write`] creates the data file `<bucket>/<xx>/<object id>` on the
//!    [`Volume`] ([`volume`]), cuts the plaintext into chunks (64 KiB by default), seals
//!    batches with AES-256-GCM on the fastest backend this CPU supports ([`backend`]; across
//!    the rayon pool when a batch is big enough, [`batch`]) while earlier batches are written
//!    — io_uring slots in flight, optionally `O_DIRECT`, or std I/O where io_uring is refused
//!    ([`pipeline`], [`storage`]) — then syncs the file and its directory entry;
//! 3. the control plane commits the object's row (envelope, nonce prefix, size, ETag, the
//!    user metadata sealed by [`ObjectSealer::seal_meta`]): that commit publishes the object;
//! 4. a GET goes the other way: [`ObjectOpener::new`] takes the row and the unwrapped data
//!    key and verifies the metadata block; an [`ObjectReader`] reads only the chunks a range
//!    needs and releases a chunk's plaintext only after its tag verified (long encrypted
//!    ranges: decrypted on a crypto worker while the next slot is read, `overlap`). Objects written in
//!    format 1 (before foundation v2) open with [`ObjectOpener::open_v1`].
#![deny(unsafe_code)]

pub mod backend;
pub mod batch;
pub mod error;
pub mod format;
mod overlap;
pub mod pipeline;
pub mod seal;
pub mod storage;
pub mod store;
pub mod volume;

pub use backend::{AeadBackend, CpuFeatures};
pub use error::{FormatError, OpenError, SealError, StoreError};
pub use format::Suite;
pub use format::v2::ObjectIdentity;
pub use seal::{ObjectOpener, ObjectParams, ObjectSealer, Protection, SealSummary};
pub use storage::{DataFile, IoMode, ReadAt};
pub use store::{DataStore, ObjectReader, StoreConfig, Written};
pub use volume::{DiskOptions, DiskVolume, FileLoc, NotRegularFile, Volume, VolumeEntry};

/// A nonce-taking AES-256-GCM interface for benchmarks and differential tests (`raw-aead`).
#[cfg(feature = "raw-aead")]
#[doc(hidden)]
pub mod raw;

/// Fuzz-target entry points (`fuzzing` feature).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
