//! dare-engine: the data plane of dare, a data-at-rest encryption engine.
//!
//! An object travels this path (docs/FORMAT.md specifies every byte):
//!
//! 1. [`ObjectSealer`] asks a [`KeyProvider`](dare_keys::KeyProvider) for a fresh data key
//!    and the key block to store, draws a random nonce prefix, and writes the authenticated
//!    header and the encrypted user metadata;
//! 2. plaintext is cut into chunks (64 KiB by default), gathered into batches laid out as on
//!    disk, and each batch is sealed with AES-256-GCM across the rayon pool ([`batch`]) on the
//!    fastest backend this CPU supports ([`backend`]);
//! 3. [`ObjectStore`] writes batches with io_uring (or positioned std I/O where io_uring is
//!    unavailable) while the next batch is sealed, syncs, and publishes the object atomically;
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

/// Entry points for fuzz targets, cross-backend tests and benchmarks. Not part of the
/// stable API: embedders use [`ObjectSealer`], [`ObjectOpener`] and [`ObjectStore`].
#[doc(hidden)]
pub mod fuzzing {
    use crate::backend::{AeadBackend, AeadKey};

    /// A raw AES-256-GCM key schedule on one backend (for benchmarks and differential tests).
    #[derive(Debug)]
    pub struct RawAead(AeadKey);

    impl RawAead {
        /// Expands `key` for `backend` (which must be supported; see `AeadBackend::forced`).
        pub fn new(backend: AeadBackend, key: &[u8; 32]) -> RawAead {
            RawAead(AeadKey::new(backend, key))
        }
        /// Seals in place, returns the tag.
        pub fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
            self.0.seal_in_place(nonce, aad, buf)
        }
        /// Opens in place; on failure `buf` is zeroed.
        pub fn open_in_place(
            &self,
            nonce: &[u8; 12],
            aad: &[u8],
            buf: &mut [u8],
            tag: &[u8; 16],
        ) -> bool {
            self.0.open_in_place(nonce, aad, buf, tag).is_ok()
        }
        /// Opens `input` into `output`; on failure `output` is zeroed.
        pub fn open_to(
            &self,
            nonce: &[u8; 12],
            aad: &[u8],
            input: &[u8],
            output: &mut [u8],
            tag: &[u8; 16],
        ) -> bool {
            self.0.open_to(nonce, aad, input, output, tag).is_ok()
        }
    }

    /// One AES-256-GCM seal on `backend`, in place; returns the tag.
    pub fn aead_seal(
        backend: AeadBackend,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
    ) -> [u8; 16] {
        AeadKey::new(backend, key).seal_in_place(nonce, aad, buf)
    }

    /// One AES-256-GCM open on `backend`, in place; on failure `buf` is zeroed.
    pub fn aead_open(
        backend: AeadBackend,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; 16],
    ) -> bool {
        AeadKey::new(backend, key)
            .open_in_place(nonce, aad, buf, tag)
            .is_ok()
    }
}
