//! [`SqliteMetadata`]: the embedded metadata database, one SQLite file in WAL mode
//! (docs/METADATA.md).
//!
//! - **Durability.** Every connection runs `synchronous=FULL`: a commit that returned has
//!   reached the disk (the WAL is synced at each commit), so an acknowledged PUT survives a
//!   power loss.
//! - **Concurrency.** WAL lets readers run beside one writer. A read transaction is
//!   `BEGIN DEFERRED` (its snapshot is fixed at its first read); a write transaction is
//!   `BEGIN IMMEDIATE`, which takes the write lock up front and waits at most
//!   [`SqliteOptions::busy_timeout`] for it, so writers queue instead of failing late with
//!   an upgrade conflict.
//! - **Crypto-shredding.** `secure_delete=ON` overwrites deleted rows (a deleted bucket's
//!   wrapped key, a CMK's deleted key material) with zeros; [`SqliteMetadata::checkpoint`]
//!   then moves every page out of the WAL and truncates it, so the old page images go too.
//! - **Files.** The database is created mode 0600 whatever the umask; SQLite gives its
//!   `-wal` and `-shm` files the mode of the database file. Backups are single files
//!   (rollback journal mode), also 0600.
//! - **Schema.** Versioned by the one row of `dare_schema`; migrations are in
//!   `sqlite/migrate.rs`. A database of a newer schema is refused untouched.

mod error;
mod migrate;
mod rows;
mod tx;

use std::fs;
use std::io;
use std::ops::Deref;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::MetaError;
use crate::tx::{Metadata, ReadTx, WriteTx};

use self::error::{Doing, map_err};
use self::tx::SqliteTx;

/// Options of [`SqliteMetadata`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long a writer waits for another writer's lock before [`MetaError::Busy`]
    /// (default 10 s).
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            busy_timeout: Duration::from_secs(10),
        }
    }
}

/// The embedded metadata database: one SQLite file in WAL mode and a small pool of
/// connections to it.
#[derive(Debug)]
pub struct SqliteMetadata {
    path: PathBuf,
    opts: SqliteOptions,
    /// Idle connections, none inside a transaction. A hand-written pool: taking a connection
    /// is a lock and a `pop`, and r2d2 would add a reaper thread and a dependency for
    /// nothing we need.
    idle: Mutex<Vec<Connection>>,
}

/// Idle connections kept beyond this many are closed.
const MAX_IDLE: usize = 16;

/// Prepared statements cached per connection: more than the distinct statements of
/// [`tx`], so that none is ever compiled twice.
const STATEMENT_CACHE: usize = 64;

/// How long a backup or restore waits between attempts when the other side is locked.
const BACKUP_RETRY: Duration = Duration::from_millis(10);

impl SqliteMetadata {
    /// Newest schema version this build knows.
    pub const SCHEMA_VERSION: u32 = migrate::LATEST;

    /// Creates a new database file at `path`, mode 0600 whatever the umask, with the whole
    /// schema (every migration, in one transaction). Refuses an existing file
    /// ([`MetaError::AlreadyExists`] `{ what: "database", .. }`).
    pub fn create(path: &Path, opts: SqliteOptions) -> Result<SqliteMetadata, MetaError> {
        create_file(path, "database")?;
        let made = (|| {
            let mut conn = connect(path, &opts)?;
            set_wal(&conn, &opts)?;
            migrate::initialize(&mut conn, opts.busy_timeout)?;
            Ok(SqliteMetadata {
                path: path.to_path_buf(),
                opts,
                idle: Mutex::new(vec![conn]),
            })
        })();
        if made.is_err() {
            // Ours, and holding no store: leave nothing behind that a retry would trip on.
            // The connection is closed by now (dropped inside the closure).
            remove_database_files(path);
        }
        made
    }

    /// Opens an existing database ([`MetaError::NotInitialized`] if there is no file) and
    /// brings its schema up to date: pending migrations run once, in one `BEGIN IMMEDIATE`
    /// transaction that checks the version again, so two processes opening at once are safe.
    /// A newer schema is [`MetaError::SchemaTooNew`] and nothing is changed; a file that is
    /// not an SQLite database, or one without dare's schema, is [`MetaError::Corrupt`].
    ///
    /// Opening does not scan the file ([`check_integrity`](Self::check_integrity) does).
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<SqliteMetadata, MetaError> {
        match fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(MetaError::Corrupt(format!(
                    "{} is not a regular file",
                    path.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(MetaError::NotInitialized(path.to_path_buf()));
            }
            Err(source) => {
                return Err(MetaError::Io {
                    op: "open",
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        let mut conn = connect(path, &opts)?;
        // Read the version before anything may write: switching a database to WAL rewrites
        // its header, and a database of a newer schema must be left exactly as it is.
        let found = migrate::stored_version(&conn, path, opts.busy_timeout)?;
        if found > Self::SCHEMA_VERSION {
            return Err(MetaError::SchemaTooNew {
                found,
                supported: Self::SCHEMA_VERSION,
            });
        }
        set_wal(&conn, &opts)?;
        if found < Self::SCHEMA_VERSION {
            migrate::upgrade(&mut conn, path, opts.busy_timeout)?;
        }
        Ok(SqliteMetadata {
            path: path.to_path_buf(),
            opts,
            idle: Mutex::new(vec![conn]),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version stored in the database.
    pub fn schema_version(&self) -> Result<u32, MetaError> {
        let conn = self.take()?;
        migrate::stored_version(&conn, &self.path, self.opts.busy_timeout)
    }

    /// Runs `PRAGMA integrity_check` (which reads the whole file) and
    /// `PRAGMA foreign_key_check`: `Ok(())`, or [`MetaError::Corrupt`] with the first
    /// problems found.
    pub fn check_integrity(&self) -> Result<(), MetaError> {
        let conn = self.take()?;
        integrity(&conn, self.opts.busy_timeout)
    }

    /// Copies every page of the WAL into the database and truncates the WAL
    /// (`PRAGMA wal_checkpoint(TRUNCATE)`), waiting up to the busy timeout for readers to
    /// finish. Run it after deleting a bucket: with `secure_delete` the database no longer
    /// holds its wrapped key, and after this the WAL does not either (crypto-shredding).
    pub fn checkpoint(&self) -> Result<(), MetaError> {
        let conn = self.take()?;
        let started = Instant::now();
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(|e| map_err(e, started.elapsed(), Doing::NOTHING))?;
        if busy != 0 {
            return Err(MetaError::Busy {
                waited: started.elapsed(),
            });
        }
        Ok(())
    }

    /// Replaces the contents of the database at `dest` (which must exist and be a dare
    /// database, possibly in use by other connections) with the backup file `backup` (made
    /// by [`Metadata::backup`]).
    ///
    /// The backup must be a dare database of a schema version this build reads and pass
    /// `integrity_check`; an older one is migrated in a temporary copy first. The pages are
    /// written with SQLite's online backup API into `dest` in one write transaction: other
    /// connections see either the old or the restored database, never a mix.
    pub fn restore(backup: &Path, dest: &Path, opts: SqliteOptions) -> Result<(), MetaError> {
        let src = open_backup(backup, &opts)?;
        let found = migrate::stored_version(&src, backup, opts.busy_timeout)?;
        if found > Self::SCHEMA_VERSION {
            return Err(MetaError::SchemaTooNew {
                found,
                supported: Self::SCHEMA_VERSION,
            });
        }
        integrity(&src, opts.busy_timeout).map_err(|e| match e {
            MetaError::Corrupt(why) => {
                MetaError::Corrupt(format!("backup {}: {why}", backup.display()))
            }
            other => other,
        })?;

        let mut dst = Self::open(dest, opts.clone())?.into_connection()?;
        if found == Self::SCHEMA_VERSION {
            return copy_pages(&src, &mut dst, opts.busy_timeout);
        }
        // An older backup: migrate a private copy, so that no other connection ever sees
        // `dest` at an old schema.
        drop(src);
        let staging = staging_path(dest);
        create_file(&staging, "restore staging file")?;
        let restored = (|| {
            let mut stage = connect(&staging, &opts)?;
            copy_pages(&open_backup(backup, &opts)?, &mut stage, opts.busy_timeout)?;
            migrate::upgrade(&mut stage, &staging, opts.busy_timeout)?;
            copy_pages(&stage, &mut dst, opts.busy_timeout)
        })();
        remove_database_files(&staging);
        restored
    }

    /// A connection from the pool, or a new one.
    fn take(&self) -> Result<PooledConn<'_>, MetaError> {
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = connect(&self.path, &self.opts)?;
                set_wal(&c, &self.opts)?;
                c
            }
        };
        Ok(PooledConn {
            conn: Some(conn),
            home: self,
        })
    }

    /// The one connection of a handle just opened.
    fn into_connection(self) -> Result<Connection, MetaError> {
        let mut idle = self
            .idle
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        match idle.pop() {
            Some(c) => Ok(c),
            None => connect(&self.path, &self.opts),
        }
    }
}

impl Metadata for SqliteMetadata {
    fn read(&self) -> Result<Box<dyn ReadTx + '_>, MetaError> {
        Ok(Box::new(SqliteTx::begin_read(
            self.take()?,
            self.opts.busy_timeout,
        )?))
    }

    fn write(&self) -> Result<Box<dyn WriteTx + '_>, MetaError> {
        Ok(Box::new(SqliteTx::begin_write(
            self.take()?,
            self.opts.busy_timeout,
        )?))
    }

    /// Copies the database page by page (SQLite's online backup API, all pages in one step,
    /// which reads one WAL snapshot and so never blocks or restarts for writers) into a new
    /// file `dest`, mode 0600, then turns the copy into a self-contained rollback-journal
    /// database. Refuses an existing `dest`.
    fn backup(&self, dest: &Path) -> Result<(), MetaError> {
        create_file(dest, "backup file")?;
        let done = (|| {
            let src = self.take()?;
            let mut dst = connect(dest, &self.opts)?;
            copy_pages(&src, &mut dst, self.opts.busy_timeout)?;
            drop(src);
            let mode: String = dst
                .pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))
                .map_err(|e| map_err(e, self.opts.busy_timeout, Doing::NOTHING))?;
            if !mode.eq_ignore_ascii_case("delete") {
                return Err(MetaError::Database(format!(
                    "backup {} stayed in journal mode {mode}",
                    dest.display()
                )));
            }
            dst.close()
                .map_err(|(_, e)| map_err(e, self.opts.busy_timeout, Doing::NOTHING))?;
            sync_parent(dest)
        })();
        if done.is_err() {
            remove_database_files(dest);
        }
        done
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}

/// A connection taken from a [`SqliteMetadata`]'s pool; goes back when dropped, unless it is
/// inside a transaction (then it is closed, which rolls the transaction back).
struct PooledConn<'a> {
    conn: Option<Connection>,
    home: &'a SqliteMetadata,
}

impl Deref for PooledConn<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        // `conn` is `None` only inside `drop`, after the last use.
        self.conn
            .as_ref()
            .expect("pooled connection used during drop")
    }
}

impl Drop for PooledConn<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !conn.is_autocommit() {
            return;
        }
        let mut idle = self
            .home
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// Opens a connection to an existing file (never creating one) and sets what every
/// connection needs. Writes nothing to the file.
fn connect(path: &Path, opts: &SqliteOptions) -> Result<Connection, MetaError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::CannotOpen) => MetaError::Io {
                op: "open",
                path: path.to_path_buf(),
                source: io::Error::other(e.to_string()),
            },
            _ => map_err(e, opts.busy_timeout, Doing::NOTHING),
        })?;
    configure(&conn, opts).map_err(|e| match map_err(e, opts.busy_timeout, Doing::NOTHING) {
        MetaError::Corrupt(why) => MetaError::Corrupt(format!("{}: {why}", path.display())),
        other => other,
    })?;
    Ok(conn)
}

/// Per-connection settings (none is stored in the file).
fn configure(conn: &Connection, opts: &SqliteOptions) -> rusqlite::Result<()> {
    conn.busy_timeout(opts.busy_timeout)?;
    // A commit that returned is on disk, WAL included: an acknowledged PUT survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted rows (a deleted bucket's wrapped key) are overwritten with zeros.
    conn.pragma_update(None, "secure_delete", "ON")?;
    // The file is data, not code: no schema-defined triggers or views calling functions, and
    // no way for SQL to corrupt the file on purpose (a damaged file cannot turn into more).
    conn.pragma_update(None, "trusted_schema", "OFF")?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(())
}

/// Puts the database in WAL mode (a no-op once it is: the mode is stored in the file) and
/// checks that it took.
fn set_wal(conn: &Connection, opts: &SqliteOptions) -> Result<(), MetaError> {
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(|e| map_err(e, opts.busy_timeout, Doing::NOTHING))?;
    if mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(MetaError::Database(format!(
            "cannot switch to WAL mode (journal mode stays {mode}); is the file on a \
             filesystem without shared memory?"
        )))
    }
}

/// Opens a backup file without writing to it.
fn open_backup(path: &Path, opts: &SqliteOptions) -> Result<Connection, MetaError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if let Err(source) = fs::metadata(path) {
        return Err(MetaError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        });
    }
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| map_err(e, opts.busy_timeout, Doing::NOTHING))?;
    conn.busy_timeout(opts.busy_timeout)
        .and_then(|()| conn.pragma_update(None, "trusted_schema", "OFF"))
        .map_err(|e| map_err(e, opts.busy_timeout, Doing::NOTHING))?;
    Ok(conn)
}

/// `integrity_check` and `foreign_key_check`, the first problems as [`MetaError::Corrupt`].
fn integrity(conn: &Connection, waited: Duration) -> Result<(), MetaError> {
    const SHOWN: usize = 10;
    let err = |e| map_err(e, waited, Doing::NOTHING);
    let mut stmt = conn.prepare("PRAGMA integrity_check(10)").map_err(err)?;
    let problems: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(err)?
        .collect::<Result<_, _>>()
        .map_err(err)?;
    if problems != ["ok"] {
        // One row may hold several lines; the header line names the schema ("main").
        let lines: Vec<&str> = problems
            .iter()
            .flat_map(|p| p.lines())
            .filter(|l| !l.starts_with("***"))
            .take(SHOWN)
            .collect();
        return Err(MetaError::Corrupt(lines.join("; ")));
    }
    let mut stmt = conn.prepare("PRAGMA foreign_key_check").map_err(err)?;
    let orphans: Vec<String> = stmt
        .query_map([], |r| {
            Ok(format!(
                "a row of {} names a missing row of {}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(2)?
            ))
        })
        .map_err(err)?
        .take(SHOWN)
        .collect::<Result<_, _>>()
        .map_err(err)?;
    if !orphans.is_empty() {
        return Err(MetaError::Corrupt(orphans.join("; ")));
    }
    Ok(())
}

/// Copies every page of `src` into `dst` in one step (one read snapshot of `src`, one write
/// transaction on `dst`), retrying while either side is locked, up to `wait`.
fn copy_pages(src: &Connection, dst: &mut Connection, wait: Duration) -> Result<(), MetaError> {
    let started = Instant::now();
    let backup = Backup::new(src, dst).map_err(|e| map_err(e, wait, Doing::NOTHING))?;
    loop {
        match backup
            .step(-1)
            .map_err(|e| map_err(e, started.elapsed(), Doing::NOTHING))?
        {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            StepResult::Busy | StepResult::Locked => {
                if started.elapsed() >= wait {
                    return Err(MetaError::Busy {
                        waited: started.elapsed(),
                    });
                }
                thread::sleep(BACKUP_RETRY);
            }
            // `StepResult` is non-exhaustive; any new outcome is treated as "not yet".
            _ => thread::sleep(BACKUP_RETRY),
        }
    }
}

/// Creates an empty file with O_CREAT|O_EXCL, mode 0600 whatever the umask, and syncs its
/// directory entry. SQLite opens it next and gives its side files the same mode.
fn create_file(path: &Path, what: &'static str) -> Result<(), MetaError> {
    let io_err = |op, source| MetaError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => MetaError::AlreadyExists {
                what,
                name: path.display().to_string(),
            },
            _ => io_err("create", e),
        })?;
    // The umask can only have removed bits from 0600; fchmod is not subject to it.
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err("set the mode of", e))?;
    sync_parent(path)
}

/// Makes a new directory entry durable.
fn sync_parent(path: &Path) -> Result<(), MetaError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| MetaError::Io {
            op: "sync the directory of",
            path: path.to_path_buf(),
            source,
        })
}

/// Removes a database this module created and its side files (best effort: used only to
/// clean up after a failure, whose error is the one reported).
fn remove_database_files(path: &Path) {
    let _ = fs::remove_file(path);
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let _ = fs::remove_file(side);
    }
}

/// A private file beside `dest` for a restore that migrates.
fn staging_path(dest: &Path) -> PathBuf {
    let mut p = dest.as_os_str().to_owned();
    p.push(format!(".restore-{}", std::process::id()));
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::{KmsKeyRecord, KmsKeyState, KmsOrigin, KmsVersionRecord};

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    fn key(key_id: &str) -> KmsKeyRecord {
        KmsKeyRecord {
            key_id: key_id.into(),
            alias: Some(format!("alias/{key_id}")),
            description: String::new(),
            state: KmsKeyState::Enabled,
            origin: KmsOrigin::Generated,
            default_key: false,
            created_ms: 1,
            rotation_enabled: false,
            rotation_days: 365,
            last_rotation_ms: 1,
            rotations: 0,
            last_manual_rotation_ms: None,
            deletion_due_ms: None,
            state_before: None,
            material_expires_ms: None,
            material_fingerprint: None,
            min_decryption_version: 1,
            import: None,
            deleted_ms: None,
            row_version: 1,
        }
    }

    /// Writes a CMK with one version holding `material`, and checkpoints.
    fn keep(db: &SqliteMetadata, key_id: &str, material: &[u8]) {
        let mut tx = db.write().expect("begin");
        tx.insert_kms_key(&key(key_id)).expect("key");
        tx.insert_kms_version(&KmsVersionRecord {
            key_id: key_id.into(),
            version: 1,
            material: Some(material.to_vec()),
            created_ms: 1,
            encryptions: 0,
        })
        .expect("version");
        tx.commit().expect("commit");
        db.checkpoint().expect("checkpoint");
        assert!(contains(&fs::read(&db.path).expect("read"), material));
    }

    /// On a connection without `secure_delete`, `delete_kms_versions` still leaves no
    /// material in the file: it overwrites it with zeros before deleting. A plain DELETE on
    /// that connection would leave the bytes in the page's free space (the control).
    #[test]
    fn deleted_material_is_zeroed_without_secure_delete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = SqliteMetadata::create(&dir.path().join("db"), SqliteOptions::default())
            .expect("create");
        {
            // The pool's only connection, which every transaction below takes.
            let conn = db.take().expect("connection");
            conn.pragma_update(None, "secure_delete", "OFF")
                .expect("secure_delete off");
        }
        assert_eq!(db.idle.lock().expect("pool").len(), 1);

        let material: Vec<u8> = (0..60u8).map(|i| i.wrapping_mul(71) ^ 0x5a).collect();
        keep(&db, "k1", &material);
        let mut tx = db.write().expect("begin");
        assert_eq!(tx.delete_kms_versions("k1").expect("delete"), 1);
        tx.commit().expect("commit");
        db.checkpoint().expect("checkpoint");
        assert!(
            !contains(&fs::read(&db.path).expect("read"), &material),
            "deleted material is still in the file"
        );

        let control: Vec<u8> = (0..60u8).map(|i| i.wrapping_mul(37) ^ 0xc3).collect();
        keep(&db, "k2", &control);
        {
            let conn = db.take().expect("connection");
            let on: i64 = conn
                .query_row("PRAGMA secure_delete", [], |r| r.get(0))
                .expect("pragma");
            assert_eq!(on, 0);
            conn.execute("DELETE FROM kms_versions WHERE key_id = 'k2'", [])
                .expect("plain delete");
        }
        db.checkpoint().expect("checkpoint");
        assert!(
            contains(&fs::read(&db.path).expect("read"), &control),
            "without secure_delete a plain DELETE would leave the bytes (the test is void)"
        );
    }
}
