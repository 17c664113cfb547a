//! `dare kms ...` and SSE-KMS buckets through the binary: the CMK state machine and its rules,
//! rotation (manual and by policy, driven by `kms tick`), scheduled deletion, data keys and
//! small-data encryption with contexts, imported key material wrapped by `openssl`, buckets
//! under a CMK, and the audit trail against direct edits of the database.
//!
//! Time is the test's: the binary under test is built with the `test-hooks` feature, which
//! reads `DARE_TEST_NOW` (Unix ms or RFC 3339) as the key management service's clock, so a
//! 400-day rotation period or a 7-day deletion window passes between two commands.

mod common;

use std::cell::Cell;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Store, check_failure, pattern, write};
use serde_json::Value;

const HOUR: u64 = 3_600_000;
const DAY: u64 = 24 * HOUR;
/// 2030-01-01T00:00:00Z.
const T0: u64 = 1_893_456_000_000;

/// A store and the time its commands run at.
struct Kms {
    s: Store,
    now: Cell<u64>,
}

impl Kms {
    fn new() -> Kms {
        Kms {
            s: Store::new_hooked(4096),
            now: Cell::new(T0),
        }
    }

    fn advance(&self, ms: u64) {
        self.now.set(self.now.get() + ms);
    }

    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        let mut c = self.s.cmd(args);
        c.env("DARE_TEST_NOW", self.now.get().to_string());
        c.output().unwrap()
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

    fn text(&self, args: &[&str]) -> String {
        String::from_utf8(self.ok(args)).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ok(&a);
        serde_json::from_slice(&out).unwrap_or_else(|e| {
            panic!(
                "dare {a:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out)
            )
        })
    }

    /// Runs a command that must fail with one line on stderr: (exit status, stderr).
    fn fails(&self, args: &[&str]) -> (i32, String) {
        check_failure(&format!("{args:?}"), &self.run(args))
    }

    /// Fails with `code` and a message containing every one of `words`; returns the message.
    fn refused(&self, args: &[&str], code: i32, words: &[&str]) -> String {
        let (c, err) = self.fails(args);
        assert_eq!(c, code, "dare {args:?}: {err}");
        for w in words {
            assert!(err.contains(w), "dare {args:?}: {w:?} not in {err}");
        }
        err
    }

    fn tmp(&self, name: &str) -> PathBuf {
        self.s.tmp(name)
    }

    /// A key's description.
    fn describe(&self, key: &str) -> Value {
        self.json(&["kms", "describe", key])
    }

    fn state(&self, key: &str) -> String {
        self.describe(key)["state"].as_str().unwrap().to_owned()
    }

    fn create(&self, alias: &str) -> String {
        let k = self.json(&["kms", "create", "--alias", alias]);
        assert_eq!(k["state"], "enabled", "{k}");
        k["key_id"].as_str().unwrap().to_owned()
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn b64(v: &Value) -> Vec<u8> {
    B64.decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .unwrap()
}

fn iso(ms: u64) -> String {
    // The service's format: RFC 3339 with milliseconds. T0-relative times in the tests are
    // whole seconds, so compare on the seconds.
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[test]
fn the_clock_is_the_tests() {
    let k = Kms::new();
    let id = k.create("clock");
    assert!(
        k.describe(&id)["created"]
            .as_str()
            .unwrap()
            .starts_with("2030-01-01T00:00:00"),
        "{}",
        k.describe(&id)
    );
    // RFC 3339 works as well as Unix milliseconds.
    let mut c = k.s.cmd(&["kms", "create", "--alias", "clock2", "--json"]);
    c.env("DARE_TEST_NOW", "2031-06-01T12:00:00Z");
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["created"]
            .as_str()
            .unwrap()
            .starts_with("2031-06-01T12:00:00")
    );
    // A bad value is an error, not the system clock.
    let mut c = k.s.cmd(&["kms", "list"]);
    c.env("DARE_TEST_NOW", "yesterday");
    let (_, err) = check_failure("kms list", &c.output().unwrap());
    assert!(err.contains("DARE_TEST_NOW"), "{err}");
}

#[test]
fn life_cycle_states_and_rules() {
    let k = Kms::new();
    let id = k.create("app/a");
    let d = k.describe("app/a");
    assert_eq!(d["key_id"], id.as_str());
    assert_eq!(d["current_version"], 1);
    assert_eq!(d["origin"], "generated");
    let data = write(&k.tmp("data"), b"hello");

    // Disable: cryptographic operations refused; disabling again is a state error.
    let v = k.json(&["kms", "disable", "app/a"]);
    assert_eq!(v[0]["ok"], true, "{v}");
    assert_eq!(v[0]["info"]["state"], "disabled");
    let disabled = k.refused(
        &["kms", "encrypt", "app/a", "--in", &data],
        2,
        &["disabled", &id],
    );
    k.refused(
        &["kms", "disable", "app/a"],
        2,
        &["cannot disable", "disabled"],
    );
    k.refused(&["kms", "create-datakey", "app/a"], 2, &["disabled"]);
    // Enable, and enabling again is refused.
    let out = k.text(&["kms", "enable", "app/a"]);
    assert!(out.contains("enabled"), "{out}");
    k.refused(
        &["kms", "enable", "app/a"],
        2,
        &["cannot enable", "enabled"],
    );
    k.ok(&["kms", "encrypt", "app/a", "--in", &data]);

    // Deletion window: 7 to 1096 days.
    for bad in ["6", "1097", "0", "-1"] {
        k.refused(
            &["kms", "schedule-deletion", "app/a", "--days", bad],
            2,
            &["7 to 1096 days"],
        );
    }
    assert_eq!(k.state("app/a"), "enabled");
    let v = k.json(&["kms", "schedule-deletion", "app/a", "--days", "7"]);
    assert_eq!(v[0]["info"]["state"], "pending-deletion", "{v}");
    let due = v[0]["info"]["deletion_due"].as_str().unwrap();
    assert!(due.starts_with(&iso(T0 + 7 * DAY)), "{due}");
    let pending = k.refused(
        &["kms", "encrypt", "app/a", "--in", &data],
        2,
        &["pending deletion"],
    );
    k.refused(&["kms", "enable", "app/a"], 2, &["cannot enable"]);
    k.refused(&["kms", "disable", "app/a"], 2, &["cannot disable"]);
    k.refused(&["kms", "rotate", "app/a"], 2, &["pending deletion"]);
    k.refused(
        &["kms", "update-alias", "app/a", "app/b"],
        2,
        &["pending deletion"],
    );
    k.refused(
        &["kms", "schedule-deletion", "app/a", "--days", "8"],
        2,
        &["cannot schedule the deletion"],
    );
    // Cancel: disabled, not enabled.
    let v = k.json(&["kms", "cancel-deletion", "app/a"]);
    assert_eq!(v[0]["info"]["state"], "disabled", "{v}");
    assert_eq!(v[0]["info"]["deletion_due"], Value::Null);
    k.refused(
        &["kms", "cancel-deletion", "app/a"],
        2,
        &["cannot cancel the deletion"],
    );
    // Pending import: an external key before its material.
    k.json(&["kms", "create", "--alias", "ext", "--origin", "external"]);
    assert_eq!(k.state("ext"), "pending-import");
    let importing = k.refused(
        &["kms", "encrypt", "ext", "--in", &data],
        2,
        &["pending import"],
    );
    k.refused(&["kms", "enable", "ext"], 2, &["cannot enable"]);
    k.refused(&["kms", "disable", "ext"], 2, &["cannot disable"]);
    // Each refusal says what state refused it.
    assert_ne!(disabled, pending);
    assert_ne!(pending, importing);
    assert_ne!(disabled, importing);
    k.ok(&["kms", "enable", "app/a"]);

    // Aliases.
    k.refused(
        &["kms", "create", "--alias", "with space"],
        2,
        &["invalid alias", "not allowed"],
    );
    k.refused(&["kms", "create", "--alias", "a.b"], 2, &["invalid alias"]);
    k.refused(
        &["kms", "create", "--alias", &"x".repeat(256)],
        2,
        &["1 to 255", "256"],
    );
    k.create(&"x".repeat(255));
    k.refused(
        &["kms", "create", "--alias", "mine/default"],
        2,
        &["/default"],
    );
    k.refused(&["kms", "create", "--alias", "app/a"], 2, &["taken"]);
    k.refused(&["kms", "update-alias", "ext", "app/a"], 2, &["taken"]);
    k.refused(
        &["kms", "update-alias", "ext", "bad alias"],
        2,
        &["invalid alias"],
    );
    let v = k.json(&["kms", "update-alias", "ext", "ext2"]);
    assert_eq!(v["alias"], "ext2");
    k.refused(&["kms", "describe", "ext"], 3, &["ext"]);
    // Descriptions: at most 255 characters.
    k.refused(
        &[
            "kms",
            "create",
            "--alias",
            "d1",
            "--description",
            &"é".repeat(256),
        ],
        2,
        &["256 characters", "255"],
    );
    let v = k.json(&[
        "kms",
        "create",
        "--alias",
        "d1",
        "--description",
        &"é".repeat(255),
    ]);
    assert_eq!(v["description"].as_str().unwrap().chars().count(), 255);
    k.refused(
        &["kms", "update-description", "d1", &"d".repeat(256)],
        2,
        &["at most 255"],
    );
    let v = k.json(&["kms", "update-description", "d1", "photos"]);
    assert_eq!(v["description"], "photos");

    // Rotation policy: 30 to 365 days.
    for bad in ["29", "366"] {
        k.refused(
            &["kms", "rotation-policy", "app/a", "--enable", "--days", bad],
            2,
            &["30 to 365 days"],
        );
    }
    let v = k.json(&[
        "kms",
        "rotation-policy",
        "app/a",
        "--enable",
        "--days",
        "30",
    ]);
    assert_eq!(v["rotation"]["enabled"], true);
    assert_eq!(v["rotation"]["period_days"], 30);
    let v = k.json(&["kms", "rotation-policy", "app/a", "--enable"]);
    assert_eq!(v["rotation"]["period_days"], 365, "the default period");
    let v = k.json(&["kms", "rotation-policy", "app/a", "--disable"]);
    assert_eq!(v["rotation"]["enabled"], false);
    // Neither --enable nor --disable: a usage error of the command line.
    assert_eq!(
        k.run(&["kms", "rotation-policy", "app/a"]).status.code(),
        Some(2)
    );

    // Manual rotation: at most once an hour.
    let v = k.json(&["kms", "rotate", "app/a"]);
    assert_eq!(v["current_version"], 2);
    k.advance(59 * 60_000);
    k.refused(&["kms", "rotate", "app/a"], 2, &["less than an hour"]);
    k.advance(61_000);
    let v = k.json(&["kms", "rotate", "app/a"]);
    assert_eq!(v["current_version"], 3);
    assert_eq!(v["rotation"]["rotations"], 2);
    assert_eq!(v["versions"].as_array().unwrap().len(), 3);
    let text = k.text(&["kms", "describe", "app/a"]);
    for want in [
        "key id:",
        "state:                   enabled",
        "current version:         3",
        "min decryption version:  1",
        "rotation:",
        "deletion due:",
        "material expires:",
        "version 1",
        "version 3",
        "registrations:           0",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }

    // Unknown keys: exit status 3.
    k.refused(
        &["kms", "describe", "5d0c1f7e-8a52-4bb6-9a3c-1f2e3d4c5b6a"],
        3,
        &["no customer master key"],
    );
    k.refused(&["kms", "enable", "nosuch"], 3, &["nosuch"]);
}

#[test]
fn default_master_key_refuses_changes() {
    let k = Kms::new();
    let b = k.json(&["bucket", "create", "bkt", "--sse-kms"]);
    let d = k.describe("dare/default");
    assert_eq!(d["default_key"], true);
    assert_eq!(b["kms_key_id"], d["key_id"], "{b}");
    for args in [
        vec!["kms", "disable", "dare/default"],
        vec!["kms", "disable", "dare/default", "--force"],
        vec!["kms", "schedule-deletion", "dare/default", "--days", "7"],
        vec!["kms", "update-alias", "dare/default", "other"],
        vec!["kms", "update-description", "dare/default", "x"],
        vec!["kms", "rotate", "dare/default"],
        vec!["kms", "rotation-policy", "dare/default", "--enable"],
    ] {
        k.refused(&args, 2, &["dare/default", "default master key"]);
    }
    assert_eq!(k.state("dare/default"), "enabled");
}

#[test]
fn batches_report_each_key() {
    let k = Kms::new();
    let a = k.create("b1");
    k.create("b2");
    k.ok(&["kms", "disable", "b2"]);
    // b1 enabled (enable refused), b2 disabled (enabled), nosuch (not found).
    let o = k.run(&["kms", "enable", "b1", "b2", "nosuch"]);
    let (code, err) = check_failure("kms enable b1 b2 nosuch", &o);
    assert_eq!(code, 2, "the first failure's status: {err}");
    assert!(err.contains("2 of 3 keys failed"), "{err}");
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("b1: failed: cannot enable"), "{out}");
    assert!(
        lines[1].contains("b2") && lines[1].ends_with("enabled"),
        "{out}"
    );
    assert!(lines[2].starts_with("nosuch: failed:"), "{out}");
    assert_eq!(k.state("b2"), "enabled");

    // JSON: an array of per-key results; the first failure (not found) gives 3.
    let o = k.run(&["kms", "disable", "nosuch", "b1", "b2", "--json"]);
    assert_eq!(o.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v[0]["key"], "nosuch");
    assert_eq!(v[0]["ok"], false);
    assert_eq!(v[0]["error"], "NotFound");
    assert!(v[0]["message"].as_str().unwrap().contains("nosuch"));
    assert_eq!(v[1]["ok"], true);
    assert_eq!(v[1]["info"]["key_id"], a.as_str());
    assert_eq!(v[1]["info"]["state"], "disabled");
    assert_eq!(v[2]["info"]["state"], "disabled");

    // All succeed: exit 0.
    let v = k.json(&["kms", "schedule-deletion", "b1", "b2", "--days", "30"]);
    assert!(v.as_array().unwrap().iter().all(|i| i["ok"] == true), "{v}");
    let v = k.json(&["kms", "cancel-deletion", "b1", "b2"]);
    assert!(v.as_array().unwrap().iter().all(|i| i["ok"] == true), "{v}");
    // describe with several keys: an array too; with one, the key.
    let v = k.json(&["kms", "describe", "b1", "b2"]);
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[1]["info"]["alias"], "b2");
    let o = k.run(&["kms", "describe", "b1", "gone"]);
    assert_eq!(o.status.code(), Some(3));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("key id:") && text.contains("gone: failed"),
        "{text}"
    );
    assert_eq!(k.describe("b1")["alias"], "b1");

    // list: filters and pages.
    let l = k.json(&["kms", "list"]);
    assert_eq!(l["total"], 2, "{l}");
    let l = k.json(&["kms", "list", "--state", "disabled", "--limit", "1"]);
    assert_eq!(l["keys"].as_array().unwrap().len(), 1);
    assert_eq!(l["total"], 2);
    let m = l["next_marker"].as_str().unwrap().to_owned();
    let l2 = k.json(&["kms", "list", "--state", "disabled", "--marker", &m]);
    assert_eq!(l2["keys"].as_array().unwrap().len(), 1);
    assert_ne!(l2["keys"][0]["key_id"], l["keys"][0]["key_id"]);
    assert_eq!(l2["next_marker"], Value::Null);
    let l = k.json(&["kms", "list", "--alias", "2"]);
    assert_eq!(l["keys"][0]["alias"], "b2");
    assert_eq!(k.json(&["kms", "list", "--state", "enabled"])["total"], 0);
}

#[test]
fn rotation_policy_is_carried_out_by_tick_from_the_last_rotation() {
    let k = Kms::new();
    k.create("long");
    k.create("short");
    for a in ["long", "short"] {
        k.json(&["kms", "rotation-policy", a, "--enable"]);
        k.ok(&["kms", "disable", a]);
    }
    let tick = |k: &Kms| k.json(&["kms", "tick"]);
    // Day 100: `short` is enabled again; nothing is due.
    k.advance(100 * DAY);
    k.ok(&["kms", "enable", "short"]);
    let r = tick(&k);
    assert_eq!(r["rotated"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(k.describe("short")["current_version"], 1);
    // Day 370: `long`'s period has passed but it is disabled: not rotated; `short`, enabled
    // since day 100 with its last rotation at day 0, is.
    k.advance(270 * DAY);
    let r = tick(&k);
    assert_eq!(r["rotated"].as_array().unwrap().len(), 1, "{r}");
    assert!(r["rotated"][0].as_str().unwrap().contains("short"), "{r}");
    assert_eq!(k.describe("short")["current_version"], 2);
    assert_eq!(k.describe("long")["current_version"], 1);
    // Day 400: `long` is enabled again, and the next tick rotates it at once.
    k.advance(30 * DAY);
    k.ok(&["kms", "enable", "long"]);
    let r = tick(&k);
    assert_eq!(r["rotated"].as_array().unwrap().len(), 1, "{r}");
    assert!(r["rotated"][0].as_str().unwrap().contains("long"), "{r}");
    let d = k.describe("long");
    assert_eq!(d["current_version"], 2);
    assert!(
        d["rotation"]["last_rotation"]
            .as_str()
            .unwrap()
            .starts_with(&iso(T0 + 400 * DAY)),
        "{d}"
    );
    assert!(
        d["rotation"]["next_rotation"]
            .as_str()
            .unwrap()
            .starts_with(&iso(T0 + 765 * DAY)),
        "{d}"
    );
    // Nothing further is due.
    let r = tick(&k);
    assert_eq!(r["rotated"].as_array().unwrap().len(), 0, "{r}");
    assert!(k.text(&["kms", "tick"]).contains("nothing was due"));
}

#[test]
fn scheduled_deletion_is_carried_out_by_tick() {
    let k = Kms::new();
    let id = k.create("doomed");
    let data = write(&k.tmp("data"), b"secret words");
    let ct = k.tmp("ct");
    k.ok(&["kms", "encrypt", "doomed", "--in", &data, "--out", p(&ct)]);
    k.ok(&["kms", "schedule-deletion", "doomed", "--days", "7"]);
    k.advance(7 * DAY - 1000);
    let r = k.json(&["kms", "tick"]);
    assert_eq!(r["deleted"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(k.state("doomed"), "pending-deletion");
    k.refused(
        &["kms", "decrypt", "--in", p(&ct)],
        2,
        &["pending deletion"],
    );
    k.advance(1000);
    let r = k.json(&["kms", "tick"]);
    assert_eq!(r["deleted"].as_array().unwrap().len(), 1, "{r}");
    assert!(r["deleted"][0].as_str().unwrap().contains(&id), "{r}");
    // The alias is gone with it; the id names a deleted key.
    k.refused(&["kms", "describe", "doomed"], 3, &["doomed"]);
    k.refused(&["kms", "describe", &id], 2, &["was deleted"]);
    let err = k.refused(
        &["kms", "decrypt", "--in", p(&ct)],
        2,
        &[&id, "was deleted", "cannot be decrypted"],
    );
    assert!(!err.contains("secret words"), "{err}");
    let l = k.json(&["kms", "list", "--state", "deleted"]);
    assert_eq!(l["keys"][0]["key_id"], id.as_str(), "{l}");
    assert_eq!(k.json(&["kms", "list"])["total"], 0);
    // The alias is free again.
    k.create("doomed");
}

#[test]
fn data_keys_encryption_contexts_and_rewrap() {
    let k = Kms::new();
    let id = k.create("dk");
    let other = k.create("other");

    // create-datakey: 256 and 512 bits, round trip through decrypt-datakey.
    for (bits, len) in [("256", 32), ("512", 64)] {
        let v = k.json(&["kms", "create-datakey", "dk", "--bits", bits]);
        assert_eq!(v["key_id"], id.as_str());
        assert_eq!(v["version"], 1);
        let pt = b64(&v["plaintext"]);
        assert_eq!(pt.len(), len);
        let ctf = k.tmp(&format!("dk{bits}.b64"));
        write(&ctf, v["ciphertext"].as_str().unwrap().as_bytes());
        let d = k.json(&["kms", "decrypt-datakey", "--in", p(&ctf)]);
        assert_eq!(b64(&d["plaintext"]), pt);
        assert_eq!(d["key_id"], id.as_str());
        // Human output: the plaintext on one line of base64.
        let text = k.text(&["kms", "decrypt-datakey", "--in", p(&ctf)]);
        assert_eq!(B64.decode(text.trim()).unwrap(), pt);
    }
    k.refused(
        &["kms", "create-datakey", "dk", "--bits", "128"],
        2,
        &["256 or 512"],
    );
    // Without the plaintext.
    let v = k.json(&["kms", "create-datakey", "dk", "--without-plaintext"]);
    assert_eq!(v["plaintext"], Value::Null);
    let ctf = write(
        &k.tmp("np.b64"),
        v["ciphertext"].as_str().unwrap().as_bytes(),
    );
    let d = k.json(&["kms", "decrypt-datakey", "--in", &ctf]);
    assert_eq!(b64(&d["plaintext"]).len(), 32);
    // To files: mode 0600, raw bytes; an existing file is never replaced.
    let (ptf, ctf) = (k.tmp("dk.key"), k.tmp("dk.ct"));
    let text = k.text(&[
        "kms",
        "create-datakey",
        "dk",
        "--plaintext-out",
        p(&ptf),
        "--ciphertext-out",
        p(&ctf),
    ]);
    assert!(text.contains("plaintext:  written to"), "{text}");
    for f in [&ptf, &ctf] {
        assert_eq!(fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let key = fs::read(&ptf).unwrap();
    assert_eq!(key.len(), 32);
    let out = k.tmp("dk.out");
    k.ok(&["kms", "decrypt-datakey", "--in", p(&ctf), "--out", p(&out)]);
    assert_eq!(fs::read(&out).unwrap(), key);
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    k.refused(
        &["kms", "decrypt-datakey", "--in", p(&ctf), "--out", p(&out)],
        2,
        &["exists"],
    );
    // encrypt-datakey: a key we hold.
    let mine = write(&k.tmp("mine.key"), &pattern(64, 7));
    let ct = k.tmp("mine.ct");
    k.ok(&[
        "kms",
        "encrypt-datakey",
        "dk",
        "--in",
        &mine,
        "--out",
        p(&ct),
    ]);
    let d = k.json(&["kms", "decrypt-datakey", "--in", p(&ct)]);
    assert_eq!(b64(&d["plaintext"]), pattern(64, 7));
    let short = write(&k.tmp("short.key"), &[1u8; 20]);
    k.refused(
        &["kms", "encrypt-datakey", "dk", "--in", &short],
        2,
        &["32 or 64"],
    );
    // A data key ciphertext is not data, and the other way round.
    k.refused(&["kms", "decrypt", "--in", p(&ct)], 2, &["decrypt-datakey"]);

    // encrypt / decrypt with an encryption context.
    let msg = pattern(1000, 1);
    let data = write(&k.tmp("msg"), &msg);
    let ct = k.tmp("msg.ct");
    k.ok(&[
        "kms",
        "encrypt",
        "dk",
        "--in",
        &data,
        "--context",
        "app=photos",
        "--context",
        "user=7",
        "--out",
        p(&ct),
    ]);
    let d = k.json(&[
        "kms",
        "decrypt",
        "--in",
        p(&ct),
        "--context",
        "user=7",
        "--context",
        "app=photos",
    ]);
    assert_eq!(b64(&d["plaintext"]), msg);
    assert_eq!(d["version"], 1);
    for ctx in [
        vec![],
        vec!["--context", "app=photos"],
        vec!["--context", "app=photos", "--context", "user=8"],
        vec![
            "--context",
            "app=photos",
            "--context",
            "user=7",
            "--context",
            "x=y",
        ],
    ] {
        let mut args = vec!["kms", "decrypt", "--in", p(&ct)];
        args.extend(ctx);
        k.refused(&args, 4, &["failed authentication"]);
    }
    // Tampered and truncated ciphertexts.
    let good = fs::read(&ct).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n / 2] ^= 1;
    let badf = write(&k.tmp("bad.ct"), &bad);
    let err = k.refused(
        &[
            "kms",
            "decrypt",
            "--in",
            &badf,
            "--context",
            "app=photos",
            "--context",
            "user=7",
        ],
        4,
        &["failed authentication"],
    );
    assert!(!err.contains(&B64.encode(&msg[..16])));
    let cut = write(&k.tmp("cut.ct"), &good[..n - 1]);
    k.refused(
        &[
            "kms",
            "decrypt",
            "--in",
            &cut,
            "--context",
            "app=photos",
            "--context",
            "user=7",
        ],
        4,
        &["failed authentication"],
    );
    let stub = write(&k.tmp("stub.ct"), &good[..40]);
    k.refused(&["kms", "decrypt", "--in", &stub], 2, &["not a ciphertext"]);
    k.refused(
        &[
            "kms",
            "encrypt",
            "dk",
            "--in",
            &write(&k.tmp("big"), &[0u8; 4097]),
        ],
        2,
        &["4096"],
    );

    // Rewrap after a rotation: the new version, still decrypting; the old one still
    // decrypts too.
    k.json(&["kms", "rotate", "dk"]);
    let v = k.json(&[
        "kms",
        "rewrap",
        "--in",
        p(&ct),
        "--context",
        "app=photos",
        "--context",
        "user=7",
    ]);
    assert_eq!(v["version"], 2, "{v}");
    assert_eq!(v["key_id"], id.as_str());
    let re = write(
        &k.tmp("re.b64"),
        v["ciphertext"].as_str().unwrap().as_bytes(),
    );
    let d = k.json(&[
        "kms",
        "decrypt",
        "--in",
        &re,
        "--context",
        "app=photos",
        "--context",
        "user=7",
    ]);
    assert_eq!(b64(&d["plaintext"]), msg);
    assert_eq!(d["version"], 2);
    k.refused(
        &["kms", "rewrap", "--in", &re],
        4,
        &["failed authentication"],
    );
    let d = k.json(&[
        "kms",
        "decrypt",
        "--in",
        p(&ct),
        "--context",
        "app=photos",
        "--context",
        "user=7",
    ]);
    assert_eq!(d["version"], 1);
    // Raising the minimum decryption version retires version 1.
    k.json(&["kms", "min-decryption-version", "dk", "2"]);
    k.refused(
        &[
            "kms",
            "decrypt",
            "--in",
            p(&ct),
            "--context",
            "app=photos",
            "--context",
            "user=7",
        ],
        2,
        &["below its minimum decryption version"],
    );
    k.refused(
        &["kms", "min-decryption-version", "dk", "3"],
        2,
        &["no version 3"],
    );

    // A ciphertext names its key: decrypt needs no key id.
    let oc = k.tmp("other.ct");
    k.ok(&["kms", "encrypt", "other", "--in", &data, "--out", p(&oc)]);
    let d = k.json(&["kms", "decrypt", "--in", p(&oc)]);
    assert_eq!(d["key_id"], other.as_str());
    assert_eq!(b64(&d["plaintext"]), msg);
    // Standard input, and base64 input.
    let mut c = k.s.cmd(&["kms", "decrypt", "--in", "-"]);
    c.env("DARE_TEST_NOW", k.now.get().to_string())
        .stdin(fs::File::open(&oc).unwrap());
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        B64.decode(String::from_utf8(o.stdout).unwrap().trim())
            .unwrap(),
        msg
    );

    // Unknown key: 3.
    k.refused(
        &[
            "kms",
            "encrypt",
            "0b7e4a52-1c8d-4e0f-9a6b-3d2c1b0a9f8e",
            "--in",
            &data,
        ],
        3,
        &["no customer master key"],
    );
    k.refused(&["kms", "create-datakey", "nope"], 3, &["nope"]);

    // random.
    let r = k.text(&["kms", "random", "--bytes", "16"]);
    assert_eq!(B64.decode(r.trim()).unwrap().len(), 16);
    assert_eq!(b64(&k.json(&["kms", "random"])["random"]).len(), 64);
    let rf = k.tmp("rand");
    k.ok(&["kms", "random", "--bytes", "1024", "--out", p(&rf)]);
    assert_eq!(fs::read(&rf).unwrap().len(), 1024);
    k.refused(&["kms", "random", "--bytes", "1025"], 2, &["1 to 1024"]);
}

/// `openssl pkeyutl -encrypt` with RSA-OAEP-SHA256, as the operator's documentation says.
fn openssl_wrap(material: &Path, wrapping_key: &Path, out: &Path) {
    let _ = fs::remove_file(out);
    let o = Command::new("openssl")
        .args(["pkeyutl", "-encrypt", "-in"])
        .arg(material)
        .arg("-inkey")
        .arg(wrapping_key)
        .args(["-keyform", "der", "-pubin", "-out"])
        .arg(out)
        .args([
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            "rsa_oaep_md:sha256",
        ])
        .output()
        .unwrap_or_else(|e| panic!("openssl is needed for this test and cannot run: {e}"));
    assert!(
        o.status.success(),
        "openssl pkeyutl failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn imported_key_material() {
    let k = Kms::new();
    let v = k.json(&["kms", "create", "--alias", "imp", "--origin", "external"]);
    assert_eq!(v["state"], "pending-import");
    assert_eq!(v["current_version"], 0);
    let id = v["key_id"].as_str().unwrap().to_owned();
    let data = write(&k.tmp("data"), b"imported");
    k.refused(
        &["kms", "encrypt", "imp", "--in", &data],
        2,
        &["pending import"],
    );
    k.refused(&["kms", "rotate", "imp"], 2, &["pending import"]);
    let gen_ = k.create("gen");
    k.refused(
        &[
            "kms",
            "get-import-parameters",
            "gen",
            "--out-dir",
            p(k.s.base()),
        ],
        2,
        &["generated", &gen_],
    );

    // PKCS#1 v1.5 is refused, saying why.
    k.refused(
        &[
            "kms",
            "get-import-parameters",
            "imp",
            "--wrapping-algorithm",
            "RSAES_PKCS1_V1_5",
            "--out-dir",
            p(k.s.base()),
        ],
        2,
        &["Bleichenbacher", "RSAES_OAEP_SHA_256"],
    );
    k.refused(
        &[
            "kms",
            "get-import-parameters",
            "imp",
            "--key-bits",
            "1024",
            "--out-dir",
            p(k.s.base()),
        ],
        2,
        &["1024"],
    );

    let dir = k.tmp("import");
    fs::create_dir(&dir).unwrap();
    let params = |k: &Kms, key: &str| {
        let v = k.json(&["kms", "get-import-parameters", key, "--out-dir", p(&dir)]);
        let wk = PathBuf::from(v["wrapping_key_file"].as_str().unwrap());
        let tok = PathBuf::from(v["import_token_file"].as_str().unwrap());
        assert_eq!(fs::read(&wk).unwrap(), b64(&v["wrapping_key"]));
        assert_eq!(fs::read(&tok).unwrap(), b64(&v["import_token"]));
        for f in [&wk, &tok] {
            assert_eq!(fs::metadata(f).unwrap().permissions().mode() & 0o777, 0o600);
        }
        (wk, tok, v)
    };
    let (wk, tok, v) = params(&k, "imp");
    assert_eq!(wk, dir.join(format!("wrappingKey_{id}.der")));
    assert_eq!(tok, dir.join(format!("importToken_{id}.bin")));
    assert!(
        v["expires"].as_str().unwrap().starts_with(&iso(T0 + DAY)),
        "{v}"
    );
    let text = k.text(&["kms", "describe", "imp"]);
    assert!(text.contains("import parameters until"), "{text}");

    let material = pattern(32, 99);
    let mf = write(&k.tmp("PlaintextKeyMaterial.bin"), &material);
    let enc = k.tmp("EncryptedKeyMaterial.bin");
    openssl_wrap(Path::new(&mf), &wk, &enc);
    let import = |enc: &Path, tok: &Path, extra: &[&str]| {
        let mut a = vec![
            "kms",
            "import-key-material",
            "imp",
            "--material",
            p(enc),
            "--token",
            p(tok),
        ];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };

    // Another key's token.
    k.json(&["kms", "create", "--alias", "imp2", "--origin", "external"]);
    let dir2 = k.tmp("import2");
    fs::create_dir(&dir2).unwrap();
    let v2 = k.json(&[
        "kms",
        "get-import-parameters",
        "imp2",
        "--out-dir",
        p(&dir2),
    ]);
    let tok2 = PathBuf::from(v2["import_token_file"].as_str().unwrap());
    let a = import(&enc, &tok2, &[]);
    k.refused(&strs(&a), 2, &["issued for another key"]);
    // An expired token (25 hours later).
    k.advance(25 * HOUR);
    let a = import(&enc, &tok, &[]);
    k.refused(&strs(&a), 2, &["import token expired"]);
    // New parameters; material of 16 bytes is refused.
    let (wk, tok, _) = params(&k, "imp");
    let short = write(&k.tmp("short.bin"), &pattern(16, 1));
    let enc_short = k.tmp("short.enc");
    openssl_wrap(Path::new(&short), &wk, &enc_short);
    let a = import(&enc_short, &tok, &[]);
    k.refused(&strs(&a), 2, &["16 bytes", "32 bytes"]);
    // Material wrapped with an earlier wrapping key does not unwrap.
    let a = import(&enc, &tok, &[]);
    k.refused(
        &strs(&a),
        2,
        &["does not decrypt under this import's wrapping key"],
    );
    // The import.
    openssl_wrap(Path::new(&mf), &wk, &enc);
    let a = import(&enc, &tok, &[]);
    let out = k.text(&strs(&a));
    assert!(out.contains("imported"), "{out}");
    let d = k.describe("imp");
    assert_eq!(d["state"], "enabled");
    assert_eq!(d["current_version"], 1);
    let t1 = T0 + 25 * HOUR;
    assert!(
        d["material_expires"]
            .as_str()
            .unwrap()
            .starts_with(&iso(t1 + DAY)),
        "the default expiry, 24 hours after the import: {d}"
    );
    let ct = k.tmp("imp.ct");
    k.ok(&["kms", "encrypt", "imp", "--in", &data, "--out", p(&ct)]);
    k.refused(&["kms", "rotate", "imp"], 2, &["new imported material"]);
    k.refused(
        &["kms", "rotation-policy", "imp", "--enable"],
        2,
        &["no automatic rotation"],
    );

    // Expiry: the scheduler deletes the material a day later; decrypt is refused.
    k.advance(DAY);
    let r = k.json(&["kms", "tick"]);
    assert_eq!(r["expired"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(k.state("imp"), "pending-import");
    k.refused(&["kms", "decrypt", "--in", p(&ct)], 2, &["pending import"]);
    // Re-importing the same material (never expiring) restores it.
    let (wk, tok, _) = params(&k, "imp");
    openssl_wrap(Path::new(&mf), &wk, &enc);
    let a = import(&enc, &tok, &["--expires", "never"]);
    let v = k.json(&strs(&a));
    assert_eq!(v["state"], "enabled");
    assert_eq!(v["material_expires"], Value::Null);
    assert_eq!(
        k.text(&["kms", "decrypt", "--in", p(&ct)]).trim(),
        B64.encode(b"imported")
    );

    // delete-key-material: pending import, decrypt refused; the same material again
    // restores it.
    let v = k.json(&["kms", "delete-key-material", "imp"]);
    assert_eq!(v["state"], "pending-import");
    k.refused(&["kms", "decrypt", "--in", p(&ct)], 2, &["pending import"]);
    k.refused(
        &["kms", "delete-key-material", "imp"],
        2,
        &["cannot delete the material"],
    );
    k.refused(&["kms", "delete-key-material", "gen"], 2, &["generated"]);
    let (wk, tok, _) = params(&k, "imp");
    openssl_wrap(Path::new(&mf), &wk, &enc);
    let expires = "2040-01-01T00:00:00Z";
    let a = import(&enc, &tok, &["--expires", "2000-01-01T00:00:00Z"]);
    k.refused(&strs(&a), 2, &["in the past"]);
    let a = import(&enc, &tok, &["--expires", "tomorrow"]);
    k.refused(&strs(&a), 2, &["RFC 3339"]);
    let a = import(&enc, &tok, &["--expires", expires]);
    let v = k.json(&strs(&a));
    assert!(
        v["material_expires"]
            .as_str()
            .unwrap()
            .starts_with("2040-01-01T00:00:00"),
        "{v}"
    );
    assert_eq!(
        k.text(&["kms", "decrypt", "--in", p(&ct)]).trim(),
        B64.encode(b"imported")
    );

    // Different material: refused (the key is bound to its first material).
    let (wk, tok, _) = params(&k, "imp");
    let other = write(&k.tmp("other.bin"), &pattern(32, 100));
    let enc_other = k.tmp("other.enc");
    openssl_wrap(Path::new(&other), &wk, &enc_other);
    let a = import(&enc_other, &tok, &[]);
    k.refused(&strs(&a), 2, &["not the material the key is bound to"]);
    // ... but it makes a new version through rotate.
    let v = k.json(&[
        "kms",
        "rotate",
        "imp",
        "--material",
        p(&enc_other),
        "--token",
        p(&tok),
    ]);
    assert_eq!(v["current_version"], 2, "{v}");
    let d = k.json(&["kms", "decrypt", "--in", p(&ct)]);
    assert_eq!(d["version"], 1);
}

#[test]
fn sse_kms_buckets_follow_their_key() {
    let k = Kms::new();
    let id = k.create("A");
    let b = k.json(&["bucket", "create", "kmsb", "--kms-key", "A"]);
    assert_eq!(b["kms_key_id"], id.as_str(), "{b}");
    assert_eq!(b["kms_key_version"], 1, "{b}");
    assert_eq!(b["encryption"], true);
    let data = pattern(10_000, 3);
    let f = write(&k.tmp("obj"), &data);
    k.ok(&["put", "kmsb/o", &f]);
    assert_eq!(k.ok(&["get", "kmsb/o"]), data);
    let h = k.json(&["head", "kmsb/o"]);
    assert_eq!(h["kms_key_id"], id.as_str(), "{h}");
    assert_eq!(h["kms_key_version"], 1, "{h}");
    assert_eq!(h["encryption"], "SSE-KMS (AES-256-GCM)");
    let text = k.text(&["head", "kmsb/o"]);
    assert!(
        text.contains(&format!("kms key: {id} (version 1)")),
        "{text}"
    );

    // Three rotations, an hour and more apart: the bucket key follows, objects still read.
    for v in 2..=4 {
        k.advance(HOUR + 1000);
        assert_eq!(k.json(&["kms", "rotate", "A"])["current_version"], v);
        assert_eq!(k.ok(&["get", "kmsb/o"]), data);
    }
    let h = k.json(&["head", "kmsb/o"]);
    assert_eq!(h["kms_key_version"], 4, "{h}");
    assert!(
        k.text(&["head", "kmsb/o"])
            .contains(&format!("kms key: {id} (version 4)"))
    );
    let l = k.json(&["bucket", "ls"]);
    let row = l
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "kmsb")
        .unwrap();
    assert_eq!(row["kms_key_version"], 4, "{l}");
    assert!(
        k.text(&["bucket", "ls"])
            .contains(&format!("kms key: {id} (version 4)"))
    );
    let r = k.json(&["kms", "registrations", "A"]);
    assert_eq!(r[0]["resource"], "bucket:kmsb", "{r}");
    assert_eq!(r[0]["key_version"], 4, "{r}");
    assert!(
        k.text(&["kms", "registrations", "A"])
            .contains("bucket:kmsb")
    );
    assert_eq!(k.describe("A")["registrations"], 1);

    // Disabling the key: refused while the bucket is registered; --force disables it, and
    // the bucket is unreadable and unwritable until it is enabled again.
    k.refused(&["kms", "disable", "A"], 2, &["bucket:kmsb", "--force"]);
    k.refused(
        &["kms", "schedule-deletion", "A", "--days", "7"],
        2,
        &["bucket:kmsb"],
    );
    // The bucket is under version 4: retiring older versions is allowed.
    let v = k.json(&["kms", "min-decryption-version", "A", "4"]);
    assert_eq!(v["min_decryption_version"], 4);
    k.ok(&["kms", "disable", "A", "--force"]);
    let (c, err) = k.fails(&["get", "kmsb/o"]);
    assert_ne!(c, 0);
    assert!(err.contains(&id) && err.contains("disabled"), "{err}");
    let (c, err) = k.fails(&["put", "kmsb/o2", &f]);
    assert_ne!(c, 0);
    assert!(err.contains(&id) && err.contains("disabled"), "{err}");
    // head still shows the object and says why its metadata is unreadable.
    let h = k.json(&["head", "kmsb/o"]);
    assert!(
        h["metadata_unreadable"]
            .as_str()
            .unwrap()
            .contains("disabled"),
        "{h}"
    );
    k.ok(&["kms", "enable", "A"]);
    assert_eq!(k.ok(&["get", "kmsb/o"]), data);
    k.ok(&["put", "kmsb/o2", &f]);
    assert_eq!(k.ok(&["get", "kmsb/o2"]), data);

    // The default master key, unknown keys, contradictions.
    let c = k.json(&["bucket", "create", "defb", "--sse-kms"]);
    assert_eq!(c["kms_key_id"], k.describe("dare/default")["key_id"]);
    k.refused(
        &["bucket", "create", "badb", "--kms-key", "nosuch"],
        3,
        &["nosuch"],
    );
    k.refused(
        &[
            "bucket",
            "create",
            "badb",
            "--kms-key",
            "A",
            "--encryption",
            "off",
        ],
        2,
        &["--encryption off"],
    );
    let o = k.run(&["bucket", "create", "badb", "--kms-key", "A", "--sse-kms"]);
    assert_eq!(o.status.code(), Some(2));
    let plain = k.json(&["bucket", "create", "plain"]);
    assert_eq!(plain["kms_key_id"], Value::Null);
    assert_eq!(k.json(&["head", "kmsb/o"])["kms_key_version"], 4);
    // Deleting the bucket removes its registration.
    k.ok(&["bucket", "rm", "kmsb", "--force"]);
    assert_eq!(
        k.json(&["kms", "registrations", "A"]),
        serde_json::json!([])
    );
    k.ok(&["kms", "disable", "A"]);
    // register / deregister by hand.
    k.ok(&["kms", "enable", "A"]);
    let r = k.json(&["kms", "register", "A", "app:thing", "--description", "mine"]);
    assert_eq!(r["key_version"], 4);
    k.refused(&["kms", "disable", "A"], 2, &["app:thing"]);
    assert_eq!(
        k.json(&["kms", "deregister", "A", "app:thing"])["deregistered"],
        true
    );
    assert_eq!(
        k.json(&["kms", "deregister", "A", "app:thing"])["deregistered"],
        false
    );
    k.ok(&["kms", "disable", "A"]);
}

/// Runs `dare kms audit verify` on a copy of the store in which `sql` was run.
fn verify_after(k: &Kms, name: &str, sql: &str) -> (i32, String) {
    let copy = k.tmp(name);
    let st = Command::new("cp")
        .arg("-a")
        .arg(&k.s.path)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    let script = format!(
        "import sqlite3, sys\n\
         c = sqlite3.connect(sys.argv[1])\n\
         {sql}\n\
         c.commit()\n\
         c.close()\n"
    );
    let o = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(copy.join("dare.db"))
        .output()
        .expect("python3 is needed for this test");
    assert!(
        o.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o =
        k.s.cmd_at(&copy, &["kms", "audit", "verify"])
            .output()
            .unwrap();
    check_failure(&format!("audit verify after {name}"), &o)
}

#[test]
fn audit_trail_detects_edits() {
    let k = Kms::new();
    let id = k.create("audited");
    let data = write(&k.tmp("data"), b"x");
    k.ok(&["kms", "encrypt", "audited", "--in", &data]);
    k.fails(&["kms", "enable", "audited"]);
    k.create("second");
    k.ok(&["kms", "describe", "audited"]);
    let v = k.json(&["kms", "audit", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
    let n = v["records"].as_u64().unwrap();
    assert!(n >= 5, "{v}");
    let text = k.text(&["kms", "audit", "verify"]);
    assert!(text.contains(&format!("{n} records")), "{text}");

    let all = k.json(&["kms", "audit", "ls"]);
    let all = all.as_array().unwrap();
    assert_eq!(all.len() as u64, n);
    assert!(
        all.iter().any(|r| r["operation"] == "createKey"
            && r["outcome"] == "ok"
            && r["key_id"] == id.as_str()),
        "{all:?}"
    );
    assert!(
        all.iter()
            .any(|r| r["operation"] == "enableKey" && r["outcome"] == "InvalidState"),
        "failures are recorded too"
    );
    let mine = k.json(&["kms", "audit", "ls", "--key", "audited"]);
    assert!(
        mine.as_array()
            .unwrap()
            .iter()
            .all(|r| r["key_id"] == id.as_str())
    );
    assert!(mine.as_array().unwrap().len() >= 4);
    k.advance(HOUR);
    k.ok(&["kms", "describe", "second"]);
    let later = k.json(&[
        "kms",
        "audit",
        "ls",
        "--since",
        &format!("{}Z", iso(T0 + HOUR)),
    ]);
    assert_eq!(later.as_array().unwrap().len(), 1, "{later}");
    let text = k.text(&["kms", "audit", "ls"]);
    assert!(
        text.contains("createKey") && text.contains("encrypt"),
        "{text}"
    );
    k.refused(&["kms", "audit", "ls", "--since", "soon"], 2, &["RFC 3339"]);

    // A changed byte in a record's detail.
    let (c, err) = verify_after(
        &k,
        "edited",
        "seq, d = c.execute(\"SELECT seq, detail FROM kms_audit WHERE length(detail) > 0 \
         ORDER BY seq LIMIT 1 OFFSET 1\").fetchone()\n\
         if isinstance(d, bytes): d = bytes([d[0] ^ 1]) + d[1:]\n\
         else: d = ('X' if d[0] != 'X' else 'Y') + d[1:]\n\
         c.execute('UPDATE kms_audit SET detail = ? WHERE seq = ?', (d, seq))",
    );
    assert_eq!(c, 4, "{err}");
    assert!(err.contains("does not match its MAC"), "{err}");
    // A record removed from the middle.
    let (c, err) = verify_after(
        &k,
        "middle",
        "c.execute('DELETE FROM kms_audit WHERE seq = 3')",
    );
    assert_eq!(c, 4, "{err}");
    assert!(err.contains("record 3 is missing"), "{err}");
    // The last record removed (the head untouched).
    let (c, err) = verify_after(
        &k,
        "last",
        "c.execute('DELETE FROM kms_audit WHERE seq = (SELECT max(seq) FROM kms_audit)')",
    );
    assert_eq!(c, 4, "{err}");
    assert!(err.contains("last records were removed"), "{err}");
    // The original is intact.
    assert_eq!(k.json(&["kms", "audit", "verify"])["ok"], true);
    // --json on a broken trail: the report, then the error.
    let copy = k.tmp("middle");
    let o =
        k.s.cmd_at(&copy, &["kms", "audit", "verify", "--json"])
            .output()
            .unwrap();
    assert_eq!(o.status.code(), Some(4));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["problem"].as_str().unwrap().contains("missing"), "{v}");
}
