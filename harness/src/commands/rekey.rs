//! `dare keys rekey`, `dare keys task HANDLE`, `dare keys info`: a thin shell over
//! [`dare::Dare::start_rekey`], [`dare::Dare::task`] and [`dare::Dare::key_info`] (the logic
//! is in dare-keys; docs/KEYS.md §8.3 has the formats).

use std::ffi::OsString;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dare::{Dare, KeysInfo, MasterInfo, Root, TaskReport, TaskState};
use serde_json::{Value, json};

use super::keys::{rotation_options, spawn_dare};
use super::{Usage, note, print_json};
use crate::cli::{RootKind, TargetArgs};
use crate::settings::Settings;

/// The root of trust of `--to external --cluster NAME --new-kmip-config FILE`: the KMIP
/// cluster `NAME` of that configuration (KEYS.md §5.5). No server is contacted here; the
/// rekey's first step creates the new master key's KMIP key in the cluster.
fn external_root(cluster: &str, config: &std::path::Path) -> Result<Root> {
    let cfg = dare::KmipConfig::load(config)
        .map_err(dare::Error::from)
        .context("--new-kmip-config")?;
    let cluster = cfg.cluster(cluster).map_err(dare::Error::from)?.clone();
    Ok(Root::Kmip { cluster })
}

/// The rekey target the `--to` and `--new-*` flags name, `None` without `--to`. Reads the
/// passphrase or PIN file.
fn target_root(t: &TargetArgs) -> Result<Option<Root>> {
    let hsm_flags = t.new_hsm_module.is_some()
        || t.new_hsm_token.is_some()
        || t.new_hsm_key.is_some()
        || t.new_hsm_pin_file.is_some();
    let usage = |m: &str| -> anyhow::Error { Usage(m.to_owned()).into() };
    let Some(kind) = t.to else {
        if hsm_flags
            || t.new_passphrase_file.is_some()
            || t.cluster.is_some()
            || t.new_kmip_config.is_some()
        {
            return Err(usage(
                "--new-passphrase-file, --new-hsm-*, --cluster and --new-kmip-config describe a \
                 rekey target: they go with --to internal|hsm|external",
            ));
        }
        return Ok(None);
    };
    match kind {
        RootKind::Internal => {
            if hsm_flags || t.cluster.is_some() || t.new_kmip_config.is_some() {
                return Err(usage(
                    "--to internal takes --new-passphrase-file FILE (or nothing: the root key \
                     file), not --new-hsm-* or --cluster",
                ));
            }
            Ok(Some(match &t.new_passphrase_file {
                Some(p) => Root::Passphrase(
                    dare::read_passphrase_file(p)
                        .map_err(dare::Error::from)
                        .context("--new-passphrase-file")?,
                ),
                None => Root::KeyFile,
            }))
        }
        RootKind::Hsm => {
            if t.new_passphrase_file.is_some() || t.cluster.is_some() || t.new_kmip_config.is_some()
            {
                return Err(usage(
                    "--to hsm takes --new-hsm-module, --new-hsm-token, --new-hsm-key and \
                     --new-hsm-pin-file, not --new-passphrase-file or --cluster",
                ));
            }
            let (Some(module), Some(token), Some(key), Some(pin)) = (
                &t.new_hsm_module,
                &t.new_hsm_token,
                &t.new_hsm_key,
                &t.new_hsm_pin_file,
            ) else {
                return Err(usage(
                    "--to hsm needs --new-hsm-module PATH, --new-hsm-token LABEL, --new-hsm-key \
                     LABEL and --new-hsm-pin-file FILE",
                ));
            };
            Ok(Some(Root::Pkcs11 {
                config: dare::HsmConfig {
                    module: module.clone(),
                    token: token.clone(),
                    key: key.clone(),
                },
                pin: dare::HsmPin::read_file(pin)
                    .map_err(dare::Error::from)
                    .context("--new-hsm-pin-file")?,
            }))
        }
        RootKind::External => {
            if hsm_flags || t.new_passphrase_file.is_some() {
                return Err(usage(
                    "--to external takes --cluster NAME, not --new-passphrase-file or --new-hsm-*",
                ));
            }
            let (Some(c), Some(f)) = (&t.cluster, &t.new_kmip_config) else {
                return Err(usage(
                    "--to external needs --cluster NAME and --new-kmip-config FILE (the \
                     configuration that defines the cluster)",
                ));
            };
            external_root(c, f).map(Some)
        }
    }
}

/// The target flags again, for the background runner's command line (file paths only: no
/// passphrase or PIN ever goes on a command line).
fn target_args(t: &TargetArgs) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut flag = |name: &str, v: Option<OsString>| {
        if let Some(v) = v {
            a.push(name.into());
            a.push(v);
        }
    };
    flag(
        "--to",
        t.to.map(|k| {
            match k {
                RootKind::Internal => "internal",
                RootKind::Hsm => "hsm",
                RootKind::External => "external",
            }
            .into()
        }),
    );
    flag(
        "--new-passphrase-file",
        t.new_passphrase_file.clone().map(Into::into),
    );
    flag("--new-hsm-module", t.new_hsm_module.clone().map(Into::into));
    flag("--new-hsm-token", t.new_hsm_token.clone().map(Into::into));
    flag("--new-hsm-key", t.new_hsm_key.clone().map(Into::into));
    flag(
        "--new-hsm-pin-file",
        t.new_hsm_pin_file.clone().map(Into::into),
    );
    flag("--cluster", t.cluster.clone().map(Into::into));
    flag(
        "--new-kmip-config",
        t.new_kmip_config.clone().map(Into::into),
    );
    a
}

/// Opens the store, with the rekey target when the flags name one.
fn open(s: &Settings, target: Option<&Root>) -> Result<Dare> {
    match target {
        None => s.open(),
        Some(t) => {
            if !Dare::exists(s.dir()) {
                bail!("{} is not a dare store", s.dir().display());
            }
            Ok(Dare::open_with_target(s.dir(), &s.options()?, t)?)
        }
    }
}

/// `dare keys rekey --to ... [--wait]`.
pub fn rekey(s: &Settings, t: &TargetArgs, wait: bool, as_json: bool) -> Result<()> {
    let Some(target) = target_root(t)? else {
        return Err(Usage("dare keys rekey needs --to internal|hsm|external".into()).into());
    };
    let d = open(s, Some(&target))?;
    let id = d.start_rekey()?;
    if wait {
        d.run_rekey(id, &rotation_options())?;
        return report(&d, id, as_json);
    }
    let mut args: Vec<OsString> = vec![
        "keys".into(),
        "task".into(),
        id.to_string().into(),
        "--resume".into(),
    ];
    args.extend(target_args(t));
    spawn_dare(s, &args)?;
    if as_json {
        return print_json(&json!({"asyncHandle": id, "state": "started"}));
    }
    writeln!(crate::out::stdout(), "{id}")?;
    note(format_args!(
        "rekey task {id} started in the background; follow it with `dare keys task {id}`"
    ));
    Ok(())
}

/// `dare keys task HANDLE [--wait] [--resume] [--to ...]`.
pub fn task(
    s: &Settings,
    id: u64,
    wait: bool,
    resume: bool,
    t: &TargetArgs,
    as_json: bool,
) -> Result<()> {
    let target = target_root(t)?;
    let d = open(s, target.as_ref())?;
    let kind = d.task(id)?.kind;
    if resume {
        // --wait: a lease left by a runner that died is waited out, then taken over.
        let opts = dare::RotationOptions {
            wait_for_lease: wait,
            ..rotation_options()
        };
        match (kind, &target) {
            ("rekey", None) => {
                let r = d.task(id)?;
                bail!(
                    "task {id} is a rekey to {}: resume it with its target again (--to ... and \
                     the --new-* flags it started with)",
                    r.target.unwrap_or_default()
                );
            }
            ("rekey", Some(_)) => {
                d.resume_rekey(id, &opts)?;
            }
            _ => {
                d.keys()
                    .resume_rotation(id, &opts)
                    .map_err(dare::Error::from)?;
            }
        }
    } else if wait {
        wait_for(&d, id)?;
    }
    report(&d, id, as_json)
}

/// Polls task `id` until it completes; fails when it stops with an error.
fn wait_for(d: &Dare, id: u64) -> Result<()> {
    let mut last = (u8::MAX, Instant::now(), false);
    loop {
        let r = d.task(id)?;
        if r.step != last.0 {
            last = (r.step, Instant::now(), false);
        } else if !last.2 && last.1.elapsed() > Duration::from_secs(10) {
            note(format_args!(
                "task {id}: no progress for 10 s; if its process died, run `dare keys task \
                 {id} --resume`"
            ));
            last.2 = true;
        }
        match r.state {
            TaskState::Completed => return Ok(()),
            TaskState::TransientError => bail!(
                "task {id} stopped with an error: {} (resume it with `dare keys task {id} \
                 --resume`)",
                r.error.unwrap_or_default()
            ),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn iso(secs: u64) -> String {
    super::utc(secs.saturating_mul(1000), true)
}

fn key_json(k: &dare::MasterKeyRef) -> Value {
    json!({
        "version": k.version,
        "keyID": k.key_id,
        "keyManagementType": k.management,
        "keyProviderID": k.provider,
    })
}

/// The report of `dare keys task HANDLE --json` (KEYS.md §8.3.2).
fn report_json(r: &TaskReport) -> Value {
    json!({
        "id": r.id,
        "resultType": r.kind,
        "status": if r.state == TaskState::Completed { "complete" } else { "running" },
        "state": r.state.as_str(),
        "step": r.step,
        "stepName": dare::step_name(r.step),
        "createTime": iso(r.created),
        "lastUpdateTime": iso(r.last_update),
        "endTime": r.ended.map(iso),
        "operation": r.operation,
        "target": r.target,
        "keyToDecommission": r.key_to_decommission.as_ref().map(key_json),
        "newKey": r.new_key.as_ref().map(key_json),
        "error": r.error,
        "outcome": r.outcome,
    })
}

fn report(d: &Dare, id: u64, as_json: bool) -> Result<()> {
    let r = d.task(id)?;
    if as_json {
        return print_json(&report_json(&r));
    }
    let key = |k: &Option<dare::MasterKeyRef>| match k {
        Some(k) => format!(
            "master v{} — {} — {}{}",
            k.version,
            k.management,
            k.provider,
            k.key_id
                .as_ref()
                .map(|i| format!(" — key id {i}"))
                .unwrap_or_default()
        ),
        None => "-".into(),
    };
    let mut o = crate::out::stdout().lock();
    writeln!(o, "task:               {} ({})", r.id, r.kind)?;
    writeln!(o, "state:              {}", r.state.as_str())?;
    writeln!(
        o,
        "step:               {} ({})",
        r.step,
        dare::step_name(r.step)
    )?;
    writeln!(o, "operation:          {}", r.operation)?;
    writeln!(o, "created:            {}", iso(r.created))?;
    writeln!(o, "last update:        {}", iso(r.last_update))?;
    writeln!(o, "key to decommission: {}", key(&r.key_to_decommission))?;
    writeln!(o, "new key:            {}", key(&r.new_key))?;
    if let Some(e) = &r.error {
        writeln!(o, "last error:         {e}")?;
    }
    Ok(())
}

fn master_json(m: &MasterInfo) -> Value {
    json!({
        "version": m.version,
        "state": m.state.as_str(),
        "keyCreatedTime": iso(m.created),
        "retiredTime": m.retired.map(iso),
        "keyID": m.key.key_id,
        "keyManagementType": m.key.management,
        "keyProviderID": m.key.provider,
        "deactivated": m.deactivation.as_deref() == Some("deactivated"),
        "deactivation": m.deactivation,
        "deactivatedTime": m.deactivated.map(iso),
    })
}

fn info_json(i: &KeysInfo) -> Value {
    json!({
        "rootOfTrust": i.root_of_trust,
        "masterKeyInfo": master_json(&i.current),
        "otherMasterKeys": i.others.iter().map(master_json).collect::<Vec<_>>(),
        "rekeyMasterKeyAsyncResultID": i.latest_rekey,
        "runningTask": i.running_task,
    })
}

/// `dare keys info [--json]`.
pub fn info(s: &Settings, as_json: bool) -> Result<()> {
    let d = s.open()?;
    let i = d.key_info()?;
    if as_json {
        return print_json(&info_json(&i));
    }
    let mut o = crate::out::stdout().lock();
    writeln!(o, "root of trust: {}", i.root_of_trust)?;
    writeln!(
        o,
        "{:<8} {:<9} {:<9} {:<21} {:<21} {:<12} provider",
        "version", "state", "type", "created (UTC)", "deactivated", "key id"
    )?;
    for m in std::iter::once(&i.current).chain(i.others.iter()) {
        let deact = match (&m.deactivation, m.deactivated) {
            (Some(d), Some(t)) if d == "nothing" => format!("n/a {}", &iso(t)[..10]),
            (Some(_), Some(t)) => iso(t),
            _ => "-".into(),
        };
        writeln!(
            o,
            "{:<8} {:<9} {:<9} {:<21} {:<21} {:<12} {}",
            m.version,
            m.state.as_str(),
            m.key.management,
            iso(m.created),
            deact,
            m.key.key_id.as_deref().unwrap_or("-"),
            m.key.provider
        )?;
    }
    if let Some(t) = i.running_task {
        writeln!(o, "unfinished task: {t} (dare keys task {t})")?;
    }
    Ok(())
}
