//! `dare kms ...`: the key management service of the store ([`dare_kms::Kms`], reached
//! through [`Dare::kms`]). Every rule (aliases, windows, periods, states, the hourly rotation
//! limit) is the service's; this module parses files and pairs, calls it, and prints.
//!
//! Binary outputs (ciphertexts, data keys, random bytes) go to `--out` files created new with
//! mode 0600, or to standard output as one line of standard base64; with `--json`, as base64
//! fields. Ciphertext inputs may be raw or base64. Plaintext and key material never appear in
//! a message: errors name files and keys, not contents.
//!
//! Batch commands (`enable`, `disable`, `schedule-deletion`, `cancel-deletion`, `describe`
//! with several keys) print one result per key and exit with the status of the first failure.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context as _, Result};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use dare::{Dare, printable};
use dare_kms::clock::{iso8601, parse_time};
use dare_kms::{
    BatchItem, Context, Expiry, KeyInfo, KmsError, KmsKeyState, KmsOrigin, ListFilter,
    WrappedMaterial, WrappingAlgorithm,
};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{Usage, print_json};
use crate::cli::{AuditCommand, ContextArgs, InOut, KeyStateArg, KmsCommand, Origin};

/// Largest file `dare kms` reads: its inputs are small (`encrypt` takes at most 4096 bytes).
const MAX_INPUT: u64 = 64 * 1024;

/// Some keys of a batch failed (exit status: that of the first failure, its source).
#[derive(Debug)]
pub struct BatchFailed {
    failed: usize,
    total: usize,
    key: String,
    first: KmsError,
}

impl fmt::Display for BatchFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of {} keys failed; the first, {}: {}",
            self.failed,
            self.total,
            printable(&self.key),
            self.first
        )
    }
}

impl std::error::Error for BatchFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.first)
    }
}

/// `dare kms audit verify` found the trail broken (exit status 4).
#[derive(Debug)]
pub struct AuditBroken(pub String);

impl fmt::Display for AuditBroken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the audit trail is broken: {}", self.0)
    }
}

impl std::error::Error for AuditBroken {}

/// Some items of `dare kms tick` failed (each other item still ran).
#[derive(Debug)]
struct TickFailed(Vec<String>);

impl fmt::Display for TickFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} item(s) of the scheduler run failed; the first: {}",
            self.0.len(),
            self.0.first().map(String::as_str).unwrap_or("")
        )
    }
}

impl std::error::Error for TickFailed {}

/// `dare kms ...`.
pub fn run(d: &Dare, cmd: KmsCommand) -> Result<()> {
    let kms = d.kms();
    match cmd {
        KmsCommand::Create {
            alias,
            description,
            origin,
            out,
        } => {
            let origin = match origin {
                Origin::Generated => KmsOrigin::Generated,
                Origin::External => KmsOrigin::External,
            };
            let k = kms.create_key(&alias, &description, origin)?;
            if out.json {
                return print_json(&info_json(&k));
            }
            let mut o = crate::out::stdout().lock();
            writeln!(
                o,
                "created customer master key {} (alias {}, origin {}, {})",
                k.key_id,
                k.alias.as_deref().unwrap_or("-"),
                k.origin,
                k.state
            )?;
            if origin == KmsOrigin::External {
                writeln!(
                    o,
                    "it has no key material yet: `dare kms get-import-parameters {}`, then \
                     `dare kms import-key-material`",
                    k.key_id
                )?;
            }
        }
        KmsCommand::Describe { keys, out } => {
            if let [key] = keys.keys.as_slice() {
                let k = kms.describe(key)?;
                if out.json {
                    return print_json(&info_json(&k));
                }
                return print_key(&mut crate::out::stdout().lock(), &k);
            }
            let items: Vec<BatchItem> = keys
                .keys
                .iter()
                .map(|k| BatchItem {
                    key: k.clone(),
                    result: kms.describe(k),
                })
                .collect();
            batch(items, out.json, None)?;
        }
        KmsCommand::Enable { keys, out } => {
            batch(kms.enable(&keys.keys), out.json, Some(state_line))?
        }
        KmsCommand::Disable { keys, force, out } => {
            batch(kms.disable(&keys.keys, force), out.json, Some(state_line))?
        }
        KmsCommand::CancelDeletion { keys, out } => {
            batch(kms.cancel_deletion(&keys.keys), out.json, Some(state_line))?
        }
        KmsCommand::ScheduleDeletion {
            keys,
            days,
            force,
            out,
        } => batch(
            kms.schedule_deletion(&keys.keys, days, force),
            out.json,
            Some(state_line),
        )?,
        KmsCommand::Rotate {
            key,
            material,
            token,
            out,
        } => {
            let k = match (material, token) {
                (Some(m), Some(t)) => {
                    let m = read_binary(&m, "--material")?;
                    let t = read_binary(&t, "--token")?;
                    kms.rotate(
                        &key,
                        Some(WrappedMaterial {
                            encrypted: &m,
                            token: &t,
                        }),
                    )?
                }
                _ => kms.rotate(&key, None)?,
            };
            if out.json {
                return print_json(&info_json(&k));
            }
            writeln!(
                crate::out::stdout(),
                "{}: rotated; version {} encrypts from now on (older versions still decrypt)",
                k.label(),
                k.current_version
            )?;
        }
        KmsCommand::UpdateAlias {
            key,
            new_alias,
            out,
        } => {
            let k = kms.update_alias(&key, &new_alias)?;
            if out.json {
                return print_json(&info_json(&k));
            }
            writeln!(
                crate::out::stdout(),
                "{}: alias is now {}",
                k.key_id,
                k.alias.as_deref().unwrap_or("-")
            )?;
        }
        KmsCommand::UpdateDescription { key, text, out } => {
            let k = kms.update_description(&key, &text)?;
            if out.json {
                return print_json(&info_json(&k));
            }
            writeln!(crate::out::stdout(), "{}: description updated", k.label())?;
        }
        KmsCommand::List {
            state,
            alias,
            limit,
            marker,
            out,
        } => list(d, state, alias, limit, marker, out.json)?,
        KmsCommand::RotationPolicy {
            key,
            enable,
            disable: _,
            days,
            out,
        } => {
            let days =
                enable.then(|| days.unwrap_or(i64::from(dare_kms::rules::DEFAULT_ROTATION_DAYS)));
            let k = kms.set_rotation_policy(&key, days)?;
            if out.json {
                return print_json(&info_json(&k));
            }
            let mut o = crate::out::stdout().lock();
            if k.rotation.enabled {
                writeln!(
                    o,
                    "{}: rotates automatically every {} days; next rotation due {}",
                    k.label(),
                    k.rotation.period_days,
                    k.rotation.next_rotation.as_deref().unwrap_or("-")
                )?;
            } else {
                writeln!(o, "{}: automatic rotation off", k.label())?;
            }
        }
        KmsCommand::MinDecryptionVersion { key, version, out } => {
            let k = kms.set_min_decryption_version(&key, version)?;
            if out.json {
                return print_json(&info_json(&k));
            }
            writeln!(
                crate::out::stdout(),
                "{}: versions below {} no longer decrypt",
                k.label(),
                k.min_decryption_version
            )?;
        }
        KmsCommand::GetImportParameters {
            key,
            wrapping_algorithm,
            key_bits,
            out_dir,
            out,
        } => {
            let alg = WrappingAlgorithm::parse(&wrapping_algorithm)?;
            if !out_dir.is_dir() {
                return Err(Usage(format!(
                    "--out-dir {} is not a directory",
                    out_dir.display()
                ))
                .into());
            }
            let p = kms.get_import_parameters(&key, alg, key_bits)?;
            let key_file = out_dir.join(format!("wrappingKey_{}.der", p.key_id));
            let token_file = out_dir.join(format!("importToken_{}.bin", p.key_id));
            // New parameters supersede earlier ones: their files are replaced.
            super::object::write_atomically(&key_file, |w| Ok(w.write_all(&p.public_key_der)?))?;
            super::object::write_atomically(&token_file, |w| Ok(w.write_all(&p.token)?))?;
            if out.json {
                return print_json(&json!({
                    "key_id": p.key_id,
                    "wrapping_algorithm": p.algorithm.as_str(),
                    "key_bits": key_bits,
                    "wrapping_key_file": key_file.display().to_string(),
                    "import_token_file": token_file.display().to_string(),
                    "expires": iso8601(p.expires_ms),
                    "wrapping_key": B64.encode(&p.public_key_der),
                    "import_token": B64.encode(&p.token),
                }));
            }
            let mut o = crate::out::stdout().lock();
            writeln!(
                o,
                "wrapping key: {} (RSA-{key_bits}, SubjectPublicKeyInfo DER; wrap with {})",
                key_file.display(),
                p.algorithm.as_str()
            )?;
            writeln!(o, "import token: {}", token_file.display())?;
            writeln!(o, "expires:      {}", iso8601(p.expires_ms))?;
        }
        KmsCommand::ImportKeyMaterial {
            key,
            material,
            token,
            expires,
            out,
        } => {
            let expiry = match expires.as_deref() {
                None => Expiry::Default,
                Some("never") => Expiry::Never,
                Some(t) => Expiry::At(parse_time(t).ok_or_else(|| {
                    Usage(format!(
                        "--expires {t:?}: expected an RFC 3339 time (2027-01-01T00:00:00Z) or \
                         `never`"
                    ))
                })?),
            };
            let m = read_binary(&material, "--material")?;
            let t = read_binary(&token, "--token")?;
            let k = kms.import_key_material(
                &key,
                WrappedMaterial {
                    encrypted: &m,
                    token: &t,
                },
                expiry,
            )?;
            if out.json {
                return print_json(&info_json(&k));
            }
            writeln!(
                crate::out::stdout(),
                "{}: key material imported ({}; material expires {})",
                k.label(),
                k.state,
                k.material_expires.as_deref().unwrap_or("never")
            )?;
        }
        KmsCommand::DeleteKeyMaterial { key, out } => {
            let k = kms.delete_key_material(&key)?;
            if out.json {
                return print_json(&info_json(&k));
            }
            writeln!(
                crate::out::stdout(),
                "{}: key material deleted; {} until the same material is imported again",
                k.label(),
                k.state
            )?;
        }
        KmsCommand::CreateDatakey {
            key,
            bits,
            without_plaintext,
            context,
            plaintext_out,
            ciphertext_out,
            out,
        } => {
            let ctx = parse_context(&context)?;
            if plaintext_out.is_some() && plaintext_out == ciphertext_out {
                return Err(Usage(
                    "--plaintext-out and --ciphertext-out name the same file".into(),
                )
                .into());
            }
            for p in [&plaintext_out, &ciphertext_out].into_iter().flatten() {
                check_new(p)?;
            }
            let dk = kms.create_data_key(&key, bits, !without_plaintext, &ctx)?;
            if let (Some(p), Some(pt)) = (&plaintext_out, &dk.plaintext) {
                write_new(p, pt)?;
            }
            if let Some(p) = &ciphertext_out {
                write_new(p, &dk.ciphertext)?;
            }
            let pt_b64 = match (&plaintext_out, &dk.plaintext) {
                (None, Some(pt)) => Some(Zeroizing::new(B64.encode(pt.as_slice()))),
                _ => None,
            };
            if out.json {
                return print_json(&json!({
                    "key_id": dk.key_id,
                    "version": dk.version,
                    "bits": bits,
                    "plaintext": pt_b64.as_deref(),
                    "plaintext_file": plaintext_out.as_ref().map(|p| p.display().to_string()),
                    "ciphertext": ciphertext_out.is_none().then(|| B64.encode(&dk.ciphertext)),
                    "ciphertext_file": ciphertext_out.as_ref().map(|p| p.display().to_string()),
                }));
            }
            let mut o = crate::out::stdout().lock();
            writeln!(o, "key:        {} (version {})", dk.key_id, dk.version)?;
            match (&plaintext_out, &pt_b64) {
                (Some(p), _) => writeln!(o, "plaintext:  written to {}", p.display())?,
                (None, Some(b)) => writeln!(o, "plaintext:  {}", b.as_str())?,
                (None, None) => {}
            }
            match &ciphertext_out {
                Some(p) => writeln!(o, "ciphertext: written to {}", p.display())?,
                None => writeln!(o, "ciphertext: {}", B64.encode(&dk.ciphertext))?,
            }
        }
        KmsCommand::EncryptDatakey {
            key,
            io,
            context,
            out,
        } => {
            let ctx = parse_context(&context)?;
            check_out(&io)?;
            let dk = read_data_key(&io.input)?;
            let ct = kms.encrypt_data_key(&key, &dk, &ctx)?;
            emit_ciphertext(&ct, io.out.as_deref(), out.json)?;
        }
        KmsCommand::DecryptDatakey { io, context, out } => {
            let ctx = parse_context(&context)?;
            check_out(&io)?;
            let ct = read_binary(&io.input, "--in")?;
            let d = kms.decrypt_data_key(&ct, &ctx)?;
            emit_plaintext(&d, io.out.as_deref(), out.json)?;
        }
        KmsCommand::Encrypt {
            key,
            io,
            context,
            out,
        } => {
            let ctx = parse_context(&context)?;
            check_out(&io)?;
            let data = read_input(&io.input, "--in")?;
            let ct = kms.encrypt(&key, &data, &ctx)?;
            emit_ciphertext(&ct, io.out.as_deref(), out.json)?;
        }
        KmsCommand::Decrypt { io, context, out } => {
            let ctx = parse_context(&context)?;
            check_out(&io)?;
            let ct = read_binary(&io.input, "--in")?;
            let d = kms.decrypt(&ct, &ctx)?;
            emit_plaintext(&d, io.out.as_deref(), out.json)?;
        }
        KmsCommand::Rewrap { io, context, out } => {
            let ctx = parse_context(&context)?;
            check_out(&io)?;
            let ct = read_binary(&io.input, "--in")?;
            let new = kms.rewrap(&ct, &ctx)?;
            emit_ciphertext(&new, io.out.as_deref(), out.json)?;
        }
        KmsCommand::Random { bytes, out, json } => {
            if let Some(p) = &out {
                check_new(p)?;
            }
            let r = kms.random(bytes)?;
            match &out {
                Some(p) => {
                    write_new(p, &r)?;
                    if json.json {
                        return print_json(&json!({
                            "bytes": r.len(),
                            "file": p.display().to_string(),
                        }));
                    }
                    writeln!(
                        crate::out::stdout(),
                        "{} random bytes written to {}",
                        r.len(),
                        p.display()
                    )?;
                }
                None => {
                    let b = Zeroizing::new(B64.encode(r.as_slice()));
                    if json.json {
                        return print_json(&json!({"bytes": r.len(), "random": b.as_str()}));
                    }
                    writeln!(crate::out::stdout(), "{}", b.as_str())?;
                }
            }
        }
        KmsCommand::Registrations { key, out } => {
            let regs = kms.registrations(&key)?;
            if out.json {
                return print_json(&serde_json::to_value(&regs)?);
            }
            let mut o = crate::out::stdout().lock();
            for r in &regs {
                writeln!(
                    o,
                    "{}  version {}  registered {}  {}",
                    printable(&r.resource),
                    r.key_version,
                    r.created,
                    printable(&r.description)
                )?;
            }
        }
        KmsCommand::Register {
            key,
            resource,
            description,
            out,
        } => {
            let r = kms.register(&key, &resource, None, &description)?;
            if out.json {
                return print_json(&serde_json::to_value(&r)?);
            }
            writeln!(
                crate::out::stdout(),
                "{} registered with {} (version {})",
                printable(&r.resource),
                r.key_id,
                r.key_version
            )?;
        }
        KmsCommand::Deregister { key, resource, out } => {
            let existed = kms.deregister(&key, &resource)?;
            if out.json {
                return print_json(&json!({
                    "key": key,
                    "resource": resource,
                    "deregistered": existed,
                }));
            }
            let mut o = crate::out::stdout().lock();
            if existed {
                writeln!(
                    o,
                    "{} deregistered from {}",
                    printable(&resource),
                    printable(&key)
                )?;
            } else {
                writeln!(
                    o,
                    "{} was not registered with {}",
                    printable(&resource),
                    printable(&key)
                )?;
            }
        }
        KmsCommand::Tick(out) => {
            let r = kms.tick();
            if out.json {
                print_json(&serde_json::to_value(&r)?)?;
            } else {
                let mut o = crate::out::stdout().lock();
                writeln!(o, "scheduler run at {}", r.now)?;
                for (what, items) in [
                    ("deleted", &r.deleted),
                    ("material expired", &r.expired),
                    ("rotated", &r.rotated),
                    ("bucket key rewrapped", &r.rewrapped),
                    ("failed", &r.errors),
                ] {
                    for i in items {
                        writeln!(o, "{what}: {}", printable(i))?;
                    }
                }
                if [&r.deleted, &r.expired, &r.rotated, &r.rewrapped, &r.errors]
                    .iter()
                    .all(|v| v.is_empty())
                {
                    writeln!(o, "nothing was due")?;
                }
            }
            if !r.errors.is_empty() {
                return Err(TickFailed(r.errors).into());
            }
        }
        KmsCommand::Audit(AuditCommand::Ls { key, since, out }) => {
            let since = since
                .as_deref()
                .map(|t| {
                    parse_time(t).ok_or_else(|| {
                        Usage(format!(
                            "--since {t:?}: expected an RFC 3339 time (2027-01-01T00:00:00Z)"
                        ))
                    })
                })
                .transpose()?;
            let key_id = match key {
                None => None,
                Some(k) if dare_kms::rules::looks_like_key_id(&k) => Some(k.to_ascii_lowercase()),
                Some(k) => Some(kms.describe(&k)?.key_id),
            };
            let records = kms.audit_records(key_id.as_deref(), since)?;
            if out.json {
                let v: Vec<Value> = records
                    .iter()
                    .map(|r| {
                        json!({
                            "seq": r.seq,
                            "time": iso8601(r.time_ms),
                            "time_ms": r.time_ms,
                            "actor": r.actor,
                            "operation": r.operation,
                            "key_id": r.key_id,
                            "version": r.version,
                            "request_id": r.request_id,
                            "outcome": r.outcome,
                            "detail": r.detail,
                            "mac": dare_engine::format::hex(&r.mac),
                        })
                    })
                    .collect();
                return print_json(&json!(v));
            }
            let mut o = crate::out::stdout().lock();
            for r in &records {
                let line = format!(
                    "{:>6} {} {:<28} {:<36} {:<4} {:<20} {} {}",
                    r.seq,
                    iso8601(r.time_ms),
                    printable(&r.operation),
                    r.key_id.as_deref().unwrap_or("-"),
                    r.version.map_or_else(|| "-".into(), |v| format!("v{v}")),
                    printable(&r.outcome),
                    printable(&r.actor),
                    printable(&r.detail)
                );
                writeln!(o, "{}", line.trim_end())?;
            }
        }
        KmsCommand::Audit(AuditCommand::Verify(out)) => {
            let v = kms.verify_audit()?;
            if out.json {
                print_json(&json!({
                    "ok": v.ok(),
                    "records": v.records,
                    "head_seq": v.head_seq,
                    "problem": v.problem,
                }))?;
            } else if v.ok() {
                writeln!(
                    crate::out::stdout(),
                    "audit trail intact: {} records, chain and head agree",
                    v.records
                )?;
            }
            if let Some(p) = v.problem {
                return Err(AuditBroken(p).into());
            }
        }
    }
    Ok(())
}

/// A key as JSON.
fn info_json(k: &KeyInfo) -> Value {
    serde_json::to_value(k).unwrap_or(Value::Null)
}

/// `alias (id): state` and, for a pending deletion, when it is due.
fn state_line(k: &KeyInfo) -> String {
    match &k.deletion_due {
        Some(due) => format!("{}: {}, deletion due {due}", k.label(), k.state),
        None => format!("{}: {}", k.label(), k.state),
    }
}

/// Prints a batch's results, one per key (`line`, or the full description when `None`), and
/// fails with the first failure. A batch of one that failed prints nothing but its error.
fn batch(items: Vec<BatchItem>, as_json: bool, line: Option<fn(&KeyInfo) -> String>) -> Result<()> {
    let total = items.len();
    if as_json {
        let v: Vec<Value> = items
            .iter()
            .map(|i| match &i.result {
                Ok(k) => json!({"key": i.key, "ok": true, "info": info_json(k)}),
                Err(e) => json!({
                    "key": i.key,
                    "ok": false,
                    "error": e.kind(),
                    "message": e.to_string(),
                }),
            })
            .collect();
        print_json(&json!(v))?;
    } else {
        let mut o = crate::out::stdout().lock();
        for (n, i) in items.iter().enumerate() {
            match (&i.result, line) {
                (Ok(k), Some(f)) => writeln!(o, "{}", f(k))?,
                (Ok(k), None) => {
                    if n > 0 {
                        writeln!(o)?;
                    }
                    print_key(&mut o, k)?;
                }
                (Err(_), _) if total == 1 => {}
                (Err(e), _) => writeln!(o, "{}: failed: {e}", printable(&i.key))?,
            }
        }
        o.flush()?;
    }
    let failed = items.iter().filter(|i| i.result.is_err()).count();
    let Some((key, first)) = items
        .into_iter()
        .find_map(|i| i.result.err().map(|e| (i.key, e)))
    else {
        return Ok(());
    };
    if total == 1 {
        return Err(first.into());
    }
    Err(BatchFailed {
        failed,
        total,
        key,
        first,
    }
    .into())
}

/// The human description of a key.
fn print_key(o: &mut dyn Write, k: &KeyInfo) -> Result<()> {
    let dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    writeln!(o, "key id:                  {}", k.key_id)?;
    writeln!(o, "alias:                   {}", dash(&k.alias))?;
    if !k.description.is_empty() {
        writeln!(o, "description:             {}", printable(&k.description))?;
    }
    writeln!(o, "state:                   {}", k.state)?;
    writeln!(
        o,
        "origin:                  {}{}",
        k.origin,
        if k.default_key {
            " (default master key)"
        } else {
            ""
        }
    )?;
    writeln!(o, "created:                 {}", k.created)?;
    writeln!(o, "current version:         {}", k.current_version)?;
    writeln!(o, "min decryption version:  {}", k.min_decryption_version)?;
    let r = &k.rotation;
    writeln!(
        o,
        "rotation:                {}; {} rotation(s), last {}, next {}",
        if r.enabled {
            format!("automatic every {} days", r.period_days)
        } else {
            "automatic off".into()
        },
        r.rotations,
        r.last_rotation,
        dash(&r.next_rotation)
    )?;
    writeln!(o, "deletion due:            {}", dash(&k.deletion_due))?;
    let expiry = match (&k.material_expires, k.origin) {
        (Some(t), _) => t.clone(),
        (None, "external") if k.versions.iter().any(|v| v.has_material) => "never".into(),
        _ => "-".into(),
    };
    writeln!(o, "material expires:        {expiry}")?;
    if let Some(t) = &k.import_parameters_expire {
        writeln!(o, "import parameters until: {t}")?;
    }
    if let Some(t) = &k.deleted {
        writeln!(o, "deleted:                 {t}")?;
    }
    if k.versions.is_empty() {
        writeln!(o, "versions:                (none)")?;
    }
    for v in &k.versions {
        writeln!(
            o,
            "{:<25}created {}{}{}, {} encryption(s)",
            format!("version {}:", v.version),
            v.created,
            if v.has_material { "" } else { ", no material" },
            if v.decrypts {
                ""
            } else {
                ", below the minimum decryption version"
            },
            v.encryptions
        )?;
    }
    writeln!(o, "registrations:           {}", k.registrations)?;
    Ok(())
}

/// `dare kms list`.
fn list(
    d: &Dare,
    state: Option<KeyStateArg>,
    alias: Option<String>,
    limit: Option<usize>,
    marker: Option<String>,
    as_json: bool,
) -> Result<()> {
    let filter = ListFilter {
        state: state.map(|s| match s {
            KeyStateArg::Enabled => KmsKeyState::Enabled,
            KeyStateArg::Disabled => KmsKeyState::Disabled,
            KeyStateArg::PendingDeletion => KmsKeyState::PendingDeletion,
            KeyStateArg::PendingImport => KmsKeyState::PendingImport,
            KeyStateArg::Deleted => KmsKeyState::Deleted,
        }),
        alias_contains: alias,
        limit,
        marker,
    };
    let page = d.kms().list(&filter)?;
    if as_json {
        return print_json(&serde_json::to_value(&page)?);
    }
    let mut o = crate::out::stdout().lock();
    writeln!(
        o,
        "{:<36}  {:<16}  {:<9}  {:<7}  {:<24}  alias",
        "key id", "state", "origin", "version", "created"
    )?;
    for k in &page.keys {
        writeln!(
            o,
            "{:<36}  {:<16}  {:<9}  {:<7}  {:<24}  {}",
            k.key_id,
            k.state,
            k.origin,
            k.current_version,
            k.created,
            k.alias.as_deref().unwrap_or("-")
        )?;
    }
    match &page.next_marker {
        Some(m) => writeln!(
            o,
            "({} of {} keys; the next page: --marker {m})",
            page.keys.len(),
            page.total
        )?,
        None => writeln!(o, "({} key(s))", page.total)?,
    }
    Ok(())
}

/// `--context K=V` pairs.
fn parse_context(c: &ContextArgs) -> Result<Context> {
    let mut ctx = Context::new();
    for s in &c.context {
        let Some((k, v)) = s.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Usage(format!(
                "--context expects KEY=VALUE, got {:?}",
                printable(s)
            ))
            .into());
        };
        if ctx.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(Usage(format!("--context gives {:?} twice", printable(k))).into());
        }
    }
    Ok(ctx)
}

/// Reads a file (`-`: standard input) of at most [`MAX_INPUT`] bytes; zeroized on drop (it
/// may be plaintext).
fn read_input(p: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    let n = if p == Path::new("-") {
        io::stdin()
            .lock()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut buf)
            .with_context(|| format!("{what}: cannot read standard input"))?
    } else {
        fs::File::open(p)
            .and_then(|f| f.take(MAX_INPUT + 1).read_to_end(&mut buf))
            .with_context(|| format!("{what}: cannot read {}", p.display()))?
    };
    if n as u64 > MAX_INPUT {
        return Err(Usage(format!(
            "{what}: {} is larger than {MAX_INPUT} bytes; key management inputs are small \
             (encrypt takes at most 4096 bytes)",
            p.display()
        ))
        .into());
    }
    Ok(buf)
}

/// Decodes `b` as base64 text (surrounding whitespace ignored), if it is that.
fn base64_text(b: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let t = b.trim_ascii();
    let is_b64 = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=');
    if t.is_empty() || !t.iter().all(is_b64) {
        return None;
    }
    B64.decode(t).ok().map(Zeroizing::new)
}

/// A binary input that may be raw or base64 (ciphertexts, tokens, wrapped material: their
/// raw form is never base64 text — a ciphertext starts with byte 0x01).
fn read_binary(p: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let raw = read_input(p, what)?;
    Ok(base64_text(&raw).unwrap_or(raw))
}

/// A data key to encrypt: 32 or 64 raw bytes, or their base64 (as create-datakey prints it).
fn read_data_key(p: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let raw = read_input(p, "--in")?;
    if raw.len() == 32 || raw.len() == 64 {
        return Ok(raw);
    }
    match base64_text(&raw) {
        Some(d) if d.len() == 32 || d.len() == 64 => Ok(d),
        _ => Ok(raw),
    }
}

/// Refuses an output path that exists (before the operation, so nothing is made in vain).
fn check_new(p: &Path) -> Result<()> {
    if fs::symlink_metadata(p).is_ok() {
        return Err(Usage(format!(
            "{} exists: dare kms writes its outputs to new files only",
            p.display()
        ))
        .into());
    }
    Ok(())
}

fn check_out(io: &InOut) -> Result<()> {
    match &io.out {
        Some(p) => check_new(p),
        None => Ok(()),
    }
}

/// Writes `bytes` to a new file of mode 0600; on failure the file is removed.
fn write_new(p: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
        .with_context(|| format!("cannot create {} (it must not exist)", p.display()))?;
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        drop(f);
        let _ = fs::remove_file(p);
        return Err(anyhow::Error::new(e).context(format!("cannot write {}", p.display())));
    }
    Ok(())
}

/// Prints or writes a ciphertext.
fn emit_ciphertext(ct: &[u8], out: Option<&Path>, as_json: bool) -> Result<()> {
    let (key_id, version) = match dare_kms::ciphertext::parse_header(ct) {
        Ok(h) => (Some(h.key_id), Some(h.version)),
        Err(_) => (None, None),
    };
    match out {
        Some(p) => {
            write_new(p, ct)?;
            if as_json {
                return print_json(&json!({
                    "key_id": key_id,
                    "version": version,
                    "ciphertext_file": p.display().to_string(),
                }));
            }
            writeln!(
                crate::out::stdout(),
                "ciphertext ({} bytes, key {} version {}) written to {}",
                ct.len(),
                key_id.as_deref().unwrap_or("?"),
                version.unwrap_or(0),
                p.display()
            )?;
        }
        None => {
            if as_json {
                return print_json(&json!({
                    "key_id": key_id,
                    "version": version,
                    "ciphertext": B64.encode(ct),
                }));
            }
            writeln!(crate::out::stdout(), "{}", B64.encode(ct))?;
        }
    }
    Ok(())
}

/// Prints or writes a decrypted plaintext.
fn emit_plaintext(d: &dare_kms::Decrypted, out: Option<&Path>, as_json: bool) -> Result<()> {
    match out {
        Some(p) => {
            write_new(p, &d.plaintext)?;
            if as_json {
                return print_json(&json!({
                    "key_id": d.key_id,
                    "version": d.version,
                    "plaintext_file": p.display().to_string(),
                }));
            }
            writeln!(
                crate::out::stdout(),
                "plaintext ({} bytes, key {} version {}) written to {}",
                d.plaintext.len(),
                d.key_id,
                d.version,
                p.display()
            )?;
        }
        None => {
            let b = Zeroizing::new(B64.encode(d.plaintext.as_slice()));
            if as_json {
                return print_json(&json!({
                    "key_id": d.key_id,
                    "version": d.version,
                    "plaintext": b.as_str(),
                }));
            }
            writeln!(crate::out::stdout(), "{}", b.as_str())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_inputs_are_recognised_and_raw_ciphertexts_are_not() {
        assert_eq!(base64_text(b"AAEC\n").unwrap().as_slice(), &[0, 1, 2]);
        assert!(base64_text(&[1, 1, 0x41]).is_none());
        assert!(base64_text(b"").is_none());
        assert!(base64_text(b"not base64!").is_none());
    }

    #[test]
    fn contexts_parse_and_refuse_duplicates() {
        let c = |v: &[&str]| {
            parse_context(&ContextArgs {
                context: v.iter().map(|s| s.to_string()).collect(),
            })
        };
        let ctx = c(&["a=1", "b=x=y", "e="]).unwrap();
        assert_eq!(ctx["b"], "x=y");
        assert_eq!(ctx["e"], "");
        assert!(c(&["=1"]).is_err());
        assert!(c(&["a"]).is_err());
        assert!(c(&["a=1", "a=2"]).is_err());
    }
}
