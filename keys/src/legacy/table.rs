//! The format-1 resource table: every record the previous release kept in `keystore.dat`, as
//! serialized (KEYS.md §6 of format 1), and the invariants a loaded table must satisfy.
//!
//! Only read (and, for the fuzz round trip, written back) here; the live records are in the
//! metadata database. Field names and enum spellings are the file's and must not change.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::StoreError;
use crate::wrap::WRAPPED_LEN;

/// Opaque bytes, serialized as standard base64 (RFC 4648 §4, with padding).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct B64(pub(crate) Vec<u8>);

impl std::fmt::Debug for B64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Wrapped keys are not secret, but there is no reason to print them in diagnostics.
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl Serialize for B64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map(B64)
            .map_err(serde::de::Error::custom)
    }
}

/// Life cycle of a master key version, as the file spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MasterState {
    /// Created by a rotation, not yet active.
    Pending,
    /// The master key whose VMK wraps new rotation and namespace keys.
    Active,
    /// Superseded; keys may still be wrapped under its VMK until the rewrap step ends.
    Retiring,
    /// Nothing is wrapped under it any more. Kept so stale readers and resumed tasks can
    /// still unwrap; a root of trust backed by an HSM may deactivate it.
    Retired,
}

/// State of a rotation task, as the file spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TaskState {
    /// Created by `start_rotation`, no step run yet.
    Pending,
    /// Steps are being run (or the process running them died; resume it).
    Running,
    /// A step failed; resuming continues from the last saved step.
    TransientError,
    /// All five steps done.
    Completed,
}

impl From<MasterState> for dare_metadata::MasterState {
    fn from(s: MasterState) -> Self {
        match s {
            MasterState::Pending => dare_metadata::MasterState::Pending,
            MasterState::Active => dare_metadata::MasterState::Active,
            MasterState::Retiring => dare_metadata::MasterState::Retiring,
            MasterState::Retired => dare_metadata::MasterState::Retired,
        }
    }
}

impl From<TaskState> for dare_metadata::TaskState {
    fn from(s: TaskState) -> Self {
        match s {
            TaskState::Pending => dare_metadata::TaskState::Pending,
            TaskState::Running => dare_metadata::TaskState::Running,
            TaskState::TransientError => dare_metadata::TaskState::TransientError,
            TaskState::Completed => dare_metadata::TaskState::Completed,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MasterKeyRecord {
    pub(crate) version: u32,
    pub(crate) state: MasterState,
    /// Root-of-trust blob of the master key.
    pub(crate) wrapped: B64,
    pub(crate) created: u64,
    pub(crate) retired: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RtKeyRecord {
    /// Root-of-trust blob of the RT data key.
    pub(crate) wrapped: B64,
    pub(crate) created: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotationKeyRecord {
    pub(crate) version: u32,
    /// The master version whose VMK wraps `wrapped`.
    pub(crate) master_version: u32,
    pub(crate) wrapped: B64,
    pub(crate) created: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NamespaceRecord {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) encryption: bool,
    /// The master version whose VMK wraps `wrapped_key`.
    pub(crate) master_version: u32,
    /// The namespace key under VMK(master_version).
    pub(crate) wrapped_key: B64,
    pub(crate) created: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BucketRecord {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) namespace_id: u64,
    pub(crate) encryption: bool,
    /// The bucket key under its namespace key; absent for an unencrypted bucket.
    pub(crate) wrapped_key: Option<B64>,
    pub(crate) created: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotationTask {
    pub(crate) id: u64,
    pub(crate) state: TaskState,
    /// The last step whose effect is saved (0 = none, 5 = all).
    pub(crate) step: u8,
    pub(crate) started: u64,
    pub(crate) ended: Option<u64>,
    pub(crate) outcome: Option<String>,
    pub(crate) error: Option<String>,
    /// The active master version when the task started.
    pub(crate) previous_master: u32,
    pub(crate) new_master: Option<u32>,
    pub(crate) new_rotation: Option<u32>,
    /// Attempts made at creating the master key in the last run of step 1.
    pub(crate) master_attempts: u32,
}

/// The whole resource table. Serialized as one JSON object (KEYS.md §6.2 of format 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Table {
    /// Bumped by every write.
    pub(crate) generation: u64,
    /// Bumped whenever an active key switches or keys are rewrapped; a change empties the
    /// derived-key cache.
    pub(crate) key_epoch: u64,
    pub(crate) root_of_trust: String,
    pub(crate) created: u64,
    pub(crate) rt_data_key: RtKeyRecord,
    pub(crate) active_master: u32,
    pub(crate) active_rotation: u32,
    pub(crate) masters: Vec<MasterKeyRecord>,
    pub(crate) rotation_keys: Vec<RotationKeyRecord>,
    pub(crate) namespaces: Vec<NamespaceRecord>,
    pub(crate) buckets: Vec<BucketRecord>,
    pub(crate) tasks: Vec<RotationTask>,
    pub(crate) next_namespace_id: u64,
    pub(crate) next_bucket_id: u64,
    pub(crate) next_task_id: u64,
}

fn corrupt(msg: impl Into<String>) -> StoreError {
    super::file::corrupt(&msg.into())
}

fn unique<T: Ord + Copy>(mut v: Vec<T>) -> bool {
    let n = v.len();
    v.sort_unstable();
    v.dedup();
    v.len() == n
}

impl Table {
    pub(crate) fn master(&self, v: u32) -> Option<&MasterKeyRecord> {
        self.masters.iter().find(|m| m.version == v)
    }

    pub(crate) fn rotation_key(&self, v: u32) -> Option<&RotationKeyRecord> {
        self.rotation_keys.iter().find(|r| r.version == v)
    }

    pub(crate) fn namespace_by_id(&self, id: u64) -> Option<&NamespaceRecord> {
        self.namespaces.iter().find(|n| n.id == id)
    }

    /// Checks the invariants every other function relies on, so that a table loaded from
    /// arbitrary bytes either satisfies them or is refused as corrupt.
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if !unique(self.masters.iter().map(|m| m.version).collect()) {
            return Err(corrupt("duplicate master key version"));
        }
        if !unique(self.rotation_keys.iter().map(|r| r.version).collect()) {
            return Err(corrupt("duplicate rotation key version"));
        }
        if !unique(self.namespaces.iter().map(|n| n.id).collect())
            || !unique(self.buckets.iter().map(|b| b.id).collect())
            || !unique(self.tasks.iter().map(|t| t.id).collect())
        {
            return Err(corrupt("duplicate namespace, bucket or task id"));
        }
        let mut names: Vec<&str> = self.namespaces.iter().map(|n| n.name.as_str()).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        let mut bnames: Vec<&str> = self.buckets.iter().map(|b| b.name.as_str()).collect();
        bnames.sort_unstable();
        let bn = bnames.len();
        bnames.dedup();
        if names.len() != n || bnames.len() != bn {
            return Err(corrupt("duplicate namespace or bucket name"));
        }
        match self.master(self.active_master) {
            Some(m) if m.state == MasterState::Active => {}
            _ => return Err(corrupt("active master key version missing or not active")),
        }
        if self
            .masters
            .iter()
            .filter(|m| m.state == MasterState::Active)
            .count()
            != 1
        {
            return Err(corrupt("more than one active master key"));
        }
        if self.rotation_key(self.active_rotation).is_none() {
            return Err(corrupt("active rotation key version missing"));
        }
        for r in &self.rotation_keys {
            if r.wrapped.0.len() != WRAPPED_LEN || self.master(r.master_version).is_none() {
                return Err(corrupt(format!(
                    "rotation key {} record is invalid",
                    r.version
                )));
            }
        }
        for ns in &self.namespaces {
            if ns.wrapped_key.0.len() != WRAPPED_LEN || self.master(ns.master_version).is_none() {
                return Err(corrupt(format!("namespace {} record is invalid", ns.id)));
            }
            if ns.id >= self.next_namespace_id {
                return Err(corrupt("namespace id counter behind an existing id"));
            }
        }
        for b in &self.buckets {
            let key_ok = match &b.wrapped_key {
                Some(k) => b.encryption && k.0.len() == WRAPPED_LEN,
                None => !b.encryption,
            };
            if !key_ok || self.namespace_by_id(b.namespace_id).is_none() {
                return Err(corrupt(format!("bucket {} record is invalid", b.id)));
            }
            if b.id >= self.next_bucket_id {
                return Err(corrupt("bucket id counter behind an existing id"));
            }
        }
        for t in &self.tasks {
            if t.step > 5 || t.id >= self.next_task_id {
                return Err(corrupt(format!("rotation task {} record is invalid", t.id)));
            }
        }
        if self
            .tasks
            .iter()
            .filter(|t| t.state != TaskState::Completed)
            .count()
            > 1
        {
            return Err(corrupt("more than one unfinished rotation task"));
        }
        Ok(())
    }
}
