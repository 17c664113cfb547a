//! The KMIP client and `KmipRoot` against real PyKMIP servers (`dare_testkit::pykmip`), two
//! per cluster sharing one database: every operation, failover, the offline cache, and the
//! faults of issue 12 item 7. A small TLS peer stands in for a server only where a real one
//! cannot misbehave on demand (a malformed response, a reset mid-response, silence).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use dare_keys::{KeyError, Management, RootOfTrust, Secret32};
use dare_kmip::message::{self, reason, tag};
use dare_kmip::ttlv::{self, Item};
use dare_kmip::{
    Cluster, ClusterConfig, FailureKind, KmipConfig, KmipError, KmipRoot, UnwrapError, blob,
};
use dare_testkit::pykmip::{CertFiles, KmipCluster, Pki};

fn config(name: &str, servers: Vec<String>, ca: &Path, client: &CertFiles) -> ClusterConfig {
    ClusterConfig {
        name: name.to_string(),
        servers,
        ca_cert: ca.to_path_buf(),
        client_cert: client.cert.clone(),
        client_key: client.key.clone(),
        connect_timeout_ms: 2000,
        request_timeout_ms: 10_000,
        cache_secs: 0,
        offline_cache_secs: 0,
    }
}

fn cluster_config(c: &KmipCluster) -> ClusterConfig {
    config("kmip-a", c.addrs(), c.pki.ca_path(), &c.client)
}

/// A port nothing listens on.
fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    drop(l);
    a.to_string()
}

fn key() -> Secret32 {
    Secret32::generate("mk").unwrap()
}

fn down_kinds(e: &KmipError) -> Vec<FailureKind> {
    match e {
        KmipError::ClusterDown { failures, .. } => {
            failures.iter().map(|f| f.kind.clone()).collect()
        }
        other => panic!("expected ClusterDown, got {other:?}"),
    }
}

#[test]
fn every_operation_against_pykmip() {
    let c = KmipCluster::start(2);
    let cl = Cluster::new(&cluster_config(&c)).unwrap();
    cl.query().unwrap();
    let uid = cl.create_aes256().unwrap();
    // Pre-Active: the server refuses to encrypt.
    let e = cl
        .encrypt_gcm(&uid, &[7; 32], &[1; 12], b"aad")
        .unwrap_err();
    assert!(
        matches!(
            e,
            KmipError::Server {
                reason: Some(reason::PERMISSION_DENIED),
                ..
            }
        ),
        "{e:?}"
    );
    cl.activate(&uid).unwrap();
    let (ct, t) = cl.encrypt_gcm(&uid, &[7; 32], &[1; 12], b"aad").unwrap();
    assert_eq!(ct.len(), 32);
    assert_ne!(ct, vec![7; 32]);
    let pt = cl.decrypt_gcm(&uid, &ct, &[1; 12], b"aad", &t).unwrap();
    assert_eq!(pt.as_slice(), &[7; 32]);
    // A changed tag or additional data does not decrypt.
    let mut bad = t;
    bad[0] ^= 1;
    let e = cl
        .decrypt_gcm(&uid, &ct, &[1; 12], b"aad", &bad)
        .unwrap_err();
    assert!(matches!(e, KmipError::Server { .. }), "{e:?}");
    let e = cl.decrypt_gcm(&uid, &ct, &[1; 12], b"aae", &t).unwrap_err();
    assert!(matches!(e, KmipError::Server { .. }), "{e:?}");
    // Active keys are not destroyed; revoked ones are.
    let e = cl.destroy(&uid).unwrap_err();
    assert!(matches!(e, KmipError::Server { .. }), "{e:?}");
    cl.revoke(&uid).unwrap();
    let e = cl.decrypt_gcm(&uid, &ct, &[1; 12], b"aad", &t).unwrap_err();
    assert!(matches!(e, KmipError::Server { .. }), "{e:?}");
    cl.destroy(&uid).unwrap();
    // A key the server does not hold.
    let e = cl.decrypt_gcm(&uid, &ct, &[1; 12], b"aad", &t).unwrap_err();
    assert!(
        matches!(
            e,
            KmipError::Server {
                reason: Some(reason::ITEM_NOT_FOUND),
                ..
            }
        ),
        "{e:?}"
    );
    let line = e.to_string();
    assert!(line.contains("kmip-a") && !line.contains('\n'), "{line}");
}

#[test]
fn root_wraps_unwraps_reports_and_deactivates() {
    let c = KmipCluster::start(2);
    let root = KmipRoot::open(&cluster_config(&c)).unwrap();
    assert_eq!(root.describe(), "kmip:cluster=kmip-a");
    let mk = key();
    let b = root.wrap_master(&mk).unwrap();
    let d = blob::decode(&b).unwrap();
    assert_eq!(d.cluster, "kmip-a");
    // The key is not in the blob in the clear.
    assert!(!b.windows(32).any(|w| w == mk.expose_secret()));
    // A fresh root (no cache) unwraps through the server.
    let fresh = KmipRoot::open(&cluster_config(&c)).unwrap();
    assert_eq!(fresh.unwrap_master(&b).unwrap(), mk);
    let pk = fresh.provider_key(&b);
    assert_eq!(pk.management, Management::External);
    assert_eq!(pk.provider, "kmip:cluster=kmip-a");
    assert_eq!(pk.key_id.as_deref(), Some(d.uid));
    // Each key gets a server key of its own.
    let b2 = root.wrap_master(&key()).unwrap();
    assert_ne!(blob::decode(&b2).unwrap().uid, d.uid);
    // A changed byte anywhere is refused (the header is the GCM additional data).
    for i in [b.len() - 1, b.len() - 40] {
        let mut t = b.clone();
        t[i] ^= 1;
        // KMIP says Cryptographic Failure (dare: wrong root key); PyKMIP answers a GCM tag
        // that does not verify with General Failure. Either way: refused, no key.
        match fresh.unwrap_master(&t) {
            Err(KeyError::WrongRootKey) => {}
            Err(KeyError::Provider(m)) if m.contains("refused Decrypt") => {}
            other => panic!("byte {i}: {other:?}"),
        }
    }
    assert!(matches!(
        fresh.unwrap_master(&b[..b.len() - 1]),
        Err(KeyError::Malformed(_))
    ));
    // Deactivation: revoked and destroyed, idempotent; the key no longer unwraps.
    assert!(root.deactivate(&b).unwrap());
    assert!(root.deactivate(&b).unwrap());
    match fresh.unwrap_typed(&b) {
        Err(UnwrapError::Kmip(KmipError::Server {
            reason: Some(reason::ITEM_NOT_FOUND),
            ..
        })) => {}
        other => panic!("{other:?}"),
    }
    // The other key is untouched.
    assert!(fresh.unwrap_master(&b2).is_ok());
    // A blob of another cluster name is refused with a line naming both.
    let mut other = config("kmip-b", c.addrs(), c.pki.ca_path(), &c.client);
    other.cache_secs = 0;
    let e = KmipRoot::open(&other)
        .unwrap()
        .unwrap_master(&b2)
        .unwrap_err();
    assert!(
        e.to_string().contains("kmip-a") && e.to_string().contains("kmip-b"),
        "{e}"
    );
}

#[test]
fn fails_over_and_then_reports_the_cluster_down() {
    let mut c = KmipCluster::start(2);
    let root = KmipRoot::open(&cluster_config(&c)).unwrap();
    let b1 = root.wrap_master(&key()).unwrap();
    c.servers[0].stop();
    // Every operation goes to the second server.
    let mk = key();
    let b2 = root.wrap_master(&mk).unwrap();
    assert_eq!(root.unwrap_master(&b2).unwrap(), mk);
    assert!(root.unwrap_master(&b1).is_ok());
    assert_eq!(root.check().unwrap(), c.servers[1].addr());
    c.servers[0].start_again();
    c.servers[1].stop();
    assert!(root.unwrap_master(&b2).is_ok());
    c.servers[0].stop();
    let t0 = Instant::now();
    let e = root.cluster().create_aes256().unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let kinds = down_kinds(&e);
    assert_eq!(kinds.len(), 2);
    assert!(
        kinds.iter().all(|k| matches!(k, FailureKind::Connect(_))),
        "{kinds:?}"
    );
    let line = e.to_string();
    for s in &c.servers {
        assert!(line.contains(&s.addr()), "{line}");
    }
    assert!(line.contains("kmip-a") && !line.contains('\n'), "{line}");
    // Master-key operations fail at once.
    let e = root.wrap_master(&key()).unwrap_err();
    assert!(
        matches!(e, KeyError::Provider(ref m) if m.contains("unavailable")),
        "{e}"
    );
}

#[test]
fn offline_cache_serves_known_keys_for_its_time_then_stops() {
    let mut c = KmipCluster::start(2);
    let mut cfg = cluster_config(&c);
    cfg.cache_secs = 0;
    cfg.offline_cache_secs = 3;
    let root = KmipRoot::open(&cfg).unwrap();
    let mk = key();
    let b = root.wrap_master(&mk).unwrap();
    let confirmed = Instant::now();
    let unknown = KmipRoot::open(&cluster_config(&c))
        .unwrap()
        .wrap_master(&key())
        .unwrap();
    for s in &mut c.servers {
        s.stop();
    }
    // Known key: served from the offline cache.
    assert_eq!(root.unwrap_master(&b).unwrap(), mk);
    // A key this root never unwrapped: the cluster is needed, and down.
    match root.unwrap_typed(&unknown) {
        Err(UnwrapError::Kmip(e)) => assert_eq!(down_kinds(&e).len(), 2),
        other => panic!("{other:?}"),
    }
    let wait =
        Duration::from_secs(3).saturating_sub(confirmed.elapsed()) + Duration::from_millis(300);
    thread::sleep(wait);
    match root.unwrap_typed(&b) {
        Err(UnwrapError::Kmip(e @ KmipError::OfflineCacheExpired { .. })) => {
            let line = e.to_string();
            assert!(line.contains("kmip-a") && line.contains("3 s"), "{line}");
        }
        other => panic!("{other:?}"),
    }
    // And stays stopped, even when asked again.
    assert!(root.unwrap_master(&b).is_err());
    // The cluster back: the key is confirmed again.
    c.servers[1].start_again();
    assert_eq!(root.unwrap_master(&b).unwrap(), mk);
}

#[test]
fn a_cluster_of_one_server_is_refused() {
    let c = KmipCluster::start(1);
    let e = KmipRoot::open(&config("solo", c.addrs(), c.pki.ca_path(), &c.client)).unwrap_err();
    assert!(
        matches!(e, KmipError::TooFewServers { count: 1, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("at least 2"), "{e}");
}

#[test]
fn expired_and_foreign_client_certificates_are_refused() {
    let c = KmipCluster::start(2);
    let expired = c.pki.client("expired", "dare", true);
    let cl = Cluster::new(&config("kmip-a", c.addrs(), c.pki.ca_path(), &expired)).unwrap();
    let e = cl.query().unwrap_err();
    assert!(
        down_kinds(&e)
            .iter()
            .all(|k| matches!(k, FailureKind::Tls(_))),
        "{e}"
    );
    let other = Pki::new(c.dir.path(), "other");
    let foreign = other.client("foreign", "dare", false);
    let cl = Cluster::new(&config("kmip-a", c.addrs(), c.pki.ca_path(), &foreign)).unwrap();
    let e = cl.query().unwrap_err();
    assert!(
        down_kinds(&e)
            .iter()
            .all(|k| matches!(k, FailureKind::Tls(_))),
        "{e}"
    );
    assert!(!e.to_string().contains('\n'));
}

#[test]
fn a_server_certificate_of_another_ca_is_refused() {
    let c = KmipCluster::start(2);
    let other = Pki::new(c.dir.path(), "other");
    // dare trusts only the other CA: the real servers' certificates do not chain to it.
    let cl = Cluster::new(&config("kmip-a", c.addrs(), other.ca_path(), &c.client)).unwrap();
    let e = cl.query().unwrap_err();
    let kinds = down_kinds(&e);
    assert!(
        kinds
            .iter()
            .all(|k| matches!(k, FailureKind::Tls(m) if m.contains("certificate"))),
        "{kinds:?}"
    );
}

#[test]
fn the_client_key_file_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let c = KmipCluster::start(0);
    let mut cfg = config(
        "kmip-a",
        vec![dead_addr(), dead_addr()],
        c.pki.ca_path(),
        &c.client,
    );
    std::fs::set_permissions(&c.client.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = Cluster::new(&cfg).unwrap_err();
    assert!(matches!(e, KmipError::File(_)), "{e:?}");
    assert!(e.to_string().contains("chmod 600"), "{e}");
    std::fs::set_permissions(&c.client.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    cfg.ca_cert = c.client.key.clone();
    assert!(matches!(Cluster::new(&cfg), Err(KmipError::Pem { .. })));
}

#[test]
fn config_file_is_checked() {
    let c = KmipCluster::start(2);
    let path = c.write_config("kmip-a", 5, 60);
    let cfg = KmipConfig::load(&path).unwrap();
    let cl = cfg.cluster("kmip-a").unwrap();
    assert_eq!(cl.servers, c.addrs());
    assert_eq!((cl.cache_secs, cl.offline_cache_secs), (5, 60));
    let e = cfg.cluster("nope").unwrap_err();
    assert!(
        e.to_string().contains("kmip-a") && e.to_string().contains("nope"),
        "{e}"
    );
    let bad = c.dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"clusters": [{"name": "a", "servers": [], "ca": "x"}]}"#,
    )
    .unwrap();
    assert!(matches!(
        KmipConfig::load(&bad),
        Err(KmipError::Config { .. })
    ));
}

/// A TLS peer with a server certificate of `pki` that reads one request and then does
/// `misbehave` with the connection; returns its address.
fn fake_peer(pki: &Pki, name: &str, misbehave: fn(&mut dyn Write)) -> String {
    let cert = pki.server(name);
    let chain = rustls_certs(&cert.cert);
    let key = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::PrivateKeyDer::from_pem_file(&cert.key).unwrap()
    };
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let cfg = Arc::new(cfg);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for tcp in l.incoming() {
            let Ok(mut tcp) = tcp else { return };
            let mut conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
            let mut s = rustls::Stream::new(&mut conn, &mut tcp);
            let mut head = [0u8; 8];
            if s.read_exact(&mut head).is_err() {
                continue;
            }
            let Ok(n) = ttlv::message_len(&head) else {
                continue;
            };
            let mut rest = vec![0u8; n - 8];
            if s.read_exact(&mut rest).is_err() {
                continue;
            }
            misbehave(&mut s);
            let _ = s.flush();
        }
    });
    addr
}

fn rustls_certs(p: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(p)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn response_bytes(items: Vec<Item>) -> Vec<u8> {
    let msg = Item::structure(
        tag::RESPONSE_MESSAGE,
        vec![
            Item::structure(
                tag::RESPONSE_HEADER,
                vec![Item::integer(tag::BATCH_COUNT, 1)],
            ),
            Item::structure(tag::BATCH_ITEM, items),
        ],
    );
    let mut out = Vec::new();
    ttlv::encode(&msg, &mut out);
    out
}

#[test]
fn malformed_responses_resets_and_silence_are_server_failures() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path(), "fake");
    let client = pki.client("client", "dare", false);
    // Garbage, a response with bad padding, a response to another operation, half a
    // response then a close, and silence.
    let garbage = fake_peer(&pki, "garbage", |w| {
        let _ = w.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let padding = fake_peer(&pki, "padding", |w| {
        let mut r = response_bytes(vec![
            Item::enumeration(tag::OPERATION, 0x18),
            Item::enumeration(tag::RESULT_STATUS, 0),
            Item::text(tag::UNIQUE_IDENTIFIER, "x"),
        ]);
        let last = r.len() - 1;
        r[last] = 0xFF;
        let _ = w.write_all(&r);
    });
    let other_op = fake_peer(&pki, "otherop", |w| {
        let r = response_bytes(vec![
            Item::enumeration(tag::OPERATION, 0x14),
            Item::enumeration(tag::RESULT_STATUS, 0),
        ]);
        let _ = w.write_all(&r);
    });
    let half = fake_peer(&pki, "half", |w| {
        let r = response_bytes(vec![
            Item::enumeration(tag::OPERATION, 0x18),
            Item::enumeration(tag::RESULT_STATUS, 0),
        ]);
        let _ = w.write_all(&r[..r.len() / 2]);
    });
    let silent = fake_peer(&pki, "silent", |_| thread::sleep(Duration::from_secs(30)));
    let mut cfg = config(
        "faults",
        vec![garbage.clone(), padding, other_op, half, silent],
        pki.ca_path(),
        &client,
    );
    cfg.request_timeout_ms = 800;
    let cl = Cluster::new(&cfg).unwrap();
    let t0 = Instant::now();
    let e = cl.query().unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let kinds = down_kinds(&e);
    assert!(matches!(&kinds[0], FailureKind::Malformed(_)), "{kinds:?}");
    assert!(
        matches!(&kinds[1], FailureKind::Malformed(m) if m.contains("padding")),
        "{kinds:?}"
    );
    assert!(
        matches!(&kinds[2], FailureKind::Malformed(m) if m.contains("another operation")),
        "{kinds:?}"
    );
    assert!(matches!(&kinds[3], FailureKind::Reset(_)), "{kinds:?}");
    assert!(matches!(&kinds[4], FailureKind::Timeout), "{kinds:?}");
    assert!(!e.to_string().contains('\n'));
    // A root on it writes nothing: wrap_master fails with the cluster's error.
    let root = KmipRoot::open(&cfg).unwrap();
    assert!(matches!(
        root.wrap_master(&key()),
        Err(KeyError::Provider(_))
    ));
    // The message module's own checks.
    assert!(message::parse_response(b"", message::Operation::Query).is_err());
}
