//! The KMIP configuration file (docs/KEYS.md §5.5): JSON naming one or more clusters of key
//! servers, each with its TLS files, timeouts and cache times.
//!
//! ```json
//! { "clusters": [ {
//!     "name": "kmip-a",
//!     "servers": ["10.0.0.1:5696", "10.0.0.2:5696"],
//!     "ca_cert": "ca.pem", "client_cert": "client.pem", "client_key": "client.key",
//!     "connect_timeout_ms": 3000, "request_timeout_ms": 10000,
//!     "cache_secs": 60, "offline_cache_secs": 300
//! } ] }
//! ```
//!
//! Relative paths are relative to the file's directory. Unknown fields are refused (a typo
//! must not silently fall back to a default).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::KmipError;

/// The largest configuration file read.
const MAX_CONFIG: u64 = 1024 * 1024;

/// One cluster of KMIP servers that hold the same keys (replicas of one key manager).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The cluster's name, recorded in the store (`kmip:cluster=NAME`) and in every blob.
    pub name: String,
    /// `host:port` of each server, tried in this order (at least two).
    pub servers: Vec<String>,
    /// PEM file of the CA certificate(s) the servers' certificates must chain to.
    pub ca_cert: PathBuf,
    /// PEM file of the client certificate (chain) dare presents.
    pub client_cert: PathBuf,
    /// PEM file of the client certificate's private key (mode 0600, owned by the user).
    pub client_key: PathBuf,
    /// TCP connect timeout per server, in milliseconds (default 3000).
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Time for the TLS handshake plus one request and its response, per server, in
    /// milliseconds (default 10000).
    #[serde(default = "default_request_ms")]
    pub request_timeout_ms: u64,
    /// How long a key unwrapped by the cluster is used without asking the cluster again, in
    /// seconds (default 60). Also how long the store's derived-key cache keeps keys.
    #[serde(default = "default_cache_secs")]
    pub cache_secs: u64,
    /// How long, after the cluster last confirmed a key, the key is still used while every
    /// server is unreachable, in seconds (default 300). 0 disables the offline cache.
    #[serde(default = "default_offline_secs")]
    pub offline_cache_secs: u64,
}

fn default_connect_ms() -> u64 {
    3000
}
fn default_request_ms() -> u64 {
    10_000
}
fn default_cache_secs() -> u64 {
    60
}
fn default_offline_secs() -> u64 {
    300
}

impl ClusterConfig {
    /// The connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The cache time.
    pub fn cache_time(&self) -> Duration {
        Duration::from_secs(self.cache_secs)
    }

    /// The offline-cache time.
    pub fn offline_time(&self) -> Duration {
        Duration::from_secs(self.offline_cache_secs)
    }
}

/// A whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KmipConfig {
    /// The clusters.
    pub clusters: Vec<ClusterConfig>,
}

impl KmipConfig {
    /// Reads and checks `path`: JSON of the layout above, unique non-empty cluster names of
    /// at most 64 printable ASCII characters without `;` or `=`, timeouts of 1 ms to 10 min.
    /// The number of servers is checked when a cluster is used ([`crate::Cluster::new`]),
    /// so that the refusal names the cluster at activation.
    pub fn load(path: &Path) -> Result<KmipConfig, KmipError> {
        let err = |why: String| KmipError::Config {
            path: path.to_path_buf(),
            why,
        };
        let f = std::fs::File::open(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(f, MAX_CONFIG + 1), &mut text)
            .map_err(|e| err(format!("cannot read: {e}")))?;
        if text.len() as u64 > MAX_CONFIG {
            return Err(err(format!("larger than {MAX_CONFIG} bytes")));
        }
        let mut cfg: KmipConfig =
            serde_json::from_str(&text).map_err(|e| err(format!("not valid: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut names = std::collections::BTreeSet::new();
        for c in &mut cfg.clusters {
            check_name(&c.name).map_err(|why| err(why.to_string()))?;
            if !names.insert(c.name.clone()) {
                return Err(err(format!("cluster {:?} is named twice", c.name)));
            }
            for (what, ms) in [
                ("connect_timeout_ms", c.connect_timeout_ms),
                ("request_timeout_ms", c.request_timeout_ms),
            ] {
                if !(1..=600_000).contains(&ms) {
                    return Err(err(format!(
                        "cluster {:?}: {what} must be 1..=600000 (ms), not {ms}",
                        c.name
                    )));
                }
            }
            for p in [&mut c.ca_cert, &mut c.client_cert, &mut c.client_key] {
                if p.is_relative() {
                    *p = base.join(&*p);
                }
            }
        }
        Ok(cfg)
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Result<&ClusterConfig, KmipError> {
        self.clusters
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| KmipError::UnknownCluster {
                name: name.to_string(),
                known: self.clusters.iter().map(|c| c.name.clone()).collect(),
            })
    }
}

/// A cluster name: 1..=64 printable ASCII characters, none of `;`, `=` or space (it is
/// recorded as `kmip:cluster=NAME` and in blobs).
pub fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("a cluster name has 1 to 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b';' && b != b'=')
    {
        return Err("a cluster name is printable ASCII without spaces, ';' or '='");
    }
    Ok(())
}
