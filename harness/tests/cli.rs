//! The `dare` binary end to end: what an operator types, what comes back, and what is left
//! on disk when things go wrong.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Store {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Store {
    fn new(chunk: u64) -> Store {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let s = Store { _dir: dir, path };
        s.ok(&["init", "--chunk-size", &chunk.to_string()]);
        s
    }
    fn tmp(&self, name: &str) -> PathBuf {
        self._dir.path().join(name)
    }
    fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }
    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dare"));
        c.arg("--store")
            .arg(&self.path)
            .args(args)
            .env_remove("DARE_STORE")
            .env_remove("DARE_AEAD_BACKEND");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }
    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "dare {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }
    /// Runs a command that must fail; returns (exit code, stderr).
    fn fails(&self, args: &[&str]) -> (i32, String) {
        let o = self.run(args);
        assert!(!o.status.success(), "dare {args:?} unexpectedly succeeded");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "error should be one line: {err:?}"
        );
        assert!(!err.contains("panicked"), "{err}");
        (o.status.code().unwrap_or(-1), err)
    }
    fn object_file(&self, bucket: &str, key: &str) -> PathBuf {
        self.path.join("buckets").join(bucket).join(key)
    }
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(p: &Path, data: &[u8]) -> String {
    fs::write(p, data).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn big_object_roundtrip_and_ranges() {
    let s = Store::new(65536);
    s.ok(&["bucket", "create", "b"]);
    let data = pattern(24 << 20, 1);
    let input = write(&s.tmp("in"), &data);
    s.ok(&[
        "put",
        "b/big",
        &input,
        "--meta",
        "owner=ops",
        "--meta",
        "class=gold",
    ]);
    let out = s.tmp("out");
    s.ok(&["get", "b/big", "-o", out.to_str().unwrap()]);
    assert!(fs::read(&out).unwrap() == data);
    let c = 65536usize;
    for (a, b) in [
        (0, 0),
        (c - 1, c),
        (c, 2 * c - 1),
        (c - 5, 3 * c + 5),
        (100, 200),
        (data.len() - 1, data.len() - 1),
    ] {
        let got = s.ok(&["get", "b/big", "--range", &format!("{a}-{b}")]);
        assert!(got == data[a..=b], "range {a}-{b}");
    }
    let suffix = s.ok(&["get", "b/big", "--range", "-10"]);
    assert_eq!(suffix, &data[data.len() - 10..]);
    let head: serde_json::Value =
        serde_json::from_slice(&s.ok(&["head", "b/big", "--json"])).unwrap();
    assert_eq!(head["size"], data.len() as u64);
    assert_eq!(head["chunk_size"], 65536);
    assert_eq!(head["encrypted"], true);
    assert_eq!(head["metadata"]["owner"], "ops");
    assert_eq!(head["key_ref"]["kind"], "hierarchy");
    // The stored file is not the plaintext.
    let stored = fs::read(s.object_file("b", "big")).unwrap();
    assert!(!stored.windows(64).any(|w| w == &data[1000..1064]));
}

#[test]
fn any_flipped_byte_fails_get_and_leaves_no_output() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "b"]);
    let data = pattern(5 * 4096 + 123, 2);
    s.ok(&["put", "b/o", &write(&s.tmp("in"), &data)]);
    let file = s.object_file("b", "o");
    let orig = fs::read(&file).unwrap();
    let positions: Vec<usize> = (0..orig.len())
        .step_by(97)
        .chain([0, 4, 24, 60, 100, orig.len() - 1])
        .collect();
    for &i in &positions {
        let mut t = orig.clone();
        t[i] ^= 0x20;
        fs::write(&file, &t).unwrap();
        let out = s.tmp("out");
        let (code, err) = s.fails(&["get", "b/o", "-o", out.to_str().unwrap()]);
        assert!(code == 4 || code == 1, "byte {i}: exit {code}: {err}");
        assert!(!out.exists(), "byte {i}: output file left behind");
        let leftovers = fs::read_dir(s.tmp(""))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("partial")
            })
            .count();
        assert_eq!(leftovers, 0, "partial output left behind");
    }
    fs::write(&file, &orig).unwrap();
    assert_eq!(s.ok(&["get", "b/o"]), data);
}

#[test]
fn bad_input_gives_clear_errors() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "b"]);
    let f = write(&s.tmp("in"), b"hello");
    let (code, err) = s.fails(&["put", "nob/k", &f]);
    assert!(err.contains("nob"), "{err}");
    assert_eq!(code, 1);
    let (code, err) = s.fails(&["get", "b/missing"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no such object"), "{err}");
    for bad in ["b/..", "b/.", "b/a\\b", "/k", "b/", "b"] {
        s.fails(&["put", bad, &f]);
    }
    s.fails(&["bucket", "create", ".."]);
    s.fails(&["bucket", "create", "a/b"]);
    s.ok(&["put", "b/k", &f]);
    let (_, err) = s.fails(&["get", "b/k", "--range", "5-9"]);
    assert!(err.contains("past the end"), "{err}");
    let (_, err) = s.fails(&["get", "b/k", "--range", "3-1"]);
    assert!(err.contains("empty"), "{err}");
    s.fails(&["get", "b/k", "--range", "x-1"]);
    // Zero-length object: valid, authenticated, and a zero-length file is not an object.
    s.ok(&["put", "b/empty", &write(&s.tmp("e"), b"")]);
    assert_eq!(s.ok(&["get", "b/empty"]), b"");
    fs::write(s.object_file("b", "zero"), b"").unwrap();
    let (_, err) = s.fails(&["get", "b/zero"]);
    assert!(err.contains("empty"), "{err}");
    // Unknown format version.
    let mut t = fs::read(s.object_file("b", "k")).unwrap();
    t[4] = 9;
    fs::write(s.object_file("b", "k"), &t).unwrap();
    let (_, err) = s.fails(&["get", "b/k"]);
    assert!(err.contains("version 9"), "{err}");
    s.fails(&["--backend", "nonsense", "cpu"]);
    let o = Command::new(env!("CARGO_BIN_EXE_dare"))
        .args(["--store", "/nonexistent/dare", "ls"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("dare init"));
}

#[test]
fn encryption_off_buckets_store_plaintext_and_say_so() {
    let s = Store::new(4096);
    s.ok(&["ns", "create", "open", "--encryption", "off"]);
    s.ok(&["bucket", "create", "pub", "--namespace", "open"]);
    s.ok(&[
        "bucket",
        "create",
        "sec",
        "--namespace",
        "open",
        "--encryption",
        "on",
    ]);
    s.ok(&["bucket", "create", "enc"]);
    let data = b"plain text that is not secret".repeat(50);
    let f = write(&s.tmp("in"), &data);
    for b in ["pub", "sec", "enc"] {
        s.ok(&["put", &format!("{b}/x"), &f]);
        assert_eq!(s.ok(&["get", &format!("{b}/x")]), data);
    }
    let stored = fs::read(s.object_file("pub", "x")).unwrap();
    assert!(stored.windows(data.len()).any(|w| w == &data[..]));
    for b in ["sec", "enc"] {
        let stored = fs::read(s.object_file(b, "x")).unwrap();
        assert!(
            !stored.windows(20).any(|w| w == &data[..20]),
            "{b} stored plaintext"
        );
    }
    let h: serde_json::Value = serde_json::from_slice(&s.ok(&["head", "pub/x", "--json"])).unwrap();
    assert_eq!(h["encrypted"], false);
    // Downgrade: a cleartext object file put in place of an encrypted one is refused.
    fs::copy(s.object_file("pub", "x"), s.object_file("enc", "x")).unwrap();
    let out = s.tmp("downgraded");
    let (code, err) = s.fails(&["get", "enc/x", "-o", out.to_str().unwrap()]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("stored in clear"), "{err}");
    assert!(!out.exists());
    s.fails(&["head", "enc/x"]);
    let h: serde_json::Value = serde_json::from_slice(&s.ok(&["head", "sec/x", "--json"])).unwrap();
    assert_eq!(h["encrypted"], true);
    let list: serde_json::Value =
        serde_json::from_slice(&s.ok(&["bucket", "ls", "--json"])).unwrap();
    let enc: Vec<(String, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_owned(),
                b["encryption"].as_bool().unwrap(),
            )
        })
        .collect();
    assert!(
        enc.contains(&("pub".into(), false))
            && enc.contains(&("sec".into(), true))
            && enc.contains(&("enc".into(), true))
    );
}

#[test]
fn sse_c_right_wrong_and_missing_key() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "b"]);
    let key = [0x5Cu8; 32];
    let kf = write(&s.tmp("key"), &key);
    let wrong = write(&s.tmp("wrong"), &[0x11u8; 32]);
    let data = pattern(10_000, 3);
    s.ok(&[
        "put",
        "b/c",
        &write(&s.tmp("in"), &data),
        "--sse-c-key-file",
        &kf,
        "--meta",
        "m=1",
    ]);
    assert_eq!(s.ok(&["get", "b/c", "--sse-c-key-file", &kf]), data);
    let (_, missing) = s.fails(&["get", "b/c"]);
    let (_, bad) = s.fails(&["get", "b/c", "--sse-c-key-file", &wrong]);
    assert!(missing.to_lowercase().contains("key"), "{missing}");
    assert_ne!(missing, bad, "missing and wrong key must be told apart");
    let h: serde_json::Value = serde_json::from_slice(&s.ok(&["head", "b/c", "--json"])).unwrap();
    assert_eq!(h["key_ref"]["kind"], "sse-c");
    // The customer key appears nowhere in the store.
    for entry in walk(&s.path) {
        let bytes = fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(32).any(|w| w == key),
            "customer key found in {}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn objects_survive_three_rotations() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "b"]);
    let mut written = Vec::new();
    for round in 0..4u64 {
        let data = pattern(9000 + round as usize, round);
        let key = format!("b/o{round}");
        s.ok(&["put", &key, &write(&s.tmp("in"), &data)]);
        written.push((key, data));
        if round < 3 {
            s.ok(&["keys", "rotate", "--wait"]);
        }
    }
    for (k, d) in &written {
        assert_eq!(&s.ok(&["get", k]), d, "{k}");
    }
    let st: serde_json::Value =
        serde_json::from_slice(&s.ok(&["keys", "rotation", "status", "--json"])).unwrap();
    let hist = st["history"].as_array().unwrap();
    assert_eq!(hist.len(), 3);
    assert!(
        hist.iter()
            .all(|t| t["state"] == "completed" && t["ended"].is_u64() && t["started"].is_u64())
    );
    // Objects record the rotation key version they were wrapped under.
    let h0: serde_json::Value = serde_json::from_slice(&s.ok(&["head", "b/o0", "--json"])).unwrap();
    let h3: serde_json::Value = serde_json::from_slice(&s.ok(&["head", "b/o3", "--json"])).unwrap();
    assert_eq!(h0["key_ref"]["rotation_version"], 1);
    assert_eq!(h3["key_ref"]["rotation_version"], 4);
    // The dump never carries plaintext keys: the root key bytes do not appear in it.
    let dump = s.ok(&["keys", "dump", "--json"]);
    let _: serde_json::Value = serde_json::from_slice(&dump).unwrap();
}

#[test]
fn background_rotation_reports_id_and_completes() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "b"]);
    let data = pattern(5000, 9);
    s.ok(&["put", "b/x", &write(&s.tmp("in"), &data)]);
    let id = String::from_utf8(s.ok(&["keys", "rotate"])).unwrap();
    let id = id.trim();
    assert!(id.parse::<u64>().is_ok(), "{id:?}");
    s.ok(&["keys", "rotation", "status", id, "--wait"]);
    assert_eq!(s.ok(&["get", "b/x"]), data);
}

#[test]
fn rotation_killed_after_every_step_resumes() {
    for step in 1..=5 {
        let s = Store::new(4096);
        s.ok(&["bucket", "create", "b"]);
        let data = pattern(7000, step);
        s.ok(&["put", "b/before", &write(&s.tmp("in"), &data)]);
        let o = s.run_env(
            &["keys", "rotate", "--wait"],
            &[("DARE_CRASH_AFTER_STEP", &step.to_string())],
        );
        assert!(
            !o.status.success(),
            "step {step}: the crash hook did not fire"
        );
        // Any command works on the interrupted store; reads and writes go on.
        assert_eq!(s.ok(&["get", "b/before"]), data, "step {step}");
        s.ok(&["put", "b/during", &write(&s.tmp("in2"), &data)]);
        s.ok(&["keys", "rotation", "resume"]);
        let st: serde_json::Value =
            serde_json::from_slice(&s.ok(&["keys", "rotation", "status", "--json"])).unwrap();
        assert_eq!(st["task"]["state"], "completed", "step {step}");
        for k in ["b/before", "b/during"] {
            assert_eq!(s.ok(&["get", k]), data, "step {step} {k}");
        }
    }
}

#[test]
fn rotation_sigkilled_at_random_moments_completes_or_resumes() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "b"]);
    let data = pattern(3000, 11);
    s.ok(&["put", "b/x", &write(&s.tmp("in"), &data)]);
    let mut delay_us = 0u64;
    for round in 0..12 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dare"))
            .arg("--store")
            .arg(&s.path)
            .args(["keys", "rotate", "--wait"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(delay_us));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        delay_us = (delay_us * 7 + 1500) % 40_000;
        // Whatever happened, objects read and any interrupted rotation resumes to completion.
        assert_eq!(s.ok(&["get", "b/x"]), data, "round {round}");
        s.ok(&["keys", "rotation", "resume"]);
        s.ok(&["put", &format!("b/r{round}"), &write(&s.tmp("in"), &data)]);
    }
    let st: serde_json::Value =
        serde_json::from_slice(&s.ok(&["keys", "rotation", "status", "--json"])).unwrap();
    assert!(
        st["history"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "completed"),
        "{st}"
    );
    for round in 0..12 {
        assert_eq!(s.ok(&["get", &format!("b/r{round}")]), data);
    }
}

#[test]
fn put_sigkilled_at_random_moments_never_leaves_a_broken_object() {
    let s = Store::new(65536);
    s.ok(&["bucket", "create", "b"]);
    let versions: Vec<Vec<u8>> = (0..2).map(|v| pattern(24 << 20, 100 + v)).collect();
    let files: Vec<String> = versions
        .iter()
        .enumerate()
        .map(|(i, d)| write(&s.tmp(&format!("v{i}")), d))
        .collect();
    s.ok(&["put", "b/obj", &files[0]]);
    let mut delay_us = 300u64;
    for round in 0..10 {
        let f = &files[(round + 1) % 2];
        let mut child = Command::new(env!("CARGO_BIN_EXE_dare"))
            .arg("--store")
            .arg(&s.path)
            .args(["put", "b/obj", f])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(delay_us));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        delay_us = (delay_us * 5 + 7000) % 60_000;
        // The object is one complete version or the other, never a mix or a fragment.
        let got = s.ok(&["get", "b/obj"]);
        assert!(
            got == versions[0] || got == versions[1],
            "round {round}: object is neither version"
        );
        let listed = String::from_utf8(s.ok(&["ls", "b"])).unwrap();
        assert_eq!(listed.lines().count(), 1, "round {round}: {listed}");
    }
    let interrupted = fs::read_dir(s.path.join("buckets/b"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".dare-tmp")
        })
        .count();
    eprintln!(
        "{interrupted} of 10 puts were killed mid-write (their temporary files remain, invisible)"
    );
}

#[test]
fn cpu_reports_backend_and_io() {
    let s = Store::new(4096);
    let v: serde_json::Value = serde_json::from_slice(&s.ok(&["cpu", "--json"])).unwrap();
    assert!(v["selected"].is_string() && v["io_uring"].is_boolean());
    assert!(v["features"]["aes"].is_boolean());
    let forced = s.run_env(&["cpu", "--json"], &[("DARE_AEAD_BACKEND", "portable")]);
    let v: serde_json::Value = serde_json::from_slice(&forced.stdout).unwrap();
    assert_eq!(v["selected"], "portable");
}

#[test]
fn std_io_fallback_gives_identical_results() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "b"]);
    let data = pattern(300_000, 4);
    let f = write(&s.tmp("in"), &data);
    s.ok(&["--io", "std", "put", "b/x", &f]);
    let via_env = s.run_env(&["get", "b/x"], &[("DARE_IO", "std")]);
    assert!(via_env.status.success());
    assert_eq!(via_env.stdout, data);
    if dare_engine::storage::uring_available() {
        assert_eq!(s.ok(&["--io", "uring", "get", "b/x"]), data);
    }
}
