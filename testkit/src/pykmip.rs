//! Real PyKMIP key servers for tests of the KMIP root of trust, with certificates made here.
//!
//! [`Pki`] is a certificate authority in a temporary directory (rcgen, ECDSA P-256): it
//! issues server certificates for `127.0.0.1` and client certificates (one that expired, for
//! the fault tests), writing PEM files with keys of mode 0600. [`KmipServer::start`] writes
//! a PyKMIP server configuration — TLS 1.2 (`auth_suite = TLS1.2`, the suite PyKMIP 0.10+
//! accepts with modern OpenSSL), client certificates required (`enable_tls_client_auth`), a
//! SQLite database — and starts `python3 -m kmip.services.server.server` on a free port of
//! 127.0.0.1, waits until it accepts connections, and kills it when dropped.
//!
//! Two servers given the same database file form a *cluster*: each holds the keys the other
//! created, as replicas of one key manager do. With PyKMIP missing, [`KmipServer::start`]
//! panics: "PyKMIP not found: pip install pykmip". A test never passes without its server.

use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// How long [`KmipServer::start`] waits for the server to accept connections.
const START_WAIT: Duration = Duration::from_secs(60);

/// The files of one certificate: the certificate and its private key (mode 0600).
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The PEM certificate.
    pub cert: PathBuf,
    /// The PEM private key (PKCS#8), mode 0600.
    pub key: PathBuf,
}

/// A test certificate authority writing into a directory.
pub struct Pki {
    dir: PathBuf,
    name: String,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
    ca_path: PathBuf,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn write_file(path: &Path, text: &str, mode: u32) {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    f.write_all(text.as_bytes()).unwrap();
}

impl Pki {
    /// A new CA named `name`, its certificate written to `dir/NAME-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        p.distinguished_name
            .push(DnType::CommonName, format!("dare test CA {name}"));
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = p.self_signed(&ca_key).expect("CA certificate");
        let ca_path = dir.join(format!("{name}-ca.pem"));
        write_file(&ca_path, &ca.pem(), 0o644);
        Pki {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            ca,
            ca_key,
            ca_path,
        }
    }

    /// The CA certificate's PEM file.
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }

    fn issue(&self, file: &str, params: CertificateParams) -> CertFiles {
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("certificate");
        let files = CertFiles {
            cert: self.dir.join(format!("{}-{file}.pem", self.name)),
            key: self.dir.join(format!("{}-{file}.key", self.name)),
        };
        write_file(&files.cert, &cert.pem(), 0o644);
        write_file(&files.key, &key.serialize_pem(), 0o600);
        files
    }

    /// A server certificate for `127.0.0.1` (subject alternative name IP 127.0.0.1).
    pub fn server(&self, file: &str) -> CertFiles {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        p.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(file, p)
    }

    /// A client certificate with common name `cn` (PyKMIP's client identity: objects belong
    /// to it). `expired`: valid in 2020 only.
    pub fn client(&self, file: &str, cn: &str, expired: bool) -> CertFiles {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        self.issue(file, p)
    }
}

/// The Python interpreter that has PyKMIP, or a panic saying how to install it.
fn python() -> &'static str {
    let ok = Command::new("python3")
        .args(["-c", "import kmip.services.server.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "PyKMIP not found: pip install pykmip (python3 -c 'import kmip.services.server.server' failed)"
    );
    "python3"
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A PyKMIP server on 127.0.0.1, killed when dropped.
pub struct KmipServer {
    conf: PathBuf,
    log: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl std::fmt::Debug for KmipServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmipServer")
            .field("port", &self.port)
            .field("running", &self.child.is_some())
            .finish()
    }
}

impl KmipServer {
    /// Starts a server in `dir` (its configuration `NAME.conf` and log `NAME.log` go there)
    /// presenting `cert`, trusting client certificates of `client_ca`, keeping its objects
    /// in the SQLite file `db` (share it between servers to make a cluster).
    pub fn start(dir: &Path, name: &str, cert: &CertFiles, client_ca: &Path, db: &Path) -> Self {
        let conf = dir.join(format!("{name}.conf"));
        let log = dir.join(format!("{name}.log"));
        let port = free_port();
        write_file(
            &conf,
            &format!(
                "[server]\nhostname=127.0.0.1\nport={port}\ncertificate_path={}\nkey_path={}\n\
                 ca_path={}\nauth_suite=TLS1.2\nenable_tls_client_auth=True\n\
                 logging_level=INFO\ndatabase_path={}\n",
                cert.cert.display(),
                cert.key.display(),
                client_ca.display(),
                db.display(),
            ),
            0o600,
        );
        let mut s = KmipServer {
            conf,
            log,
            port,
            child: None,
        };
        s.start_again();
        s
    }

    /// Starts the server again after [`KmipServer::stop`], on the same port and database.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the KMIP server is running");
        let py = python();
        let mut child = Command::new(py)
            .args(["-W", "ignore", "-m", "kmip.services.server.server", "-f"])
            .arg(&self.conf)
            .arg("-l")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group: PyKMIP forks helper processes (its policy-directory
            // monitor), which `stop` kills with it.
            .process_group(0)
            .spawn()
            .expect("spawn python3 -m kmip.services.server.server");
        let t0 = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "the PyKMIP server exited ({st}) before listening on port {}; its log:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            if t0.elapsed() > START_WAIT {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "the PyKMIP server did not listen on port {} within {:?}; its log:\n{}",
                    self.port,
                    START_WAIT,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
    }

    /// Kills the server and the processes it forked (SIGKILL to its process group: a crash,
    /// connections reset).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", c.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The last lines of the server's log (for failure messages).
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for KmipServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A cluster of PyKMIP servers sharing one database, and the files a client needs: what
/// most KMIP tests start with.
#[derive(Debug)]
pub struct KmipCluster {
    /// The directory of every file (removed when dropped).
    pub dir: tempfile::TempDir,
    /// The CA of the servers and of the client.
    pub pki: Pki,
    /// The servers.
    pub servers: Vec<KmipServer>,
    /// The client certificate and key (common name `dare`).
    pub client: CertFiles,
}

impl KmipCluster {
    /// `n` servers sharing one database.
    pub fn start(n: usize) -> KmipCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let pki = Pki::new(dir.path(), "main");
        let cert = pki.server("server");
        let client = pki.client("client", "dare", false);
        let db = dir.path().join("pykmip.db");
        let servers = (0..n)
            .map(|i| KmipServer::start(dir.path(), &format!("kmip{i}"), &cert, pki.ca_path(), &db))
            .collect();
        KmipCluster {
            dir,
            pki,
            servers,
            client,
        }
    }

    /// The servers' addresses.
    pub fn addrs(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.addr()).collect()
    }

    /// A dare KMIP configuration (JSON) of one cluster `name` with these servers, this CA
    /// and client certificate, and the given cache times; written to `dir/kmip.json`.
    pub fn write_config(&self, name: &str, cache_secs: u64, offline_secs: u64) -> PathBuf {
        let path = self.dir.path().join("kmip.json");
        let servers: Vec<String> = self.addrs().iter().map(|a| format!("{a:?}")).collect();
        write_file(
            &path,
            &format!(
                "{{\"clusters\": [{{\"name\": {name:?}, \"servers\": [{}], \"ca_cert\": {:?}, \
                 \"client_cert\": {:?}, \"client_key\": {:?}, \"connect_timeout_ms\": 2000, \
                 \"request_timeout_ms\": 10000, \"cache_secs\": {cache_secs}, \
                 \"offline_cache_secs\": {offline_secs}}}]}}\n",
                servers.join(", "),
                self.pki.ca_path().display().to_string(),
                self.client.cert.display().to_string(),
                self.client.key.display().to_string(),
            ),
            0o600,
        );
        path
    }
}
