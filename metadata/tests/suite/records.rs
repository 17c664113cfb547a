//! Every record type round trip, ids, unique names, optimistic checks, missing parents and
//! invalid records.

use super::*;

// Round trips

pub fn store_round_trip(f: &Fixture) {
    let db = &*f.db;
    assert_eq!(read(db, |tx| tx.store()), None);
    let s = store_record();
    write(db, |tx| tx.insert_store(&s));
    assert_eq!(read(db, |tx| tx.store()), Some(s.clone()));

    let mut changed = s.clone();
    changed.chunk_shift = 20;
    changed.root_of_trust = "tpm".into();
    changed.rt_data_key = vec![1, 2, 3];
    changed.active_master = 2;
    changed.active_rotation = 3;
    changed.key_epoch = 9;
    // Never changed by an update:
    changed.store_id = [9; 16];
    changed.created = 5;
    let v = write(db, |tx| tx.update_store(&changed));
    assert_eq!(v, s.row_version + 1);
    let got = read(db, |tx| tx.store()).expect("store row");
    assert_eq!(
        got,
        StoreRecord {
            store_id: s.store_id,
            created: s.created,
            row_version: v,
            ..changed
        }
    );

    let again = fails(db, |tx| tx.insert_store(&s));
    assert!(
        matches!(again, MetaError::AlreadyExists { what: "store", .. }),
        "{again:?}"
    );
}

pub fn master_keys_round_trip(f: &Fixture) {
    let db = &*f.db;
    seed(db);
    let mut m2 = master_key(2, MasterState::Pending);
    m2.retired = Some(5);
    write(db, |tx| tx.insert_master_key(&m2));
    let keys = read(db, |tx| tx.master_keys());
    assert_eq!(keys, vec![master_key(1, MasterState::Active), m2.clone()]);

    let mut m1 = master_key(1, MasterState::Retired);
    m1.wrapped = vec![0xee; 61];
    m1.retired = Some(1_800_000_000);
    write(db, |tx| tx.update_master_key(&m1));
    assert_eq!(
        read(db, |tx| tx.master_keys()),
        vec![m1.clone(), m2.clone()]
    );

    // Schema version 4: a master key's own root of trust, and its deactivation.
    let mut m3 = master_key(3, MasterState::Pending);
    m3.root = dare_metadata::MasterRoot {
        root_of_trust: Some("pkcs11:token=t;object=k".into()),
        management: Some("hsm".into()),
        key_id: Some("kmip-uid-1".into()),
        rt_wrapped: Some(vec![0x5a; 48]),
        deactivated: None,
        deactivation: None,
    };
    write(db, |tx| tx.insert_master_key(&m3));
    m1.root.root_of_trust = Some("root-key-file".into());
    m1.root.management = Some("internal".into());
    m1.root.rt_wrapped = Some(vec![0x11; 40]);
    m1.root.deactivated = Some(1_800_000_001);
    m1.root.deactivation = Some("nothing".into());
    write(db, |tx| tx.update_master_key(&m1));
    assert_eq!(
        read(db, |tx| tx.master_keys()),
        vec![m1.clone(), m2.clone(), m3.clone()]
    );
    // A deactivation result without its time, an unknown management type: refused.
    let mut half = m1.clone();
    half.root.deactivated = None;
    let e = fails(db, |tx| tx.update_master_key(&half));
    assert!(matches!(e, MetaError::Database(_)), "{e:?}");
    let mut odd = m3.clone();
    odd.root.management = Some("cloud".into());
    let e = fails(db, |tx| tx.update_master_key(&odd));
    assert!(matches!(e, MetaError::Database(_)), "{e:?}");

    let dup = fails(db, |tx| tx.insert_master_key(&m2));
    assert!(matches!(dup, MetaError::AlreadyExists { .. }), "{dup:?}");
}

pub fn rotation_keys_round_trip(f: &Fixture) {
    let db = &*f.db;
    seed(db);
    write(db, |tx| {
        tx.insert_master_key(&master_key(2, MasterState::Pending))?;
        tx.insert_rotation_key(&rotation_key(2, 2))
    });
    assert_eq!(
        read(db, |tx| tx.rotation_keys()),
        vec![rotation_key(1, 1), rotation_key(2, 2)]
    );

    let mut r1 = rotation_key(1, 2);
    r1.wrapped = vec![0x99; 40];
    let v = write(db, |tx| tx.update_rotation_key(&r1));
    assert_eq!(v, 2);
    let got = read(db, |tx| tx.rotation_keys());
    assert_eq!(
        got[0],
        RotationKeyRecord {
            row_version: 2,
            ..r1
        }
    );

    let dup = fails(db, |tx| tx.insert_rotation_key(&rotation_key(2, 1)));
    assert!(matches!(dup, MetaError::AlreadyExists { .. }), "{dup:?}");
}

pub fn namespaces_round_trip(f: &Fixture) {
    let db = &*f.db;
    seed(db);
    let mut plain = new_namespace("plain");
    plain.encryption = false;
    let (a, b) = write(db, |tx| {
        Ok((
            tx.insert_namespace(&new_namespace("alpha"))?,
            tx.insert_namespace(&plain)?,
        ))
    });
    assert_ne!(a, b);
    let expect_a = NamespaceRecord {
        id: a,
        name: "alpha".into(),
        encryption: true,
        master_version: 1,
        wrapped_key: vec![0x11; 40],
        created: 1_700_000_200,
        row_version: 1,
    };
    let expect_b = NamespaceRecord {
        id: b,
        name: "plain".into(),
        encryption: false,
        ..expect_a.clone()
    };
    assert_eq!(
        read(db, |tx| tx.namespace(By::Id(a))),
        Some(expect_a.clone())
    );
    assert_eq!(
        read(db, |tx| tx.namespace(By::Name("plain"))),
        Some(expect_b.clone())
    );
    let mut all = vec![expect_a.clone(), expect_b];
    all.sort_by_key(|n| n.id);
    assert_eq!(read(db, |tx| tx.namespaces()), all);

    write(db, |tx| {
        tx.insert_master_key(&master_key(2, MasterState::Pending))
    });
    let rewrapped = NamespaceRecord {
        master_version: 2,
        wrapped_key: vec![0x33; 40],
        // Not changed by an update:
        name: "renamed".into(),
        encryption: false,
        created: 1,
        ..expect_a.clone()
    };
    let v = write(db, |tx| tx.update_namespace(&rewrapped));
    assert_eq!(v, 2);
    assert_eq!(
        read(db, |tx| tx.namespace(By::Id(a))),
        Some(NamespaceRecord {
            master_version: 2,
            wrapped_key: vec![0x33; 40],
            row_version: 2,
            ..expect_a
        })
    );
}

pub fn buckets_round_trip(f: &Fixture) {
    let db = &*f.db;
    seed(db);
    let (n1, n2) = write(db, |tx| {
        Ok((
            tx.insert_namespace(&new_namespace("n1"))?,
            tx.insert_namespace(&new_namespace("n2"))?,
        ))
    });
    let clear = NewBucket {
        encryption: false,
        wrapped_key: None,
        ..new_bucket(n2, "clear")
    };
    let (b1, b2, b3) = write(db, |tx| {
        Ok((
            tx.insert_bucket(&new_bucket(n1, "one"))?,
            tx.insert_bucket(&clear)?,
            tx.insert_bucket(&new_bucket(n1, "three"))?,
        ))
    });
    let one = BucketRecord {
        id: b1,
        name: "one".into(),
        namespace_id: n1,
        encryption: true,
        wrapped_key: Some(vec![0x22; 40]),
        kms_key_id: None,
        created: 1_700_000_300,
        row_version: 1,
    };
    let clear = BucketRecord {
        id: b2,
        name: "clear".into(),
        namespace_id: n2,
        encryption: false,
        wrapped_key: None,
        ..one.clone()
    };
    let three = BucketRecord {
        id: b3,
        name: "three".into(),
        ..one.clone()
    };
    assert_eq!(read(db, |tx| tx.bucket(By::Id(b1))), Some(one.clone()));
    assert_eq!(
        read(db, |tx| tx.bucket(By::Name("clear"))),
        Some(clear.clone())
    );
    let mut all = vec![one.clone(), clear.clone(), three.clone()];
    all.sort_by_key(|b| b.id);
    assert_eq!(read(db, |tx| tx.buckets(None)), all);
    let mut of_n1 = vec![one, three];
    of_n1.sort_by_key(|b| b.id);
    assert_eq!(read(db, |tx| tx.buckets(Some(n1))), of_n1);
    assert_eq!(read(db, |tx| tx.buckets(Some(n2))), vec![clear]);
}

pub fn tasks_round_trip(f: &Fixture) {
    let db = &*f.db;
    seed(db);
    let t = NewTask {
        id: None,
        kind: TaskKind::Rotation,
        started: 1_700_000_400,
        previous_master: 1,
        target_root: None,
    };
    let id = write(db, |tx| tx.insert_task(&t));
    let pending = TaskRecord {
        id,
        kind: TaskKind::Rotation,
        state: TaskState::Pending,
        step: 0,
        started: 1_700_000_400,
        ended: None,
        outcome: None,
        error: None,
        previous_master: 1,
        new_master: None,
        new_rotation: None,
        master_attempts: 0,
        row_version: 1,
        lease_owner: None,
        lease_expires: None,
        lease_token: 0,
        target_root: None,
        updated: None,
    };
    assert_eq!(read(db, |tx| tx.task(id)), Some(pending.clone()));

    // A runner takes the lease (owner, expiry in Unix milliseconds, token 1).
    let leased = TaskRecord {
        state: TaskState::Running,
        step: 1,
        lease_owner: Some("node-a.example:4242:0badc0de".into()),
        lease_expires: Some(1_700_000_430_123),
        lease_token: 1,
        ..pending.clone()
    };
    assert_eq!(write(db, |tx| tx.update_task(&leased)), 2);
    assert_eq!(
        read(db, |tx| tx.task(id)),
        Some(TaskRecord {
            row_version: 2,
            ..leased.clone()
        })
    );
    // Another takes it over; then a step fails and the lease is released (the token stays).
    let failed = TaskRecord {
        state: TaskState::TransientError,
        step: 2,
        error: Some("kms unreachable".into()),
        new_master: Some(2),
        new_rotation: Some(2),
        master_attempts: 3,
        lease_owner: Some("node-b".repeat(43)[..255].to_owned()),
        lease_expires: Some(i64::MAX as u64),
        lease_token: 2,
        row_version: 2,
        ..leased.clone()
    };
    assert_eq!(write(db, |tx| tx.update_task(&failed)), 3);
    assert_eq!(
        read(db, |tx| tx.task(id)),
        Some(TaskRecord {
            row_version: 3,
            ..failed.clone()
        }),
        "an owner of 255 characters and the largest expiry are kept"
    );
    let done = TaskRecord {
        state: TaskState::Completed,
        step: 4,
        ended: Some(1_700_000_500),
        outcome: Some("rotated to master 2".into()),
        error: None,
        lease_owner: None,
        lease_expires: None,
        row_version: 3,
        // Not changed by an update:
        started: 3,
        ..failed.clone()
    };
    assert_eq!(write(db, |tx| tx.update_task(&done)), 4);
    let expect = TaskRecord {
        started: 1_700_000_400,
        row_version: 4,
        ..done
    };
    assert_eq!(expect.lease_token, 2);
    assert_eq!(read(db, |tx| tx.task(id)), Some(expect.clone()));
    assert_eq!(read(db, |tx| tx.tasks()), vec![expect.clone()]);

    // Schema version 4: a rekey task, its target and its last update.
    let rekey = write(db, |tx| {
        tx.insert_task(&NewTask {
            id: None,
            kind: TaskKind::Rekey,
            started: 1_700_000_500,
            previous_master: 1,
            target_root: Some("pkcs11:token=t;object=k;type=secret-key".into()),
        })
    });
    let stored = read(db, |tx| tx.task(rekey)).unwrap();
    assert_eq!(stored.kind, TaskKind::Rekey);
    assert_eq!(
        stored.target_root.as_deref(),
        Some("pkcs11:token=t;object=k;type=secret-key")
    );
    assert_eq!(stored.updated, None);
    let saved = TaskRecord {
        step: 1,
        state: TaskState::Running,
        updated: Some(1_700_000_501),
        ..stored.clone()
    };
    write(db, |tx| tx.update_task(&saved));
    let back = read(db, |tx| tx.task(rekey)).unwrap();
    assert_eq!(back.updated, Some(1_700_000_501));
    assert_eq!(back.step, 1);
}

pub fn objects_round_trip(f: &Fixture) {
    let db = &*f.db;
    let b = seed_bucket(db);
    let sealed = object(b, "dir/sealed.bin", 3);
    // In clear: no envelope; format 1: no metadata in the row.
    let clear = ObjectRecord {
        suite: 0,
        nonce_prefix: [0; 7],
        envelope_kind: None,
        envelope: None,
        meta: Vec::new(),
        format: 1,
        size: 0,
        etag: String::new(),
        ..object(b, "clear.txt", 4)
    };
    write(db, |tx| {
        tx.put_object(&sealed)?;
        tx.put_object(&clear)
    });
    assert_eq!(read(db, |tx| tx.object(b, "dir/sealed.bin")), Some(sealed));
    assert_eq!(read(db, |tx| tx.object(b, "clear.txt")), Some(clear));
    assert_eq!(read(db, |tx| tx.object(b, "dir/")), None);
}

// ---------------------------------------------------------------------------------------
// Ids and names

pub fn ids_are_never_reused(f: &Fixture) {
    let db = &*f.db;
    seed(db);
    let (n1, n2) = write(db, |tx| {
        Ok((
            tx.insert_namespace(&new_namespace("n1"))?,
            tx.insert_namespace(&new_namespace("n2"))?,
        ))
    });
    let (b1, b2) = write(db, |tx| {
        Ok((
            tx.insert_bucket(&new_bucket(n1, "b1"))?,
            tx.insert_bucket(&new_bucket(n1, "b2"))?,
        ))
    });
    // Delete the newest of each: a plain "max + 1" allocator would hand its id out again.
    write(db, |tx| {
        tx.delete_bucket(b2)?;
        tx.delete_namespace(n2)
    });
    let n3 = write(db, |tx| tx.insert_namespace(&new_namespace("n2")));
    let b3 = write(db, |tx| tx.insert_bucket(&new_bucket(n1, "b2")));
    assert!(n3 > n2, "namespace id {n3} reused (deleted {n2})");
    assert!(b3 > b2, "bucket id {b3} reused (deleted {b2})");
    assert!(b2 > b1 && n2 > n1);

    let t = NewTask {
        id: None,
        kind: TaskKind::Rotation,
        started: 1,
        previous_master: 1,
        target_root: None,
    };
    let t1 = write(db, |tx| tx.insert_task(&t));
    let done = TaskRecord {
        state: TaskState::Completed,
        ..read(db, |tx| tx.task(t1)).expect("task")
    };
    write(db, |tx| tx.update_task(&done));
    let t2 = write(db, |tx| tx.insert_task(&t));
    assert!(t2 > t1);
}

pub fn imported_ids_are_kept(f: &Fixture) {
    let db = &*f.db;
    seed(db);
    let ns = write(db, |tx| {
        tx.insert_namespace(&NewNamespace {
            id: Some(1000),
            ..new_namespace("imported")
        })
    });
    assert_eq!(ns, 1000);
    let b = write(db, |tx| {
        tx.insert_bucket(&NewBucket {
            id: Some(500),
            ..new_bucket(ns, "imported")
        })
    });
    assert_eq!(b, 500);
    let t = write(db, |tx| {
        tx.insert_task(&NewTask {
            id: Some(77),
            kind: TaskKind::Rotation,
            started: 1,
            previous_master: 1,
            target_root: None,
        })
    });
    assert_eq!(t, 77);
    assert_eq!(
        read(db, |tx| tx.bucket(By::Id(500))).map(|b| b.namespace_id),
        Some(1000)
    );

    // Allocation continues above imported ids.
    let next_ns = write(db, |tx| tx.insert_namespace(&new_namespace("new")));
    let next_b = write(db, |tx| tx.insert_bucket(&new_bucket(ns, "new")));
    assert!(next_ns > 1000 && next_b > 500);

    let taken = fails(db, |tx| {
        tx.insert_namespace(&NewNamespace {
            id: Some(1000),
            ..new_namespace("other")
        })
    });
    assert!(
        matches!(taken, MetaError::AlreadyExists { .. }),
        "{taken:?}"
    );
    let taken = fails(db, |tx| {
        tx.insert_bucket(&NewBucket {
            id: Some(500),
            ..new_bucket(ns, "other")
        })
    });
    assert!(
        matches!(taken, MetaError::AlreadyExists { .. }),
        "{taken:?}"
    );
}

pub fn names_are_unique(f: &Fixture) {
    let db = &*f.db;
    seed(db);
    let (n1, n2) = write(db, |tx| {
        Ok((
            tx.insert_namespace(&new_namespace("taken"))?,
            tx.insert_namespace(&new_namespace("other"))?,
        ))
    });
    let e = fails(db, |tx| tx.insert_namespace(&new_namespace("taken")));
    match e {
        MetaError::AlreadyExists { what, name } => {
            assert_eq!((what, name.as_str()), ("namespace", "taken"));
        }
        e => panic!("{e:?}"),
    }
    write(db, |tx| tx.insert_bucket(&new_bucket(n1, "bkt")));
    // Bucket names are unique across namespaces.
    let e = fails(db, |tx| tx.insert_bucket(&new_bucket(n2, "bkt")));
    match e {
        MetaError::AlreadyExists { what, name } => {
            assert_eq!((what, name.as_str()), ("bucket", "bkt"));
        }
        e => panic!("{e:?}"),
    }
    // Names are compared exactly.
    write(db, |tx| tx.insert_bucket(&new_bucket(n2, "Bkt")));
    assert_eq!(read(db, |tx| tx.buckets(None)).len(), 2);
}

// ---------------------------------------------------------------------------------------
// Optimistic concurrency and missing rows

pub fn cas_conflicts_change_nothing(f: &Fixture) {
    let db = &*f.db;
    seed(db);
    let ns = write(db, |tx| tx.insert_namespace(&new_namespace("ns")));
    let task = write(db, |tx| {
        tx.insert_task(&NewTask {
            id: None,
            kind: TaskKind::Rotation,
            started: 1,
            previous_master: 1,
            target_root: None,
        })
    });

    let store = read(db, |tx| tx.store()).expect("store");
    let rot = read(db, |tx| tx.rotation_keys()).remove(0);
    let nsr = read(db, |tx| tx.namespace(By::Id(ns))).expect("namespace");
    let tr = read(db, |tx| tx.task(task)).expect("task");

    // A first writer bumps every row.
    write(db, |tx| {
        tx.update_store(&StoreRecord {
            key_epoch: 1,
            ..store.clone()
        })?;
        tx.update_rotation_key(&rot)?;
        tx.update_namespace(&nsr)?;
        tx.update_task(&TaskRecord {
            state: TaskState::Running,
            ..tr.clone()
        })
    });
    let before = (
        read(db, |tx| tx.store()),
        read(db, |tx| tx.rotation_keys()),
        read(db, |tx| tx.namespaces()),
        read(db, |tx| tx.tasks()),
    );

    // A second writer that read before it loses every check, and its transaction, committed
    // anyway, changes nothing.
    let mut tx = db.write().expect("begin");
    let stale_store = StoreRecord {
        key_epoch: 77,
        active_master: 9,
        ..store
    };
    assert!(matches!(
        tx.update_store(&stale_store),
        Err(MetaError::Conflict(_))
    ));
    let stale_rot = RotationKeyRecord {
        wrapped: vec![0; 40],
        ..rot
    };
    assert!(matches!(
        tx.update_rotation_key(&stale_rot),
        Err(MetaError::Conflict(_))
    ));
    let stale_ns = NamespaceRecord {
        wrapped_key: vec![0; 40],
        ..nsr
    };
    assert!(matches!(
        tx.update_namespace(&stale_ns),
        Err(MetaError::Conflict(_))
    ));
    let stale_task = TaskRecord {
        state: TaskState::Completed,
        ..tr
    };
    let e = tx.update_task(&stale_task).expect_err("stale task update");
    assert!(
        matches!(e, MetaError::Conflict(_)) && e.is_retryable(),
        "{e:?}"
    );
    tx.commit().expect("commit");
    let after = (
        read(db, |tx| tx.store()),
        read(db, |tx| tx.rotation_keys()),
        read(db, |tx| tx.namespaces()),
        read(db, |tx| tx.tasks()),
    );
    assert_eq!(before, after);

    // A vanished row is a conflict too.
    write(db, |tx| tx.delete_namespace(ns));
    let e = fails(db, |tx| tx.update_namespace(&stale_ns));
    assert!(matches!(e, MetaError::Conflict(_)), "{e:?}");
}

pub fn missing_rows(f: &Fixture) {
    let db = &*f.db;
    assert_eq!(read(db, |tx| tx.master_keys()), vec![]);
    seed(db);
    read(db, |tx| {
        assert_eq!(tx.namespace(By::Id(999))?, None);
        assert_eq!(tx.namespace(By::Name("nope"))?, None);
        assert_eq!(tx.bucket(By::Id(999))?, None);
        assert_eq!(tx.bucket(By::Name("nope"))?, None);
        assert_eq!(tx.buckets(Some(999))?, vec![]);
        assert_eq!(tx.task(999)?, None);
        assert_eq!(tx.object(999, "x")?, None);
        assert_eq!(tx.objects(999, NameRange::default(), 10)?, vec![]);
        assert_eq!(tx.object_count(999)?, 0);
        Ok(())
    });
    assert_eq!(write(db, |tx| tx.delete_object(999, "x")), None);
    assert!(!write(db, |tx| tx.swap_envelope(999, "x", &[0; 16], 1, 1, b"e")));

    let e = fails(db, |tx| {
        tx.update_master_key(&master_key(9, MasterState::Retired))
    });
    assert!(
        matches!(
            e,
            MetaError::NotFound {
                what: "master key",
                ..
            }
        ),
        "{e:?}"
    );
    let e = fails(db, |tx| tx.delete_bucket(999));
    assert!(
        matches!(e, MetaError::NotFound { what: "bucket", .. }),
        "{e:?}"
    );
    let e = fails(db, |tx| tx.delete_namespace(999));
    assert!(
        matches!(
            e,
            MetaError::NotFound {
                what: "namespace",
                ..
            }
        ),
        "{e:?}"
    );
    // A row naming a missing parent.
    let e = fails(db, |tx| tx.insert_bucket(&new_bucket(999, "orphan")));
    assert!(
        matches!(
            e,
            MetaError::NotFound {
                what: "namespace",
                ..
            }
        ),
        "{e:?}"
    );
    let e = fails(db, |tx| tx.insert_rotation_key(&rotation_key(2, 9)));
    assert!(
        matches!(
            e,
            MetaError::NotFound {
                what: "master key",
                ..
            }
        ),
        "{e:?}"
    );
    let e = fails(db, |tx| {
        tx.insert_namespace(&NewNamespace {
            master_version: 9,
            ..new_namespace("orphan")
        })
    });
    assert!(
        matches!(
            e,
            MetaError::NotFound {
                what: "master key",
                ..
            }
        ),
        "{e:?}"
    );
    let e = fails(db, |tx| tx.put_object(&object(999, "orphan", 1)));
    assert!(
        matches!(e, MetaError::NotFound { what: "bucket", .. }),
        "{e:?}"
    );
}

pub fn invalid_records_are_refused(f: &Fixture) {
    let db = &*f.db;
    let b = seed_bucket(db);
    let ns = read(db, |tx| tx.namespace(By::Name("ns"))).expect("ns").id;
    // The record's own rules, checked by the database: MetaError::Database.
    let e = fails(db, |tx| {
        tx.insert_bucket(&NewBucket {
            wrapped_key: None,
            ..new_bucket(ns, "keyless")
        })
    });
    assert!(matches!(e, MetaError::Database(_)), "{e:?}");
    let e = fails(db, |tx| tx.put_object(&object(b, "", 1)));
    assert!(matches!(e, MetaError::Database(_)), "{e:?}");
    let long = "x".repeat(1025);
    let e = fails(db, |tx| tx.put_object(&object(b, &long, 1)));
    assert!(matches!(e, MetaError::Database(_)), "{e:?}");
    let e = fails(db, |tx| {
        tx.put_object(&ObjectRecord {
            envelope: None,
            ..object(b, "half", 1)
        })
    });
    assert!(matches!(e, MetaError::Database(_)), "{e:?}");
    // An integer the database cannot hold is refused, not wrapped.
    let e = fails(db, |tx| {
        tx.put_object(&ObjectRecord {
            size: u64::MAX,
            ..object(b, "huge", 1)
        })
    });
    assert!(matches!(e, MetaError::Database(_)), "{e:?}");
    // No error message carries record contents.
    assert!(!e.to_string().contains("etag-1"));
    assert_eq!(read(db, |tx| tx.object_count(b)), 0);

    // A task's lease: an owner exactly with an expiry, an owner of 1..=255 characters, no
    // lease on a completed task, integers the database holds.
    let id = write(db, |tx| {
        tx.insert_task(&NewTask {
            id: None,
            kind: TaskKind::Rotation,
            started: 1,
            previous_master: 1,
            target_root: None,
        })
    });
    let task = read(db, |tx| tx.task(id)).expect("task");
    let held = TaskRecord {
        state: TaskState::Running,
        lease_owner: Some("node-a".into()),
        lease_expires: Some(1_700_000_000_000),
        lease_token: 1,
        ..task.clone()
    };
    let refused = [
        (
            "an owner without an expiry",
            TaskRecord {
                lease_expires: None,
                ..held.clone()
            },
        ),
        (
            "an expiry without an owner",
            TaskRecord {
                lease_owner: None,
                ..held.clone()
            },
        ),
        (
            "an empty owner",
            TaskRecord {
                lease_owner: Some(String::new()),
                ..held.clone()
            },
        ),
        (
            "an owner of 256 characters",
            TaskRecord {
                lease_owner: Some("n".repeat(256)),
                ..held.clone()
            },
        ),
        (
            "a completed task holding a lease",
            TaskRecord {
                state: TaskState::Completed,
                ..held.clone()
            },
        ),
        (
            "an expiry above 2^63 - 1",
            TaskRecord {
                lease_expires: Some(u64::MAX),
                ..held.clone()
            },
        ),
        (
            "a token above 2^63 - 1",
            TaskRecord {
                lease_token: u64::MAX,
                ..held.clone()
            },
        ),
    ];
    for (what, bad) in refused {
        let e = fails(db, |tx| tx.update_task(&bad));
        assert!(matches!(e, MetaError::Database(_)), "{what}: {e:?}");
        assert!(!e.to_string().contains("node-a"), "{what}: {e}");
    }
    assert_eq!(read(db, |tx| tx.task(id)), Some(task));
    write(db, |tx| tx.update_task(&held));
}
