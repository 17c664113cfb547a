//! The rotation lease (KEYS.md §8.2), on SQLite and on a real PostgreSQL server: one runner
//! at a time across nodes, an owner, an expiry and a fencing token checked inside every step's
//! transaction.
//!
//! Two nodes are two [`KeyStore`] handles on one database, each with a metadata handle of its
//! own (its own connections) and its own lease owner id (`node-a`, `node-b`). A node "pauses"
//! in a test hook (`before_step_commit`, `inside_step_transaction`: feature `test-hooks`) for
//! as long as the test says, so that its lease expires while it is stopped at a chosen point.
//! No test asserts a duration: the tests wait for a lease's expiry by reading it, then check
//! what happened.
//!
//! The PostgreSQL tests start a server of their own (dare-testkit); without PostgreSQL
//! installed they fail, saying how to install it.

mod common;

use std::any::Any;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use dare_keys::*;
use dare_metadata::{
    MasterKeyRecord, Metadata, NamespaceRecord, PostgresMetadata, PostgresOptions,
    RotationKeyRecord, StoreRecord, TaskRecord, read_with,
};
use dare_testkit::PgServer;

// ---- two backends ---------------------------------------------------------------------------

/// A database holding a store, and a way to open more handles on it (one per node).
struct Db {
    open: Box<dyn Fn() -> Arc<dyn Metadata>>,
    _keep: Box<dyn Any>,
}

fn sqlite_db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let meta = new_db(dir.path());
    init(&*meta, &*root(7));
    let path = dir.path().to_path_buf();
    Db {
        open: Box::new(move || open_db(&path)),
        _keep: Box::new(dir),
    }
}

static SERVER: OnceLock<PgServer> = OnceLock::new();

fn postgres_db() -> Db {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let server = SERVER.get_or_init(PgServer::start);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let url = server.create_database(&format!("lease{n}"));
    let open = move || -> Arc<dyn Metadata> {
        Arc::new(PostgresMetadata::open(&url, PostgresOptions::default()).unwrap())
    };
    init(&*open(), &*root(7));
    Db {
        open: Box::new(open),
        _keep: Box::new(()),
    }
}

/// Runs each test on both backends.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $test() { super::$test(super::sqlite_db()) } )*
        }
        mod postgres {
            $( #[test] fn $test() { super::$test(super::postgres_db()) } )*
        }
    };
}

on_both_backends!(
    a_second_node_is_refused_then_takes_over_an_expired_lease,
    a_runner_fenced_out_between_its_read_and_its_commit_commits_nothing,
    a_dead_runners_lease_holds_until_it_expires,
    the_same_owner_takes_its_lease_back_at_once,
    the_lease_is_released_on_completion_and_on_a_saved_failure,
    the_default_owner_is_this_process,
);

// ---- helpers --------------------------------------------------------------------------------

/// A node: a key store on a handle of its own.
fn node(db: &Db) -> Arc<KeyStore> {
    node_with(db, root(7))
}

fn node_with(db: &Db, root: Arc<dyn RootOfTrust>) -> Arc<KeyStore> {
    Arc::new(KeyStore::open((db.open)(), root, opts()).unwrap())
}

fn as_node(name: &str, ttl: Duration) -> RotationOptions {
    RotationOptions {
        lease_owner: Some(name.into()),
        lease_ttl: ttl,
        ..RotationOptions::default()
    }
}

/// Long enough that the node under test acts well within it, short enough to wait out.
const SHORT_TTL: Duration = Duration::from_millis(1000);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Waits until the task's current lease has expired by this machine's clock (the clock
/// every node of these tests shares); returns that expiry.
fn wait_until_expired(ks: &KeyStore, id: u64) -> u64 {
    let expires = ks
        .rotation_status(id)
        .unwrap()
        .lease_expires
        .expect("a lease is held");
    while now_ms() <= expires {
        std::thread::sleep(Duration::from_millis(
            (expires + 1 - now_ms().min(expires)).min(50),
        ));
    }
    expires
}

/// A hook that, at step `at`, reports to the test and then waits for its go.
struct Pause {
    reached: Receiver<()>,
    go: Sender<()>,
}

fn pause_at(at: u8) -> (StepHook, Pause) {
    let (reached_tx, reached) = channel();
    let (go, go_rx) = channel::<()>();
    let reached_tx = Mutex::new(reached_tx);
    let go_rx = Mutex::new(go_rx);
    let hook = StepHook(Arc::new(move |n| {
        if n == at {
            reached_tx.lock().unwrap().send(()).unwrap();
            go_rx.lock().unwrap().recv().unwrap();
        }
    }));
    (hook, Pause { reached, go })
}

fn spawn_run(
    ks: &Arc<KeyStore>,
    id: u64,
    opts: RotationOptions,
) -> JoinHandle<Result<RotationStatus, StoreError>> {
    let ks = ks.clone();
    std::thread::spawn(move || ks.resume_rotation(id, &opts))
}

/// Everything a rotation step may change: the store row, the key records and the task.
#[derive(Debug, PartialEq)]
struct Records {
    store: StoreRecord,
    masters: Vec<MasterKeyRecord>,
    rotation_keys: Vec<RotationKeyRecord>,
    namespaces: Vec<NamespaceRecord>,
    task: TaskRecord,
}

fn records(ks: &KeyStore, id: u64) -> Records {
    read_with::<_, StoreError>(&**ks.metadata(), |tx| {
        Ok(Records {
            store: tx.store()?.unwrap(),
            masters: tx.master_keys()?,
            rotation_keys: tx.rotation_keys()?,
            namespaces: tx.namespaces()?,
            task: tx.task(id)?.unwrap(),
        })
    })
    .unwrap()
}

/// One rotation's worth of keys, exactly: master 1 retired, master 2 active, rotation keys
/// 1 and 2, every namespace under master 2.
fn assert_rotated_once(ks: &KeyStore) {
    ks.refresh().unwrap();
    let kv = ks.key_versions();
    assert_eq!(
        kv.masters,
        [(1, MasterState::Retired), (2, MasterState::Active)]
    );
    assert_eq!(kv.rotation_versions, [1, 2], "exactly one new rotation key");
    assert_eq!((kv.active_master, kv.active_rotation), (2, 2));
    assert!(namespace(ks, "ns1").master_version == 2);
}

/// A store with namespace `ns1`, bucket `bkt1` and a data key written under rotation key 1;
/// returns the node and a check that the data key still opens.
fn with_data(db: &Db) -> (Arc<KeyStore>, impl Fn(&Arc<KeyStore>)) {
    let ks = node(db);
    add_namespace(&ks, "ns1", true);
    add_bucket(&ks, "ns1", "bkt1", true);
    let p = HierarchyProvider::new(ks.clone(), &bucket(&ks, "bkt1"), CacheMode::Off).unwrap();
    let (dk, env) = p.new_data_key().unwrap();
    let check = move |on: &Arc<KeyStore>| {
        let q = HierarchyProvider::new(on.clone(), &bucket(on, "bkt1"), CacheMode::Off).unwrap();
        assert_eq!(q.open_data_key(&env).unwrap(), dk);
    };
    (ks, check)
}

// ---- tests ----------------------------------------------------------------------------------

/// Node A acquires the lease and commits step 1, then stops right before committing step 2.
/// Node B, while A's lease is valid, is refused with A's name and expiry. A stays stopped past
/// its lease; B takes over (token + 1) and finishes. A then tries to commit step 2: refused
/// with `LeaseLost`, and nothing changed — not the task row, not a key record.
fn a_second_node_is_refused_then_takes_over_an_expired_lease(db: Db) {
    let (a, still_opens) = with_data(&db);
    let b = node(&db);
    let id = a.start_rotation().unwrap();
    let (hook, pause) = pause_at(2);
    let runner_a = spawn_run(
        &a,
        id,
        RotationOptions {
            before_step_commit: Some(hook),
            ..as_node("node-a", SHORT_TTL)
        },
    );
    pause.reached.recv().unwrap();
    let held = b.rotation_status(id).unwrap();
    assert_eq!(
        (held.step, held.lease_owner.as_deref(), held.lease_token),
        (1, Some("node-a"), 1)
    );

    let e = b
        .resume_rotation(id, &as_node("node-b", DEFAULT_LEASE_TTL))
        .expect_err("B ran while A's lease was valid");
    let StoreError::RotationLeased {
        id: t,
        owner,
        expires,
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!((*t, owner.as_str()), (id, "node-a"));
    assert_eq!(Some(*expires), held.lease_expires);
    let msg = e.to_string();
    assert!(msg.contains("node-a") && msg.contains("lease"), "{msg}");
    assert_eq!(
        records(&b, id).task.lease_token,
        1,
        "a refusal writes nothing"
    );

    // A is paused past its lease; B takes over and finishes.
    wait_until_expired(&b, id);
    let done = b
        .resume_rotation(id, &as_node("node-b", DEFAULT_LEASE_TTL))
        .unwrap();
    assert_eq!((done.state, done.step), (TaskState::Completed, 5));
    assert_eq!((done.lease_owner.as_deref(), done.lease_token), (None, 2));
    let after_b = records(&b, id);

    // A wakes up and commits step 2: refused, and nothing changes.
    pause.go.send(()).unwrap();
    match runner_a.join().unwrap() {
        Err(StoreError::LeaseLost {
            id: t,
            owner: None,
            expires: None,
        }) if t == id => {}
        other => panic!("A's step 2 after losing its lease: {other:?}"),
    }
    assert_eq!(
        records(&b, id),
        after_b,
        "A's refused commit changed something"
    );
    assert_rotated_once(&b);
    still_opens(&b);
    still_opens(&a);
}

/// The fencing check is in the step's own transaction: A has renewed its lease, read the task
/// and prepared step 2; its lease expires; B takes over (token 2) and stops before its own
/// step 2. A's step-2 transaction is refused and commits nothing — though the task is still at
/// step 1, so without the check A's commit would go through. B then finishes.
fn a_runner_fenced_out_between_its_read_and_its_commit_commits_nothing(db: Db) {
    let (a, still_opens) = with_data(&db);
    let b = node(&db);
    let id = a.start_rotation().unwrap();
    let (hook_a, pause_a) = pause_at(2);
    let runner_a = spawn_run(
        &a,
        id,
        RotationOptions {
            before_step_commit: Some(hook_a),
            ..as_node("node-a", SHORT_TTL)
        },
    );
    pause_a.reached.recv().unwrap();
    wait_until_expired(&b, id);

    let (hook_b, pause_b) = pause_at(2);
    let runner_b = spawn_run(
        &b,
        id,
        RotationOptions {
            before_step_commit: Some(hook_b),
            ..as_node("node-b", DEFAULT_LEASE_TTL)
        },
    );
    pause_b.reached.recv().unwrap();
    let taken = records(&b, id);
    assert_eq!(
        (
            taken.task.step,
            taken.task.lease_owner.as_deref(),
            taken.task.lease_token
        ),
        (1, Some("node-b"), 2)
    );

    pause_a.go.send(()).unwrap();
    match runner_a.join().unwrap() {
        Err(e @ StoreError::LeaseLost { .. }) => {
            assert!(
                matches!(&e, StoreError::LeaseLost { owner: Some(o), .. } if o == "node-b"),
                "{e:?}"
            );
            assert!(e.to_string().contains("node-b"), "{e}");
        }
        other => panic!("A committed after B took over: {other:?}"),
    }
    assert_eq!(
        records(&b, id),
        taken,
        "A's fenced commit changed something"
    );

    pause_b.go.send(()).unwrap();
    let done = runner_b.join().unwrap().unwrap();
    assert_eq!((done.state, done.lease_token), (TaskState::Completed, 2));
    assert_rotated_once(&b);
    still_opens(&b);
}

/// PostgreSQL: A's step transaction has read the task and passed the lease check when A
/// stalls inside it, past its lease; B takes over meanwhile (PostgreSQL lets it: A holds no
/// lock on the row yet). When A goes on, its update of the task row fails as a serialization
/// conflict (B changed the row after A's snapshot), the transaction runs again, the check
/// finds B's token, and A commits nothing. (On SQLite this interleaving cannot happen: a
/// write transaction holds the database's write lock, so B's takeover would wait for A.)
#[test]
fn postgres_fencing_holds_inside_the_step_transaction() {
    let db = postgres_db();
    let (a, still_opens) = with_data(&db);
    let b = node(&db);
    let id = a.start_rotation().unwrap();

    let (hook_b, pause_b) = pause_at(2);
    let pause_b = Arc::new(Mutex::new(Some(pause_b)));
    let runner_b: Arc<Mutex<Option<JoinHandle<_>>>> = Arc::new(Mutex::new(None));
    let taken: Arc<Mutex<Option<Records>>> = Arc::new(Mutex::new(None));
    let inside_a = {
        let (b, pause_b, runner_b, taken) =
            (b.clone(), pause_b.clone(), runner_b.clone(), taken.clone());
        StepHook(Arc::new(move |n| {
            if n != 2 {
                return;
            }
            // Inside A's step-2 transaction: outlive the lease, let B take over.
            wait_until_expired(&b, id);
            let handle = spawn_run(
                &b,
                id,
                RotationOptions {
                    before_step_commit: Some(hook_b.clone()),
                    ..as_node("node-b", DEFAULT_LEASE_TTL)
                },
            );
            pause_b
                .lock()
                .unwrap()
                .as_ref()
                .unwrap()
                .reached
                .recv()
                .unwrap();
            *taken.lock().unwrap() = Some(records(&b, id));
            *runner_b.lock().unwrap() = Some(handle);
        }))
    };
    let result_a = a.resume_rotation(
        id,
        &RotationOptions {
            inside_step_transaction: Some(inside_a),
            ..as_node("node-a", SHORT_TTL)
        },
    );
    let taken = taken
        .lock()
        .unwrap()
        .take()
        .expect("B took over inside A's transaction");
    assert_eq!(
        (taken.task.step, taken.task.lease_token),
        (1, 2),
        "B holds the lease, step 2 not done"
    );
    match result_a {
        Err(StoreError::LeaseLost { owner: Some(o), .. }) if o == "node-b" => {}
        other => panic!("A committed inside a transaction that outlived its lease: {other:?}"),
    }
    assert_eq!(
        records(&b, id),
        taken,
        "A's fenced transaction changed something"
    );

    let pause_b = pause_b.lock().unwrap().take().unwrap();
    pause_b.go.send(()).unwrap();
    let done = runner_b
        .lock()
        .unwrap()
        .take()
        .unwrap()
        .join()
        .unwrap()
        .unwrap();
    assert_eq!((done.state, done.lease_token), (TaskState::Completed, 2));
    assert_rotated_once(&b);
    still_opens(&b);
}

/// A runner that dies (here: its thread panics right before step 3, as a process killed
/// there would stop) leaves its lease behind. Another node is refused until it expires,
/// naming the dead owner; with `wait_for_lease` it waits for the expiry, takes the lease over
/// (token 2) and finishes from the saved step.
fn a_dead_runners_lease_holds_until_it_expires(db: Db) {
    let (a, still_opens) = with_data(&db);
    let b = node(&db);
    let id = a.start_rotation().unwrap();
    let dies = StepHook(Arc::new(|n| {
        if n == 3 {
            panic!("runner A dies before step 3");
        }
    }));
    let died = spawn_run(
        &a,
        id,
        RotationOptions {
            before_step_commit: Some(dies),
            ..as_node("node-a", SHORT_TTL)
        },
    )
    .join();
    assert!(died.is_err(), "the hook did not stop runner A");
    let left = b.rotation_status(id).unwrap();
    assert_eq!(
        (
            left.state,
            left.step,
            left.lease_owner.as_deref(),
            left.lease_token
        ),
        (TaskState::Running, 2, Some("node-a"), 1)
    );
    match b.resume_rotation(id, &as_node("node-b", DEFAULT_LEASE_TTL)) {
        Err(StoreError::RotationLeased { owner, expires, .. }) => {
            assert_eq!(owner, "node-a");
            assert_eq!(Some(expires), left.lease_expires);
        }
        other => panic!("resumed under a live lease: {other:?}"),
    }
    let done = b
        .resume_rotation(
            id,
            &RotationOptions {
                wait_for_lease: true,
                ..as_node("node-b", DEFAULT_LEASE_TTL)
            },
        )
        .unwrap();
    // B can only have taken the lease once A's had expired (one clock for both here).
    assert!(now_ms() > left.lease_expires.unwrap());
    assert_eq!(
        (done.state, done.step, done.lease_owner, done.lease_token),
        (TaskState::Completed, 5, None, 2)
    );
    assert_rotated_once(&b);
    still_opens(&b);
}

/// The owner whose runner died takes its own lease back at once (a process retrying after a
/// failed runner of its own), long before the lease expires — with a new token.
fn the_same_owner_takes_its_lease_back_at_once(db: Db) {
    let (a, still_opens) = with_data(&db);
    let id = a.start_rotation().unwrap();
    let dies = StepHook(Arc::new(|n| {
        if n == 2 {
            panic!("runner dies before step 2");
        }
    }));
    let died = spawn_run(
        &a,
        id,
        RotationOptions {
            before_step_commit: Some(dies),
            ..as_node("node-a", Duration::from_secs(3600))
        },
    )
    .join();
    assert!(died.is_err());
    let b = node(&db);
    assert!(matches!(
        b.resume_rotation(id, &as_node("node-b", DEFAULT_LEASE_TTL)),
        Err(StoreError::RotationLeased { .. })
    ));
    // Another handle, same owner id: no wait for the hour-long lease.
    let again = node(&db);
    let done = again
        .resume_rotation(id, &as_node("node-a", DEFAULT_LEASE_TTL))
        .unwrap();
    assert_eq!(
        (done.state, done.lease_owner, done.lease_token),
        (TaskState::Completed, None, 2)
    );
    assert_rotated_once(&again);
    still_opens(&again);
}

/// A root of trust whose `wrap_master` fails while `failures` is positive.
#[derive(Debug)]
struct FailingWrap {
    inner: Arc<dyn RootOfTrust>,
    failures: AtomicU32,
}

impl RootOfTrust for FailingWrap {
    fn wrap_master(&self, key: &Secret32) -> Result<Vec<u8>, KeyError> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Err(KeyError::Provider("HSM unreachable".into()));
        }
        self.inner.wrap_master(key)
    }
    fn unwrap_master(&self, blob: &[u8]) -> Result<Secret32, KeyError> {
        self.inner.unwrap_master(blob)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Completing the task releases the lease (owner and expiry cleared, the token kept), and so
/// does a failure the runner saves: another node resumes it at once, with the next token.
fn the_lease_is_released_on_completion_and_on_a_saved_failure(db: Db) {
    let failing = Arc::new(FailingWrap {
        inner: root(7),
        failures: AtomicU32::new(MASTER_KEY_ATTEMPTS),
    });
    let a = node_with(&db, failing);
    add_namespace(&a, "ns1", true);
    let id = a.start_rotation().unwrap();
    match a.run_rotation(id, &as_node("node-a", DEFAULT_LEASE_TTL)) {
        Err(StoreError::RotationFailed { step: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    let failed = a.rotation_status(id).unwrap();
    assert_eq!(
        (
            failed.state,
            failed.lease_owner.as_deref(),
            failed.lease_expires,
            failed.lease_token
        ),
        (TaskState::TransientError, None, None, 1)
    );
    let b = node(&db);
    let done = b
        .resume_rotation(id, &as_node("node-b", DEFAULT_LEASE_TTL))
        .unwrap();
    assert_eq!(
        (
            done.state,
            done.lease_owner.as_deref(),
            done.lease_expires,
            done.lease_token
        ),
        (TaskState::Completed, None, None, 2)
    );
    // A completed task is not leased again: running it returns its status.
    assert_eq!(
        a.resume_rotation(id, &as_node("node-c", DEFAULT_LEASE_TTL))
            .unwrap(),
        done
    );
    assert_eq!(records(&b, id).task.lease_token, 2);
    assert_rotated_once(&b);
}

/// Without `lease_owner`, a runner's owner id is this process's: `<host>:<pid>:<random>`, the
/// same for every key store of the process.
fn the_default_owner_is_this_process(db: Db) {
    let (a, _) = with_data(&db);
    let b = node(&db);
    let id = a.start_rotation().unwrap();
    let seen: Arc<Mutex<Option<RotationStatus>>> = Arc::new(Mutex::new(None));
    let look = {
        let (b, seen) = (b.clone(), seen.clone());
        StepHook(Arc::new(move |n| {
            if n == 3 {
                *seen.lock().unwrap() = Some(b.rotation_status(id).unwrap());
            }
        }))
    };
    let opts = RotationOptions {
        before_step_commit: Some(look),
        ..RotationOptions::default()
    };
    let started = now_ms();
    a.run_rotation(id, &opts).unwrap();
    let seen = seen.lock().unwrap().take().expect("the hook ran");
    let owner = seen.lease_owner.expect("held while running");
    assert_eq!(owner, process_lease_owner());
    let parts: Vec<&str> = owner.rsplitn(3, ':').collect();
    assert_eq!(parts.len(), 3, "{owner}");
    assert_eq!(parts[1], std::process::id().to_string(), "{owner}");
    assert!(
        parts[0].len() == 8 && parts[0].bytes().all(|c| c.is_ascii_hexdigit()),
        "{owner}"
    );
    assert!(!parts[2].is_empty(), "{owner}");
    // The lease ran for the default TTL from a renewal made during the run.
    let expires = seen.lease_expires.unwrap();
    let ttl = DEFAULT_LEASE_TTL.as_millis() as u64;
    assert!(
        expires >= started + ttl && expires <= now_ms() + ttl,
        "{expires}"
    );
}
