//! A new site joins the store (ECS §2.5, docs/KEYS.md §8.5): two store directories with two
//! different roots of trust sharing one PostgreSQL database (started by this test binary with
//! `dare-testkit`) and one data directory. Site A creates the store and writes; site B makes
//! its key pair; A grants; B reads A's objects and writes objects A reads; A rotates and
//! rekeys, and B follows without a new grant; and every bad input is refused with a typed
//! error and nothing written. Without PostgreSQL installed these tests fail, saying how to
//! install it.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dare::{
    Dare, Error, GetOptions, KeyRef, KeyStoreError, MetadataLocation, Options, PostgresUrl,
    PutOptions, Root, RotationOptions, SiteError,
};
use dare_metadata::{SiteKeyRecord, read_with, write_with};
use dare_testkit::PgServer;
use zeroize::Zeroizing;

static SERVER: OnceLock<PgServer> = OnceLock::new();

fn server() -> &'static PgServer {
    SERVER.get_or_init(PgServer::start)
}

/// A new, empty database on the shared server; its URL (with the password).
fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    server().create_database(&format!("site{n}"))
}

/// Site A's options: the root key file in its directory.
fn site_a(url: &str) -> Options {
    Options {
        metadata: MetadataLocation::Postgres(PostgresUrl::new(url)),
        ..Options::default()
    }
}

/// Site B's options: a passphrase of its own; key records re-checked on every call, so that
/// the test sees A's rotation at once.
fn site_b(url: &str, passphrase: &str) -> Options {
    let mut o = Options {
        root: Root::Passphrase(Zeroizing::new(passphrase.as_bytes().to_vec())),
        metadata: MetadataLocation::Postgres(PostgresUrl::new(url)),
        ..Options::default()
    };
    o.keys.refresh_interval = Duration::ZERO;
    o
}

const B_PASS: &str = "site B's own passphrase";

fn put(d: &Dare, name: &str, data: &[u8]) {
    d.put("photos", name, &mut &data[..], &PutOptions::default())
        .unwrap();
}

fn get(d: &Dare, name: &str) -> Vec<u8> {
    d.get("photos", name, &GetOptions::default())
        .unwrap()
        .to_vec()
        .unwrap()
}

fn rotation_of(d: &Dare, name: &str) -> u32 {
    match d.head("photos", name).unwrap().key_ref {
        KeyRef::Hierarchy {
            rotation_version, ..
        } => rotation_version,
        k => panic!("{name}: {k:?}"),
    }
}

fn bytes(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed) >> 3) as u8)
        .collect()
}

fn site_error(e: Error) -> SiteError {
    match e {
        Error::Keys(KeyStoreError::Site(s)) => s,
        e => panic!("expected a site error, got {e:?} ({e})"),
    }
}

/// Site A's store with one bucket and an object, and site B's directory after `site init`
/// (not granted yet). Returns (A's handle, A's dir, B's dir, B's PEM, the URL, the temp dir).
fn two_sites() -> (Dare, PathBuf, PathBuf, Vec<u8>, String, tempfile::TempDir) {
    let url = fresh_database();
    let tmp = tempfile::tempdir().unwrap();
    let a_dir = tmp.path().join("a");
    let b_dir = tmp.path().join("b");
    let a = Dare::create(&a_dir, 4096, &site_a(&url)).unwrap();
    a.create_bucket("photos", "default", None).unwrap();
    put(&a, "from-a", &bytes(20_000, 1));
    let made =
        Dare::site_init(&b_dir, &site_b(&url, B_PASS), Some(&a_dir.join("objects"))).unwrap();
    assert_eq!(made.store_id, a.store_id());
    let pem = std::fs::read(&made.public_file).unwrap();
    assert!(pem.starts_with(b"-----BEGIN PUBLIC KEY-----\n"));
    assert_eq!(made.public.bits(), 3072);
    for f in ["site.key", "site.pub.pem", "metadata.json"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(b_dir.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    (a, a_dir, b_dir, pem, url, tmp)
}

#[test]
fn a_site_joins_reads_writes_and_follows_rotations_and_rekeys() {
    let (a, a_dir, b_dir, pem, url, _tmp) = two_sites();

    // Before the grant, B cannot open the store.
    let e = site_error(Dare::open(&b_dir, &site_b(&url, B_PASS)).unwrap_err());
    assert!(matches!(e, SiteError::NotGranted { .. }), "{e}");

    let site = a.grant_site("site-b", &pem).unwrap();
    assert_eq!(site.name, "site-b");
    assert_eq!(site.bits, 3072);
    // Master key 1 and the RT data key.
    assert_eq!(site.keys, 2);
    assert_eq!(a.sites().unwrap(), vec![site.clone()]);
    let dump: serde_json::Value = serde_json::from_str(&a.keys().dump_json().unwrap()).unwrap();
    assert_eq!(dump["sites"][0]["name"], "site-b");
    assert_eq!(dump["sites"][0]["keys"].as_array().unwrap().len(), 2);

    // B reads what A wrote, and writes what A reads.
    let b = Dare::open(&b_dir, &site_b(&url, B_PASS)).unwrap();
    assert!(b.joined_site().is_some());
    assert_eq!(a.joined_site(), None);
    assert_eq!(get(&b, "from-a"), bytes(20_000, 1));
    put(&b, "from-b", &bytes(9_000, 2));
    assert_eq!(get(&a, "from-b"), bytes(9_000, 2));
    b.create_bucket("b-bucket", "default", None).unwrap();
    b.put(
        "b-bucket",
        "x",
        &mut &b"made on B"[..],
        &PutOptions::default(),
    )
    .unwrap();
    assert_eq!(
        a.get("b-bucket", "x", &GetOptions::default())
            .unwrap()
            .to_vec()
            .unwrap(),
        b"made on B"
    );

    // A joined site cannot create master keys: rotation and rekey are refused there, with
    // no task written.
    let tasks_before = read_with(&**a.metadata(), |tx| tx.tasks()).unwrap().len();
    let e = site_error(Error::from(b.keys().start_rotation().unwrap_err()));
    assert!(matches!(e, SiteError::JoinedSite { .. }), "{e}");
    assert_eq!(
        read_with(&**a.metadata(), |tx| tx.tasks()).unwrap().len(),
        tasks_before
    );

    // A rotates: the new master key reaches B in the rotation's own step 1.
    let id = a.keys().start_rotation().unwrap();
    a.keys()
        .run_rotation(id, &RotationOptions::default())
        .unwrap();
    assert_eq!(a.sites().unwrap()[0].keys, 3);
    put(&b, "b-after-rotation", &bytes(5_000, 3));
    assert_eq!(rotation_of(&b, "b-after-rotation"), 2);
    assert_eq!(get(&a, "b-after-rotation"), bytes(5_000, 3));
    put(&a, "a-after-rotation", &bytes(7_000, 4));
    assert_eq!(get(&b, "a-after-rotation"), bytes(7_000, 4));
    assert_eq!(get(&b, "from-a"), bytes(20_000, 1));
    drop(b);
    // Reopened after the rotation (its old master key retired), B still opens.
    let b = Dare::open(&b_dir, &site_b(&url, B_PASS)).unwrap();
    assert_eq!(get(&b, "from-b"), bytes(9_000, 2));
    drop(b);

    // A rekeys to a passphrase (a new master key and the RT data key under a new root): B
    // follows again.
    drop(a);
    let target = Root::Passphrase(Zeroizing::new(b"site A's new passphrase".to_vec()));
    let a = Dare::open_with_target(&a_dir, &site_a(&url), &target).unwrap();
    let id = a.start_rekey().unwrap();
    a.run_rekey(id, &RotationOptions::default()).unwrap();
    drop(a);
    let mut a_opts = site_a(&url);
    a_opts.root = target;
    let a = Dare::open(&a_dir, &a_opts).unwrap();
    let b = Dare::open(&b_dir, &site_b(&url, B_PASS)).unwrap();
    for name in ["from-a", "from-b", "a-after-rotation", "b-after-rotation"] {
        assert_eq!(get(&b, name), get(&a, name), "{name}");
    }
    put(&b, "b-after-rekey", b"after the rekey");
    assert_eq!(rotation_of(&b, "b-after-rekey"), 3);
    assert_eq!(get(&a, "b-after-rekey"), b"after the rekey");

    // A revoke: B can no longer open the store; A is untouched.
    drop(b);
    a.revoke_site("site-b").unwrap();
    let e = site_error(Dare::open(&b_dir, &site_b(&url, B_PASS)).unwrap_err());
    assert!(matches!(e, SiteError::NotGranted { .. }), "{e}");
    assert_eq!(a.sites().unwrap(), vec![]);
    assert_eq!(get(&a, "from-b"), bytes(9_000, 2));
    let e = a.revoke_site("site-b").unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

/// Replaces every key granted to the site with fingerprint `fp` by `f(row)`.
fn rewrite_grant(d: &Dare, fp: &[u8; 32], f: impl Fn(&SiteKeyRecord) -> Vec<u8>) {
    write_with(
        &**d.metadata(),
        |_: &dare_metadata::MetaError| false,
        |tx| {
            for mut row in tx.site_keys(fp)? {
                row.wrapped = f(&row);
                tx.put_site_key(&row)?;
            }
            Ok(())
        },
    )
    .unwrap();
}

fn fingerprint(pem: &[u8]) -> [u8; 32] {
    dare::SitePublicKey::parse(pem).unwrap().fingerprint()
}

#[test]
fn bad_grants_and_keys_are_refused_with_typed_errors_and_nothing_written() {
    let (a, _a_dir, b_dir, pem, url, tmp) = two_sites();
    let sites_now = || read_with(&**a.metadata(), |tx| tx.sites()).unwrap();

    // Garbage, and a truncated key, as the public key: nothing recorded.
    for bad in [&b"not a key"[..], &pem[..pem.len() / 2]] {
        let e = site_error(a.grant_site("site-b", bad).unwrap_err());
        assert!(matches!(e, SiteError::PublicKeyInvalid(_)), "{e}");
    }
    let e = site_error(a.grant_site("no spaces", &pem).unwrap_err());
    assert!(matches!(e, SiteError::InvalidName(_)), "{e}");
    assert_eq!(sites_now(), vec![]);

    a.grant_site("site-b", &pem).unwrap();
    // The same name again, or the same key under another name.
    let c_dir = tmp.path().join("c");
    let c = Dare::site_init(&c_dir, &site_b(&url, "site C's passphrase"), None).unwrap();
    let c_pem = std::fs::read(&c.public_file).unwrap();
    let e = site_error(a.grant_site("site-b", &c_pem).unwrap_err());
    assert!(matches!(e, SiteError::NameTaken(_)), "{e}");
    let e = site_error(a.grant_site("site-b2", &pem).unwrap_err());
    assert!(
        matches!(e, SiteError::AlreadyGranted { ref name } if name == "site-b"),
        "{e}"
    );
    assert_eq!(sites_now().len(), 1);

    // B's site key under another root (the wrong passphrase).
    let e = site_error(Dare::open(&b_dir, &site_b(&url, "not B's passphrase!")).unwrap_err());
    assert!(matches!(e, SiteError::KeyFileWrongRoot { .. }), "{e}");

    // C is not granted.
    let e = site_error(Dare::open(&c_dir, &site_b(&url, "site C's passphrase")).unwrap_err());
    assert!(matches!(e, SiteError::NotGranted { .. }), "{e}");

    let b_fp = fingerprint(&pem);
    let b_rows = read_with(&**a.metadata(), |tx| tx.site_keys(&b_fp)).unwrap();
    let original = |row: &SiteKeyRecord| {
        b_rows
            .iter()
            .find(|r| r.blob_hash == row.blob_hash)
            .unwrap()
            .wrapped
            .clone()
    };
    let refused = |what: &str| {
        let e = Dare::open(&b_dir, &site_b(&url, B_PASS)).unwrap_err();
        assert!(e.is_integrity(), "{what}: {e}");
        let e = site_error(e);
        assert!(matches!(e, SiteError::GrantInvalid { .. }), "{what}: {e}");
    };

    // A tampered grant: one bit flipped in each key.
    rewrite_grant(&a, &b_fp, |r| {
        let mut w = r.wrapped.clone();
        w[200] ^= 0x10;
        w
    });
    refused("tampered");

    // A grant encrypted to another key pair (C's), as if for the wrong private key.
    let c_public = dare::SitePublicKey::parse(&c_pem).unwrap();
    let store_id = a.store_id();
    rewrite_grant(&a, &b_fp, |r| {
        let label = dare_keys::site::grant_label(&store_id, &b_fp, &r.blob_hash);
        c_public
            .encrypt(&label, &dare::Secret32::from_bytes("t", [9; 32]))
            .unwrap()
    });
    refused("encrypted to another key pair");

    // A grant made for another store id (to B's own key): its OAEP label differs.
    let b_public = dare::SitePublicKey::parse(&pem).unwrap();
    rewrite_grant(&a, &b_fp, |r| {
        let label = dare_keys::site::grant_label(&[0xee; 16], &b_fp, &r.blob_hash);
        b_public
            .encrypt(&label, &dare::Secret32::from_bytes("t", [9; 32]))
            .unwrap()
    });
    refused("another store's grant");

    // Restored, B opens again.
    rewrite_grant(&a, &b_fp, original);
    let b = Dare::open(&b_dir, &site_b(&url, B_PASS)).unwrap();
    assert_eq!(get(&b, "from-a"), bytes(20_000, 1));
    drop(b);

    // B's site key swapped for C's (granted to no one): B is not granted.
    std::fs::copy(c_dir.join("site.key"), b_dir.join("site.key")).unwrap();
    let e = site_error(Dare::open(&b_dir, &site_b(&url, "site C's passphrase")).unwrap_err());
    assert!(matches!(e, SiteError::NotGranted { .. }), "{e}");
}

#[test]
fn site_init_refuses_what_it_cannot_join_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // An SQLite store cannot be shared.
    let dir = tmp.path().join("s");
    let e = Dare::site_init(&dir, &Options::default(), None).unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    assert!(!dir.exists());
    // A database without a store.
    let url = fresh_database();
    let e = Dare::site_init(&dir, &site_a(&url), None).unwrap_err();
    assert!(
        matches!(e, Error::Keys(KeyStoreError::NotInitialized(_))),
        "{e}"
    );
    assert!(!dir.exists());
    // A directory that holds a store already.
    let a_dir = tmp.path().join("a");
    Dare::create(&a_dir, 4096, &site_a(&url)).unwrap();
    let e = Dare::site_init(&a_dir, &site_a(&url), None).unwrap_err();
    assert!(matches!(e, Error::AlreadyAStore(_)), "{e}");
    assert!(!a_dir.join("site.key").exists());
    // A passphrase too short for a new root: nothing left behind.
    let short = Options {
        root: Root::Passphrase(Zeroizing::new(b"short".to_vec())),
        ..site_a(&url)
    };
    assert!(Dare::site_init(&dir, &short, None).is_err());
    assert!(!dir.exists());
}

/// A grant made while a rotation is at its step 1 — after the new master key was made, before
/// its transaction; and from inside that transaction (the grant commits first, the step's
/// transaction then conflicts on the store row and runs again) — ends with the new master key
/// granted too: the joined site opens the store and reads and writes after the rotation.
#[test]
fn a_grant_during_a_rotation_covers_its_new_master_key() {
    use std::sync::Arc;

    use dare_keys::StepHook;

    let (a, a_dir, b_dir, pem, url, tmp) = two_sites();
    let c_dir = tmp.path().join("c");
    let c = Dare::site_init(
        &c_dir,
        &site_b(&url, "site C's passphrase"),
        Some(&a_dir.join("objects")),
    )
    .unwrap();
    let c_pem = std::fs::read(&c.public_file).unwrap();
    let grant_at = |name: &'static str, key: Vec<u8>, inside: bool| {
        let (dir, url) = (a_dir.clone(), url.clone());
        let hook = StepHook(Arc::new(move |step| {
            if step == 1 {
                // Another process of site A: its own connections.
                let other = Dare::open(&dir, &site_a(&url)).unwrap();
                other.grant_site(name, &key).unwrap();
            }
        }));
        let mut o = RotationOptions::default();
        if inside {
            o.inside_step_transaction = Some(hook);
        } else {
            o.before_step_commit = Some(hook);
        }
        o
    };
    let id = a.keys().start_rotation().unwrap();
    a.keys()
        .run_rotation(id, &grant_at("site-b", pem.clone(), false))
        .unwrap();
    let id = a.keys().start_rotation().unwrap();
    a.keys()
        .run_rotation(id, &grant_at("site-c", c_pem, true))
        .unwrap();
    // Three master keys and the RT data key, for both sites.
    let sites = a.sites().unwrap();
    assert_eq!(sites.len(), 2);
    for s in &sites {
        assert_eq!(s.keys, 4, "{}", s.name);
    }
    for (dir, pass) in [(&b_dir, B_PASS), (&c_dir, "site C's passphrase")] {
        let d = Dare::open(dir, &site_b(&url, pass)).unwrap();
        assert_eq!(get(&d, "from-a"), bytes(20_000, 1));
        let name = format!("from-{}", dir.display().to_string().len());
        put(&d, &name, b"after two rotations");
        assert_eq!(rotation_of(&d, &name), 3);
        assert_eq!(get(&a, &name), b"after two rotations");
    }
}
