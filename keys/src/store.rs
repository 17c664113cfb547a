//! The key store: ECS's "resource table" (white paper §2.1) in one crash-safe file.
//!
//! It holds the master key versions and the RT data key (as root-of-trust blobs), the rotation
//! key versions and namespace keys (wrapped by a virtual master key), the bucket keys (wrapped
//! by their namespace key), the rotation tasks and the id counters. The file format and every
//! record field are specified in docs/KEYS.md §6.
//!
//! Concurrency: the CLI is multi-process (a background `dare keys rotate` next to `dare put`
//! and `dare get`). Readers load the file without a lock; the file is only ever replaced
//! atomically. Writers take an exclusive `flock`, re-read the file, apply their change and
//! replace it, so no update is lost. Each `KeyStore` keeps an in-memory snapshot and re-reads
//! the file when it changed (checked at most once per [`StoreOptions::refresh_interval`]).

mod file;
pub(crate) mod table;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cache::{CacheKey, KeyCache};
use crate::derive::{virtual_bucket_key, virtual_master_key};
use crate::root::RootOfTrust;
use crate::wrap::{unwrap_key, wrap_key};
use crate::{KeyError, Secret32, StoreError};
use file::FileStamp;
use table::{
    B64, BucketRecord, MasterKeyRecord, NamespaceRecord, RotationKeyRecord, RtKeyRecord, Table,
};

pub(crate) use file::try_lock_rotation;
pub use file::{LOCK_FILE, ROTATION_LOCK_FILE, STORE_FILE, STORE_FORMAT_VERSION};
pub use table::{MasterState, TaskState};

/// Tuning of a [`KeyStore`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Maximum number of keys in the derived-key cache (0 disables caching altogether).
    pub cache_capacity: usize,
    /// How often the hot path checks whether another process replaced the store file.
    /// `Duration::ZERO` checks on every call (one `stat`).
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

/// A namespace as the CLI sees it (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Numeric id, assigned at creation, never reused.
    pub id: u64,
    /// Unique name.
    pub name: String,
    /// Whether buckets in it are encrypted (fixed at creation).
    pub encryption: bool,
    /// Creation time, Unix seconds.
    pub created: u64,
}

/// A bucket as the CLI sees it (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Numeric id, assigned at creation, never reused.
    pub id: u64,
    /// Unique name (across all namespaces, as S3 bucket names).
    pub name: String,
    /// Id of its namespace.
    pub namespace_id: u64,
    /// Name of its namespace.
    pub namespace: String,
    /// Whether objects in it are encrypted (fixed at creation).
    pub encryption: bool,
    /// Creation time, Unix seconds.
    pub created: u64,
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

pub(crate) struct Snapshot {
    pub(crate) table: Table,
    stamp: FileStamp,
}

/// An open key store. Share it as `Arc<KeyStore>`; providers hold a clone.
pub struct KeyStore {
    pub(crate) dir: PathBuf,
    pub(crate) root: Arc<dyn RootOfTrust>,
    snap: RwLock<Arc<Snapshot>>,
    last_check: Mutex<Instant>,
    opts: StoreOptions,
    pub(crate) cache: KeyCache,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("dir", &self.dir)
            .field("root", &self.root)
            .field("generation", &self.snapshot().table.generation)
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

fn validate_name(what: &str, name: &str) -> Result<(), StoreError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 255 || !name.chars().all(ok_char) {
        return Err(StoreError::InvalidName(format!(
            "{what} name {name:?} must be 1-255 characters of A-Z a-z 0-9 . _ -"
        )));
    }
    Ok(())
}

/// The path of the store file inside a store directory.
pub fn store_file(dir: &Path) -> PathBuf {
    dir.join(STORE_FILE)
}

/// Whether `dir` holds a key store file.
pub fn is_initialized(dir: &Path) -> bool {
    store_file(dir).exists()
}

impl KeyStore {
    /// Creates a new key store in `dir` (created if missing): master key version 1, the RT
    /// data key, and rotation key version 1. Fails if a store exists there already.
    pub fn init(
        dir: &Path,
        root: Arc<dyn RootOfTrust>,
        opts: StoreOptions,
    ) -> Result<KeyStore, StoreError> {
        fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            op: "create directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let _lock = file::lock_writer(dir)?;
        if is_initialized(dir) {
            return Err(StoreError::AlreadyInitialized(dir.to_path_buf()));
        }
        let t = now();
        let mk = Secret32::generate("master key")?;
        let rt = Secret32::generate("RT data key")?;
        let rk = Secret32::generate("rotation key")?;
        let vmk = virtual_master_key(&mk, 1, &rt);
        let table = Table {
            generation: 1,
            key_epoch: 1,
            root_of_trust: root.describe(),
            created: t,
            rt_data_key: RtKeyRecord {
                wrapped: B64(root.wrap_master(&rt)?),
                created: t,
            },
            active_master: 1,
            active_rotation: 1,
            masters: vec![MasterKeyRecord {
                version: 1,
                state: MasterState::Active,
                wrapped: B64(root.wrap_master(&mk)?),
                created: t,
                retired: None,
            }],
            rotation_keys: vec![RotationKeyRecord {
                version: 1,
                master_version: 1,
                wrapped: B64(wrap_key(&vmk, &rk).to_vec()),
                created: t,
            }],
            namespaces: Vec::new(),
            buckets: Vec::new(),
            tasks: Vec::new(),
            next_namespace_id: 1,
            next_bucket_id: 1,
            next_task_id: 1,
        };
        table.validate()?;
        let stamp = file::write(dir, &table)?;
        Ok(Self::with_snapshot(dir, root, opts, table, stamp))
    }

    /// Opens the key store in `dir`. Checks that `root` unwraps the active master key and
    /// the RT data key, so a wrong root key file or passphrase fails here with
    /// [`KeyError::WrongRootKey`] (inside [`StoreError::Key`]).
    pub fn open(
        dir: &Path,
        root: Arc<dyn RootOfTrust>,
        opts: StoreOptions,
    ) -> Result<KeyStore, StoreError> {
        let (table, stamp) = file::read(dir)?;
        let store = Self::with_snapshot(dir, root, opts, table, stamp);
        let snap = store.snapshot();
        store.vmk(&snap.table, snap.table.active_master, None)?;
        Ok(store)
    }

    fn with_snapshot(
        dir: &Path,
        root: Arc<dyn RootOfTrust>,
        opts: StoreOptions,
        table: Table,
        stamp: FileStamp,
    ) -> KeyStore {
        KeyStore {
            dir: dir.to_path_buf(),
            root,
            snap: RwLock::new(Arc::new(Snapshot { table, stamp })),
            last_check: Mutex::new(Instant::now()),
            cache: KeyCache::new(opts.cache_capacity),
            opts,
        }
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The derived-key cache (for statistics).
    pub fn cache(&self) -> &KeyCache {
        &self.cache
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The snapshot for the data path: re-reads the file if another process replaced it,
    /// checking at most once per refresh interval. A failed check keeps the old snapshot
    /// (its keys stay valid: versions are never removed).
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

    fn install(&self, table: Table, stamp: FileStamp) {
        let mut g = self.snap.write().unwrap_or_else(|e| e.into_inner());
        if table.generation >= g.table.generation {
            *g = Arc::new(Snapshot { table, stamp });
        }
    }

    /// Re-reads the store file if it changed on disk. Returns whether it did.
    pub fn refresh(&self) -> Result<bool, StoreError> {
        let st = file::stamp(&store_file(&self.dir))?;
        if st == self.snapshot().stamp {
            return Ok(false);
        }
        let (table, st) = file::read(&self.dir)?;
        self.install(table, st);
        Ok(true)
    }

    /// Read-modify-write under the writer lock, on the table as it is on disk now.
    pub(crate) fn update<T>(
        &self,
        f: impl FnOnce(&mut Table) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _lock = file::lock_writer(&self.dir)?;
        let (mut table, _) = file::read(&self.dir)?;
        let out = f(&mut table)?;
        table.generation = table
            .generation
            .checked_add(1)
            .ok_or(StoreError::Corrupt("generation overflow".into()))?;
        table.validate()?;
        let stamp = file::write(&self.dir, &table)?;
        self.install(table, stamp);
        Ok(out)
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
        t: &Table,
        mv: u32,
        cache: Option<&KeyCache>,
    ) -> Result<Secret32, KeyError> {
        self.cached(cache, t.key_epoch, CacheKey::Vmk { mv }, || {
            let rec = t.master(mv).ok_or(KeyError::UnknownVersion(mv))?;
            let mk = self.root.unwrap_master(&rec.wrapped.0)?;
            let rt = self.root.unwrap_master(&t.rt_data_key.wrapped.0)?;
            Ok(virtual_master_key(&mk, mv, &rt))
        })
    }

    pub(crate) fn rotation_key(
        &self,
        t: &Table,
        rv: u32,
        cache: Option<&KeyCache>,
    ) -> Result<Secret32, KeyError> {
        let rec = t.rotation_key(rv).ok_or(KeyError::UnknownVersion(rv))?;
        let mv = rec.master_version;
        self.cached(cache, t.key_epoch, CacheKey::Rk { rv, mv }, || {
            unwrap_key(&self.vmk(t, mv, cache)?, &rec.wrapped.0, "rotation key")
        })
    }

    pub(crate) fn namespace_key(
        &self,
        t: &Table,
        ns: u64,
        cache: Option<&KeyCache>,
    ) -> Result<Secret32, KeyError> {
        let rec = t.namespace_by_id(ns).ok_or(KeyError::WrongContext)?;
        let mv = rec.master_version;
        self.cached(cache, t.key_epoch, CacheKey::Nk { ns, mv }, || {
            unwrap_key(
                &self.vmk(t, mv, cache)?,
                &rec.wrapped_key.0,
                "namespace key",
            )
        })
    }

    fn bucket_key(
        &self,
        t: &Table,
        ns: u64,
        bucket: u64,
        cache: Option<&KeyCache>,
    ) -> Result<Secret32, KeyError> {
        let rec = t.namespace_by_id(ns).ok_or(KeyError::WrongContext)?;
        let b = t
            .buckets
            .iter()
            .find(|b| b.id == bucket && b.namespace_id == ns)
            .ok_or(KeyError::WrongContext)?;
        let wrapped = b
            .wrapped_key
            .as_ref()
            .ok_or(KeyError::Provider("bucket is not encrypted".into()))?;
        self.cached(
            cache,
            t.key_epoch,
            CacheKey::Bk {
                ns,
                bucket,
                mv: rec.master_version,
            },
            || unwrap_key(&self.namespace_key(t, ns, cache)?, &wrapped.0, "bucket key"),
        )
    }

    /// VBK for (ns, bucket, rotation version rv). Without a cache, every key of the chain is
    /// unwrapped or derived once for this request (a request-local memo, dropped at return).
    pub(crate) fn vbk(
        &self,
        t: &Table,
        ns: u64,
        bucket: u64,
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
            ns,
            bucket,
            rv,
            mv: t.active_master,
        };
        self.cached(cache, t.key_epoch, key, || {
            let rk = self.rotation_key(t, rv, cache)?;
            let bk = self.bucket_key(t, ns, bucket, cache)?;
            Ok(virtual_bucket_key(&rk, ns, bucket, rv, &bk))
        })
    }

    // ---- namespaces and buckets ------------------------------------------------------------

    /// Creates a namespace with its own namespace key (wrapped by the active VMK).
    /// `encryption` is fixed for the namespace's life; there is no API to change it.
    pub fn create_namespace(&self, name: &str, encryption: bool) -> Result<Namespace, StoreError> {
        validate_name("namespace", name)?;
        let nk = Secret32::generate("namespace key")?;
        self.update(|t| {
            if t.namespaces.iter().any(|n| n.name == name) {
                return Err(StoreError::AlreadyExists {
                    what: "namespace",
                    name: name.into(),
                });
            }
            let mv = t.active_master;
            let wrapped = wrap_key(&self.vmk(t, mv, None)?, &nk);
            let id = t.next_namespace_id;
            t.next_namespace_id = id
                .checked_add(1)
                .ok_or(StoreError::Corrupt("namespace id overflow".into()))?;
            let rec = NamespaceRecord {
                id,
                name: name.into(),
                encryption,
                master_version: mv,
                wrapped_key: B64(wrapped.to_vec()),
                created: now(),
            };
            let view = ns_view(&rec);
            t.namespaces.push(rec);
            Ok(view)
        })
    }

    /// Creates a bucket in `namespace`. `encryption: None` inherits the namespace's setting.
    /// An encrypted namespace refuses unencrypted buckets; an unencrypted namespace may hold
    /// encrypted ones. Fixed for the bucket's life.
    pub fn create_bucket(
        &self,
        name: &str,
        namespace: &str,
        encryption: Option<bool>,
    ) -> Result<Bucket, StoreError> {
        validate_name("bucket", name)?;
        let bk = Secret32::generate("bucket key")?;
        self.update(|t| {
            let ns = t
                .namespaces
                .iter()
                .find(|n| n.name == namespace)
                .ok_or_else(|| StoreError::NotFound {
                    what: "namespace",
                    name: namespace.into(),
                })?;
            if t.buckets.iter().any(|b| b.name == name) {
                return Err(StoreError::AlreadyExists {
                    what: "bucket",
                    name: name.into(),
                });
            }
            let enc = encryption.unwrap_or(ns.encryption);
            if ns.encryption && !enc {
                return Err(StoreError::EncryptionPolicy(format!(
                    "namespace {namespace:?} is encrypted, so every bucket in it is"
                )));
            }
            let wrapped_key = if enc {
                let nk = self.namespace_key(t, ns.id, None)?;
                Some(B64(wrap_key(&nk, &bk).to_vec()))
            } else {
                None
            };
            let id = t.next_bucket_id;
            t.next_bucket_id = id
                .checked_add(1)
                .ok_or(StoreError::Corrupt("bucket id overflow".into()))?;
            let rec = BucketRecord {
                id,
                name: name.into(),
                namespace_id: ns.id,
                encryption: enc,
                wrapped_key,
                created: now(),
            };
            let view = bucket_view(t, &rec);
            t.buckets.push(rec);
            Ok(view)
        })
    }

    /// The namespace called `name`.
    pub fn namespace(&self, name: &str) -> Result<Namespace, StoreError> {
        let _ = self.refresh();
        let s = self.snapshot();
        s.table
            .namespaces
            .iter()
            .find(|n| n.name == name)
            .map(ns_view)
            .ok_or_else(|| StoreError::NotFound {
                what: "namespace",
                name: name.into(),
            })
    }

    /// Every namespace, in creation order.
    pub fn namespaces(&self) -> Vec<Namespace> {
        let _ = self.refresh();
        self.snapshot()
            .table
            .namespaces
            .iter()
            .map(ns_view)
            .collect()
    }

    /// The bucket called `name`.
    pub fn bucket(&self, name: &str) -> Result<Bucket, StoreError> {
        let _ = self.refresh();
        let s = self.snapshot();
        s.table
            .buckets
            .iter()
            .find(|b| b.name == name)
            .map(|b| bucket_view(&s.table, b))
            .ok_or_else(|| StoreError::NotFound {
                what: "bucket",
                name: name.into(),
            })
    }

    /// Every bucket (of one namespace, if given), in creation order.
    pub fn buckets(&self, namespace: Option<&str>) -> Result<Vec<Bucket>, StoreError> {
        let ns_id = match namespace {
            Some(n) => Some(self.namespace(n)?.id),
            None => {
                let _ = self.refresh();
                None
            }
        };
        let s = self.snapshot();
        Ok(s.table
            .buckets
            .iter()
            .filter(|b| ns_id.is_none_or(|id| b.namespace_id == id))
            .map(|b| bucket_view(&s.table, b))
            .collect())
    }

    /// Active and existing key versions.
    pub fn key_versions(&self) -> KeyVersions {
        let _ = self.refresh();
        let s = self.snapshot();
        let t = &s.table;
        KeyVersions {
            root_of_trust: t.root_of_trust.clone(),
            active_master: t.active_master,
            active_rotation: t.active_rotation,
            masters: t.masters.iter().map(|m| (m.version, m.state)).collect(),
            rotation_versions: t.rotation_keys.iter().map(|r| r.version).collect(),
        }
    }

    /// Every stored record exactly as stored (wrapped keys in base64, never plaintext), as
    /// pretty JSON: `{"store_file", "format_version", "body_sha256", "table"}` (KEYS.md §7).
    pub fn dump_json(&self) -> Result<String, StoreError> {
        dump_json_of(&self.dir)
    }
}

/// [`KeyStore::dump_json`] without opening the store (no root of trust needed: nothing is
/// unwrapped).
pub fn dump_json_of(dir: &Path) -> Result<String, StoreError> {
    let (table, _) = file::read(dir)?;
    let bytes = file::encode(&table)?;
    let body_sha256: String = bytes[20..52].iter().map(|b| format!("{b:02x}")).collect();
    let v = serde_json::json!({
        "store_file": store_file(dir).display().to_string(),
        "format_version": STORE_FORMAT_VERSION,
        "body_sha256": body_sha256,
        "table": table,
    });
    serde_json::to_string_pretty(&v)
        .map_err(|e| StoreError::Corrupt(format!("cannot serialize table: {e}")))
}

fn ns_view(n: &NamespaceRecord) -> Namespace {
    Namespace {
        id: n.id,
        name: n.name.clone(),
        encryption: n.encryption,
        created: n.created,
    }
}

fn bucket_view(t: &Table, b: &BucketRecord) -> Bucket {
    Bucket {
        id: b.id,
        name: b.name.clone(),
        namespace_id: b.namespace_id,
        namespace: t
            .namespace_by_id(b.namespace_id)
            .map(|n| n.name.clone())
            .unwrap_or_default(),
        encryption: b.encryption,
        created: b.created,
    }
}

/// Parses store file bytes; a typed error for anything that is not a valid store.
#[doc(hidden)]
pub fn fuzz_load(bytes: &[u8]) -> Result<(), StoreError> {
    file::decode(bytes).map(|_| ())
}

/// Decode, and if valid check that encoding and decoding again gives the same table.
pub(crate) fn fuzz_roundtrip(bytes: &[u8]) {
    if let Ok(t) = file::decode(bytes) {
        let again = file::encode(&t).and_then(|b| file::decode(&b));
        assert!(
            matches!(again, Ok(ref t2) if *t2 == t),
            "valid store did not round-trip"
        );
    }
}
