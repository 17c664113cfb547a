//! Secret byte strings that zeroize on drop, never print, and compare in constant time.

use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 256-bit secret. The bytes are reachable only through [`Secret32::expose_secret`],
/// so every place that touches key material is greppable.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret32 {
    bytes: [u8; 32],
    #[zeroize(skip)]
    kind: &'static str,
}

impl Secret32 {
    /// Wraps raw bytes as a secret of the given kind (used only in `Debug`).
    /// The caller should zeroize its own copy of `bytes`.
    pub fn from_bytes(kind: &'static str, bytes: [u8; 32]) -> Self {
        Secret32 { bytes, kind }
    }

    /// A fresh secret from the operating system's CSPRNG.
    pub fn generate(kind: &'static str) -> Result<Self, crate::KeyError> {
        let mut s = Secret32 {
            bytes: [0; 32],
            kind,
        };
        getrandom::fill(&mut s.bytes).map_err(|_| crate::KeyError::Rng)?;
        Ok(s)
    }

    /// The key bytes. Keep the borrow short; never log or format it.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// What kind of key this is (for diagnostics).
    pub fn kind(&self) -> &'static str {
        self.kind
    }
}

impl fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret32({}, <redacted>)", self.kind)
    }
}

impl PartialEq for Secret32 {
    fn eq(&self, other: &Self) -> bool {
        self.bytes.ct_eq(&other.bytes).into()
    }
}
impl Eq for Secret32 {}

/// The per-object AES-256 data key. A fresh one is drawn for every object.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey(Secret32);

impl DataKey {
    /// A fresh random data key.
    pub fn generate() -> Result<Self, crate::KeyError> {
        Secret32::generate("data key").map(DataKey)
    }

    /// Wraps raw bytes (from an unwrap) as a data key.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DataKey(Secret32::from_bytes("data key", bytes))
    }

    /// The key bytes, for building the AEAD key schedule.
    pub fn expose_secret(&self) -> &[u8; 32] {
        self.0.expose_secret()
    }

    /// The key as a [`Secret32`], for wrapping.
    pub fn as_secret(&self) -> &Secret32 {
        &self.0
    }

    /// A data key from an unwrapped secret.
    pub fn from_secret(s: Secret32) -> Self {
        DataKey(s)
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_bytes() {
        let k = Secret32::from_bytes("test", [0xAB; 32]);
        let d = format!("{k:?} {:?}", DataKey::from_bytes([0xCD; 32]));
        assert!(!d.to_lowercase().contains("ab"), "{d}");
        assert!(!d.contains("171") && !d.contains("205"), "{d}");
        assert!(d.contains("redacted"));
    }

    #[test]
    fn equality_is_by_value() {
        let a = Secret32::from_bytes("k", [1; 32]);
        let mut b = [1u8; 32];
        assert_eq!(a, Secret32::from_bytes("k", b));
        b[31] = 2;
        assert_ne!(a, Secret32::from_bytes("k", b));
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(DataKey::generate().unwrap(), DataKey::generate().unwrap());
    }
}
