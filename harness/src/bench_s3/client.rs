//! The load generator's S3 client: SigV4-signed requests (AWS's own signer, `aws-sigv4`) over
//! a blocking HTTP/1.1 agent (`ureq`) that keeps its connection alive between requests. One
//! agent per worker thread, so `--concurrency N` is N connections.
//!
//! Payloads are signed with their SHA-256 (computed once per object size: every PUT of a size
//! sends the same buffer), so the client spends no CPU per request that the server does not
//! also spend, and the requests are as a strict S3 server wants them.

use std::io::{self, Read};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::Digest as _;
use zeroize::Zeroizing;

/// An access key pair, as one line of a `dare serve --credentials` file.
#[derive(Clone)]
pub struct Keys {
    pub access: String,
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// The first `ACCESS_KEY_ID:SECRET_ACCESS_KEY` line of a credentials file.
    pub fn from_file(path: &std::path::Path) -> Result<Keys> {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("--credentials {}", path.display()))?,
        );
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .with_context(|| format!("--credentials {}: no key pair in it", path.display()))?;
        let Some((a, s)) = line.split_once(':') else {
            bail!(
                "--credentials {}: expected ACCESS_KEY_ID:SECRET_ACCESS_KEY",
                path.display()
            );
        };
        Ok(Keys {
            access: a.to_owned(),
            secret: Zeroizing::new(s.to_owned()),
        })
    }
}

/// How an object is encrypted, as the request headers say it.
#[derive(Debug, Clone)]
pub enum Sse {
    /// The bucket's default (plaintext or SSE-S3, as the bucket was made).
    Bucket,
    /// SSE-C with this customer key (base64) and its MD5 (base64).
    Customer { key_b64: String, md5_b64: String },
    /// SSE-KMS under this customer master key.
    Kms(String),
}

impl Sse {
    /// SSE-C with a 256-bit key.
    pub fn customer(key: &[u8; 32]) -> Sse {
        Sse::Customer {
            key_b64: B64.encode(key),
            md5_b64: B64.encode(md5::Md5::digest(key)),
        }
    }

    fn headers(&self, put: bool) -> Vec<(&'static str, String)> {
        match self {
            Sse::Bucket => vec![],
            Sse::Customer { key_b64, md5_b64 } => vec![
                (
                    "x-amz-server-side-encryption-customer-algorithm",
                    "AES256".into(),
                ),
                ("x-amz-server-side-encryption-customer-key", key_b64.clone()),
                (
                    "x-amz-server-side-encryption-customer-key-md5",
                    md5_b64.clone(),
                ),
            ],
            Sse::Kms(key) if put => vec![
                ("x-amz-server-side-encryption", "aws:kms".into()),
                ("x-amz-server-side-encryption-aws-kms-key-id", key.clone()),
            ],
            Sse::Kms(_) => vec![],
        }
    }
}

/// The SHA-256 of the empty payload, hex.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// One keep-alive connection to the endpoint.
#[derive(Debug)]
pub struct Client {
    agent: ureq::Agent,
    endpoint: String,
    identity: Identity,
}

/// A failed request: the status and the S3 error code from the body.
fn failure(what: &str, e: ureq::Error) -> anyhow::Error {
    match e {
        ureq::Error::Status(code, resp) => {
            let rid = resp.header("x-amz-request-id").unwrap_or("").to_owned();
            let mut text = String::new();
            let _ = resp.into_reader().take(4096).read_to_string(&mut text);
            let s3code = text
                .split_once("<Code>")
                .and_then(|(_, r)| r.split_once("</Code>"))
                .map_or("", |(c, _)| c);
            anyhow::anyhow!("{what}: HTTP {code} {s3code} (request id {rid})")
        }
        ureq::Error::Transport(t) => anyhow::anyhow!("{what}: {t}"),
    }
}

impl Client {
    pub fn new(endpoint: &str, keys: &Keys) -> Client {
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .max_idle_connections_per_host(1)
            .build();
        let creds = Credentials::new(
            keys.access.clone(),
            keys.secret.as_str().to_owned(),
            None,
            None,
            "dare-bench-s3",
        );
        Client {
            agent,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            identity: creds.into(),
        }
    }

    /// A signed request: method, path (`/bucket/key`, already URL-safe), extra headers, and
    /// the payload's SHA-256 (hex).
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&'static str, String)],
        payload_sha256: &str,
    ) -> Result<ureq::Request> {
        let url = format!("{}{path}", self.endpoint);
        let mut settings = SigningSettings::default();
        // S3's rules: the path is encoded once and not normalized; the payload hash is sent.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region("us-east-1")
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .context("signing parameters")?
            .into();
        let signable = SignableRequest::new(
            method,
            url.as_str(),
            headers.iter().map(|(k, v)| (*k, v.as_str())),
            SignableBody::Precomputed(payload_sha256.to_owned()),
        )
        .context("signing the request")?;
        let (instructions, _) = sign(signable, &params)
            .context("signing the request")?
            .into_parts();
        let mut req = self.agent.request(method, &url);
        for (k, v) in headers {
            req = req.set(k, v);
        }
        for (k, v) in instructions.headers() {
            req = req.set(k, v);
        }
        Ok(req)
    }

    /// CreateBucket; a bucket that exists already is fine.
    pub fn create_bucket(&self, bucket: &str) -> Result<()> {
        let req = self.request("PUT", &format!("/{bucket}"), &[], EMPTY_SHA256)?;
        match req.call() {
            Ok(_) => Ok(()),
            Err(ureq::Error::Status(409, _)) => Ok(()),
            Err(e) => Err(failure(&format!("CreateBucket {bucket}"), e)),
        }
    }

    /// PutBucketEncryption: SSE-KMS under `key` (dare takes it only while the bucket is
    /// empty, and fixes a bucket's encryption from then on).
    pub fn put_bucket_encryption_kms(&self, bucket: &str, key: &str) -> Result<()> {
        let xml = format!(
            "<ServerSideEncryptionConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>aws:kms</SSEAlgorithm>\
             <KMSMasterKeyID>{key}</KMSMasterKeyID></ApplyServerSideEncryptionByDefault></Rule>\
             </ServerSideEncryptionConfiguration>"
        );
        let headers = [("content-md5", B64.encode(md5::Md5::digest(xml.as_bytes())))];
        let sha = dare_engine::format::hex(&sha2::Sha256::digest(xml.as_bytes()));
        let req = self.request("PUT", &format!("/{bucket}?encryption"), &headers, &sha)?;
        req.send_bytes(xml.as_bytes())
            .map_err(|e| failure(&format!("PutBucketEncryption {bucket}"), e))?;
        Ok(())
    }

    /// PutObject of `body`, whose SHA-256 (hex) is `sha256`.
    pub fn put(&self, path: &str, body: &[u8], sha256: &str, sse: &Sse) -> Result<()> {
        let req = self.request("PUT", path, &sse.headers(true), sha256)?;
        let resp = req
            .send_bytes(body)
            .map_err(|e| failure(&format!("PUT {path}"), e))?;
        // Read the (empty) body so the connection goes back to the agent's pool.
        io::copy(&mut resp.into_reader(), &mut io::sink())?;
        Ok(())
    }

    /// GetObject; the body is read to the end and counted (or returned, with `keep`).
    pub fn get(&self, path: &str, sse: &Sse, keep: bool) -> Result<(u64, Option<Vec<u8>>)> {
        let req = self.request("GET", path, &sse.headers(false), EMPTY_SHA256)?;
        let resp = req.call().map_err(|e| failure(&format!("GET {path}"), e))?;
        let mut r = resp.into_reader();
        if keep {
            let mut v = Vec::new();
            r.read_to_end(&mut v)
                .with_context(|| format!("GET {path}: reading the body"))?;
            Ok((v.len() as u64, Some(v)))
        } else {
            let n = io::copy(&mut r, &mut io::sink())
                .with_context(|| format!("GET {path}: reading the body"))?;
            Ok((n, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_signed_with_the_payload_hash_and_sse_headers() {
        let keys = Keys {
            access: "AKIDBENCH".into(),
            secret: Zeroizing::new("secret".into()),
        };
        let c = Client::new("http://127.0.0.1:9/", &keys);
        let sse = Sse::customer(&[7u8; 32]);
        let hash = "ab".repeat(32);
        let r = c.request("PUT", "/b/k", &sse.headers(true), &hash).unwrap();
        assert_eq!(r.url(), "http://127.0.0.1:9/b/k");
        assert_eq!(r.header("x-amz-content-sha256"), Some(hash.as_str()));
        let auth = r.header("authorization").unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDBENCH/"),
            "{auth}"
        );
        assert!(auth.contains("/us-east-1/s3/aws4_request"), "{auth}");
        for h in [
            "host",
            "x-amz-content-sha256",
            "x-amz-date",
            "x-amz-server-side-encryption-customer-key-md5",
        ] {
            assert!(auth.contains(h), "{h} not signed: {auth}");
        }
        assert_eq!(
            r.header("x-amz-server-side-encryption-customer-key-md5"),
            Some(B64.encode(md5::Md5::digest([7u8; 32])).as_str())
        );
        // SSE-KMS headers go on PUT only; GET needs none.
        assert_eq!(Sse::Kms("k".into()).headers(false).len(), 0);
        assert_eq!(Sse::Kms("k".into()).headers(true).len(), 2);
    }
}
