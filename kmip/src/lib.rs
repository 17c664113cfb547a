//! dare-kmip: a cluster of KMIP key servers as dare's root of trust (docs/KEYS.md §5.5).
//!
//! ECS (white paper §2.2, §4.3–4.4) delegates its master key to external key managers that
//! speak KMIP over mutually authenticated TLS, with at least two key servers per cluster so
//! that one can fail. [`KmipRoot`] implements [`dare_keys::RootOfTrust`] that way: every key
//! the store protects (master keys, the RT data key) is encrypted *inside the key servers* by
//! an AES-256 key created for it there (KMIP Create, Activate, Encrypt/Decrypt with
//! AES-256-GCM), which never leaves them; a retired master key's server key is revoked and
//! destroyed (`deactivate`: KMIP Revoke, Destroy).
//!
//! - [`ttlv`]: the TTLV encoding, with a strictly bounded decoder (its own fuzz target).
//! - [`message`]: the request and response messages of the seven operations used.
//! - [`Cluster`]: TLS 1.2+ with a client certificate (rustls), bounded timeouts, failover to
//!   the next server, [`KmipError::ClusterDown`] naming every server's failure.
//! - [`KmipConfig`]: the JSON configuration file naming clusters.
//! - [`KmipRoot`]: the root of trust, its blob ([`blob`]) and its offline cache.
//!
//! The library reads no environment variable; the CLI maps `--kmip-config` /
//! `DARE_KMIP_CONFIG` and `--kmip-cluster` / `DARE_KMIP_CLUSTER` onto [`KmipConfig::load`]
//! and [`KmipRoot::open`].
#![forbid(unsafe_code)]

pub mod blob;
mod client;
mod config;
mod error;
pub mod message;
mod root;
pub mod ttlv;

pub use client::Cluster;
pub use config::{ClusterConfig, KmipConfig, check_name};
pub use error::{FailureKind, KmipError, ServerFailure};
pub use root::{DESCRIPTION_PREFIX, KmipRoot, UnwrapError, cluster_of_description};

/// Whether a store's recorded root of trust (`store.root_of_trust`) is a KMIP cluster.
pub fn is_kmip_description(recorded: &str) -> bool {
    recorded.starts_with(DESCRIPTION_PREFIX)
}
