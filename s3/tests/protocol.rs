//! Protocol cases no client library produces, as raw HTTP against a server started in this
//! process on 127.0.0.1:0 over a store in a temporary directory: aws-chunked unsigned bodies
//! with good and bad trailing checksums, bad signatures, clock skew, unsigned requests,
//! oversize headers, a client that disconnects mid-upload, and many concurrent clients.
//! Requests are signed here with a small SigV4 signer (hmac + sha2): the point is to send what
//! a client library would refuse to.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const AK: &str = "TESTKEY";
const SK: &str = "testsecret/abc";

struct Server {
    addr: SocketAddr,
    dare: Arc<dare::Dare>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let dare = Arc::new(dare::Dare::create(&store, 65536, &dare::Options::default()).unwrap());
    dare.create_bucket("bkt", dare::DEFAULT_NAMESPACE, None)
        .unwrap();
    let cred = dir.path().join("cred");
    std::fs::write(&cred, format!("{AK}:{SK}\n")).unwrap();
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cfg = dare_s3::ServerConfig::new("127.0.0.1:0".parse().unwrap(), cred);
    cfg.max_header_bytes = 16 * 1024;
    cfg.shutdown_grace = Duration::from_secs(5);
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let d = dare.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            dare_s3::run(d, cfg, |addr, _| tx.send(addr).unwrap(), async move {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    let addr = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    Server {
        addr,
        dare,
        stop: Some(stop_tx),
        thread: Some(thread),
        _dir: dir,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// `YYYYMMDD'T'HHMMSS'Z'` for a Unix time (civil-from-days, H. Hinnant).
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

/// A signed request's head (request line and headers) for `body_hash` (a hex SHA-256 or
/// one of the `STREAMING-*`/`UNSIGNED-PAYLOAD` values).
fn signed_head(
    method: &str,
    path: &str,
    host: &str,
    body_hash: &str,
    extra: &[(&str, String)],
    when: SystemTime,
    secret: &str,
) -> String {
    let date = amz_date(when);
    let day = &date[..8];
    let mut headers: Vec<(String, String)> = vec![
        ("host".into(), host.into()),
        ("x-amz-content-sha256".into(), body_hash.into()),
        ("x-amz-date".into(), date.clone()),
    ];
    for (k, v) in extra {
        headers.push((k.to_ascii_lowercase(), v.clone()));
    }
    headers.sort();
    let canon_headers: String = headers
        .iter()
        .map(|(k, v)| format!("{k}:{}\n", v.trim()))
        .collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    let creq = format!("{method}\n{p}\n{q}\n{canon_headers}\n{signed}\n{body_hash}");
    let scope = format!("{day}/us-east-1/s3/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
        hex(&Sha256::digest(creq.as_bytes()))
    );
    let mut k = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
    for part in ["us-east-1", "s3", "aws4_request"] {
        k = hmac(&k, part.as_bytes());
    }
    let sig = hex(&hmac(&k, sts.as_bytes()));
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in &headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "authorization: AWS4-HMAC-SHA256 Credential={AK}/{scope}, SignedHeaders={signed}, \
         Signature={sig}\r\nconnection: close\r\n\r\n"
    ));
    head
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn send(addr: SocketAddr, head: &str, body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

fn parse(raw: &[u8]) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 2 + n + 2..];
        }
        body = out;
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn get(sv: &Server, path: &str) -> Resp {
    let host = sv.addr.to_string();
    let empty = hex(&Sha256::digest(b""));
    send(
        sv.addr,
        &signed_head("GET", path, &host, &empty, &[], SystemTime::now(), SK),
        b"",
    )
}

fn put(sv: &Server, path: &str, data: &[u8]) -> Resp {
    let host = sv.addr.to_string();
    let h = hex(&Sha256::digest(data));
    send(
        sv.addr,
        &signed_head(
            "PUT",
            path,
            &host,
            &h,
            &[("content-length", data.len().to_string())],
            SystemTime::now(),
            SK,
        ),
        data,
    )
}

/// CRC-32 (IEEE, reflected 0xEDB88320), bitwise: a test needs a few hundred bytes of it.
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn unsigned_trailer_put(sv: &Server, path: &str, data: &[u8], crc_b64: &str) -> Resp {
    let mut body = Vec::new();
    for piece in data.chunks(7000) {
        body.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        body.extend_from_slice(piece);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("0\r\nx-amz-checksum-crc32:{crc_b64}\r\n\r\n").as_bytes());
    let host = sv.addr.to_string();
    let head = signed_head(
        "PUT",
        path,
        &host,
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        &[
            ("content-encoding", "aws-chunked".into()),
            ("content-length", body.len().to_string()),
            ("x-amz-decoded-content-length", data.len().to_string()),
            ("x-amz-trailer", "x-amz-checksum-crc32".into()),
        ],
        SystemTime::now(),
        SK,
    );
    send(sv.addr, &head, &body)
}

fn assert_error(r: &Resp, status: u16, code: &str) {
    let t = r.text();
    assert_eq!(r.status, status, "{t}");
    assert!(t.contains(&format!("<Code>{code}</Code>")), "{t}");
    let id = r.header("x-amz-request-id").expect("x-amz-request-id");
    assert!(
        t.contains(&format!("<RequestId>{id}</RequestId>")),
        "error body's RequestId is not the header's {id}: {t}"
    );
}

fn data_files(store: &Path) -> usize {
    fn walk(p: &Path) -> usize {
        std::fs::read_dir(p)
            .map(|rd| {
                rd.flatten()
                    .map(|e| {
                        let p = e.path();
                        if p.is_dir() { walk(&p) } else { 1 }
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&store.join("objects"))
}

#[test]
fn unsigned_trailer_checksum_is_verified_before_publishing() {
    let sv = start();
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let good = base64::engine::general_purpose::STANDARD.encode(crc32(&data).to_be_bytes());
    let r = unsigned_trailer_put(&sv, "/bkt/good", &data, &good);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-amz-checksum-crc32"), Some(good.as_str()));
    assert_eq!(r.header("x-amz-server-side-encryption"), Some("AES256"));
    let g = get(&sv, "/bkt/good");
    assert_eq!(g.status, 200);
    assert_eq!(g.body, data);

    let bad = base64::engine::general_purpose::STANDARD.encode((crc32(&data) ^ 1).to_be_bytes());
    let r = unsigned_trailer_put(&sv, "/bkt/bad", &data, &bad);
    assert_error(&r, 400, "XAmzContentChecksumMismatch");
    assert_error(&get(&sv, "/bkt/bad"), 404, "NoSuchKey");
    // The failed put left no data file: only the good object's.
    let store = sv.dare.dir().unwrap().to_owned();
    assert_eq!(data_files(&store), 1);
    assert!(
        sv.dare
            .fsck(&dare::FsckOptions::default())
            .unwrap()
            .is_clean()
    );
}

#[test]
fn content_md5_and_checksum_headers_are_verified() {
    let sv = start();
    let data = b"hello, dare".to_vec();
    let host = sv.addr.to_string();
    let h = hex(&Sha256::digest(&data));
    let wrong_md5 = base64::engine::general_purpose::STANDARD.encode([0u8; 16]);
    let head = signed_head(
        "PUT",
        "/bkt/m",
        &host,
        &h,
        &[
            ("content-length", data.len().to_string()),
            ("content-md5", wrong_md5),
        ],
        SystemTime::now(),
        SK,
    );
    assert_error(&send(sv.addr, &head, &data), 400, "BadDigest");
    let wrong_crc = base64::engine::general_purpose::STANDARD.encode(7u32.to_be_bytes());
    let head = signed_head(
        "PUT",
        "/bkt/m",
        &host,
        &h,
        &[
            ("content-length", data.len().to_string()),
            ("x-amz-checksum-crc32", wrong_crc),
        ],
        SystemTime::now(),
        SK,
    );
    assert_error(&send(sv.addr, &head, &data), 400, "BadDigest");
    assert_error(&get(&sv, "/bkt/m"), 404, "NoSuchKey");
    // A wrong x-amz-content-sha256 (the payload hash signed) is refused too.
    let head = signed_head(
        "PUT",
        "/bkt/m",
        &host,
        &hex(&Sha256::digest(b"other")),
        &[("content-length", data.len().to_string())],
        SystemTime::now(),
        SK,
    );
    let r = send(sv.addr, &head, &data);
    assert!(r.status >= 400, "{}", r.text());
    assert_error(&get(&sv, "/bkt/m"), 404, "NoSuchKey");
}

#[test]
fn bad_signature_skew_and_anonymous_are_refused() {
    let sv = start();
    let host = sv.addr.to_string();
    let empty = hex(&Sha256::digest(b""));
    let r = send(
        sv.addr,
        &signed_head("GET", "/", &host, &empty, &[], SystemTime::now(), "wrong"),
        b"",
    );
    assert_error(&r, 403, "SignatureDoesNotMatch");
    let old = SystemTime::now() - Duration::from_secs(20 * 60);
    let r = send(
        sv.addr,
        &signed_head("GET", "/", &host, &empty, &[], old, SK),
        b"",
    );
    assert_error(&r, 403, "RequestTimeTooSkewed");
    let r = send(
        sv.addr,
        &format!("GET /bkt/x HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"),
        b"",
    );
    assert_error(&r, 403, "AccessDenied");
    // Within the 15 minutes it is accepted.
    let r = send(
        sv.addr,
        &signed_head(
            "GET",
            "/",
            &host,
            &empty,
            &[],
            SystemTime::now() - Duration::from_secs(5 * 60),
            SK,
        ),
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn oversize_headers_are_refused() {
    let sv = start();
    let host = sv.addr.to_string();
    let big = "a".repeat(64 * 1024);
    let head =
        format!("GET / HTTP/1.1\r\nhost: {host}\r\nx-big: {big}\r\nconnection: close\r\n\r\n");
    let mut s = TcpStream::connect(sv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(head.as_bytes());
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    // hyper answers 431 or closes the connection: never a served request.
    let text = String::from_utf8_lossy(&raw);
    assert!(
        raw.is_empty() || text.starts_with("HTTP/1.1 431"),
        "unexpected answer to a 64 KiB header: {text}"
    );
    // The server still serves.
    assert_eq!(get(&sv, "/").status, 200);
}

#[test]
fn disconnect_mid_upload_leaves_no_object_and_no_file() {
    let sv = start();
    let host = sv.addr.to_string();
    let len = 8 * 1024 * 1024;
    let head = signed_head(
        "PUT",
        "/bkt/cut",
        &host,
        "UNSIGNED-PAYLOAD",
        &[("content-length", len.to_string())],
        SystemTime::now(),
        SK,
    );
    {
        let mut s = TcpStream::connect(sv.addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&vec![7u8; 1024 * 1024]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // dropped: the client goes away with 7 MiB unsent
    }
    let store = sv.dare.dir().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while data_files(&store) != 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        data_files(&store),
        0,
        "a data file remains after the client went away"
    );
    assert_error(&get(&sv, "/bkt/cut"), 404, "NoSuchKey");
    assert!(
        sv.dare
            .fsck(&dare::FsckOptions::default())
            .unwrap()
            .is_clean()
    );
}

#[test]
fn many_concurrent_clients() {
    let sv = start();
    let sv = Arc::new(sv);
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let sv = sv.clone();
            std::thread::spawn(move || {
                let data: Vec<u8> = (0..(100_000 + i * 997)).map(|j| (j ^ i) as u8).collect();
                let path = format!("/bkt/c{i}");
                let r = put(&sv, &path, &data);
                assert_eq!(r.status, 200, "{}", r.text());
                let g = get(&sv, &path);
                assert_eq!(g.status, 200);
                assert_eq!(g.body, data);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let l = get(&sv, "/bkt?list-type=2");
    assert_eq!(l.status, 200);
    assert_eq!(l.text().matches("<Key>").count(), 32);
}

/// A request refused before its body is read (here: a bad signature on a 32 MiB PUT, more
/// than the loopback socket buffers hold) still gets its S3 error: the server drains what the
/// client goes on sending instead of resetting the connection under it (the reset would
/// drop the response before the client reads it).
#[test]
fn an_error_sent_before_the_body_is_read_reaches_the_client() {
    let sv = start();
    let host = sv.addr.to_string();
    let data = vec![7u8; 32 << 20];
    let h = hex(&Sha256::digest(&data));
    let head = signed_head(
        "PUT",
        "/bkt/refused",
        &host,
        &h,
        &[("content-length", data.len().to_string())],
        SystemTime::now(),
        "wrong",
    );
    let mut s = TcpStream::connect(sv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&data)
        .expect("the server reset the connection while the body was being sent");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("reading the response");
    assert_error(&parse(&raw), 403, "SignatureDoesNotMatch");
    assert_error(&get(&sv, "/bkt/refused"), 404, "NoSuchKey");
}

/// A PUT sent with `Expect: 100-continue` and refused before its body (an invalid
/// `Content-MD5`): the client may then never send the body, so the server cannot tell what
/// follows on the connection from a next request. It says `Connection: close` and closes,
/// instead of taking the next request's first bytes for the body (a HEAD after such a PUT got
/// hyper's bare 400, seen in the real-client suite under load).
#[test]
fn a_body_refused_before_it_was_read_ends_the_connection() {
    let sv = start();
    let host = sv.addr.to_string();
    let data = b"payload with a digest";
    let h = hex(&Sha256::digest(data));
    let head = signed_head(
        "PUT",
        "/bkt/bad",
        &host,
        &h,
        &[
            ("content-length", data.len().to_string()),
            ("content-md5", "bm90IGFuIG1kNQ==".into()),
            ("expect", "100-continue".into()),
        ],
        SystemTime::now(),
        SK,
    )
    .replace("connection: close\r\n", "");
    let mut s = TcpStream::connect(sv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    // The body is not sent (a client may skip it once it has a final response).
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before a response");
        raw.extend_from_slice(&buf[..n]);
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let r = parse(&raw[..end]);
    let len: usize = r.header("content-length").map_or(0, |v| v.parse().unwrap());
    while raw.len() < end + len {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed inside the response body");
        raw.extend_from_slice(&buf[..n]);
    }
    let r = parse(&raw[..end + len]);
    assert_error(&r, 400, "InvalidDigest");
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    // And the server does close: nothing is read as a next request.
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
    assert_error(&get(&sv, "/bkt/bad"), 404, "NoSuchKey");
}
