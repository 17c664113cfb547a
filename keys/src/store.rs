//! The key store: the key side of ECS's resource table (white paper §2.1) on the metadata seam.
//!
//! The records live in the metadata database ([`dare_metadata::Metadata`]): the store row
//! (root-of-trust blob of the RT data key, active key versions, key epoch), master key
//! versions (root-of-trust blobs), rotation key versions and namespace keys (wrapped by a
//! virtual master key), bucket keys (wrapped by their namespace key) and rotation tasks. Their
//! layouts and derivations are in docs/KEYS.md; this crate never stores a plaintext key.
//!
//! A [`KeyStore`] keeps an in-memory *snapshot* of the small, hot part: the store row, the
//! master keys and the rotation keys. Every change to those rows also bumps the store row's
//! `row_version` in the same transaction, so [`KeyStore::refresh`] needs one row read to know
//! whether anything changed, and reloads only then. The data path checks at most once per
//! [`StoreOptions::refresh_interval`], and at once when an envelope names a rotation version
//! the snapshot does not know (another process rotated). Namespace records (which a rotation
//! rewraps) are read by id when the derived-key cache misses; bucket keys never change, so a
//! [`crate::HierarchyProvider`] holds its bucket's wrapped key.
//!
//! Namespace and bucket rows are the control plane's: it asks for a fresh wrapped key
//! ([`KeyStore::new_namespace_key`], [`KeyStore::new_bucket_key`]) and inserts the row itself,
//! in its own transaction, with its own name and encryption policy.

use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dare_metadata::{
    By, MasterKeyRecord, MasterState, Metadata, NamespaceRecord, ReadTx, RotationKeyRecord,
    StoreRecord, WriteTx, read_with,
};
use serde_json::{Value, json};

use crate::cache::{CacheKey, KeyCache};
use crate::derive::{virtual_bucket_key, virtual_master_key};
use crate::root::RootOfTrust;
use crate::wrap::{unwrap_key, wrap_key};
use crate::{KeyError, Secret32, StoreError};

/// Tuning of a [`KeyStore`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Maximum number of keys in the derived-key cache (0 disables caching altogether).
    pub cache_capacity: usize,
    /// How often the data path checks whether the key records changed (one read of the store
    /// row). `Duration::ZERO` checks on every call.
    pub refresh_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            cache_capacity: 4096,
            refresh_interval: Duration::from_secs(1),
        }
    }
}

/// The key versions of a store, for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVersions {
    /// What protects the master keys (`RootOfTrust::describe` at init).
    pub root_of_trust: String,
    /// The active master key version.
    pub active_master: u32,
    /// The active rotation key version (new objects are wrapped under it).
    pub active_rotation: u32,
    /// Every master key version and its state.
    pub masters: Vec<(u32, MasterState)>,
    /// Every rotation key version.
    pub rotation_versions: Vec<u32>,
}

/// The key records the data path needs on every request, as of one read transaction.
pub(crate) struct Snapshot {
    pub(crate) store: StoreRecord,
    pub(crate) masters: Vec<MasterKeyRecord>,
    pub(crate) rotation_keys: Vec<RotationKeyRecord>,
}

impl Snapshot {
    /// Reads the store row and, unless its row version is `unless_version`, the key records.
    /// `Ok(None)` when the row is at `unless_version`; [`StoreError::NotInitialized`] without it.
    fn read(
        tx: &mut dyn ReadTx,
        at: &dyn Metadata,
        unless_version: Option<u64>,
    ) -> Result<Option<Snapshot>, StoreError> {
        let store = tx
            .store()?
            .ok_or_else(|| StoreError::NotInitialized(at.describe()))?;
        if unless_version == Some(store.row_version) {
            return Ok(None);
        }
        let s = Snapshot {
            store,
            masters: tx.master_keys()?,
            rotation_keys: tx.rotation_keys()?,
        };
        s.check()?;
        Ok(Some(s))
    }

    /// What the derivation chain relies on.
    fn check(&self) -> Result<(), StoreError> {
        let bad = |why: String| Err(StoreError::Corrupt(format!("key records: {why}")));
        match self.master(self.store.active_master) {
            Some(m) if m.state == MasterState::Active => {}
            _ => {
                return bad(format!(
                    "active master key version {} is missing or not active",
                    self.store.active_master
                ));
            }
        }
        if self.rotation_key(self.store.active_rotation).is_none() {
            return bad(format!(
                "active rotation key version {} is missing",
                self.store.active_rotation
            ));
        }
        Ok(())
    }

    pub(crate) fn master(&self, v: u32) -> Option<&MasterKeyRecord> {
        self.masters.iter().find(|m| m.version == v)
    }

    pub(crate) fn rotation_key(&self, v: u32) -> Option<&RotationKeyRecord> {
        self.rotation_keys.iter().find(|r| r.version == v)
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.store.key_epoch
    }
}

/// An open key store. Share it as `Arc<KeyStore>`; providers hold a clone.
pub struct KeyStore {
    meta: Arc<dyn Metadata>,
    pub(crate) root: Arc<dyn RootOfTrust>,
    /// The roots behind `root`: one, or — opened for a rekey — the store's and the target
    /// (`root` is then their [`crate::RekeyRoots`]). Deactivation picks one by description.
    pub(crate) roots: Vec<Arc<dyn RootOfTrust>>,
    snap: RwLock<Arc<Snapshot>>,
    last_check: Mutex<Instant>,
    opts: StoreOptions,
    pub(crate) cache: KeyCache,
    /// Weak: the service holds this store (an `Arc` both ways would never be freed, and its
    /// keys never zeroized).
    bucket_keys: RwLock<Option<std::sync::Weak<dyn BucketKeyService>>>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.snapshot();
        f.debug_struct("KeyStore")
            .field("metadata", &self.meta.describe())
            .field("root", &self.root)
            .field("active_master", &s.store.active_master)
            .field("active_rotation", &s.store.active_rotation)
            .field("key_epoch", &s.store.key_epoch)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a master key row records of the root that made `blob` (KEYS.md §8.3): its
/// description, management type and key id, and — for a rekey's new master key — the RT data
/// key under that same root.
pub(crate) fn master_root(
    root: &dyn RootOfTrust,
    blob: &[u8],
    rt_wrapped: Option<Vec<u8>>,
) -> dare_metadata::MasterRoot {
    let pk = root.provider_key(blob);
    dare_metadata::MasterRoot {
        root_of_trust: Some(root.describe()),
        management: Some(pk.management.name().to_owned()),
        key_id: pk.key_id,
        rt_wrapped,
        deactivated: None,
        deactivation: None,
    }
}

/// VMK(mv) of a master key record: two root-of-trust unwraps (master key, RT data key) and one
/// HMAC. Masters' blobs and the RT blob never change, so the result never goes stale.
pub(crate) fn derive_vmk(
    root: &dyn RootOfTrust,
    master: Option<&MasterKeyRecord>,
    rt_blob: &[u8],
    mv: u32,
) -> Result<Secret32, KeyError> {
    let rec = master
        .filter(|m| m.version == mv)
        .ok_or(KeyError::UnknownVersion(mv))?;
    let mk = root.unwrap_master(&rec.wrapped)?;
    // A master key left under another root by a rekey carries the RT data key under that
    // root (KEYS.md §8.3); every other uses the store row's.
    let rt = root.unwrap_master(rec.root.rt_wrapped.as_deref().unwrap_or(rt_blob))?;
    Ok(virtual_master_key(&mk, mv, &rt))
}

impl KeyStore {
    /// Writes a new store into the caller's write transaction: the store row (`store_id`,
    /// `chunk_shift` (12..=22, checked by the database), `root.describe()`, the RT data key's
    /// root-of-trust blob, active versions 1/1, key epoch 1, created now, row version 1),
    /// master key version 1 (active) and rotation key version 1 (wrapped under VMK_1). The
    /// caller commits, so a store's init and its first namespace can be one transaction.
    ///
    /// [`StoreError::AlreadyInitialized`] if the database holds a store row already.
    pub fn create_in(
        tx: &mut dyn WriteTx,
        root: &dyn RootOfTrust,
        store_id: [u8; 16],
        chunk_shift: u8,
    ) -> Result<(), StoreError> {
        if tx.store()?.is_some() {
            return Err(StoreError::AlreadyInitialized(
                "the metadata database".to_string(),
            ));
        }
        let created = now();
        let rt = Secret32::generate("RT data key")?;
        let mk = Secret32::generate("master key")?;
        let rk = Secret32::generate("rotation key")?;
        let rt_blob = root.wrap_master(&rt)?;
        let mk_blob = root.wrap_master(&mk)?;
        let vmk = virtual_master_key(&mk, 1, &rt);
        tx.insert_store(&StoreRecord {
            store_id,
            chunk_shift,
            root_of_trust: root.describe(),
            rt_data_key: rt_blob,
            active_master: 1,
            active_rotation: 1,
            key_epoch: 1,
            created,
            row_version: 1,
        })?;
        let root_info = master_root(root, &mk_blob, None);
        tx.insert_master_key(&MasterKeyRecord {
            version: 1,
            state: MasterState::Active,
            wrapped: mk_blob,
            created,
            retired: None,
            root: root_info,
        })?;
        tx.insert_rotation_key(&RotationKeyRecord {
            version: 1,
            master_version: 1,
            wrapped: wrap_key(&vmk, &rk).to_vec(),
            created,
            row_version: 1,
        })?;
        Ok(())
    }

    /// Opens the store kept in `meta`: loads the key snapshot and checks that `root` unwraps
    /// the active master key and the RT data key, so a wrong root key file or passphrase fails
    /// here with [`KeyError::WrongRootKey`] (inside [`StoreError::Key`]). Without a store row:
    /// [`StoreError::NotInitialized`].
    pub fn open(
        meta: Arc<dyn Metadata>,
        root: Arc<dyn RootOfTrust>,
        opts: StoreOptions,
    ) -> Result<KeyStore, StoreError> {
        Self::open_with_target(meta, root, None, opts)
    }

    /// [`KeyStore::open`] for running or resuming a rekey (KEYS.md §8.3): `root` is the root
    /// the store was opened with and `target` the rekey's, and the store unwraps with either,
    /// so it opens at every step of the task, before the switch to the new root and after.
    pub fn open_with_target(
        meta: Arc<dyn Metadata>,
        root: Arc<dyn RootOfTrust>,
        target: Option<Arc<dyn RootOfTrust>>,
        opts: StoreOptions,
    ) -> Result<KeyStore, StoreError> {
        let snap = read_with(&*meta, |tx| Snapshot::read(tx, &*meta, None))?
            .ok_or_else(|| StoreError::NotInitialized(meta.describe()))?;
        let (root, roots): (Arc<dyn RootOfTrust>, _) = match target {
            None => (root.clone(), vec![root]),
            Some(t) => (
                Arc::new(crate::RekeyRoots::new(root.clone(), t.clone())),
                vec![root, t],
            ),
        };
        let store = KeyStore {
            meta,
            roots,
            root,
            snap: RwLock::new(Arc::new(snap)),
            last_check: Mutex::new(Instant::now()),
            cache: KeyCache::new(opts.cache_capacity),
            bucket_keys: RwLock::new(None),
            opts,
        };
        let s = store.snapshot();
        store.vmk(&s, s.store.active_master, None)?;
        Ok(store)
    }

    /// The metadata database the store lives in.
    pub fn metadata(&self) -> &Arc<dyn Metadata> {
        &self.meta
    }

    /// The store row as of the last refresh (store id, chunk shift, active versions, epoch).
    pub fn store_record(&self) -> StoreRecord {
        self.snapshot().store.clone()
    }

    /// The key epoch of the store record (bumped by rotation, rewrap and rekey steps), without
    /// copying the record: the per-GET check of the opened-object cache.
    pub fn key_epoch(&self) -> u64 {
        self.snapshot().store.key_epoch
    }

    /// The derived-key cache (for statistics).
    pub fn cache(&self) -> &KeyCache {
        &self.cache
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The snapshot for the data path: refreshed at most once per refresh interval. A failed
    /// check keeps the old snapshot (its keys stay valid: versions are never removed).
    pub(crate) fn current(&self) -> Arc<Snapshot> {
        let due = {
            let mut last = self.last_check.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= self.opts.refresh_interval {
                *last = Instant::now();
                true
            } else {
                false
            }
        };
        if due {
            let _ = self.refresh();
        }
        self.snapshot()
    }

    /// Re-reads the key records if the store row changed (its row version). Returns whether
    /// it did. Snapshots only move forward: a database restored to an older state needs a
    /// fresh [`KeyStore::open`].
    pub fn refresh(&self) -> Result<bool, StoreError> {
        let have = self.snapshot().store.row_version;
        let Some(fresh) = read_with(&*self.meta, |tx| {
            Snapshot::read(tx, &*self.meta, Some(have))
        })?
        else {
            return Ok(false);
        };
        let mut g = self.snap.write().unwrap_or_else(|e| e.into_inner());
        if fresh.store.row_version > g.store.row_version {
            *g = Arc::new(fresh);
        }
        Ok(true)
    }

    /// Runs `f` on the current snapshot; if it names a key version the snapshot does not know
    /// (another process rotated since), refreshes at once and runs it again.
    pub(crate) fn with_fresh<T>(
        &self,
        f: impl Fn(&Snapshot) -> Result<T, KeyError>,
    ) -> Result<T, KeyError> {
        let s = self.current();
        match f(&s) {
            Err(e @ KeyError::UnknownVersion(_)) => {
                self.refresh()?;
                let fresh = self.snapshot();
                if fresh.store.row_version == s.store.row_version {
                    return Err(e);
                }
                f(&fresh)
            }
            other => other,
        }
    }

    /// Installs the service that unwraps the bucket keys of SSE-KMS buckets.
    /// The store keeps a weak reference: the caller keeps the service alive.
    pub fn set_bucket_key_service(&self, service: &Arc<dyn BucketKeyService>) {
        *self.bucket_keys.write().unwrap_or_else(|e| e.into_inner()) =
            Some(Arc::downgrade(service));
    }

    /// A key for a service built on this store (the key management service's audit trail and
    /// import tokens), derived from the RT data key, which the root of trust protects:
    /// `HMAC-SHA256(key = RT, msg = label || 0x00 || u32le(1))` (KEYS.md §3.4). Labels must
    /// not contain a zero byte and must differ from every other label of KEYS.md §3.
    pub fn service_key(&self, label: &[u8]) -> Result<Secret32, KeyError> {
        debug_assert!(!label.contains(&0));
        let s = self.snapshot();
        let rt = self.root.unwrap_master(&s.store.rt_data_key)?;
        let mut out = crate::derive::hmac_sha256(
            rt.expose_secret(),
            &[label, &[0u8], &crate::derive::FORMAT_VERSION.to_le_bytes()],
        );
        let key = Secret32::from_bytes("service key", out);
        zeroize::Zeroize::zeroize(&mut out);
        Ok(key)
    }

    /// The root of trust that protects this store's top-level keys.
    pub fn root_of_trust(&self) -> &Arc<dyn RootOfTrust> {
        &self.root
    }

    /// Active and existing key versions, after a refresh.
    pub fn key_versions(&self) -> KeyVersions {
        let _ = self.refresh();
        let s = self.snapshot();
        KeyVersions {
            root_of_trust: s.store.root_of_trust.clone(),
            active_master: s.store.active_master,
            active_rotation: s.store.active_rotation,
            masters: s.masters.iter().map(|m| (m.version, m.state)).collect(),
            rotation_versions: s.rotation_keys.iter().map(|r| r.version).collect(),
        }
    }

    // ---- key derivation chain --------------------------------------------------------------

    fn cached(
        &self,
        cache: Option<&KeyCache>,
        epoch: u64,
        key: CacheKey,
        make: impl FnOnce() -> Result<Secret32, KeyError>,
    ) -> Result<Secret32, KeyError> {
        if let Some(c) = cache
            && let Some(k) = c.get(epoch, &key)
        {
            return Ok(k);
        }
        let k = make()?;
        if let Some(c) = cache {
            c.insert(epoch, key, &k);
        }
        Ok(k)
    }

    /// VMK(mv) from the root of trust's master key `mv` and RT data key.
    pub(crate) fn vmk(
        &self,
        s: &Snapshot,
        mv: u32,
        cache: Option<&KeyCache>,
    ) -> Result<Secret32, KeyError> {
        self.cached(cache, s.epoch(), CacheKey::Vmk { mv }, || {
            derive_vmk(&*self.root, s.master(mv), &s.store.rt_data_key, mv)
        })
    }

    fn rotation_key(
        &self,
        s: &Snapshot,
        rv: u32,
        cache: Option<&KeyCache>,
    ) -> Result<Secret32, KeyError> {
        let rec = s.rotation_key(rv).ok_or(KeyError::UnknownVersion(rv))?;
        let mv = rec.master_version;
        self.cached(cache, s.epoch(), CacheKey::Rk { rv, mv }, || {
            unwrap_key(&self.vmk(s, mv, cache)?, &rec.wrapped, "rotation key")
        })
    }

    fn namespace_key(
        &self,
        s: &Snapshot,
        ns: &NamespaceRecord,
        cache: Option<&KeyCache>,
    ) -> Result<Secret32, KeyError> {
        let mv = ns.master_version;
        self.cached(cache, s.epoch(), CacheKey::Nk { ns: ns.id, mv }, || {
            unwrap_key(&self.vmk(s, mv, cache)?, &ns.wrapped_key, "namespace key")
        })
    }

    /// The namespace record as stored now (a rotation may have rewrapped its key).
    fn namespace_record(&self, id: u64) -> Result<NamespaceRecord, KeyError> {
        read_with::<_, StoreError>(&*self.meta, |tx| Ok(tx.namespace(By::Id(id))?))?
            .ok_or(KeyError::WrongContext)
    }

    fn bucket_key(
        &self,
        s: &Snapshot,
        b: &BucketKeyRef<'_>,
        cache: Option<&KeyCache>,
    ) -> Result<Secret32, KeyError> {
        if let Some(name) = b.kms_bucket {
            // SSE-KMS: the service checks its key's state on every unwrap; a state change
            // bumps the key epoch, which empties the caches (KMS.md §4).
            let key = CacheKey::Bk {
                ns: b.ns,
                bucket: b.bucket,
                mv: 0,
            };
            return self.cached(cache, s.epoch(), key, || {
                let service = self
                    .bucket_keys
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .and_then(std::sync::Weak::upgrade)
                    .ok_or_else(|| {
                        KeyError::KmsRefused(format!(
                            "bucket {name} is an SSE-KMS bucket and no key management service \
                             is attached to this key store"
                        ))
                    })?;
                service.unwrap_bucket_key(name, b.wrapped)
            });
        }
        let ns = self.namespace_record(b.ns)?;
        let key = CacheKey::Bk {
            ns: b.ns,
            bucket: b.bucket,
            mv: ns.master_version,
        };
        self.cached(cache, s.epoch(), key, || {
            unwrap_key(&self.namespace_key(s, &ns, cache)?, b.wrapped, "bucket key")
        })
    }

    /// VBK for a bucket and rotation version `rv`. Without a cache, every key of the chain is
    /// unwrapped or derived once for this request (a request-local memo, dropped at return).
    pub(crate) fn vbk(
        &self,
        s: &Snapshot,
        b: &BucketKeyRef<'_>,
        rv: u32,
        cache: Option<&KeyCache>,
    ) -> Result<Secret32, KeyError> {
        let local;
        let cache = Some(match cache {
            Some(c) => c,
            None => {
                local = KeyCache::new(8);
                &local
            }
        });
        let key = CacheKey::Vbk {
            ns: b.ns,
            bucket: b.bucket,
            rv,
            mv: s.store.active_master,
        };
        self.cached(cache, s.epoch(), key, || {
            let rk = self.rotation_key(s, rv, cache)?;
            let bk = self.bucket_key(s, b, cache)?;
            Ok(virtual_bucket_key(&rk, b.ns, b.bucket, rv, &bk))
        })
    }

    // ---- keys for new namespaces and buckets -----------------------------------------------

    /// A fresh random namespace key wrapped under the active virtual master key: returns
    /// `(master_version, wrapped)` (40 bytes) for the control plane's namespace row. Refreshes
    /// first; a rotation that switches keys before the row is inserted leaves it under the
    /// previous master, which stays usable and is rewrapped by the next rotation.
    pub fn new_namespace_key(&self) -> Result<(u32, Vec<u8>), StoreError> {
        self.refresh()?;
        let s = self.snapshot();
        let mv = s.store.active_master;
        let nk = Secret32::generate("namespace key")?;
        let vmk = self.vmk(&s, mv, Some(&self.cache))?;
        Ok((mv, wrap_key(&vmk, &nk).to_vec()))
    }

    /// A fresh random bucket key wrapped under namespace `ns`'s key (40 bytes), for the control
    /// plane's bucket row.
    pub fn new_bucket_key(&self, ns: &NamespaceRecord) -> Result<Vec<u8>, StoreError> {
        let nk = self.with_fresh(|s| self.namespace_key(s, ns, Some(&self.cache)))?;
        let bk = Secret32::generate("bucket key")?;
        Ok(wrap_key(&nk, &bk).to_vec())
    }

    /// Every resource-table record as stored (wrapped keys base64, never plaintext), as
    /// pretty JSON (see [`dump_json_of`]).
    pub fn dump_json(&self) -> Result<String, StoreError> {
        dump_json_of(&*self.meta)
    }
}

/// What the derivation chain needs of a bucket: its ids and its wrapped bucket key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BucketKeyRef<'a> {
    pub(crate) ns: u64,
    pub(crate) bucket: u64,
    pub(crate) wrapped: &'a [u8],
    /// SSE-KMS: the bucket's name (the key management service wraps its key).
    pub(crate) kms_bucket: Option<&'a str>,
}

/// Unwraps the bucket keys of SSE-KMS buckets, whose `wrapped_key` is a ciphertext of the key
/// management service (docs/KMS.md §4) rather than an RFC 5649 wrap under the namespace key.
/// `dare-kms` implements it; [`KeyStore::set_bucket_key_service`] installs it.
pub trait BucketKeyService: Send + Sync + fmt::Debug {
    /// The bucket key of bucket `bucket_name` from its stored `wrapped` key. Refusals of the
    /// service (a disabled key, ...) are [`KeyError::KmsRefused`].
    fn unwrap_bucket_key(&self, bucket_name: &str, wrapped: &[u8]) -> Result<Secret32, KeyError>;
}

fn b64(b: &[u8]) -> Value {
    Value::String(STANDARD.encode(b))
}

/// Every resource-table record of `meta` as stored, as pretty JSON — no root of trust needed,
/// nothing is unwrapped:
///
/// ```text
/// {"metadata": "<describe()>", "store": {...}, "master_keys": [...], "rotation_keys": [...],
///  "namespaces": [...], "buckets": [...], "tasks": [...], "sites": [...]}
/// ```
///
/// Byte strings are standard base64 (the store id lower-case hex); times are Unix seconds.
/// It holds wrapped keys, ids, versions, states and times, never a plaintext key.
pub fn dump_json_of(meta: &dyn Metadata) -> Result<String, StoreError> {
    let v = read_with::<_, StoreError>(meta, |tx| {
        let s = tx
            .store()?
            .ok_or_else(|| StoreError::NotInitialized(meta.describe()))?;
        let store = json!({
            "store_id": dare_metadata::records::hex(&s.store_id),
            "chunk_shift": s.chunk_shift,
            "root_of_trust": s.root_of_trust,
            "rt_data_key": b64(&s.rt_data_key),
            "active_master": s.active_master,
            "active_rotation": s.active_rotation,
            "key_epoch": s.key_epoch,
            "created": s.created,
            "row_version": s.row_version,
        });
        let masters: Vec<Value> = tx
            .master_keys()?
            .iter()
            .map(|m| {
                json!({
                    "version": m.version,
                    "state": m.state.as_str(),
                    "wrapped": b64(&m.wrapped),
                    "created": m.created,
                    "retired": m.retired,
                    "root_of_trust": m.root.root_of_trust,
                    "management": m.root.management,
                    "key_id": m.root.key_id,
                    "rt_wrapped": m.root.rt_wrapped.as_deref().map(b64),
                    "deactivated": m.root.deactivated,
                    "deactivation": m.root.deactivation,
                })
            })
            .collect();
        let rotation_keys: Vec<Value> = tx
            .rotation_keys()?
            .iter()
            .map(|r| {
                json!({
                    "version": r.version,
                    "master_version": r.master_version,
                    "wrapped": b64(&r.wrapped),
                    "created": r.created,
                    "row_version": r.row_version,
                })
            })
            .collect();
        let namespaces: Vec<Value> = tx
            .namespaces()?
            .iter()
            .map(|n| {
                json!({
                    "id": n.id,
                    "name": n.name,
                    "encryption": n.encryption,
                    "master_version": n.master_version,
                    "wrapped_key": b64(&n.wrapped_key),
                    "created": n.created,
                    "row_version": n.row_version,
                })
            })
            .collect();
        let buckets: Vec<Value> = tx
            .buckets(None)?
            .iter()
            .map(|b| {
                json!({
                    "id": b.id,
                    "name": b.name,
                    "namespace_id": b.namespace_id,
                    "encryption": b.encryption,
                    "wrapped_key": b.wrapped_key.as_deref().map(b64),
                    "kms_key_id": b.kms_key_id,
                    "created": b.created,
                    "row_version": b.row_version,
                })
            })
            .collect();
        let tasks: Vec<Value> = tx
            .tasks()?
            .iter()
            .map(|t| {
                json!({
                    "id": t.id,
                    "kind": t.kind.as_str(),
                    "state": t.state.as_str(),
                    "step": t.step,
                    "started": t.started,
                    "ended": t.ended,
                    "outcome": t.outcome,
                    "error": t.error,
                    "previous_master": t.previous_master,
                    "new_master": t.new_master,
                    "new_rotation": t.new_rotation,
                    "master_attempts": t.master_attempts,
                    "row_version": t.row_version,
                    "lease_owner": t.lease_owner,
                    "lease_expires": t.lease_expires,
                    "lease_token": t.lease_token,
                    "target_root": t.target_root,
                    "updated": t.updated,
                })
            })
            .collect();
        let mut sites = Vec::new();
        for site in tx.sites()? {
            let keys: Vec<Value> = tx
                .site_keys(&site.fingerprint)?
                .iter()
                .map(|k| {
                    json!({
                        "blob_hash": dare_metadata::records::hex(&k.blob_hash),
                        "wrapped": b64(&k.wrapped),
                    })
                })
                .collect();
            sites.push(json!({
                "name": site.name,
                "fingerprint": dare_metadata::records::hex(&site.fingerprint),
                "public_key": b64(&site.public_key),
                "granted": site.granted,
                "keys": keys,
            }));
        }
        Ok(json!({
            "metadata": meta.describe(),
            "store": store,
            "master_keys": masters,
            "rotation_keys": rotation_keys,
            "namespaces": namespaces,
            "buckets": buckets,
            "tasks": tasks,
            "sites": sites,
        }))
    })?;
    serde_json::to_string_pretty(&v)
        .map_err(|e| StoreError::Corrupt(format!("cannot serialize the key records: {e}")))
}
