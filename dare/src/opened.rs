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
//! small two-way table of fingerprints (the doorkeeper of TinyLFU) remembers the objects opened once,
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

/// Sets of the doorkeeper (a power of two), two fingerprints each: 64 KiB in all.
const DOOR_SETS: usize = 4096;

/// The set and the fingerprint (never 0, which marks an empty way) of an object in the
/// doorkeeper. Object ids are random 128-bit values the store draws for every object
/// (`crate::layout::random_id`), so their bits serve as the hash: one half picks the set, the
/// other (mixed with the bucket id) is the fingerprint. Two ways per set, so that two objects
/// of one set read in turn do not keep pushing each other out before their second open.
fn door(key: &Key) -> (usize, u64) {
    let (lo, hi) = key.1.split_at(8);
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let set = (word(hi) as usize) & (DOOR_SETS - 1);
    (set, (word(lo) ^ key.0.rotate_left(29)) | 1)
}

/// The two ways of `key`'s set (allocated on first use) and its fingerprint.
fn door_ways<'t>(seen: &'t mut Vec<u64>, key: &Key) -> (&'t mut [u64], u64) {
    if seen.is_empty() {
        *seen = vec![0; 2 * DOOR_SETS];
    }
    let (set, fp) = door(key);
    (&mut seen[2 * set..2 * set + 2], fp)
}

/// Records fingerprint `fp` in its set: the newest in way 0, the one it displaces in way 1
/// (a fingerprint already there stays where it is).
fn door_record(ways: &mut [u64], fp: u64) {
    if !ways.contains(&fp) {
        ways[1] = ways[0];
        ways[0] = fp;
    }
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
        let (ways, fp) = door_ways(&mut self.seen, key);
        door_record(ways, fp);
    }

    /// Whether an object not in the cache is admitted: yes if its fingerprint is in the
    /// doorkeeper (its way is then freed), otherwise it is recorded there and not admitted.
    fn admit(&mut self, key: &Key) -> bool {
        let (ways, fp) = door_ways(&mut self.seen, key);
        match ways.iter().position(|&w| w == fp) {
            Some(i) => {
                ways[i] = 0;
                true
            }
            None => {
                door_record(ways, fp);
                false
            }
        }
    }

    fn sync_epoch(&mut self, epoch: u64) {
        if self.epoch != epoch {
            // The entries were hot: their re-opens under the new epoch are admitted at once.
            for k in self.map.keys() {
                let (ways, fp) = door_ways(&mut self.seen, k);
                door_record(ways, fp);
            }
            self.map.clear();
            self.order.clear();
            self.epoch = epoch;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{DOOR_SETS, Inner, Key};
    use std::collections::BTreeMap;

    fn inner() -> Inner {
        Inner {
            epoch: 0,
            tick: 0,
            map: Default::default(),
            order: BTreeMap::new(),
            max_age: None,
            seen: Vec::new(),
        }
    }

    /// Objects whose ids pick the same doorkeeper set (same high half), with distinct
    /// fingerprints (different low halves).
    fn same_set(n: u8) -> Vec<Key> {
        (0..n)
            .map(|i| {
                let mut id = [0u8; 16];
                id[0] = i + 1;
                id[8..].copy_from_slice(&(DOOR_SETS as u64 + 5).to_le_bytes());
                (7, id)
            })
            .collect()
    }

    #[test]
    fn two_objects_of_one_set_read_in_turn_are_both_admitted_on_their_second_open() {
        let mut g = inner();
        let k = same_set(2);
        assert!(
            !g.admit(&k[0]) && !g.admit(&k[1]),
            "first opens are not admitted"
        );
        assert!(g.admit(&k[0]) && g.admit(&k[1]), "second opens are");
        // Admission freed their ways: a third object of the set starts afresh.
        let c = same_set(3)[2];
        assert!(!g.admit(&c) && g.admit(&c));
    }

    #[test]
    fn a_remembered_object_is_admitted_at_once() {
        let mut g = inner();
        let k = same_set(1)[0];
        g.remember(&k);
        g.remember(&k); // twice: still one way
        assert!(g.admit(&k));
        assert!(!g.admit(&k), "its way was freed by the admission");
    }
}
