#![no_main]
//! Key store file bytes: a typed error or a table that round-trips.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dare_keys::fuzzing::keystore_file(data));
