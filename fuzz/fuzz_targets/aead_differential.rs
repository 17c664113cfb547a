#![no_main]
//! Every engine AES-256-GCM backend against RustCrypto aes-gcm: same ciphertext, tag and verdict,
//! through every open (partial opens for range reads included).

libfuzzer_sys::fuzz_target!(|data: &[u8]| dare_fuzz::aead_differential(data));
