//! Import of a format-1 key store (`keystore.dat`, made by the previous release) into the
//! metadata database: the release fixture opens with its root key and its objects' envelopes
//! open, before and after a rotation; damaged files are typed errors.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::*;
use dare_keys::legacy::{LegacySummary, check_v1_file, has_v1_store, import_v1};
use dare_keys::*;
use dare_metadata::{By, TaskKind, read_with, write_with};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dare/tests/fixtures/v1-store/store")
}

/// A copy of the fixture store in a temporary directory, root key mode 0600 (git keeps no
/// modes).
fn fixture_copy() -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let dest = to.join(e.file_name());
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &dest);
            } else {
                fs::copy(e.path(), &dest).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&fixture(), &dir.path().join("store"));
    let key = dir.path().join("store/root.key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    dir
}

fn import(
    store_dir: &Path,
    meta: &dyn dare_metadata::Metadata,
) -> Result<LegacySummary, StoreError> {
    write_with(
        meta,
        |_: &StoreError| false,
        |tx| import_v1(store_dir, tx, [0x11; 16], 12),
    )
}

/// The envelope of a format-1 object file (docs/FORMAT.md §2-3): kind byte at 7, name length
/// (u16 LE) at 16, key block length (u16 LE) at 18; the name follows the 24-byte fixed header
/// and the key block follows the name.
fn v1_envelope(object: &Path) -> Envelope {
    let f = fs::read(object).unwrap();
    assert_eq!(&f[..5], b"DARE\x01", "format-1 object");
    let name_len = usize::from(u16::from_le_bytes([f[16], f[17]]));
    let block_len = usize::from(u16::from_le_bytes([f[18], f[19]]));
    let at = 24 + name_len;
    Envelope {
        kind: KeyKind::from_byte(f[7]).unwrap(),
        bytes: f[at..at + block_len].to_vec(),
    }
}

#[test]
fn release_fixture_imports_and_its_objects_open() {
    let tmp = fixture_copy();
    let sdir = tmp.path().join("store");
    assert!(has_v1_store(&sdir));
    assert!(!has_v1_store(tmp.path()));
    let meta = new_db(tmp.path());
    let summary = import(&sdir, &*meta).unwrap();
    assert_eq!(
        (
            summary.master_keys,
            summary.rotation_keys,
            summary.namespaces,
            summary.tasks
        ),
        (2, 2, 2, 1)
    );
    assert_eq!(
        summary
            .buckets
            .iter()
            .map(|(n, id)| (n.as_str(), *id))
            .collect::<Vec<_>>(),
        [("photos", 1), ("public", 2)]
    );

    let root: Arc<dyn RootOfTrust> = Arc::new(RootKeyFile::load(&sdir.join("root.key")).unwrap());
    let store = Arc::new(KeyStore::open(meta.clone(), root, opts()).unwrap());
    let rec = store.store_record();
    assert_eq!((rec.store_id, rec.chunk_shift), ([0x11; 16], 12));
    assert_eq!(rec.root_of_trust, "root-key-file");
    assert_eq!(rec.key_epoch, 3, "the file's epoch");
    let kv = store.key_versions();
    assert_eq!(
        kv.masters,
        [(1, MasterState::Retired), (2, MasterState::Active)]
    );
    assert_eq!(kv.rotation_versions, [1, 2]);
    assert_eq!((kv.active_master, kv.active_rotation), (2, 2));

    let (namespaces, buckets, tasks) = read_with::<_, StoreError>(&*meta, |tx| {
        Ok((tx.namespaces()?, tx.buckets(None)?, tx.tasks()?))
    })
    .unwrap();
    let ns: Vec<_> = namespaces
        .iter()
        .map(|n| (n.id, n.name.as_str(), n.encryption))
        .collect();
    assert_eq!(ns, [(1, "default", true), (2, "clear", false)]);
    let bs: Vec<_> = buckets
        .iter()
        .map(|b| (b.id, b.name.as_str(), b.namespace_id, b.encryption))
        .collect();
    assert_eq!(bs, [(1, "photos", 1, true), (2, "public", 2, false)]);
    assert_eq!(tasks.len(), 1);
    let t = &tasks[0];
    assert_eq!(
        (t.id, t.kind, t.state, t.step, t.new_master, t.new_rotation),
        (
            1,
            TaskKind::Rotation,
            TaskState::Completed,
            5,
            Some(2),
            Some(2)
        )
    );
    assert!(
        t.outcome
            .as_deref()
            .unwrap()
            .contains("master key version 2")
    );

    // cat.jpg was written before the fixture's rotation: rotation version 1.
    let photos = buckets[0].clone();
    let env = v1_envelope(&sdir.join("buckets/photos/cat.jpg"));
    assert_eq!(env.kind, KeyKind::Hierarchy);
    let hb = HierarchyBlock::parse(&env.bytes).unwrap();
    assert_eq!((hb.ns_id, hb.bucket_id, hb.rotation_version), (1, 1, 1));
    let late = v1_envelope(&sdir.join("buckets/photos/after-rotation"));
    assert_eq!(
        HierarchyBlock::parse(&late.bytes).unwrap().rotation_version,
        2
    );
    let p = HierarchyProvider::new(store.clone(), &photos, CacheMode::Off).unwrap();
    let dk = p.open_data_key(&env).unwrap();
    let dk_late = p.open_data_key(&late).unwrap();
    assert!(matches!(
        HierarchyProvider::new(store.clone(), &buckets[1], CacheMode::On),
        Err(StoreError::EncryptionDisabled(_))
    ));

    // A rotation on the imported records: old envelopes still open, new ones use version 3,
    // and the old envelope can be moved to it.
    let id = store.start_rotation().unwrap();
    assert_eq!(id, 2, "task ids continue after the imported ones");
    let done = store.run_rotation(id, &RotationOptions::default()).unwrap();
    assert_eq!((done.new_master, done.new_rotation), (Some(3), Some(3)));
    let fresh = Arc::new(
        KeyStore::open(
            open_db(tmp.path()),
            Arc::new(RootKeyFile::load(&sdir.join("root.key")).unwrap()),
            opts(),
        )
        .unwrap(),
    );
    for s in [&store, &fresh] {
        for mode in [CacheMode::On, CacheMode::Off] {
            let q = HierarchyProvider::new(s.clone(), &photos, mode).unwrap();
            assert_eq!(q.open_data_key(&env).unwrap(), dk);
            assert_eq!(q.open_data_key(&late).unwrap(), dk_late);
        }
    }
    let moved = p.rewrap(&env).unwrap().unwrap();
    assert_eq!(
        HierarchyBlock::parse(&moved.bytes)
            .unwrap()
            .rotation_version,
        3
    );
    assert_eq!(p.open_data_key(&moved).unwrap(), dk);
    // New namespaces and buckets get fresh ids above the imported ones.
    let n = add_namespace(&store, "more", true);
    let b = add_bucket(&store, "more", "more-b", true);
    assert_eq!((n.id, b.id), (3, 3));
    let (dk3, env3) = HierarchyProvider::new(store.clone(), &b, CacheMode::On)
        .unwrap()
        .new_data_key()
        .unwrap();
    let q = HierarchyProvider::new(fresh.clone(), &b, CacheMode::Off).unwrap();
    assert_eq!(q.open_data_key(&env3).unwrap(), dk3);
    assert_eq!(
        read_with::<_, StoreError>(&*meta, |tx| Ok(tx.namespace(By::Id(1))?))
            .unwrap()
            .unwrap()
            .master_version,
        3
    );
}

#[test]
fn import_refuses_an_initialized_database_and_a_missing_file() {
    let tmp = fixture_copy();
    let sdir = tmp.path().join("store");
    let meta = new_db(tmp.path());
    init(&*meta, &*root(1));
    assert!(matches!(
        import(&sdir, &*meta),
        Err(StoreError::AlreadyInitialized(_))
    ));
    let empty = tempfile::tempdir().unwrap();
    let meta2 = new_db(empty.path());
    match import(empty.path(), &*meta2) {
        Err(e @ StoreError::NotFound { .. }) => assert!(e.to_string().contains("keystore.dat")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn corrupt_and_truncated_v1_files_are_typed_errors() {
    let good = fs::read(fixture().join("keystore.dat")).unwrap();
    assert!(check_v1_file(&good).is_ok());
    for cut in [0, 7, 51, 52, good.len() / 2, good.len() - 1] {
        assert!(
            matches!(check_v1_file(&good[..cut]), Err(StoreError::Corrupt(_))),
            "cut {cut}"
        );
    }
    let mut flipped = good.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x20;
    match check_v1_file(&flipped) {
        Err(e @ StoreError::Corrupt(_)) => assert!(e.to_string().contains("checksum"), "{e}"),
        other => panic!("{other:?}"),
    }
    let mut version = good.clone();
    version[8] = 9;
    assert!(matches!(
        check_v1_file(&version),
        Err(StoreError::UnsupportedFormat(9))
    ));
    let mut magic = good.clone();
    magic[0] = b'X';
    assert!(matches!(check_v1_file(&magic), Err(StoreError::Corrupt(_))));
    // A body that is valid JSON but breaks the table invariants.
    let body = &good[52..];
    let mut t: serde_json::Value = serde_json::from_slice(body).unwrap();
    t["active_master"] = 7.into();
    let framed = fuzzing::frame_store_body(&serde_json::to_vec(&t).unwrap());
    match check_v1_file(&framed) {
        Err(e @ StoreError::Corrupt(_)) => assert!(e.to_string().contains("active master"), "{e}"),
        other => panic!("{other:?}"),
    }

    // Importing a damaged file writes nothing.
    let tmp = fixture_copy();
    let sdir = tmp.path().join("store");
    fs::write(sdir.join("keystore.dat"), &good[..100]).unwrap();
    let meta = new_db(tmp.path());
    assert!(matches!(import(&sdir, &*meta), Err(StoreError::Corrupt(_))));
    assert!(matches!(
        KeyStore::open(meta, root(1), opts()),
        Err(StoreError::NotInitialized(_))
    ));
}
