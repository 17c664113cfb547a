//! `dare keys ...`: dump the key records, start, run, resume and report rotations, rewrap
//! object envelopes.
//!
//! A rotation is an asynchronous task (ECS D@RE §2.4, NetApp's async rekey): `dare keys
//! rotate` records the task, starts a background `dare` process that runs it, and prints the
//! task id at once (`--wait` runs it in this process instead). Every step is saved; a task
//! interrupted by a crash is resumed with `dare keys rotation resume` (or by the next `dare
//! keys rotate`). A rotation leaves existing objects' envelopes under the old rotation key
//! (still readable); `dare keys rewrap` moves them to the new one without touching data.

use std::io::{self, IsTerminal, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use dare::TaskState;
use dare::{Dare, RewrapReport, RotationOptions, RotationStatus};
use serde_json::{Value, json};

use super::{note, print_json};
use crate::cli::{KeysCommand, RewrapArgs, RotationCommand};
use crate::settings::Settings;

/// The rotation runner's options. The crash hook (abort right after step N) and a shorter
/// lease (so that tests need not wait 30 s for a crashed runner's lease to expire) are
/// compiled only into test builds (feature `test-hooks`), where the environment sets them:
/// `DARE_CRASH_AFTER_STEP=N`, `DARE_LEASE_TTL_MS=MS`.
pub fn rotation_options() -> RotationOptions {
    #[allow(unused_mut)]
    let mut o = RotationOptions::default();
    #[cfg(feature = "test-hooks")]
    {
        o.crash_after_step = std::env::var("DARE_CRASH_AFTER_STEP")
            .ok()
            .and_then(|s| s.trim().parse().ok());
        if let Some(ms) = std::env::var("DARE_LEASE_TTL_MS")
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            o.lease_ttl = Duration::from_millis(ms);
        }
    }
    o
}

/// Runs (resumes) task `id` in this process. When another process holds the task's lease:
/// with `wait`, says so and waits until that process finishes the task or its lease expires
/// (then goes on from the saved step); without, fails naming the holder and the lease's end.
fn resume_here(d: &Dare, id: u64, wait: bool) -> Result<RotationStatus> {
    let opts = rotation_options();
    match d.keys().resume_rotation(id, &opts) {
        Err(dare::KeyStoreError::RotationLeased { id, owner, expires }) if wait => {
            note(format_args!(
                "rotation {id} is being run by {owner} (lease until {} UTC); waiting until it \
                 finishes or its lease expires",
                super::utc(expires, false)
            ));
            let opts = RotationOptions {
                wait_for_lease: true,
                ..opts
            };
            d.keys().resume_rotation(id, &opts).map_err(keys_err)
        }
        Err(dare::KeyStoreError::RotationLeased { id, owner, expires }) => bail!(
            "rotation {id} is being run by {owner}: its lease runs until {} UTC ({}). If that \
             process is alive, follow it with `dare keys rotation status --wait`; if it died, \
             `dare keys rotation resume --wait` takes over once the lease expires",
            super::utc(expires, false),
            until(expires)
        ),
        r => r.map_err(keys_err),
    }
}

/// Unix milliseconds now, by this machine's clock (what lease expiries are compared with).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// "in 12.3 s" or "expired 0.4 s ago".
fn until(expires: u64) -> String {
    let now = now_ms();
    if expires >= now {
        format!("in {:.1} s", (expires - now) as f64 / 1000.0)
    } else {
        format!("expired {:.1} s ago", (now - expires) as f64 / 1000.0)
    }
}

fn keys_err(e: dare::KeyStoreError) -> anyhow::Error {
    dare::Error::from(e).into()
}

/// `dare keys ...`.
pub fn run(s: &Settings, cmd: KeysCommand) -> Result<()> {
    // Rekey and task reports open the store themselves (a rekey with its target as well).
    let cmd = match cmd {
        KeysCommand::Rekey { target, wait, out } => {
            return super::rekey::rekey(s, &target, wait, out.json);
        }
        KeysCommand::Task {
            handle,
            wait,
            resume,
            target,
            out,
        } => return super::rekey::task(s, handle, wait, resume, &target, out.json),
        KeysCommand::Info(out) => return super::rekey::info(s, out.json),
        other => other,
    };
    let d = s.open()?;
    match cmd {
        KeysCommand::Dump(_) => {
            // Always JSON: the dump is for backup and audit tools.
            let text = d.keys().dump_json().map_err(keys_err)?;
            let mut o = crate::out::stdout().lock();
            writeln!(o, "{text}")?;
            o.flush()?;
        }
        KeysCommand::Rotate { wait, out } => rotate(s, &d, wait, out.json)?,
        KeysCommand::Rotation(RotationCommand::Status { id, wait, out }) => {
            let id = match id {
                Some(i) => i,
                None => match history(&d)?.last() {
                    Some(t) => t.id,
                    // No rotation yet: an empty history, which is not an error.
                    None if out.json => {
                        return print_json(&json!({"task": null, "history": []}));
                    }
                    None => {
                        writeln!(
                            crate::out::stdout(),
                            "no rotation has been started in this store (history is empty)"
                        )?;
                        return Ok(());
                    }
                },
            };
            let st = if wait {
                wait_for(&d, id)?
            } else {
                d.keys().rotation_status(id).map_err(keys_err)?
            };
            let hist = history(&d)?;
            if out.json {
                return print_json(&json!({
                    "task": status_json(&st),
                    "history": hist.iter().map(status_json).collect::<Vec<_>>(),
                }));
            }
            let mut o = crate::out::stdout().lock();
            print_status(&mut o, &st)?;
            writeln!(o)?;
            writeln!(
                o,
                "{:<6} {:<16} {:<6} {:<20} {:<20} outcome",
                "id", "state", "step", "started (UTC)", "ended (UTC)"
            )?;
            for t in &hist {
                writeln!(
                    o,
                    "{:<6} {:<16} {:<6} {:<20} {:<20} {}",
                    t.id,
                    t.state.as_str(),
                    t.step,
                    secs(t.started),
                    t.ended.map(secs).unwrap_or_else(|| "-".into()),
                    t.outcome
                        .clone()
                        .or_else(|| t.error.clone())
                        .unwrap_or_default()
                )?;
            }
        }
        KeysCommand::Rotation(RotationCommand::Resume { id, wait, out }) => {
            let id = match id {
                Some(i) => Some(i),
                None => unfinished(&d)?.map(|t| t.id),
            };
            let Some(id) = id else {
                // Nothing interrupted: resuming is a no-op, so scripts can always call it.
                let last = history(&d)?.pop();
                if out.json {
                    return print_json(&json!({"task": last.as_ref().map(status_json)}));
                }
                match last {
                    Some(t) => writeln!(
                        crate::out::stdout(),
                        "no interrupted rotation; the latest, {}, is {}",
                        t.id,
                        t.state.as_str()
                    )?,
                    None => writeln!(
                        crate::out::stdout(),
                        "no rotation has been started in this store"
                    )?,
                }
                return Ok(());
            };
            let st = resume_here(&d, id, wait)?;
            if out.json {
                return print_json(&json!({"task": status_json(&st)}));
            }
            print_status(&mut crate::out::stdout().lock(), &st)?;
        }
        KeysCommand::Rewrap(a) => rewrap(&d, a)?,
        KeysCommand::Rekey { .. } | KeysCommand::Task { .. } | KeysCommand::Info(_) => {
            // Dispatched before the store was opened.
            bail!("dare keys rekey, task and info open the store themselves")
        }
    }
    Ok(())
}

fn history(d: &Dare) -> Result<Vec<RotationStatus>> {
    d.keys().rotation_history().map_err(keys_err)
}

fn unfinished(d: &Dare) -> Result<Option<RotationStatus>> {
    Ok(history(d)?
        .into_iter()
        .rev()
        .find(|t| t.state != TaskState::Completed))
}

fn secs(t: u64) -> String {
    super::utc(t.saturating_mul(1000), false)
}

/// `dare keys rotate [--wait]`.
fn rotate(s: &Settings, d: &Dare, wait: bool, as_json: bool) -> Result<()> {
    let id = match unfinished(d)? {
        Some(t) => {
            note(format_args!(
                "rotation {} is not finished ({} after step {}); continuing it instead of \
                 starting another",
                t.id,
                t.state.as_str(),
                t.step
            ));
            t.id
        }
        None => match d.keys().start_rotation() {
            Ok(id) => id,
            // Another process started one between our look and our start: continue that one.
            Err(dare::KeyStoreError::RotationInProgress(id)) => id,
            Err(e) => return Err(keys_err(e)),
        },
    };
    if wait {
        // "Return when it has finished": a rotation another process runs is waited for.
        let st = resume_here(d, id, true)?;
        if as_json {
            return print_json(&json!({"task": status_json(&st)}));
        }
        return print_status(&mut crate::out::stdout().lock(), &st);
    }
    spawn_runner(s, id)?;
    if as_json {
        return print_json(&json!({"id": id, "state": "started"}));
    }
    writeln!(crate::out::stdout(), "{id}")?;
    note(format_args!(
        "rotation task {id} started in the background; follow it with `dare keys rotation \
         status {id}`"
    ));
    Ok(())
}

/// Starts `dare keys rotation resume ID` as a detached background process.
fn spawn_runner(s: &Settings, id: u64) -> Result<()> {
    spawn_dare(
        s,
        &[
            "keys".into(),
            "rotation".into(),
            "resume".into(),
            id.to_string().into(),
        ],
    )
}

/// Starts `dare [the store's flags] ARGS` as a detached background process (a task runner).
pub(crate) fn spawn_dare(s: &Settings, args: &[std::ffi::OsString]) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("cannot locate the dare executable")?;
    let mut c = Command::new(exe);
    c.arg("--store").arg(s.dir());
    if let Some(p) = &s.passphrase_file {
        c.arg("--passphrase-file").arg(p);
    }
    // The HSM's module and labels as flags; its PIN as its file, or in DARE_HSM_PIN, which
    // the child inherits with the rest of the environment (never on its command line).
    if let Some(h) = &s.hsm {
        c.arg("--hsm-module").arg(&h.config.module);
        c.arg("--hsm-token").arg(&h.config.token);
        c.arg("--hsm-key").arg(&h.config.key);
        if let Some(p) = &h.pin_file {
            c.arg("--hsm-pin-file").arg(p);
        }
    }
    // A KMIP root: its configuration file and cluster (no secret: the client key is a file
    // the configuration names).
    if let Some(k) = &s.kmip {
        c.arg("--kmip-config").arg(&k.config);
        c.arg("--kmip-cluster").arg(&k.cluster);
    }
    // The metadata URL goes through the environment, never the child's command line (where
    // `ps` would show its password).
    if let Some(u) = &s.metadata {
        c.env("DARE_METADATA_URL", u.expose());
    }
    c.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("cannot start the background rotation process")?;
    Ok(())
}

/// Polls a task until it completes; fails if it stops with an error.
fn wait_for(d: &Dare, id: u64) -> Result<RotationStatus> {
    let mut last = (u8::MAX, Instant::now(), false);
    loop {
        let st = d.keys().rotation_status(id).map_err(keys_err)?;
        if st.step != last.0 {
            last = (st.step, Instant::now(), false);
        } else if !last.2 && last.1.elapsed() > Duration::from_secs(10) {
            note(format_args!(
                "rotation {id}: no progress for 10 s; if its process died, run `dare keys \
                 rotation resume {id}`"
            ));
            last.2 = true;
        }
        match st.state {
            TaskState::Completed => {
                let _ = d.keys().refresh();
                return Ok(st);
            }
            TaskState::TransientError => bail!(
                "rotation {id} stopped with an error: {} (resume it with `dare keys rotation \
                 resume {id}`)",
                st.error.unwrap_or_default()
            ),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn status_json(s: &RotationStatus) -> Value {
    json!({
        "id": s.id,
        "state": s.state.as_str(),
        "step": s.step,
        "step_name": dare::step_name(s.step),
        "started": s.started,
        "ended": s.ended,
        "outcome": s.outcome,
        "error": s.error,
        "new_master_version": s.new_master,
        "new_rotation_version": s.new_rotation,
        "lease": lease_json(s),
    })
}

/// Whether the lease is `held` (taken and not expired), `expired` (taken, past its expiry:
/// its runner stopped or died) or `free`.
fn lease_state(s: &RotationStatus) -> &'static str {
    match (&s.lease_owner, s.lease_held_at(now_ms())) {
        (_, Some(_)) => "held",
        (Some(_), None) => "expired",
        (None, None) => "free",
    }
}

fn lease_json(s: &RotationStatus) -> Value {
    json!({
        "state": lease_state(s),
        "owner": s.lease_owner,
        "expires_ms": s.lease_expires,
        "expires": s.lease_expires.map(|e| super::utc(e, true)),
        "token": s.lease_token,
    })
}

/// "held by X until T (token N)", "expired at T, left by X (token N) ...", "free (token N)".
fn lease_line(s: &RotationStatus) -> String {
    let token = s.lease_token;
    match (&s.lease_owner, s.lease_expires) {
        (Some(owner), Some(expires)) if lease_state(s) == "held" => format!(
            "held by {owner} until {} UTC, {} (token {token})",
            super::utc(expires, false),
            until(expires)
        ),
        (Some(owner), Some(expires)) => format!(
            "expired at {} UTC, left by {owner} (token {token}); `dare keys rotation resume` \
             takes it over",
            super::utc(expires, false)
        ),
        _ => format!("free (token {token})"),
    }
}

fn print_status(o: &mut dyn Write, s: &RotationStatus) -> Result<()> {
    writeln!(o, "rotation:    {}", s.id)?;
    writeln!(o, "state:       {}", s.state.as_str())?;
    writeln!(o, "step:        {} ({})", s.step, dare::step_name(s.step))?;
    writeln!(o, "started:     {} UTC", secs(s.started))?;
    if let Some(e) = s.ended {
        writeln!(o, "ended:       {} UTC", secs(e))?;
    }
    if let Some(v) = s.new_rotation {
        writeln!(
            o,
            "new keys:    master v{}, rotation v{v}",
            s.new_master.unwrap_or(0)
        )?;
    }
    if let Some(x) = &s.outcome {
        writeln!(o, "outcome:     {x}")?;
    }
    if let Some(e) = &s.error {
        writeln!(o, "last error:  {e}")?;
    }
    writeln!(o, "lease:       {}", lease_line(s))?;
    Ok(())
}

fn report_json(bucket: &str, stale: u64, r: &RewrapReport) -> Value {
    json!({
        "bucket": bucket,
        "stale_before": stale,
        "total": r.total,
        "scanned": r.scanned,
        "rewrapped": r.rewrapped,
        "current": r.current,
        "customer_keys": r.customer_keys,
        "clear": r.clear,
        "format1": r.format1,
        "raced": r.raced,
        "rotation_version": r.rotation_version,
    })
}

/// `dare keys rewrap`.
fn rewrap(d: &Dare, a: RewrapArgs) -> Result<()> {
    let buckets: Vec<String> = if a.bucket.is_empty() {
        d.buckets(None)?
            .into_iter()
            .filter(|b| b.encryption)
            .map(|b| b.name)
            .collect()
    } else {
        a.bucket.clone()
    };
    let mut stale = Vec::with_capacity(buckets.len());
    for b in &buckets {
        stale.push(d.stale_envelopes(b)?);
    }
    let active = d.keys().store_record().active_rotation;
    if !a.out.json {
        let mut o = crate::out::stdout().lock();
        for (b, n) in buckets.iter().zip(&stale) {
            writeln!(
                o,
                "{b}: {n} envelope(s) not under the active rotation key v{active}"
            )?;
        }
        o.flush()?;
    }
    let mut reports = Vec::with_capacity(buckets.len());
    for b in &buckets {
        let bar = progress_bar(b);
        let r = d.rewrap(b, &mut |r: &RewrapReport| {
            bar.set_length(r.total);
            bar.set_position(r.scanned);
        });
        bar.finish_and_clear();
        reports.push(r?);
    }
    if a.out.json {
        let v: Vec<Value> = buckets
            .iter()
            .zip(&stale)
            .zip(&reports)
            .map(|((b, n), r)| report_json(b, *n, r))
            .collect();
        return print_json(&json!({"rotation_version": active, "buckets": v}));
    }
    let mut o = crate::out::stdout().lock();
    for (b, r) in buckets.iter().zip(&reports) {
        writeln!(
            o,
            "{b}: rewrapped {}, already current {}, SSE-C skipped {}, format-1 skipped {}, \
             clear {}, raced {} (of {} objects; rotation key v{})",
            r.rewrapped,
            r.current,
            r.customer_keys,
            r.format1,
            r.clear,
            r.raced,
            r.scanned,
            r.rotation_version
        )?;
    }
    Ok(())
}

/// A progress bar on standard error, only when it is a terminal.
fn progress_bar(bucket: &str) -> indicatif::ProgressBar {
    if !io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {bar:32} {pos}/{len} objects ({per_sec})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.set_message(format!("rewrap {bucket}"));
    pb
}
