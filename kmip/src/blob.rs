//! The blob a [`crate::KmipRoot`] returns for each key it protects (docs/KEYS.md §5.5):
//!
//! ```text
//! version     u8      = 1
//! cluster_len u8      1..=64
//! cluster     [cluster_len]   the cluster's name (ASCII)
//! uid_len     u8      1..=128
//! uid         [uid_len]       the KMIP Unique Identifier of the key server key (UTF-8)
//! nonce       [12]    the AES-GCM nonce
//! tag         [16]    the AES-GCM tag
//! ciphertext  [32]    AES-256-GCM(key server key, nonce, aad = header, the 32-byte key)
//! ```
//!
//! `header` (the additional data) is every byte before `nonce`, so the key server refuses a
//! blob whose cluster or uid was changed.

/// The blob format byte.
pub const VERSION: u8 = 1;
/// The longest Unique Identifier accepted.
pub const MAX_UID: usize = 128;

/// A decoded blob, borrowing from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blob<'a> {
    /// The cluster's name.
    pub cluster: &'a str,
    /// The key's Unique Identifier.
    pub uid: &'a str,
    /// The nonce.
    pub nonce: &'a [u8; 12],
    /// The tag.
    pub tag: &'a [u8; 16],
    /// The ciphertext.
    pub ciphertext: &'a [u8],
    header: &'a [u8],
}

impl Blob<'_> {
    /// The additional data the key server authenticates: the header bytes.
    pub fn aad(&self) -> Vec<u8> {
        self.header.to_vec()
    }
}

fn header(cluster: &str, uid: &str) -> Result<Vec<u8>, &'static str> {
    if cluster.is_empty() || cluster.len() > 64 {
        return Err("the cluster name is not 1 to 64 bytes");
    }
    if uid.is_empty() || uid.len() > MAX_UID {
        return Err("the key server returned a Unique Identifier that is not 1 to 128 bytes");
    }
    let mut h = Vec::with_capacity(3 + cluster.len() + uid.len());
    h.push(VERSION);
    h.push(cluster.len() as u8);
    h.extend_from_slice(cluster.as_bytes());
    h.push(uid.len() as u8);
    h.extend_from_slice(uid.as_bytes());
    Ok(h)
}

/// The additional data for a key of `cluster` with Unique Identifier `uid` (empty when they
/// cannot form a blob; [`encode`] then refuses).
pub fn aad(cluster: &str, uid: &str) -> Vec<u8> {
    header(cluster, uid).unwrap_or_default()
}

/// Encodes a blob.
pub fn encode(
    cluster: &str,
    uid: &str,
    nonce: &[u8; 12],
    tag: &[u8; 16],
    ciphertext: &[u8],
) -> Result<Vec<u8>, &'static str> {
    if ciphertext.len() != 32 {
        return Err("the key server returned a ciphertext that is not 32 bytes");
    }
    let mut out = header(cluster, uid)?;
    out.extend_from_slice(nonce);
    out.extend_from_slice(tag);
    out.extend_from_slice(ciphertext);
    Ok(out)
}

/// Decodes a blob; the whole input must be one blob.
pub fn decode(b: &[u8]) -> Result<Blob<'_>, &'static str> {
    const NOT: &str = "not a version-1 KMIP key blob";
    let (&v, rest) = b.split_first().ok_or(NOT)?;
    if v != VERSION {
        return Err(NOT);
    }
    let (&cl, rest) = rest.split_first().ok_or(NOT)?;
    let cl = cl as usize;
    if !(1..=64).contains(&cl) || rest.len() < cl {
        return Err(NOT);
    }
    let (cluster, rest) = rest.split_at(cl);
    let cluster = std::str::from_utf8(cluster).map_err(|_| NOT)?;
    let (&ul, rest) = rest.split_first().ok_or(NOT)?;
    let ul = ul as usize;
    if !(1..=MAX_UID).contains(&ul) || rest.len() != ul + 12 + 16 + 32 {
        return Err(NOT);
    }
    let (uid, rest) = rest.split_at(ul);
    let uid = std::str::from_utf8(uid).map_err(|_| NOT)?;
    let (nonce, rest) = rest.split_at(12);
    let (tag, ciphertext) = rest.split_at(16);
    let header_len = 3 + cl + ul;
    Ok(Blob {
        cluster,
        uid,
        nonce: nonce.try_into().map_err(|_| NOT)?,
        tag: tag.try_into().map_err(|_| NOT)?,
        ciphertext,
        header: &b[..header_len],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_refusals() {
        let b = encode("kmip-a", "17", &[1; 12], &[2; 16], &[3; 32]).unwrap();
        assert_eq!(b.len(), 3 + 6 + 2 + 60);
        let d = decode(&b).unwrap();
        assert_eq!((d.cluster, d.uid), ("kmip-a", "17"));
        assert_eq!(d.aad(), aad("kmip-a", "17"));
        assert_eq!(d.aad(), b[..11].to_vec());
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err());
        }
        let mut long = b.clone();
        long.push(0);
        assert!(decode(&long).is_err());
        let mut v = b.clone();
        v[0] = 2;
        assert!(decode(&v).is_err());
        assert!(encode("", "1", &[0; 12], &[0; 16], &[0; 32]).is_err());
        assert!(encode("a", "1", &[0; 12], &[0; 16], &[0; 31]).is_err());
    }
}
