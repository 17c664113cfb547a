//! Rotation under contention: two runners (two owners, as two nodes) started on one task at
//! once — one takes the lease and runs, the other waits for it or is refused naming the
//! holder — commit each step once; and a step whose transaction loses a row-version check
//! (another writer got there first) is redone once, leaving exactly one new master and one new
//! rotation key. The lease itself, its expiry and fencing: tests/lease.rs.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use dare_keys::*;
use dare_metadata::{
    BucketRecord, By, KmsAuditHead, KmsAuditRecord, KmsBy, KmsKeyRecord, KmsRegistration,
    KmsVersionRecord, MasterKeyRecord, MetaError, Metadata, NameRange, NamespaceRecord, NewBucket,
    NewNamespace, NewTask, ObjectRecord, ReadTx, RotationKeyRecord, StoreRecord, TaskRecord,
    WriteTx,
};

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

fn provider(store: &Arc<KeyStore>, bucket_name: &str, mode: CacheMode) -> HierarchyProvider {
    HierarchyProvider::new(store.clone(), &bucket(store, bucket_name), mode).unwrap()
}

fn owner(i: usize, wait: bool) -> RotationOptions {
    RotationOptions {
        lease_owner: Some(format!("node-{i}")),
        wait_for_lease: wait,
        ..RotationOptions::default()
    }
}

#[test]
fn concurrent_runners_commit_each_step_once() {
    for round in 0..4 {
        // A slow root of trust makes both runners draw a master key at the same time, so one
        // of them loses step 1 and must discard its key.
        let root = flaky_slow(Duration::from_millis(20));
        let (dir, store) = setup(root.clone());
        let p = provider(&store, "bkt1", CacheMode::On);
        let (dk, env) = p.new_data_key().unwrap();
        let id = store.start_rotation().unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let runners: Vec<_> = (0..2)
            .map(|i| {
                // One runner shares the store, the other is "another process".
                let s = if i == 0 {
                    store.clone()
                } else {
                    Arc::new(KeyStore::open(open_db(dir.path()), root.clone(), opts()).unwrap())
                };
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    // The runner that does not get the lease waits until the other releases
                    // it on completion, and returns the completed status.
                    s.run_rotation(id, &owner(i, true))
                })
            })
            .collect();
        for r in runners {
            let st = r.join().unwrap().unwrap();
            assert_eq!(
                (st.state, st.step),
                (TaskState::Completed, 5),
                "round {round}"
            );
            assert_eq!(
                (st.new_master, st.new_rotation),
                (Some(2), Some(2)),
                "round {round}"
            );
            // Taken once, by the runner that ran it all, and released.
            assert_eq!((st.lease_owner, st.lease_token), (None, 1), "round {round}");
        }
        let kv = store.key_versions();
        assert_eq!(
            kv.masters,
            [(1, MasterState::Retired), (2, MasterState::Active)],
            "round {round}: exactly one new master"
        );
        assert_eq!(
            kv.rotation_versions,
            [1, 2],
            "round {round}: exactly one new rotation key"
        );
        assert_eq!(store.store_record().key_epoch, 3, "round {round}");
        assert_eq!(p.open_data_key(&env).unwrap(), dk);
        let (dk2, env2) = p.new_data_key().unwrap();
        assert_eq!(
            HierarchyBlock::parse(&env2.bytes).unwrap().rotation_version,
            2
        );
        assert_eq!(p.open_data_key(&env2).unwrap(), dk2);
    }
}

/// Without waiting: of two runners started together, one runs the task; the other either
/// is refused with the holder's name (it came while the lease was held) or finds the task
/// completed — never an error of another kind, never a second set of keys.
#[test]
fn a_runner_that_finds_the_lease_held_is_refused_naming_the_holder() {
    let mut refused = 0;
    for round in 0..4 {
        let root = flaky_slow(Duration::from_millis(20));
        let (dir, store) = setup(root.clone());
        let id = store.start_rotation().unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let runners: Vec<_> = (0..2)
            .map(|i| {
                let s =
                    Arc::new(KeyStore::open(open_db(dir.path()), root.clone(), opts()).unwrap());
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    s.run_rotation(id, &owner(i, false))
                })
            })
            .collect();
        let results: Vec<_> = runners.into_iter().map(|r| r.join().unwrap()).collect();
        let completed = results.iter().filter(|r| r.is_ok()).count();
        assert!(completed >= 1, "round {round}: {results:?}");
        for (i, r) in results.iter().enumerate() {
            match r {
                Ok(st) => assert_eq!(st.state, TaskState::Completed, "round {round}"),
                Err(e @ StoreError::RotationLeased { id: t, owner, .. }) => {
                    refused += 1;
                    assert_eq!(*t, id);
                    assert_eq!(owner, &format!("node-{}", 1 - i), "round {round}");
                    assert!(e.to_string().contains(owner.as_str()), "{e}");
                }
                Err(e) => panic!("round {round}: runner {i}: {e}"),
            }
        }
        let kv = store.key_versions();
        assert_eq!(kv.rotation_versions, [1, 2], "round {round}");
        assert_eq!(kv.masters.len(), 2, "round {round}");
        assert_eq!(store.rotation_status(id).unwrap().lease_token, 1);
    }
    // Both start at the barrier and the run takes 20 ms of root-of-trust time: the second
    // runner nearly always arrives while the lease is held.
    eprintln!("{refused} of 4 second runners refused");
}

/// A metadata database on which a write transaction fails its first row-version check
/// ([`MetaError::Conflict`], as when another writer got there first) unless the transaction
/// before it did: so every transaction is dropped (rolled back) once and run again.
#[derive(Debug)]
struct Contended {
    inner: Arc<dyn Metadata>,
    injected_last: AtomicBool,
    conflicts: AtomicU64,
}

struct ContendedTx<'a> {
    inner: Box<dyn WriteTx + 'a>,
    fail_next_check: bool,
    db: &'a Contended,
}

impl ContendedTx<'_> {
    fn check(&mut self) -> Result<(), MetaError> {
        if std::mem::take(&mut self.fail_next_check) {
            self.db.injected_last.store(true, Ordering::SeqCst);
            self.db.conflicts.fetch_add(1, Ordering::SeqCst);
            return Err(MetaError::Conflict("injected"));
        }
        Ok(())
    }
}

impl Metadata for Contended {
    fn read(&self) -> Result<Box<dyn ReadTx + '_>, MetaError> {
        self.inner.read()
    }
    fn write(&self) -> Result<Box<dyn WriteTx + '_>, MetaError> {
        let retry = self.injected_last.swap(false, Ordering::SeqCst);
        Ok(Box::new(ContendedTx {
            inner: self.inner.write()?,
            fail_next_check: !retry,
            db: self,
        }))
    }
    fn backup(&self, dest: &Path) -> Result<(), MetaError> {
        self.inner.backup(dest)
    }
    fn describe(&self) -> String {
        format!("contended {}", self.inner.describe())
    }
}

impl ReadTx for ContendedTx<'_> {
    fn store(&mut self) -> Result<Option<StoreRecord>, MetaError> {
        self.inner.store()
    }
    fn master_keys(&mut self) -> Result<Vec<MasterKeyRecord>, MetaError> {
        self.inner.master_keys()
    }
    fn rotation_keys(&mut self) -> Result<Vec<RotationKeyRecord>, MetaError> {
        self.inner.rotation_keys()
    }
    fn namespace(&mut self, by: By<'_>) -> Result<Option<NamespaceRecord>, MetaError> {
        self.inner.namespace(by)
    }
    fn namespaces(&mut self) -> Result<Vec<NamespaceRecord>, MetaError> {
        self.inner.namespaces()
    }
    fn bucket(&mut self, by: By<'_>) -> Result<Option<BucketRecord>, MetaError> {
        self.inner.bucket(by)
    }
    fn buckets(&mut self, namespace_id: Option<u64>) -> Result<Vec<BucketRecord>, MetaError> {
        self.inner.buckets(namespace_id)
    }
    fn task(&mut self, id: u64) -> Result<Option<TaskRecord>, MetaError> {
        self.inner.task(id)
    }
    fn tasks(&mut self) -> Result<Vec<TaskRecord>, MetaError> {
        self.inner.tasks()
    }
    fn object(&mut self, bucket_id: u64, name: &str) -> Result<Option<ObjectRecord>, MetaError> {
        self.inner.object(bucket_id, name)
    }
    fn objects(
        &mut self,
        bucket_id: u64,
        range: NameRange<'_>,
        limit: usize,
    ) -> Result<Vec<ObjectRecord>, MetaError> {
        self.inner.objects(bucket_id, range, limit)
    }
    fn object_count(&mut self, bucket_id: u64) -> Result<u64, MetaError> {
        self.inner.object_count(bucket_id)
    }
    fn kms_key(&mut self, by: KmsBy<'_>) -> Result<Option<KmsKeyRecord>, MetaError> {
        self.inner.kms_key(by)
    }
    fn kms_keys(&mut self) -> Result<Vec<KmsKeyRecord>, MetaError> {
        self.inner.kms_keys()
    }
    fn kms_versions(&mut self, key_id: &str) -> Result<Vec<KmsVersionRecord>, MetaError> {
        self.inner.kms_versions(key_id)
    }
    fn kms_registrations(&mut self, key_id: &str) -> Result<Vec<KmsRegistration>, MetaError> {
        self.inner.kms_registrations(key_id)
    }
    fn kms_audit(
        &mut self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<KmsAuditRecord>, MetaError> {
        self.inner.kms_audit(after_seq, limit)
    }
    fn kms_audit_head(&mut self) -> Result<KmsAuditHead, MetaError> {
        self.inner.kms_audit_head()
    }
    fn sites(&mut self) -> Result<Vec<dare_metadata::SiteRecord>, MetaError> {
        self.inner.sites()
    }
    fn site_keys(
        &mut self,
        fingerprint: &[u8; 32],
    ) -> Result<Vec<dare_metadata::SiteKeyRecord>, MetaError> {
        self.inner.site_keys(fingerprint)
    }
}

impl WriteTx for ContendedTx<'_> {
    fn insert_store(&mut self, s: &StoreRecord) -> Result<(), MetaError> {
        self.inner.insert_store(s)
    }
    fn update_store(&mut self, s: &StoreRecord) -> Result<u64, MetaError> {
        self.check()?;
        self.inner.update_store(s)
    }
    fn insert_master_key(&mut self, m: &MasterKeyRecord) -> Result<(), MetaError> {
        self.inner.insert_master_key(m)
    }
    fn update_master_key(&mut self, m: &MasterKeyRecord) -> Result<(), MetaError> {
        self.inner.update_master_key(m)
    }
    fn insert_rotation_key(&mut self, r: &RotationKeyRecord) -> Result<(), MetaError> {
        self.inner.insert_rotation_key(r)
    }
    fn update_rotation_key(&mut self, r: &RotationKeyRecord) -> Result<u64, MetaError> {
        self.check()?;
        self.inner.update_rotation_key(r)
    }
    fn insert_namespace(&mut self, n: &NewNamespace) -> Result<u64, MetaError> {
        self.inner.insert_namespace(n)
    }
    fn update_namespace(&mut self, n: &NamespaceRecord) -> Result<u64, MetaError> {
        self.check()?;
        self.inner.update_namespace(n)
    }
    fn delete_namespace(&mut self, id: u64) -> Result<(), MetaError> {
        self.inner.delete_namespace(id)
    }
    fn insert_bucket(&mut self, b: &NewBucket) -> Result<u64, MetaError> {
        self.inner.insert_bucket(b)
    }
    fn delete_bucket(&mut self, id: u64) -> Result<u64, MetaError> {
        self.inner.delete_bucket(id)
    }
    fn insert_task(&mut self, t: &NewTask) -> Result<u64, MetaError> {
        self.inner.insert_task(t)
    }
    fn update_task(&mut self, t: &TaskRecord) -> Result<u64, MetaError> {
        self.check()?;
        self.inner.update_task(t)
    }
    fn put_object(&mut self, o: &ObjectRecord) -> Result<Option<ObjectRecord>, MetaError> {
        self.inner.put_object(o)
    }
    fn delete_object(
        &mut self,
        bucket_id: u64,
        name: &str,
    ) -> Result<Option<ObjectRecord>, MetaError> {
        self.inner.delete_object(bucket_id, name)
    }
    fn swap_envelope(
        &mut self,
        bucket_id: u64,
        name: &str,
        object_id: &[u8; 16],
        row_version: u64,
        envelope_kind: u8,
        envelope: &[u8],
    ) -> Result<bool, MetaError> {
        self.inner.swap_envelope(
            bucket_id,
            name,
            object_id,
            row_version,
            envelope_kind,
            envelope,
        )
    }
    fn update_bucket(&mut self, b: &BucketRecord) -> Result<u64, MetaError> {
        self.check()?;
        self.inner.update_bucket(b)
    }
    fn insert_kms_key(&mut self, k: &KmsKeyRecord) -> Result<(), MetaError> {
        self.inner.insert_kms_key(k)
    }
    fn update_kms_key(&mut self, k: &KmsKeyRecord) -> Result<u64, MetaError> {
        self.check()?;
        self.inner.update_kms_key(k)
    }
    fn insert_kms_version(&mut self, v: &KmsVersionRecord) -> Result<(), MetaError> {
        self.inner.insert_kms_version(v)
    }
    fn update_kms_version(&mut self, v: &KmsVersionRecord) -> Result<(), MetaError> {
        self.inner.update_kms_version(v)
    }
    fn delete_kms_versions(&mut self, key_id: &str) -> Result<u64, MetaError> {
        self.inner.delete_kms_versions(key_id)
    }
    fn put_kms_registration(&mut self, r: &KmsRegistration) -> Result<(), MetaError> {
        self.inner.put_kms_registration(r)
    }
    fn delete_kms_registration(&mut self, key_id: &str, resource: &str) -> Result<bool, MetaError> {
        self.inner.delete_kms_registration(key_id, resource)
    }
    fn append_kms_audit(&mut self, r: &KmsAuditRecord) -> Result<(), MetaError> {
        self.inner.append_kms_audit(r)
    }
    fn insert_site(&mut self, s: &dare_metadata::SiteRecord) -> Result<(), MetaError> {
        self.inner.insert_site(s)
    }
    fn put_site_key(&mut self, k: &dare_metadata::SiteKeyRecord) -> Result<(), MetaError> {
        self.inner.put_site_key(k)
    }
    fn delete_site(&mut self, name: &str) -> Result<bool, MetaError> {
        self.inner.delete_site(name)
    }
    fn commit(self: Box<Self>) -> Result<(), MetaError> {
        self.inner.commit()
    }
}

#[test]
fn a_step_that_loses_its_row_version_check_is_redone_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = flaky();
    let meta = new_db(dir.path());
    init(&*meta, &*root);
    let contended = Arc::new(Contended {
        inner: meta,
        injected_last: AtomicBool::new(false),
        conflicts: AtomicU64::new(0),
    });
    let store = Arc::new(KeyStore::open(contended.clone(), root, opts()).unwrap());
    add_namespace(&store, "ns1", true);
    add_namespace(&store, "ns2", true);
    let b = add_bucket(&store, "ns1", "bkt1", true);
    let p = HierarchyProvider::new(store.clone(), &b, CacheMode::On).unwrap();
    let (dk, env) = p.new_data_key().unwrap();
    for round in 1..=2u32 {
        let id = store.start_rotation().unwrap();
        let done = run(&store, id).unwrap();
        assert_eq!(done.state, TaskState::Completed);
        let kv = store.key_versions();
        let v = round + 1;
        assert_eq!((kv.active_master, kv.active_rotation), (v, v));
        assert_eq!(
            kv.masters.len() as u32,
            v,
            "a redone step 1 stored one master"
        );
        assert_eq!(
            kv.rotation_versions,
            (1..=v).collect::<Vec<_>>(),
            "a redone step 2 stored one rotation key"
        );
        assert_eq!(store.store_record().key_epoch, 1 + 2 * u64::from(round));
        assert!(namespace(&store, "ns2").master_version == v);
        assert_eq!(p.open_data_key(&env).unwrap(), dk);
    }
    // Each write transaction of the two rotations — the lease acquisition, five renewals
    // and five steps each — lost a check once and was run again.
    assert_eq!(contended.conflicts.load(Ordering::SeqCst), 2 * 11);
}
