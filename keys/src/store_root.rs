//! The simplest provider: data keys wrapped directly by one store-wide root key.
//!
//! Key block (kind [`KeyKind::StoreRoot`], docs/KEYS.md §4.1): `wrapped_data_key [40]`, the
//! RFC 5649 wrap of the data key under the root key. Used by engine tests and fuzzing, and
//! for stores that need no hierarchy.

use std::fmt;

use crate::wrap::{WRAPPED_LEN, unwrap_key, wrap_key};
use crate::{DataKey, Envelope, KeyError, KeyKind, KeyProvider, Secret32};

/// Data keys wrapped by a single root key.
pub struct StoreRootProvider {
    root: Secret32,
}

impl fmt::Debug for StoreRootProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StoreRootProvider(<redacted>)")
    }
}

impl StoreRootProvider {
    /// A provider wrapping under `root`.
    pub fn new(root: Secret32) -> Self {
        StoreRootProvider { root }
    }
}

impl KeyProvider for StoreRootProvider {
    fn new_data_key(&self) -> Result<(DataKey, Envelope), KeyError> {
        let dk = DataKey::generate()?;
        let bytes = wrap_key(&self.root, dk.as_secret()).to_vec();
        Ok((
            dk,
            Envelope {
                kind: KeyKind::StoreRoot,
                bytes,
            },
        ))
    }

    fn open_data_key(&self, block: &Envelope) -> Result<DataKey, KeyError> {
        if block.kind != KeyKind::StoreRoot {
            return Err(KeyError::WrongKind {
                expected: KeyKind::StoreRoot.to_byte(),
                found: block.kind.to_byte(),
            });
        }
        if block.bytes.len() != WRAPPED_LEN {
            return Err(KeyError::Malformed("store-root key block must be 40 bytes"));
        }
        unwrap_key(&self.root, &block.bytes, "data key").map(DataKey::from_secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_errors() {
        let p = StoreRootProvider::new(Secret32::generate("root").unwrap());
        let (dk, block) = p.new_data_key().unwrap();
        assert_eq!(block.bytes.len(), 40);
        assert_eq!(p.open_data_key(&block).unwrap(), dk);
        let other = StoreRootProvider::new(Secret32::generate("root").unwrap());
        assert_eq!(other.open_data_key(&block), Err(KeyError::UnwrapFailed));
        let mut t = block.clone();
        t.bytes[3] ^= 1;
        assert_eq!(p.open_data_key(&t), Err(KeyError::UnwrapFailed));
        t.bytes.truncate(8);
        assert!(matches!(p.open_data_key(&t), Err(KeyError::Malformed(_))));
        let h = Envelope {
            kind: KeyKind::Hierarchy,
            bytes: block.bytes,
        };
        assert_eq!(
            p.open_data_key(&h),
            Err(KeyError::WrongKind {
                expected: 1,
                found: 2
            })
        );
        assert_eq!(format!("{p:?}"), "StoreRootProvider(<redacted>)");
    }
}
