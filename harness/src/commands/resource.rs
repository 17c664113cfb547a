//! `dare init`, `dare ns ...`, `dare bucket ...` and the bucket listing of `dare ls`.

use std::io::Write;

use anyhow::Result;
use dare::Dare;
use serde_json::json;

use super::{on_off, print_json, utc};
use crate::cli::{BucketCommand, InitArgs, NsCommand};
use crate::settings::Settings;

/// `dare init`.
pub fn init(s: &Settings, a: InitArgs) -> Result<()> {
    let d = s.create(a.chunk_size)?;
    let protection = if s.passphrase_file.is_some() {
        "a passphrase"
    } else {
        "the root key file root.key"
    };
    // `describe` names a PostgreSQL database without its password.
    let metadata = d.metadata().describe();
    if a.out.json {
        return print_json(&json!({
            "store": s.dir().display().to_string(),
            "chunk_size": d.chunk_size(),
            "root_of_trust": if s.passphrase_file.is_some() { "passphrase" } else { "root-key-file" },
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
            out,
        } => {
            let b = d.create_bucket(&name, &namespace, encryption.map(|e| e.is_on()))?;
            if out.json {
                return print_json(&bucket_json(&b));
            }
            writeln!(
                crate::out::stdout(),
                "bucket {} created in namespace {} (id {}, encryption {})",
                b.name,
                b.namespace,
                b.id,
                on_off(b.encryption)
            )?;
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

fn bucket_json(b: &dare::Bucket) -> serde_json::Value {
    json!({
        "name": b.name,
        "id": b.id,
        "namespace": b.namespace,
        "namespace_id": b.namespace_id,
        "encryption": b.encryption,
        "created": b.created,
    })
}

/// Every bucket (`dare bucket ls`, `dare ls`).
pub fn print_buckets(d: &Dare, as_json: bool) -> Result<()> {
    let list = d.buckets(None)?;
    if as_json {
        return print_json(&json!(list.iter().map(bucket_json).collect::<Vec<_>>()));
    }
    let mut o = crate::out::stdout().lock();
    for b in list {
        writeln!(
            o,
            "{}  {:<24} namespace {:<16} encryption {}",
            utc(b.created.saturating_mul(1000), false),
            b.name,
            b.namespace,
            on_off(b.encryption)
        )?;
    }
    Ok(())
}
