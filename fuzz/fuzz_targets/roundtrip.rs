#![no_main]
//! The format-2 sealer then the opener give back plaintext and metadata on every backend; the
//! sealer's output is the reference encoding.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dare_engine::fuzzing::roundtrip(data));
