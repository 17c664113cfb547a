//! Multipart upload (docs/S3.md §4) on today's library, without server memory: the upload
//! and its parts are objects of the bucket under [`INTERNAL_PREFIX`], so they are encrypted
//! as any object (bucket policy, or the customer key for SSE-C parts), survive a restart and
//! are covered by fsck; listings do not show them.
//!
//! - the upload record `\0dare/mpu/<upload id>`: no data; its (sealed) metadata holds the
//!   target key, the time it was created, the object metadata given at creation and, for
//!   SSE-C, the key's MD5 (every part and the completion must bring the same key);
//! - part N: `\0dare/mpu/<upload id>/<N, 5 digits>`, written by UploadPart as a normal put
//!   (its checks: Content-MD5, `x-amz-checksum-*`, size);
//! - CompleteMultipartUpload checks the list (ascending, every part there with the ETag
//!   given, all but the last at least 5 MiB), then streams the parts, verified, into one new
//!   object with one put — the commit publishes it atomically — and then removes the parts
//!   and the record. Completion therefore re-reads and re-writes the data once (documented).
//!   The object's ETag is dare's ETag of the whole object with S3's `-N` suffix.
//! - Abort removes the parts and the record.

use std::time::{Duration, UNIX_EPOCH};

use dare::{Dare, GetOptions, ListQuery, PutOptions};
use s3s::dto::*;
use s3s::{S3Error, S3Request, S3Response, S3Result, s3_error};

use crate::body::{self, Expect};
use crate::error::map;
use crate::service::{
    DareS3, INTERNAL_PREFIX, ObjectRead, SseOut, blocking, check_acl, check_key, check_sse_request,
    declared_len, meta_of,
};
use crate::sse::{CustomerKey, SseC};

/// S3's smallest part (all but the last).
const MIN_PART: u64 = 5 * 1024 * 1024;
/// S3's part numbers: 1..=10000.
const MAX_PART_NUMBER: i32 = 10_000;

fn root() -> String {
    format!("{INTERNAL_PREFIX}mpu/")
}
fn record_name(id: &str) -> String {
    format!("{}{id}", root())
}
fn part_prefix(id: &str) -> String {
    format!("{}{id}/", root())
}
fn part_name(id: &str, n: i32) -> String {
    format!("{}{n:05}", part_prefix(id))
}

fn new_upload_id() -> S3Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| s3_error!(InternalError, "no randomness: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn no_such_upload() -> S3Error {
    s3_error!(
        NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may \
         have been aborted or completed."
    )
}

fn check_upload_id(id: &str) -> S3Result<()> {
    if id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(no_such_upload())
    }
}

/// What an upload record says.
struct Record {
    key: String,
    initiated_ms: u64,
    sse_c_md5: Option<String>,
    meta: Vec<(String, String)>,
}

fn read_record(dare: &Dare, bucket: &str, id: &str) -> S3Result<Record> {
    let obj = match dare.get(bucket, &record_name(id), &GetOptions::default()) {
        Ok(o) => o,
        Err(dare::Error::NoSuchObject { .. }) => return Err(no_such_upload()),
        Err(e) => return Err(map(e)),
    };
    let mut r = Record {
        key: String::new(),
        initiated_ms: obj.info().created_ms,
        sse_c_md5: None,
        meta: Vec::new(),
    };
    for (k, v) in obj.meta() {
        match k.as_str() {
            "x-dare-mpu-key" => r.key = v.clone(),
            "x-dare-mpu-sse-c-md5" => r.sse_c_md5 = Some(v.clone()),
            _ => r.meta.push((k.clone(), v.clone())),
        }
    }
    Ok(r)
}

/// The record must be for `key`, and the request must bring the customer key the upload
/// was created with (or none if it had none).
fn check_record(r: &Record, key: &str, ck: Option<&CustomerKey>) -> S3Result<()> {
    if r.key != key {
        return Err(no_such_upload());
    }
    match (&r.sse_c_md5, ck) {
        (None, None) => Ok(()),
        (Some(want), Some(c)) if *want == c.md5 => Ok(()),
        (Some(_), None) => Err(s3_error!(
            InvalidRequest,
            "The multipart upload initiate requested encryption. Subsequent part requests \
             must include the appropriate encryption parameters."
        )),
        (None, Some(_)) => Err(s3_error!(
            InvalidRequest,
            "The multipart upload initiate did not request encryption with a customer key. \
             Subsequent part requests must not include encryption parameters."
        )),
        (Some(_), Some(_)) => Err(s3_error!(
            InvalidArgument,
            "The provided SSE-C key does not match the one the upload was created with."
        )),
    }
}

/// Every name under `prefix` (internal listings are not filtered), page by page.
fn all_names(
    dare: &Dare,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<dare::ObjectInfo>, dare::Error> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let page = dare.list(
            bucket,
            &ListQuery {
                prefix: prefix.to_owned(),
                delimiter: None,
                start_after: None,
                continuation_token: token.take(),
                max_keys: 1000,
            },
        )?;
        out.extend(page.objects);
        match page.next_continuation_token {
            Some(t) if page.is_truncated => token = Some(t),
            _ => return Ok(out),
        }
    }
}

fn remove_upload(dare: &Dare, bucket: &str, id: &str) -> Result<(), dare::Error> {
    for p in all_names(dare, bucket, &part_prefix(id))? {
        match dare.delete(bucket, &p.name) {
            Ok(()) | Err(dare::Error::NoSuchObject { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    match dare.delete(bucket, &record_name(id)) {
        Ok(()) | Err(dare::Error::NoSuchObject { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// DeleteBucket: a bucket whose only objects are incomplete uploads loses them first
/// (S3 does not let them keep a bucket alive either).
pub(crate) fn abort_all_if_only_uploads(dare: &Dare, bucket: &str) -> S3Result<()> {
    let visible = dare
        .list(
            bucket,
            &ListQuery {
                max_keys: 1,
                ..ListQuery::default()
            },
        )
        .map_err(map)?;
    if !visible.objects.is_empty() || !visible.common_prefixes.is_empty() {
        return Ok(()); // delete_bucket refuses it as not empty
    }
    for o in all_names(dare, bucket, INTERNAL_PREFIX).map_err(map)? {
        match dare.delete(bucket, &o.name) {
            Ok(()) | Err(dare::Error::NoSuchObject { .. }) => {}
            Err(e) => return Err(map(e)),
        }
    }
    Ok(())
}

pub(crate) async fn create(
    s: &DareS3,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let i = req.input;
    check_key(&i.key)?;
    check_acl(i.acl.as_ref().map(|a| a.as_str()))?;
    let ck = SseC {
        algorithm: i.sse_customer_algorithm.as_deref(),
        key: i.sse_customer_key.as_deref(),
        key_md5: i.sse_customer_key_md5.as_deref(),
    }
    .parse(s.sse_c_ok)?;
    let id = new_upload_id()?;
    let mut meta = meta_of(
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
    );
    meta.push(("x-dare-mpu-key".into(), i.key.clone()));
    if let Some(c) = &ck {
        meta.push(("x-dare-mpu-sse-c-md5".into(), c.md5.clone()));
    }
    let dare = s.dare.clone();
    let (bucket, rid) = (i.bucket.clone(), record_name(&id));
    let (sse, kk, has_ck) = (
        i.server_side_encryption.clone(),
        i.ssekms_key_id.clone(),
        ck.is_some(),
    );
    let info = blocking(move || {
        check_sse_request(&dare, &bucket, sse.as_ref(), kk.as_deref(), has_ck)?;
        dare.put(
            &bucket,
            &rid,
            &mut std::io::empty(),
            &PutOptions {
                meta,
                customer_key: None,
            },
        )
        .map_err(map)
    })
    .await?;
    let mut sse = SseOut::of(&s.dare, &info, None);
    if let Some(c) = &ck {
        sse = SseOut {
            sse_c_md5: Some(c.md5.clone()),
            ..SseOut::default()
        };
    }
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(i.bucket),
        key: Some(i.key),
        upload_id: Some(id),
        server_side_encryption: sse.sse.clone(),
        ssekms_key_id: sse.kms_key.clone(),
        sse_customer_algorithm: sse.sse_c_alg(),
        sse_customer_key_md5: sse.sse_c_md5.clone(),
        ..Default::default()
    }))
}

pub(crate) async fn upload_part(
    s: &DareS3,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let S3Request {
        input: i,
        headers,
        trailing_headers,
        ..
    } = req;
    check_key(&i.key)?;
    check_upload_id(&i.upload_id)?;
    if !(1..=MAX_PART_NUMBER).contains(&i.part_number) {
        return Err(s3_error!(
            InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive"
        ));
    }
    let ck = SseC {
        algorithm: i.sse_customer_algorithm.as_deref(),
        key: i.sse_customer_key.as_deref(),
        key_md5: i.sse_customer_key_md5.as_deref(),
    }
    .parse(s.sse_c_ok)?;
    {
        let dare = s.dare.clone();
        let (b, id, key, md5) = (
            i.bucket.clone(),
            i.upload_id.clone(),
            i.key.clone(),
            ck.as_ref().map(|c| c.md5.clone()),
        );
        blocking(move || {
            let r = read_record(&dare, &b, &id)?;
            let probe = md5.map(|m| CustomerKey {
                key: dare::Secret32::from_bytes("unused", [0; 32]),
                md5: m,
            });
            check_record(&r, &key, probe.as_ref())
        })
        .await?;
    }
    let expect = Expect::from_headers(&headers)?;
    let declared = declared_len(&headers, i.content_length);
    let up = body::upload(i.body, expect, trailing_headers, declared, body::MAX_PUT);
    let verdict = up.verdict.clone();
    let mut reader = up.reader;
    let dare = s.dare.clone();
    let (bucket, name) = (i.bucket.clone(), part_name(&i.upload_id, i.part_number));
    let customer_key = ck.as_ref().map(|c| c.key.clone());
    let res = tokio::task::spawn_blocking(move || {
        dare.put(
            &bucket,
            &name,
            &mut reader,
            &PutOptions {
                meta: Vec::new(),
                customer_key,
            },
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
    // The upload may have been aborted or completed while the part was being written: then
    // this part is an orphan; remove it and say so.
    {
        let dare = s.dare.clone();
        let (b, id, name) = (i.bucket.clone(), i.upload_id.clone(), info.name.clone());
        blocking(move || match dare.head(&b, &record_name(&id)) {
            Ok(_) => Ok(()),
            Err(_) => {
                let _ = dare.delete(&b, &name);
                Err(no_such_upload())
            }
        })
        .await?;
    }
    let sse = SseOut::of(&s.dare, &info, ck.as_ref());
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(ETag::Strong(info.etag.clone())),
        server_side_encryption: sse.sse.clone(),
        ssekms_key_id: sse.kms_key.clone(),
        sse_customer_algorithm: sse.sse_c_alg(),
        sse_customer_key_md5: sse.sse_c_md5.clone(),
        ..Default::default()
    }))
}

/// Reads the parts one after the other (each opened, with the customer key if any, only
/// when the previous one is done).
struct Chain {
    dare: std::sync::Arc<Dare>,
    bucket: String,
    names: std::vec::IntoIter<String>,
    customer_key: Option<dare::Secret32>,
    cur: Option<ObjectRead>,
}

impl std::io::Read for Chain {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(r) = &mut self.cur {
                let n = r.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.cur = None;
            }
            let Some(name) = self.names.next() else {
                return Ok(0);
            };
            let obj = self
                .dare
                .get(
                    &self.bucket,
                    &name,
                    &GetOptions {
                        customer_key: self.customer_key.clone(),
                    },
                )
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.cur = Some(ObjectRead::new(obj));
        }
    }
}

pub(crate) async fn complete(
    s: &DareS3,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let i = req.input;
    check_key(&i.key)?;
    check_upload_id(&i.upload_id)?;
    let ck = SseC {
        algorithm: i.sse_customer_algorithm.as_deref(),
        key: i.sse_customer_key.as_deref(),
        key_md5: i.sse_customer_key_md5.as_deref(),
    }
    .parse(s.sse_c_ok)?;
    let listed: Vec<(i32, Option<String>)> = i
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            (
                p.part_number.unwrap_or(0),
                p.e_tag.map(|t| t.value().to_owned()),
            )
        })
        .collect();
    if listed.is_empty() {
        return Err(s3_error!(
            MalformedXML,
            "The XML you provided was not well-formed or did not validate against our \
             published schema (a CompleteMultipartUpload names at least one part)."
        ));
    }
    if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(s3_error!(
            InvalidPartOrder,
            "The list of parts was not in ascending order. The parts list must be specified \
             in order by part number."
        ));
    }
    let dare = s.dare.clone();
    let (bucket, key, id) = (i.bucket.clone(), i.key.clone(), i.upload_id.clone());
    let info = blocking(move || {
        let r = read_record(&dare, &bucket, &id)?;
        check_record(&r, &key, ck.as_ref())?;
        let have = all_names(&dare, &bucket, &part_prefix(&id)).map_err(map)?;
        let mut names = Vec::with_capacity(listed.len());
        for (k, (n, tag)) in listed.iter().enumerate() {
            let name = part_name(&id, *n);
            let Some(p) = have.iter().find(|p| p.name == name) else {
                return Err(s3_error!(
                    InvalidPart,
                    "One or more of the specified parts could not be found. The part may not \
                     have been uploaded, or the specified entity tag may not match the part's \
                     entity tag."
                ));
            };
            if tag
                .as_deref()
                .is_some_and(|t| t.trim_matches('"') != p.etag)
            {
                return Err(s3_error!(
                    InvalidPart,
                    "One or more of the specified parts could not be found. The part may not \
                     have been uploaded, or the specified entity tag may not match the part's \
                     entity tag."
                ));
            }
            if k + 1 < listed.len() && p.size < MIN_PART {
                return Err(s3_error!(
                    EntityTooSmall,
                    "Your proposed upload is smaller than the minimum allowed object size."
                ));
            }
            names.push(name);
        }
        let parts = u32::try_from(names.len()).unwrap_or(u32::MAX);
        let customer_key = ck.as_ref().map(|c| c.key.clone());
        let mut chain = Chain {
            dare: dare.clone(),
            bucket: bucket.clone(),
            names: names.into_iter(),
            customer_key: customer_key.clone(),
            cur: None,
        };
        let info = dare
            .put_multipart(
                &bucket,
                &key,
                &mut chain,
                &PutOptions {
                    meta: r.meta,
                    customer_key,
                },
                parts,
            )
            .map_err(map)?;
        // Published: the parts and the record go (a failure here leaves an upload that
        // ListMultipartUploads still shows and AbortMultipartUpload removes).
        remove_upload(&dare, &bucket, &id).map_err(map)?;
        Ok((info, ck.map(|c| c.md5)))
    })
    .await?;
    let (info, md5) = info;
    let mut sse = SseOut::of(&s.dare, &info, None);
    if md5.is_some() {
        sse = SseOut::default();
    }
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(i.bucket.clone()),
        key: Some(i.key.clone()),
        e_tag: Some(ETag::Strong(info.etag.clone())),
        location: Some(format!("/{}/{}", i.bucket, i.key)),
        server_side_encryption: sse.sse.clone(),
        ssekms_key_id: sse.kms_key.clone(),
        ..Default::default()
    }))
}

pub(crate) async fn abort(
    s: &DareS3,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let i = req.input;
    check_key(&i.key)?;
    check_upload_id(&i.upload_id)?;
    let dare = s.dare.clone();
    blocking(move || {
        let r = read_record(&dare, &i.bucket, &i.upload_id)?;
        if r.key != i.key {
            return Err(no_such_upload());
        }
        remove_upload(&dare, &i.bucket, &i.upload_id).map_err(map)
    })
    .await?;
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub(crate) async fn list_parts(
    s: &DareS3,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let i = req.input;
    check_key(&i.key)?;
    check_upload_id(&i.upload_id)?;
    let max = i.max_parts.unwrap_or(1000).clamp(1, 1000);
    let marker = i.part_number_marker.unwrap_or(0).max(0);
    let dare = s.dare.clone();
    let (bucket, key, id) = (i.bucket.clone(), i.key.clone(), i.upload_id.clone());
    let parts = blocking(move || {
        let r = read_record(&dare, &bucket, &id)?;
        if r.key != key {
            return Err(no_such_upload());
        }
        let page = dare
            .list(
                &bucket,
                &ListQuery {
                    prefix: part_prefix(&id),
                    start_after: (marker > 0).then(|| part_name(&id, marker)),
                    max_keys: usize::try_from(max).unwrap_or(1000),
                    ..ListQuery::default()
                },
            )
            .map_err(map)?;
        Ok(page)
    })
    .await?;
    let list: Vec<Part> = parts
        .objects
        .iter()
        .filter_map(|o| {
            let n: i32 = o.name.rsplit('/').next()?.parse().ok()?;
            Some(Part {
                part_number: Some(n),
                e_tag: Some(ETag::Strong(o.etag.clone())),
                size: Some(i64::try_from(o.size).unwrap_or(i64::MAX)),
                last_modified: Some(Timestamp::from(
                    UNIX_EPOCH + Duration::from_millis(o.created_ms),
                )),
                ..Default::default()
            })
        })
        .collect();
    let next = list.last().and_then(|p| p.part_number);
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(i.bucket),
        key: Some(i.key),
        upload_id: Some(i.upload_id),
        max_parts: Some(max),
        part_number_marker: Some(marker),
        is_truncated: Some(parts.is_truncated),
        next_part_number_marker: if parts.is_truncated { next } else { None },
        parts: (!list.is_empty()).then_some(list),
        storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
        ..Default::default()
    }))
}

pub(crate) async fn list_uploads(
    s: &DareS3,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let i = req.input;
    let max = i.max_uploads.unwrap_or(1000).clamp(1, 1000);
    let dare = s.dare.clone();
    let bucket = i.bucket.clone();
    let prefix = i.prefix.clone().unwrap_or_default();
    let key_marker = i.key_marker.clone().unwrap_or_default();
    let id_marker = i.upload_id_marker.clone().unwrap_or_default();
    let mut uploads = blocking(move || {
        dare.bucket(&bucket).map_err(map)?;
        let mut out = Vec::new();
        // The records (not the parts: with the delimiter they roll up).
        let mut token = None;
        loop {
            let page = dare
                .list(
                    &bucket,
                    &ListQuery {
                        prefix: root(),
                        delimiter: Some("/".into()),
                        continuation_token: token.take(),
                        max_keys: 1000,
                        ..ListQuery::default()
                    },
                )
                .map_err(map)?;
            for o in &page.objects {
                let id = o.name[root().len()..].to_owned();
                let r = match read_record(&dare, &bucket, &id) {
                    Ok(r) => r,
                    Err(_) => continue, // completed or aborted meanwhile
                };
                if r.key.starts_with(&prefix)
                    && (r.key.as_str(), id.as_str()) > (key_marker.as_str(), id_marker.as_str())
                {
                    out.push((r.key, id, r.initiated_ms));
                }
            }
            match page.next_continuation_token {
                Some(t) if page.is_truncated => token = Some(t),
                _ => break,
            }
        }
        Ok(out)
    })
    .await?;
    uploads.sort();
    let truncated = uploads.len() > usize::try_from(max).unwrap_or(1000);
    uploads.truncate(usize::try_from(max).unwrap_or(1000));
    let next = uploads.last().cloned();
    let list: Vec<MultipartUpload> = uploads
        .into_iter()
        .map(|(key, id, ms)| MultipartUpload {
            key: Some(key),
            upload_id: Some(id),
            initiated: Some(Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))),
            storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(i.bucket),
        prefix: i.prefix,
        key_marker: i.key_marker,
        upload_id_marker: i.upload_id_marker,
        max_uploads: Some(max),
        is_truncated: Some(truncated),
        next_key_marker: if truncated {
            next.as_ref().map(|n| n.0.clone())
        } else {
            None
        },
        next_upload_id_marker: if truncated { next.map(|n| n.1) } else { None },
        uploads: (!list.is_empty()).then_some(list),
        ..Default::default()
    }))
}
