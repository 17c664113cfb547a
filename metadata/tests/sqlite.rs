//! [`SqliteMetadata`]: the conformance suite, then what only the SQLite file has — file
//! modes, schema versions, damaged files, locking, checkpoints, backup and restore.

#[macro_use]
mod suite;

use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dare_metadata::{
    MetaError, Metadata, NameRange, NewBucket, SqliteMetadata, SqliteOptions, TaskKind, TaskRecord,
    TaskState, read_with,
};
use tempfile::TempDir;

use suite::{Fixture, object, put, read, seed_bucket, write};

fn opts() -> SqliteOptions {
    SqliteOptions::default()
}

/// Options for tests that wait on a lock: give up soon.
fn short_wait() -> SqliteOptions {
    SqliteOptions {
        busy_timeout: Duration::from_millis(200),
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dare.db");
    let db = SqliteMetadata::create(&path, opts()).expect("create");
    Fixture {
        db: Box::new(db),
        reopen: Box::new(move || Box::new(SqliteMetadata::open(&path, opts()).expect("reopen"))),
        keep: Box::new(dir),
    }
}

metadata_suite!(sqlite, crate::fixture());

fn new_db() -> (TempDir, PathBuf, SqliteMetadata) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dare.db");
    let db = SqliteMetadata::create(&path, opts()).expect("create");
    (dir, path, db)
}

fn side(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Sets `dare_schema.version` behind dare's back.
fn set_schema_version(path: &Path, version: u32) {
    let c = rusqlite::Connection::open(path).expect("raw open");
    c.execute("UPDATE dare_schema SET version = ?1", [version])
        .expect("set version");
}

/// Overwrites the second half of a closed database file's pages with a pattern.
fn damage_second_half(path: &Path) {
    let mut bytes = fs::read(path).expect("read db");
    let page = 4096;
    assert!(bytes.len() >= 8 * page, "database too small to damage");
    let from = (bytes.len() / page / 2) * page;
    for (i, b) in bytes[from..].iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    fs::write(path, bytes).expect("write db");
}

/// A bucket with `n` objects, in batches of 1000.
fn fill(db: &dyn Metadata, n: usize) -> u64 {
    let b = seed_bucket(db);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        write(db, |tx| {
            for i in chunk {
                tx.put_object(&object(b, &format!("dir/{i:08}"), *i as u8))?;
            }
            Ok(())
        });
    }
    b
}

// ---------------------------------------------------------------------------------------
// Files and schema

#[test]
fn create_then_open() {
    let (_dir, path, db) = new_db();
    assert_eq!(SqliteMetadata::SCHEMA_VERSION, 3);
    assert_eq!(
        db.schema_version().expect("version"),
        SqliteMetadata::SCHEMA_VERSION
    );
    assert_eq!(db.path(), path);
    assert_eq!(db.describe(), format!("sqlite:{}", path.display()));
    db.check_integrity().expect("integrity");
    let b = seed_bucket(&db);
    drop(db);
    let db = SqliteMetadata::open(&path, opts()).expect("open");
    assert_eq!(
        db.schema_version().expect("version"),
        SqliteMetadata::SCHEMA_VERSION
    );
    assert!(read(&db, |tx| tx.bucket(dare_metadata::By::Id(b))).is_some());
}

/// Writes a database as a build of schema version 1 made it (`schema_v1.sql` and the
/// version row, in WAL mode), holding a store row, master key 1, rotation key 1, a completed
/// rotation task (id 1) and an unfinished one (id 2, at step 3 after an error).
fn write_version_1_database(path: &Path) {
    let c = rusqlite::Connection::open(path).expect("raw open");
    c.pragma_update(None, "journal_mode", "WAL").expect("wal");
    c.execute_batch(include_str!("../src/sqlite/schema_v1.sql"))
        .expect("schema 1");
    c.execute_batch(
        "INSERT INTO dare_schema (id, version) VALUES (1, 1);
         INSERT INTO store (id, store_id, chunk_shift, root_of_trust, rt_data_key,
             active_master, active_rotation, key_epoch, created, row_version)
         VALUES (1, zeroblob(16), 16, 'root-key-file', x'a5a5', 1, 1, 1, 1700000000, 4);
         INSERT INTO master_keys (version, state, wrapped, created, retired)
         VALUES (1, 'active', x'0101', 1700000000, NULL);
         INSERT INTO rotation_keys (version, master_version, wrapped, created, row_version)
         VALUES (1, 1, zeroblob(40), 1700000000, 1);
         INSERT INTO tasks (id, kind, state, step, started, ended, outcome, error,
             previous_master, new_master, new_rotation, master_attempts, row_version)
         VALUES (1, 'rotation', 'completed', 5, 1700000100, 1700000101, 'done', NULL,
                 1, 2, 2, 1, 6),
                (2, 'rotation', 'transient_error', 3, 1700000200, NULL, NULL,
                 'step 4 (keys rewrapped): kms unreachable', 2, 3, 3, 1, 5);",
    )
    .expect("version 1 rows");
}

/// The tasks of [`write_version_1_database`], as a build of version 2 reads them: a free
/// lease with token 0.
fn version_1_tasks() -> Vec<TaskRecord> {
    let done = TaskRecord {
        id: 1,
        kind: TaskKind::Rotation,
        state: TaskState::Completed,
        step: 5,
        started: 1_700_000_100,
        ended: Some(1_700_000_101),
        outcome: Some("done".into()),
        error: None,
        previous_master: 1,
        new_master: Some(2),
        new_rotation: Some(2),
        master_attempts: 1,
        row_version: 6,
        lease_owner: None,
        lease_expires: None,
        lease_token: 0,
    };
    let open = TaskRecord {
        id: 2,
        state: TaskState::TransientError,
        step: 3,
        started: 1_700_000_200,
        ended: None,
        outcome: None,
        error: Some("step 4 (keys rewrapped): kms unreachable".into()),
        previous_master: 2,
        new_master: Some(3),
        new_rotation: Some(3),
        row_version: 5,
        ..done.clone()
    };
    vec![done, open]
}

/// A database of schema version 1 is migrated once by `open` (migration 2: the task lease
/// columns; migration 3: the key management service): its rows are kept, existing tasks get a
/// free lease with token 0, the new columns take values and keep their rules, and opening
/// again migrates nothing.
#[test]
fn a_version_1_database_is_migrated_to_the_latest_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dare.db");
    write_version_1_database(&path);
    let db = SqliteMetadata::open(&path, opts()).expect("open migrates");
    assert_eq!(db.schema_version().expect("version"), 3);
    let tasks = version_1_tasks();
    assert_eq!(read(&db, |tx| tx.tasks()), tasks);
    let store = read(&db, |tx| tx.store()).expect("store row kept");
    assert_eq!((store.row_version, store.key_epoch), (4, 1));
    assert_eq!(read(&db, |tx| tx.rotation_keys()).len(), 1);
    db.check_integrity().expect("integrity after the migration");

    // The lease columns work on the migrated table, and their rules hold there too.
    let leased = TaskRecord {
        state: TaskState::Running,
        lease_owner: Some("node-a:77:c0ffee00".into()),
        lease_expires: Some(1_700_000_300_500),
        lease_token: 1,
        ..tasks[1].clone()
    };
    assert_eq!(write(&db, |tx| tx.update_task(&leased)), 6);
    let mut tx = db.write().expect("begin");
    let e = tx
        .update_task(&TaskRecord {
            lease_expires: None,
            row_version: 6,
            ..leased.clone()
        })
        .expect_err("an owner without an expiry");
    assert!(matches!(e, MetaError::Database(_)), "{e:?}");
    drop(tx);
    drop(db);

    let again = SqliteMetadata::open(&path, opts()).expect("reopen");
    assert_eq!(again.schema_version().expect("version"), 3);
    assert_eq!(
        read(&again, |tx| tx.task(2)),
        Some(TaskRecord {
            row_version: 6,
            ..leased
        })
    );
}

/// A backup made at schema version 1 is restored into a version-3 database: it is migrated
/// in a private copy first, so the restored database is at version 3 with the lease columns
/// and the key management service's tables.
#[test]
fn a_version_1_backup_is_migrated_when_restored() {
    let (dir, path, db) = new_db();
    seed_bucket(&db);
    let old = dir.path().join("v1.bak");
    write_version_1_database(&old);
    SqliteMetadata::restore(&old, &path, opts()).expect("restore");
    assert_eq!(db.schema_version().expect("version"), 3);
    assert_eq!(read(&db, |tx| tx.kms_keys()), vec![]);
    assert_eq!(read(&db, |tx| tx.tasks()), version_1_tasks());
    assert!(
        read(&db, |tx| tx.buckets(None)).is_empty(),
        "the backup's rows, not ours"
    );
}

#[test]
fn create_refuses_an_existing_file() {
    let (dir, path, db) = new_db();
    let b = seed_bucket(&db);
    drop(db);
    let e = SqliteMetadata::create(&path, opts()).expect_err("existing database");
    assert!(
        matches!(
            e,
            MetaError::AlreadyExists {
                what: "database",
                ..
            }
        ),
        "{e:?}"
    );
    // Untouched.
    let db = SqliteMetadata::open(&path, opts()).expect("open");
    assert!(read(&db, |tx| tx.bucket(dare_metadata::By::Id(b))).is_some());

    let stray = dir.path().join("stray");
    fs::write(&stray, b"not mine").expect("write");
    let e = SqliteMetadata::create(&stray, opts()).expect_err("existing file");
    assert!(matches!(e, MetaError::AlreadyExists { .. }), "{e:?}");
    assert_eq!(fs::read(&stray).expect("read"), b"not mine");
}

#[test]
fn open_without_a_file_is_not_initialized() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("absent.db");
    let e = SqliteMetadata::open(&path, opts()).expect_err("no file");
    assert!(
        matches!(e, MetaError::NotInitialized(ref p) if *p == path),
        "{e:?}"
    );
    assert!(!path.exists(), "open must not create the file");
}

const UMASK_CHILD_DIR: &str = "DARE_METADATA_TEST_UMASK_DIR";

/// The umask is per process: the check runs in a child process started by `sh` after
/// `umask 000`, so that no other test of this binary races with it.
#[test]
fn files_are_0600_whatever_the_umask() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(&exe)
        .args([
            "--exact",
            "files_are_0600_child",
            "--ignored",
            "--test-threads=1",
        ])
        .env(UMASK_CHILD_DIR, dir.path())
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run by files_are_0600_whatever_the_umask in a child process under umask 000"]
fn files_are_0600_child() {
    let own;
    let dir = match std::env::var_os(UMASK_CHILD_DIR) {
        Some(d) => {
            let dir = PathBuf::from(d);
            // Check that the parent really cleared the umask.
            let probe = dir.join("probe");
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&probe)
                .expect("probe");
            assert_eq!(mode(&probe), 0o666, "umask is not 000");
            dir
        }
        None => {
            own = tempfile::tempdir().expect("tempdir");
            own.path().to_path_buf()
        }
    };
    let path = dir.join("dare.db");
    let db = SqliteMetadata::create(&path, opts()).expect("create");
    seed_bucket(&db);
    // The WAL and shared-memory files exist while a connection is open.
    for p in [path.clone(), side(&path, "-wal"), side(&path, "-shm")] {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    let bak = dir.join("dare.bak");
    db.backup(&bak).expect("backup");
    assert_eq!(mode(&bak), 0o600);
}

#[test]
fn newer_schema_is_refused_untouched() {
    let (_dir, path, db) = new_db();
    seed_bucket(&db);
    drop(db);
    set_schema_version(&path, SqliteMetadata::SCHEMA_VERSION + 1);
    let before = fs::read(&path).expect("read");
    let e = SqliteMetadata::open(&path, opts()).expect_err("newer schema");
    assert!(
        matches!(
            e,
            MetaError::SchemaTooNew { found, supported }
                if found == SqliteMetadata::SCHEMA_VERSION + 1
                    && supported == SqliteMetadata::SCHEMA_VERSION
        ),
        "{e:?}"
    );
    assert_eq!(
        fs::read(&path).expect("read"),
        before,
        "the file was changed"
    );
}

#[test]
fn files_that_are_not_dare_databases_are_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let garbage = dir.path().join("garbage.db");
    fs::write(&garbage, b"this is not an SQLite database. ".repeat(200)).expect("write");
    let e = SqliteMetadata::open(&garbage, opts()).expect_err("garbage");
    assert!(matches!(e, MetaError::Corrupt(_)), "{e:?}");
    assert!(e.to_string().contains("garbage.db"), "{e}");

    // An interrupted create leaves an empty file.
    let empty = dir.path().join("empty.db");
    fs::write(&empty, b"").expect("write");
    let e = SqliteMetadata::open(&empty, opts()).expect_err("empty");
    assert!(matches!(e, MetaError::Corrupt(_)), "{e:?}");

    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .and_then(|c| c.execute_batch("CREATE TABLE t (x INTEGER)"))
        .expect("other database");
    let e = SqliteMetadata::open(&other, opts()).expect_err("other database");
    assert!(
        matches!(e, MetaError::Corrupt(ref m) if m.contains("dare_schema")),
        "{e:?}"
    );

    let versionless = dir.path().join("versionless.db");
    drop(SqliteMetadata::create(&versionless, opts()).expect("create"));
    rusqlite::Connection::open(&versionless)
        .and_then(|c| c.execute_batch("DELETE FROM dare_schema"))
        .expect("delete version");
    let e = SqliteMetadata::open(&versionless, opts()).expect_err("no version");
    assert!(matches!(e, MetaError::Corrupt(_)), "{e:?}");
}

#[test]
fn a_truncated_database_is_corrupt() {
    let (_dir, path, db) = new_db();
    fill(&db, 3000);
    drop(db); // checkpoints the WAL into the file and removes it
    let len = fs::metadata(&path).expect("stat").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(len / 2))
        .expect("truncate");
    match SqliteMetadata::open(&path, opts()) {
        Err(e) => assert!(matches!(e, MetaError::Corrupt(_)), "{e:?}"),
        Ok(db) => {
            let e = db.check_integrity().expect_err("truncated");
            assert!(matches!(e, MetaError::Corrupt(_)), "{e:?}");
        }
    }
}

#[test]
fn check_integrity_finds_damage() {
    let (_dir, path, db) = new_db();
    fill(&db, 3000);
    db.check_integrity().expect("intact");
    drop(db);
    damage_second_half(&path);
    match SqliteMetadata::open(&path, opts()) {
        Err(e) => assert!(matches!(e, MetaError::Corrupt(_)), "{e:?}"),
        Ok(db) => {
            let e = db.check_integrity().expect_err("damaged");
            assert!(matches!(e, MetaError::Corrupt(_)), "{e:?}");
        }
    }
}

#[test]
fn damaged_rows_are_corrupt() {
    let (_dir, path, db) = new_db();
    let b = seed_bucket(&db);
    let ns = read(&db, |tx| tx.bucket(dare_metadata::By::Id(b)))
        .expect("bucket")
        .namespace_id;
    let bad_rows = [
        // A name that is not UTF-8.
        "x'ff', zeroblob(16), 1, 1",
        // An object id of the wrong length.
        "x'61', zeroblob(15), 1, 1",
        // A negative creation time.
        "x'61', zeroblob(16), 1, -1",
    ];
    for (i, values) in bad_rows.iter().enumerate() {
        let bucket = write(&db, |tx| {
            tx.insert_bucket(&NewBucket {
                id: None,
                name: format!("bad{i}"),
                namespace_id: ns,
                encryption: false,
                wrapped_key: None,
                kms_key_id: None,
                created: 1,
            })
        });
        let raw = rusqlite::Connection::open(&path).expect("raw open");
        raw.execute_batch("PRAGMA ignore_check_constraints = ON")
            .expect("pragma");
        raw.execute(
            &format!(
                "INSERT INTO objects (bucket_id, name, object_id, size, created_ms, etag, format, \
                 suite, chunk_shift, nonce_prefix, envelope_kind, envelope, meta, row_version) \
                 VALUES (?1, {values}, 'e', 2, 0, 16, zeroblob(7), NULL, NULL, x'', 1)"
            ),
            [i64::try_from(bucket).expect("id")],
        )
        .expect("insert bad row");
        let e =
            read_with(&db, |tx| tx.objects(bucket, NameRange::default(), 10)).expect_err("bad row");
        assert!(matches!(e, MetaError::Corrupt(_)), "{values}: {e:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Locking and the pool

#[test]
fn a_held_write_lock_is_busy_after_the_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dare.db");
    let db = SqliteMetadata::create(&path, short_wait()).expect("create");
    let b = seed_bucket(&db);

    let raw = rusqlite::Connection::open(&path).expect("raw open");
    raw.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let started = Instant::now();
    let e = db.write().map(|_| ()).expect_err("locked");
    match e {
        // SQLite's busy handler sleeps until the timeout has passed: a lower bound only.
        MetaError::Busy { waited } => {
            assert!(waited >= Duration::from_millis(200), "{waited:?}");
            assert!(started.elapsed() >= Duration::from_millis(200));
        }
        e => panic!("{e:?}"),
    }
    // Readers are not blocked by a writer.
    assert_eq!(read(&db, |tx| tx.object_count(b)), 0);
    raw.execute_batch("COMMIT").expect("release");
    put(&db, b, &["after"]);
}

#[test]
fn pooled_connections_never_keep_a_transaction_open() {
    let (_dir, path, db) = new_db();
    let b = seed_bucket(&db);
    let other = SqliteMetadata::open(&path, short_wait()).expect("second handle");
    for _ in 0..3 {
        {
            let mut tx = db.write().expect("begin");
            tx.put_object(&object(b, "dropped", 1)).expect("put");
        }
        {
            let mut r = db.read().expect("begin read");
            r.object_count(b).expect("count");
        }
        // Had a pooled connection kept its transaction (and the write lock, or a snapshot),
        // this would be Busy or stale.
        put(&other, b, &["other"]);
        assert!(read(&db, |tx| tx.object(b, "other")).is_some());
        assert!(read(&db, |tx| tx.object(b, "dropped")).is_none());
    }
}

// ---------------------------------------------------------------------------------------
// Checkpoint, backup and restore

#[test]
fn checkpoint_shreds_a_deleted_buckets_key() {
    let (_dir, path, db) = new_db();
    let b = seed_bucket(&db);
    let ns = read(&db, |tx| tx.bucket(dare_metadata::By::Id(b)))
        .expect("bucket")
        .namespace_id;
    let key: Vec<u8> = (0..40u8).map(|i| i.wrapping_mul(37) ^ 0xc5).collect();
    let doomed = write(&db, |tx| {
        tx.insert_bucket(&NewBucket {
            id: None,
            name: "doomed".into(),
            namespace_id: ns,
            encryption: true,
            wrapped_key: Some(key.clone()),
            kms_key_id: None,
            created: 1,
        })
    });
    db.checkpoint().expect("checkpoint");
    let wal = side(&path, "-wal");
    assert_eq!(
        fs::metadata(&wal).expect("wal").len(),
        0,
        "WAL not truncated"
    );
    assert!(contains(&fs::read(&path).expect("read"), &key));

    write(&db, |tx| tx.delete_bucket(doomed));
    // secure_delete: the page written to the WAL has the row zeroed; the database file still
    // holds the old page until the checkpoint.
    assert!(!contains(&fs::read(&wal).expect("read wal"), &key));
    assert!(contains(&fs::read(&path).expect("read"), &key));
    db.checkpoint().expect("checkpoint");
    assert_eq!(
        fs::metadata(&wal).expect("wal").len(),
        0,
        "WAL not truncated"
    );
    assert!(
        !contains(&fs::read(&path).expect("read"), &key),
        "the deleted bucket's wrapped key is still in the database file"
    );
}

#[test]
fn backup_while_writing_then_restore() {
    const BATCH: usize = 50;
    let (dir, path, db) = new_db();
    let b = seed_bucket(&db);
    let bak = dir.path().join("dare.bak");
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut n = 0;
            while n < 20 || !stop.load(Ordering::Relaxed) {
                write(&db, |tx| {
                    for i in 0..BATCH {
                        tx.put_object(&object(b, &format!("{n:06}/{i:03}"), i as u8))?;
                    }
                    Ok(())
                });
                n += 1;
            }
        });
        while read(&db, |tx| tx.object_count(b)) < (5 * BATCH) as u64 {
            std::thread::yield_now();
        }
        db.backup(&bak).expect("backup");
        stop.store(true, Ordering::Relaxed);
        writer.join().expect("writer");
    });
    assert_eq!(mode(&bak), 0o600);
    for suffix in ["-wal", "-shm", "-journal"] {
        assert!(!side(&bak, suffix).exists(), "backup left a {suffix} file");
    }
    let e = db.backup(&bak).expect_err("existing destination");
    assert!(matches!(e, MetaError::AlreadyExists { .. }), "{e:?}");

    // The backup is one consistent snapshot: whole batches only.
    let copy = dir.path().join("copy.db");
    fs::copy(&bak, &copy).expect("copy");
    let backed_up = {
        let c = SqliteMetadata::open(&copy, opts()).expect("open backup copy");
        c.check_integrity().expect("backup integrity");
        read(&c, |tx| tx.object_count(b))
    };
    assert!(backed_up >= (5 * BATCH) as u64 && backed_up % BATCH as u64 == 0);
    let live = read(&db, |tx| tx.object_count(b));
    assert!(live > backed_up);

    // Restore under a live handle, with a reader holding a snapshot.
    let mut r = db.read().expect("begin read");
    assert_eq!(r.object_count(b).expect("count"), live);
    SqliteMetadata::restore(&bak, &path, opts()).expect("restore");
    assert_eq!(
        r.object_count(b).expect("count"),
        live,
        "the snapshot moved"
    );
    drop(r);
    assert_eq!(read(&db, |tx| tx.object_count(b)), backed_up);
    db.check_integrity().expect("restored integrity");
    put(&db, b, &["after-restore"]);
    assert_eq!(read(&db, |tx| tx.object_count(b)), backed_up + 1);
}

#[test]
fn restore_refuses_bad_backups() {
    let (dir, path, db) = new_db();
    let b = fill(&db, 3000);
    let check = |db: &SqliteMetadata| assert_eq!(read(db, |tx| tx.object_count(b)), 3000);

    let garbage = dir.path().join("garbage.bak");
    fs::write(&garbage, b"not a backup ".repeat(1000)).expect("write");
    let e = SqliteMetadata::restore(&garbage, &path, opts()).expect_err("garbage");
    assert!(matches!(e, MetaError::Corrupt(_)), "{e:?}");
    check(&db);

    let newer = dir.path().join("newer.bak");
    db.backup(&newer).expect("backup");
    set_schema_version(&newer, SqliteMetadata::SCHEMA_VERSION + 1);
    let e = SqliteMetadata::restore(&newer, &path, opts()).expect_err("newer");
    assert!(matches!(e, MetaError::SchemaTooNew { .. }), "{e:?}");
    check(&db);

    let damaged = dir.path().join("damaged.bak");
    db.backup(&damaged).expect("backup");
    damage_second_half(&damaged);
    let e = SqliteMetadata::restore(&damaged, &path, opts()).expect_err("damaged");
    assert!(matches!(e, MetaError::Corrupt(_)), "{e:?}");
    check(&db);

    let missing = dir.path().join("missing.bak");
    let e = SqliteMetadata::restore(&missing, &path, opts()).expect_err("missing");
    assert!(matches!(e, MetaError::Io { .. }), "{e:?}");

    let good = dir.path().join("good.bak");
    db.backup(&good).expect("backup");
    let nowhere = dir.path().join("nowhere.db");
    let e = SqliteMetadata::restore(&good, &nowhere, opts()).expect_err("no destination");
    assert!(matches!(e, MetaError::NotInitialized(_)), "{e:?}");
    assert!(!nowhere.exists());
    check(&db);
}

// ---------------------------------------------------------------------------------------
// Throughput (a figure, not a test)

/// `cargo test -p dare-metadata --release --test sqlite -- --ignored --nocapture throughput`
#[test]
#[ignore = "prints throughput figures; run in release"]
fn throughput() {
    const N: usize = 100_000;
    const BATCH: usize = 1000;
    let (_dir, _path, db) = new_db();
    let started = Instant::now();
    let b = fill(&db, N);
    let put_rate = N as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    read(&db, |tx| {
        for i in 0..N {
            tx.object(b, &format!("dir/{i:08}"))?.expect("object");
        }
        Ok(())
    });
    let get_rate = N as f64 / started.elapsed().as_secs_f64();

    let envelope = [0x5au8; 48];
    let started = Instant::now();
    for chunk in (0..N).collect::<Vec<_>>().chunks(BATCH) {
        write(&db, |tx| {
            for i in chunk {
                let oid = [*i as u8; 16];
                assert!(tx.swap_envelope(b, &format!("dir/{i:08}"), &oid, 1, 2, &envelope)?);
            }
            Ok(())
        });
    }
    let swap_rate = N as f64 / started.elapsed().as_secs_f64();
    println!(
        "sqlite, {N} objects, {BATCH} per transaction: put_object {put_rate:.0}/s, \
         object {get_rate:.0}/s, swap_envelope {swap_rate:.0}/s"
    );
}
