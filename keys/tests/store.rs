//! Key store, hierarchy provider and dump tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dare_keys::derive::{virtual_bucket_key, virtual_master_key};
use dare_keys::wrap::unwrap_key;
use dare_keys::*;

fn opts() -> StoreOptions {
    StoreOptions {
        cache_capacity: 64,
        refresh_interval: Duration::ZERO,
    }
}

fn root(b: u8) -> Arc<dyn RootOfTrust> {
    Arc::new(RootKeyFile::from_secret(Secret32::from_bytes(
        "root", [b; 32],
    )))
}

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

fn setup() -> (tempfile::TempDir, Arc<KeyStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = KeyStore::init(dir.path(), root(1), opts()).unwrap();
    store.create_namespace("ns1", true).unwrap();
    store.create_bucket("b1", "ns1", None).unwrap();
    (dir, Arc::new(store))
}

#[test]
fn init_open_and_wrong_root() {
    let (dir, _store) = setup();
    assert!(is_initialized(dir.path()));
    assert!(matches!(
        KeyStore::init(dir.path(), root(1), opts()),
        Err(StoreError::AlreadyInitialized(_))
    ));
    let reopened = KeyStore::open(dir.path(), root(1), opts()).unwrap();
    assert_eq!(reopened.bucket("b1").unwrap().namespace, "ns1");
    match KeyStore::open(dir.path(), root(2), opts()) {
        Err(e @ StoreError::Key(KeyError::WrongRootKey)) => {
            assert!(e.to_string().contains("wrong root key"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        KeyStore::open(empty.path(), root(1), opts()),
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
    let store = KeyStore::init(
        dir.path(),
        Arc::new(PassphraseRoot::with_params("s3cret pass", cheap)),
        opts(),
    )
    .unwrap();
    store.create_namespace("n", true).unwrap();
    store.create_bucket("b", "n", None).unwrap();
    let store = Arc::new(store);
    let (dk, block) = HierarchyProvider::new(store, "b", CacheMode::On)
        .unwrap()
        .new_data_key()
        .unwrap();
    let again = Arc::new(
        KeyStore::open(
            dir.path(),
            Arc::new(PassphraseRoot::new("s3cret pass")),
            opts(),
        )
        .unwrap(),
    );
    let p = HierarchyProvider::new(again, "b", CacheMode::Off).unwrap();
    assert_eq!(p.open_data_key(&block).unwrap(), dk);
    assert!(matches!(
        KeyStore::open(dir.path(), Arc::new(PassphraseRoot::new("wrong")), opts()),
        Err(StoreError::Key(KeyError::WrongRootKey))
    ));
}

#[test]
fn namespaces_and_buckets() {
    let (_dir, store) = setup();
    let plain = store.create_namespace("plain", false).unwrap();
    assert!(!plain.encryption);
    assert!(store.namespace("ns1").unwrap().encryption);
    assert!(matches!(
        store.create_namespace("ns1", true),
        Err(StoreError::AlreadyExists {
            what: "namespace",
            ..
        })
    ));
    assert!(matches!(
        store.create_namespace("bad name", true),
        Err(StoreError::InvalidName(_))
    ));
    assert!(matches!(
        store.create_namespace("", true),
        Err(StoreError::InvalidName(_))
    ));
    match store.create_bucket("x", "nope", None) {
        Err(
            e @ StoreError::NotFound {
                what: "namespace", ..
            },
        ) => {
            assert_eq!(e.to_string(), "no namespace named \"nope\"")
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.create_bucket("b1", "plain", None),
        Err(StoreError::AlreadyExists { what: "bucket", .. })
    ));
    assert!(matches!(
        store.create_bucket("x", "ns1", Some(false)),
        Err(StoreError::EncryptionPolicy(_))
    ));
    let p1 = store.create_bucket("p1", "plain", None).unwrap();
    let p2 = store.create_bucket("p2", "plain", Some(true)).unwrap();
    assert!(!p1.encryption && p2.encryption);
    assert!(matches!(
        HierarchyProvider::new(store.clone(), "p1", CacheMode::On),
        Err(StoreError::EncryptionDisabled(_))
    ));
    let p = HierarchyProvider::new(store.clone(), "p2", CacheMode::On).unwrap();
    let (dk, block) = p.new_data_key().unwrap();
    assert_eq!(p.open_data_key(&block).unwrap(), dk);
    assert!(matches!(
        HierarchyProvider::new(store.clone(), "missing", CacheMode::On),
        Err(StoreError::NotFound { what: "bucket", .. })
    ));

    let names: Vec<_> = store.namespaces().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["ns1", "plain"]);
    let in_plain: Vec<_> = store
        .buckets(Some("plain"))
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(in_plain, ["p1", "p2"]);
    assert_eq!(store.buckets(None).unwrap().len(), 3);
    assert!(store.buckets(Some("nope")).is_err());
    // Ids are numeric, increasing and never reused.
    let ids: Vec<_> = store
        .buckets(None)
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(ids, [1, 2, 3]);
}

#[test]
fn provider_roundtrip_and_errors() {
    let (_dir, store) = setup();
    store.create_bucket("b2", "ns1", None).unwrap();
    for mode in [CacheMode::On, CacheMode::Off] {
        let p = HierarchyProvider::new(store.clone(), "b1", mode).unwrap();
        let (dk, block) = p.new_data_key().unwrap();
        assert_eq!(block.kind, KeyKind::Hierarchy);
        assert_eq!(block.bytes.len(), HIERARCHY_BLOCK_LEN);
        let parsed = HierarchyBlock::parse(&block.bytes).unwrap();
        assert_eq!(
            (parsed.ns_id, parsed.bucket_id, parsed.rotation_version),
            (1, 1, 1)
        );
        assert_eq!(p.open_data_key(&block).unwrap(), dk);

        // Another bucket's provider refuses the block.
        let other = HierarchyProvider::new(store.clone(), "b2", mode).unwrap();
        assert_eq!(other.open_data_key(&block), Err(KeyError::WrongContext));
        // A block naming another bucket is refused before any unwrap.
        let mut moved = block.clone();
        moved.bytes[8] = 2;
        assert_eq!(p.open_data_key(&moved), Err(KeyError::WrongContext));
        // Unknown rotation version.
        let mut v = block.clone();
        v.bytes[16..20].copy_from_slice(&9u32.to_le_bytes());
        assert_eq!(p.open_data_key(&v), Err(KeyError::UnknownVersion(9)));
        // Tampered wrapped key: fails, and no key comes out.
        for i in 20..60 {
            let mut t = block.clone();
            t.bytes[i] ^= 0x01;
            assert_eq!(p.open_data_key(&t), Err(KeyError::UnwrapFailed), "byte {i}");
        }
        let mut short = block.clone();
        short.bytes.truncate(59);
        assert!(matches!(
            p.open_data_key(&short),
            Err(KeyError::Malformed(_))
        ));
        let wrong_kind = Envelope {
            kind: KeyKind::StoreRoot,
            bytes: block.bytes.clone(),
        };
        assert!(matches!(
            p.open_data_key(&wrong_kind),
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
    let o = StoreOptions {
        cache_capacity: 64,
        refresh_interval: Duration::from_secs(3600),
    };
    let store = KeyStore::init(dir.path(), counting.clone(), o).unwrap();
    store.create_namespace("n", true).unwrap();
    store.create_bucket("b", "n", None).unwrap();
    let store = Arc::new(store);

    let on = HierarchyProvider::new(store.clone(), "b", CacheMode::On).unwrap();
    let (_, first) = on.new_data_key().unwrap();
    let after_warmup = counting.unwraps.load(Ordering::SeqCst);
    for _ in 0..10 {
        let (dk, b) = on.new_data_key().unwrap();
        assert_eq!(on.open_data_key(&b).unwrap(), dk);
        on.open_data_key(&first).unwrap();
    }
    assert_eq!(
        counting.unwraps.load(Ordering::SeqCst),
        after_warmup,
        "cache on touched the root"
    );
    assert!(store.cache().stats().0 >= 30);

    let off = HierarchyProvider::new(store.clone(), "b", CacheMode::Off).unwrap();
    let before = counting.unwraps.load(Ordering::SeqCst);
    for _ in 0..10 {
        off.open_data_key(&first).unwrap();
    }
    // MK and RT data key per request: the whole chain is rebuilt each time.
    assert_eq!(counting.unwraps.load(Ordering::SeqCst) - before, 20);
}

#[test]
fn other_process_sees_rotation_and_new_namespaces() {
    let (dir, a) = setup();
    // `b` stands for another process: its own KeyStore on the same directory.
    let b = Arc::new(KeyStore::open(dir.path(), root(1), opts()).unwrap());
    let pa = HierarchyProvider::new(a.clone(), "b1", CacheMode::On).unwrap();
    let pb = HierarchyProvider::new(b.clone(), "b1", CacheMode::On).unwrap();
    let (dk_old, old_block) = pb.new_data_key().unwrap();
    let id = a.start_rotation().unwrap();
    a.run_rotation(id).unwrap();
    let (dk_new, new_block) = pa.new_data_key().unwrap();
    assert_eq!(
        HierarchyBlock::parse(&new_block.bytes)
            .unwrap()
            .rotation_version,
        2
    );
    assert_eq!(pb.open_data_key(&new_block).unwrap(), dk_new);
    assert_eq!(pa.open_data_key(&old_block).unwrap(), dk_old);
    assert_eq!(pb.open_data_key(&old_block).unwrap(), dk_old);
    b.create_namespace("from-b", true).unwrap();
    assert!(a.namespace("from-b").is_ok());
    assert_eq!(b.key_versions().active_rotation, 2);
}

#[test]
fn concurrent_writers_lose_no_update() {
    let (dir, _store) = setup();
    let n = 4;
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let path = dir.path().to_path_buf();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let s = KeyStore::open(&path, root(1), opts()).unwrap();
                barrier.wait();
                for j in 0..5 {
                    s.create_bucket(&format!("t{i}-{j}"), "ns1", None).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = KeyStore::open(dir.path(), root(1), opts()).unwrap();
    let buckets = s.buckets(None).unwrap();
    assert_eq!(buckets.len(), 1 + 4 * 5);
    let mut ids: Vec<_> = buckets.iter().map(|b| b.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 21);
}

#[test]
fn corrupt_and_truncated_store_files_are_typed_errors() {
    let (dir, _store) = setup();
    let path = store_file(dir.path());
    let good = std::fs::read(&path).unwrap();
    assert!(fuzz_load(&good).is_ok());
    for cut in [0, 7, 51, 52, good.len() / 2, good.len() - 1] {
        assert!(
            matches!(fuzz_load(&good[..cut]), Err(StoreError::Corrupt(_))),
            "cut {cut}"
        );
    }
    let mut flipped = good.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x20;
    match fuzz_load(&flipped) {
        Err(e @ StoreError::Corrupt(_)) => assert!(e.to_string().contains("checksum")),
        other => panic!("{other:?}"),
    }
    let mut version = good.clone();
    version[8] = 9;
    assert!(matches!(
        fuzz_load(&version),
        Err(StoreError::UnsupportedFormat(9))
    ));
    let mut magic = good.clone();
    magic[0] = b'X';
    assert!(matches!(fuzz_load(&magic), Err(StoreError::Corrupt(_))));
    std::fs::write(&path, &good[..100]).unwrap();
    assert!(matches!(
        KeyStore::open(dir.path(), root(1), opts()),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn debug_output_carries_no_key_bytes() {
    let (_dir, store) = setup();
    let p = HierarchyProvider::new(store.clone(), "b1", CacheMode::On).unwrap();
    let (dk, _) = p.new_data_key().unwrap();
    let root_file = RootKeyFile::from_secret(Secret32::from_bytes("root", [0xAB; 32]));
    let texts = [
        format!("{store:?}"),
        format!("{p:?}"),
        format!("{dk:?}"),
        format!("{root_file:?}"),
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

/// Re-derives a data key from `dump_json` and the root key alone, following docs/KEYS.md,
/// and checks that no plaintext key appears in the dump.
#[test]
fn dump_json_is_enough_to_rederive_keys_per_spec() {
    let (dir, store) = setup();
    let p = HierarchyProvider::new(store.clone(), "b1", CacheMode::On).unwrap();
    let (dk1, block1) = p.new_data_key().unwrap();
    let id = store.start_rotation().unwrap();
    store.run_rotation(id).unwrap();
    let (dk2, block2) = p.new_data_key().unwrap();

    let dump = store.dump_json().unwrap();
    assert_eq!(dump, dump_json_of(dir.path()).unwrap());
    let v: serde_json::Value = serde_json::from_str(&dump).unwrap();
    assert_eq!(v["format_version"], 1);
    let t = &v["table"];
    let root = Secret32::from_bytes("root", [1; 32]);
    let rt = unwrap_key(&root, &b64(&t["rt_data_key"]["wrapped"]), "rt").unwrap();
    let vmk = |mv: u64| {
        let rec = t["masters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["version"] == mv)
            .unwrap();
        let mk = unwrap_key(&root, &b64(&rec["wrapped"]), "mk").unwrap();
        virtual_master_key(&mk, u32::try_from(mv).unwrap(), &rt)
    };
    let mut plaintexts = vec![
        *rt.expose_secret(),
        *dk1.expose_secret(),
        *dk2.expose_secret(),
    ];
    for (dk, block) in [(&dk1, &block1), (&dk2, &block2)] {
        let hb = HierarchyBlock::parse(&block.bytes).unwrap();
        let rk_rec = t["rotation_keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["version"] == hb.rotation_version)
            .unwrap();
        let rk = unwrap_key(
            &vmk(rk_rec["master_version"].as_u64().unwrap()),
            &b64(&rk_rec["wrapped"]),
            "rk",
        )
        .unwrap();
        let ns = t["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == hb.ns_id)
            .unwrap();
        let nk = unwrap_key(
            &vmk(ns["master_version"].as_u64().unwrap()),
            &b64(&ns["wrapped_key"]),
            "nk",
        )
        .unwrap();
        let b = t["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == hb.bucket_id)
            .unwrap();
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
    // Every master is stored; after the rotation version 1 is retired, version 2 active.
    assert_eq!(t["masters"][0]["state"], "retired");
    assert_eq!(t["masters"][1]["state"], "active");
    assert_eq!(t["tasks"][0]["state"], "completed");
}

/// Writes a store, root key and key blocks for the out-of-tree cross-check against
/// docs/KEYS.md (run with `DARE_KEYS_FIXTURE_DIR=/path cargo test -p dare-keys --test store
/// -- --ignored export_fixture`).
#[test]
#[ignore = "writes a fixture for a manual cross-check"]
fn export_fixture() {
    let out = std::path::PathBuf::from(
        std::env::var("DARE_KEYS_FIXTURE_DIR").expect("set DARE_KEYS_FIXTURE_DIR"),
    );
    std::fs::create_dir_all(&out).unwrap();
    let root_path = out.join("root.key");
    let rootf = Arc::new(RootKeyFile::create(&root_path).unwrap());
    let store = Arc::new(KeyStore::init(&out.join("store"), rootf, opts()).unwrap());
    store.create_namespace("ns1", true).unwrap();
    store.create_namespace("plain", false).unwrap();
    store.create_bucket("b1", "ns1", None).unwrap();
    store.create_bucket("b2", "plain", Some(true)).unwrap();
    let mut blocks = Vec::new();
    let mut push = |name: &str, dk: DataKey, b: Envelope| {
        blocks.push(serde_json::json!({
            "name": name, "kind": b.kind.to_byte(), "bytes_hex": hex::encode(&b.bytes),
            "expected_data_key_hex": hex::encode(dk.expose_secret()),
        }));
    };
    let p1 = HierarchyProvider::new(store.clone(), "b1", CacheMode::On).unwrap();
    let (dk, b) = p1.new_data_key().unwrap();
    push("b1-before-rotation", dk, b);
    let id = store.start_rotation().unwrap();
    store.run_rotation(id).unwrap();
    let (dk, b) = p1.new_data_key().unwrap();
    push("b1-after-rotation", dk, b);
    let p2 = HierarchyProvider::new(store.clone(), "b2", CacheMode::Off).unwrap();
    let (dk, b) = p2.new_data_key().unwrap();
    push("b2", dk, b);
    let ck = Secret32::from_bytes("ck", [0x42; 32]);
    let (dk, b) = CustomerKeyProvider::new(ck).new_data_key().unwrap();
    push("sse-c-key-0x42", dk, b);
    let (dk, b) = StoreRootProvider::new(Secret32::from_bytes("r", [0x24; 32]))
        .new_data_key()
        .unwrap();
    push("store-root-key-0x24", dk, b);
    std::fs::write(
        out.join("blocks.json"),
        serde_json::to_string_pretty(&blocks).unwrap(),
    )
    .unwrap();
    std::fs::write(out.join("dump.json"), store.dump_json().unwrap()).unwrap();
}
