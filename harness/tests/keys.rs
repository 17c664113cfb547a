//! Key rotation and rewrap through the binary: rotations keep every object readable, and a
//! rewrap moves envelopes to the new rotation key with one metadata update per object — the
//! data files keep every byte.

mod common;

use std::fs;

use common::{Store, pattern, write};

#[test]
fn rotate_then_rewrap_moves_envelopes_without_touching_data() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    s.ok(&["bucket", "create", "cbk"]);
    s.ok(&["ns", "create", "open", "--encryption", "off"]);
    s.ok(&["bucket", "create", "pub", "--namespace", "open"]);
    let key = write(&s.tmp("ck"), &[9u8; 32]);
    let mut objects: Vec<(String, Vec<u8>, bool)> = Vec::new();
    for i in 0..12u64 {
        let data = pattern(100 + (i as usize) * 1500, i);
        let target = format!("bkt/dir{}/o{i}", i % 3);
        s.ok(&["put", &target, &write(&s.tmp("in"), &data)]);
        objects.push((target, data, false));
    }
    for (t, seed) in [("cbk/one", 50u64), ("pub/clear", 51)] {
        let data = pattern(7000, seed);
        s.ok(&["put", t, &write(&s.tmp("in"), &data)]);
        objects.push((t.into(), data, false));
    }
    let data = pattern(9000, 52);
    s.ok(&[
        "put",
        "bkt/ssec",
        &write(&s.tmp("in"), &data),
        "--sse-c-key-file",
        &key,
    ]);
    objects.push(("bkt/ssec".into(), data, true));
    let read = |t: &str, ssec: bool| {
        if ssec {
            s.ok(&["get", t, "--sse-c-key-file", &key])
        } else {
            s.ok(&["get", t])
        }
    };

    s.ok(&["keys", "rotate", "--wait"]);
    // Before the rewrap: readable, under the old rotation key.
    let h = s.json(&["head", "bkt/dir0/o0", "--json"]);
    assert_eq!(h["key_ref"]["rotation_version"], 1);
    let files_before = s.data_files();
    assert_eq!(files_before.len(), objects.len());

    let r = s.json(&["keys", "rewrap", "--bucket", "bkt", "--all", "--json"]);
    assert_eq!(r["rotation_version"], 2, "{r}");
    let b = &r["buckets"][0];
    assert_eq!(b["bucket"], "bkt");
    assert_eq!(b["stale_before"], 12, "{r}");
    assert_eq!(b["rewrapped"], 12, "{r}");
    assert_eq!(b["customer_keys"], 1, "{r}");
    assert_eq!(b["current"], 0, "{r}");
    assert_eq!(
        r["buckets"].as_array().unwrap().len(),
        1,
        "only the bucket asked for"
    );

    // Not a byte of data changed; every object reads back; bkt's envelopes name version 2.
    assert_eq!(s.data_files(), files_before, "rewrap touched a data file");
    for (t, data, ssec) in &objects {
        assert_eq!(&read(t, *ssec), data, "{t}");
    }
    for i in 0..12u64 {
        let h = s.json(&["head", &format!("bkt/dir{}/o{i}", i % 3), "--json"]);
        assert_eq!(h["key_ref"]["rotation_version"], 2, "{h}");
    }
    let h = s.json(&["head", "cbk/one", "--json"]);
    assert_eq!(h["key_ref"]["rotation_version"], 1, "cbk was not asked for");

    // Again: nothing to do (idempotent).
    let again = s.json(&["keys", "rewrap", "--bucket", "bkt", "--json"]);
    assert_eq!(again["buckets"][0]["rewrapped"], 0, "{again}");
    assert_eq!(again["buckets"][0]["stale_before"], 0, "{again}");
    assert_eq!(again["buckets"][0]["current"], 12, "{again}");

    // --all alone: every encrypted bucket (bkt and cbk, not the clear pub).
    let all = String::from_utf8(s.ok(&["keys", "rewrap", "--all"])).unwrap();
    assert!(all.contains("cbk: 1 envelope(s) not under"), "{all}");
    assert!(all.contains("cbk: rewrapped 1,"), "{all}");
    assert!(all.contains("bkt: rewrapped 0,"), "{all}");
    assert!(!all.contains("pub:"), "{all}");
    assert_eq!(
        s.json(&["head", "cbk/one", "--json"])["key_ref"]["rotation_version"],
        2
    );
    assert_eq!(s.data_files(), files_before);
    for (t, data, ssec) in &objects {
        assert_eq!(&read(t, *ssec), data, "{t}");
    }
    let clean = s.json(&["fsck", "--deep", "--json"]);
    assert_eq!(clean["clean"], true, "{clean}");
    let (code, _) = s.fails(&["keys", "rewrap", "--bucket", "nope"]);
    assert_eq!(code, 3);
}

#[test]
fn objects_survive_three_rotations() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let mut written = Vec::new();
    for round in 0..4u64 {
        let data = pattern(9000 + round as usize, round);
        let key = format!("bkt/o{round}");
        s.ok(&["put", &key, &write(&s.tmp("in"), &data)]);
        written.push((key, data));
        if round < 3 {
            s.ok(&["keys", "rotate", "--wait"]);
        }
    }
    for (k, d) in &written {
        assert_eq!(&s.ok(&["get", k]), d, "{k}");
    }
    let st = s.json(&["keys", "rotation", "status", "--json"]);
    let hist = st["history"].as_array().unwrap();
    assert_eq!(hist.len(), 3);
    assert!(
        hist.iter()
            .all(|t| t["state"] == "completed" && t["ended"].is_u64() && t["started"].is_u64())
    );
    // Objects record the rotation key version they were wrapped under.
    let h0 = s.json(&["head", "bkt/o0", "--json"]);
    let h3 = s.json(&["head", "bkt/o3", "--json"]);
    assert_eq!(h0["key_ref"]["rotation_version"], 1);
    assert_eq!(h3["key_ref"]["rotation_version"], 4);
    // The dump is JSON of wrapped keys: the root key's bytes do not appear in it.
    let dump = s.ok(&["keys", "dump", "--json"]);
    let _: serde_json::Value = serde_json::from_slice(&dump).unwrap();
    let root = fs::read(s.path.join("root.key")).unwrap();
    assert!(!dump.windows(root.len()).any(|w| w == root));
}

#[test]
fn background_rotation_reports_id_and_completes() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let data = pattern(5000, 9);
    s.ok(&["put", "bkt/x", &write(&s.tmp("in"), &data)]);
    let id = String::from_utf8(s.ok(&["keys", "rotate"])).unwrap();
    let id = id.trim();
    assert!(id.parse::<u64>().is_ok(), "{id:?}");
    s.ok(&["keys", "rotation", "status", id, "--wait"]);
    assert_eq!(s.ok(&["get", "bkt/x"]), data);
    let (code, _) = s.fails(&["keys", "rotation", "status", "999"]);
    assert_eq!(code, 3);
}

#[test]
fn rotation_killed_after_every_step_resumes() {
    for step in 1..=5 {
        let s = Store::new_hooked(4096);
        s.ok(&["bucket", "create", "bkt"]);
        let data = pattern(7000, step);
        s.ok(&["put", "bkt/before", &write(&s.tmp("in"), &data)]);
        // A short lease (test builds only): the crashed process leaves it behind.
        let o = s.run_env(
            &["keys", "rotate", "--wait"],
            &[
                ("DARE_CRASH_AFTER_STEP", &step.to_string()),
                ("DARE_LEASE_TTL_MS", "300"),
            ],
        );
        assert!(
            !o.status.success(),
            "step {step}: the crash hook did not fire (is the test-hooks feature on?)"
        );
        // Any command works on the interrupted store; reads and writes go on.
        assert_eq!(s.ok(&["get", "bkt/before"]), data, "step {step}");
        s.ok(&["put", "bkt/during", &write(&s.tmp("in2"), &data)]);
        let st = s.json(&["keys", "rotation", "status", "--json"]);
        assert_eq!(st["task"]["step"], step, "step {step}: {st}");
        // Another process: it waits for the dead runner's lease to expire (harness/tests/lease.rs).
        s.ok(&["keys", "rotation", "resume", "--wait"]);
        let st = s.json(&["keys", "rotation", "status", "--json"]);
        assert_eq!(st["task"]["state"], "completed", "step {step}");
        for k in ["bkt/before", "bkt/during"] {
            assert_eq!(s.ok(&["get", k]), data, "step {step} {k}");
        }
        s.ok(&["keys", "rewrap", "--all"]);
        for k in ["bkt/before", "bkt/during"] {
            assert_eq!(s.ok(&["get", k]), data, "step {step} {k} after rewrap");
            let h = s.json(&["head", k, "--json"]);
            assert_eq!(h["key_ref"]["rotation_version"], 2, "step {step} {k}");
        }
    }
}
