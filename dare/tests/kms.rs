//! SSE-KMS buckets (issue 11 item 6, docs/KMS.md §4.4) through the control plane, with a manual
//! clock: objects read back after three rotations of their CMK (each rewrapping the bucket
//! key, never touching data or envelopes), a disable/enable, and a delete/re-import of the same
//! imported material; PUT and GET are refused while the key is unusable; deleting the bucket
//! drops its registration. Run against SQLite and a real PostgreSQL server.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};
use dare::{Dare, Error, GetOptions, Options, PutOptions};
use dare_engine::{DiskOptions, DiskVolume, Volume};
use dare_keys::{KeyError, RootKeyFile, RootOfTrust, Secret32};
use dare_kms::{Expiry, KmsError, KmsOrigin, ManualClock, WrappedMaterial, WrappingAlgorithm};
use dare_metadata::{Metadata, PostgresMetadata, PostgresOptions, SqliteMetadata, SqliteOptions};
use dare_testkit::PgServer;

const T0: u64 = 1_800_000_000_000;

struct Node {
    _dir: tempfile::TempDir,
    clock: ManualClock,
    d: Dare,
}

fn node(meta: Arc<dyn Metadata>) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let volume: Arc<dyn Volume> =
        Arc::new(DiskVolume::new(&dir.path().join("objects"), DiskOptions::default()).unwrap());
    let root: Arc<dyn RootOfTrust> = Arc::new(RootKeyFile::from_secret(
        Secret32::generate("root").unwrap(),
    ));
    let clock = ManualClock::new(T0);
    let mut opts = Options::default();
    opts.keys.refresh_interval = Duration::ZERO;
    opts.clock = Arc::new(clock.clone());
    let d = Dare::create_parts(meta, volume, root, 12, &opts).unwrap();
    Node {
        _dir: dir,
        clock,
        d,
    }
}

fn put(d: &Dare, b: &str, name: &str, data: &[u8]) -> Result<(), Error> {
    d.put(b, name, &mut &data[..], &PutOptions::default())
        .map(|_| ())
}

fn get(d: &Dare, b: &str, name: &str) -> Result<Vec<u8>, Error> {
    d.get(b, name, &GetOptions::default())?.to_vec()
}

fn refused(e: Error, words: &[&str]) {
    let msg = e.to_string();
    assert!(
        matches!(e, Error::Key(KeyError::KmsRefused(_))),
        "not a KMS refusal: {e:?}"
    );
    for w in words {
        assert!(msg.contains(w), "{msg:?} lacks {w:?}");
    }
}

fn sse_kms_lifecycle(meta: Arc<dyn Metadata>) {
    let n = node(meta);
    let (d, kms) = (&n.d, n.d.kms().clone());
    let key = kms
        .create_key("photos-key", "", KmsOrigin::Generated)
        .unwrap();
    let b = d
        .create_bucket_kms("photos", dare::DEFAULT_NAMESPACE, Some("photos-key"))
        .unwrap();
    assert_eq!(b.kms_key_id.as_deref(), Some(key.key_id.as_str()));
    put(d, "photos", "a.jpg", b"first object").unwrap();
    let head = d.head("photos", "a.jpg").unwrap();
    assert_eq!(head.kms_key, Some((key.key_id.clone(), 1)));
    let regs = kms.registrations("photos-key").unwrap();
    assert_eq!(
        (regs.len(), regs[0].resource.as_str(), regs[0].key_version),
        (1, "bucket:photos", 1)
    );
    let envelope_before = d
        .metadata()
        .read()
        .unwrap()
        .object(b.id, "a.jpg")
        .unwrap()
        .unwrap()
        .envelope;

    // Three rotations: each rewraps the bucket key; data and envelopes untouched.
    for v in 2..=4 {
        n.clock.advance(Duration::from_secs(3601));
        kms.rotate("photos-key", None).unwrap();
        assert_eq!(
            d.head("photos", "a.jpg").unwrap().kms_key,
            Some((key.key_id.clone(), v))
        );
        assert_eq!(get(d, "photos", "a.jpg").unwrap(), b"first object");
        put(d, "photos", &format!("v{v}.jpg"), b"later").unwrap();
    }
    let envelope_after = d
        .metadata()
        .read()
        .unwrap()
        .object(b.id, "a.jpg")
        .unwrap()
        .unwrap()
        .envelope;
    assert_eq!(envelope_before, envelope_after);
    assert_eq!(kms.registrations("photos-key").unwrap()[0].key_version, 4);
    // the minimum decryption version may now pass the old versions
    kms.set_min_decryption_version("photos-key", 4).unwrap();
    assert_eq!(get(d, "photos", "v2.jpg").unwrap(), b"later");

    // Disable: refused without force (registered), then PUT and GET both fail clearly.
    assert!(matches!(
        kms.disable(&["photos-key".into()], false).remove(0).result,
        Err(KmsError::HasRegistrations { .. })
    ));
    kms.disable(&["photos-key".into()], true)
        .remove(0)
        .result
        .unwrap();
    refused(
        get(d, "photos", "a.jpg").unwrap_err(),
        &["photos", "disabled"],
    );
    refused(put(d, "photos", "b.jpg", b"x").unwrap_err(), &["disabled"]);
    assert!(matches!(
        get(d, "photos", "b.jpg"),
        Err(Error::NoSuchObject { .. })
    ));
    kms.enable(&["photos-key".into()]).remove(0).result.unwrap();
    assert_eq!(get(d, "photos", "a.jpg").unwrap(), b"first object");
    put(d, "photos", "b.jpg", b"after enable").unwrap();

    // Pending deletion refuses too; cancelling and enabling restores.
    kms.schedule_deletion(&["photos-key".into()], 7, true)
        .remove(0)
        .result
        .unwrap();
    refused(
        get(d, "photos", "b.jpg").unwrap_err(),
        &["pending deletion"],
    );
    kms.cancel_deletion(&["photos-key".into()])
        .remove(0)
        .result
        .unwrap();
    kms.enable(&["photos-key".into()]).remove(0).result.unwrap();
    assert_eq!(get(d, "photos", "b.jpg").unwrap(), b"after enable");

    // The default key, and a bucket delete drops the registration.
    let b2 = d
        .create_bucket_kms("docs", dare::DEFAULT_NAMESPACE, None)
        .unwrap();
    let def = kms.describe("dare/default").unwrap();
    assert_eq!(b2.kms_key_id.as_deref(), Some(def.key_id.as_str()));
    put(d, "docs", "x", b"y").unwrap();
    d.delete_bucket("docs", true).unwrap();
    assert!(kms.registrations("dare/default").unwrap().is_empty());
    // a bucket name taken is refused before any key is wrapped
    assert!(matches!(
        d.create_bucket_kms("photos", dare::DEFAULT_NAMESPACE, None),
        Err(Error::BucketExists(_))
    ));
    // an unknown key is refused, and no bucket appears
    assert!(matches!(
        d.create_bucket_kms("nokey", dare::DEFAULT_NAMESPACE, Some("missing")),
        Err(Error::Kms(KmsError::NotFound(_)))
    ));
    assert!(d.bucket("nokey").is_err());
}

#[test]
fn sse_kms_buckets_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn Metadata> = Arc::new(
        SqliteMetadata::create(&dir.path().join("dare.db"), SqliteOptions::default()).unwrap(),
    );
    sse_kms_lifecycle(meta);
}

#[test]
fn sse_kms_buckets_on_postgres() {
    let pg = PgServer::start();
    let url = pg.create_database("kms");
    let meta: Arc<dyn Metadata> =
        Arc::new(PostgresMetadata::open(&url, PostgresOptions::default()).unwrap());
    sse_kms_lifecycle(meta);
}

#[test]
fn imported_key_material_deleted_and_reimported_restores_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn Metadata> = Arc::new(
        SqliteMetadata::create(&dir.path().join("dare.db"), SqliteOptions::default()).unwrap(),
    );
    let n = node(meta);
    let (d, kms) = (&n.d, n.d.kms().clone());
    kms.create_key("byok", "", KmsOrigin::External).unwrap();
    let material = [0x5cu8; 32];
    let import = || {
        let p = kms
            .get_import_parameters("byok", WrappingAlgorithm::OaepSha256, 2048)
            .unwrap();
        let key =
            OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&p.public_key_der).unwrap())
                .unwrap();
        let mut out = vec![0; key.ciphertext_size()];
        let enc = key
            .encrypt(&OAEP_SHA256_MGF1SHA256, &material, &mut out, None)
            .unwrap()
            .to_vec();
        kms.import_key_material(
            "byok",
            WrappedMaterial {
                encrypted: &enc,
                token: &p.token,
            },
            Expiry::Never,
        )
        .unwrap();
    };
    import();
    d.create_bucket_kms("vault", dare::DEFAULT_NAMESPACE, Some("byok"))
        .unwrap();
    put(d, "vault", "doc", b"imported-key data").unwrap();
    kms.delete_key_material("byok").unwrap();
    refused(get(d, "vault", "doc").unwrap_err(), &["pending import"]);
    import();
    assert_eq!(get(d, "vault", "doc").unwrap(), b"imported-key data");
    n.clock.advance(Duration::from_secs(1));
}

/// A rotation whose bucket-key rewrap was cut short (the state right after the rotation
/// committed: bucket key still under the old version, registration saying so) is finished by
/// the next scheduler run; the registrations are the work list (KMS.md §6).
#[test]
fn an_interrupted_bucket_key_rewrap_is_finished_by_tick() {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn Metadata> = Arc::new(
        SqliteMetadata::create(&dir.path().join("dare.db"), SqliteOptions::default()).unwrap(),
    );
    let n = node(meta.clone());
    let (d, kms) = (&n.d, n.d.kms().clone());
    let key = kms.create_key("k", "", KmsOrigin::Generated).unwrap();
    d.create_bucket_kms("bkt", dare::DEFAULT_NAMESPACE, Some("k"))
        .unwrap();
    put(d, "bkt", "o", b"data").unwrap();
    let before = meta
        .read()
        .unwrap()
        .bucket(dare_metadata::By::Name("bkt"))
        .unwrap()
        .unwrap();
    kms.rotate("k", None).unwrap();
    // Put the bucket back where an interrupted rewrap leaves it.
    dare_metadata::write_with(
        &*meta,
        |_: &dare_metadata::MetaError| false,
        |tx| {
            let mut now = tx.bucket(dare_metadata::By::Name("bkt"))?.unwrap();
            now.wrapped_key = before.wrapped_key.clone();
            tx.update_bucket(&now)?;
            let mut r = tx.kms_registrations(&key.key_id)?.remove(0);
            r.version = 1;
            tx.put_kms_registration(&r)
        },
    )
    .unwrap();
    assert_eq!(
        d.head("bkt", "o").unwrap().kms_key,
        Some((key.key_id.clone(), 1))
    );
    assert_eq!(get(d, "bkt", "o").unwrap(), b"data");
    let rep = kms.tick();
    assert_eq!(rep.rewrapped, vec!["bkt: v1 -> v2".to_string()], "{rep:?}");
    assert_eq!(
        d.head("bkt", "o").unwrap().kms_key,
        Some((key.key_id.clone(), 2))
    );
    assert_eq!(get(d, "bkt", "o").unwrap(), b"data");
    assert!(kms.tick().rewrapped.is_empty());
}
