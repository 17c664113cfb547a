//! Rotation tasks: steps, errors and resume, a crash after every step (a real child process
//! aborting through the `test-hooks` crash hook), and a property test that data keys written
//! before any sequence of rotations still open. Concurrent runners: tests/contention.rs.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::*;
use dare_keys::*;
use proptest::prelude::*;

/// A root key file whose `wrap_master` fails while `failures` is positive (a flaky HSM), and
/// takes `delay` per call (a remote one).
#[derive(Debug)]
struct Flaky {
    inner: RootKeyFile,
    failures: AtomicU32,
    delay: Duration,
}

impl RootOfTrust for Flaky {
    fn wrap_master(&self, key: &Secret32) -> Result<Vec<u8>, KeyError> {
        std::thread::sleep(self.delay);
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
        "flaky".into()
    }
}

fn flaky_slow(delay: Duration) -> Arc<Flaky> {
    Arc::new(Flaky {
        inner: RootKeyFile::from_secret(Secret32::from_bytes("root", [9; 32])),
        failures: AtomicU32::new(0),
        delay,
    })
}

fn flaky() -> Arc<Flaky> {
    flaky_slow(Duration::ZERO)
}

fn run(store: &KeyStore, id: u64) -> Result<RotationStatus, StoreError> {
    store.run_rotation(id, &RotationOptions::default())
}

fn resume(store: &KeyStore, id: u64) -> Result<RotationStatus, StoreError> {
    store.resume_rotation(id, &RotationOptions::default())
}

fn provider(store: &Arc<KeyStore>, bucket_name: &str, mode: CacheMode) -> HierarchyProvider {
    HierarchyProvider::new(store.clone(), &bucket(store, bucket_name), mode).unwrap()
}

#[test]
fn rotation_runs_all_steps_and_records_history() {
    let (_dir, store) = setup(flaky());
    let p = provider(&store, "bkt1", CacheMode::On);
    let (dk, env) = p.new_data_key().unwrap();
    let epoch = store.store_record().key_epoch;

    let id = store.start_rotation().unwrap();
    let st = store.rotation_status(id).unwrap();
    assert_eq!((st.state, st.step, st.ended), (TaskState::Pending, 0, None));
    match store.start_rotation() {
        Err(e @ StoreError::RotationInProgress(i)) if i == id => {
            assert!(e.to_string().contains(&format!("task {id}")), "{e}")
        }
        other => panic!("{other:?}"),
    }

    let done = run(&store, id).unwrap();
    assert_eq!(done.state, TaskState::Completed);
    assert_eq!(done.step, 5);
    assert_eq!((done.new_master, done.new_rotation), (Some(2), Some(2)));
    assert!(
        done.ended.is_some()
            && done
                .outcome
                .as_deref()
                .unwrap()
                .contains("master key version 2")
    );
    // Running a completed task again just reports it.
    assert_eq!(run(&store, id).unwrap(), done);
    assert_eq!(resume(&store, id).unwrap(), done);
    assert!(matches!(
        store.rotation_status(99),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(run(&store, 99), Err(StoreError::NotFound { .. })));

    let kv = store.key_versions();
    assert_eq!((kv.active_master, kv.active_rotation), (2, 2));
    assert_eq!(
        kv.masters,
        [(1, MasterState::Retired), (2, MasterState::Active)]
    );
    assert_eq!(kv.rotation_versions, [1, 2]);
    // Switch and rewrap each moved the epoch.
    assert_eq!(store.store_record().key_epoch, epoch + 2);
    assert_eq!(p.open_data_key(&env).unwrap(), dk);

    let id2 = store.start_rotation().unwrap();
    run(&store, id2).unwrap();
    let history = store.rotation_history().unwrap();
    assert_eq!(history.iter().map(|s| s.id).collect::<Vec<_>>(), [id, id2]);
    assert!(history.iter().all(|s| s.state == TaskState::Completed));
    assert_eq!(store.key_versions().active_master, 3);
    assert_eq!(p.open_data_key(&env).unwrap(), dk);
}

#[test]
fn master_key_creation_is_retried_then_fails_transiently_and_resumes() {
    let root = flaky();
    let (_dir, store) = setup(root.clone());
    let p = provider(&store, "bkt1", CacheMode::On);
    let (dk, env) = p.new_data_key().unwrap();

    // Two failures: the third attempt succeeds within the same run.
    root.failures.store(2, Ordering::SeqCst);
    let id = store.start_rotation().unwrap();
    assert_eq!(run(&store, id).unwrap().state, TaskState::Completed);

    // Three failures: the run gives up with a transient error, state saved.
    root.failures.store(3, Ordering::SeqCst);
    let id = store.start_rotation().unwrap();
    match run(&store, id) {
        Err(e @ StoreError::RotationFailed { step: 1, .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("3 times") && text.contains("resume"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    let st = store.rotation_status(id).unwrap();
    assert_eq!((st.state, st.step), (TaskState::TransientError, 0));
    let error = st.error.unwrap();
    assert!(
        error.starts_with("step 1 (master key created): ") && error.contains("HSM unreachable"),
        "{error}"
    );
    assert!(matches!(
        store.start_rotation(),
        Err(StoreError::RotationInProgress(i)) if i == id
    ));
    // Data path unaffected meanwhile.
    assert_eq!(p.open_data_key(&env).unwrap(), dk);
    // `run` does not retry a failed task; `resume` continues it.
    assert!(matches!(
        run(&store, id),
        Err(StoreError::TaskNotRunnable {
            state: "transient_error",
            ..
        })
    ));
    let done = resume(&store, id).unwrap();
    assert_eq!(done.state, TaskState::Completed);
    assert!(done.error.is_some(), "the error stays for history");
    let kv = store.key_versions();
    assert_eq!(kv.active_master, 3);
    // The failed attempts stored nothing: one master per completed rotation.
    assert_eq!(kv.masters.len(), 3);
    assert_eq!(p.open_data_key(&env).unwrap(), dk);
}

#[test]
fn namespaces_created_mid_rotation_are_covered() {
    let (dir, store) = setup(flaky());
    run(&store, store.start_rotation().unwrap()).unwrap();
    add_namespace(&store, "late", true);
    add_bucket(&store, "late", "late-bkt", true);
    let p = provider(&store, "late-bkt", CacheMode::Off);
    let (dk, env) = p.new_data_key().unwrap();

    // A namespace whose key is drawn before step 3 and inserted after step 4: wrapped under
    // the old master, which stays usable; the next rotation rewraps it.
    let id = store.start_rotation().unwrap();
    let (mv, wrapped) = store.new_namespace_key().unwrap();
    run(&store, id).unwrap();
    let late = dare_metadata::write_with(
        &**store.metadata(),
        |_: &StoreError| false,
        |tx| {
            let id = tx.insert_namespace(&dare_metadata::NewNamespace {
                id: None,
                name: "stale".into(),
                encryption: true,
                master_version: mv,
                wrapped_key: wrapped.clone(),
                created: 1,
            })?;
            Ok(tx.namespace(dare_metadata::By::Id(id))?.unwrap())
        },
    )
    .unwrap();
    assert_eq!(late.master_version, 2);
    assert_eq!(store.key_versions().active_master, 3);
    add_bucket(&store, "stale", "stale-bkt", true);
    let ps = provider(&store, "stale-bkt", CacheMode::On);
    let (sdk, senv) = ps.new_data_key().unwrap();
    run(&store, store.start_rotation().unwrap()).unwrap();
    assert_eq!(namespace(&store, "stale").master_version, 4);

    let fresh = Arc::new(KeyStore::open(open_db(dir.path()), flaky(), opts()).unwrap());
    let p2 =
        HierarchyProvider::new(fresh.clone(), &bucket(&fresh, "late-bkt"), CacheMode::On).unwrap();
    assert_eq!(p2.open_data_key(&env).unwrap(), dk);
    let ps2 = HierarchyProvider::new(fresh.clone(), &bucket(&fresh, "stale-bkt"), CacheMode::Off)
        .unwrap();
    assert_eq!(ps2.open_data_key(&senv).unwrap(), sdk);
}

// ---- crash consistency: a real child process aborts after each step -------------------------

const CHILD_DIR_ENV: &str = "DARE_KEYS_TEST_CHILD_DIR";
const CHILD_TASK_ENV: &str = "DARE_KEYS_TEST_CHILD_TASK";
const CHILD_CRASH_ENV: &str = "DARE_KEYS_TEST_CRASH_AFTER_STEP";
const CHILD_LEASE_TTL: Duration = Duration::from_millis(300);

fn file_root(dir: &Path) -> Arc<dyn RootOfTrust> {
    Arc::new(RootKeyFile::load(&dir.join("root.key")).unwrap())
}

/// The child half of `rotation_survives_a_crash_after_every_step`: runs the rotation task with
/// the crash hook set from its environment (test code reads it; the library reads none), so it
/// aborts. Ignored when run on its own.
#[test]
#[ignore = "child process of rotation_survives_a_crash_after_every_step"]
fn crash_child() {
    let dir =
        std::path::PathBuf::from(std::env::var(CHILD_DIR_ENV).expect("run by the parent test"));
    let id: u64 = std::env::var(CHILD_TASK_ENV).unwrap().parse().unwrap();
    let n: u8 = std::env::var(CHILD_CRASH_ENV).unwrap().parse().unwrap();
    let store = KeyStore::open(open_db(&dir), file_root(&dir), opts()).unwrap();
    let _ = store.run_rotation(
        id,
        &RotationOptions {
            crash_after_step: Some(n),
            // The lease the crash leaves behind expires soon: the parent waits it out.
            lease_ttl: CHILD_LEASE_TTL,
            ..RotationOptions::default()
        },
    );
    // Reaching this line means the crash hook did not fire.
    std::process::exit(42);
}

#[test]
fn rotation_survives_a_crash_after_every_step() {
    for n in 1..=5u8 {
        let dir = tempfile::tempdir().unwrap();
        RootKeyFile::create(&dir.path().join("root.key")).unwrap();
        let store = new_store(dir.path(), file_root(dir.path()));
        add_namespace(&store, "ns", true);
        add_namespace(&store, "other", true);
        let b = add_bucket(&store, "ns", "bkt", true);
        let c = add_bucket(&store, "other", "cbk", true);
        let pb = HierarchyProvider::new(store.clone(), &b, CacheMode::On).unwrap();
        let pc = HierarchyProvider::new(store.clone(), &c, CacheMode::Off).unwrap();
        let mut written = Vec::new();
        for p in [&pb, &pc] {
            for _ in 0..3 {
                written.push((p, p.new_data_key().unwrap()));
            }
        }
        let id = store.start_rotation().unwrap();

        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir.path())
            .env(CHILD_TASK_ENV, id.to_string())
            .env(CHILD_CRASH_ENV, n.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(SIGKILL),
            "step {n}: child exited with {status:?}"
        );

        // In the crashed state the store is consistent and everything written opens.
        let st = store.rotation_status(id).unwrap();
        assert_eq!(st.step, n, "step {n}");
        let expected_state = if n == 5 {
            TaskState::Completed
        } else {
            TaskState::Running
        };
        assert_eq!(st.state, expected_state, "step {n}");
        // The dead child's lease is left behind, naming its process; completing released it.
        assert_eq!(st.lease_token, 1, "step {n}");
        if n == 5 {
            assert_eq!((st.lease_owner, st.lease_expires), (None, None), "step {n}");
        } else {
            let owner = st.lease_owner.clone().expect("the crashed runner's lease");
            assert!(owner.contains(&format!(":{pid}:")), "step {n}: {owner}");
            assert!(st.lease_expires.is_some(), "step {n}");
        }
        for (p, (dk, env)) in &written {
            assert_eq!(
                &p.open_data_key(env).unwrap(),
                dk,
                "step {n}, before resume"
            );
        }
        // A new object written now uses whichever rotation key is active.
        written.push((&pb, pb.new_data_key().unwrap()));

        // Resume in-process (a fresh store, as a new process would): another owner than the
        // child, so it waits for the child's lease to expire.
        let again =
            Arc::new(KeyStore::open(open_db(dir.path()), file_root(dir.path()), opts()).unwrap());
        let done = again
            .resume_rotation(
                id,
                &RotationOptions {
                    wait_for_lease: true,
                    ..RotationOptions::default()
                },
            )
            .unwrap();
        assert_eq!(
            (done.state, done.step),
            (TaskState::Completed, 5),
            "step {n}"
        );
        assert_eq!(done.lease_owner, None, "step {n}: released on completion");
        let expected_token = if n == 5 { 1 } else { 2 };
        assert_eq!(done.lease_token, expected_token, "step {n}");
        let kv = again.key_versions();
        assert_eq!((kv.active_master, kv.active_rotation), (2, 2), "step {n}");
        assert_eq!(
            kv.masters,
            [(1, MasterState::Retired), (2, MasterState::Active)],
            "step {n}"
        );
        assert_eq!(kv.rotation_versions, [1, 2], "step {n}: a step ran twice");
        let qb = HierarchyProvider::new(again.clone(), &b, CacheMode::Off).unwrap();
        let qc = HierarchyProvider::new(again.clone(), &c, CacheMode::On).unwrap();
        for (p, (dk, env)) in &written {
            let q = if p.bucket_id() == qb.bucket_id() {
                &qb
            } else {
                &qc
            };
            assert_eq!(&q.open_data_key(env).unwrap(), dk, "step {n}, after resume");
            assert_eq!(&p.open_data_key(env).unwrap(), dk, "step {n}, old handle");
        }
        let (dk, env) = qb.new_data_key().unwrap();
        assert_eq!(
            HierarchyBlock::parse(&env.bytes).unwrap().rotation_version,
            2
        );
        assert_eq!(pb.open_data_key(&env).unwrap(), dk);
    }
}

const SIGKILL: i32 = 9; // on Linux and the BSDs: the crash hook's own SIGKILL

// ---- property: envelopes survive any interleaving of writes, rotations and new buckets -------

#[derive(Debug, Clone)]
enum Op {
    Write(u8),
    Rotate,
    NewBucket,
    ClearCache,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Write),
        2 => Just(Op::Rotate),
        1 => Just(Op::NewBucket),
        1 => Just(Op::ClearCache),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn data_keys_open_after_any_rotations(ops in prop::collection::vec(op(), 1..14)) {
        let (dir, store) = setup(flaky());
        let mut buckets = vec![bucket(&store, "bkt1")];
        let mut written = Vec::new();
        for op in ops {
            match op {
                Op::Write(i) => {
                    let b = &buckets[i as usize % buckets.len()];
                    let mode = if i % 2 == 0 { CacheMode::On } else { CacheMode::Off };
                    let p = HierarchyProvider::new(store.clone(), b, mode).unwrap();
                    let (dk, env) = p.new_data_key().unwrap();
                    written.push((b.clone(), dk, env));
                }
                Op::Rotate => {
                    let id = store.start_rotation().unwrap();
                    prop_assert_eq!(run(&store, id).unwrap().state, TaskState::Completed);
                }
                Op::NewBucket => {
                    let n = format!("bkt{}", buckets.len() + 1);
                    add_namespace(&store, &format!("ns-{n}"), true);
                    buckets.push(add_bucket(&store, &format!("ns-{n}"), &n, true));
                }
                Op::ClearCache => store.cache().clear(),
            }
        }
        // Through the live store (warm cache) and a freshly opened one (cold, no cache).
        let fresh = Arc::new(KeyStore::open(open_db(dir.path()), flaky(), opts()).unwrap());
        for (b, dk, env) in &written {
            for (s, mode) in [(&store, CacheMode::On), (&fresh, CacheMode::Off)] {
                let p = HierarchyProvider::new(s.clone(), b, mode).unwrap();
                prop_assert_eq!(&p.open_data_key(env).unwrap(), dk);
                // Rewrapping to the active version keeps the data key.
                if let Some(moved) = p.rewrap(env).unwrap() {
                    prop_assert_eq!(&p.open_data_key(&moved).unwrap(), dk);
                }
            }
        }
    }
}
