//! `PkcsRoot` against a real SoftHSM2 token, one token directory and one process per test
//! (`dare_testkit::softhsm::isolated`): round trips, the blob layout against an independent
//! RFC 5649, tampered blobs and blobs of another key, and every refusal at open.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use aes_kw::KeyInit;
use cryptoki::context::Pkcs11;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use dare_hsm::blob::{self, BLOB_LEN};
use dare_hsm::{HsmConfig, HsmError, Pin, PkcsRoot, create_key, uri_of};
use dare_keys::{KeyError, RootOfTrust, Secret32};
use dare_testkit::softhsm::{self, KeySpec, SoftHsm, Token};

fn config(token: &str, key: &str) -> HsmConfig {
    HsmConfig {
        module: softhsm::module(),
        token: token.to_string(),
        key: key.to_string(),
    }
}

fn pin(t: &Token) -> Pin {
    Pin::new(t.pin.as_bytes()).unwrap()
}

/// A token `dare` with the key `dare-root` dare accepts.
fn token_with_key(hsm: &SoftHsm) -> Token {
    let t = hsm.init_token("dare");
    hsm.create_key(&t, &KeySpec::good("dare-root"));
    t
}

fn open_err(cfg: &HsmConfig, pin: &Pin) -> HsmError {
    match PkcsRoot::open(cfg, pin) {
        Ok(r) => panic!("opened {r:?}"),
        Err(e) => e,
    }
}

/// A read-only session on the token labelled `label`, through the module this process has
/// initialised already.
fn session(label: &str) -> cryptoki::session::Session {
    let ctx = Pkcs11::new(softhsm::module()).unwrap();
    let slot = ctx
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == label)
        .unwrap();
    ctx.open_ro_session(slot).unwrap()
}

/// The session objects the process can see (wrap and unwrap leave none behind).
fn session_objects() -> usize {
    let s = session("dare");
    s.find_objects(&[Attribute::Token(false)]).unwrap().len()
}

#[test]
fn round_trip() {
    let Some(hsm) = softhsm::isolated("round_trip") else {
        return;
    };
    let t = token_with_key(&hsm);
    let root = Arc::new(PkcsRoot::open(&config("dare", "dare-root"), &pin(&t)).unwrap());
    assert_eq!(
        root.describe(),
        "pkcs11:token=dare;object=dare-root;type=secret-key"
    );
    let mk = Secret32::generate("mk").unwrap();
    let b = root.wrap_master(&mk).unwrap();
    assert_eq!(b.len(), BLOB_LEN);
    assert_eq!(b[0], 1);
    assert_eq!(&b[1..5], &0x210Au32.to_le_bytes());
    assert_eq!(&b[5..13], &root.fingerprint());
    assert_eq!(root.unwrap_master(&b).unwrap(), mk);
    // KWP is deterministic: the same key under the same KEK wraps to the same blob.
    assert_eq!(root.wrap_master(&mk).unwrap(), b);
    assert_ne!(
        root.wrap_master(&Secret32::generate("mk").unwrap())
            .unwrap(),
        b
    );
    // Another root on the same key (a later process, a second handle) opens the blob.
    let again = PkcsRoot::open(&config("dare", "dare-root"), &pin(&t)).unwrap();
    assert_eq!(again.fingerprint(), root.fingerprint());
    assert_eq!(again.unwrap_master(&b).unwrap(), mk);
    // One root, several threads.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let root = root.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let k = Secret32::generate("k").unwrap();
                    let b = root.wrap_master(&k).unwrap();
                    assert_eq!(root.unwrap_master(&b).unwrap(), k);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Every short-lived session object was destroyed.
    assert_eq!(session_objects(), 0);
    let dbg = format!("{root:?}");
    assert!(dbg.contains("dare-root") && !dbg.contains(&t.pin), "{dbg}");
}

/// The blob is the layout KEYS.md §5.4 gives: the HSM's CKM_AES_KEY_WRAP_PAD output is RFC
/// 5649 (checked against the `aes-kw` crate with a KEK of known value), and the fingerprint
/// is the labelled SHA-256 of the wrap of 32 zero bytes.
#[test]
fn blob_is_rfc5649_behind_the_documented_header() {
    let Some(hsm) = softhsm::isolated("blob_is_rfc5649_behind_the_documented_header") else {
        return;
    };
    let t = hsm.init_token("dare");
    let kek = [0x42u8; 32];
    hsm.create_key(
        &t,
        &KeySpec {
            value: Some(kek.to_vec()),
            ..KeySpec::good("known")
        },
    );
    let root = PkcsRoot::open(&config("dare", "known"), &pin(&t)).unwrap();
    let kwp = aes_kw::KwpAes256::new(&kek.into());
    let wrap = |k: &[u8; 32]| {
        let mut out = [0u8; 40];
        kwp.wrap_key(k, &mut out).unwrap();
        out
    };
    let mk = Secret32::generate("mk").unwrap();
    let b = root.wrap_master(&mk).unwrap();
    let fp = blob::fingerprint(&wrap(&[0u8; 32]));
    assert_eq!(root.fingerprint(), fp);
    assert_eq!(b, blob::encode(&fp, &wrap(mk.expose_secret())));
    // A blob made outside the HSM by the spec alone opens in it.
    let k2 = [0x17u8; 32];
    let outside = blob::encode(&fp, &wrap(&k2));
    assert_eq!(root.unwrap_master(&outside).unwrap().expose_secret(), &k2);
}

/// Every byte flipped and every cut is refused, and never yields a key.
#[test]
fn tampered_blob_refused() {
    let Some(hsm) = softhsm::isolated("tampered_blob_refused") else {
        return;
    };
    let t = token_with_key(&hsm);
    let root = PkcsRoot::open(&config("dare", "dare-root"), &pin(&t)).unwrap();
    let b = root
        .wrap_master(&Secret32::generate("mk").unwrap())
        .unwrap();
    for i in 0..b.len() {
        let mut x = b.clone();
        x[i] ^= 0x01;
        match root.unwrap_master(&x) {
            Err(KeyError::Malformed(_)) if i < 5 => {}
            Err(KeyError::WrongRootKey) if i >= 5 => {}
            other => panic!("byte {i} flipped: {other:?}"),
        }
    }
    for n in [0, 1, 5, 13, BLOB_LEN - 1] {
        assert!(matches!(
            root.unwrap_master(&b[..n]),
            Err(KeyError::Malformed(_))
        ));
    }
    let mut longer = b.clone();
    longer.push(0);
    assert!(matches!(
        root.unwrap_master(&longer),
        Err(KeyError::Malformed(_))
    ));
    assert_eq!(session_objects(), 0);
}

#[test]
fn blob_of_another_key_refused() {
    let Some(hsm) = softhsm::isolated("blob_of_another_key_refused") else {
        return;
    };
    let t = token_with_key(&hsm);
    hsm.create_key(&t, &KeySpec::good("other"));
    let a = PkcsRoot::open(&config("dare", "dare-root"), &pin(&t)).unwrap();
    let b = PkcsRoot::open(&config("dare", "other"), &pin(&t)).unwrap();
    assert_ne!(a.fingerprint(), b.fingerprint());
    let blob_a = a.wrap_master(&Secret32::generate("mk").unwrap()).unwrap();
    // Refused by the fingerprint, before the HSM is asked ...
    assert_eq!(b.unwrap_master(&blob_a), Err(KeyError::WrongRootKey));
    // ... and by the HSM's RFC 5649 integrity check when the fingerprint is forged.
    let mut forged = blob_a.clone();
    forged[5..13].copy_from_slice(&b.fingerprint());
    assert_eq!(b.unwrap_master(&forged), Err(KeyError::WrongRootKey));
    assert_eq!(session_objects(), 0);
}

#[test]
fn wrong_pin_refused() {
    let Some(hsm) = softhsm::isolated("wrong_pin_refused") else {
        return;
    };
    let t = token_with_key(&hsm);
    let cfg = config("dare", "dare-root");
    let wrong = format!("{}x", t.pin);
    let e = open_err(&cfg, &Pin::new(wrong.as_bytes()).unwrap());
    assert!(matches!(e, HsmError::PinIncorrect { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("refused the PIN"), "{msg}");
    assert!(!msg.contains(&t.pin) && !format!("{e:?}").contains(&t.pin));
    PkcsRoot::open(&cfg, &pin(&t)).unwrap();
}

#[test]
fn missing_token_or_key_refused() {
    let Some(hsm) = softhsm::isolated("missing_token_or_key_refused") else {
        return;
    };
    let t = token_with_key(&hsm);
    let e = open_err(&config("nope", "dare-root"), &pin(&t));
    assert!(
        matches!(&e, HsmError::TokenNotFound { found, .. } if found == &["dare".to_string()]),
        "{e:?}"
    );
    assert!(e.to_string().contains("tokens found: \"dare\""), "{e}");
    let e = open_err(&config("dare", "nope"), &pin(&t));
    assert!(matches!(e, HsmError::KeyNotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("dare hsm init-key"), "{e}");
}

/// A key that can leave the HSM, is not AES-256, may not wrap and unwrap, or shares its label
/// is refused at open, each with its own error.
#[test]
fn unsafe_keys_refused() {
    let Some(hsm) = softhsm::isolated("unsafe_keys_refused") else {
        return;
    };
    let t = hsm.init_token("dare");
    let make = |label: &str, f: &dyn Fn(&mut KeySpec)| {
        let mut s = KeySpec::good(label);
        f(&mut s);
        hsm.create_key(&t, &s);
    };
    make("extractable", &|s| s.extractable = true);
    make("not-sensitive", &|s| s.sensitive = false);
    make("aes-128", &|s| s.len = 16);
    make("generic", &|s| s.key_type = KeyType::GENERIC_SECRET);
    make("no-wrap", &|s| s.wrap = false);
    make("no-unwrap", &|s| s.unwrap = false);
    make("twice", &|_| {});
    make("twice", &|_| {});
    let e = |key: &str| open_err(&config("dare", key), &pin(&t));
    let uri = |key: &str| uri_of("dare", key);
    assert!(
        matches!(e("extractable"), HsmError::KeyExtractable { uri: u } if u == uri("extractable"))
    );
    assert!(e("extractable").to_string().contains("CKA_EXTRACTABLE"));
    assert!(matches!(
        e("not-sensitive"),
        HsmError::KeyNotSensitive { .. }
    ));
    assert!(e("not-sensitive").to_string().contains("CKA_SENSITIVE"));
    let x = e("aes-128");
    assert!(x.to_string().contains("a 128-bit AES key"), "{x}");
    let x = e("generic");
    assert!(matches!(x, HsmError::KeyWrongType { .. }), "{x:?}");
    assert!(x.to_string().contains("CKK_GENERIC_SECRET"), "{x}");
    assert!(matches!(
        e("no-wrap"),
        HsmError::KeyUsage {
            attribute: "CKA_WRAP",
            ..
        }
    ));
    assert!(matches!(
        e("no-unwrap"),
        HsmError::KeyUsage {
            attribute: "CKA_UNWRAP",
            ..
        }
    ));
    assert!(matches!(
        e("twice"),
        HsmError::KeyAmbiguous { count: 2, .. }
    ));
}

#[test]
fn create_key_makes_a_key_that_never_leaves() {
    let Some(hsm) = softhsm::isolated("create_key_makes_a_key_that_never_leaves") else {
        return;
    };
    let t = hsm.init_token("dare");
    let cfg = config("dare", "made-by-dare");
    let root = create_key(&cfg, &pin(&t)).unwrap();
    let mk = Secret32::generate("mk").unwrap();
    assert_eq!(
        root.unwrap_master(&root.wrap_master(&mk).unwrap()).unwrap(),
        mk
    );
    let e = create_key(&cfg, &pin(&t)).unwrap_err();
    assert!(matches!(e, HsmError::KeyExists { .. }), "{e:?}");
    // Its attributes, as the token reports them.
    let s = session("dare");
    let h = s
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"made-by-dare".to_vec()),
        ])
        .unwrap();
    assert_eq!(h.len(), 1);
    let attrs = s
        .get_attributes(
            h[0],
            &[
                AttributeType::Token,
                AttributeType::Extractable,
                AttributeType::Sensitive,
                AttributeType::NeverExtractable,
                AttributeType::AlwaysSensitive,
                AttributeType::Private,
                AttributeType::Encrypt,
                AttributeType::Decrypt,
                AttributeType::Wrap,
                AttributeType::Unwrap,
            ],
        )
        .unwrap();
    let want = [
        Attribute::Token(true),
        Attribute::Extractable(false),
        Attribute::Sensitive(true),
        Attribute::NeverExtractable(true),
        Attribute::AlwaysSensitive(true),
        Attribute::Private(true),
        Attribute::Encrypt(false),
        Attribute::Decrypt(false),
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
    ];
    assert_eq!(attrs, want);
}

/// A module that cannot be loaded, or that another user could replace, is refused before any
/// of its code runs.
#[test]
fn bad_modules_refused() {
    let p = Pin::new("1234").unwrap();
    let mut cfg = config("dare", "dare-root");
    cfg.module = PathBuf::from("/nonexistent/libpkcs11.so");
    let e = open_err(&cfg, &p);
    assert!(matches!(e, HsmError::ModuleLoad { .. }), "{e:?}");
    assert!(e.to_string().contains("apt-get install softhsm2"), "{e}");

    let d = tempfile::tempdir().unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o700)).unwrap();
    let copy = d.path().join("libsofthsm2.so");
    fs::copy(softhsm::module(), &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o666)).unwrap();
    cfg.module = copy.clone();
    let e = open_err(&cfg, &p);
    assert!(matches!(e, HsmError::File(_)), "{e:?}");
    assert!(e.to_string().contains("chmod go-w"), "{e}");
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let e = open_err(&cfg, &p);
    assert!(e.to_string().contains("PKCS#11 module directory"), "{e}");
    fs::set_permissions(d.path(), fs::Permissions::from_mode(0o700)).unwrap();
}
