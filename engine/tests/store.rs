//! The object store on both I/O paths (io_uring and positioned std I/O): round trips, range
//! reads, atomic overwrite, failed puts, names that could escape the store.

mod common;

use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;

use common::{RootKeys, pattern};
use dare_engine::storage::uring_available;
use dare_engine::{IoMode, ObjectStore, OpenError, StoreError};

fn store(io: IoMode) -> Option<(tempfile::TempDir, ObjectStore)> {
    if io == IoMode::Uring && !uring_available() {
        eprintln!("skipping io_uring test: the kernel or sandbox refuses a ring");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut s = ObjectStore::init(dir.path(), 12).unwrap();
    let mut cfg = *s.config();
    cfg.io = io;
    cfg.batch_bytes = 5 * 4096; // several batches per object: exercises the pipelines
    s.set_config(cfg);
    s.create_bucket("b").unwrap();
    Some((dir, s))
}

fn get(s: &ObjectStore, key: &str, keys: &RootKeys) -> Result<Vec<u8>, StoreError> {
    let o = s.open_object("b", key, Some(keys))?;
    let mut out = Vec::new();
    o.read_all(s.config().batch_bytes, &mut |p| {
        out.extend_from_slice(p);
        Ok(())
    })?;
    Ok(out)
}

fn roundtrip(io: IoMode) {
    let Some((_d, s)) = store(io) else { return };
    let keys = RootKeys::random();
    for (i, len) in [0usize, 1, 4095, 4096, 4097, 100_000, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let data = pattern(len, i as u64);
        let key = format!("obj-{i}");
        let meta = vec![("k".to_string(), format!("v{i}"))];
        let info = s
            .put("b", &key, &mut data.as_slice(), Some(&keys), &meta)
            .unwrap();
        assert_eq!(info.size, len as u64);
        assert!(info.encrypted);
        assert_eq!(get(&s, &key, &keys).unwrap(), data, "{io:?} len {len}");
        let o = s.open_object("b", &key, Some(&keys)).unwrap();
        assert_eq!(o.meta(), &meta[..]);
        let head = s.head("b", &key).unwrap();
        assert_eq!(
            (head.size, head.chunk_size, head.encrypted),
            (len as u64, 4096, true)
        );
        if len > 10 {
            let (off, n) = (len as u64 / 3, len as u64 / 2);
            let mut got = Vec::new();
            o.read_range(off, n, 8192, &mut |p| {
                got.extend_from_slice(p);
                Ok(())
            })
            .unwrap();
            assert_eq!(got, &data[off as usize..(off + n) as usize]);
        }
    }
    // Plaintext object through the same store.
    let data = pattern(50_000, 99);
    let info = s
        .put("b", "plain", &mut data.as_slice(), None, &[])
        .unwrap();
    assert!(!info.encrypted);
    let o = s.open_object("b", "plain", None).unwrap();
    let mut out = Vec::new();
    o.read_all(1 << 20, &mut |p| {
        out.extend_from_slice(p);
        Ok(())
    })
    .unwrap();
    assert_eq!(out, data);
    let names: Vec<_> = s.list("b").unwrap().into_iter().map(|e| e.0).collect();
    assert_eq!(names.len(), 8);
}

#[test]
fn roundtrip_uring() {
    roundtrip(IoMode::Uring)
}

#[test]
fn roundtrip_std() {
    roundtrip(IoMode::Std)
}

#[test]
fn both_io_paths_write_identical_layouts() {
    // Same data, same key provider: the files differ only in random nonce prefix and key, so
    // compare sizes and that each path reads the other's files.
    let (Some((_d1, a)), Some((_d2, b))) = (store(IoMode::Uring), store(IoMode::Std)) else {
        return;
    };
    let keys = RootKeys::random();
    let data = pattern(300_000, 5);
    let ia = a
        .put("b", "x", &mut data.as_slice(), Some(&keys), &[])
        .unwrap();
    let ib = b
        .put("b", "x", &mut data.as_slice(), Some(&keys), &[])
        .unwrap();
    assert_eq!(ia.stored_size, ib.stored_size);
    let mut a_as_std = a.clone();
    let mut cfg = *a.config();
    cfg.io = IoMode::Std;
    a_as_std.set_config(cfg);
    assert_eq!(get(&a_as_std, "x", &keys).unwrap(), data);
}

struct FailAfter {
    left: usize,
}
impl Read for FailAfter {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("source failed"));
        }
        let n = buf.len().min(self.left);
        buf[..n].fill(7);
        self.left -= n;
        Ok(n)
    }
}

fn failed_put_leaves_previous_version(io: IoMode) {
    let Some((d, s)) = store(io) else { return };
    let keys = RootKeys::random();
    let old = pattern(10_000, 1);
    s.put("b", "k", &mut old.as_slice(), Some(&keys), &[])
        .unwrap();
    let err = s
        .put("b", "k", &mut FailAfter { left: 100_000 }, Some(&keys), &[])
        .unwrap_err();
    assert!(matches!(err, StoreError::Seal(_)), "{err}");
    let err = s
        .put("b", "new", &mut FailAfter { left: 3 }, Some(&keys), &[])
        .unwrap_err();
    assert!(matches!(err, StoreError::Seal(_)), "{err}");
    assert_eq!(get(&s, "k", &keys).unwrap(), old, "previous version intact");
    assert!(matches!(
        get(&s, "new", &keys),
        Err(StoreError::NoSuchObject { .. })
    ));
    let leftovers: Vec<_> = std::fs::read_dir(d.path().join("buckets/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "temporary files left behind: {leftovers:?}"
    );
}

#[test]
fn failed_put_uring() {
    failed_put_leaves_previous_version(IoMode::Uring)
}

#[test]
fn failed_put_std() {
    failed_put_leaves_previous_version(IoMode::Std)
}

#[test]
fn names_and_missing_things() {
    let Some((_d, s)) = store(IoMode::Std) else {
        return;
    };
    let keys = RootKeys::random();
    for bad in ["", "..", ".", "a/b", "../x", "a\0b", ".dare-tmp-1"] {
        assert!(
            matches!(
                s.put("b", bad, &mut &b"x"[..], Some(&keys), &[]),
                Err(StoreError::BadName(_))
            ),
            "{bad:?}"
        );
        assert!(
            matches!(s.create_bucket(bad), Err(StoreError::BadName(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        s.put("nope", "k", &mut &b"x"[..], Some(&keys), &[]),
        Err(StoreError::NoSuchBucket(_))
    ));
    assert!(matches!(
        s.open_object("b", "missing", Some(&keys)),
        Err(StoreError::NoSuchObject { .. })
    ));
    assert!(matches!(
        s.create_bucket("b"),
        Err(StoreError::BucketExists(_))
    ));
    // A file renamed to another object's name is refused.
    s.put("b", "one", &mut &b"first"[..], Some(&keys), &[])
        .unwrap();
    std::fs::copy(
        s.root().join("buckets/b/one"),
        s.root().join("buckets/b/two"),
    )
    .unwrap();
    assert!(matches!(
        s.open_object("b", "two", Some(&keys)),
        Err(StoreError::Open(OpenError::Format(_)))
    ));
}

#[test]
fn put_many_small_objects_in_parallel() {
    let Some((_d, s)) = store(IoMode::detect()) else {
        return;
    };
    let keys = RootKeys::random();
    let objs: Vec<(String, Vec<u8>)> = (0..64)
        .map(|i| (format!("s{i}"), pattern(i * 37, i as u64)))
        .collect();
    for r in s.put_many("b", &objs, Some(&keys)) {
        r.unwrap();
    }
    for (k, v) in &objs {
        assert_eq!(&get(&s, k, &keys).unwrap(), v);
    }
    let names: Vec<String> = objs
        .iter()
        .map(|(k, _)| k.clone())
        .chain(["missing".to_string()])
        .collect();
    let got = s.get_many("b", &names, Some(&keys));
    for ((_, v), g) in objs.iter().zip(&got) {
        assert_eq!(g.as_ref().unwrap(), v);
    }
    assert!(matches!(
        got.last(),
        Some(Err(StoreError::NoSuchObject { .. }))
    ));
}

fn tampered_chunk_on_disk(io: IoMode) {
    let Some((_d, s)) = store(io) else { return };
    let keys = RootKeys::random();
    let data = pattern(40 * 4096, 8);
    s.put("b", "t", &mut data.as_slice(), Some(&keys), &[])
        .unwrap();
    let path = s.root().join("buckets/b/t");
    let mut bytes = std::fs::read(&path).unwrap();
    let body = bytes.len() - (data.len() + 40 * 16);
    bytes[body + 23 * (4096 + 16) + 7] ^= 4; // chunk 23, several slots into the object
    std::fs::write(&path, &bytes).unwrap();
    let o = s.open_object("b", "t", Some(&keys)).unwrap();
    let mut got = Vec::new();
    let r = o.read_all(s.config().batch_bytes, &mut |p| {
        got.extend_from_slice(p);
        Ok(())
    });
    assert!(
        matches!(r, Err(OpenError::ChunkAuth { index: 23 })),
        "{io:?}: {r:?}"
    );
    assert_eq!(got, &data[..got.len()], "only verified plaintext released");
    assert!(
        got.len() <= 23 * 4096,
        "{io:?}: bytes of the bad chunk were released"
    );
}

#[test]
fn tampered_chunk_on_disk_uring() {
    tampered_chunk_on_disk(IoMode::Uring)
}

#[test]
fn tampered_chunk_on_disk_std() {
    tampered_chunk_on_disk(IoMode::Std)
}

/// O_DIRECT through io_uring: aligned writes with a padded, truncated final block, and aligned
/// read windows. Runs on the target directory's file system (tmpfs refuses O_DIRECT).
#[test]
fn direct_io_roundtrip_ranges_and_tamper() {
    if !uring_available() {
        eprintln!("skipping O_DIRECT test: io_uring unavailable");
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut s = ObjectStore::init(dir.path(), 12).unwrap();
    let probe = dir.path().join("probe");
    let direct_ok = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
        .is_ok();
    if !direct_ok {
        eprintln!("skipping O_DIRECT test: this file system refuses O_DIRECT");
        return;
    }
    let mut cfg = *s.config();
    cfg.io = IoMode::Uring;
    cfg.direct = true;
    cfg.batch_bytes = 3 * 4096;
    s.set_config(cfg);
    s.create_bucket("b").unwrap();
    let keys = RootKeys::random();
    for (i, len) in [0usize, 1, 4095, 4096, 4097, 123_457, 1 << 20, (3 << 20) + 5]
        .into_iter()
        .enumerate()
    {
        let data = pattern(len, 50 + i as u64);
        let key = format!("d{i}");
        let provider: Option<&dyn dare_keys::KeyProvider> =
            if i % 3 == 2 { None } else { Some(&keys) };
        let info = s
            .put("b", &key, &mut data.as_slice(), provider, &[])
            .unwrap();
        assert_eq!(info.size, len as u64);
        let on_disk = std::fs::metadata(s.root().join("buckets/b").join(&key))
            .unwrap()
            .len();
        assert_eq!(
            on_disk, info.stored_size,
            "file cut back to its real length"
        );
        let o = s.open_object("b", &key, provider).unwrap();
        let mut got = Vec::new();
        o.read_all(cfg.batch_bytes, &mut |p| {
            got.extend_from_slice(p);
            Ok(())
        })
        .unwrap();
        assert!(got == data, "len {len}");
        if len > 10 {
            let (off, n) = (len as u64 / 3 + 1, len as u64 / 2);
            let mut r = Vec::new();
            o.read_range(off, n, cfg.batch_bytes, &mut |p| {
                r.extend_from_slice(p);
                Ok(())
            })
            .unwrap();
            assert!(
                r == data[off as usize..(off + n) as usize],
                "range of len {len}"
            );
        }
        // The same file reads back identically without O_DIRECT.
        let mut plain_cfg = cfg;
        plain_cfg.direct = false;
        let mut s2 = s.clone();
        s2.set_config(plain_cfg);
        assert!(get_with(&s2, &key, provider) == data);
    }
    // A flipped byte is still caught through the aligned windows.
    let path = s.root().join("buckets/b/d6");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let o = s.open_object("b", "d6", Some(&keys)).unwrap();
    assert!(o.read_all(cfg.batch_bytes, &mut |_| Ok(())).is_err());
}

fn get_with(s: &ObjectStore, key: &str, provider: Option<&dyn dare_keys::KeyProvider>) -> Vec<u8> {
    let o = s.open_object("b", key, provider).unwrap();
    let mut out = Vec::new();
    o.read_all(s.config().batch_bytes, &mut |p| {
        out.extend_from_slice(p);
        Ok(())
    })
    .unwrap();
    out
}
