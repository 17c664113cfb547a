//! The ECS-style hierarchy provider: data keys wrapped by a bucket's virtual bucket key.
//!
//! Key block (kind [`KeyKind::Hierarchy`], docs/KEYS.md §4.2), 60 bytes:
//!
//! ```text
//! ns_id u64 LE || bucket_id u64 LE || rotation_version u32 LE || wrapped_data_key [40]
//! ```
//!
//! New objects are wrapped under the VBK of the store's *active* rotation version; reads use
//! the version the block names, so objects written before any number of rotations open.

use std::fmt;
use std::sync::Arc;

use crate::store::KeyStore;
use crate::wrap::{WRAPPED_LEN, unwrap_key, wrap_key};
use crate::{DataKey, Envelope, KeyError, KeyKind, KeyProvider, StoreError};

/// Length of a hierarchy key block.
pub const HIERARCHY_BLOCK_LEN: usize = 8 + 8 + 4 + WRAPPED_LEN;

/// Whether a provider uses the store's derived-key cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Reuse unwrapped bucket/namespace/rotation keys and derived VBKs: one unwrap per object.
    On,
    /// Unwrap and derive the whole chain (root of trust to VBK) on every request, as ECS does.
    Off,
}

/// Data keys for one bucket under the master/namespace/bucket hierarchy.
pub struct HierarchyProvider {
    store: Arc<KeyStore>,
    ns_id: u64,
    bucket_id: u64,
    bucket: String,
    mode: CacheMode,
}

impl fmt::Debug for HierarchyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HierarchyProvider")
            .field("bucket", &self.bucket)
            .field("ns_id", &self.ns_id)
            .field("bucket_id", &self.bucket_id)
            .field("cache", &self.mode)
            .finish()
    }
}

impl HierarchyProvider {
    /// A provider for the bucket called `bucket`. Fails with [`StoreError::NotFound`] for an
    /// unknown bucket and [`StoreError::EncryptionDisabled`] for a bucket without encryption.
    pub fn new(store: Arc<KeyStore>, bucket: &str, mode: CacheMode) -> Result<Self, StoreError> {
        let b = store.bucket(bucket)?;
        if !b.encryption {
            return Err(StoreError::EncryptionDisabled(bucket.into()));
        }
        Ok(HierarchyProvider {
            store,
            ns_id: b.namespace_id,
            bucket_id: b.id,
            bucket: b.name,
            mode,
        })
    }

    /// The namespace id written into key blocks.
    pub fn namespace_id(&self) -> u64 {
        self.ns_id
    }

    /// The bucket id written into key blocks.
    pub fn bucket_id(&self) -> u64 {
        self.bucket_id
    }

    fn cache(&self) -> Option<&crate::cache::KeyCache> {
        match self.mode {
            CacheMode::On => Some(&self.store.cache),
            CacheMode::Off => None,
        }
    }
}

/// The fields of a hierarchy key block.
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
        let snap = self.store.current();
        let t = &snap.table;
        let rv = t.active_rotation;
        let vbk = self
            .store
            .vbk(t, self.ns_id, self.bucket_id, rv, self.cache())?;
        let dk = DataKey::generate()?;
        let wrapped = wrap_key(&vbk, dk.as_secret());
        let block = HierarchyBlock {
            ns_id: self.ns_id,
            bucket_id: self.bucket_id,
            rotation_version: rv,
            wrapped: &wrapped,
        };
        Ok((
            dk,
            Envelope {
                kind: KeyKind::Hierarchy,
                bytes: block.to_bytes(),
            },
        ))
    }

    fn open_data_key(&self, block: &Envelope) -> Result<DataKey, KeyError> {
        if block.kind != KeyKind::Hierarchy {
            return Err(KeyError::WrongKind {
                expected: KeyKind::Hierarchy.to_byte(),
                found: block.kind.to_byte(),
            });
        }
        let b = HierarchyBlock::parse(&block.bytes)?;
        if b.ns_id != self.ns_id || b.bucket_id != self.bucket_id {
            return Err(KeyError::WrongContext);
        }
        let mut snap = self.store.current();
        if snap.table.rotation_key(b.rotation_version).is_none() {
            // Possibly written by another process after a rotation we have not seen yet.
            self.store.refresh()?;
            snap = self.store.current();
            if snap.table.rotation_key(b.rotation_version).is_none() {
                return Err(KeyError::UnknownVersion(b.rotation_version));
            }
        }
        let vbk = self.store.vbk(
            &snap.table,
            b.ns_id,
            b.bucket_id,
            b.rotation_version,
            self.cache(),
        )?;
        unwrap_key(&vbk, b.wrapped, "data key").map(DataKey::from_secret)
    }
}
