//! SSE-C: objects encrypted under a customer-supplied key (S3 semantics, ECS white paper §2.3).
//!
//! The customer key is never stored. Each object gets a random data key, wrapped (RFC 5649)
//! by a KEK derived from the customer key and a random per-object salt; a salted, keyed
//! verifier lets a read with the wrong key fail with [`KeyError::CustomerKeyMismatch`]
//! *before* any unwrap is attempted. Key block (kind [`KeyKind::CustomerKey`],
//! docs/KEYS.md §4.3), 88 bytes:
//!
//! ```text
//! salt [16] || verifier [32] || wrapped_data_key [40]
//! KEK      = HMAC-SHA256(customer key, "dare/v1/sse-c/key-encryption-key" 0x00 || 1u32 LE || salt)
//! verifier = HMAC-SHA256(customer key, "dare/v1/sse-c/key-verifier" 0x00 || 1u32 LE || salt)
//! ```

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::derive::{sse_c_kek, sse_c_verifier};
use crate::wrap::{WRAPPED_LEN, unwrap_key, wrap_key};
use crate::{DataKey, Envelope, KeyError, KeyKind, KeyProvider, Secret32, StoreError};

/// Length of an SSE-C key block.
pub const CUSTOMER_BLOCK_LEN: usize = 16 + 32 + WRAPPED_LEN;

/// Data keys protected by a customer-supplied key.
pub struct CustomerKeyProvider {
    key: Secret32,
}

impl fmt::Debug for CustomerKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CustomerKeyProvider(<redacted>)")
    }
}

impl CustomerKeyProvider {
    /// A provider for the given customer key.
    pub fn new(customer_key: Secret32) -> Self {
        CustomerKeyProvider { key: customer_key }
    }

    /// The S3 `x-amz-server-side-encryption-customer-key-MD5` value of the key.
    pub fn key_md5(&self) -> String {
        customer_key_md5(&self.key)
    }
}

impl KeyProvider for CustomerKeyProvider {
    fn new_data_key(&self) -> Result<(DataKey, Envelope), KeyError> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|_| KeyError::Rng)?;
        let dk = DataKey::generate()?;
        let kek = sse_c_kek(&self.key, &salt);
        let mut bytes = Vec::with_capacity(CUSTOMER_BLOCK_LEN);
        bytes.extend_from_slice(&salt);
        bytes.extend_from_slice(&sse_c_verifier(&self.key, &salt));
        bytes.extend_from_slice(&wrap_key(&kek, dk.as_secret()));
        Ok((
            dk,
            Envelope {
                kind: KeyKind::CustomerKey,
                bytes,
            },
        ))
    }

    fn open_data_key(&self, block: &Envelope) -> Result<DataKey, KeyError> {
        if block.kind != KeyKind::CustomerKey {
            return Err(KeyError::WrongKind {
                expected: KeyKind::CustomerKey.to_byte(),
                found: block.kind.to_byte(),
            });
        }
        if block.bytes.len() != CUSTOMER_BLOCK_LEN {
            return Err(KeyError::Malformed("SSE-C key block must be 88 bytes"));
        }
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&block.bytes[..16]);
        let expected = sse_c_verifier(&self.key, &salt);
        if !bool::from(expected.ct_eq(&block.bytes[16..48])) {
            return Err(KeyError::CustomerKeyMismatch);
        }
        let kek = sse_c_kek(&self.key, &salt);
        unwrap_key(&kek, &block.bytes[48..], "data key").map(DataKey::from_secret)
    }
}

/// The provider for reading (or writing) without a customer key: every SSE-C operation fails
/// with [`KeyError::CustomerKeyRequired`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCustomerKey;

impl KeyProvider for NoCustomerKey {
    fn new_data_key(&self) -> Result<(DataKey, Envelope), KeyError> {
        Err(KeyError::CustomerKeyRequired)
    }

    fn open_data_key(&self, block: &Envelope) -> Result<DataKey, KeyError> {
        match block.kind {
            KeyKind::CustomerKey => Err(KeyError::CustomerKeyRequired),
            other => Err(KeyError::WrongKind {
                expected: KeyKind::CustomerKey.to_byte(),
                found: other.to_byte(),
            }),
        }
    }
}

/// Base64 of the MD5 digest of the key: the S3 key-MD5 value (an integrity check on the
/// transmitted key, not a security measure).
pub fn customer_key_md5(key: &Secret32) -> String {
    STANDARD.encode(Md5::digest(key.expose_secret()))
}

/// Parses a customer key: exactly 32 raw bytes, or base64 text (surrounding whitespace
/// ignored) of 32 bytes. With `key_md5` (base64 MD5 of the key, as S3 sends it), the key must
/// match it ([`KeyError::CustomerKeyMd5Mismatch`]).
pub fn parse_customer_key(bytes: &[u8], key_md5: Option<&str>) -> Result<Secret32, KeyError> {
    let mut raw = [0u8; 32];
    if bytes.len() == 32 {
        raw.copy_from_slice(bytes);
    } else {
        let text = bytes.trim_ascii();
        let decoded = Zeroizing::new(STANDARD.decode(text).map_err(|_| {
            KeyError::Malformed("customer key must be 32 raw bytes or base64 of 32 bytes")
        })?);
        if decoded.len() != 32 {
            return Err(KeyError::Malformed(
                "customer key must be 32 bytes (AES-256)",
            ));
        }
        raw.copy_from_slice(&decoded);
    }
    let key = Secret32::from_bytes("customer key", raw);
    raw.zeroize();
    if let Some(want) = key_md5 {
        let got = customer_key_md5(&key);
        if !bool::from(got.as_bytes().ct_eq(want.trim().as_bytes())) {
            return Err(KeyError::CustomerKeyMd5Mismatch);
        }
    }
    Ok(key)
}

/// Reads a customer key file (see [`parse_customer_key`] for the accepted contents).
pub fn read_customer_key_file(path: &Path, key_md5: Option<&str>) -> Result<Secret32, StoreError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| StoreError::Io {
        op: "read customer key file",
        path: path.to_path_buf(),
        source,
    })?);
    Ok(parse_customer_key(&bytes, key_md5)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_wrong_key_and_no_key() {
        let ck = Secret32::generate("ck").unwrap();
        let p = CustomerKeyProvider::new(ck.clone());
        let (dk, block) = p.new_data_key().unwrap();
        assert_eq!(block.bytes.len(), CUSTOMER_BLOCK_LEN);
        assert_eq!(p.open_data_key(&block).unwrap(), dk);
        assert_eq!(
            CustomerKeyProvider::new(ck).open_data_key(&block).unwrap(),
            dk
        );

        let other = CustomerKeyProvider::new(Secret32::generate("ck").unwrap());
        assert_eq!(
            other.open_data_key(&block),
            Err(KeyError::CustomerKeyMismatch)
        );
        assert_eq!(
            NoCustomerKey.open_data_key(&block),
            Err(KeyError::CustomerKeyRequired)
        );
        assert_eq!(
            NoCustomerKey.new_data_key().err(),
            Some(KeyError::CustomerKeyRequired)
        );

        // Tampering: the verifier or salt → mismatch (checked first); the wrapped key → unwrap failure.
        for i in 0..CUSTOMER_BLOCK_LEN {
            let mut t = block.clone();
            t.bytes[i] ^= 0x80;
            let want = if i < 48 {
                KeyError::CustomerKeyMismatch
            } else {
                KeyError::UnwrapFailed
            };
            assert_eq!(p.open_data_key(&t), Err(want), "byte {i}");
        }
        let mut short = block.clone();
        short.bytes.pop();
        assert!(matches!(
            p.open_data_key(&short),
            Err(KeyError::Malformed(_))
        ));
        let wrong_kind = Envelope {
            kind: KeyKind::StoreRoot,
            bytes: block.bytes.clone(),
        };
        assert!(matches!(
            p.open_data_key(&wrong_kind),
            Err(KeyError::WrongKind {
                expected: 3,
                found: 1
            })
        ));
        assert!(!format!("{p:?}").contains(&format!("{:?}", &dk.expose_secret()[..4])));
    }

    #[test]
    fn key_parsing_and_md5() {
        let raw: [u8; 32] = core::array::from_fn(|i| u8::try_from(i).unwrap());
        let k = parse_customer_key(&raw, None).unwrap();
        assert_eq!(k.expose_secret(), &raw);
        let b64 = format!("{}\n", STANDARD.encode(raw));
        let md5 = customer_key_md5(&k);
        assert_eq!(parse_customer_key(b64.as_bytes(), Some(&md5)).unwrap(), k);
        assert_eq!(
            parse_customer_key(b64.as_bytes(), Some("w79dwNhAgGtXei9fHOb+Gw==")),
            Err(KeyError::CustomerKeyMd5Mismatch)
        );
        assert!(matches!(
            parse_customer_key(b"too short", None),
            Err(KeyError::Malformed(_))
        ));
        assert!(matches!(
            parse_customer_key(STANDARD.encode([1u8; 16]).as_bytes(), None),
            Err(KeyError::Malformed(_))
        ));
        // MD5 of 32 zero bytes, as `openssl dgst -md5 -binary | base64` gives it.
        assert_eq!(
            customer_key_md5(&Secret32::from_bytes("k", [0; 32])),
            "cLyPS3KoaSFGi/joRB3OUQ=="
        );

        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ck");
        std::fs::write(&f, &b64).unwrap();
        assert_eq!(read_customer_key_file(&f, None).unwrap(), k);
        assert!(matches!(
            read_customer_key_file(&dir.path().join("nope"), None),
            Err(StoreError::Io { .. })
        ));
    }
}
