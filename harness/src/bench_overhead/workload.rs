//! The measured workload: PUT, GET and range GET through the control plane ([`dare::Dare`]),
//! plaintext and encrypted series interleaved request by request.
//!
//! The plaintext series writes to a bucket of a namespace created with encryption off; the
//! encrypted series to a bucket of the (encrypted) default namespace; the SSE-KMS series to a
//! bucket whose key the default customer master key wraps (docs/KMS.md §4.4), which must cost
//! what the encrypted series costs: no call to the key service per object. The "key cache off"
//! series goes through a second handle on the same store opened with
//! [`CacheMode::Off`](dare::CacheMode::Off): every request unwraps and derives the whole key
//! chain, as ECS derives the virtual wrapping key per request.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use dare::{CacheMode, Dare, GetOptions, ListQuery, Options, PutOptions};
use dare_engine::FileLoc;

use super::sys;
use super::{Plan, SizePlan};

/// Chunk size of the benchmark store: the CLI's default.
pub const CHUNK_SIZE: u64 = 65536;
/// Range GETs ask for this many bytes at least …
pub const RANGE_MIN: u64 = 4 << 10;
/// … and at most (clipped to the object size), at a random offset.
pub const RANGE_MAX: u64 = 64 << 10;

/// A request type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Put,
    Get,
    Range,
}

impl Op {
    pub const ALL: [Op; 3] = [Op::Put, Op::Get, Op::Range];
    /// JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Range => "range_get",
        }
    }
    /// Table label.
    pub fn label(self) -> &'static str {
        match self {
            Op::Put => "PUT",
            Op::Get => "GET",
            Op::Range => "range GET",
        }
    }
}

/// A series: a bucket and how requests reach its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Series {
    /// A bucket with encryption off.
    Plain,
    /// An encrypted bucket, with the key cache as `--key-cache` says (on by default).
    Enc,
    /// An encrypted bucket with the key cache off: the whole chain unwrapped and derived per
    /// request, as ECS derives the virtual wrapping key per request.
    EncCacheOff,
    /// An SSE-KMS bucket (its bucket key wrapped by the default customer master key,
    /// docs/KMS.md §4.4), key cache as for `Enc`: must cost what `Enc` costs.
    Kms,
}

impl Series {
    /// JSON key.
    pub fn key(self) -> &'static str {
        match self {
            Series::Plain => "plain",
            Series::Enc => "enc",
            Series::EncCacheOff => "enc_cache_off",
            Series::Kms => "sse_kms",
        }
    }
    /// Human label.
    pub fn label(self) -> &'static str {
        match self {
            Series::Plain => "plaintext",
            Series::Enc => "encrypted",
            Series::EncCacheOff => "encrypted, key cache off",
            Series::Kms => "encrypted, SSE-KMS",
        }
    }
    fn bucket(self) -> &'static str {
        match self {
            Series::Plain => "plain",
            Series::Enc => "enc",
            Series::EncCacheOff => "enc-nocache",
            Series::Kms => "enc-kms",
        }
    }
}

/// One series' requests of one type in one repetition.
#[derive(Debug, Clone, Default)]
pub struct Pass {
    pub ops: u64,
    /// Plaintext bytes moved.
    pub bytes: u64,
    /// Wall-clock seconds spent inside the requests.
    pub secs: f64,
    /// User + system CPU seconds of the thread that made the requests, during them.
    pub cpu_thread: f64,
    /// User + system CPU seconds of every other thread of the process during the requests:
    /// the rayon pool (including its workers' spinning before they sleep), the std
    /// pipeline's writer/reader threads, io_uring's kernel workers.
    pub cpu_other: f64,
    /// Seconds per request.
    pub lat: Vec<f64>,
}

/// Everything measured at one object size.
#[derive(Debug, Clone)]
pub struct SizeMeasured {
    pub plan: SizePlan,
    pub series: Vec<Series>,
    /// Passes per (op, series), one per repetition.
    pub passes: BTreeMap<(Op, Series), Vec<Pass>>,
}

/// What the stored files showed (checked once per size, outside the timed requests).
#[derive(Debug, Clone, Copy, Default)]
pub struct Checks {
    /// Objects read back equal to what was written, in every series.
    pub round_trip: bool,
    /// Plaintext bytes were found in the plaintext bucket's files (as expected).
    pub plain_files_hold_plaintext: bool,
    /// Plaintext bytes were found in an encrypted bucket's files (must be false).
    pub enc_files_hold_plaintext: bool,
}

/// The workload's results.
#[derive(Debug, Clone)]
pub struct Measured {
    pub sizes: Vec<SizeMeasured>,
    pub backend: String,
    pub io: String,
    pub batch_bytes: usize,
    pub fs_type: String,
    pub checks: Checks,
}

/// splitmix64: a small seeded generator for object data and range offsets.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..=max` (modulo bias is irrelevant here).
    fn upto(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }
}

/// Incompressible object data: object `i` of a size is a window into one random pool.
struct Data {
    pool: Vec<u8>,
}

impl Data {
    fn new(max_size: u64, seed: u64) -> Result<Data> {
        let len = usize::try_from(max_size + (1 << 20)).context("object size too large")?;
        let mut pool = vec![0u8; len];
        let mut rng = Rng::new(seed, 0xDA7A);
        for c in pool.chunks_mut(8) {
            let v = rng.next().to_le_bytes();
            c.copy_from_slice(&v[..c.len()]);
        }
        Ok(Data { pool })
    }
    fn object(&self, size: u64, i: u64) -> &[u8] {
        let size = size as usize;
        let span = (self.pool.len() - size + 1) as u64;
        let off = (i.wrapping_mul(28_800) % span) as usize;
        &self.pool[off..off + size]
    }
}

fn key_of(i: u64) -> String {
    format!("obj-{i:07}")
}

/// The order of the series for request `i` of a pass: rotated each request so no series
/// always goes first (the first request after a switch can pay for the other's writeback).
fn order(series: &[Series], i: u64) -> impl Iterator<Item = Series> + '_ {
    let k = series.len();
    let start = (i % k as u64) as usize;
    (0..k).map(move |j| series[(start + j) % k])
}

/// Times one request into `pass`; the request returns the bytes it moved. CPU time is read
/// from two clocks around it: the calling thread's own, and the whole process's; their
/// difference is what the other threads ran meanwhile.
fn timed(pass: &mut Pass, f: impl FnOnce() -> Result<u64>) -> Result<()> {
    let p0 = sys::process_cpu_seconds();
    let t0 = sys::thread_cpu_seconds();
    let w0 = Instant::now();
    let bytes = f()?;
    let dt = w0.elapsed().as_secs_f64();
    let t1 = sys::thread_cpu_seconds();
    let p1 = sys::process_cpu_seconds();
    let thread = (t1 - t0).max(0.0);
    pass.ops += 1;
    pass.bytes += bytes;
    pass.secs += dt;
    pass.cpu_thread += thread;
    pass.cpu_other += (p1 - p0 - thread).max(0.0);
    pass.lat.push(dt);
    Ok(())
}

struct Bench<'a> {
    /// The store with the key cache as `--key-cache` says (on by default).
    d: Dare,
    /// A second handle on the same store with the key cache off.
    uncached: Dare,
    plan: &'a Plan,
    data: Data,
    store: &'a Path,
}

impl Bench<'_> {
    /// The handle a series' requests go through.
    fn handle(&self, s: Series) -> &Dare {
        match s {
            Series::Plain => &self.d,
            Series::Enc | Series::Kms if self.plan.key_cache => &self.d,
            _ => &self.uncached,
        }
    }

    fn put(&self, s: Series, key: &str, data: &[u8]) -> Result<u64> {
        let bucket = s.bucket();
        let mut r = data;
        self.handle(s)
            .put(bucket, key, &mut r, &PutOptions::default())
            .with_context(|| format!("PUT {bucket}/{key}"))?;
        Ok(data.len() as u64)
    }

    /// GETs `key` whole (`range` None) or a range of it; returns the bytes delivered.
    fn get(&self, s: Series, key: &str, range: Option<(u64, u64)>) -> Result<u64> {
        let bucket = s.bucket();
        let obj = self
            .handle(s)
            .get(bucket, key, &GetOptions::default())
            .with_context(|| format!("GET {bucket}/{key}"))?;
        let mut n = 0u64;
        let mut sink = |b: &[u8]| {
            n += b.len() as u64;
            std::hint::black_box(b);
            Ok(())
        };
        let want = match range {
            None => {
                obj.read_all(&mut sink)
                    .with_context(|| format!("GET {bucket}/{key}"))?;
                obj.size()
            }
            Some((off, len)) => {
                obj.read_range(off, len, &mut sink)
                    .with_context(|| format!("range GET {bucket}/{key}"))?;
                len
            }
        };
        if n != want {
            bail!("GET {bucket}/{key}: {n} bytes delivered, {want} expected");
        }
        Ok(n)
    }

    /// The directory of a series' data files (`objects/<bucket id>`).
    fn bucket_dir(&self, s: Series) -> Result<PathBuf> {
        let id = self.d.bucket(s.bucket())?.id;
        Ok(self
            .store
            .join(dare::layout::OBJECTS_DIR)
            .join(id.to_string()))
    }

    /// The data file of an object.
    fn data_file(&self, s: Series, key: &str) -> Result<PathBuf> {
        let info = self.d.head(s.bucket(), key)?;
        let loc = FileLoc {
            bucket_id: self.d.bucket(s.bucket())?.id,
            object_id: info.object_id,
        };
        Ok(self
            .store
            .join(dare::layout::OBJECTS_DIR)
            .join(loc.rel_path()))
    }

    /// Syncs and drops every data file of these series from the page cache.
    fn drop_caches(&self, series: &[Series]) -> Result<()> {
        for &s in series {
            let dir = self.bucket_dir(s)?;
            for fan in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
                let fan = fan?.path();
                if !fan.is_dir() {
                    continue;
                }
                for e in fs::read_dir(&fan).with_context(|| format!("listing {}", fan.display()))? {
                    let p = e?.path();
                    sys::drop_from_page_cache(&p)
                        .with_context(|| format!("dropping {} from the page cache", p.display()))?;
                }
            }
        }
        Ok(())
    }

    /// Deletes every object of these series (not timed), then syncs the file system so the
    /// next pass does not pay for it.
    fn clear(&mut self, series: &[Series]) -> Result<()> {
        for &s in series {
            let q = ListQuery::default();
            loop {
                let page = self.d.list(s.bucket(), &q)?;
                for o in &page.objects {
                    self.d.delete(s.bucket(), &o.name)?;
                }
                if !page.is_truncated {
                    break;
                }
            }
        }
        sys::sync_file_system(self.store).context("syncfs")?;
        Ok(())
    }

    /// Reads objects back and looks at the stored files (not timed).
    fn check(&self, sp: &SizePlan, series: &[Series], checks: &mut Checks) -> Result<()> {
        let probe = (sp.size as usize).min(32);
        for i in [0, sp.objects - 1] {
            let key = key_of(i);
            let want = self.data.object(sp.size, i);
            for &s in series {
                let got = self
                    .d
                    .get(s.bucket(), &key, &GetOptions::default())?
                    .to_vec()?;
                if got != want {
                    bail!(
                        "{}/{key} read back differs from what was written",
                        s.bucket()
                    );
                }
                let raw = fs::read(self.data_file(s, &key)?)?;
                let holds = raw.windows(probe).any(|w| w == &want[..probe]);
                match s {
                    Series::Plain => checks.plain_files_hold_plaintext |= holds,
                    _ => checks.enc_files_hold_plaintext |= holds,
                }
                if s != Series::Plain && holds {
                    bail!(
                        "{}/{key}: the encrypted bucket's file holds the plaintext",
                        s.bucket()
                    );
                }
            }
        }
        checks.round_trip = true;
        Ok(())
    }

    fn size(
        &mut self,
        sp: &SizePlan,
        checks: &mut Checks,
        pb: &indicatif::ProgressBar,
    ) -> Result<SizeMeasured> {
        let mut series = vec![Series::Plain, Series::Enc, Series::Kms];
        if sp.cache_off {
            series.push(Series::EncCacheOff);
        }
        let mut passes: BTreeMap<(Op, Series), Vec<Pass>> = BTreeMap::new();
        let label = super::human_size(sp.size);

        // Warm up: rings, thread pools, key caches and the directories. The previous size's
        // objects go too.
        for &s in &series {
            self.put(s, "warmup", self.data.object(sp.size, u64::MAX / 3))?;
            self.get(s, "warmup", None)?;
        }
        self.clear(&series)?;

        for rep in 0..self.plan.reps {
            // The previous repetition's objects go first; the last repetition's stay for
            // inspection with --keep (and for the tests).
            if rep > 0 {
                self.clear(&series)?;
            }
            let mut cur: BTreeMap<(Op, Series), Pass> = BTreeMap::new();
            pb.set_message(format!("{label}: PUT (rep {}/{})", rep + 1, self.plan.reps));
            for i in 0..sp.objects {
                let key = key_of(i);
                let data = self.data.object(sp.size, i);
                for s in order(&series, i + u64::from(rep)) {
                    let pass = cur.entry((Op::Put, s)).or_default();
                    timed(pass, || self.put(s, &key, data))?;
                    pb.inc(1);
                }
            }
            if !self.plan.sync {
                sys::sync_file_system(self.store).context("syncfs")?;
            }
            if rep == 0 {
                self.check(sp, &series, checks)?;
            }

            pb.set_message(format!("{label}: GET (rep {}/{})", rep + 1, self.plan.reps));
            if self.plan.sync {
                self.drop_caches(&series)?;
            }
            for i in 0..sp.objects {
                let key = key_of(i);
                for s in order(&series, i + u64::from(rep)) {
                    let pass = cur.entry((Op::Get, s)).or_default();
                    timed(pass, || self.get(s, &key, None))?;
                    pb.inc(1);
                }
            }

            pb.set_message(format!(
                "{label}: range GET (rep {}/{})",
                rep + 1,
                self.plan.reps
            ));
            if self.plan.sync {
                self.drop_caches(&series)?;
            }
            let mut rng = Rng::new(self.plan.seed, sp.size ^ (u64::from(rep) << 48));
            for j in 0..sp.ranges {
                let i = rng.upto(sp.objects - 1);
                let len = (RANGE_MIN + rng.upto(RANGE_MAX - RANGE_MIN)).min(sp.size);
                let off = rng.upto(sp.size - len);
                let key = key_of(i);
                for s in order(&series, j + u64::from(rep)) {
                    let pass = cur.entry((Op::Range, s)).or_default();
                    timed(pass, || self.get(s, &key, Some((off, len))))?;
                    pb.inc(1);
                }
            }
            for (k, p) in cur {
                passes.entry(k).or_default().push(p);
            }
        }
        Ok(SizeMeasured {
            plan: *sp,
            series,
            passes,
        })
    }
}

/// Creates the store at `store`, runs every size, and returns the passes. `base` carries the
/// global `--backend` and `--io` options.
pub fn run(
    plan: &Plan,
    base: &Options,
    store: &Path,
    pb: &indicatif::ProgressBar,
) -> Result<Measured> {
    let mut opts = base.clone();
    opts.data.sync = plan.sync;
    if let Some(b) = plan.batch_bytes {
        opts.data.batch_bytes = b;
    }
    if plan.direct {
        opts.disk.direct = true;
        opts.disk.io = dare::IoMode::Uring;
    }
    let d = Dare::create(store, CHUNK_SIZE, &opts)
        .with_context(|| format!("creating a benchmark store in {}", store.display()))?;
    d.create_namespace("bench-plain", false)?;
    d.create_bucket(Series::Plain.bucket(), "bench-plain", Some(false))?;
    d.create_bucket(Series::Enc.bucket(), dare::DEFAULT_NAMESPACE, Some(true))?;
    d.create_bucket_kms(Series::Kms.bucket(), dare::DEFAULT_NAMESPACE, None)?;
    d.create_bucket(
        Series::EncCacheOff.bucket(),
        dare::DEFAULT_NAMESPACE,
        Some(true),
    )?;
    let uncached = Dare::open(
        store,
        &Options {
            key_cache: CacheMode::Off,
            ..opts.clone()
        },
    )
    .with_context(|| format!("opening the benchmark store {}", store.display()))?;

    let max = plan.sizes.iter().map(|s| s.size).max().unwrap_or(4096);
    let mut b = Bench {
        d,
        uncached,
        plan,
        data: Data::new(max, plan.seed)?,
        store,
    };
    let mut checks = Checks::default();
    let mut sizes = Vec::new();
    for sp in &plan.sizes {
        sizes.push(b.size(sp, &mut checks, pb)?);
    }
    let cfg = *b.d.data_config();
    Ok(Measured {
        sizes,
        backend: cfg.backend.name().to_owned(),
        io: opts.disk.io.name().to_owned(),
        batch_bytes: cfg.batch_bytes,
        fs_type: sys::fs_type(store),
        checks,
    })
}
