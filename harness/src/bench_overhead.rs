//! `dare bench overhead`: what encryption costs on the operator's own drive.
//!
//! The ECS white paper (§3, "Performance") reports about 10% lower S3 TPS with D@RE on and
//! blames deriving the virtual wrapping key on every request. This benchmark answers the same
//! question for dare, end to end through the control plane ([`dare::Dare`]):
//! it PUTs a set of objects, GETs them back whole, then GETs random byte ranges, once into a
//! plaintext bucket and once into an encrypted one, with the same data, the same names and the
//! same order, and reports throughput, CPU per GB and the overhead
//! `(1 − encrypted / plaintext) × 100` on throughput.
//!
//! Method, and why:
//! - Requests are interleaved object by object (plaintext, encrypted, plaintext, …, with the
//!   order rotated for every object), so drift and noisy neighbours — fsync latency on a
//!   shared disk varies by an order of magnitude from one request to the next — land on both
//!   series alike. Each pass is repeated `--reps` times; medians are reported with min–max.
//! - Every request does what a server does per request: look up the bucket, build its key
//!   provider (with the key cache on or off), open the object and stream it to a sink.
//! - GETs read from the drive: before each GET pass every object file is synced and dropped
//!   from the page cache (`posix_fadvise(POSIX_FADV_DONTNEED)`). With `--no-sync` the run is
//!   a memory-bound comparison: PUTs are not synced and GETs are served from the page cache.
//! - CPU time is read around each request from two clocks: the requesting thread's own
//!   (`CLOCK_THREAD_CPUTIME_ID`, user + system) and the process's (`CLOCK_PROCESS_CPUTIME_ID`).
//!   The first is the request's own CPU; the difference is what the process's other threads
//!   ran meanwhile (the engine's crypto workers that decrypt and seal encrypted objects
//!   beside the I/O, the rayon pool, its workers' idle spinning included, the std pipeline's
//!   writer/reader thread, io_uring's kernel workers). The report keeps the two apart.
//! - Where `fio` is installed, the same directory's raw O_DIRECT figures are measured first,
//!   so the report says how close both paths come to the drive.

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::args::OnOff;

mod fio;
pub(crate) mod plot;
pub(crate) mod report;
pub mod scratch;
mod sys;
mod workload;

pub use report::{OpStats, Report, SeriesStats, SizeReport};

/// Arguments of `dare bench overhead`.
#[derive(Debug, Clone, Args)]
pub struct OverheadArgs {
    /// Directory on the drive under test. A temporary store is created inside it and removed
    /// afterwards. Default: the current directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Object sizes, comma-separated, with binary suffixes K, M, G (4K = 4096 bytes).
    /// Default: 4K,64K,1M,64M (4K,64K,1M with --quick).
    #[arg(long)]
    pub sizes: Option<String>,
    /// Bytes written per object size, per series, per pass (e.g. 256M); the object count is
    /// this divided by the size (at least 1). Default: an amount per size chosen so the
    /// default run takes about two minutes on a small machine.
    #[arg(long)]
    pub bytes: Option<String>,
    /// Repetitions of every pass; medians and min–max are over these. Default 3 (2 with --quick).
    #[arg(long)]
    pub reps: Option<u32>,
    /// Acknowledge each PUT only after fdatasync and the directory sync (the default).
    #[arg(long, conflicts_with = "no_sync")]
    pub sync: bool,
    /// Memory-bound comparison: PUTs are not synced and GETs come from the page cache.
    #[arg(long)]
    pub no_sync: bool,
    /// O_DIRECT through io_uring for object files (bypasses the page cache; writes are
    /// block-aligned with a padded, truncated final block). Compare with fio's figures.
    #[arg(long)]
    pub direct: bool,
    /// Key cache for the encrypted series. When not given, the encrypted series uses the
    /// cache and a third series, "encrypted, key cache off", runs at sizes up to 64 KiB.
    #[arg(long, value_enum)]
    pub key_cache: Option<OnOff>,
    /// Write every measured figure, the machine and the options as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw throughput and overhead against object size to this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Smoke test: small sizes and byte counts, 2 reps, short fio runs (under 30 s).
    #[arg(long)]
    pub quick: bool,
    /// Seed for the object data and the range offsets.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Skip the raw-drive reference measured with fio.
    #[arg(long)]
    pub no_fio: bool,
    /// Plaintext bytes sealed or opened per pipeline step (the store's batch size, e.g. 256K);
    /// default: the engine's (4 MiB). Objects up to one batch are sealed, then written (and
    /// read, then opened) without overlap, so this bounds the encryption time I/O cannot hide.
    #[arg(long)]
    pub batch: Option<String>,
    /// Keep the temporary store afterwards (its path is printed and in the JSON).
    #[arg(long)]
    pub keep: bool,
}

/// Sizes run by default.
const DEFAULT_SIZES: &str = "4K,64K,1M,64M";
const QUICK_SIZES: &str = "4K,64K,1M";
/// The third series ("encrypted, key cache off") runs at sizes up to this, where one key
/// derivation per request is not lost in the I/O time.
const CACHE_OFF_MAX_SIZE: u64 = 64 << 10;
/// Largest object size accepted (the data pool is held in memory).
const MAX_SIZE: u64 = 1 << 30;
/// Largest byte count per size per pass.
const MAX_BYTES: u64 = 64 << 30;

/// Bytes per size per pass when `--bytes` is not given: enough objects that fsync jitter
/// averages out at small sizes, few enough that the default run stays near two minutes.
fn default_bytes(size: u64, quick: bool) -> u64 {
    if quick {
        return match size {
            0..=4096 => 64 * size,
            4097..=65536 => 32 * size,
            _ => (8 << 20).max(size),
        };
    }
    match size {
        0..=4096 => 1000 * size,
        4097..=65536 => 600 * size,
        65537..=1_048_576 => 192 * size,
        _ => (512 << 20).max(2 * size),
    }
}

/// Everything a run does, resolved from the arguments.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Directory the temporary store is created in.
    pub base: PathBuf,
    /// Object sizes with their object counts per pass.
    pub sizes: Vec<SizePlan>,
    pub reps: u32,
    pub sync: bool,
    /// Object files opened with O_DIRECT.
    pub direct: bool,
    /// Encrypted series: key cache on or off.
    pub key_cache: bool,
    /// Whether a third "encrypted, key cache off" series runs (at small sizes).
    pub cache_off_series: bool,
    pub seed: u64,
    /// Store batch size; None keeps the engine's default.
    pub batch_bytes: Option<usize>,
    pub fio: bool,
    pub fio_seconds: u32,
    pub keep: bool,
    pub quick: bool,
}

/// One object size.
#[derive(Debug, Clone, Copy)]
pub struct SizePlan {
    pub size: u64,
    /// Objects per series per pass.
    pub objects: u64,
    /// Range GETs per series per pass.
    pub ranges: u64,
    /// Whether the "encrypted, key cache off" series runs at this size.
    pub cache_off: bool,
}

/// Parses `4096`, `4K`, `4KiB`, `64M`, `1G` (binary multiples) into bytes.
pub fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(digits);
    if num.is_empty() {
        bail!("{s:?} is not a size (expected a number with an optional K, M or G suffix)");
    }
    let n: u64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a size"))?;
    let mult: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        other => bail!("{s:?}: unknown size suffix {other:?} (use K, M or G, binary multiples)"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("{s:?} is too large"))
}

/// Human form of a byte count: 4 KiB, 64 MiB.
pub fn human_size(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (m, u) in UNITS {
        if n >= m && n.checked_rem(m) == Some(0) {
            return format!("{} {u}", n / m);
        }
    }
    format!("{n} B")
}

impl Plan {
    /// Checks and resolves the arguments; every error is one line a user can act on.
    pub fn from_args(a: &OverheadArgs) -> Result<Plan> {
        if a.direct && !dare_engine::storage::uring_available() {
            bail!("--direct needs io_uring, which this kernel or sandbox refuses");
        }
        let spec = a
            .sizes
            .as_deref()
            .unwrap_or(if a.quick { QUICK_SIZES } else { DEFAULT_SIZES });
        let mut sizes = Vec::new();
        for part in spec.split(',') {
            if part.trim().is_empty() {
                bail!("--sizes {spec:?}: empty entry (expected e.g. 4K,64K,1M)");
            }
            let size = parse_bytes(part).with_context(|| format!("--sizes {spec:?}"))?;
            if size == 0 || size > MAX_SIZE {
                bail!("--sizes {spec:?}: {part:?} must be from 1 byte to 1G");
            }
            if sizes.contains(&size) {
                bail!("--sizes {spec:?}: {part:?} is given twice");
            }
            sizes.push(size);
        }
        let bytes = match &a.bytes {
            None => None,
            Some(b) => {
                let n = parse_bytes(b).with_context(|| format!("--bytes {b:?}"))?;
                if n == 0 || n > MAX_BYTES {
                    bail!("--bytes {b:?} must be from 1 byte to 64G");
                }
                Some(n)
            }
        };
        let batch_bytes = match &a.batch {
            None => None,
            Some(b) => {
                let n = parse_bytes(b).with_context(|| format!("--batch {b:?}"))?;
                if !(4096..=(256 << 20)).contains(&n) {
                    bail!("--batch {b:?} must be from 4K to 256M");
                }
                Some(usize::try_from(n).context("--batch")?)
            }
        };
        let reps = a.reps.unwrap_or(if a.quick { 2 } else { 3 });
        if reps == 0 || reps > 1000 {
            bail!("--reps must be from 1 to 1000");
        }
        let base = match &a.dir {
            Some(d) => {
                let md = fs::metadata(d)
                    .with_context(|| format!("--dir {}: cannot use it", d.display()))?;
                if !md.is_dir() {
                    bail!("--dir {} is not a directory", d.display());
                }
                d.clone()
            }
            None => PathBuf::from("."),
        };
        for (flag, p) in [("--json", &a.json), ("--plot", &a.plot)] {
            if let Some(p) = p {
                let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
                if parent.is_some_and(|d| !d.is_dir()) {
                    bail!("{flag} {}: its directory does not exist", p.display());
                }
                if p.is_dir() {
                    bail!("{flag} {} is a directory", p.display());
                }
            }
        }
        let cache_off_series = a.key_cache.is_none();
        let sizes = sizes
            .into_iter()
            .map(|size| {
                let total = bytes.unwrap_or_else(|| default_bytes(size, a.quick));
                let objects = (total / size).max(1);
                let ranges = if a.quick {
                    objects.clamp(16, 64)
                } else {
                    objects.clamp(128, 1024)
                };
                SizePlan {
                    size,
                    objects,
                    ranges,
                    cache_off: cache_off_series && size <= CACHE_OFF_MAX_SIZE,
                }
            })
            .collect();
        Ok(Plan {
            base,
            sizes,
            reps,
            sync: !a.no_sync,
            direct: a.direct,
            key_cache: a.key_cache.is_none_or(OnOff::is_on),
            cache_off_series,
            seed: a.seed,
            batch_bytes,
            fio: !a.no_fio,
            fio_seconds: if a.quick { 1 } else { 3 },
            keep: a.keep,
            quick: a.quick,
        })
    }
}

/// Runs the benchmark and returns every figure (no printing, no files). `base` carries the
/// global `--backend` and `--io` options; the benchmark sets sync, batch size and `O_DIRECT`.
pub fn run_bench(a: &OverheadArgs, base: &dare::Options) -> Result<Report> {
    let plan = Plan::from_args(a)?;
    let started = Instant::now();
    let scratch = scratch::Scratch::create(&plan.base)?;
    let root = scratch.path().to_path_buf();
    let progress = progress_bar(&plan);
    let drive = if plan.fio {
        progress.set_message("fio: raw drive figures");
        fio::measure(&root, plan.fio_seconds)
    } else {
        fio::Drive::skipped("skipped (--no-fio)")
    };
    let outcome = workload::run(&plan, base, &root.join("store"), &progress);
    progress.finish_and_clear();
    let kept = if plan.keep {
        Some(scratch.keep())
    } else {
        scratch.close()?;
        None
    };
    let measured = outcome?;
    // `keep` renames the store: report where it now is.
    let shown = kept.clone().unwrap_or(root);
    Ok(Report::new(
        &plan,
        a,
        measured,
        drive,
        &shown,
        kept.is_some(),
        started.elapsed(),
    ))
}

fn progress_bar(plan: &Plan) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let per_size: u64 = plan
        .sizes
        .iter()
        .map(|s| {
            let series = if s.cache_off { 4 } else { 3 };
            series * (2 * s.objects + s.ranges)
        })
        .sum();
    let pb = indicatif::ProgressBar::new(per_size * u64::from(plan.reps));
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:32} {pos}/{len} requests  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

/// `dare bench overhead`: runs, prints the table, writes `--json` and `--plot`.
pub fn run(a: OverheadArgs, base: &dare::Options) -> Result<()> {
    let report = run_bench(&a, base)?;
    let mut o = crate::out::stdout().lock();
    write!(o, "{}", report.table())?;
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        fs::write(p, text + "\n").with_context(|| format!("writing {}", p.display()))?;
        writeln!(o, "JSON written to {}", p.display())?;
    }
    if let Some(p) = &a.plot {
        plot::draw(&report, p)?;
        writeln!(o, "plot written to {}", p.display())?;
    }
    Ok(())
}
