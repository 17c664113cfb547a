//! `dare cpu`: what this machine offers the engine.

use std::io::Write;

use anyhow::Result;
use dare_engine::{AeadBackend, CpuFeatures, IoMode};
use serde_json::json;

/// The CPU model name from /proc/cpuinfo, or "unknown".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The report as JSON, with the backend and I/O path in use (what `--backend` and `--io`
/// select, or what this machine uses without them).
pub fn report(selected: AeadBackend, io: IoMode) -> serde_json::Value {
    let f = CpuFeatures::detect();
    json!({
        "cpu": cpu_model(),
        "logical_cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "features": f.list().iter().map(|(n, v)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "backends": AeadBackend::ALL.iter().map(|b| json!({"name": b.name(), "supported": b.is_supported()})).collect::<Vec<_>>(),
        "selected": selected.name(),
        "io_uring": dare_engine::storage::uring_available(),
        "io": io.name(),
    })
}

/// `dare cpu`, with the backend and I/O path the flags select.
pub fn run(selected: AeadBackend, io: IoMode, as_json: bool) -> Result<()> {
    let r = report(selected, io);
    let mut o = crate::out::stdout().lock();
    if as_json {
        writeln!(o, "{}", serde_json::to_string_pretty(&r)?)?;
        return Ok(());
    }
    writeln!(o, "cpu:        {}", r["cpu"].as_str().unwrap_or("unknown"))?;
    writeln!(o, "cores:      {}", r["logical_cpus"])?;
    let f = CpuFeatures::detect();
    let feats: Vec<String> = f
        .list()
        .iter()
        .map(|(n, v)| format!("{n}{}", if *v { "+" } else { "-" }))
        .collect();
    writeln!(o, "features:   {}", feats.join(" "))?;
    let backends: Vec<String> = AeadBackend::ALL
        .iter()
        .map(|b| {
            format!(
                "{}{}",
                b.name(),
                if b.is_supported() {
                    ""
                } else {
                    " (unsupported)"
                }
            )
        })
        .collect();
    writeln!(o, "backends:   {}", backends.join(", "))?;
    writeln!(o, "selected:   {}", r["selected"].as_str().unwrap_or("?"))?;
    let uring = if r["io_uring"].as_bool() == Some(true) {
        "usable"
    } else {
        "unavailable (std positioned I/O fallback)"
    };
    writeln!(o, "io_uring:   {uring}")?;
    writeln!(o, "I/O path:   {}", r["io"].as_str().unwrap_or("?"))?;
    Ok(())
}
