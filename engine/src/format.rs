//! The object format (docs/FORMAT.md specifies every byte): what both versions share —
//! chunking, nonces, the metadata encoding, limits — with the version-specific layouts in
//! [`v2`] (written today: a data file named by object id, parameters and envelope in the
//! object table) and [`v1`] (written before foundation v2; still read).
//!
//! Every integer is fixed-width little-endian except the chunk index inside the nonce, which
//! is big-endian as in Tink's streaming AEAD. Nothing here is `usize` on disk.
//!
//! The per-chunk nonce is `prefix(7) || index (u32 BE) || marker(1)`: the random per-object
//! prefix stops splicing between objects (each object also has its own data key), the index
//! stops reordering and duplication, and the marker (final / not final / metadata) stops
//! truncation and extension at a chunk boundary. A 32-byte digest of the object's identity
//! is the associated data of every AEAD call of an object ([`v2::associated_data`]), so a
//! chunk or a whole data file moved to another object, bucket or store fails to verify.

use crate::error::FormatError;

pub mod v1;
pub mod v2;

/// The four magic bytes at offset 0 of every data file (both versions).
pub const MAGIC: [u8; 4] = *b"DARE";
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
    /// Parses a suite id byte; `None` for an unknown suite.
    pub fn from_id(b: u8) -> Option<Self> {
        match b {
            0 => Some(Suite::Plaintext),
            1 => Some(Suite::Aes256Gcm),
            _ => None,
        }
    }
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

/// Checks a chunk size exponent: 12..=22 (4 KiB ..= 4 MiB).
pub fn check_chunk_shift(s: u8) -> Result<(), FormatError> {
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

/// Lower-case hex of bytes (object ids in file names, ETags).
pub fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(char::from(DIGITS[usize::from(x >> 4)]));
        s.push(char::from(DIGITS[usize::from(x & 15)]));
    }
    s
}

/// Checks an object name (format 2): 1..=1024 bytes of UTF-8 — any characters, `/` included,
/// exactly as S3 object keys. Names never become file names (data files are named by object
/// id), so no character needs refusing. Bucket names are checked by the control plane.
pub fn check_object_name(name: &str) -> Result<(), FormatError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(FormatError::BadName("object names must be 1 to 1024 bytes"));
    }
    Ok(())
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
    fn object_names() {
        check_object_name("photos/2026/cat.jpg").unwrap();
        check_object_name(&"é".repeat(512)).unwrap();
        check_object_name("..").unwrap();
        assert!(check_object_name("").is_err());
        assert!(check_object_name(&"a".repeat(1025)).is_err());
    }
}
