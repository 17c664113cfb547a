//! The key management service's tables (METADATA.md §9): CMKs, their versions, their
//! registrations, the audit trail and its head; and SSE-KMS buckets (`update_bucket`).

use super::*;

use dare_metadata::{
    KmsAuditHead, KmsAuditRecord, KmsBy, KmsImportParams, KmsKeyRecord, KmsKeyState, KmsOrigin,
    KmsRegistration, KmsVersionRecord,
};

/// The largest u64 the databases hold (values above are refused, not wrapped).
const MAX_U64: u64 = i64::MAX as u64;

/// An enabled, generated CMK with every optional field empty.
pub fn kms_key(key_id: &str, alias: &str, created_ms: u64) -> KmsKeyRecord {
    KmsKeyRecord {
        key_id: key_id.into(),
        alias: Some(alias.into()),
        description: String::new(),
        state: KmsKeyState::Enabled,
        origin: KmsOrigin::Generated,
        default_key: false,
        created_ms,
        rotation_enabled: false,
        rotation_days: 365,
        last_rotation_ms: created_ms,
        rotations: 0,
        last_manual_rotation_ms: None,
        deletion_due_ms: None,
        state_before: None,
        material_expires_ms: None,
        material_fingerprint: None,
        min_decryption_version: 1,
        import: None,
        deleted_ms: None,
        row_version: 1,
    }
}

/// A CMK with every optional field set and every integer at the largest value it may hold.
fn full_kms_key(key_id: &str, alias: &str) -> KmsKeyRecord {
    KmsKeyRecord {
        key_id: key_id.into(),
        alias: Some(alias.into()),
        // 255 characters of two bytes each: the limit is on characters.
        description: "é".repeat(255),
        state: KmsKeyState::PendingDeletion,
        origin: KmsOrigin::External,
        default_key: true,
        created_ms: MAX_U64,
        rotation_enabled: true,
        rotation_days: 30,
        last_rotation_ms: MAX_U64 - 1,
        rotations: u32::MAX,
        last_manual_rotation_ms: Some(MAX_U64 - 2),
        deletion_due_ms: Some(MAX_U64 - 3),
        state_before: Some(KmsKeyState::Disabled),
        material_expires_ms: Some(MAX_U64 - 4),
        material_fingerprint: Some(vec![0xf1; 32]),
        min_decryption_version: u32::MAX,
        import: Some(KmsImportParams {
            token_id: vec![0x70; 32],
            algorithm: "RSAES_OAEP_SHA_256".into(),
            sealed_private_key: vec![0x5e; 1300],
            public_key: vec![0x9b; 294],
            expires_ms: MAX_U64 - 5,
        }),
        deleted_ms: None,
        row_version: MAX_U64 - 10,
    }
}

/// A deleted CMK: no alias, a deletion time.
fn tombstone(key_id: &str, created_ms: u64) -> KmsKeyRecord {
    KmsKeyRecord {
        alias: None,
        state: KmsKeyState::Deleted,
        state_before: Some(KmsKeyState::Enabled),
        deleted_ms: Some(created_ms + 10),
        ..kms_key(key_id, "", created_ms)
    }
}

fn version(key_id: &str, version: u32, material: Option<Vec<u8>>) -> KmsVersionRecord {
    KmsVersionRecord {
        key_id: key_id.into(),
        version,
        material,
        created_ms: 1_700_000_000_000 + u64::from(version),
        encryptions: u64::from(version) * 1000,
    }
}

fn registration(key_id: &str, resource: &str, version: u32) -> KmsRegistration {
    KmsRegistration {
        key_id: key_id.into(),
        resource: resource.into(),
        version,
        description: format!("registered {resource}"),
        created_ms: 1_700_000_000_500,
        updated_ms: 1_700_000_000_600,
    }
}

/// A MAC that differs per record (the suite checks storage, not the chain's HMAC).
fn mac(seq: u64) -> Vec<u8> {
    (0..32u8)
        .map(|i| i ^ seq as u8 ^ (seq >> 8) as u8)
        .collect()
}

fn audit(seq: u64) -> KmsAuditRecord {
    KmsAuditRecord {
        seq,
        time_ms: 1_700_000_000_000 + seq,
        actor: "root:4242".into(),
        operation: "createDataKey".into(),
        key_id: Some("11111111-2222-4333-8444-555555555555".into()),
        version: Some(1),
        request_id: format!("req-{seq}"),
        outcome: "ok".into(),
        detail: String::new(),
        mac: mac(seq),
    }
}

fn head(seq: u64) -> KmsAuditHead {
    KmsAuditHead { seq, mac: mac(seq) }
}

fn what_exists(e: &MetaError) -> (&'static str, &str) {
    match e {
        MetaError::AlreadyExists { what, name } => (what, name),
        e => panic!("expected AlreadyExists, got {e:?}"),
    }
}

const A: &str = "0a0a0a0a-0000-4000-8000-00000000000a";
const B: &str = "0b0b0b0b-0000-4000-8000-00000000000b";
const C: &str = "0c0c0c0c-0000-4000-8000-00000000000c";

// ---------------------------------------------------------------------------------------
// CMKs

pub fn kms_keys_round_trip(f: &Fixture) {
    let db = &*f.db;
    assert_eq!(read(db, |tx| tx.kms_keys()), vec![]);
    // 255 characters, multibyte, in the alias too.
    let full = full_kms_key(C, &format!("alias/{}", "日".repeat(249)));
    let empty = kms_key(B, "alias/plain", 1_700_000_000_000);
    let dead = tombstone(A, 1_700_000_000_000);
    write(db, |tx| {
        tx.insert_kms_key(&full)?;
        tx.insert_kms_key(&empty)?;
        tx.insert_kms_key(&dead)
    });
    read(db, |tx| {
        assert_eq!(tx.kms_key(KmsBy::Id(C))?, Some(full.clone()));
        assert_eq!(
            tx.kms_key(KmsBy::Alias(full.alias.as_deref().unwrap()))?,
            Some(full.clone())
        );
        assert_eq!(tx.kms_key(KmsBy::Id(B))?, Some(empty.clone()));
        assert_eq!(
            tx.kms_key(KmsBy::Alias("alias/plain"))?,
            Some(empty.clone())
        );
        // A tombstone is found by its id only.
        assert_eq!(tx.kms_key(KmsBy::Id(A))?, Some(dead.clone()));
        assert_eq!(tx.kms_key(KmsBy::Alias(""))?, None);
        assert_eq!(tx.kms_key(KmsBy::Id("no-such-key"))?, None);
        assert_eq!(tx.kms_key(KmsBy::Alias("alias/none"))?, None);
        // Aliases compare exactly.
        assert_eq!(tx.kms_key(KmsBy::Alias("alias/Plain"))?, None);
        // By creation time, then key id.
        assert_eq!(
            tx.kms_keys()?,
            vec![dead.clone(), empty.clone(), full.clone()]
        );
        Ok(())
    });

    // Every field but the key id and the creation time changes; the row version moves on.
    let changed = KmsKeyRecord {
        key_id: B.into(),
        alias: Some("alias/renamed".into()),
        description: "rotated yearly".into(),
        state: KmsKeyState::PendingImport,
        origin: KmsOrigin::External,
        default_key: true,
        created_ms: 5,
        rotation_enabled: true,
        rotation_days: 90,
        last_rotation_ms: 1_700_000_100_000,
        rotations: 3,
        last_manual_rotation_ms: Some(1_700_000_050_000),
        deletion_due_ms: Some(1_700_000_900_000),
        state_before: Some(KmsKeyState::Enabled),
        material_expires_ms: Some(1_800_000_000_000),
        material_fingerprint: Some(vec![0xfe; 32]),
        min_decryption_version: 2,
        import: Some(KmsImportParams {
            token_id: vec![0x33; 32],
            algorithm: "RSAES_OAEP_SHA_1".into(),
            sealed_private_key: vec![0x44; 1200],
            public_key: vec![0x55; 270],
            expires_ms: 1_700_000_086_400,
        }),
        deleted_ms: None,
        row_version: 1,
    };
    assert_eq!(write(db, |tx| tx.update_kms_key(&changed)), 2);
    let expect = KmsKeyRecord {
        created_ms: empty.created_ms,
        row_version: 2,
        ..changed.clone()
    };
    assert_eq!(
        read(db, |tx| tx.kms_key(KmsBy::Id(B))),
        Some(expect.clone())
    );
    assert_eq!(
        read(db, |tx| tx.kms_key(KmsBy::Alias("alias/renamed"))),
        Some(expect.clone())
    );
    assert_eq!(read(db, |tx| tx.kms_key(KmsBy::Alias("alias/plain"))), None);

    // And back to every optional field empty; then the key is deleted (a tombstone).
    let cleared = KmsKeyRecord {
        row_version: 2,
        ..empty.clone()
    };
    assert_eq!(write(db, |tx| tx.update_kms_key(&cleared)), 3);
    assert_eq!(
        read(db, |tx| tx.kms_key(KmsBy::Id(B))),
        Some(KmsKeyRecord {
            row_version: 3,
            ..empty.clone()
        })
    );
    let deleted = KmsKeyRecord {
        row_version: 3,
        ..tombstone(B, empty.created_ms)
    };
    assert_eq!(write(db, |tx| tx.update_kms_key(&deleted)), 4);
    read(db, |tx| {
        assert_eq!(tx.kms_key(KmsBy::Alias("alias/plain"))?, None);
        let got = tx.kms_key(KmsBy::Id(B))?.expect("tombstone");
        assert_eq!(
            (got.state, got.alias, got.row_version),
            (KmsKeyState::Deleted, None, 4)
        );
        assert_eq!(tx.kms_keys()?.len(), 3);
        Ok(())
    });

    // The full key's row version is stored as given, up to 2^63 - 1.
    let bumped = write(db, |tx| tx.update_kms_key(&full));
    assert_eq!(bumped, MAX_U64 - 9);
}

pub fn kms_ids_and_aliases_are_unique(f: &Fixture) {
    let db = &*f.db;
    write(db, |tx| {
        tx.insert_kms_key(&kms_key(A, "alias/a", 1))?;
        tx.insert_kms_key(&kms_key(B, "alias/b", 2))
    });
    let e = fails(db, |tx| tx.insert_kms_key(&kms_key(A, "alias/other", 3)));
    assert_eq!(what_exists(&e), ("kms key", A));
    let e = fails(db, |tx| tx.insert_kms_key(&kms_key(C, "alias/a", 3)));
    assert_eq!(what_exists(&e), ("kms alias", "alias/a"));
    // Renaming to a taken alias.
    let e = fails(db, |tx| {
        tx.update_kms_key(&KmsKeyRecord {
            alias: Some("alias/a".into()),
            ..kms_key(B, "", 2)
        })
    });
    assert_eq!(what_exists(&e), ("kms alias", "alias/a"));
    assert_eq!(
        read(db, |tx| tx.kms_key(KmsBy::Id(B))).and_then(|k| k.alias),
        Some("alias/b".into())
    );
    // Aliases are compared exactly; deleted keys have none, and any number of them may.
    write(db, |tx| {
        tx.insert_kms_key(&kms_key(C, "alias/A", 3))?;
        tx.insert_kms_key(&tombstone("dead-1", 4))?;
        tx.insert_kms_key(&tombstone("dead-2", 4))
    });
    // A deleted key's alias is free again.
    write(db, |tx| tx.update_kms_key(&tombstone(A, 1)));
    write(db, |tx| tx.insert_kms_key(&kms_key("reused", "alias/a", 5)));
    assert_eq!(
        read(db, |tx| tx.kms_key(KmsBy::Alias("alias/a"))).map(|k| k.key_id),
        Some("reused".to_owned())
    );
    assert_eq!(read(db, |tx| tx.kms_keys()).len(), 6);
}

pub fn kms_key_cas_conflicts_change_nothing(f: &Fixture) {
    let db = &*f.db;
    let k = kms_key(A, "alias/a", 1);
    write(db, |tx| tx.insert_kms_key(&k));
    let first = KmsKeyRecord {
        description: "first".into(),
        ..k.clone()
    };
    assert_eq!(write(db, |tx| tx.update_kms_key(&first)), 2);
    let stale = KmsKeyRecord {
        description: "stale".into(),
        state: KmsKeyState::Disabled,
        ..k.clone()
    };
    let e = fails(db, |tx| tx.update_kms_key(&stale));
    assert!(
        matches!(e, MetaError::Conflict(_)) && e.is_retryable(),
        "{e:?}"
    );
    assert_eq!(
        read(db, |tx| tx.kms_key(KmsBy::Id(A))),
        Some(KmsKeyRecord {
            row_version: 2,
            ..first
        })
    );
    // A key that does not exist (or vanished) is a conflict too.
    let e = fails(db, |tx| tx.update_kms_key(&kms_key(B, "alias/b", 1)));
    assert!(matches!(e, MetaError::Conflict(_)), "{e:?}");
}

pub fn kms_invalid_records_are_refused(f: &Fixture) {
    let db = &*f.db;
    let k = kms_key(A, "alias/a", 1);
    write(db, |tx| tx.insert_kms_key(&k));
    let import = full_kms_key(A, "x").import.expect("import parameters");
    // (what, the record; whether an update refuses it too: an update keeps the creation time)
    let bad = [
        (
            "a row version above 2^63 - 1",
            KmsKeyRecord {
                row_version: u64::MAX,
                ..k.clone()
            },
            true,
        ),
        (
            "a creation time above 2^63 - 1",
            KmsKeyRecord {
                created_ms: MAX_U64 + 1,
                ..k.clone()
            },
            false,
        ),
        (
            "a rotation period of 29 days",
            KmsKeyRecord {
                rotation_days: 29,
                ..k.clone()
            },
            true,
        ),
        (
            "a rotation period of 366 days",
            KmsKeyRecord {
                rotation_days: 366,
                ..k.clone()
            },
            true,
        ),
        (
            "an alias of 256 characters",
            KmsKeyRecord {
                alias: Some("a".repeat(256)),
                ..k.clone()
            },
            true,
        ),
        (
            "an empty alias",
            KmsKeyRecord {
                alias: Some(String::new()),
                ..k.clone()
            },
            true,
        ),
        (
            "a description of 256 characters",
            KmsKeyRecord {
                description: "d".repeat(256),
                ..k.clone()
            },
            true,
        ),
        (
            "a live key without an alias",
            KmsKeyRecord {
                alias: None,
                ..k.clone()
            },
            true,
        ),
        (
            "a deleted key with an alias",
            KmsKeyRecord {
                state: KmsKeyState::Deleted,
                ..k.clone()
            },
            true,
        ),
        (
            "a live key with a deletion time",
            KmsKeyRecord {
                deleted_ms: Some(5),
                ..k.clone()
            },
            true,
        ),
        (
            "a state to return to that is not enabled or disabled",
            KmsKeyRecord {
                state_before: Some(KmsKeyState::PendingImport),
                ..k.clone()
            },
            true,
        ),
        (
            "a minimum decryption version 0",
            KmsKeyRecord {
                min_decryption_version: 0,
                ..k.clone()
            },
            true,
        ),
        (
            "an import token of 16 bytes",
            KmsKeyRecord {
                import: Some(KmsImportParams {
                    token_id: vec![1; 16],
                    ..import.clone()
                }),
                ..k.clone()
            },
            true,
        ),
        (
            "an import expiry above 2^63 - 1",
            KmsKeyRecord {
                import: Some(KmsImportParams {
                    expires_ms: u64::MAX,
                    ..import.clone()
                }),
                ..k.clone()
            },
            true,
        ),
    ];
    for (what, bad, update_too) in bad {
        if update_too {
            let e = fails(db, |tx| tx.update_kms_key(&bad));
            assert!(matches!(e, MetaError::Database(_)), "update, {what}: {e:?}");
        }
        // Another key, so that neither its id nor its alias is taken.
        let other = KmsKeyRecord {
            key_id: "fresh".into(),
            alias: if bad.alias == k.alias {
                Some("alias/fresh".into())
            } else {
                bad.alias.clone()
            },
            ..bad
        };
        let e = fails(db, |tx| tx.insert_kms_key(&other));
        assert!(matches!(e, MetaError::Database(_)), "insert, {what}: {e:?}");
        // No message carries record contents.
        assert!(!e.to_string().contains("ddddd"), "{e}");
    }
    assert_eq!(read(db, |tx| tx.kms_key(KmsBy::Id(A))), Some(k));
    assert_eq!(read(db, |tx| tx.kms_keys()).len(), 1);
}

// ---------------------------------------------------------------------------------------
// Versions

pub fn kms_versions_round_trip(f: &Fixture) {
    let db = &*f.db;
    write(db, |tx| {
        tx.insert_kms_key(&kms_key(A, "alias/a", 1))?;
        tx.insert_kms_key(&kms_key(B, "alias/b", 2))
    });
    let v1 = version(A, 1, Some(vec![0xa1; 60]));
    let v2 = KmsVersionRecord {
        material: None,
        encryptions: MAX_U64,
        created_ms: MAX_U64,
        ..version(A, 2, None)
    };
    let v_max = version(A, u32::MAX, Some(vec![0xa3; 61]));
    let other = version(B, 1, Some(vec![0xb1; 60]));
    // Inserted out of order.
    write(db, |tx| {
        tx.insert_kms_version(&v_max)?;
        tx.insert_kms_version(&other)?;
        tx.insert_kms_version(&v2)?;
        tx.insert_kms_version(&v1)
    });
    assert_eq!(
        read(db, |tx| tx.kms_versions(A)),
        vec![v1.clone(), v2.clone(), v_max.clone()]
    );
    assert_eq!(read(db, |tx| tx.kms_versions(B)), vec![other.clone()]);
    assert_eq!(read(db, |tx| tx.kms_versions("no-such-key")), vec![]);

    let e = fails(db, |tx| tx.insert_kms_version(&version(A, 2, None)));
    assert!(
        matches!(
            e,
            MetaError::AlreadyExists {
                what: "kms key version",
                ..
            }
        ),
        "{e:?}"
    );
    let e = fails(db, |tx| {
        tx.insert_kms_version(&version("no-such-key", 1, None))
    });
    match e {
        MetaError::NotFound { what, name } => {
            assert_eq!((what, name.as_str()), ("kms key", "no-such-key"))
        }
        e => panic!("{e:?}"),
    }
    let e = fails(db, |tx| tx.insert_kms_version(&version(A, 0, None)));
    assert!(matches!(e, MetaError::Database(_)), "version 0: {e:?}");
    let e = fails(db, |tx| {
        tx.insert_kms_version(&KmsVersionRecord {
            encryptions: u64::MAX,
            ..version(A, 3, None)
        })
    });
    assert!(matches!(e, MetaError::Database(_)), "{e:?}");

    // An update replaces the material and the encryption count only.
    let reimported = KmsVersionRecord {
        material: Some(vec![0xa2; 60]),
        encryptions: 7,
        created_ms: 1,
        ..v2.clone()
    };
    write(db, |tx| tx.update_kms_version(&reimported));
    let expired = KmsVersionRecord {
        material: None,
        encryptions: MAX_U64,
        created_ms: 2,
        ..v1.clone()
    };
    write(db, |tx| tx.update_kms_version(&expired));
    assert_eq!(
        read(db, |tx| tx.kms_versions(A)),
        vec![
            KmsVersionRecord {
                created_ms: v1.created_ms,
                ..expired
            },
            KmsVersionRecord {
                created_ms: v2.created_ms,
                ..reimported
            },
            v_max.clone(),
        ]
    );
    let e = fails(db, |tx| tx.update_kms_version(&version(A, 9, None)));
    assert!(
        matches!(
            e,
            MetaError::NotFound {
                what: "kms key version",
                ..
            }
        ),
        "{e:?}"
    );

    // Deleting a CMK's versions deletes all of them, and nobody else's.
    assert_eq!(write(db, |tx| tx.delete_kms_versions(A)), 3);
    assert_eq!(read(db, |tx| tx.kms_versions(A)), vec![]);
    assert_eq!(read(db, |tx| tx.kms_versions(B)), vec![other]);
    assert_eq!(write(db, |tx| tx.delete_kms_versions(A)), 0);
    assert_eq!(write(db, |tx| tx.delete_kms_versions("no-such-key")), 0);
    // The numbers are free again (an external CMK's material re-imported as version 1).
    write(db, |tx| tx.insert_kms_version(&v1));
    assert_eq!(read(db, |tx| tx.kms_versions(A)), vec![v1]);
}

// ---------------------------------------------------------------------------------------
// Registrations

pub fn kms_registrations_round_trip(f: &Fixture) {
    let db = &*f.db;
    write(db, |tx| {
        tx.insert_kms_key(&kms_key(A, "alias/a", 1))?;
        tx.insert_kms_key(&kms_key(B, "alias/b", 2))
    });
    let long = format!("{}é", "r".repeat(1022)); // 1024 bytes
    let resources: Vec<&str> = vec![
        "bucket:photos",
        "bucket:Photos",
        "bucket:photos/2024",
        "bucket:photos0",
        "Z",
        "a",
        "é",
        "e\u{301}",
        "\u{ffff}",
        "\u{10000}",
        "😀",
        long.as_str(),
    ];
    let mut shuffled = resources.clone();
    shuffled.reverse();
    shuffled.rotate_left(5);
    write(db, |tx| {
        for (i, r) in shuffled.iter().enumerate() {
            tx.put_kms_registration(&registration(A, r, i as u32 + 1))?;
        }
        // The same resource under another CMK is another registration.
        tx.put_kms_registration(&registration(B, "bucket:photos", u32::MAX))
    });
    let got = read(db, |tx| tx.kms_registrations(A));
    let got_names: Vec<&str> = got.iter().map(|r| r.resource.as_str()).collect();
    assert_eq!(got_names, sorted_bytewise(&resources), "ascending by bytes");
    let photos = got
        .iter()
        .find(|r| r.resource == "bucket:photos")
        .expect("photos");
    let i = shuffled
        .iter()
        .position(|r| *r == "bucket:photos")
        .expect("shuffled");
    assert_eq!(*photos, registration(A, "bucket:photos", i as u32 + 1));
    assert_eq!(
        read(db, |tx| tx.kms_registrations(B)),
        vec![registration(B, "bucket:photos", u32::MAX)]
    );

    // A put replaces the whole registration (a rewrap moves its version).
    let moved = KmsRegistration {
        version: 9,
        description: "rewrapped".into(),
        created_ms: MAX_U64,
        updated_ms: MAX_U64,
        ..registration(A, "bucket:photos", 1)
    };
    write(db, |tx| tx.put_kms_registration(&moved));
    let got = read(db, |tx| tx.kms_registrations(A));
    assert_eq!(got.len(), resources.len());
    assert!(got.contains(&moved));

    assert!(write(db, |tx| tx.delete_kms_registration(A, "bucket:photos")));
    assert!(!write(db, |tx| tx.delete_kms_registration(A, "bucket:photos")));
    assert!(!write(db, |tx| tx.delete_kms_registration(A, "bucket:PHOTOS")));
    assert!(!write(db, |tx| tx.delete_kms_registration("no-such-key", "x")));
    assert_eq!(
        read(db, |tx| tx.kms_registrations(A)).len(),
        resources.len() - 1
    );
    assert_eq!(read(db, |tx| tx.kms_registrations(B)).len(), 1);
    assert_eq!(read(db, |tx| tx.kms_registrations("no-such-key")), vec![]);

    let e = fails(db, |tx| {
        tx.put_kms_registration(&registration("no-such-key", "x", 1))
    });
    match e {
        MetaError::NotFound { what, name } => {
            assert_eq!((what, name.as_str()), ("kms key", "no-such-key"))
        }
        e => panic!("{e:?}"),
    }
    for (what, resource) in [("empty", String::new()), ("1025 bytes", format!("{long}x"))] {
        let e = fails(db, |tx| {
            tx.put_kms_registration(&registration(A, &resource, 1))
        });
        assert!(matches!(e, MetaError::Database(_)), "{what}: {e:?}");
    }
    let e = fails(db, |tx| tx.put_kms_registration(&registration(A, "v0", 0)));
    assert!(matches!(e, MetaError::Database(_)), "version 0: {e:?}");
}

// ---------------------------------------------------------------------------------------
// The audit trail

pub fn kms_audit_appends_and_moves_the_head(f: &Fixture) {
    let db = &*f.db;
    read(db, |tx| {
        assert_eq!(
            tx.kms_audit_head()?,
            KmsAuditHead {
                seq: 0,
                mac: Vec::new()
            }
        );
        assert_eq!(tx.kms_audit(0, 10)?, vec![]);
        Ok(())
    });
    let records: Vec<KmsAuditRecord> = (1..=5)
        .map(|seq| match seq {
            // Operations that named no key, or no version; a version the service refused.
            2 => KmsAuditRecord {
                key_id: None,
                version: None,
                operation: "listKeys".into(),
                outcome: "AccessDenied".into(),
                detail: "é".repeat(2000),
                ..audit(2)
            },
            3 => KmsAuditRecord {
                version: Some(u32::MAX),
                time_ms: MAX_U64,
                ..audit(3)
            },
            4 => KmsAuditRecord {
                version: Some(0),
                key_id: Some("a key that never existed".into()),
                ..audit(4)
            },
            seq => audit(seq),
        })
        .collect();
    write(db, |tx| tx.append_kms_audit(&records[0]));
    assert_eq!(read(db, |tx| tx.kms_audit_head()), head(1));
    // Several appends in one transaction.
    write(db, |tx| {
        for r in &records[1..] {
            tx.append_kms_audit(r)?;
        }
        Ok(())
    });
    read(db, |tx| {
        assert_eq!(tx.kms_audit_head()?, head(5));
        assert_eq!(tx.kms_audit(0, 100)?, records);
        assert_eq!(tx.kms_audit(2, 2)?, records[2..4].to_vec());
        assert_eq!(tx.kms_audit(4, 100)?, records[4..].to_vec());
        assert_eq!(tx.kms_audit(5, 100)?, vec![]);
        assert_eq!(tx.kms_audit(u64::MAX, 100)?, vec![]);
        assert_eq!(tx.kms_audit(0, 0)?, vec![]);
        assert_eq!(tx.kms_audit(0, usize::MAX)?.len(), 5);
        Ok(())
    });

    // A stale appender (it read the head before another one appended), a gap, seq 0: nothing
    // is appended and the head stays.
    for (what, r) in [
        (
            "a taken seq",
            KmsAuditRecord {
                mac: vec![0xee; 32],
                ..audit(5)
            },
        ),
        ("an old seq", audit(1)),
        ("a gap", audit(7)),
    ] {
        let e = fails(db, |tx| tx.append_kms_audit(&r));
        assert!(
            matches!(e, MetaError::Conflict(_)) && e.is_retryable(),
            "{what}: {e:?}"
        );
    }
    let e = fails(db, |tx| tx.append_kms_audit(&audit(0)));
    assert!(matches!(e, MetaError::Database(_)), "seq 0: {e:?}");
    // Invalid records.
    let e = fails(db, |tx| {
        tx.append_kms_audit(&KmsAuditRecord {
            mac: vec![1; 31],
            ..audit(6)
        })
    });
    assert!(matches!(e, MetaError::Database(_)), "short MAC: {e:?}");
    let e = fails(db, |tx| {
        tx.append_kms_audit(&KmsAuditRecord {
            time_ms: u64::MAX,
            ..audit(6)
        })
    });
    assert!(matches!(e, MetaError::Database(_)), "{e:?}");
    read(db, |tx| {
        assert_eq!(tx.kms_audit_head()?, head(5));
        assert_eq!(tx.kms_audit(0, 100)?, records);
        Ok(())
    });
    // A dropped transaction appends nothing either.
    {
        let mut tx = db.write().expect("begin");
        tx.append_kms_audit(&audit(6)).expect("append");
        assert_eq!(tx.kms_audit_head().expect("head"), head(6));
    }
    assert_eq!(read(db, |tx| tx.kms_audit_head()), head(5));
    write(db, |tx| tx.append_kms_audit(&audit(6)));
    assert_eq!(read(db, |tx| tx.kms_audit(5, 10)), vec![audit(6)]);
}

/// Appenders on two handles, each reading the head and appending after it: the trail has
/// every record once, without gaps, each after the one its appender read.
pub fn kms_audit_appenders_lose_nothing(f: &Fixture) {
    const PER_HANDLE: u64 = 50;
    let other = (f.reopen)();
    let handles: [&dyn Metadata; 2] = [&*f.db, &*other];
    std::thread::scope(|s| {
        for (h, db) in handles.iter().enumerate() {
            let db = *db;
            s.spawn(move || {
                for i in 0..PER_HANDLE {
                    write(db, |tx| {
                        let head = tx.kms_audit_head()?;
                        tx.append_kms_audit(&KmsAuditRecord {
                            request_id: format!("h{h}-{i}"),
                            // Chained to the head it read.
                            mac: mac(head.seq + 1)
                                .iter()
                                .zip(head.mac.iter().chain(std::iter::repeat(&0)))
                                .map(|(a, b)| a ^ b)
                                .collect(),
                            ..audit(head.seq + 1)
                        })
                    });
                }
            });
        }
    });
    let total = 2 * PER_HANDLE;
    let trail = read(&*f.db, |tx| tx.kms_audit(0, 1000));
    assert_eq!(trail.len() as u64, total);
    let mut previous: Vec<u8> = Vec::new();
    for (i, r) in trail.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        let expect: Vec<u8> = mac(r.seq)
            .iter()
            .zip(previous.iter().chain(std::iter::repeat(&0)))
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(r.mac, expect, "record {} is not chained to {}", r.seq, i);
        previous = r.mac.clone();
    }
    let mut ids: Vec<&str> = trail.iter().map(|r| r.request_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len() as u64, total);
    assert_eq!(
        read(&*f.db, |tx| tx.kms_audit_head()),
        KmsAuditHead {
            seq: total,
            mac: previous
        }
    );
}

// ---------------------------------------------------------------------------------------
// SSE-KMS buckets

pub fn update_bucket_is_a_cas(f: &Fixture) {
    let db = &*f.db;
    let b = seed_bucket(db);
    let ns = read(db, |tx| tx.namespace(By::Name("ns"))).expect("ns").id;
    let before = read(db, |tx| tx.bucket(By::Id(b))).expect("bucket");
    assert_eq!(before.kms_key_id, None);

    // The bucket key moves under a CMK: a KMS ciphertext, not a 40-byte wrap.
    let sse_kms = BucketRecord {
        wrapped_key: Some(vec![0x6b; 150]),
        kms_key_id: Some(A.into()),
        // Never changed by an update:
        name: "renamed".into(),
        namespace_id: ns + 100,
        created: 1,
        ..before.clone()
    };
    assert_eq!(write(db, |tx| tx.update_bucket(&sse_kms)), 2);
    let expect = BucketRecord {
        wrapped_key: Some(vec![0x6b; 150]),
        kms_key_id: Some(A.into()),
        row_version: 2,
        ..before.clone()
    };
    assert_eq!(read(db, |tx| tx.bucket(By::Id(b))), Some(expect.clone()));
    assert_eq!(
        read(db, |tx| tx.bucket(By::Name("bucket"))),
        Some(expect.clone())
    );
    assert_eq!(read(db, |tx| tx.buckets(None)), vec![expect.clone()]);

    // A stale writer loses and changes nothing.
    let stale = BucketRecord {
        wrapped_key: Some(vec![0x11; 40]),
        kms_key_id: None,
        ..before.clone()
    };
    let e = fails(db, |tx| tx.update_bucket(&stale));
    assert!(
        matches!(e, MetaError::Conflict(_)) && e.is_retryable(),
        "{e:?}"
    );
    assert_eq!(read(db, |tx| tx.bucket(By::Id(b))), Some(expect.clone()));

    // Back to the namespace key.
    let back = BucketRecord {
        wrapped_key: Some(vec![0x23; 40]),
        kms_key_id: None,
        ..expect.clone()
    };
    assert_eq!(write(db, |tx| tx.update_bucket(&back)), 3);
    assert_eq!(
        read(db, |tx| tx.bucket(By::Id(b))),
        Some(BucketRecord {
            row_version: 3,
            ..back.clone()
        })
    );

    // The key rules hold: 40 bytes without a CMK, a key whenever encrypted, no CMK in clear.
    let current = BucketRecord {
        row_version: 3,
        ..back
    };
    for (what, bad) in [
        (
            "41 bytes without a CMK",
            BucketRecord {
                wrapped_key: Some(vec![1; 41]),
                ..current.clone()
            },
        ),
        (
            "no key",
            BucketRecord {
                wrapped_key: None,
                kms_key_id: Some(A.into()),
                ..current.clone()
            },
        ),
        (
            "a ciphertext of 4097 bytes",
            BucketRecord {
                wrapped_key: Some(vec![1; 4097]),
                kms_key_id: Some(A.into()),
                ..current.clone()
            },
        ),
        (
            "an empty CMK id",
            BucketRecord {
                kms_key_id: Some(String::new()),
                ..current.clone()
            },
        ),
    ] {
        let e = fails(db, |tx| tx.update_bucket(&bad));
        assert!(matches!(e, MetaError::Database(_)), "{what}: {e:?}");
    }

    // A vanished bucket is a conflict.
    write(db, |tx| tx.delete_bucket(b));
    let e = fails(db, |tx| tx.update_bucket(&current));
    assert!(matches!(e, MetaError::Conflict(_)), "{e:?}");

    // An SSE-KMS bucket made as such; a clear bucket cannot name a CMK.
    let made = write(db, |tx| {
        tx.insert_bucket(&NewBucket {
            wrapped_key: Some(vec![0x7c; 96]),
            kms_key_id: Some(B.into()),
            ..new_bucket(ns, "sse-kms")
        })
    });
    let got = read(db, |tx| tx.bucket(By::Id(made))).expect("bucket");
    assert_eq!(
        (got.wrapped_key, got.kms_key_id),
        (Some(vec![0x7c; 96]), Some(B.to_owned()))
    );
    let e = fails(db, |tx| {
        tx.insert_bucket(&NewBucket {
            encryption: false,
            wrapped_key: None,
            kms_key_id: Some(B.into()),
            ..new_bucket(ns, "clear-kms")
        })
    });
    assert!(matches!(e, MetaError::Database(_)), "{e:?}");
    let clear = write(db, |tx| {
        tx.insert_bucket(&NewBucket {
            encryption: false,
            wrapped_key: None,
            ..new_bucket(ns, "clear")
        })
    });
    let clear = read(db, |tx| tx.bucket(By::Id(clear))).expect("clear bucket");
    let e = fails(db, |tx| {
        tx.update_bucket(&BucketRecord {
            kms_key_id: Some(B.into()),
            ..clear.clone()
        })
    });
    assert!(matches!(e, MetaError::Database(_)), "{e:?}");
}
