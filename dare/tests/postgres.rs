//! Stores whose metadata is on a PostgreSQL server (started by this test binary with
//! `dare-testkit`): the same round trip as on SQLite, two handles ("nodes") on one store,
//! `metadata.json` and the pairing of a store directory with its database, and a commit cut
//! off by a lost connection. Without PostgreSQL installed these tests fail, saying how to
//! install it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dare::{
    Dare, Error, FsckOptions, GetOptions, KeyRef, ListQuery, MetaError, MetadataLocation, Options,
    PostgresUrl, PutOptions, RotationOptions,
};
use dare_engine::VolumeEntry;
use dare_engine::format::hex;
use dare_testkit::PgServer;

static SERVER: OnceLock<PgServer> = OnceLock::new();

/// The server shared by this binary's tests.
fn server() -> &'static PgServer {
    SERVER.get_or_init(PgServer::start)
}

/// A new, empty database on the shared server; its URL (with the password).
fn fresh_database() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    server().create_database(&format!("d{n}"))
}

/// `postgres://dare:***@127.0.0.1:<port>/<db>`: how dare must show `url`.
fn shown(url: &str) -> String {
    let db = url.rsplit('/').next().expect("database");
    format!("postgres://dare:***@127.0.0.1:{}/{db}", server().port())
}

fn pg(url: &str) -> Options {
    Options {
        metadata: MetadataLocation::Postgres(PostgresUrl::new(url)),
        ..Options::default()
    }
}

/// `text` with no password of the test server in it.
#[track_caller]
fn no_password(text: &str) {
    assert!(
        !text.contains(server().password()),
        "password shown: {text}"
    );
}

#[track_caller]
fn err_text(e: &Error) -> String {
    let text = format!("{e} / {e:?}");
    no_password(&text);
    text
}

fn data_files(d: &Dare) -> usize {
    d.volume()
        .scan()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, VolumeEntry::Data { .. }))
        .count()
}

fn get(d: &Dare, bucket: &str, name: &str) -> Vec<u8> {
    d.get(bucket, name, &GetOptions::default())
        .unwrap()
        .to_vec()
        .unwrap()
}

fn rotation_of(d: &Dare, bucket: &str, name: &str) -> u32 {
    match d.head(bucket, name).unwrap().key_ref {
        KeyRef::Hierarchy {
            rotation_version, ..
        } => rotation_version,
        k => panic!("{bucket}/{name}: {k:?}"),
    }
}

fn rotate(d: &Dare) {
    let id = d.keys().start_rotation().unwrap();
    d.keys()
        .run_rotation(id, &RotationOptions::default())
        .unwrap();
}

fn bytes(n: usize, seed: u32) -> Vec<u8> {
    (0..n as u32)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed) >> 3) as u8)
        .collect()
}

/// The round trip every backend must pass: put (several chunks, user metadata, a nested
/// name, a clear bucket), get whole and by range, list with prefix and delimiter, overwrite,
/// delete, rotate, rewrap; reopen; fsck finds nothing wrong and no garbage.
fn round_trip(dir: &Path, opts: &Options) {
    let d = Dare::create(dir, 4096, opts).unwrap();
    d.create_bucket("photos", "default", None).unwrap();
    d.create_namespace("open", false).unwrap();
    d.create_bucket("public", "open", None).unwrap();
    let big = bytes(300_000, 1);
    let put = |bucket: &str, name: &str, data: &[u8]| {
        d.put(
            bucket,
            name,
            &mut &data[..],
            &PutOptions {
                meta: vec![("owner".into(), "alice".into())],
                customer_key: None,
            },
        )
        .unwrap()
    };
    assert!(put("photos", "2026/cat.jpg", &big).encrypted);
    put("photos", "2026/dog.jpg", b"woof");
    put("photos", "readme", b"");
    assert!(!put("public", "index.html", b"<html>").encrypted);

    let o = d
        .get("photos", "2026/cat.jpg", &GetOptions::default())
        .unwrap();
    assert_eq!(o.meta(), &[("owner".to_string(), "alice".to_string())]);
    assert_eq!(o.to_vec().unwrap(), big);
    let mut range = Vec::new();
    o.read_range(4000, 5000, &mut |p| {
        range.extend_from_slice(p);
        Ok(())
    })
    .unwrap();
    assert_eq!(range, big[4000..9000]);
    assert_eq!(get(&d, "public", "index.html"), b"<html>");
    assert_eq!(get(&d, "photos", "readme"), b"");

    let page = d
        .list(
            "photos",
            &ListQuery {
                delimiter: Some("/".into()),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(page.common_prefixes, ["2026/"]);
    assert_eq!(
        page.objects.iter().map(|o| &o.name[..]).collect::<Vec<_>>(),
        ["readme"]
    );
    let page = d
        .list(
            "photos",
            &ListQuery {
                prefix: "2026/".into(),
                max_keys: 1,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(page.objects[0].name, "2026/cat.jpg");
    assert!(page.is_truncated);

    put("photos", "2026/dog.jpg", b"bark");
    assert_eq!(get(&d, "photos", "2026/dog.jpg"), b"bark");
    d.delete("photos", "readme").unwrap();
    assert!(matches!(
        d.get("photos", "readme", &GetOptions::default()),
        Err(Error::NoSuchObject { .. })
    ));

    // Rotation: old objects stay under rotation key 1 and readable, new ones use 2; rewrap
    // moves the old ones without touching their data files.
    rotate(&d);
    put("photos", "2026/bird.jpg", b"tweet");
    assert_eq!(rotation_of(&d, "photos", "2026/cat.jpg"), 1);
    assert_eq!(rotation_of(&d, "photos", "2026/bird.jpg"), 2);
    let r = d.rewrap("photos", &mut |_| {}).unwrap();
    assert_eq!((r.rewrapped, r.current), (2, 1), "{r:?}");
    assert_eq!(rotation_of(&d, "photos", "2026/cat.jpg"), 2);
    let r = d.rewrap("public", &mut |_| {}).unwrap();
    assert_eq!((r.rewrapped, r.clear), (0, 1), "{r:?}");

    let id = d.store_id();
    drop(d);
    let d = Dare::open(dir, opts).unwrap();
    assert_eq!(d.store_id(), id);
    assert_eq!(get(&d, "photos", "2026/cat.jpg"), big);
    assert_eq!(get(&d, "photos", "2026/bird.jpg"), b"tweet");
    assert_eq!(get(&d, "photos", "2026/dog.jpg"), b"bark");
    assert_eq!(d.buckets(None).unwrap().len(), 2);
    let f = d
        .fsck(&FsckOptions {
            deep: true,
            ..Default::default()
        })
        .unwrap();
    assert!(f.is_clean(), "{f:?}");
    assert!(f.garbage.is_empty(), "{f:?}");
    assert_eq!((f.objects, f.verified), (4, 4), "{f:?}");
}

/// One test per backend, as rustls runs its suite per provider.
macro_rules! on_every_backend {
    ($($name:ident: $test:expr;)*) => {$(
        mod $name {
            use super::*;

            #[test]
            fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                ($test)(&dir.path().join("s"), &Options::default());
            }

            #[test]
            fn postgres() {
                let dir = tempfile::tempdir().unwrap();
                ($test)(&dir.path().join("s"), &pg(&fresh_database()));
            }
        }
    )*};
}

on_every_backend! {
    put_get_list_delete_rotate_rewrap: round_trip;
}

/// `init` on PostgreSQL: no dare.db, and a `metadata.json` (0600) naming the database
/// without its password and the store id the database holds.
#[test]
fn metadata_json_records_the_database_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let url = fresh_database();
    let d = Dare::create(&store, 65536, &pg(&url)).unwrap();
    assert!(!store.join("dare.db").exists());
    assert!(store.join("root.key").exists());
    assert!(Dare::exists(&store));
    let path = store.join("metadata.json");
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = fs::read_to_string(&path).unwrap();
    no_password(&text);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["format"], 1);
    assert_eq!(v["backend"], "postgres");
    assert_eq!(v["url"], shown(&url));
    assert_eq!(v["store_id"], hex(&d.store_id()));
    assert_eq!(d.metadata().describe(), shown(&url));
    no_password(&format!("{d:?} {:?}", pg(&url)));

    // Creating it again is refused, with either backend.
    for opts in [pg(&url), Options::default()] {
        match Dare::create(&store, 65536, &opts) {
            Err(Error::AlreadyAStore(p)) => assert_eq!(p, store),
            other => panic!("{other:?}"),
        }
    }
    assert!(!store.join("dare.db").exists());
}

/// Opening a PostgreSQL store without the URL says which database and how to give it.
#[test]
fn opening_without_the_url_names_the_database_and_how_to_give_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let url = fresh_database();
    drop(Dare::create(&store, 65536, &pg(&url)).unwrap());
    let e = Dare::open(&store, &Options::default()).unwrap_err();
    assert!(matches!(e, Error::MetadataUrlNeeded { .. }), "{e:?}");
    let text = err_text(&e);
    for part in [&shown(&url)[..], "DARE_METADATA_URL", "--metadata"] {
        assert!(text.contains(part), "{part}: {text}");
    }
    // A SQLite store given a URL says the URL does not apply.
    let sqlite = dir.path().join("q");
    drop(Dare::create(&sqlite, 65536, &Options::default()).unwrap());
    let e = Dare::open(&sqlite, &pg(&url)).unwrap_err();
    assert!(matches!(e, Error::MetadataUrlNotApplicable(_)), "{e:?}");
    err_text(&e);
    Dare::open(&store, &pg(&url)).unwrap();
}

/// A store directory and a database of another store (or of none) are never used together;
/// a database that holds a store cannot be given to a second directory.
#[test]
fn a_store_directory_is_never_paired_with_another_stores_database() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let (url1, url2, empty) = (fresh_database(), fresh_database(), fresh_database());
    let d1 = Dare::create(&one, 65536, &pg(&url1)).unwrap();
    d1.create_bucket("keep", "default", None).unwrap();
    d1.put(
        "keep",
        "x",
        &mut &b"data of store one"[..],
        &PutOptions::default(),
    )
    .unwrap();
    let d2 = Dare::create(&two, 65536, &pg(&url2)).unwrap();

    let e = Dare::open(&one, &pg(&url2)).unwrap_err();
    match &e {
        Error::StoreMismatch {
            expected, found, ..
        } => {
            assert_eq!(*expected, d1.store_id());
            assert_eq!(*found, Some(d2.store_id()));
        }
        other => panic!("{other:?}"),
    }
    let text = err_text(&e);
    assert!(
        text.contains(&shown(&url2)) && text.contains(&shown(&url1)),
        "{text}"
    );

    let e = Dare::open(&one, &pg(&empty)).unwrap_err();
    assert!(
        matches!(e, Error::StoreMismatch { found: None, .. }),
        "{e:?}"
    );
    err_text(&e);

    // A new directory on a database that holds a store: refused, nothing written.
    let three = dir.path().join("three");
    let e = Dare::create(&three, 65536, &pg(&url1)).unwrap_err();
    assert!(matches!(e, Error::AlreadyAStore(_)), "{e:?}");
    assert!(!three.join("metadata.json").exists());
    assert!(
        !three.exists(),
        "a refused create left its new directory behind"
    );
    // An existing directory with another store's database: refused.
    let e = Dare::create(&one, 65536, &pg(&url2)).unwrap_err();
    assert!(matches!(e, Error::StoreMismatch { .. }), "{e:?}");

    // Store one is intact.
    let d1 = Dare::open(&one, &pg(&url1)).unwrap();
    assert_eq!(get(&d1, "keep", "x"), b"data of store one");
    let f = d1.fsck(&FsckOptions::default()).unwrap();
    assert!(f.is_clean() && f.garbage.is_empty(), "{f:?}");
}

/// metadata.json is checked as dare.db is: not writable by others, not a symbolic link.
#[test]
fn metadata_json_must_be_the_stores_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let url = fresh_database();
    drop(Dare::create(&store, 65536, &pg(&url)).unwrap());
    let path = store.join("metadata.json");

    fs::set_permissions(&path, fs::Permissions::from_mode(0o622)).unwrap();
    let e = Dare::open(&store, &pg(&url)).unwrap_err();
    let text = err_text(&e);
    assert!(
        text.contains("metadata.json") && text.contains("chmod"),
        "{text}"
    );
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();

    let elsewhere = dir.path().join("planted.json");
    fs::rename(&path, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    let e = Dare::open(&store, &pg(&url)).unwrap_err();
    let text = err_text(&e);
    assert!(text.contains("symbolic link"), "{text}");
    fs::remove_file(&path).unwrap();
    fs::rename(&elsewhere, &path).unwrap();

    fs::write(&path, b"{\"format\": 1}").unwrap();
    let e = Dare::open(&store, &pg(&url)).unwrap_err();
    assert!(matches!(e, Error::LocationFile { .. }), "{e:?}");
}

/// Backup and restore are SQLite's; on PostgreSQL they say what to use instead.
#[test]
fn backup_and_restore_point_to_postgresql_tools() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let url = fresh_database();
    let d = Dare::create(&store, 65536, &pg(&url)).unwrap();
    let e = d.backup(&dir.path().join("meta.bak")).unwrap_err();
    assert!(err_text(&e).contains("pg_dump"), "{e}");
    assert!(!dir.path().join("meta.bak").exists());
    let e = Dare::restore(&store, &dir.path().join("meta.bak"), &pg(&url)).unwrap_err();
    let text = err_text(&e);
    assert!(
        text.contains("pg_restore") && text.contains(&shown(&url)),
        "{text}"
    );
}

/// Two handles on one store — two nodes: each sees the other's buckets and objects at once,
/// and a node that opened before a rotation reads objects written under the new rotation
/// key by the other (a key version it does not know makes it re-read the key records).
#[test]
fn two_nodes_share_buckets_objects_and_rotations() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let url = fresh_database();
    let a = Dare::create(&store, 4096, &pg(&url)).unwrap();
    let b = Dare::open(&store, &pg(&url)).unwrap();
    a.create_bucket("shared", "default", None).unwrap();
    let one = bytes(50_000, 7);
    a.put("shared", "one", &mut &one[..], &PutOptions::default())
        .unwrap();
    assert_eq!(get(&b, "shared", "one"), one);
    b.put("shared", "two", &mut &b"from b"[..], &PutOptions::default())
        .unwrap();
    assert_eq!(get(&a, "shared", "two"), b"from b");

    rotate(&a);
    a.put(
        "shared",
        "three",
        &mut &b"after"[..],
        &PutOptions::default(),
    )
    .unwrap();
    assert_eq!(rotation_of(&a, "shared", "three"), 2);
    // No waiting: `b` has never seen rotation key 2.
    assert_eq!(get(&b, "shared", "three"), b"after");
    assert_eq!(get(&b, "shared", "one"), one);
    let r = b.rewrap("shared", &mut |_| {}).unwrap();
    assert_eq!(r.rewrapped, 2, "{r:?}");
    for name in ["one", "two", "three"] {
        assert_eq!(rotation_of(&a, "shared", name), 2);
        get(&a, "shared", name);
    }
}

/// The connection is lost while the put's row is being committed: the outcome is unknown,
/// so the data file stays (a committed row would name it); the error says so. Here the
/// commit did not happen: the object is not visible, and the file is garbage that fsck
/// reports and `--repair` removes.
///
/// The commit is held open by a deferred constraint trigger that sleeps (deferred triggers
/// run inside COMMIT), and the session is terminated from another connection meanwhile, as
/// an administrator or a failover would.
#[test]
fn a_commit_cut_off_keeps_the_data_file_and_says_the_outcome_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let url = fresh_database();
    let database = url.rsplit('/').next().unwrap().to_owned();
    let d = Dare::create(&store, 4096, &pg(&url)).unwrap();
    d.create_bucket("bkt", "default", None).unwrap();
    d.put("bkt", "kept", &mut &b"old"[..], &PutOptions::default())
        .unwrap();
    let mut admin = server().client(&database);
    admin
        .batch_execute(
            "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN PERFORM pg_sleep(60); RETURN NULL; END $$; \
             CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT OR UPDATE ON objects \
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()",
        )
        .unwrap();
    let before = data_files(&d);

    let result = std::thread::scope(|s| {
        let put = s.spawn(|| {
            d.put(
                "bkt",
                "kept",
                &mut &bytes(20_000, 3)[..],
                &PutOptions::default(),
            )
        });
        // Wait for the put's COMMIT to be inside the trigger, then end its session.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let killed = admin
                .query(
                    "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity \
                     WHERE datname = $1 AND query = 'COMMIT' AND wait_event = 'PgSleep'",
                    &[&database],
                )
                .unwrap();
            if !killed.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the put never reached its commit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        put.join().unwrap()
    });
    let e = result.unwrap_err();
    assert!(e.is_outcome_unknown(), "{e:?}");
    let Error::PutOutcomeUnknown { source, .. } = &e else {
        panic!("{e:?}")
    };
    assert!(matches!(source, MetaError::CommitUnknown(_)), "{source:?}");
    let text = err_text(&e);
    assert!(
        text.contains("unknown") && text.contains("bkt/kept") && text.contains(&shown(&url)),
        "{text}"
    );
    assert_eq!(data_files(&d), before + 1, "the new data file was removed");

    admin
        .batch_execute("DROP TRIGGER slow_commit ON objects")
        .unwrap();
    // The session was ended inside COMMIT, before the commit: the old object is there.
    assert_eq!(get(&d, "bkt", "kept"), b"old");
    let f = d.fsck(&FsckOptions::default()).unwrap();
    assert!(f.is_clean(), "{f:?}");
    assert_eq!(f.garbage.len(), 1, "{f:?}");
    assert!(f.garbage[0].data_file);
    let f = d
        .fsck(&FsckOptions {
            repair: true,
            grace: Duration::ZERO,
            ..Default::default()
        })
        .unwrap();
    assert!(f.garbage.iter().all(|g| g.removed), "{f:?}");
    let f = d.fsck(&FsckOptions::default()).unwrap();
    assert!(f.is_clean() && f.garbage.is_empty(), "{f:?}");
    assert_eq!(data_files(&d), before);
}
