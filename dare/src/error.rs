//! The control plane's error: one enum, one actionable line per variant.

use std::fmt;
use std::path::PathBuf;

use dare_engine::format::hex;
use dare_engine::{OpenError, SealError};
use dare_envelope::KeyError;
use dare_metadata::MetaError;

/// Why a control-plane operation failed. Messages never carry key material; an
/// authentication failure says where, not why.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The directory holds no dare store.
    NotAStore(PathBuf),
    /// `create` was asked for a directory that already holds a store.
    AlreadyAStore(PathBuf),
    /// No namespace by that name.
    NoSuchNamespace(String),
    /// No bucket by that name.
    NoSuchBucket(String),
    /// No object by that name in the bucket.
    NoSuchObject {
        /// Bucket name.
        bucket: String,
        /// Object name.
        name: String,
    },
    /// A namespace by that name exists.
    NamespaceExists(String),
    /// A bucket by that name exists.
    BucketExists(String),
    /// The namespace still holds buckets.
    NamespaceNotEmpty {
        /// Namespace name.
        name: String,
        /// How many buckets.
        buckets: u64,
    },
    /// The bucket still holds objects.
    BucketNotEmpty {
        /// Bucket name.
        name: String,
        /// How many objects.
        objects: u64,
    },
    /// A namespace, bucket or object name that is not allowed.
    InvalidName {
        /// `"namespace"`, `"bucket"` or `"object"`.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The requested encryption setting is not allowed.
    EncryptionPolicy(String),
    /// An object of a bucket created encrypted is stored in clear: its row or data file was
    /// replaced (a downgrade); it is refused, never served.
    NotEncrypted {
        /// Bucket name.
        bucket: String,
        /// Object name.
        name: String,
    },
    /// A customer key (SSE-C) was given for an object that was not written with one (S3
    /// answers 400).
    CustomerKeyNotApplicable {
        /// Bucket name.
        bucket: String,
        /// Object name.
        name: String,
    },
    /// A malformed argument (a range header, a continuation token, ...).
    InvalidArgument(String),
    /// A byte range that starts at or past the end of the object (HTTP 416).
    RangeNotSatisfiable {
        /// The range as given.
        range: String,
        /// The object's size.
        size: u64,
    },
    /// The object's row names a data file that is missing.
    DataFileMissing {
        /// Bucket name.
        bucket: String,
        /// Object name.
        name: String,
    },
    /// A key operation failed (wrong key, missing SSE-C key, unknown version, ...).
    Key(KeyError),
    /// The key store failed (root of trust, rotation, ...).
    Keys(dare_keys::StoreError),
    /// The key management service refused or failed (docs/KMS.md).
    Kms(dare_kms::KmsError),
    /// The PKCS#11 HSM root of trust could not be opened: module, token, PIN or key
    /// (docs/KEYS.md §5.4).
    Hsm(dare_hsm::HsmError),
    /// The store's master keys are protected by an HSM key and no HSM root was given.
    HsmNeeded {
        /// The key's PKCS#11 URI, as the store records it.
        recorded: String,
    },
    /// The store's master keys are protected by a passphrase (since its creation or a rekey)
    /// and none was given.
    PassphraseNeeded,
    /// A passphrase was given for a store whose master keys are protected by its root key file.
    PassphraseNotApplicable,
    /// An HSM root was given for a store whose master keys are protected otherwise.
    HsmNotApplicable {
        /// The store's root of trust as it records it (`root-key-file`, ...).
        recorded: String,
    },
    /// The HSM key given did not unwrap the store's master key: it is not the key the store
    /// was made with, or the key store was tampered with.
    HsmKeyMismatch {
        /// The key given, as a PKCS#11 URI.
        given: String,
        /// The key the store records.
        recorded: String,
    },
    /// The KMIP root of trust failed: configuration, cluster, TLS files, servers
    /// (docs/KEYS.md §5.5).
    Kmip(dare_kmip::KmipError),
    /// The store's master keys are protected by a KMIP cluster and no KMIP root was given.
    KmipNeeded {
        /// The cluster the store records.
        cluster: String,
    },
    /// A KMIP root was given for a store whose master keys are protected otherwise.
    KmipNotApplicable {
        /// The store's root of trust as it records it.
        recorded: String,
    },
    /// The KMIP cluster given is not the one the store records.
    KmipClusterMismatch {
        /// The cluster given.
        given: String,
        /// The cluster the store records.
        recorded: String,
    },
    /// The metadata database failed.
    Metadata(MetaError),
    /// Verifying or decrypting an object failed. No unverified plaintext was released.
    Open(OpenError),
    /// Encrypting an object failed; nothing was published.
    Seal(SealError),
    /// Reading or writing a data file failed.
    Data(dare_engine::StoreError),
    /// Migrating a store made by an older release failed; nothing was lost (rerun `open`).
    Migration(String),
    /// The store keeps its metadata in PostgreSQL (its `metadata.json` says so) and no
    /// database URL was given.
    MetadataUrlNeeded {
        /// The store directory.
        dir: PathBuf,
        /// The URL `metadata.json` records, without its password.
        url: String,
    },
    /// A metadata database URL was given for a store whose metadata is its own SQLite
    /// database (`dare.db`).
    MetadataUrlNotApplicable(PathBuf),
    /// The metadata database holds another store (or none) than the one the store directory
    /// belongs to. They are never used together: the directory's data files would be garbage
    /// to the other store's `fsck --repair`.
    StoreMismatch {
        /// The store directory.
        dir: PathBuf,
        /// The database given, without its password.
        url: String,
        /// The database `metadata.json` records, without its password.
        recorded_url: String,
        /// The store id `metadata.json` records.
        expected: [u8; 16],
        /// The store id the database holds (`None`: it holds no store).
        found: Option<[u8; 16]>,
    },
    /// The store's `metadata.json` cannot be used.
    LocationFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The operation does not apply to this store's metadata backend.
    Unsupported(String),
    /// A put's data file was written, and the connection to the metadata database was lost
    /// while its row was being committed: the object may or may not be stored. The data file
    /// was kept (if the row was not committed, `fsck --repair` removes it as garbage).
    PutOutcomeUnknown {
        /// Bucket name.
        bucket: String,
        /// Object name.
        name: String,
        /// The database's error ([`MetaError::CommitUnknown`]).
        source: MetaError,
    },
    /// A file operation on the store directory failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether the error says that something named does not exist (the CLI's exit code 3).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::NoSuchNamespace(_)
                | Error::NoSuchBucket(_)
                | Error::NoSuchObject { .. }
                | Error::Keys(dare_keys::StoreError::NotFound { .. })
                | Error::Keys(dare_keys::StoreError::Site(
                    dare_keys::SiteError::UnknownSite(_)
                ))
                | Error::Kms(dare_kms::KmsError::NotFound(_))
        )
    }

    /// Whether the error says that data or keys failed verification: tampering, corruption,
    /// a wrong key (the CLI's exit code 4).
    pub fn is_integrity(&self) -> bool {
        match self {
            Error::NotEncrypted { .. }
            | Error::DataFileMissing { .. }
            | Error::Data(dare_engine::StoreError::NotRegularFile { .. }) => true,
            Error::Open(o) | Error::Data(dare_engine::StoreError::Open(o)) => !matches!(
                o,
                OpenError::EmptyRange
                    | OpenError::RangeOutOfBounds { .. }
                    | OpenError::Io(_)
                    | OpenError::Sink(_)
            ),
            Error::Key(k) => matches!(
                k,
                KeyError::UnwrapFailed
                    | KeyError::Malformed(_)
                    | KeyError::WrongContext
                    | KeyError::CustomerKeyMismatch
                    | KeyError::WrongRootKey
            ),
            Error::Kms(e) => matches!(e, dare_kms::KmsError::DecryptFailed),
            Error::HsmKeyMismatch { .. } => true,
            // A grant or site key file that fails authentication (KEYS.md §8.5).
            Error::Keys(dare_keys::StoreError::Site(
                dare_keys::SiteError::GrantInvalid { .. }
                | dare_keys::SiteError::KeyFileInvalid { .. },
            )) => true,
            _ => false,
        }
    }
}

impl Error {
    /// Whether a transaction that failed with this error may be run again.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, Error::Metadata(m) if m.is_retryable())
    }

    /// Whether the error says that the metadata database was lost while committing, so that
    /// the change may or may not have been made ([`MetaError::CommitUnknown`]).
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(
            self,
            Error::Metadata(MetaError::CommitUnknown(_)) | Error::PutOutcomeUnknown { .. }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotAStore(p) => write!(
                f,
                "{} is not a dare store (create one with `dare init`)",
                p.display()
            ),
            Error::AlreadyAStore(p) => write!(f, "{} already holds a dare store", p.display()),
            Error::NoSuchNamespace(n) => write!(f, "no such namespace: {n}"),
            Error::NoSuchBucket(b) => write!(
                f,
                "no such bucket: {b} (create it with `dare bucket create`)"
            ),
            Error::NoSuchObject { bucket, name } => {
                write!(f, "no such object: {bucket}/{}", printable(name))
            }
            Error::NamespaceExists(n) => write!(f, "namespace {n} already exists"),
            Error::BucketExists(b) => write!(f, "bucket {b} already exists"),
            Error::NamespaceNotEmpty { name, buckets } => write!(
                f,
                "namespace {name} still holds {buckets} bucket(s); remove them first"
            ),
            Error::BucketNotEmpty { name, objects } => write!(
                f,
                "bucket {name} still holds {objects} object(s); remove them or use --force \
                 (which destroys its key: its objects become unreadable forever)"
            ),
            Error::InvalidName { what, reason } => write!(f, "invalid {what} name: {reason}"),
            Error::EncryptionPolicy(why) => write!(f, "encryption setting refused: {why}"),
            Error::NotEncrypted { bucket, name } => write!(
                f,
                "object {bucket}/{} is stored in clear but its bucket is encrypted: refusing it \
                 (its record or data file was replaced)",
                printable(name)
            ),
            Error::CustomerKeyNotApplicable { bucket, name } => write!(
                f,
                "object {bucket}/{} was not written with a customer-supplied key; do not pass one",
                printable(name)
            ),
            Error::InvalidArgument(why) => write!(f, "{why}"),
            Error::RangeNotSatisfiable { range, size } => write!(
                f,
                "range {range} is not satisfiable: the object has {size} bytes"
            ),
            Error::DataFileMissing { bucket, name } => write!(
                f,
                "the data file of {bucket}/{} is missing (removed outside dare); `dare fsck` \
                 lists every such object",
                printable(name)
            ),
            Error::Key(e) => e.fmt(f),
            Error::Keys(e) => e.fmt(f),
            Error::Kms(e) => e.fmt(f),
            Error::Hsm(e) => e.fmt(f),
            Error::HsmNeeded { recorded } => write!(
                f,
                "this store's master keys are protected by the HSM key {recorded}: give that \
                 HSM with --hsm-module PATH, --hsm-token LABEL, --hsm-key LABEL and the PIN \
                 with --hsm-pin-file FILE (or DARE_HSM_MODULE, DARE_HSM_TOKEN, DARE_HSM_KEY, \
                 DARE_HSM_PIN_FILE or DARE_HSM_PIN)"
            ),
            Error::PassphraseNeeded => f.write_str(
                "this store's master keys are protected by a passphrase: give it with \
                 --passphrase-file FILE (or DARE_PASSPHRASE_FILE)",
            ),
            Error::PassphraseNotApplicable => f.write_str(
                "this store's master keys are protected by its root key file (root.key in the \
                 store directory), not by a passphrase: drop --passphrase-file and unset \
                 DARE_PASSPHRASE_FILE",
            ),
            Error::HsmNotApplicable { recorded } => write!(
                f,
                "this store's master keys are protected by {recorded}, not by an HSM: drop \
                 the --hsm-* options and unset DARE_HSM_*"
            ),
            Error::HsmKeyMismatch { given, recorded } => write!(
                f,
                "the HSM key {given} cannot unwrap this store's master key: it is not the key \
                 the store was created with ({recorded}), or the key store was tampered with"
            ),
            Error::Kmip(e) => e.fmt(f),
            Error::KmipNeeded { cluster } => write!(
                f,
                "this store's master keys are protected by the KMIP cluster {cluster:?}: give \
                 --kmip-config FILE and --kmip-cluster {cluster} (or DARE_KMIP_CONFIG and \
                 DARE_KMIP_CLUSTER)"
            ),
            Error::KmipNotApplicable { recorded } => write!(
                f,
                "this store's master keys are protected by {recorded}, not by a KMIP cluster: \
                 drop --kmip-config and --kmip-cluster and unset DARE_KMIP_*"
            ),
            Error::KmipClusterMismatch { given, recorded } => write!(
                f,
                "this store's master keys are protected by the KMIP cluster {recorded:?}, not \
                 {given:?}: give --kmip-cluster {recorded} (or DARE_KMIP_CLUSTER)"
            ),
            Error::Metadata(e) => e.fmt(f),
            Error::Open(e) => e.fmt(f),
            Error::Seal(e) => e.fmt(f),
            Error::Data(e) => e.fmt(f),
            Error::Migration(why) => write!(f, "migrating the store failed: {why}"),
            Error::MetadataUrlNeeded { dir, url } => write!(
                f,
                "the store in {} keeps its metadata in PostgreSQL at {url}: give that database's \
                 URL with its password in DARE_METADATA_URL (or with --metadata URL, which \
                 shows the password to anyone running `ps`)",
                dir.display()
            ),
            Error::MetadataUrlNotApplicable(dir) => write!(
                f,
                "the store in {} keeps its metadata in its own SQLite database (dare.db); a \
                 metadata database URL does not apply to it (unset DARE_METADATA_URL, drop \
                 --metadata)",
                dir.display()
            ),
            Error::StoreMismatch {
                dir,
                url,
                recorded_url,
                expected,
                found,
            } => {
                match found {
                    Some(id) => {
                        write!(f, "the metadata database at {url} holds store {}", hex(id))?
                    }
                    None => write!(f, "the metadata database at {url} holds no dare store")?,
                }
                write!(
                    f,
                    ", but the store directory {} belongs to store {} (its metadata.json, which \
                     names {recorded_url}): refusing to use them together (the directory's data \
                     files are not that database's; `fsck --repair` would remove them). Give \
                     the URL of the store's own database",
                    dir.display(),
                    hex(expected)
                )
            }
            Error::LocationFile { path, why } => write!(
                f,
                "{} (where the store's metadata is) cannot be used: {why}",
                path.display()
            ),
            Error::Unsupported(why) => f.write_str(why),
            Error::PutOutcomeUnknown {
                bucket,
                name,
                source,
            } => write!(
                f,
                "the outcome of storing {bucket}/{} is unknown: {source}; its data file was \
                 kept (`dare head` shows whether the object was stored; if it was not, `dare \
                 fsck --repair` removes the file as garbage)",
                printable(name)
            ),
            Error::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Key(e) => Some(e),
            Error::Keys(e) => Some(e),
            Error::Kms(e) => Some(e),
            Error::Hsm(e) => Some(e),
            Error::Kmip(e) => Some(e),
            Error::Metadata(e) | Error::PutOutcomeUnknown { source: e, .. } => Some(e),
            Error::Open(OpenError::Io(e) | OpenError::Sink(e)) => Some(e),
            Error::Open(e) => Some(e),
            Error::Seal(e) => Some(e),
            Error::Data(e) => Some(e),
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// An object name as it may be shown on one line: control characters escaped.
pub fn printable(name: &str) -> String {
    name.chars()
        .flat_map(char::escape_debug)
        .collect::<String>()
}

impl From<dare_kms::KmsError> for Error {
    fn from(e: dare_kms::KmsError) -> Self {
        match e {
            dare_kms::KmsError::Meta(m) => Error::Metadata(m),
            dare_kms::KmsError::Key(k) => Error::Key(k),
            e => Error::Kms(e),
        }
    }
}

impl From<dare_kmip::KmipError> for Error {
    fn from(e: dare_kmip::KmipError) -> Self {
        Error::Kmip(e)
    }
}

impl From<dare_hsm::HsmError> for Error {
    fn from(e: dare_hsm::HsmError) -> Self {
        Error::Hsm(e)
    }
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        Error::Key(e)
    }
}

impl From<dare_keys::StoreError> for Error {
    fn from(e: dare_keys::StoreError) -> Self {
        match e {
            dare_keys::StoreError::Key(k) => Error::Key(k),
            dare_keys::StoreError::Metadata(m) => Error::Metadata(m),
            other => Error::Keys(other),
        }
    }
}

impl From<dare_keys::SiteError> for Error {
    fn from(e: dare_keys::SiteError) -> Self {
        Error::Keys(dare_keys::StoreError::Site(e))
    }
}

impl From<MetaError> for Error {
    fn from(e: MetaError) -> Self {
        Error::Metadata(e)
    }
}

impl From<OpenError> for Error {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Key(k) => Error::Key(k),
            other => Error::Open(other),
        }
    }
}

impl From<SealError> for Error {
    fn from(e: SealError) -> Self {
        match e {
            SealError::Key(k) => Error::Key(k),
            other => Error::Seal(other),
        }
    }
}

impl From<dare_engine::StoreError> for Error {
    fn from(e: dare_engine::StoreError) -> Self {
        match e {
            dare_engine::StoreError::Open(o) => o.into(),
            dare_engine::StoreError::Seal(s) => s.into(),
            other => Error::Data(other),
        }
    }
}

/// `map_err` helper for I/O on store files.
pub(crate) fn io(op: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { op, path, source }
}
