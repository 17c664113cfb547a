//! Rekey tasks (KEYS.md §8.3) on SQLite and PostgreSQL: every key moves under the new root, the
//! old master key stays (never overwritten) and is deactivated by its own root, the task
//! report names the key to decommission and the new key, and the refusals write nothing.
//! Crashes of a real process at each step: harness/tests/rekey.rs.

mod common;

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use common::*;
use dare_keys::*;
use dare_metadata::{Metadata, PostgresMetadata, PostgresOptions, TaskKind, read_with};
use dare_testkit::PgServer;

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
    let url = server.create_database(&format!("rekey{n}"));
    let open = move || -> Arc<dyn Metadata> {
        Arc::new(PostgresMetadata::open(&url, PostgresOptions::default()).unwrap())
    };
    init(&*open(), &*root(7));
    Db {
        open: Box::new(open),
        _keep: Box::new(()),
    }
}

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
    rekey_moves_every_key_under_the_new_root,
    rekey_refusals_write_nothing,
    deactivation_failure_is_retryable,
);

fn cheap_passphrase(p: &str) -> Arc<dyn RootOfTrust> {
    Arc::new(PassphraseRoot::with_params(
        p.as_bytes().to_vec(),
        Argon2Params {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        },
    ))
}

fn open(db: &Db, root: Arc<dyn RootOfTrust>) -> Result<Arc<KeyStore>, StoreError> {
    KeyStore::open((db.open)(), root, opts()).map(Arc::new)
}

/// A key-manager root: a root key file that reports an external key with an id and counts
/// (or refuses) deactivations — the seam a KMIP root fills (`deactivate` must be idempotent).
#[derive(Debug)]
struct Managed {
    inner: RootKeyFile,
    deactivations: AtomicU32,
    down: AtomicBool,
}

impl RootOfTrust for Managed {
    fn wrap_master(&self, key: &Secret32) -> Result<Vec<u8>, KeyError> {
        self.inner.wrap_master(key)
    }
    fn unwrap_master(&self, blob: &[u8]) -> Result<Secret32, KeyError> {
        self.inner.unwrap_master(blob)
    }
    fn describe(&self) -> String {
        "managed-test-cluster".into()
    }
    fn provider_key(&self, blob: &[u8]) -> ProviderKey {
        ProviderKey {
            management: Management::External,
            provider: self.describe(),
            key_id: Some(format!("uid-{}", blob[0])),
        }
    }
    fn deactivate(&self, _blob: &[u8]) -> Result<bool, KeyError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(KeyError::Provider("key server down".into()));
        }
        self.deactivations.fetch_add(1, Ordering::SeqCst);
        Ok(true)
    }
}

fn rekey_moves_every_key_under_the_new_root(db: Db) {
    let store = open(&db, root(7)).unwrap();
    add_namespace(&store, "ns", true);
    let b = add_bucket(&store, "ns", "bkt", true);
    let p = HierarchyProvider::new(store.clone(), &b, CacheMode::Off).unwrap();
    let written: Vec<_> = (0..3).map(|_| p.new_data_key().unwrap()).collect();
    let old_master = read_with(&*(db.open)(), |tx| tx.master_keys()).unwrap();

    let target = cheap_passphrase("a new passphrase for the store");
    let id = store.start_rekey(&*target).unwrap();
    let report = store.task_report(id).unwrap();
    assert_eq!((report.kind, report.state), ("rekey", TaskState::Pending));
    assert_eq!(report.new_key, None);
    assert_eq!(report.target.as_deref(), Some("passphrase-argon2id"));
    let st = store
        .run_rekey(id, target.clone(), &RotationOptions::default())
        .unwrap();
    assert_eq!((st.state, st.step), (TaskState::Completed, 5));

    // Everything opens with the new root alone; the old root no longer opens the store.
    let after = open(&db, target.clone()).unwrap();
    let p2 = HierarchyProvider::new(after.clone(), &b, CacheMode::Off).unwrap();
    for (dk, env) in &written {
        assert_eq!(&p2.open_data_key(env).unwrap(), dk);
    }
    let (dk, env) = p2.new_data_key().unwrap();
    assert_eq!(p2.open_data_key(&env).unwrap(), dk);
    assert!(matches!(open(&db, root(7)), Err(StoreError::Key(_))));
    assert_eq!(after.store_record().root_of_trust, "passphrase-argon2id");

    // The old master key was replaced, not overwritten, and keeps the RT data key under its
    // own root; the new one carries its root.
    let masters = read_with(&*(db.open)(), |tx| tx.master_keys()).unwrap();
    assert_eq!(masters.len(), 2);
    assert_eq!(masters[0].wrapped, old_master[0].wrapped);
    assert_eq!(masters[0].state, MasterState::Retired);
    assert_eq!(
        masters[0].root.root_of_trust.as_deref(),
        Some("root-key-file")
    );
    assert!(masters[0].root.rt_wrapped.is_some());
    assert_eq!(masters[1].state, MasterState::Active);
    assert_eq!(
        masters[1].root.root_of_trust.as_deref(),
        Some("passphrase-argon2id")
    );

    // The report (GetAsyncResult) and the info (GetSoftwareEncryptionAtRestInfo).
    let r = after.task_report(id).unwrap();
    assert_eq!(r.state, TaskState::Completed);
    let old = r.key_to_decommission.unwrap();
    assert_eq!(
        (old.version, old.management.as_str(), old.provider.as_str()),
        (1, "internal", "root-key-file")
    );
    let new = r.new_key.unwrap();
    assert_eq!(
        (new.version, new.management.as_str(), new.provider.as_str()),
        (2, "internal", "passphrase-argon2id")
    );
    assert!(r.last_update >= r.created);
    let info = after.key_info().unwrap();
    assert_eq!(info.current.version, 2);
    assert_eq!(info.current.key.provider, "passphrase-argon2id");
    assert_eq!(info.latest_rekey, Some(id));
    assert_eq!(info.running_task, None);
    assert_eq!(info.others.len(), 1);
    assert_eq!(info.others[0].state, MasterState::Retired);
    assert_eq!(info.others[0].deactivation.as_deref(), Some("nothing"));
    assert!(info.others[0].deactivated.is_some());

    // A rotation afterwards needs only the new root.
    let rid = after.start_rotation().unwrap();
    after
        .run_rotation(rid, &RotationOptions::default())
        .unwrap();
    for (dk, env) in &written {
        assert_eq!(&p2.open_data_key(env).unwrap(), dk);
    }
}

fn rekey_refusals_write_nothing(db: Db) {
    let store = open(&db, root(7)).unwrap();
    add_namespace(&store, "ns", true);
    let tasks = || read_with(&*(db.open)(), |tx| tx.tasks()).unwrap();

    // The root already in use.
    assert!(matches!(
        store.start_rekey(&*root(7)),
        Err(StoreError::SameRoot(r)) if r == "root-key-file"
    ));
    assert!(tasks().is_empty());
    // An unknown handle.
    assert!(matches!(
        store.task_report(99),
        Err(StoreError::NotFound { what: "task", .. })
    ));
    assert!(matches!(
        store.run_rekey(99, root(8), &RotationOptions::default()),
        Err(StoreError::NotFound { .. })
    ));

    // A rekey while a rotation is unfinished, and the reverse, name the running task.
    let rot = store.start_rotation().unwrap();
    assert!(matches!(
        store.start_rekey(&*root(8)),
        Err(StoreError::RotationInProgress(i)) if i == rot
    ));
    store
        .run_rotation(rot, &RotationOptions::default())
        .unwrap();
    let target = cheap_passphrase("first target passphrase");
    let id = store.start_rekey(&*target).unwrap();
    assert!(matches!(
        store.start_rotation(),
        Err(StoreError::RekeyInProgress(i)) if i == id
    ));
    assert!(matches!(
        store.start_rekey(&*root(8)),
        Err(StoreError::RekeyInProgress(i)) if i == id
    ));
    // The task needs its target; another root (another passphrase) is refused.
    assert!(matches!(
        store.run_rotation(id, &RotationOptions::default()),
        Err(StoreError::RekeyTargetNeeded { .. })
    ));
    assert!(matches!(
        store.run_rekey(id, root(8), &RotationOptions::default()),
        Err(StoreError::RekeyTargetMismatch { .. })
    ));
    let before = tasks();
    assert_eq!(before.last().unwrap().step, 0);
    // After step 1 the target is checked by unwrapping the new master key: a wrong
    // passphrase (same description) is refused too.
    let failing = Arc::new(FailAfterOne {
        inner: target.clone(),
        wraps: AtomicU32::new(0),
    });
    let e = store.run_rekey(id, failing, &RotationOptions::default());
    assert!(
        matches!(e, Err(StoreError::RotationFailed { step: 2, .. })),
        "{e:?}"
    );
    let t = tasks().into_iter().find(|t| t.id == id).unwrap();
    assert_eq!((t.step, t.kind), (1, TaskKind::Rekey));
    let wrong = cheap_passphrase("not the target passphrase");
    assert!(matches!(
        store.resume_rekey(id, wrong, &RotationOptions::default()),
        Err(StoreError::RekeyTargetMismatch { .. })
    ));
    assert_eq!(tasks().into_iter().find(|t| t.id == id).unwrap().step, 1);
    // The right one resumes it to the end.
    let st = store
        .resume_rekey(id, target.clone(), &RotationOptions::default())
        .unwrap();
    assert_eq!(st.state, TaskState::Completed);
    assert!(open(&db, target).is_ok());
}

/// A target that becomes unreachable once step 1 has used it (two wraps: the RT data key and
/// the new master key): step 2, which unwraps the new master key, fails.
#[derive(Debug)]
struct FailAfterOne {
    inner: Arc<dyn RootOfTrust>,
    wraps: AtomicU32,
}

impl RootOfTrust for FailAfterOne {
    fn wrap_master(&self, key: &Secret32) -> Result<Vec<u8>, KeyError> {
        self.wraps.fetch_add(1, Ordering::SeqCst);
        self.inner.wrap_master(key)
    }
    fn unwrap_master(&self, blob: &[u8]) -> Result<Secret32, KeyError> {
        // Step 1 wraps twice (RT data key, master key) and unwraps nothing with the target;
        // from step 2 on, the target is "unreachable".
        if self.wraps.load(Ordering::SeqCst) >= 2 {
            return Err(KeyError::Provider("target unreachable".into()));
        }
        self.inner.unwrap_master(blob)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

fn deactivation_failure_is_retryable(db: Db) {
    // Move the store onto the key-manager root first, then rotate under it.
    let store = open(&db, root(7)).unwrap();
    add_namespace(&store, "ns", true);
    let managed = Arc::new(Managed {
        inner: RootKeyFile::from_secret(Secret32::from_bytes("root", [3; 32])),
        deactivations: AtomicU32::new(0),
        down: AtomicBool::new(false),
    });
    let id = store.start_rekey(&*managed).unwrap();
    store
        .run_rekey(id, managed.clone(), &RotationOptions::default())
        .unwrap();
    // The old internal master key: nothing to deactivate (and the managed root not asked).
    assert_eq!(managed.deactivations.load(Ordering::SeqCst), 0);
    let r = store.task_report(id).unwrap();
    let new = r.new_key.unwrap();
    assert_eq!(new.management, "external");
    assert_eq!(new.provider, "managed-test-cluster");
    assert!(new.key_id.unwrap().starts_with("uid-"));

    let under = open(&db, managed.clone()).unwrap();
    let rid = under.start_rotation().unwrap();
    managed.down.store(true, Ordering::SeqCst);
    let e = under.run_rotation(rid, &RotationOptions::default());
    assert!(
        matches!(e, Err(StoreError::RotationFailed { step: 5, .. })),
        "{e:?}"
    );
    // Retryable: the store is whole (the new keys are active), the task resumable.
    let st = under.rotation_status(rid).unwrap();
    assert_eq!((st.state, st.step), (TaskState::TransientError, 4));
    let info = under.key_info().unwrap();
    assert_eq!(info.current.version, 3);
    assert!(
        info.others
            .iter()
            .all(|m| m.version == 1 || m.deactivated.is_none())
    );
    managed.down.store(false, Ordering::SeqCst);
    let st = under
        .resume_rotation(rid, &RotationOptions::default())
        .unwrap();
    assert_eq!(st.state, TaskState::Completed);
    assert_eq!(managed.deactivations.load(Ordering::SeqCst), 1);
    let info = under.key_info().unwrap();
    let v2 = info.others.iter().find(|m| m.version == 2).unwrap();
    assert_eq!(v2.deactivation.as_deref(), Some("deactivated"));
    assert_eq!(v2.key.management, "external");
}
