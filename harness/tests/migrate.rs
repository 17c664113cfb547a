//! A store made by the previous release (dare/tests/fixtures/v1-store: `keystore.dat`, one
//! format-1 file per object) used through the CLI: the first command migrates it, and every
//! object reads back.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::Store;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dare/tests/fixtures/v1-store")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            fs::copy(e.path(), &t).unwrap();
        }
    }
}

fn input(name: &str) -> Vec<u8> {
    fs::read(fixture().join("input").join(name)).unwrap()
}

#[test]
fn v1_store_migrates_on_first_use() {
    let s = Store::empty();
    copy_dir(&fixture().join("store"), &s.path);
    // git does not keep modes; the root key file must not be readable by others.
    fs::set_permissions(s.path.join("root.key"), fs::Permissions::from_mode(0o600)).unwrap();

    let listed = s.json(&["ls", "photos", "--json"]);
    let names: Vec<&str> = listed["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["after-rotation", "cat.jpg", "empty", "one", "ssec"]);
    let human = String::from_utf8(s.ok(&["ls", "photos"])).unwrap();
    assert_eq!(human.lines().count(), 5, "{human}");

    assert_eq!(s.ok(&["get", "photos/cat.jpg"]), input("in5000"));
    let out = s.tmp("cat");
    s.ok(&["get", "photos/cat.jpg", "-o", out.to_str().unwrap()]);
    assert_eq!(fs::read(&out).unwrap(), input("in5000"));
    assert_eq!(
        s.ok(&["get", "photos/after-rotation", "--range", "4000-8999"]),
        input("in20000")[4000..9000]
    );
    assert_eq!(s.ok(&["get", "public/data"]), input("in5000"));
    let ck = fixture().join("input/ck");
    assert_eq!(
        s.ok(&[
            "get",
            "photos/ssec",
            "--sse-c-key-file",
            ck.to_str().unwrap()
        ]),
        input("in5000")
    );
    let h = s.json(&["head", "photos/cat.jpg", "--json"]);
    assert_eq!(h["format"], 1);
    assert_eq!(h["metadata"]["owner"], "alice");
    assert_eq!(h["metadata"]["class"], "gold");

    let o = s.run(&["fsck", "--deep", "--json"]);
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(0), "{r}");
    assert_eq!(r["clean"], true);
    assert_eq!(r["objects"], 7, "{r}");
    assert_eq!(r["skipped_customer_keys"], 1, "{r}");
    assert!(r["garbage"].as_array().unwrap().is_empty(), "{r}");

    // Format-1 envelopes are inside the authenticated file header: rewrap skips them.
    let w = s.json(&["keys", "rewrap", "--bucket", "photos", "--json"]);
    assert_eq!(w["buckets"][0]["rewrapped"], 0, "{w}");
    assert_eq!(w["buckets"][0]["format1"], 5, "{w}");
    // New objects in the migrated store are format 2.
    s.ok(&["put", "photos/new", &common::write(&s.tmp("in"), b"new")]);
    assert_eq!(s.json(&["head", "photos/new", "--json"])["format"], 2);
}
