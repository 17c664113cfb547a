//! Tampered data files through the real binary: every substitution or flipped byte is refused
//! with exit status 4, and a refused GET with `-o` leaves no output file, not even a partial
//! one. Every chunk's associated data binds the object's identity (store, bucket, object id,
//! name), for every key kind, SSE-C included (FORMAT.md).

mod common;

use std::fs;

use common::{Store, pattern, write};

/// GETs `target` (with `extra` arguments) into `-o`, expecting an integrity failure and no
/// output, partial or whole; then to standard output, expecting no byte at all.
fn refused(s: &Store, target: &str, extra: &[&str], what: &str) {
    let out = s.tmp("out");
    let mut args = vec!["get", target, "-o", out.to_str().unwrap()];
    args.extend(extra);
    let (code, err) = s.fails(&args);
    assert_eq!(code, 4, "{what}: {err}");
    assert!(!out.exists(), "{what}: output file written");
    assert!(s.partial_files().is_empty(), "{what}: partial output left");
    let mut args = vec!["get", target];
    args.extend(extra);
    let o = s.run(&args);
    assert_eq!(o.status.code(), Some(4), "{what}");
    assert!(o.stdout.is_empty(), "{what}: plaintext released");
}

#[test]
fn data_file_copied_over_another_objects_is_refused() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    s.ok(&["bucket", "create", "cbk"]);
    let key = write(&s.tmp("ck"), &[0x42u8; 32]);
    let ssec = ["--sse-c-key-file", key.as_str()];
    // Same size everywhere, so only the cryptography can tell the files apart.
    let size = 3 * 4096 + 100;
    let objects: [(&str, &[&str]); 5] = [
        ("bkt/x", &[]),
        ("bkt/y", &[]),
        ("cbk/z", &[]),
        ("bkt/s1", &ssec),
        ("bkt/s2", &ssec),
    ];
    for (i, (t, extra)) in objects.iter().enumerate() {
        let mut args = vec!["put", t];
        let f = write(&s.tmp("in"), &pattern(size, i as u64));
        args.push(&f);
        args.extend(*extra);
        s.ok(&args);
    }
    let file = |t: &str, extra: &[&str]| {
        let (b, n) = t.split_once('/').unwrap();
        s.data_file_with(b, n, extra)
    };
    let cases: [(&str, &str, &[&str], &str); 3] = [
        ("bkt/x", "bkt/y", &[], "same bucket"),
        ("bkt/x", "cbk/z", &[], "other bucket"),
        ("bkt/s1", "bkt/s2", &ssec, "SSE-C, same customer key"),
    ];
    for (from, to, extra, what) in cases {
        let victim = file(to, extra);
        let original = fs::read(&victim).unwrap();
        let donor = fs::read(file(from, extra)).unwrap();
        assert_eq!(original.len(), donor.len(), "{what}: same stored size");
        fs::write(&victim, &donor).unwrap();
        refused(&s, to, extra, what);
        // The donor itself still reads; restoring the file restores the object.
        let i = objects.iter().position(|(t, _)| *t == from).unwrap();
        let mut args = vec!["get", from];
        args.extend(extra);
        assert_eq!(s.ok(&args), pattern(size, i as u64), "{what}");
        fs::write(&victim, &original).unwrap();
        let j = objects.iter().position(|(t, _)| *t == to).unwrap();
        let mut args = vec!["get", to];
        args.extend(extra);
        assert_eq!(s.ok(&args), pattern(size, j as u64), "{what}");
    }
    // fsck sees the swap without decrypting (the header names another object).
    let victim = file("bkt/y", &[]);
    fs::copy(file("bkt/x", &[]), &victim).unwrap();
    let o = s.run(&["fsck", "--json"]);
    assert_eq!(o.status.code(), Some(4));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["errors"][0]["name"], "y", "{r}");
}

#[test]
fn any_flipped_byte_fails_get_and_leaves_no_output() {
    let s = Store::new(4096);
    s.ok(&["bucket", "create", "bkt"]);
    let data = pattern(5 * 4096 + 123, 2);
    s.ok(&["put", "bkt/o", &write(&s.tmp("in"), &data)]);
    let file = s.data_file("bkt", "o");
    let orig = fs::read(&file).unwrap();
    let positions: Vec<usize> = (0..orig.len())
        .step_by(211)
        .chain([0, 4, 24, 60, 100, orig.len() - 1])
        .collect();
    for &i in &positions {
        let mut t = orig.clone();
        t[i] ^= 0x20;
        fs::write(&file, &t).unwrap();
        let out = s.tmp("out");
        let o = s.run(&["get", "bkt/o", "-o", out.to_str().unwrap()]);
        let (code, err) = common::check_failure(&format!("get, byte {i} flipped"), &o);
        assert_eq!(code, 4, "byte {i}: {err}");
        assert!(!out.exists(), "byte {i}: output file left behind");
        assert!(
            s.partial_files().is_empty(),
            "byte {i}: partial output left"
        );
    }
    // Cut and extended files too.
    for len in [0, 60, orig.len() - 1] {
        fs::write(&file, &orig[..len]).unwrap();
        let (code, err) = s.fails(&["get", "bkt/o"]);
        assert_eq!(code, 4, "cut to {len}: {err}");
    }
    let mut longer = orig.clone();
    longer.extend_from_slice(&[0u8; 16]);
    fs::write(&file, &longer).unwrap();
    let (code, err) = s.fails(&["get", "bkt/o"]);
    assert_eq!(code, 4, "extended: {err}");
    fs::write(&file, &orig).unwrap();
    assert_eq!(s.ok(&["get", "bkt/o"]), data);
    // A missing data file: exit 4 and a message that names the object and fsck.
    fs::remove_file(&file).unwrap();
    let (code, err) = s.fails(&["get", "bkt/o"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("bkt/o") && err.contains("fsck"), "{err}");
}
