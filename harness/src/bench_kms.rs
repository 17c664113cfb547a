//! `dare bench kms`: what the key management service costs per call, on one thread.
//!
//! A scratch store (SQLite in `--dir`, a random in-memory root key) gets one customer master
//! key. Per rep, `--ops` calls each of:
//!
//! - **create-datakey**: a 256-bit data key and its ciphertext under the CMK;
//! - **decrypt-datakey**: one of those ciphertexts back to the key;
//!
//! every call being what the service does for a client: one write transaction that reads the
//! CMK's state, reserves one encryption (create) or checks the version (decrypt), appends the
//! chained audit record, and commits durably before the key is released. Beside them, in the
//! same run, the same AES-256-GCM seal and open of 32 bytes without the service
//! ("crypto only"), so the report shows where the time goes.
//!
//! SSE-KMS buckets make no call per object (docs/KMS.md §4.4): `dare bench overhead` measures
//! them beside SSE-S3 buckets.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use dare::{Dare, Options};
use dare_engine::{DiskOptions, DiskVolume, Volume};
use dare_keys::{RootKeyFile, RootOfTrust, Secret32};
use dare_kms::ciphertext::{self, Purpose};
use dare_kms::{Context as KmsContext, KmsOrigin};
use dare_metadata::{Metadata, SqliteMetadata, SqliteOptions};
use serde_json::json;

use crate::out::stdout;

#[derive(Debug, Args)]
pub struct KmsArgs {
    /// Calls per operation per rep.
    #[arg(long, default_value_t = 2_000)]
    pub ops: u64,
    /// Repetitions (operations alternate within each).
    #[arg(long, default_value_t = 3)]
    pub reps: u32,
    /// Directory for the scratch store (removed afterwards).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Default)]
struct Series {
    per_s: Vec<f64>,
    lat_us: Vec<f64>,
}

impl Series {
    fn median_rate(&self) -> f64 {
        median(&self.per_s)
    }
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.lat_us.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return 0.0;
        }
        v[((v.len() - 1) as f64 * p).round() as usize]
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn time(series: &mut Series, ops: u64, mut f: impl FnMut(u64) -> Result<()>) -> Result<()> {
    let start = Instant::now();
    for i in 0..ops {
        let t = Instant::now();
        f(i)?;
        series.lat_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    series
        .per_s
        .push(ops as f64 / start.elapsed().as_secs_f64());
    Ok(())
}

pub fn run(a: KmsArgs) -> Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix(".dare-bench-kms-")
        .tempdir_in(&a.dir)
        .with_context(|| format!("creating a scratch directory in {}", a.dir.display()))?;
    let meta: Arc<dyn Metadata> = Arc::new(SqliteMetadata::create(
        &scratch.path().join("dare.db"),
        SqliteOptions::default(),
    )?);
    let volume: Arc<dyn Volume> = Arc::new(DiskVolume::new(
        &scratch.path().join("objects"),
        DiskOptions::default(),
    )?);
    let root: Arc<dyn RootOfTrust> =
        Arc::new(RootKeyFile::from_secret(Secret32::generate("root")?));
    let d = Dare::create_parts(meta, volume, root, 16, &Options::default())?;
    let kms = d.kms().clone();
    kms.create_key("bench", "dare bench kms", KmsOrigin::Generated)?;
    let ctx = KmsContext::new();
    let material = Secret32::generate("bench material")?;
    let store_id = d.store_id();
    let key_id = kms.describe("bench")?.key_id;

    let (mut create, mut decrypt, mut seal, mut open) = Default::default();
    let mut cts: Vec<Vec<u8>> = Vec::with_capacity(a.ops as usize);
    let mut raw: Vec<Vec<u8>> = Vec::with_capacity(a.ops as usize);
    for _ in 0..a.reps {
        cts.clear();
        raw.clear();
        time(&mut create, a.ops, |_| {
            cts.push(kms.create_data_key("bench", 256, true, &ctx)?.ciphertext);
            Ok(())
        })?;
        time(&mut decrypt, a.ops, |i| {
            kms.decrypt_data_key(&cts[i as usize], &ctx)?;
            Ok(())
        })?;
        time(&mut seal, a.ops, |_| {
            raw.push(ciphertext::seal(
                &store_id,
                Purpose::DataKey,
                &key_id,
                1,
                &material,
                &[7u8; 32],
                &ctx,
            )?);
            Ok(())
        })?;
        time(&mut open, a.ops, |i| {
            ciphertext::open(&store_id, &raw[i as usize], &material, &ctx)?;
            Ok(())
        })?;
    }
    let rows: [(&str, &Series); 4] = [
        ("create-datakey", &create),
        ("decrypt-datakey", &decrypt),
        ("crypto only: seal 32 B", &seal),
        ("crypto only: open 32 B", &open),
    ];
    let mut out = stdout();
    if a.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(name, s)| {
                json!({
                    "op": name,
                    "per_second_median": s.median_rate(),
                    "per_second_reps": s.per_s,
                    "latency_us_p50": s.pct(0.5),
                    "latency_us_p99": s.pct(0.99),
                })
            })
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({
                "benchmark": "kms",
                "metadata": "sqlite",
                "ops_per_rep": a.ops,
                "reps": a.reps,
                "results": v,
            }))?
        )?;
    } else {
        writeln!(
            out,
            "dare bench kms: {} calls x {} reps, one thread, SQLite metadata in {}",
            a.ops,
            a.reps,
            a.dir.display()
        )?;
        writeln!(
            out,
            "{:<24} {:>12} {:>10} {:>10}",
            "operation", "calls/s", "p50 µs", "p99 µs"
        )?;
        for (name, s) in rows {
            writeln!(
                out,
                "{:<24} {:>12.0} {:>10.1} {:>10.1}",
                name,
                s.median_rate(),
                s.pct(0.5),
                s.pct(0.99)
            )?;
        }
        writeln!(
            out,
            "each service call is one durable write transaction (state check, encryption \
             count, audit record): {:.0}x the crypto alone",
            create.pct(0.5) / seal.pct(0.5).max(0.001)
        )?;
    }
    Ok(())
}
