//! `dare init`, `dare ns ...`, `dare bucket ...` (SSE-KMS buckets among them) and the bucket
//! listing of `dare ls`.

use std::collections::HashMap;
use std::io::Write;

use anyhow::Result;
use dare::Dare;
use dare_metadata::read_with;
use serde_json::json;

use super::{Usage, on_off, print_json, utc};
use crate::cli::{BucketCommand, InitArgs, NsCommand};
use crate::settings::Settings;

/// `dare init`.
pub fn init(s: &Settings, a: InitArgs) -> Result<()> {
    let d = s.create(a.chunk_size)?;
    // The HSM key as the store records it: its PKCS#11 URI (no PIN, no module path).
    let recorded = d.keys().store_record().root_of_trust;
    let (protection, kind) = if s.passphrase_file.is_some() {
        ("a passphrase".to_string(), "passphrase")
    } else if s.hsm.is_some() {
        (format!("the HSM key {recorded}"), "pkcs11")
    } else if let Some(k) = &s.kmip {
        (format!("the KMIP cluster {:?}", k.cluster), "kmip")
    } else {
        ("the root key file root.key".to_string(), "root-key-file")
    };
    // `describe` names a PostgreSQL database without its password.
    let metadata = d.metadata().describe();
    if a.out.json {
        return print_json(&json!({
            "store": s.dir().display().to_string(),
            "chunk_size": d.chunk_size(),
            "root_of_trust": kind,
            "hsm_key": s.hsm.as_ref().map(|_| &recorded),
            "kmip_cluster": s.kmip.as_ref().map(|k| &k.cluster),
            "metadata": if s.metadata.is_some() { "postgres" } else { "sqlite" },
            "metadata_database": metadata,
            "store_id": dare_engine::format::hex(&d.store_id()),
            "namespace": dare::DEFAULT_NAMESPACE,
        }));
    }
    let where_ = if s.metadata.is_some() {
        format!("metadata in PostgreSQL at {metadata}, recorded in metadata.json")
    } else {
        "metadata in dare.db".to_owned()
    };
    writeln!(
        crate::out::stdout(),
        "initialized dare store at {} (chunk size {} bytes, master keys protected by {protection}, \
         {where_}, namespace `{}` with encryption on)",
        s.dir().display(),
        d.chunk_size(),
        dare::DEFAULT_NAMESPACE
    )?;
    Ok(())
}

/// `dare ns ...`.
pub fn ns(d: &Dare, cmd: NsCommand) -> Result<()> {
    let mut o = crate::out::stdout().lock();
    match cmd {
        NsCommand::Create {
            name,
            encryption,
            out,
        } => {
            let n = d.create_namespace(&name, encryption.is_on())?;
            if out.json {
                return print_json(
                    &json!({"name": n.name, "id": n.id, "encryption": n.encryption, "created": n.created}),
                );
            }
            writeln!(
                o,
                "namespace {} created (id {}, encryption {})",
                n.name,
                n.id,
                on_off(n.encryption)
            )?;
        }
        NsCommand::Ls(j) => {
            let list = d.namespaces()?;
            if j.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|n| json!({"name": n.name, "id": n.id, "encryption": n.encryption, "created": n.created}))
                    .collect();
                return print_json(&json!(v));
            }
            for n in list {
                writeln!(
                    o,
                    "{:<24} id {:<4} encryption {:<3}  created {}",
                    n.name,
                    n.id,
                    on_off(n.encryption),
                    utc(n.created.saturating_mul(1000), false)
                )?;
            }
        }
        NsCommand::Rm { name, out } => {
            d.delete_namespace(&name)?;
            if out.json {
                return print_json(&json!({"deleted_namespace": name}));
            }
            writeln!(
                o,
                "namespace {name} deleted (its namespace key is destroyed)"
            )?;
        }
    }
    Ok(())
}

/// `dare bucket ...`.
pub fn bucket(d: &Dare, cmd: BucketCommand) -> Result<()> {
    match cmd {
        BucketCommand::Create {
            name,
            namespace,
            encryption,
            kms_key,
            sse_kms,
            out,
        } => {
            let kms = kms_key.is_some() || sse_kms;
            if kms && encryption.is_some_and(|e| !e.is_on()) {
                return Err(Usage(
                    "--encryption off contradicts --kms-key/--sse-kms: an SSE-KMS bucket is \
                     encrypted"
                        .into(),
                )
                .into());
            }
            let b = if kms {
                d.create_bucket_kms(&name, &namespace, kms_key.as_deref())?
            } else {
                d.create_bucket(&name, &namespace, encryption.map(|e| e.is_on()))?
            };
            let cmk = kms_keys(d)?.remove(&b.name);
            if out.json {
                return print_json(&bucket_json(&b, cmk.as_ref()));
            }
            let mut o = crate::out::stdout().lock();
            write!(
                o,
                "bucket {} created in namespace {} (id {}, encryption {}",
                b.name,
                b.namespace,
                b.id,
                on_off(b.encryption)
            )?;
            if let Some(k) = &cmk {
                write!(o, ", SSE-KMS, {}", kms_line(k))?;
            }
            writeln!(o, ")")?;
        }
        BucketCommand::Ls(j) => print_buckets(d, j.json)?,
        BucketCommand::Rm { name, force, out } => {
            let encrypted = d.bucket(&name)?.encryption;
            let objects = d.delete_bucket(&name, force)?;
            if out.json {
                return print_json(&json!({
                    "deleted_bucket": name,
                    "objects_deleted": objects,
                    "bucket_key_destroyed": encrypted,
                }));
            }
            let mut o = crate::out::stdout().lock();
            write!(o, "bucket {name} deleted")?;
            if objects > 0 {
                write!(o, " with its {objects} object(s)")?;
            }
            if encrypted {
                write!(
                    o,
                    "; its bucket key is destroyed: any copy of its data files is unreadable"
                )?;
            }
            writeln!(o)?;
        }
    }
    Ok(())
}

/// A bucket as JSON; `kms_key_id` and `kms_key_version` are null unless it is an SSE-KMS
/// bucket.
fn bucket_json(b: &dare::Bucket, cmk: Option<&(String, u32)>) -> serde_json::Value {
    json!({
        "name": b.name,
        "id": b.id,
        "namespace": b.namespace,
        "namespace_id": b.namespace_id,
        "encryption": b.encryption,
        "sse_kms": b.kms_key_id.is_some(),
        "kms_key_id": cmk.map(|k| &k.0).or(b.kms_key_id.as_ref()),
        "kms_key_version": cmk.map(|k| k.1),
        "created": b.created,
    })
}

/// `kms key: <id> (version N)`.
pub(crate) fn kms_line((id, version): &(String, u32)) -> String {
    format!("kms key: {id} (version {version})")
}

/// The customer master key and version of every SSE-KMS bucket, by bucket name: the version
/// is the one its bucket key ciphertext names. Read from the bucket rows, so listing buckets
/// is no operation of the key management service (and adds nothing to its audit trail).
pub(crate) fn kms_keys(d: &Dare) -> Result<HashMap<String, (String, u32)>> {
    let rows = read_with::<_, dare::MetaError>(&**d.metadata(), |tx| tx.buckets(None))?;
    Ok(rows
        .into_iter()
        .filter(|b| b.kms_key_id.is_some())
        .filter_map(|b| {
            let v = b
                .wrapped_key
                .as_deref()
                .and_then(dare_kms::bucket_key_version)?;
            Some((b.name, v))
        })
        .collect())
}

/// Every bucket (`dare bucket ls`, `dare ls`).
pub fn print_buckets(d: &Dare, as_json: bool) -> Result<()> {
    let list = d.buckets(None)?;
    let cmks = if list.iter().any(|b| b.kms_key_id.is_some()) {
        kms_keys(d)?
    } else {
        HashMap::new()
    };
    if as_json {
        return print_json(&json!(
            list.iter()
                .map(|b| bucket_json(b, cmks.get(&b.name)))
                .collect::<Vec<_>>()
        ));
    }
    let mut o = crate::out::stdout().lock();
    for b in list {
        write!(
            o,
            "{}  {:<24} namespace {:<16} encryption {}",
            utc(b.created.saturating_mul(1000), false),
            b.name,
            b.namespace,
            on_off(b.encryption)
        )?;
        if let Some(k) = cmks.get(&b.name) {
            write!(o, "  SSE-KMS {}", kms_line(k))?;
        }
        writeln!(o)?;
    }
    Ok(())
}
