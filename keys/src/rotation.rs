//! Key rotation as a resumable task (ECS white paper §2.4, §2.6; NetApp's asynchronous rekey
//! with a handle).
//!
//! `start_rotation` saves a task in state `pending` and returns its id (the handle);
//! `run_rotation` (typically in a background process) executes the steps:
//!
//! 1. create a new master key version (state `pending`), up to 3 attempts;
//! 2. create a new rotation key version, wrapped by the new VMK;
//! 3. switch: the new master key becomes `active`, the old one `retiring`, and the new
//!    rotation key becomes the active one; new objects use it from now on;
//! 4. rewrap every rotation key version and every namespace key not yet under the new VMK;
//! 5. retire the old master key; the task becomes `completed`.
//!
//! Each step's effect and the task's step marker are written in the *same* atomic replace of
//! the store file, so a crash leaves either both or neither, and re-running a step after a
//! crash is the same as running it once. A failed step saves state `transient_error` with
//! the message; `resume_rotation` continues after the last saved step. Object data is never
//! touched: virtual bucket keys do not depend on the master key, and rotation keys are never
//! deleted, so every existing key block keeps opening.
//!
//! Test-only crash hook: if the environment variable `DARE_CRASH_AFTER_STEP=N` is set, the
//! process calls `std::process::abort()` right after step N's state is durably saved.

use crate::store::table::{
    B64, MasterKeyRecord, MasterState, RotationKeyRecord, RotationTask, TaskState,
};
use crate::store::{KeyStore, now};
use crate::wrap::{unwrap_key, wrap_key};
use crate::{KeyError, Secret32, StoreError};

/// Environment variable of the test-only crash hook (see the module docs).
pub const CRASH_AFTER_STEP_ENV: &str = "DARE_CRASH_AFTER_STEP";

/// How many times step 1 tries to create the master key before giving up for this run.
pub const MASTER_KEY_ATTEMPTS: u32 = 3;

/// Name of the step a task has completed last.
pub fn step_name(step: u8) -> &'static str {
    match step {
        0 => "not started",
        1 => "master key created",
        2 => "rotation key created",
        3 => "keys activated",
        4 => "keys rewrapped",
        5 => "old master key retired",
        _ => "unknown",
    }
}

/// A rotation task's status, for `dare keys rotation status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationStatus {
    /// Task id (the handle returned by `start_rotation`).
    pub id: u64,
    /// Task state.
    pub state: TaskState,
    /// The last step whose effect is saved (0-5); see [`step_name`].
    pub step: u8,
    /// Start time, Unix seconds.
    pub started: u64,
    /// End time, Unix seconds, once completed.
    pub ended: Option<u64>,
    /// What the completed task did.
    pub outcome: Option<String>,
    /// The last error, while in `transient_error` (kept after a successful resume for history).
    pub error: Option<String>,
    /// The master key version the task created.
    pub new_master: Option<u32>,
    /// The rotation key version the task created.
    pub new_rotation: Option<u32>,
}

fn status_of(t: &RotationTask) -> RotationStatus {
    RotationStatus {
        id: t.id,
        state: t.state,
        step: t.step,
        started: t.started,
        ended: t.ended,
        outcome: t.outcome.clone(),
        error: t.error.clone(),
        new_master: t.new_master,
        new_rotation: t.new_rotation,
    }
}

fn no_task(id: u64) -> StoreError {
    StoreError::NotFound {
        what: "rotation task",
        name: id.to_string(),
    }
}

fn next_version<'a>(mut it: impl Iterator<Item = &'a u32>) -> Result<u32, StoreError> {
    let max = it.try_fold(0u32, |m, v| Some(m.max(*v))).unwrap_or(0);
    max.checked_add(1)
        .ok_or(StoreError::Corrupt("key version overflow".into()))
}

impl KeyStore {
    /// Saves a new rotation task in state `pending` and returns its id. Refuses while another
    /// task is unfinished ([`StoreError::RotationInProgress`]).
    pub fn start_rotation(&self) -> Result<u64, StoreError> {
        self.update(|t| {
            if let Some(open) = t.tasks.iter().find(|x| x.state != TaskState::Completed) {
                return Err(StoreError::RotationInProgress(open.id));
            }
            let id = t.next_task_id;
            t.next_task_id = id
                .checked_add(1)
                .ok_or(StoreError::Corrupt("task id overflow".into()))?;
            t.tasks.push(RotationTask {
                id,
                state: TaskState::Pending,
                step: 0,
                started: now(),
                ended: None,
                outcome: None,
                error: None,
                previous_master: t.active_master,
                new_master: None,
                new_rotation: None,
                master_attempts: 0,
            });
            Ok(id)
        })
    }

    /// Runs a `pending` task to completion.
    pub fn run_rotation(&self, id: u64) -> Result<RotationStatus, StoreError> {
        self.drive(id, false)
    }

    /// Continues a task that was interrupted (state `running` after a crash) or failed
    /// (`transient_error`) from its last saved step; also runs a `pending` one. Refuses if
    /// another process is running it right now.
    pub fn resume_rotation(&self, id: u64) -> Result<RotationStatus, StoreError> {
        self.drive(id, true)
    }

    /// The status of one task.
    pub fn rotation_status(&self, id: u64) -> Result<RotationStatus, StoreError> {
        let _ = self.refresh();
        let s = self.snapshot();
        s.table
            .tasks
            .iter()
            .find(|t| t.id == id)
            .map(status_of)
            .ok_or_else(|| no_task(id))
    }

    /// Every task, oldest first.
    pub fn rotation_history(&self) -> Vec<RotationStatus> {
        let _ = self.refresh();
        self.snapshot().table.tasks.iter().map(status_of).collect()
    }

    fn drive(&self, id: u64, resume: bool) -> Result<RotationStatus, StoreError> {
        // Held for the whole run: a second runner (another process, or a resume racing a
        // background run) is refused instead of interleaving steps.
        let Some(_running) = crate::store::try_lock_rotation(&self.dir)? else {
            return Err(StoreError::RotationInProgress(id));
        };
        self.refresh()?;
        let state = self
            .snapshot()
            .table
            .tasks
            .iter()
            .find(|t| t.id == id)
            .map(|t| t.state)
            .ok_or_else(|| no_task(id))?;
        let runnable = match state {
            TaskState::Pending => true,
            TaskState::Running | TaskState::TransientError => resume,
            TaskState::Completed => false,
        };
        if !runnable {
            return Err(StoreError::TaskNotRunnable {
                id,
                state: state.as_str(),
            });
        }
        let crash_after: Option<u8> = std::env::var(CRASH_AFTER_STEP_ENV)
            .ok()
            .and_then(|v| v.parse().ok());
        loop {
            let step = self
                .snapshot()
                .table
                .tasks
                .iter()
                .find(|t| t.id == id)
                .map(|t| t.step)
                .ok_or_else(|| no_task(id))?;
            if step >= 5 {
                return self.rotation_status(id);
            }
            let next = step + 1;
            if let Err(e) = self.run_step(id, next) {
                let message = e.to_string();
                let saved = self.update(|t| {
                    let task = t.task_mut(id).ok_or_else(|| no_task(id))?;
                    task.state = TaskState::TransientError;
                    task.error = Some(format!("step {next} ({}): {message}", step_name(next)));
                    Ok(())
                });
                saved?;
                return Err(StoreError::RotationFailed {
                    id,
                    step: next,
                    message,
                });
            }
            if crash_after == Some(next) {
                // Test-only: simulate a crash right after the step's state is durable.
                std::process::abort();
            }
        }
    }

    /// Executes step `n` and saves its effect together with `task.step = n`.
    fn run_step(&self, id: u64, n: u8) -> Result<(), StoreError> {
        match n {
            1 => {
                // The master key is drawn and protected outside the writer lock (a remote root
                // of trust may be slow); if we crash before the save, the next run draws a new
                // one and the orphan blob is never stored.
                let mk = Secret32::generate("master key")?;
                let mut attempts = 0;
                let blob = loop {
                    attempts += 1;
                    match self.root.wrap_master(&mk) {
                        Ok(b) => break b,
                        Err(e) if attempts >= MASTER_KEY_ATTEMPTS => {
                            return Err(StoreError::Key(KeyError::Provider(format!(
                                "creating the master key failed {attempts} times: {e}"
                            ))));
                        }
                        Err(_) => continue,
                    }
                };
                self.update(|t| {
                    let v = next_version(t.masters.iter().map(|m| &m.version))?;
                    t.masters.push(MasterKeyRecord {
                        version: v,
                        state: MasterState::Pending,
                        wrapped: B64(blob),
                        created: now(),
                        retired: None,
                    });
                    let task = t.task_mut(id).ok_or_else(|| no_task(id))?;
                    task.new_master = Some(v);
                    task.master_attempts = attempts;
                    mark(task, 1);
                    Ok(())
                })
            }
            2 => {
                let rk = Secret32::generate("rotation key")?;
                self.update(|t| {
                    let mv = task_field(t.tasks.iter().find(|x| x.id == id), |x| x.new_master)?;
                    let vmk = self.vmk(t, mv, None)?;
                    let v = next_version(t.rotation_keys.iter().map(|r| &r.version))?;
                    t.rotation_keys.push(RotationKeyRecord {
                        version: v,
                        master_version: mv,
                        wrapped: B64(wrap_key(&vmk, &rk).to_vec()),
                        created: now(),
                    });
                    let task = t.task_mut(id).ok_or_else(|| no_task(id))?;
                    task.new_rotation = Some(v);
                    mark(task, 2);
                    Ok(())
                })
            }
            3 => self.update(|t| {
                let task = t.tasks.iter().find(|x| x.id == id);
                let mv = task_field(task, |x| x.new_master)?;
                let rv = task_field(task, |x| x.new_rotation)?;
                for m in &mut t.masters {
                    if m.version == mv {
                        m.state = MasterState::Active;
                    } else if m.state == MasterState::Active {
                        m.state = MasterState::Retiring;
                    }
                }
                t.active_master = mv;
                t.active_rotation = rv;
                t.key_epoch += 1;
                mark(t.task_mut(id).ok_or_else(|| no_task(id))?, 3);
                Ok(())
            }),
            4 => self.update(|t| {
                let mv = t.active_master;
                let new_vmk = self.vmk(t, mv, None)?;
                let mut rewrapped = Vec::new();
                for (i, r) in t.rotation_keys.iter().enumerate() {
                    if r.master_version != mv {
                        let old = self.vmk(t, r.master_version, None)?;
                        let k = unwrap_key(&old, &r.wrapped.0, "rotation key")?;
                        rewrapped.push((true, i, wrap_key(&new_vmk, &k)));
                    }
                }
                for (i, ns) in t.namespaces.iter().enumerate() {
                    if ns.master_version != mv {
                        let old = self.vmk(t, ns.master_version, None)?;
                        let k = unwrap_key(&old, &ns.wrapped_key.0, "namespace key")?;
                        rewrapped.push((false, i, wrap_key(&new_vmk, &k)));
                    }
                }
                for (is_rk, i, w) in rewrapped {
                    if is_rk {
                        t.rotation_keys[i].master_version = mv;
                        t.rotation_keys[i].wrapped = B64(w.to_vec());
                    } else {
                        t.namespaces[i].master_version = mv;
                        t.namespaces[i].wrapped_key = B64(w.to_vec());
                    }
                }
                t.key_epoch += 1;
                mark(t.task_mut(id).ok_or_else(|| no_task(id))?, 4);
                Ok(())
            }),
            5 => self.update(|t| {
                let ts = now();
                let mut retired = Vec::new();
                for m in &mut t.masters {
                    if m.state == MasterState::Retiring {
                        m.state = MasterState::Retired;
                        m.retired = Some(ts);
                        retired.push(m.version);
                    }
                }
                let (mv, rv) = (t.active_master, t.active_rotation);
                let task = t.task_mut(id).ok_or_else(|| no_task(id))?;
                mark(task, 5);
                task.state = TaskState::Completed;
                task.ended = Some(ts);
                task.outcome = Some(format!(
                    "active master key version {mv}, active rotation key version {rv}; retired master key version(s) {retired:?}"
                ));
                Ok(())
            }),
            _ => Err(StoreError::Corrupt(format!("no rotation step {n}"))),
        }
    }
}

fn mark(task: &mut RotationTask, step: u8) {
    task.step = step;
    task.state = TaskState::Running;
}

fn task_field(
    task: Option<&RotationTask>,
    f: impl Fn(&RotationTask) -> Option<u32>,
) -> Result<u32, StoreError> {
    task.and_then(f).ok_or(StoreError::Corrupt(
        "rotation task lacks the result of an earlier step".into(),
    ))
}
