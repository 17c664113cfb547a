//! `dare site` end to end through the real binary (docs/KEYS.md §8.5, ECS §2.5): site A (root
//! key file) and site B (a passphrase file) in two store directories on one PostgreSQL
//! database (started here with dare-testkit) and one data directory. B runs `site init`, A
//! `site grant`, B reads A's object and writes one A reads, A rotates and B follows, `site
//! list --json` on both, a garbage public key and a revoked site fail with one line and a
//! non-zero exit. Without PostgreSQL installed this test fails, saying how to install it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use dare_testkit::PgServer;
use serde_json::Value;

/// One site: the `dare` binary on its own store directory, the shared database, and its own
/// root flags.
struct Site {
    store: PathBuf,
    url: String,
    root: Vec<String>,
}

impl Site {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dare"));
        for v in [
            "DARE_STORE",
            "DARE_METADATA_URL",
            "DARE_PASSPHRASE_FILE",
            "DARE_AEAD_BACKEND",
            "DARE_IO",
        ] {
            c.env_remove(v);
        }
        c.arg("--store").arg(&self.store);
        c.env("DARE_METADATA_URL", &self.url);
        c.args(&self.root);
        c.args(args);
        c
    }

    fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut c = self.cmd(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn dare");
        let mut input = child.stdin.take().expect("stdin");
        if let Some(data) = stdin {
            input.write_all(data).expect("write stdin");
        }
        drop(input);
        child.wait_with_output().expect("wait dare")
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> Vec<u8> {
        self.ok_in(args, None)
    }

    #[track_caller]
    fn ok_in(&self, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
        let o = self.run(args, stdin);
        assert!(
            o.status.success(),
            "dare {args:?} failed ({:?}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }

    #[track_caller]
    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_slice(&self.ok(args)).expect("JSON output")
    }

    /// A command that must fail: its exit status and its one-line error.
    #[track_caller]
    fn fails(&self, args: &[&str]) -> (i32, String) {
        let o = self.run(args, None);
        assert!(!o.status.success(), "dare {args:?} succeeded");
        let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        (o.status.code().unwrap_or(-1), err)
    }
}

fn secret_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    p
}

#[test]
fn a_site_joins_through_the_dare_binary() {
    let server = PgServer::start();
    let url = server.create_database("sites");
    let tmp = tempfile::tempdir().unwrap();
    let pass = secret_file(tmp.path(), "b.pass", "site B passphrase, its own\n");
    let a = Site {
        store: tmp.path().join("a"),
        url: url.clone(),
        root: vec![],
    };
    let b = Site {
        store: tmp.path().join("b"),
        url: url.clone(),
        root: vec!["--passphrase-file".into(), pass.display().to_string()],
    };

    a.ok(&["init", "--chunk-size", "4096"]);
    a.ok(&["bucket", "create", "photos"]);
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7) as u8).collect();
    a.ok_in(&["put", "photos/from-a", "-"], Some(&data));

    let objects = a.store.join("objects");
    let init = b.json(&[
        "site",
        "init",
        "--objects",
        objects.to_str().unwrap(),
        "--json",
    ]);
    let pem_file = PathBuf::from(init["public_key_file"].as_str().unwrap());
    let fp = init["fingerprint"].as_str().unwrap().to_string();
    assert_eq!(fp.len(), 64);
    assert_eq!(init["bits"], 3072);
    assert_eq!(
        fs::read_to_string(&pem_file).unwrap(),
        init["public_key"].as_str().unwrap()
    );

    // Not granted yet: one line, naming the fingerprint.
    let (code, err) = b.fails(&["get", "photos/from-a"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no grant") && err.contains(&fp), "{err}");

    // A garbage public key: refused, nothing recorded.
    let junk = secret_file(tmp.path(), "junk.pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n");
    let (_, err) = a.fails(&["site", "grant", junk.to_str().unwrap(), "--site-name", "b"]);
    assert!(err.contains("not a site public key"), "{err}");
    assert_eq!(
        a.json(&["site", "list", "--json"])["sites"],
        Value::Array(vec![])
    );

    let granted = a.json(&[
        "site",
        "grant",
        pem_file.to_str().unwrap(),
        "--site-name",
        "site-b",
        "--json",
    ]);
    assert_eq!(granted["name"], "site-b");
    assert_eq!(granted["fingerprint"], fp.as_str());
    assert_eq!(granted["keys"], 2);

    // B reads A's object and writes one A reads.
    assert_eq!(b.ok(&["get", "photos/from-a"]), data);
    b.ok_in(&["put", "photos/from-b", "-"], Some(b"written at site B"));
    assert_eq!(a.ok(&["get", "photos/from-b"]), b"written at site B");
    let listed = b.json(&["site", "list", "--json"]);
    assert_eq!(listed["this_site"], fp.as_str());
    assert_eq!(listed["sites"][0]["name"], "site-b");

    // B cannot rotate; A rotates and B follows.
    let (_, err) = b.fails(&["keys", "rotate", "--wait"]);
    assert!(err.contains("cannot create master keys"), "{err}");
    a.ok(&["keys", "rotate", "--wait"]);
    b.ok_in(&["put", "photos/b-after", "-"], Some(b"after the rotation"));
    let head = b.json(&["head", "photos/b-after", "--json"]);
    assert_eq!(head["key_ref"]["rotation_version"], 2);
    assert_eq!(a.ok(&["get", "photos/b-after"]), b"after the rotation");
    assert_eq!(b.ok(&["get", "photos/from-a"]), data);
    assert_eq!(a.json(&["site", "list", "--json"])["sites"][0]["keys"], 3);

    // Revoked: B can no longer open the store.
    a.ok(&["site", "revoke", "site-b"]);
    let (_, err) = b.fails(&["get", "photos/from-a"]);
    assert!(err.contains("no grant"), "{err}");
    let (code, _) = a.fails(&["site", "revoke", "site-b"]);
    assert_eq!(code, 3);
}
