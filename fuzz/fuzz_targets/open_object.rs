#![no_main]
//! A stored object, raw or an edited valid one: the exact plaintext or an error (docs/FUZZING.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| dare_engine::fuzzing::open_object(data));
