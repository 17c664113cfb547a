//! Shared code of the fuzz targets: the AES-GCM reference model (RustCrypto `aes-gcm`, kept
//! here, outside the engine, so that it stays independent of the backends it judges). Every
//! other property lives next to the code it checks, in `dare_engine::fuzzing` and
//! `dare_keys::fuzzing`.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use dare_engine::AeadBackend;
use dare_engine::raw::{RawAead, aead_open, aead_seal};

/// `aead_differential` target. Input: key (32), nonce (12), AAD length (1), tamper mode (1),
/// tamper position (2), then AAD and message. Every backend in `AeadBackend::available()`
/// (so new kernels join automatically) must produce the reference ciphertext and tag, open
/// what it sealed through every API (a partial open, `open_part`, included: same verdict,
/// and the part's plaintext), and agree with the reference on accepting or rejecting
/// a tampered input; a rejected open leaves only zeros in its output.
pub fn aead_differential(data: &[u8]) {
    if data.len() < 48 {
        return;
    }
    let key: [u8; 32] = data[..32].try_into().unwrap();
    let nonce: [u8; 12] = data[32..44].try_into().unwrap();
    let (aad_len, mode) = (usize::from(data[44]), data[45]);
    let pos = usize::from(u16::from_le_bytes([data[46], data[47]]));
    let rest = &data[48..];
    let (aad, msg) = rest.split_at(aad_len.min(rest.len()));

    let reference = Aes256Gcm::new(&key.into());
    let mut ref_ct = msg.to_vec();
    let ref_tag: [u8; 16] = reference
        .encrypt_inout_detached(&nonce.into(), aad, ref_ct.as_mut_slice().into())
        .expect("message within the GCM limit")
        .into();

    // The tampered input: one bit of ciphertext, tag, AAD or nonce, or a shorter ciphertext.
    let (mut t_ct, mut t_tag, mut t_aad, mut t_nonce) =
        (ref_ct.clone(), ref_tag, aad.to_vec(), nonce);
    let bit = 1u8 << (mode >> 5);
    match mode % 6 {
        0 => {}
        1 if !t_ct.is_empty() => t_ct[pos % ref_ct.len()] ^= bit,
        2 if !t_aad.is_empty() => t_aad[pos % aad.len()] ^= bit,
        3 => t_nonce[pos % 12] ^= bit,
        4 if !t_ct.is_empty() => {
            t_ct.pop();
        }
        _ => t_tag[pos % 16] ^= bit,
    }
    let mut ref_pt = t_ct.clone();
    let ref_ok = reference
        .decrypt_inout_detached(
            &t_nonce.into(),
            &t_aad,
            ref_pt.as_mut_slice().into(),
            &t_tag.into(),
        )
        .is_ok();
    assert_eq!(ref_ok, mode % 6 == 0, "reference verdict");

    for backend in AeadBackend::available() {
        let raw = RawAead::new(backend, &key);
        let mut ct = msg.to_vec();
        let tag = raw.seal_in_place(&nonce, aad, &mut ct);
        assert!(ct == ref_ct, "{backend}: ciphertext differs from aes-gcm");
        assert_eq!(tag, ref_tag, "{backend}: tag differs from aes-gcm");
        let mut ct2 = msg.to_vec();
        assert_eq!(
            aead_seal(backend, &key, &nonce, aad, &mut ct2),
            ref_tag,
            "{backend}: aead_seal"
        );
        assert!(ct2 == ref_ct, "{backend}: aead_seal ciphertext");

        let mut buf = t_ct.clone();
        let ok = raw.open_in_place(&t_nonce, &t_aad, &mut buf, &t_tag);
        assert_eq!(
            ok, ref_ok,
            "{backend}: open_in_place verdict differs from aes-gcm"
        );
        let mut out = vec![0xa5; t_ct.len()];
        let ok_to = raw.open_to(&t_nonce, &t_aad, &t_ct, &mut out, &t_tag);
        assert_eq!(
            ok_to, ref_ok,
            "{backend}: open_to verdict differs from aes-gcm"
        );
        let mut buf2 = t_ct.clone();
        let ok_fn = aead_open(backend, &key, &t_nonce, &t_aad, &mut buf2, &t_tag);
        assert_eq!(
            ok_fn, ref_ok,
            "{backend}: aead_open verdict differs from aes-gcm"
        );
        if ref_ok {
            assert!(
                buf == msg && out == msg && buf2 == msg,
                "{backend}: wrong plaintext"
            );
        } else {
            for b in [&buf, &out, &buf2] {
                assert!(
                    b.iter().all(|&x| x == 0),
                    "{backend}: rejected open left data behind"
                );
            }
        }

        // A partial open (range reads): same verdict as a full open; on success the part is
        // the plaintext, on failure the whole buffer is zeros.
        let n = t_ct.len();
        let a = pos % (n + 1);
        let b = a + (pos / 7 + usize::from(mode)) % (n + 1 - a);
        let mut part_buf = t_ct.clone();
        let ok_part = raw.open_part(&t_nonce, &t_aad, &mut part_buf, &t_tag, a..b);
        assert_eq!(
            ok_part, ref_ok,
            "{backend}: open_part verdict differs from aes-gcm"
        );
        if ref_ok {
            assert!(part_buf[a..b] == msg[a..b], "{backend}: open_part plaintext");
        } else {
            assert!(
                part_buf.iter().all(|&x| x == 0),
                "{backend}: rejected open_part left data behind"
            );
        }
    }
}
