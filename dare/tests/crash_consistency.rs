//! Crash consistency, redb-style (`tests/crash_consistency.rs` there): the control plane runs
//! on a volume that keeps a *live* and a *durable* image of every data file and directory
//! entry, and on a metadata database whose commits count as syncs. A crash is injected at the
//! N-th sync (a data sync, a directory sync or a commit), for every N the workload reaches:
//! the sync does not happen and everything after it fails. The store is then reopened from
//! the durable images only, and must hold, for every object, the content of its last
//! acknowledged write (or of the write in flight), be readable throughout (`fsck --deep`
//! clean), and keep working.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::HookedMeta;
use dare::{Dare, FsckOptions, GetOptions, Options, PutOptions, StoreConfig};
use dare_engine::{AeadBackend, DataFile, FileLoc, ReadAt, Volume, VolumeEntry};
use dare_keys::{RootKeyFile, RootOfTrust, Secret32};
use dare_metadata::{MetaError, Metadata, SqliteMetadata, SqliteOptions};

/// The shared sync counter: which sync crashes, and whether it has.
#[derive(Debug)]
struct Sim {
    syncs: AtomicU64,
    crash_at: u64,
    crashed: AtomicBool,
}

impl Sim {
    fn new(crash_at: u64) -> Arc<Sim> {
        Arc::new(Sim {
            syncs: AtomicU64::new(0),
            crash_at,
            crashed: AtomicBool::new(false),
        })
    }
    fn alive(&self) -> io::Result<()> {
        if self.crashed.load(Ordering::SeqCst) {
            Err(io::Error::other("simulated crash"))
        } else {
            Ok(())
        }
    }
    /// A sync point: fails (and crashes) at the chosen one.
    fn sync(&self) -> io::Result<()> {
        self.alive()?;
        let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.crash_at {
            self.crashed.store(true, Ordering::SeqCst);
            return Err(io::Error::other("simulated crash"));
        }
        Ok(())
    }
}

// ---- volume with live and durable images -------------------------------------------------

#[derive(Debug, Default)]
struct MemFile {
    live: Mutex<Vec<u8>>,
    /// Content as of the last data sync.
    durable: Mutex<Vec<u8>>,
}

#[derive(Debug)]
struct Handle {
    f: Arc<MemFile>,
    sim: Arc<Sim>,
}

impl ReadAt for Handle {
    fn read_exact_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.sim.alive()?;
        self.f
            .live
            .lock()
            .unwrap()
            .as_slice()
            .read_exact_at(buf, off)
    }
}

impl DataFile for Handle {
    fn write_prefix_at(
        &self,
        buf: Vec<u8>,
        range: std::ops::Range<usize>,
        off: u64,
    ) -> (io::Result<()>, Vec<u8>) {
        if let Err(e) = self.sim.alive() {
            return (Err(e), buf);
        }
        let range = if range.is_empty() {
            0..buf.len()
        } else {
            range
        };
        let mut live = self.f.live.lock().unwrap();
        let end = off as usize + range.len();
        if live.len() < end {
            live.resize(end, 0);
        }
        live[off as usize..end].copy_from_slice(&buf[range]);
        (Ok(()), buf)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.sim.sync()?;
        *self.f.durable.lock().unwrap() = self.f.live.lock().unwrap().clone();
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.f.live.lock().unwrap().len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.sim.alive()?;
        self.f.live.lock().unwrap().resize(len as usize, 0);
        Ok(())
    }
}

/// A directory: its live entries, and its entries as of its last sync.
type Dir = (u64, u8);

#[derive(Debug, Default)]
struct Entries {
    live: BTreeMap<FileLoc, Arc<MemFile>>,
    durable: BTreeMap<FileLoc, Arc<MemFile>>,
}

#[derive(Debug)]
struct CrashVolume {
    sim: Arc<Sim>,
    entries: Mutex<Entries>,
}

fn dir_of(loc: &FileLoc) -> Dir {
    (loc.bucket_id, loc.object_id[0])
}

impl CrashVolume {
    fn new(sim: Arc<Sim>) -> Self {
        CrashVolume {
            sim,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// What survives the crash: durable entries with their durable content.
    fn durable_image(&self, sim: Arc<Sim>) -> CrashVolume {
        let e = self.entries.lock().unwrap();
        let mut files = BTreeMap::new();
        for (loc, f) in &e.durable {
            let content = f.durable.lock().unwrap().clone();
            files.insert(
                *loc,
                Arc::new(MemFile {
                    live: Mutex::new(content.clone()),
                    durable: Mutex::new(content),
                }),
            );
        }
        CrashVolume {
            sim,
            entries: Mutex::new(Entries {
                live: files.clone(),
                durable: files,
            }),
        }
    }
}

impl Volume for CrashVolume {
    fn create(&self, loc: &FileLoc) -> io::Result<Box<dyn DataFile>> {
        self.sim.alive()?;
        let mut e = self.entries.lock().unwrap();
        if e.live.contains_key(loc) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        let f = Arc::new(MemFile::default());
        e.live.insert(*loc, f.clone());
        Ok(Box::new(Handle {
            f,
            sim: self.sim.clone(),
        }))
    }
    fn open(&self, loc: &FileLoc) -> io::Result<Box<dyn DataFile>> {
        self.sim.alive()?;
        let e = self.entries.lock().unwrap();
        let f = e.live.get(loc).ok_or(io::ErrorKind::NotFound)?.clone();
        Ok(Box::new(Handle {
            f,
            sim: self.sim.clone(),
        }))
    }
    fn sync_dir(&self, loc: &FileLoc) -> io::Result<()> {
        self.sim.sync()?;
        let d = dir_of(loc);
        let mut e = self.entries.lock().unwrap();
        let Entries { live, durable } = &mut *e;
        durable.retain(|l, _| dir_of(l) != d);
        for (l, f) in live.iter() {
            if dir_of(l) == d {
                durable.insert(*l, f.clone());
            }
        }
        Ok(())
    }
    fn remove(&self, loc: &FileLoc) -> io::Result<()> {
        self.sim.alive()?;
        let mut e = self.entries.lock().unwrap();
        e.live
            .remove(loc)
            .map(|_| ())
            .ok_or(io::ErrorKind::NotFound.into())
    }
    fn remove_bucket(&self, bucket_id: u64) -> io::Result<()> {
        self.sim.alive()?;
        let mut e = self.entries.lock().unwrap();
        e.live.retain(|l, _| l.bucket_id != bucket_id);
        // Removing a directory tree and syncing its parent: one sync point.
        drop(e);
        self.sim.sync()?;
        let mut e = self.entries.lock().unwrap();
        e.durable.retain(|l, _| l.bucket_id != bucket_id);
        Ok(())
    }
    fn scan(&self) -> io::Result<Vec<VolumeEntry>> {
        self.sim.alive()?;
        let e = self.entries.lock().unwrap();
        Ok(e.live
            .iter()
            .map(|(loc, f)| VolumeEntry::Data {
                loc: *loc,
                len: f.live.lock().unwrap().len() as u64,
                modified: Some(std::time::UNIX_EPOCH),
            })
            .collect())
    }
    fn remove_other(&self, _rel: &Path) -> io::Result<()> {
        Err(io::ErrorKind::NotFound.into())
    }
    fn adopt(&self, _from: &Path, _loc: &FileLoc) -> io::Result<()> {
        Err(io::ErrorKind::Unsupported.into())
    }
    fn describe(&self) -> String {
        "crash-simulating volume".into()
    }
}

// ---- metadata whose commits are sync points ----------------------------------------------

fn crashed() -> MetaError {
    MetaError::Io {
        op: "commit",
        path: PathBuf::from("(simulated)"),
        source: io::Error::other("simulated crash"),
    }
}

fn crash_meta(inner: SqliteMetadata, sim: Arc<Sim>) -> HookedMeta {
    let at_commit = sim.clone();
    HookedMeta::new(
        inner,
        Arc::new(move || at_commit.sync().map_err(|_| crashed())),
        Arc::new(move || sim.alive().map_err(|_| crashed())),
    )
}

// ---- the workload ------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Put(&'static str, Vec<u8>),
    Delete(&'static str),
    Rotate,
    Rewrap,
}

fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn workload() -> Vec<Op> {
    vec![
        Op::Put("a", content(1, 10_000)),
        Op::Put("dir/b", content(2, 0)),
        Op::Put("a", content(3, 30_000)),
        Op::Put("c", content(4, 5)),
        Op::Delete("dir/b"),
        Op::Rotate,
        Op::Put("c", content(5, 70_000)),
        Op::Rewrap,
        Op::Delete("a"),
        Op::Put("a", content(6, 4096)),
    ]
}

fn options() -> Options {
    Options {
        data: StoreConfig {
            // Small batches: objects of several batches exercise the pipelined writes.
            batch_bytes: 8 << 10,
            backend: AeadBackend::best(),
            sync: true,
        },
        ..Options::default()
    }
}

fn root() -> Arc<dyn RootOfTrust> {
    Arc::new(RootKeyFile::from_secret(Secret32::from_bytes(
        "test root",
        [7; 32],
    )))
}

/// The state a name may be in after a crash: each allowed content, `None` = absent.
type Allowed = HashMap<&'static str, Vec<Option<Vec<u8>>>>;

fn run(d: &Dare, op: &Op) -> Result<(), dare::Error> {
    match op {
        Op::Put(n, data) => d
            .put("bkt", n, &mut data.as_slice(), &PutOptions::default())
            .map(|_| ()),
        Op::Delete(n) => d.delete("bkt", n),
        Op::Rotate => {
            let id = d.keys().start_rotation()?;
            d.keys().run_rotation(id, &Default::default())?;
            Ok(())
        }
        Op::Rewrap => d.rewrap("bkt", &mut |_| {}).map(|_| ()),
    }
}

/// Runs the workload with a crash at sync `crash_at` (0: never); returns what each name may
/// hold afterwards, the durable images, and how many syncs happened.
fn crash_run(dir: &Path, crash_at: u64) -> (Allowed, CrashVolume, u64, bool) {
    let sim = Sim::new(crash_at);
    let db = dir.join("dare.db");
    let meta = Arc::new(crash_meta(
        SqliteMetadata::create(&db, SqliteOptions::default()).unwrap(),
        sim.clone(),
    ));
    let volume = Arc::new(CrashVolume::new(sim.clone()));
    let mut current: HashMap<&'static str, Option<Vec<u8>>> = HashMap::new();
    let mut allowed: Allowed = HashMap::new();
    let setup = Dare::create_parts(meta.clone(), volume.clone(), root(), 12, &options())
        .and_then(|d| d.create_bucket("bkt", "default", None).map(|_| d));
    let d = match setup {
        Ok(d) => d,
        // Crashed while creating the store: nothing to check but that it reopens.
        Err(_) => {
            let image = volume.durable_image(Sim::new(0));
            return (allowed, image, sim.syncs.load(Ordering::SeqCst), true);
        }
    };
    for op in workload() {
        let name = match &op {
            Op::Put(n, _) | Op::Delete(n) => Some(*n),
            _ => None,
        };
        let before = name.map(|n| current.get(n).cloned().flatten());
        let r = run(&d, &op);
        if let Some(n) = name {
            let after = match &op {
                Op::Put(_, data) => Some(data.clone()),
                _ => None,
            };
            match &r {
                Ok(()) => {
                    current.insert(n, after);
                }
                Err(_) => {
                    // In flight when it crashed: the old or the new state.
                    allowed.insert(n, vec![before.clone().flatten(), after]);
                }
            }
        }
        if let Err(e) = r {
            assert!(
                sim.crashed.load(Ordering::SeqCst),
                "{op:?} failed without a crash: {e}"
            );
            break;
        }
    }
    for (n, c) in &current {
        allowed.entry(n).or_insert_with(|| vec![c.clone()]);
    }
    let image = volume.durable_image(Sim::new(0));
    (allowed, image, sim.syncs.load(Ordering::SeqCst), false)
}

fn check_recovered(dir: &Path, allowed: &Allowed, image: CrashVolume, in_setup: bool) {
    let sim = Sim::new(0);
    let meta: Arc<dyn Metadata> = Arc::new(crash_meta(
        SqliteMetadata::open(&dir.join("dare.db"), SqliteOptions::default()).unwrap(),
        sim,
    ));
    let volume: Arc<dyn Volume> = Arc::new(image);
    // A store whose creation crashed is finished by creating it again.
    let d = Dare::create_parts(meta.clone(), volume.clone(), root(), 12, &options())
        .or_else(|_| Dare::open_parts(meta, volume, root(), &options()))
        .expect("store reopens after the crash");
    if in_setup || d.bucket("bkt").is_err() {
        d.create_bucket("bkt", "default", None).ok();
    }
    let report = d
        .fsck(&FsckOptions {
            deep: true,
            ..Default::default()
        })
        .unwrap();
    assert!(
        report.is_clean(),
        "fsck after the crash: {:?}",
        report.errors
    );
    for (name, options) in allowed {
        let got = match d.get("bkt", name, &GetOptions::default()) {
            Ok(o) => Some(o.to_vec().expect("visible object reads back")),
            Err(dare::Error::NoSuchObject { .. }) => None,
            Err(e) => panic!("{name}: {e}"),
        };
        assert!(
            options.contains(&got),
            "{name}: content after the crash is none of the allowed states ({} allowed)",
            options.len()
        );
    }
    // The store keeps working; unfinished rotations resume.
    for t in d.keys().rotation_history().unwrap() {
        if t.state != dare_metadata::TaskState::Completed {
            d.keys().resume_rotation(t.id, &Default::default()).unwrap();
        }
    }
    d.put(
        "bkt",
        "after",
        &mut &b"still works"[..],
        &PutOptions::default(),
    )
    .unwrap();
    assert_eq!(
        d.get("bkt", "after", &GetOptions::default())
            .unwrap()
            .to_vec()
            .unwrap(),
        b"still works"
    );
    let repaired = d
        .fsck(&FsckOptions {
            repair: true,
            grace: std::time::Duration::ZERO,
            ..Default::default()
        })
        .unwrap();
    assert!(repaired.is_clean());
    let after = d.fsck(&FsckOptions::default()).unwrap();
    assert!(
        after.garbage.is_empty(),
        "repair left garbage: {:?}",
        after.garbage
    );
}

#[test]
fn every_crash_point_leaves_old_or_new_state() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("count")).unwrap();
    let (_, _, total, _) = crash_run(&dir.path().join("count"), 0);
    assert!(total > 20, "workload reached only {total} syncs");
    for n in 1..=total {
        let d = dir.path().join(format!("crash-{n}"));
        std::fs::create_dir_all(&d).unwrap();
        let (allowed, image, _, in_setup) = crash_run(&d, n);
        check_recovered(&d, &allowed, image, in_setup);
    }
}
