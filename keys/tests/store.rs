//! Key store, hierarchy provider, rewrap and dump tests, on SQLite metadata.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use dare_keys::derive::{virtual_bucket_key, virtual_master_key};
use dare_keys::wrap::unwrap_key;
use dare_keys::*;
use dare_metadata::{MetaError, write_with};

/// A root of trust that counts unwraps (to see what the cache saves).
#[derive(Debug)]
struct Counting {
    inner: RootKeyFile,
    unwraps: AtomicUsize,
}

impl RootOfTrust for Counting {
    fn wrap_master(&self, key: &Secret32) -> Result<Vec<u8>, KeyError> {
        self.inner.wrap_master(key)
    }
    fn unwrap_master(&self, blob: &[u8]) -> Result<Secret32, KeyError> {
        self.unwraps.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap_master(blob)
    }
    fn describe(&self) -> String {
        "counting".into()
    }
}

fn rotate(store: &KeyStore) -> RotationStatus {
    let id = store.start_rotation().unwrap();
    store.run_rotation(id, &RotationOptions::default()).unwrap()
}

#[test]
fn create_open_and_wrong_root() {
    let dir = tempfile::tempdir().unwrap();
    let meta = new_db(dir.path());
    // A database without a store row.
    match KeyStore::open(meta.clone(), root(1), opts()) {
        Err(e @ StoreError::NotInitialized(_)) => {
            assert!(e.to_string().contains("dare init"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    init(&*meta, &*root(1));
    // Creating twice is refused, inside the caller's transaction.
    let again = write_with(
        &*meta,
        |_: &StoreError| false,
        |tx| KeyStore::create_in(tx, &*root(1), [1; 16], 16),
    );
    assert!(matches!(again, Err(StoreError::AlreadyInitialized(_))));

    let store = KeyStore::open(meta.clone(), root(1), opts()).unwrap();
    let rec = store.store_record();
    assert_eq!(
        (rec.store_id, rec.chunk_shift, rec.root_of_trust.as_str()),
        ([0x5a; 16], 16, "root-key-file")
    );
    assert_eq!(
        (
            rec.active_master,
            rec.active_rotation,
            rec.key_epoch,
            rec.row_version
        ),
        (1, 1, 1, 1)
    );
    let kv = store.key_versions();
    assert_eq!(kv.masters, [(1, MasterState::Active)]);
    assert_eq!(kv.rotation_versions, [1]);
    assert!(!store.refresh().unwrap(), "nothing changed");

    match KeyStore::open(open_db(dir.path()), root(2), opts()) {
        Err(e @ StoreError::Key(KeyError::WrongRootKey)) => {
            assert!(e.to_string().contains("wrong root key"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_create_leaves_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let meta = new_db(dir.path());
    // The caller's transaction fails after create_in: nothing is committed.
    let r: Result<(), StoreError> = write_with(
        &*meta,
        |_: &StoreError| false,
        |tx| {
            KeyStore::create_in(tx, &*root(1), [1; 16], 16)?;
            Err(StoreError::Metadata(MetaError::Conflict("test")))
        },
    );
    assert!(r.is_err());
    assert!(matches!(
        KeyStore::open(meta, root(1), opts()),
        Err(StoreError::NotInitialized(_))
    ));
}

#[test]
fn passphrase_root_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let cheap = Argon2Params {
        m_cost_kib: 256,
        t_cost: 1,
        p_cost: 1,
    };
    let store = new_store(
        dir.path(),
        Arc::new(PassphraseRoot::with_params("s3cret pass", cheap)),
    );
    assert_eq!(store.key_versions().root_of_trust, "passphrase-argon2id");
    add_namespace(&store, "n", true);
    let b = add_bucket(&store, "n", "bkt", true);
    let (dk, env) = HierarchyProvider::new(store, &b, CacheMode::On)
        .unwrap()
        .new_data_key()
        .unwrap();
    let again = Arc::new(
        KeyStore::open(
            open_db(dir.path()),
            Arc::new(PassphraseRoot::new("s3cret pass")),
            opts(),
        )
        .unwrap(),
    );
    let p = HierarchyProvider::new(again, &b, CacheMode::Off).unwrap();
    assert_eq!(p.open_data_key(&env).unwrap(), dk);
    assert!(matches!(
        KeyStore::open(
            open_db(dir.path()),
            Arc::new(PassphraseRoot::new("wrong")),
            opts()
        ),
        Err(StoreError::Key(KeyError::WrongRootKey))
    ));
}

#[test]
fn provider_roundtrip_and_errors() {
    let (_dir, store) = setup(root(1));
    add_namespace(&store, "plain", false);
    let b1 = bucket(&store, "bkt1");
    let b2 = add_bucket(&store, "ns1", "bkt2", true);
    // An unencrypted bucket has no keys; an unencrypted namespace may hold encrypted buckets.
    let p1 = add_bucket(&store, "plain", "pub1", false);
    assert!(p1.wrapped_key.is_none());
    match HierarchyProvider::new(store.clone(), &p1, CacheMode::On) {
        Err(e @ StoreError::EncryptionDisabled(_)) => assert!(e.to_string().contains("\"pub1\"")),
        other => panic!("{other:?}"),
    }
    let p2 = add_bucket(&store, "plain", "pub2", true);
    let p = HierarchyProvider::new(store.clone(), &p2, CacheMode::Off).unwrap();
    let (dk, env) = p.new_data_key().unwrap();
    assert_eq!(p.open_data_key(&env).unwrap(), dk);

    for mode in [CacheMode::On, CacheMode::Off] {
        let p = HierarchyProvider::new(store.clone(), &b1, mode).unwrap();
        assert_eq!((p.namespace_id(), p.bucket_id()), (b1.namespace_id, b1.id));
        let (dk, env) = p.new_data_key().unwrap();
        assert_eq!(env.kind, KeyKind::Hierarchy);
        assert_eq!(env.bytes.len(), HIERARCHY_BLOCK_LEN);
        let parsed = HierarchyBlock::parse(&env.bytes).unwrap();
        assert_eq!(
            (parsed.ns_id, parsed.bucket_id, parsed.rotation_version),
            (b1.namespace_id, b1.id, 1)
        );
        assert_eq!(p.open_data_key(&env).unwrap(), dk);

        // Another bucket's provider refuses the envelope.
        let other = HierarchyProvider::new(store.clone(), &b2, mode).unwrap();
        assert_eq!(other.open_data_key(&env), Err(KeyError::WrongContext));
        // An envelope naming another bucket is refused before any unwrap.
        let mut moved = env.clone();
        moved.bytes[8] ^= 0x40;
        assert_eq!(p.open_data_key(&moved), Err(KeyError::WrongContext));
        // Unknown rotation version (after a refresh that finds nothing new).
        let mut v = env.clone();
        v.bytes[16..20].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(p.open_data_key(&v), Err(KeyError::UnknownVersion(9)));
        // Tampered wrapped key: fails, and no key comes out.
        for i in 20..60 {
            let mut t = env.clone();
            t.bytes[i] ^= 0x01;
            assert_eq!(p.open_data_key(&t), Err(KeyError::UnwrapFailed), "byte {i}");
        }
        let mut short = env.clone();
        short.bytes.truncate(59);
        assert!(matches!(
            p.open_data_key(&short),
            Err(KeyError::Malformed(_))
        ));
        let wrong_kind = Envelope {
            kind: KeyKind::StoreRoot,
            bytes: env.bytes.clone(),
        };
        assert!(matches!(
            p.open_data_key(&wrong_kind),
            Err(KeyError::WrongKind {
                expected: 2,
                found: 1
            })
        ));
        assert!(matches!(
            p.rewrap(&wrong_kind),
            Err(KeyError::WrongKind { .. })
        ));
    }
}

#[test]
fn cache_on_needs_no_root_of_trust_after_warmup() {
    let dir = tempfile::tempdir().unwrap();
    let counting = Arc::new(Counting {
        inner: RootKeyFile::from_secret(Secret32::from_bytes("root", [3; 32])),
        unwraps: AtomicUsize::new(0),
    });
    let meta = new_db(dir.path());
    init(&*meta, &*counting);
    let o = StoreOptions {
        cache_capacity: 64,
        refresh_interval: Duration::from_secs(3600),
    };
    let store = Arc::new(KeyStore::open(meta, counting.clone(), o).unwrap());
    add_namespace(&store, "n", true);
    let b = add_bucket(&store, "n", "bkt", true);

    let on = HierarchyProvider::new(store.clone(), &b, CacheMode::On).unwrap();
    let (_, first) = on.new_data_key().unwrap();
    let after_warmup = counting.unwraps.load(Ordering::SeqCst);
    for _ in 0..10 {
        let (dk, e) = on.new_data_key().unwrap();
        assert_eq!(on.open_data_key(&e).unwrap(), dk);
        on.open_data_key(&first).unwrap();
    }
    assert_eq!(
        counting.unwraps.load(Ordering::SeqCst),
        after_warmup,
        "cache on touched the root"
    );
    assert!(store.cache().stats().0 >= 30);

    let off = HierarchyProvider::new(store.clone(), &b, CacheMode::Off).unwrap();
    let before = counting.unwraps.load(Ordering::SeqCst);
    for _ in 0..10 {
        off.open_data_key(&first).unwrap();
    }
    // MK and RT data key per request: the whole chain is rebuilt each time.
    assert_eq!(counting.unwraps.load(Ordering::SeqCst) - before, 20);
}

#[test]
fn second_store_on_the_same_database_sees_a_rotation() {
    let (dir, a) = setup(root(1));
    // `b` stands for another process: its own database handle and KeyStore.
    let b = Arc::new(KeyStore::open(open_db(dir.path()), root(1), opts()).unwrap());
    let rec = bucket(&a, "bkt1");
    let pa = HierarchyProvider::new(a.clone(), &rec, CacheMode::On).unwrap();
    let pb = HierarchyProvider::new(b.clone(), &rec, CacheMode::On).unwrap();
    let (dk_old, old_env) = pb.new_data_key().unwrap();
    let before = b.store_record();
    rotate(&a);
    let (dk_new, new_env) = pa.new_data_key().unwrap();
    assert_eq!(
        HierarchyBlock::parse(&new_env.bytes)
            .unwrap()
            .rotation_version,
        2
    );
    // `b` has not looked yet; opening an envelope of an unknown version refreshes at once.
    assert_eq!(b.store_record().row_version, before.row_version);
    assert_eq!(pb.open_data_key(&new_env).unwrap(), dk_new);
    assert_eq!(pa.open_data_key(&old_env).unwrap(), dk_old);
    assert_eq!(pb.open_data_key(&old_env).unwrap(), dk_old);
    let after = b.store_record();
    assert!(after.row_version > before.row_version);
    assert_eq!((after.active_master, after.active_rotation), (2, 2));
    assert!(after.key_epoch > before.key_epoch);
    assert!(!b.refresh().unwrap());
    // A namespace created through `b` after the rotation is under master 2, and `a` uses it.
    add_namespace(&b, "from-b", true);
    assert_eq!(namespace(&a, "from-b").master_version, 2);
    let fb = add_bucket(&b, "from-b", "fbk", true);
    let p = HierarchyProvider::new(a.clone(), &fb, CacheMode::Off).unwrap();
    let (dk, env) = HierarchyProvider::new(b.clone(), &fb, CacheMode::On)
        .unwrap()
        .new_data_key()
        .unwrap();
    assert_eq!(p.open_data_key(&env).unwrap(), dk);
    assert_eq!(b.key_versions().active_rotation, 2);
}

#[test]
fn rewrap_moves_old_envelopes_to_the_active_version() {
    let (_dir, store) = setup(root(1));
    let b1 = bucket(&store, "bkt1");
    let b2 = add_bucket(&store, "ns1", "bkt2", true);
    for mode in [CacheMode::On, CacheMode::Off] {
        let p = HierarchyProvider::new(store.clone(), &b1, mode).unwrap();
        let (dk, env) = p.new_data_key().unwrap();
        let version = |e: &Envelope| HierarchyBlock::parse(&e.bytes).unwrap().rotation_version;
        let v0 = version(&env);
        // Under the active version already: nothing to do.
        assert_eq!(p.rewrap(&env).unwrap(), None);
        rotate(&store);
        let moved = p.rewrap(&env).unwrap().expect("rewrapped");
        assert_eq!(version(&moved), v0 + 1);
        assert_eq!(moved.kind, KeyKind::Hierarchy);
        assert_ne!(moved.bytes[20..], env.bytes[20..]);
        // Same data key, both envelopes open.
        assert_eq!(p.open_data_key(&moved).unwrap(), dk);
        assert_eq!(p.open_data_key(&env).unwrap(), dk);
        assert_eq!(p.rewrap(&moved).unwrap(), None);
        // Another bucket's envelope is refused.
        let other = HierarchyProvider::new(store.clone(), &b2, mode).unwrap();
        assert_eq!(other.rewrap(&env), Err(KeyError::WrongContext));
    }
}

#[test]
fn new_keys_are_wrapped_under_the_active_master() {
    let (_dir, store) = setup(root(1));
    let ns = namespace(&store, "ns1");
    rotate(&store);
    // The stale record (before the rewrap) still yields a usable bucket key.
    assert_eq!(ns.master_version, 1);
    let stale = store.new_bucket_key(&ns).unwrap();
    assert_eq!(stale.len(), 40);
    let (mv, wrapped) = store.new_namespace_key().unwrap();
    assert_eq!((mv, wrapped.len()), (2, 40));
    assert_eq!(namespace(&store, "ns1").master_version, 2);
}

#[test]
fn debug_output_carries_no_key_bytes() {
    let (_dir, store) = setup(root(0xAB));
    let p = HierarchyProvider::new(store.clone(), &bucket(&store, "bkt1"), CacheMode::On).unwrap();
    let (dk, _) = p.new_data_key().unwrap();
    let root_file = RootKeyFile::from_secret(Secret32::from_bytes("root", [0xAB; 32]));
    let texts = [
        format!("{store:?}"),
        format!("{p:?}"),
        format!("{dk:?}"),
        format!("{root_file:?}"),
        format!("{:?}", store.store_record()),
        format!("{:?}", PassphraseRoot::new("hunter2")),
        format!(
            "{:?}",
            CustomerKeyProvider::new(Secret32::from_bytes("ck", [0xCD; 32]))
        ),
        format!(
            "{:?}",
            StoreRootProvider::new(Secret32::from_bytes("r", [0xEF; 32]))
        ),
        format!("{:?}", store.cache()),
    ];
    let key_hex = hex::encode(dk.expose_secret());
    for t in texts {
        let low = t.to_lowercase();
        assert!(
            !low.contains("abab") && !low.contains("cdcd") && !low.contains("efef"),
            "{t}"
        );
        assert!(
            !low.contains("171, 171") && !low.contains("205, 205") && !low.contains("239, 239"),
            "{t}"
        );
        assert!(
            !t.contains("hunter2") && !low.contains(&key_hex[..16]),
            "{t}"
        );
    }
}

fn b64(v: &serde_json::Value) -> Vec<u8> {
    STANDARD.decode(v.as_str().unwrap()).unwrap()
}

fn find<'a>(arr: &'a serde_json::Value, field: &str, want: u64) -> &'a serde_json::Value {
    arr.as_array()
        .unwrap()
        .iter()
        .find(|r| r[field] == want)
        .unwrap()
}

/// Re-derives data keys from `dump_json` and the root key alone, following docs/KEYS.md,
/// and checks that no plaintext key appears in the dump.
#[test]
fn dump_json_is_enough_to_rederive_keys_per_spec() {
    let (_dir, store) = setup(root(1));
    let p = HierarchyProvider::new(store.clone(), &bucket(&store, "bkt1"), CacheMode::On).unwrap();
    let (dk1, env1) = p.new_data_key().unwrap();
    rotate(&store);
    let (dk2, env2) = p.new_data_key().unwrap();

    let dump = store.dump_json().unwrap();
    assert_eq!(dump, dump_json_of(&**store.metadata()).unwrap());
    let v: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(v["metadata"], store.metadata().describe());
    assert_eq!(v["store"]["store_id"], "5a".repeat(16));
    assert_eq!(v["store"]["active_master"], 2);
    let root = Secret32::from_bytes("root", [1; 32]);
    let rt = unwrap_key(&root, &b64(&v["store"]["rt_data_key"]), "rt").unwrap();
    let vmk = |mv: u64| {
        let rec = find(&v["master_keys"], "version", mv);
        let mk = unwrap_key(&root, &b64(&rec["wrapped"]), "mk").unwrap();
        virtual_master_key(&mk, u32::try_from(mv).unwrap(), &rt)
    };
    let mut plaintexts = vec![
        *rt.expose_secret(),
        *dk1.expose_secret(),
        *dk2.expose_secret(),
    ];
    for (dk, env) in [(&dk1, &env1), (&dk2, &env2)] {
        let hb = HierarchyBlock::parse(&env.bytes).unwrap();
        let rk_rec = find(
            &v["rotation_keys"],
            "version",
            u64::from(hb.rotation_version),
        );
        let rk = unwrap_key(
            &vmk(rk_rec["master_version"].as_u64().unwrap()),
            &b64(&rk_rec["wrapped"]),
            "rk",
        )
        .unwrap();
        let ns = find(&v["namespaces"], "id", hb.ns_id);
        let nk = unwrap_key(
            &vmk(ns["master_version"].as_u64().unwrap()),
            &b64(&ns["wrapped_key"]),
            "nk",
        )
        .unwrap();
        let b = find(&v["buckets"], "id", hb.bucket_id);
        let bk = unwrap_key(&nk, &b64(&b["wrapped_key"]), "bk").unwrap();
        let vbk = virtual_bucket_key(&rk, hb.ns_id, hb.bucket_id, hb.rotation_version, &bk);
        let got = unwrap_key(&vbk, hb.wrapped, "dk").unwrap();
        assert_eq!(got.expose_secret(), dk.expose_secret());
        plaintexts.extend([
            *rk.expose_secret(),
            *nk.expose_secret(),
            *bk.expose_secret(),
            *vbk.expose_secret(),
        ]);
    }
    for k in plaintexts {
        assert!(!dump.contains(&STANDARD.encode(k)) && !dump.contains(&hex::encode(k)));
    }
    // Every master is kept; after the rotation version 1 is retired, version 2 active.
    assert_eq!(v["master_keys"][0]["state"], "retired");
    assert_eq!(v["master_keys"][1]["state"], "active");
    assert_eq!(v["tasks"][0]["kind"], "rotation");
    assert_eq!(v["tasks"][0]["state"], "completed");
    assert_eq!(v["tasks"][0]["step"], 5);
}

/// Writes a database, root key and envelopes for the out-of-tree cross-check against
/// docs/KEYS.md (run with `DARE_KEYS_FIXTURE_DIR=/path cargo test -p dare-keys --test store
/// -- --ignored export_fixture`).
#[test]
#[ignore = "writes a fixture for a manual cross-check"]
fn export_fixture() {
    let out = std::path::PathBuf::from(
        std::env::var("DARE_KEYS_FIXTURE_DIR").expect("set DARE_KEYS_FIXTURE_DIR"),
    );
    std::fs::create_dir_all(&out).unwrap();
    let rootf = Arc::new(RootKeyFile::create(&out.join("root.key")).unwrap());
    let store = new_store(&out, rootf);
    add_namespace(&store, "ns1", true);
    add_namespace(&store, "plain", false);
    let b1 = add_bucket(&store, "ns1", "b1", true);
    let b2 = add_bucket(&store, "plain", "b2", true);
    let mut envelopes = Vec::new();
    let mut push = |name: &str, dk: DataKey, e: Envelope| {
        envelopes.push(serde_json::json!({
            "name": name, "kind": e.kind.to_byte(), "bytes_hex": hex::encode(&e.bytes),
            "expected_data_key_hex": hex::encode(dk.expose_secret()),
        }));
    };
    let p1 = HierarchyProvider::new(store.clone(), &b1, CacheMode::On).unwrap();
    let (dk, e) = p1.new_data_key().unwrap();
    push("b1-before-rotation", dk, e);
    rotate(&store);
    let (dk, e) = p1.new_data_key().unwrap();
    push("b1-after-rotation", dk, e);
    let p2 = HierarchyProvider::new(store.clone(), &b2, CacheMode::Off).unwrap();
    let (dk, e) = p2.new_data_key().unwrap();
    push("b2", dk, e);
    let ck = Secret32::from_bytes("ck", [0x42; 32]);
    let (dk, e) = CustomerKeyProvider::new(ck).new_data_key().unwrap();
    push("sse-c-key-0x42", dk, e);
    let (dk, e) = StoreRootProvider::new(Secret32::from_bytes("r", [0x24; 32]))
        .new_data_key()
        .unwrap();
    push("store-root-key-0x24", dk, e);
    std::fs::write(
        out.join("envelopes.json"),
        serde_json::to_string_pretty(&envelopes).unwrap(),
    )
    .unwrap();
    std::fs::write(out.join("dump.json"), store.dump_json().unwrap()).unwrap();
}
