//! Why a KMIP operation failed: one variant per thing an operator fixes differently, each a
//! single line naming the cluster (and server) and what to do. No message carries key
//! material or the client key.

use std::fmt;
use std::path::PathBuf;

use dare_keys::StoreError;

/// How one server of a cluster failed a request (the next server is then tried).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The TCP connection was refused or could not be made (`why` from the OS).
    Connect(String),
    /// No answer within the connect or request timeout.
    Timeout,
    /// The server closed or reset the connection before a whole response arrived.
    Reset(String),
    /// The TLS handshake failed (an untrusted or expired certificate, on either side).
    Tls(String),
    /// The response is not a well-formed KMIP response to the request.
    Malformed(String),
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Connect(why) => write!(f, "cannot connect: {why}"),
            FailureKind::Timeout => f.write_str("timed out"),
            FailureKind::Reset(why) => write!(f, "connection lost mid-request: {why}"),
            FailureKind::Tls(why) => write!(f, "TLS handshake failed: {why}"),
            FailureKind::Malformed(why) => write!(f, "{why}"),
        }
    }
}

/// One server's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFailure {
    /// `host:port`.
    pub server: String,
    /// What went wrong.
    pub kind: FailureKind,
}

/// Why a KMIP root of trust could not be set up or a KMIP operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum KmipError {
    /// The configuration file cannot be read or parsed, or is inconsistent.
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The configuration names no cluster of this name.
    UnknownCluster {
        /// The name asked for.
        name: String,
        /// The names it has.
        known: Vec<String>,
    },
    /// A cluster has fewer than two servers (ECS §4.4: activation needs at least two).
    TooFewServers {
        /// The cluster.
        cluster: String,
        /// How many servers it lists.
        count: usize,
    },
    /// A certificate or key file dare cannot use.
    Pem {
        /// The cluster.
        cluster: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The client key file is refused by the secret-file checks (mode 0600, owner).
    File(StoreError),
    /// Every server of the cluster failed; each failure is listed.
    ClusterDown {
        /// The cluster.
        cluster: String,
        /// The operation.
        op: &'static str,
        /// Each server's failure, in the order tried.
        failures: Vec<ServerFailure>,
    },
    /// A server answered that the operation failed (KMIP Result Status not Success).
    Server {
        /// The cluster.
        cluster: String,
        /// The server that answered.
        server: String,
        /// The operation.
        op: &'static str,
        /// Its Result Reason (KMIP 1.4 §9.1.3.2.29), if it gave one.
        reason: Option<u32>,
        /// Its Result Message, on one line.
        message: String,
    },
    /// A server answered with a success that does not hold what the operation returns.
    BadAnswer {
        /// The cluster.
        cluster: String,
        /// The server.
        server: String,
        /// The operation.
        op: &'static str,
        /// What is missing or wrong.
        why: String,
    },
    /// Every server is down and the key's offline-cache time is over.
    OfflineCacheExpired {
        /// The cluster.
        cluster: String,
        /// The configured offline-cache time, in seconds.
        offline_secs: u64,
        /// Why the servers could not be reached.
        down: Box<KmipError>,
    },
}

impl fmt::Display for KmipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KmipError::Config { path, why } => {
                write!(f, "KMIP configuration {}: {why}", path.display())
            }
            KmipError::UnknownCluster { name, known } => write!(
                f,
                "the KMIP configuration has no cluster named {name:?} (it has: {}); check \
                 --kmip-cluster or DARE_KMIP_CLUSTER",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
            KmipError::TooFewServers { cluster, count } => write!(
                f,
                "KMIP cluster {cluster:?} lists {count} server{}; a cluster needs at least 2 \
                 key servers so that one can fail (add another to \"servers\")",
                if *count == 1 { "" } else { "s" }
            ),
            KmipError::Pem { cluster, path, why } => write!(
                f,
                "KMIP cluster {cluster:?}: cannot use {}: {why}",
                path.display()
            ),
            KmipError::File(e) => e.fmt(f),
            KmipError::ClusterDown {
                cluster,
                op,
                failures,
            } => {
                write!(f, "KMIP cluster {cluster:?} is unavailable for {op}: ")?;
                for (i, s) in failures.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{}: {}", s.server, s.kind)?;
                }
                Ok(())
            }
            KmipError::Server {
                cluster,
                server,
                op,
                reason,
                message,
            } => {
                write!(
                    f,
                    "KMIP cluster {cluster:?}: server {server} refused {op}: "
                )?;
                match reason {
                    Some(r) => write!(f, "{} ({r:#x})", crate::message::reason_name(*r))?,
                    None => f.write_str("operation failed")?,
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            KmipError::BadAnswer {
                cluster,
                server,
                op,
                why,
            } => write!(
                f,
                "KMIP cluster {cluster:?}: server {server} answered {op} without {why}"
            ),
            KmipError::OfflineCacheExpired {
                cluster,
                offline_secs,
                down,
            } => write!(
                f,
                "KMIP cluster {cluster:?} has been unreachable longer than the offline cache \
                 time ({offline_secs} s), so its keys are no longer used; {down}"
            ),
        }
    }
}

impl std::error::Error for KmipError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KmipError::File(e) => Some(e),
            KmipError::OfflineCacheExpired { down, .. } => Some(&**down),
            _ => None,
        }
    }
}

impl KmipError {
    /// Whether every server failed to answer (as opposed to a server refusing).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, KmipError::ClusterDown { .. })
    }
}
