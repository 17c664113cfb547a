#![no_main]
//! KMIP responses (docs/KEYS.md §5.5): the bounded TTLV decoder accepts only canonical
//! encodings (what it accepts re-encodes to the same bytes), the response parser never panics
//! for any operation, and the KMIP root's blob decoder accepts only what its encoder makes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    use dare_kmip::message::{Operation, parse_response};
    use dare_kmip::{blob, ttlv};
    if let Ok(item) = ttlv::decode(data) {
        let mut out = Vec::new();
        ttlv::encode(&item, &mut out);
        assert_eq!(out, data, "a decoded message re-encodes to other bytes");
    }
    for op in [
        Operation::Create,
        Operation::Query,
        Operation::Activate,
        Operation::Revoke,
        Operation::Destroy,
        Operation::Encrypt,
        Operation::Decrypt,
    ] {
        // Either a payload or a typed error; the message of a failure is one line.
        if let Err(e) = parse_response(data, op) {
            assert!(!e.to_string().contains('\n'));
        }
    }
    if let Ok(b) = blob::decode(data) {
        let again = blob::encode(b.cluster, b.uid, b.nonce, b.tag, b.ciphertext).unwrap();
        assert_eq!(again, data, "a decoded blob re-encodes to other bytes");
        assert_eq!(b.aad(), data[..3 + b.cluster.len() + b.uid.len()].to_vec());
    }
});
