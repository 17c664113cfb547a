//! The format-2 open targets, `open_object` and `open_range`: a fixed valid object (data file
//! and row) or a raw one, edited in its data file, row, identity or key, then opened.

use dare_envelope::DataKey;

use super::{
    FUZZ_DATA_KEY, FixedObject, Input, OTHER_DATA_KEY, RefIdentity, Row, batch_bytes, borrow,
    edit_file, fixed_identity, fixed_object, reference,
};
use crate::backend::AeadBackend;
use crate::error::OpenError;
use crate::format::v2;
use crate::format::{PREFIX_LEN, Suite, TAG_LEN};
use crate::pipeline;
use crate::seal::ObjectOpener;

/// Which data key the reader hands the opener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyChoice {
    /// The object's own.
    Right,
    /// Another object's (a substituted envelope).
    Other,
    /// None.
    Missing,
}

/// A format-2 object as a reader sees it: identity, data file, row, and the key it holds.
#[derive(Debug, Clone)]
struct Case {
    id: RefIdentity,
    file: Vec<u8>,
    row: Row,
    key: KeyChoice,
}

impl Case {
    fn of(f: &FixedObject) -> Case {
        Case {
            id: f.id.clone(),
            file: f.file.clone(),
            row: f.row.clone(),
            key: KeyChoice::Right,
        }
    }

    /// Applies an edit program: opcodes 0–5 edit the data file ([`edit_file`]); 6–14 edit the
    /// row (metadata block bytes or length, size, nonce prefix, chunk shift, suite, ETag), the
    /// identity (store, bucket, object id, name) or the data key handed over.
    fn edit(&mut self, stride: usize, edits: &[u8]) {
        let mut r = Input(edits);
        while let Some(op) = r.u8() {
            let op = op % 15;
            if op < 6 {
                edit_file(&mut self.file, op, &mut r, v2::HEADER_LEN, stride);
                continue;
            }
            let (a, b) = (r.u8().unwrap_or(0), r.u8().unwrap_or(1));
            let row = &mut self.row;
            match op {
                6 if !row.meta_block.is_empty() => {
                    let i = usize::from(a) % row.meta_block.len();
                    row.meta_block[i] ^= b | 1;
                }
                7 if a & 0x80 != 0 => row
                    .meta_block
                    .truncate(usize::from(b) % (row.meta_block.len() + 1)),
                7 => row
                    .meta_block
                    .extend_from_slice(r.take(usize::from(b % 32))),
                8 => {
                    row.size ^= u64::from(u16::from_le_bytes([a, b])) << (r.u8().unwrap_or(0) % 56)
                }
                9 => row.nonce_prefix[usize::from(a) % PREFIX_LEN] ^= b | 1,
                10 => row.chunk_shift = a,
                11 => {
                    row.suite = match row.suite {
                        Suite::Plaintext => Suite::Aes256Gcm,
                        _ => Suite::Plaintext,
                    }
                }
                12 if b < 0x80 && !row.etag.is_empty() => {
                    let i = usize::from(a) % row.etag.len();
                    if row.etag.is_char_boundary(i) && row.etag.is_char_boundary(i + 1) {
                        row.etag.replace_range(i..i + 1, &char::from(b).to_string());
                    }
                }
                12 => {
                    row.etag = format!(
                        "{:08x}",
                        u32::from_le_bytes([a, b, r.u8().unwrap_or(0), r.u8().unwrap_or(0)])
                    )
                }
                13 => match a % 4 {
                    0 => self.id.store_id[usize::from(b) % 16] ^= b | 1,
                    1 => self.id.bucket_id ^= u64::from(b | 1),
                    2 => self.id.object_id[usize::from(b) % 16] ^= b | 1,
                    _ if b & 0x80 != 0 => {
                        self.id.name.pop();
                    }
                    _ => self.id.name.push(char::from(b)),
                },
                14 => {
                    self.key = match a % 3 {
                        0 => KeyChoice::Other,
                        1 => KeyChoice::Missing,
                        _ => KeyChoice::Right,
                    }
                }
                _ => {}
            }
        }
    }

    fn data_key(&self) -> Option<DataKey> {
        match self.key {
            KeyChoice::Right => Some(DataKey::from_bytes(FUZZ_DATA_KEY)),
            KeyChoice::Other => Some(DataKey::from_bytes(OTHER_DATA_KEY)),
            KeyChoice::Missing => None,
        }
    }

    fn opener(&self, backend: AeadBackend) -> Result<ObjectOpener, OpenError> {
        let dk = self.data_key();
        ObjectOpener::new(&borrow(&self.id), &self.row.params(), dk.as_ref(), backend)
    }

    /// Everything the opener checks is as in `f`: the data file (its body through the tags
    /// and the file length, its 32 header bytes by comparison with the row), the metadata
    /// block, suite, chunk shift, nonce prefix, size, identity and data key. Only the ETag of
    /// an encrypted object is not among them (reads do not use it).
    fn checked_parts_unchanged(&self, f: &FixedObject) -> bool {
        self.file == f.file
            && self.row.meta_block == f.row.meta_block
            && (
                self.row.suite,
                self.row.chunk_shift,
                self.row.nonce_prefix,
                self.row.size,
            ) == (
                f.row.suite,
                f.row.chunk_shift,
                f.row.nonce_prefix,
                f.row.size,
            )
            && self.id == f.id
            && self.key == KeyChoice::Right
    }

    /// The content an object whose row says "in clear" holds: its data file after the header.
    fn clear_body(&self) -> &[u8] {
        self.file.get(v2::HEADER_LEN..).unwrap_or_default()
    }
}

/// After `c` opened to `(pt, meta)`: its data file and metadata block are exactly what the
/// reference encoder makes of that plaintext and metadata under its identity, row parameters
/// and data key (for an object in clear: no key), header included; and in clear, the ETag is
/// the CRC-32C of the plaintext. So nothing accepted is unauthenticated (encrypted),
/// inconsistent (clear) or a file that names another object.
fn assert_canonical(c: &Case, pt: &[u8], meta: &[(String, String)]) {
    assert_eq!(
        c.row.size,
        pt.len() as u64,
        "accepted: size is not the plaintext length"
    );
    let dk = c.data_key();
    let key = match c.row.suite {
        Suite::Plaintext => {
            let crc = u32::from_str_radix(&c.row.etag, 16)
                .ok()
                .filter(|_| c.row.etag.len() == 8);
            assert_eq!(
                crc,
                Some(crc32c::crc32c(pt)),
                "accepted clear object: CRC-32C"
            );
            None
        }
        _ => Some(
            dk.as_ref()
                .expect("accepted encrypted object without a key")
                .expose_secret(),
        ),
    };
    let r = reference::seal_v2(&c.id, key, c.row.chunk_shift, &c.row.nonce_prefix, meta, pt)
        .expect("accepted object cannot be re-encoded");
    assert!(r.file == c.file, "accepted: data file is not canonical");
    assert!(
        r.meta_block == c.row.meta_block,
        "accepted: metadata block is not canonical"
    );
}

type Opened = Result<(Vec<u8>, Vec<(String, String)>), String>;

fn open_case(c: &Case, backend: AeadBackend, batch: usize) -> Opened {
    let o = c.opener(backend).map_err(|e| format!("{e:?}"))?;
    let pt = pipeline::open_from_slice(&o, &c.file, batch).map_err(|e| format!("{e:?}"))?;
    Ok((pt, o.meta().to_vec()))
}

/// The raw-mode layout of an `open_object` input after its first byte: suite, chunk shift,
/// nonce prefix (7), size (u64 LE), object id (16), metadata block length (u16 LE) and bytes,
/// ETag length (u8) and bytes, name length (u8) and bytes, then the data file. The store and
/// bucket are fixed object 0's; the data key is [`FUZZ_DATA_KEY`].
pub fn encode_raw_case(f: &FixedObject) -> Vec<u8> {
    let mut out = vec![f.row.suite.id(), f.row.chunk_shift];
    out.extend_from_slice(&f.row.nonce_prefix);
    out.extend_from_slice(&f.row.size.to_le_bytes());
    out.extend_from_slice(&f.id.object_id);
    out.extend_from_slice(
        &u16::try_from(f.row.meta_block.len())
            .unwrap_or(0)
            .to_le_bytes(),
    );
    out.extend_from_slice(&f.row.meta_block);
    out.push(u8::try_from(f.row.etag.len()).unwrap_or(0));
    out.extend_from_slice(f.row.etag.as_bytes());
    out.push(u8::try_from(f.id.name.len()).unwrap_or(0));
    out.extend_from_slice(f.id.name.as_bytes());
    out.extend_from_slice(&f.file);
    out
}

fn decode_raw_case(data: &[u8]) -> Option<Case> {
    let mut r = Input(data);
    let suite = Suite::from_id(r.u8()?)?;
    let chunk_shift = r.u8()?;
    let nonce_prefix: [u8; PREFIX_LEN] = r.take(PREFIX_LEN).try_into().ok()?;
    let size = r.u64()?;
    let mut id = fixed_identity(0);
    id.object_id = r.take(16).try_into().ok()?;
    let n = usize::from(r.u16()?);
    let meta_block = r.take(n).to_vec();
    let n = usize::from(r.u8()?);
    let etag = String::from_utf8_lossy(r.take(n)).into_owned();
    let n = usize::from(r.u8()?);
    id.name = String::from_utf8_lossy(r.take(n)).into_owned();
    let row = Row {
        suite,
        chunk_shift,
        nonce_prefix,
        size,
        meta_block,
        etag,
    };
    Some(Case {
        id,
        file: r.0.to_vec(),
        row,
        key: KeyChoice::Right,
    })
}

/// `open_object` target. Byte 0 with bit 7 set: the rest is a raw object (data file and row,
/// [`encode_raw_case`]). Otherwise byte 0 picks a fixed object, byte 1 the batch size, and the
/// rest is an edit program (`Case::edit`) over its data file, row, identity and key.
/// Properties: every backend gives the same result; an accepted object is canonical
/// (`assert_canonical`, data file header included); an edited object whose row says encrypted
/// is accepted only if everything the opener checks — the data file (body, length and the
/// header it compares with the row), metadata block, suite, chunk shift, nonce prefix, size,
/// identity, data key — is unchanged, and then opens to exactly its plaintext and metadata
/// (an edited ETag may be accepted: reads do not use it); an unchanged object is never
/// refused.
pub fn open_object(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (case, fixed, batch) = if mode & 0x80 != 0 {
        let Some(c) = decode_raw_case(rest) else {
            return;
        };
        (c, None, batch_bytes(mode, 4096 + TAG_LEN))
    } else {
        let f = fixed_object(mode);
        let (&b, edits) = rest.split_first().unwrap_or((&0, &[]));
        let mut c = Case::of(f);
        c.edit(f.stride, edits);
        (c, Some(f), batch_bytes(b, f.stride))
    };
    let mut first: Option<Opened> = None;
    for backend in AeadBackend::available() {
        let r = open_case(&case, backend, batch);
        match &r {
            Ok((pt, meta)) => {
                assert_canonical(&case, pt, meta);
                if let Some(f) = fixed
                    && case.row.suite != Suite::Plaintext
                {
                    assert!(
                        case.checked_parts_unchanged(f),
                        "{backend}: accepted an edited object"
                    );
                    assert!(
                        *pt == f.plaintext && *meta == f.meta,
                        "{backend}: wrong plaintext"
                    );
                }
            }
            Err(e) => {
                if let Some(f) = fixed {
                    let unchanged =
                        case.file == f.file && case.row == f.row && case.checked_parts_unchanged(f);
                    assert!(!unchanged, "{backend}: refused a valid object: {e}");
                }
            }
        }
        match &first {
            None => first = Some(r),
            Some(f0) => assert!(
                *f0 == r,
                "{backend} disagrees with {}",
                AeadBackend::available()[0]
            ),
        }
    }
}

/// `open_range` target. Byte 0 picks a fixed object (low bits) and batch size (bits 3–4); then
/// offset and length (small, relative to the object, or with bit 6 of byte 0 arbitrary u64s);
/// the rest is an edit program (`Case::edit`). Properties: a range read returns exactly the
/// content's slice or an error (the content: the plaintext, or the stored body of a row that
/// says "in clear"); a valid range of an unchanged object is never refused and an invalid range
/// always is; through the streaming reader, whatever reaches the sink before an error is
/// genuine content from the requested offset on (only verified chunks are released).
pub fn open_range(data: &[u8]) {
    let mut r = Input(data);
    let sel = r.u8().unwrap_or(0);
    let f = fixed_object(sel);
    let batch = batch_bytes(sel >> 3, f.stride);
    let size = f.plaintext.len() as u64;
    let (offset, len) = if sel & 0x40 != 0 {
        (r.u64().unwrap_or(0), r.u64().unwrap_or(0))
    } else {
        let span = size + 2;
        (
            u64::from(r.u16().unwrap_or(0)) % span,
            u64::from(r.u16().unwrap_or(1)) % span,
        )
    };
    let mut case = Case::of(f);
    case.edit(f.stride, r.0);
    let unchanged = case.file == f.file && case.row == f.row && case.checked_parts_unchanged(f);
    let valid = offset
        .checked_add(len)
        .is_some_and(|e| len > 0 && e <= size);
    let content: &[u8] = if case.row.suite == Suite::Plaintext {
        case.clear_body()
    } else {
        &f.plaintext
    };
    let model = offset
        .checked_add(len)
        .filter(|&e| len > 0 && e <= content.len() as u64)
        .map(|e| &content[offset as usize..e as usize]);
    // Chunks are released one by one as they verify, so a failing read may have delivered a
    // prefix; it must be genuine content at the requested position.
    let released = usize::try_from(offset)
        .ok()
        .and_then(|o| content.get(o..))
        .unwrap_or_default();
    for backend in AeadBackend::available() {
        let Ok(opener) = case.opener(backend) else {
            assert!(!unchanged, "{backend}: refused the row of a valid object");
            continue;
        };
        match pipeline::open_range_from_slice(&opener, &case.file, offset, len, batch) {
            Ok(v) => assert!(
                Some(v.as_slice()) == model,
                "{backend}: wrong range plaintext"
            ),
            Err(e) if unchanged => {
                assert!(!valid, "{backend}: refused a valid range: {e}");
                assert!(
                    matches!(
                        e,
                        OpenError::EmptyRange | OpenError::RangeOutOfBounds { .. }
                    ),
                    "{backend}: invalid range gave {e:?}"
                );
            }
            Err(_) => {}
        }
        // The streaming reader is built only for a file of the right length and header.
        if opener.check_file_len(case.file.len() as u64).is_err()
            || opener.check_file_header(&case.file).is_err()
        {
            continue;
        }
        // Shared, so that ranges of several slots take the overlapped path (crypto workers).
        let shared = std::sync::Arc::new(opener);
        let mut got = Vec::new();
        let res = pipeline::open_range_pipelined(
            &shared,
            Some(&shared),
            case.file.as_slice(),
            offset,
            len,
            batch,
            &mut |p| {
                got.extend_from_slice(p);
                Ok(())
            },
        );
        match res {
            Ok(()) => assert!(
                Some(got.as_slice()) == model,
                "{backend}: sink got wrong data"
            ),
            Err(_) => assert!(
                released.starts_with(&got),
                "{backend}: sink got unverified data"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each row, identity and data file header edit is refused for an encrypted object (the
    /// header as a mismatch with the row); ETag edits are accepted with the original plaintext.
    #[test]
    fn every_row_edit_of_an_encrypted_object_is_refused() {
        let f = fixed_object(3);
        let edits: &[&[u8]] = &[
            &[6, 0, 1],
            &[7, 0x80, 3],
            &[7, 0, 1, 0],
            &[8, 1, 0, 0],
            &[9, 3, 1],
            &[10, 13, 0],
            &[11, 0, 0],
            &[13, 0, 1],
            &[13, 1, 1],
            &[13, 2, 1],
            &[13, 3, b'x'],
            &[13, 3, 0x80],
            &[14, 0, 0],
            &[14, 1, 0],
        ];
        for e in edits {
            let mut c = Case::of(f);
            c.edit(f.stride, e);
            assert!(!c.checked_parts_unchanged(f), "{e:?}");
            for b in AeadBackend::available() {
                assert!(
                    open_case(&c, b, 1 << 20).is_err(),
                    "{b}: edit {e:?} accepted"
                );
            }
        }
        for at in [0u8, 4, 9, 30, 31] {
            let mut c = Case::of(f);
            c.edit(f.stride, &[0, at, 0, 0x10]);
            let r = open_case(&c, AeadBackend::Portable, 1 << 20);
            assert!(
                matches!(&r, Err(e) if e.contains("HeaderMismatch")),
                "header byte {at}: {r:?}"
            );
        }
        for e in [&[12u8, 0, b'0'][..], &[12, 0, 0x80, 1, 2]] {
            let mut c = Case::of(f);
            c.edit(f.stride, e);
            assert!(c.checked_parts_unchanged(f), "{e:?}");
            let (pt, _) = open_case(&c, AeadBackend::Portable, 1 << 20).expect("ETag edit");
            assert_eq!(pt, f.plaintext);
        }
    }
}
