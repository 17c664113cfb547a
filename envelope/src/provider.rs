//! Key providers and the envelopes they make.

use crate::{DataKey, KeyError};

/// Which key management produced an object's envelope. Stored as one byte (the object table's
/// `envelope_kind`, or a format-1 object header); the meaning of the envelope's bytes per kind
/// is in docs/KEYS.md §4.
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
    /// The byte stored for this kind.
    pub fn to_byte(self) -> u8 {
        match self {
            KeyKind::StoreRoot => 1,
            KeyKind::Hierarchy => 2,
            KeyKind::CustomerKey => 3,
        }
    }

    /// Parses the stored byte; `None` for an unknown kind.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(KeyKind::StoreRoot),
            2 => Some(KeyKind::Hierarchy),
            3 => Some(KeyKind::CustomerKey),
            _ => None,
        }
    }
}

/// What is stored about an object's data key: the kind of key management and the
/// kind-specific bytes (key reference and wrapped data key). Not secret. The object table
/// keeps it apart from the object's data, so it can be rewrapped without touching the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Which key management wrote it.
    pub kind: KeyKind,
    /// Key reference and wrapped key, laid out per kind as docs/KEYS.md specifies.
    pub bytes: Vec<u8>,
}

/// Supplies data keys to the engine. A provider is bound to the context it writes for (a
/// bucket under its current rotation key, a customer key, ...), so the data path never names
/// keys itself.
pub trait KeyProvider: Send + Sync {
    /// A fresh random data key for a new object, and the envelope to store for it.
    fn new_data_key(&self) -> Result<(DataKey, Envelope), KeyError>;

    /// The data key of an existing object, from its stored envelope.
    fn open_data_key(&self, envelope: &Envelope) -> Result<DataKey, KeyError>;
}
