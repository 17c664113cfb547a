//! [`Cluster`]: KMIP requests over TLS 1.2/1.3 with a client certificate, to a cluster of
//! servers that hold the same keys, with failover (ECS white paper §4.4).
//!
//! Each request opens one connection (TCP connect within the connect timeout; TLS handshake,
//! request and response within the request timeout, every read and write bounded by what
//! is left of it), sends one message and reads one response of at most
//! [`ttlv::MAX_MESSAGE`] bytes. A server that cannot be reached, times out, resets the
//! connection, fails the handshake or answers with a malformed message is recorded and the
//! next server is tried, starting from the last one that answered; when all fail the error is
//! [`KmipError::ClusterDown`] listing each. A server that *answers* with a failed result is
//! authoritative (the servers hold the same keys): its refusal is returned at once as
//! [`KmipError::Server`]. dare talks to its key servers rarely (keys are cached), so a
//! connection per request costs little and leaves no half-dead connection to recover.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use zeroize::Zeroizing;

use crate::config::ClusterConfig;
use crate::message::{self, Operation, ResponseError, tag};
use crate::ttlv::{self, Item, Value};
use crate::{FailureKind, KmipError, ServerFailure};

/// The largest client key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// A cluster of KMIP servers, ready to send requests. `Send + Sync`.
pub struct Cluster {
    name: String,
    servers: Vec<String>,
    tls: Arc<ClientConfig>,
    connect_timeout: Duration,
    request_timeout: Duration,
    /// The server tried first: the last one that answered.
    preferred: AtomicUsize,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

fn tls_config(cfg: &ClusterConfig) -> Result<ClientConfig, KmipError> {
    let pem = |path: &std::path::Path, why: String| KmipError::Pem {
        cluster: cfg.name.clone(),
        path: path.to_path_buf(),
        why,
    };
    let mut roots = RootCertStore::empty();
    let cas = CertificateDer::pem_file_iter(&cfg.ca_cert)
        .map_err(|e| pem(&cfg.ca_cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(&cfg.ca_cert, e.to_string()))?;
    if cas.is_empty() {
        return Err(pem(&cfg.ca_cert, "no certificate in it".into()));
    }
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| pem(&cfg.ca_cert, format!("not a usable CA certificate: {e}")))?;
    }
    let chain = CertificateDer::pem_file_iter(&cfg.client_cert)
        .map_err(|e| pem(&cfg.client_cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(&cfg.client_cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem(&cfg.client_cert, "no certificate in it".into()));
    }
    let key_pem =
        dare_keys::files::read_secret_file("KMIP client key file", &cfg.client_key, MAX_KEY_FILE)
            .map_err(KmipError::File)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| pem(&cfg.client_key, format!("no private key in it: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| pem(&cfg.client_cert, e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            pem(
                &cfg.client_key,
                format!("does not fit the client certificate: {e}"),
            )
        })
}

/// The host part of `host:port` (`[v6]:port` too), as a TLS server name.
fn server_name(server: &str) -> Result<ServerName<'static>, FailureKind> {
    let host = server
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(server)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|_| FailureKind::Connect(format!("{host:?} is not a host name or address")))
}

/// What an I/O error during a request means.
fn classify(e: io::Error) -> FailureKind {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return FailureKind::Tls(tls.to_string());
    }
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => FailureKind::Timeout,
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::UnexpectedEof => FailureKind::Reset(e.to_string()),
        _ => FailureKind::Reset(e.to_string()),
    }
}

/// One TLS connection with a deadline.
struct Conn {
    tcp: TcpStream,
    tls: ClientConnection,
    deadline: Instant,
}

impl Conn {
    fn arm(&self) -> Result<(), FailureKind> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FailureKind::Timeout);
        }
        self.tcp
            .set_read_timeout(Some(left))
            .and_then(|_| self.tcp.set_write_timeout(Some(left)))
            .map_err(|e| FailureKind::Connect(e.to_string()))
    }

    fn handshake(&mut self) -> Result<(), FailureKind> {
        while self.tls.is_handshaking() {
            self.arm()?;
            match self.tls.complete_io(&mut self.tcp) {
                Ok((0, 0)) if self.tls.is_handshaking() => {
                    return Err(FailureKind::Tls(
                        "the server closed the connection during the handshake".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(match classify(e) {
                        FailureKind::Reset(why) => FailureKind::Tls(format!(
                            "the server closed the connection during the handshake ({why}); \
                             it may refuse dare's client certificate"
                        )),
                        k => k,
                    });
                }
            }
        }
        Ok(())
    }

    fn write_all(&mut self, msg: &[u8]) -> Result<(), FailureKind> {
        self.arm()?;
        let mut s = rustls::Stream::new(&mut self.tls, &mut self.tcp);
        s.write_all(msg).and_then(|_| s.flush()).map_err(classify)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), FailureKind> {
        let mut at = 0;
        while at < buf.len() {
            self.arm()?;
            let n = rustls::Stream::new(&mut self.tls, &mut self.tcp)
                .read(&mut buf[at..])
                .map_err(classify)?;
            if n == 0 {
                return Err(FailureKind::Reset(
                    "the server closed the connection before a whole response".into(),
                ));
            }
            at += n;
        }
        Ok(())
    }
}

impl Cluster {
    /// Checks the cluster (at least two servers) and loads its TLS files: the CA
    /// certificates, the client certificate chain and its key (a secret file: mode 0600,
    /// owned by the user). Contacts no server.
    pub fn new(cfg: &ClusterConfig) -> Result<Cluster, KmipError> {
        crate::config::check_name(&cfg.name).map_err(|why| KmipError::Config {
            path: "<cluster>".into(),
            why: why.to_string(),
        })?;
        if cfg.servers.len() < 2 {
            return Err(KmipError::TooFewServers {
                cluster: cfg.name.clone(),
                count: cfg.servers.len(),
            });
        }
        Ok(Cluster {
            name: cfg.name.clone(),
            servers: cfg.servers.clone(),
            tls: Arc::new(tls_config(cfg)?),
            connect_timeout: cfg.connect_timeout(),
            request_timeout: cfg.request_timeout(),
            preferred: AtomicUsize::new(0),
        })
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its servers, in configured order.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    fn connect(&self, server: &str) -> Result<Conn, FailureKind> {
        let name = server_name(server)?;
        let addrs = server
            .to_socket_addrs()
            .map_err(|e| FailureKind::Connect(e.to_string()))?;
        let mut last = FailureKind::Connect("the name resolves to no address".into());
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.connect_timeout) {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    let tls = ClientConnection::new(self.tls.clone(), name)
                        .map_err(|e| FailureKind::Tls(e.to_string()))?;
                    return Ok(Conn {
                        tcp,
                        tls,
                        deadline: Instant::now() + self.request_timeout,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => last = FailureKind::Timeout,
                Err(e) => last = FailureKind::Connect(e.to_string()),
            }
        }
        Err(last)
    }

    /// One request to one server: the response bytes.
    fn exchange(&self, server: &str, msg: &[u8]) -> Result<Zeroizing<Vec<u8>>, FailureKind> {
        let mut c = self.connect(server)?;
        c.handshake()?;
        c.write_all(msg)?;
        let mut head = [0u8; 8];
        c.read_exact(&mut head)?;
        let total = ttlv::message_len(&head)
            .map_err(|e| FailureKind::Malformed(format!("malformed KMIP response: {e}")))?;
        let mut buf = Zeroizing::new(vec![0u8; total]);
        buf[..8].copy_from_slice(&head);
        c.read_exact(&mut buf[8..])?;
        let _ = c.tcp.shutdown(std::net::Shutdown::Both);
        Ok(buf)
    }

    /// Sends `op` with `payload` to the servers in turn until one answers; returns the
    /// server that answered and the response payload.
    pub fn call(
        &self,
        op: Operation,
        payload: Vec<Item>,
    ) -> Result<(String, Vec<Item>), KmipError> {
        let msg = message::request(op, payload);
        let n = self.servers.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut failures = Vec::new();
        for i in 0..n {
            let idx = (first + i) % n;
            let server = &self.servers[idx];
            let answer =
                self.exchange(server, &msg).and_then(|bytes| {
                    match message::parse_response(&bytes, op) {
                        Ok(p) => Ok(Ok(p)),
                        Err(ResponseError::Malformed(why)) => Err(FailureKind::Malformed(format!(
                            "malformed KMIP response: {why}"
                        ))),
                        Err(ResponseError::Failed { reason, message }) => {
                            Ok(Err((reason, message)))
                        }
                    }
                });
            match answer {
                Ok(result) => {
                    self.preferred.store(idx, Ordering::Relaxed);
                    return match result {
                        Ok(p) => Ok((server.clone(), p)),
                        Err((reason, message)) => Err(KmipError::Server {
                            cluster: self.name.clone(),
                            server: server.clone(),
                            op: op.name(),
                            reason,
                            message,
                        }),
                    };
                }
                Err(kind) => failures.push(ServerFailure {
                    server: server.clone(),
                    kind,
                }),
            }
        }
        Err(KmipError::ClusterDown {
            cluster: self.name.clone(),
            op: op.name(),
            failures,
        })
    }

    fn bad(&self, server: String, op: Operation, why: &str) -> KmipError {
        KmipError::BadAnswer {
            cluster: self.name.clone(),
            server,
            op: op.name(),
            why: why.to_string(),
        }
    }

    fn uid_of(&self, server: String, op: Operation, p: &[Item]) -> Result<String, KmipError> {
        message::text_field(p, tag::UNIQUE_IDENTIFIER, "Unique Identifier")
            .map_err(|_| self.bad(server, op, "a Unique Identifier"))
    }

    /// KMIP Create: a new AES-256 symmetric key usable to encrypt and decrypt; returns its
    /// Unique Identifier. The key is Pre-Active until [`Cluster::activate`].
    pub fn create_aes256(&self) -> Result<String, KmipError> {
        let op = Operation::Create;
        let (server, p) = self.call(
            op,
            vec![
                Item::enumeration(tag::OBJECT_TYPE, 0x02), // Symmetric Key
                Item::structure(
                    tag::TEMPLATE_ATTRIBUTE,
                    vec![
                        message::attribute("Cryptographic Algorithm", Value::Enumeration(0x03)), // AES
                        message::attribute("Cryptographic Length", Value::Integer(256)),
                        // Encrypt (0x04) | Decrypt (0x08): nothing else.
                        message::attribute("Cryptographic Usage Mask", Value::Integer(0x0C)),
                    ],
                ),
            ],
        )?;
        self.uid_of(server, op, &p)
    }

    fn uid_only(&self, op: Operation, uid: &str, extra: Vec<Item>) -> Result<(), KmipError> {
        let mut payload = vec![Item::text(tag::UNIQUE_IDENTIFIER, uid)];
        payload.extend(extra);
        let (server, p) = self.call(op, payload)?;
        if self.uid_of(server.clone(), op, &p)? != uid {
            return Err(self.bad(server, op, "the Unique Identifier asked for"));
        }
        Ok(())
    }

    /// KMIP Activate.
    pub fn activate(&self, uid: &str) -> Result<(), KmipError> {
        self.uid_only(Operation::Activate, uid, Vec::new())
    }

    /// KMIP Revoke with reason Cessation of Operation (the key is retired, not compromised).
    pub fn revoke(&self, uid: &str) -> Result<(), KmipError> {
        self.uid_only(
            Operation::Revoke,
            uid,
            vec![Item::structure(
                tag::REVOCATION_REASON,
                vec![Item::enumeration(tag::REVOCATION_REASON_CODE, 0x06)],
            )],
        )
    }

    /// KMIP Destroy.
    pub fn destroy(&self, uid: &str) -> Result<(), KmipError> {
        self.uid_only(Operation::Destroy, uid, Vec::new())
    }

    /// KMIP Query (Query Operations): a health check that needs no key.
    pub fn query(&self) -> Result<String, KmipError> {
        let (server, _) = self.call(
            Operation::Query,
            vec![Item::enumeration(tag::QUERY_FUNCTION, 0x01)],
        )?;
        Ok(server)
    }

    fn gcm_params() -> Item {
        Item::structure(
            tag::CRYPTOGRAPHIC_PARAMETERS,
            vec![
                Item::enumeration(tag::BLOCK_CIPHER_MODE, 0x09), // GCM
                Item::enumeration(tag::CRYPTOGRAPHIC_ALGORITHM, 0x03), // AES
                Item::integer(tag::TAG_LENGTH, 16),
            ],
        )
    }

    /// KMIP Encrypt with AES-256-GCM under the key `uid`, with the nonce and additional data
    /// given: returns the ciphertext and the 16-byte tag.
    pub fn encrypt_gcm(
        &self,
        uid: &str,
        plaintext: &[u8],
        nonce: &[u8; 12],
        aad: &[u8],
    ) -> Result<(Vec<u8>, [u8; 16]), KmipError> {
        let op = Operation::Encrypt;
        let (server, p) = self.call(
            op,
            vec![
                Item::text(tag::UNIQUE_IDENTIFIER, uid),
                Self::gcm_params(),
                Item::bytes(tag::DATA, plaintext),
                Item::bytes(tag::IV_COUNTER_NONCE, nonce),
                Item::bytes(tag::AE_ADDITIONAL_DATA, aad),
            ],
        )?;
        let ct = message::bytes_field(&p, tag::DATA, "Data")
            .map_err(|_| self.bad(server.clone(), op, "the ciphertext"))?;
        let t = message::bytes_field(&p, tag::AE_TAG, "Authenticated Encryption Tag")
            .map_err(|_| self.bad(server.clone(), op, "a GCM tag"))?;
        let tag16: [u8; 16] = t
            .as_slice()
            .try_into()
            .map_err(|_| self.bad(server.clone(), op, "a 16-byte GCM tag"))?;
        if ct.len() != plaintext.len() {
            return Err(self.bad(server, op, "a ciphertext as long as the plaintext"));
        }
        Ok((ct.to_vec(), tag16))
    }

    /// KMIP Decrypt with AES-256-GCM under the key `uid`; the server checks the tag.
    pub fn decrypt_gcm(
        &self,
        uid: &str,
        ciphertext: &[u8],
        nonce: &[u8; 12],
        aad: &[u8],
        gcm_tag: &[u8; 16],
    ) -> Result<Zeroizing<Vec<u8>>, KmipError> {
        let op = Operation::Decrypt;
        let (server, p) = self.call(
            op,
            vec![
                Item::text(tag::UNIQUE_IDENTIFIER, uid),
                Self::gcm_params(),
                Item::bytes(tag::DATA, ciphertext),
                Item::bytes(tag::IV_COUNTER_NONCE, nonce),
                Item::bytes(tag::AE_ADDITIONAL_DATA, aad),
                Item::bytes(tag::AE_TAG, gcm_tag),
            ],
        )?;
        message::bytes_field(&p, tag::DATA, "Data")
            .map_err(|_| self.bad(server, op, "the plaintext"))
    }
}
