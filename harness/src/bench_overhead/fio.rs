//! The drive's own limits, measured with fio on the same directory (O_DIRECT, io_uring, short
//! runs), so the report can say how close the plaintext and encrypted paths come to them.
//! fio is optional: when it is missing or fails, the report says so and the run goes on.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

/// One fio job's result.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: &'static str,
    pub what: &'static str,
    /// Bytes per second.
    pub bw: f64,
    pub iops: f64,
}

/// The drive reference: measured jobs, or why there are none.
#[derive(Debug, Clone)]
pub struct Drive {
    pub jobs: Vec<Job>,
    /// fio ioengine used.
    pub engine: Option<&'static str>,
    pub note: String,
}

impl Drive {
    pub fn skipped(note: &str) -> Drive {
        Drive {
            jobs: Vec::new(),
            engine: None,
            note: note.into(),
        }
    }

    /// A job's result by name.
    pub fn job(&self, name: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.name == name)
    }

    pub fn to_json(&self) -> Value {
        json!({
            "tool": "fio",
            "available": !self.jobs.is_empty(),
            "ioengine": self.engine,
            "direct": true,
            "note": self.note,
            "jobs": self.jobs.iter().map(|j| json!({
                "name": j.name, "what": j.what, "bytes_per_sec": j.bw, "iops": j.iops,
            })).collect::<Vec<_>>(),
        })
    }
}

/// (name, description, fio arguments, direction in fio's JSON).
const JOBS: [(&str, &str, &[&str], &str); 4] = [
    (
        "seq_write",
        "sequential write, 1 MiB blocks, queue depth 16",
        &["--rw=write", "--bs=1M", "--iodepth=16"],
        "write",
    ),
    (
        "seq_read",
        "sequential read, 1 MiB blocks, queue depth 16",
        &["--rw=read", "--bs=1M", "--iodepth=16"],
        "read",
    ),
    (
        "rand_read_4k",
        "random read, 4 KiB blocks, queue depth 32",
        &["--rw=randread", "--bs=4k", "--iodepth=32"],
        "read",
    ),
    (
        "sync_write_4k",
        "4 KiB writes, each followed by fdatasync, queue depth 1",
        &["--rw=write", "--bs=4k", "--iodepth=1", "--fdatasync=1"],
        "write",
    ),
];

fn fio_present() -> bool {
    Command::new("fio")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run_job(
    file: &Path,
    engine: &str,
    seconds: u32,
    size: &str,
    args: &[&str],
    dir: &str,
) -> Result<(f64, f64), String> {
    let out = Command::new("fio")
        .arg("--name=dare-drive")
        .arg(format!("--filename={}", file.display()))
        .arg(format!("--size={size}"))
        .arg(format!("--ioengine={engine}"))
        .arg("--direct=1")
        .arg(format!("--runtime={seconds}"))
        .arg("--time_based")
        .arg("--output-format=json")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run fio: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().last().unwrap_or("fio failed").trim().to_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text.find('{').ok_or("fio printed no JSON")?;
    let v: Value = serde_json::from_str(&text[start..]).map_err(|e| format!("fio JSON: {e}"))?;
    let d = &v["jobs"][0][dir];
    let bw = d["bw_bytes"].as_f64().ok_or("fio JSON has no bw_bytes")?;
    let iops = d["iops"].as_f64().ok_or("fio JSON has no iops")?;
    if bw <= 0.0 {
        return Err("fio measured no I/O".into());
    }
    Ok((bw, iops))
}

/// Measures the drive under `dir` (a scratch directory: fio's file is removed afterwards).
pub fn measure(dir: &Path, seconds: u32) -> Drive {
    if !fio_present() {
        return Drive::skipped(
            "fio is not installed: no raw-drive reference (install fio, e.g. `apt-get install fio`)",
        );
    }
    let file = dir.join("fio-reference.dat");
    let size = if seconds <= 1 { "64M" } else { "256M" };
    let mut last_err = String::new();
    // io_uring first, as the engine uses; older kernels or sandboxes may refuse it.
    for engine in ["io_uring", "libaio", "psync"] {
        let mut jobs = Vec::new();
        for (name, what, args, d) in JOBS {
            match run_job(&file, engine, seconds, size, args, d) {
                Ok((bw, iops)) => jobs.push(Job {
                    name,
                    what,
                    bw,
                    iops,
                }),
                Err(e) => {
                    last_err = format!("fio --ioengine={engine}: {e}");
                    break;
                }
            }
        }
        if jobs.len() == JOBS.len() {
            let _ = std::fs::remove_file(&file);
            return Drive {
                jobs,
                engine: Some(engine),
                note: format!("fio {seconds} s per job, O_DIRECT, {size} file"),
            };
        }
    }
    let _ = std::fs::remove_file(&file);
    Drive::skipped(&format!("fio failed, no raw-drive reference ({last_err})"))
}
