//! Schema versions: the one row of `dare_schema` says which migrations a database has had.
//!
//! Migration *n* is the SQL of `schema_v<n>.sql`, run with the statement that records the
//! version in one transaction (PostgreSQL's DDL is transactional), so a database is always
//! exactly at one version. Several nodes may open a database at once: the migration
//! transaction first takes a transaction-level advisory lock ([`LOCK_KEY`]), then reads the
//! version again, so the first node migrates and the others find the work done. A database
//! at a newer version is refused before anything is written or locked.

use std::time::Duration;

use postgres::Client;

use super::error::{Doing, Phase, map_err};
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

/// The advisory lock that serializes migrations of one database: "daremeta" in ASCII.
/// Advisory locks are per database, so stores in different databases never wait on each
/// other.
pub(super) const LOCK_KEY: i64 = 0x6461_7265_6d65_7461;

/// How long a node waits for another node's migration before giving up
/// ([`MetaError::Busy`]).
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// The version stored in the database: `None` when it has no `dare_schema` table yet (a new,
/// empty database), [`MetaError::Corrupt`] when the table holds no valid version.
pub(super) fn stored_version(client: &mut Client, url: &str) -> Result<Option<u32>, MetaError> {
    let err = |e: postgres::Error| map_err(&e, url, LOCK_WAIT, Doing::NOTHING, Phase::Statement);
    // An MVCC scan of the catalog, not `to_regclass`: that one consults the backend's
    // catalog cache, which keeps a "no such table" entry until the backend next processes
    // invalidations — not when an advisory lock is granted. After waiting for another node's
    // migration it would still report the table missing, and the schema would be created
    // twice.
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = 'dare_schema' AND n.nspname = current_schema())",
            &[],
        )
        .map_err(err)?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_opt("SELECT version FROM dare_schema WHERE id = 1", &[])
        .map_err(err)?;
    let version: Option<i32> = match &row {
        Some(r) => r
            .try_get(0)
            .map_err(|_| MetaError::Corrupt(format!("{url}: dare_schema.version is invalid")))?,
        None => {
            return Err(MetaError::Corrupt(format!(
                "{url}: dare_schema holds no version"
            )));
        }
    };
    match version.map(u32::try_from) {
        Some(Ok(v)) if v >= 1 => Ok(Some(v)),
        _ => Err(MetaError::Corrupt(format!(
            "{url}: invalid schema version in dare_schema"
        ))),
    }
}

/// Brings the database up to [`LATEST`]: creates the schema in an empty database, applies
/// the missing migrations to an older one, refuses a newer one untouched.
pub(super) fn upgrade(client: &mut Client, url: &str) -> Result<(), MetaError> {
    upgrade_with(client, url, MIGRATIONS)
}

/// [`upgrade`] along `migrations` (tests pass a longer list).
fn upgrade_with(
    client: &mut Client,
    url: &str,
    migrations: &[(u32, &str)],
) -> Result<(), MetaError> {
    let latest = migrations.last().map_or(0, |m| m.0);
    // A first look without any lock: the common case (up to date) and a newer schema (which
    // must not even be locked) end here.
    match stored_version(client, url)? {
        Some(found) if found > latest => {
            return Err(MetaError::SchemaTooNew {
                found,
                supported: latest,
            });
        }
        Some(found) if found == latest => return Ok(()),
        _ => {}
    }
    let err = |e: postgres::Error| map_err(&e, url, LOCK_WAIT, Doing::NOTHING, Phase::Statement);
    // READ COMMITTED, not REPEATABLE READ: each statement takes a fresh snapshot, so the
    // version read after the lock is granted sees a migration another node committed while
    // this one waited (a repeatable-read snapshot would be taken before the wait).
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL lock_timeout = '{}ms'",
            LOCK_WAIT.as_millis()
        ))
        .map_err(err)?;
    let migrated = (|| {
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .map_err(err)?;
        let found = stored_version(client, url)?;
        match found {
            Some(found) if found > latest => {
                return Err(MetaError::SchemaTooNew {
                    found,
                    supported: latest,
                });
            }
            Some(found) if found == latest => return Ok(()),
            _ => {}
        }
        let from = found.unwrap_or(0);
        for &(version, sql) in migrations.iter().filter(|(v, _)| *v > from) {
            client.batch_execute(sql).map_err(|e| match err(e) {
                MetaError::Database(why) => {
                    MetaError::Database(format!("{url}: schema migration {version} failed: {why}"))
                }
                other => other,
            })?;
        }
        let version = i32::try_from(latest)
            .map_err(|_| MetaError::Database("schema version above 2^31 - 1".into()))?;
        client
            .execute(
                "INSERT INTO dare_schema (id, version) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                &[&version],
            )
            .map_err(err)?;
        Ok(())
    })();
    match migrated {
        Ok(()) => client
            .batch_execute("COMMIT")
            .map_err(|e| map_err(&e, url, LOCK_WAIT, Doing::NOTHING, Phase::Commit)),
        Err(e) => {
            // Nothing of it stays; if even the rollback fails the connection is gone, and
            // the server rolls back on its own.
            let _ = client.batch_execute("ROLLBACK");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use dare_testkit::PgServer;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(usize::try_from(*v).ok(), Some(i + 1));
        }
    }

    /// Four nodes opening a database of an older schema at once: all succeed, the migration
    /// runs once; then this build's list is older than the database and is refused.
    #[test]
    fn concurrent_upgrades_run_a_migration_once() {
        const NEXT: &[(u32, &str)] = &[
            MIGRATIONS[0],
            MIGRATIONS[1],
            MIGRATIONS[2],
            MIGRATIONS[3],
            MIGRATIONS[4],
            // Fails if run twice.
            (6, "CREATE TABLE added_in_v6 (x integer NOT NULL)"),
        ];
        let server = PgServer::start();
        let url = server.create_database("migrate");
        let connect = || postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        upgrade(&mut connect(), "test").expect("this build's version");
        let barrier = std::sync::Barrier::new(4);
        let results: Vec<Result<(), MetaError>> = std::thread::scope(|s| {
            let runs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut c = connect();
                        barrier.wait();
                        upgrade_with(&mut c, "test", NEXT)
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
        let mut c = connect();
        assert_eq!(stored_version(&mut c, "test").expect("version"), Some(6));
        let tables: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE tablename = 'added_in_v6'",
                &[],
            )
            .expect("count")
            .get(0);
        assert_eq!(tables, 1);
        let e = upgrade(&mut c, "test").expect_err("newer");
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
