//! Errors of key-store, root-of-trust, rotation and legacy-import operations. Messages never
//! carry key bytes.

pub use dare_envelope::KeyError;
use dare_metadata::MetaError;

use std::fmt;
use std::path::PathBuf;

/// Why a key-store, root-of-trust or rotation operation failed. Carries no key bytes.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// An I/O operation on a key file (root key, passphrase, customer key, format-1 store
    /// file) failed.
    Io {
        /// What was being done (`"read"`, `"open"`, ...).
        op: &'static str,
        /// The file it was done to.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The metadata database holds no store (no store row). Carries where it looked.
    NotInitialized(String),
    /// A store was to be created (or imported) where one exists already.
    AlreadyInitialized(String),
    /// Stored key material is inconsistent or a file is not what it should be (a format-1
    /// store file that is truncated, has a bad checksum, ...). The message says which.
    Corrupt(String),
    /// A format-1 key store file has another format version.
    UnsupportedFormat(u32),
    /// A file or directory that holds or guards keys could have been replaced or read by
    /// another user (owner, mode, symbolic link); it is refused before it is read.
    Untrusted {
        /// `"root key file"`, `"passphrase file"`, `"metadata database"`, ...
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What is wrong and the command that fixes it.
        why: String,
    },
    /// A passphrase too weak to protect a new store.
    WeakPassphrase {
        /// Its length in bytes.
        len: usize,
        /// The least accepted.
        min: usize,
    },
    /// A rotation task, or the format-1 store file to import, does not exist.
    NotFound {
        /// `"rotation task"`, `"format-1 key store file"`, ...
        what: &'static str,
        /// The name or id asked for.
        name: String,
    },
    /// A key provider was asked for a bucket created without encryption.
    EncryptionDisabled(String),
    /// Another rotation task is not finished yet (its id).
    RotationInProgress(u64),
    /// A rekey task is unfinished (its id): no rotation or other rekey starts meanwhile.
    RekeyInProgress(u64),
    /// A rekey to the root of trust that already protects the store (its description).
    SameRoot(String),
    /// A rekey task needs its target root of trust to run or resume.
    RekeyTargetNeeded {
        /// The task id.
        id: u64,
        /// The target's description, as the task recorded it.
        target: String,
    },
    /// The root of trust given to run or resume a rekey is not the task's target.
    RekeyTargetMismatch {
        /// The task id.
        id: u64,
        /// The target's description, as the task recorded it.
        target: String,
        /// The description of the root given.
        given: String,
    },
    /// The rotation task cannot be run in its current state (a failed task needs `resume`).
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
    /// Another runner holds the rotation task's lease and it has not expired: the task is
    /// being run there (KEYS.md §8.2). Wait for it to finish, or — if that runner died —
    /// resume the task once its lease has expired.
    RotationLeased {
        /// The task id.
        id: u64,
        /// The holder's lease owner id (`<host>:<pid>:<random>` by default).
        owner: String,
        /// When its lease expires, Unix milliseconds by the holder's clock.
        expires: u64,
    },
    /// This runner no longer holds the rotation task's lease — it expired (the runner was
    /// paused, or a step outlasted the lease) or another runner took it over — so the step it
    /// was about to commit was not committed, and it stopped. Whoever holds the lease now, or
    /// the next resume, goes on from the last saved step.
    LeaseLost {
        /// The task id.
        id: u64,
        /// The lease's owner as found (`None`: released).
        owner: Option<String>,
        /// Its expiry as found, Unix milliseconds.
        expires: Option<u64>,
    },
    /// Joining sites: a grant, a site key file, a revoke (docs/KEYS.md §8.5).
    Site(crate::SiteError),
    /// The metadata database failed or refused a change.
    Metadata(MetaError),
    /// A key operation failed.
    Key(KeyError),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            StoreError::NotInitialized(at) => {
                write!(f, "no dare store in {at} (create one with `dare init`)")
            }
            StoreError::AlreadyInitialized(at) => write!(f, "{at} already holds a dare store"),
            StoreError::Corrupt(why) => f.write_str(why),
            StoreError::UnsupportedFormat(v) => write!(
                f,
                "key store file format version {v} is not supported (this build imports version 1)"
            ),
            StoreError::Untrusted { what, path, why } => {
                write!(f, "refusing {what} {}: {why}", path.display())
            }
            StoreError::WeakPassphrase { len: 0, .. } => f.write_str(
                "the passphrase is empty: a store needs a passphrase of at least 12 bytes",
            ),
            StoreError::WeakPassphrase { len, min } => write!(
                f,
                "the passphrase has {len} bytes: a new store needs at least {min} (a longer \
                 phrase of several words is better)"
            ),
            StoreError::NotFound { what, name } => write!(f, "no {what} {name:?}"),
            StoreError::EncryptionDisabled(b) => write!(
                f,
                "bucket {b:?} was created without encryption; it has no keys"
            ),
            StoreError::RotationInProgress(id) => write!(
                f,
                "rotation task {id} is not finished; wait for it or resume it first"
            ),
            StoreError::RekeyInProgress(id) => write!(
                f,
                "rekey task {id} is not finished; wait for it or resume it first \
                 (dare keys task {id} --resume)"
            ),
            StoreError::SameRoot(root) => write!(
                f,
                "the store's master keys are protected by this root of trust ({root}) already; \
                 a rekey needs another one"
            ),
            StoreError::RekeyTargetNeeded { id, target } => write!(
                f,
                "task {id} is a rekey to {target}: give that root of trust (--to ...) to run or \
                 resume it"
            ),
            StoreError::RekeyTargetMismatch { id, target, given } => write!(
                f,
                "task {id} is a rekey to {target}, and the root of trust given ({given}) is not \
                 that one (another key, passphrase or HSM key): give the one the rekey started \
                 with"
            ),
            StoreError::TaskNotRunnable { id, state } => write!(
                f,
                "rotation task {id} is {state}: run does not retry a failed task, resume it instead"
            ),
            StoreError::RotationFailed { id, step, message } => write!(
                f,
                "rotation task {id} failed in step {step}: {message} (resume it to retry)"
            ),
            StoreError::RotationLeased { id, owner, expires } => write!(
                f,
                "rotation task {id} is being run by {owner}, whose lease {}; wait for it to \
                 finish, or resume the task once that lease has expired",
                lease_expiry(*expires)
            ),
            StoreError::LeaseLost { id, owner, expires } => {
                write!(f, "rotation task {id}: this runner lost its lease (")?;
                match (owner, expires) {
                    (Some(o), Some(e)) => {
                        write!(f, "now held by {o}, whose lease {}", lease_expiry(*e))?
                    }
                    _ => f.write_str("now released")?,
                }
                f.write_str("); it committed nothing more and stopped (resume the task to go on)")
            }
            StoreError::Site(e) => write!(f, "{e}"),
            StoreError::Metadata(e) => write!(f, "{e}"),
            StoreError::Key(e) => write!(f, "{e}"),
        }
    }
}

/// "expires in 12.3 s" or "expired 0.4 s ago", by the local clock.
fn lease_expiry(expires_ms: u64) -> String {
    let now = crate::rotation::now_ms();
    let secs = |ms: u64| ms as f64 / 1000.0;
    if expires_ms >= now {
        format!("expires in {:.1} s", secs(expires_ms - now))
    } else {
        format!("expired {:.1} s ago", secs(now - expires_ms))
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { source, .. } => Some(source),
            StoreError::Site(e) => Some(e),
            StoreError::Metadata(e) => Some(e),
            StoreError::Key(e) => Some(e),
            _ => None,
        }
    }
}

impl StoreError {
    /// Whether running the transaction again may succeed (a lost optimistic check).
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Metadata(e) if e.is_retryable())
    }
}

impl From<KeyError> for StoreError {
    fn from(e: KeyError) -> Self {
        StoreError::Key(e)
    }
}

impl From<crate::SiteError> for StoreError {
    fn from(e: crate::SiteError) -> Self {
        StoreError::Site(e)
    }
}

impl From<MetaError> for StoreError {
    fn from(e: MetaError) -> Self {
        StoreError::Metadata(e)
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
