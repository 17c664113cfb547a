//! Entry points for cargo-fuzz targets (fuzz/). Each asserts a property, not only "no panic".

use crate::Secret32;
use crate::wrap::{WRAPPED_LEN, unwrap_key as unwrap, wrap_key};

/// Arbitrary bytes as a format-1 key store file (the legacy reader of [`crate::legacy`]):
/// either a typed error, or a table that survives an encode/decode round trip unchanged.
pub fn keystore_load(data: &[u8]) {
    crate::legacy::fuzz_roundtrip(data);
}

/// The first 32 bytes are a KEK, the rest a wrapped key. Only a 40-byte input can unwrap,
/// and whatever unwraps must wrap back to exactly the input (so only correctly wrapped
/// 32-byte keys are accepted).
pub fn unwrap_key(data: &[u8]) {
    if data.len() < 32 {
        return;
    }
    let mut k = [0u8; 32];
    k.copy_from_slice(&data[..32]);
    let kek = Secret32::from_bytes("fuzz kek", k);
    let wrapped = &data[32..];
    if let Ok(key) = unwrap(&kek, wrapped, "fuzz key") {
        assert_eq!(
            wrapped.len(),
            WRAPPED_LEN,
            "accepted a wrapped key of the wrong length"
        );
        assert_eq!(
            &wrap_key(&kek, &key)[..],
            wrapped,
            "unwrapped key does not wrap back"
        );
    }
}

/// `keystore_load` target (the format-1 reader used by the one-time import). Byte 0 bit 0
/// picks the mode: 0, the rest is a store file
/// (arbitrary, or a real one cut or edited by the fuzzer); 1, the rest is a table body, framed
/// here with a correct header and checksum so that the JSON and the table invariants are
/// reached. Properties: [`keystore_load`]'s, plus no strict prefix of a valid file is valid
/// (a torn write is always noticed) and every error has a message.
pub fn keystore_file(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        frame_store_body(rest)
    };
    keystore_load(&file);
    match crate::legacy::check_v1_file(&file) {
        Ok(()) => {
            for cut in [file.len() - 1, file.len() / 2, 52, 51, 0] {
                assert!(
                    crate::legacy::check_v1_file(&file[..cut]).is_err(),
                    "a valid store cut to {cut} bytes still loads"
                );
            }
        }
        Err(e) => assert!(!e.to_string().is_empty(), "error without a message"),
    }
}

/// A format-1 store file (KEYS.md §6.1 of format 1) around `body`: magic, version, length,
/// SHA-256 checksum.
pub fn frame_store_body(body: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut out = Vec::with_capacity(52 + body.len());
    out.extend_from_slice(b"DAREKEYS");
    out.extend_from_slice(&crate::legacy::FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let mut h = Sha256::new();
    h.update(&out);
    h.update(body);
    out.extend_from_slice(&h.finalize());
    out.extend_from_slice(body);
    out
}

/// `unwrap_key` target. Byte 0 bit 0 picks the mode: 0, the rest goes to [`unwrap_key`]; 1,
/// the rest is a KEK (32 bytes), a key (32 bytes) and edits (pairs of bytes: xor a byte,
/// truncate, or append) applied to the correct wrapping of that key. The edited bytes must
/// unwrap if and only if they are still the correct wrapping, and then to exactly the key;
/// another KEK never unwraps them.
pub fn unwrap_key_target(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        return unwrap_key(rest);
    }
    if rest.len() < 64 {
        return;
    }
    let (mut k, mut d) = ([0u8; 32], [0u8; 32]);
    k.copy_from_slice(&rest[..32]);
    d.copy_from_slice(&rest[32..64]);
    let kek = Secret32::from_bytes("fuzz kek", k);
    let key = Secret32::from_bytes("fuzz key", d);
    let good = wrap_key(&kek, &key);
    let mut w = good.to_vec();
    for e in rest[64..].chunks(2) {
        let (a, b) = (e[0], e.get(1).copied().unwrap_or(0));
        match a >> 6 {
            0 if !w.is_empty() => {
                let i = usize::from(a) % w.len();
                w[i] ^= b;
            }
            1 => w.truncate(usize::from(b) % (w.len() + 1)),
            2 => w.push(b),
            _ => {}
        }
    }
    match unwrap(&kek, &w, "fuzz key") {
        Ok(got) => {
            assert!(w == good, "accepted an edited wrapping");
            assert!(got == key, "unwrapped to another key");
        }
        Err(e) => assert!(w != good, "refused a correct wrapping: {e}"),
    }
    k[0] ^= 1;
    let other = Secret32::from_bytes("fuzz kek", k);
    assert!(unwrap(&other, &w, "k").is_err(), "another KEK unwrapped it");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_entry_points_accept_junk() {
        keystore_load(b"");
        keystore_load(b"DAREKEYS\x01\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff");
        keystore_load(&[0u8; 100]);
        unwrap_key(&[0u8; 72]);
        unwrap_key(&[0u8; 40]);
        let kek = Secret32::from_bytes("k", [7; 32]);
        let mut d = vec![7u8; 32];
        d.extend_from_slice(&wrap_key(&kek, &Secret32::from_bytes("x", [9; 32])));
        unwrap_key(&d);
    }

    #[test]
    fn target_modes() {
        keystore_file(b"");
        keystore_file(b"\x01{}");
        keystore_file(b"\x01");
        let mut good = vec![1u8];
        good.extend_from_slice(&[3; 64]);
        unwrap_key_target(&good);
        good.extend_from_slice(&[5, 0x80, 0x40, 3, 0x80, 1]);
        unwrap_key_target(&good);
        unwrap_key_target(&[0; 41]);
    }
}
