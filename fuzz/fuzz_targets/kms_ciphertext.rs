#![no_main]
//! KMS ciphertexts (KMS.md §4) and import tokens (§5.2): only exact sealings open, every edit
//! or cut of a sealing is refused, only tokens their own fields make are accepted.

libfuzzer_sys::fuzz_target!(|data: &[u8]| dare_kms::fuzzing::kms_ciphertext(data));
