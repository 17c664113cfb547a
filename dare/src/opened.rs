//! A bounded cache of opened objects: for a hot object, a GET (and every range GET) reuses
//! the [`ObjectOpener`] of an earlier request — its data key's AES key schedule and GHASH
//! powers, and its verified user metadata — instead of unwrapping the envelope, expanding the
//! key and authenticating the metadata block again (measured: docs/PERFORMANCE.md §10).
//!
//! An entry is used only while everything it was opened from is unchanged:
//! - the object's row, compared whole (an overwrite gives the object a new object id and
//!   row; a rewrap changes its envelope and row version);
//! - the key store's `key_epoch`, which every rotation, rewrap and rekey step bumps: a new
//!   epoch empties the cache, as it empties the derived-key cache;
//! - an optional maximum age, the derived-key cache's (a KMIP root's cache time, KEYS.md
//!   §5.5), so that a root that stops unwrapping stops reads within the same time.
//!
//! Overwrites and deletes also remove their entry at once ([`OpenedCache::forget`]), so no
//! data key outlives its object here. Only objects whose key comes from the bucket's key
//! hierarchy with the derived-key cache on are cached: never SSE-C objects (their key is the
//! caller's to give on every request), never objects in clear (nothing to save). Dropping an
//! entry drops its opener, whose key schedule zeroizes itself (`dare_engine::backend`) and
//! whose decrypted metadata is wiped (`ObjectOpener`'s `Drop`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dare_engine::ObjectOpener;
use dare_metadata::ObjectRecord;

/// Entries kept by default: a server's hot set of objects, each a few hundred bytes of key
/// schedule plus its metadata (entries with more than [`MAX_META`] bytes of metadata are not
/// kept, so the cache holds at most ~`capacity` × 5 KiB).
pub(crate) const DEFAULT_CAPACITY: usize = 1024;

/// Largest stored metadata block an entry may carry.
const MAX_META: usize = 4096;

type Key = (u64, [u8; 16]);

struct Entry {
    row: ObjectRecord,
    opener: Arc<ObjectOpener>,
    tick: u64,
    at: Instant,
}

struct Inner {
    epoch: u64,
    tick: u64,
    map: HashMap<Key, Entry>,
    order: BTreeMap<u64, Key>,
    max_age: Option<Duration>,
}

/// The opened-object cache of one [`crate::Dare`].
pub(crate) struct OpenedCache {
    capacity: usize,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for OpenedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .field("stats", &self.stats())
            .finish()
    }
}

impl OpenedCache {
    /// A cache of at most `capacity` objects (0 disables it).
    pub(crate) fn new(capacity: usize) -> Self {
        OpenedCache {
            capacity,
            inner: Mutex::new(Inner {
                epoch: 0,
                tick: 0,
                map: HashMap::new(),
                order: BTreeMap::new(),
                max_age: None,
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The opener cached for `row` under key epoch `epoch`, if its row is unchanged.
    pub(crate) fn get(&self, epoch: u64, row: &ObjectRecord) -> Option<Arc<ObjectOpener>> {
        if self.capacity == 0 {
            return None;
        }
        let mut g = self.lock();
        g.sync_epoch(epoch);
        g.tick += 1;
        let tick = g.tick;
        let key = (row.bucket_id, row.object_id);
        let Inner {
            map,
            order,
            max_age,
            ..
        } = &mut *g;
        let Some(e) = map.get_mut(&key) else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        if e.row != *row || max_age.is_some_and(|age| e.at.elapsed() >= age) {
            order.remove(&e.tick);
            map.remove(&key);
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        order.remove(&e.tick);
        order.insert(tick, key);
        e.tick = tick;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(e.opener.clone())
    }

    /// Keeps `opener`, opened from `row` under key epoch `epoch`.
    pub(crate) fn insert(&self, epoch: u64, row: &ObjectRecord, opener: Arc<ObjectOpener>) {
        if self.capacity == 0 || row.meta.len() > MAX_META {
            return;
        }
        let mut g = self.lock();
        g.sync_epoch(epoch);
        g.tick += 1;
        let tick = g.tick;
        let key = (row.bucket_id, row.object_id);
        let entry = Entry {
            row: row.clone(),
            opener,
            tick,
            at: Instant::now(),
        };
        if let Some(old) = g.map.insert(key, entry) {
            g.order.remove(&old.tick);
        }
        g.order.insert(tick, key);
        while g.map.len() > self.capacity {
            match g.order.pop_first() {
                Some((_, k)) => {
                    g.map.remove(&k);
                }
                None => break,
            }
        }
    }

    /// Drops the entry of object `object_id` of bucket `bucket_id` (overwritten or deleted).
    pub(crate) fn forget(&self, bucket_id: u64, object_id: &[u8; 16]) {
        let mut g = self.lock();
        if let Some(e) = g.map.remove(&(bucket_id, *object_id)) {
            g.order.remove(&e.tick);
        }
    }

    /// Drops every entry of bucket `bucket_id` (the bucket was deleted).
    pub(crate) fn forget_bucket(&self, bucket_id: u64) {
        let mut g = self.lock();
        let Inner { map, order, .. } = &mut *g;
        map.retain(|k, e| {
            let keep = k.0 != bucket_id;
            if !keep {
                order.remove(&e.tick);
            }
            keep
        });
    }

    /// Entries older than `age` are misses (the derived-key cache's maximum age).
    pub(crate) fn set_max_age(&self, age: Option<Duration>) {
        self.lock().max_age = age;
    }

    /// Objects cached.
    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// (hits, misses) since creation.
    pub(crate) fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

impl Inner {
    fn sync_epoch(&mut self, epoch: u64) {
        if self.epoch != epoch {
            self.map.clear();
            self.order.clear();
            self.epoch = epoch;
        }
    }
}
