#![no_main]
//! A format-2 object (data file and row), raw or a valid one with edits to its data file, row,
//! identity or key: the exact plaintext or an error (docs/FUZZING.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| dare_engine::fuzzing::open_object(data));
