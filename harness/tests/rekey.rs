//! `dare keys rekey`, `dare keys task`, `dare keys info` through the binary (docs/KEYS.md §8.3):
//! a rekey from the root key file to a passphrase SIGKILLed right after each of its five steps
//! (the `test-hooks` crash hook: a real SIGKILL of the running process) and resumed, with
//! every object read before, in the crashed state and after; a rekey from a passphrase to a
//! SoftHSM2 token (started by dare-testkit; without SoftHSM2 installed it fails saying how to
//! install it); and the refusals, each one line with nothing written.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

use common::{Store, check_failure, pattern, write};
use dare_testkit::softhsm::{self, KeySpec};
use serde_json::Value;

fn secret_file(p: &Path, secret: &str) {
    fs::write(p, format!("{secret}\n")).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
}

/// A hooked store with a bucket and four objects; returns them.
fn store_with_objects() -> (Store, Vec<(String, Vec<u8>)>) {
    let s = Store::new_hooked(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let mut objects = Vec::new();
    for i in 0..4u64 {
        let data = pattern(500 + i as usize * 5000, i);
        let name = format!("bkt/o{i}");
        s.ok(&["put", &name, &write(&s.tmp("in"), &data)]);
        objects.push((name, data));
    }
    (s, objects)
}

fn reads_all(s: &Store, flags: &[&str], objects: &[(String, Vec<u8>)], when: &str) {
    for (name, data) in objects {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["get", name.as_str()]);
        assert_eq!(&s.ok(&args), data, "{when}: {name}");
    }
}

fn with(flags: &[&str], args: &[&str]) -> Vec<String> {
    flags.iter().chain(args).map(|s| s.to_string()).collect()
}

#[test]
fn rekey_key_file_to_passphrase_survives_a_sigkill_after_every_step() {
    for step in 1..=5u8 {
        let (s, objects) = store_with_objects();
        let pass = s.tmp("pass");
        secret_file(&pass, "the store's new passphrase");
        let pass = pass.to_str().unwrap();
        let target = ["--to", "internal", "--new-passphrase-file", pass];
        let new = ["--passphrase-file", pass];

        let o = s.run_env(
            &with(&["keys", "rekey", "--wait"], &target),
            &[
                ("DARE_CRASH_AFTER_STEP", &step.to_string()),
                ("DARE_LEASE_TTL_MS", "300"),
            ],
        );
        assert_eq!(
            o.status.signal(),
            Some(9),
            "step {step}: the runner was not SIGKILLed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // The crashed state: before the switch (step 3) the old root alone opens the store,
        // after it the new one; the other gives one clear line naming what to pass.
        let (now, other): (&[&str], &[&str]) = if step >= 3 { (&new, &[]) } else { (&[], &new) };
        reads_all(&s, now, &objects, &format!("after a crash at step {step}"));
        let (_, line) = s.fails(&with(other, &["get", "bkt/o0"]));
        if step >= 3 {
            assert!(line.contains("--passphrase-file"), "step {step}: {line}");
        } else {
            assert!(line.contains("root key file"), "step {step}: {line}");
        }
        let t = s.json(&with(now, &["keys", "task", "1", "--json"]));
        assert_eq!(t["step"], step, "step {step}: {t}");
        assert_eq!(t["resultType"], "rekey", "{t}");
        assert_eq!(
            t["state"],
            if step == 5 { "completed" } else { "running" },
            "{t}"
        );
        assert_eq!(t["keyToDecommission"]["keyProviderID"], "root-key-file");
        assert_eq!(t["newKey"]["version"], 2, "{t}");

        // Resume (waiting out the dead runner's lease) with both roots: the store's flags
        // name the root the rekey leaves (here none: the root key file), --to the target.
        let t = s.json(&with(
            &["keys", "task", "1", "--resume", "--wait", "--json"],
            &target,
        ));
        assert_eq!(t["state"], "completed", "step {step}: {t}");
        assert_eq!(t["status"], "complete");
        assert_eq!(t["keyToDecommission"]["version"], 1);
        assert_eq!(t["keyToDecommission"]["keyManagementType"], "internal");
        assert_eq!(t["newKey"]["keyManagementType"], "internal");
        assert_eq!(t["newKey"]["keyProviderID"], "passphrase-argon2id");
        assert!(t["createTime"].as_str().unwrap().ends_with('Z'), "{t}");
        assert!(t["lastUpdateTime"].as_str().unwrap() >= t["createTime"].as_str().unwrap());

        reads_all(&s, &new, &objects, &format!("after resuming step {step}"));
        let (_, line) = s.fails(&["get", "bkt/o1"]);
        assert!(line.contains("--passphrase-file"), "{line}");
        // New objects, and a rotation, under the new root.
        let data = pattern(9000, 77);
        s.ok(&with(&new, &["put", "bkt/new", &write(&s.tmp("n"), &data)]));
        s.ok(&with(&new, &["keys", "rotate", "--wait"]));
        assert_eq!(s.ok(&with(&new, &["get", "bkt/new"])), data);
        reads_all(&s, &new, &objects, "after a rotation");

        let i = s.json(&with(&new, &["keys", "info", "--json"]));
        assert_eq!(i["masterKeyInfo"]["version"], 3, "{i}");
        assert_eq!(i["masterKeyInfo"]["keyProviderID"], "passphrase-argon2id");
        assert_eq!(i["rekeyMasterKeyAsyncResultID"], 1);
        let others = i["otherMasterKeys"].as_array().unwrap();
        assert_eq!(others.len(), 2, "{i}");
        for m in others {
            assert_eq!(m["state"], "retired", "{i}");
            assert_eq!(m["deactivation"], "nothing", "{i}");
            assert_eq!(m["deactivated"], false, "{i}");
            assert!(m["deactivatedTime"].is_string(), "{i}");
        }
        assert_eq!(others[0]["keyProviderID"], "root-key-file");
        s.ok(&with(&new, &["fsck", "--deep"]));
    }
}

#[test]
fn rekey_refusals_are_one_line_and_write_nothing() {
    let (s, objects) = store_with_objects();
    let dump = || s.json(&["keys", "dump"]);
    let before = dump();
    // The root in use: the key file.
    let (_, line) = s.fails(&["keys", "rekey", "--to", "internal", "--wait"]);
    assert!(line.contains("already"), "{line}");
    // An external target needs its cluster's configuration, and the configuration must hold
    // the cluster (the KMIP rekey itself: tests/kmip.rs).
    let (code, line) = s.fails(&["keys", "rekey", "--to", "external", "--cluster", "c1"]);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("--new-kmip-config FILE"), "{line}");
    let missing = s.tmp("no-such-kmip.json");
    let (_, line) = s.fails(&[
        "keys",
        "rekey",
        "--to",
        "external",
        "--cluster",
        "c1",
        "--new-kmip-config",
        missing.to_str().unwrap(),
    ]);
    assert!(line.contains("--new-kmip-config"), "{line}");
    // A too-short passphrase, flags that do not go together.
    let short = s.tmp("short");
    secret_file(&short, "short");
    let (_, line) = s.fails(&[
        "keys",
        "rekey",
        "--to",
        "internal",
        "--new-passphrase-file",
        short.to_str().unwrap(),
    ]);
    assert!(line.contains("12"), "{line}");
    let (code, _) = s.fails(&["keys", "rekey", "--to", "hsm", "--cluster", "x"]);
    assert_eq!(code, 2);
    // An unknown handle.
    let (code, line) = s.fails(&["keys", "task", "42"]);
    assert_eq!(code, 3, "{line}");
    assert!(line.contains("task"), "{line}");
    assert_eq!(dump(), before);

    // While a rotation is unfinished: refused, naming it.
    let o = s.run_env(
        &["keys", "rotate", "--wait"],
        &[("DARE_CRASH_AFTER_STEP", "2"), ("DARE_LEASE_TTL_MS", "300")],
    );
    assert_eq!(o.status.signal(), Some(9));
    let pass = s.tmp("pass");
    secret_file(&pass, "a passphrase long enough");
    let target = [
        "keys",
        "rekey",
        "--to",
        "internal",
        "--new-passphrase-file",
        pass.to_str().unwrap(),
        "--wait",
    ];
    let mid = dump();
    let (_, line) = s.fails(&target);
    assert!(line.contains("rotation task 1"), "{line}");
    assert_eq!(dump(), mid);
    s.ok(&["keys", "rotation", "resume", "--wait"]);
    // A rekey, then a second one while it is unfinished.
    let o = s.run_env(
        &target,
        &[("DARE_CRASH_AFTER_STEP", "1"), ("DARE_LEASE_TTL_MS", "300")],
    );
    assert_eq!(o.status.signal(), Some(9));
    let (_, line) = s.fails(&["keys", "rotate", "--wait"]);
    assert!(line.contains("rekey task 2"), "{line}");
    // Resuming without the target, or with another passphrase, is refused.
    let (_, line) = s.fails(&["keys", "task", "2", "--resume"]);
    assert!(line.contains("--to"), "{line}");
    let other = s.tmp("other");
    secret_file(&other, "another passphrase entirely");
    let (_, line) = s.fails(&[
        "keys",
        "task",
        "2",
        "--resume",
        "--wait",
        "--to",
        "internal",
        "--new-passphrase-file",
        other.to_str().unwrap(),
    ]);
    assert!(line.contains("not that one"), "{line}");
    let t = s.json(&["keys", "task", "2", "--json"]);
    assert_eq!(t["step"], 1, "{t}");
    reads_all(&s, &[], &objects, "with the rekey interrupted");
}

#[test]
fn rekey_passphrase_to_softhsm_token() {
    let Some(hsm) = softhsm::isolated("rekey_passphrase_to_softhsm_token") else {
        return;
    };
    let token = hsm.init_token("dare");
    hsm.create_key(&token, &KeySpec::good("dare-root"));
    let s = Store::empty();
    let pass = s.tmp("pass");
    secret_file(&pass, "passphrase before the HSM");
    let pin = s.tmp("pin");
    secret_file(&pin, &token.pin);
    let old = ["--passphrase-file", pass.to_str().unwrap()];
    let module = softhsm::module();
    let module = module.to_str().unwrap();
    let hsm_flags = [
        "--hsm-module",
        module,
        "--hsm-token",
        "dare",
        "--hsm-key",
        "dare-root",
        "--hsm-pin-file",
        pin.to_str().unwrap(),
    ];
    let target = [
        "--to",
        "hsm",
        "--new-hsm-module",
        module,
        "--new-hsm-token",
        "dare",
        "--new-hsm-key",
        "dare-root",
        "--new-hsm-pin-file",
        pin.to_str().unwrap(),
    ];
    s.ok(&with(&old, &["init", "--chunk-size", "4096"]));
    s.ok(&with(&old, &["bucket", "create", "bkt"]));
    let data = pattern(20_000, 5);
    s.ok(&with(&old, &["put", "bkt/a", &write(&s.tmp("in"), &data)]));

    // A wrong PIN for the target: refused, nothing written.
    let bad = s.tmp("badpin");
    secret_file(&bad, "99999999");
    let dump = || s.json(&with(&old, &["keys", "dump"]));
    let before = dump();
    let mut wrong: Vec<&str> = target.to_vec();
    *wrong.last_mut().unwrap() = bad.to_str().unwrap();
    let o = s.run(&with(
        &old,
        &with(&["keys", "rekey", "--wait"], &wrong)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));
    let (_, line) = check_failure("wrong target PIN", &o);
    assert!(line.to_lowercase().contains("pin"), "{line}");
    assert!(!line.contains(&token.pin));
    assert_eq!(dump(), before);

    // The rekey, in the background: the handle is printed, `keys task --wait` follows it.
    let out = s.ok(&with(
        &old,
        &with(&["keys", "rekey"], &target)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));
    let handle = String::from_utf8(out).unwrap().trim().to_string();
    // Followed with both roots, which open the store before and after the switch.
    let mut follow: Vec<&str> = old.to_vec();
    follow.extend(["keys", "task", &handle, "--wait", "--json"]);
    follow.extend(target);
    let t = s.json(&follow);
    assert_eq!(t["state"], "completed", "{t}");
    assert_eq!(
        t["keyToDecommission"]["keyProviderID"],
        "passphrase-argon2id"
    );
    assert_eq!(t["newKey"]["keyManagementType"], "hsm", "{t}");
    assert_eq!(
        t["newKey"]["keyProviderID"],
        "pkcs11:token=dare;object=dare-root;type=secret-key"
    );
    assert_eq!(s.ok(&with(&hsm_flags, &["get", "bkt/a"])), data);
    let (_, line) = s.fails(&with(&old, &["get", "bkt/a"]));
    assert!(line.contains("--hsm-module"), "{line}");
    let i: Value = s.json(&with(&hsm_flags, &["keys", "info", "--json"]));
    assert_eq!(i["masterKeyInfo"]["keyManagementType"], "hsm", "{i}");
    assert_eq!(i["otherMasterKeys"][0]["deactivation"], "nothing", "{i}");
    // Rekeying to the HSM key in use is refused.
    let (_, line) = s.fails(&with(
        &hsm_flags,
        &with(&["keys", "rekey", "--wait"], &target)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));
    assert!(line.contains("already"), "{line}");
}
