//! `dare fsck`, `dare backup` and `dare restore` end to end.

mod common;

use std::fs;
use std::time::{Duration, SystemTime};

use common::{Store, pattern, write};
use serde_json::Value;

/// Runs fsck with `args`; returns (exit status, report).
fn fsck(s: &Store, args: &[&str]) -> (i32, Value) {
    let mut a = vec!["fsck", "--json"];
    a.extend(args);
    let o = s.run(&a);
    let code = o.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "fsck {args:?}: not JSON ({e}): {} {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (code, v)
}

fn garbage_paths(r: &Value) -> Vec<String> {
    r["garbage"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["removed"] == false)
        .map(|g| g["path"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn fsck_reports_garbage_missing_files_and_corruption() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let key = write(&s.tmp("ck"), &[3u8; 32]);
    for i in 0..5u64 {
        let f = write(&s.tmp("in"), &pattern(3000 + i as usize * 5000, i));
        s.ok(&["put", &format!("bkt/o{i}"), &f]);
    }
    s.ok(&[
        "put",
        "bkt/ssec",
        &write(&s.tmp("in"), &pattern(5000, 9)),
        "--sse-c-key-file",
        &key,
    ]);

    // Clean.
    let (code, r) = fsck(&s, &["--deep"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["objects"], 6);
    assert_eq!(r["verified"], 5);
    assert_eq!(r["skipped_customer_keys"], 1);
    assert!(r["errors"].as_array().unwrap().is_empty());
    assert!(r["garbage"].as_array().unwrap().is_empty());
    let human = String::from_utf8(s.ok(&["fsck"])).unwrap();
    assert!(human.contains("no unreadable object"), "{human}");

    // An orphan at a data-file location: garbage, not an error; --repair removes it once it
    // is older than the grace period.
    let bid = s.bucket_id("bkt");
    let orphan = s.data_path(bid, "00112233445566778899aabbccddeeff");
    fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    fs::write(&orphan, pattern(4096, 77)).unwrap();
    let (code, r) = fsck(&s, &[]);
    assert_eq!(code, 0, "garbage alone is not an error: {r}");
    let g = garbage_paths(&r);
    assert_eq!(g.len(), 1, "{r}");
    assert!(g[0].ends_with("00112233445566778899aabbccddeeff"), "{r}");
    assert_eq!(r["garbage"][0]["data_file"], true);
    assert_eq!(r["garbage_left_bytes"], 4096);
    let human = String::from_utf8(s.ok(&["fsck"])).unwrap();
    assert!(human.contains("--repair"), "{human}");
    // Young: the default grace period keeps it (a put in flight owns a young file).
    let (code, r) = fsck(&s, &["--repair"]);
    assert_eq!(code, 0);
    assert_eq!(garbage_paths(&r).len(), 1, "{r}");
    assert!(orphan.exists());
    let (code, r) = fsck(&s, &["--repair", "--grace", "0"]);
    assert_eq!(code, 0);
    assert_eq!(r["garbage"][0]["removed"], true, "{r}");
    assert!(!orphan.exists(), "--repair --grace 0 removes the orphan");
    // An old orphan goes with the default grace period.
    fs::write(&orphan, b"old").unwrap();
    let f = fs::File::options().write(true).open(&orphan).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(f);
    let (_, r) = fsck(&s, &["--repair"]);
    assert_eq!(r["garbage_removed"], 1, "{r}");
    assert!(!orphan.exists());
    let (code, r) = fsck(&s, &["--deep"]);
    assert_eq!(code, 0, "repair removed nothing an object owns: {r}");
    for i in 0..5u64 {
        assert_eq!(
            s.ok(&["get", &format!("bkt/o{i}")]),
            pattern(3000 + i as usize * 5000, i)
        );
    }

    // A flipped byte in the body: only --deep sees it, and names the object.
    let f2 = s.data_file("bkt", "o2");
    let orig = fs::read(&f2).unwrap();
    let mut t = orig.clone();
    let last = t.len() - 1;
    t[last] ^= 1;
    fs::write(&f2, &t).unwrap();
    let (code, r) = fsck(&s, &[]);
    assert_eq!(code, 0, "a shallow fsck does not decrypt: {r}");
    let (code, r) = fsck(&s, &["--deep"]);
    assert_eq!(code, 4, "{r}");
    assert_eq!(r["errors"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["errors"][0]["bucket"], "bkt");
    assert_eq!(r["errors"][0]["name"], "o2");
    let o = s.run(&["fsck", "--deep"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stdout).contains("bkt/o2"));
    let (_, err) = common::check_failure("fsck --deep", &o);
    assert!(err.contains("unreadable"), "{err}");
    fs::write(&f2, &orig).unwrap();

    // A deleted data file: exit 4, naming the object; --repair does not hide it.
    let f3 = s.data_file("bkt", "o3");
    fs::remove_file(&f3).unwrap();
    for args in [&[][..], &["--repair", "--grace", "0"]] {
        let (code, r) = fsck(&s, args);
        assert_eq!(code, 4, "{r}");
        assert_eq!(r["errors"][0]["name"], "o3", "{r}");
        assert!(
            r["errors"][0]["problem"]
                .as_str()
                .unwrap()
                .contains("missing"),
            "{r}"
        );
    }
    let o = s.run(&["fsck"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("bkt/o3"));
    s.ok(&["rm", "bkt/o3"]);
    let (code, r) = fsck(&s, &["--deep"]);
    assert_eq!(code, 0, "{r}");
}

#[test]
fn backup_while_in_use_then_restore() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let mut before = Vec::new();
    for i in 0..8u64 {
        let data = pattern(2000 + i as usize * 3000, i);
        s.ok(&[
            "put",
            &format!("bkt/old{i}"),
            &write(&s.tmp(&format!("in{i}")), &data),
        ]);
        before.push((format!("bkt/old{i}"), data));
    }
    // The backup is taken while another process writes.
    let writer = {
        let store = s.path.clone();
        let input = write(&s.tmp("busy"), &pattern(300_000, 99));
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            for i in 0..12 {
                let o = common::dare()
                    .arg("--store")
                    .arg(&store)
                    .args(["put", &format!("bkt/busy{i}"), &input, "--json"])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
                let v: Value = serde_json::from_slice(&o.stdout).unwrap();
                ids.push(v["object_id"].as_str().unwrap().to_owned());
            }
            ids
        })
    };
    let bk = s.tmp("meta.backup");
    std::thread::sleep(Duration::from_millis(20));
    let out = String::from_utf8(s.ok(&["backup", bk.to_str().unwrap()])).unwrap();
    assert!(out.contains("objects"), "{out}");
    let busy_ids = writer.join().unwrap();
    // The backup holds wrapped keys only: not the root key.
    let root = fs::read(s.path.join("root.key")).unwrap();
    let backup_bytes = fs::read(&bk).unwrap();
    assert!(!backup_bytes.windows(32).any(|w| w == root.as_slice()));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&bk).unwrap().permissions().mode() & 0o077, 0);

    // Newer objects after the backup.
    let mut newer = Vec::new();
    for i in 0..3u64 {
        let v = s.json(&[
            "put",
            &format!("bkt/new{i}"),
            &write(&s.tmp("n"), &pattern(5000, 100 + i)),
            "--json",
        ]);
        newer.push(v["object_id"].as_str().unwrap().to_owned());
    }
    let out = String::from_utf8(s.ok(&["restore", bk.to_str().unwrap()])).unwrap();
    assert!(out.contains("dare fsck"), "{out}");

    // The backup's objects read back; the newer ones are gone and their files are garbage.
    for (t, data) in &before {
        assert_eq!(&s.ok(&["get", t]), data, "{t}");
    }
    for i in 0..3 {
        let (code, _) = s.fails(&["get", &format!("bkt/new{i}")]);
        assert_eq!(code, 3);
    }
    let (code, r) = fsck(&s, &["--deep"]);
    assert_eq!(code, 0, "{r}");
    let garbage = garbage_paths(&r);
    for id in &newer {
        assert!(
            garbage.iter().any(|g| g.ends_with(id.as_str())),
            "{id} not reported as garbage: {r}"
        );
    }
    // Puts that raced the backup are either in it (and read back) or garbage.
    let busy = pattern(300_000, 99);
    for (i, id) in busy_ids.iter().enumerate() {
        let o = s.run(&["get", &format!("bkt/busy{i}")]);
        if o.status.success() {
            assert_eq!(o.stdout, busy, "busy{i}");
        } else {
            assert_eq!(o.status.code(), Some(3), "busy{i}");
            assert!(
                garbage.iter().any(|g| g.ends_with(id.as_str())),
                "busy{i}: {r}"
            );
        }
    }
    let (code, r) = fsck(&s, &["--repair", "--grace", "0"]);
    assert_eq!(code, 0, "{r}");
    let (_, r) = fsck(&s, &["--deep"]);
    assert!(r["garbage"].as_array().unwrap().is_empty(), "{r}");
    for (t, data) in &before {
        assert_eq!(&s.ok(&["get", t]), data, "{t}");
    }
    // Restoring into a directory without a store is refused.
    let other = s.tmp("no-store");
    let o = common::dare()
        .arg("--store")
        .arg(&other)
        .args(["restore", bk.to_str().unwrap()])
        .output()
        .unwrap();
    common::check_failure("restore into nothing", &o);
}
