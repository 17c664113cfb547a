//! The `dare` binary end to end: what an operator types, what comes back, and what is left
//! on disk when things go wrong. (Tampering: tamper.rs; rotation and rewrap: keys.rs; fsck,
//! backup and restore: fsck.rs; SIGKILLs: crash.rs; the previous release's store:
//! migrate.rs.)

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;

use common::{Store, check_failure, dare, pattern, write};
use serde_json::Value;

#[test]
fn big_object_roundtrip_and_ranges() {
    let s = Store::new(65536);
    s.ok(&["bucket", "create", "bkt"]);
    let data = pattern(24 << 20, 1);
    let input = write(&s.tmp("in"), &data);
    s.ok(&[
        "put",
        "bkt/big",
        &input,
        "--meta",
        "owner=ops",
        "--meta",
        "class=gold",
    ]);
    let out = s.tmp("out");
    s.ok(&["get", "bkt/big", "-o", out.to_str().unwrap()]);
    assert!(fs::read(&out).unwrap() == data);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let c = 65536usize;
    for (a, b) in [
        (0, 0),
        (c - 1, c),
        (c, 2 * c - 1),
        (c - 5, 3 * c + 5),
        (100, 200),
        (data.len() - 1, data.len() - 1),
    ] {
        let got = s.ok(&["get", "bkt/big", "--range", &format!("{a}-{b}")]);
        assert!(got == data[a..=b], "range {a}-{b}");
    }
    assert_eq!(
        s.ok(&["get", "bkt/big", "--range", "-10"]),
        &data[data.len() - 10..]
    );
    assert_eq!(
        s.ok(&["get", "bkt/big", "--range", "bytes=5-"]),
        &data[5..],
        "bytes= prefix"
    );
    let end_clamped = s.ok(&[
        "get",
        "bkt/big",
        "--range",
        &format!("{}-99999999999", data.len() - 3),
    ]);
    assert_eq!(
        end_clamped,
        &data[data.len() - 3..],
        "LAST past the end is clamped"
    );
    let head = s.json(&["head", "bkt/big", "--json"]);
    assert_eq!(head["size"], data.len() as u64);
    assert_eq!(head["chunk_size"], 65536);
    assert_eq!(head["encrypted"], true);
    assert_eq!(head["format"], 2);
    assert_eq!(head["metadata"]["owner"], "ops");
    assert_eq!(head["key_ref"]["kind"], "hierarchy");
    assert_eq!(head["key_ref"]["rotation_version"], 1);
    assert_eq!(head["object_id"].as_str().unwrap().len(), 32);
    assert!(head["etag"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(head["stored_size"].as_u64().unwrap() > data.len() as u64);
    let human = String::from_utf8(s.ok(&["head", "bkt/big"])).unwrap();
    for want in [
        "object id:",
        "stored:",
        "ETag:",
        "created:",
        "format:      2",
        "rotation key v1",
        "owner=ops",
    ] {
        assert!(human.contains(want), "head lacks {want:?}: {human}");
    }
    // The stored file is not the plaintext.
    let stored = fs::read(s.data_file("bkt", "big")).unwrap();
    assert_eq!(stored.len() as u64, head["stored_size"].as_u64().unwrap());
    assert!(!stored.windows(64).any(|w| w == &data[1000..1064]));
}

#[test]
fn s3_names_round_trip_list_with_delimiter_and_paginate() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    // 1000 bytes of UTF-8, multibyte and ASCII, with `/`.
    let long = format!("photos/{}x", "é".repeat(496));
    assert_eq!(long.len(), 1000);
    let too_long = format!("photos/{}", "é".repeat(509));
    assert_eq!(too_long.len(), 1025);
    let names = [
        "photos/2026/cat.jpg",
        "photos/2026/dog.jpg",
        "photos/2025/old.jpg",
        "photos/readme",
        long.as_str(),
        "top",
        "other/a",
        "zzz/deep/er/still",
    ];
    for (i, n) in names.iter().enumerate() {
        let data = pattern(100 + i * 1000, i as u64);
        s.ok(&["put", &format!("bkt/{n}"), &write(&s.tmp("in"), &data)]);
    }
    for (i, n) in names.iter().enumerate() {
        assert_eq!(
            s.ok(&["get", &format!("bkt/{n}")]),
            pattern(100 + i * 1000, i as u64),
            "{n}"
        );
        assert_eq!(s.json(&["head", &format!("bkt/{n}"), "--json"])["name"], *n);
    }
    let (code, err) = s.fails(&[
        "put",
        &format!("bkt/{too_long}"),
        &write(&s.tmp("in"), b"x"),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("1024"), "{err}");
    s.fails(&["get", &format!("bkt/{too_long}")]);

    // Prefix and delimiter, as `aws s3 ls`.
    let page = s.json(&[
        "ls",
        "bkt",
        "--prefix",
        "photos/",
        "--delimiter",
        "/",
        "--json",
    ]);
    assert_eq!(
        page["common_prefixes"],
        serde_json::json!(["photos/2025/", "photos/2026/"])
    );
    let objs: Vec<&str> = page["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(objs, ["photos/readme", long.as_str()]);
    assert_eq!(page["is_truncated"], false);
    let human =
        String::from_utf8(s.ok(&["ls", "bkt", "--prefix", "photos/", "--delimiter", "/"])).unwrap();
    assert!(
        human
            .lines()
            .any(|l| l.trim_start().starts_with("PRE") && l.trim_end().ends_with("photos/2026/")),
        "{human}"
    );
    let top = s.json(&["ls", "bkt", "--delimiter", "/", "--json"]);
    assert_eq!(
        top["common_prefixes"],
        serde_json::json!(["other/", "photos/", "zzz/"])
    );
    assert_eq!(top["objects"][0]["name"], "top");

    // Pagination walks every object exactly once, in UTF-8 byte order.
    let mut expected: Vec<&str> = names.to_vec();
    expected.sort();
    for extra in [vec![], vec!["--prefix", "photos/", "--delimiter", "/"]] {
        let mut seen = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut args = vec!["ls", "bkt", "--max-keys", "2", "--json"];
            args.extend(&extra);
            let t;
            if let Some(x) = &token {
                t = x.clone();
                args.extend(["--continuation-token", t.as_str()]);
            }
            let p = s.json(&args);
            pages += 1;
            let n = p["objects"].as_array().unwrap().len()
                + p["common_prefixes"].as_array().unwrap().len();
            assert!(n <= 2, "{p}");
            for o in p["objects"].as_array().unwrap() {
                seen.push(o["name"].as_str().unwrap().to_owned());
            }
            for c in p["common_prefixes"].as_array().unwrap() {
                seen.push(c.as_str().unwrap().to_owned());
            }
            if p["is_truncated"] == true {
                token = Some(p["next_continuation_token"].as_str().unwrap().to_owned());
            } else {
                assert!(p["next_continuation_token"].is_null());
                break;
            }
            assert!(pages < 20, "pagination does not end");
        }
        let want: Vec<String> = if extra.is_empty() {
            expected.iter().map(|n| n.to_string()).collect()
        } else {
            let mut v = vec![
                "photos/2025/".to_string(),
                "photos/2026/".into(),
                "photos/readme".into(),
                long.clone(),
            ];
            v.sort();
            v
        };
        assert_eq!(seen, want, "pagination {extra:?}");
        assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len());
    }
    // Human output tells how to continue.
    let human = String::from_utf8(s.ok(&["ls", "bkt", "--max-keys", "2"])).unwrap();
    assert!(
        human
            .lines()
            .last()
            .unwrap()
            .contains("--continuation-token"),
        "{human}"
    );
    assert_eq!(human.lines().count(), 3, "{human}");
    // --start-after.
    let after = s.json(&["ls", "bkt", "--start-after", "photos/readme", "--json"]);
    assert_eq!(after["objects"][0]["name"], long.as_str());
    s.fails(&["ls", "bkt", "--continuation-token", "!!not-a-token!!"]);
}

#[test]
fn names_with_control_characters_do_not_break_the_terminal() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let f = write(&s.tmp("in"), b"hello");
    s.ok(&["put", "bkt/evil\n\x1b[2Jname", &f]);
    let human = String::from_utf8(s.ok(&["ls", "bkt"])).unwrap();
    assert_eq!(human.lines().count(), 1, "{human:?}");
    assert!(!human.contains('\x1b'), "{human:?}");
    assert!(human.contains("evil\\n"), "{human:?}");
    let j = s.json(&["ls", "bkt", "--json"]);
    assert_eq!(j["objects"][0]["name"], "evil\n\x1b[2Jname");
    assert_eq!(s.ok(&["get", "bkt/evil\n\x1b[2Jname"]), b"hello");
}

#[test]
fn bucket_and_namespace_removal() {
    let s = Store::new(4096);
    s.ok(&["ns", "create", "team"]);
    s.ok(&["bucket", "create", "bkt", "--namespace", "team"]);
    let f = write(&s.tmp("in"), &pattern(9000, 5));
    for n in ["x", "y/z"] {
        s.ok(&["put", &format!("bkt/{n}"), &f]);
    }
    let id = s.bucket_id("bkt");
    let dir = s.path.join("objects").join(id.to_string());
    assert_eq!(common::walk(&dir).len(), 2);
    let (code, err) = s.fails(&["bucket", "rm", "bkt"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--force") && err.contains("2 object"), "{err}");
    let (code, err) = s.fails(&["ns", "rm", "team"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("bucket"), "{err}");
    assert_eq!(
        s.ok(&["get", "bkt/x"]),
        pattern(9000, 5),
        "a refused rm changes nothing"
    );
    let help = String::from_utf8(s.ok(&["bucket", "rm", "--help"])).unwrap();
    assert!(help.contains("crypto-shredding"), "{help}");
    let r = s.json(&["bucket", "rm", "bkt", "--force", "--json"]);
    assert_eq!(r["objects_deleted"], 2);
    assert_eq!(r["bucket_key_destroyed"], true);
    assert!(!dir.exists(), "the bucket's data directory is gone");
    let (code, _) = s.fails(&["get", "bkt/x"]);
    assert_eq!(code, 3);
    let (code, _) = s.fails(&["bucket", "rm", "bkt"]);
    assert_eq!(code, 3);
    s.ok(&["ns", "rm", "team"]);
    let (code, _) = s.fails(&["ns", "rm", "team"]);
    assert_eq!(code, 3);
    let ns = s.json(&["ns", "ls", "--json"]);
    assert_eq!(ns.as_array().unwrap().len(), 1, "{ns}");
    // An empty bucket goes without --force.
    s.ok(&["bucket", "create", "empty"]);
    s.ok(&["bucket", "rm", "empty"]);
    assert_eq!(s.json(&["ls", "--json"]), serde_json::json!([]));
}

#[test]
fn bad_input_gives_clear_errors() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let f = write(&s.tmp("in"), b"hello");
    let (code, err) = s.fails(&["put", "nob/k", &f]);
    assert!(err.contains("nob"), "{err}");
    assert_eq!(code, 3);
    let (code, err) = s.fails(&["get", "bkt/missing"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no such object"), "{err}");
    for bad in ["/k", "bkt/", "bkt", ""] {
        let (code, err) = s.fails(&["put", bad, &f]);
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.contains("BUCKET/NAME"), "{err}");
    }
    // A name that is not UTF-8 is refused, not a panic.
    for cmd in ["put", "get", "head", "rm"] {
        let o = s.run(&[OsStr::new(cmd), OsStr::from_bytes(b"bkt/caf\xe9")]);
        let (code, err) = check_failure(cmd, &o);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("UTF-8"), "{err}");
    }
    s.fails(&["bucket", "create", ".."]);
    s.fails(&["bucket", "create", "a/b"]);
    s.ok(&["put", "bkt/k", &f]);
    // Ranges (HTTP semantics): unsatisfiable and malformed ones are one clear line.
    let (code, err) = s.fails(&["get", "bkt/k", "--range", "5-9"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not satisfiable") && err.contains("5 bytes"),
        "{err}"
    );
    let (_, err) = s.fails(&["get", "bkt/k", "--range", "3-1"]);
    assert!(err.contains("3-1"), "{err}");
    for bad in ["x-1", "1", "-", "--3", "1-2-3"] {
        s.fails(&["get", "bkt/k", "--range", bad]);
    }
    assert_eq!(s.ok(&["get", "bkt/k", "--range", "bytes=1-3"]), b"ell");
    let out = s.tmp("never");
    s.fails(&["get", "bkt/k", "--range", "9-", "-o", out.to_str().unwrap()]);
    assert!(!out.exists());
    // -o naming a FIFO (or a device) streams into it rather than renaming a file over it.
    let fifo = s.tmp("fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|st| st.success()) {
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        s.ok(&["get", "bkt/k", "-o", fifo.to_str().unwrap()]);
        assert_eq!(reader.join().unwrap(), b"hello");
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }
    // Zero-length object: valid and authenticated; any range of it is unsatisfiable.
    s.ok(&["put", "bkt/empty", &write(&s.tmp("e"), b"")]);
    assert_eq!(s.ok(&["get", "bkt/empty"]), b"");
    s.fails(&["get", "bkt/empty", "--range", "0-0"]);
    // A customer key for an object written without one (S3 answers 400 here).
    let kf = write(&s.tmp("key"), &[7u8; 32]);
    let (code, err) = s.fails(&["get", "bkt/k", "--sse-c-key-file", &kf]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("customer"), "{err}");
    s.fails(&["head", "bkt/k", "--sse-c-key-file", &kf]);
    let short = write(&s.tmp("short"), &[7u8; 31]);
    s.fails(&["put", "bkt/s", &f, "--sse-c-key-file", &short]);
    s.fails(&[
        "put",
        "bkt/s",
        &f,
        "--sse-c-key-file",
        &kf,
        "--sse-c-key-md5",
        "AAAA",
    ]);
    s.fails(&["put", "bkt/m", &f, "--meta", "novalue"]);
    s.fails(&["put", "bkt/m", &s.tmp("no-such-input").to_string_lossy()]);
    // Usage errors from the parser exit 2.
    let o = s.run(&["ls", "--prefix", "x"]);
    assert_eq!(o.status.code(), Some(2));
    let o = s.run(&["keys", "rewrap"]);
    assert_eq!(o.status.code(), Some(2));
    s.fails(&["--backend", "nonsense", "cpu"]);
    // A missing store is named, with how to make one.
    let o = dare()
        .args(["--store", "/nonexistent/dare", "ls"])
        .output()
        .unwrap();
    let (code, err) = check_failure("ls on a missing store", &o);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/dare") && err.contains("dare init"),
        "{err}"
    );
    let o = dare()
        .args(["ls"])
        .env("DARE_STORE", s.tmp("nothing-here"))
        .output()
        .unwrap();
    check_failure("ls via DARE_STORE", &o);
    // init twice is refused.
    let (_, err) = s.fails(&["init"]);
    assert!(err.contains("already"), "{err}");
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
    let (_, err) = s.fails(&["bucket", "create", "bad", "--encryption", "off"]);
    assert!(err.contains("encrypted"), "{err}");
    let data = b"plain text that is not secret".repeat(50);
    let f = write(&s.tmp("in"), &data);
    for b in ["pub", "sec", "enc"] {
        s.ok(&["put", &format!("{b}/x"), &f]);
        assert_eq!(s.ok(&["get", &format!("{b}/x")]), data);
    }
    let stored = fs::read(s.data_file("pub", "x")).unwrap();
    assert!(stored.windows(data.len()).any(|w| w == &data[..]));
    for b in ["sec", "enc"] {
        let stored = fs::read(s.data_file(b, "x")).unwrap();
        assert!(
            !stored.windows(20).any(|w| w == &data[..20]),
            "{b} stored plaintext"
        );
    }
    let h = s.json(&["head", "pub/x", "--json"]);
    assert_eq!(h["encrypted"], false);
    assert_eq!(h["key_ref"], Value::Null);
    // Downgrade: a cleartext data file put in place of an encrypted one is refused.
    let enc_file = s.data_file("enc", "x");
    fs::copy(s.data_file("pub", "x"), &enc_file).unwrap();
    let out = s.tmp("downgraded");
    let (code, err) = s.fails(&["get", "enc/x", "-o", out.to_str().unwrap()]);
    assert_eq!(code, 4, "{err}");
    assert!(!out.exists());
    assert!(s.partial_files().is_empty());
    let h = s.json(&["head", "sec/x", "--json"]);
    assert_eq!(h["encrypted"], true);
    let list = s.json(&["bucket", "ls", "--json"]);
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
    s.ok(&["bucket", "create", "bkt"]);
    let key = [0x5Cu8; 32];
    let kf = write(&s.tmp("key"), &key);
    let wrong = write(&s.tmp("wrong"), &[0x11u8; 32]);
    let data = pattern(10_000, 3);
    s.ok(&[
        "put",
        "bkt/c",
        &write(&s.tmp("in"), &data),
        "--sse-c-key-file",
        &kf,
        "--meta",
        "m=1",
    ]);
    assert_eq!(s.ok(&["get", "bkt/c", "--sse-c-key-file", &kf]), data);
    let (_, missing) = s.fails(&["get", "bkt/c"]);
    let (code, bad) = s.fails(&["get", "bkt/c", "--sse-c-key-file", &wrong]);
    assert_eq!(code, 4, "{bad}");
    assert!(missing.to_lowercase().contains("key"), "{missing}");
    assert_ne!(missing, bad, "missing and wrong key must be told apart");
    // head works without the key but says the metadata is under the customer key.
    let h = s.json(&["head", "bkt/c", "--json"]);
    assert_eq!(h["key_ref"]["kind"], "sse-c");
    assert_eq!(h["metadata"], Value::Null);
    let human = String::from_utf8(s.ok(&["head", "bkt/c"])).unwrap();
    assert!(human.contains("encrypted with a customer key"), "{human}");
    let h = s.json(&["head", "bkt/c", "--json", "--sse-c-key-file", &kf]);
    assert_eq!(h["metadata"]["m"], "1");
    // The customer key appears nowhere in the store.
    for entry in common::walk(&s.path) {
        let bytes = fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(32).any(|w| w == key),
            "customer key found in {}",
            entry.display()
        );
    }
}

#[test]
fn passphrase_protected_store() {
    let s = Store::empty();
    let pass = write(&s.tmp("pass"), b"correct horse battery staple\n");
    let wrong = write(&s.tmp("wrong"), b"incorrect horse\n");
    s.ok(&["init", "--chunk-size", "4096", "--passphrase-file", &pass]);
    assert!(!s.path.join("root.key").exists());
    let env = [("DARE_PASSPHRASE_FILE", pass.as_str())];
    let o = s.run_env(&["bucket", "create", "bkt"], &env);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let data = pattern(5000, 8);
    let f = write(&s.tmp("in"), &data);
    s.ok(&["--passphrase-file", &pass, "put", "bkt/x", &f]);
    let o = s.run_env(&["get", "bkt/x"], &env);
    assert_eq!(o.stdout, data);
    let (_, err) = s.fails(&["get", "bkt/x"]);
    assert!(err.contains("passphrase"), "{err}");
    let (code, err) = s.fails(&["--passphrase-file", &wrong, "get", "bkt/x"]);
    assert_eq!(code, 4, "{err}");
    let (_, err) = s.fails(&["--passphrase-file", "/nonexistent/pass", "get", "bkt/x"]);
    assert!(err.contains("passphrase"), "{err}");
    // The background rotation runner gets the passphrase too.
    let o = s.run_env(&["keys", "rotate"], &env);
    assert!(o.status.success());
    let o = s.run_env(&["keys", "rotation", "status", "--wait", "--json"], &env);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let help = String::from_utf8(s.ok(&["init", "--help"])).unwrap();
    assert!(help.contains("DARE_PASSPHRASE_FILE"), "{help}");
    let help = String::from_utf8(s.ok(&["--help"])).unwrap();
    assert!(help.contains("DARE_PASSPHRASE_FILE"), "{help}");
}

#[test]
fn closed_stdout_is_not_a_crash() {
    let s = Store::new(65536);
    s.ok(&["bucket", "create", "bkt"]);
    s.ok(&["put", "bkt/big", &write(&s.tmp("in"), &pattern(8 << 20, 6))]);
    for n in 0..300 {
        s.ok(&[
            "put",
            &format!("bkt/n{n:04}"),
            &write(&s.tmp("small"), b"x"),
        ]);
    }
    for args in [
        &["get", "bkt/big"][..],
        &["ls", "bkt"],
        &["ls", "bkt", "--json"],
    ] {
        let mut child = s
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let mut buf = [0u8; 16];
        out.read_exact(&mut buf).unwrap();
        drop(out);
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(o.status.code().is_some(), "{args:?}: killed by a signal");
        assert!(o.status.code() == Some(0), "{args:?}: {:?} {err}", o.status);
    }
}

#[test]
fn cpu_reports_backend_and_io() {
    let s = Store::new(4096);
    let v = s.json(&["cpu", "--json"]);
    assert!(v["selected"].is_string() && v["io_uring"].is_boolean());
    assert!(v["features"]["aes"].is_boolean());
    assert_eq!(
        v["io"], "std",
        "buffered files use positioned std I/O by default"
    );
    let forced = s.run_env(&["cpu", "--json"], &[("DARE_AEAD_BACKEND", "portable")]);
    let v: Value = serde_json::from_slice(&forced.stdout).unwrap();
    assert_eq!(v["selected"], "portable");
    let forced = s.run_env(&["cpu", "--json"], &[("DARE_IO", "std")]);
    let v: Value = serde_json::from_slice(&forced.stdout).unwrap();
    assert_eq!(v["io"], "std");
    if v["io_uring"] == true {
        let forced = s.run_env(&["cpu", "--json"], &[("DARE_IO", "uring")]);
        let v: Value = serde_json::from_slice(&forced.stdout).unwrap();
        assert_eq!(v["io"], "io_uring");
    }
}

/// `dare bench aead` measures every backend this CPU supports (the AES-NI kernel included
/// where it runs), reports the median and the best of `--rounds`, and names the aws-lc
/// capability mask it ran under.
#[test]
fn bench_aead_reports_every_backend_median_and_best() {
    let s = Store::new(4096);
    let quick = [
        "bench",
        "aead",
        "--size",
        "4096",
        "--seconds",
        "0.02",
        "--rounds",
        "2",
    ];
    let out = s.run_env(
        &[&quick[..], &["--json"]].concat(),
        &[("OPENSSL_ia32cap", "~0x0:~0x60000000000")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["openssl_ia32cap"], "~0x0:~0x60000000000");
    assert_eq!(v["rounds"], 2);
    let cpu = s.json(&["cpu", "--json"]);
    let results = v["results"].as_array().unwrap();
    for b in cpu["backends"].as_array().unwrap() {
        let name = b["name"].as_str().unwrap();
        let runs = results.iter().filter(|r| r["backend"] == name).count();
        let want = if b["supported"].as_bool().unwrap() {
            2
        } else {
            0
        };
        assert_eq!(
            runs, want,
            "{name}: seal and open when supported, nothing otherwise"
        );
    }
    for r in results {
        let (med, best) = (
            r["bytes_per_sec"].as_f64().unwrap(),
            r["best_bytes_per_sec"].as_f64().unwrap(),
        );
        assert!(med > 0.0 && best >= med, "{r}");
        // Paired ratios against both references (built in by default), ordered quartiles;
        // a reference against itself is exactly 1 in every round.
        for reference in ["ring", "aws-lc-rs"] {
            let p = &r["paired"][reference];
            let q = |k: &str| {
                p[k].as_f64()
                    .unwrap_or_else(|| panic!("{r}: {reference}.{k}"))
            };
            assert!(
                q("p25") > 0.0 && q("p25") <= q("median") && q("median") <= q("p75"),
                "{r}"
            );
            if r["backend"] == reference {
                assert_eq!((q("p25"), q("median"), q("p75")), (1.0, 1.0, 1.0), "{r}");
            }
        }
    }
    let text = s.run_env(&quick, &[]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("ring ") && l.contains("1.00 [1.00-1.00]")),
        "{text}"
    );
    let bad = s.run_env(&["bench", "aead", "--rounds", "0"], &[]);
    assert!(!bad.status.success());
}

/// `dare cpu` reports the features as Linux detects them (its `/proc/cpuinfo` flags apply the
/// same OS-state rules): VAES and VPCLMULQDQ count on 256-bit registers, with or without
/// AVX-512. And a backend is listed as supported exactly when the reported features carry
/// its kernel's list, so the report and the dispatch cannot disagree.
#[test]
fn cpu_features_are_the_kernels_view() {
    let s = Store::new(4096);
    let v = s.json(&["cpu", "--json"]);
    let feats = v["features"].as_object().unwrap();
    let has = |n: &str| feats[n].as_bool().unwrap_or_else(|| panic!("features.{n}"));
    for n in [
        "aes",
        "pclmulqdq",
        "avx",
        "avx2",
        "avx512f",
        "avx512vl",
        "avx512bw",
        "vaes",
        "vpclmulqdq",
    ] {
        assert!(feats.contains_key(n), "features.{n} missing");
    }
    let supported = |b: &str| {
        v["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == b)
            .and_then(|x| x["supported"].as_bool())
            .unwrap_or_else(|| panic!("backend {b} missing"))
    };
    let ymm = has("aes") && has("pclmulqdq") && has("avx") && has("avx2");
    assert_eq!(
        supported("vaes256"),
        ymm && has("vaes") && has("vpclmulqdq")
    );
    assert_eq!(
        supported("vaes512"),
        supported("vaes256") && has("avx512f") && has("avx512vl") && has("avx512bw")
    );
    assert_eq!(
        supported("aesni"),
        has("aes") && has("pclmulqdq") && has("avx")
    );
    assert!(supported("portable"));
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        eprintln!("no /proc/cpuinfo: the comparison with the kernel's flags is left out");
        return;
    };
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().collect())
        .unwrap_or_default();
    assert!(!flags.is_empty(), "no flags line in /proc/cpuinfo");
    for (n, present) in feats {
        assert_eq!(
            present.as_bool(),
            Some(flags.contains(&n.as_str())),
            "dare cpu says {n} = {present}; /proc/cpuinfo flags {}",
            if flags.contains(&n.as_str()) {
                "list it"
            } else {
                "do not"
            }
        );
    }
}

#[test]
fn std_io_fallback_gives_identical_results() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let data = pattern(300_000, 4);
    let f = write(&s.tmp("in"), &data);
    s.ok(&["--io", "std", "put", "bkt/x", &f]);
    let via_env = s.run_env(&["get", "bkt/x"], &[("DARE_IO", "std")]);
    assert!(via_env.status.success());
    assert_eq!(via_env.stdout, data);
    let portable = s.run_env(&["get", "bkt/x"], &[("DARE_AEAD_BACKEND", "portable")]);
    assert_eq!(portable.stdout, data);
    if dare_engine::storage::uring_available() {
        assert_eq!(s.ok(&["--io", "uring", "get", "bkt/x"]), data);
    }
}

#[test]
fn every_command_that_prints_speaks_json() {
    let s = Store::empty();
    let init = s.json(&["init", "--chunk-size", "4096", "--json"]);
    assert_eq!(init["chunk_size"], 4096);
    assert_eq!(s.json(&["ns", "create", "n", "--json"])["name"], "n");
    assert_eq!(
        s.json(&["bucket", "create", "bkt", "--json"])["encryption"],
        true
    );
    let f = write(&s.tmp("in"), b"data");
    assert_eq!(s.json(&["put", "bkt/x", &f, "--json"])["size"], 4);
    assert_eq!(s.json(&["rm", "bkt/x", "--json"])["deleted"]["name"], "x");
    assert!(s.json(&["fsck", "--json"])["clean"] == true);
    let bk = s.tmp("meta.bak");
    assert!(s.json(&["backup", bk.to_str().unwrap(), "--json"])["backup"].is_string());
    assert!(s.json(&["keys", "dump"])["master_keys"].is_array());
    assert_eq!(
        s.json(&["keys", "rotate", "--wait", "--json"])["task"]["state"],
        "completed"
    );
    assert!(s.json(&["keys", "rotation", "resume", "--json"])["task"].is_object());
    assert_eq!(
        s.json(&["ns", "rm", "n", "--json"])["deleted_namespace"],
        "n"
    );
    assert!(s.json(&["restore", bk.to_str().unwrap(), "--json"])["restored"].is_string());
}
