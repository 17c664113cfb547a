//! Importing key material (KMS.md §5; seed 003 §2.2): an RSA wrapping key pair and an import
//! token per `get-import-parameters`, RSA-OAEP unwrapping of the material, and the keyed
//! fingerprint that binds a CMK to its material.
//!
//! RSA is AWS-LC's (through `aws-lc-rs`): key generation and a constant-time OAEP decrypt.
//! PKCS#1 v1.5 is refused outright: an import endpoint that unwraps attacker-chosen
//! ciphertexts under v1.5 padding is the classic Bleichenbacher oracle.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OaepAlgorithm, OaepPrivateDecryptingKey,
    PrivateDecryptingKey,
};
use dare_keys::derive::hmac_sha256;
use dare_keys::{KeyError, Secret32};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::KmsError;

/// Label of the service key that seals import private keys and MACs import tokens.
pub const LABEL_IMPORT_KEY: &[u8] = b"dare/v1/kms/import-key";
/// Label of the service key of material fingerprints.
pub const LABEL_FINGERPRINT_KEY: &[u8] = b"dare/v1/kms/material-fingerprint-key";
/// Length of an import token.
pub const TOKEN_LEN: usize = 1 + 16 + 32 + 8 + 32;

/// How the material is wrapped for import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrappingAlgorithm {
    /// RSAES-OAEP with SHA-256 and MGF1-SHA-256 (the default).
    OaepSha256,
    /// RSAES-OAEP with SHA-1 and MGF1-SHA-1 (accepted, as the seed does, for HSMs that lack
    /// SHA-256 OAEP; OAEP with SHA-1 is not broken as an encryption padding).
    OaepSha1,
}

impl WrappingAlgorithm {
    /// Parses the seed's names; refuses PKCS#1 v1.5 with the reason.
    pub fn parse(s: &str) -> Result<Self, KmsError> {
        match s {
            "RSAES_OAEP_SHA_256" => Ok(WrappingAlgorithm::OaepSha256),
            "RSAES_OAEP_SHA_1" => Ok(WrappingAlgorithm::OaepSha1),
            "RSAES_PKCS1_V1_5" => Err(KmsError::WrappingAlgorithm(
                "RSAES_PKCS1_V1_5 is refused: a service that unwraps PKCS#1 v1.5 ciphertexts \
                 is a padding oracle (Bleichenbacher's attack recovers wrapped keys from its \
                 error behaviour and timing). Wrap the material with RSAES_OAEP_SHA_256 \
                 (`openssl pkeyutl -encrypt -pkeyopt rsa_padding_mode:oaep -pkeyopt \
                 rsa_oaep_md:sha256`)"
                    .into(),
            )),
            other => Err(KmsError::WrappingAlgorithm(format!(
                "unknown wrapping algorithm {other:?}: use RSAES_OAEP_SHA_256 (default) or \
                 RSAES_OAEP_SHA_1"
            ))),
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            WrappingAlgorithm::OaepSha256 => "RSAES_OAEP_SHA_256",
            WrappingAlgorithm::OaepSha1 => "RSAES_OAEP_SHA_1",
        }
    }

    fn oaep(self) -> &'static OaepAlgorithm {
        match self {
            WrappingAlgorithm::OaepSha256 => &OAEP_SHA256_MGF1SHA256,
            WrappingAlgorithm::OaepSha1 => &OAEP_SHA1_MGF1SHA1,
        }
    }
}

/// A fresh wrapping key pair: (PKCS#8 DER of the private key, SubjectPublicKeyInfo DER).
pub fn generate_wrapping_key(bits: u32) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), KmsError> {
    let size = match bits {
        2048 => KeySize::Rsa2048,
        3072 => KeySize::Rsa3072,
        4096 => KeySize::Rsa4096,
        other => return Err(KmsError::WrappingKeySize(other)),
    };
    let rsa = |what: &str| KmsError::Key(KeyError::Provider(format!("RSA {what} failed")));
    let key = PrivateDecryptingKey::generate(size).map_err(|_| rsa("key generation"))?;
    let private = Zeroizing::new(
        AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'static>>::as_der(&key)
            .map_err(|_| rsa("private key encoding"))?
            .as_ref()
            .to_vec(),
    );
    let public = AsDer::<aws_lc_rs::encoding::PublicKeyX509Der<'static>>::as_der(&key.public_key())
        .map_err(|_| rsa("public key encoding"))?
        .as_ref()
        .to_vec();
    Ok((private, public))
}

fn private_aad(key_id: &str) -> Vec<u8> {
    [
        b"dare/v1/kms/import-private-key\0".as_slice(),
        key_id.as_bytes(),
    ]
    .concat()
}

/// Seals a wrapping private key for storage: `nonce[12] || AES-256-GCM(import key, DER)`,
/// associated data `"dare/v1/kms/import-private-key" || 0x00 || key_id`.
pub fn seal_private_key(
    import_key: &Secret32,
    key_id: &str,
    der: &[u8],
) -> Result<Vec<u8>, KmsError> {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|_| KmsError::Key(KeyError::Rng))?;
    let aad = private_aad(key_id);
    let ct = Aes256Gcm::new(import_key.expose_secret().into())
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: der,
                aad: &aad,
            },
        )
        .map_err(|_| KmsError::Key(KeyError::Provider("sealing the wrapping key".into())))?;
    Ok([&nonce[..], &ct].concat())
}

/// Unwraps imported material with the sealed private key; the result must be 32 bytes.
pub fn unwrap_material(
    import_key: &Secret32,
    key_id: &str,
    sealed_private: &[u8],
    alg: WrappingAlgorithm,
    encrypted: &[u8],
) -> Result<Secret32, KmsError> {
    if sealed_private.len() < 12 + 16 {
        return Err(KmsError::ImportTokenInvalid);
    }
    let aad = private_aad(key_id);
    let der = Zeroizing::new(
        Aes256Gcm::new(import_key.expose_secret().into())
            .decrypt(
                &Nonce::try_from(&sealed_private[..12]).expect("12-byte nonce"),
                Payload {
                    msg: &sealed_private[12..],
                    aad: &aad,
                },
            )
            .map_err(|_| KmsError::ImportTokenInvalid)?,
    );
    let key = PrivateDecryptingKey::from_pkcs8(&der).map_err(|_| KmsError::ImportTokenInvalid)?;
    let key = OaepPrivateDecryptingKey::new(key).map_err(|_| KmsError::ImportTokenInvalid)?;
    if encrypted.len() != key.key_size_bytes() {
        return Err(KmsError::MaterialUnwrap);
    }
    let mut out = Zeroizing::new(vec![0u8; key.min_output_size()]);
    let plain = key
        .decrypt(alg.oaep(), encrypted, &mut out, None)
        .map_err(|_| KmsError::MaterialUnwrap)?;
    let bytes: [u8; 32] = match <[u8; 32]>::try_from(&plain[..]) {
        Ok(b) => b,
        Err(_) => return Err(KmsError::MaterialLength(plain.len())),
    };
    Ok(Secret32::from_bytes("imported key material", bytes))
}

/// An import token: `0x01 || key_id[16] || token_id[32] || u64le(expires_ms) ||
/// HMAC(import key, "dare/v1/kms/import-token" || 0x00 || u32le(1) || the 57 bytes before)`.
pub fn make_token(
    import_key: &Secret32,
    key_id: &str,
    token_id: &[u8; 32],
    expires_ms: u64,
) -> Vec<u8> {
    let id = uuid::Uuid::try_parse(key_id).expect("key ids are UUIDs");
    let mut t = Vec::with_capacity(TOKEN_LEN);
    t.push(1);
    t.extend_from_slice(id.as_bytes());
    t.extend_from_slice(token_id);
    t.extend_from_slice(&expires_ms.to_le_bytes());
    let mac = token_mac(import_key, &t);
    t.extend_from_slice(&mac);
    t
}

fn token_mac(import_key: &Secret32, body: &[u8]) -> [u8; 32] {
    hmac_sha256(
        import_key.expose_secret(),
        &[b"dare/v1/kms/import-token", &[0], &1u32.to_le_bytes(), body],
    )
}

/// A checked token's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The CMK it was issued for.
    pub key_id: String,
    /// Its random id.
    pub token_id: [u8; 32],
    /// End of validity.
    pub expires_ms: u64,
}

/// Checks a token's MAC and layout (not its expiry or CMK: the caller does, for distinct
/// errors).
pub fn check_token(import_key: &Secret32, t: &[u8]) -> Result<Token, KmsError> {
    if t.len() != TOKEN_LEN || t[0] != 1 {
        return Err(KmsError::ImportTokenInvalid);
    }
    let want = token_mac(import_key, &t[..TOKEN_LEN - 32]);
    if !bool::from(want.ct_eq(&t[TOKEN_LEN - 32..])) {
        return Err(KmsError::ImportTokenInvalid);
    }
    let id: [u8; 16] = t[1..17].try_into().expect("16");
    Ok(Token {
        key_id: uuid::Uuid::from_bytes(id).hyphenated().to_string(),
        token_id: t[17..49].try_into().expect("32"),
        expires_ms: u64::from_le_bytes(t[49..57].try_into().expect("8")),
    })
}

/// The keyed fingerprint of a CMK version's material: `HMAC(fingerprint key,
/// "dare/v1/kms/material-fingerprint" || 0x00 || u32le(1) || key_id[16] || material)`.
pub fn fingerprint(fp_key: &Secret32, key_id: &str, material: &Secret32) -> [u8; 32] {
    let id = uuid::Uuid::try_parse(key_id).expect("key ids are UUIDs");
    hmac_sha256(
        fp_key.expose_secret(),
        &[
            b"dare/v1/kms/material-fingerprint",
            &[0],
            &1u32.to_le_bytes(),
            id.as_bytes(),
            material.expose_secret(),
        ],
    )
}
