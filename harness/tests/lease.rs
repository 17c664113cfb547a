//! The rotation lease through the binary (KEYS.md §8.2): a `dare` process that dies in the
//! middle of a rotation — the crash hook sends it SIGKILL right after a step: no cleanup, the
//! lease stays in the database — leaves its lease behind.
//! `keys rotation status` shows the dead process as the owner with the lease's expiry; a
//! `resume` by another process before the expiry is refused naming that owner (or waits, with
//! `--wait`); a resume after it takes the lease over, finishes the rotation, and every object
//! still reads.
//!
//! The crashed runner's lease is shortened with `DARE_LEASE_TTL_MS`, which only test builds
//! (feature `test-hooks`) read, as they read the crash hook's `DARE_CRASH_AFTER_STEP`.
//!
//! On SQLite (one store directory) and, last, on a PostgreSQL server shared by two nodes
//! (a server started here with dare-testkit; without PostgreSQL installed that test fails,
//! saying how to install it).

mod common;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Store, hooked_dare, pattern, write};
use dare_testkit::PgServer;
use serde_json::Value;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A store with objects written before any rotation; returns the store and the objects.
fn store_with_objects() -> (Store, Vec<(String, Vec<u8>)>) {
    let s = Store::new_hooked(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let mut objects = Vec::new();
    for i in 0..4u64 {
        let data = pattern(1000 + i as usize * 3000, i);
        let t = format!("bkt/o{i}");
        s.ok(&["put", &t, &write(&s.tmp("in"), &data)]);
        objects.push((t, data));
    }
    (s, objects)
}

/// Runs `dare keys rotate --wait` with the crash hook after `step` and a lease of `ttl_ms`;
/// returns the pid of the process that died.
fn crash_rotation(s: &Store, step: u8, ttl_ms: u64) -> u32 {
    let mut child = s
        .cmd(&["keys", "rotate", "--wait"])
        .env("DARE_CRASH_AFTER_STEP", step.to_string())
        .env("DARE_LEASE_TTL_MS", ttl_ms.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let status = child.wait().unwrap();
    assert!(
        status.code().is_none(),
        "the crash hook did not fire after step {step}: {status:?}"
    );
    pid
}

fn status(s: &Store) -> Value {
    s.json(&["keys", "rotation", "status", "--json"])
}

fn all_read(s: &Store, objects: &[(String, Vec<u8>)], when: &str) {
    for (t, data) in objects {
        assert_eq!(&s.ok(&["get", t]), data, "{t} {when}");
    }
}

/// Checks a finished rotation: completed, the lease free with token 2 (the dead runner's
/// acquisition, then the resume's), every object readable, and rewrap moves them all.
fn finished(s: &Store, objects: &[(String, Vec<u8>)]) {
    let st = status(s);
    let task = &st["task"];
    assert_eq!(task["state"], "completed", "{st}");
    assert_eq!(task["step"], 5, "{st}");
    assert_eq!(task["lease"]["state"], "free", "{st}");
    assert_eq!(task["lease"]["owner"], Value::Null, "{st}");
    assert_eq!(task["lease"]["token"], 2, "{st}");
    all_read(s, objects, "after the resume");
    s.ok(&["keys", "rewrap", "--all"]);
    for (t, data) in objects {
        assert_eq!(&s.ok(&["get", t]), data, "{t} after rewrap");
        let h = s.json(&["head", t, "--json"]);
        assert_eq!(h["key_ref"]["rotation_version"], 2, "{t}");
    }
}

/// Before the crashed runner's lease expires: status names the dead process and the expiry,
/// a resume is refused with a message naming the owner, reads go on; `resume --wait` waits
/// for the expiry and finishes the rotation.
#[test]
fn a_crashed_runners_lease_refuses_resume_until_it_expires() {
    let (s, objects) = store_with_objects();
    // Long enough that the commands below run well within it.
    let pid = crash_rotation(&s, 2, 5000);

    let st = status(&s);
    let task = &st["task"];
    assert_eq!(
        (task["state"].as_str(), task["step"].as_u64()),
        (Some("running"), Some(2)),
        "{st}"
    );
    let lease = &task["lease"];
    assert_eq!(lease["state"], "held", "{st}");
    assert_eq!(lease["token"], 1, "{st}");
    let owner = lease["owner"].as_str().expect("an owner").to_owned();
    assert!(
        owner.contains(&format!(":{pid}:")),
        "the owner {owner} does not name the dead process {pid}"
    );
    let expires = lease["expires_ms"].as_u64().expect("an expiry");
    assert!(lease["expires"].as_str().unwrap().ends_with('Z'), "{st}");

    let human = String::from_utf8(s.ok(&["keys", "rotation", "status"])).unwrap();
    let line = human
        .lines()
        .find(|l| l.starts_with("lease:"))
        .unwrap_or_else(|| panic!("no lease line in:\n{human}"));
    assert!(
        line.contains(&format!("held by {owner} until ")) && line.contains("(token 1)"),
        "{line}"
    );

    // Reads and writes go on while the rotation is stuck.
    all_read(&s, &objects, "while the lease is held");

    let (code, err) = s.fails(&["keys", "rotation", "resume"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&owner) && err.contains("lease") && err.contains("--wait"),
        "the refusal should name the owner and the way out: {err}"
    );
    let again = status(&s);
    assert_eq!(
        again["task"]["step"], 2,
        "a refused resume ran a step: {again}"
    );
    assert_eq!(again["task"]["lease"]["token"], 1, "{again}");

    let o = s.run(&["keys", "rotation", "resume", "--wait"]);
    assert!(
        o.status.success(),
        "resume --wait: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // It could only take over once the dead runner's lease had expired (one clock here).
    assert!(now_ms() > expires);
    let note = String::from_utf8_lossy(&o.stderr);
    assert!(note.contains(&owner) && note.contains("waiting"), "{note}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("completed") && out.contains("lease:       free (token 2)"),
        "{out}"
    );
    finished(&s, &objects);
}

/// After the crashed runner's lease expired: status shows it expired and left by the dead
/// process; a plain `resume` takes it over and finishes; new objects use the new key.
#[test]
fn a_resume_after_the_lease_expired_finishes_the_rotation() {
    let (s, mut objects) = store_with_objects();
    let pid = crash_rotation(&s, 3, 300);

    // Wait (without asserting how long) until the CLI sees the lease expired.
    let start = Instant::now();
    let st = loop {
        let st = status(&s);
        if st["task"]["lease"]["state"] == "expired" {
            break st;
        }
        assert_eq!(st["task"]["lease"]["state"], "held", "{st}");
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the lease never expired: {st}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let owner = st["task"]["lease"]["owner"].as_str().unwrap().to_owned();
    assert!(owner.contains(&format!(":{pid}:")), "{owner}");
    assert_eq!(st["task"]["step"], 3, "{st}");
    let human = String::from_utf8(s.ok(&["keys", "rotation", "status"])).unwrap();
    assert!(
        human.contains(&format!("left by {owner} (token 1)")),
        "{human}"
    );

    // A new object written while the rotation is stuck after step 3 uses the new key.
    let data = pattern(5000, 99);
    s.ok(&["put", "bkt/during", &write(&s.tmp("in"), &data)]);
    objects.push(("bkt/during".into(), data));

    let out = String::from_utf8(s.ok(&["keys", "rotation", "resume"])).unwrap();
    assert!(out.contains("completed"), "{out}");
    finished(&s, &objects);
}

/// A node of a store whose metadata is on PostgreSQL: the binary with the test hooks, the
/// shared store directory, the database URL in the environment.
struct PgNode {
    bin: PathBuf,
    store: PathBuf,
    url: String,
}

impl PgNode {
    fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.bin);
        for v in [
            "DARE_STORE",
            "DARE_METADATA_URL",
            "DARE_PASSPHRASE_FILE",
            "DARE_AEAD_BACKEND",
            "DARE_IO",
            "DARE_CRASH_AFTER_STEP",
            "DARE_LEASE_TTL_MS",
        ] {
            c.env_remove(v);
        }
        c.arg("--store")
            .arg(&self.store)
            .env("DARE_METADATA_URL", &self.url)
            .args(args);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Vec<u8> {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "dare {args:?} failed ({:?}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr)
        );
        o.stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_slice(&self.ok(args)).unwrap()
    }
}

/// Two nodes on one PostgreSQL database and one store directory: node A starts a rotation
/// and dies after step 3 with the lease; node B sees A as the owner, is refused until the
/// lease expires, then (`--wait`) takes it over and finishes; every object A wrote — before
/// and during the rotation — reads back on B and on A.
#[test]
fn postgres_a_node_that_died_mid_rotation_is_taken_over_by_another() {
    let server = PgServer::start();
    let url = server.create_database("lease_cli");
    let dir = tempfile::tempdir().unwrap();
    let node = || PgNode {
        bin: hooked_dare().to_path_buf(),
        store: dir.path().join("store"),
        url: url.clone(),
    };
    let (a, b) = (node(), node());
    a.ok(&["init", "--chunk-size", "4096"]);
    a.ok(&["bucket", "create", "shared"]);
    let mut objects = Vec::new();
    for i in 0..3u64 {
        let data = pattern(2000 + i as usize * 5000, 40 + i);
        let t = format!("shared/o{i}");
        a.ok(&["put", &t, &write(&dir.path().join("in"), &data)]);
        objects.push((t, data));
    }

    let mut child = a
        .cmd(&["keys", "rotate", "--wait"])
        .env("DARE_CRASH_AFTER_STEP", "3")
        .env("DARE_LEASE_TTL_MS", "3000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(
        child.wait().unwrap().code().is_none(),
        "the crash hook did not fire"
    );

    let st = b.json(&["keys", "rotation", "status", "--json"]);
    let lease = &st["task"]["lease"];
    assert_eq!(
        (st["task"]["step"].as_u64(), lease["state"].as_str()),
        (Some(3), Some("held")),
        "{st}"
    );
    let owner = lease["owner"].as_str().unwrap().to_owned();
    assert!(owner.contains(&format!(":{pid}:")), "{owner}");
    let o = b.run(&["keys", "rotation", "resume"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(&owner), "{err}");
    assert!(!err.contains(server.password()), "{err}");

    // B writes during the stuck rotation, under the new rotation key (step 3 switched it).
    let data = pattern(7000, 77);
    b.ok(&[
        "put",
        "shared/during",
        &write(&dir.path().join("in"), &data),
    ]);
    let h = b.json(&["head", "shared/during", "--json"]);
    assert_eq!(h["key_ref"]["rotation_version"], 2, "{h}");
    objects.push(("shared/during".into(), data));

    b.ok(&["keys", "rotation", "resume", "--wait"]);
    let st = b.json(&["keys", "rotation", "status", "--json"]);
    assert_eq!(st["task"]["state"], "completed", "{st}");
    assert_eq!(
        (
            st["task"]["lease"]["state"].as_str(),
            st["task"]["lease"]["token"].as_u64()
        ),
        (Some("free"), Some(2)),
        "{st}"
    );
    for n in [&a, &b] {
        for (t, data) in &objects {
            assert_eq!(&n.ok(&["get", t]), data, "{t}");
        }
    }
    b.ok(&["keys", "rewrap", "--all"]);
    for (t, data) in &objects {
        assert_eq!(&a.ok(&["get", t]), data, "{t} after rewrap");
    }
}
