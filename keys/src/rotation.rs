//! Key rotation as a resumable task in the metadata `tasks` table (ECS white paper §2.4, §2.6;
//! NetApp's asynchronous rekey with a handle), run by one runner at a time across nodes under
//! a lease with a fencing token (docs/KEYS.md §8, §8.2).
//!
//! [`KeyStore::start_rotation`] inserts a task in state `pending` and returns its id (the
//! handle); [`KeyStore::run_rotation`] (typically in a background process) executes the steps:
//!
//! 1. create a new master key version (state `pending`), up to [`MASTER_KEY_ATTEMPTS`] tries;
//! 2. create a new rotation key version, wrapped by the new VMK;
//! 3. switch: the new master key becomes `active`, the old one `retiring`, and the new
//!    rotation key becomes the active one; new objects use it from now on;
//! 4. rewrap every rotation key version and every namespace key not yet under the new VMK;
//! 5. deactivate the old master key by its own root of trust (`RootOfTrust::deactivate`,
//!    KEYS.md §8.4; a failure leaves the task resumable) and retire it; the task becomes
//!    `completed`.
//!
//! A rekey ([`crate::rekey`], KEYS.md §8.3) is a task of kind `rekey` run by the same runner:
//! its new master key is protected by the target root, and its step 3 also rewraps every key
//! and switches the store's root.
//!
//! **The lease.** Before running steps, a runner acquires the task's lease in a transaction:
//! allowed when the lease is free, held by the runner's own owner id, or expired; acquiring
//! writes the owner id, an expiry (now + [`RotationOptions::lease_ttl`]) and bumps the fencing
//! token `lease_token`, which is never reused. A lease held by another owner and not expired
//! is [`StoreError::RotationLeased`] (or, with [`RotationOptions::wait_for_lease`], a wait
//! until it is released or expires). The runner renews the lease (same token, new expiry)
//! before each step, and releases it when the task completes or a failure is saved.
//!
//! **Fencing.** Each step is one metadata write transaction that re-reads the task and first
//! checks that its owner and token are still this runner's and its lease has not expired —
//! else it writes nothing and the runner stops with [`StoreError::LeaseLost`] — then goes on
//! only if the task is still at step N-1, and writes the step's effect together with
//! `step = N`. The task row is updated with the row version it was read at (and the store row
//! likewise whenever key records, active versions or the epoch change), so a runner that was
//! paused or cut off past its lease can never commit a step after another took over: the
//! takeover changed the token in the row the step's own transaction reads and updates. A
//! crash leaves a step either wholly saved or not at all, and the task resumable.
//!
//! Root-of-trust calls (drawing and protecting the new master key, deriving virtual master
//! keys) happen before a step's transaction, since a remote root of trust may be slow and the
//! database serializes writers; a runner that then finds the step done or its lease lost
//! discards its key.
//!
//! A failing step saves state `transient_error` with the message (in a transaction of its own,
//! fenced like a step, which also releases the lease) and leaves `step` where it was;
//! [`KeyStore::resume_rotation`] continues from there. Object data and bucket keys are never
//! touched: virtual bucket keys do not depend on the master key, and no key version is ever
//! deleted, so every existing envelope keeps opening.

use std::collections::HashMap;
#[cfg(feature = "test-hooks")]
use std::fmt;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dare_metadata::{
    MasterKeyRecord, MasterState, MetaError, NewTask, ReadTx, RotationKeyRecord, StoreRecord,
    TaskKind, TaskRecord, TaskState, WriteTx, read_with, write_with,
};

use crate::root::RootOfTrust;
use crate::store::{KeyStore, derive_vmk, master_root, now};
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
        5 => "old master key retired and deactivated",
        _ => "unknown",
    }
}

/// The lease TTL of [`RotationOptions::default`]: 30 s. A runner renews its lease before each
/// step, so the TTL must cover one step — the longest is step 4, one transaction rewrapping
/// every namespace and rotation key (milliseconds for thousands of keys), and step 1's calls
/// to the root of trust — plus a wait for the database's write lock (10 s at most by default,
/// SQLite's busy timeout and PostgreSQL's lock timeout), plus the largest clock skew between
/// nodes (KEYS.md §8.2). 30 s covers all three with room; it is also how long other nodes wait
/// before resuming the task of a runner that died.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// The longest lease a runner takes: a longer [`RotationOptions::lease_ttl`] is cut to it.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(24 * 3600);

/// How often a runner waiting for another owner's lease looks at the task again.
const LEASE_POLL: Duration = Duration::from_millis(200);

/// The last step: committing it completes the task.
const LAST_STEP: u8 = 5;

/// This process's lease owner id, drawn once per process: `<host name>:<pid>:<8 random hex
/// digits>` (the random part tells apart processes that reuse a pid, as the first process of
/// every container does). A runner without [`RotationOptions::lease_owner`] uses it, so every
/// [`KeyStore`] of one process is the same owner: a process may take back at once a lease it
/// left behind (a runner of it that failed), while another process waits for it to expire.
pub fn process_lease_owner() -> &'static str {
    static OWNER: OnceLock<String> = OnceLock::new();
    OWNER.get_or_init(|| {
        let uname = rustix::system::uname();
        let host: String = uname
            .nodename()
            .to_string_lossy()
            .chars()
            .filter(|c| !c.is_control() && *c != ':')
            .take(128)
            .collect();
        let host = if host.is_empty() {
            "localhost".to_owned()
        } else {
            host
        };
        let mut tag = [0u8; 4];
        if getrandom::fill(&mut tag).is_err() {
            // No randomness: the clock still tells two processes of one pid apart.
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            tag = nanos.to_le_bytes();
        }
        format!(
            "{host}:{}:{:08x}",
            std::process::id(),
            u32::from_be_bytes(tag)
        )
    })
}

/// A test hook of the rotation runner: called with the step number (feature `test-hooks`).
#[cfg(feature = "test-hooks")]
#[derive(Clone)]
pub struct StepHook(pub Arc<dyn Fn(u8) + Send + Sync>);

#[cfg(feature = "test-hooks")]
impl fmt::Debug for StepHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StepHook")
    }
}

/// How a rotation runner behaves. Start from `RotationOptions::default()`; the test hooks
/// exist only under the `test-hooks` cargo feature.
#[derive(Debug, Clone)]
pub struct RotationOptions {
    /// How long the lease lasts after each acquisition or renewal (renewed before every step;
    /// [`DEFAULT_LEASE_TTL`]). It must exceed the longest step plus the largest clock skew
    /// between the nodes (KEYS.md §8.2). At least 1 ms, at most [`MAX_LEASE_TTL`].
    pub lease_ttl: Duration,
    /// The owner id written into the lease (1 to 255 characters); `None`:
    /// [`process_lease_owner`]. Tests give two runners of one process different ids to play
    /// two nodes.
    pub lease_owner: Option<String>,
    /// When another owner holds the lease: wait — looking at the task every 200 ms — until it
    /// is released or expires and then take it (or return the status if the holder completed
    /// the task), instead of failing with [`StoreError::RotationLeased`].
    pub wait_for_lease: bool,
    /// Test hook: kill the process with SIGKILL (sent to itself) right after this runner has
    /// committed step N, to test crash consistency with a real process. The lease is left
    /// behind, as a crash leaves it.
    #[cfg(feature = "test-hooks")]
    pub crash_after_step: Option<u8>,
    /// Test hook: called right before step N's transaction begins (after the lease renewal
    /// and the step's root-of-trust work), to pause the runner there — past its lease — or
    /// let another runner take over at that point.
    #[cfg(feature = "test-hooks")]
    pub before_step_commit: Option<StepHook>,
    /// Test hook: called once inside step N's transaction, after the task was read and the
    /// lease checked, before anything is written.
    #[cfg(feature = "test-hooks")]
    pub inside_step_transaction: Option<StepHook>,
}

impl Default for RotationOptions {
    fn default() -> Self {
        RotationOptions {
            lease_ttl: DEFAULT_LEASE_TTL,
            lease_owner: None,
            wait_for_lease: false,
            #[cfg(feature = "test-hooks")]
            crash_after_step: None,
            #[cfg(feature = "test-hooks")]
            before_step_commit: None,
            #[cfg(feature = "test-hooks")]
            inside_step_transaction: None,
        }
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
    /// The last error (kept after a successful resume, for history).
    pub error: Option<String>,
    /// The master key version the task created.
    pub new_master: Option<u32>,
    /// The rotation key version the task created.
    pub new_rotation: Option<u32>,
    /// The owner id of the runner holding the lease, `None` when it is free. A holder whose
    /// lease has expired (see [`RotationStatus::lease_held_at`]) has stopped or died.
    pub lease_owner: Option<String>,
    /// When the lease expires, Unix milliseconds by the holder's clock.
    pub lease_expires: Option<u64>,
    /// The fencing token of the latest acquisition (0: the lease was never taken).
    pub lease_token: u64,
}

impl RotationStatus {
    /// The lease's holder and expiry if it is held at `now_ms` (Unix milliseconds): taken and
    /// not expired (`expires >= now_ms`).
    pub fn lease_held_at(&self, now_ms: u64) -> Option<(&str, u64)> {
        match (&self.lease_owner, self.lease_expires) {
            (Some(owner), Some(expires)) if expires >= now_ms => Some((owner, expires)),
            _ => None,
        }
    }
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
        lease_owner: t.lease_owner.clone(),
        lease_expires: t.lease_expires,
        lease_token: t.lease_token,
    }
}

/// The local clock in Unix milliseconds (0 before 1970). Lease expiries are compared with it;
/// KEYS.md §8.2 says what clock skew between nodes does.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The lease this runner holds: the fencing token it was acquired with.
struct Lease {
    owner: String,
    token: u64,
    ttl_ms: u64,
}

/// What a runner carries into every step: its lease and options, and its roots of trust.
struct Runner<'a> {
    lease: Lease,
    // Read by the test hooks only.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    opts: &'a RotationOptions,
    /// Rotation or rekey.
    kind: TaskKind,
    /// Protects the new master key (and, in a rekey, the RT data key again).
    wrap: Arc<dyn RootOfTrust>,
    /// Unwraps every existing blob: the store's root, or in a rekey both roots.
    unwrap: Arc<dyn RootOfTrust>,
    /// Every root the runner has, to deactivate a retired master key with its own root.
    roots: Vec<Arc<dyn RootOfTrust>>,
}

/// What acquiring the lease found.
enum Acquired {
    /// This runner holds the lease now.
    Lease(Lease),
    /// The task is completed: nothing to run.
    Completed(TaskRecord),
}

/// [`StoreError::RotationLeased`] (naming the holder and expiry) if an owner other than `owner`
/// holds the stored lease at `now`: taken and not expired.
fn held_by_other(t: &TaskRecord, owner: &str, now: u64) -> Option<StoreError> {
    match (&t.lease_owner, t.lease_expires) {
        (Some(holder), Some(expires)) if holder != owner && expires >= now => {
            Some(StoreError::RotationLeased {
                id: t.id,
                owner: holder.clone(),
                expires,
            })
        }
        _ => None,
    }
}

/// The fencing check, run inside every transaction that writes for a runner: the task's lease
/// must still carry the runner's owner id and token and not have expired. Otherwise
/// [`StoreError::LeaseLost`] with the lease as found, and the transaction writes nothing.
fn check_lease(t: &TaskRecord, lease: &Lease) -> Result<(), StoreError> {
    let ours = t.lease_token == lease.token
        && t.lease_owner.as_deref() == Some(lease.owner.as_str())
        && t.lease_expires.is_some_and(|e| e >= now_ms());
    if ours {
        Ok(())
    } else {
        Err(StoreError::LeaseLost {
            id: t.id,
            owner: t.lease_owner.clone(),
            expires: t.lease_expires,
        })
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.min(MAX_LEASE_TTL).as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
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

/// A rotation or rekey task (the runner drives both).
pub(crate) fn key_task(tx: &mut dyn ReadTx, id: u64) -> Result<TaskRecord, StoreError> {
    tx.task(id)?.ok_or_else(|| StoreError::NotFound {
        what: "task",
        name: id.to_string(),
    })
}

/// The unfinished rotation or rekey task, if any: only one of either runs at a time.
pub(crate) fn open_task(tx: &mut dyn ReadTx) -> Result<Option<(u64, TaskKind)>, StoreError> {
    Ok(tx
        .tasks()?
        .iter()
        .find(|t| t.state != TaskState::Completed)
        .map(|t| (t.id, t.kind)))
}

/// The refusal to start a task while `open` runs.
pub(crate) fn in_progress((id, kind): (u64, TaskKind)) -> StoreError {
    match kind {
        TaskKind::Rekey => StoreError::RekeyInProgress(id),
        _ => StoreError::RotationInProgress(id),
    }
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

impl VmkMemo<'_> {
    /// [`VmkMemo::get`] outside a transaction.
    fn get_read(
        &mut self,
        meta: &dyn dare_metadata::Metadata,
        mv: u32,
    ) -> Result<Secret32, StoreError> {
        if let Some(k) = self.keys.get(&mv) {
            return Ok(k.clone());
        }
        read_with::<_, StoreError>(meta, |tx| {
            let store = tx
                .store()?
                .ok_or_else(|| StoreError::NotInitialized("the metadata database".into()))?;
            Ok(self.get(tx, &store.rt_data_key, mv)?)
        })
    }
}

/// Every rotation key and namespace key not under master `mv` is unwrapped under its old VMK
/// and rewrapped under VMK_mv (step 4, and a rekey's step 3).
fn rewrap_all(
    tx: &mut dyn WriteTx,
    memo: &mut VmkMemo<'_>,
    rt: &[u8],
    mv: u32,
) -> Result<(), StoreError> {
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
}

/// Replaces each CMK material blob found in `new` (old blob → blob of the target root), and
/// bumps the row version of each CMK it changed, so that a key management transaction that
/// read the version before fails its optimistic check and runs again.
fn reprotect_kms(tx: &mut dyn WriteTx, new: &HashMap<Vec<u8>, Vec<u8>>) -> Result<(), StoreError> {
    if new.is_empty() {
        return Ok(());
    }
    for k in tx.kms_keys()? {
        let mut changed = false;
        for mut v in tx.kms_versions(&k.key_id)? {
            if let Some(b) = v.material.as_ref().and_then(|m| new.get(m)) {
                v.material = Some(b.clone());
                tx.update_kms_version(&v)?;
                changed = true;
            }
        }
        if changed {
            tx.update_kms_key(&k)?;
        }
    }
    Ok(())
}

/// A rekey's switch (step 3, with the activation, in one transaction — KEYS.md §8.3): every
/// older master key keeps the root that protects it and gets the RT data key under that root
/// recorded in its row; every rotation key and namespace key is rewrapped under the new
/// master `mv`; the store row's RT data key and root become the new master's. Before the
/// commit the store opens with the old root alone, after it with the new root alone.
fn switch_root(tx: &mut dyn WriteTx, memo: &mut VmkMemo<'_>, mv: u32) -> Result<(), StoreError> {
    let store = tx
        .store()?
        .ok_or_else(|| StoreError::NotInitialized("the metadata database".into()))?;
    let masters = tx.master_keys()?;
    let new = masters
        .iter()
        .find(|m| m.version == mv)
        .ok_or(KeyError::UnknownVersion(mv))?;
    let (Some(new_rt), Some(new_root)) =
        (new.root.rt_wrapped.clone(), new.root.root_of_trust.clone())
    else {
        return Err(StoreError::Corrupt(format!(
            "master key version {mv} was made by a rekey but records no root of trust"
        )));
    };
    if store.rt_data_key == new_rt {
        return Ok(()); // switched already (not reachable: the step commits once)
    }
    rewrap_all(tx, memo, &store.rt_data_key, mv)?;
    for mut m in masters {
        if m.version != mv && m.root.rt_wrapped.is_none() {
            m.root.rt_wrapped = Some(store.rt_data_key.clone());
            if m.root.root_of_trust.is_none() {
                m.root.root_of_trust = Some(store.root_of_trust.clone());
            }
            tx.update_master_key(&m)?;
        }
    }
    update_store(tx, |s| {
        s.rt_data_key = new_rt;
        s.root_of_trust = new_root;
        Ok(())
    })?;
    Ok(())
}

impl KeyStore {
    /// A site that joined by a grant cannot create master keys (KEYS.md §8.5): rotations and
    /// rekeys are refused there before anything is written.
    pub(crate) fn refuse_joined_site(&self) -> Result<(), StoreError> {
        match self.root.joined_site() {
            Some(fingerprint) => Err(crate::SiteError::JoinedSite { fingerprint }.into()),
            None => Ok(()),
        }
    }

    /// Which roots a runner of task `id` uses: `(kind, wrap, unwrap, roots)`. A rekey needs
    /// its target root, and refuses one that is not the task's (KEYS.md §8.3).
    #[allow(clippy::type_complexity)]
    fn runner_roots(
        &self,
        id: u64,
        target: Option<Arc<dyn RootOfTrust>>,
    ) -> Result<
        (
            TaskKind,
            Arc<dyn RootOfTrust>,
            Arc<dyn RootOfTrust>,
            Vec<Arc<dyn RootOfTrust>>,
        ),
        StoreError,
    > {
        self.refuse_joined_site()?;
        let (t, masters) = read_with::<_, StoreError>(&**self.metadata(), |tx| {
            Ok((key_task(tx, id)?, tx.master_keys()?))
        })?;
        if t.kind != TaskKind::Rekey {
            return match target {
                None => Ok((
                    t.kind,
                    self.root.clone(),
                    self.root.clone(),
                    self.roots.clone(),
                )),
                Some(_) => Err(StoreError::NotFound {
                    what: "rekey task",
                    name: id.to_string(),
                }),
            };
        }
        let Some(target) = target else {
            return Err(StoreError::RekeyTargetNeeded {
                id,
                target: t.target_root.clone().unwrap_or_default(),
            });
        };
        crate::rekey::check_target(&t, &masters, &*target)?;
        let unwrap: Arc<dyn RootOfTrust> =
            Arc::new(crate::RekeyRoots::new(self.root.clone(), target.clone()));
        let mut roots = self.roots.clone();
        roots.push(target.clone());
        Ok((TaskKind::Rekey, target, unwrap, roots))
    }

    /// Inserts a new rotation task in state `pending` and returns its id. Refuses while another
    /// rotation task is unfinished ([`StoreError::RotationInProgress`] with its id).
    pub fn start_rotation(&self) -> Result<u64, StoreError> {
        self.refuse_joined_site()?;
        let meta = &**self.metadata();
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
                    kind: TaskKind::Rotation,
                    started: now(),
                    previous_master: store.active_master,
                    target_root: None,
                })?)
            });
            match r {
                // Another process inserted its task between our check and our insert (the
                // database's one-open-task-per-kind index): report that task.
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

    /// Runs a `pending` task to completion, or takes over a `running` one whose runner died
    /// (once its lease has expired) or belonged to this owner. A task that is already
    /// completed just returns its status. A task in `transient_error` is refused
    /// ([`StoreError::TaskNotRunnable`]): retrying a failure is [`KeyStore::resume_rotation`].
    ///
    /// Another owner's unexpired lease is [`StoreError::RotationLeased`] (naming the holder
    /// and its expiry), or a wait with [`RotationOptions::wait_for_lease`]. A runner whose
    /// lease is lost while it runs stops with [`StoreError::LeaseLost`], having committed
    /// nothing after the loss.
    pub fn run_rotation(
        &self,
        id: u64,
        opts: &RotationOptions,
    ) -> Result<RotationStatus, StoreError> {
        self.drive(id, opts, false, None)
    }

    /// Continues a task from its last saved step, whatever its state: `transient_error` after
    /// a failure, `running` after a crash, or `pending`. A completed task returns its status.
    /// The lease rules are those of [`KeyStore::run_rotation`]: after a crash on another
    /// node, resuming succeeds once the dead runner's lease has expired.
    pub fn resume_rotation(
        &self,
        id: u64,
        opts: &RotationOptions,
    ) -> Result<RotationStatus, StoreError> {
        self.drive(id, opts, true, None)
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

    pub(crate) fn drive(
        &self,
        id: u64,
        opts: &RotationOptions,
        resume: bool,
        target: Option<Arc<dyn RootOfTrust>>,
    ) -> Result<RotationStatus, StoreError> {
        let (kind, wrap, unwrap, roots) = self.runner_roots(id, target)?;
        let owner = opts
            .lease_owner
            .as_deref()
            .unwrap_or_else(|| process_lease_owner());
        let ttl = ttl_ms(opts.lease_ttl);
        let lease = loop {
            match self.acquire(id, owner, ttl, resume) {
                Ok(Acquired::Lease(l)) => break l,
                Ok(Acquired::Completed(t)) => return Ok(self.finished(&t)),
                Err(StoreError::RotationLeased { expires, .. }) if opts.wait_for_lease => {
                    let left = expires.saturating_sub(now_ms()).saturating_add(1);
                    std::thread::sleep(Duration::from_millis(left).min(LEASE_POLL));
                }
                Err(e) => return Err(e),
            }
        };
        let run = Runner {
            lease,
            opts,
            kind,
            wrap,
            unwrap,
            roots,
        };
        loop {
            // Renewing also checks that the lease is still ours: a runner paused past its
            // lease stops here, before any root-of-trust work for the next step.
            let task = self.renew(id, &run.lease)?;
            let n = task.step.saturating_add(1);
            match self.run_step(&task, n, &run) {
                Ok(committed) => {
                    #[cfg(feature = "test-hooks")]
                    if committed && opts.crash_after_step == Some(n) {
                        // Test-only: a crash right after the step's commit, lease held. A
                        // real SIGKILL (nothing runs after it: no unwinding, no handler);
                        // abort only if the kernel refused to deliver it.
                        let _ = rustix::process::kill_process(
                            rustix::process::getpid(),
                            rustix::process::Signal::KILL,
                        );
                        std::process::abort();
                    }
                    let _ = committed;
                    if n >= LAST_STEP {
                        let t = read_with(&**self.metadata(), |tx| key_task(tx, id))?;
                        return Ok(self.finished(&t));
                    }
                }
                Err(e @ StoreError::LeaseLost { .. }) => return Err(e),
                Err(e) => {
                    let message = e.to_string();
                    match self.save_failure(id, n, &message, &run.lease) {
                        // The step was saved after all (its commit reported an error but
                        // went through): go on with the next one.
                        Ok(false) => {}
                        Ok(true) => {
                            return Err(StoreError::RotationFailed {
                                id,
                                step: n,
                                message,
                            });
                        }
                        Err(e @ StoreError::LeaseLost { .. }) => return Err(e),
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

    /// The status of a task found completed; lets this process's snapshot see the keys the
    /// task made.
    fn finished(&self, t: &TaskRecord) -> RotationStatus {
        let _ = self.refresh();
        status_of(t)
    }

    /// Acquires the task's lease for `owner` in one transaction (a look without writing
    /// first, so that a waiting runner does not take the write lock every time it looks):
    /// allowed when the lease is free, `owner`'s own, or expired. Sets the owner, the expiry
    /// (now + `ttl_ms`) and bumps the fencing token.
    fn acquire(
        &self,
        id: u64,
        owner: &str,
        ttl_ms: u64,
        resume: bool,
    ) -> Result<Acquired, StoreError> {
        let meta = &**self.metadata();
        let decide = |t: &TaskRecord| -> Result<Option<Acquired>, StoreError> {
            match t.state {
                TaskState::Completed => return Ok(Some(Acquired::Completed(t.clone()))),
                TaskState::TransientError if !resume => {
                    return Err(StoreError::TaskNotRunnable {
                        id,
                        state: t.state.as_str(),
                    });
                }
                _ => {}
            }
            match held_by_other(t, owner, now_ms()) {
                Some(leased) => Err(leased),
                None => Ok(None),
            }
        };
        let seen = read_with(meta, |tx| key_task(tx, id))?;
        if let Some(done) = decide(&seen)? {
            return Ok(done);
        }
        write_with(meta, StoreError::is_retryable, |tx| {
            let mut t = key_task(tx, id)?;
            if let Some(done) = decide(&t)? {
                return Ok(done);
            }
            t.lease_token = t.lease_token.checked_add(1).ok_or_else(|| {
                StoreError::Corrupt(format!("rotation task {id}: lease token overflow"))
            })?;
            t.lease_owner = Some(owner.to_owned());
            t.lease_expires = Some(now_ms().saturating_add(ttl_ms));
            t.updated = Some(now());
            tx.update_task(&t)?;
            Ok(Acquired::Lease(Lease {
                owner: owner.to_owned(),
                token: t.lease_token,
                ttl_ms,
            }))
        })
    }

    /// Renews the lease (same token, expiry now + TTL) if it is still this runner's; returns
    /// the task as renewed. [`StoreError::LeaseLost`] otherwise.
    fn renew(&self, id: u64, lease: &Lease) -> Result<TaskRecord, StoreError> {
        write_with(&**self.metadata(), StoreError::is_retryable, |tx| {
            let mut t = key_task(tx, id)?;
            check_lease(&t, lease)?;
            t.lease_expires = Some(now_ms().saturating_add(lease.ttl_ms));
            t.row_version = tx.update_task(&t)?;
            Ok(t)
        })
    }

    /// Saves `transient_error` and the message, and releases the lease, unless step `n` is
    /// saved already (then returns `false`). Fenced like a step: [`StoreError::LeaseLost`]
    /// and nothing written if the lease is no longer this runner's.
    fn save_failure(
        &self,
        id: u64,
        n: u8,
        message: &str,
        lease: &Lease,
    ) -> Result<bool, StoreError> {
        write_with(&**self.metadata(), StoreError::is_retryable, |tx| {
            let mut t = key_task(tx, id)?;
            check_lease(&t, lease)?;
            if t.step >= n || t.state == TaskState::Completed {
                return Ok(false);
            }
            t.state = TaskState::TransientError;
            t.error = Some(format!("step {n} ({}): {message}", step_name(n)));
            t.lease_owner = None;
            t.lease_expires = None;
            t.updated = Some(now());
            tx.update_task(&t)?;
            Ok(true)
        })
    }

    /// Runs step `n`; `Ok(true)` if this runner committed it, `Ok(false)` if it was saved
    /// already.
    fn run_step(&self, task: &TaskRecord, n: u8, run: &Runner<'_>) -> Result<bool, StoreError> {
        match n {
            1 => self.create_master_key(task.id, run),
            2 => self.create_rotation_key(task, run),
            3 => self.activate_keys(task, run),
            4 => self.rewrap_keys(task.id, run),
            5 => self.retire_old_master(task.id, run),
            _ => Err(StoreError::Corrupt(format!(
                "rotation task {} is at step {} but not completed",
                task.id, task.step
            ))),
        }
    }

    /// One step's transaction: re-reads the task and checks the lease first (the fencing
    /// check: [`StoreError::LeaseLost`] and nothing written unless the task still carries
    /// this runner's owner and token and the lease has not expired); if the task is no longer
    /// before step `n`, the step is saved already and nothing is written (`Ok(false)`).
    /// Otherwise applies `effect` and saves the task at step `n`, state `running` (the effect
    /// may complete it, which releases the lease), with the row version it was read at. A
    /// lost optimistic check runs the whole transaction again, fencing check included.
    fn commit_step(
        &self,
        id: u64,
        n: u8,
        run: &Runner<'_>,
        mut effect: impl FnMut(&mut dyn WriteTx, &mut TaskRecord) -> Result<(), StoreError>,
    ) -> Result<bool, StoreError> {
        #[cfg(feature = "test-hooks")]
        if let Some(hook) = &run.opts.before_step_commit {
            (hook.0)(n);
        }
        #[cfg(feature = "test-hooks")]
        let mut inside = run.opts.inside_step_transaction.as_ref();
        write_with(&**self.metadata(), StoreError::is_retryable, |tx| {
            let mut t = key_task(tx, id)?;
            check_lease(&t, &run.lease)?;
            #[cfg(feature = "test-hooks")]
            if let Some(hook) = inside.take() {
                (hook.0)(n);
            }
            if t.step >= n || t.state == TaskState::Completed {
                return Ok(false);
            }
            t.step = n;
            t.state = TaskState::Running;
            t.updated = Some(now());
            effect(tx, &mut t)?;
            if t.state == TaskState::Completed {
                t.lease_owner = None;
                t.lease_expires = None;
            }
            tx.update_task(&t)?;
            Ok(true)
        })
    }

    /// Step 1. The master key is drawn and protected before the transaction; if this runner
    /// loses the step or crashes before the commit, the blob is never stored.
    fn create_master_key(&self, id: u64, run: &Runner<'_>) -> Result<bool, StoreError> {
        let mk = Secret32::generate("master key")?;
        // A rekey protects the RT data key under the new root too (the same key: the VMKs
        // of older master keys stay derivable, and so do the keys derived from it for the
        // key management service, KEYS.md §8.3).
        let (rt_wrapped, rt) = match run.kind {
            TaskKind::Rekey => {
                let store = read_with::<_, StoreError>(&**self.metadata(), |tx| {
                    tx.store()?
                        .ok_or_else(|| StoreError::NotInitialized("the metadata database".into()))
                })?;
                let rt = run.unwrap.unwrap_master(&store.rt_data_key)?;
                (Some(run.wrap.wrap_master(&rt)?), Some(rt))
            }
            _ => (None, None),
        };
        let mut attempts = 0;
        let blob = loop {
            attempts += 1;
            match run.wrap.wrap_master(&mk) {
                Ok(b) => break b,
                Err(e) if attempts >= MASTER_KEY_ATTEMPTS => {
                    return Err(StoreError::Key(KeyError::Provider(format!(
                        "creating the master key failed {attempts} times: {e}"
                    ))));
                }
                Err(_) => continue,
            }
        };
        self.commit_step(id, 1, run, |tx, t| {
            let v = next_version(tx.master_keys()?.iter().map(|m| m.version))?;
            tx.insert_master_key(&MasterKeyRecord {
                version: v,
                state: MasterState::Pending,
                wrapped: blob.clone(),
                created: now(),
                retired: None,
                root: master_root(&*run.wrap, &blob, rt_wrapped.clone()),
            })?;
            let store = update_store(tx, |_| Ok(()))?;
            // Every site that joined by a grant gets the new keys in the same transaction
            // (KEYS.md §8.5), so no committed master key is ever missing from a grant.
            let mut granted: Vec<(&[u8], &Secret32)> = vec![(&blob, &mk)];
            if let (Some(b), Some(k)) = (&rt_wrapped, &rt) {
                granted.push((b, k));
            }
            crate::site::grant_to_sites(tx, &store.store_id, &granted)?;
            t.new_master = Some(v);
            t.master_attempts = attempts;
            Ok(())
        })
    }

    /// Step 2: a new rotation key, wrapped under the new master's VMK (derived beforehand).
    fn create_rotation_key(&self, task: &TaskRecord, run: &Runner<'_>) -> Result<bool, StoreError> {
        let mv = task.new_master.ok_or_else(|| lacks_earlier_step(task.id))?;
        let vmk = self.vmk_memo(run)?.get_read(&**self.metadata(), mv)?;
        let rk = Secret32::generate("rotation key")?;
        let wrapped = wrap_key(&vmk, &rk);
        self.commit_step(task.id, 2, run, |tx, t| {
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
    fn activate_keys(&self, task: &TaskRecord, run: &Runner<'_>) -> Result<bool, StoreError> {
        let mv = task.new_master.ok_or_else(|| lacks_earlier_step(task.id))?;
        let rv = task
            .new_rotation
            .ok_or_else(|| lacks_earlier_step(task.id))?;
        let (mut memo, kms) = match run.kind {
            TaskKind::Rekey => (Some(self.vmk_memo(run)?), self.kms_materials(run)?),
            _ => (None, HashMap::new()),
        };
        self.commit_step(task.id, 3, run, |tx, _| {
            if let Some(memo) = memo.as_mut() {
                switch_root(tx, memo, mv)?;
                reprotect_kms(tx, &kms)?;
            }
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
    fn rewrap_keys(&self, id: u64, run: &Runner<'_>) -> Result<bool, StoreError> {
        let mut memo = self.vmk_memo(run)?;
        let kms = match run.kind {
            TaskKind::Rekey => self.kms_materials(run)?,
            _ => HashMap::new(),
        };
        self.commit_step(id, 4, run, |tx, _| {
            let store = update_store(tx, bump_epoch)?;
            rewrap_all(tx, &mut memo, &store.rt_data_key, store.active_master)?;
            reprotect_kms(tx, &kms)
        })
    }

    /// A rekey's new blobs for the key management service's CMK material (`kms_versions`),
    /// which the root of trust protects directly (KMS.md §1): every material blob the
    /// target cannot unwrap yet is unwrapped (either root) and protected by the target —
    /// before the step's transaction, as every root-of-trust call. Old blob → new blob.
    fn kms_materials(&self, run: &Runner<'_>) -> Result<HashMap<Vec<u8>, Vec<u8>>, StoreError> {
        let blobs = read_with::<_, StoreError>(&**self.metadata(), |tx| {
            let mut blobs = Vec::new();
            for k in tx.kms_keys()? {
                for v in tx.kms_versions(&k.key_id)? {
                    blobs.extend(v.material);
                }
            }
            Ok(blobs)
        })?;
        let mut out = HashMap::new();
        for b in blobs {
            if out.contains_key(&b) || run.wrap.unwrap_master(&b).is_ok() {
                continue;
            }
            let m = run.unwrap.unwrap_master(&b)?;
            let new = run.wrap.wrap_master(&m)?;
            out.insert(b, new);
        }
        Ok(out)
    }

    /// The virtual master keys a step may need — of every master version a rotation key or
    /// namespace key is under, and of the active and newest master — derived before the
    /// step's transaction with the runner's roots.
    fn vmk_memo<'r>(&self, run: &'r Runner<'_>) -> Result<VmkMemo<'r>, StoreError> {
        let (store, masters, wanted) = read_with::<_, StoreError>(&**self.metadata(), |tx| {
            let store = tx
                .store()?
                .ok_or_else(|| StoreError::NotInitialized("the metadata database".into()))?;
            let masters = tx.master_keys()?;
            let mut wanted: Vec<u32> = tx
                .rotation_keys()?
                .iter()
                .map(|r| r.master_version)
                .chain(tx.namespaces()?.iter().map(|n| n.master_version))
                .collect();
            wanted.push(store.active_master);
            wanted.extend(masters.iter().map(|m| m.version).max());
            wanted.sort_unstable();
            wanted.dedup();
            Ok((store, masters, wanted))
        })?;
        let mut memo = VmkMemo {
            root: &*run.unwrap,
            keys: HashMap::new(),
        };
        for mv in wanted {
            let vmk = derive_vmk(
                &*run.unwrap,
                masters.iter().find(|m| m.version == mv),
                &store.rt_data_key,
                mv,
            )?;
            memo.keys.insert(mv, vmk);
        }
        Ok(memo)
    }

    /// Step 5: `retiring` masters become `retired`; the task completes.
    fn retire_old_master(&self, id: u64, run: &Runner<'_>) -> Result<bool, StoreError> {
        // Deactivation first (ECS §2.4): each retiring master key, and any retired one not
        // yet deactivated, by its own root; a key server that is down fails the step, which
        // leaves the task resumable and the keys as they were. `deactivate` is idempotent,
        // so a resumed step calls it again.
        let (store, masters) = read_with::<_, StoreError>(&**self.metadata(), |tx| {
            let store = tx
                .store()?
                .ok_or_else(|| StoreError::NotInitialized("the metadata database".into()))?;
            Ok((store, tx.master_keys()?))
        })?;
        let mut done: HashMap<u32, bool> = HashMap::new();
        for m in &masters {
            let due = m.state == MasterState::Retiring
                || (m.state == MasterState::Retired && m.root.deactivated.is_none());
            if !due {
                continue;
            }
            let name = m
                .root
                .root_of_trust
                .clone()
                .unwrap_or_else(|| store.root_of_trust.clone());
            let Some(root) = run.roots.iter().find(|r| r.describe() == name) else {
                if m.state == MasterState::Retired {
                    // Retired before deactivation existed, under a root this runner does not
                    // have: left as it is (`keys info` shows it not deactivated).
                    continue;
                }
                return Err(StoreError::Key(KeyError::Provider(format!(
                    "master key version {} is protected by {name}, which this runner was not \
                     given: resume the task with that root of trust",
                    m.version
                ))));
            };
            let deactivated = root.deactivate(&m.wrapped).map_err(|e| {
                StoreError::Key(KeyError::Provider(format!(
                    "deactivating master key version {} in {name}: {e}",
                    m.version
                )))
            })?;
            done.insert(m.version, deactivated);
        }
        self.commit_step(id, 5, run, |tx, t| {
            let ts = now();
            let mut retired = Vec::new();
            for mut m in tx.master_keys()? {
                if m.state == MasterState::Retiring {
                    m.state = MasterState::Retired;
                    m.retired = Some(ts);
                    retired.push(m.version);
                }
                if m.state == MasterState::Retired
                    && m.root.deactivated.is_none()
                    && let Some(d) = done.get(&m.version)
                {
                    m.root.deactivated = Some(ts);
                    m.root.deactivation =
                        Some(if *d { "deactivated" } else { "nothing" }.to_owned());
                }
                tx.update_master_key(&m)?;
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
