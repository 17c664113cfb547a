//! `dare serve` killed with SIGKILL in the middle of a large streaming PUT: after a restart
//! the object is absent, `dare fsck` reports the cut data file as garbage, `dare fsck
//! --repair --grace 0` removes it, and nothing remains. Runs the real binary on a store in a
//! temporary directory, listening on 127.0.0.1:0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const DARE: &str = env!("CARGO_BIN_EXE_dare");
const AK: &str = "CRASHKEY";
const SK: &str = "crashsecret";

fn dare(store: &Path, args: &[&str]) -> std::process::Output {
    Command::new(DARE)
        .arg("--store")
        .arg(store)
        .args(args)
        .output()
        .unwrap()
}

fn serve(store: &Path, cred: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(DARE)
        .arg("--store")
        .arg(store)
        .args(["serve", "--listen", "127.0.0.1:0", "--credentials"])
        .arg(cred)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
        .parse()
        .unwrap();
    (child, addr)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn amz_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A SigV4-signed request head (hand-signed: the test needs to stop a body half-way).
fn head(method: &str, path: &str, host: &str, payload: &str, extra: &[(&str, String)]) -> String {
    let date = amz_date(SystemTime::now());
    let day = &date[..8];
    let mut h: Vec<(String, String)> = vec![
        ("host".into(), host.into()),
        ("x-amz-content-sha256".into(), payload.into()),
        ("x-amz-date".into(), date.clone()),
    ];
    h.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    h.sort();
    let canon: String = h.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed = h
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let creq = format!("{method}\n{path}\n\n{canon}\n{signed}\n{payload}");
    let scope = format!("{day}/us-east-1/s3/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(creq))
    );
    let mut k = hmac(format!("AWS4{SK}").as_bytes(), day.as_bytes());
    for p in ["us-east-1", "s3", "aws4_request"] {
        k = hmac(&k, p.as_bytes());
    }
    let sig = hex(&hmac(&k, sts.as_bytes()));
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in &h {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "authorization: AWS4-HMAC-SHA256 Credential={AK}/{scope}, SignedHeaders={signed}, \
         Signature={sig}\r\nconnection: close\r\n\r\n"
    ));
    out
}

fn status_of_get(addr: SocketAddr, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let empty = hex(&Sha256::digest(b""));
    s.write_all(head("GET", path, &addr.to_string(), &empty, &[]).as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    text.split(' ').nth(1).unwrap().parse().unwrap()
}

fn data_files(p: &Path) -> usize {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        data_files(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn sigkill_mid_upload_leaves_no_object_and_fsck_removes_the_leftover() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    assert!(dare(&store, &["init"]).status.success());
    assert!(dare(&store, &["bucket", "create", "bkt"]).status.success());
    let cred = dir.path().join("cred");
    std::fs::write(&cred, format!("{AK}:{SK}\n")).unwrap();
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600)).unwrap();

    let (mut child, addr) = serve(&store, &cred);
    let len: usize = 256 * 1024 * 1024;
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(
        head(
            "PUT",
            "/bkt/big",
            &addr.to_string(),
            "UNSIGNED-PAYLOAD",
            &[("content-length", len.to_string())],
        )
        .as_bytes(),
    )
    .unwrap();
    let piece = vec![0x5au8; 1 << 20];
    // Send until the server has written some of the object, then kill it.
    let objects = store.join("objects");
    let mut sent = 0;
    while sent < 64 * (1 << 20) {
        s.write_all(&piece).unwrap();
        sent += piece.len();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while data_files(&objects) == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        data_files(&objects),
        1,
        "the upload never reached the store"
    );
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(s);

    // The cut data file is there, unreferenced.
    assert_eq!(data_files(&objects), 1);
    let (mut child, addr) = serve(&store, &cred);
    assert_eq!(
        status_of_get(addr, "/bkt/big"),
        404,
        "a killed PUT published an object"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    let out = dare(&store, &["fsck", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["objects"], 0);
    assert_eq!(v["garbage"].as_array().unwrap().len(), 1, "{v}");
    let out = dare(&store, &["fsck", "--repair", "--grace", "0", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["garbage_removed"], 1, "{v}");
    assert_eq!(
        data_files(&objects),
        0,
        "a leftover remains after fsck --repair"
    );
    let v: serde_json::Value =
        serde_json::from_slice(&dare(&store, &["fsck", "--json"]).stdout).unwrap();
    assert_eq!(v["clean"], true, "{v}");
}

#[test]
fn sigterm_lets_an_inflight_put_finish_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    assert!(dare(&store, &["init"]).status.success());
    assert!(dare(&store, &["bucket", "create", "bkt"]).status.success());
    let cred = dir.path().join("cred");
    std::fs::write(&cred, format!("{AK}:{SK}\n")).unwrap();
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (mut child, addr) = serve(&store, &cred);

    let len: usize = 4 << 20;
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        head(
            "PUT",
            "/bkt/inflight",
            &addr.to_string(),
            "UNSIGNED-PAYLOAD",
            &[("content-length", len.to_string())],
        )
        .as_bytes(),
    )
    .unwrap();
    let piece = vec![7u8; 1 << 20];
    s.write_all(&piece).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused once shutdown started.
    assert!(
        TcpStream::connect(addr).is_err(),
        "the server still accepts connections after SIGTERM"
    );
    for _ in 1..4 {
        s.write_all(&piece).unwrap();
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "in-flight PUT not finished: {text}"
    );
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "dare serve exited with {status} after SIGTERM"
    );
    let out = dare(&store, &["head", "bkt/inflight", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["size"], len as u64, "{v}");
}
