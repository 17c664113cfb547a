//! `dare put`, `get`, `head`, `ls BUCKET` and `rm`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use dare::{Dare, GetOptions, ListQuery, PutOptions, printable};
use serde_json::json;

use super::{
    Usage, customer_key, encryption_name, hex, info_json, key_ref, print_json, split_target, utc,
};
use crate::cli::{GetArgs, HeadArgs, LsArgs, PutArgs, RmArgs};

fn parse_meta(items: &[String]) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(Usage(format!("--meta expects KEY=VALUE, got {s:?}")).into()),
        })
        .collect()
}

/// `dare put`.
pub fn put(d: &Dare, a: PutArgs) -> Result<()> {
    let (bucket, name) = split_target(&a.target)?;
    let opts = PutOptions {
        meta: parse_meta(&a.meta)?,
        customer_key: customer_key(&a.sse_c)?,
    };
    let info = match a.file.as_deref() {
        None => d.put(bucket, name, &mut io::stdin().lock(), &opts)?,
        Some(p) if p == Path::new("-") => d.put(bucket, name, &mut io::stdin().lock(), &opts)?,
        Some(p) => {
            let mut f = File::open(p).with_context(|| format!("cannot open {}", p.display()))?;
            d.put(bucket, name, &mut f, &opts)?
        }
    };
    if a.out.json {
        return print_json(&info_json(&info, None));
    }
    writeln!(
        crate::out::stdout(),
        "{bucket}/{}: {} bytes stored ({}, ETag {})",
        printable(name),
        info.size,
        if info.encrypted {
            "encrypted"
        } else {
            "not encrypted"
        },
        info.etag
    )?;
    Ok(())
}

/// Passes verified plaintext to `w`, remembering a write error so that a closed pipe can be
/// told apart from a failed read (the library reports the sink's error as its own).
struct Sink<'a> {
    w: &'a mut dyn Write,
    failed: Option<io::ErrorKind>,
}

impl Sink<'_> {
    fn write(&mut self, p: &[u8]) -> io::Result<()> {
        let r = self.w.write_all(p);
        if let Err(e) = &r {
            self.failed = Some(e.kind());
        }
        r
    }

    /// The error to report for `e`: the sink's own, if writing failed.
    fn error(&self, e: dare::Error) -> anyhow::Error {
        match self.failed {
            Some(kind) => io::Error::new(kind, format!("writing the output failed: {e}")).into(),
            None => e.into(),
        }
    }
}

/// `dare get`.
pub fn get(d: &Dare, a: GetArgs) -> Result<()> {
    let (bucket, name) = split_target(&a.target)?;
    let obj = d.get(
        bucket,
        name,
        &GetOptions {
            customer_key: customer_key(&a.sse_c)?,
        },
    )?;
    let range = a
        .range
        .as_deref()
        .map(|r| dare::parse_range(r, obj.size()))
        .transpose()?;
    let read = |w: &mut dyn Write| -> Result<()> {
        let mut sink = Sink { w, failed: None };
        let r = match range {
            Some((off, len)) => obj.read_range(off, len, &mut |p| sink.write(p)),
            None => obj.read_all(&mut |p| sink.write(p)),
        };
        r.map_err(|e| sink.error(e))
    };
    match &a.output {
        None => {
            let mut w = BufWriter::with_capacity(1 << 20, crate::out::stdout().lock());
            read(&mut w)?;
            w.flush()?;
        }
        // A device or FIFO (`-o /dev/stdout`) is written in place, streamed as standard
        // output is: renaming a file over it would replace the device.
        Some(path) if fs::metadata(path).is_ok_and(|m| !m.is_file()) => {
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let mut w = BufWriter::with_capacity(1 << 20, f);
            read(&mut w)?;
            w.flush()?;
        }
        Some(path) => {
            // Through a symbolic link to the file it names, as `cp` does.
            let target = fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            write_atomically(&target, read)?
        }
    }
    Ok(())
}

/// Writes `path` through a temporary file (mode 0600) in the same directory that is renamed
/// into place only when `fill` succeeded; on failure the temporary file is removed and `path`
/// is untouched.
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
        .with_context(|| format!("output path {} has no file name", path.display()))?
        .to_string_lossy()
        .into_owned();
    let mut salt = [0u8; 4];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("random number generator: {e}"))?;
    let tmp = dir.join(format!(
        ".{name}.dare-partial-{}-{}",
        std::process::id(),
        super::hex(&salt)
    ));
    let result = (|| -> Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
        fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))?;
        // The new directory entry survives a crash too (best effort: the data is complete).
        let _ = File::open(&dir).and_then(|d| d.sync_all());
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `dare head`.
pub fn head(d: &Dare, a: HeadArgs) -> Result<()> {
    let (bucket, name) = split_target(&a.target)?;
    let info = d.head(bucket, name)?;
    // User metadata is encrypted with the object: show it when the object opens with the
    // keys at hand.
    let opts = GetOptions {
        customer_key: customer_key(&a.sse_c)?,
    };
    // An SSE-KMS bucket whose key the service refuses (disabled, pending deletion, ...)
    // still has its object rows: show them, and why the metadata is unreadable.
    let mut refused = None;
    let meta = match d.get(bucket, name, &opts) {
        Ok(o) => Some(o.meta().to_vec()),
        Err(dare::Error::Key(dare::KeyError::CustomerKeyRequired)) => None,
        Err(dare::Error::Key(dare::KeyError::KmsRefused(why))) => {
            refused = Some(why);
            None
        }
        Err(e) => return Err(e.into()),
    };
    if a.out.json {
        let mut v = info_json(&info, meta.as_deref());
        if meta.is_none() {
            v["metadata"] = json!(null);
            match &refused {
                Some(why) => v["metadata_unreadable"] = json!(why),
                None => v["metadata_encrypted_with_customer_key"] = json!(true),
            }
        }
        return print_json(&v);
    }
    let mut o = crate::out::stdout().lock();
    let (kr, _) = key_ref(&info.key_ref);
    writeln!(o, "object:      {bucket}/{}", printable(name))?;
    writeln!(o, "object id:   {}", hex(&info.object_id))?;
    writeln!(o, "size:        {} bytes", info.size)?;
    match info.stored_size {
        Some(s) => writeln!(o, "stored:      {s} bytes")?,
        None => writeln!(o, "stored:      (format 1: see the data file)")?,
    }
    writeln!(o, "chunk size:  {} bytes", info.chunk_size)?;
    writeln!(o, "ETag:        {}", info.etag)?;
    writeln!(o, "created:     {} UTC", utc(info.created_ms, false))?;
    writeln!(o, "format:      {}", info.format)?;
    writeln!(o, "encryption:  {}", encryption_name(&info))?;
    writeln!(o, "key:         {kr}")?;
    if let Some(k) = &info.kms_key {
        writeln!(o, "{}", super::resource::kms_line(k))?;
    }
    match meta {
        Some(m) if m.is_empty() => writeln!(o, "metadata:    (none)")?,
        Some(m) => {
            for (k, v) in m {
                writeln!(o, "metadata:    {}={}", printable(&k), printable(&v))?;
            }
        }
        None => match &refused {
            Some(why) => writeln!(o, "metadata:    (unreadable: {})", printable(why))?,
            None => writeln!(
                o,
                "metadata:    (encrypted with a customer key: pass --sse-c-key-file to read it)"
            )?,
        },
    }
    Ok(())
}

/// `dare ls [BUCKET]`.
pub fn ls(d: &Dare, a: LsArgs) -> Result<()> {
    let Some(bucket) = a.bucket else {
        return super::resource::print_buckets(d, a.out.json);
    };
    let q = ListQuery {
        prefix: a.prefix.unwrap_or_default(),
        delimiter: a.delimiter,
        start_after: a.start_after,
        continuation_token: a.continuation_token,
        max_keys: usize::from(a.max_keys),
    };
    let page = d.list(&bucket, &q)?;
    if a.out.json {
        let objects: Vec<_> = page
            .objects
            .iter()
            .map(|i| {
                json!({
                    "name": i.name,
                    "size": i.size,
                    "etag": i.etag,
                    "created_ms": i.created_ms,
                    "created": utc(i.created_ms, true),
                    "object_id": hex(&i.object_id),
                    "encrypted": i.encrypted,
                })
            })
            .collect();
        return print_json(&json!({
            "bucket": bucket,
            "objects": objects,
            "common_prefixes": page.common_prefixes,
            "is_truncated": page.is_truncated,
            "next_continuation_token": page.next_continuation_token,
        }));
    }
    let mut o = crate::out::stdout().lock();
    for p in &page.common_prefixes {
        writeln!(o, "{:>19} {:>12} {:<32}  {}", "", "PRE", "", printable(p))?;
    }
    for i in &page.objects {
        writeln!(
            o,
            "{} {:>12} {:<32}  {}",
            utc(i.created_ms, false),
            i.size,
            i.etag,
            printable(&i.name)
        )?;
    }
    if let Some(t) = &page.next_continuation_token {
        writeln!(
            o,
            "(more follow: repeat with --continuation-token {t} for the next page)"
        )?;
    }
    Ok(())
}

/// `dare rm`.
pub fn rm(d: &Dare, a: RmArgs) -> Result<()> {
    let (bucket, name) = split_target(&a.target)?;
    d.delete(bucket, name)?;
    if a.out.json {
        return print_json(&json!({"deleted": {"bucket": bucket, "name": name}}));
    }
    writeln!(crate::out::stdout(), "deleted {bucket}/{}", printable(name))?;
    Ok(())
}
