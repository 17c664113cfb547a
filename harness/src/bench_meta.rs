//! `dare bench meta`: what the metadata database costs a request, embedded SQLite against a
//! PostgreSQL server, in the same run so the ratio is taken under the same machine load.
//!
//! For each backend a scratch store is made with the control plane (`Dare::create_parts`, a
//! random in-memory root key, data files in a scratch directory) and one encrypted bucket is
//! filled with `--objects` rows holding real envelopes. Then, per rep:
//!
//! - **lookup**: `Dare::head` of a random object — one read transaction, the object-table
//!   lookup every GET pays before it touches a data file (`--ops` requests, latency of each);
//! - **commit**: one object row inserted in its own write transaction — the durable
//!   metadata commit every PUT pays after its data file is synced (`--ops` commits);
//! - **rewrap**: after a key rotation, `Dare::rewrap` of the whole bucket — envelopes moved
//!   to the new rotation key per second (1000 per transaction).
//!
//! Reps alternate between backends. Figures are medians over reps; latencies are the median
//! and 99th percentile of every request of every rep.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use dare::{Dare, Options};
use dare_engine::{DiskOptions, DiskVolume, Volume};
use dare_envelope::KeyProvider;
use dare_keys::{CacheMode, HierarchyProvider, RootKeyFile, RootOfTrust, Secret32};
use dare_metadata::{
    By, Metadata, ObjectRecord, PostgresMetadata, PostgresOptions, SqliteMetadata, SqliteOptions,
    read_with, write_with,
};
use serde_json::{Value, json};

use crate::out::stdout;

#[derive(Debug, Args)]
pub struct MetaArgs {
    /// PostgreSQL database to measure beside SQLite: an EMPTY database the benchmark may fill
    /// (`createdb dare_bench`), e.g. postgres://dare:PASSWORD@127.0.0.1:5432/dare_bench.
    /// Prefer the environment variable: a password on a command line shows in `ps`.
    #[arg(
        long,
        env = "DARE_BENCH_POSTGRES_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub postgres: Option<dare::PostgresUrl>,
    /// Object rows in the bucket (the lookups pick among them; the rewrap moves them all).
    #[arg(long, default_value_t = 20_000)]
    pub objects: u64,
    /// Lookups and commits measured per rep and backend.
    #[arg(long, default_value_t = 2_000)]
    pub ops: u64,
    /// Repetitions (alternating backends).
    #[arg(long, default_value_t = 3)]
    pub reps: u32,
    /// Directory for the SQLite database and the scratch data files.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// One backend under test.
struct Subject {
    name: &'static str,
    /// Where it is, without password.
    at: String,
    d: Dare,
    bucket_id: u64,
    /// Rows inserted by the commit measurements so far (their names must be fresh).
    next_commit: u64,
    lookup_us: Vec<f64>,
    lookups_per_s: Vec<f64>,
    commit_us: Vec<f64>,
    commits_per_s: Vec<f64>,
    rewraps_per_s: Vec<f64>,
}

const BUCKET: &str = "bench-meta";

fn random_root() -> Result<Arc<dyn RootOfTrust>> {
    let key = Secret32::generate("bench root key").context("random root key")?;
    Ok(Arc::new(RootKeyFile::from_secret(key)))
}

impl Subject {
    fn new(name: &'static str, meta: Arc<dyn Metadata>, data_dir: &Path) -> Result<Subject> {
        let at = meta.describe();
        let volume: Arc<dyn Volume> = Arc::new(
            DiskVolume::new(data_dir, DiskOptions::default())
                .with_context(|| format!("scratch data directory {}", data_dir.display()))?,
        );
        let exists = read_with(&*meta, |tx| tx.store())?.is_some();
        if exists {
            bail!(
                "{at} already holds a dare store: give the benchmark an empty database \
                 (`createdb dare_bench_2`), it fills it with scratch rows"
            );
        }
        let d = Dare::create_parts(meta, volume, random_root()?, 16, &Options::default())?;
        d.create_bucket(BUCKET, dare::DEFAULT_NAMESPACE, Some(true))?;
        let b = read_with(&**d.metadata(), |tx| tx.bucket(By::Name(BUCKET)))?
            .context("the bucket just created is missing")?;
        Ok(Subject {
            name,
            at,
            d,
            bucket_id: b.id,
            next_commit: 0,
            lookup_us: Vec::new(),
            lookups_per_s: Vec::new(),
            commit_us: Vec::new(),
            commits_per_s: Vec::new(),
            rewraps_per_s: Vec::new(),
        })
    }

    /// A row with a real envelope, as a put of a small object makes it.
    fn row(&self, provider: &HierarchyProvider, name: String, n: u64) -> Result<ObjectRecord> {
        let (_, env) = provider.new_data_key()?;
        let mut object_id = [0u8; 16];
        object_id[..8].copy_from_slice(&n.to_le_bytes());
        object_id[8] = 0xbe;
        Ok(ObjectRecord {
            bucket_id: self.bucket_id,
            name,
            object_id,
            size: 4096,
            created_ms: 0,
            etag: "0".repeat(32),
            format: 2,
            suite: 1,
            chunk_shift: 16,
            nonce_prefix: [1; 7],
            envelope_kind: Some(env.kind.to_byte()),
            envelope: Some(env.bytes),
            meta: vec![0; 18],
            row_version: 1,
        })
    }

    fn provider(&self) -> Result<HierarchyProvider> {
        let b = read_with(&**self.d.metadata(), |tx| tx.bucket(By::Id(self.bucket_id)))?
            .context("bucket row")?;
        Ok(HierarchyProvider::new(
            self.d.keys().clone(),
            &b,
            CacheMode::On,
        )?)
    }

    fn fill(&mut self, objects: u64) -> Result<()> {
        let provider = self.provider()?;
        let mut n = 0;
        while n < objects {
            let batch: Vec<ObjectRecord> = (n..objects.min(n + 1000))
                .map(|i| self.row(&provider, object_name(i), i))
                .collect::<Result<_>>()?;
            n += batch.len() as u64;
            write_with(
                &**self.d.metadata(),
                |e: &dare_metadata::MetaError| e.is_retryable(),
                |tx| {
                    for r in &batch {
                        tx.put_object(r)?;
                    }
                    Ok(())
                },
            )?;
        }
        Ok(())
    }

    fn measure(&mut self, objects: u64, ops: u64, seed: &mut u64, all: &mut Lat) -> Result<()> {
        // Lookups.
        let t0 = Instant::now();
        let mut lat = Vec::with_capacity(ops as usize);
        for _ in 0..ops {
            let i = splitmix(seed) % objects;
            let t = Instant::now();
            let info = self.d.head(BUCKET, &object_name(i))?;
            lat.push(t.elapsed());
            std::hint::black_box(info);
        }
        let el = t0.elapsed();
        self.lookups_per_s.push(ops as f64 / el.as_secs_f64());
        self.lookup_us.push(median_us(&mut lat));
        all.lookup.extend(lat);

        // Commits, one row per transaction.
        let provider = self.provider()?;
        let rows: Vec<ObjectRecord> = (0..ops)
            .map(|k| {
                let n = self.next_commit + k;
                self.row(&provider, format!("commits/{n:010}"), 1 << 40 | n)
            })
            .collect::<Result<_>>()?;
        self.next_commit += ops;
        let mut lat = Vec::with_capacity(ops as usize);
        let t0 = Instant::now();
        for r in &rows {
            let t = Instant::now();
            write_with(
                &**self.d.metadata(),
                |e: &dare_metadata::MetaError| e.is_retryable(),
                |tx| tx.put_object(r).map(|_| ()),
            )?;
            lat.push(t.elapsed());
        }
        let el = t0.elapsed();
        self.commits_per_s.push(ops as f64 / el.as_secs_f64());
        self.commit_us.push(median_us(&mut lat));
        all.commit.extend(lat);

        // Rewrap after a rotation.
        let keys = self.d.keys();
        let id = keys.start_rotation()?;
        keys.run_rotation(id, &Default::default())?;
        let t0 = Instant::now();
        let r = self.d.rewrap(BUCKET, &mut |_| {})?;
        let el = t0.elapsed();
        self.rewraps_per_s
            .push(r.rewrapped as f64 / el.as_secs_f64());
        Ok(())
    }
}

/// Every latency of one backend, over all reps.
#[derive(Default)]
struct Lat {
    lookup: Vec<Duration>,
    commit: Vec<Duration>,
}

fn object_name(i: u64) -> String {
    format!("photos/2026/{i:08}.jpg")
}

fn splitmix(s: &mut u64) -> u64 {
    *s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *s;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn median_us(v: &mut [Duration]) -> f64 {
    pct_us(v, 0.5)
}

fn pct_us(v: &mut [Duration], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i].as_secs_f64() * 1e6
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

/// `dare bench meta`.
pub fn run(a: MetaArgs) -> Result<()> {
    if a.objects == 0 || a.ops == 0 || a.reps == 0 {
        bail!("--objects, --ops and --reps must be at least 1");
    }
    let scratch = tempfile::Builder::new()
        .prefix("dare-bench-meta-")
        .tempdir_in(&a.dir)
        .with_context(|| format!("cannot create a scratch directory in {}", a.dir.display()))?;
    let mut subjects = Vec::new();
    let sqlite = SqliteMetadata::create(&scratch.path().join("dare.db"), SqliteOptions::default())?;
    subjects.push(Subject::new(
        "sqlite",
        Arc::new(sqlite),
        &scratch.path().join("objects-sqlite"),
    )?);
    if let Some(url) = &a.postgres {
        let pg = PostgresMetadata::open(url.expose(), PostgresOptions::default())?;
        subjects.push(Subject::new(
            "postgres",
            Arc::new(pg),
            &scratch.path().join("objects-postgres"),
        )?);
    }
    for s in &mut subjects {
        s.fill(a.objects)
            .with_context(|| format!("filling {} with {} rows", s.at, a.objects))?;
    }
    let mut lat: Vec<Lat> = subjects.iter().map(|_| Lat::default()).collect();
    let mut seed = 0x5eed_u64;
    for _ in 0..a.reps {
        for (s, l) in subjects.iter_mut().zip(lat.iter_mut()) {
            s.measure(a.objects, a.ops, &mut seed, l)?;
        }
    }
    let report = report_json(&a, &subjects, &mut lat);
    if a.json {
        crate::commands::print_json(&report)?;
    } else {
        print_table(&a, &report)?;
    }
    scratch.close().context("removing the scratch directory")?;
    Ok(())
}

fn report_json(a: &MetaArgs, subjects: &[Subject], lat: &mut [Lat]) -> Value {
    let mut backends = serde_json::Map::new();
    for (s, l) in subjects.iter().zip(lat.iter_mut()) {
        backends.insert(
            s.name.into(),
            json!({
                "at": s.at,
                "lookup_us_median": pct_us(&mut l.lookup, 0.5),
                "lookup_us_p99": pct_us(&mut l.lookup, 0.99),
                "lookups_per_s": median(&s.lookups_per_s),
                "commit_us_median": pct_us(&mut l.commit, 0.5),
                "commit_us_p99": pct_us(&mut l.commit, 0.99),
                "commits_per_s": median(&s.commits_per_s),
                "rewraps_per_s": median(&s.rewraps_per_s),
                "per_rep": {
                    "lookups_per_s": s.lookups_per_s,
                    "commits_per_s": s.commits_per_s,
                    "rewraps_per_s": s.rewraps_per_s,
                },
            }),
        );
    }
    json!({
        "benchmark": "meta",
        "objects": a.objects,
        "ops": a.ops,
        "reps": a.reps,
        "cpu": crate::cpuinfo::cpu_model(),
        "backends": backends,
    })
}

fn print_table(a: &MetaArgs, r: &Value) -> Result<()> {
    use std::io::Write;
    let mut o = stdout();
    writeln!(
        o,
        "metadata backends: {} object rows, {} lookups and {} commits per rep, {} reps \
         (medians; p99 over all requests)",
        a.objects, a.ops, a.ops, a.reps
    )?;
    let b = &r["backends"];
    let pg = b.get("postgres");
    writeln!(
        o,
        "{:<34} {:>14} {:>14} {:>10}",
        "",
        "sqlite",
        if pg.is_some() { "postgres" } else { "" },
        if pg.is_some() { "pg/sqlite" } else { "" }
    )?;
    let rows: [(&str, &str); 7] = [
        ("GET metadata lookup, median µs", "lookup_us_median"),
        ("GET metadata lookup, p99 µs", "lookup_us_p99"),
        ("lookups/s (one per transaction)", "lookups_per_s"),
        ("commit of one row, median µs", "commit_us_median"),
        ("commit of one row, p99 µs", "commit_us_p99"),
        ("commits/s (one row each)", "commits_per_s"),
        ("rewraps/s (envelopes)", "rewraps_per_s"),
    ];
    for (label, key) in rows {
        let s = b["sqlite"][key].as_f64().unwrap_or(f64::NAN);
        match pg {
            Some(p) => {
                let p = p[key].as_f64().unwrap_or(f64::NAN);
                writeln!(o, "{label:<34} {s:>14.1} {p:>14.1} {:>9.2}x", p / s)?;
            }
            None => writeln!(o, "{label:<34} {s:>14.1}")?,
        }
    }
    if let Some(p) = pg {
        writeln!(o, "postgres: {}", p["at"].as_str().unwrap_or(""))?;
    } else {
        writeln!(
            o,
            "postgres: not measured (give --postgres URL or DARE_BENCH_POSTGRES_URL: an empty \
             database)"
        )?;
    }
    Ok(())
}
