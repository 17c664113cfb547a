#![no_main]
//! Header::parse round-trips through to_bytes; metadata and chunk geometry codecs are exact inverses.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dare_engine::fuzzing::header(data));
