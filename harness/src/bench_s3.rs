//! `dare bench s3`: an S3 load generator that measures what encryption costs `dare serve` in
//! requests per second — the figure the ECS white paper reports ("approximately 10%
//! performance penalty on S3 TPS when D@RE is enabled", §3).
//!
//! It PUTs and then GETs objects of each size with `--concurrency` keep-alive connections
//! (default 16), SigV4-signed ([`client`]), into four buckets: a plaintext bucket, an SSE-S3
//! bucket (dare's default), and with SSE-C and SSE-KMS request headers. It reports requests
//! per second, MB/s and latency percentiles (p50, p99), and the overhead
//! `(1 − series / plaintext) × 100` on requests per second.
//!
//! Method, and why:
//! - The series are interleaved: within every repetition and size, each series runs its PUT
//!   pass (then each its GET pass) in an order rotated from one repetition and size to the
//!   next, so drift and noisy neighbours land on every series alike. Medians over `--reps`
//!   are reported with min–max; the overhead's min–max is over per-repetition pairs.
//! - By default the benchmark starts its own `dare serve` (this same binary) on a scratch
//!   store in `--dir`, on a loopback port over plain HTTP (with `--allow-ssec-over-http`,
//!   which SSE-C needs there); the plaintext bucket and the SSE-KMS key are made through the
//!   CLI before the server starts, the other buckets through S3. With `--endpoint URL
//!   --credentials FILE` it measures a server already running instead (plain HTTP only); the
//!   plaintext bucket is then `--plain-bucket`, and the SSE-KMS series runs only with
//!   `--kms-key`.
//! - Client and server share the machine: the client's CPU (signing, copying) is the same
//!   for every series, so it lowers every series alike and the ratios stay comparable.

use std::io::{BufRead, BufReader, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use dare_engine::format::hex;
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::bench_overhead::report::{Summary, num, percentile};
use crate::bench_overhead::{human_size, parse_bytes};

pub mod client;
mod plot;

use client::{Client, Keys, Sse};

/// Arguments of `dare bench s3`.
#[derive(Debug, Clone, Args)]
pub struct S3Args {
    /// Connections (worker threads), each keeping its connection alive.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Object sizes, comma-separated, with binary suffixes K, M, G.
    /// Default: 4K,64K,1M,16M (4K,64K,1M with --quick).
    #[arg(long)]
    pub sizes: Option<String>,
    /// Requests per series, per size, per pass (PUTs, then as many GETs). Default: a count
    /// per size chosen so the default run takes a few minutes on a small machine.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Repetitions; medians and min–max are over these. Default 3 (2 with --quick).
    #[arg(long)]
    pub reps: Option<u32>,
    /// Directory for the scratch store of the server this benchmark starts. Default: the
    /// current directory.
    #[arg(long, conflicts_with = "endpoint")]
    pub dir: Option<PathBuf>,
    /// Measure this running server (http://HOST:PORT) instead of starting one.
    #[arg(long, requires = "credentials", requires = "plain_bucket")]
    pub endpoint: Option<String>,
    /// With --endpoint: the credentials file the server was given (the first key pair).
    #[arg(long, value_name = "FILE", requires = "endpoint")]
    pub credentials: Option<PathBuf>,
    /// With --endpoint: an existing bucket that stores objects in clear (e.g. made with
    /// `dare bucket create NAME --encryption off` before the server started).
    #[arg(long, value_name = "BUCKET", requires = "endpoint")]
    pub plain_bucket: Option<String>,
    /// With --endpoint: the customer master key (id or alias) of the SSE-KMS series; the
    /// series is left out without it.
    #[arg(long, value_name = "KEY", requires = "endpoint")]
    pub kms_key: Option<String>,
    /// Write every measured figure, the machine and the options as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draw requests per second and overhead against object size to this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Smoke test: sizes 4K,64K,1M, few requests, 2 reps (well under a minute).
    #[arg(long)]
    pub quick: bool,
}

const DEFAULT_SIZES: &str = "4K,64K,1M,16M";
const QUICK_SIZES: &str = "4K,64K,1M";
/// Largest object size accepted (one buffer per size is held in memory).
const MAX_SIZE: u64 = 256 << 20;

fn default_requests(size: u64, quick: bool) -> u64 {
    if quick {
        return match size {
            0..=65536 => 64,
            _ => 16,
        };
    }
    match size {
        0..=4096 => 800,
        4097..=65536 => 600,
        65537..=1_048_576 => 200,
        _ => 24,
    }
}

/// The series measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    Plain,
    SseS3,
    SseC,
    SseKms,
}

impl Series {
    pub fn key(self) -> &'static str {
        match self {
            Series::Plain => "plain",
            Series::SseS3 => "sse_s3",
            Series::SseC => "sse_c",
            Series::SseKms => "sse_kms",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Series::Plain => "plaintext bucket",
            Series::SseS3 => "SSE-S3 bucket",
            Series::SseC => "SSE-C",
            Series::SseKms => "SSE-KMS",
        }
    }
}

/// PUT or GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Put,
    Get,
}

impl Op {
    pub fn key(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Op::Put => "PUT",
            Op::Get => "GET",
        }
    }
}

/// A series' bucket and request headers.
#[derive(Debug, Clone)]
struct Target {
    series: Series,
    bucket: String,
    sse: Sse,
}

/// One pass: `requests` requests in `secs` seconds, and every request's latency (seconds).
#[derive(Debug, Clone)]
struct Pass {
    requests: u64,
    secs: f64,
    latencies: Vec<f64>,
}

/// Figures of one series, one request type, one size.
#[derive(Debug, Clone)]
pub struct SeriesStats {
    pub series: Series,
    pub requests_per_rep: u64,
    pub tps: Summary,
    pub mb_per_sec: Summary,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// `(1 − this / plaintext) × 100` on requests per second (None for the plaintext series).
    pub overhead_pct: Option<Summary>,
}

/// One request type at one size.
#[derive(Debug, Clone)]
pub struct OpStats {
    pub op: Op,
    pub series: Vec<SeriesStats>,
}

/// One object size.
#[derive(Debug, Clone)]
pub struct SizeReport {
    pub size: u64,
    pub ops: Vec<OpStats>,
}

impl SizeReport {
    pub fn get(&self, op: Op, s: Series) -> Option<&SeriesStats> {
        self.ops
            .iter()
            .find(|o| o.op == op)?
            .series
            .iter()
            .find(|x| x.series == s)
    }
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub endpoint: String,
    pub own_server: bool,
    pub server_clean_shutdown: Option<bool>,
    pub concurrency: usize,
    pub reps: u32,
    pub cpu: String,
    pub logical_cpus: usize,
    pub sizes: Vec<SizeReport>,
    pub series: Vec<Series>,
    pub elapsed: Duration,
    pub quick: bool,
}

/// The server this benchmark started, stopped with SIGTERM on drop.
#[derive(Debug)]
struct OwnServer {
    child: Child,
    url: String,
    stderr: PathBuf,
}

impl OwnServer {
    /// SIGTERM, then the exit status (true: 0 within 30 s).
    fn stop(mut self) -> bool {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet (we hold `child`).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => return st.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return false;
                }
            }
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `dare ARGS` on the scratch store (this binary), returning its standard output.
fn dare(store: &Path, args: &[&str]) -> Result<String> {
    let exe = std::env::current_exe().context("finding the dare binary")?;
    let out = scrub(Command::new(&exe))
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .with_context(|| format!("running {} {}", exe.display(), args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "dare {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The scratch store is protected by its own root key file: no passphrase, HSM or database
/// settings of the caller's environment apply to it.
fn scrub(mut c: Command) -> Command {
    for v in [
        "DARE_STORE",
        "DARE_METADATA_URL",
        "DARE_PASSPHRASE_FILE",
        "DARE_HSM_MODULE",
        "DARE_HSM_TOKEN",
        "DARE_HSM_KEY",
        "DARE_HSM_PIN_FILE",
        "DARE_HSM_PIN",
    ] {
        c.env_remove(v);
    }
    c
}

const PLAIN_BUCKET: &str = "bench-plain";
const PLAIN_NS: &str = "bench-plain";
const KMS_ALIAS: &str = "bench-s3";

/// Makes the scratch store, its plaintext bucket, its CMK and credentials, and starts
/// `dare serve` on 127.0.0.1:0. Returns the server, the keys and the CMK id.
fn start_own_server(root: &Path) -> Result<(OwnServer, Keys, String)> {
    let store = root.join("store");
    dare(&store, &["init"])?;
    // A plaintext bucket lives in a namespace with encryption off (a bucket's setting is its
    // namespace's, fixed at creation).
    dare(&store, &["ns", "create", PLAIN_NS, "--encryption", "off"])?;
    dare(
        &store,
        &["bucket", "create", PLAIN_BUCKET, "--namespace", PLAIN_NS],
    )?;
    let kms: Value = serde_json::from_str(&dare(
        &store,
        &["kms", "create", "--alias", KMS_ALIAS, "--json"],
    )?)
    .context("dare kms create --json")?;
    let kms_id = kms["key_id"]
        .as_str()
        .context("dare kms create --json: no key_id")?
        .to_owned();
    let mut raw = [0u8; 24];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("random credentials: {e}"))?;
    let keys = Keys {
        access: format!("BENCH{}", hex(&raw[..6]).to_ascii_uppercase()),
        secret: zeroize::Zeroizing::new(hex(&raw[6..])),
    };
    let cred = root.join("credentials");
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&cred)
            .context("writing the credentials file")?;
        let line = zeroize::Zeroizing::new(format!("{}:{}\n", keys.access, keys.secret.as_str()));
        f.write_all(line.as_bytes())?;
    }
    let stderr = root.join("serve.log");
    let exe = std::env::current_exe().context("finding the dare binary")?;
    let mut child = scrub(Command::new(exe))
        .arg("--store")
        .arg(&store)
        .args(["serve", "--listen", "127.0.0.1:0", "--credentials"])
        .arg(&cred)
        .arg("--allow-ssec-over-http")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr)?)
        .spawn()
        .context("starting dare serve")?;
    let stdout = child.stdout.take().context("dare serve's stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let mut server = OwnServer {
        child,
        url: String::new(),
        stderr,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let why = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(url) => {
                server.url = url;
                return Ok((server, keys, kms_id));
            }
            Err(_) if Instant::now() > deadline => {
                break "did not say `listening on URL` within 60 s".to_owned();
            }
            Err(_) => {
                if let Ok(Some(st)) = server.child.try_wait() {
                    break format!("exited ({st}) before listening");
                }
            }
        }
    };
    let log = std::fs::read_to_string(&server.stderr).unwrap_or_default();
    let log: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    bail!("dare serve {why}: {}", log.join(" / "))
}

/// Deterministic, incompressible-looking bytes (xorshift64*), and their SHA-256.
fn buffer(size: u64, seed: u64) -> (Vec<u8>, String) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(size as usize);
    while (v.len() as u64) < size {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(size as usize);
    let h = hex(&sha2::Sha256::digest(&v));
    (v, h)
}

/// One pass of `n` requests over the clients, each worker taking the next request number.
fn pass(
    clients: &[Client],
    n: u64,
    f: &(dyn Fn(&Client, u64) -> Result<()> + Sync),
) -> Result<Pass> {
    let next = AtomicU64::new(0);
    let start = Instant::now();
    let results: Vec<Result<Vec<f64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = clients
            .iter()
            .map(|c| {
                let next = &next;
                s.spawn(move || {
                    let mut lat = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(lat);
                        }
                        let t = Instant::now();
                        f(c, i)?;
                        lat.push(t.elapsed().as_secs_f64());
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| bail!("a worker thread panicked"))
            })
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let mut latencies = Vec::with_capacity(n as usize);
    for r in results {
        latencies.extend(r?);
    }
    Ok(Pass {
        requests: n,
        secs,
        latencies,
    })
}

/// Checks the arguments; every error is one line a user can act on.
fn sizes_of(a: &S3Args) -> Result<Vec<u64>> {
    let spec = a
        .sizes
        .as_deref()
        .unwrap_or(if a.quick { QUICK_SIZES } else { DEFAULT_SIZES });
    let mut sizes = Vec::new();
    for part in spec.split(',') {
        let size = parse_bytes(part).with_context(|| format!("--sizes {spec:?}"))?;
        if size == 0 || size > MAX_SIZE {
            bail!("--sizes {spec:?}: {part:?} must be from 1 byte to 256M");
        }
        if sizes.contains(&size) {
            bail!("--sizes {spec:?}: {part:?} is given twice");
        }
        sizes.push(size);
    }
    Ok(sizes)
}

/// Runs the benchmark and returns every figure (no printing, no files).
pub fn run_bench(a: &S3Args) -> Result<Report> {
    let sizes = sizes_of(a)?;
    let reps = a.reps.unwrap_or(if a.quick { 2 } else { 3 });
    if reps == 0 || reps > 1000 {
        bail!("--reps must be from 1 to 1000");
    }
    if a.concurrency == 0 || a.concurrency > 1024 {
        bail!("--concurrency must be from 1 to 1024");
    }
    if a.requests == Some(0) {
        bail!("--requests must be at least 1");
    }
    for (flag, p) in [("--json", &a.json), ("--plot", &a.plot)] {
        if let Some(p) = p {
            let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
            if parent.is_some_and(|d| !d.is_dir()) {
                bail!("{flag} {}: its directory does not exist", p.display());
            }
        }
    }
    let started = Instant::now();
    let mut scratch = None;
    let mut server = None;
    let (endpoint, keys, plain, kms) = match &a.endpoint {
        Some(url) => {
            if !url.starts_with("http://") {
                bail!(
                    "--endpoint {url}: only plain http:// endpoints are supported (the load \
                     generator carries no TLS client)"
                );
            }
            let keys = Keys::from_file(a.credentials.as_deref().context("--credentials")?)?;
            let plain = a.plain_bucket.clone().context("--plain-bucket")?;
            (url.clone(), keys, plain, a.kms_key.clone())
        }
        None => {
            let base = a.dir.clone().unwrap_or_else(|| PathBuf::from("."));
            let s = crate::bench_overhead::scratch::Scratch::create(&base)?;
            let (srv, keys, kms) = start_own_server(s.path())?;
            let url = srv.url.clone();
            scratch = Some(s);
            server = Some(srv);
            (url, keys, PLAIN_BUCKET.to_owned(), Some(kms))
        }
    };
    let outcome = measure(a, &sizes, reps, &endpoint, &keys, &plain, kms);
    let clean = server.map(OwnServer::stop);
    if let Some(s) = scratch {
        s.close()?;
    }
    let (sizes, series) = outcome?;
    Ok(Report {
        endpoint,
        own_server: a.endpoint.is_none(),
        server_clean_shutdown: clean,
        concurrency: a.concurrency,
        reps,
        cpu: crate::cpuinfo::cpu_model(),
        logical_cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        sizes,
        series,
        elapsed: started.elapsed(),
        quick: a.quick,
    })
}

type Passes = std::collections::HashMap<(u64, Op, usize), Vec<Pass>>;

fn measure(
    a: &S3Args,
    sizes: &[u64],
    reps: u32,
    endpoint: &str,
    keys: &Keys,
    plain: &str,
    kms: Option<String>,
) -> Result<(Vec<SizeReport>, Vec<Series>)> {
    let clients: Vec<Client> = (0..a.concurrency)
        .map(|_| Client::new(endpoint, keys))
        .collect();
    let c0 = &clients[0];
    let mut targets = vec![Target {
        series: Series::Plain,
        bucket: plain.to_owned(),
        sse: Sse::Bucket,
    }];
    for (series, bucket) in [
        (Series::SseS3, "bench-sse-s3"),
        (Series::SseC, "bench-sse-c"),
        (Series::SseKms, "bench-sse-kms"),
    ] {
        let sse = match series {
            Series::SseS3 => Sse::Bucket,
            Series::SseC => {
                let mut k = [0u8; 32];
                getrandom::fill(&mut k).map_err(|e| anyhow::anyhow!("random customer key: {e}"))?;
                Sse::customer(&k)
            }
            _ => match &kms {
                Some(k) => Sse::Kms(k.clone()),
                None => continue,
            },
        };
        c0.create_bucket(bucket)?;
        if let Sse::Kms(key) = &sse {
            // dare encrypts every object as its bucket says: an SSE-KMS bucket, and the
            // requests name its key too (as S3 clients do).
            c0.put_bucket_encryption_kms(bucket, key)?;
        }
        targets.push(Target {
            series,
            bucket: bucket.to_owned(),
            sse,
        });
    }
    let progress = progress_bar(a, sizes, reps, targets.len());
    let mut passes: Passes = Default::default();
    for rep in 0..reps {
        for (si, &size) in sizes.iter().enumerate() {
            let n = a
                .requests
                .unwrap_or_else(|| default_requests(size, a.quick));
            let (data, sha) = buffer(size, size ^ u64::from(rep));
            let mut order: Vec<usize> = (0..targets.len()).collect();
            order.rotate_left((rep as usize + si) % targets.len());
            progress.set_message(format!("rep {}/{reps}, {}", rep + 1, human_size(size)));
            for op in [Op::Put, Op::Get] {
                for &ti in &order {
                    let t = &targets[ti];
                    let name = |i: u64| format!("/{}/s{size}/o{i}", t.bucket);
                    let p = match op {
                        Op::Put => pass(&clients, n, &|c, i| c.put(&name(i), &data, &sha, &t.sse))?,
                        Op::Get => pass(&clients, n, &|c, i| {
                            // The first object of every pass is compared byte for byte; the
                            // others are counted.
                            let (len, body) = c.get(&name(i), &t.sse, i == 0)?;
                            if len != size || body.is_some_and(|b| b != data) {
                                bail!("GET {}: not the object PUT ({len} bytes)", name(i));
                            }
                            Ok(())
                        })?,
                    };
                    progress.inc(n);
                    passes.entry((size, op, ti)).or_default().push(p);
                }
            }
        }
    }
    progress.finish_and_clear();
    let series: Vec<Series> = targets.iter().map(|t| t.series).collect();
    let reports = sizes
        .iter()
        .map(|&size| SizeReport {
            size,
            ops: [Op::Put, Op::Get]
                .into_iter()
                .map(|op| {
                    let plain = &passes[&(size, op, 0)];
                    OpStats {
                        op,
                        series: (0..targets.len())
                            .map(|ti| {
                                stats(targets[ti].series, size, &passes[&(size, op, ti)], plain)
                            })
                            .collect(),
                    }
                })
                .collect(),
        })
        .collect();
    Ok((reports, series))
}

fn stats(series: Series, size: u64, passes: &[Pass], plain: &[Pass]) -> SeriesStats {
    let tps_of = |p: &Pass| p.requests as f64 / p.secs;
    let tps = Summary::of(passes.iter().map(tps_of).collect());
    let mb = Summary::of(
        passes
            .iter()
            .map(|p| (p.requests * size) as f64 / p.secs / 1e6)
            .collect(),
    );
    let mut lat: Vec<f64> = passes.iter().flat_map(|p| p.latencies.clone()).collect();
    lat.sort_by(f64::total_cmp);
    let overhead_pct = (series != Series::Plain).then(|| {
        let plain_tps = Summary::of(plain.iter().map(tps_of).collect());
        let pairs = Summary::of(
            passes
                .iter()
                .zip(plain)
                .map(|(s, p)| (1.0 - tps_of(s) / tps_of(p)) * 100.0)
                .collect(),
        );
        Summary {
            median: (1.0 - tps.median / plain_tps.median) * 100.0,
            min: pairs.min,
            max: pairs.max,
        }
    });
    SeriesStats {
        series,
        requests_per_rep: passes.first().map_or(0, |p| p.requests),
        tps,
        mb_per_sec: mb,
        p50_ms: percentile(&lat, 0.5) * 1e3,
        p99_ms: percentile(&lat, 0.99) * 1e3,
        overhead_pct,
    }
}

fn progress_bar(a: &S3Args, sizes: &[u64], reps: u32, series: usize) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let per_rep: u64 = sizes
        .iter()
        .map(|&s| 2 * series as u64 * a.requests.unwrap_or_else(|| default_requests(s, a.quick)))
        .sum();
    let pb = indicatif::ProgressBar::new(per_rep * u64::from(reps));
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:32} {pos}/{len} requests  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

impl Report {
    /// Sizes and request types where the SSE-S3 series made less than `ratio` of the
    /// plaintext requests per second.
    pub fn below_target(&self, ratio: f64) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.sizes {
            for op in [Op::Put, Op::Get] {
                if let (Some(p), Some(e)) = (s.get(op, Series::Plain), s.get(op, Series::SseS3)) {
                    let r = e.tps.median / p.tps.median;
                    if r < ratio {
                        out.push(format!(
                            "{} {} ({:.1}%)",
                            human_size(s.size),
                            op.label(),
                            r * 100.0
                        ));
                    }
                }
            }
        }
        out
    }

    /// The aligned human table.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "dare bench s3 — {} ({}) — {} connections, keep-alive, SigV4 — {} rep(s){}",
            self.endpoint,
            if self.own_server {
                "own dare serve on a scratch store"
            } else {
                "--endpoint"
            },
            self.concurrency,
            self.reps,
            if self.quick { " — --quick" } else { "" }
        );
        let _ = writeln!(
            t,
            "cpu: {} ({} logical; client and server share it)",
            self.cpu, self.logical_cpus
        );
        let _ = writeln!(
            t,
            "series interleaved (order rotated per rep and size); median [min–max] over reps; MB = 10^6 bytes; \
             overhead = (1 − series/plaintext) × 100 on requests/s [min–max of per-rep pairs]"
        );
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "{:<8} {:<4} {:<17} {:>9} {:>19} {:>9} {:>9} {:>9} {:>24}",
            "size",
            "op",
            "series",
            "req/s",
            "[min–max]",
            "MB/s",
            "p50 ms",
            "p99 ms",
            "overhead [per rep]"
        );
        for s in &self.sizes {
            let mut first = true;
            for o in &s.ops {
                let mut first_op = true;
                for st in &o.series {
                    let size = if first {
                        human_size(s.size)
                    } else {
                        String::new()
                    };
                    let op = if first_op { o.op.label() } else { "" };
                    first = false;
                    first_op = false;
                    let ovh = st.overhead_pct.map_or(String::new(), |o| {
                        format!("{:+.1}% [{:+.1}–{:+.1}]", o.median, o.min, o.max)
                    });
                    let _ = writeln!(
                        t,
                        "{:<8} {:<4} {:<17} {:>9} {:>19} {:>9} {:>9} {:>9} {:>24}",
                        size,
                        op,
                        st.series.label(),
                        num(st.tps.median),
                        format!("[{}–{}]", num(st.tps.min), num(st.tps.max)),
                        num(st.mb_per_sec.median),
                        num(st.p50_ms),
                        num(st.p99_ms),
                        ovh
                    );
                }
            }
        }
        let _ = writeln!(t);
        let below = self.below_target(0.98);
        let _ = if below.is_empty() {
            writeln!(
                t,
                "target (SSE-S3 ≥ 98% of plaintext requests/s, PUT and GET): met at every size"
            )
        } else {
            writeln!(
                t,
                "target (SSE-S3 ≥ 98% of plaintext requests/s, PUT and GET): missed at {}",
                below.join(", ")
            )
        };
        if let Some(clean) = self.server_clean_shutdown {
            let _ = writeln!(
                t,
                "server stopped with SIGTERM: {}",
                if clean { "exit 0" } else { "NOT clean" }
            );
        }
        let _ = writeln!(t, "elapsed {:.1} s", self.elapsed.as_secs_f64());
        t
    }

    /// Every figure, the machine and the options.
    pub fn to_json(&self) -> Value {
        let sizes: Vec<Value> = self
            .sizes
            .iter()
            .map(|s| {
                let ops: serde_json::Map<String, Value> = s
                    .ops
                    .iter()
                    .map(|o| {
                        let series: serde_json::Map<String, Value> = o
                            .series
                            .iter()
                            .map(|st| {
                                (
                                    st.series.key().to_owned(),
                                    json!({
                                        "label": st.series.label(),
                                        "requests_per_rep": st.requests_per_rep,
                                        "requests_per_sec": st.tps.to_json(),
                                        "mb_per_sec": st.mb_per_sec.to_json(),
                                        "latency_ms": {"p50": st.p50_ms, "p99": st.p99_ms},
                                        "overhead_pct": st.overhead_pct.map(Summary::to_json),
                                    }),
                                )
                            })
                            .collect();
                        (o.op.key().to_owned(), Value::Object(series))
                    })
                    .collect();
                json!({"size": s.size, "size_label": human_size(s.size), "ops": ops})
            })
            .collect();
        json!({
            "benchmark": "dare bench s3",
            "version": env!("CARGO_PKG_VERSION"),
            "cpu": self.cpu,
            "logical_cpus": self.logical_cpus,
            "endpoint": self.endpoint,
            "own_server": self.own_server,
            "server_clean_shutdown": self.server_clean_shutdown,
            "options": {
                "concurrency": self.concurrency,
                "reps": self.reps,
                "quick": self.quick,
                "series": self.series.iter().map(|s| s.key()).collect::<Vec<_>>(),
                "interleaving": "per pass: within each rep and size every series runs its PUT pass, then its GET pass, in an order rotated per rep and size",
                "signing": "SigV4 (aws-sigv4), payload SHA-256 in x-amz-content-sha256",
            },
            "target": {
                "description": "SSE-S3 >= 98% of plaintext requests/s for PUT and GET at every size",
                "missed": self.below_target(0.98),
            },
            "elapsed_s": self.elapsed.as_secs_f64(),
            "sizes": sizes,
        })
    }
}

/// `dare bench s3`: runs, prints the table, writes `--json` and `--plot`.
pub fn run(a: S3Args) -> Result<()> {
    let report = run_bench(&a)?;
    let mut o = crate::out::stdout().lock();
    write!(o, "{}", report.table())?;
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&report.to_json())?;
        std::fs::write(p, text + "\n").with_context(|| format!("writing {}", p.display()))?;
        writeln!(o, "JSON written to {}", p.display())?;
    }
    if let Some(p) = &a.plot {
        plot::draw(&report, p)?;
        writeln!(o, "plot written to {}", p.display())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(requests: u64, secs: f64) -> Pass {
        Pass {
            requests,
            secs,
            latencies: vec![secs / requests as f64; requests as usize],
        }
    }

    #[test]
    fn overhead_is_on_requests_per_second_per_rep_pair() {
        let plain = [p(100, 1.0), p(100, 2.0)];
        let enc = [p(100, 1.25), p(100, 2.0)];
        let s = stats(Series::SseS3, 4096, &enc, &plain);
        let o = s.overhead_pct.unwrap();
        // Per rep: 1 − 80/100 = 20%, 1 − 50/50 = 0%.
        assert!((o.max - 20.0).abs() < 1e-9 && o.min.abs() < 1e-9, "{o:?}");
        // Of the medians: 1 − 65/75.
        assert!(
            (o.median - (1.0 - 65.0 / 75.0) * 100.0).abs() < 1e-9,
            "{o:?}"
        );
        assert!((s.tps.median - 65.0).abs() < 1e-9);
        assert!((s.mb_per_sec.max - 80.0 * 4096.0 / 1e6).abs() < 1e-9);
        assert!(
            stats(Series::Plain, 4096, &plain, &plain)
                .overhead_pct
                .is_none()
        );
    }

    #[test]
    fn buffers_are_deterministic_and_hashed() {
        let (a, ha) = buffer(5000, 3);
        let (b, hb) = buffer(5000, 3);
        assert_eq!((a.len(), &a, &ha), (5000, &b, &hb));
        assert_eq!(ha, hex(&sha2::Sha256::digest(&a)));
        assert_ne!(buffer(5000, 4).0, a);
    }
}
