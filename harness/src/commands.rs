//! The CLI commands: each takes parsed arguments and prints its report.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use dare_engine::{ObjectInfo, StoreError};
use dare_keys::{CacheMode, HierarchyBlock, KeyKind, Secret32};
use serde_json::json;

use crate::cli::{BucketCommand, GetArgs, HeadArgs, LsArgs, NsCommand, PutArgs, RmArgs, SseC};
use crate::control::Dare;

/// Splits `BUCKET/KEY`.
pub fn split_target(t: &str) -> Result<(&str, &str)> {
    match t.split_once('/') {
        Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok((b, k)),
        _ => bail!("expected BUCKET/KEY, got {t:?} (object names may not contain `/`)"),
    }
}

fn customer_key(s: &SseC) -> Result<Option<Secret32>> {
    match &s.sse_c_key_file {
        None => Ok(None),
        Some(p) => Ok(Some(dare_keys::read_customer_key_file(
            p,
            s.sse_c_key_md5.as_deref(),
        )?)),
    }
}

fn unix(t: Option<SystemTime>) -> Option<u64> {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

/// A human and a JSON description of an object's key reference.
fn key_ref(info: &ObjectInfo) -> (String, serde_json::Value) {
    match info.key_kind {
        None => ("none (stored in clear)".into(), json!(null)),
        Some(KeyKind::Hierarchy) => match HierarchyBlock::parse(&info.key_block) {
            Ok(b) => (
                format!(
                    "hierarchy: namespace {} bucket {} rotation key v{}",
                    b.ns_id, b.bucket_id, b.rotation_version
                ),
                json!({"kind": "hierarchy", "namespace_id": b.ns_id, "bucket_id": b.bucket_id, "rotation_version": b.rotation_version}),
            ),
            Err(_) => (
                "hierarchy (malformed key block)".into(),
                json!({"kind": "hierarchy", "malformed": true}),
            ),
        },
        Some(KeyKind::CustomerKey) => (
            "customer-supplied key (SSE-C)".into(),
            json!({"kind": "sse-c"}),
        ),
        Some(KeyKind::StoreRoot) => ("store root key".into(), json!({"kind": "store-root"})),
        Some(_) => ("unknown".into(), json!({"kind": "unknown"})),
    }
}

pub fn ns(d: &Dare, cmd: NsCommand) -> Result<()> {
    match cmd {
        NsCommand::Create { name, encryption } => {
            let n = d.keys.create_namespace(&name, encryption.is_on())?;
            println!(
                "namespace {} created (id {}, encryption {})",
                n.name,
                n.id,
                on_off(n.encryption)
            );
        }
        NsCommand::Ls(j) => {
            let list = d.keys.namespaces();
            if j.json {
                let v: Vec<_> = list.iter().map(|n| json!({"id": n.id, "name": n.name, "encryption": n.encryption, "created": n.created})).collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for n in list {
                    println!(
                        "{:<24} id {:<4} encryption {}",
                        n.name,
                        n.id,
                        on_off(n.encryption)
                    );
                }
            }
        }
    }
    Ok(())
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

pub fn bucket(d: &Dare, cmd: BucketCommand) -> Result<()> {
    match cmd {
        BucketCommand::Create {
            name,
            namespace,
            encryption,
        } => {
            let b = d.create_bucket(&name, &namespace, encryption.map(|e| e.is_on()))?;
            println!(
                "bucket {} created in namespace {} (encryption {})",
                b.name,
                b.namespace,
                on_off(b.encryption)
            );
        }
        BucketCommand::Ls(j) => print_buckets(d, j.json)?,
    }
    Ok(())
}

fn print_buckets(d: &Dare, as_json: bool) -> Result<()> {
    let list = d.keys.buckets(None)?;
    if as_json {
        let v: Vec<_> = list
            .iter()
            .map(|b| json!({"name": b.name, "id": b.id, "namespace": b.namespace, "encryption": b.encryption, "created": b.created}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for b in list {
            println!(
                "{:<24} namespace {:<16} encryption {}",
                b.name,
                b.namespace,
                on_off(b.encryption)
            );
        }
    }
    Ok(())
}

fn parse_meta(items: &[String]) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("--meta expects KEY=VALUE, got {s:?}"),
        })
        .collect()
}

pub fn put(d: &Dare, a: PutArgs) -> Result<()> {
    let (bucket, key) = split_target(&a.target)?;
    let meta = parse_meta(&a.meta)?;
    let provider = d.write_provider(bucket, customer_key(&a.sse_c)?, CacheMode::On)?;
    let info = match a.file.as_deref() {
        None => d.objects.put(
            bucket,
            key,
            &mut io::stdin().lock(),
            provider.as_deref(),
            &meta,
        )?,
        Some(p) if p == Path::new("-") => d.objects.put(
            bucket,
            key,
            &mut io::stdin().lock(),
            provider.as_deref(),
            &meta,
        )?,
        Some(p) => {
            let mut f = File::open(p).with_context(|| format!("opening {}", p.display()))?;
            d.objects
                .put(bucket, key, &mut f, provider.as_deref(), &meta)?
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info_json(&info, None))?);
    } else {
        println!(
            "{bucket}/{key}: {} bytes stored ({})",
            info.size,
            if info.encrypted {
                "encrypted"
            } else {
                "not encrypted"
            }
        );
    }
    Ok(())
}

/// Parses an inclusive HTTP-style range against an object of `size` bytes into (offset, len).
pub fn parse_range(spec: &str, size: u64) -> Result<(u64, u64)> {
    let (a, b) = spec
        .split_once('-')
        .with_context(|| format!("--range expects START-END, START- or -SUFFIX, got {spec:?}"))?;
    let num = |s: &str| {
        s.trim()
            .parse::<u64>()
            .with_context(|| format!("--range: {s:?} is not a byte position"))
    };
    match (a.trim().is_empty(), b.trim().is_empty()) {
        (false, false) => {
            let (s, e) = (num(a)?, num(b)?);
            if e < s {
                bail!("--range {spec}: the range is empty (END is before START)");
            }
            Ok((s, e - s + 1))
        }
        (false, true) => {
            let s = num(a)?;
            Ok((s, size.saturating_sub(s)))
        }
        (true, false) => {
            let n = num(b)?.min(size);
            Ok((size - n, n))
        }
        (true, true) => bail!("--range expects START-END, START- or -SUFFIX, got {spec:?}"),
    }
}

pub fn get(d: &Dare, a: GetArgs) -> Result<()> {
    let (bucket, key) = split_target(&a.target)?;
    let obj = d.open_for_read(bucket, key, customer_key(&a.sse_c)?)?;
    let batch = d.objects.config().batch_bytes;
    let range = a
        .range
        .as_deref()
        .map(|r| parse_range(r, obj.size()))
        .transpose()?;
    let read = |w: &mut dyn Write| -> Result<(), StoreError> {
        let mut sink = |p: &[u8]| w.write_all(p);
        match range {
            Some((off, len)) => obj.read_range(off, len, batch, &mut sink)?,
            None => obj.read_all(batch, &mut sink)?,
        }
        Ok(())
    };
    match &a.output {
        None => {
            let stdout = io::stdout();
            let mut w = BufWriter::with_capacity(1 << 20, stdout.lock());
            read(&mut w)?;
            w.flush()?;
        }
        Some(path) => write_atomically(path, |f| read(f).map_err(anyhow::Error::from))?,
    }
    Ok(())
}

/// Writes `path` through a temporary file in the same directory that is renamed into place
/// only when `fill` succeeded; on failure the temporary file is removed and `path` untouched.
pub fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .context("output path has no file name")?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.dare-partial-{}", std::process::id()));
    let result = (|| -> Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn info_json(info: &ObjectInfo, meta: Option<&[(String, String)]>) -> serde_json::Value {
    let (_, kr) = key_ref(info);
    json!({
        "bucket": info.bucket,
        "key": info.key,
        "size": info.size,
        "stored_size": info.stored_size,
        "chunk_size": info.chunk_size,
        "encrypted": info.encrypted,
        "encryption": encryption_name(info),
        "key_ref": kr,
        "modified": unix(info.modified),
        "metadata": meta.map(|m| m.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>()),
    })
}

fn encryption_name(info: &ObjectInfo) -> &'static str {
    match info.key_kind {
        None => "none",
        Some(KeyKind::CustomerKey) => "SSE-C (AES-256-GCM)",
        Some(_) => "AES-256-GCM",
    }
}

pub fn head(d: &Dare, a: HeadArgs) -> Result<()> {
    let (bucket, key) = split_target(&a.target)?;
    d.keys.bucket(bucket)?;
    let info = d.objects.head(bucket, key)?;
    // User metadata is encrypted: show it when the object opens with the keys at hand.
    let meta = match d.open_for_read(bucket, key, customer_key(&a.sse_c)?) {
        Ok(o) => Some(o.meta().to_vec()),
        Err(e)
            if matches!(
                e.downcast_ref::<StoreError>(),
                Some(StoreError::Open(dare_engine::OpenError::Key(
                    dare_keys::KeyError::CustomerKeyRequired
                )))
            ) =>
        {
            None
        }
        Err(e) => return Err(e),
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&info_json(&info, meta.as_deref()))?
        );
        return Ok(());
    }
    let (kr, _) = key_ref(&info);
    println!("object:      {bucket}/{key}");
    println!("size:        {} bytes", info.size);
    println!("stored:      {} bytes", info.stored_size);
    println!("chunk size:  {} bytes", info.chunk_size);
    println!("encryption:  {}", encryption_name(&info));
    println!("key:         {kr}");
    if let Some(t) = unix(info.modified) {
        println!("modified:    {t} (unix seconds)");
    }
    match meta {
        Some(m) if m.is_empty() => println!("metadata:    (none)"),
        Some(m) => {
            for (k, v) in m {
                println!("metadata:    {k}={v}");
            }
        }
        None => println!(
            "metadata:    (encrypted with a customer key: pass --sse-c-key-file to read it)"
        ),
    }
    Ok(())
}

pub fn ls(d: &Dare, a: LsArgs) -> Result<()> {
    let Some(bucket) = a.bucket else {
        return print_buckets(d, a.json);
    };
    d.keys.bucket(&bucket)?;
    let list = d.objects.list(&bucket)?;
    if a.json {
        let v: Vec<_> = list
            .iter()
            .map(|(k, sz, t)| json!({"key": k, "stored_size": sz, "modified": unix(*t)}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for (k, sz, _) in list {
            println!("{sz:>14}  {bucket}/{k}");
        }
    }
    Ok(())
}

pub fn rm(d: &Dare, a: RmArgs) -> Result<()> {
    let (bucket, key) = split_target(&a.target)?;
    d.keys.bucket(bucket)?;
    d.objects.delete(bucket, key)?;
    Ok(())
}

/// The store a command works on must exist: a clear message otherwise.
pub fn require_store(dir: &Path) -> Result<()> {
    if !dir.join("dare-store.conf").exists() {
        bail!(
            "{} is not a dare store (create one with `dare init`, or pass --store / set DARE_STORE)",
            dir.display()
        );
    }
    Ok(())
}
