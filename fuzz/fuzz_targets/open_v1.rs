#![no_main]
//! A format-1 object, raw or an edited valid one: the exact plaintext or an error (docs/FUZZING.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| dare_engine::fuzzing::open_v1(data));
