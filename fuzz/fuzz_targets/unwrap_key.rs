#![no_main]
//! RFC 5649 unwrap accepts only a correct wrapping of a 32-byte key.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dare_keys::fuzzing::unwrap_key_target(data));
