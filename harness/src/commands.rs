//! The store commands: each parses what clap could not (targets, metadata pairs, key files),
//! calls [`dare::Dare`] and prints the result for a person or, with `--json`, for a script.
//! No logic a server would need lives here: policy, names, ranges, listing, rewrap and fsck
//! are the library's.

pub mod hsm;
pub mod keys;
pub mod kms;
pub mod maintenance;
pub mod object;
pub mod rekey;
pub mod resource;
pub mod site;

use std::fmt;
use std::io::{self, Write};
use std::path::Path;

use anyhow::Result;
use dare::{KeyRef, ObjectInfo, Secret32};
use dare_engine::format::hex;
use serde_json::{Value, json};

use crate::cli::SseC;

/// A command line the parser accepted but that does not make sense (exit status 2, as
/// clap's own usage errors).
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// Splits `BUCKET/NAME` at the first `/`: the name keeps every further `/`. The name must be
/// UTF-8 (the library checks its length).
pub fn split_target(t: &std::ffi::OsStr) -> Result<(&str, &str)> {
    let Some(t) = t.to_str() else {
        return Err(Usage(format!(
            "{:?} is not valid UTF-8: bucket and object names are UTF-8",
            t
        ))
        .into());
    };
    match t.split_once('/') {
        Some((b, n)) if !b.is_empty() && !n.is_empty() => Ok((b, n)),
        _ => Err(Usage(format!(
            "expected BUCKET/NAME, got {:?} (the bucket is up to the first `/`, the name is \
             everything after it)",
            dare::printable(t)
        ))
        .into()),
    }
}

/// The customer key the SSE-C flags name, if any.
fn customer_key(s: &SseC) -> Result<Option<Secret32>> {
    match &s.sse_c_key_file {
        None => Ok(None),
        Some(p) => Ok(Some(
            dare::read_customer_key_file(p, s.sse_c_key_md5.as_deref())
                .map_err(dare::Error::from)?,
        )),
    }
}

/// Prints `v` as pretty JSON and a newline. (Serialized first, so that a closed standard
/// output surfaces as the `io::Error` it is.)
pub(crate) fn print_json(v: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(v)?;
    let mut o = crate::out::stdout().lock();
    writeln!(o, "{text}")?;
    o.flush()?;
    Ok(())
}

/// Writes one line to standard error; a closed standard error is not worth failing for.
fn note(msg: fmt::Arguments<'_>) {
    let _ = writeln!(io::stderr(), "{msg}");
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS` (UTC); with `iso`, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn utc(ms: u64, iso: bool) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's days-to-civil, for the proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    if iso {
        format!(
            "{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}.{:03}Z",
            ms % 1000
        )
    } else {
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02}")
    }
}

/// A human and a JSON description of what protects an object's data key.
fn key_ref(k: &KeyRef) -> (String, Value) {
    match *k {
        KeyRef::None => ("none (stored in clear)".into(), Value::Null),
        KeyRef::Hierarchy {
            namespace_id,
            bucket_id,
            rotation_version,
        } => (
            format!(
                "bucket key: namespace {namespace_id}, bucket {bucket_id}, rotation key \
                 v{rotation_version}"
            ),
            json!({
                "kind": "hierarchy",
                "namespace_id": namespace_id,
                "bucket_id": bucket_id,
                "rotation_version": rotation_version,
            }),
        ),
        KeyRef::CustomerKey => (
            "customer-supplied key (SSE-C)".into(),
            json!({"kind": "sse-c"}),
        ),
        KeyRef::Other(kind) => (
            format!("unknown envelope kind {kind}"),
            json!({"kind": "unknown", "envelope_kind": kind}),
        ),
    }
}

fn encryption_name(info: &ObjectInfo) -> &'static str {
    match (info.encrypted, info.key_ref) {
        (false, _) => "none",
        (true, KeyRef::CustomerKey) => "SSE-C (AES-256-GCM)",
        (true, _) if info.kms_key.is_some() => "SSE-KMS (AES-256-GCM)",
        (true, _) => "AES-256-GCM",
    }
}

/// An object as JSON; `meta` is `None` when the metadata could not be read (SSE-C without
/// the key).
fn info_json(info: &ObjectInfo, meta: Option<&[(String, String)]>) -> Value {
    let (_, kr) = key_ref(&info.key_ref);
    let mut v = json!({
        "bucket": info.bucket,
        "name": info.name,
        "object_id": hex(&info.object_id),
        "size": info.size,
        "stored_size": info.stored_size,
        "chunk_size": info.chunk_size,
        "etag": info.etag,
        "created_ms": info.created_ms,
        "created": utc(info.created_ms, true),
        "format": info.format,
        "encrypted": info.encrypted,
        "encryption": encryption_name(info),
        "key_ref": kr,
        "kms_key_id": info.kms_key.as_ref().map(|k| &k.0),
        "kms_key_version": info.kms_key.as_ref().map(|k| k.1),
    });
    if let Some(m) = meta {
        v["metadata"] = m
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    v
}

/// A path inside the store directory, for messages (`objects/<bucket>/<xx>/<id>`).
fn store_path(rel: &Path) -> String {
    Path::new(dare::layout::OBJECTS_DIR)
        .join(rel)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0, false), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000, false), "2000-02-29 00:00:00");
        assert_eq!(utc(1_798_761_599_999, true), "2026-12-31T23:59:59.999Z");
    }

    #[test]
    fn targets_split_at_the_first_slash() {
        fn ok(t: &str) -> (&str, &str) {
            split_target(std::ffi::OsStr::new(t)).unwrap()
        }
        assert_eq!(ok("b/photos/2026/cat.jpg"), ("b", "photos/2026/cat.jpg"));
        assert_eq!(ok("b//x"), ("b", "/x"));
        for bad in ["b", "/x", "b/", ""] {
            assert!(split_target(std::ffi::OsStr::new(bad)).is_err(), "{bad:?}");
        }
        use std::os::unix::ffi::OsStrExt;
        let e = split_target(std::ffi::OsStr::from_bytes(b"b/\xff")).unwrap_err();
        assert!(e.downcast_ref::<Usage>().is_some());
    }
}
