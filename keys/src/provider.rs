//! The interface between the data path and key management.

use crate::{DataKey, KeyError};

/// Which key management produced an object's key block. Stored as one byte in the object
/// header (docs/FORMAT.md); the meaning of the block's bytes per kind is in docs/KEYS.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// Data key wrapped directly by a store-wide root key (RFC 5649).
    StoreRoot,
    /// Data key wrapped by a virtual bucket key of the master/namespace/bucket hierarchy.
    Hierarchy,
    /// Data key wrapped by a key derived from a customer-supplied key (SSE-C).
    CustomerKey,
}

impl KeyKind {
    /// The byte stored in the object header.
    pub fn to_byte(self) -> u8 {
        match self {
            KeyKind::StoreRoot => 1,
            KeyKind::Hierarchy => 2,
            KeyKind::CustomerKey => 3,
        }
    }

    /// Parses the header byte; `None` for an unknown kind.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(KeyKind::StoreRoot),
            2 => Some(KeyKind::Hierarchy),
            3 => Some(KeyKind::CustomerKey),
            _ => None,
        }
    }
}

/// What an object header stores about its data key: the kind of key management and the
/// kind-specific bytes (key reference and wrapped data key). Not secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBlock {
    /// Which key management wrote it.
    pub kind: KeyKind,
    /// Key reference and wrapped key, laid out per kind as docs/KEYS.md specifies.
    pub bytes: Vec<u8>,
}

/// Supplies data keys to the engine. A provider is bound to the context it writes for (a
/// bucket under its current rotation key, a customer key, ...), so the data path never names
/// keys itself.
pub trait KeyProvider: Send + Sync {
    /// A fresh random data key for a new object, and the block to store in its header.
    fn new_data_key(&self) -> Result<(DataKey, KeyBlock), KeyError>;

    /// The data key of an existing object, from the block its header stores.
    fn open_data_key(&self, block: &KeyBlock) -> Result<DataKey, KeyError>;
}
