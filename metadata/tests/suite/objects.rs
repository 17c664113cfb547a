//! The object table: byte order of names, ranges, pages, replacement, envelope swaps,
//! deletes.

use super::*;

pub fn objects_sort_bytewise(f: &Fixture) {
    let db = &*f.db;
    let b = seed_bucket(db);
    let long_ascii = "z".repeat(1024);
    let long_utf8 = format!("{}é", "y".repeat(1022)); // 1024 bytes
    let all: Vec<&str> = vec![
        "a",
        "a/b",
        "a/b/c",
        "a0",
        "a.",
        "a b",
        "A",
        " ",
        "\u{7f}",
        "é",
        "e\u{301}",
        "日本/語",
        "日本",
        "\u{ffff}",
        "\u{10000}",
        "😀",
        "\u{e000}",
        long_ascii.as_str(),
        long_utf8.as_str(),
    ];
    // Insert in an order that is not the sorted one.
    let mut shuffled = all.clone();
    shuffled.reverse();
    shuffled.rotate_left(7);
    put(db, b, &shuffled);
    // Byte order of UTF-8 is code point order; UTF-16 order would put U+FFFF after U+10000
    // and U+E000 after U+1F600.
    assert_eq!(
        list(db, b, NameRange::default(), 1000),
        sorted_bytewise(&all)
    );
    let got = read(db, |tx| tx.object(b, &long_utf8)).expect("1024-byte name");
    assert_eq!(got.name.len(), 1024);
}

/// Names for the range tests, with prefixes whose upper bound needs care.
const RANGE_NAMES: &[&str] = &[
    "a", "a/", "a/1", "a/2", "a/2/x", "a0", "ab", "b", "¿", "¿x", "À", "日", "日本", "日本/x", "旦",
];

pub fn object_ranges(f: &Fixture) {
    let db = &*f.db;
    let b = seed_bucket(db);
    put(db, b, RANGE_NAMES);
    let range = |prefix, after: Option<&'static str>| NameRange {
        prefix,
        after: after.map(str::as_bytes),
    };
    let cases: &[(&str, Option<&str>, &[&str])] = &[
        ("a/", None, &["a/", "a/1", "a/2", "a/2/x"]),
        ("a/", Some("a/1"), &["a/2", "a/2/x"]),
        ("a/", Some("a/2"), &["a/2/x"]),
        ("a/", Some("a/2/x"), &[]),
        // An `after` below the prefix does not widen the range.
        ("a/", Some(""), &["a/", "a/1", "a/2", "a/2/x"]),
        ("b", Some("a/1"), &["b"]),
        // An `after` beyond the prefix's range empties it.
        ("a/", Some("b"), &[]),
        ("a", Some("a/2/x"), &["a0", "ab"]),
        // U+65E5 "日" is E6 97 A5; "旦" U+65E6 is E6 97 A6 = the bound, excluded.
        ("日", None, &["日", "日本", "日本/x"]),
        ("日本", Some("日本"), &["日本/x"]),
        // "¿" is C2 BF: its bound C2 C0 is not UTF-8; "À" (C3 80) is above it.
        ("¿", None, &["¿", "¿x"]),
        ("", Some("日本/x"), &["旦"]),
        ("zzz", None, &[]),
    ];
    for (prefix, after, expect) in cases {
        assert_eq!(
            list(db, b, range(prefix, *after), 100),
            *expect,
            "prefix {prefix:?} after {after:?}"
        );
    }
    assert_eq!(
        list(db, b, NameRange::default(), 100),
        sorted_bytewise(RANGE_NAMES)
    );
}

pub fn object_ranges_after_is_raw_bytes(f: &Fixture) {
    let db = &*f.db;
    let b = seed_bucket(db);
    put(db, b, RANGE_NAMES);
    let raw = |prefix, after: &'static [u8]| NameRange {
        prefix,
        after: Some(after),
    };
    // Skipping past every name that starts with "a/" (as a listing with delimiter does):
    // the smallest string above them, "a/" with its last byte bumped, is "a0"; a listing may
    // also pass any byte string, UTF-8 or not.
    assert_eq!(list(db, b, raw("", b"a0"), 3), ["ab", "b", "¿"]);
    assert_eq!(list(db, b, raw("", b"a/\xff"), 2), ["a0", "ab"]);
    assert_eq!(list(db, b, raw("a/", b"a/\xff"), 10), Vec::<String>::new());
    // "¿" is C2 BF; skipping every name starting with it: after C2 C0 (not UTF-8).
    assert_eq!(list(db, b, raw("", b"\xc2\xc0"), 1), ["À"]);
    assert_eq!(list(db, b, raw("¿", b"\xc2\xbf"), 10), ["¿x"]);
    // Above every possible UTF-8 name.
    assert_eq!(list(db, b, raw("", b"\xff"), 10), Vec::<String>::new());
}

pub fn object_pages_and_count(f: &Fixture) {
    let db = &*f.db;
    let b = seed_bucket(db);
    let ns = read(db, |tx| tx.namespace(By::Name("ns"))).expect("ns").id;
    let other = write(db, |tx| tx.insert_bucket(&new_bucket(ns, "other")));
    assert_eq!(read(db, |tx| tx.object_count(b)), 0);
    put(db, b, RANGE_NAMES);
    put(db, other, &["a", "zz"]);
    assert_eq!(read(db, |tx| tx.object_count(b)), RANGE_NAMES.len() as u64);
    assert_eq!(read(db, |tx| tx.object_count(other)), 2);
    assert_eq!(list(db, b, NameRange::default(), 0), Vec::<String>::new());
    assert_eq!(list(db, b, NameRange::default(), 1), ["a"]);

    // Page through with `after` = the last name of the previous page.
    let mut pages = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let after = seen.last().cloned();
        let page = list(
            db,
            b,
            NameRange {
                prefix: "",
                after: after.as_deref().map(str::as_bytes),
            },
            4,
        );
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4);
        pages.push(page.len());
        seen.extend(page);
    }
    assert_eq!(seen, sorted_bytewise(RANGE_NAMES));
    assert_eq!(pages, [4, 4, 4, 3]);

    write(db, |tx| tx.delete_object(b, "a/1"));
    assert_eq!(
        read(db, |tx| tx.object_count(b)),
        RANGE_NAMES.len() as u64 - 1
    );
    assert_eq!(read(db, |tx| tx.object_count(other)), 2);
}

pub fn put_object_returns_the_replaced_row(f: &Fixture) {
    let db = &*f.db;
    let b = seed_bucket(db);
    let first = object(b, "k", 1);
    assert_eq!(write(db, |tx| tx.put_object(&first)), None);
    // Rewrap it once so that its row version is 2.
    assert!(write(db, |tx| tx.swap_envelope(
        b,
        "k",
        &[1; 16],
        1,
        2,
        b"rewrapped"
    )));
    let stored = read(db, |tx| tx.object(b, "k")).expect("row");
    assert_eq!(stored.row_version, 2);

    let second = ObjectRecord {
        row_version: 9, // ignored: a new row starts at 1
        ..object(b, "k", 2)
    };
    let replaced = write(db, |tx| tx.put_object(&second));
    assert_eq!(replaced, Some(stored));
    assert_eq!(
        read(db, |tx| tx.object(b, "k")),
        Some(ObjectRecord {
            row_version: 1,
            ..second
        })
    );
    assert_eq!(read(db, |tx| tx.object_count(b)), 1);
}

pub fn swap_envelope_is_a_cas(f: &Fixture) {
    let db = &*f.db;
    let b = seed_bucket(db);
    put(db, b, &["obj"]); // object id [0; 16]
    let oid = [0u8; 16];
    let before = read(db, |tx| tx.object(b, "obj")).expect("row");

    // Two rewrappers read version 1; the first wins.
    assert!(write(db, |tx| tx.swap_envelope(b, "obj", &oid, 1, 2, b"first")));
    let after_first = read(db, |tx| tx.object(b, "obj")).expect("row");
    assert_eq!(
        after_first,
        ObjectRecord {
            envelope_kind: Some(2),
            envelope: Some(b"first".to_vec()),
            row_version: 2,
            ..before
        }
    );
    assert!(!write(db, |tx| tx.swap_envelope(b, "obj", &oid, 1, 3, b"second")));
    assert_eq!(read(db, |tx| tx.object(b, "obj")), Some(after_first));

    // An overwrite in between: new object id, row version back to 1. A rewrapper holding
    // the old object id fails even though the version matches again.
    write(db, |tx| tx.put_object(&object(b, "obj", 9)));
    assert!(!write(db, |tx| tx.swap_envelope(b, "obj", &oid, 1, 2, b"stale")));
    let overwritten = read(db, |tx| tx.object(b, "obj")).expect("row");
    assert_eq!(overwritten.envelope, Some(vec![9; 48]));
    assert!(write(db, |tx| tx
        .swap_envelope(b, "obj", &[9; 16], 1, 2, b"fresh")));

    // A delete in between.
    write(db, |tx| tx.delete_object(b, "obj"));
    assert!(!write(db, |tx| tx.swap_envelope(b, "obj", &[9; 16], 2, 2, b"gone")));
    assert_eq!(read(db, |tx| tx.object(b, "obj")), None);
}

pub fn delete_object_returns_the_row(f: &Fixture) {
    let db = &*f.db;
    let b = seed_bucket(db);
    put(db, b, &["x", "y"]);
    let x = read(db, |tx| tx.object(b, "x"));
    assert!(x.is_some());
    assert_eq!(write(db, |tx| tx.delete_object(b, "x")), x);
    assert_eq!(write(db, |tx| tx.delete_object(b, "x")), None);
    assert_eq!(list(db, b, NameRange::default(), 10), ["y"]);
}

pub fn delete_bucket_removes_its_objects(f: &Fixture) {
    let db = &*f.db;
    let b = seed_bucket(db);
    let ns = read(db, |tx| tx.namespace(By::Name("ns"))).expect("ns").id;
    let keep = write(db, |tx| tx.insert_bucket(&new_bucket(ns, "keep")));
    put(db, b, &["1", "2", "3", "4", "5"]);
    put(db, keep, &["1", "2"]);
    assert_eq!(write(db, |tx| tx.delete_bucket(b)), 5);
    read(db, |tx| {
        assert_eq!(tx.bucket(By::Id(b))?, None);
        assert_eq!(tx.object(b, "1")?, None);
        assert_eq!(tx.object_count(b)?, 0);
        assert_eq!(tx.object_count(keep)?, 2);
        Ok(())
    });
    let e = fails(db, |tx| tx.delete_bucket(b));
    assert!(matches!(e, MetaError::NotFound { .. }), "{e:?}");
    assert_eq!(write(db, |tx| tx.delete_bucket(keep)), 2);
}

pub fn delete_namespace_refused_while_it_holds_buckets(f: &Fixture) {
    let db = &*f.db;
    let b = seed_bucket(db);
    let ns = read(db, |tx| tx.namespace(By::Name("ns"))).expect("ns").id;
    let e = fails(db, |tx| tx.delete_namespace(ns));
    assert!(matches!(e, MetaError::InUse(_)), "{e:?}");
    assert!(read(db, |tx| tx.namespace(By::Id(ns))).is_some());
    write(db, |tx| tx.delete_bucket(b));
    write(db, |tx| tx.delete_namespace(ns));
    assert_eq!(read(db, |tx| tx.namespaces()), vec![]);
}

pub fn one_open_task_per_kind(f: &Fixture) {
    let db = &*f.db;
    seed(db);
    let t = NewTask {
        id: None,
        kind: TaskKind::Rotation,
        started: 1,
        previous_master: 1,
        target_root: None,
    };
    let first = write(db, |tx| tx.insert_task(&t));
    let e = fails(db, |tx| tx.insert_task(&t));
    assert!(matches!(e, MetaError::InUse(_)), "{e:?}");

    // Still refused while it runs or waits after an error.
    for state in [TaskState::Running, TaskState::TransientError] {
        let cur = read(db, |tx| tx.task(first)).expect("task");
        write(db, |tx| {
            tx.update_task(&TaskRecord {
                state,
                ..cur.clone()
            })
        });
        let e = fails(db, |tx| tx.insert_task(&t));
        assert!(matches!(e, MetaError::InUse(_)), "{e:?}");
    }
    let cur = read(db, |tx| tx.task(first)).expect("task");
    write(db, |tx| {
        tx.update_task(&TaskRecord {
            state: TaskState::Completed,
            ..cur.clone()
        })
    });
    let second = write(db, |tx| tx.insert_task(&t));
    assert!(second > first);
    // Reopening a completed task while another is open is refused as well.
    let cur = read(db, |tx| tx.task(first)).expect("task");
    let e = fails(db, |tx| {
        tx.update_task(&TaskRecord {
            state: TaskState::Running,
            ..cur.clone()
        })
    });
    assert!(matches!(e, MetaError::InUse(_)), "{e:?}");
    assert_eq!(read(db, |tx| tx.tasks()).len(), 2);
}
