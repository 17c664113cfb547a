//! A store whose master keys are protected by a cluster of two real PyKMIP servers
//! (`dare_testkit::pykmip`, docs/KEYS.md §5.5): a rotation completes with one server killed
//! mid-task; with both down, reads and writes go on from the caches for the configured time
//! and then stop with a clear error, while master-key operations fail at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dare::{Dare, GetOptions, Options, PutOptions, Root};
use dare_keys::{Management, RotationOptions, StepHook, TaskState};
use dare_testkit::pykmip::{KmipCluster, KmipServer};

fn options(c: &KmipCluster, cache_secs: u64, offline_secs: u64) -> Options {
    let path = c.write_config("kmip-a", cache_secs, offline_secs);
    let cfg = dare_kmip::KmipConfig::load(&path).unwrap();
    Options {
        root: Root::Kmip {
            cluster: cfg.cluster("kmip-a").unwrap().clone(),
        },
        ..Options::default()
    }
}

fn put(d: &Dare, name: &str, data: &[u8]) -> Result<(), dare::Error> {
    d.put("bkt", name, &mut &data[..], &PutOptions::default())
        .map(|_| ())
}

fn get(d: &Dare, name: &str) -> Result<Vec<u8>, dare::Error> {
    d.get("bkt", name, &GetOptions::default())?.to_vec()
}

#[test]
fn rotation_completes_when_a_server_dies_mid_task() {
    let mut c = KmipCluster::start(2);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    // cache_secs 0: every unwrap asks the cluster, so the rotation's later steps must reach
    // the surviving server.
    let opts = options(&c, 0, 300);
    let d = Dare::create(&store, 4096, &opts).unwrap();
    assert_eq!(d.keys().store_record().root_of_trust, "kmip:cluster=kmip-a");
    d.create_bucket("bkt", "default", None).unwrap();
    put(&d, "a", &[1; 10_000]).unwrap();

    let servers: Arc<Mutex<Vec<KmipServer>>> = Arc::new(Mutex::new(std::mem::take(&mut c.servers)));
    let killed = servers.clone();
    let id = d.keys().start_rotation().unwrap();
    let ro = RotationOptions {
        before_step_commit: Some(StepHook(Arc::new(move |step| {
            if step == 2 {
                // The server that served step 1 (the first, as it was up) dies.
                killed.lock().unwrap()[0].stop();
            }
        }))),
        ..RotationOptions::default()
    };
    let st = d.keys().run_rotation(id, &ro).unwrap();
    assert_eq!(st.state, TaskState::Completed, "{st:?}");
    assert_eq!(st.new_master, Some(2));
    put(&d, "c", &[3; 5000]).unwrap();
    assert_eq!(get(&d, "a").unwrap(), vec![1; 10_000]);
    drop(d);
    // Reopened with one server down: every object reads back.
    let d = Dare::open(&store, &opts).unwrap();
    assert_eq!(get(&d, "a").unwrap(), vec![1; 10_000]);
    assert_eq!(get(&d, "c").unwrap(), vec![3; 5000]);
    // Each master key is protected by a key server key of its own, which the root reports.
    let dump: serde_json::Value =
        serde_json::from_str(&dare_keys::dump_json_of(&**d.metadata()).unwrap()).unwrap();
    let masters = dump["master_keys"].as_array().unwrap();
    assert_eq!(masters.len(), 2, "{dump}");
    let mut ids = Vec::new();
    for m in masters {
        use base64::Engine;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(m["wrapped"].as_str().unwrap())
            .unwrap();
        let pk = d.keys().root_of_trust().provider_key(&blob);
        assert_eq!(pk.management, Management::External);
        assert_eq!(pk.provider, "kmip:cluster=kmip-a");
        ids.push(pk.key_id.unwrap());
    }
    assert_ne!(ids[0], ids[1]);
    drop(servers);
}

#[test]
fn both_servers_down_caches_serve_for_the_offline_time_then_stop() {
    let mut c = KmipCluster::start(2);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let (cache_secs, offline_secs) = (1, 4);
    let opts = options(&c, cache_secs, offline_secs);
    let d = Dare::create(&store, 4096, &opts).unwrap();
    d.create_bucket("bkt", "default", None).unwrap();
    put(&d, "a", &[1; 10_000]).unwrap();
    // Past the cache time: this read asks the cluster, which confirms the keys now.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(get(&d, "a").unwrap(), vec![1; 10_000]);
    let confirmed = Instant::now();
    for s in &mut c.servers {
        s.stop();
    }

    // Reads and writes go on from the caches.
    assert_eq!(get(&d, "a").unwrap(), vec![1; 10_000]);
    put(&d, "b", &[2; 3000]).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(get(&d, "b").unwrap(), vec![2; 3000]);

    // A master-key operation needs the cluster: it fails at once, naming it and each server.
    let t0 = Instant::now();
    let id = d.keys().start_rotation().unwrap();
    let e = d
        .keys()
        .run_rotation(id, &RotationOptions::default())
        .unwrap_err()
        .to_string();
    assert!(t0.elapsed() < Duration::from_secs(15), "{:?}", t0.elapsed());
    assert!(e.contains("kmip-a") && e.contains("unavailable"), "{e}");
    for a in c.addrs() {
        assert!(e.contains(&a), "{e}");
    }
    assert!(!e.contains('\n'), "{e}");
    // Nothing half-written: the active master key is still the first.
    assert_eq!(d.keys().store_record().active_master, 1);

    // After the offline time (plus the derived-key cache time), everything stops cleanly.
    let stop = Duration::from_secs(offline_secs + cache_secs) + Duration::from_millis(500);
    std::thread::sleep(stop.saturating_sub(confirmed.elapsed()));
    let e = get(&d, "a").unwrap_err().to_string();
    assert!(
        e.contains("kmip-a") && e.contains("offline cache time (4 s)"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    let e = put(&d, "c", &[3; 10]).unwrap_err().to_string();
    assert!(e.contains("kmip-a"), "{e}");

    // The cluster back: the store works again.
    c.servers[1].start_again();
    assert_eq!(get(&d, "a").unwrap(), vec![1; 10_000]);
}

#[test]
fn a_kmip_store_needs_its_cluster() {
    let c = KmipCluster::start(2);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let opts = options(&c, 60, 300);
    Dare::create(&store, 4096, &opts).unwrap();
    let e = Dare::open(&store, &Options::default()).unwrap_err();
    assert!(matches!(e, dare::Error::KmipNeeded { .. }), "{e:?}");
    assert!(e.to_string().contains("--kmip-cluster kmip-a"), "{e}");
    let mut other = opts.clone();
    if let Root::Kmip { cluster } = &mut other.root {
        cluster.name = "kmip-b".into();
    }
    let e = Dare::open(&store, &other).unwrap_err();
    assert!(
        matches!(e, dare::Error::KmipClusterMismatch { .. }),
        "{e:?}"
    );
    // A key-file store refuses a KMIP root.
    let plain = dir.path().join("plain");
    Dare::create(&plain, 4096, &Options::default()).unwrap();
    let e = Dare::open(&plain, &opts).unwrap_err();
    assert!(matches!(e, dare::Error::KmipNotApplicable { .. }), "{e:?}");
}
