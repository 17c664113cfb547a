//! The control plane's rekey (docs/KEYS.md §8.3): a store made on its root key file moves to
//! a passphrase through `Dare::open_with_target`, `start_rekey` and `run_rekey`; objects
//! written before, and during (a put between start and run), read after it with the new root
//! alone; the old root's options are refused with the error that names what to pass; an SSE-KMS
//! customer master key keeps working (its material is protected by keys derived from the RT
//! data key, which a rekey keeps); a second rekey back to the key file works too.

use dare::{Dare, Error, GetOptions, Options, PutOptions, Root, RotationOptions};
use zeroize::Zeroizing;

fn passphrase(p: &str) -> Options {
    Options {
        root: Root::Passphrase(Zeroizing::new(p.as_bytes().to_vec())),
        ..Options::default()
    }
}

fn get(d: &Dare, name: &str) -> Vec<u8> {
    d.get("bkt", name, &GetOptions::default())
        .unwrap()
        .to_vec()
        .unwrap()
}

#[test]
fn rekey_key_file_to_passphrase_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let d = Dare::create(&store, 4096, &Options::default()).unwrap();
    d.create_bucket("bkt", "default", None).unwrap();
    let data: Vec<u8> = (0..30_000u32).map(|i| (i * 13) as u8).collect();
    d.put(
        "bkt",
        "before",
        &mut data.as_slice(),
        &PutOptions::default(),
    )
    .unwrap();
    let cmk = d
        .kms()
        .create_key("rekey-cmk", "", dare_kms::KmsOrigin::Generated)
        .unwrap();
    let ctx = dare_kms::Context::new();
    let sealed = d
        .kms()
        .encrypt(&cmk.key_id, b"kept across rekeys", &ctx)
        .unwrap();
    drop(d);

    let target = Root::Passphrase(Zeroizing::new(b"a passphrase for the rekey".to_vec()));
    let d = Dare::open_with_target(&store, &Options::default(), &target).unwrap();
    let id = d.start_rekey().unwrap();
    d.put(
        "bkt",
        "during",
        &mut data.as_slice(),
        &PutOptions::default(),
    )
    .unwrap();
    let st = d.run_rekey(id, &RotationOptions::default()).unwrap();
    assert_eq!(st.step, 5);
    let r = d.task(id).unwrap();
    assert_eq!(r.key_to_decommission.unwrap().provider, "root-key-file");
    assert_eq!(r.new_key.unwrap().provider, "passphrase-argon2id");
    drop(d);

    let new = passphrase("a passphrase for the rekey");
    let d = Dare::open(&store, &new).unwrap();
    assert_eq!(get(&d, "before"), data);
    assert_eq!(get(&d, "during"), data);
    // The CMK's material is protected by keys derived from the RT data key: still usable.
    let back = d.kms().decrypt(&sealed, &ctx).unwrap();
    assert_eq!(back.plaintext.as_slice(), b"kept across rekeys");
    let info = d.key_info().unwrap();
    assert_eq!(info.current.key.provider, "passphrase-argon2id");
    assert_eq!(info.others[0].deactivation.as_deref(), Some("nothing"));
    drop(d);
    // The old root's options: the error names what to pass.
    match Dare::open(&store, &Options::default()) {
        Err(e @ Error::PassphraseNeeded) => assert!(e.to_string().contains("--passphrase-file")),
        other => panic!("{other:?}"),
    }
    // A wrong passphrase is refused.
    assert!(Dare::open(&store, &passphrase("not the passphrase at all")).is_err());

    // And back to the root key file (root.key, still in the directory).
    let d = Dare::open_with_target(&store, &new, &Root::KeyFile).unwrap();
    let id = d.start_rekey().unwrap();
    d.run_rekey(id, &RotationOptions::default()).unwrap();
    drop(d);
    let d = Dare::open(&store, &Options::default()).unwrap();
    assert_eq!(get(&d, "before"), data);
    assert_eq!(get(&d, "during"), data);
    assert!(matches!(
        Dare::open(&store, &new),
        Err(Error::PassphraseNotApplicable)
    ));
    let info = d.key_info().unwrap();
    assert_eq!(info.current.version, 3);
    assert_eq!(info.others.len(), 2);
    // Rekeying to the root in use is refused.
    drop(d);
    let d = Dare::open_with_target(&store, &Options::default(), &Root::KeyFile).unwrap();
    assert!(matches!(
        d.start_rekey(),
        Err(Error::Keys(dare::KeyStoreError::SameRoot(_)))
    ));
}
