//! The S3 operations on [`dare::Dare`] (docs/S3.md §2 lists them and their headers).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use dare::{Dare, GetOptions, ListQuery, ObjectInfo, PutOptions};
use http::StatusCode;
use s3s::dto::*;
use s3s::{S3, S3Error, S3Request, S3Response, S3Result, s3_error};

use crate::body::{self, Expect, MAX_PUT};
use crate::error::map;
use crate::sse::{CustomerKey, SseC};

/// The S3 service over one store.
pub(crate) struct DareS3 {
    pub(crate) dare: Arc<Dare>,
    /// Whether SSE-C keys may arrive on this listener (HTTPS, or allowed for testing).
    pub(crate) sse_c_ok: bool,
}

impl DareS3 {
    pub(crate) fn new(dare: Arc<Dare>, sse_c_ok: bool) -> Self {
        DareS3 { dare, sse_c_ok }
    }
}

/// Runs a library call on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, S3Error> + Send + 'static,
) -> Result<T, S3Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| s3_error!(InternalError, "request task failed: {e}"))?
}

/// Names under this prefix are the server's own (multipart parts); S3 requests cannot name
/// them (a key with a NUL is refused) and listings do not show them.
pub(crate) use dare::INTERNAL_PREFIX;

pub(crate) fn check_key(key: &str) -> S3Result<()> {
    if key.contains('\0') {
        return Err(s3_error!(
            InvalidArgument,
            "Object keys may not contain a NUL character."
        ));
    }
    if key.is_empty() || key.len() > 1024 {
        return Err(s3_error!(
            KeyTooLongError,
            "Your key is too long (1 to 1024 bytes)."
        ));
    }
    Ok(())
}

pub(crate) fn check_acl(acl: Option<&str>) -> S3Result<()> {
    match acl {
        None | Some("private") => Ok(()),
        Some(other) => Err(s3_error!(
            NotImplemented,
            "Only the canned ACL private is supported (got {other}); dare has no ACLs."
        )),
    }
}

pub(crate) fn etag(info: &ObjectInfo) -> ETag {
    ETag::Strong(info.etag.clone())
}

pub(crate) fn last_modified(info: &ObjectInfo) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(info.created_ms))
}

/// The standard headers kept as object metadata beside `x-amz-meta-*`.
const STD_META: [&str; 6] = [
    "content-type",
    "content-encoding",
    "content-disposition",
    "content-language",
    "cache-control",
    "expires",
];

/// The SSE response values of an object: what `x-amz-server-side-encryption` (and the KMS
/// key id, or the SSE-C algorithm and key MD5) say.
#[derive(Default, Clone)]
pub(crate) struct SseOut {
    pub sse: Option<ServerSideEncryption>,
    pub kms_key: Option<String>,
    pub sse_c_md5: Option<String>,
}

impl SseOut {
    pub(crate) fn of(dare: &Dare, info: &ObjectInfo, ck: Option<&CustomerKey>) -> SseOut {
        if info.key_ref == dare::KeyRef::CustomerKey {
            return SseOut {
                sse_c_md5: ck.map(|c| c.md5.clone()),
                ..SseOut::default()
            };
        }
        if !info.encrypted {
            return SseOut::default();
        }
        let kms = info
            .kms_key
            .clone()
            .map(|(id, _)| id)
            .or_else(|| dare.bucket(&info.bucket).ok().and_then(|b| b.kms_key_id));
        match kms {
            Some(id) => SseOut {
                sse: Some(ServerSideEncryption::from_static(
                    ServerSideEncryption::AWS_KMS,
                )),
                kms_key: Some(id),
                sse_c_md5: None,
            },
            None => SseOut {
                sse: Some(ServerSideEncryption::from_static(
                    ServerSideEncryption::AES256,
                )),
                ..SseOut::default()
            },
        }
    }
    pub(crate) fn sse_c_alg(&self) -> Option<SSECustomerAlgorithm> {
        self.sse_c_md5.as_ref().map(|_| "AES256".to_owned())
    }
}

/// A write's `x-amz-server-side-encryption` (and KMS key id) against the bucket's policy:
/// dare encrypts every object of a bucket as the bucket says (ECS fixes the policy per
/// bucket), so a request may restate the bucket's mode but not ask for another one.
pub(crate) fn check_sse_request(
    dare: &Dare,
    bucket: &str,
    sse: Option<&ServerSideEncryption>,
    kms_key: Option<&str>,
    sse_c: bool,
) -> S3Result<()> {
    let Some(sse) = sse else {
        if kms_key.is_some() {
            return Err(s3_error!(
                InvalidArgument,
                "x-amz-server-side-encryption-aws-kms-key-id needs x-amz-server-side-encryption: aws:kms"
            ));
        }
        return Ok(());
    };
    if sse_c {
        return Err(s3_error!(
            InvalidArgument,
            "Server Side Encryption with Customer provided key is incompatible with the \
             encryption method specified"
        ));
    }
    let b = dare.bucket(bucket).map_err(map)?;
    match (sse.as_str(), &b.kms_key_id) {
        ("AES256", None) if b.encryption => Ok(()),
        ("aws:kms", Some(id)) => match kms_key {
            None => Ok(()),
            Some(k) => {
                let want = dare
                    .kms()
                    .describe(k)
                    .map_err(|e| map(dare::Error::Kms(e)))?;
                if &want.key_id == id {
                    Ok(())
                } else {
                    Err(s3_error!(
                        InvalidArgument,
                        "This bucket's objects are encrypted under KMS key {id}; dare fixes \
                         the key per bucket, a per-object KMS key is not supported."
                    ))
                }
            }
        },
        ("AES256" | "aws:kms", _) => Err(s3_error!(
            InvalidArgument,
            "The bucket's encryption is {}; dare encrypts every object of a bucket as the \
             bucket says, so a request may not ask for {}.",
            match (&b.kms_key_id, b.encryption) {
                (Some(_), _) => "aws:kms",
                (None, true) => "AES256",
                (None, false) => "off",
            },
            sse.as_str()
        )),
        (other, _) => Err(s3_error!(
            InvalidArgument,
            "The encryption method specified is not supported: {other}"
        )),
    }
}

/// The metadata to store for a write: the standard headers and `x-amz-meta-*`.
pub(crate) fn meta_of(
    metadata: Option<&Metadata>,
    std: &[(&str, Option<String>)],
) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std
        .iter()
        .filter_map(|(k, val)| val.clone().map(|x| ((*k).to_owned(), x)))
        .collect();
    if let Some(m) = metadata {
        let mut user: Vec<_> = m
            .iter()
            .map(|(k, val)| {
                (
                    format!("x-amz-meta-{}", k.to_ascii_lowercase()),
                    val.clone(),
                )
            })
            .collect();
        user.sort();
        user.dedup_by(|a, b| a.0 == b.0);
        v.extend(user);
    }
    v
}

/// Splits stored metadata back into the standard headers and `x-amz-meta-*`.
pub(crate) struct MetaOut {
    pub std: HashMap<String, String>,
    pub user: Option<Metadata>,
}

pub(crate) fn split_meta(meta: &[(String, String)]) -> MetaOut {
    let mut std = HashMap::new();
    let mut user = Metadata::default();
    for (k, v) in meta {
        if let Some(u) = k.strip_prefix("x-amz-meta-") {
            user.insert(u.to_owned(), v.clone());
        } else if STD_META.contains(&k.as_str()) || k.starts_with("x-dare-") {
            std.insert(k.clone(), v.clone());
        }
    }
    MetaOut {
        std,
        user: (!user.is_empty()).then_some(user),
    }
}

/// The length a body will have once decoded, when the request says.
pub(crate) fn declared_len(headers: &http::HeaderMap, content_length: Option<i64>) -> Option<u64> {
    if let Some(v) = headers.get("x-amz-decoded-content-length") {
        return v.to_str().ok().and_then(|s| s.trim().parse().ok());
    }
    let chunked = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s.starts_with("STREAMING-"));
    if chunked {
        return None;
    }
    content_length.and_then(|n| u64::try_from(n).ok())
}

/// A `Read` over a range of an opened object, a piece at a time (copy and multipart
/// completion feed one object into the put of another).
pub(crate) struct ObjectRead {
    obj: dare::Object,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    at: usize,
}

impl ObjectRead {
    pub(crate) fn new(obj: dare::Object) -> Self {
        let end = obj.size();
        ObjectRead {
            obj,
            pos: 0,
            end,
            buf: Vec::new(),
            at: 0,
        }
    }
}

impl Drop for ObjectRead {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.buf);
    }
}

impl std::io::Read for ObjectRead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() {
            if self.pos >= self.end {
                return Ok(0);
            }
            let n = (self.end - self.pos).min(1 << 20);
            zeroize::Zeroize::zeroize(&mut self.buf);
            self.buf.clear();
            self.at = 0;
            let buf = &mut self.buf;
            self.obj
                .read_range(self.pos, n, &mut |p| {
                    buf.extend_from_slice(p);
                    Ok(())
                })
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.pos += n;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The smallest name above every name starting with `p` (a key marker after a common
/// prefix), when `p` ends in an ASCII character.
fn after_prefix(p: &str) -> String {
    match p.as_bytes().last() {
        Some(&b) if b < 0x7F => {
            let mut s = p[..p.len() - 1].to_owned();
            s.push((b + 1) as char);
            s
        }
        _ => p.to_owned(),
    }
}

fn conditional(
    info: &ObjectInfo,
    if_match: Option<&ETagCondition>,
    if_none: Option<&ETagCondition>,
) -> S3Result<()> {
    let tag = etag(info);
    if let Some(c) = if_match {
        let ok = match c {
            ETagCondition::Any => true,
            ETagCondition::ETag(t) => t.value() == tag.value(),
        };
        if !ok {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ));
        }
    }
    if let Some(c) = if_none {
        let hit = match c {
            ETagCondition::Any => true,
            ETagCondition::ETag(t) => t.value() == tag.value(),
        };
        if hit {
            let mut e = S3Error::new(s3s::S3ErrorCode::NotModified);
            e.set_status_code(StatusCode::NOT_MODIFIED);
            return Err(e);
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl S3 for DareS3 {
    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let dare = self.dare.clone();
        let buckets = blocking(move || dare.buckets(None).map_err(map)).await?;
        let list = buckets
            .into_iter()
            .map(|b| Bucket {
                name: Some(b.name),
                creation_date: Some(Timestamp::from(UNIX_EPOCH + Duration::from_secs(b.created))),
                bucket_region: None,
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(list),
            owner: Some(Owner {
                display_name: Some("dare".into()),
                id: Some("dare".into()),
            }),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let i = req.input;
        check_acl(i.acl.as_ref().map(|a| a.as_str()))?;
        if i.object_lock_enabled_for_bucket == Some(true) {
            return Err(s3_error!(NotImplemented, "Object lock is not supported."));
        }
        let dare = self.dare.clone();
        let name = i.bucket.clone();
        blocking(move || {
            dare.create_bucket(&name, dare::DEFAULT_NAMESPACE, None)
                .map_err(map)
        })
        .await?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{}", i.bucket)),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let dare = self.dare.clone();
        let name = req.input.bucket;
        blocking(move || dare.bucket(&name).map_err(map)).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let dare = self.dare.clone();
        let name = req.input.bucket;
        blocking(move || dare.bucket(&name).map_err(map)).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let dare = self.dare.clone();
        let name = req.input.bucket;
        blocking(move || {
            // Incomplete multipart uploads do not keep a bucket alive (their parts are the
            // server's own objects): abort them, then delete the bucket if it is empty.
            crate::multipart::abort_all_if_only_uploads(&dare, &name)?;
            dare.delete_bucket(&name, false).map_err(map)
        })
        .await?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        let dare = self.dare.clone();
        let name = req.input.bucket;
        let b = blocking(move || dare.bucket(&name).map_err(map)).await?;
        if !b.encryption {
            return Err(s3_error!(
                ServerSideEncryptionConfigurationNotFoundError,
                "The server side encryption configuration was not found (the bucket was \
                 created with encryption off)"
            ));
        }
        let by_default = match b.kms_key_id {
            Some(id) => ServerSideEncryptionByDefault {
                kms_master_key_id: Some(id),
                sse_algorithm: ServerSideEncryption::from_static(ServerSideEncryption::AWS_KMS),
            },
            None => ServerSideEncryptionByDefault {
                kms_master_key_id: None,
                sse_algorithm: ServerSideEncryption::from_static(ServerSideEncryption::AES256),
            },
        };
        Ok(S3Response::new(GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
                rules: vec![ServerSideEncryptionRule {
                    apply_server_side_encryption_by_default: Some(by_default),
                    bucket_key_enabled: Some(true),
                }],
            }),
        }))
    }

    async fn put_bucket_encryption(
        &self,
        req: S3Request<PutBucketEncryptionInput>,
    ) -> S3Result<S3Response<PutBucketEncryptionOutput>> {
        let i = req.input;
        let rules = i.server_side_encryption_configuration.rules;
        let [rule] = rules.as_slice() else {
            return Err(s3_error!(
                MalformedXML,
                "Exactly one ServerSideEncryptionRule is supported."
            ));
        };
        let Some(by_default) = &rule.apply_server_side_encryption_by_default else {
            return Err(s3_error!(
                MalformedXML,
                "ApplyServerSideEncryptionByDefault is required."
            ));
        };
        let kms = match by_default.sse_algorithm.as_str() {
            "AES256" => {
                if by_default.kms_master_key_id.is_some() {
                    return Err(s3_error!(
                        InvalidArgument,
                        "a KMSMasterKeyID is allowed only with SSEAlgorithm aws:kms"
                    ));
                }
                None
            }
            "aws:kms" => Some(
                by_default
                    .kms_master_key_id
                    .clone()
                    .unwrap_or_else(|| "alias/dare/default".to_owned()),
            ),
            other => {
                return Err(s3_error!(
                    InvalidArgument,
                    "SSEAlgorithm {other} is not supported (AES256 or aws:kms)"
                ));
            }
        };
        let dare = self.dare.clone();
        let name = i.bucket;
        blocking(move || {
            let kms = kms
                .as_deref()
                .map(|k| k.strip_prefix("alias/").unwrap_or(k));
            // `dare/default` is made on first use by the library when no key is named.
            let kms = match kms {
                Some("dare/default") => Some(
                    dare.kms()
                        .default_key()
                        .map_err(|e| map(dare::Error::Kms(e)))?
                        .key_id,
                ),
                Some(k) => Some(k.to_owned()),
                None => None,
            };
            dare.set_bucket_encryption(&name, kms.as_deref())
                .map_err(|e| match e {
                    dare::Error::BucketNotEmpty { .. } => {
                        let mut err = S3Error::with_message(
                            s3s::S3ErrorCode::Custom("OperationAborted".into()),
                            "The bucket's encryption is fixed once it holds objects (as ECS \
                             fixes it at creation): empty the bucket first.",
                        );
                        err.set_status_code(StatusCode::CONFLICT);
                        err
                    }
                    e => map(e),
                })
        })
        .await?;
        Ok(S3Response::new(PutBucketEncryptionOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let S3Request {
            input: i,
            headers,
            trailing_headers,
            ..
        } = req;
        check_key(&i.key)?;
        check_acl(i.acl.as_ref().map(|a| a.as_str()))?;
        let ck = SseC {
            algorithm: i.sse_customer_algorithm.as_deref(),
            key: i.sse_customer_key.as_deref(),
            key_md5: i.sse_customer_key_md5.as_deref(),
        }
        .parse(self.sse_c_ok)?;
        {
            let dare = self.dare.clone();
            let (b, sse, kk, c) = (
                i.bucket.clone(),
                i.server_side_encryption.clone(),
                i.ssekms_key_id.clone(),
                ck.is_some(),
            );
            blocking(move || check_sse_request(&dare, &b, sse.as_ref(), kk.as_deref(), c)).await?;
        }
        if let Some(n) = i.content_length
            && u64::try_from(n).unwrap_or(u64::MAX) > MAX_PUT
        {
            return Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed object size."
            ));
        }
        let expect = Expect::from_headers(&headers)?;
        let alg = expect.algorithm();
        let meta = meta_of(
            i.metadata.as_ref(),
            &[
                (
                    "content-type",
                    i.content_type.as_ref().map(|c| c.to_string()),
                ),
                (
                    "content-encoding",
                    i.content_encoding
                        .clone()
                        .map(|s| {
                            s.replace("aws-chunked", "")
                                .trim_matches(',')
                                .trim()
                                .to_owned()
                        })
                        .filter(|s| !s.is_empty()),
                ),
                ("content-disposition", i.content_disposition.clone()),
                ("content-language", i.content_language.clone()),
                ("cache-control", i.cache_control.clone()),
            ],
        );
        let declared = declared_len(&headers, i.content_length);
        let up = body::upload(i.body, expect, trailing_headers, declared, MAX_PUT);
        let (verdict, seen) = (up.verdict.clone(), up.seen.clone());
        let mut reader = up.reader;
        let dare = self.dare.clone();
        let (bucket, key) = (i.bucket.clone(), i.key.clone());
        let customer_key = ck.as_ref().map(|c| c.key.clone());
        let res = tokio::task::spawn_blocking(move || {
            dare.put(
                &bucket,
                &key,
                &mut reader,
                &PutOptions { meta, customer_key },
            )
        })
        .await
        .map_err(|e| s3_error!(InternalError, "request task failed: {e}"))?;
        let info = match res {
            Ok(info) => info,
            Err(e) => {
                if let Some(v) = verdict.lock().ok().and_then(|mut v| v.take()) {
                    return Err(v);
                }
                return Err(map(e));
            }
        };
        let sse = SseOut::of(&self.dare, &info, ck.as_ref());
        let seen = seen.lock().ok().and_then(|s| s.clone()).unwrap_or_default();
        let mut out = PutObjectOutput {
            e_tag: Some(etag(&info)),
            server_side_encryption: sse.sse.clone(),
            ssekms_key_id: sse.kms_key.clone(),
            sse_customer_algorithm: sse.sse_c_alg(),
            sse_customer_key_md5: sse.sse_c_md5.clone(),
            bucket_key_enabled: sse.kms_key.as_ref().map(|_| true),
            ..Default::default()
        };
        if let (Some(a), Some((_, v))) = (alg, seen.checksum) {
            use crate::body::ChecksumAlg as A;
            match a {
                A::Crc32 => out.checksum_crc32 = Some(v),
                A::Crc32c => out.checksum_crc32c = Some(v),
                A::Crc64Nvme => out.checksum_crc64nvme = Some(v),
                A::Sha1 => out.checksum_sha1 = Some(v),
                A::Sha256 => out.checksum_sha256 = Some(v),
            }
        }
        Ok(S3Response::new(out))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let i = req.input;
        check_key(&i.key)?;
        if i.part_number.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "GET by partNumber is not supported."
            ));
        }
        check_version(i.version_id.as_deref())?;
        let ck = SseC {
            algorithm: i.sse_customer_algorithm.as_deref(),
            key: i.sse_customer_key.as_deref(),
            key_md5: i.sse_customer_key_md5.as_deref(),
        }
        .parse(self.sse_c_ok)?;
        let dare = self.dare.clone();
        let (bucket, key) = (i.bucket.clone(), i.key.clone());
        let customer_key = ck.as_ref().map(|c| c.key.clone());
        let obj = blocking(move || {
            dare.get(&bucket, &key, &GetOptions { customer_key })
                .map_err(map)
        })
        .await?;
        let info = obj.info().clone();
        conditional(&info, i.if_match.as_ref(), i.if_none_match.as_ref())?;
        let size = obj.size();
        let (offset, len, range) = match &i.range {
            None => (0, size, None),
            Some(r) => {
                let r = r.check(size)?;
                (r.start, r.end - r.start, Some(r))
            }
        };
        let m = split_meta(obj.meta());
        let sse = SseOut::of(&self.dare, &info, ck.as_ref());
        let out = GetObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(i64::try_from(len).unwrap_or(i64::MAX)),
            content_range: range
                .as_ref()
                .map(|r| format!("bytes {}-{}/{}", r.start, r.end - 1, size)),
            e_tag: Some(etag(&info)),
            last_modified: Some(last_modified(&info)),
            metadata: m.user,
            content_type: m.std.get("content-type").and_then(|c| c.parse().ok()),
            content_encoding: m.std.get("content-encoding").cloned(),
            content_disposition: m.std.get("content-disposition").cloned(),
            content_language: m.std.get("content-language").cloned(),
            cache_control: m.std.get("cache-control").cloned(),
            server_side_encryption: sse.sse.clone(),
            ssekms_key_id: sse.kms_key.clone(),
            sse_customer_algorithm: sse.sse_c_alg(),
            sse_customer_key_md5: sse.sse_c_md5.clone(),
            bucket_key_enabled: sse.kms_key.as_ref().map(|_| true),
            parts_count: parts_of(&info),
            body: Some(body::download(obj, offset, len)),
            ..Default::default()
        };
        let mut resp = S3Response::new(out);
        if range.is_some() {
            resp.status = Some(StatusCode::PARTIAL_CONTENT);
        }
        Ok(resp)
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = req.input;
        check_key(&i.key)?;
        check_version(i.version_id.as_deref())?;
        let ck = SseC {
            algorithm: i.sse_customer_algorithm.as_deref(),
            key: i.sse_customer_key.as_deref(),
            key_md5: i.sse_customer_key_md5.as_deref(),
        }
        .parse(self.sse_c_ok)?;
        let dare = self.dare.clone();
        let (bucket, key) = (i.bucket.clone(), i.key.clone());
        let customer_key = ck.as_ref().map(|c| c.key.clone());
        // Opening the object checks an SSE-C key (AWS refuses HEAD without the right one)
        // and decrypts the metadata; no data is read.
        let obj = blocking(move || {
            dare.get(&bucket, &key, &GetOptions { customer_key })
                .map_err(map)
        })
        .await?;
        let info = obj.info().clone();
        conditional(&info, i.if_match.as_ref(), i.if_none_match.as_ref())?;
        let size = obj.size();
        let len = match &i.range {
            None => size,
            Some(r) => {
                let r = r.check(size)?;
                r.end - r.start
            }
        };
        let m = split_meta(obj.meta());
        let sse = SseOut::of(&self.dare, &info, ck.as_ref());
        Ok(S3Response::new(HeadObjectOutput {
            accept_ranges: Some("bytes".into()),
            content_length: Some(i64::try_from(len).unwrap_or(i64::MAX)),
            e_tag: Some(etag(&info)),
            last_modified: Some(last_modified(&info)),
            metadata: m.user,
            content_type: m.std.get("content-type").and_then(|c| c.parse().ok()),
            content_encoding: m.std.get("content-encoding").cloned(),
            content_disposition: m.std.get("content-disposition").cloned(),
            content_language: m.std.get("content-language").cloned(),
            cache_control: m.std.get("cache-control").cloned(),
            server_side_encryption: sse.sse.clone(),
            ssekms_key_id: sse.kms_key.clone(),
            sse_customer_algorithm: sse.sse_c_alg(),
            sse_customer_key_md5: sse.sse_c_md5.clone(),
            bucket_key_enabled: sse.kms_key.as_ref().map(|_| true),
            parts_count: parts_of(&info),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let i = req.input;
        check_key(&i.key)?;
        check_version(i.version_id.as_deref())?;
        let dare = self.dare.clone();
        blocking(move || match dare.delete(&i.bucket, &i.key) {
            // S3 answers 204 for a key that is not there.
            Ok(()) | Err(dare::Error::NoSuchObject { .. }) => Ok(()),
            Err(e) => Err(map(e)),
        })
        .await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let i = req.input;
        if i.delete.objects.len() > 1000 {
            return Err(s3_error!(
                MalformedXML,
                "A DeleteObjects request names at most 1000 keys."
            ));
        }
        let quiet = i.delete.quiet.unwrap_or(false);
        let dare = self.dare.clone();
        let bucket = i.bucket;
        let objects = i.delete.objects;
        let (deleted, errors) = blocking(move || {
            dare.bucket(&bucket).map_err(map)?;
            let mut deleted = Vec::new();
            let mut errors = Vec::new();
            for o in objects {
                let err = |code: &str, msg: String| Error {
                    code: Some(code.to_owned()),
                    key: Some(o.key.clone()),
                    message: Some(msg),
                    version_id: o.version_id.clone(),
                };
                if let Some(v) = o.version_id.as_deref()
                    && v != "null"
                {
                    errors.push(err(
                        "NoSuchVersion",
                        "The specified version does not exist (dare buckets are unversioned; \
                         every object's version id is null)"
                            .into(),
                    ));
                    continue;
                }
                if check_key(&o.key).is_err() {
                    errors.push(err("InvalidArgument", "Invalid key".into()));
                    continue;
                }
                match dare.delete(&bucket, &o.key) {
                    Ok(()) | Err(dare::Error::NoSuchObject { .. }) => deleted.push(DeletedObject {
                        key: Some(o.key.clone()),
                        version_id: o.version_id.clone(),
                        ..Default::default()
                    }),
                    Err(e) => {
                        let s = map(e);
                        errors.push(err(
                            s.code().as_str(),
                            s.message().unwrap_or_default().to_owned(),
                        ));
                    }
                }
            }
            Ok((deleted, errors))
        })
        .await?;
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let i = req.input;
        let url = match i.encoding_type.as_ref().map(|e| e.as_str()) {
            None => false,
            Some("url") => true,
            Some(other) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Invalid Encoding Method specified in Request: {other}"
                ));
            }
        };
        let enc = |s: String| if url { url_encode(&s) } else { s };
        let max = i.max_keys.unwrap_or(1000);
        if max < 0 {
            return Err(s3_error!(InvalidArgument, "max-keys cannot be negative"));
        }
        let q = ListQuery {
            prefix: i.prefix.clone().unwrap_or_default(),
            delimiter: i.delimiter.clone().filter(|d| !d.is_empty()),
            start_after: i.start_after.clone().filter(|s| !s.is_empty()),
            continuation_token: i.continuation_token.clone().filter(|s| !s.is_empty()),
            max_keys: usize::try_from(max).unwrap_or(1000).min(1000),
        };
        let dare = self.dare.clone();
        let bucket = i.bucket.clone();
        let page = if max == 0 {
            let d = dare.clone();
            let b = bucket.clone();
            blocking(move || d.bucket(&b).map_err(map)).await?;
            dare::ListPage::default()
        } else {
            blocking(move || dare.list(&bucket, &q).map_err(map)).await?
        };
        let key_count = page.objects.len() + page.common_prefixes.len();
        let contents: Vec<Object> = page
            .objects
            .iter()
            .map(|o| Object {
                key: Some(enc(o.name.clone())),
                e_tag: Some(etag(o)),
                last_modified: Some(last_modified(o)),
                size: Some(i64::try_from(o.size).unwrap_or(i64::MAX)),
                storage_class: Some(ObjectStorageClass::from_static(
                    ObjectStorageClass::STANDARD,
                )),
                ..Default::default()
            })
            .collect();
        let prefixes: Vec<CommonPrefix> = page
            .common_prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc(p)),
            })
            .collect();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: Some(enc(i.prefix.unwrap_or_default())),
            delimiter: i.delimiter.map(enc),
            start_after: i.start_after.map(enc),
            max_keys: Some(max.min(1000)),
            key_count: Some(i32::try_from(key_count).unwrap_or(i32::MAX)),
            continuation_token: i.continuation_token,
            is_truncated: Some(page.is_truncated),
            next_continuation_token: page.next_continuation_token,
            contents: (!contents.is_empty()).then_some(contents),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            encoding_type: i.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let i = req.input;
        let url = matches!(i.encoding_type.as_ref().map(|e| e.as_str()), Some("url"));
        let enc = |s: String| if url { url_encode(&s) } else { s };
        let max = i.max_keys.unwrap_or(1000).clamp(0, 1000);
        let q = ListQuery {
            prefix: i.prefix.clone().unwrap_or_default(),
            delimiter: i.delimiter.clone().filter(|d| !d.is_empty()),
            start_after: i.key_marker.clone().filter(|s| !s.is_empty()),
            continuation_token: None,
            max_keys: usize::try_from(max.max(1)).unwrap_or(1000),
        };
        let dare = self.dare.clone();
        let bucket = i.bucket.clone();
        let page = blocking(move || dare.list(&bucket, &q).map_err(map)).await?;
        let last_obj = page.objects.last().map(|o| o.name.clone());
        let last_pre = page.common_prefixes.last().map(|p| after_prefix(p));
        let next_marker = match (last_obj, last_pre) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let versions: Vec<ObjectVersion> = page
            .objects
            .iter()
            .map(|o| ObjectVersion {
                key: Some(enc(o.name.clone())),
                version_id: Some("null".into()),
                is_latest: Some(true),
                e_tag: Some(etag(o)),
                last_modified: Some(last_modified(o)),
                size: Some(i64::try_from(o.size).unwrap_or(i64::MAX)),
                storage_class: Some(ObjectVersionStorageClass::from_static(
                    ObjectVersionStorageClass::STANDARD,
                )),
                ..Default::default()
            })
            .collect();
        let prefixes: Vec<CommonPrefix> = page
            .common_prefixes
            .into_iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc(p)),
            })
            .collect();
        Ok(S3Response::new(ListObjectVersionsOutput {
            name: Some(i.bucket),
            prefix: Some(enc(i.prefix.unwrap_or_default())),
            delimiter: i.delimiter.map(enc),
            key_marker: Some(i.key_marker.unwrap_or_default()),
            version_id_marker: Some(i.version_id_marker.unwrap_or_default()),
            max_keys: Some(max),
            is_truncated: Some(page.is_truncated),
            next_key_marker: if page.is_truncated {
                next_marker.map(enc)
            } else {
                None
            },
            next_version_id_marker: page.is_truncated.then(|| "null".to_owned()),
            versions: (!versions.is_empty()).then_some(versions),
            common_prefixes: (!prefixes.is_empty()).then_some(prefixes),
            encoding_type: i.encoding_type,
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let i = req.input;
        check_key(&i.key)?;
        check_acl(i.acl.as_ref().map(|a| a.as_str()))?;
        let CopySource::Bucket {
            bucket: src_bucket,
            key: src_key,
            version_id,
        } = &i.copy_source
        else {
            return Err(s3_error!(
                NotImplemented,
                "Access point copy sources are not supported."
            ));
        };
        check_version(version_id.as_deref())?;
        let (src_bucket, src_key) = (src_bucket.to_string(), src_key.to_string());
        check_key(&src_key)?;
        let src_ck = SseC {
            algorithm: i.copy_source_sse_customer_algorithm.as_deref(),
            key: i.copy_source_sse_customer_key.as_deref(),
            key_md5: i.copy_source_sse_customer_key_md5.as_deref(),
        }
        .parse(self.sse_c_ok)?;
        let dst_ck = SseC {
            algorithm: i.sse_customer_algorithm.as_deref(),
            key: i.sse_customer_key.as_deref(),
            key_md5: i.sse_customer_key_md5.as_deref(),
        }
        .parse(self.sse_c_ok)?;
        let replace = match i.metadata_directive.as_ref().map(|d| d.as_str()) {
            None | Some("COPY") => false,
            Some("REPLACE") => true,
            Some(other) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "Unknown metadata directive {other}"
                ));
            }
        };
        if src_bucket == i.bucket
            && src_key == i.key
            && !replace
            && dst_ck.is_none()
            && src_ck.is_none()
            && i.server_side_encryption.is_none()
        {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself \
                 without changing the object's metadata, storage class, website redirect \
                 location or encryption attributes."
            ));
        }
        let new_meta = replace.then(|| {
            meta_of(
                i.metadata.as_ref(),
                &[
                    (
                        "content-type",
                        i.content_type.as_ref().map(|c| c.to_string()),
                    ),
                    ("content-encoding", i.content_encoding.clone()),
                    ("content-disposition", i.content_disposition.clone()),
                    ("content-language", i.content_language.clone()),
                    ("cache-control", i.cache_control.clone()),
                ],
            )
        });
        let dare = self.dare.clone();
        let (dst_bucket, dst_key) = (i.bucket.clone(), i.key.clone());
        let sse_req = (i.server_side_encryption.clone(), i.ssekms_key_id.clone());
        let src_key_secret = src_ck.as_ref().map(|c| c.key.clone());
        let dst_key_secret = dst_ck.as_ref().map(|c| c.key.clone());
        let (if_match, if_none) = (
            i.copy_source_if_match.clone(),
            i.copy_source_if_none_match.clone(),
        );
        let info = blocking(move || {
            check_sse_request(
                &dare,
                &dst_bucket,
                sse_req.0.as_ref(),
                sse_req.1.as_deref(),
                dst_key_secret.is_some(),
            )?;
            let obj = dare
                .get(
                    &src_bucket,
                    &src_key,
                    &GetOptions {
                        customer_key: src_key_secret,
                    },
                )
                .map_err(map)?;
            conditional(obj.info(), if_match.as_ref(), None).map_err(|_| {
                s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                )
            })?;
            if let Some(c) = &if_none
                && conditional(obj.info(), None, Some(c)).is_err()
            {
                return Err(s3_error!(
                    PreconditionFailed,
                    "At least one of the pre-conditions you specified did not hold"
                ));
            }
            let meta = match new_meta {
                Some(m) => m,
                None => obj
                    .meta()
                    .iter()
                    .filter(|(k, _)| !k.starts_with("x-dare-"))
                    .cloned()
                    .collect(),
            };
            let mut r = ObjectRead::new(obj);
            dare.put(
                &dst_bucket,
                &dst_key,
                &mut r,
                &PutOptions {
                    meta,
                    customer_key: dst_key_secret,
                },
            )
            .map_err(map)
        })
        .await?;
        let sse = SseOut::of(&self.dare, &info, dst_ck.as_ref());
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&info)),
                last_modified: Some(last_modified(&info)),
                ..Default::default()
            }),
            server_side_encryption: sse.sse.clone(),
            ssekms_key_id: sse.kms_key.clone(),
            sse_customer_algorithm: sse.sse_c_alg(),
            sse_customer_key_md5: sse.sse_c_md5.clone(),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        crate::multipart::create(self, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        crate::multipart::upload_part(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        crate::multipart::complete(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        crate::multipart::abort(self, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        crate::multipart::list_parts(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        crate::multipart::list_uploads(self, req).await
    }
}

/// dare buckets are unversioned: the only version id is `null`.
pub(crate) fn check_version(v: Option<&str>) -> S3Result<()> {
    match v {
        None | Some("null") => Ok(()),
        Some(_) => Err(s3_error!(
            NoSuchVersion,
            "The specified version does not exist (dare buckets are unversioned)."
        )),
    }
}

/// The part count of a multipart object (its ETag ends in `-N`).
pub(crate) fn parts_of(info: &ObjectInfo) -> Option<i32> {
    info.etag.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}
