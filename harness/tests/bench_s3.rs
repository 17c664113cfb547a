//! `dare bench s3 --quick` end to end: it starts its own `dare serve` on a scratch store,
//! runs every series, and writes a JSON report and a plot of the documented shape. Every
//! figure must exist and be finite and positive; no timing assertions.

use std::process::Command;

use serde_json::Value;

#[test]
fn bench_s3_quick_writes_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("s3.json");
    let svg = dir.path().join("s3.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_dare"))
        .args([
            "bench",
            "s3",
            "--quick",
            "--concurrency",
            "4",
            "--sizes",
            "4K,1M",
        ])
        .arg("--dir")
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(&svg)
        .env_remove("DARE_STORE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dare bench s3 failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("overhead"), "{stdout}");
    assert!(
        stdout.contains("server stopped with SIGTERM: exit 0"),
        "{stdout}"
    );
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["benchmark"], "dare bench s3");
    assert_eq!(v["server_clean_shutdown"], true);
    assert_eq!(v["options"]["concurrency"], 4);
    assert_eq!(
        v["options"]["series"],
        serde_json::json!(["plain", "sse_s3", "sse_c", "sse_kms"])
    );
    let sizes = v["sizes"].as_array().unwrap();
    assert_eq!(
        sizes
            .iter()
            .map(|s| s["size"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [4096, 1 << 20]
    );
    let pos = |x: &Value, what: &str| {
        let f = x.as_f64().unwrap_or_else(|| panic!("{what}: {x}"));
        assert!(f.is_finite() && f > 0.0, "{what}: {f}");
    };
    for s in sizes {
        for op in ["put", "get"] {
            for series in ["plain", "sse_s3", "sse_c", "sse_kms"] {
                let st = &s["ops"][op][series];
                let what = format!("{} {op} {series}", s["size"]);
                let want = if s["size"] == 4096 { 64 } else { 16 };
                assert_eq!(st["requests_per_rep"], want, "{what}");
                for k in ["median", "min", "max"] {
                    pos(&st["requests_per_sec"][k], &what);
                    pos(&st["mb_per_sec"][k], &what);
                }
                pos(&st["latency_ms"]["p50"], &what);
                pos(&st["latency_ms"]["p99"], &what);
                let o = &st["overhead_pct"];
                if series == "plain" {
                    assert!(o.is_null(), "{what}");
                } else {
                    for k in ["median", "min", "max"] {
                        assert!(o[k].as_f64().is_some_and(f64::is_finite), "{what}: {o}");
                    }
                }
            }
        }
    }
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(
        plot.starts_with("<svg") && plot.contains("SSE-KMS"),
        "not the plot"
    );
    // The scratch store is gone.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("dare-bench-"))
        .collect();
    assert!(left.is_empty(), "scratch store left behind: {left:?}");
}
