//! The ECS-style hierarchy provider: data keys wrapped by a bucket's virtual bucket key.
//!
//! Envelope (kind [`KeyKind::Hierarchy`], docs/KEYS.md §4.2), 60 bytes:
//!
//! ```text
//! ns_id u64 LE || bucket_id u64 LE || rotation_version u32 LE || wrapped_data_key [40]
//! ```
//!
//! New objects are wrapped under the VBK of the store's *active* rotation version; reads use
//! the version the envelope names, so objects written before any number of rotations open.
//! [`HierarchyProvider::rewrap`] moves an envelope to the active version without touching the
//! object's data (the data key stays the same).

use std::fmt;
use std::sync::Arc;

use dare_metadata::BucketRecord;

use crate::cache::KeyCache;
use crate::store::{BucketKeyRef, KeyStore};
use crate::wrap::{WRAPPED_LEN, unwrap_key, wrap_key};
use crate::{DataKey, Envelope, KeyError, KeyKind, KeyProvider, StoreError};

/// Length of a hierarchy envelope.
pub const HIERARCHY_BLOCK_LEN: usize = 8 + 8 + 4 + WRAPPED_LEN;

/// Whether a provider uses the store's derived-key cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Reuse unwrapped bucket/namespace/rotation keys and derived VBKs: one unwrap per object.
    On,
    /// Unwrap and derive the whole chain (root of trust to VBK) on every request, as ECS does.
    Off,
}

/// Data keys for one encrypted bucket under the master/namespace/bucket hierarchy.
pub struct HierarchyProvider {
    store: Arc<KeyStore>,
    ns_id: u64,
    bucket_id: u64,
    bucket: String,
    /// The bucket key wrapped under its namespace key. Bucket keys never change (a rotation
    /// rewraps namespace keys, not bucket keys), so it is read once, with the bucket record.
    wrapped_bk: Vec<u8>,
    /// SSE-KMS: the bucket key is a KMS ciphertext (a CMK rotation rewraps it; the copy read
    /// here stays decryptable, since old CMK versions keep decrypting).
    kms: bool,
    mode: CacheMode,
}

impl fmt::Debug for HierarchyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HierarchyProvider")
            .field("bucket", &self.bucket)
            .field("ns_id", &self.ns_id)
            .field("bucket_id", &self.bucket_id)
            .field("cache", &self.mode)
            .finish_non_exhaustive()
    }
}

impl HierarchyProvider {
    /// A provider for an encrypted bucket ([`StoreError::EncryptionDisabled`] otherwise).
    /// Namespace records, whose wrapped key a rotation rewraps, are read from the metadata
    /// when the derived-key cache misses.
    pub fn new(
        store: Arc<KeyStore>,
        bucket: &BucketRecord,
        mode: CacheMode,
    ) -> Result<Self, StoreError> {
        let wrapped_bk = match (&bucket.wrapped_key, bucket.encryption) {
            (Some(k), true) => k.clone(),
            _ => return Err(StoreError::EncryptionDisabled(bucket.name.clone())),
        };
        Ok(HierarchyProvider {
            store,
            ns_id: bucket.namespace_id,
            bucket_id: bucket.id,
            bucket: bucket.name.clone(),
            wrapped_bk,
            kms: bucket.kms_key_id.is_some(),
            mode,
        })
    }

    /// The namespace id written into envelopes.
    pub fn namespace_id(&self) -> u64 {
        self.ns_id
    }

    /// The bucket id written into envelopes.
    pub fn bucket_id(&self) -> u64 {
        self.bucket_id
    }

    fn cache(&self) -> Option<&KeyCache> {
        match self.mode {
            CacheMode::On => Some(&self.store.cache),
            CacheMode::Off => None,
        }
    }

    fn key_ref(&self) -> BucketKeyRef<'_> {
        BucketKeyRef {
            ns: self.ns_id,
            bucket: self.bucket_id,
            wrapped: &self.wrapped_bk,
            kms_bucket: self.kms.then_some(self.bucket.as_str()),
        }
    }

    /// Parses a hierarchy envelope and checks it belongs to this bucket (before any unwrap).
    fn parse<'e>(&self, env: &'e Envelope) -> Result<HierarchyBlock<'e>, KeyError> {
        if env.kind != KeyKind::Hierarchy {
            return Err(KeyError::WrongKind {
                expected: KeyKind::Hierarchy.to_byte(),
                found: env.kind.to_byte(),
            });
        }
        let b = HierarchyBlock::parse(&env.bytes)?;
        if b.ns_id != self.ns_id || b.bucket_id != self.bucket_id {
            return Err(KeyError::WrongContext);
        }
        Ok(b)
    }

    /// The data key under rotation version `rv`, refreshing at once if `rv` (or a master
    /// version on the way) is unknown: another process may have rotated since.
    fn open_block(&self, b: &HierarchyBlock<'_>) -> Result<DataKey, KeyError> {
        self.store.with_fresh(|s| {
            let vbk = self
                .store
                .vbk(s, &self.key_ref(), b.rotation_version, self.cache())?;
            unwrap_key(&vbk, b.wrapped, "data key").map(DataKey::from_secret)
        })
    }

    /// An envelope of `dk` under the active rotation version.
    fn seal(&self, dk: &DataKey) -> Result<Envelope, KeyError> {
        self.store.with_fresh(|s| {
            let rv = s.store.active_rotation;
            let vbk = self.store.vbk(s, &self.key_ref(), rv, self.cache())?;
            let wrapped = wrap_key(&vbk, dk.as_secret());
            let block = HierarchyBlock {
                ns_id: self.ns_id,
                bucket_id: self.bucket_id,
                rotation_version: rv,
                wrapped: &wrapped,
            };
            Ok(Envelope {
                kind: KeyKind::Hierarchy,
                bytes: block.to_bytes(),
            })
        })
    }

    /// Rewraps without touching data: if `env` (a hierarchy envelope of this bucket) names a
    /// rotation version other than the store's active one, its data key is unwrapped under
    /// that version's VBK and wrapped under the active version's; `Ok(None)` when it is under
    /// the active version already. The data key is zeroized when dropped. Another bucket's
    /// envelope is [`KeyError::WrongContext`].
    ///
    /// "Active" is as of the store's snapshot (refreshed at most once per refresh interval,
    /// and at once when `env` names a newer version); call [`KeyStore::refresh`] before a batch
    /// to move envelopes to a rotation that just completed.
    pub fn rewrap(&self, env: &Envelope) -> Result<Option<Envelope>, KeyError> {
        let b = self.parse(env)?;
        let mut active = self.store.current().store.active_rotation;
        if b.rotation_version > active {
            // Versions only grow: the snapshot is older than the writer of `env`.
            self.store.refresh()?;
            active = self.store.current().store.active_rotation;
        }
        if b.rotation_version == active {
            return Ok(None);
        }
        let dk = self.open_block(&b)?;
        self.seal(&dk).map(Some)
    }
}

/// The fields of a hierarchy envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HierarchyBlock<'a> {
    /// Namespace id.
    pub ns_id: u64,
    /// Bucket id.
    pub bucket_id: u64,
    /// Rotation key version whose VBK wraps the data key.
    pub rotation_version: u32,
    /// The RFC 5649-wrapped data key.
    pub wrapped: &'a [u8],
}

impl<'a> HierarchyBlock<'a> {
    /// Parses the 60-byte layout.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, KeyError> {
        if bytes.len() != HIERARCHY_BLOCK_LEN {
            return Err(KeyError::Malformed("hierarchy key block must be 60 bytes"));
        }
        let mut u64b = [0u8; 8];
        u64b.copy_from_slice(&bytes[0..8]);
        let ns_id = u64::from_le_bytes(u64b);
        u64b.copy_from_slice(&bytes[8..16]);
        let bucket_id = u64::from_le_bytes(u64b);
        let mut u32b = [0u8; 4];
        u32b.copy_from_slice(&bytes[16..20]);
        Ok(HierarchyBlock {
            ns_id,
            bucket_id,
            rotation_version: u32::from_le_bytes(u32b),
            wrapped: &bytes[20..],
        })
    }

    /// Serializes the 60-byte layout.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HIERARCHY_BLOCK_LEN);
        v.extend_from_slice(&self.ns_id.to_le_bytes());
        v.extend_from_slice(&self.bucket_id.to_le_bytes());
        v.extend_from_slice(&self.rotation_version.to_le_bytes());
        v.extend_from_slice(self.wrapped);
        v
    }
}

impl KeyProvider for HierarchyProvider {
    fn new_data_key(&self) -> Result<(DataKey, Envelope), KeyError> {
        let dk = DataKey::generate()?;
        let env = self.seal(&dk)?;
        Ok((dk, env))
    }

    fn open_data_key(&self, env: &Envelope) -> Result<DataKey, KeyError> {
        let b = self.parse(env)?;
        self.open_block(&b)
    }
}
