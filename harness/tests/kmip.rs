//! The real `dare` binary on a store whose master keys are protected by a cluster of two
//! real PyKMIP servers (docs/KEYS.md §5.5): init, put, rotate (with a server down), get; a
//! wrong or missing cluster, a cluster of one server, a cluster that is down — each refused
//! with one clear line, a non-zero exit and nothing created or changed. Without PyKMIP the
//! tests fail, saying `pip install pykmip`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Store, check_failure, pattern, write};
use dare_testkit::pykmip::KmipCluster;
use serde_json::Value;

fn flags(config: &Path, cluster: &str) -> Vec<String> {
    vec![
        "--kmip-config".into(),
        config.display().to_string(),
        "--kmip-cluster".into(),
        cluster.into(),
    ]
}

fn run(store: &Store, extra: &[String], args: &[&str]) -> Output {
    let mut c = store.cmd(args);
    c.args(extra);
    c.output().unwrap()
}

fn ok(store: &Store, extra: &[String], args: &[&str]) -> Vec<u8> {
    let o = run(store, extra, args);
    assert!(
        o.status.success(),
        "dare {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

fn refused(o: &Output, needle: &str) -> String {
    let (code, line) = check_failure(needle, o);
    assert_eq!(code, 1, "{line}");
    assert!(line.contains(needle), "expected {needle:?} in: {line}");
    line
}

/// A configuration with the cluster `kmip-a` and a copy of it named `kmip-b`.
fn two_cluster_config(c: &KmipCluster) -> PathBuf {
    let one = c.write_config("kmip-a", 60, 300);
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&one).unwrap()).unwrap();
    let mut b = v["clusters"][0].clone();
    b["name"] = "kmip-b".into();
    v["clusters"].as_array_mut().unwrap().push(b);
    let p = c.dir.path().join("two.json");
    std::fs::write(&p, v.to_string()).unwrap();
    p
}

#[test]
fn init_put_rotate_get_on_a_kmip_cluster() {
    let mut c = KmipCluster::start(2);
    let cfg = two_cluster_config(&c);
    let f = flags(&cfg, "kmip-a");
    let s = Store::empty();
    let init: Value =
        serde_json::from_slice(&ok(&s, &f, &["init", "--chunk-size", "4096", "--json"])).unwrap();
    assert_eq!(init["root_of_trust"], "kmip");
    assert_eq!(init["kmip_cluster"], "kmip-a");
    assert!(!s.path.join("root.key").exists());
    ok(&s, &f, &["bucket", "create", "photos"]);
    let a = pattern(10_000, 1);
    let fa = s.tmp("a");
    write(&fa, &a);
    ok(&s, &f, &["put", "photos/a", fa.to_str().unwrap()]);
    // One server down: rotation and writes go to the other.
    c.servers[0].stop();
    let rot: Value =
        serde_json::from_slice(&ok(&s, &f, &["keys", "rotate", "--wait", "--json"])).unwrap();
    assert_eq!(rot["task"]["state"], "completed", "{rot}");
    let b = pattern(70_000, 2);
    let fb = s.tmp("b");
    write(&fb, &b);
    ok(&s, &f, &["put", "photos/b", fb.to_str().unwrap()]);
    c.servers[0].start_again();
    c.servers[1].stop();
    assert_eq!(ok(&s, &f, &["get", "photos/a"]), a);
    assert_eq!(ok(&s, &f, &["get", "photos/b"]), b);
    let dump: Value = serde_json::from_slice(&ok(&s, &f, &["keys", "dump", "--json"])).unwrap();
    assert_eq!(dump["store"]["root_of_trust"], "kmip:cluster=kmip-a");
    assert_eq!(dump["master_keys"].as_array().unwrap().len(), 2, "{dump}");

    // Both down: a command that needs the master key fails at once, naming each server.
    c.servers[0].stop();
    let o = run(&s, &f, &["get", "photos/a"]);
    let line = refused(&o, "KMIP cluster \"kmip-a\" is unavailable");
    for addr in c.addrs() {
        assert!(line.contains(&addr), "{line}");
    }
}

#[test]
fn wrong_or_missing_cluster_is_refused() {
    let c = KmipCluster::start(2);
    let cfg = two_cluster_config(&c);
    let s = Store::empty();
    ok(&s, &flags(&cfg, "kmip-a"), &["init"]);
    ok(&s, &flags(&cfg, "kmip-a"), &["bucket", "create", "photos"]);
    let before = s.data_files();
    refused(
        &run(&s, &flags(&cfg, "kmip-b"), &["bucket", "create", "more"]),
        "protected by the KMIP cluster \"kmip-a\", not \"kmip-b\"",
    );
    refused(
        &run(&s, &flags(&cfg, "nope"), &["ls"]),
        "no cluster named \"nope\"",
    );
    refused(&run(&s, &[], &["ls"]), "--kmip-cluster kmip-a");
    let o = run(&s, &["--kmip-cluster".into(), "kmip-a".into()], &["ls"]);
    let (code, line) = check_failure("usage", &o);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("--kmip-config"), "{line}");
    assert_eq!(s.data_files(), before);
    // A key-file store refuses the KMIP flags.
    let plain = Store::empty();
    ok(&plain, &[], &["init"]);
    refused(
        &run(&plain, &flags(&cfg, "kmip-a"), &["ls"]),
        "not by a KMIP cluster",
    );
}

#[test]
fn init_refuses_one_server_or_a_cluster_down_and_creates_nothing() {
    let mut c = KmipCluster::start(2);
    let cfg = c.write_config("kmip-a", 60, 300);
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["clusters"][0]["servers"] = serde_json::json!([c.addrs()[0]]);
    let solo = c.dir.path().join("solo.json");
    std::fs::write(&solo, v.to_string()).unwrap();
    let s = Store::empty();
    refused(
        &run(&s, &flags(&solo, "kmip-a"), &["init"]),
        "needs at least 2 key servers",
    );
    assert!(!s.path.exists());
    for srv in &mut c.servers {
        srv.stop();
    }
    refused(
        &run(&s, &flags(&cfg, "kmip-a"), &["init"]),
        "is unavailable for Query",
    );
    assert!(!s.path.exists());
}

/// Issue 12's rekey check: a key-file store holding objects is rekeyed onto a KMIP cluster,
/// the runner is SIGKILLed after the step that switches the store's root and resumed; the
/// handle reports keyToDecommission (internal) and newKey (external, its KMIP id); every
/// object reads back. A rotation then retires that KMIP-protected master key, and its key is
/// deactivated on the key server: `keys info` says so and the server refuses to use it.
#[test]
fn rekey_to_a_kmip_cluster_survives_a_sigkill_and_deactivates_the_retired_key() {
    use std::os::unix::process::ExitStatusExt;

    let c = KmipCluster::start(2);
    let cfg = two_cluster_config(&c);
    let f = flags(&cfg, "kmip-a");
    let s = Store::new_hooked(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let mut objects = Vec::new();
    for i in 0..3u64 {
        let data = pattern(700 + i as usize * 6000, i);
        let name = format!("bkt/o{i}");
        s.ok(&["put", &name, &write(&s.tmp("in"), &data)]);
        objects.push((name, data));
    }
    let cfg_s = cfg.display().to_string();
    let target = [
        "--to",
        "external",
        "--cluster",
        "kmip-a",
        "--new-kmip-config",
        cfg_s.as_str(),
    ];
    let mut args = vec!["keys", "rekey", "--wait"];
    args.extend(target);
    let o = s.run_env(
        &args,
        &[("DARE_CRASH_AFTER_STEP", "3"), ("DARE_LEASE_TTL_MS", "300")],
    );
    assert_eq!(
        o.status.signal(),
        Some(9),
        "the runner was not SIGKILLed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // After step 3 the cluster alone protects the store.
    let read_all = |when: &str| {
        for (name, data) in &objects {
            assert_eq!(&ok(&s, &f, &["get", name]), data, "{when}: {name}");
        }
    };
    read_all("after the crash");
    let (_, line) = s.fails(&["get", "bkt/o0"]);
    assert!(line.contains("--kmip-cluster kmip-a"), "{line}");

    let mut args = vec!["keys", "task", "1", "--resume", "--wait", "--json"];
    args.extend(target);
    let t = s.json(&args);
    assert_eq!(t["state"], "completed", "{t}");
    assert_eq!(t["resultType"], "rekey", "{t}");
    assert_eq!(
        t["keyToDecommission"]["keyManagementType"], "internal",
        "{t}"
    );
    assert_eq!(
        t["keyToDecommission"]["keyProviderID"], "root-key-file",
        "{t}"
    );
    assert_eq!(t["newKey"]["keyManagementType"], "external", "{t}");
    assert_eq!(t["newKey"]["keyProviderID"], "kmip:cluster=kmip-a", "{t}");
    let kmip_key = t["newKey"]["keyID"]
        .as_str()
        .expect("newKey has a KMIP id")
        .to_string();
    read_all("after resuming");

    // A rotation under the cluster retires master key 2; its KMIP key is deactivated.
    let rot: Value =
        serde_json::from_slice(&ok(&s, &f, &["keys", "rotate", "--wait", "--json"])).unwrap();
    assert_eq!(rot["task"]["state"], "completed", "{rot}");
    read_all("after a rotation on the cluster");
    let i: Value = serde_json::from_slice(&ok(&s, &f, &["keys", "info", "--json"])).unwrap();
    assert_eq!(i["masterKeyInfo"]["keyManagementType"], "external", "{i}");
    let retired = i["otherMasterKeys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["keyID"] == kmip_key.as_str())
        .unwrap_or_else(|| panic!("master key {kmip_key} not listed: {i}"));
    assert_eq!(retired["deactivation"], "deactivated", "{i}");
    assert_eq!(retired["deactivated"], true, "{i}");
    // The key server itself refuses the destroyed key.
    let conf = dare_kmip::KmipConfig::load(&cfg).unwrap();
    let cluster = dare_kmip::Cluster::new(conf.cluster("kmip-a").unwrap()).unwrap();
    let r = cluster.encrypt_gcm(&kmip_key, b"probe", &[0u8; 12], b"");
    assert!(r.is_err(), "the retired key {kmip_key} still encrypts");
    s.ok(&{
        let mut a: Vec<&str> = f.iter().map(String::as_str).collect();
        a.extend(["fsck", "--deep"]);
        a
    });
}
