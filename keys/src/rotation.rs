//! Key rotation as a resumable task in the metadata `tasks` table (ECS white paper §2.4, §2.6;
//! NetApp's asynchronous rekey with a handle).
//!
//! [`KeyStore::start_rotation`] inserts a task in state `pending` and returns its id (the
//! handle); [`KeyStore::run_rotation`] (typically in a background process) executes the steps:
//!
//! 1. create a new master key version (state `pending`), up to [`MASTER_KEY_ATTEMPTS`] tries;
//! 2. create a new rotation key version, wrapped by the new VMK;
//! 3. switch: the new master key becomes `active`, the old one `retiring`, and the new
//!    rotation key becomes the active one; new objects use it from now on;
//! 4. rewrap every rotation key version and every namespace key not yet under the new VMK;
//! 5. retire the old master key; the task becomes `completed`.
//!
//! Each step is one metadata write transaction that re-reads the task, goes on only if the task
//! is still at step N-1, and writes the step's effect together with `step = N` — the task row
//! is updated with the row version it was read at, and the store row likewise whenever key
//! records, active versions or the epoch change. So a crash leaves a step either wholly saved
//! or not at all, and no lock is needed to keep runners apart: when two processes run the same
//! task, each step commits exactly once; the runner that loses an optimistic check re-reads
//! the task and goes on with the next step, or returns the status once it is completed.
//!
//! Root-of-trust calls (drawing and protecting the new master key, deriving virtual master
//! keys) happen before a step's transaction, since a remote root of trust may be slow and the
//! database serializes writers; a runner that then finds the step done discards its key.
//!
//! A failing step saves state `transient_error` with the message (in a transaction of its own)
//! and leaves `step` where it was; [`KeyStore::resume_rotation`] continues from there. Object
//! data and bucket keys are never touched: virtual bucket keys do not depend on the master key,
//! and no key version is ever deleted, so every existing envelope keeps opening.

use std::collections::HashMap;

use dare_metadata::{
    MasterKeyRecord, MasterState, MetaError, NewTask, ReadTx, RotationKeyRecord, StoreRecord,
    TaskKind, TaskRecord, TaskState, WriteTx, read_with, write_with,
};

use crate::root::RootOfTrust;
use crate::store::{KeyStore, derive_vmk, now};
use crate::wrap::{unwrap_key, wrap_key};
use crate::{KeyError, Secret32, StoreError};

/// How many times step 1 tries to have the root of trust protect the new master key before
/// giving up for this run.
pub const MASTER_KEY_ATTEMPTS: u32 = 3;

/// The name of a step (the last step a task completed, in status output).
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

/// How a rotation runner behaves. Build it with `RotationOptions::default()`: fields exist only
/// under cargo features.
#[derive(Debug, Clone, Default)]
pub struct RotationOptions {
    /// Test hook: abort the process (`std::process::abort`) right after this runner has
    /// committed step N, to test crash consistency with a real process.
    #[cfg(feature = "test-hooks")]
    pub crash_after_step: Option<u8>,
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
    /// The last error (kept after a successful resume, for history).
    pub error: Option<String>,
    /// The master key version the task created.
    pub new_master: Option<u32>,
    /// The rotation key version the task created.
    pub new_rotation: Option<u32>,
}

fn status_of(t: &TaskRecord) -> RotationStatus {
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

fn lacks_earlier_step(id: u64) -> StoreError {
    StoreError::Corrupt(format!(
        "rotation task {id} lacks the result of an earlier step"
    ))
}

fn rotation_task(tx: &mut dyn ReadTx, id: u64) -> Result<TaskRecord, StoreError> {
    tx.task(id)?
        .filter(|t| t.kind == TaskKind::Rotation)
        .ok_or_else(|| no_task(id))
}

/// The id of the unfinished rotation task, if any.
fn open_task(tx: &mut dyn ReadTx) -> Result<Option<u64>, StoreError> {
    Ok(tx
        .tasks()?
        .iter()
        .find(|t| t.kind == TaskKind::Rotation && t.state != TaskState::Completed)
        .map(|t| t.id))
}

fn next_version(versions: impl Iterator<Item = u32>) -> Result<u32, StoreError> {
    versions
        .max()
        .unwrap_or(0)
        .checked_add(1)
        .ok_or(StoreError::Corrupt("key version overflow".into()))
}

fn bump_epoch(s: &mut StoreRecord) -> Result<(), StoreError> {
    s.key_epoch = s
        .key_epoch
        .checked_add(1)
        .ok_or(StoreError::Corrupt("key epoch overflow".into()))?;
    Ok(())
}

/// Reads the store row, applies `f` and writes it back if its row version is still the one
/// read (else [`MetaError::Conflict`], which retries the whole step transaction).
fn update_store(
    tx: &mut dyn WriteTx,
    f: impl FnOnce(&mut StoreRecord) -> Result<(), StoreError>,
) -> Result<StoreRecord, StoreError> {
    let mut s = tx
        .store()?
        .ok_or_else(|| StoreError::NotInitialized("the metadata database".into()))?;
    f(&mut s)?;
    s.row_version = tx.update_store(&s)?;
    Ok(s)
}

/// Virtual master keys needed by the rewrap step, keyed by master version. Master and RT
/// blobs never change, so an entry never goes stale.
struct VmkMemo<'a> {
    root: &'a dyn RootOfTrust,
    keys: HashMap<u32, Secret32>,
}

impl VmkMemo<'_> {
    fn get(&mut self, tx: &mut dyn ReadTx, rt_blob: &[u8], mv: u32) -> Result<Secret32, KeyError> {
        if let Some(k) = self.keys.get(&mv) {
            return Ok(k.clone());
        }
        // Only when a record appeared between the read and the transaction.
        let masters = tx
            .master_keys()
            .map_err(|e| KeyError::Provider(e.to_string()))?;
        let k = derive_vmk(
            self.root,
            masters.iter().find(|m| m.version == mv),
            rt_blob,
            mv,
        )?;
        self.keys.insert(mv, k.clone());
        Ok(k)
    }
}

impl KeyStore {
    /// Inserts a new rotation task in state `pending` and returns its id. Refuses while another
    /// rotation task is unfinished ([`StoreError::RotationInProgress`] with its id).
    pub fn start_rotation(&self) -> Result<u64, StoreError> {
        let meta = &**self.metadata();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = write_with(meta, StoreError::is_retryable, |tx| {
                if let Some(open) = open_task(tx)? {
                    return Err(StoreError::RotationInProgress(open));
                }
                let store = tx
                    .store()?
                    .ok_or_else(|| StoreError::NotInitialized(meta.describe()))?;
                Ok(tx.insert_task(&NewTask {
                    id: None,
                    kind: TaskKind::Rotation,
                    started: now(),
                    previous_master: store.active_master,
                })?)
            });
            match r {
                // Another process inserted its task between our check and our insert (the
                // database's one-open-task-per-kind index): report that task.
                Err(StoreError::Metadata(MetaError::InUse(what))) => {
                    if let Some(open) = read_with(meta, open_task)? {
                        return Err(StoreError::RotationInProgress(open));
                    }
                    if attempt >= 3 {
                        return Err(StoreError::Metadata(MetaError::InUse(what)));
                    }
                }
                other => return other,
            }
        }
    }

    /// Runs a `pending` task to completion, or joins a `running` one (another runner, or one
    /// that died): each step commits once whoever runs it. A task that is already completed
    /// just returns its status. A task in `transient_error` is refused
    /// ([`StoreError::TaskNotRunnable`]): retrying a failure is [`KeyStore::resume_rotation`].
    pub fn run_rotation(
        &self,
        id: u64,
        opts: &RotationOptions,
    ) -> Result<RotationStatus, StoreError> {
        self.drive(id, opts, false)
    }

    /// Continues a task from its last saved step, whatever its state: `transient_error` after
    /// a failure, `running` after a crash, or `pending`. A completed task returns its status.
    pub fn resume_rotation(
        &self,
        id: u64,
        opts: &RotationOptions,
    ) -> Result<RotationStatus, StoreError> {
        self.drive(id, opts, true)
    }

    /// The status of one task, as stored now.
    pub fn rotation_status(&self, id: u64) -> Result<RotationStatus, StoreError> {
        read_with(&**self.metadata(), |tx| rotation_task(tx, id)).map(|t| status_of(&t))
    }

    /// Every rotation task, oldest first.
    pub fn rotation_history(&self) -> Result<Vec<RotationStatus>, StoreError> {
        let tasks = read_with::<_, StoreError>(&**self.metadata(), |tx| Ok(tx.tasks()?))?;
        Ok(tasks
            .iter()
            .filter(|t| t.kind == TaskKind::Rotation)
            .map(status_of)
            .collect())
    }

    fn drive(
        &self,
        id: u64,
        opts: &RotationOptions,
        resume: bool,
    ) -> Result<RotationStatus, StoreError> {
        #[cfg(not(feature = "test-hooks"))]
        let _ = opts;
        loop {
            let task = read_with(&**self.metadata(), |tx| rotation_task(tx, id))?;
            match task.state {
                TaskState::Completed => {
                    // Let this process's snapshot see the keys the task made.
                    let _ = self.refresh();
                    return Ok(status_of(&task));
                }
                TaskState::TransientError if !resume => {
                    return Err(StoreError::TaskNotRunnable {
                        id,
                        state: task.state.as_str(),
                    });
                }
                _ => {}
            }
            let n = task.step.saturating_add(1);
            match self.run_step(&task, n) {
                Ok(true) => {
                    #[cfg(feature = "test-hooks")]
                    if opts.crash_after_step == Some(n) {
                        // Test-only: a crash right after the step's commit.
                        std::process::abort();
                    }
                }
                // Another runner saved this step; go on from what it saved.
                Ok(false) => {}
                Err(e) => {
                    let message = e.to_string();
                    match self.save_failure(id, n, &message) {
                        // Another runner saved the step meanwhile: keep going.
                        Ok(false) => {}
                        Ok(true) => {
                            return Err(StoreError::RotationFailed {
                                id,
                                step: n,
                                message,
                            });
                        }
                        Err(save) => {
                            return Err(StoreError::RotationFailed {
                                id,
                                step: n,
                                message: format!("{message} (saving the error failed too: {save})"),
                            });
                        }
                    }
                }
            }
        }
    }

    /// Saves `transient_error` and the message unless step `n` was saved by another runner
    /// meanwhile (then returns `false`).
    fn save_failure(&self, id: u64, n: u8, message: &str) -> Result<bool, StoreError> {
        write_with(&**self.metadata(), StoreError::is_retryable, |tx| {
            let mut t = rotation_task(tx, id)?;
            if t.step >= n || t.state == TaskState::Completed {
                return Ok(false);
            }
            t.state = TaskState::TransientError;
            t.error = Some(format!("step {n} ({}): {message}", step_name(n)));
            tx.update_task(&t)?;
            Ok(true)
        })
    }

    /// Runs step `n`; `Ok(true)` if this runner committed it, `Ok(false)` if another had.
    fn run_step(&self, task: &TaskRecord, n: u8) -> Result<bool, StoreError> {
        match n {
            1 => self.create_master_key(task.id),
            2 => self.create_rotation_key(task),
            3 => self.activate_keys(task),
            4 => self.rewrap_keys(task.id),
            5 => self.retire_old_master(task.id),
            _ => Err(StoreError::Corrupt(format!(
                "rotation task {} is at step {} but not completed",
                task.id, task.step
            ))),
        }
    }

    /// One step's transaction: re-reads the task; if it is no longer before step `n`, another
    /// runner saved the step and nothing is written (`Ok(false)`). Otherwise applies `effect`
    /// and saves the task at step `n`, state `running` (the effect may complete it), with the
    /// row version it was read at. A lost optimistic check runs the transaction again.
    fn commit_step(
        &self,
        id: u64,
        n: u8,
        mut effect: impl FnMut(&mut dyn WriteTx, &mut TaskRecord) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        write_with(&**self.metadata(), StoreError::is_retryable, |tx| {
            let mut t = rotation_task(tx, id)?;
            if t.step >= n || t.state == TaskState::Completed {
                return Ok(false);
            }
            t.step = n;
            t.state = TaskState::Running;
            effect(tx, &mut t)?;
            tx.update_task(&t)?;
            Ok(true)
        })
    }

    /// Step 1. The master key is drawn and protected before the transaction; if this runner
    /// loses the step or crashes before the commit, the blob is never stored.
    fn create_master_key(&self, id: u64) -> Result<bool, StoreError> {
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
        self.commit_step(id, 1, |tx, t| {
            let v = next_version(tx.master_keys()?.iter().map(|m| m.version))?;
            tx.insert_master_key(&MasterKeyRecord {
                version: v,
                state: MasterState::Pending,
                wrapped: blob.clone(),
                created: now(),
                retired: None,
            })?;
            update_store(tx, |_| Ok(()))?;
            t.new_master = Some(v);
            t.master_attempts = attempts;
            Ok(())
        })
    }

    /// Step 2: a new rotation key, wrapped under the new master's VMK (derived beforehand).
    fn create_rotation_key(&self, task: &TaskRecord) -> Result<bool, StoreError> {
        let mv = task.new_master.ok_or_else(|| lacks_earlier_step(task.id))?;
        let vmk = self.with_fresh(|s| self.vmk(s, mv, None))?;
        let rk = Secret32::generate("rotation key")?;
        let wrapped = wrap_key(&vmk, &rk);
        self.commit_step(task.id, 2, |tx, t| {
            if t.new_master != Some(mv) {
                return Err(lacks_earlier_step(t.id));
            }
            let v = next_version(tx.rotation_keys()?.iter().map(|r| r.version))?;
            tx.insert_rotation_key(&RotationKeyRecord {
                version: v,
                master_version: mv,
                wrapped: wrapped.to_vec(),
                created: now(),
                row_version: 1,
            })?;
            update_store(tx, |_| Ok(()))?;
            t.new_rotation = Some(v);
            Ok(())
        })
    }

    /// Step 3: the new master and rotation keys become the active ones.
    fn activate_keys(&self, task: &TaskRecord) -> Result<bool, StoreError> {
        let mv = task.new_master.ok_or_else(|| lacks_earlier_step(task.id))?;
        let rv = task
            .new_rotation
            .ok_or_else(|| lacks_earlier_step(task.id))?;
        self.commit_step(task.id, 3, |tx, _| {
            for mut m in tx.master_keys()? {
                let state = if m.version == mv {
                    MasterState::Active
                } else if m.state == MasterState::Active {
                    MasterState::Retiring
                } else {
                    continue;
                };
                if m.state != state {
                    m.state = state;
                    tx.update_master_key(&m)?;
                }
            }
            update_store(tx, |s| {
                s.active_master = mv;
                s.active_rotation = rv;
                bump_epoch(s)
            })?;
            Ok(())
        })
    }

    /// Step 4: every rotation key and namespace key not under the active master's VMK is
    /// unwrapped under its old VMK and rewrapped under the active one. The VMKs are derived
    /// before the transaction.
    fn rewrap_keys(&self, id: u64) -> Result<bool, StoreError> {
        let (store, masters, wanted) = read_with::<_, StoreError>(&**self.metadata(), |tx| {
            let store = tx
                .store()?
                .ok_or_else(|| StoreError::NotInitialized("the metadata database".into()))?;
            let mut wanted: Vec<u32> = tx
                .rotation_keys()?
                .iter()
                .map(|r| r.master_version)
                .chain(tx.namespaces()?.iter().map(|n| n.master_version))
                .collect();
            wanted.push(store.active_master);
            wanted.sort_unstable();
            wanted.dedup();
            Ok((store, tx.master_keys()?, wanted))
        })?;
        let mut memo = VmkMemo {
            root: &*self.root,
            keys: HashMap::new(),
        };
        for mv in wanted {
            let vmk = derive_vmk(
                &*self.root,
                masters.iter().find(|m| m.version == mv),
                &store.rt_data_key,
                mv,
            )?;
            memo.keys.insert(mv, vmk);
        }
        self.commit_step(id, 4, |tx, _| {
            let store = update_store(tx, bump_epoch)?;
            let (rt, mv) = (store.rt_data_key.as_slice(), store.active_master);
            let new = memo.get(tx, rt, mv)?;
            for mut r in tx.rotation_keys()? {
                if r.master_version != mv {
                    let old = memo.get(tx, rt, r.master_version)?;
                    let k = unwrap_key(&old, &r.wrapped, "rotation key")?;
                    r.wrapped = wrap_key(&new, &k).to_vec();
                    r.master_version = mv;
                    tx.update_rotation_key(&r)?;
                }
            }
            for mut ns in tx.namespaces()? {
                if ns.master_version != mv {
                    let old = memo.get(tx, rt, ns.master_version)?;
                    let k = unwrap_key(&old, &ns.wrapped_key, "namespace key")?;
                    ns.wrapped_key = wrap_key(&new, &k).to_vec();
                    ns.master_version = mv;
                    tx.update_namespace(&ns)?;
                }
            }
            Ok(())
        })
    }

    /// Step 5: `retiring` masters become `retired`; the task completes.
    fn retire_old_master(&self, id: u64) -> Result<bool, StoreError> {
        self.commit_step(id, 5, |tx, t| {
            let ts = now();
            let mut retired = Vec::new();
            for mut m in tx.master_keys()? {
                if m.state == MasterState::Retiring {
                    m.state = MasterState::Retired;
                    m.retired = Some(ts);
                    tx.update_master_key(&m)?;
                    retired.push(m.version);
                }
            }
            let s = update_store(tx, |_| Ok(()))?;
            t.state = TaskState::Completed;
            t.ended = Some(ts);
            t.outcome = Some(format!(
                "active master key version {}, active rotation key version {}; retired master \
                 key version(s) {retired:?}",
                s.active_master, s.active_rotation
            ));
            Ok(())
        })
    }
}
