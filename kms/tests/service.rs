//! The key management service against a real SQLite database, with a manual clock: every rule
//! of KMS.md broken once and its distinct error checked, the seeds' rotation and deletion
//! timelines run in microseconds, imported material wrapped by RSA-OAEP as openssl does, and
//! the audit trail tampered with in the database file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use dare_keys::{KeyStore, RootKeyFile, RootOfTrust, Secret32, StoreError, StoreOptions};
use dare_kms::clock::DAY_MS;
use dare_kms::{
    Clock, Context, Expiry, Kms, KmsError, KmsOptions, KmsOrigin, ListFilter, ManualClock,
    WrappedMaterial, WrappingAlgorithm,
};
use dare_metadata::{KmsKeyState, Metadata, SqliteMetadata, SqliteOptions, write_with};

const T0: u64 = 1_800_000_000_000; // 2027-01-15

struct Env {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    clock: ManualClock,
    kms: Arc<Kms>,
}

fn env_with(opts: KmsOptions) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dare.db");
    let meta: Arc<dyn Metadata> =
        Arc::new(SqliteMetadata::create(&path, SqliteOptions::default()).unwrap());
    let root: Arc<dyn RootOfTrust> = Arc::new(RootKeyFile::from_secret(Secret32::from_bytes(
        "root", [9; 32],
    )));
    write_with(
        &*meta,
        |_: &StoreError| false,
        |tx| KeyStore::create_in(tx, &*root, [0x5a; 16], 16),
    )
    .unwrap();
    let keys = Arc::new(
        KeyStore::open(
            meta,
            root,
            StoreOptions {
                cache_capacity: 64,
                refresh_interval: Duration::ZERO,
            },
        )
        .unwrap(),
    );
    let clock = ManualClock::new(T0);
    let kms = Arc::new(Kms::new(keys, Arc::new(clock.clone()), opts).unwrap());
    Env {
        _dir: dir,
        path,
        clock,
        kms,
    }
}

fn env() -> Env {
    env_with(KmsOptions {
        actor: "test".into(),
        ..KmsOptions::default()
    })
}

fn one(items: Vec<dare_kms::BatchItem>) -> Result<dare_kms::KeyInfo, KmsError> {
    assert_eq!(items.len(), 1);
    items.into_iter().next().unwrap().result
}

fn keys(k: &str) -> Vec<String> {
    vec![k.to_string()]
}

fn ctx(pairs: &[(&str, &str)]) -> Context {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn alias_description_and_window_rules_each_have_their_error() {
    let e = env();
    let k = &e.kms;
    for bad in ["", "has space", "é", "obs/default", &"a".repeat(256)] {
        assert!(
            matches!(
                k.create_key(bad, "", KmsOrigin::Generated),
                Err(KmsError::InvalidAlias(_))
            ),
            "{bad:?}"
        );
    }
    k.create_key("app-key", "", KmsOrigin::Generated).unwrap();
    assert!(matches!(
        k.create_key("app-key", "", KmsOrigin::Generated),
        Err(KmsError::AliasTaken(_))
    ));
    assert!(matches!(
        k.create_key("other", &"d".repeat(256), KmsOrigin::Generated),
        Err(KmsError::DescriptionTooLong(256))
    ));
    k.create_key("other", &"d".repeat(255), KmsOrigin::Generated)
        .unwrap();
    assert!(matches!(
        one(k.schedule_deletion(&keys("app-key"), 6, false)),
        Err(KmsError::DeletionWindow(6))
    ));
    assert!(matches!(
        one(k.schedule_deletion(&keys("app-key"), 1097, false)),
        Err(KmsError::DeletionWindow(1097))
    ));
    assert!(matches!(
        k.set_rotation_policy("app-key", Some(29)),
        Err(KmsError::RotationPeriod(29))
    ));
    assert!(matches!(
        k.set_rotation_policy("app-key", Some(366)),
        Err(KmsError::RotationPeriod(366))
    ));
    assert!(matches!(
        k.update_alias("app-key", "x/default"),
        Err(KmsError::InvalidAlias(_))
    ));
    assert!(matches!(
        k.update_alias("app-key", "other"),
        Err(KmsError::AliasTaken(_))
    ));
    assert!(matches!(
        k.describe("9b2f0f3e-6a0e-4c47-8f5a-2d2f5f0b8a11"),
        Err(KmsError::NotFound(_))
    ));
    let info = k.update_alias("app-key", "renamed").unwrap();
    assert_eq!(info.alias.as_deref(), Some("renamed"));
    assert_eq!(
        k.describe(&info.key_id).unwrap().alias.as_deref(),
        Some("renamed")
    );
}

#[test]
fn states_transitions_and_refusals() {
    let e = env();
    let k = &e.kms;
    let id = k.create_key("k", "", KmsOrigin::Generated).unwrap().key_id;
    let ct = k.encrypt("k", b"secret", &Context::new()).unwrap();
    // enable needs Disabled
    assert!(matches!(
        one(k.enable(&keys("k"))),
        Err(KmsError::InvalidState { .. })
    ));
    one(k.disable(&keys("k"), false)).unwrap();
    assert!(matches!(
        one(k.disable(&keys("k"), false)),
        Err(KmsError::InvalidState { .. })
    ));
    assert!(matches!(
        k.encrypt("k", b"x", &Context::new()),
        Err(KmsError::Disabled { .. })
    ));
    assert!(matches!(
        k.decrypt(&ct, &Context::new()),
        Err(KmsError::Disabled { .. })
    ));
    assert!(matches!(
        k.create_data_key("k", 256, true, &Context::new()),
        Err(KmsError::Disabled { .. })
    ));
    assert!(matches!(
        k.rewrap(&ct, &Context::new()),
        Err(KmsError::Disabled { .. })
    ));
    one(k.enable(&keys("k"))).unwrap();
    assert_eq!(
        &k.decrypt(&ct, &Context::new()).unwrap().plaintext[..],
        b"secret"
    );

    let info = one(k.schedule_deletion(&keys(&id), 7, false)).unwrap();
    assert_eq!(info.state, "pending-deletion");
    assert!(matches!(
        k.decrypt(&ct, &Context::new()),
        Err(KmsError::PendingDeletion { .. })
    ));
    assert!(matches!(
        k.update_alias("k", "k2"),
        Err(KmsError::InvalidState { .. })
    ));
    assert!(matches!(
        k.update_description("k", "d"),
        Err(KmsError::InvalidState { .. })
    ));
    assert!(matches!(
        one(k.enable(&keys("k"))),
        Err(KmsError::InvalidState { .. })
    ));
    // cancelling returns it to Disabled (seed 003 §2.5.5)
    assert_eq!(
        one(k.cancel_deletion(&keys("k"))).unwrap().state,
        "disabled"
    );
    assert!(matches!(
        one(k.cancel_deletion(&keys("k"))),
        Err(KmsError::InvalidState { .. })
    ));
    one(k.enable(&keys("k"))).unwrap();

    // batch: each id its own result
    let items = k.disable(&["k".into(), "missing".into()], false);
    assert!(items[0].result.is_ok());
    assert!(matches!(items[1].result, Err(KmsError::NotFound(_))));
}

#[test]
fn default_key_is_created_once_and_refuses_what_the_seed_forbids() {
    let e = env();
    let k = &e.kms;
    let d = k.default_key().unwrap();
    assert_eq!(d.alias.as_deref(), Some("dare/default"));
    assert!(d.default_key);
    assert_eq!(k.default_key().unwrap().key_id, d.key_id);
    let dk = keys("dare/default");
    assert!(matches!(
        one(k.disable(&dk, true)),
        Err(KmsError::DefaultKey { .. })
    ));
    assert!(matches!(
        one(k.schedule_deletion(&dk, 30, true)),
        Err(KmsError::DefaultKey { .. })
    ));
    assert!(matches!(
        k.update_alias("dare/default", "x"),
        Err(KmsError::DefaultKey { .. })
    ));
    assert!(matches!(
        k.update_description("dare/default", "x"),
        Err(KmsError::DefaultKey { .. })
    ));
    assert!(matches!(
        k.rotate("dare/default", None),
        Err(KmsError::DefaultKey { .. })
    ));
}

#[test]
fn manual_rotation_keeps_identity_limits_to_one_an_hour_and_old_versions_decrypt() {
    let e = env();
    let k = &e.kms;
    let id = k
        .create_key("k", "desc", KmsOrigin::Generated)
        .unwrap()
        .key_id;
    let c = ctx(&[("purpose", "test")]);
    let ct1 = k.encrypt("k", b"one", &c).unwrap();
    let r = k.rotate("k", None).unwrap();
    assert_eq!(
        (r.key_id.as_str(), r.current_version, r.rotation.rotations),
        (id.as_str(), 2, 1)
    );
    assert_eq!(r.description, "desc");
    assert!(matches!(
        k.rotate("k", None),
        Err(KmsError::RotationTooSoon { .. })
    ));
    e.clock.advance(Duration::from_secs(3600));
    assert_eq!(k.rotate("k", None).unwrap().current_version, 3);
    let ct3 = k.encrypt("k", b"three", &c).unwrap();
    let d1 = k.decrypt(&ct1, &c).unwrap();
    assert_eq!((d1.version, &d1.plaintext[..]), (1, &b"one"[..]));
    assert_eq!(k.decrypt(&ct3, &c).unwrap().version, 3);
    // rewrap moves an old ciphertext to the current version
    let re = k.rewrap(&ct1, &c).unwrap();
    assert_eq!(k.decrypt(&re, &c).unwrap().version, 3);
    // minimum decryption version
    let info = k.set_min_decryption_version("k", 2).unwrap();
    assert_eq!(info.min_decryption_version, 2);
    assert!(matches!(
        k.decrypt(&ct1, &c),
        Err(KmsError::VersionRetired { .. })
    ));
    k.set_min_decryption_version("k", 1).unwrap();
    assert_eq!(&k.decrypt(&ct1, &c).unwrap().plaintext[..], b"one");
    assert!(matches!(
        k.set_min_decryption_version("k", 4),
        Err(KmsError::NoSuchVersion { .. })
    ));
    // a registration under version 1 blocks raising the minimum past it
    k.register("k", "volume:7", Some(1), "").unwrap();
    match k.set_min_decryption_version("k", 2) {
        Err(KmsError::VersionInUse { resources, .. }) => {
            assert_eq!(resources, vec!["volume:7 (v1)".to_string()])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn policy_rotation_follows_the_seed_for_disabled_keys() {
    let e = env();
    let k = &e.kms;
    k.create_key("a", "", KmsOrigin::Generated).unwrap();
    k.create_key("b", "", KmsOrigin::Generated).unwrap();
    k.set_rotation_policy("a", Some(365)).unwrap();
    k.set_rotation_policy("b", Some(365)).unwrap();
    one(k.disable(&keys("a"), false)).unwrap();
    one(k.disable(&keys("b"), false)).unwrap();
    // b is re-enabled after 100 days: the original plan continues (due at day 365)
    e.clock.advance(Duration::from_millis(100 * DAY_MS));
    one(k.enable(&keys("b"))).unwrap();
    assert!(k.tick().rotated.is_empty());
    e.clock.set(T0 + 365 * DAY_MS - 1);
    assert!(k.tick().rotated.is_empty());
    e.clock.set(T0 + 365 * DAY_MS);
    let rep = k.tick();
    assert_eq!(rep.rotated.len(), 1, "{rep:?}");
    assert!(rep.rotated[0].starts_with("b ("), "{rep:?}");
    // a stays disabled for 400 days: not rotated while disabled ...
    e.clock.set(T0 + 400 * DAY_MS);
    let rep = k.tick();
    assert!(rep.rotated.is_empty(), "{rep:?}");
    // ... and rotated at the next scheduler run once enabled
    one(k.enable(&keys("a"))).unwrap();
    let rep = k.tick();
    assert_eq!(rep.rotated.len(), 1, "{rep:?}");
    assert!(rep.rotated[0].starts_with("a ("), "{rep:?}");
    assert_eq!(k.describe("a").unwrap().current_version, 2);
    assert_eq!(k.describe("b").unwrap().current_version, 2);
    assert!(k.tick().rotated.is_empty());
    // pending deletion: not rotated either
    k.set_rotation_policy("a", Some(30)).unwrap();
    one(k.schedule_deletion(&keys("a"), 1096, false)).unwrap();
    e.clock.advance(Duration::from_millis(40 * DAY_MS));
    assert!(k.tick().rotated.is_empty());
}

#[test]
fn scheduled_deletion_destroys_the_material_and_leaves_a_clear_error() {
    let e = env();
    let k = &e.kms;
    let id = k
        .create_key("gone", "", KmsOrigin::Generated)
        .unwrap()
        .key_id;
    let dk = k
        .create_data_key("gone", 512, true, &Context::new())
        .unwrap();
    assert_eq!(dk.plaintext.as_ref().unwrap().len(), 64);
    one(k.schedule_deletion(&keys("gone"), 1096, false)).unwrap();
    e.clock.advance(Duration::from_millis(1095 * DAY_MS));
    assert!(k.tick().deleted.is_empty());
    e.clock.advance(Duration::from_millis(DAY_MS));
    assert_eq!(k.tick().deleted.len(), 1);
    assert!(matches!(
        k.decrypt_data_key(&dk.ciphertext, &Context::new()),
        Err(KmsError::Deleted { .. })
    ));
    assert!(matches!(k.describe(&id), Err(KmsError::Deleted { .. })));
    // the alias is free again; the id is not reused
    let again = k.create_key("gone", "", KmsOrigin::Generated).unwrap();
    assert_ne!(again.key_id, id);
    assert!(
        k.list(&ListFilter::default())
            .unwrap()
            .keys
            .iter()
            .all(|i| i.key_id != id)
    );
    let deleted = k
        .list(&ListFilter {
            state: Some(KmsKeyState::Deleted),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(deleted.keys.len(), 1);
    assert!(deleted.keys[0].versions.is_empty());
}

#[test]
fn data_keys_and_ciphertexts_refuse_every_tamper() {
    let e = env();
    let k = &e.kms;
    k.create_key("a", "", KmsOrigin::Generated).unwrap();
    k.create_key("b", "", KmsOrigin::Generated).unwrap();
    let c = ctx(&[("bucket", "photos")]);
    let dk = k.create_data_key("a", 256, true, &c).unwrap();
    let back = k.decrypt_data_key(&dk.ciphertext, &c).unwrap();
    assert_eq!(back.plaintext, *dk.plaintext.as_ref().unwrap());
    let np = k.create_data_key("a", 256, false, &c).unwrap();
    assert!(np.plaintext.is_none());
    assert_eq!(
        k.decrypt_data_key(&np.ciphertext, &c)
            .unwrap()
            .plaintext
            .len(),
        32
    );
    assert!(matches!(
        k.create_data_key("a", 128, true, &c),
        Err(KmsError::DataKeyBits(128))
    ));
    assert!(matches!(
        k.encrypt_data_key("a", &[1; 16], &c),
        Err(KmsError::InputLength { .. })
    ));
    let wrapped = k.encrypt_data_key("a", &[3; 64], &c).unwrap();
    assert_eq!(
        &k.decrypt_data_key(&wrapped, &c).unwrap().plaintext[..],
        &[3; 64][..]
    );
    // wrong context, tampered bytes, truncation
    assert!(matches!(
        k.decrypt_data_key(&dk.ciphertext, &Context::new()),
        Err(KmsError::DecryptFailed)
    ));
    let mut bad = dk.ciphertext.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(matches!(
        k.decrypt_data_key(&bad, &c),
        Err(KmsError::DecryptFailed)
    ));
    assert!(k.decrypt_data_key(&dk.ciphertext[..40], &c).is_err());
    // purpose confusion
    assert!(matches!(
        k.decrypt(&dk.ciphertext, &c),
        Err(KmsError::CiphertextMalformed(_))
    ));
    // another CMK's id spliced into the header: no plaintext
    let b_ct = k.encrypt("b", b"bb", &c).unwrap();
    let mut spliced = b_ct.clone();
    spliced[2..18].copy_from_slice(&dk.ciphertext[2..18]);
    assert!(matches!(
        k.decrypt(&spliced, &c),
        Err(KmsError::DecryptFailed)
    ));
    // unknown key id
    let mut unknown = b_ct.clone();
    unknown[2] ^= 0xff;
    assert!(matches!(
        k.decrypt(&unknown, &c),
        Err(KmsError::NotFound(_))
    ));
    // size limits and random
    assert!(matches!(
        k.encrypt("a", &[0; 4097], &c),
        Err(KmsError::InputLength { .. })
    ));
    assert!(k.encrypt("a", &[0; 4096], &c).is_ok());
    assert_eq!(k.random(64).unwrap().len(), 64);
}

#[test]
fn the_encryption_limit_rotates_before_the_next_encryption() {
    let e = env_with(KmsOptions {
        actor: "test".into(),
        encryption_limit: 3,
        ..KmsOptions::default()
    });
    let k = &e.kms;
    k.create_key("k", "", KmsOrigin::Generated).unwrap();
    for _ in 0..3 {
        k.encrypt("k", b"x", &Context::new()).unwrap();
    }
    let info = k.describe("k").unwrap();
    assert_eq!((info.current_version, info.versions[0].encryptions), (1, 3));
    let ct = k.encrypt("k", b"x", &Context::new()).unwrap();
    assert_eq!(k.decrypt(&ct, &Context::new()).unwrap().version, 2);
}

fn wrap_oaep(public_der: &[u8], material: &[u8]) -> Vec<u8> {
    let key =
        OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(public_der).unwrap()).unwrap();
    let mut out = vec![0; key.ciphertext_size()];
    key.encrypt(&OAEP_SHA256_MGF1SHA256, material, &mut out, None)
        .unwrap()
        .to_vec()
}

#[test]
fn import_binds_the_key_to_its_material() {
    let e = env();
    let k = &e.kms;
    let info = k.create_key("ext", "", KmsOrigin::External).unwrap();
    assert_eq!(info.state, "pending-import");
    assert!(matches!(
        k.encrypt("ext", b"x", &Context::new()),
        Err(KmsError::PendingImport { .. })
    ));
    assert!(matches!(
        WrappingAlgorithm::parse("RSAES_PKCS1_V1_5"),
        Err(KmsError::WrappingAlgorithm(m)) if m.contains("Bleichenbacher")
    ));
    assert!(matches!(
        k.get_import_parameters("ext", WrappingAlgorithm::OaepSha256, 1024),
        Err(KmsError::WrappingKeySize(1024))
    ));
    k.create_key("gen", "", KmsOrigin::Generated).unwrap();
    assert!(matches!(
        k.get_import_parameters("gen", WrappingAlgorithm::OaepSha256, 2048),
        Err(KmsError::NotExternal(_))
    ));
    let material = [0x42u8; 32];
    let p = k
        .get_import_parameters("ext", WrappingAlgorithm::OaepSha256, 2048)
        .unwrap();
    let enc = wrap_oaep(&p.public_key_der, &material);
    // a token of another key
    k.create_key("ext2", "", KmsOrigin::External).unwrap();
    let p2 = k
        .get_import_parameters("ext2", WrappingAlgorithm::OaepSha256, 2048)
        .unwrap();
    fn wm<'a>(encrypted: &'a [u8], token: &'a [u8]) -> WrappedMaterial<'a> {
        WrappedMaterial { encrypted, token }
    }
    assert!(matches!(
        k.import_key_material("ext", wm(&enc, &p2.token), Expiry::Never),
        Err(KmsError::ImportTokenWrongKey { .. })
    ));
    let mut forged = p.token.clone();
    forged[30] ^= 1;
    assert!(matches!(
        k.import_key_material("ext", wm(&enc, &forged), Expiry::Never),
        Err(KmsError::ImportTokenInvalid)
    ));
    // wrong length material
    let short = wrap_oaep(&p.public_key_der, &[7; 16]);
    assert!(matches!(
        k.import_key_material(
            "ext",
            WrappedMaterial {
                encrypted: &short,
                token: &p.token
            },
            Expiry::Never
        ),
        Err(KmsError::MaterialLength(16))
    ));
    // expired token
    e.clock.advance(Duration::from_millis(DAY_MS + 1));
    assert!(matches!(
        k.import_key_material("ext", wm(&enc, &p.token), Expiry::Never),
        Err(KmsError::ImportTokenExpired { .. })
    ));
    let p = k
        .get_import_parameters("ext", WrappingAlgorithm::OaepSha256, 2048)
        .unwrap();
    let enc = wrap_oaep(&p.public_key_der, &material);
    let info = k
        .import_key_material(
            "ext",
            WrappedMaterial {
                encrypted: &enc,
                token: &p.token,
            },
            Expiry::Default,
        )
        .unwrap();
    assert_eq!((info.state, info.current_version), ("enabled", 1));
    assert!(info.material_expires.is_some());
    // a second use of the same token is refused (the parameters were consumed)
    assert!(matches!(
        k.import_key_material(
            "ext",
            WrappedMaterial {
                encrypted: &enc,
                token: &p.token
            },
            Expiry::Never
        ),
        Err(KmsError::ImportTokenInvalid)
    ));
    let ct = k
        .encrypt("ext", b"under imported", &Context::new())
        .unwrap();
    assert!(matches!(
        k.set_rotation_policy("ext", Some(90)),
        Err(KmsError::ImportedKeyRotation(_))
    ));
    assert!(matches!(
        k.rotate("ext", None),
        Err(KmsError::ImportedKeyRotation(_))
    ));

    // delete material → pending import, refused; other material refused; same restores
    assert_eq!(
        k.delete_key_material("ext").unwrap().state,
        "pending-import"
    );
    assert!(matches!(
        k.decrypt(&ct, &Context::new()),
        Err(KmsError::PendingImport { .. })
    ));
    let p = k
        .get_import_parameters("ext", WrappingAlgorithm::OaepSha256, 3072)
        .unwrap();
    let other = wrap_oaep(&p.public_key_der, &[0x43; 32]);
    assert!(matches!(
        k.import_key_material(
            "ext",
            WrappedMaterial {
                encrypted: &other,
                token: &p.token
            },
            Expiry::Never
        ),
        Err(KmsError::MaterialMismatch)
    ));
    let same = wrap_oaep(&p.public_key_der, &material);
    k.import_key_material(
        "ext",
        WrappedMaterial {
            encrypted: &same,
            token: &p.token,
        },
        Expiry::Never,
    )
    .unwrap();
    assert_eq!(
        &k.decrypt(&ct, &Context::new()).unwrap().plaintext[..],
        b"under imported"
    );

    // expiry by the scheduler
    let p = k
        .get_import_parameters("ext", WrappingAlgorithm::OaepSha256, 2048)
        .unwrap();
    let enc = wrap_oaep(&p.public_key_der, &material);
    assert!(matches!(
        k.import_key_material(
            "ext",
            WrappedMaterial {
                encrypted: &enc,
                token: &p.token
            },
            Expiry::At(e.clock.now_ms() - 1)
        ),
        Err(KmsError::ExpiryInPast)
    ));
    k.import_key_material(
        "ext",
        WrappedMaterial {
            encrypted: &enc,
            token: &p.token,
        },
        Expiry::At(e.clock.now_ms() + 1000),
    )
    .unwrap();
    e.clock.advance(Duration::from_secs(2));
    assert_eq!(k.tick().expired.len(), 1);
    assert_eq!(k.describe("ext").unwrap().state, "pending-import");
}

#[test]
fn audit_trail_detects_edits_removals_and_truncation() {
    let e = env();
    let k = &e.kms;
    k.create_key("a", "", KmsOrigin::Generated).unwrap();
    let ct = k.encrypt("a", b"x", &Context::new()).unwrap();
    k.decrypt(&ct, &Context::new()).unwrap();
    let _ = k.decrypt(&ct[..20], &Context::new()); // a failure is recorded too
    let recs = k.audit_records(None, None).unwrap();
    let ops: Vec<&str> = recs.iter().map(|r| r.operation.as_str()).collect();
    assert_eq!(ops, ["createKey", "encrypt", "decrypt", "decrypt"]);
    assert_eq!(recs[3].outcome, "CiphertextMalformed");
    assert!(recs.iter().all(|r| r.actor == "test"));
    let v = k.verify_audit().unwrap();
    assert!(v.ok(), "{v:?}");
    assert_eq!(v.records, 4);

    let tamper = |sql: &str| {
        let copy = tempfile::tempdir().unwrap();
        let db = copy.path().join("dare.db");
        let src = rusqlite::Connection::open(&e.path).unwrap();
        src.execute("VACUUM INTO ?1", [db.to_str().unwrap()])
            .unwrap();
        rusqlite::Connection::open(&db)
            .unwrap()
            .execute_batch(sql)
            .unwrap();
        (copy, db)
    };
    for (sql, want) in [
        (
            "UPDATE kms_audit SET detail = detail || 'x' WHERE seq = 2",
            "record 2 does not match",
        ),
        ("DELETE FROM kms_audit WHERE seq = 2", "record 2 is missing"),
        (
            "DELETE FROM kms_audit WHERE seq = 4",
            "last records were removed",
        ),
    ] {
        let (_keep, db) = tamper(sql);
        let v = verify_copy(&db);
        let p = v.problem.unwrap_or_default();
        assert!(p.contains(want), "{sql}: {p}");
    }
    // filters
    let id = k.describe("a").unwrap().key_id;
    assert_eq!(k.audit_records(Some(&id), None).unwrap().len(), 4); // + describe, - the failure
    assert_eq!(k.audit_records(None, Some(T0 + 1)).unwrap().len(), 0);
}

/// Verifies the trail of a copied database with the same root key.
fn verify_copy(db: &Path) -> dare_kms::AuditVerification {
    let meta: Arc<dyn Metadata> =
        Arc::new(SqliteMetadata::open(db, SqliteOptions::default()).unwrap());
    let root: Arc<dyn RootOfTrust> = Arc::new(RootKeyFile::from_secret(Secret32::from_bytes(
        "root", [9; 32],
    )));
    let keys = Arc::new(KeyStore::open(meta, root, StoreOptions::default()).unwrap());
    let kms = Kms::new(keys, Arc::new(ManualClock::new(T0)), KmsOptions::default()).unwrap();
    kms.verify_audit().unwrap()
}

#[test]
fn list_filters_and_paginates() {
    let e = env();
    let k = &e.kms;
    for i in 0..5 {
        k.create_key(&format!("team-{i}"), "", KmsOrigin::Generated)
            .unwrap();
        e.clock.advance(Duration::from_millis(1));
    }
    k.create_key("solo", "", KmsOrigin::External).unwrap();
    one(k.disable(&keys("team-1"), false)).unwrap();
    let p1 = k
        .list(&ListFilter {
            alias_contains: Some("team".into()),
            limit: Some(2),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!((p1.keys.len(), p1.total), (2, 5));
    let p2 = k
        .list(&ListFilter {
            alias_contains: Some("team".into()),
            limit: Some(10),
            marker: p1.next_marker.clone(),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(p2.keys.len(), 3);
    assert!(p2.next_marker.is_none());
    let disabled = k
        .list(&ListFilter {
            state: Some(KmsKeyState::Disabled),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(disabled.keys[0].alias.as_deref(), Some("team-1"));
    let pending = k
        .list(&ListFilter {
            state: Some(KmsKeyState::PendingImport),
            ..ListFilter::default()
        })
        .unwrap();
    assert_eq!(pending.keys.len(), 1);
}

#[test]
fn registrations_block_disable_and_deletion_unless_forced() {
    let e = env();
    let k = &e.kms;
    k.create_key("k", "", KmsOrigin::Generated).unwrap();
    k.register("k", "volume:1", None, "a volume").unwrap();
    match one(k.disable(&keys("k"), false)) {
        Err(KmsError::HasRegistrations { resources, .. }) => {
            assert_eq!(resources, vec!["volume:1 (v1)".to_string()])
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        one(k.schedule_deletion(&keys("k"), 7, false)),
        Err(KmsError::HasRegistrations { .. })
    ));
    assert_eq!(one(k.disable(&keys("k"), true)).unwrap().state, "disabled");
    assert_eq!(k.registrations("k").unwrap().len(), 1);
    assert!(k.deregister("k", "volume:1").unwrap());
    assert!(k.registrations("k").unwrap().is_empty());
}

#[test]
fn the_scheduler_thread_ticks_until_dropped() {
    let e = env();
    let k = &e.kms;
    k.create_key("s", "", KmsOrigin::Generated).unwrap();
    one(k.schedule_deletion(&keys("s"), 7, false)).unwrap();
    e.clock.advance(Duration::from_millis(8 * DAY_MS));
    let (tx, rx) = std::sync::mpsc::channel();
    let s = dare_kms::Scheduler::spawn(e.kms.clone(), Duration::from_secs(3600), move |r| {
        let _ = tx.send(r);
    })
    .unwrap();
    let first = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(first.deleted.len(), 1);
    drop(s); // joins: no hang
}
