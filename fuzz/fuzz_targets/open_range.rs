#![no_main]
//! Range reads of an edited valid object: the exact plaintext slice or an error.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dare_engine::fuzzing::open_range(data));
