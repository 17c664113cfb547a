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
    BucketRecord, By, KmsAuditRecord, KmsBy, KmsRegistration, KmsVersionRecord, MetaError,
    Metadata, NameRange, NewBucket, SqliteMetadata, SqliteOptions, TaskKind, TaskRecord, TaskState,
    read_with,
};
use tempfile::TempDir;

use suite::{Fixture, kms_key, object, put, read, seed_bucket, write};

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
    assert_eq!(SqliteMetadata::SCHEMA_VERSION, 5);
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
        target_root: None,
        updated: None,
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
    assert_eq!(db.schema_version().expect("version"), 5);
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
    assert_eq!(again.schema_version().expect("version"), 5);
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
    assert_eq!(db.schema_version().expect("version"), 5);
    assert_eq!(read(&db, |tx| tx.kms_keys()), vec![]);
    assert_eq!(read(&db, |tx| tx.tasks()), version_1_tasks());
    assert!(
        read(&db, |tx| tx.buckets(None)).is_empty(),
        "the backup's rows, not ours"
    );
}

/// Writes a database as a build of schema version 2 made it (`schema_v1.sql`,
/// `schema_v2.sql` and the version row, in WAL mode): a store row, master key 1, rotation key
/// 1, namespace 1, buckets 1 (encrypted), 2 (in clear) and 5 (encrypted, an imported id),
/// with buckets 6 and 7 deleted since (the id counter is at 7), objects in buckets 1 and 2,
/// and a task holding its lease.
fn write_version_2_database(path: &Path) {
    let c = rusqlite::Connection::open(path).expect("raw open");
    c.pragma_update(None, "journal_mode", "WAL").expect("wal");
    c.pragma_update(None, "foreign_keys", "ON")
        .expect("foreign keys");
    c.execute_batch(include_str!("../src/sqlite/schema_v1.sql"))
        .expect("schema 1");
    c.execute_batch(include_str!("../src/sqlite/schema_v2.sql"))
        .expect("schema 2");
    c.execute_batch(
        "INSERT INTO dare_schema (id, version) VALUES (1, 2);
         INSERT INTO store (id, store_id, chunk_shift, root_of_trust, rt_data_key,
             active_master, active_rotation, key_epoch, created, row_version)
         VALUES (1, zeroblob(16), 16, 'root-key-file', x'a5a5', 1, 1, 3, 1700000000, 9);
         INSERT INTO master_keys (version, state, wrapped, created, retired)
         VALUES (1, 'active', x'0101', 1700000000, NULL);
         INSERT INTO rotation_keys (version, master_version, wrapped, created, row_version)
         VALUES (1, 1, zeroblob(40), 1700000000, 1);
         INSERT INTO namespaces (id, name, encryption, master_version, wrapped_key, created,
             row_version)
         VALUES (1, 'ns', 1, 1, zeroblob(40), 1700000001, 1);
         INSERT INTO buckets (id, name, namespace_id, encryption, wrapped_key, created,
             row_version)
         VALUES (1, 'photos', 1, 1, randomblob(40), 1700000002, 3),
                (2, 'public', 1, 0, NULL, 1700000003, 1),
                (5, 'imported', 1, 1, randomblob(40), 1700000004, 1),
                (7, 'deleted-later', 1, 0, NULL, 1700000005, 1);
         DELETE FROM buckets WHERE id = 7;
         INSERT INTO objects (bucket_id, name, object_id, size, created_ms, etag, format,
             suite, chunk_shift, nonce_prefix, envelope_kind, envelope, meta, row_version)
         VALUES (1, CAST('a/1' AS BLOB), randomblob(16), 10, 1700000002000, 'e1', 2, 1, 16,
                 randomblob(7), 2, randomblob(60), randomblob(29), 1),
                (1, CAST('a/2' AS BLOB), randomblob(16), 20, 1700000002001, 'e2', 2, 1, 16,
                 randomblob(7), 2, randomblob(60), randomblob(29), 2),
                (1, CAST('b' AS BLOB), randomblob(16), 30, 1700000002002, 'e3', 2, 1, 16,
                 randomblob(7), 2, randomblob(60), randomblob(29), 1),
                (2, CAST('readme' AS BLOB), randomblob(16), 5, 1700000003000, 'e4', 2, 0, 16,
                 zeroblob(7), NULL, NULL, x'00', 1);
         INSERT INTO tasks (id, kind, state, step, started, ended, outcome, error,
             previous_master, new_master, new_rotation, master_attempts, row_version,
             lease_owner, lease_expires, lease_token)
         VALUES (1, 'rotation', 'running', 2, 1700000100, NULL, NULL, NULL, 1, 2, 2, 1, 4,
                 'node-a:1:beef', 1700000100500, 3);",
    )
    .expect("version 2 rows");
    let counter: i64 = c
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'buckets'",
            [],
            |r| r.get(0),
        )
        .expect("bucket id counter");
    assert_eq!(counter, 7);
}

/// A database of schema version 2 is migrated once by `open` to version 3 (the key management
/// service's tables; `buckets` rebuilt with `kms_key_id`): every bucket keeps its row, id and
/// wrapped key, every object row stays (and still names its bucket), ids of deleted buckets
/// are not handed out again, the new column and tables work with their rules, and opening
/// again migrates nothing.
#[test]
fn a_version_2_database_is_migrated_to_version_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dare.db");
    write_version_2_database(&path);
    let (buckets_before, objects_before, tasks_before) = {
        let c = rusqlite::Connection::open(&path).expect("raw open");
        let rows = |sql: &str| -> Vec<Vec<rusqlite::types::Value>> {
            let mut stmt = c.prepare(sql).expect("prepare");
            let n = stmt.column_count();
            stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows")
        };
        (
            rows(
                "SELECT id, name, namespace_id, encryption, wrapped_key, created, row_version \
                  FROM buckets ORDER BY id",
            ),
            rows("SELECT * FROM objects ORDER BY bucket_id, name"),
            rows("SELECT * FROM tasks"),
        )
    };
    assert_eq!((buckets_before.len(), objects_before.len()), (3, 4));

    let db = SqliteMetadata::open(&path, opts()).expect("open migrates");
    assert_eq!(db.schema_version().expect("version"), 5);
    db.check_integrity()
        .expect("integrity and foreign keys after the migration");
    {
        let c = rusqlite::Connection::open(&path).expect("raw open");
        let rows = |sql: &str| -> Vec<Vec<rusqlite::types::Value>> {
            let mut stmt = c.prepare(sql).expect("prepare");
            let n = stmt.column_count();
            stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows")
        };
        assert_eq!(
            rows(
                "SELECT id, name, namespace_id, encryption, wrapped_key, created, row_version \
                  FROM buckets ORDER BY id"
            ),
            buckets_before
        );
        assert_eq!(
            rows("SELECT * FROM objects ORDER BY bucket_id, name"),
            objects_before
        );
        // Version 4 adds `target_root` (NULL for every existing task).
        let with_target: Vec<Vec<rusqlite::types::Value>> = tasks_before
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r.push(rusqlite::types::Value::Null);
                r.push(rusqlite::types::Value::Null);
                r
            })
            .collect();
        assert_eq!(rows("SELECT * FROM tasks"), with_target);
        // The index on namespace_id is back; the copy is gone.
        let names: Vec<String> = c
            .prepare("SELECT name FROM sqlite_schema WHERE tbl_name = 'buckets' ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("schema");
        assert!(
            names.contains(&"buckets_by_namespace".to_owned()),
            "{names:?}"
        );
        let copies: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'buckets_v2_rows'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(copies, 0);
    }
    let buckets = read(&db, |tx| tx.buckets(None));
    assert_eq!(
        buckets
            .iter()
            .map(|b| (b.id, b.kms_key_id.clone()))
            .collect::<Vec<_>>(),
        vec![(1, None), (2, None), (5, None)]
    );
    assert_eq!(read(&db, |tx| tx.object_count(1)), 3);
    assert_eq!(
        read(&db, |tx| tx.objects(2, NameRange::default(), 10))[0].name,
        "readme"
    );

    // Bucket ids continue above the deleted ones.
    let next = write(&db, |tx| {
        tx.insert_bucket(&NewBucket {
            id: None,
            name: "sse-kms".into(),
            namespace_id: 1,
            encryption: true,
            wrapped_key: Some(vec![0x7c; 120]),
            kms_key_id: Some("0a0a0a0a-0000-4000-8000-00000000000a".into()),
            created: 1_700_000_010,
        })
    });
    assert_eq!(next, 8, "a deleted bucket's id was handed out again");
    // The rebuilt table keeps its rules: 40 bytes without a CMK, foreign keys enforced.
    let photos = read(&db, |tx| tx.bucket(By::Id(1))).expect("photos");
    let mut tx = db.write().expect("begin");
    let e = tx
        .update_bucket(&BucketRecord {
            wrapped_key: Some(vec![1; 41]),
            ..photos.clone()
        })
        .expect_err("41 bytes without a CMK");
    assert!(matches!(e, MetaError::Database(_)), "{e:?}");
    let e = tx
        .insert_bucket(&NewBucket {
            id: None,
            name: "orphan".into(),
            namespace_id: 99,
            encryption: false,
            wrapped_key: None,
            kms_key_id: None,
            created: 1,
        })
        .expect_err("no namespace 99");
    assert!(
        matches!(
            e,
            MetaError::NotFound {
                what: "namespace",
                ..
            }
        ),
        "{e:?}"
    );
    drop(tx);
    assert_eq!(write(&db, |tx| tx.delete_bucket(1)), 3);
    assert_eq!(read(&db, |tx| tx.object_count(1)), 0);

    // The key management service's tables work on the migrated database.
    let k = kms_key("0a0a0a0a-0000-4000-8000-00000000000a", "alias/migrated", 1);
    write(&db, |tx| {
        tx.insert_kms_key(&k)?;
        tx.insert_kms_version(&KmsVersionRecord {
            key_id: k.key_id.clone(),
            version: 1,
            material: Some(vec![0x4d; 60]),
            created_ms: 1,
            encryptions: 0,
        })?;
        tx.put_kms_registration(&KmsRegistration {
            key_id: k.key_id.clone(),
            resource: "bucket:sse-kms".into(),
            version: 1,
            description: String::new(),
            created_ms: 1,
            updated_ms: 1,
        })?;
        tx.append_kms_audit(&KmsAuditRecord {
            seq: 1,
            time_ms: 1,
            actor: "test".into(),
            operation: "createKey".into(),
            key_id: Some(k.key_id.clone()),
            version: Some(1),
            request_id: "r1".into(),
            outcome: "ok".into(),
            detail: String::new(),
            mac: vec![0; 32],
        })
    });
    assert_eq!(
        read(&db, |tx| tx.kms_key(KmsBy::Alias("alias/migrated"))),
        Some(k.clone())
    );
    // Versions go with their CMK (no method deletes a CMK: this is the schema's cascade);
    // registrations hold it.
    {
        let c = rusqlite::Connection::open(&path).expect("raw open");
        c.pragma_update(None, "foreign_keys", "ON")
            .expect("foreign keys");
        let e = c
            .execute("DELETE FROM kms_keys WHERE key_id = ?1", [&k.key_id])
            .expect_err("registered");
        assert!(e.to_string().contains("FOREIGN KEY"), "{e}");
        c.execute_batch("DELETE FROM kms_registrations; DELETE FROM kms_keys")
            .expect("delete");
        let left: i64 = c
            .query_row("SELECT count(*) FROM kms_versions", [], |r| r.get(0))
            .expect("count");
        assert_eq!(left, 0, "versions outlived their CMK");
        let audit: i64 = c
            .query_row("SELECT count(*) FROM kms_audit", [], |r| r.get(0))
            .expect("count");
        assert_eq!(audit, 1, "the audit trail outlives keys");
    }
    drop(db);
    let again = SqliteMetadata::open(&path, opts()).expect("reopen");
    assert_eq!(again.schema_version().expect("version"), 5);
    assert_eq!(read(&again, |tx| tx.buckets(None)).len(), 3);
}

/// A backup made at schema version 2, with objects, is migrated in a private copy when
/// restored: its buckets and objects are what the restored database holds.
#[test]
fn a_version_2_backup_is_migrated_when_restored() {
    let (dir, path, db) = new_db();
    seed_bucket(&db);
    let old = dir.path().join("v2.bak");
    write_version_2_database(&old);
    SqliteMetadata::restore(&old, &path, opts()).expect("restore");
    assert_eq!(db.schema_version().expect("version"), 5);
    db.check_integrity().expect("integrity");
    let ids: Vec<u64> = read(&db, |tx| tx.buckets(None))
        .iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(ids, [1, 2, 5]);
    assert_eq!(read(&db, |tx| tx.object_count(1)), 3);
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

/// A CMK row with a state, origin or return state of a name this build does not know, or import
/// parameters partly NULL, can only come from a damaged or foreign file: `Corrupt`, naming the
/// column, whichever way the key is read.
#[test]
fn damaged_kms_rows_are_corrupt() {
    let (_dir, path, db) = new_db();
    let raw = rusqlite::Connection::open(&path).expect("raw open");
    raw.execute_batch("PRAGMA ignore_check_constraints = ON")
        .expect("pragma");
    let damages = [
        ("state", "state = 'melted'"),
        ("origin", "origin = 'found'"),
        ("state_before", "state_before = 'thawed'"),
        ("import_token_id", "import_token_id = zeroblob(32)"),
        ("rotation_days", "rotation_days = -1"),
    ];
    for (i, (column, damage)) in damages.iter().enumerate() {
        let id = format!("k{i}");
        write(&db, |tx| {
            tx.insert_kms_key(&kms_key(&id, &format!("alias/{id}"), i as u64))
        });
        raw.execute(
            &format!("UPDATE kms_keys SET {damage} WHERE key_id = ?1"),
            [&id],
        )
        .expect("damage");
        for e in [
            read_with(&db, |tx| tx.kms_key(KmsBy::Id(&id))).expect_err("by id"),
            read_with(&db, |tx| tx.kms_key(KmsBy::Alias(&format!("alias/{id}"))))
                .expect_err("by alias"),
            read_with(&db, |tx| tx.kms_keys()).expect_err("listed"),
        ] {
            assert!(
                matches!(e, MetaError::Corrupt(ref m) if m.contains(column)),
                "{damage}: {e:?}"
            );
        }
        raw.execute("DELETE FROM kms_keys WHERE key_id = ?1", [&id])
            .expect("remove");
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

/// Deleting a CMK's versions removes their material from the file: after the commit the WAL
/// holds the pages with the rows zeroed, and after a checkpoint neither file holds it.
#[test]
fn deleting_kms_versions_shreds_their_material() {
    let (_dir, path, db) = new_db();
    let k = kms_key("0a0a0a0a-0000-4000-8000-00000000000a", "alias/doomed", 1);
    let material: Vec<u8> = (0..60u8).map(|i| i.wrapping_mul(53) ^ 0x3c).collect();
    let kept: Vec<u8> = (0..60u8).map(|i| i.wrapping_mul(29) ^ 0xa7).collect();
    write(&db, |tx| {
        tx.insert_kms_key(&k)?;
        for (version, m) in [(1, &material), (2, &kept)] {
            tx.insert_kms_version(&KmsVersionRecord {
                key_id: k.key_id.clone(),
                version,
                material: Some(m.clone()),
                created_ms: 1,
                encryptions: 0,
            })?;
        }
        Ok(())
    });
    db.checkpoint().expect("checkpoint");
    assert!(contains(&fs::read(&path).expect("read"), &material));

    write(&db, |tx| {
        // Version 2 stays (its material re-imported): only version 1's material must go.
        let v2 = tx.kms_versions(&k.key_id)?.remove(1);
        assert_eq!(tx.delete_kms_versions(&k.key_id)?, 2);
        tx.insert_kms_version(&v2)
    });
    let wal = side(&path, "-wal");
    assert!(!contains(&fs::read(&wal).expect("read wal"), &material));
    db.checkpoint().expect("checkpoint");
    let file = fs::read(&path).expect("read");
    assert!(
        !contains(&file, &material),
        "deleted key material is still in the database file"
    );
    assert!(contains(&file, &kept));
}

/// An audit record beyond the head (written behind dare's back) takes its seq: appending that
/// seq is a retryable conflict, and nothing of the append stays.
#[test]
fn an_audit_record_beyond_the_head_is_a_conflict() {
    let (_dir, path, db) = new_db();
    rusqlite::Connection::open(&path)
        .and_then(|c| {
            c.execute(
                "INSERT INTO kms_audit (seq, time_ms, actor, operation, request_id, outcome, \
                 detail, mac) VALUES (1, 0, 'x', 'x', 'x', 'x', '', zeroblob(32))",
                [],
            )
        })
        .expect("insert");
    let record = KmsAuditRecord {
        seq: 1,
        time_ms: 1,
        actor: "test".into(),
        operation: "encrypt".into(),
        key_id: None,
        version: None,
        request_id: "r1".into(),
        outcome: "ok".into(),
        detail: String::new(),
        mac: vec![1; 32],
    };
    let mut tx = db.write().expect("begin");
    let e = tx.append_kms_audit(&record).expect_err("taken");
    assert!(
        matches!(e, MetaError::Conflict(_)) && e.is_retryable(),
        "{e:?}"
    );
    drop(tx);
    assert_eq!(read(&db, |tx| tx.kms_audit_head()).seq, 0);
}

/// The key management service's rows are part of a backup, and a restore brings them back
/// as they were (audit head included).
#[test]
fn kms_rows_survive_backup_and_restore() {
    let (dir, path, db) = new_db();
    let k = kms_key("0a0a0a0a-0000-4000-8000-00000000000a", "alias/kept", 1);
    let audit = |seq: u64| KmsAuditRecord {
        seq,
        time_ms: seq,
        actor: "test".into(),
        operation: "encrypt".into(),
        key_id: Some(k.key_id.clone()),
        version: Some(1),
        request_id: format!("r{seq}"),
        outcome: "ok".into(),
        detail: String::new(),
        mac: vec![seq as u8; 32],
    };
    write(&db, |tx| {
        tx.insert_kms_key(&k)?;
        tx.insert_kms_version(&KmsVersionRecord {
            key_id: k.key_id.clone(),
            version: 1,
            material: Some(vec![0x4d; 60]),
            created_ms: 1,
            encryptions: 5,
        })?;
        tx.append_kms_audit(&audit(1))
    });
    let bak = dir.path().join("kms.bak");
    db.backup(&bak).expect("backup");
    let snapshot = |db: &SqliteMetadata| {
        read(db, |tx| {
            Ok((
                tx.kms_keys()?,
                tx.kms_versions(&k.key_id)?,
                tx.kms_audit(0, 100)?,
                tx.kms_audit_head()?,
            ))
        })
    };
    let backed_up = snapshot(&db);
    write(&db, |tx| {
        tx.delete_kms_versions(&k.key_id)?;
        tx.append_kms_audit(&audit(2))
    });
    assert_ne!(snapshot(&db), backed_up);
    SqliteMetadata::restore(&bak, &path, opts()).expect("restore");
    assert_eq!(snapshot(&db), backed_up);
    db.check_integrity().expect("integrity");
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
