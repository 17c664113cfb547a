//! Schema versions: the one row of `dare_schema` says which migrations a database has had.
//!
//! Migration *n* is the SQL of `schema_v<n>.sql`, run with the `UPDATE dare_schema` that
//! records it in one transaction, so a database is always exactly at one version. A new
//! version is one more entry in [`MIGRATIONS`] (and its file). Version 2 adds the task lease;
//! version 3 the key management service's tables and `buckets.kms_key_id` (it rebuilds
//! `buckets`, whose CHECK changes: see `schema_v3.sql`); version 4 the rekey's columns (each
//! master key's root of trust and deactivation, a rekey task's target, `tasks.updated`); version 5 the sites that joined the store (`sites`, `site_keys`).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::error::{Doing, map_err};
use crate::MetaError;

/// Every migration, in order: (the version it brings the database to, its SQL).
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("schema_v1.sql")),
    // The task lease: owner, expiry, fencing token (KEYS.md §8.2).
    (2, include_str!("schema_v2.sql")),
    // The key management service's tables; `buckets.kms_key_id` (SSE-KMS).
    (3, include_str!("schema_v3.sql")),
    // The rekey: each master key's root of trust and deactivation; a rekey task's target.
    (4, include_str!("schema_v4.sql")),
    // Sites that joined the store: their public keys and the keys granted to them.
    (5, include_str!("schema_v5.sql")),
];

/// The newest schema version.
pub(super) const LATEST: u32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// The version stored in the database; [`MetaError::Corrupt`] when the file is not a dare
/// metadata database.
pub(super) fn stored_version(
    conn: &Connection,
    path: &Path,
    waited: Duration,
) -> Result<u32, MetaError> {
    let err = |e| match map_err(e, waited, Doing::NOTHING) {
        MetaError::Corrupt(why) => MetaError::Corrupt(format!("{}: {why}", path.display())),
        other => other,
    };
    let tables: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'dare_schema'",
        )
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(err)?;
    if tables == 0 {
        return Err(MetaError::Corrupt(format!(
            "{} is an SQLite database without a dare_schema table: not a dare metadata \
             database, or its creation was interrupted",
            path.display()
        )));
    }
    let version: Option<i64> = conn
        .prepare_cached("SELECT version FROM dare_schema WHERE id = 1")
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .map_err(err)?;
    match version.map(u32::try_from) {
        Some(Ok(v)) if v >= 1 => Ok(v),
        Some(_) => Err(MetaError::Corrupt(format!(
            "{}: invalid schema version in dare_schema",
            path.display()
        ))),
        None => Err(MetaError::Corrupt(format!(
            "{}: dare_schema holds no version",
            path.display()
        ))),
    }
}

/// Applies every migration to a new, empty database in one transaction.
pub(super) fn initialize(conn: &mut Connection, waited: Duration) -> Result<(), MetaError> {
    let err = |e| map_err(e, waited, Doing::NOTHING);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    apply(&tx, MIGRATIONS, 0, waited)?;
    tx.execute(
        "INSERT INTO dare_schema (id, version) VALUES (1, ?1)",
        [i64::from(LATEST)],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}

/// Brings a database at an older version up to [`LATEST`]. Runs inside `BEGIN IMMEDIATE`
/// and reads the version again there: of two processes opening an old database at once,
/// the second finds the work done.
pub(super) fn upgrade(
    conn: &mut Connection,
    path: &Path,
    waited: Duration,
) -> Result<(), MetaError> {
    upgrade_with(conn, path, waited, MIGRATIONS)
}

/// [`upgrade`] along `migrations` (tests pass a longer list).
fn upgrade_with(
    conn: &mut Connection,
    path: &Path,
    waited: Duration,
    migrations: &[(u32, &str)],
) -> Result<(), MetaError> {
    let latest = migrations.last().map_or(0, |m| m.0);
    let err = |e| map_err(e, waited, Doing::NOTHING);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let found = stored_version(&tx, path, waited)?;
    if found > latest {
        return Err(MetaError::SchemaTooNew {
            found,
            supported: latest,
        });
    }
    if found == latest {
        return Ok(());
    }
    apply(&tx, migrations, found, waited)?;
    tx.execute(
        "UPDATE dare_schema SET version = ?1 WHERE id = 1",
        [i64::from(latest)],
    )
    .map_err(err)?;
    tx.commit().map_err(err)
}

/// Runs the migrations above version `from`.
fn apply(
    conn: &Connection,
    migrations: &[(u32, &str)],
    from: u32,
    waited: Duration,
) -> Result<(), MetaError> {
    for &(version, sql) in migrations.iter().filter(|(v, _)| *v > from) {
        conn.execute_batch(sql)
            .map_err(|e| match map_err(e, waited, Doing::NOTHING) {
                MetaError::Database(why) => {
                    MetaError::Database(format!("schema migration {version} failed: {why}"))
                }
                other => other,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(usize::try_from(*v).ok(), Some(i + 1));
        }
    }

    /// Two processes opening a database of an older schema at once: both succeed, the
    /// migration runs once.
    #[test]
    fn concurrent_upgrades_run_a_migration_once() {
        const NEXT: &[(u32, &str)] = &[
            MIGRATIONS[0],
            MIGRATIONS[1],
            MIGRATIONS[2],
            MIGRATIONS[3],
            MIGRATIONS[4],
            (6, "CREATE TABLE added_in_v6 (x INTEGER NOT NULL)"),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let wait = Duration::from_secs(10);
        {
            let mut c = Connection::open(&path).expect("open");
            c.pragma_update(None, "journal_mode", "WAL").expect("wal");
            initialize(&mut c, wait).expect("initialize");
        }
        let results: Vec<Result<(), MetaError>> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut c = Connection::open(&path).expect("open");
                        upgrade_with(&mut c, &path, wait, NEXT)
                    })
                })
                .collect();
            runs.into_iter()
                .map(|r| r.join().expect("thread"))
                .collect()
        });
        for r in results {
            r.expect("upgrade");
        }
        let c = Connection::open(&path).expect("open");
        assert_eq!(stored_version(&c, &path, wait).expect("version"), 6);
        let tables: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'added_in_v6'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(tables, 1);
        // This build's list is older than the database now.
        let mut c = Connection::open(&path).expect("open");
        let e = upgrade(&mut c, &path, wait).expect_err("newer");
        assert!(
            matches!(
                e,
                MetaError::SchemaTooNew {
                    found: 6,
                    supported: 5
                }
            ),
            "{e:?}"
        );
    }
}
