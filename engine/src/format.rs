//! On-disk layout of a dare object, version 1 (specified byte for byte in docs/FORMAT.md).
//!
//! ```text
//! fixed header (24 B) | name | key block | metadata block | chunk 0 | chunk 1 | ... | chunk n-1
//! \________ H: authenticated header _____/
//! ```
//! Every integer is fixed-width little-endian except the chunk index inside the nonce, which
//! is big-endian as in Tink's streaming AEAD. Nothing here is `usize` on disk.
//!
//! The per-chunk nonce is `prefix(7) || index (u32 BE) || marker(1)`: the random per-object
//! prefix stops splicing between objects (each object also has its own data key), the index
//! stops reordering and duplication, and the marker (final / not final / metadata) stops
//! truncation and extension at a chunk boundary. SHA-256(H) is the associated data of every
//! AEAD call, so the name, chunk size and key reference are bound into every tag.

use sha2::{Digest, Sha256};

use dare_envelope::{Envelope, KeyKind};

use crate::error::FormatError;

/// The four magic bytes at offset 0.
pub const MAGIC: [u8; 4] = *b"DARE";
/// The only format version written so far.
pub const VERSION: u8 = 1;
/// Length of the fixed part of the header.
pub const FIXED_LEN: usize = 24;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Length of the random per-object nonce prefix.
pub const PREFIX_LEN: usize = 7;
/// Smallest and largest chunk size exponent (4 KiB ..= 4 MiB).
pub const MIN_CHUNK_SHIFT: u8 = 12;
/// See [`MIN_CHUNK_SHIFT`].
pub const MAX_CHUNK_SHIFT: u8 = 22;
/// Default chunk size exponent (64 KiB).
pub const DEFAULT_CHUNK_SHIFT: u8 = 16;
/// Longest object name, in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest key block, in bytes.
pub const MAX_KEY_BLOCK_LEN: usize = 1024;
/// Longest encoded user metadata (before encryption), in bytes.
pub const MAX_META_LEN: usize = 64 * 1024;
/// Most chunks an object may have: the chunk index is a u32.
pub const MAX_CHUNKS: u64 = 1 << 32;

/// Nonce marker byte: a chunk that is not the last one.
pub const MARKER_CHUNK: u8 = 0x00;
/// Nonce marker byte: the last chunk of the object.
pub const MARKER_FINAL: u8 = 0x01;
/// Nonce marker byte: the user-metadata block.
pub const MARKER_META: u8 = 0x02;

/// How an object's body is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Suite {
    /// Stored in clear (a bucket created with encryption off).
    Plaintext,
    /// Chunked AES-256-GCM, 96-bit nonces, 128-bit tags.
    Aes256Gcm,
}

impl Suite {
    /// The suite id byte stored at offset 5.
    pub fn id(self) -> u8 {
        match self {
            Suite::Plaintext => 0,
            Suite::Aes256Gcm => 1,
        }
    }
    fn from_id(b: u8) -> Option<Self> {
        match b {
            0 => Some(Suite::Plaintext),
            1 => Some(Suite::Aes256Gcm),
            _ => None,
        }
    }
}

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
        check_name(&self.name)?;
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
        check_name(&name)?;
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

/// The 96-bit nonce of chunk `index` (or of the metadata block, with [`MARKER_META`]).
pub fn nonce(prefix: &[u8; PREFIX_LEN], index: u32, marker: u8) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..PREFIX_LEN].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&index.to_be_bytes());
    n[11] = marker;
    n
}

/// Chunk geometry of an encrypted body, derived from its length alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Plaintext chunk size.
    pub chunk_size: u64,
    /// Number of chunks (at least one: an empty object has one empty final chunk).
    pub chunks: u64,
    /// Plaintext length of the object.
    pub plaintext_len: u64,
}

impl Geometry {
    /// Geometry of an AES-GCM body of `body_len` ciphertext bytes. Fails when no valid
    /// object has that body length (e.g. a file cut inside a tag).
    pub fn from_body_len(chunk_shift: u8, body_len: u64) -> Result<Geometry, FormatError> {
        let chunk_size = 1u64 << chunk_shift;
        let stride = chunk_size + TAG_LEN as u64;
        let tag = TAG_LEN as u64;
        if body_len < tag {
            return Err(FormatError::BadLength);
        }
        if body_len == tag {
            return Ok(Geometry {
                chunk_size,
                chunks: 1,
                plaintext_len: 0,
            });
        }
        let chunks = body_len.div_ceil(stride);
        let last = body_len - (chunks - 1) * stride;
        if last <= tag || chunks > MAX_CHUNKS {
            return Err(FormatError::BadLength);
        }
        Ok(Geometry {
            chunk_size,
            chunks,
            plaintext_len: body_len - chunks * tag,
        })
    }

    /// Ciphertext body length for `plaintext_len` bytes (the inverse of `from_body_len`).
    pub fn body_len(chunk_shift: u8, plaintext_len: u64) -> Option<u64> {
        let chunk_size = 1u64 << chunk_shift;
        let chunks = plaintext_len.div_ceil(chunk_size).max(1);
        if chunks > MAX_CHUNKS {
            return None;
        }
        plaintext_len.checked_add(chunks * TAG_LEN as u64)
    }

    /// Offset of chunk `i` within the body.
    pub fn chunk_offset(&self, i: u64) -> u64 {
        i * (self.chunk_size + TAG_LEN as u64)
    }

    /// Plaintext length of chunk `i`.
    pub fn chunk_plain_len(&self, i: u64) -> u64 {
        if i + 1 < self.chunks {
            self.chunk_size
        } else {
            self.plaintext_len - i * self.chunk_size
        }
    }
}

/// Encodes user metadata: count (u16 LE), then per entry key length (u16 LE), key, value
/// length (u16 LE), value.
pub fn encode_meta(meta: &[(String, String)]) -> Result<Vec<u8>, FormatError> {
    let count =
        u16::try_from(meta.len()).map_err(|_| FormatError::Invalid("too many metadata entries"))?;
    let mut out = Vec::new();
    out.extend_from_slice(&count.to_le_bytes());
    for (k, v) in meta {
        if k.is_empty() {
            return Err(FormatError::Invalid("empty metadata key"));
        }
        for s in [k, v] {
            let n = u16::try_from(s.len())
                .map_err(|_| FormatError::Invalid("metadata entry too long"))?;
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    if out.len() > MAX_META_LEN {
        return Err(FormatError::Invalid("user metadata larger than 64 KiB"));
    }
    Ok(out)
}

/// Decodes what [`encode_meta`] wrote; trailing bytes are an error.
pub fn decode_meta(mut b: &[u8]) -> Result<Vec<(String, String)>, FormatError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], FormatError> {
        if b.len() < n {
            return Err(FormatError::Invalid("metadata block truncated"));
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Ok(h)
    }
    fn u16_of(b: &mut &[u8]) -> Result<usize, FormatError> {
        let s = take(b, 2)?;
        Ok(usize::from(u16::from_le_bytes([s[0], s[1]])))
    }
    fn str_of(b: &mut &[u8]) -> Result<String, FormatError> {
        let n = u16_of(b)?;
        let s = take(b, n)?;
        String::from_utf8(s.to_vec()).map_err(|_| FormatError::Invalid("metadata is not UTF-8"))
    }
    let count = u16_of(&mut b)?;
    let mut out = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let k = str_of(&mut b)?;
        if k.is_empty() {
            // encode_meta never writes one: accepting it would make two encodings possible.
            return Err(FormatError::Invalid("empty metadata key"));
        }
        let v = str_of(&mut b)?;
        out.push((k, v));
    }
    if !b.is_empty() {
        return Err(FormatError::Invalid("trailing bytes after metadata"));
    }
    Ok(out)
}

/// Checks an object or bucket name: 1..=1024 bytes of UTF-8 that cannot leave its directory:
/// no `/`, `\`, NUL or other control characters, and not `.` or `..`.
pub fn check_name(name: &str) -> Result<(), FormatError> {
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

fn check_chunk_shift(s: u8) -> Result<(), FormatError> {
    if (MIN_CHUNK_SHIFT..=MAX_CHUNK_SHIFT).contains(&s) {
        Ok(())
    } else {
        Err(FormatError::BadChunkSize)
    }
}

/// Converts a chunk size in bytes to its exponent; it must be a power of two from 4 KiB to 4 MiB.
pub fn chunk_shift_of(size: u64) -> Result<u8, FormatError> {
    if !size.is_power_of_two() {
        return Err(FormatError::BadChunkSize);
    }
    let s = u8::try_from(size.trailing_zeros()).map_err(|_| FormatError::BadChunkSize)?;
    check_chunk_shift(s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_roundtrips_and_rejects_cut_tags() {
        for shift in [12u8, 16] {
            let c = 1u64 << shift;
            for len in [0, 1, c - 1, c, c + 1, 3 * c, 3 * c + 7] {
                let body = Geometry::body_len(shift, len).unwrap();
                let g = Geometry::from_body_len(shift, body).unwrap();
                assert_eq!(g.plaintext_len, len);
                let sum: u64 = (0..g.chunks).map(|i| g.chunk_plain_len(i)).sum();
                assert_eq!(sum, len);
            }
            // A body that ends inside (or right after) the tag of a full chunk plus < 17 bytes.
            for extra in 1..=16 {
                assert_eq!(
                    Geometry::from_body_len(shift, c + 16 + extra),
                    Err(FormatError::BadLength)
                );
            }
            assert_eq!(
                Geometry::from_body_len(shift, 15),
                Err(FormatError::BadLength)
            );
        }
    }

    #[test]
    fn meta_roundtrip() {
        let m = vec![
            ("a".to_string(), "".to_string()),
            ("ключ".to_string(), "v".repeat(300)),
        ];
        assert_eq!(decode_meta(&encode_meta(&m).unwrap()).unwrap(), m);
        assert!(decode_meta(&[1, 0]).is_err());
        assert!(decode_meta(&[0, 0, 9]).is_err());
    }

    /// Found by the `header` fuzz target (docs/FUZZING.md): decode_meta accepted an empty key,
    /// which encode_meta refuses, so an accepted block did not re-encode to itself.
    #[test]
    fn meta_with_empty_key_is_refused() {
        let crash: &[u8] = &[
            4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x15, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0,
            0x2f, 1, 0, 0, 0, 0, 0, 0, 0, b'u', b'e', b'c',
        ];
        assert_eq!(
            decode_meta(crash),
            Err(FormatError::Invalid("empty metadata key"))
        );
        assert!(decode_meta(&[1, 0, 0, 0, 0, 0]).is_err());
        let ok = [1, 0, 1, 0, b'k', 0, 0];
        assert_eq!(
            decode_meta(&ok).unwrap(),
            vec![("k".to_string(), String::new())]
        );
    }

    #[test]
    fn names() {
        for bad in ["", ".", "..", "a/b", "a\0b", "a\\b", ".dare-tmp"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        check_name("photo 2024.jpg").unwrap();
        check_name("..a").unwrap();
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
