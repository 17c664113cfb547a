//! The data store over a disk volume, once per I/O path (positioned std I/O and io_uring),
//! plus O_DIRECT (io_uring only): round trips, range reads, a tampered chunk on the drive,
//! failed writes, file modes, and byte-identical results on both paths.
//!
//! An io_uring test reports itself skipped — `SKIPPED: io_uring unavailable (<test>)`, written
//! to the process's stderr directly so that libtest's output capture does not hide it behind
//! the test's "ok" — only when `uring_available()` says the kernel or sandbox refuses a ring;
//! the std path always runs. The O_DIRECT test does the same when the file system refuses it.

mod common;

/// Says on the real stderr (not libtest's captured one) that the calling test skipped its
/// work, and why; `.ci/run` lists these lines.
fn skipped(why: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let line = format!(
        "SKIPPED: {why} ({})\n",
        thread.name().unwrap_or("unnamed test")
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use common::*;
use dare_engine::storage::uring_available;
use dare_engine::{
    AeadBackend, DataStore, DiskOptions, DiskVolume, FileLoc, IoMode, ObjectOpener, ObjectReader,
    ObjectSealer, OpenError, Protection, StoreConfig, StoreError, VolumeEntry, Written,
};
use dare_envelope::DataKey;

/// Runs `$body(io)` once per I/O path: `<name>_std` and `<name>_uring`.
macro_rules! per_io_path {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn std() {
                super::$name(dare_engine::IoMode::Std)
            }
            #[test]
            fn uring() {
                if !dare_engine::storage::uring_available() {
                    super::skipped("io_uring unavailable");
                    return;
                }
                super::$name(dare_engine::IoMode::Uring)
            }
        }
    )*};
}

per_io_path!(
    roundtrip_and_ranges,
    ranges_within_chunks_and_a_flip_outside_the_part,
    tampered_chunk_on_disk,
    swapped_or_damaged_files_are_refused,
    a_failing_sink_is_not_a_bad_object,
    failed_write_leaves_no_file,
    existing_file_is_never_overwritten,
    files_and_directories_are_private,
    concurrent_writes,
    format1_file_on_a_volume,
    a_bad_chunk_in_a_later_slot_releases_exactly_the_slots_before_it,
    puts_and_gets_from_inside_the_thread_pool,
    puts_write_the_reference_encoding,
);

const BATCH: usize = 5 * 4096; // several batches per object: exercises the pipelines

fn store_at(root: &Path, opts: DiskOptions, batch_bytes: usize) -> DataStore {
    let vol = DiskVolume::new(root, opts).unwrap();
    let cfg = StoreConfig {
        batch_bytes,
        backend: AeadBackend::best(),
        sync: true,
    };
    DataStore::new(Arc::new(vol), cfg)
}

fn store(io: IoMode) -> (tempfile::TempDir, DataStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = store_at(
        &dir.path().join("vol"),
        DiskOptions { io, direct: false },
        BATCH,
    );
    (dir, s)
}

fn loc(n: u8) -> FileLoc {
    FileLoc {
        bucket_id: 7,
        object_id: [n; 16],
    }
}

/// Writes `data` as object `n` (name `obj-<n>`); returns what the row records.
fn put(
    s: &DataStore,
    n: u8,
    key: Option<&DataKey>,
    data: &[u8],
    m: &[(String, String)],
) -> (Written, Sealed) {
    let name = format!("obj-{n}");
    let id = ident(&name, n);
    let p = key.map_or(Protection::Clear, Protection::Encrypted);
    let mut sealer = ObjectSealer::new(&id, p, 12, s.config().backend).unwrap();
    let meta_block = sealer.seal_meta(m).unwrap();
    let w = s.write(&loc(n), &mut sealer, &mut &data[..]).unwrap();
    let row = Sealed {
        file: Vec::new(),
        meta_block,
        suite: sealer.suite(),
        chunk_shift: 12,
        prefix: sealer.nonce_prefix(),
        size: w.size,
        etag: w.etag.clone(),
    };
    (w, row)
}

fn reader(
    s: &DataStore,
    n: u8,
    row: &Sealed,
    key: Option<&DataKey>,
) -> Result<ObjectReader, StoreError> {
    let name = format!("obj-{n}");
    let opener = ObjectOpener::new(&ident(&name, n), &row.params(), key, s.config().backend)?;
    let file = s.open_file(&loc(n))?;
    Ok(ObjectReader::new(file, opener, s.config().batch_bytes)?)
}

fn get(s: &DataStore, n: u8, row: &Sealed, key: Option<&DataKey>) -> Result<Vec<u8>, StoreError> {
    let r = reader(s, n, row, key)?;
    let (res, got) = stream(|sink| r.read_all(sink));
    res?;
    Ok(got)
}

fn path_of(s: &DataStore, n: u8) -> std::path::PathBuf {
    Path::new(&s.volume().describe()).join(loc(n).rel_path())
}

fn roundtrip_and_ranges(io: IoMode) {
    let (_d, s) = store(io);
    let k = key();
    for (i, len) in [0usize, 1, 4095, 4096, 4097, 100_000, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let n = i as u8;
        let data = pattern(len, i as u64);
        let m = meta(&[("k", &format!("v{i}"))]);
        let (w, row) = put(&s, n, Some(&k), &data, &m);
        assert_eq!(w.size, len as u64);
        assert_eq!(
            w.stored_size,
            std::fs::metadata(path_of(&s, n)).unwrap().len()
        );
        assert_eq!(
            get(&s, n, &row, Some(&k)).unwrap(),
            data,
            "{io:?} len {len}"
        );
        let r = reader(&s, n, &row, Some(&k)).unwrap();
        assert_eq!(r.meta(), &m[..]);
        assert_eq!(r.size(), len as u64);
        if len > 10 {
            for (off, cnt) in [
                (len as u64 / 3, len as u64 / 2),
                (len as u64 - 1, 1),
                (0, len as u64),
            ] {
                let (res, got) = stream(|sink| r.read_range(off, cnt, sink));
                res.unwrap();
                assert_eq!(
                    got,
                    &data[off as usize..(off + cnt) as usize],
                    "{io:?} {off}+{cnt}"
                );
            }
        }
    }
    // Objects in clear through the same store. (The empty one once left a whole batch buffer
    // of zeros in its file on the std path: stored_size was 32 + 20480.)
    for (n, len) in [(100u8, 50_000usize), (101, 0), (102, 1)] {
        let data = pattern(len, 99);
        let (w, row) = put(&s, n, None, &data, &[]);
        assert_eq!(w.stored_size, 32 + len as u64, "{io:?} clear len {len}");
        assert_eq!(std::fs::read(path_of(&s, n)).unwrap()[32..], data[..]);
        assert_eq!(get(&s, n, &row, None).unwrap(), data);
    }
    let mut found: Vec<FileLoc> = s
        .volume()
        .scan()
        .unwrap()
        .into_iter()
        .map(|e| match e {
            VolumeEntry::Data { loc, .. } => loc,
            other => panic!("unexpected file {other:?}"),
        })
        .collect();
    found.sort();
    assert_eq!(found, [0u8, 1, 2, 3, 4, 5, 6, 100, 101, 102].map(loc));
    // Removal; reading a removed object names the missing file.
    s.remove(&loc(100)).unwrap();
    s.remove(&loc(100)).unwrap();
    assert!(matches!(s.open_file(&loc(100)), Err(StoreError::DataFileMissing(l)) if l == loc(100)));
}

/// Short ranges (the batch path, which decrypts only the delivered bytes of a chunk it
/// covers partly) read the right bytes when they start and end mid-chunk and cross chunk and
/// batch boundaries; a flipped byte in a touched chunk outside the range's part of it fails
/// the read and releases nothing of it.
fn ranges_within_chunks_and_a_flip_outside_the_part(io: IoMode) {
    let (_d, s) = store(io);
    let k = key();
    let c = 4096u64;
    let data = pattern(20 * 4096 + 777, 13);
    let n = data.len() as u64;
    let (_, row) = put(&s, 1, Some(&k), &data, &[]);
    let r = reader(&s, 1, &row, Some(&k)).unwrap();
    for (off, cnt) in [
        (5, 10),
        (c - 3, 6),
        (c + 1, c - 2),
        (2 * c + 100, 3 * c),
        (5 * c - 7, 14),
        (c + 5, 6 * c), // two batches (5 chunks per batch): partial chunks in both
        (20 * c + 700, 77),
        (n - 1, 1),
    ] {
        let (res, got) = stream(|sink| r.read_range(off, cnt, sink));
        res.unwrap();
        assert_eq!(
            got,
            &data[off as usize..(off + cnt) as usize],
            "{io:?} {off}+{cnt}"
        );
    }
    let path = path_of(&s, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEAD + 7 * (4096 + 16) + 3] ^= 0x40; // chunk 7, byte 3
    std::fs::write(&path, &bytes).unwrap();
    let r = reader(&s, 1, &row, Some(&k)).unwrap();
    for (off, cnt) in [(7 * c + 2000, 50), (7 * c + 4000, 200), (8 * c - 10, 5)] {
        let (res, got) = stream(|sink| r.read_range(off, cnt, sink));
        assert!(
            matches!(res, Err(OpenError::ChunkAuth { index: 7 })),
            "{io:?} {off}+{cnt}: {res:?}"
        );
        assert!(
            got.is_empty(),
            "{io:?} {off}+{cnt}: released {} bytes",
            got.len()
        );
    }
    // A range that does not touch chunk 7 still reads.
    let (res, got) = stream(|sink| r.read_range(8 * c + 1, 10, sink));
    res.unwrap();
    assert_eq!(got, &data[(8 * c + 1) as usize..(8 * c + 11) as usize]);
}

fn tampered_chunk_on_disk(io: IoMode) {
    let (_d, s) = store(io);
    let k = key();
    let data = pattern(40 * 4096, 8);
    let (_, row) = put(&s, 1, Some(&k), &data, &[]);
    let path = path_of(&s, 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEAD + 23 * (4096 + 16) + 7] ^= 4; // chunk 23, several batches into the object
    std::fs::write(&path, &bytes).unwrap();
    let r = reader(&s, 1, &row, Some(&k)).unwrap();
    let (res, got) = stream(|sink| r.read_all(sink));
    assert!(
        matches!(res, Err(OpenError::ChunkAuth { index: 23 })),
        "{io:?}: {res:?}"
    );
    assert_eq!(got, &data[..got.len()], "only verified plaintext released");
    assert!(
        got.len() <= 23 * 4096,
        "{io:?}: bytes of the bad chunk were released"
    );
    // A cut file is refused before anything is read.
    bytes.truncate(bytes.len() - 1);
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        reader(&s, 1, &row, Some(&k)),
        Err(StoreError::Open(OpenError::FileLength { .. }))
    ));
}

/// A data file copied over another object's (same length), or with a damaged header, is
/// refused when the reader is built, before any chunk is read.
fn swapped_or_damaged_files_are_refused(io: IoMode) {
    let (_d, s) = store(io);
    let k = key();
    let data = pattern(3 * 4096 + 5, 9);
    let (_, row_a) = put(&s, 1, Some(&k), &data, &[]);
    put(&s, 2, Some(&k), &data, &[]);
    std::fs::copy(path_of(&s, 2), path_of(&s, 1)).unwrap();
    assert!(matches!(
        reader(&s, 1, &row_a, Some(&k)),
        Err(StoreError::Open(OpenError::HeaderMismatch))
    ));
    let (_, row_c) = put(&s, 3, None, &data, &[]);
    let mut bytes = std::fs::read(path_of(&s, 3)).unwrap();
    bytes[6] ^= 1; // the chunk size byte
    std::fs::write(path_of(&s, 3), &bytes).unwrap();
    assert!(matches!(
        reader(&s, 3, &row_c, None),
        Err(StoreError::Open(OpenError::HeaderMismatch))
    ));
}

/// The caller's output failing is `OpenError::Sink`, and the read stops there.
fn a_failing_sink_is_not_a_bad_object(io: IoMode) {
    let (_d, s) = store(io);
    let k = key();
    let data = pattern(10 * 4096, 10);
    let (_, row) = put(&s, 1, Some(&k), &data, &[]);
    let r = reader(&s, 1, &row, Some(&k)).unwrap();
    let mut calls = 0;
    let res = r.read_all(&mut |_| {
        calls += 1;
        Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "client went away",
        ))
    });
    assert!(
        matches!(&res, Err(OpenError::Sink(e)) if e.kind() == io::ErrorKind::BrokenPipe),
        "{res:?}"
    );
    assert_eq!(calls, 1, "the read stops at the first failed delivery");
    assert_eq!(
        get(&s, 1, &row, Some(&k)).unwrap(),
        data,
        "the object is fine"
    );
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

fn failed_write_leaves_no_file(io: IoMode) {
    let (_d, s) = store(io);
    let k = key();
    let old = pattern(10_000, 1);
    let (_, row) = put(&s, 1, Some(&k), &old, &[]);
    for (n, left) in [(2u8, 100_000usize), (3, 3), (4, 0), (5, 5 * 4096)] {
        let id = ident("failing", n);
        let mut sealer =
            ObjectSealer::new(&id, Protection::Encrypted(&k), 12, AeadBackend::best()).unwrap();
        let err = s
            .write(&loc(n), &mut sealer, &mut FailAfter { left })
            .unwrap_err();
        assert!(matches!(err, StoreError::Seal(_)), "{err}");
        assert!(sealer.summary().is_none());
        assert!(matches!(
            s.open_file(&loc(n)),
            Err(StoreError::DataFileMissing(_))
        ));
        assert!(
            !path_of(&s, n).exists(),
            "{io:?}: a failed write left its file"
        );
    }
    let files = s.volume().scan().unwrap();
    assert_eq!(files.len(), 1, "{io:?}: files left behind: {files:?}");
    assert_eq!(
        get(&s, 1, &row, Some(&k)).unwrap(),
        old,
        "other objects untouched"
    );
}

/// A data file is created, never replaced: writing to a location that exists fails and leaves
/// the existing file as it was (object ids are random, so this means a bug or an attack).
fn existing_file_is_never_overwritten(io: IoMode) {
    let (_d, s) = store(io);
    let k = key();
    let old = pattern(9000, 2);
    let (_, row) = put(&s, 1, Some(&k), &old, &[]);
    let before = std::fs::read(path_of(&s, 1)).unwrap();
    let mut sealer = ObjectSealer::new(
        &ident("obj-1", 1),
        Protection::Encrypted(&k),
        12,
        AeadBackend::best(),
    )
    .unwrap();
    let err = s.write(&loc(1), &mut sealer, &mut &b"new"[..]).unwrap_err();
    assert!(
        matches!(&err, StoreError::Io(e) if e.kind() == io::ErrorKind::AlreadyExists),
        "{err}"
    );
    assert_eq!(std::fs::read(path_of(&s, 1)).unwrap(), before);
    assert_eq!(get(&s, 1, &row, Some(&k)).unwrap(), old);
}

fn files_and_directories_are_private(io: IoMode) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("vol");
    let s = store_at(&root, DiskOptions { io, direct: false }, BATCH);
    put(&s, 0xab, Some(&key()), b"secret", &[]);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let file = root.join("7/ab/abababababababababababababababab");
    assert_eq!(file, path_of(&s, 0xab));
    assert_eq!(mode(&file), 0o600, "data file");
    for d in [root.join("7/ab"), root.join("7"), root.clone()] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
}

fn concurrent_writes(io: IoMode) {
    let (_d, s) = store(io);
    let k = key();
    let objs: Vec<Vec<u8>> = (0..48).map(|i| pattern(i * 997, i as u64)).collect();
    let rows: Vec<Sealed> = std::thread::scope(|sc| {
        let handles: Vec<_> = objs
            .chunks(12)
            .enumerate()
            .map(|(t, part)| {
                let (s, k) = (&s, &k);
                sc.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(j, d)| put(s, (t * 12 + j) as u8, Some(k), d, &[]).1)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    for (i, (d, row)) in objs.iter().zip(&rows).enumerate() {
        assert_eq!(&get(&s, i as u8, row, Some(&k)).unwrap(), d);
    }
}

/// A format-1 file moved into a volume (as the one-time migration does) reads with `open_v1`.
fn format1_file_on_a_volume(io: IoMode) {
    let (d, s) = store(io);
    let k = [0x31u8; 32];
    let data = pattern(30_000, 3);
    let m = meta(&[("owner", "alice")]);
    let v1 = reference_v1_raw("legacy.bin", &k, 12, b"prefix1", &m, &data);
    let from = d.path().join("legacy.bin");
    std::fs::write(&from, &v1).unwrap();
    s.volume().adopt(&from, &loc(1)).unwrap();
    assert!(!from.exists());
    let file = s.open_file(&loc(1)).unwrap();
    let len = file.len().unwrap();
    let opener =
        ObjectOpener::open_v1(&*file, len, Some(&RawKeyProvider), AeadBackend::best()).unwrap();
    assert_eq!(opener.format(), 1);
    assert_eq!(opener.meta(), &m[..]);
    let r = ObjectReader::new(file, opener, BATCH).unwrap();
    let (res, got) = stream(|sink| r.read_all(sink));
    res.unwrap();
    assert!(got == data);
    let (res, got) = stream(|sink| r.read_range(4000, 9000, sink));
    res.unwrap();
    assert_eq!(got, &data[4000..13_000]);
}

/// Both I/O paths write the same files: byte for byte for objects in clear; for encrypted
/// objects (whose nonce prefix is random) the same lengths, and each path reads the other's.
#[test]
fn both_io_paths_write_the_same_files() {
    if !uring_available() {
        skipped("io_uring unavailable");
        return;
    }
    let (_d1, a) = store(IoMode::Uring);
    let (_d2, b) = store(IoMode::Std);
    let k = key();
    for (i, len) in [0usize, 1, 4096, 300_000].into_iter().enumerate() {
        let n = i as u8;
        let data = pattern(len, 5 + i as u64);
        let (wa, _) = put(&a, n, None, &data, &[]);
        let (wb, _) = put(&b, n, None, &data, &[]);
        assert_eq!(wa, wb);
        assert!(std::fs::read(path_of(&a, n)).unwrap() == std::fs::read(path_of(&b, n)).unwrap());
        let (wa, ra) = put(&a, n + 100, Some(&k), &data, &[]);
        let (wb, rb) = put(&b, n + 100, Some(&k), &data, &[]);
        assert_eq!((wa.size, wa.stored_size), (wb.size, wb.stored_size));
        // Each path reads the other's file.
        let a_as_std = store_at(
            Path::new(&a.volume().describe()),
            DiskOptions {
                io: IoMode::Std,
                direct: false,
            },
            BATCH,
        );
        let b_as_uring = store_at(
            Path::new(&b.volume().describe()),
            DiskOptions {
                io: IoMode::Uring,
                direct: false,
            },
            BATCH,
        );
        assert!(get(&a_as_std, n + 100, &ra, Some(&k)).unwrap() == data);
        assert!(get(&b_as_uring, n + 100, &rb, Some(&k)).unwrap() == data);
    }
}

#[test]
fn direct_io_needs_io_uring() {
    let dir = tempfile::tempdir().unwrap();
    let e = DiskVolume::new(
        dir.path(),
        DiskOptions {
            io: IoMode::Std,
            direct: true,
        },
    )
    .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn scan_reports_foreign_files_and_remove_other_stays_inside() {
    let (_d, s) = store(IoMode::Std);
    put(&s, 1, Some(&key()), b"x", &[]);
    let root = std::path::PathBuf::from(s.volume().describe());
    std::fs::write(root.join("7/01/leftover.tmp"), b"junk").unwrap();
    let mut entries = s.volume().scan().unwrap();
    entries.sort_by_key(|e| matches!(e, VolumeEntry::Other { .. }));
    assert!(matches!(&entries[0], VolumeEntry::Data { loc: l, len: 49, .. } if *l == loc(1)));
    assert!(
        matches!(&entries[1], VolumeEntry::Other { path, .. } if path == Path::new("7/01/leftover.tmp"))
    );
    for bad in ["../x", "/etc/passwd", "7/../../x"] {
        assert_eq!(
            s.volume().remove_other(Path::new(bad)).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
    s.volume()
        .remove_other(Path::new("7/01/leftover.tmp"))
        .unwrap();
    assert_eq!(s.volume().scan().unwrap().len(), 1);
    s.volume().remove_bucket(7).unwrap();
    s.volume().remove_bucket(7).unwrap();
    assert!(s.volume().scan().unwrap().is_empty());
}

/// O_DIRECT through io_uring: aligned writes with a padded, cut-back final block, and aligned
/// read windows. Runs in the target directory's file system (tmpfs refuses O_DIRECT).
#[test]
fn direct_io_roundtrip_ranges_and_tamper() {
    if !uring_available() {
        skipped("io_uring unavailable");
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let probe = dir.path().join("probe");
    if let Err(e) = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(&probe)
    {
        skipped(&format!("this file system refuses O_DIRECT: {e}"));
        return;
    }
    let root = dir.path().join("vol");
    let batch = 3 * 4096;
    let s = store_at(
        &root,
        DiskOptions {
            io: IoMode::Uring,
            direct: true,
        },
        batch,
    );
    let buffered = store_at(
        &root,
        DiskOptions {
            io: IoMode::Std,
            direct: false,
        },
        batch,
    );
    let k = key();
    let sizes = [0usize, 1, 4095, 4096, 4097, 123_457, 1 << 20, (3 << 20) + 5];
    let mut rows = Vec::new();
    for (i, len) in sizes.into_iter().enumerate() {
        let n = i as u8;
        let data = pattern(len, 50 + i as u64);
        let key = (i % 3 != 2).then_some(&k);
        let (w, row) = put(&s, n, key, &data, &[]);
        assert_eq!(w.size, len as u64);
        let on_disk = std::fs::metadata(path_of(&s, n)).unwrap().len();
        assert_eq!(on_disk, w.stored_size, "file cut back to its real length");
        assert!(get(&s, n, &row, key).unwrap() == data, "len {len}");
        if len > 10 {
            let (off, cnt) = (len as u64 / 3 + 1, len as u64 / 2);
            let r = reader(&s, n, &row, key).unwrap();
            let (res, got) = stream(|sink| r.read_range(off, cnt, sink));
            res.unwrap();
            assert!(
                got == data[off as usize..(off + cnt) as usize],
                "range of len {len}"
            );
        }
        // The same file reads back identically without O_DIRECT.
        assert!(get(&buffered, n, &row, key).unwrap() == data);
        rows.push(row);
    }
    // A flipped byte is still caught through the aligned windows.
    let path = path_of(&s, 6);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let r = reader(&s, 6, &rows[6], Some(&k)).unwrap();
    let (res, got) = stream(|sink| r.read_all(sink));
    assert!(matches!(res, Err(OpenError::ChunkAuth { .. })), "{res:?}");
    let bad_chunk = (at - HEAD) / (4096 + 16);
    assert!(
        got.len() <= bad_chunk * 4096,
        "released bytes of the bad chunk"
    );
    // A failed O_DIRECT write leaves no file either.
    let mut sealer = ObjectSealer::new(
        &ident("f", 99),
        Protection::Encrypted(&k),
        12,
        AeadBackend::best(),
    )
    .unwrap();
    assert!(
        s.write(&loc(99), &mut sealer, &mut FailAfter { left: 50_000 })
            .is_err()
    );
    assert!(!path_of(&s, 99).exists());
}

/// The overlapped GET (issue 13: slots opened on the pool while the next is read) hands the
/// sink slots in order, each only after it verified: with chunk 100 of 200 damaged, the sink
/// gets exactly the slots before the one holding it (128 KiB = 32 chunks of 4 KiB each),
/// and the slots opened ahead of the failure are never delivered. Damage in the last chunk,
/// which is opened on the calling thread, releases everything before it.
fn a_bad_chunk_in_a_later_slot_releases_exactly_the_slots_before_it(io: IoMode) {
    let (_d, s) = store(io);
    let k = key();
    let data = pattern(200 * 4096, 21);
    let (_, row) = put(&s, 1, Some(&k), &data, &[]);
    let path = path_of(&s, 1);
    let clean = std::fs::read(&path).unwrap();
    for (bad, released) in [(100usize, 96 * 4096), (199, 199 * 4096), (0, 0)] {
        let mut bytes = clean.clone();
        bytes[HEAD + bad * (4096 + 16) + 100] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let r = reader(&s, 1, &row, Some(&k)).unwrap();
        let (res, got) = stream(|sink| r.read_all(sink));
        assert!(
            matches!(res, Err(OpenError::ChunkAuth { index }) if index == bad as u64),
            "{io:?} chunk {bad}: {res:?}"
        );
        assert_eq!(got.len(), released, "{io:?} chunk {bad}");
        assert_eq!(got, &data[..released]);
        // A range that starts after the bad chunk reads fine; one across it releases only
        // chunks before it (50 chunks: too short to overlap, the batch pipeline reads it).
        let (res, got) = stream(|sink| r.read_range(150 * 4096, 4096 * 50, sink));
        if bad < 150 {
            res.unwrap();
            assert_eq!(got, &data[150 * 4096..]);
        } else {
            assert!(res.is_err());
            assert!(got.len() <= (bad - 150) * 4096);
            assert_eq!(got, &data[150 * 4096..150 * 4096 + got.len()]);
        }
    }
}

/// From a thread of a rayon pool (a server may run requests there) the pipelines must not
/// wait for work queued behind themselves: with a pool of one thread, a GET that handed its
/// decryption to that pool and waited would never finish. The crypto workers are threads of
/// their own, and the requesting thread opens slots no worker has started.
fn puts_and_gets_from_inside_the_thread_pool(io: IoMode) {
    let (_d, s) = store(io);
    let k = key();
    let data = pattern(300 * 4096 + 7, 22);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let got = std::thread::scope(|sc| {
        sc.spawn(|| {
            let got = pool.install(|| {
                let (_, row) = put(&s, 1, Some(&k), &data, &[]);
                get(&s, 1, &row, Some(&k)).unwrap()
            });
            let _ = tx.send(got);
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("the pipelines deadlocked inside the pool")
    });
    assert_eq!(got, data);
}

/// The PUT pipeline (its batch function now split into reserve, seal and absorb) writes byte
/// for byte what the reference encoder of docs/FORMAT.md writes for the same identity, key,
/// nonce prefix and data — file and ETag — at sizes around batch edges and over many
/// batches; the objects read back through the overlapped GET.
fn puts_write_the_reference_encoding(io: IoMode) {
    let (_d, s) = store(io);
    let k = key();
    for (i, len) in [
        32 * 4096 - 1,
        32 * 4096,
        32 * 4096 + 1,
        64 * 4096,
        5 * 32 * 4096 + 4095,
        (2 << 20) + 3,
    ]
    .into_iter()
    .enumerate()
    {
        let n = i as u8;
        let data = pattern(len, 30 + i as u64);
        let (w, row) = put(&s, n, Some(&k), &data, &[]);
        let name = format!("obj-{n}");
        let (file, _, etag) = reference_v2(
            &ident(&name, n),
            Some(k.expose_secret()),
            12,
            &row.prefix,
            &[],
            &data,
        );
        assert!(
            std::fs::read(path_of(&s, n)).unwrap() == file,
            "{io:?} {len}: the file differs from the reference encoding"
        );
        assert_eq!(w.etag, etag, "{io:?} {len}");
        assert_eq!(get(&s, n, &row, Some(&k)).unwrap(), data, "{io:?} {len}");
    }
}
