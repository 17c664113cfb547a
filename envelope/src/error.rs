//! The error of key-provider operations. Messages never carry key bytes.

use std::fmt;

/// Why a key operation failed. Carries no secret material and, for authentication
/// failures, no detail that could serve as an oracle.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The operating system's random number generator failed.
    Rng,
    /// A wrapped key did not unwrap: wrong key-encryption key or tampered bytes.
    UnwrapFailed,
    /// A wrapped key or key block has the wrong length or layout.
    Malformed(&'static str),
    /// The object's key block is of a kind this provider cannot open.
    WrongKind { expected: u8, found: u8 },
    /// A key version the store does not know.
    UnknownVersion(u32),
    /// The key block refers to another namespace or bucket than the one being read.
    WrongContext,
    /// An SSE-C object was read without a customer key.
    CustomerKeyRequired,
    /// The customer key given does not match the one the object was written with.
    CustomerKeyMismatch,
    /// The customer key does not match the MD5 digest supplied with it (S3 key-MD5 header).
    CustomerKeyMd5Mismatch,
    /// The root of trust could not unwrap a key it is asked for: wrong root key file or
    /// passphrase, or a tampered key store.
    WrongRootKey,
    /// Anything else the provider reports (I/O of a key store, a root of trust, ...).
    Provider(String),
    /// The key management service refuses to unwrap the bucket key of an SSE-KMS bucket: its
    /// customer master key is disabled, pending deletion, pending import or deleted, or the
    /// service is not available. The message names the key, its state and what to do.
    KmsRefused(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Rng => f.write_str("the system random number generator failed"),
            KeyError::UnwrapFailed => {
                f.write_str("wrapped key failed to unwrap (wrong key or tampered key material)")
            }
            KeyError::Malformed(what) => write!(f, "malformed key material: {what}"),
            KeyError::WrongKind { expected, found } => write!(
                f,
                "object key block is of kind {found}, this key provider handles kind {expected}"
            ),
            KeyError::UnknownVersion(v) => write!(f, "unknown key version {v}"),
            KeyError::WrongContext => {
                f.write_str("object key block belongs to another namespace or bucket")
            }
            KeyError::CustomerKeyRequired => f.write_str(
                "object is encrypted with a customer-supplied key (SSE-C): supply the key to read it",
            ),
            KeyError::CustomerKeyMismatch => {
                f.write_str("the customer-supplied key does not match the object's key")
            }
            KeyError::CustomerKeyMd5Mismatch => f.write_str(
                "the customer-supplied key does not match the key MD5 given with it",
            ),
            KeyError::WrongRootKey => f.write_str(
                "the root of trust cannot unwrap the store's master key: wrong root key file or \
                 passphrase, or the key store was tampered with",
            ),
            KeyError::Provider(msg) => write!(f, "key provider: {msg}"),
            KeyError::KmsRefused(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for KeyError {}
