//! [`KmipRoot`]: each top-level key encrypted inside the key servers by a key of its own that
//! never leaves them, and an offline cache of what they decrypted (docs/KEYS.md §5.5).
//!
//! `wrap_master` creates an AES-256 key in the cluster (KMIP Create, then Activate) and has
//! the cluster encrypt the 32-byte key with it (KMIP Encrypt, AES-256-GCM, a random 96-bit
//! nonce, the blob's header as additional data). The blob records the cluster's name, the
//! key's Unique Identifier, the nonce, the tag and the ciphertext, so `provider_key` and
//! `deactivate` know the key server key behind each master key, and `unwrap_master` is one
//! KMIP Decrypt. Encrypt/Decrypt rather than Get: the key server's key is never sent to dare.
//!
//! Offline cache (MinIO KES's): a decrypted key is kept (zeroed when dropped) with the time
//! the cluster last confirmed it. Within `cache_secs` of that it is used without asking the
//! cluster; after that the cluster is asked again; when every server is unreachable it is
//! still used until `offline_cache_secs` after the last confirmation, and then it is dropped
//! and [`KmipError::OfflineCacheExpired`] is returned. A server that refuses the key (it was
//! revoked or destroyed) drops it at once.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dare_keys::{KeyError, Management, ProviderKey, RootOfTrust, Secret32};
use sha2::{Digest, Sha256};

use crate::blob::{self, Blob};
use crate::config::ClusterConfig;
use crate::message::reason;
use crate::{Cluster, KmipError};

/// The prefix of a KMIP root's description (`store.root_of_trust`): `kmip:cluster=NAME`.
pub const DESCRIPTION_PREFIX: &str = "kmip:cluster=";

/// The most keys the offline cache holds (a store has one per master key version plus the
/// RT data key); the entry confirmed longest ago is dropped first.
const MAX_CACHED: usize = 1024;

/// Whether a store's recorded root of trust (`store.root_of_trust`) is a KMIP cluster, and
/// which.
pub fn cluster_of_description(recorded: &str) -> Option<&str> {
    recorded.strip_prefix(DESCRIPTION_PREFIX)
}

struct Cached {
    key: Secret32,
    confirmed: Instant,
}

/// A root of trust whose keys live in a cluster of KMIP servers. `Send + Sync`.
pub struct KmipRoot {
    cluster: Cluster,
    cache_time: Duration,
    offline_time: Duration,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

impl fmt::Debug for KmipRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmipRoot")
            .field("cluster", &self.cluster)
            .field("cache_time", &self.cache_time)
            .field("offline_time", &self.offline_time)
            .finish_non_exhaustive()
    }
}

fn provider(e: KmipError) -> KeyError {
    KeyError::Provider(e.to_string())
}

impl KmipRoot {
    /// Opens the cluster `cfg` describes: refuses a cluster of fewer than two servers
    /// ([`KmipError::TooFewServers`]) and unusable TLS files. Contacts no server: use
    /// [`KmipRoot::check`] for that.
    pub fn open(cfg: &ClusterConfig) -> Result<KmipRoot, KmipError> {
        Ok(KmipRoot {
            cluster: Cluster::new(cfg)?,
            cache_time: cfg.cache_time(),
            offline_time: cfg.offline_time(),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Asks the cluster what it supports (KMIP Query): succeeds when a server answers.
    /// Returns the server that did.
    pub fn check(&self) -> Result<String, KmipError> {
        self.cluster.query()
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// How long a key is used without asking the cluster again (`cache_secs`): what the
    /// store's derived-key cache should keep keys for, so that a long-running process stops
    /// using keys once the offline-cache time is over (docs/KEYS.md §5.5).
    pub fn cache_time(&self) -> Duration {
        self.cache_time
    }

    /// How long after its last confirmation a key is used while the cluster is unreachable.
    pub fn offline_time(&self) -> Duration {
        self.offline_time
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Cached>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remember(&self, id: [u8; 32], key: &Secret32) {
        let mut c = self.cache();
        if c.len() >= MAX_CACHED && !c.contains_key(&id) {
            let oldest = c.iter().min_by_key(|(_, v)| v.confirmed).map(|(k, _)| *k);
            if let Some(k) = oldest {
                c.remove(&k);
            }
        }
        c.insert(
            id,
            Cached {
                key: key.clone(),
                confirmed: Instant::now(),
            },
        );
    }

    fn decode<'a>(&self, blob: &'a [u8]) -> Result<Blob<'a>, KeyError> {
        let b = blob::decode(blob).map_err(KeyError::Malformed)?;
        if b.cluster != self.cluster.name() {
            return Err(KeyError::Provider(format!(
                "this key was protected by KMIP cluster {:?}, not by {:?}: open the store \
                 with --kmip-cluster {}",
                b.cluster,
                self.cluster.name(),
                b.cluster
            )));
        }
        Ok(b)
    }

    /// Unwraps through the cluster or the offline cache, with the typed error.
    pub fn unwrap_typed(&self, blob: &[u8]) -> Result<Secret32, UnwrapError> {
        let b = self.decode(blob).map_err(UnwrapError::Key)?;
        let id: [u8; 32] = Sha256::digest(blob).into();
        let now = Instant::now();
        let cached = self
            .cache()
            .get(&id)
            .map(|c| (c.key.clone(), now.saturating_duration_since(c.confirmed)));
        if let Some((k, age)) = &cached
            && *age < self.cache_time
        {
            return Ok(k.clone());
        }
        match self
            .cluster
            .decrypt_gcm(b.uid, b.ciphertext, b.nonce, &b.aad(), b.tag)
        {
            Ok(pt) => {
                let arr: [u8; 32] = pt
                    .as_slice()
                    .try_into()
                    .map_err(|_| UnwrapError::Key(KeyError::WrongRootKey))?;
                let k = Secret32::from_bytes("master key", arr);
                drop(pt);
                self.remember(id, &k);
                Ok(k)
            }
            Err(e) if e.is_unreachable() => match cached {
                Some((k, age)) if age < self.offline_time => Ok(k),
                Some(_) => {
                    self.cache().remove(&id);
                    Err(UnwrapError::Kmip(KmipError::OfflineCacheExpired {
                        cluster: self.cluster.name().to_string(),
                        offline_secs: self.offline_time.as_secs(),
                        down: Box::new(e),
                    }))
                }
                None => Err(UnwrapError::Kmip(e)),
            },
            Err(e) => {
                self.cache().remove(&id);
                match e {
                    // GCM's tag did not verify: the blob was altered.
                    KmipError::Server {
                        reason: Some(reason::CRYPTOGRAPHIC_FAILURE),
                        ..
                    } => Err(UnwrapError::Key(KeyError::WrongRootKey)),
                    e => Err(UnwrapError::Kmip(e)),
                }
            }
        }
    }

    /// The key server key of `blob` (its Unique Identifier), if `blob` is a KMIP blob.
    pub fn key_id(blob: &[u8]) -> Option<String> {
        blob::decode(blob).ok().map(|b| b.uid.to_string())
    }

    /// Revokes and destroys the key behind `blob`, with the typed error.
    pub fn deactivate_typed(&self, blob: &[u8]) -> Result<(), UnwrapError> {
        let b = self.decode(blob).map_err(UnwrapError::Key)?;
        // Revoke may refuse a key revoked before (an earlier, interrupted run): Destroy
        // decides.
        match self.cluster.revoke(b.uid) {
            Ok(()) | Err(KmipError::Server { .. }) => {}
            Err(e) => return Err(UnwrapError::Kmip(e)),
        }
        match self.cluster.destroy(b.uid) {
            Ok(())
            | Err(KmipError::Server {
                reason: Some(reason::ITEM_NOT_FOUND),
                ..
            }) => {}
            Err(e) => return Err(UnwrapError::Kmip(e)),
        }
        let id: [u8; 32] = Sha256::digest(blob).into();
        self.cache().remove(&id);
        Ok(())
    }
}

/// Why [`KmipRoot::unwrap_typed`] failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum UnwrapError {
    /// The blob is malformed, of another cluster, or was altered.
    Key(KeyError),
    /// The cluster failed or refused.
    Kmip(KmipError),
}

impl fmt::Display for UnwrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnwrapError::Key(e) => e.fmt(f),
            UnwrapError::Kmip(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for UnwrapError {}

impl From<UnwrapError> for KeyError {
    fn from(e: UnwrapError) -> Self {
        match e {
            UnwrapError::Key(k) => k,
            UnwrapError::Kmip(k) => provider(k),
        }
    }
}

impl RootOfTrust for KmipRoot {
    fn wrap_master(&self, key: &Secret32) -> Result<Vec<u8>, KeyError> {
        let uid = self.cluster.create_aes256().map_err(provider)?;
        self.cluster.activate(&uid).map_err(provider)?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|_| KeyError::Rng)?;
        let aad = blob::aad(self.cluster.name(), &uid);
        let (ct, tag) = self
            .cluster
            .encrypt_gcm(&uid, key.expose_secret(), &nonce, &aad)
            .map_err(provider)?;
        let out = blob::encode(self.cluster.name(), &uid, &nonce, &tag, &ct).map_err(|why| {
            KeyError::Provider(format!("KMIP cluster {:?}: {why}", self.cluster.name()))
        })?;
        self.remember(Sha256::digest(&out).into(), key);
        Ok(out)
    }

    fn unwrap_master(&self, blob: &[u8]) -> Result<Secret32, KeyError> {
        self.unwrap_typed(blob).map_err(KeyError::from)
    }

    fn describe(&self) -> String {
        format!("{DESCRIPTION_PREFIX}{}", self.cluster.name())
    }

    fn provider_key(&self, blob: &[u8]) -> ProviderKey {
        ProviderKey {
            management: Management::External,
            provider: self.describe(),
            key_id: Self::key_id(blob),
        }
    }

    fn deactivate(&self, blob: &[u8]) -> Result<bool, KeyError> {
        self.deactivate_typed(blob).map_err(KeyError::from)?;
        Ok(true)
    }
}
