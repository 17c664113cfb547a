//! Errors of key-store, root-of-trust and rotation operations. Messages never carry key bytes.

pub use dare_envelope::KeyError;

use std::fmt;
use std::path::PathBuf;

/// Why a key-store, root-of-trust or rotation operation failed. Carries no key bytes.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O operation on a store or key file failed.
    Io {
        /// What was being done (`"read"`, `"rename"`, ...).
        op: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The directory holds no key store.
    NotInitialized(PathBuf),
    /// `init` was asked for a directory that already holds a key store.
    AlreadyInitialized(PathBuf),
    /// The key store file is not a valid store: truncated, bad magic, checksum mismatch or
    /// undecodable records. The message says which.
    Corrupt(String),
    /// The key store file was written by a newer format version.
    UnsupportedFormat(u32),
    /// A root key file may be read by group or others.
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A namespace, bucket, key version or task does not exist.
    NotFound {
        /// `"namespace"`, `"bucket"`, ...
        what: &'static str,
        /// The name or id asked for.
        name: String,
    },
    /// A namespace or bucket of that name exists already.
    AlreadyExists {
        /// `"namespace"` or `"bucket"`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A namespace or bucket name is empty, too long or contains control characters.
    InvalidName(String),
    /// The requested encryption setting is not allowed (e.g. an unencrypted bucket in an
    /// encrypted namespace).
    EncryptionPolicy(String),
    /// A key provider was asked for a bucket created without encryption.
    EncryptionDisabled(String),
    /// Another rotation task is not finished yet.
    RotationInProgress(u64),
    /// The rotation task cannot be run in its current state (e.g. already completed).
    TaskNotRunnable {
        /// The task id.
        id: u64,
        /// Its state.
        state: &'static str,
    },
    /// A rotation step failed; the task is saved in state `transient_error` and can be resumed.
    RotationFailed {
        /// The task id.
        id: u64,
        /// The step that failed (1-5).
        step: u8,
        /// What went wrong.
        message: String,
    },
    /// A key operation failed.
    Key(KeyError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { op, path, source } => {
                write!(f, "key store: cannot {op} {}: {source}", path.display())
            }
            StoreError::NotInitialized(p) => write!(
                f,
                "no key store in {} (create one with `dare keys init`)",
                p.display()
            ),
            StoreError::AlreadyInitialized(p) => {
                write!(f, "{} already holds a key store", p.display())
            }
            StoreError::Corrupt(why) => write!(f, "key store file is corrupt: {why}"),
            StoreError::UnsupportedFormat(v) => write!(
                f,
                "key store format version {v} is newer than this build supports (1)"
            ),
            StoreError::InsecurePermissions { path, mode } => write!(
                f,
                "root key file {} has mode {mode:o}; it must not be readable by group or \
                 others (chmod 600)",
                path.display()
            ),
            StoreError::NotFound { what, name } => write!(f, "no {what} named {name:?}"),
            StoreError::AlreadyExists { what, name } => {
                write!(f, "a {what} named {name:?} exists already")
            }
            StoreError::InvalidName(why) => write!(f, "invalid name: {why}"),
            StoreError::EncryptionPolicy(why) => write!(f, "encryption setting refused: {why}"),
            StoreError::EncryptionDisabled(b) => write!(
                f,
                "bucket {b:?} was created without encryption; it has no keys"
            ),
            StoreError::RotationInProgress(id) => write!(
                f,
                "rotation task {id} is not finished; wait for it or resume it first"
            ),
            StoreError::TaskNotRunnable { id, state } => {
                write!(f, "rotation task {id} is {state} and cannot be run")
            }
            StoreError::RotationFailed { id, step, message } => write!(
                f,
                "rotation task {id} failed in step {step}: {message} (resume it to retry)"
            ),
            StoreError::Key(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            StoreError::Key(e) => Some(e),
            _ => None,
        }
    }
}

impl From<KeyError> for StoreError {
    fn from(e: KeyError) -> Self {
        StoreError::Key(e)
    }
}

impl From<StoreError> for KeyError {
    /// Providers report store failures through [`KeyError`]; key errors pass through as they
    /// are, anything else becomes [`KeyError::Provider`] with the store's message.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Key(k) => k,
            other => KeyError::Provider(other.to_string()),
        }
    }
}
