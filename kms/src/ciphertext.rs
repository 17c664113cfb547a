//! The ciphertext format of the service (KMS.md §4): every ciphertext names the CMK and the
//! version that made it, so decrypting needs no key id from the caller.
//!
//! ```text
//! offset 0    u8      format = 1
//! offset 1    u8      purpose: 1 data key, 2 data, 3 bucket key
//! offset 2    [16]    key id (the UUID's 16 bytes, in the order of its text form)
//! offset 18   u32le   CMK version
//! offset 22   [12]    nonce (random)
//! offset 34   [n]     AES-256-GCM ciphertext
//! offset 34+n [16]    GCM tag
//! ```
//!
//! The GCM key is the version's 32-byte material; the associated data binds the store, the
//! header and the encryption context (see [`aad`]).

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use dare_keys::Secret32;
use zeroize::Zeroizing;

use crate::KmsError;

/// Format byte.
pub const FORMAT: u8 = 1;
/// Header length (format, purpose, key id, version, nonce).
pub const HEADER_LEN: usize = 34;
/// GCM tag length.
pub const TAG_LEN: usize = 16;
/// Label at the start of the associated data.
pub const LABEL_AAD: &[u8] = b"dare/v1/kms/ciphertext";

/// What a ciphertext holds; decrypting checks it, so a data key cannot be passed off as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A data key (`create-datakey`, `encrypt-datakey`).
    DataKey = 1,
    /// Small data (`encrypt`).
    Data = 2,
    /// The bucket key of an SSE-KMS bucket.
    BucketKey = 3,
}

impl Purpose {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Purpose::DataKey,
            2 => Purpose::Data,
            3 => Purpose::BucketKey,
            _ => return None,
        })
    }

    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Purpose::DataKey => "data key",
            Purpose::Data => "data",
            Purpose::BucketKey => "bucket key",
        }
    }
}

/// An encryption context: string pairs bound to the ciphertext as associated data. Decrypting
/// needs exactly the same pairs.
pub type Context = BTreeMap<String, String>;

/// The parsed fixed fields of a ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// What it holds.
    pub purpose: Purpose,
    /// The CMK's key id, as text.
    pub key_id: String,
    /// The CMK version.
    pub version: u32,
}

/// Reads the header of `ct` (nothing is decrypted).
pub fn parse_header(ct: &[u8]) -> Result<Header, KmsError> {
    if ct.len() < HEADER_LEN + TAG_LEN {
        return Err(KmsError::CiphertextMalformed(
            "shorter than a header and a tag",
        ));
    }
    if ct[0] != FORMAT {
        return Err(KmsError::CiphertextMalformed("unknown format byte"));
    }
    let purpose =
        Purpose::from_byte(ct[1]).ok_or(KmsError::CiphertextMalformed("unknown purpose"))?;
    let id: [u8; 16] = ct[2..18].try_into().expect("16 bytes");
    let version = u32::from_le_bytes(ct[18..22].try_into().expect("4 bytes"));
    if version == 0 {
        return Err(KmsError::CiphertextMalformed("version 0"));
    }
    Ok(Header {
        purpose,
        key_id: uuid::Uuid::from_bytes(id).hyphenated().to_string(),
        version,
    })
}

/// The canonical encoding of a context: `u32le(count)`, then for each pair in byte order of
/// the names: `u32le(len) || name || u32le(len) || value`.
pub fn encode_context(ctx: &Context) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + ctx.len() * 16);
    out.extend_from_slice(&(ctx.len() as u32).to_le_bytes());
    for (k, v) in ctx {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// Associated data: `LABEL_AAD || 0x00 || u32le(1) || store_id[16] || header[0..22] ||
/// encode_context(ctx)` (the nonce is GCM's own input, not repeated here).
pub fn aad(store_id: &[u8; 16], header: &[u8], ctx: &Context) -> Vec<u8> {
    let mut a = Vec::with_capacity(LABEL_AAD.len() + 5 + 16 + 22 + 4);
    a.extend_from_slice(LABEL_AAD);
    a.push(0);
    a.extend_from_slice(&1u32.to_le_bytes());
    a.extend_from_slice(store_id);
    a.extend_from_slice(&header[..22]);
    a.extend_from_slice(&encode_context(ctx));
    a
}

/// Seals `plaintext` under `material` (CMK `key_id`, `version`).
pub fn seal(
    store_id: &[u8; 16],
    purpose: Purpose,
    key_id: &str,
    version: u32,
    material: &Secret32,
    plaintext: &[u8],
    ctx: &Context,
) -> Result<Vec<u8>, KmsError> {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|_| KmsError::Key(dare_keys::KeyError::Rng))?;
    seal_with_nonce(
        store_id, purpose, key_id, version, material, plaintext, ctx, nonce,
    )
}

/// [`seal`] with a given nonce (the fuzz targets rebuild ciphertexts byte for byte).
#[allow(clippy::too_many_arguments)]
pub(crate) fn seal_with_nonce(
    store_id: &[u8; 16],
    purpose: Purpose,
    key_id: &str,
    version: u32,
    material: &Secret32,
    plaintext: &[u8],
    ctx: &Context,
    nonce: [u8; 12],
) -> Result<Vec<u8>, KmsError> {
    let id = uuid::Uuid::try_parse(key_id)
        .map_err(|_| KmsError::CiphertextMalformed("key id is not a UUID"))?;
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.push(FORMAT);
    out.push(purpose as u8);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&nonce);
    let aad = aad(store_id, &out, ctx);
    let cipher = Aes256Gcm::new(material.expose_secret().into());
    let sealed = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| KmsError::CiphertextMalformed("plaintext too long for GCM"))?;
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens `ct` (whose header was parsed as `h`) under `material`; the plaintext is zeroized
/// when dropped. Any failure is [`KmsError::DecryptFailed`] and releases nothing.
pub fn open(
    store_id: &[u8; 16],
    ct: &[u8],
    material: &Secret32,
    ctx: &Context,
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    if ct.len() < HEADER_LEN + TAG_LEN {
        return Err(KmsError::CiphertextMalformed(
            "shorter than a header and a tag",
        ));
    }
    let aad = aad(store_id, &ct[..HEADER_LEN], ctx);
    let cipher = Aes256Gcm::new(material.expose_secret().into());
    cipher
        .decrypt(
            &Nonce::try_from(&ct[22..HEADER_LEN]).expect("12-byte nonce"),
            Payload {
                msg: &ct[HEADER_LEN..],
                aad: &aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| KmsError::DecryptFailed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Secret32 {
        Secret32::from_bytes("test", [b; 32])
    }

    const ID: &str = "0b7c2d9e-3f41-4a8b-9c6d-1e2f3a4b5c6d";

    #[test]
    fn round_trip_and_every_tamper_is_refused() {
        let store = [7u8; 16];
        let mut ctx = Context::new();
        ctx.insert("bucket".into(), "photos".into());
        let ct = seal(&store, Purpose::Data, ID, 3, &key(1), b"hello", &ctx).unwrap();
        assert_eq!(ct.len(), HEADER_LEN + 5 + TAG_LEN);
        let h = parse_header(&ct).unwrap();
        assert_eq!(
            (h.purpose, h.key_id.as_str(), h.version),
            (Purpose::Data, ID, 3)
        );
        assert_eq!(&open(&store, &ct, &key(1), &ctx).unwrap()[..], b"hello");
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            assert!(open(&store, &bad, &key(1), &ctx).is_err(), "byte {i}");
        }
        assert!(open(&store, &ct[..ct.len() - 1], &key(1), &ctx).is_err());
        assert!(open(&store, &ct, &key(2), &ctx).is_err());
        assert!(open(&[8u8; 16], &ct, &key(1), &ctx).is_err());
        assert!(open(&store, &ct, &key(1), &Context::new()).is_err());
    }

    #[test]
    fn context_encoding_is_canonical() {
        let mut a = Context::new();
        a.insert("b".into(), "2".into());
        a.insert("a".into(), "1".into());
        assert_eq!(
            encode_context(&a),
            [
                &2u32.to_le_bytes()[..],
                &1u32.to_le_bytes(),
                b"a",
                &1u32.to_le_bytes(),
                b"1",
                &1u32.to_le_bytes(),
                b"b",
                &1u32.to_le_bytes(),
                b"2"
            ]
            .concat()
        );
    }
}
