//! `dare bench overhead` run in-process with a tiny configuration: the JSON holds every
//! figure for every size, request type and series; the SVG names both series; the stored
//! files of the encrypted bucket really are ciphertext; bad arguments fail with one clear
//! error. No timing assertions: only that figures exist, are finite and positive.

use std::fs;
use std::path::{Path, PathBuf};

use clap::Parser;
use dare::{Dare, GetOptions, ListQuery, Options};
use dare_cli::cli::Cli;
use serde_json::Value;

fn run(args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec!["dare", "bench", "overhead"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv)?;
    dare_cli::run(cli)
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8 here")
}

fn positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(
        x.is_finite() && x > 0.0,
        "{what} = {x}, expected finite and > 0"
    );
    x
}

fn check_summary(v: &Value, what: &str) {
    let med = positive(&v["median"], &format!("{what}.median"));
    let min = positive(&v["min"], &format!("{what}.min"));
    let max = positive(&v["max"], &format!("{what}.max"));
    assert!(
        min <= med && med <= max,
        "{what}: min {min} median {med} max {max}"
    );
}

/// The one kept scratch store under `dir`.
fn kept_store(dir: &Path) -> PathBuf {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("dare-bench-"))
        })
        .collect();
    assert_eq!(found.len(), 1, "expected one kept scratch store in {dir:?}");
    let name = found[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("dare-bench-kept-"),
        "{name}: --keep renames the store"
    );
    found.pop().unwrap().join("store")
}

#[test]
fn tiny_run_reports_every_figure_and_stores_ciphertext() {
    let td = tempfile::tempdir().unwrap();
    let drive = td.path().join("drive");
    fs::create_dir(&drive).unwrap();
    let json = td.path().join("out.json");
    let svg = td.path().join("out.svg");
    run(&[
        "--dir",
        path_str(&drive),
        "--sizes",
        "4K,64K",
        "--bytes",
        "320K",
        "--reps",
        "1",
        "--batch",
        "128K",
        "--no-fio",
        "--keep",
        "--json",
        path_str(&json),
        "--plot",
        path_str(&svg),
    ])
    .unwrap();

    // JSON: machine, options and every figure.
    let v: Value = serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
    assert!(v["cpu"].is_string());
    assert!(v["machine"]["features"].is_object());
    assert!(v["aead_backend"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(
        v["io"]
            .as_str()
            .is_some_and(|s| s == "io_uring" || s == "std")
    );
    assert_eq!(v["options"]["sync"], Value::Bool(true));
    assert_eq!(v["options"]["reps"], 1);
    assert_eq!(v["options"]["batch_bytes"], 128 << 10);
    assert_eq!(v["options"]["key_cache"], "on");
    assert_eq!(v["drive"]["available"], Value::Bool(false));
    assert_eq!(v["checks"]["round_trip"], Value::Bool(true));
    assert_eq!(v["checks"]["enc_files_hold_plaintext"], Value::Bool(false));
    assert_eq!(v["checks"]["plain_files_hold_plaintext"], Value::Bool(true));
    let sizes = v["sizes"].as_array().unwrap();
    assert_eq!(
        sizes
            .iter()
            .map(|s| s["size"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [4096, 65536]
    );
    for s in sizes {
        let size = s["size"].as_u64().unwrap();
        assert_eq!(s["objects"].as_u64().unwrap(), (320 << 10) / size);
        for op in ["put", "get", "range_get"] {
            // Without --key-cache, small sizes also run the cache-off series.
            for series in ["plain", "enc", "enc_cache_off"] {
                let what = format!("{size} {op} {series}");
                let f = &s["ops"][op][series];
                assert!(f.is_object(), "{what} missing");
                check_summary(&f["ops_per_sec"], &format!("{what} ops_per_sec"));
                check_summary(&f["mb_per_sec"], &format!("{what} mb_per_sec"));
                check_summary(&f["cpu_s_per_gb"], &format!("{what} cpu_s_per_gb"));
                positive(&f["latency_us"]["p50"], &format!("{what} p50"));
                positive(&f["latency_us"]["p99"], &format!("{what} p99"));
                positive(&f["requests_per_rep"], &format!("{what} requests"));
                positive(&f["bytes_per_rep"], &format!("{what} bytes"));
                // The requesting thread's own CPU per request is never zero (it read the
                // object); the other threads' may be.
                positive(
                    &f["thread_cpu_us_per_request"],
                    &format!("{what} thread CPU"),
                );
                let other = f["other_threads_cpu_us_per_request"].as_f64().unwrap();
                assert!(
                    other.is_finite() && other >= 0.0,
                    "{what} other CPU {other}"
                );
                if series == "plain" {
                    assert!(f["overhead_pct"].is_null());
                    assert!(f["extra_thread_cpu_us_per_request"].is_null());
                    assert!(f["extra_other_threads_cpu_us_per_request"].is_null());
                } else {
                    for k in [
                        "extra_us_per_request_paired_median",
                        "extra_thread_cpu_us_per_request",
                        "extra_other_threads_cpu_us_per_request",
                    ] {
                        assert!(f[k].as_f64().is_some_and(f64::is_finite), "{what} {k}");
                    }
                    for k in ["median", "min", "max"] {
                        let x = f["overhead_pct"][k].as_f64().unwrap();
                        assert!(x.is_finite() && x < 100.0, "{what} overhead {k} = {x}");
                    }
                }
            }
            // Same workload for every series: same requests, same bytes.
            let ops = &s["ops"][op];
            assert_eq!(ops["plain"]["bytes_per_rep"], ops["enc"]["bytes_per_rep"]);
            assert_eq!(
                ops["plain"]["requests_per_rep"],
                ops["enc"]["requests_per_rep"]
            );
        }
    }

    // SVG: both series, with a legend.
    let text = fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") || text.contains("<svg"));
    for name in [
        "PUT plaintext",
        "PUT encrypted",
        "GET plaintext",
        "GET encrypted",
        "target band: overhead 0–2%",
        "ECS with D@RE: ≈10% (white paper)",
    ] {
        assert!(text.contains(name), "SVG lacks series {name:?}");
    }

    // On disk: the same objects, plaintext in one bucket, ciphertext in the other.
    let store = kept_store(&drive);
    assert_eq!(v["store_kept"], Value::Bool(true));
    let d = Dare::open(&store, &Options::default()).unwrap();
    let names = |bucket: &str| -> Vec<String> {
        let page = d.list(bucket, &ListQuery::default()).unwrap();
        page.objects.into_iter().map(|o| o.name).collect()
    };
    let plain_list = names("plain");
    assert_eq!(
        plain_list.len(),
        5,
        "the last pass's 64 KiB objects are kept"
    );
    assert_eq!(plain_list, names("enc"));
    let data_file = |bucket: &str, name: &str| {
        let id = d.bucket(bucket).unwrap().id;
        let oid = d.head(bucket, name).unwrap().object_id;
        let hex: String = oid.iter().map(|b| format!("{b:02x}")).collect();
        store
            .join("objects")
            .join(id.to_string())
            .join(&hex[..2])
            .join(hex)
    };
    for key in &plain_list {
        let read = |bucket: &str| {
            let obj = d.get(bucket, key, &GetOptions::default()).unwrap();
            (obj.info().encrypted, obj.to_vec().unwrap())
        };
        let (plain_enc, plain_data) = read("plain");
        let (enc_enc, enc_data) = read("enc");
        assert!(!plain_enc && enc_enc);
        assert_eq!(plain_data.len(), 65536);
        assert_eq!(
            plain_data, enc_data,
            "{key}: both series hold the same data"
        );
        let raw_plain = fs::read(data_file("plain", key)).unwrap();
        let raw_enc = fs::read(data_file("enc", key)).unwrap();
        assert_ne!(raw_plain, raw_enc);
        let probe = &plain_data[1000..1064];
        assert!(raw_plain.windows(64).any(|w| w == probe));
        assert!(
            !raw_enc.windows(64).any(|w| w == probe),
            "{key}: the encrypted file holds plaintext"
        );
    }
    let r = d
        .fsck(&dare::FsckOptions {
            deep: true,
            ..Default::default()
        })
        .unwrap();
    assert!(r.is_clean(), "{r:?}");
}

#[test]
fn explicit_cache_and_no_sync_runs_two_series() {
    let td = tempfile::tempdir().unwrap();
    let json = td.path().join("o.json");
    run(&[
        "--dir",
        path_str(td.path()),
        "--sizes",
        "8K",
        "--bytes",
        "64K",
        "--reps",
        "2",
        "--no-sync",
        "--key-cache",
        "off",
        "--no-fio",
        "--json",
        path_str(&json),
    ])
    .unwrap();
    let v: Value = serde_json::from_str(&fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["options"]["sync"], Value::Bool(false));
    assert_eq!(v["options"]["key_cache"], "off");
    let ops = &v["sizes"][0]["ops"]["get"];
    assert!(ops["plain"].is_object() && ops["enc"].is_object());
    assert!(
        ops["enc_cache_off"].is_null(),
        "no third series when --key-cache is given"
    );
    // The scratch store is removed without --keep.
    let left: Vec<_> = fs::read_dir(td.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("dare-bench-"))
        .collect();
    assert!(left.is_empty(), "scratch store left behind: {left:?}");
}

#[test]
fn bad_arguments_fail_with_one_clear_error() {
    let td = tempfile::tempdir().unwrap();
    let dir = path_str(td.path());
    let a_file = td.path().join("not-a-dir");
    fs::write(&a_file, b"x").unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--sizes", "4X"], "unknown size suffix"),
        (&["--sizes", "4K,,64K"], "empty entry"),
        (&["--sizes", "0"], "must be from 1 byte"),
        (&["--sizes", "4K,4K"], "given twice"),
        (&["--sizes", "2G"], "must be from 1 byte to 1G"),
        (&["--bytes", "lots"], "not a size"),
        (&["--bytes", "0"], "--bytes"),
        (&["--reps", "0"], "--reps"),
        (&["--batch", "1K"], "must be from 4K to 256M"),
        (&["--json", "/nonexistent-dir/x.json"], "does not exist"),
    ];
    for (args, want) in cases {
        let mut argv = vec!["--dir", dir, "--no-fio"];
        argv.extend_from_slice(args);
        let e = run(&argv).expect_err(&format!("{args:?} should fail"));
        let msg = format!("{e:#}");
        assert!(msg.contains(want), "{args:?}: {msg:?} lacks {want:?}");
        assert!(
            !msg.contains('\n'),
            "{args:?}: error is not one line: {msg:?}"
        );
    }
    let e = run(&["--dir", "/nonexistent/drive", "--no-fio"]).unwrap_err();
    assert!(format!("{e:#}").contains("--dir /nonexistent/drive"));
    let e = run(&["--dir", path_str(&a_file), "--no-fio"]).unwrap_err();
    assert!(format!("{e:#}").contains("is not a directory"));
    // Nothing was created by the failed runs.
    assert_eq!(fs::read_dir(td.path()).unwrap().count(), 1);
}

#[test]
fn sizes_parse_with_binary_suffixes() {
    use dare_cli::bench_overhead::{human_size, parse_bytes};
    assert_eq!(parse_bytes("4096").unwrap(), 4096);
    assert_eq!(parse_bytes("4K").unwrap(), 4096);
    assert_eq!(parse_bytes("4kib").unwrap(), 4096);
    assert_eq!(parse_bytes("64M").unwrap(), 64 << 20);
    assert_eq!(parse_bytes(" 1G ").unwrap(), 1 << 30);
    assert!(parse_bytes("K").is_err());
    assert!(parse_bytes("-4K").is_err());
    assert!(parse_bytes("99999999999999999999").is_err());
    assert!(parse_bytes("18446744073709551615G").is_err());
    assert_eq!(human_size(65536), "64 KiB");
    assert_eq!(human_size(1000), "1000 B");
}

#[test]
fn direct_io_run_measures_both_series() {
    if !dare_engine::storage::uring_available() {
        eprintln!("skipping: io_uring unavailable");
        return;
    }
    // The target directory is on a real file system (tmpfs refuses O_DIRECT).
    let td = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let json = td.path().join("direct.json");
    let args = [
        "--dir",
        path_str(td.path()),
        "--no-fio",
        "--direct",
        "--sizes",
        "4K,200K",
        "--bytes",
        "400K",
        "--reps",
        "1",
        "--key-cache",
        "on",
        "--json",
        path_str(&json),
    ];
    run(&args).unwrap();
    let v: Value = serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["options"]["direct"], true, "{}", v["options"]);
}
