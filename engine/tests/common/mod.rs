//! Test support: a minimal key provider (data key wrapped by one root key, RFC 5649).
#![allow(dead_code)]

use dare_keys::{DataKey, Envelope, KeyError, KeyKind, KeyProvider, Secret32, wrap};

pub struct RootKeys(pub Secret32);

impl RootKeys {
    pub fn random() -> Self {
        RootKeys(Secret32::generate("test root").unwrap())
    }
}

impl KeyProvider for RootKeys {
    fn new_data_key(&self) -> Result<(DataKey, Envelope), KeyError> {
        let s = Secret32::generate("data key")?;
        let w = wrap::wrap_key(&self.0, &s);
        Ok((
            DataKey::from_bytes(*s.expose_secret()),
            Envelope {
                kind: KeyKind::StoreRoot,
                bytes: w.to_vec(),
            },
        ))
    }
    fn open_data_key(&self, block: &Envelope) -> Result<DataKey, KeyError> {
        if block.kind != KeyKind::StoreRoot {
            return Err(KeyError::WrongKind {
                expected: 1,
                found: block.kind.to_byte(),
            });
        }
        let s = wrap::unwrap_key(&self.0, &block.bytes, "data key")?;
        Ok(DataKey::from_bytes(*s.expose_secret()))
    }
}

pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
