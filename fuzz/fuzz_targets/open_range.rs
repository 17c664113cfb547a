#![no_main]
//! Range reads of an edited valid format-2 object: the exact plaintext slice or an error, and
//! only verified chunks reach the sink.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dare_engine::fuzzing::open_range(data));
