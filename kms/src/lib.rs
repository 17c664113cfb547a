//! dare-kms: the key management service of a dare store (docs/KMS.md).
//!
//! Customer master keys (CMKs) live in the store's metadata database next to the key
//! hierarchy; their material is protected by the store's root of trust, as the Huawei KMS
//! protects CMKs with root keys in its HSMs (seed 003 §1.1). The service offers what the seeds
//! describe — CMK life cycle (Enabled, Disabled, Pending deletion, Pending import), versions
//! and rotation (manual at most hourly, or by policy every 30–365 days), imported key
//! material (RSA-OAEP wrapping key and import token), data keys, small-data encryption,
//! rewrap, random numbers, registrations of protected resources — plus a tamper-evident audit
//! trail, and the bucket keys of SSE-KMS buckets: a bucket's key is wrapped under a CMK's
//! current version once ([`Kms::wrap_bucket_key_in`]), so objects need no call to the service,
//! and a CMK rotation rewraps every registered bucket key ([`Kms::tick`]).
//!
//! Start at [`Kms`]; every rule is a constant or check in [`rules`], every error a variant
//! of [`KmsError`]; time comes from a [`Clock`], so tests run a 1096-day deletion window in
//! microseconds.
#![forbid(unsafe_code)]

pub mod audit;
pub mod ciphertext;
pub mod clock;
mod error;
#[doc(hidden)]
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod import;
mod info;
pub mod rules;
mod scheduler;
mod service;

pub use audit::AuditVerification;
pub use ciphertext::{Context, Purpose};
pub use clock::{Clock, ManualClock, SystemClock};
pub use dare_metadata::{KmsAuditRecord, KmsKeyState, KmsOrigin};
pub use error::KmsError;
pub use import::WrappingAlgorithm;
pub use info::{
    KeyInfo, KeyPage, ListFilter, RegistrationInfo, RotationInfo, TickReport, VersionInfo,
};
pub use scheduler::Scheduler;
pub use service::{
    BUCKET_CONTEXT_KEY, BatchItem, DataKeyOutput, Decrypted, Expiry, ImportParameters, Kms,
    KmsOptions, WrappedMaterial, bucket_key_version, bucket_resource,
};
