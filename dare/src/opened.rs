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
//! **Admission.** An object is kept on its *second* open within a while, not its first: a
//! small table of fingerprints (the doorkeeper of TinyLFU) remembers the objects opened once,
//! and only an object found there is inserted. A workload of cold GETs, each object read once,
//! then pays nothing here; inserting every object and evicting the oldest cost ~0.7 µs of the
//! ~6.5 µs of extra CPU of a 4 KiB GET (`cargo bench -p dare-benches --bench getpath` under
//! `perf`, docs/PERFORMANCE.md §14.2). A hot object is opened twice before it is cached.
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

/// Slots of the doorkeeper (a power of two; 64 KiB of fingerprints).
const DOOR_SLOTS: usize = 8192;

/// The slot and the fingerprint (never 0, which marks an empty slot) of an object in the
/// doorkeeper. Object ids are random 128-bit values the store draws for every object
/// (`crate::layout::random_id`), so their bits serve as the hash: one half picks the slot, the
/// other (mixed with the bucket id) is the fingerprint. A collision only admits an object one
/// open early.
fn door(key: &Key) -> (usize, u64) {
    let (lo, hi) = key.1.split_at(8);
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let slot = (word(hi) as usize) & (DOOR_SLOTS - 1);
    (slot, (word(lo) ^ key.0.rotate_left(29)) | 1)
}

struct Entry {
    row: ObjectRecord,
    opener: Arc<ObjectOpener>,
    tick: u64,
    at: Instant,
}

struct Inner {
    epoch: u64,
    tick: u64,
    /// Keyed by random object ids, hashed with foldhash (seeded per process): SipHash, the
    /// standard map's, cost ~0.15 µs per lookup, and every GET of an encrypted object looks up.
    map: HashMap<Key, Entry, foldhash::fast::RandomState>,
    order: BTreeMap<u64, Key>,
    max_age: Option<Duration>,
    /// Fingerprints of objects opened once and not (yet) admitted; empty until first use.
    seen: Vec<u64>,
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
                map: HashMap::default(),
                order: BTreeMap::new(),
                max_age: None,
                seen: Vec::new(),
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
            // Hot until now: its re-open is admitted at once.
            g.remember(&key);
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        order.remove(&e.tick);
        order.insert(tick, key);
        e.tick = tick;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(e.opener.clone())
    }

    /// Keeps `opener`, opened from `row` under key epoch `epoch`, if the object was opened
    /// before (see the module docs on admission) or is cached already.
    pub(crate) fn insert(&self, epoch: u64, row: &ObjectRecord, opener: Arc<ObjectOpener>) {
        if self.capacity == 0 || row.meta.len() > MAX_META {
            return;
        }
        let mut g = self.lock();
        g.sync_epoch(epoch);
        let key = (row.bucket_id, row.object_id);
        if !g.map.contains_key(&key) && !g.admit(&key) {
            return;
        }
        g.tick += 1;
        let tick = g.tick;
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
    /// Records `key` as opened once, so its next open is admitted.
    fn remember(&mut self, key: &Key) {
        if self.seen.is_empty() {
            self.seen = vec![0; DOOR_SLOTS];
        }
        let (slot, fp) = door(key);
        self.seen[slot] = fp;
    }

    /// Whether an object not in the cache is admitted: yes if its fingerprint is in the
    /// doorkeeper (the slot is then freed), otherwise it is recorded there and not admitted.
    fn admit(&mut self, key: &Key) -> bool {
        if self.seen.is_empty() {
            self.seen = vec![0; DOOR_SLOTS];
        }
        let (slot, fp) = door(key);
        if self.seen[slot] == fp {
            self.seen[slot] = 0;
            true
        } else {
            self.seen[slot] = fp;
            false
        }
    }

    fn sync_epoch(&mut self, epoch: u64) {
        if self.epoch != epoch {
            // The entries were hot: their re-opens under the new epoch are admitted at once.
            let keys: Vec<Key> = self.map.keys().copied().collect();
            for k in &keys {
                self.remember(k);
            }
            self.map.clear();
            self.order.clear();
            self.epoch = epoch;
        }
    }
}
