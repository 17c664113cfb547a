//! What the end-to-end tests share: a store in a temporary directory driven through the real
//! `dare` binary, deterministic data, and where an object's data file is
//! (`<store>/objects/<bucket id>/<xx>/<object id hex>`, FORMAT.md), found the way an operator
//! would: the object id from `dare head --json`, the bucket id from `dare bucket ls --json`.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Environment variables the binary reads; the tests set them explicitly when they mean to.
const DARE_ENV: [&str; 12] = [
    "DARE_STORE",
    "DARE_METADATA_URL",
    "DARE_AEAD_BACKEND",
    "DARE_IO",
    "DARE_PASSPHRASE_FILE",
    "DARE_HSM_MODULE",
    "DARE_HSM_TOKEN",
    "DARE_HSM_KEY",
    "DARE_HSM_PIN_FILE",
    "DARE_HSM_PIN",
    "DARE_CRASH_AFTER_STEP",
    "DARE_TEST_NOW",
];

/// The `dare` binary under test.
pub fn dare() -> Command {
    command(Path::new(env!("CARGO_BIN_EXE_dare")))
}

fn command(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    for v in DARE_ENV {
        c.env_remove(v);
    }
    c
}

/// Whether `bin` has the rotation crash hook: on a scratch store, `keys rotate --wait` with
/// the hook set to step 1 must be killed (SIGKILL).
fn has_crash_hook(bin: &Path) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], hook: bool| {
        let mut c = command(bin);
        c.arg("--store").arg(dir.path().join("s")).args(args);
        if hook {
            c.env("DARE_CRASH_AFTER_STEP", "1");
        }
        c.output().ok()
    };
    run(&["init", "--chunk-size", "4096"], false).is_some_and(|o| o.status.success())
        && run(&["keys", "rotate", "--wait"], true).is_some_and(|o| o.status.code().is_none())
}

/// The `dare` binary with the rotation crash hook compiled in (feature `test-hooks`, which
/// the self dev-dependency turns on for these tests). That is `CARGO_BIN_EXE_dare`, unless a
/// `cargo build` of the same profile ran after the tests were built: cargo shares
/// `target/<profile>/dare` between `cargo build` and `cargo test` and does not copy a fresh
/// binary back (rust-lang/cargo#11954), so it then holds the build without the hook, and the
/// hooked build is found beside it in `deps/` (newest first).
pub fn hooked_dare() -> &'static Path {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let main = PathBuf::from(env!("CARGO_BIN_EXE_dare"));
        if has_crash_hook(&main) {
            return main;
        }
        let deps = main.parent().unwrap().join("deps");
        let mut builds: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(&deps)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with("dare-") && !n.contains('.')
            })
            .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
            .collect();
        builds.sort();
        builds
            .into_iter()
            .rev()
            .map(|(_, p)| p)
            .find(|p| has_crash_hook(p))
            .unwrap_or_else(|| {
                panic!(
                    "no dare binary has the rotation crash hook: is dare-cli's `test-hooks` \
                     feature enabled for its tests (the self dev-dependency) and read in \
                     `rotation_options`?"
                )
            })
    })
}

pub struct Store {
    dir: tempfile::TempDir,
    pub path: PathBuf,
    bin: PathBuf,
}

impl Store {
    /// A new store with the given chunk size.
    pub fn new(chunk: u64) -> Store {
        let s = Store::empty();
        s.ok(&["init", "--chunk-size", &chunk.to_string()]);
        s
    }

    /// A new store driven by the binary with the rotation crash hook ([`hooked_dare`]).
    pub fn new_hooked(chunk: u64) -> Store {
        let mut s = Store::empty();
        s.bin = hooked_dare().to_path_buf();
        s.ok(&["init", "--chunk-size", &chunk.to_string()]);
        s
    }

    /// A temporary directory with no store yet at `path`.
    pub fn empty() -> Store {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        Store {
            dir,
            path,
            bin: PathBuf::from(env!("CARGO_BIN_EXE_dare")),
        }
    }

    /// A file beside the store.
    pub fn tmp(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The directory holding the store (and the `tmp` files).
    pub fn base(&self) -> &Path {
        self.dir.path()
    }

    /// `dare --store <store> ARGS`, ready to run.
    pub fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = command(&self.bin);
        c.arg("--store").arg(&self.path).args(args);
        c
    }

    /// `dare --store <other> ARGS` with this store's binary (a copy of the store, say).
    pub fn cmd_at<S: AsRef<OsStr>>(&self, store: &Path, args: &[S]) -> Command {
        let mut c = command(&self.bin);
        c.arg("--store").arg(store).args(args);
        c
    }

    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn run_env<S: AsRef<OsStr>>(&self, args: &[S], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// Runs a command that must succeed; returns its standard output.
    pub fn ok<S: AsRef<OsStr> + std::fmt::Debug>(&self, args: &[S]) -> Vec<u8> {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "dare {args:?} failed ({:?}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }

    /// Runs a command that must succeed and print JSON.
    pub fn json<S: AsRef<OsStr> + std::fmt::Debug>(&self, args: &[S]) -> Value {
        let out = self.ok(args);
        serde_json::from_slice(&out).unwrap_or_else(|e| {
            panic!(
                "dare {args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out)
            )
        })
    }

    /// Runs a command that must fail with one line on stderr and no panic; returns (exit
    /// status, stderr).
    pub fn fails<S: AsRef<OsStr> + std::fmt::Debug>(&self, args: &[S]) -> (i32, String) {
        let o = self.run(args);
        check_failure(&format!("{args:?}"), &o)
    }

    /// The id of a bucket, from `dare bucket ls --json`.
    pub fn bucket_id(&self, bucket: &str) -> u64 {
        let list = self.json(&["bucket", "ls", "--json"]);
        list.as_array()
            .unwrap()
            .iter()
            .find(|b| b["name"] == bucket)
            .unwrap_or_else(|| panic!("no bucket {bucket} in {list}"))["id"]
            .as_u64()
            .unwrap()
    }

    /// The object id of `bucket/name`, from `dare head --json`.
    pub fn object_id(&self, bucket: &str, name: &str) -> String {
        self.object_id_with(bucket, name, &[])
    }

    /// The object id, passing extra arguments to head (an SSE-C key).
    pub fn object_id_with(&self, bucket: &str, name: &str, extra: &[&str]) -> String {
        let mut args = vec![
            "head".to_string(),
            format!("{bucket}/{name}"),
            "--json".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        self.json(&args)["object_id"].as_str().unwrap().to_owned()
    }

    /// The data file of `bucket/name`.
    pub fn data_file(&self, bucket: &str, name: &str) -> PathBuf {
        self.data_file_with(bucket, name, &[])
    }

    pub fn data_file_with(&self, bucket: &str, name: &str, extra: &[&str]) -> PathBuf {
        let id = self.object_id_with(bucket, name, extra);
        self.data_path(self.bucket_id(bucket), &id)
    }

    /// Where the data file of object `id` (hex) of bucket `bucket_id` lives.
    pub fn data_path(&self, bucket_id: u64, id: &str) -> PathBuf {
        self.path
            .join("objects")
            .join(bucket_id.to_string())
            .join(&id[..2])
            .join(id)
    }

    /// Every file under `objects/` with its bytes.
    pub fn data_files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        walk(&self.path.join("objects"))
            .into_iter()
            .map(|p| {
                let b = fs::read(&p).unwrap();
                (p, b)
            })
            .collect()
    }

    /// Files in the temporary directory whose name contains `dare-partial` (a get's output
    /// in progress).
    pub fn partial_files(&self) -> Vec<PathBuf> {
        fs::read_dir(self.base())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("dare-partial"))
            .collect()
    }
}

/// Checks a failed run: non-zero exit, one line on stderr, no panic. Returns (exit status,
/// stderr).
pub fn check_failure(what: &str, o: &Output) -> (i32, String) {
    assert!(!o.status.success(), "dare {what} unexpectedly succeeded");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "dare {what}: error should be one line: {err:?}"
    );
    assert!(err.starts_with("dare: error: "), "dare {what}: {err:?}");
    assert!(!err.contains("panicked"), "dare {what}: {err}");
    (o.status.code().unwrap_or(-1), err)
}

/// Every file under `dir`, recursively, sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Deterministic bytes (xorshift), different for every seed.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
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

/// Writes `data` to `p` and returns the path as a string argument.
/// Writes `data` to a new file `p` of mode 0600 (replacing any file there): inputs hold
/// plaintext or keys, and dare refuses key and passphrase files others may read.
pub fn write(p: &Path, data: &[u8]) -> String {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = fs::remove_file(p);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .and_then(|mut f| f.write_all(data))
        .unwrap();
    p.to_str().unwrap().to_owned()
}

/// splitmix64, for the tests that pick random moments; seeded so a failure replays.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `DARE_TEST_SEED` if set, else from the clock; the seed is printed (the
    /// test harness shows it when the test fails).
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("DARE_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: seed {seed} (replay with DARE_TEST_SEED={seed})");
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
