//! [`PostgresMetadata`] against a real PostgreSQL server started by this test binary: the
//! conformance suite, then what only a server shared by several nodes has — migrations run
//! by nodes starting together, parallel writers on two nodes, lock waits, and faults (the
//! server crashing mid-transaction, a connection killed inside a transaction, an unreachable
//! server, a wrong password), with the password never in a message.
//!
//! One server serves the whole binary (each test gets a fresh database of it); the tests that
//! stop the server start one of their own. Without PostgreSQL installed these tests fail,
//! saying how to install it.

#[macro_use]
mod suite;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use dare_metadata::{
    BucketRecord, By, KmsAuditHead, KmsAuditRecord, KmsBy, KmsRegistration, KmsVersionRecord,
    MasterKeyRecord, MetaError, Metadata, NamespaceRecord, NewBucket, NewNamespace,
    PostgresMetadata, PostgresOptions, StoreRecord, TaskKind, TaskRecord, TaskState, WriteTx,
    write_with,
};
use dare_testkit::PgServer;
use dare_testkit::postgres as postgres_client;

use suite::{Fixture, kms_key, object, put, read, seed, seed_bucket, write};

static SERVER: OnceLock<PgServer> = OnceLock::new();

/// The server shared by this binary's tests.
fn server() -> &'static PgServer {
    SERVER.get_or_init(PgServer::start)
}

/// A new, empty database on the shared server; its URL.
fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    server().create_database(&format!("t{n}"))
}

fn opts() -> PostgresOptions {
    PostgresOptions::default()
}

fn open(url: &str) -> PostgresMetadata {
    PostgresMetadata::open(url, opts()).expect("open")
}

fn fixture() -> Fixture {
    let url = fresh_database();
    let db = open(&url);
    Fixture {
        db: Box::new(db),
        reopen: Box::new(move || Box::new(open(&url))),
        keep: Box::new(()),
    }
}

metadata_suite!(postgres, crate::fixture());

/// The database name at the end of a URL.
fn database_of(url: &str) -> &str {
    url.rsplit('/').next().expect("database")
}

/// `postgres://dare:***@127.0.0.1:<port>/<db>`: how dare must show `url`.
fn shown(url: &str, port: u16) -> String {
    format!("postgres://dare:***@127.0.0.1:{port}/{}", database_of(url))
}

fn new_namespace(name: &str) -> NewNamespace {
    NewNamespace {
        id: None,
        name: name.into(),
        encryption: true,
        master_version: 1,
        wrapped_key: vec![0x11; 40],
        created: 1,
    }
}

fn new_bucket(namespace_id: u64, name: &str) -> NewBucket {
    NewBucket {
        id: None,
        name: name.into(),
        namespace_id,
        encryption: true,
        wrapped_key: Some(vec![0x22; 40]),
        kms_key_id: None,
        created: 1,
    }
}

/// Asserts that an error's message and debug form carry no password.
fn no_password(e: &MetaError, passwords: &[&str]) -> String {
    let text = format!("{e} / {e:?}");
    for p in passwords {
        assert!(!text.contains(p), "password in the message: {text}");
    }
    text
}

// ---------------------------------------------------------------------------------------
// Opening and migrating

#[test]
fn open_creates_the_schema_and_hides_the_password() {
    let url = fresh_database();
    let db = open(&url);
    assert_eq!(PostgresMetadata::SCHEMA_VERSION, 5);
    assert_eq!(db.schema_version().expect("version"), 5);
    let expect = shown(&url, server().port());
    assert_eq!(db.describe(), expect);
    let debug = format!("{db:?}");
    assert!(debug.contains(&expect), "{debug}");
    assert!(!debug.contains(server().password()), "{debug}");
    // Opening again finds the schema and changes nothing.
    let b = seed_bucket(&db);
    let again = open(&url);
    assert!(read(&again, |tx| tx.bucket(By::Id(b))).is_some());
}

/// Nodes starting together on an empty database: every open succeeds, the schema is created
/// once (without the advisory lock, all but one would fail on "relation already exists").
#[test]
fn nodes_opening_together_migrate_once() {
    const NODES: usize = 6;
    let url = fresh_database();
    let barrier = Barrier::new(NODES);
    let handles: Vec<PostgresMetadata> = std::thread::scope(|s| {
        let opening: Vec<_> = (0..NODES)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    PostgresMetadata::open(&url, opts())
                })
            })
            .collect();
        opening
            .into_iter()
            .map(|t| t.join().expect("thread").expect("open"))
            .collect()
    });
    for h in &handles {
        assert_eq!(h.schema_version().expect("version"), 5);
    }
    let mut c = server().client(database_of(&url));
    let tables: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .expect("count")
        .get(0);
    assert_eq!(
        tables, 15,
        "dare_schema, the seven tables of schemas 1 and 2, the five of schema 3 and the two of \
         schema 5"
    );
    // Every node works on the one schema.
    let b = seed_bucket(&handles[0]);
    put(&handles[NODES - 1], b, &["x"]);
    assert_eq!(read(&handles[1], |tx| tx.object_count(b)), 1);
}

#[test]
fn newer_schema_is_refused_untouched() {
    let url = fresh_database();
    let b = seed_bucket(&open(&url));
    let mut c = server().client(database_of(&url));
    let newer = PostgresMetadata::SCHEMA_VERSION + 1;
    c.execute(
        "UPDATE dare_schema SET version = $1",
        &[&i32::try_from(newer).expect("version")],
    )
    .expect("set version");
    let e = PostgresMetadata::open(&url, opts()).expect_err("newer schema");
    assert!(
        matches!(
            e,
            MetaError::SchemaTooNew { found, supported }
                if found == newer && supported == PostgresMetadata::SCHEMA_VERSION
        ),
        "{e:?}"
    );
    let version: i32 = c
        .query_one("SELECT version FROM dare_schema", &[])
        .expect("version")
        .get(0);
    assert_eq!(u32::try_from(version).ok(), Some(newer));
    let buckets: i64 = c
        .query_one("SELECT count(*) FROM buckets WHERE id = $1", &[&(b as i64)])
        .expect("count")
        .get(0);
    assert_eq!(buckets, 1);
}

/// A database of schema version 1 (made with that version's schema file, as a build of
/// version 1 made it) is migrated by the first node that opens it — while other nodes open it
/// too — to the latest version (2: the task lease columns; 3: the key management service):
/// rows are kept, existing tasks get a free lease with token 0, the new columns take values
/// and keep their rules.
#[test]
fn a_version_1_database_is_migrated_to_the_latest_version() {
    let url = fresh_database();
    let mut c = server().client(database_of(&url));
    c.batch_execute(include_str!("../src/postgres/schema_v1.sql"))
        .expect("schema 1");
    c.batch_execute(
        "INSERT INTO dare_schema (id, version) VALUES (1, 1);
         INSERT INTO store (id, store_id, chunk_shift, root_of_trust, rt_data_key,
             active_master, active_rotation, key_epoch, created, row_version)
         VALUES (1, decode(repeat('00', 16), 'hex'), 16, 'root-key-file', decode('a5a5', 'hex'),
                 1, 1, 1, 1700000000, 4);
         INSERT INTO master_keys (version, state, wrapped, created, retired)
         VALUES (1, 'active', decode('0101', 'hex'), 1700000000, NULL);
         INSERT INTO tasks (id, kind, state, step, started, ended, outcome, error,
             previous_master, new_master, new_rotation, master_attempts, row_version)
         VALUES (1, 'rotation', 'completed', 5, 1700000100, 1700000101, 'done', NULL,
                 1, 2, 2, 1, 6),
                (2, 'rotation', 'transient_error', 3, 1700000200, NULL, NULL,
                 'step 4 (keys rewrapped): kms unreachable', 2, 3, 3, 1, 5);",
    )
    .expect("version 1 rows");
    const NODES: usize = 3;
    let barrier = Barrier::new(NODES);
    let handles: Vec<PostgresMetadata> = std::thread::scope(|s| {
        let opening: Vec<_> = (0..NODES)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    PostgresMetadata::open(&url, opts())
                })
            })
            .collect();
        opening
            .into_iter()
            .map(|t| t.join().expect("thread").expect("open migrates"))
            .collect()
    });
    let db = &handles[0];
    assert_eq!(db.schema_version().expect("version"), 5);
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
    let open_task = TaskRecord {
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
    assert_eq!(read(db, |tx| tx.tasks()), vec![done, open_task.clone()]);
    let store = read(db, |tx| tx.store()).expect("store row kept");
    assert_eq!((store.row_version, store.key_epoch), (4, 1));

    // The lease columns work on the migrated table (from another node), with their rules.
    let leased = TaskRecord {
        state: TaskState::Running,
        lease_owner: Some("node-a:77:c0ffee00".into()),
        lease_expires: Some(1_700_000_300_500),
        lease_token: 1,
        ..open_task
    };
    assert_eq!(write(&handles[1], |tx| tx.update_task(&leased)), 6);
    let mut tx = handles[2].write().expect("begin");
    let e = tx
        .update_task(&TaskRecord {
            lease_expires: None,
            row_version: 6,
            ..leased.clone()
        })
        .expect_err("an owner without an expiry");
    assert!(matches!(e, MetaError::Database(_)), "{e:?}");
    drop(tx);
    assert_eq!(
        read(&open(&url), |tx| tx.task(2)),
        Some(TaskRecord {
            row_version: 6,
            ..leased
        })
    );
}

/// A database of schema version 2, with buckets (one of an imported id, two deleted since)
/// and objects, is migrated to version 3 by the nodes that open it together: every bucket and
/// object row is kept, bucket ids continue above the deleted ones, and the new column and
/// tables work with their rules.
#[test]
fn a_version_2_database_is_migrated_to_version_3() {
    let url = fresh_database();
    let mut c = server().client(database_of(&url));
    c.batch_execute(include_str!("../src/postgres/schema_v1.sql"))
        .expect("schema 1");
    c.batch_execute(include_str!("../src/postgres/schema_v2.sql"))
        .expect("schema 2");
    c.batch_execute(
        "INSERT INTO dare_schema (id, version) VALUES (1, 2);
         INSERT INTO store (id, store_id, chunk_shift, root_of_trust, rt_data_key,
             active_master, active_rotation, key_epoch, created, row_version)
         VALUES (1, decode(repeat('00', 16), 'hex'), 16, 'root-key-file', decode('a5a5', 'hex'),
                 1, 1, 3, 1700000000, 9);
         INSERT INTO master_keys (version, state, wrapped, created, retired)
         VALUES (1, 'active', decode('0101', 'hex'), 1700000000, NULL);
         INSERT INTO namespaces (name, encryption, master_version, wrapped_key, created,
             row_version)
         VALUES ('ns', true, 1, decode(repeat('11', 40), 'hex'), 1700000001, 1);
         INSERT INTO buckets (name, namespace_id, encryption, wrapped_key, created, row_version)
         VALUES ('photos', 1, true, decode(repeat('22', 40), 'hex'), 1700000002, 3),
                ('public', 1, false, NULL, 1700000003, 1);
         INSERT INTO buckets (id, name, namespace_id, encryption, wrapped_key, created,
             row_version)
         VALUES (5, 'imported', 1, true, decode(repeat('55', 40), 'hex'), 1700000004, 1);
         SELECT setval(pg_get_serial_sequence('buckets', 'id'), 7);
         INSERT INTO objects (bucket_id, name, object_id, size, created_ms, etag, format,
             suite, chunk_shift, nonce_prefix, envelope_kind, envelope, meta, row_version)
         VALUES (1, 'a/1'::bytea, decode(repeat('01', 16), 'hex'), 10, 1700000002000, 'e1',
                 2, 1, 16, decode(repeat('07', 7), 'hex'), 2, decode(repeat('e0', 60), 'hex'),
                 decode(repeat('3e', 29), 'hex'), 1),
                (2, 'readme'::bytea, decode(repeat('02', 16), 'hex'), 5, 1700000003000, 'e4',
                 2, 0, 16, decode(repeat('00', 7), 'hex'), NULL, NULL, '\\x00'::bytea, 1);",
    )
    .expect("version 2 rows");
    const NODES: usize = 3;
    let barrier = Barrier::new(NODES);
    let handles: Vec<PostgresMetadata> = std::thread::scope(|s| {
        let opening: Vec<_> = (0..NODES)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    PostgresMetadata::open(&url, opts())
                })
            })
            .collect();
        opening
            .into_iter()
            .map(|t| t.join().expect("thread").expect("open migrates"))
            .collect()
    });
    let db = &handles[0];
    assert_eq!(db.schema_version().expect("version"), 5);
    let photos = BucketRecord {
        id: 1,
        name: "photos".into(),
        namespace_id: 1,
        encryption: true,
        wrapped_key: Some(vec![0x22; 40]),
        kms_key_id: None,
        created: 1_700_000_002,
        row_version: 3,
    };
    let public = BucketRecord {
        id: 2,
        name: "public".into(),
        encryption: false,
        wrapped_key: None,
        created: 1_700_000_003,
        row_version: 1,
        ..photos.clone()
    };
    let imported = BucketRecord {
        id: 5,
        name: "imported".into(),
        wrapped_key: Some(vec![0x55; 40]),
        created: 1_700_000_004,
        row_version: 1,
        ..photos.clone()
    };
    assert_eq!(
        read(&handles[1], |tx| tx.buckets(None)),
        vec![photos.clone(), public, imported]
    );
    let o = read(db, |tx| tx.object(1, "a/1")).expect("object kept");
    assert_eq!((o.size, o.envelope), (10, Some(vec![0xe0; 60])));
    assert_eq!(read(db, |tx| tx.object_count(2)), 1);

    // Ids continue above the deleted buckets; an SSE-KMS bucket has a longer wrapped key.
    let next = write(&handles[2], |tx| {
        tx.insert_bucket(&NewBucket {
            wrapped_key: Some(vec![0x7c; 120]),
            kms_key_id: Some("0a0a0a0a-0000-4000-8000-00000000000a".into()),
            ..new_bucket(1, "sse-kms")
        })
    });
    assert_eq!(next, 8);
    let mut tx = db.write().expect("begin");
    let e = tx
        .update_bucket(&BucketRecord {
            wrapped_key: Some(vec![1; 41]),
            ..photos.clone()
        })
        .expect_err("41 bytes without a CMK");
    drop(tx);
    let text = format!("{e}");
    assert!(matches!(e, MetaError::Database(_)), "{text}");
    assert!(text.contains("buckets_key_iff_encrypted"), "{text}");
    assert_eq!(
        write(db, |tx| tx.update_bucket(&BucketRecord {
            wrapped_key: Some(vec![0x6b; 150]),
            kms_key_id: Some("0a0a0a0a-0000-4000-8000-00000000000a".into()),
            ..photos.clone()
        })),
        4
    );

    // The key management service's tables work on the migrated database.
    let k = kms_key("0a0a0a0a-0000-4000-8000-00000000000a", "alias/migrated", 1);
    write(&handles[1], |tx| {
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
            resource: "bucket:photos".into(),
            version: 1,
            description: String::new(),
            created_ms: 1,
            updated_ms: 1,
        })
    });
    assert_eq!(
        read(db, |tx| tx.kms_key(KmsBy::Alias("alias/migrated"))),
        Some(k.clone())
    );
    // Versions go with their CMK (no method deletes a CMK: this is the schema's cascade);
    // registrations hold it.
    let e = c
        .execute("DELETE FROM kms_keys", &[])
        .expect_err("registered");
    assert_eq!(
        e.as_db_error().and_then(|d| d.constraint()),
        Some("kms_registrations_key_fkey"),
        "{e:?}"
    );
    c.batch_execute("DELETE FROM kms_registrations; DELETE FROM kms_keys")
        .expect("delete");
    assert_eq!(read(db, |tx| tx.kms_versions(&k.key_id)), vec![]);
}

fn audit(seq: u64, request_id: &str) -> KmsAuditRecord {
    KmsAuditRecord {
        seq,
        time_ms: 1_700_000_000_000 + seq,
        actor: "node".into(),
        operation: "encrypt".into(),
        key_id: None,
        version: None,
        request_id: request_id.into(),
        outcome: "ok".into(),
        detail: String::new(),
        mac: vec![seq as u8; 32],
    }
}

/// A write transaction that reads something else first, so that it does not queue on the
/// audit head (as a transaction that starts by reading the head does) and its snapshot is
/// taken; and the head it then reads.
fn begin_behind_the_head(db: &PostgresMetadata) -> (Box<dyn WriteTx + '_>, KmsAuditHead) {
    let mut tx = db.write().expect("begin");
    tx.kms_keys().expect("read");
    let head = tx.kms_audit_head().expect("head");
    (tx, head)
}

/// Two nodes appending to the audit trail after reading the same head: the second one's
/// append is a retryable conflict — whether the first one committed before it appended (its
/// snapshot predates the new head, or the head row itself) or while it waited for the head's
/// row lock — and the trail never forks. A record beyond the head (a taken seq) conflicts too.
#[test]
fn audit_appenders_on_two_nodes_conflict_instead_of_forking() {
    let url = fresh_database();
    let (a, b) = (open(&url), open(&url));
    // Each transaction reads something else first, so that it does not queue on the head
    // (which a transaction that starts by reading the head does) and its snapshot is taken.

    // No head row yet: both insert it.
    let (mut tx, head) = begin_behind_the_head(&a);
    assert_eq!(head.seq, 0);
    write(&b, |tx| tx.append_kms_audit(&audit(1, "b1")));
    let e = tx.append_kms_audit(&audit(1, "a1")).expect_err("stale");
    assert!(
        matches!(e, MetaError::Conflict(_)) && e.is_retryable(),
        "{e:?}"
    );
    assert!(tx.commit().is_err());

    // A head row: both update it.
    let (mut tx, head) = begin_behind_the_head(&a);
    assert_eq!(head.seq, 1);
    write(&b, |tx| tx.append_kms_audit(&audit(2, "b2")));
    let e = tx.append_kms_audit(&audit(2, "a2")).expect_err("stale");
    assert!(
        matches!(e, MetaError::Conflict(_)) && e.is_retryable(),
        "{e:?}"
    );
    drop(tx);

    // Both append before either commits: the second waits for the head's row lock.
    let (mut first, head) = begin_behind_the_head(&a);
    assert_eq!(head.seq, 2);
    first.append_kms_audit(&audit(3, "a3")).expect("append");
    let second = std::thread::scope(|s| {
        let waiting = s.spawn(|| {
            let (mut tx, head) = begin_behind_the_head(&b);
            assert_eq!(head.seq, 2, "the uncommitted append is not visible");
            tx.append_kms_audit(&audit(3, "b3"))
        });
        std::thread::sleep(Duration::from_millis(300));
        first.commit().expect("commit");
        waiting.join().expect("thread")
    });
    let e = second.expect_err("lost the race");
    assert!(
        matches!(e, MetaError::Conflict(_)) && e.is_retryable(),
        "{e:?}"
    );

    // A record beyond the head (written behind dare's back): its seq is taken.
    let mut c = server().client(database_of(&url));
    c.execute(
        "INSERT INTO kms_audit (seq, time_ms, actor, operation, request_id, outcome, detail, \
         mac) VALUES (4, 0, 'x', 'x', 'x', 'x', '', decode(repeat('00', 32), 'hex'))",
        &[],
    )
    .expect("insert");
    let mut tx = a.write().expect("begin");
    let e = tx.append_kms_audit(&audit(4, "a4")).expect_err("taken");
    assert!(
        matches!(e, MetaError::Conflict(_)) && e.is_retryable(),
        "{e:?}"
    );
    drop(tx);

    let trail: Vec<String> = read(&a, |tx| tx.kms_audit(0, 10))
        .into_iter()
        .map(|r| r.request_id)
        .collect();
    assert_eq!(trail, ["b1", "b2", "a3", "x"]);
    assert_eq!(
        read(&b, |tx| tx.kms_audit_head()),
        KmsAuditHead {
            seq: 3,
            mac: vec![3; 32]
        }
    );
}

#[test]
fn a_database_that_is_not_utf8_is_refused_untouched() {
    let mut admin = server().client("postgres");
    admin
        .batch_execute(
            "CREATE DATABASE latin ENCODING 'LATIN1' TEMPLATE template0 \
             LC_COLLATE 'C' LC_CTYPE 'C'",
        )
        .expect("create LATIN1 database");
    let url = server().url_for("latin");
    let e = PostgresMetadata::open(&url, opts()).expect_err("LATIN1");
    let text = no_password(&e, &[server().password()]);
    assert!(text.contains("LATIN1") && text.contains("UTF8"), "{text}");
    let exists: bool = server()
        .client("latin")
        .query_one("SELECT to_regclass('dare_schema') IS NOT NULL", &[])
        .expect("query")
        .get(0);
    assert!(!exists, "the schema was created anyway");
}

// ---------------------------------------------------------------------------------------
// Several nodes writing

/// Two nodes (handles with their own connections), two threads each, 250 buckets per thread:
/// 1000 buckets, all ids distinct, no error but retried conflicts.
#[test]
fn two_nodes_create_1000_buckets_in_parallel() {
    const THREADS_PER_NODE: usize = 2;
    const PER_THREAD: usize = 250;
    let url = fresh_database();
    let nodes = [open(&url), open(&url)];
    seed(&nodes[0]);
    let ns = write(&nodes[0], |tx| tx.insert_namespace(&new_namespace("ns")));
    let attempts = AtomicU32::new(0);
    let barrier = Barrier::new(nodes.len() * THREADS_PER_NODE);
    std::thread::scope(|s| {
        for (n, node) in nodes.iter().enumerate() {
            for t in 0..THREADS_PER_NODE {
                let (attempts, barrier) = (&attempts, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for i in 0..PER_THREAD {
                        let name = format!("n{n}-t{t}-{i:03}");
                        // As the control plane does: the namespace must exist, the name must
                        // be free, then the insert; all in one transaction.
                        write_with(node, MetaError::is_retryable, |tx| {
                            attempts.fetch_add(1, Ordering::Relaxed);
                            let ns = tx.namespace(By::Id(ns))?.expect("namespace");
                            assert!(tx.bucket(By::Name(&name))?.is_none());
                            tx.insert_bucket(&new_bucket(ns.id, &name))
                        })
                        .unwrap_or_else(|e| panic!("bucket {name}: {e}"));
                    }
                });
            }
        }
    });
    let total = nodes.len() * THREADS_PER_NODE * PER_THREAD;
    let buckets = read(&nodes[1], |tx| tx.buckets(Some(ns)));
    assert_eq!(buckets.len(), total);
    let mut ids: Vec<u64> = buckets.iter().map(|b| b.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total);
    let mut names: Vec<&str> = buckets.iter().map(|b| b.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), total);
    let attempts = attempts.into_inner() as usize;
    println!(
        "{total} buckets from 2 nodes x {THREADS_PER_NODE} threads: {} retried transactions",
        attempts - total
    );
}

/// Two nodes bumping the store row's key epoch (a read, then an update naming the row
/// version read), interleaved with bucket inserts: every bump counts once. A write
/// transaction that starts by reading the store row queues for it, so none even conflicts.
#[test]
fn two_nodes_bumping_the_store_row_queue_and_lose_nothing() {
    const PER_NODE: usize = 150;
    let url = fresh_database();
    let nodes = [open(&url), open(&url)];
    seed(&nodes[0]);
    let ns = write(&nodes[0], |tx| tx.insert_namespace(&new_namespace("ns")));
    let conflicts = AtomicU32::new(0);
    let barrier = Barrier::new(nodes.len());
    std::thread::scope(|s| {
        for (n, node) in nodes.iter().enumerate() {
            let (conflicts, barrier) = (&conflicts, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..PER_NODE {
                    write(node, |tx| {
                        tx.insert_bucket(&new_bucket(ns, &format!("{n}-{i}")))
                    });
                    write_with(node, MetaError::is_retryable, |tx| {
                        let s = tx.store()?.expect("store");
                        tx.update_store(&StoreRecord {
                            key_epoch: s.key_epoch + 1,
                            ..s
                        })
                        .inspect_err(|e| {
                            if e.is_retryable() {
                                conflicts.fetch_add(1, Ordering::Relaxed);
                            }
                        })
                    })
                    .expect("bump");
                }
            });
        }
    });
    let store = read(&nodes[1], |tx| tx.store()).expect("store");
    assert_eq!(store.key_epoch, 2 * PER_NODE as u64);
    assert_eq!(store.row_version, 1 + 2 * PER_NODE as u64);
    assert_eq!(
        conflicts.into_inner(),
        0,
        "writers of the store row did not queue"
    );
}

/// A transaction whose snapshot predates another node's committed update of a row fails its
/// own update of that row with a retryable conflict, changing nothing — whether the update
/// names the row version it read (the optimistic check) or not (PostgreSQL's repeatable read
/// refuses to overwrite a row changed after the snapshot).
#[test]
fn a_concurrent_update_from_another_node_is_a_retryable_conflict() {
    let url = fresh_database();
    let (a, b) = (open(&url), open(&url));
    seed(&a);
    let ns = write(&a, |tx| tx.insert_namespace(&new_namespace("ns")));

    // With a row version.
    let mut tx = a.write().expect("begin");
    let stale = tx.namespace(By::Id(ns)).expect("read").expect("namespace");
    write(&b, |tx| {
        let cur = tx.namespace(By::Id(ns))?.expect("namespace");
        tx.update_namespace(&NamespaceRecord {
            wrapped_key: vec![0xbb; 40],
            ..cur
        })
    });
    let e = tx
        .update_namespace(&NamespaceRecord {
            wrapped_key: vec![0xaa; 40],
            ..stale
        })
        .expect_err("stale");
    assert!(
        matches!(e, MetaError::Conflict(_)) && e.is_retryable(),
        "{e:?}"
    );
    drop(tx);
    let now = read(&a, |tx| tx.namespace(By::Id(ns))).expect("namespace");
    assert_eq!((now.wrapped_key, now.row_version), (vec![0xbb; 40], 2));

    // Without one: master key rows carry no version.
    let mut tx = a.write().expect("begin");
    let stale = tx.master_keys().expect("read").remove(0);
    write(&b, |tx| {
        let cur = tx.master_keys()?.remove(0);
        tx.update_master_key(&MasterKeyRecord {
            retired: Some(9),
            ..cur
        })
    });
    let e = tx
        .update_master_key(&MasterKeyRecord {
            retired: Some(7),
            ..stale
        })
        .expect_err("changed after the snapshot");
    assert!(
        matches!(e, MetaError::Conflict(_)) && e.is_retryable(),
        "{e:?}"
    );
    assert!(tx.commit().is_err(), "an aborted transaction committed");
    assert_eq!(
        read(&a, |tx| tx.master_keys())[0].retired,
        Some(9),
        "node B's change was overwritten"
    );
}

/// A row lock held by another transaction is waited for at most `lock_timeout`.
#[test]
fn a_held_row_lock_is_busy_after_the_lock_timeout() {
    let url = fresh_database();
    let db = PostgresMetadata::open(
        &url,
        PostgresOptions {
            lock_timeout: Duration::from_millis(300),
            ..opts()
        },
    )
    .expect("open");
    seed(&db);
    let store = read(&db, |tx| tx.store()).expect("store");
    let mut other = server().client(database_of(&url));
    other
        .batch_execute("BEGIN; SELECT * FROM store FOR UPDATE")
        .expect("lock the store row");
    let started = Instant::now();
    let e = write_with(&db, MetaError::is_retryable, |tx| {
        tx.update_store(&StoreRecord {
            key_epoch: 1,
            ..store.clone()
        })
    })
    .expect_err("locked");
    assert!(
        matches!(e, MetaError::Busy { waited } if waited == Duration::from_millis(300)),
        "{e:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Readers are not blocked by the lock.
    assert_eq!(read(&db, |tx| tx.store()).map(|s| s.key_epoch), Some(0));
    other.batch_execute("COMMIT").expect("release");
    write(&db, |tx| {
        tx.update_store(&StoreRecord {
            key_epoch: 1,
            ..store.clone()
        })
    });
}

// ---------------------------------------------------------------------------------------
// What PostgreSQL does differently from SQLite

/// After a statement fails, PostgreSQL has aborted the transaction: later statements and the
/// commit fail too (a silent rollback reported as a commit would lose the other changes).
#[test]
fn a_failed_statement_aborts_the_transaction() {
    let url = fresh_database();
    let db = open(&url);
    seed(&db);
    write(&db, |tx| tx.insert_namespace(&new_namespace("taken")));
    let mut tx = db.write().expect("begin");
    tx.insert_namespace(&new_namespace("first"))
        .expect("insert");
    let e = tx
        .insert_namespace(&new_namespace("taken"))
        .expect_err("taken");
    assert!(matches!(e, MetaError::AlreadyExists { .. }), "{e:?}");
    let e = tx
        .insert_namespace(&new_namespace("second"))
        .expect_err("aborted");
    assert!(
        matches!(e, MetaError::Database(ref m) if m.contains("earlier statement")),
        "{e:?}"
    );
    let e = tx.commit().expect_err("commit of an aborted transaction");
    assert!(matches!(e, MetaError::Database(_)), "{e:?}");
    assert_eq!(read(&db, |tx| tx.namespace(By::Name("first"))), None);
    // The connection went back to the pool clean.
    write(&db, |tx| tx.insert_namespace(&new_namespace("after")));
}

/// PostgreSQL's DETAIL of a constraint violation quotes the failing row; no message of dare
/// carries it.
#[test]
fn constraint_errors_quote_no_record_contents() {
    let url = fresh_database();
    let db = open(&url);
    let b = seed_bucket(&db);
    let ns = read(&db, |tx| tx.namespace(By::Name("ns"))).expect("ns").id;
    let mut tx = db.write().expect("begin");
    let e = tx
        .insert_bucket(&NewBucket {
            encryption: false,
            wrapped_key: Some(vec![0x5e; 40]),
            ..new_bucket(ns, "keyed-but-clear")
        })
        .expect_err("check");
    drop(tx);
    let text = format!("{e} / {e:?}");
    assert!(matches!(e, MetaError::Database(_)), "{text}");
    assert!(text.contains("buckets_key_iff_encrypted"), "{text}");
    assert!(
        !text.contains("5e5e5e") && !text.contains("Failing row"),
        "{text}"
    );

    let marker = format!("SECRET-NAME-{}", "x".repeat(1030));
    let mut tx = db.write().expect("begin");
    let e = tx.put_object(&object(b, &marker, 1)).expect_err("too long");
    let text = format!("{e} / {e:?}");
    assert!(
        !text.contains("SECRET") && !text.contains("5345435245"),
        "{text}"
    );
}

/// A CMK row with a state, origin or return state of a name this build does not know, or import
/// parameters partly NULL (written by another program, the constraints dropped): `Corrupt`,
/// naming the column.
#[test]
fn damaged_kms_rows_are_corrupt() {
    let url = fresh_database();
    let db = open(&url);
    let mut c = server().client(database_of(&url));
    c.batch_execute(
        "ALTER TABLE kms_keys DROP CONSTRAINT kms_keys_state_valid, \
         DROP CONSTRAINT kms_keys_origin_valid, DROP CONSTRAINT kms_keys_state_before_valid, \
         DROP CONSTRAINT kms_keys_import_whole, DROP CONSTRAINT kms_keys_alias_iff_live",
    )
    .expect("drop constraints");
    let damages = [
        ("state", "state = 'melted'"),
        ("origin", "origin = 'found'"),
        ("state_before", "state_before = 'thawed'"),
        (
            "import_token_id",
            "import_token_id = decode(repeat('00', 32), 'hex')",
        ),
    ];
    for (i, (column, damage)) in damages.iter().enumerate() {
        let id = format!("k{i}");
        write(&db, |tx| {
            tx.insert_kms_key(&kms_key(&id, &format!("alias/{id}"), i as u64))
        });
        c.execute(
            &format!("UPDATE kms_keys SET {damage} WHERE key_id = $1"),
            &[&id],
        )
        .expect("damage");
        for e in [
            dare_metadata::read_with(&db, |tx| tx.kms_key(KmsBy::Id(&id))).expect_err("by id"),
            dare_metadata::read_with(&db, |tx| tx.kms_keys()).expect_err("listed"),
        ] {
            assert!(
                matches!(e, MetaError::Corrupt(ref m) if m.contains(column)),
                "{damage}: {e:?}"
            );
        }
        c.execute("DELETE FROM kms_keys WHERE key_id = $1", &[&id])
            .expect("remove");
    }
}

// ---------------------------------------------------------------------------------------
// Faults

/// The server crashes (`pg_ctl stop -m immediate`) inside a transaction: its commit fails
/// with a clear error naming the server without the password; after the restart the same
/// handle works again (its dead pooled connections are replaced), what was committed before
/// the crash is there and the interrupted transaction is not.
#[test]
fn server_crash_mid_transaction() {
    let mut server = PgServer::start();
    let url = server.create_database("crash");
    let db = open(&url);
    let b = seed_bucket(&db);
    put(&db, b, &["committed"]);
    // Several pooled connections, all of which the crash kills.
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| read(&db, |tx| tx.object_count(b)));
        }
    });

    let mut tx = db.write().expect("begin");
    tx.put_object(&object(b, "interrupted", 2)).expect("put");
    server.stop_immediate();
    let e = tx.commit().expect_err("commit after the crash");
    let text = no_password(&e, &[server.password()]);
    assert!(matches!(e, MetaError::CommitUnknown(_)), "{text}");
    assert!(text.contains(&shown(&url, server.port())), "{text}");
    assert!(text.contains("during commit"), "{text}");

    // While it is down: a clear error, no hang, no password.
    let e = db.read().map(|_| ()).expect_err("server down");
    let text = no_password(&e, &[server.password()]);
    assert!(
        text.contains(&format!("cannot connect to {}", shown(&url, server.port()))),
        "{text}"
    );
    assert!(db.write().is_err(), "a write began with the server down");

    server.start_again();
    read(&db, |tx| {
        assert!(tx.object(b, "committed")?.is_some(), "a commit was lost");
        assert_eq!(tx.object(b, "interrupted")?, None);
        Ok(())
    });
    put(&db, b, &["after"]);
    assert_eq!(read(&db, |tx| tx.object_count(b)), 2);
}

/// The server crashes between two statements of a transaction: the next statement fails
/// cleanly, saying that nothing was committed.
#[test]
fn server_crash_between_statements() {
    let mut server = PgServer::start();
    let url = server.create_database("crash2");
    let db = open(&url);
    let b = seed_bucket(&db);
    let mut tx = db.write().expect("begin");
    tx.put_object(&object(b, "first", 1)).expect("put");
    server.stop_immediate();
    let e = tx
        .put_object(&object(b, "second", 2))
        .expect_err("server gone");
    let text = no_password(&e, &[server.password()]);
    assert!(matches!(e, MetaError::Unavailable(_)), "{text}");
    assert!(text.contains("rolled back"), "{text}");
    // The transaction refuses to commit what the server has forgotten.
    assert!(tx.commit().is_err());
    server.start_again();
    assert_eq!(read(&db, |tx| tx.object_count(b)), 0);
}

/// Another session terminates this transaction's backend (`pg_terminate_backend`, as an
/// administrator or a failover would): the transaction fails cleanly, nothing of it is
/// visible, the broken connection is not pooled again, and the next transactions work.
#[test]
fn a_connection_terminated_inside_a_transaction() {
    let url = fresh_database();
    let db = open(&url);
    let b = seed_bucket(&db);
    let mut admin = server().client("postgres");
    let terminate = |admin: &mut postgres_client::Client| {
        let killed = admin
            .query(
                // The timeout makes it wait until the backend has exited.
                "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
                 WHERE datname = $1 AND state = 'idle in transaction'",
                &[&database_of(&url)],
            )
            .expect("terminate");
        assert_eq!(killed.len(), 1, "one transaction is open");
    };

    // Killed between statements.
    let mut tx = db.write().expect("begin");
    tx.put_object(&object(b, "doomed", 1)).expect("put");
    terminate(&mut admin);
    let e = tx.put_object(&object(b, "doomed2", 2)).expect_err("killed");
    let text = no_password(&e, &[server().password()]);
    assert!(
        text.contains("lost the connection") && text.contains("rolled back"),
        "{text}"
    );
    drop(tx);

    // Killed before the commit.
    let mut tx = db.write().expect("begin");
    tx.put_object(&object(b, "doomed3", 3)).expect("put");
    terminate(&mut admin);
    let e = tx.commit().expect_err("killed before commit");
    no_password(&e, &[server().password()]);

    for i in 0..20 {
        put(&db, b, &[&format!("after-{i:02}")]);
    }
    read(&db, |tx| {
        for name in ["doomed", "doomed2", "doomed3"] {
            assert_eq!(tx.object(b, name)?, None, "{name}");
        }
        assert_eq!(tx.object_count(b)?, 20);
        Ok(())
    });
}

#[test]
fn an_unreachable_server_is_named_without_the_password() {
    // A port nobody listens on (free a moment ago).
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let url = format!("postgres://dare:Tr0ub4dor@127.0.0.1:{port}/meta");
    let started = Instant::now();
    let e = PostgresMetadata::open(
        &url,
        PostgresOptions {
            connect_timeout: Duration::from_secs(3),
            ..opts()
        },
    )
    .expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(30));
    let text = no_password(&e, &["Tr0ub4dor"]);
    assert!(
        text.contains(&format!(
            "cannot connect to postgres://dare:***@127.0.0.1:{port}/meta"
        )),
        "{text}"
    );
}

#[test]
fn a_wrong_password_is_refused_clearly() {
    let url = fresh_database();
    let wrong = url.replace(server().password(), "Wr0ngPassw0rd");
    assert_ne!(wrong, url);
    let e = PostgresMetadata::open(&wrong, opts()).expect_err("wrong password");
    let text = no_password(&e, &["Wr0ngPassw0rd", server().password()]);
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(text.contains(&shown(&url, server().port())), "{text}");

    let missing = server().url_for("no_such_database");
    let e = PostgresMetadata::open(&missing, opts()).expect_err("no database");
    let text = no_password(&e, &[server().password()]);
    assert!(text.contains("does not exist"), "{text}");
}

// ---------------------------------------------------------------------------------------
// Throughput (a figure, not a test)

/// `cargo test -p dare-metadata --release --test postgres -- --ignored --nocapture throughput`
/// (the same figures as the SQLite test of that name, over loopback TCP).
#[test]
#[ignore = "prints throughput figures; run in release"]
fn throughput() {
    const N: usize = 20_000;
    const BATCH: usize = 1000;
    let db = open(&fresh_database());
    let b = seed_bucket(&db);
    let started = Instant::now();
    for chunk in (0..N).collect::<Vec<_>>().chunks(BATCH) {
        write(&db, |tx| {
            for i in chunk {
                tx.put_object(&object(b, &format!("dir/{i:08}"), *i as u8))?;
            }
            Ok(())
        });
    }
    let put_rate = N as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    read(&db, |tx| {
        for i in 0..N {
            tx.object(b, &format!("dir/{i:08}"))?.expect("object");
        }
        Ok(())
    });
    let get_rate = N as f64 / started.elapsed().as_secs_f64();

    const SINGLE: usize = 1000;
    let started = Instant::now();
    for i in 0..SINGLE {
        read(&db, |tx| tx.object(b, &format!("dir/{i:08}"))).expect("object");
    }
    let lookup_tx = started.elapsed().as_secs_f64() / SINGLE as f64;
    let started = Instant::now();
    for i in 0..SINGLE {
        write(&db, |tx| {
            tx.put_object(&object(b, &format!("one/{i:08}"), 1))
        });
    }
    let commit_tx = started.elapsed().as_secs_f64() / SINGLE as f64;
    println!(
        "postgres, {N} objects, {BATCH} per transaction: put_object {put_rate:.0}/s, \
         object {get_rate:.0}/s; one lookup per read transaction {:.0} µs, one put per \
         committed transaction {:.0} µs",
        lookup_tx * 1e6,
        commit_tx * 1e6
    );
}
