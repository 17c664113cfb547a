//! A store made by the previous release (object format 1, `keystore.dat`) opens after the
//! upgrade: a one-time migration moves its records into the metadata database and its object
//! files to their data-file locations, without rewriting a byte of data. The fixture was made
//! with that release (tests/fixtures/v1-store/README.md).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use dare::{Dare, GetOptions, KeyRef, ListQuery, Options, Secret32};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-store")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// A copy of the fixture store in a temporary directory, with the modes git does not keep.
fn store() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let s = tmp.path().join("store");
    copy_dir(&fixture().join("store"), &s);
    fs::set_permissions(s.join("root.key"), fs::Permissions::from_mode(0o600)).unwrap();
    (tmp, s)
}

fn input(name: &str) -> Vec<u8> {
    fs::read(fixture().join("input").join(name)).unwrap()
}

fn customer_key() -> Secret32 {
    let mut k = [0u8; 32];
    k.copy_from_slice(&input("ck"));
    Secret32::from_bytes("customer key", k)
}

fn check_everything(d: &Dare) {
    let get = |b: &str, n: &str| d.get(b, n, &GetOptions::default()).unwrap();
    assert_eq!(get("photos", "empty").to_vec().unwrap(), input("in0"));
    let one = get("photos", "one");
    assert_eq!(one.to_vec().unwrap(), input("in1"));
    assert_eq!(one.meta(), &[("owner".to_string(), "alice".to_string())]);
    let cat = get("photos", "cat.jpg");
    assert_eq!(cat.to_vec().unwrap(), input("in5000"));
    assert_eq!(cat.meta().len(), 2);
    assert_eq!(
        get("photos", "after-rotation").to_vec().unwrap(),
        input("in20000")
    );
    let ssec = d
        .get(
            "photos",
            "ssec",
            &GetOptions {
                customer_key: Some(customer_key()),
            },
        )
        .unwrap();
    assert_eq!(ssec.to_vec().unwrap(), input("in5000"));
    assert!(d.get("photos", "ssec", &GetOptions::default()).is_err());
    assert_eq!(get("public", "readme").to_vec().unwrap(), input("in1"));
    assert_eq!(get("public", "data").to_vec().unwrap(), input("in5000"));
    // Range reads of a format-1 object.
    let mut part = Vec::new();
    get("photos", "after-rotation")
        .read_range(4000, 5000, &mut |p| {
            part.extend_from_slice(p);
            Ok(())
        })
        .unwrap();
    assert_eq!(part, input("in20000")[4000..9000]);
}

#[test]
fn fixture_store_migrates_and_reads_back() {
    let (_t, s) = store();
    let d = Dare::open(&s, &Options::default()).unwrap();
    assert!(s.join("dare.db").exists());
    assert!(!s.join("keystore.dat").exists());
    assert!(s.join("keystore.dat.v1-migrated").exists());
    assert!(
        !s.join("buckets").exists(),
        "old bucket directories removed"
    );
    assert_eq!(d.chunk_size(), 4096);
    let names: Vec<String> = d
        .buckets(None)
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["photos", "public"]);
    let v = d.keys().key_versions();
    assert_eq!((v.active_master, v.active_rotation), (2, 2));
    let page = d.list("photos", &ListQuery::default()).unwrap();
    let listed: Vec<&str> = page.objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(
        listed,
        ["after-rotation", "cat.jpg", "empty", "one", "ssec"]
    );
    assert!(page.objects.iter().all(|o| o.format == 1));
    check_everything(&d);
    let r = d
        .fsck(&dare::FsckOptions {
            deep: true,
            ..Default::default()
        })
        .unwrap();
    assert!(r.is_clean() && r.garbage.is_empty(), "{r:?}");
    assert_eq!(r.skipped_customer_keys, 1);
    // New objects in a migrated store are format 2, beside the old ones.
    d.put("photos", "new", &mut &b"fresh"[..], &Default::default())
        .unwrap();
    assert_eq!(d.head("photos", "new").unwrap().format, 2);
    // A rotation keeps the old objects readable.
    let id = d.keys().start_rotation().unwrap();
    d.keys().run_rotation(id, &Default::default()).unwrap();
    check_everything(&d);
    drop(d);
    // Opening again does not migrate twice.
    let d = Dare::open(&s, &Options::default()).unwrap();
    check_everything(&d);
    assert!(matches!(
        d.head("photos", "one").unwrap().key_ref,
        KeyRef::Hierarchy {
            rotation_version: 1,
            ..
        }
    ));
}

/// After the migration, format-1 objects are as protected as the format allows: a flipped
/// byte in a clear one fails its CRC-32C (computed at migration), an encrypted one's file
/// swapped in from another bucket fails the envelope's bucket binding, and a row that
/// disagrees with its authenticated header is refused.
#[test]
fn migrated_objects_refuse_tampering() {
    let (_t, s) = store();
    let d = Dare::open(&s, &Options::default()).unwrap();
    let file_of = |bucket: &str, name: &str| {
        let b = d.bucket(bucket).unwrap();
        let loc = dare_engine::FileLoc {
            bucket_id: b.id,
            object_id: d.head(bucket, name).unwrap().object_id,
        };
        s.join("objects").join(loc.rel_path())
    };
    let read = |bucket: &str, name: &str| {
        d.get(bucket, name, &GetOptions::default())
            .and_then(|o| o.to_vec())
    };
    // A clear format-1 object: its ETag is now its CRC-32C.
    assert_eq!(d.head("public", "data").unwrap().etag.len(), 8);
    let p = file_of("public", "data");
    let orig = fs::read(&p).unwrap();
    let mut t = orig.clone();
    let last = t.len() - 1;
    t[last] ^= 1;
    fs::write(&p, &t).unwrap();
    let e = read("public", "data").unwrap_err();
    assert!(e.is_integrity(), "{e}");
    fs::write(&p, &orig).unwrap();
    assert_eq!(read("public", "data").unwrap(), input("in5000"));
    // An encrypted format-1 file copied over another's.
    let victim = file_of("photos", "one");
    let saved = fs::read(&victim).unwrap();
    fs::copy(file_of("photos", "cat.jpg"), &victim).unwrap();
    assert!(read("photos", "one").unwrap_err().is_integrity());
    fs::write(&victim, saved).unwrap();
    // A row whose copy of the size disagrees with the header.
    let c = rusqlite::Connection::open(s.join("dare.db")).unwrap();
    c.execute_batch("UPDATE objects SET size = size + 1 WHERE name = CAST('cat.jpg' AS BLOB)")
        .unwrap();
    let e = read("photos", "cat.jpg").unwrap_err();
    assert!(e.is_integrity(), "{e}");
}
