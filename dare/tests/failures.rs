//! Bad input and failures: each a typed error with a clear message, and nothing half-done —
//! no visible half-written object, no leftover data file, the previous version intact.

mod common;

use std::fs;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::HookedMeta;
use dare::{Dare, Error, GetOptions, Options, PutOptions};
use dare_engine::{
    DataFile, DiskOptions, DiskVolume, FileLoc, IoMode, ReadAt, Volume, VolumeEntry,
};
use dare_keys::{RootKeyFile, RootOfTrust, Secret32};
use dare_metadata::{MetaError, SqliteMetadata, SqliteOptions};

fn root() -> Arc<dyn RootOfTrust> {
    Arc::new(RootKeyFile::from_secret(Secret32::from_bytes(
        "root", [3; 32],
    )))
}

fn get(d: &Dare, name: &str) -> Result<Vec<u8>, Error> {
    d.get("bkt", name, &GetOptions::default())?.to_vec()
}

fn data_files(v: &dyn Volume) -> usize {
    v.scan()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, VolumeEntry::Data { .. }))
        .count()
}

/// A disk volume whose data files report ENOSPC once `budget` bytes have been written.
#[derive(Debug)]
struct FullDisk {
    inner: DiskVolume,
    budget: AtomicU64,
}

#[derive(Debug)]
struct FullFile {
    inner: Box<dyn DataFile>,
    vol: Arc<FullDisk>,
}

impl ReadAt for FullFile {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, off)
    }
}

impl DataFile for FullFile {
    fn write_prefix_at(
        &self,
        buf: Vec<u8>,
        range: std::ops::Range<usize>,
        off: u64,
    ) -> (io::Result<()>, Vec<u8>) {
        let n = if range.is_empty() {
            buf.len()
        } else {
            range.len()
        } as u64;
        let left = self.vol.budget.load(Ordering::SeqCst);
        if n > left {
            return (Err(io::Error::from_raw_os_error(libc_enospc())), buf);
        }
        self.vol.budget.fetch_sub(n, Ordering::SeqCst);
        self.inner.write_prefix_at(buf, range, off)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

fn libc_enospc() -> i32 {
    28
}

#[derive(Debug)]
struct FullDiskVolume(Arc<FullDisk>);

impl Volume for FullDiskVolume {
    fn create(&self, loc: &FileLoc) -> io::Result<Box<dyn DataFile>> {
        Ok(Box::new(FullFile {
            inner: self.0.inner.create(loc)?,
            vol: self.0.clone(),
        }))
    }
    fn open(&self, loc: &FileLoc) -> io::Result<Box<dyn DataFile>> {
        self.0.inner.open(loc)
    }
    fn sync_dir(&self, loc: &FileLoc) -> io::Result<()> {
        self.0.inner.sync_dir(loc)
    }
    fn remove(&self, loc: &FileLoc) -> io::Result<()> {
        self.0.inner.remove(loc)
    }
    fn remove_bucket(&self, b: u64) -> io::Result<()> {
        self.0.inner.remove_bucket(b)
    }
    fn scan(&self) -> io::Result<Vec<VolumeEntry>> {
        self.0.inner.scan()
    }
    fn remove_other(&self, rel: &Path) -> io::Result<()> {
        self.0.inner.remove_other(rel)
    }
    fn adopt(&self, from: &Path, loc: &FileLoc) -> io::Result<()> {
        self.0.inner.adopt(from, loc)
    }
    fn describe(&self) -> String {
        "full disk".into()
    }
}

#[test]
fn disk_full_during_put_leaves_the_old_version_and_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let meta = Arc::new(
        SqliteMetadata::create(&dir.path().join("dare.db"), SqliteOptions::default()).unwrap(),
    );
    let disk = Arc::new(FullDisk {
        inner: DiskVolume::new(
            &dir.path().join("objects"),
            DiskOptions {
                io: IoMode::Std,
                direct: false,
            },
        )
        .unwrap(),
        budget: AtomicU64::new(u64::MAX),
    });
    let volume: Arc<dyn Volume> = Arc::new(FullDiskVolume(disk.clone()));
    let d = Dare::create_parts(meta, volume.clone(), root(), 12, &Options::default()).unwrap();
    d.create_bucket("bkt", "default", None).unwrap();
    d.put("bkt", "o", &mut &b"version one"[..], &PutOptions::default())
        .unwrap();
    for budget in [0u64, 100, 40_000] {
        disk.budget.store(budget, Ordering::SeqCst);
        let big = vec![7u8; 200_000];
        let e = d
            .put("bkt", "o", &mut big.as_slice(), &PutOptions::default())
            .unwrap_err();
        assert!(
            e.to_string().to_lowercase().contains("no space"),
            "budget {budget}: {e}"
        );
        assert_eq!(get(&d, "o").unwrap(), b"version one");
        assert_eq!(data_files(&*volume), 1, "budget {budget}: a file was left");
    }
}

#[test]
fn failed_metadata_commit_removes_the_new_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let f = fail.clone();
    let meta = Arc::new(HookedMeta::new(
        SqliteMetadata::create(&dir.path().join("dare.db"), SqliteOptions::default()).unwrap(),
        Arc::new(move || {
            if f.load(Ordering::SeqCst) {
                Err(MetaError::DiskFull)
            } else {
                Ok(())
            }
        }),
        Arc::new(|| Ok(())),
    ));
    let volume: Arc<dyn Volume> =
        Arc::new(DiskVolume::new(&dir.path().join("objects"), DiskOptions::default()).unwrap());
    let d = Dare::create_parts(meta, volume.clone(), root(), 12, &Options::default()).unwrap();
    d.create_bucket("bkt", "default", None).unwrap();
    d.put("bkt", "o", &mut &b"old"[..], &PutOptions::default())
        .unwrap();
    fail.store(true, Ordering::SeqCst);
    let e = d
        .put("bkt", "o", &mut &b"new"[..], &PutOptions::default())
        .unwrap_err();
    assert!(matches!(e, Error::Metadata(MetaError::DiskFull)), "{e}");
    assert!(e.to_string().contains("disk full"), "{e}");
    let e = d.delete("bkt", "o").unwrap_err();
    assert!(matches!(e, Error::Metadata(MetaError::DiskFull)), "{e}");
    fail.store(false, Ordering::SeqCst);
    assert_eq!(get(&d, "o").unwrap(), b"old");
    assert_eq!(data_files(&*volume), 1);
}

#[test]
fn a_writer_holding_the_database_gives_a_bounded_wait_then_busy() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    Dare::create(&store, 4096, &Options::default())
        .unwrap()
        .create_bucket("bkt", "default", None)
        .unwrap();
    let opts = Options {
        sqlite: SqliteOptions {
            busy_timeout: std::time::Duration::from_millis(200),
        },
        ..Options::default()
    };
    let d = Dare::open(&store, &opts).unwrap();
    let other = SqliteMetadata::open(&store.join("dare.db"), SqliteOptions::default()).unwrap();
    let held = Mutex::new(dare_metadata::Metadata::write(&other).unwrap());
    let e = d
        .put("bkt", "o", &mut &b"x"[..], &PutOptions::default())
        .unwrap_err();
    assert!(matches!(e, Error::Metadata(MetaError::Busy { .. })), "{e}");
    assert!(e.to_string().contains("locked by another writer"), "{e}");
    drop(held);
    assert_eq!(
        data_files(&**d.volume()),
        0,
        "the refused put left its file"
    );
    d.put("bkt", "o", &mut &b"x"[..], &PutOptions::default())
        .unwrap();
}

#[test]
fn damaged_or_newer_databases_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    Dare::create(&store, 4096, &Options::default()).unwrap();
    let db = store.join("dare.db");
    // Newer schema: refused, untouched.
    raw_update(&db, "UPDATE dare_schema SET version = 99");
    let before = fs::read(&db).unwrap();
    let e = Dare::open(&store, &Options::default()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Metadata(MetaError::SchemaTooNew { found: 99, .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("upgrade dare"), "{e}");
    assert_eq!(fs::read(&db).unwrap(), before);
    // Garbage in place of the database.
    fs::write(&db, vec![0x5a; 8192]).unwrap();
    let e = Dare::open(&store, &Options::default()).unwrap_err();
    assert!(matches!(e, Error::Metadata(MetaError::Corrupt(_))), "{e}");
}

/// Runs one SQL statement on a database file, behind the library's back.
fn raw_update(db: &Path, sql: &str) {
    let c = rusqlite::Connection::open(db).unwrap();
    c.execute_batch(sql).unwrap();
}

#[test]
fn missing_data_file_and_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let d = Dare::create(&store, 4096, &Options::default()).unwrap();
    d.create_bucket("bkt", "default", None).unwrap();
    let info = d
        .put("bkt", "gone", &mut &b"data"[..], &PutOptions::default())
        .unwrap();
    let b = d.bucket("bkt").unwrap();
    let loc = FileLoc {
        bucket_id: b.id,
        object_id: info.object_id,
    };
    fs::remove_file(store.join("objects").join(loc.rel_path())).unwrap();
    let e = get(&d, "gone").unwrap_err();
    assert!(matches!(e, Error::DataFileMissing { .. }), "{e}");
    assert!(e.is_integrity());
    assert!(e.to_string().contains("fsck"), "{e}");
    let r = d.fsck(&Default::default()).unwrap();
    assert_eq!(r.errors.len(), 1, "{r:?}");
    assert_eq!(r.errors[0].name, "gone");

    let long = "x".repeat(1025);
    let e = d
        .put("bkt", &long, &mut &b""[..], &PutOptions::default())
        .unwrap_err();
    assert!(
        matches!(e, Error::InvalidName { what: "object", .. }),
        "{e}"
    );
    let e = d
        .put("bkt", "", &mut &b""[..], &PutOptions::default())
        .unwrap_err();
    assert!(matches!(e, Error::InvalidName { .. }), "{e}");
    let e = d.get("nob", "x", &GetOptions::default()).unwrap_err();
    assert!(e.is_not_found(), "{e}");
    for bad in ["", "a/b", "..", "sp ace"] {
        assert!(d.create_bucket(bad, "default", None).is_err(), "{bad:?}");
    }
    assert!(matches!(
        d.create_bucket("cbk", "nons", None),
        Err(Error::NoSuchNamespace(_))
    ));
    assert!(matches!(
        d.create_bucket("cbk", "default", Some(false)),
        Err(Error::EncryptionPolicy(_))
    ));
    assert!(matches!(
        d.create_bucket("bkt", "default", None),
        Err(Error::BucketExists(_))
    ));
}

#[test]
fn a_customer_key_for_an_object_without_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = Dare::create(&dir.path().join("s"), 4096, &Options::default()).unwrap();
    d.create_bucket("bkt", "default", None).unwrap();
    d.put("bkt", "plain", &mut &b"x"[..], &PutOptions::default())
        .unwrap();
    let ck = Secret32::from_bytes("ck", [9; 32]);
    let e = d
        .get(
            "bkt",
            "plain",
            &GetOptions {
                customer_key: Some(ck.clone()),
            },
        )
        .unwrap_err();
    assert!(matches!(e, Error::CustomerKeyNotApplicable { .. }), "{e}");
    d.put(
        "bkt",
        "ssec",
        &mut &b"secret"[..],
        &PutOptions {
            meta: vec![],
            customer_key: Some(ck.clone()),
        },
    )
    .unwrap();
    let e = d.get("bkt", "ssec", &GetOptions::default()).unwrap_err();
    assert!(e.to_string().contains("customer"), "{e}");
    let wrong = Secret32::from_bytes("ck", [8; 32]);
    let e = d
        .get(
            "bkt",
            "ssec",
            &GetOptions {
                customer_key: Some(wrong),
            },
        )
        .unwrap_err();
    assert!(e.is_integrity(), "{e}");
    assert_eq!(
        d.get(
            "bkt",
            "ssec",
            &GetOptions {
                customer_key: Some(ck)
            }
        )
        .unwrap()
        .to_vec()
        .unwrap(),
        b"secret"
    );
}
