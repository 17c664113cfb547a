//! Bounded LRU cache of unwrapped and derived key-encryption keys.
//!
//! ECS caches the rotation key and the bucket key and derives the virtual bucket key per
//! request (white paper §3, ~10% S3 TPS cost). dare also caches the derived VBK, so with the
//! cache on the per-object cost is one RFC 5649 (un)wrap of the data key.
//!
//! Entries are [`Secret32`], so evicted or cleared entries zeroize when dropped. The cache
//! carries the store's `key_epoch`; a lookup or insert under another epoch (a rotation switched
//! or rewrapped keys) empties it first.
//!
//! An optional maximum age ([`KeyCache::set_max_age`]) makes an entry older than it a miss, so
//! the key is derived again through the root of trust: a root that stops unwrapping (a KMIP
//! cluster down past its offline-cache time, docs/KEYS.md §5.5) stops a long-running process
//! within that age.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::Secret32;

/// What a cached key is, with everything its value depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CacheKey {
    /// Virtual master key of master version `mv`.
    Vmk { mv: u32 },
    /// Rotation key `rv`, as wrapped under VMK(`mv`).
    Rk { rv: u32, mv: u32 },
    /// Namespace key, as wrapped under VMK(`mv`).
    Nk { ns: u64, mv: u32 },
    /// Bucket key, reached through the namespace key wrapped under VMK(`mv`).
    Bk { ns: u64, bucket: u64, mv: u32 },
    /// Virtual bucket key for rotation version `rv`, with `mv` the active master version.
    Vbk {
        ns: u64,
        bucket: u64,
        rv: u32,
        mv: u32,
    },
}

struct Inner {
    epoch: u64,
    tick: u64,
    /// Each key with its LRU tick and when it was inserted.
    map: HashMap<CacheKey, (Secret32, u64, Instant)>,
    order: BTreeMap<u64, CacheKey>,
    max_age: Option<Duration>,
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

/// The derived-key cache. Thread-safe; one per [`crate::KeyStore`].
pub struct KeyCache {
    capacity: usize,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .field("hits", &self.hits.load(Ordering::Relaxed))
            .field("misses", &self.misses.load(Ordering::Relaxed))
            .finish()
    }
}

impl KeyCache {
    /// A cache holding at most `capacity` keys (0 disables it).
    pub fn new(capacity: usize) -> Self {
        KeyCache {
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

    pub(crate) fn get(&self, epoch: u64, key: &CacheKey) -> Option<Secret32> {
        if self.capacity == 0 {
            return None;
        }
        let mut g = self.lock();
        g.sync_epoch(epoch);
        g.tick += 1;
        let tick = g.tick;
        let Inner {
            map,
            order,
            max_age,
            ..
        } = &mut *g;
        if let (Some(age), Some((_, t, at))) = (*max_age, map.get(key))
            && at.elapsed() >= age
        {
            order.remove(t);
            map.remove(key);
        }
        match map.get_mut(key) {
            Some((secret, t, _)) => {
                order.remove(t);
                order.insert(tick, *key);
                *t = tick;
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(secret.clone())
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub(crate) fn insert(&self, epoch: u64, key: CacheKey, value: &Secret32) {
        if self.capacity == 0 {
            return;
        }
        let mut g = self.lock();
        g.sync_epoch(epoch);
        g.tick += 1;
        let tick = g.tick;
        if let Some((_, old, _)) = g.map.insert(key, (value.clone(), tick, Instant::now())) {
            g.order.remove(&old);
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

    /// Sets how long an entry is used after it was inserted (`None`: until evicted or the
    /// epoch changes, the default). Entries already older become misses at once.
    pub fn set_max_age(&self, age: Option<Duration>) {
        self.lock().max_age = age;
    }

    /// Drops (and zeroizes) every entry.
    pub fn clear(&self) {
        let mut g = self.lock();
        g.map.clear();
        g.order.clear();
    }

    /// Number of cached keys.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (hits, misses) since creation.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(b: u8) -> Secret32 {
        Secret32::from_bytes("t", [b; 32])
    }

    #[test]
    fn lru_eviction_and_epoch() {
        let c = KeyCache::new(2);
        let (a, b, d) = (
            CacheKey::Vmk { mv: 1 },
            CacheKey::Vmk { mv: 2 },
            CacheKey::Vmk { mv: 3 },
        );
        c.insert(0, a, &s(1));
        c.insert(0, b, &s(2));
        assert_eq!(c.get(0, &a), Some(s(1))); // a is now most recent
        c.insert(0, d, &s(3)); // evicts b
        assert_eq!(c.get(0, &b), None);
        assert_eq!(c.get(0, &a), Some(s(1)));
        assert_eq!(c.get(0, &d), Some(s(3)));
        assert_eq!(c.len(), 2);
        // A new epoch empties the cache.
        assert_eq!(c.get(1, &a), None);
        assert!(c.is_empty());
        let off = KeyCache::new(0);
        off.insert(0, a, &s(1));
        assert_eq!(off.get(0, &a), None);
        assert!(!format!("{c:?}").contains("01"));
    }

    #[test]
    fn max_age_expires_entries() {
        let c = KeyCache::new(4);
        let a = CacheKey::Vmk { mv: 1 };
        c.insert(0, a, &s(1));
        c.set_max_age(Some(Duration::from_secs(3600)));
        assert_eq!(c.get(0, &a), Some(s(1)));
        c.set_max_age(Some(Duration::ZERO));
        assert_eq!(c.get(0, &a), None);
        assert!(c.is_empty());
    }
}
