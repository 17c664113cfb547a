#![no_main]
//! seal_to_vec then open_from_slice gives back plaintext and metadata; the sealer matches the reference.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dare_engine::fuzzing::roundtrip(data));
