//! Entry points for the cargo-fuzz target `kms_ciphertext` (fuzz/). Each asserts a property,
//! not only "no panic".

use dare_keys::Secret32;

use crate::ciphertext::{self, Context, Purpose};
use crate::import;

const STORE: [u8; 16] = [0x5a; 16];
const KEY_ID: &str = "0b7c2d9e-3f41-4a8b-9c6d-1e2f3a4b5c6d";
const NONCE: [u8; 12] = [0x24; 12];

fn material() -> Secret32 {
    Secret32::from_bytes("fuzz CMK material", [0x33; 32])
}

fn context() -> Context {
    let mut c = Context::new();
    c.insert("dare:bucket".into(), "fuzz".into());
    c
}

/// Byte 0 picks the mode.
/// - 0: the rest is a ciphertext. Parsing never panics; it opens under the fuzz key only if
///   it is byte for byte the sealing of what it opens to (nothing else is accepted).
/// - 1: the rest is a list of edits `(position, xor)` applied to a correct ciphertext, then
///   a cut length: it opens exactly when the edits and the cut changed nothing.
/// - 2: the rest is an import token: it checks only if it is byte for byte the token its
///   fields make.
pub fn kms_ciphertext(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let m = material();
    let ctx = context();
    match mode % 3 {
        0 => {
            let header = ciphertext::parse_header(rest);
            if let Ok(pt) = ciphertext::open(&STORE, rest, &m, &ctx) {
                let h = header.expect("opened a ciphertext whose header does not parse");
                let nonce: [u8; 12] = rest[22..34].try_into().expect("12");
                let again = ciphertext::seal_with_nonce(
                    &STORE, h.purpose, &h.key_id, h.version, &m, &pt, &ctx, nonce,
                )
                .expect("reseal");
                assert_eq!(again, rest, "opened bytes that are not a sealing");
            }
        }
        1 => {
            let good = ciphertext::seal_with_nonce(
                &STORE,
                Purpose::BucketKey,
                KEY_ID,
                3,
                &m,
                &[0x77; 32],
                &ctx,
                NONCE,
            )
            .expect("seal");
            let mut ct = good.clone();
            let mut it = rest.chunks_exact(2);
            for e in it.by_ref() {
                let pos = usize::from(e[0]) % ct.len();
                ct[pos] ^= e[1];
            }
            if let [cut] = it.remainder() {
                let keep = usize::from(*cut) % (ct.len() + 1);
                ct.truncate(keep);
            }
            let opened = ciphertext::open(&STORE, &ct, &m, &ctx);
            assert_eq!(
                opened.is_ok(),
                ct == good,
                "edited ciphertext opened, or intact refused"
            );
            if let Ok(pt) = opened {
                assert_eq!(&pt[..], &[0x77; 32][..]);
            }
        }
        _ => {
            let k = Secret32::from_bytes("fuzz import key", [0x44; 32]);
            if let Ok(t) = import::check_token(&k, rest) {
                assert_eq!(
                    import::make_token(&k, &t.key_id, &t.token_id, t.expires_ms),
                    rest,
                    "accepted a token its fields do not make"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn seeds_hold_the_properties() {
        super::kms_ciphertext(&[1]);
        super::kms_ciphertext(&[1, 5, 1]);
        super::kms_ciphertext(&[1, 60]);
        super::kms_ciphertext(&[0, 1, 2, 3]);
        super::kms_ciphertext(&[2; 90]);
    }
}
