//! Attacks on the store at rest, below the library: data files moved between objects, rows
//! edited in the database. Each must be refused with no plaintext released; rewrapping must
//! change envelopes only.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use dare::{Dare, Error, GetOptions, KeyRef, Options, PutOptions, Secret32};
use dare_engine::FileLoc;

struct Fixture {
    _dir: tempfile::TempDir,
    store: PathBuf,
    d: Dare,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let d = Dare::create(&store, 4096, &Options::default()).unwrap();
    d.create_bucket("bkt", "default", None).unwrap();
    d.create_bucket("cbk", "default", None).unwrap();
    Fixture {
        _dir: dir,
        store,
        d,
    }
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

impl Fixture {
    fn put(&self, bucket: &str, name: &str, body: &[u8], ck: Option<&Secret32>) {
        self.d
            .put(
                bucket,
                name,
                &mut &body[..],
                &PutOptions {
                    meta: vec![("m".into(), name.into())],
                    customer_key: ck.cloned(),
                },
            )
            .unwrap();
    }
    fn file(&self, bucket: &str, name: &str) -> PathBuf {
        let b = self.d.bucket(bucket).unwrap();
        let info = self.d.head(bucket, name).unwrap();
        self.store.join("objects").join(
            FileLoc {
                bucket_id: b.id,
                object_id: info.object_id,
            }
            .rel_path(),
        )
    }
    fn read(&self, bucket: &str, name: &str, ck: Option<&Secret32>) -> Result<Vec<u8>, Error> {
        let o = self.d.get(
            bucket,
            name,
            &GetOptions {
                customer_key: ck.cloned(),
            },
        )?;
        // Count what reaches the sink: nothing may, when verification fails.
        let mut out = Vec::new();
        let r = o.read_all(&mut |p| {
            out.extend_from_slice(p);
            Ok(())
        });
        match r {
            Ok(()) => Ok(out),
            Err(e) => {
                assert!(out.is_empty(), "plaintext released before the failure");
                Err(e)
            }
        }
    }
    fn sql(&self, sql: &str) {
        let c = rusqlite::Connection::open(self.store.join("dare.db")).unwrap();
        c.execute_batch(sql).unwrap();
    }
}

fn refused(r: Result<Vec<u8>, Error>, what: &str) {
    match r {
        Ok(_) => panic!("{what}: accepted"),
        Err(e) => assert!(e.is_integrity(), "{what}: not an integrity error: {e}"),
    }
}

#[test]
fn data_files_moved_between_objects_are_refused() {
    let f = fixture();
    let ck = Secret32::from_bytes("ck", [5; 32]);
    // Same size everywhere, so that only the cryptography can tell the files apart.
    f.put("bkt", "x", &data(1, 10_000), None);
    f.put("bkt", "y", &data(2, 10_000), None);
    f.put("cbk", "x", &data(3, 10_000), None);
    f.put("bkt", "s1", &data(4, 10_000), Some(&ck));
    f.put("bkt", "s2", &data(5, 10_000), Some(&ck));
    f.put("cbk", "s1", &data(6, 10_000), Some(&ck));
    let cases = [
        (("bkt", "x"), ("bkt", "y"), None),
        (("bkt", "x"), ("cbk", "x"), None),
        (("bkt", "s1"), ("bkt", "s2"), Some(&ck)),
        (("bkt", "s1"), ("cbk", "s1"), Some(&ck)),
    ];
    for ((fb, fnm), (tb, tnm), key) in cases {
        let target = f.file(tb, tnm);
        let saved = fs::read(&target).unwrap();
        fs::copy(f.file(fb, fnm), &target).unwrap();
        refused(
            f.read(tb, tnm, key),
            &format!("{fb}/{fnm} copied over {tb}/{tnm}"),
        );
        fs::write(&target, saved).unwrap();
        assert!(f.read(tb, tnm, key).is_ok());
    }
}

#[test]
fn edited_rows_are_refused() {
    let f = fixture();
    f.put("bkt", "a", &data(1, 9000), None);
    f.put("bkt", "v", &data(2, 9000), None);
    let victim = "WHERE name = CAST('v' AS BLOB)";
    let from_a = "(SELECT {c} FROM objects WHERE name = CAST('a' AS BLOB))";
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "UPDATE objects SET envelope = {} {victim}",
                from_a.replace("{c}", "envelope")
            ),
            "another object's envelope (a valid wrap of the wrong data key)",
        ),
        (
            format!(
                "UPDATE objects SET envelope = {}, meta = {}, nonce_prefix = {} {victim}",
                from_a.replace("{c}", "envelope"),
                from_a.replace("{c}", "meta"),
                from_a.replace("{c}", "nonce_prefix")
            ),
            "another object's envelope, metadata and nonce prefix",
        ),
        (
            format!(
                "UPDATE objects SET meta = {} {victim}",
                from_a.replace("{c}", "meta")
            ),
            "another object's metadata block",
        ),
        (
            format!("UPDATE objects SET suite = 0, envelope = NULL, envelope_kind = NULL {victim}"),
            "a downgrade to clear",
        ),
        (
            format!("UPDATE objects SET size = size - 1 {victim}"),
            "a smaller size",
        ),
        (
            format!("UPDATE objects SET size = 4096 {victim}"),
            "a size cut at a chunk boundary",
        ),
        (
            format!("UPDATE objects SET chunk_shift = 13 {victim}"),
            "another chunk size",
        ),
        (
            format!("UPDATE objects SET name = CAST('w' AS BLOB) {victim}"),
            "a renamed row",
        ),
    ];
    for (sql, what) in cases {
        f.sql(&format!(
            "DROP TABLE IF EXISTS saved_row; CREATE TABLE saved_row AS SELECT * FROM objects {victim}"
        ));
        f.sql(&sql);
        let name = if what == "a renamed row" { "w" } else { "v" };
        refused(f.read("bkt", name, None), what);
        // Put the row back exactly, and check the object reads again.
        f.sql(
            "DELETE FROM objects WHERE name IN (CAST('v' AS BLOB), CAST('w' AS BLOB)); \
             INSERT INTO objects SELECT * FROM saved_row; DROP TABLE saved_row",
        );
        assert_eq!(
            f.read("bkt", "v", None).unwrap(),
            data(2, 9000),
            "{what}: not restored"
        );
    }
}

#[test]
fn rewrap_changes_envelopes_only() {
    let f = fixture();
    let mut want = BTreeMap::new();
    for i in 0..40u8 {
        let body = data(i, usize::from(i) * 997);
        let name = format!("dir{}/obj{i}", i % 3);
        f.put("bkt", &name, &body, None);
        want.insert(name, body);
    }
    let ck = Secret32::from_bytes("ck", [1; 32]);
    f.put("bkt", "customer", &data(99, 5000), Some(&ck));
    let files = |f: &Fixture| -> BTreeMap<PathBuf, Vec<u8>> {
        walk(&f.store.join("objects"))
            .into_iter()
            .map(|p| {
                let b = fs::read(&p).unwrap();
                (p, b)
            })
            .collect()
    };
    let before = files(&f);
    let id = f.d.keys().start_rotation().unwrap();
    f.d.keys().run_rotation(id, &Default::default()).unwrap();
    assert_eq!(f.d.stale_envelopes("bkt").unwrap(), 40);
    let r = f.d.rewrap("bkt", &mut |_| {}).unwrap();
    assert_eq!(
        (r.rewrapped, r.customer_keys, r.current),
        (40, 1, 0),
        "{r:?}"
    );
    assert_eq!(r.rotation_version, 2);
    assert_eq!(files(&f), before, "a data file changed");
    for (name, body) in &want {
        assert_eq!(&f.read("bkt", name, None).unwrap(), body, "{name}");
        assert!(matches!(
            f.d.head("bkt", name).unwrap().key_ref,
            KeyRef::Hierarchy {
                rotation_version: 2,
                ..
            }
        ));
    }
    assert_eq!(
        f.read("bkt", "customer", Some(&ck)).unwrap(),
        data(99, 5000)
    );
    // Idempotent: nothing left to do.
    let again = f.d.rewrap("bkt", &mut |_| {}).unwrap();
    assert_eq!((again.rewrapped, again.current), (0, 40));
    assert_eq!(f.d.stale_envelopes("bkt").unwrap(), 0);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
