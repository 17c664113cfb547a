//! Statistics over the repetitions, the human table and the JSON document.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::fio::Drive;
use super::workload::{CHUNK_SIZE, Checks, Measured, Op, Pass, RANGE_MAX, RANGE_MIN, Series};
use super::{OverheadArgs, Plan, human_size};

/// Median and spread of one figure over the repetitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    pub(crate) fn of(mut v: Vec<f64>) -> Summary {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Summary {
            median,
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }
    pub(crate) fn to_json(self) -> Value {
        json!({"median": self.median, "min": self.min, "max": self.max})
    }
}

/// One series' figures for one request type at one size.
#[derive(Debug, Clone)]
pub struct SeriesStats {
    pub series: Series,
    /// Requests and plaintext bytes per repetition.
    pub ops: u64,
    pub bytes: u64,
    pub ops_per_sec: Summary,
    /// 10^6 bytes per second.
    pub mb_per_sec: Summary,
    /// User + system CPU seconds per 10^9 bytes, every thread of the process (the requesting
    /// thread and the others).
    pub cpu_s_per_gb: Summary,
    /// Mean CPU per request of the thread that made it (its own clock), microseconds.
    pub thread_cpu_us_per_request: f64,
    /// Mean CPU per request of the process's other threads while it ran, microseconds.
    pub other_cpu_us_per_request: f64,
    /// Median and 99th-percentile request latency over all repetitions, microseconds.
    pub lat_p50_us: f64,
    pub lat_p99_us: f64,
    /// `(1 − this / plaintext) × 100` on throughput: of the medians, with min–max over the
    /// per-repetition pairs. None for the plaintext series itself.
    pub overhead_pct: Option<Summary>,
    /// Median over requests of (this request's latency − the same plaintext request's), in
    /// microseconds: robust to the stalls a shared drive throws at single requests. None for
    /// the plaintext series.
    pub extra_us_per_request: Option<f64>,
    /// Extra CPU per request of the requesting thread against plaintext (user + system, from
    /// the thread's own CPU clock; mean over requests), microseconds.
    pub extra_thread_cpu_us_per_request: Option<f64>,
    /// Extra CPU per request of the process's other threads against plaintext (process CPU
    /// clock minus the requesting thread's; mean over requests), microseconds: the rayon
    /// pool (its idle spinning included), the crypto workers, pipeline I/O threads, io_uring workers.
    pub extra_other_cpu_us_per_request: Option<f64>,
    /// Share of the drive's fio figure reached (percent), where fio ran and reads were cold.
    pub drive_pct: Option<f64>,
}

/// One request type at one size.
#[derive(Debug, Clone)]
pub struct OpStats {
    pub op: Op,
    pub series: Vec<SeriesStats>,
}

impl OpStats {
    /// The figures of one series.
    pub fn get(&self, s: Series) -> Option<&SeriesStats> {
        self.series.iter().find(|x| x.series == s)
    }
}

/// One object size.
#[derive(Debug, Clone)]
pub struct SizeReport {
    pub size: u64,
    pub objects: u64,
    pub ranges: u64,
    pub ops: Vec<OpStats>,
}

impl SizeReport {
    pub fn op(&self, op: Op) -> Option<&OpStats> {
        self.ops.iter().find(|o| o.op == op)
    }
}

/// Everything a run measured, with the context needed to read it.
#[derive(Debug, Clone)]
pub struct Report {
    pub sizes: Vec<SizeReport>,
    pub cpu: String,
    pub machine: Value,
    pub backend: String,
    pub io: String,
    pub fs_type: String,
    pub batch_bytes: usize,
    pub dir: String,
    pub store: String,
    pub kept: bool,
    pub drive: Drive,
    pub checks: Checks,
    pub reps: u32,
    pub sync: bool,
    pub direct: bool,
    pub key_cache: bool,
    pub options: Value,
    pub elapsed: Duration,
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn series_stats(s: Series, passes: &[Pass], plain: Option<&[Pass]>) -> SeriesStats {
    let ops_per_sec = Summary::of(passes.iter().map(|p| p.ops as f64 / p.secs).collect());
    let mb_per_sec = Summary::of(
        passes
            .iter()
            .map(|p| p.bytes as f64 / p.secs / 1e6)
            .collect(),
    );
    let cpu_s_per_gb = Summary::of(
        passes
            .iter()
            .map(|p| (p.cpu_thread + p.cpu_other) / (p.bytes as f64 / 1e9))
            .collect(),
    );
    let ops_total = passes.iter().map(|p| p.ops).sum::<u64>().max(1) as f64;
    let per_request = |f: fn(&Pass) -> f64| passes.iter().map(f).sum::<f64>() / ops_total * 1e6;
    let thread_cpu_us_per_request = per_request(|p| p.cpu_thread);
    let other_cpu_us_per_request = per_request(|p| p.cpu_other);
    let mut lat: Vec<f64> = passes.iter().flat_map(|p| p.lat.iter().copied()).collect();
    lat.sort_by(f64::total_cmp);
    let overhead_pct = plain.filter(|_| s != Series::Plain).map(|pl| {
        let tp = |p: &Pass| p.bytes as f64 / p.secs;
        let paired = Summary::of(
            pl.iter()
                .zip(passes)
                .map(|(a, b)| (1.0 - tp(b) / tp(a)) * 100.0)
                .collect(),
        );
        let med_plain = Summary::of(pl.iter().map(tp).collect()).median;
        let med = Summary::of(passes.iter().map(tp).collect()).median;
        Summary {
            median: (1.0 - med / med_plain) * 100.0,
            ..paired
        }
    });
    let (extra_us_per_request, extra_thread_cpu_us_per_request, extra_other_cpu_us_per_request) =
        match plain {
            Some(pl) if s != Series::Plain => {
                let mut d: Vec<f64> = pl
                    .iter()
                    .zip(passes)
                    .flat_map(|(a, b)| a.lat.iter().zip(&b.lat).map(|(x, y)| (y - x) * 1e6))
                    .collect();
                d.sort_by(f64::total_cmp);
                // Both series make the same requests, so the difference of the sums over
                // the series' requests is the mean extra per request.
                let extra = |f: fn(&Pass) -> f64| {
                    (passes.iter().map(f).sum::<f64>() - pl.iter().map(f).sum::<f64>()) / ops_total
                        * 1e6
                };
                (
                    Some(percentile(&d, 0.5)),
                    Some(extra(|p| p.cpu_thread)),
                    Some(extra(|p| p.cpu_other)),
                )
            }
            _ => (None, None, None),
        };
    SeriesStats {
        series: s,
        extra_us_per_request,
        extra_thread_cpu_us_per_request,
        extra_other_cpu_us_per_request,
        thread_cpu_us_per_request,
        other_cpu_us_per_request,
        ops: passes.first().map_or(0, |p| p.ops),
        bytes: passes.first().map_or(0, |p| p.bytes),
        ops_per_sec,
        mb_per_sec,
        cpu_s_per_gb,
        lat_p50_us: percentile(&lat, 0.5) * 1e6,
        lat_p99_us: percentile(&lat, 0.99) * 1e6,
        overhead_pct,
        drive_pct: None,
    }
}

fn drive_pct(drive: &Drive, op: Op, st: &SeriesStats) -> Option<f64> {
    let pct = match op {
        Op::Put => st.mb_per_sec.median / (drive.job("seq_write")?.bw / 1e6),
        Op::Get => st.mb_per_sec.median / (drive.job("seq_read")?.bw / 1e6),
        Op::Range => st.ops_per_sec.median / drive.job("rand_read_4k")?.iops,
    };
    Some(pct * 100.0)
}

impl Report {
    pub(super) fn new(
        plan: &Plan,
        args: &OverheadArgs,
        m: Measured,
        drive: Drive,
        root: &Path,
        kept: bool,
        elapsed: Duration,
    ) -> Report {
        let sizes = m
            .sizes
            .iter()
            .map(|sm| SizeReport {
                size: sm.plan.size,
                objects: sm.plan.objects,
                ranges: sm.plan.ranges,
                ops: Op::ALL
                    .iter()
                    .map(|&op| {
                        let plain = sm.passes.get(&(op, Series::Plain)).map(Vec::as_slice);
                        OpStats {
                            op,
                            series: sm
                                .series
                                .iter()
                                .filter_map(|&s| {
                                    let passes = sm.passes.get(&(op, s))?;
                                    let mut st = series_stats(s, passes, plain);
                                    if plan.sync {
                                        st.drive_pct = drive_pct(&drive, op, &st);
                                    }
                                    Some(st)
                                })
                                .collect(),
                        }
                    })
                    .collect(),
            })
            .collect();
        let machine = crate::cpuinfo::report(
            dare::AeadBackend::from_name(&m.backend).unwrap_or_else(dare::AeadBackend::best),
            if m.io == dare::IoMode::Std.name() {
                dare::IoMode::Std
            } else {
                dare::IoMode::Uring
            },
        );
        let options = json!({
            "dir": plan.base.display().to_string(),
            "sizes": plan.sizes.iter().map(|s| s.size).collect::<Vec<_>>(),
            "bytes": args.bytes,
            "objects_per_pass": plan.sizes.iter().map(|s| s.objects).collect::<Vec<_>>(),
            "range_gets_per_pass": plan.sizes.iter().map(|s| s.ranges).collect::<Vec<_>>(),
            "range_bytes": {"min": RANGE_MIN, "max": RANGE_MAX},
            "reps": plan.reps,
            "sync": plan.sync,
            "direct": plan.direct,
            "reads": if plan.sync { "cold: object files dropped from the page cache before each GET pass" } else { "warm: page cache (--no-sync)" },
            "key_cache": if plan.key_cache { "on" } else { "off" },
            "cache_off_series": plan.cache_off_series,
            "seed": plan.seed,
            "quick": plan.quick,
            "fio": plan.fio,
            "keep": plan.keep,
            "chunk_size": CHUNK_SIZE,
            "batch_bytes": m.batch_bytes,
            "interleaving": "per request, series order rotated every request; passes repeated `reps` times",
        });
        Report {
            sizes,
            cpu: crate::cpuinfo::cpu_model(),
            machine,
            backend: m.backend,
            io: m.io,
            fs_type: m.fs_type,
            batch_bytes: m.batch_bytes,
            dir: plan.base.display().to_string(),
            store: root.display().to_string(),
            kept,
            drive,
            checks: m.checks,
            reps: plan.reps,
            sync: plan.sync,
            direct: plan.direct,
            key_cache: plan.key_cache,
            options,
            elapsed,
        }
    }

    /// Sizes (and request types) where the encrypted series reached less than `ratio` of the
    /// plaintext throughput, for PUT and GET.
    pub fn below_target(&self, ratio: f64) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.sizes {
            for op in [Op::Put, Op::Get] {
                let Some(o) = s.op(op) else { continue };
                if let (Some(p), Some(e)) = (o.get(Series::Plain), o.get(Series::Enc)) {
                    let r_mb = e.mb_per_sec.median / p.mb_per_sec.median;
                    if r_mb < ratio {
                        out.push(format!(
                            "{} {} ({:.1}%)",
                            human_size(s.size),
                            op.label(),
                            r_mb * 100.0
                        ));
                    }
                }
            }
        }
        out
    }

    /// The aligned human table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let cores = self.machine["logical_cpus"].as_u64().unwrap_or(0);
        let _ = writeln!(
            t,
            "dare bench overhead — {} ({}) — {}",
            self.dir,
            self.fs_type,
            if self.sync && self.direct {
                "O_DIRECT: PUTs acknowledged after fdatasync, GETs from the drive"
            } else if self.sync {
                "PUTs acknowledged after fdatasync, GETs from the drive (page cache dropped)"
            } else {
                "--no-sync: PUTs not synced, GETs from the page cache (memory-bound)"
            }
        );
        let _ = writeln!(
            t,
            "cpu: {} ({cores} logical)   AEAD: {}   I/O: {}   chunk {}   batch {}   key cache {}",
            self.cpu,
            self.backend,
            self.io,
            human_size(CHUNK_SIZE),
            human_size(self.batch_bytes as u64),
            if self.key_cache { "on" } else { "off" }
        );
        if self.drive.jobs.is_empty() {
            let _ = writeln!(t, "drive: {}", self.drive.note);
        } else {
            let f = |n: &str| self.drive.job(n);
            let _ = writeln!(
                t,
                "drive (fio {}, O_DIRECT): seq write {:.0} MB/s, seq read {:.0} MB/s, 4K random read {:.0} IOPS, 4K write+fdatasync {:.0} IOPS",
                self.drive.engine.unwrap_or("?"),
                f("seq_write").map_or(0.0, |j| j.bw / 1e6),
                f("seq_read").map_or(0.0, |j| j.bw / 1e6),
                f("rand_read_4k").map_or(0.0, |j| j.iops),
                f("sync_write_4k").map_or(0.0, |j| j.iops),
            );
        }
        let _ = writeln!(
            t,
            "{} rep(s), requests interleaved across series; median [min–max] over reps; MB = 10^6 bytes; \
             overhead = (1 − series/plaintext) × 100 on throughput [min–max of per-rep pairs]",
            self.reps
        );
        let _ = writeln!(
            t,
            "+µs/req = median over requests of (latency − the same plaintext request's latency)"
        );
        let _ = writeln!(
            t,
            "+thr CPU µs = extra user+sys CPU per request of the thread making it (its own clock, CLOCK_THREAD_CPUTIME_ID); \
             +oth CPU µs = extra CPU of the process's other threads meanwhile (process clock − thread clock: \
             crypto workers, rayon pool incl. idle spinning, pipeline I/O threads, io_uring workers); both means over requests; \
             CPU s/GB counts all threads"
        );
        let _ = writeln!(
            t,
            "drive% = PUT MB/s ÷ fio seq write, GET MB/s ÷ fio seq read, range GET obj/s ÷ fio 4K random-read IOPS"
        );
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "{:<8} {:<9} {:<24} {:>9} {:>9} {:>19} {:>9} {:>7} {:>22} {:>9} {:>11} {:>11}",
            "size",
            "op",
            "series",
            "obj/s",
            "MB/s",
            "[min–max MB/s]",
            "CPU s/GB",
            "drive%",
            "overhead [per rep]",
            "+µs/req",
            "+thr CPU µs",
            "+oth CPU µs"
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
                    let spread = format!("[{}–{}]", num(st.mb_per_sec.min), num(st.mb_per_sec.max));
                    let drive = st.drive_pct.map_or("-".into(), |p| format!("{p:.0}%"));
                    let ovh = st.overhead_pct.map_or(String::new(), |o| {
                        format!("{:+.1}% [{:+.1}–{:+.1}]", o.median, o.min, o.max)
                    });
                    let extra = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:+.1}"));
                    let _ = writeln!(
                        t,
                        "{:<8} {:<9} {:<24} {:>9} {:>9} {:>19} {:>9} {:>7} {:>22} {:>9} {:>11} {:>11}",
                        size,
                        op,
                        st.series.label(),
                        num(st.ops_per_sec.median),
                        num(st.mb_per_sec.median),
                        spread,
                        num(st.cpu_s_per_gb.median),
                        drive,
                        ovh,
                        extra(st.extra_us_per_request),
                        extra(st.extra_thread_cpu_us_per_request),
                        extra(st.extra_other_cpu_us_per_request)
                    );
                }
            }
        }
        let _ = writeln!(t);
        let _ = writeln!(
            t,
            "checks: objects read back intact: {}; plaintext visible in plaintext files: {}; in encrypted files: {}",
            yes_no(self.checks.round_trip),
            yes_no(self.checks.plain_files_hold_plaintext),
            yes_no(self.checks.enc_files_hold_plaintext)
        );
        if self.sync && self.key_cache {
            let below = self.below_target(0.98);
            let _ = if below.is_empty() {
                writeln!(
                    t,
                    "target (encrypted ≥ 98% of plaintext MB/s, PUT and GET): met at every size"
                )
            } else {
                writeln!(
                    t,
                    "target (encrypted ≥ 98% of plaintext MB/s, PUT and GET): missed at {}",
                    below.join(", ")
                )
            };
        }
        let _ = writeln!(
            t,
            "elapsed {:.1} s; scratch store {} {}",
            self.elapsed.as_secs_f64(),
            self.store,
            if self.kept { "kept" } else { "removed" }
        );
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
                                        "requests_per_rep": st.ops,
                                        "bytes_per_rep": st.bytes,
                                        "ops_per_sec": st.ops_per_sec.to_json(),
                                        "mb_per_sec": st.mb_per_sec.to_json(),
                                        "cpu_s_per_gb": st.cpu_s_per_gb.to_json(),
                                        "thread_cpu_us_per_request": st.thread_cpu_us_per_request,
                                        "other_threads_cpu_us_per_request": st.other_cpu_us_per_request,
                                        "latency_us": {"p50": st.lat_p50_us, "p99": st.lat_p99_us},
                                        "overhead_pct": st.overhead_pct.map(Summary::to_json),
                                        "drive_pct": st.drive_pct,
                                        "extra_us_per_request_paired_median": st.extra_us_per_request,
                                        "extra_thread_cpu_us_per_request": st.extra_thread_cpu_us_per_request,
                                        "extra_other_threads_cpu_us_per_request": st.extra_other_cpu_us_per_request,
                                    }),
                                )
                            })
                            .collect();
                        (o.op.key().to_owned(), Value::Object(series))
                    })
                    .collect();
                json!({
                    "size": s.size,
                    "size_label": human_size(s.size),
                    "objects": s.objects,
                    "range_gets": s.ranges,
                    "ops": ops,
                })
            })
            .collect();
        json!({
            "benchmark": "dare bench overhead",
            "version": env!("CARGO_PKG_VERSION"),
            "cpu": self.cpu,
            "machine": self.machine,
            "aead_backend": self.backend,
            "io": self.io,
            "io_uring": self.io == "io_uring",
            "filesystem": self.fs_type,
            "store": self.store,
            "store_kept": self.kept,
            "options": self.options,
            "drive": self.drive.to_json(),
            "checks": {
                "round_trip": self.checks.round_trip,
                "plain_files_hold_plaintext": self.checks.plain_files_hold_plaintext,
                "enc_files_hold_plaintext": self.checks.enc_files_hold_plaintext,
            },
            "target": {
                "description": "encrypted (key cache on) >= 98% of plaintext MB/s for PUT and GET at every size, with --sync",
                "applies": self.sync && self.key_cache,
                "missed": self.below_target(0.98),
            },
            "elapsed_s": self.elapsed.as_secs_f64(),
            "sizes": sizes,
        })
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// A figure with about three significant digits.
pub(crate) fn num(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}
