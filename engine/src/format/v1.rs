//! Object format version 1: one file per object holding an authenticated header (the name
//! and the envelope inside it), the encrypted user metadata and the chunks; written by dare
//! before foundation v2 and still read (docs/FORMAT.md §9). Its associated data is SHA-256 of
//! the header, envelope included, which is why version 2 moved the envelope out: a format-1
//! data key cannot be rewrapped without rewriting the object.
//!
//! ```text
//! fixed header (24 B) | name | key block | metadata block | chunk 0 | chunk 1 | ... | chunk n-1
//! \________ H: authenticated header _____/
//! ```

use sha2::{Digest, Sha256};

use dare_envelope::{Envelope, KeyKind};

use super::{MAGIC, MAX_META_LEN, MAX_NAME_LEN, PREFIX_LEN, Suite, TAG_LEN, check_chunk_shift};
use crate::error::FormatError;

/// The version byte of this layout.
pub const VERSION: u8 = 1;
/// Length of the fixed part of the header.
pub const FIXED_LEN: usize = 24;
/// Longest key block, in bytes.
pub const MAX_KEY_BLOCK_LEN: usize = 1024;

/// The parsed authenticated header of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Body protection.
    pub suite: Suite,
    /// log2 of the chunk size.
    pub chunk_shift: u8,
    /// Random per-object nonce prefix (zero for plaintext objects).
    pub nonce_prefix: [u8; PREFIX_LEN],
    /// The object's name (its key within the bucket), bound into every tag.
    pub name: String,
    /// Wrapped data key and key reference; `None` for plaintext objects.
    pub key_block: Option<Envelope>,
    /// Length of the metadata block that follows the header.
    pub meta_len: u32,
}

impl Header {
    /// Chunk size in bytes.
    pub fn chunk_size(&self) -> u64 {
        1u64 << self.chunk_shift
    }

    /// Length of the authenticated header H (fixed part, name, key block).
    pub fn header_len(&self) -> u64 {
        let kb = self.key_block.as_ref().map_or(0, |k| k.bytes.len());
        (FIXED_LEN + self.name.len() + kb) as u64
    }

    /// Offset of chunk 0 (or of the plaintext body).
    pub fn body_offset(&self) -> u64 {
        self.header_len() + u64::from(self.meta_len)
    }

    /// Serializes H. Fails if a field is out of its limits.
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        check_chunk_shift(self.chunk_shift)?;
        check_name_v1(&self.name)?;
        let (kind, kb): (u8, &[u8]) = match &self.key_block {
            Some(k) => (k.kind.to_byte(), &k.bytes),
            None => (0, &[]),
        };
        match (self.suite, kind) {
            (Suite::Plaintext, 0) => {}
            (Suite::Aes256Gcm, k) if k != 0 => {}
            _ => return Err(FormatError::Invalid("suite and key block disagree")),
        }
        if kb.len() > MAX_KEY_BLOCK_LEN {
            return Err(FormatError::Invalid("key block too long"));
        }
        let mut out = Vec::with_capacity(FIXED_LEN + self.name.len() + kb.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.suite.id());
        out.push(self.chunk_shift);
        out.push(kind);
        out.extend_from_slice(&self.nonce_prefix);
        out.push(0);
        out.extend_from_slice(
            &u16::try_from(self.name.len())
                .unwrap_or(u16::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(&u16::try_from(kb.len()).unwrap_or(u16::MAX).to_le_bytes());
        out.extend_from_slice(&self.meta_len.to_le_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(kb);
        Ok(out)
    }

    /// Parses H from the start of `buf`. Returns the header and its length. If `buf` is too
    /// short, returns [`FormatError::Truncated`] with the total length needed when known.
    pub fn parse(buf: &[u8]) -> Result<(Header, usize), FormatError> {
        let fixed: &[u8; FIXED_LEN] =
            buf.get(..FIXED_LEN)
                .and_then(|s| s.try_into().ok())
                .ok_or(FormatError::Truncated {
                    need: FIXED_LEN as u64,
                })?;
        if fixed[0..4] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        if fixed[4] != VERSION {
            return Err(FormatError::UnsupportedVersion(fixed[4]));
        }
        let suite = Suite::from_id(fixed[5]).ok_or(FormatError::UnknownSuite(fixed[5]))?;
        let chunk_shift = fixed[6];
        check_chunk_shift(chunk_shift)?;
        let kind = fixed[7];
        let mut nonce_prefix = [0u8; PREFIX_LEN];
        nonce_prefix.copy_from_slice(&fixed[8..15]);
        if fixed[15] != 0 {
            return Err(FormatError::Invalid("reserved byte is not zero"));
        }
        let name_len = usize::from(u16::from_le_bytes([fixed[16], fixed[17]]));
        let kb_len = usize::from(u16::from_le_bytes([fixed[18], fixed[19]]));
        let meta_len = u32::from_le_bytes([fixed[20], fixed[21], fixed[22], fixed[23]]);
        if name_len == 0 || name_len > MAX_NAME_LEN {
            return Err(FormatError::Invalid("name length out of range"));
        }
        if kb_len > MAX_KEY_BLOCK_LEN {
            return Err(FormatError::Invalid("key block length out of range"));
        }
        if meta_len as usize > MAX_META_LEN + TAG_LEN {
            return Err(FormatError::Invalid("metadata length out of range"));
        }
        let key_block = match (suite, kind, kb_len) {
            (Suite::Plaintext, 0, 0) => None,
            (Suite::Aes256Gcm, k, _) if k != 0 => {
                Some(KeyKind::from_byte(k).ok_or(FormatError::UnknownKeyKind(k))?)
            }
            _ => return Err(FormatError::Invalid("suite and key block disagree")),
        };
        if suite == Suite::Aes256Gcm && (meta_len as usize) < TAG_LEN + 2 {
            return Err(FormatError::Invalid("metadata block too short"));
        }
        let total = FIXED_LEN + name_len + kb_len;
        let rest = buf
            .get(FIXED_LEN..total)
            .ok_or(FormatError::Truncated { need: total as u64 })?;
        let name = std::str::from_utf8(&rest[..name_len])
            .map_err(|_| FormatError::Invalid("name is not UTF-8"))?
            .to_owned();
        check_name_v1(&name)?;
        let key_block = key_block.map(|kind| Envelope {
            kind,
            bytes: rest[name_len..].to_vec(),
        });
        Ok((
            Header {
                suite,
                chunk_shift,
                nonce_prefix,
                name,
                key_block,
                meta_len,
            },
            total,
        ))
    }
}

/// SHA-256 of the serialized header H: the associated data of every AEAD call of the object.
pub fn header_digest(h: &[u8]) -> [u8; 32] {
    Sha256::digest(h).into()
}

/// Checks an object or bucket name: 1..=1024 bytes of UTF-8 that cannot leave its directory:
/// no `/`, `\`, NUL or other control characters, and not `.` or `..`.
pub fn check_name_v1(name: &str) -> Result<(), FormatError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(FormatError::BadName("must be 1 to 1024 bytes"));
    }
    if name == "." || name == ".." {
        return Err(FormatError::BadName("`.` and `..` are not names"));
    }
    if name.starts_with(".dare") {
        return Err(FormatError::BadName(
            "names starting with `.dare` are reserved",
        ));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(FormatError::BadName(
            "must not contain `/`, `\\`, NUL or control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn names() {
        for bad in ["", ".", "..", "a/b", "a\0b", "a\\b", ".dare-tmp"] {
            assert!(check_name_v1(bad).is_err(), "{bad:?}");
        }
        check_name_v1("photo 2024.jpg").unwrap();
        check_name_v1("..a").unwrap();
    }

    #[test]
    fn header_roundtrip() {
        let h = Header {
            suite: Suite::Aes256Gcm,
            chunk_shift: 16,
            nonce_prefix: [1, 2, 3, 4, 5, 6, 7],
            name: "obj".into(),
            key_block: Some(Envelope {
                kind: KeyKind::StoreRoot,
                bytes: vec![9; 40],
            }),
            meta_len: 18,
        };
        let b = h.to_bytes().unwrap();
        assert_eq!(b.len(), 24 + 3 + 40);
        let (p, n) = Header::parse(&b).unwrap();
        assert_eq!((p, n), (h, b.len()));
        assert!(matches!(
            Header::parse(&b[..30]),
            Err(FormatError::Truncated { need: 67 })
        ));
        let mut v = b.clone();
        v[4] = 2;
        assert_eq!(Header::parse(&v), Err(FormatError::UnsupportedVersion(2)));
    }
}
