//! The listener: accepts TCP (or TLS) connections, serves HTTP/1.1 and HTTP/2 through hyper,
//! bounds header size, header read time and open connections, and shuts down gracefully
//! (stop accepting, let in-flight requests finish, then return).

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::credentials::{CredentialsError, load_credentials};
use crate::linger::Linger;
use crate::reqid::WithRequestId;
use crate::service::DareS3;

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The credentials file (`ACCESS_KEY_ID:SECRET_ACCESS_KEY` per line, mode 0600).
    pub credentials: PathBuf,
    /// Serve HTTPS with this certificate.
    pub tls: Option<TlsFiles>,
    /// Accept SSE-C over plain HTTP (AWS refuses it; for local testing only).
    pub allow_ssec_over_http: bool,
    /// Most connections served at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// Most bytes of request line and headers (hyper's read buffer).
    pub max_header_bytes: usize,
    /// Time allowed for a client to send a request's headers.
    pub header_timeout: Duration,
    /// Time in-flight requests get to finish after shutdown is asked for.
    pub shutdown_grace: Duration,
}

impl ServerConfig {
    /// Defaults for everything but the address and the credentials file.
    pub fn new(listen: SocketAddr, credentials: PathBuf) -> ServerConfig {
        ServerConfig {
            listen,
            credentials,
            tls: None,
            allow_ssec_over_http: false,
            max_connections: 1024,
            max_header_bytes: 64 * 1024,
            header_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(60),
        }
    }
}

/// Why serving failed to start or stopped.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// The credentials file was refused.
    Credentials(CredentialsError),
    /// The certificate or key could not be loaded.
    Tls(String),
    /// Binding or accepting failed.
    Io(io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Credentials(e) => e.fmt(f),
            ServeError::Tls(e) => write!(f, "TLS: {e}"),
            ServeError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ServeError {}

impl From<io::Error> for ServeError {
    fn from(e: io::Error) -> Self {
        ServeError::Io(e)
    }
}

fn tls_config(files: &TlsFiles) -> Result<rustls::ServerConfig, ServeError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| ServeError::Tls(format!("cannot read {}: {e}", p.display())))
    };
    let cert_pem = read(&files.cert)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Tls(format!("{}: {e}", files.cert.display())))?;
    if certs.is_empty() {
        return Err(ServeError::Tls(format!(
            "{} holds no PEM certificate",
            files.cert.display()
        )));
    }
    let key_pem = zeroize::Zeroizing::new(read(&files.key)?);
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| ServeError::Tls(format!("{}: {e}", files.key.display())))?
        .ok_or_else(|| {
            ServeError::Tls(format!("{} holds no PEM private key", files.key.display()))
        })?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ServeError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| ServeError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serves `dare` until `shutdown` completes. `ready` is called once with the bound address
/// (the real port when the configuration asked for port 0) and whether it is HTTPS, before
/// the first connection is accepted. Then in-flight requests get
/// [`ServerConfig::shutdown_grace`] to finish.
pub async fn run(
    dare: Arc<dare::Dare>,
    cfg: ServerConfig,
    ready: impl FnOnce(SocketAddr, bool),
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let (auth, _) = load_credentials(&cfg.credentials).map_err(ServeError::Credentials)?;
    let tls = match &cfg.tls {
        Some(files) => Some(TlsAcceptor::from(Arc::new(tls_config(files)?))),
        None => None,
    };
    let s3 = DareS3::new(dare, tls.is_some() || cfg.allow_ssec_over_http);
    let mut builder = S3ServiceBuilder::new(s3);
    builder.set_auth(auth);
    let service = WithRequestId::new(builder.build());

    let listener = TcpListener::bind(cfg.listen).await?;
    ready(listener.local_addr()?, tls.is_some());

    let mut http = ConnBuilder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout)
        .max_buf_size(cfg.max_header_bytes.max(8192));
    http.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = shutdown.as_mut() => break,
        };
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                // Out of descriptors and the like: wait a little rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.as_mut() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        match &tls {
            None => {
                let conn = http.serve_connection(TokioIo::new(Linger::new(stream)), service);
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
            Some(acceptor) => {
                // The handshake runs in its own task (bounded in time) so a slow client
                // cannot stall the accept loop; such connections are not watched for the
                // graceful shutdown until the handshake is done.
                let acceptor = acceptor.clone();
                let http = http.clone();
                let watcher = graceful.watcher();
                let timeout = cfg.header_timeout;
                tokio::spawn(async move {
                    let Ok(Ok(tls)) =
                        tokio::time::timeout(timeout, acceptor.accept(Linger::new(stream))).await
                    else {
                        return;
                    };
                    let conn = http.serve_connection(TokioIo::new(tls), service);
                    let _ = watcher.watch(conn.into_owned()).await;
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {},
        () = tokio::time::sleep(cfg.shutdown_grace) => {},
    }
    Ok(())
}

/// Runs [`run`] on a runtime of its own until SIGTERM or SIGINT; prints `listening on
/// http://ADDR` (or `https://`) to standard output once ready. For the `dare serve` command.
pub fn serve_blocking(dare: dare::Dare, cfg: ServerConfig) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dare-s3")
        .build()?;
    let grace = cfg.shutdown_grace;
    let result = rt.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        };
        run(
            Arc::new(dare),
            cfg,
            |addr, https| {
                use std::io::Write;
                let scheme = if https { "https" } else { "http" };
                let mut out = io::stdout().lock();
                let _ = writeln!(out, "listening on {scheme}://{addr}");
                let _ = out.flush();
            },
            shutdown,
        )
        .await
    });
    // Puts and gets still on the blocking pool finish (each ends when its body does).
    rt.shutdown_timeout(grace);
    result
}
