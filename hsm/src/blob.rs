//! The layout of a key blob made by the HSM root of trust (docs/KEYS.md §5.4).
//!
//! ```text
//! blob (53 bytes) = 0x01 || u32le(CKM_AES_KEY_WRAP_PAD = 0x0000210A) || fingerprint[8] || W
//! W               = C_WrapKey(CKM_AES_KEY_WRAP_PAD, KEK, key) = RFC 5649 WRAP(KEK, key), 40 bytes
//! fingerprint     = SHA-256("dare-pkcs11-kek-fingerprint" || 0x00 || u32le(1)
//!                           || WRAP(KEK, 32 zero bytes))[0..8]
//! ```
//!
//! The fingerprint names the wrapping key, not its label: KWP is deterministic, so wrapping a
//! fixed all-zero key gives the same 40 bytes for the same KEK and unrelated bytes for any
//! other (it reveals nothing else about the KEK: AES under a known plaintext). A blob whose
//! fingerprint is not the opened key's is refused as made by another root before the HSM
//! unwraps anything; a relabelled key, or the same key restored into another token, still
//! opens its blobs.

use sha2::{Digest, Sha256};

/// The format byte of this layout.
pub const FORMAT_V1: u8 = 1;
/// `CKM_AES_KEY_WRAP_PAD`, as PKCS#11 numbers it (recorded in the blob).
pub const CKM_AES_KEY_WRAP_PAD: u32 = 0x0000_210A;
/// The RFC 5649 wrap of a 32-byte key.
pub const WRAPPED_LEN: usize = 40;
/// Length of the key fingerprint.
pub const FINGERPRINT_LEN: usize = 8;
/// Length of a whole blob.
pub const BLOB_LEN: usize = 1 + 4 + FINGERPRINT_LEN + WRAPPED_LEN;

const FINGERPRINT_LABEL: &[u8] = b"dare-pkcs11-kek-fingerprint";

/// The fingerprint of a wrapping key, from its wrap of 32 zero bytes.
pub fn fingerprint(wrapped_zero_key: &[u8]) -> [u8; FINGERPRINT_LEN] {
    let mut h = Sha256::new();
    h.update(FINGERPRINT_LABEL);
    h.update([0u8]);
    h.update(1u32.to_le_bytes());
    h.update(wrapped_zero_key);
    let d = h.finalize();
    let mut fp = [0u8; FINGERPRINT_LEN];
    fp.copy_from_slice(&d[..FINGERPRINT_LEN]);
    fp
}

/// A blob from its parts.
pub fn encode(fp: &[u8; FINGERPRINT_LEN], wrapped: &[u8; WRAPPED_LEN]) -> Vec<u8> {
    let mut b = Vec::with_capacity(BLOB_LEN);
    b.push(FORMAT_V1);
    b.extend_from_slice(&CKM_AES_KEY_WRAP_PAD.to_le_bytes());
    b.extend_from_slice(fp);
    b.extend_from_slice(wrapped);
    b
}

/// A blob's fingerprint and wrapped key, or why it is not a version-1 HSM blob.
pub fn decode(blob: &[u8]) -> Result<([u8; FINGERPRINT_LEN], [u8; WRAPPED_LEN]), &'static str> {
    if blob.len() != BLOB_LEN || blob[0] != FORMAT_V1 {
        return Err("not a version-1 PKCS#11-wrapped key blob");
    }
    let mut mech = [0u8; 4];
    mech.copy_from_slice(&blob[1..5]);
    if u32::from_le_bytes(mech) != CKM_AES_KEY_WRAP_PAD {
        return Err("PKCS#11-wrapped key blob names a mechanism other than CKM_AES_KEY_WRAP_PAD");
    }
    let mut fp = [0u8; FINGERPRINT_LEN];
    fp.copy_from_slice(&blob[5..5 + FINGERPRINT_LEN]);
    let mut w = [0u8; WRAPPED_LEN];
    w.copy_from_slice(&blob[5 + FINGERPRINT_LEN..]);
    Ok((fp, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips_and_refuses_others() {
        let fp = [7u8; FINGERPRINT_LEN];
        let w = [9u8; WRAPPED_LEN];
        let b = encode(&fp, &w);
        assert_eq!(b.len(), BLOB_LEN);
        assert_eq!(&b[..5], &[1, 0x0A, 0x21, 0, 0]);
        assert_eq!(decode(&b), Ok((fp, w)));
        for cut in [0, 1, BLOB_LEN - 1] {
            assert!(decode(&b[..cut]).is_err());
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut v2 = b.clone();
        v2[0] = 2;
        assert!(decode(&v2).is_err());
        let mut kw = b.clone();
        kw[1] = 0x09; // CKM_AES_KEY_WRAP (no padding)
        assert!(decode(&kw).is_err());
    }

    #[test]
    fn fingerprint_is_labelled_sha256() {
        let w = [0x5au8; WRAPPED_LEN];
        let mut msg = b"dare-pkcs11-kek-fingerprint\x00\x01\x00\x00\x00".to_vec();
        msg.extend_from_slice(&w);
        assert_eq!(fingerprint(&w)[..], Sha256::digest(&msg)[..8]);
    }
}
