//! `dare keys ...`: dump the key store, start, run, resume and report rotations.
//!
//! A rotation is an asynchronous task (ECS D@RE §2.4, NetApp's async rekey): `dare keys
//! rotate` records the task, starts a background `dare` process that runs it, and prints the
//! task id at once. Every step is persisted; a task interrupted by a crash is resumed with
//! `dare keys rotation resume` (or by the next `dare keys rotate`).

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use dare_keys::{RotationStatus, TaskState};
use serde_json::json;

use crate::cli::{KeysCommand, RotationCommand};
use crate::control::Dare;

pub fn run(d: &Dare, cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Dump(_) => {
            // Dump is JSON always: it is for backup and audit tools.
            println!("{}", d.keys.dump_json()?);
        }
        KeysCommand::Rotate { wait } => {
            let id = match unfinished(d) {
                Some(t) => {
                    eprintln!(
                        "rotation {} is not finished ({} after step {}); continuing it instead of starting another",
                        t.id,
                        t.state.as_str(),
                        t.step
                    );
                    t.id
                }
                None => d.keys.start_rotation()?,
            };
            if wait {
                let s = match d.keys.resume_rotation(id) {
                    // Another process is running this task right now: wait for it.
                    Err(dare_keys::StoreError::RotationInProgress(_)) => wait_for(d, id)?,
                    r => r?,
                };
                print_status(&s);
            } else {
                spawn_runner(d, id)?;
                println!("{id}");
                eprintln!(
                    "rotation task {id} started; follow it with `dare keys rotation status {id}`"
                );
            }
        }
        KeysCommand::Rotation(RotationCommand::Status {
            id,
            json: as_json,
            wait,
        }) => {
            let id = match id {
                Some(i) => i,
                None => match d.keys.rotation_history().last() {
                    Some(t) => t.id,
                    None => bail!("no rotation has been started in this store"),
                },
            };
            let s = if wait {
                wait_for(d, id)?
            } else {
                d.keys.rotation_status(id)?
            };
            let history = d.keys.rotation_history();
            if as_json {
                let v = json!({"task": status_json(&s), "history": history.iter().map(status_json).collect::<Vec<_>>()});
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_status(&s);
                println!();
                println!(
                    "{:<6} {:<16} {:<6} {:<12} {:<12} outcome",
                    "id", "state", "step", "started", "ended"
                );
                for t in &history {
                    println!(
                        "{:<6} {:<16} {:<6} {:<12} {:<12} {}",
                        t.id,
                        t.state.as_str(),
                        t.step,
                        t.started,
                        t.ended.map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
                        t.outcome
                            .clone()
                            .or_else(|| t.error.clone())
                            .unwrap_or_default()
                    );
                }
            }
        }
        KeysCommand::Rotation(RotationCommand::Resume { id }) => {
            let id = match id.or_else(|| unfinished(d).map(|t| t.id)) {
                Some(i) => i,
                None => {
                    // Nothing interrupted: resuming is a no-op, so scripts can always call it.
                    match d.keys.rotation_history().last() {
                        Some(t) => println!(
                            "no interrupted rotation; the latest, {}, is {}",
                            t.id,
                            t.state.as_str()
                        ),
                        None => println!("no rotation has been started in this store"),
                    }
                    return Ok(());
                }
            };
            let s = d.keys.resume_rotation(id)?;
            print_status(&s);
        }
    }
    Ok(())
}

/// Polls a task until it completes; fails if it stops with an error.
fn wait_for(d: &Dare, id: u64) -> Result<RotationStatus> {
    let mut last = (u8::MAX, std::time::Instant::now(), false);
    loop {
        d.keys.refresh()?;
        let s = d.keys.rotation_status(id)?;
        if s.step != last.0 {
            last = (s.step, std::time::Instant::now(), false);
        } else if !last.2 && last.1.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "rotation {id}: no progress for 10 s; if its process died, run `dare keys rotation resume {id}`"
            );
            last.2 = true;
        }
        match s.state {
            TaskState::Completed => return Ok(s),
            TaskState::TransientError => bail!(
                "rotation {id} stopped with an error: {} (resume it with `dare keys rotation resume {id}`)",
                s.error.unwrap_or_default()
            ),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn unfinished(d: &Dare) -> Option<RotationStatus> {
    d.keys
        .rotation_history()
        .into_iter()
        .rev()
        .find(|t| t.state != TaskState::Completed)
}

/// Starts `dare keys rotation resume ID` as a detached background process.
fn spawn_runner(d: &Dare, id: u64) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("locating the dare executable")?;
    Command::new(exe)
        .arg("--store")
        .arg(d.objects.root())
        .args(["keys", "rotation", "resume", &id.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .context("starting the background rotation process")?;
    Ok(())
}

fn status_json(s: &RotationStatus) -> serde_json::Value {
    json!({
        "id": s.id,
        "state": s.state.as_str(),
        "step": s.step,
        "step_name": dare_keys::step_name(s.step),
        "started": s.started,
        "ended": s.ended,
        "outcome": s.outcome,
        "error": s.error,
        "new_master_version": s.new_master,
        "new_rotation_version": s.new_rotation,
    })
}

fn print_status(s: &RotationStatus) {
    println!("rotation:    {}", s.id);
    println!("state:       {}", s.state.as_str());
    println!("step:        {} ({})", s.step, dare_keys::step_name(s.step));
    println!("started:     {} (unix seconds)", s.started);
    if let Some(e) = s.ended {
        println!("ended:       {e} (unix seconds)");
    }
    if let Some(o) = &s.outcome {
        println!("outcome:     {o}");
    }
    if let Some(e) = &s.error {
        println!("last error:  {e}");
    }
}
