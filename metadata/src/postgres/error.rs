//! The one mapping from PostgreSQL's errors to [`MetaError`], by SQLSTATE and constraint name.
//!
//! Messages carry the server's primary message (which names relations and constraints, never
//! values) and the SQLSTATE; never the DETAIL or HINT fields, which can quote a whole failing
//! row ("Failing row contains (...)", wrapped keys included). Connection failures name the
//! server by its URL without the password ([`super::url`]).

use std::time::Duration;

use postgres::error::{DbError, SqlState};

use crate::MetaError;

/// What a statement was doing, so that [`map_err`] can say which name is taken or which row
/// is missing. Only names and ids: never record contents.
#[derive(Debug, Clone, Copy)]
pub(super) struct Doing<'a> {
    /// The name of the row being inserted (the `name` of [`MetaError::AlreadyExists`]).
    pub(super) name: &'a str,
    /// The id (or version) of the row being inserted.
    pub(super) id: Option<u64>,
    /// The alias of the CMK being written (the `name` of [`MetaError::AlreadyExists`]
    /// `{ what: "kms alias" }`; `name` is then its key id).
    pub(super) alias: &'a str,
    /// What a failed foreign key means here.
    pub(super) foreign_key: ForeignKey,
}

impl Doing<'_> {
    /// A statement whose failures need no names.
    pub(super) const NOTHING: Doing<'static> = Doing {
        name: "",
        id: None,
        alias: "",
        foreign_key: ForeignKey::Unexpected,
    };
}

/// What a failed foreign key means for a statement.
#[derive(Debug, Clone, Copy)]
pub(super) enum ForeignKey {
    /// The row names a parent that does not exist: [`MetaError::NotFound`].
    MissingParent {
        /// `"namespace"`, `"bucket"`, `"master key"`.
        what: &'static str,
        /// Its id or version.
        id: u64,
    },
    /// The row names a parent by the name it was given ([`Doing::name`]: a CMK's key id)
    /// that does not exist: [`MetaError::NotFound`].
    MissingNamed {
        /// `"kms key"`.
        what: &'static str,
    },
    /// The row to delete still has children: [`MetaError::InUse`].
    HasChildren(&'static str),
    /// A child appeared since this transaction's snapshot (a row inserted by a concurrent
    /// transaction): [`MetaError::Conflict`], retryable.
    Concurrent(&'static str),
    /// The statement should not be able to break one.
    Unexpected,
}

/// Where in a transaction's life an error happened: a lost connection means "rolled back"
/// before the commit, and "unknown" during it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// BEGIN or a statement.
    Statement,
    /// COMMIT.
    Commit,
}

/// Whether the connection is unusable after `e` (closed, an I/O error, or the server ending
/// the session): such a connection is never pooled again.
pub(super) fn connection_lost(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        Some(db) => session_ended(db.code()),
        // The client's own complaints about values and columns leave the connection usable;
        // anything else it reports (I/O, a timeout, a protocol error) does not.
        None => {
            let text = e.to_string();
            ![
                "error serializing",
                "error deserializing",
                "invalid column",
                "expected ",
                "query returned",
            ]
            .iter()
            .any(|p| text.starts_with(p))
        }
    }
}

/// SQLSTATEs with which the server ends the session: class 08 (connection exception) and
/// the shutdowns of class 57P.
fn session_ended(code: &SqlState) -> bool {
    code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
}

/// Maps an error of a statement doing `doing` in a transaction on the database `url`.
/// `waited` is the lock timeout (reported by [`MetaError::Busy`]).
pub(super) fn map_err(
    e: &postgres::Error,
    url: &str,
    waited: Duration,
    doing: Doing<'_>,
    phase: Phase,
) -> MetaError {
    if connection_lost(e) {
        let why = client_reason(e);
        return match phase {
            Phase::Statement => MetaError::Unavailable(format!(
                "lost the connection to {url} ({why}); the transaction was rolled back, \
                 nothing of it was committed"
            )),
            Phase::Commit => MetaError::CommitUnknown(format!(
                "lost the connection to {url} during commit ({why})"
            )),
        };
    }
    let Some(db) = e.as_db_error() else {
        return MetaError::Database(format!("{url}: {}", client_reason(e)));
    };
    let code = db.code();
    if *code == SqlState::T_R_SERIALIZATION_FAILURE {
        return MetaError::Conflict("a row this transaction read or wrote (serialization failure)");
    }
    if *code == SqlState::T_R_DEADLOCK_DETECTED {
        return MetaError::Conflict("a row this transaction locked (deadlock)");
    }
    if *code == SqlState::LOCK_NOT_AVAILABLE {
        return MetaError::Busy { waited };
    }
    if *code == SqlState::DISK_FULL {
        return MetaError::DiskFull;
    }
    if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
        return MetaError::Corrupt(server_message(db));
    }
    if *code == SqlState::UNIQUE_VIOLATION {
        return unique_failure(db, doing);
    }
    if *code == SqlState::FOREIGN_KEY_VIOLATION {
        return match doing.foreign_key {
            ForeignKey::MissingParent { what, id } => MetaError::NotFound {
                what,
                name: id.to_string(),
            },
            ForeignKey::MissingNamed { what } => MetaError::NotFound {
                what,
                name: doing.name.to_owned(),
            },
            ForeignKey::HasChildren(why) => MetaError::InUse(why),
            ForeignKey::Concurrent(what) => MetaError::Conflict(what),
            ForeignKey::Unexpected => MetaError::Database(server_message(db)),
        };
    }
    // CHECK, NOT NULL, a value out of range, ...: the caller sent an invalid record. The
    // primary message names the constraint, never the value.
    MetaError::Database(server_message(db))
}

/// An error while connecting: the server cannot be reached, refused the login, or has no
/// such database. Names the server without the password.
pub(super) fn connect_error(e: &postgres::Error, url: &str) -> MetaError {
    let why = match e.as_db_error() {
        Some(db)
            if *db.code() == SqlState::INVALID_PASSWORD
                || *db.code() == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            format!(
                "the server refused the login: {} (check the user and password)",
                server_message(db)
            )
        }
        Some(db) => server_message(db),
        None => client_reason(e),
    };
    MetaError::Unavailable(format!("cannot connect to {url}: {why}"))
}

/// The server's primary message and SQLSTATE: `new row for relation "buckets" violates check
/// constraint "buckets_key_iff_encrypted" (SQLSTATE 23514)`.
pub(super) fn server_message(db: &DbError) -> String {
    format!("{} (SQLSTATE {})", db.message(), db.code().code())
}

/// The client library's description of a failure and its cause (an I/O error, a timeout),
/// or the server's primary message when it sent one. The client's errors quote nothing of
/// the connection settings.
fn client_reason(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return server_message(db);
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// A UNIQUE or PRIMARY KEY failure, by the constraint's name (schema_v1.sql names them all).
fn unique_failure(db: &DbError, doing: Doing<'_>) -> MetaError {
    let by_name = |what| MetaError::AlreadyExists {
        what,
        name: doing.name.to_owned(),
    };
    let by_id = |what| MetaError::AlreadyExists {
        what,
        name: doing.id.map(|i| i.to_string()).unwrap_or_default(),
    };
    match db.constraint().unwrap_or("") {
        "namespaces_name_key" => by_name("namespace"),
        "buckets_name_key" => by_name("bucket"),
        "namespaces_pkey" => by_id("namespace id"),
        "buckets_pkey" => by_id("bucket id"),
        "tasks_pkey" => by_id("task id"),
        "master_keys_pkey" => by_id("master key version"),
        "rotation_keys_pkey" => by_id("rotation key version"),
        "store_pkey" => MetaError::AlreadyExists {
            what: "store",
            name: "store row".to_owned(),
        },
        "tasks_one_open_per_kind" => MetaError::InUse("another task of this kind is not finished"),
        "kms_keys_pkey" => by_name("kms key"),
        "sites_pkey" => by_name("site"),
        "sites_fingerprint_key" => by_name("site key pair"),
        "kms_keys_alias_key" => MetaError::AlreadyExists {
            what: "kms alias",
            name: doing.alias.to_owned(),
        },
        "kms_versions_pkey" => MetaError::AlreadyExists {
            what: "kms key version",
            name: format!("{} version {}", doing.name, doing.id.unwrap_or_default()),
        },
        // A taken seq: another writer's record. The head's check normally refuses a stale
        // appender first (its UPDATE or INSERT of the head row); this catches a record that
        // is there without its head (written behind dare's back).
        "kms_audit_pkey" | "kms_audit_head_pkey" => MetaError::Conflict(KMS_AUDIT_TAKEN),
        _ => MetaError::Database(server_message(db)),
    }
}

/// What a taken audit sequence number conflicts on (a retry reads the head again).
pub(super) const KMS_AUDIT_TAKEN: &str = "kms audit head (another writer appended first)";
