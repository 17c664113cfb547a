//! dare-s3: the S3 endpoint over the dare control plane (`dare serve`, docs/S3.md).
//!
//! The protocol — routing, request parsing, SigV4 in headers and presigned URLs, `aws-chunked`
//! bodies (signed streaming and `STREAMING-UNSIGNED-PAYLOAD-TRAILER`), XML and error bodies —
//! is the `s3s` crate's; this crate maps S3 operations onto [`dare::Dare`] and adds what s3s
//! leaves to an implementation: the content checks (`Content-MD5`, `x-amz-checksum-*` headers
//! and trailers, verified before an object becomes visible), the SSE headers, the credentials
//! file, request ids in every error body, TLS, limits and graceful shutdown.
//!
//! The library is synchronous; every data-path call runs on tokio's blocking pool and bodies
//! cross over bounded channels ([`body`]), so a request holds at most a few chunks in memory
//! whatever the object's size.
#![forbid(unsafe_code)]

mod body;
mod credentials;
mod error;
mod linger;
mod multipart;
mod reqid;
mod server;
mod service;
mod sse;

pub use credentials::{Credentials, CredentialsError, load_credentials};
pub use server::{ServeError, ServerConfig, TlsFiles, run, serve_blocking};
