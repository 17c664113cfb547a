//! Independent, deterministic encoders of both object formats, written from docs/FORMAT.md
//! (format 2: §2 header, §3 associated data, §4 nonces, §5 metadata block, §6 chunks, §7 ETag;
//! format 1: §9) with RustCrypto `aes-gcm`, `sha2` and `crc32c` called directly. Nothing here
//! goes through the engine's backends, batching, nonce or associated-data helpers (format 1
//! reuses only the header serializer, which the `header` target checks), so when the sealer's
//! output equals theirs, the sealer writes the documented format.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use sha2::{Digest, Sha256};

use crate::format::v1;

/// A format-2 object as the reference writes it: its data file and the row fields it implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefObject {
    /// The data file: 32-byte header, then the chunks (or the plaintext, in clear).
    pub file: Vec<u8>,
    /// The row's user-metadata block.
    pub meta_block: Vec<u8>,
    /// The row's ETag.
    pub etag: String,
}

/// The identity fields the associated data binds (owned, so fuzz edits can change them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefIdentity {
    /// Store id.
    pub store_id: [u8; 16],
    /// Bucket id.
    pub bucket_id: u64,
    /// Object id.
    pub object_id: [u8; 16],
    /// Object name.
    pub name: String,
}

fn nonce(prefix: &[u8; 7], i: u32, marker: u8) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&i.to_be_bytes());
    n[11] = marker;
    n
}

fn gcm(key: &[u8; 32], nonce: &[u8; 12], ad: &[u8], data: &mut [u8]) -> [u8; 16] {
    Aes256Gcm::new(key.into())
        .encrypt_inout_detached(nonce.into(), ad, data.into())
        .map(Into::into)
        .unwrap_or([0; 16])
}

/// The user-metadata encoding (count, then key length, key, value length, value; u16 LE), or
/// `None` where the format refuses: an empty key, more than 65535 entries or bytes in a field,
/// more than 64 KiB in all.
pub fn encode_meta(meta: &[(String, String)]) -> Option<Vec<u8>> {
    let mut out = u16::try_from(meta.len()).ok()?.to_le_bytes().to_vec();
    for (k, v) in meta {
        if k.is_empty() {
            return None;
        }
        for s in [k, v] {
            out.extend_from_slice(&u16::try_from(s.len()).ok()?.to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
    }
    (out.len() <= 64 * 1024).then_some(out)
}

/// Chunks of `pt` (at least one), each sealed with `nonce(prefix, i, 1 if last else 0)` and
/// followed by its tag; and the tags.
fn chunks(
    key: &[u8; 32],
    prefix: &[u8; 7],
    ad: &[u8],
    shift: u8,
    pt: &[u8],
) -> Option<(Vec<u8>, Vec<[u8; 16]>)> {
    let c = 1usize << shift;
    let n = pt.len().div_ceil(c).max(1);
    let (mut out, mut tags) = (Vec::with_capacity(pt.len() + 16 * n), Vec::with_capacity(n));
    for i in 0..n {
        let start = out.len();
        out.extend_from_slice(&pt[i * c..pt.len().min((i + 1) * c)]);
        let marker = u8::from(i + 1 == n);
        let tag = gcm(
            key,
            &nonce(prefix, u32::try_from(i).ok()?, marker),
            ad,
            &mut out[start..],
        );
        out.extend_from_slice(&tag);
        tags.push(tag);
    }
    Some((out, tags))
}

/// Format 2: the object `id` with chunk size `2^shift`, nonce prefix `prefix` (ignored in
/// clear), `meta` and plaintext `pt`, encrypted under `key` or (`None`) in clear. `None` when
/// the format cannot hold it (name, chunk size, metadata).
pub fn seal_v2(
    id: &RefIdentity,
    key: Option<&[u8; 32]>,
    shift: u8,
    prefix: &[u8; 7],
    meta: &[(String, String)],
    pt: &[u8],
) -> Option<RefObject> {
    if !(12..=22).contains(&shift) || id.name.is_empty() || id.name.len() > 1024 {
        return None;
    }
    let mut meta_block = encode_meta(meta)?;
    let suite = u8::from(key.is_some());
    let prefix = if key.is_some() { *prefix } else { [0; 7] };
    let mut file = Vec::with_capacity(32 + pt.len() + 16 * (pt.len() >> shift) + 16);
    file.extend_from_slice(b"DARE");
    file.extend_from_slice(&[2, suite, shift, 0]);
    file.extend_from_slice(&id.object_id);
    file.extend_from_slice(&prefix);
    file.push(0);
    let Some(key) = key else {
        file.extend_from_slice(pt);
        let etag = format!("{:08x}", crc32c::crc32c(pt));
        return Some(RefObject {
            file,
            meta_block,
            etag,
        });
    };
    let mut ad = Sha256::new();
    ad.update(b"dare/v2/object\0");
    ad.update(id.store_id);
    ad.update(id.bucket_id.to_le_bytes());
    ad.update(id.object_id);
    ad.update([suite, shift]);
    ad.update(prefix);
    ad.update(u16::try_from(id.name.len()).ok()?.to_le_bytes());
    ad.update(id.name.as_bytes());
    let ad = ad.finalize();
    let tag = gcm(key, &nonce(&prefix, 0, 2), &ad, &mut meta_block);
    meta_block.extend_from_slice(&tag);
    let (body, tags) = chunks(key, &prefix, &ad, shift, pt)?;
    file.extend_from_slice(&body);
    let mut e = Sha256::new();
    e.update(b"dare/v2/etag\0");
    for t in &tags {
        e.update(t);
    }
    let etag = e.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Some(RefObject {
        file,
        meta_block,
        etag,
    })
}

/// Format 1: the object with header `h` (its `meta_len` is recomputed), data key `key`
/// (`None` for a plaintext object), `meta` and `pt`. `None` when a field is out of its limits.
pub fn seal_v1(
    h: &v1::Header,
    key: Option<&[u8; 32]>,
    meta: &[(String, String)],
    pt: &[u8],
) -> Option<Vec<u8>> {
    let mut meta_block = encode_meta(meta)?;
    let mut h = h.clone();
    let tag_len = if key.is_some() { 16 } else { 0 };
    h.meta_len = u32::try_from(meta_block.len() + tag_len).ok()?;
    let mut out = h.to_bytes().ok()?;
    let Some(key) = key else {
        out.extend_from_slice(&meta_block);
        out.extend_from_slice(pt);
        return Some(out);
    };
    let ad: [u8; 32] = Sha256::digest(&out).into();
    let tag = gcm(key, &nonce(&h.nonce_prefix, 0, 2), &ad, &mut meta_block);
    out.extend_from_slice(&meta_block);
    out.extend_from_slice(&tag);
    out.extend_from_slice(&chunks(key, &h.nonce_prefix, &ad, h.chunk_shift, pt)?.0);
    Some(out)
}
