//! `dare serve`: the S3 endpoint (the `dare-s3` library) over the store the global flags name.
//! All protocol logic is the library's; this parses the flags and prints the ready line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::settings::Settings;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0: any free port; the ready line shows the real one).
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Access keys: one `ACCESS_KEY_ID:SECRET_ACCESS_KEY` per line, mode 0600. Required:
    /// there is no default key pair.
    #[arg(long)]
    pub credentials: PathBuf,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM); needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Accept SSE-C keys over plain HTTP (AWS refuses them; for local testing only: the key
    /// crosses the network in clear).
    #[arg(long)]
    pub allow_ssec_over_http: bool,
}

/// Serves until SIGTERM or SIGINT, then lets in-flight requests finish.
pub fn run(s: &Settings, a: ServeArgs) -> Result<()> {
    let dare = s.open()?;
    let mut cfg = dare_s3::ServerConfig::new(a.listen, a.credentials);
    cfg.tls = match (a.tls_cert, a.tls_key) {
        (Some(cert), Some(key)) => Some(dare_s3::TlsFiles { cert, key }),
        _ => None,
    };
    cfg.allow_ssec_over_http = a.allow_ssec_over_http;
    dare_s3::serve_blocking(dare, cfg)?;
    Ok(())
}
