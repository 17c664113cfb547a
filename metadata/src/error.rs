//! The error of every metadata operation.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Why a metadata operation failed. Messages say what to do; none carries key material
/// (records hold only wrapped keys, and errors never include record contents anyway).
#[derive(Debug)]
#[non_exhaustive]
pub enum MetaError {
    /// No database at the path, or it holds no dare store yet.
    NotInitialized(PathBuf),
    /// The database was written by a newer dare: its schema version is above what this
    /// build knows. Nothing was changed.
    SchemaTooNew {
        /// Schema version found.
        found: u32,
        /// Newest schema version this build reads.
        supported: u32,
    },
    /// The database file is damaged or is not a dare metadata database.
    Corrupt(String),
    /// Another writer held the database longer than the configured wait.
    Busy {
        /// How long this writer waited.
        waited: Duration,
    },
    /// The disk (or the database's size limit) is full; the transaction was rolled back.
    DiskFull,
    /// An optimistic check failed: the row changed (or vanished) since it was read. Retry
    /// from a fresh read.
    Conflict(&'static str),
    /// A unique name or id is taken.
    AlreadyExists {
        /// `"namespace"`, `"bucket"`, `"store"`, ...
        what: &'static str,
        /// The name or id.
        name: String,
    },
    /// A row to change does not exist.
    NotFound {
        /// `"namespace"`, `"bucket"`, ...
        what: &'static str,
        /// The name or id.
        name: String,
    },
    /// The row is still referenced (a namespace that holds buckets, a bucket that objects
    /// name, a second unfinished task of a kind).
    InUse(&'static str),
    /// A file operation around the database failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The database server cannot be reached, refused the login, or the connection was lost
    /// before the commit (the transaction was rolled back). Names the server without its
    /// password.
    Unavailable(String),
    /// The connection was lost while committing: the transaction may or may not have been
    /// committed. Whoever acted on its outcome must read before acting (a put must not remove
    /// the data file its row may now name).
    CommitUnknown(String),
    /// Anything else the database reports.
    Database(String),
}

impl MetaError {
    /// Whether running the whole transaction again may succeed (a lost optimistic check,
    /// or a serialization failure reported by the database).
    pub fn is_retryable(&self) -> bool {
        matches!(self, MetaError::Conflict(_))
    }
}

impl fmt::Display for MetaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaError::NotInitialized(p) => write!(
                f,
                "no dare metadata database at {} (create a store with `dare init`)",
                p.display()
            ),
            MetaError::SchemaTooNew { found, supported } => write!(
                f,
                "metadata database schema version {found} is newer than this dare supports \
                 ({supported}); upgrade dare (nothing was changed)"
            ),
            MetaError::Corrupt(why) => write!(
                f,
                "metadata database is corrupt: {why} (restore it from `dare backup`)"
            ),
            MetaError::Busy { waited } => write!(
                f,
                "metadata database is locked by another writer; gave up after {:.1} s",
                waited.as_secs_f64()
            ),
            MetaError::DiskFull => {
                f.write_str("disk full: the metadata change was rolled back (free space and retry)")
            }
            MetaError::Conflict(what) => write!(
                f,
                "concurrent change: {what} was modified by another writer; retry"
            ),
            MetaError::AlreadyExists { what, name } => {
                write!(f, "a {what} named {name:?} exists already")
            }
            MetaError::NotFound { what, name } => write!(f, "no {what} {name:?}"),
            MetaError::InUse(what) => write!(f, "{what}"),
            MetaError::Io { op, path, source } => {
                write!(f, "metadata: cannot {op} {}: {source}", path.display())
            }
            MetaError::Unavailable(m) => write!(f, "metadata database unavailable: {m}"),
            MetaError::CommitUnknown(m) => write!(
                f,
                "metadata database: {m} (whether the change was committed is unknown; read \
                 before retrying)"
            ),
            MetaError::Database(m) => write!(f, "metadata database: {m}"),
        }
    }
}

impl std::error::Error for MetaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MetaError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
