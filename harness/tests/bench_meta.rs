//! `dare bench meta` against the embedded SQLite and a real PostgreSQL server (started here by
//! dare-testkit): every figure exists, is finite and positive, for both backends; the
//! password never shows; a database that already holds a store is refused. No timing
//! assertions.

use std::process::Command;

use dare_testkit::PgServer;
use serde_json::Value;

fn bench(dir: &std::path::Path, pg: Option<&str>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dare"));
    c.args([
        "bench",
        "meta",
        "--objects",
        "300",
        "--ops",
        "40",
        "--reps",
        "2",
        "--json",
    ])
    .arg("--dir")
    .arg(dir)
    .env_remove("DARE_BENCH_POSTGRES_URL");
    if let Some(url) = pg {
        c.env("DARE_BENCH_POSTGRES_URL", url);
    }
    c.output().unwrap()
}

fn check_backend(v: &Value, name: &str) {
    let b = &v["backends"][name];
    for k in [
        "lookup_us_median",
        "lookup_us_p99",
        "lookups_per_s",
        "commit_us_median",
        "commit_us_p99",
        "commits_per_s",
        "rewraps_per_s",
    ] {
        let x = b[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{name}.{k} missing: {v}"));
        assert!(x.is_finite() && x > 0.0, "{name}.{k} = {x}");
    }
    assert_eq!(b["per_rep"]["rewraps_per_s"].as_array().unwrap().len(), 2);
}

#[test]
fn sqlite_and_postgres_in_one_run() {
    let server = PgServer::start();
    let url = server.create_database("bench_meta");
    let dir = tempfile::tempdir().unwrap();

    let o = bench(dir.path(), Some(&url));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        !text.contains(server.password()),
        "password in the report: {text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    check_backend(&v, "sqlite");
    check_backend(&v, "postgres");
    assert!(
        v["backends"]["postgres"]["at"]
            .as_str()
            .unwrap()
            .contains("***")
    );
    // Nothing left behind in --dir.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // The database now holds the benchmark's store: refused, without the password.
    let o = bench(dir.path(), Some(&url));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("already holds a dare store"), "{err}");
    assert!(!err.contains(server.password()), "{err}");

    // The parsed command line (which derives Debug) does not show the password either.
    let cli = <dare_cli::cli::Cli as clap::Parser>::try_parse_from([
        "dare",
        "bench",
        "meta",
        "--postgres",
        &url,
    ])
    .unwrap();
    let debug = format!("{cli:?}");
    assert!(!debug.contains(server.password()), "{debug}");

    // Without a server: SQLite alone, and the JSON says so by its keys.
    let o = bench(dir.path(), None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    check_backend(&v, "sqlite");
    assert!(v["backends"].get("postgres").is_none());
}
