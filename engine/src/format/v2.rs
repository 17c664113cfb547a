//! Object format version 2 (docs/FORMAT.md §2–§6): the data file holds a 32-byte header and
//! the chunks; everything needed to decrypt it — the envelope (wrapped data key and its key
//! reference), the nonce prefix, the size and the encrypted user metadata — is in the
//! object's row of the object table. The associated data of every AEAD call binds the
//! object's *identity* (store, bucket, object id, name) and its parameters, not the envelope,
//! so an envelope can be rewrapped under another key without touching the data, and a
//! substituted envelope can only yield a wrong data key, which fails the first tag.
//!
//! ```text
//! data file: header (32 B) | chunk 0 | chunk 1 | ... | chunk n-1
//! ```

use sha2::{Digest, Sha256};

use super::{MAGIC, PREFIX_LEN, Suite, check_chunk_shift, check_object_name};
use crate::error::FormatError;

/// The version byte of this layout.
pub const VERSION: u8 = 2;
/// Length of the data file header; chunk 0 starts here.
pub const HEADER_LEN: usize = 32;
/// Domain-separation label of the associated data.
pub const AD_LABEL: &[u8] = b"dare/v2/object";
/// Domain-separation label of the ETag of encrypted objects.
pub const ETAG_LABEL: &[u8] = b"dare/v2/etag";

/// Who an object is: everything its associated data binds besides its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectIdentity<'a> {
    /// The store's random id (store row).
    pub store_id: [u8; 16],
    /// The bucket's id.
    pub bucket_id: u64,
    /// The object's random id, which also names its data file.
    pub object_id: [u8; 16],
    /// The object's name within the bucket.
    pub name: &'a str,
}

/// The data file header: magic, version, suite, chunk size, object id and nonce prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Body protection.
    pub suite: Suite,
    /// log2 of the chunk size.
    pub chunk_shift: u8,
    /// The object id the file was written for.
    pub object_id: [u8; 16],
    /// The random nonce prefix (zero in clear).
    pub nonce_prefix: [u8; PREFIX_LEN],
}

impl FileHeader {
    /// The 32 stored bytes:
    /// `"DARE" || 0x02 || suite || chunk_shift || 0x00 || object_id[16] || nonce_prefix[7] || 0x00`.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = self.suite.id();
        b[6] = self.chunk_shift;
        b[8..24].copy_from_slice(&self.object_id);
        b[24..31].copy_from_slice(&self.nonce_prefix);
        b
    }

    /// Parses the first [`HEADER_LEN`] bytes of a data file.
    pub fn parse(b: &[u8]) -> Result<FileHeader, FormatError> {
        let b: &[u8; HEADER_LEN] =
            b.get(..HEADER_LEN)
                .and_then(|s| s.try_into().ok())
                .ok_or(FormatError::Truncated {
                    need: HEADER_LEN as u64,
                })?;
        if b[0..4] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        if b[4] != VERSION {
            return Err(FormatError::UnsupportedVersion(b[4]));
        }
        let suite = Suite::from_id(b[5]).ok_or(FormatError::UnknownSuite(b[5]))?;
        check_chunk_shift(b[6])?;
        if b[7] != 0 || b[31] != 0 {
            return Err(FormatError::Invalid("reserved byte is not zero"));
        }
        let mut object_id = [0u8; 16];
        object_id.copy_from_slice(&b[8..24]);
        let mut nonce_prefix = [0u8; PREFIX_LEN];
        nonce_prefix.copy_from_slice(&b[24..31]);
        if suite == Suite::Plaintext && nonce_prefix != [0; PREFIX_LEN] {
            return Err(FormatError::Invalid(
                "a plaintext object has a nonce prefix",
            ));
        }
        Ok(FileHeader {
            suite,
            chunk_shift: b[6],
            object_id,
            nonce_prefix,
        })
    }
}

/// The associated data of every AEAD call of a format-2 object (the user-metadata block and
/// every chunk), FORMAT.md §4:
///
/// ```text
/// AD = SHA-256( "dare/v2/object" || 0x00 || store_id[16] || u64le(bucket_id) || object_id[16]
///               || u8(suite) || u8(chunk_shift) || nonce_prefix[7]
///               || u16le(len(name)) || name )
/// ```
/// All fields but the name have fixed widths and the name is length-prefixed, so two
/// different identities never hash the same input.
pub fn associated_data(
    id: &ObjectIdentity<'_>,
    suite: Suite,
    chunk_shift: u8,
    nonce_prefix: &[u8; PREFIX_LEN],
) -> Result<[u8; 32], FormatError> {
    check_object_name(id.name)?;
    check_chunk_shift(chunk_shift)?;
    let name_len = u16::try_from(id.name.len())
        .map_err(|_| FormatError::BadName("object names must be 1 to 1024 bytes"))?;
    let mut h = Sha256::new();
    h.update(AD_LABEL);
    h.update([0u8]);
    h.update(id.store_id);
    h.update(id.bucket_id.to_le_bytes());
    h.update(id.object_id);
    h.update([suite.id(), chunk_shift]);
    h.update(nonce_prefix);
    h.update(name_len.to_le_bytes());
    h.update(id.name.as_bytes());
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_refusals() {
        let h = FileHeader {
            suite: Suite::Aes256Gcm,
            chunk_shift: 16,
            object_id: [7; 16],
            nonce_prefix: [1, 2, 3, 4, 5, 6, 7],
        };
        let b = h.to_bytes();
        assert_eq!(&b[..8], b"DARE\x02\x01\x10\x00");
        assert_eq!(FileHeader::parse(&b), Ok(h));
        for (i, v, e) in [
            (0, b'X', FormatError::BadMagic),
            (4, 3, FormatError::UnsupportedVersion(3)),
            (5, 9, FormatError::UnknownSuite(9)),
            (6, 11, FormatError::BadChunkSize),
            (7, 1, FormatError::Invalid("reserved byte is not zero")),
            (31, 1, FormatError::Invalid("reserved byte is not zero")),
        ] {
            let mut t = b;
            t[i] = v;
            assert_eq!(FileHeader::parse(&t), Err(e), "byte {i}");
        }
        assert!(matches!(
            FileHeader::parse(&b[..31]),
            Err(FormatError::Truncated { need: 32 })
        ));
        let mut clear = b;
        clear[5] = 0;
        assert!(FileHeader::parse(&clear).is_err(), "clear with a prefix");
    }

    /// The associated data is exactly the documented byte string, and every field matters.
    #[test]
    fn associated_data_is_as_documented() {
        let id = ObjectIdentity {
            store_id: [1; 16],
            bucket_id: 0x0102_0304_0506_0708,
            object_id: [2; 16],
            name: "a/b",
        };
        let prefix = [3u8; 7];
        let mut msg = b"dare/v2/object\0".to_vec();
        msg.extend_from_slice(&[1; 16]);
        msg.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        msg.extend_from_slice(&[2; 16]);
        msg.extend_from_slice(&[1, 16]);
        msg.extend_from_slice(&prefix);
        msg.extend_from_slice(&3u16.to_le_bytes());
        msg.extend_from_slice(b"a/b");
        let want: [u8; 32] = Sha256::digest(&msg).into();
        let ad = associated_data(&id, Suite::Aes256Gcm, 16, &prefix).unwrap();
        assert_eq!(ad, want);
        let variants = [
            ObjectIdentity {
                store_id: [9; 16],
                ..id
            },
            ObjectIdentity { bucket_id: 9, ..id },
            ObjectIdentity {
                object_id: [9; 16],
                ..id
            },
            ObjectIdentity { name: "a/c", ..id },
        ];
        for v in variants {
            assert_ne!(
                associated_data(&v, Suite::Aes256Gcm, 16, &prefix).unwrap(),
                ad
            );
        }
        assert_ne!(
            associated_data(&id, Suite::Plaintext, 16, &prefix).unwrap(),
            ad
        );
        assert_ne!(
            associated_data(&id, Suite::Aes256Gcm, 12, &prefix).unwrap(),
            ad
        );
        assert_ne!(
            associated_data(&id, Suite::Aes256Gcm, 16, &[4; 7]).unwrap(),
            ad
        );
        let long = "x".repeat(1025);
        assert!(
            associated_data(
                &ObjectIdentity { name: &long, ..id },
                Suite::Aes256Gcm,
                16,
                &prefix
            )
            .is_err()
        );
    }
}
