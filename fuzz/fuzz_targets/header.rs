#![no_main]
//! The format-2 data file header and the format-1 header round-trip through parse/to_bytes;
//! metadata and chunk geometry codecs are exact inverses.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dare_engine::fuzzing::header(data));
