//! [`PostgresMetadata`]: the metadata database on a PostgreSQL server, shared by several
//! nodes (docs/METADATA.md §7).
//!
//! ECS keeps its resource table in a store shared by every node (D@RE white paper §2.1);
//! PostgreSQL gives dare the same without a consensus protocol of its own: crash safety
//! through its WAL, snapshots, row locks and serialization failures.
//!
//! - **Isolation.** A read transaction is `REPEATABLE READ, READ ONLY`: one snapshot, taken
//!   at its first statement. A write transaction is `REPEATABLE READ` too: an update of a row
//!   that another transaction changed after this one's snapshot fails with a serialization
//!   failure (40001) rather than overwrite it, and every optimistic update also names the row
//!   version it read. Both become the retryable [`MetaError::Conflict`], so
//!   [`write_with`](crate::write_with) runs the transaction again from a fresh snapshot. Not
//!   `SERIALIZABLE`: its predicate locks fail concurrent inserts of unrelated names that
//!   land on one index page, which would turn parallel bucket creation into a retry storm; the
//!   invariants that need more than one row are enforced by the database itself (foreign keys,
//!   unique indexes) or funnelled through one row version (the store row for key records).
//! - **Durability.** Each session runs `synchronous_commit = on`: a commit that returned is
//!   in the server's WAL on disk (given the server's `fsync = on`, its default).
//! - **Waiting.** A statement waits at most [`PostgresOptions::lock_timeout`] for a row lock
//!   held by another transaction ([`MetaError::Busy`] after that).
//! - **Connections.** A small pool of idle connections, each with its prepared statements. A
//!   connection that fails (the server restarted, or ended the session) is closed, never
//!   pooled again; a pooled one found dead when a transaction begins is replaced at once.
//! - **Secrets.** The URL's password is used to connect and never shown: [`describe`],
//!   `Debug` and every error name the server as `postgres://USER:***@HOST:PORT/DB`.
//! - **Schema.** Versioned by the one row of `dare_schema`; migrations in
//!   `postgres/migrate.rs`, run under an advisory lock so that nodes starting together
//!   migrate once. A database of a newer schema is refused untouched.
//!
//! [`describe`]: Metadata::describe

mod error;
mod migrate;
mod rows;
mod tx;
mod url;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use postgres::{Client, Statement};

use crate::MetaError;
use crate::tx::{Metadata, ReadTx, WriteTx};

use self::error::{Doing, Phase, map_err};
use self::tx::PgTx;
use self::url::Target;

/// Options of [`PostgresMetadata`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// How long a statement waits for a lock held by another transaction before
    /// [`MetaError::Busy`] (PostgreSQL's `lock_timeout`; default 10 s).
    pub lock_timeout: Duration,
    /// How long opening a connection may take, when the URL sets no `connect_timeout`
    /// (default 10 s).
    pub connect_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            lock_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The metadata database on a PostgreSQL server, and a small pool of connections to it.
pub struct PostgresMetadata {
    target: Target,
    opts: PostgresOptions,
    /// Idle connections, none inside a transaction. A hand-written pool, as for SQLite:
    /// taking a connection is a lock and a `pop`.
    idle: Mutex<Vec<Conn>>,
}

impl fmt::Debug for PostgresMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let idle = self.idle.lock().map_or(0, |i| i.len());
        f.debug_struct("PostgresMetadata")
            .field("url", &self.target.shown())
            .field("opts", &self.opts)
            .field("idle_connections", &idle)
            .finish()
    }
}

/// Idle connections kept beyond this many are closed.
const MAX_IDLE: usize = 16;

/// Oldest server this backend runs on: identity columns and `pg_sequence_last_value` are
/// from PostgreSQL 10.
const MIN_SERVER_VERSION: i32 = 100_000;

impl PostgresMetadata {
    /// Newest schema version this build knows.
    pub const SCHEMA_VERSION: u32 = migrate::LATEST;

    /// Connects to the database at `url` and brings its schema up to date: an empty database
    /// gets the whole schema, an older one the missing migrations — once, however many nodes
    /// open it at the same moment. A newer schema is [`MetaError::SchemaTooNew`], with
    /// nothing changed; a database whose encoding is not UTF-8 is refused.
    ///
    /// `url` is `postgres://USER:PASSWORD@HOST:PORT/DATABASE[?param=value&...]` (or
    /// `postgresql://`, or libpq's `host=... user=...` pairs; a unix socket directory as the
    /// host, percent-encoded, or `?host=/run/postgresql`). This build speaks plain TCP:
    /// `sslmode=require` is refused. An unreachable server, a refused login or a missing
    /// database is [`MetaError::Database`] naming the URL without its password.
    pub fn open(url: &str, opts: PostgresOptions) -> Result<PostgresMetadata, MetaError> {
        let target = Target::parse(url, &opts)?;
        let home = PostgresMetadata {
            target,
            opts,
            idle: Mutex::new(Vec::new()),
        };
        let mut conn = home.connect()?;
        home.check_server(&mut conn.client)?;
        migrate::upgrade(&mut conn.client, home.target.shown())?;
        // Prepared statements are planned against the schema as it is now, after migrating.
        home.give_back(conn);
        Ok(home)
    }

    /// The schema version stored in the database.
    pub fn schema_version(&self) -> Result<u32, MetaError> {
        let (mut conn, _) = self.take()?;
        let url = self.target.shown();
        let found = migrate::stored_version(conn.client(), url);
        conn.discard_if(found.is_err());
        found?.ok_or_else(|| MetaError::Corrupt(format!("{url}: the dare schema is missing")))
    }

    /// Refuses a server too old for the schema, or a database whose text is not UTF-8.
    fn check_server(&self, client: &mut Client) -> Result<(), MetaError> {
        let url = self.target.shown();
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::integer, \
                 current_setting('server_encoding')",
                &[],
            )
            .map_err(|e| {
                map_err(
                    &e,
                    url,
                    self.opts.lock_timeout,
                    Doing::NOTHING,
                    Phase::Statement,
                )
            })?;
        let version: i32 = row.get(0);
        let encoding: String = row.get(1);
        if version < MIN_SERVER_VERSION {
            return Err(MetaError::Database(format!(
                "{url}: PostgreSQL {version} is too old; dare needs 10 or newer"
            )));
        }
        if encoding != "UTF8" {
            return Err(MetaError::Database(format!(
                "{url}: the database's encoding is {encoding}; dare needs UTF8 \
                 (CREATE DATABASE ... ENCODING 'UTF8')"
            )));
        }
        Ok(())
    }

    /// A new connection, with the session settings every transaction relies on.
    fn connect(&self) -> Result<Conn, MetaError> {
        let mut client = self.target.connect()?;
        let settings = format!(
            "SET synchronous_commit = on; SET lock_timeout = '{}ms'",
            self.opts.lock_timeout.as_millis()
        );
        client.batch_execute(&settings).map_err(|e| {
            map_err(
                &e,
                self.target.shown(),
                self.opts.lock_timeout,
                Doing::NOTHING,
                Phase::Statement,
            )
        })?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// A connection from the pool, or a new one; and whether it is new (a new connection
    /// that fails is not worth replacing with another).
    fn take(&self) -> Result<(Pooled<'_>, bool), MetaError> {
        loop {
            let pooled = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let (conn, fresh) = match pooled {
                // Closed by the client library after an error it saw: drop it.
                Some(c) if c.client.is_closed() => continue,
                Some(c) => (c, false),
                None => (self.connect()?, true),
            };
            return Ok((
                Pooled {
                    conn: Some(conn),
                    home: self,
                    reusable: true,
                },
                fresh,
            ));
        }
    }

    /// Returns a connection to the pool.
    fn give_back(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

impl Metadata for PostgresMetadata {
    fn read(&self) -> Result<Box<dyn ReadTx + '_>, MetaError> {
        Ok(Box::new(PgTx::begin(self, false)?))
    }

    fn write(&self) -> Result<Box<dyn WriteTx + '_>, MetaError> {
        Ok(Box::new(PgTx::begin(self, true)?))
    }

    /// Not supported: a PostgreSQL database is backed up with PostgreSQL's own tools
    /// (`pg_dump`, or continuous archiving), which see the server's snapshots and permissions.
    fn backup(&self, dest: &Path) -> Result<(), MetaError> {
        Err(MetaError::Database(format!(
            "{}: dare does not copy a PostgreSQL metadata database into {}; back it up \
             with pg_dump --format=custom (a consistent snapshot) or the server's continuous \
             archiving (docs/METADATA.md §7)",
            self.target.shown(),
            dest.display()
        )))
    }

    fn describe(&self) -> String {
        self.target.shown().to_owned()
    }
}

/// A pooled connection and its prepared statements.
struct Conn {
    client: Client,
    /// Statements prepared on this connection, by their SQL (all `'static` strings of
    /// [`tx`]), so that each is parsed and planned once per connection.
    statements: HashMap<&'static str, Statement>,
}

/// A connection taken from a [`PostgresMetadata`]'s pool; goes back when dropped unless it
/// failed in a way that leaves it unusable.
struct Pooled<'a> {
    /// `None` only inside `drop`.
    conn: Option<Conn>,
    home: &'a PostgresMetadata,
    reusable: bool,
}

impl Pooled<'_> {
    fn conn(&mut self) -> &mut Conn {
        // `conn` is `None` only inside `drop`, after the last use.
        self.conn
            .as_mut()
            .expect("pooled connection used during drop")
    }

    fn client(&mut self) -> &mut Client {
        &mut self.conn().client
    }

    /// The statement for `sql`, prepared on this connection once.
    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        let conn = self.conn();
        if let Some(s) = conn.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = conn.client.prepare(sql)?;
        conn.statements.insert(sql, s.clone());
        Ok(s)
    }

    /// Marks the connection unusable (closed on drop instead of pooled) when `broken`.
    fn discard_if(&mut self, broken: bool) {
        if broken {
            self.reusable = false;
        }
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.reusable && !conn.client.is_closed() {
            self.home.give_back(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handle shows where the database is, never the password, even before connecting.
    #[test]
    fn debug_and_describe_hide_the_password() {
        let target = Target::parse(
            "postgres://dare:correct-horse@db.internal:6543/meta",
            &PostgresOptions::default(),
        )
        .expect("parse");
        let db = PostgresMetadata {
            target,
            opts: PostgresOptions::default(),
            idle: Mutex::new(Vec::new()),
        };
        assert_eq!(db.describe(), "postgres://dare:***@db.internal:6543/meta");
        let debug = format!("{db:?}");
        assert!(
            debug.contains("postgres://dare:***@db.internal:6543/meta"),
            "{debug}"
        );
        let backup = db.backup(Path::new("/tmp/x")).expect_err("no backup");
        for text in [debug, backup.to_string(), format!("{backup:?}")] {
            assert!(!text.contains("correct-horse"), "{text}");
        }
    }
}
