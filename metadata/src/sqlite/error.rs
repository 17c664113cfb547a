//! The one mapping from SQLite's errors to [`MetaError`].
//!
//! Messages carry SQLite's own text (which names constraints and columns, never values) and
//! the names or ids a statement was given; never record contents such as wrapped keys.

use std::time::Duration;

use rusqlite::{ErrorCode, ffi};

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
    /// The statement should not be able to break one.
    Unexpected,
}

/// Maps an error of a statement doing `doing`. `waited` is how long the busy handler may
/// have waited (reported by [`MetaError::Busy`]).
pub(super) fn map_err(e: rusqlite::Error, waited: Duration, doing: Doing<'_>) -> MetaError {
    let (code, extended, message) = match &e {
        rusqlite::Error::SqliteFailure(f, m) => (f.code, f.extended_code, m.clone()),
        // A stored value of the wrong type: only a damaged or foreign file holds one.
        rusqlite::Error::InvalidColumnType(_, col, ty) => {
            return MetaError::Corrupt(format!("column {col} holds a value of type {ty}"));
        }
        rusqlite::Error::IntegralValueOutOfRange(col, _)
        | rusqlite::Error::FromSqlConversionFailure(col, _, _) => {
            return MetaError::Corrupt(format!("column {col} holds an invalid value"));
        }
        _ => return MetaError::Database(e.to_string()),
    };
    let message = message.unwrap_or_else(|| e.to_string());
    match code {
        ErrorCode::DiskFull => MetaError::DiskFull,
        ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => MetaError::Corrupt(message),
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => MetaError::Busy { waited },
        ErrorCode::ConstraintViolation => match extended {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                unique_failure(&message, doing)
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => match doing.foreign_key {
                ForeignKey::MissingParent { what, id } => MetaError::NotFound {
                    what,
                    name: id.to_string(),
                },
                ForeignKey::MissingNamed { what } => MetaError::NotFound {
                    what,
                    name: doing.name.to_owned(),
                },
                ForeignKey::HasChildren(why) => MetaError::InUse(why),
                ForeignKey::Unexpected => MetaError::Database(message),
            },
            // CHECK, NOT NULL, ...: the caller sent an invalid record. SQLite's message names
            // the constraint, never the value.
            _ => MetaError::Database(message),
        },
        _ => MetaError::Database(message),
    }
}

/// A UNIQUE or PRIMARY KEY failure. SQLite names the columns: "UNIQUE constraint failed:
/// namespaces.name".
fn unique_failure(message: &str, doing: Doing<'_>) -> MetaError {
    let columns = message.rsplit(": ").next().unwrap_or("");
    let by_name = |what| MetaError::AlreadyExists {
        what,
        name: doing.name.to_owned(),
    };
    let by_id = |what| MetaError::AlreadyExists {
        what,
        name: doing.id.map(|i| i.to_string()).unwrap_or_default(),
    };
    match columns {
        "namespaces.name" => by_name("namespace"),
        "buckets.name" => by_name("bucket"),
        "namespaces.id" => by_id("namespace id"),
        "buckets.id" => by_id("bucket id"),
        "tasks.id" => by_id("task id"),
        "master_keys.version" => by_id("master key version"),
        "rotation_keys.version" => by_id("rotation key version"),
        "store.id" => MetaError::AlreadyExists {
            what: "store",
            name: "store row".to_owned(),
        },
        // The partial unique index tasks_one_open_per_kind.
        "tasks.kind" => MetaError::InUse("another task of this kind is not finished"),
        "kms_keys.key_id" => by_name("kms key"),
        "sites.name" => by_name("site"),
        "sites.fingerprint" => by_name("site key pair"),
        "kms_keys.alias" => MetaError::AlreadyExists {
            what: "kms alias",
            name: doing.alias.to_owned(),
        },
        "kms_versions.key_id, kms_versions.version" => MetaError::AlreadyExists {
            what: "kms key version",
            name: format!("{} version {}", doing.name, doing.id.unwrap_or_default()),
        },
        // A taken seq: another writer's record. The head's check normally refuses a stale
        // appender first; this catches a record that is there without its head.
        "kms_audit.seq" | "kms_audit_head.id" => MetaError::Conflict(KMS_AUDIT_TAKEN),
        _ => MetaError::Database(message.to_owned()),
    }
}

/// What a taken audit sequence number conflicts on (a retry reads the head again).
pub(super) const KMS_AUDIT_TAKEN: &str = "kms audit head (another writer appended first)";

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    const WAITED: Duration = Duration::from_millis(5);

    fn db() -> Connection {
        let c = Connection::open_in_memory().expect("open");
        c.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE namespaces (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
             CREATE TABLE buckets (id INTEGER PRIMARY KEY,
                                   namespace_id INTEGER NOT NULL REFERENCES namespaces (id),
                                   payload BLOB CHECK (length(payload) < 4));
             INSERT INTO namespaces VALUES (1, 'taken');",
        )
        .expect("schema");
        c
    }

    fn fail(c: &Connection, sql: &str, doing: Doing<'_>) -> MetaError {
        map_err(c.execute_batch(sql).expect_err(sql), WAITED, doing)
    }

    #[test]
    fn constraint_failures_name_the_row() {
        let c = db();
        let named = Doing {
            name: "taken",
            id: Some(1),
            ..Doing::NOTHING
        };
        match fail(&c, "INSERT INTO namespaces VALUES (2, 'taken')", named) {
            MetaError::AlreadyExists { what, name } => {
                assert_eq!((what, &*name), ("namespace", "taken"))
            }
            e => panic!("{e:?}"),
        }
        match fail(&c, "INSERT INTO namespaces VALUES (1, 'new')", named) {
            MetaError::AlreadyExists { what, name } => {
                assert_eq!((what, &*name), ("namespace id", "1"))
            }
            e => panic!("{e:?}"),
        }
        let orphan = Doing {
            foreign_key: ForeignKey::MissingParent {
                what: "namespace",
                id: 9,
            },
            ..Doing::NOTHING
        };
        let e = fail(&c, "INSERT INTO buckets VALUES (1, 9, NULL)", orphan);
        assert!(
            matches!(e, MetaError::NotFound { what: "namespace", ref name } if name == "9"),
            "{e:?}"
        );
        c.execute_batch("INSERT INTO buckets VALUES (1, 1, NULL)")
            .expect("bucket");
        let parent = Doing {
            foreign_key: ForeignKey::HasChildren("namespace still holds buckets"),
            ..Doing::NOTHING
        };
        let e = fail(&c, "DELETE FROM namespaces WHERE id = 1", parent);
        assert!(
            matches!(e, MetaError::InUse("namespace still holds buckets")),
            "{e:?}"
        );
        // A CHECK names the constraint, not the value.
        let e = fail(
            &c,
            "INSERT INTO buckets VALUES (2, 1, x'53454352455421')",
            Doing::NOTHING,
        );
        match e {
            MetaError::Database(m) => {
                assert!(m.contains("CHECK constraint failed"), "{m}");
                assert!(
                    !m.contains("53454352455421") && !m.contains("SECRET"),
                    "{m}"
                );
            }
            e => panic!("{e:?}"),
        }
    }

    #[test]
    fn a_full_database_is_disk_full() {
        let c = db();
        c.execute_batch("PRAGMA max_page_count = 8").expect("limit");
        let e = map_err(
            c.execute(
                "INSERT INTO namespaces VALUES (2, ?1)",
                [" ".repeat(64 * 1024)],
            )
            .expect_err("full"),
            WAITED,
            Doing::NOTHING,
        );
        assert!(matches!(e, MetaError::DiskFull), "{e:?}");
    }

    #[test]
    fn lock_and_file_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let a = Connection::open(&path).expect("open");
        a.execute_batch("CREATE TABLE t (x); BEGIN IMMEDIATE")
            .expect("lock");
        let b = Connection::open(&path).expect("open");
        b.busy_timeout(Duration::ZERO).expect("timeout");
        let e = fail(&b, "BEGIN IMMEDIATE", Doing::NOTHING);
        assert!(
            matches!(e, MetaError::Busy { waited } if waited == WAITED),
            "{e:?}"
        );

        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, [0x42; 4096]).expect("write");
        let g = Connection::open(&garbage).expect("open");
        let e = fail(&g, "SELECT * FROM sqlite_schema", Doing::NOTHING);
        assert!(matches!(e, MetaError::Corrupt(_)), "{e:?}");
    }
}
