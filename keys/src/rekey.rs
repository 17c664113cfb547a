//! Rekey: moving the master keys to another root of trust as an asynchronous, resumable task
//! (NetApp Element's RekeySoftwareEncryptionAtRestMasterKey and GetAsyncResult, seed 002;
//! docs/KEYS.md §8.3), and the key report of `dare keys info` (GetSoftwareEncryptionAtRestInfo).
//!
//! A rekey is a rotation (the five steps of [`crate::rotation`], under the same lease and
//! fencing) whose new master key is protected by the *target* root of trust:
//!
//! 1. a new master key, protected by the target; the RT data key (the same key) protected by
//!    the target too, recorded in the new master key's row;
//! 2. a new rotation key under the new VMK;
//! 3. in one transaction: every rotation key and namespace key rewrapped under the new VMK,
//!    every older master key's row given the RT data key under *its* root, the store row's RT
//!    data key and root description switched to the target's, the key management service's
//!    CMK material (protected by the root directly) re-protected by the target, and the new
//!    keys activated —
//!    before this commit the store opens with the old root alone, after it with the new one;
//! 4. a rewrap of anything a concurrent writer left under an older master key or root;
//! 5. every retired master key deactivated by its own root ([`RootOfTrust::deactivate`]), and
//!    the task completed.
//!
//! The old master keys are never overwritten or deleted. The runner needs both roots: it
//! unwraps with either ([`crate::RekeyRoots`]).

use dare_metadata::{
    MasterKeyRecord, MasterState, MetaError, NewTask, TaskKind, TaskRecord, TaskState, read_with,
    write_with,
};
use std::sync::Arc;

use crate::rotation::{RotationOptions, RotationStatus, in_progress, key_task, open_task};
use crate::store::{KeyStore, now};
use crate::{RootOfTrust, Secret32, StoreError};

/// A master key as a task report names it (NetApp's `keyToDecommission` / `newKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRef {
    /// The master key version.
    pub version: u32,
    /// `internal`, `external` or `hsm` (NetApp's `keyManagementType`).
    pub management: String,
    /// The root of trust's description (NetApp's `keyProviderID`): `root-key-file`,
    /// `passphrase-argon2id`, a PKCS#11 URI, a KMIP cluster.
    pub provider: String,
    /// The key's id in the key manager, if it has one (a KMIP unique identifier).
    pub key_id: Option<String>,
}

/// A rotation or rekey task, as `dare keys task HANDLE` reports it (NetApp's GetAsyncResult).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskReport {
    /// The handle.
    pub id: u64,
    /// `rotation` or `rekey`.
    pub kind: &'static str,
    /// The task's state.
    pub state: TaskState,
    /// The last step saved (0-5).
    pub step: u8,
    /// When the task was created, Unix seconds.
    pub created: u64,
    /// When a runner last saved it (the creation time if never run), Unix seconds.
    pub last_update: u64,
    /// When it completed.
    pub ended: Option<u64>,
    /// What it does, in words.
    pub operation: String,
    /// The master key it replaces (active when it started).
    pub key_to_decommission: Option<KeyRef>,
    /// The master key it made (once step 1 is saved).
    pub new_key: Option<KeyRef>,
    /// The target root's description (a rekey).
    pub target: Option<String>,
    /// The last error (kept after a successful resume).
    pub error: Option<String>,
    /// What the completed task did.
    pub outcome: Option<String>,
}

/// One master key version, as `dare keys info` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterInfo {
    /// Version, state and creation time.
    pub version: u32,
    /// `pending`, `active`, `retiring`, `retired`.
    pub state: MasterState,
    /// Creation time, Unix seconds.
    pub created: u64,
    /// Retirement time.
    pub retired: Option<u64>,
    /// Who protects it, and the key manager's key id.
    pub key: KeyRef,
    /// When a task's deactivation step handled it (retired keys only).
    pub deactivated: Option<u64>,
    /// `deactivated` (in the key manager) or `nothing` (an internal root: nothing to
    /// deactivate); `None`: not yet.
    pub deactivation: Option<String>,
}

/// The store's master keys (NetApp's GetSoftwareEncryptionAtRestInfo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysInfo {
    /// The root of trust that protects the store now (its description).
    pub root_of_trust: String,
    /// The active master key.
    pub current: MasterInfo,
    /// Every other master key version, oldest first.
    pub others: Vec<MasterInfo>,
    /// The latest rekey task, if any (NetApp's `rekeyMasterKeyAsyncResultID`).
    pub latest_rekey: Option<u64>,
    /// The unfinished rotation or rekey task, if any.
    pub running_task: Option<u64>,
}

/// Checks that `target` is the root a rekey task moves to: once its new master key exists,
/// `target` must unwrap it; before, its description must be the recorded one.
pub(crate) fn check_target(
    t: &TaskRecord,
    masters: &[MasterKeyRecord],
    target: &dyn RootOfTrust,
) -> Result<(), StoreError> {
    let recorded = t.target_root.clone().unwrap_or_default();
    let mismatch = || StoreError::RekeyTargetMismatch {
        id: t.id,
        target: recorded.clone(),
        given: target.describe(),
    };
    match t
        .new_master
        .and_then(|v| masters.iter().find(|m| m.version == v))
    {
        Some(m) => target
            .unwrap_master(&m.wrapped)
            .map(drop)
            .map_err(|_| mismatch()),
        None if target.describe() == recorded => Ok(()),
        None => Err(mismatch()),
    }
}

/// The longest root description a task or master key row holds (the schema's CHECK).
const MAX_DESCRIPTION: usize = 1024;

impl KeyStore {
    /// Inserts a rekey task to `target` in state `pending` and returns its handle. Refuses
    /// while a rotation or rekey is unfinished ([`StoreError::RotationInProgress`],
    /// [`StoreError::RekeyInProgress`]), and a target that already protects the store —
    /// same description and it unwraps the store's RT data key ([`StoreError::SameRoot`]).
    /// The target is tried first (a key protected and recovered), so a target that cannot
    /// work fails here with nothing written.
    pub fn start_rekey(&self, target: &dyn RootOfTrust) -> Result<u64, StoreError> {
        self.refuse_joined_site()?;
        let meta = &**self.metadata();
        let describe = target.describe();
        if describe.is_empty() || describe.chars().count() > MAX_DESCRIPTION {
            return Err(StoreError::Corrupt(format!(
                "a root of trust's description must be 1 to {MAX_DESCRIPTION} characters"
            )));
        }
        let store = read_with::<_, StoreError>(meta, |tx| {
            tx.store()?
                .ok_or_else(|| StoreError::NotInitialized(meta.describe()))
        })?;
        if describe == store.root_of_trust && target.unwrap_master(&store.rt_data_key).is_ok() {
            return Err(StoreError::SameRoot(describe));
        }
        let probe = Secret32::generate("probe key")?;
        let blob = target.wrap_master(&probe)?;
        if target.unwrap_master(&blob)? != probe {
            return Err(StoreError::Corrupt(format!(
                "the root of trust {describe} did not give back the key it protected"
            )));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = write_with(meta, StoreError::is_retryable, |tx| {
                if let Some(open) = open_task(tx)? {
                    return Err(in_progress(open));
                }
                let store = tx
                    .store()?
                    .ok_or_else(|| StoreError::NotInitialized(meta.describe()))?;
                Ok(tx.insert_task(&NewTask {
                    id: None,
                    kind: TaskKind::Rekey,
                    started: now(),
                    previous_master: store.active_master,
                    target_root: Some(describe.clone()),
                })?)
            });
            match r {
                Err(StoreError::Metadata(MetaError::InUse(what))) => {
                    if let Some(open) = read_with(meta, open_task)? {
                        return Err(in_progress(open));
                    }
                    if attempt >= 3 {
                        return Err(StoreError::Metadata(MetaError::InUse(what)));
                    }
                }
                other => return other,
            }
        }
    }

    /// Runs a rekey task (the rules of [`KeyStore::run_rotation`]) with `target`, which must
    /// be the task's ([`StoreError::RekeyTargetMismatch`]).
    pub fn run_rekey(
        &self,
        id: u64,
        target: Arc<dyn RootOfTrust>,
        opts: &RotationOptions,
    ) -> Result<RotationStatus, StoreError> {
        self.drive(id, opts, false, Some(target))
    }

    /// Resumes a rekey task from its last saved step (the rules of
    /// [`KeyStore::resume_rotation`]).
    pub fn resume_rekey(
        &self,
        id: u64,
        target: Arc<dyn RootOfTrust>,
        opts: &RotationOptions,
    ) -> Result<RotationStatus, StoreError> {
        self.drive(id, opts, true, Some(target))
    }

    /// The kind of task `id` ([`StoreError::NotFound`] for an unknown handle).
    pub fn task_kind(&self, id: u64) -> Result<TaskKind, StoreError> {
        read_with(&**self.metadata(), |tx| key_task(tx, id)).map(|t| t.kind)
    }

    /// The report of task `id`, rotation or rekey ([`StoreError::NotFound`] for an unknown
    /// handle). Reads the records only; needs no root of trust.
    pub fn task_report(&self, id: u64) -> Result<TaskReport, StoreError> {
        let (t, masters, store) = read_with::<_, StoreError>(&**self.metadata(), |tx| {
            let t = key_task(tx, id)?;
            let store = tx
                .store()?
                .ok_or_else(|| StoreError::NotInitialized("the metadata database".into()))?;
            Ok((t, tx.master_keys()?, store))
        })?;
        let key = |v: u32| {
            masters
                .iter()
                .find(|m| m.version == v)
                .map(|m| self.key_ref(m, &store.root_of_trust))
        };
        let old = key(t.previous_master);
        let new = t.new_master.and_then(key);
        let kind = t.kind.as_str();
        let operation = match (t.kind, &old) {
            (TaskKind::Rekey, Some(o)) => format!(
                "rekeying the master key: from {} key management ({}) to {}",
                o.management,
                o.provider,
                t.target_root.as_deref().unwrap_or("?")
            ),
            (TaskKind::Rekey, None) => format!(
                "rekeying the master key to {}",
                t.target_root.as_deref().unwrap_or("?")
            ),
            (TaskKind::Rotation, Some(o)) => format!(
                "rotating the master key under {} key management ({})",
                o.management, o.provider
            ),
            _ => "rotating the master key".to_owned(),
        };
        Ok(TaskReport {
            id: t.id,
            kind,
            state: t.state,
            step: t.step,
            created: t.started,
            last_update: t.updated.or(t.ended).unwrap_or(t.started),
            ended: t.ended,
            operation,
            key_to_decommission: old,
            new_key: new,
            target: t.target_root.clone(),
            error: t.error.clone(),
            outcome: t.outcome.clone(),
        })
    }

    /// Every rotation and rekey task's id and kind, oldest first.
    pub fn task_ids(&self) -> Result<Vec<(u64, TaskKind)>, StoreError> {
        let tasks = read_with::<_, StoreError>(&**self.metadata(), |tx| Ok(tx.tasks()?))?;
        Ok(tasks.iter().map(|t| (t.id, t.kind)).collect())
    }

    /// The store's master keys and who protects each (`dare keys info`). Reads the records
    /// only.
    pub fn key_info(&self) -> Result<KeysInfo, StoreError> {
        let (store, masters, tasks) = read_with::<_, StoreError>(&**self.metadata(), |tx| {
            let store = tx
                .store()?
                .ok_or_else(|| StoreError::NotInitialized("the metadata database".into()))?;
            Ok((store, tx.master_keys()?, tx.tasks()?))
        })?;
        let info = |m: &MasterKeyRecord| MasterInfo {
            version: m.version,
            state: m.state,
            created: m.created,
            retired: m.retired,
            key: self.key_ref(m, &store.root_of_trust),
            deactivated: m.root.deactivated,
            deactivation: m.root.deactivation.clone(),
        };
        let current = masters
            .iter()
            .find(|m| m.version == store.active_master)
            .map(info)
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "the active master key version {} is missing",
                    store.active_master
                ))
            })?;
        Ok(KeysInfo {
            root_of_trust: store.root_of_trust.clone(),
            current,
            others: masters
                .iter()
                .filter(|m| m.version != store.active_master)
                .map(info)
                .collect(),
            latest_rekey: tasks
                .iter()
                .filter(|t| t.kind == TaskKind::Rekey)
                .map(|t| t.id)
                .max(),
            running_task: tasks
                .iter()
                .find(|t| t.state != TaskState::Completed)
                .map(|t| t.id),
        })
    }

    /// A master key row as a [`KeyRef`]. Rows made before schema version 4 record no root:
    /// theirs is the store's, and a root of that description this store has says what it is.
    fn key_ref(&self, m: &MasterKeyRecord, store_root: &str) -> KeyRef {
        let provider = m
            .root
            .root_of_trust
            .clone()
            .unwrap_or_else(|| store_root.to_owned());
        let known = self.roots.iter().find(|r| r.describe() == provider);
        let pk = known.map(|r| r.provider_key(&m.wrapped));
        let management = m.root.management.clone().unwrap_or_else(|| match &pk {
            Some(pk) => pk.management.name().to_owned(),
            // What `dare-hsm` records: a PKCS#11 URI (RFC 7512).
            None if provider.starts_with("pkcs11:") => "hsm".to_owned(),
            None => "internal".to_owned(),
        });
        KeyRef {
            version: m.version,
            management,
            key_id: m.root.key_id.clone().or_else(|| pk.and_then(|p| p.key_id)),
            provider,
        }
    }
}
