//! The records of the resource table and the object table, as stored (docs/METADATA.md).
//!
//! Only wrapped keys are ever stored. Every byte string here is opaque to this crate: its
//! layout is specified in docs/KEYS.md (wrapped keys, envelopes) and docs/FORMAT.md (object
//! parameters). Times are Unix seconds, except object creation times (Unix milliseconds, as
//! S3's `LastModified`) and task lease expiries (Unix milliseconds: leases last seconds).

use std::fmt;

/// A site that joined the store (docs/KEYS.md §8.5): its RSA public key, recorded when a site
/// holding the master keys granted them to it. Only public data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRecord {
    /// The site's name (1-64 printable ASCII characters, unique).
    pub name: String,
    /// SHA-256 of `public_key` (unique): how a site finds its grant.
    pub fingerprint: [u8; 32],
    /// The site's RSA public key, X.509 SubjectPublicKeyInfo DER.
    pub public_key: Vec<u8>,
    /// When the grant was made, Unix seconds.
    pub granted: u64,
}

/// One top-level key granted to a site: the key inside a root-of-trust blob of the store
/// (a master key's `wrapped`, its `rt_wrapped`, or the store's `rt_data_key`), encrypted to
/// the site's public key with RSA-OAEP (docs/KEYS.md §8.5).
#[derive(Clone, PartialEq, Eq)]
pub struct SiteKeyRecord {
    /// The site's fingerprint (its `sites` row).
    pub fingerprint: [u8; 32],
    /// SHA-256 of the root-of-trust blob whose key this is.
    pub blob_hash: [u8; 32],
    /// The RSA-OAEP ciphertext (the modulus's length).
    pub wrapped: Vec<u8>,
}

impl fmt::Debug for SiteKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiteKeyRecord")
            .field("fingerprint", &hex(&self.fingerprint))
            .field("blob_hash", &hex(&self.blob_hash))
            .field("wrapped_len", &self.wrapped.len())
            .finish()
    }
}

/// The one store row: identity and the keys' active state.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreRecord {
    /// 16 random bytes drawn at `init`; part of every object's associated data (FORMAT.md).
    pub store_id: [u8; 16],
    /// log2 of the chunk size of new objects (12..=22).
    pub chunk_shift: u8,
    /// What protects the master keys and the RT data key (`RootOfTrust::describe`).
    pub root_of_trust: String,
    /// Root-of-trust blob of the RT data key (KEYS.md §5).
    pub rt_data_key: Vec<u8>,
    /// The active master key version.
    pub active_master: u32,
    /// The rotation key version new objects are wrapped under.
    pub active_rotation: u32,
    /// Bumped whenever an active key switches or keys are rewrapped; a change empties
    /// derived-key caches (KEYS.md §8.3).
    pub key_epoch: u64,
    /// Store creation time.
    pub created: u64,
    /// Optimistic-concurrency version of this row: bumped by every update. Every change to
    /// master or rotation keys updates this row in the same transaction, so two writers of
    /// key records always conflict on it.
    pub row_version: u64,
}

impl fmt::Debug for StoreRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreRecord")
            .field("chunk_shift", &self.chunk_shift)
            .field("root_of_trust", &self.root_of_trust)
            .field("active_master", &self.active_master)
            .field("active_rotation", &self.active_rotation)
            .field("key_epoch", &self.key_epoch)
            .field("row_version", &self.row_version)
            .finish_non_exhaustive()
    }
}

/// Life cycle of a master key version (KEYS.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MasterState {
    /// Created by a rotation, not yet active.
    Pending,
    /// The master key whose virtual master key wraps new rotation and namespace keys.
    Active,
    /// Superseded; keys may still be wrapped under it until the rewrap step ends.
    Retiring,
    /// Nothing is wrapped under it any more; kept for stale readers and resumed tasks.
    Retired,
}

impl MasterState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            MasterState::Pending => "pending",
            MasterState::Active => "active",
            MasterState::Retiring => "retiring",
            MasterState::Retired => "retired",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => MasterState::Pending,
            "active" => MasterState::Active,
            "retiring" => MasterState::Retiring,
            "retired" => MasterState::Retired,
            _ => return None,
        })
    }
}

/// A master key version: its root-of-trust blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyRecord {
    /// Version, from 1.
    pub version: u32,
    /// Life-cycle state.
    pub state: MasterState,
    /// Root-of-trust blob of the master key.
    pub wrapped: Vec<u8>,
    /// Creation time.
    pub created: u64,
    /// When it was retired.
    pub retired: Option<u64>,
    /// Where `wrapped` came from (schema version 4; `Default` for rows of older versions):
    /// the root of trust that protects it and the RT data key under that root.
    pub root: MasterRoot,
}

/// The root of trust of one master key version (schema version 4, KEYS.md §8.3): a rekey
/// leaves older master keys under the root they were made with, so each row says which.
/// Every field `None` (the `Default`) means "the store row's `root_of_trust` and
/// `rt_data_key`", as for every master key made before version 4 or by a plain rotation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MasterRoot {
    /// The root's `describe()` (1..=1024 characters).
    pub root_of_trust: Option<String>,
    /// Who manages the key that protects `wrapped`: `internal`, `external` or `hsm`.
    pub management: Option<String>,
    /// The key's id in the key manager (a KMIP unique identifier), if it has one.
    pub key_id: Option<String>,
    /// The RT data key protected by this same root (the store row's `rt_data_key` holds the
    /// RT data key under the store's current root only).
    pub rt_wrapped: Option<Vec<u8>>,
    /// When the deactivation step of a task ran for this (retired) master key, Unix seconds.
    pub deactivated: Option<u64>,
    /// What it found: `deactivated` (the key manager deactivated the key) or `nothing`
    /// (an internal root: nothing to deactivate). Set exactly when `deactivated` is.
    pub deactivation: Option<String>,
}

/// A rotation key version, wrapped by the virtual master key of `master_version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationKeyRecord {
    /// Version, from 1.
    pub version: u32,
    /// The master version whose virtual master key wraps `wrapped`.
    pub master_version: u32,
    /// RFC 5649 wrap (40 bytes).
    pub wrapped: Vec<u8>,
    /// Creation time.
    pub created: u64,
    /// Optimistic-concurrency version (bumped when the rotation rewraps it).
    pub row_version: u64,
}

/// A namespace and its namespace key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceRecord {
    /// Allocated by the database, never reused.
    pub id: u64,
    /// Unique name.
    pub name: String,
    /// Whether buckets in it are encrypted by default (fixed at creation).
    pub encryption: bool,
    /// The master version whose virtual master key wraps `wrapped_key`.
    pub master_version: u32,
    /// The namespace key, RFC 5649 (40 bytes).
    pub wrapped_key: Vec<u8>,
    /// Creation time.
    pub created: u64,
    /// Optimistic-concurrency version.
    pub row_version: u64,
}

/// A namespace to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNamespace {
    /// `None`: the database allocates the id. `Some`: this id (only when importing a store
    /// whose envelopes already name it; it must be unused).
    pub id: Option<u64>,
    /// Unique name.
    pub name: String,
    /// Encryption default of its buckets.
    pub encryption: bool,
    /// The master version whose virtual master key wraps `wrapped_key`.
    pub master_version: u32,
    /// The namespace key, RFC 5649 (40 bytes).
    pub wrapped_key: Vec<u8>,
    /// Creation time.
    pub created: u64,
}

/// A bucket and, when encrypted, its bucket key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRecord {
    /// Allocated by the database, never reused.
    pub id: u64,
    /// Unique name across all namespaces, as S3 bucket names.
    pub name: String,
    /// Its namespace.
    pub namespace_id: u64,
    /// Whether objects in it are encrypted (fixed at creation).
    pub encryption: bool,
    /// The bucket key wrapped by its namespace key (40 bytes), or, in an SSE-KMS bucket, a
    /// KMS ciphertext of it (KMS.md §4); `None` exactly when `encryption` is false.
    pub wrapped_key: Option<Vec<u8>>,
    /// SSE-KMS: the CMK whose current version wraps the bucket key (`None`: the namespace key
    /// wraps it).
    pub kms_key_id: Option<String>,
    /// Creation time.
    pub created: u64,
    /// Optimistic-concurrency version.
    pub row_version: u64,
}

/// A bucket to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBucket {
    /// `None`: the database allocates the id; `Some` only when importing (see [`NewNamespace::id`]).
    pub id: Option<u64>,
    /// Unique name.
    pub name: String,
    /// Its namespace (must exist).
    pub namespace_id: u64,
    /// Whether objects in it are encrypted.
    pub encryption: bool,
    /// The wrapped bucket key; `None` exactly when `encryption` is false.
    pub wrapped_key: Option<Vec<u8>>,
    /// SSE-KMS: the CMK that wraps the bucket key (then `wrapped_key` is a KMS ciphertext).
    pub kms_key_id: Option<String>,
    /// Creation time.
    pub created: u64,
}

/// What a background task does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TaskKind {
    /// A key rotation (KEYS.md §8).
    Rotation,
    /// A rekey: a rotation whose new master key is protected by another root of trust
    /// (KEYS.md §8.3; schema version 4).
    Rekey,
}

impl TaskKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Rotation => "rotation",
            TaskKind::Rekey => "rekey",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rotation" => Some(TaskKind::Rotation),
            "rekey" => Some(TaskKind::Rekey),
            _ => None,
        }
    }
}

/// State of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Created, no step run yet.
    Pending,
    /// Steps are being run (or the process running them died; resume it).
    Running,
    /// A step failed; resuming continues from the last saved step.
    TransientError,
    /// All steps done.
    Completed,
}

impl TaskState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::TransientError => "transient_error",
            TaskState::Completed => "completed",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => TaskState::Pending,
            "running" => TaskState::Running,
            "transient_error" => TaskState::TransientError,
            "completed" => TaskState::Completed,
            _ => return None,
        })
    }
}

/// A background task (today: key rotation). At most one task of each kind is not
/// `Completed` at a time; the database enforces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRecord {
    /// Allocated by the database, never reused (the handle users poll).
    pub id: u64,
    /// What it does.
    pub kind: TaskKind,
    /// Its state.
    pub state: TaskState,
    /// The last step whose effect is saved (0 = none).
    pub step: u8,
    /// Start time.
    pub started: u64,
    /// End time, once completed.
    pub ended: Option<u64>,
    /// What the completed task did.
    pub outcome: Option<String>,
    /// The last error.
    pub error: Option<String>,
    /// The active master version when the task started.
    pub previous_master: u32,
    /// The master version the task created.
    pub new_master: Option<u32>,
    /// The rotation version the task created.
    pub new_rotation: Option<u32>,
    /// Attempts made at creating the master key in the last run of step 1.
    pub master_attempts: u32,
    /// Optimistic-concurrency version.
    pub row_version: u64,
    /// Who holds the task's lease: the id of the runner (node and process) allowed to commit
    /// its steps (KEYS.md §8.2); `None` when the lease is free. At most 255 characters.
    pub lease_owner: Option<String>,
    /// When the lease expires, Unix **milliseconds** by the holder's clock; `None` exactly
    /// when `lease_owner` is.
    pub lease_expires: Option<u64>,
    /// The fencing token: bumped at every acquisition of the lease and never reused (0 before
    /// the first). A runner's step commits only while the row still carries its token.
    pub lease_token: u64,
    /// A rekey's target: the `describe()` of the root of trust the new master key is
    /// protected by (schema version 4); `None` for a rotation.
    pub target_root: Option<String>,
    /// When a runner last saved the task (a step, a failure, a lease acquisition), Unix
    /// seconds (schema version 4; `None` for older rows and a task never run).
    pub updated: Option<u64>,
}

/// A task to insert (state `Pending`, step 0, lease free with token 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    /// `None`: the database allocates the id; `Some` only when importing.
    pub id: Option<u64>,
    /// What it does.
    pub kind: TaskKind,
    /// Start time.
    pub started: u64,
    /// The active master version now.
    pub previous_master: u32,
    /// A rekey's target root (`describe()`); `None` for a rotation.
    pub target_root: Option<String>,
}

/// One visible object: where its data is and how to decrypt it.
#[derive(Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    /// Its bucket.
    pub bucket_id: u64,
    /// Its name within the bucket: 1..=1024 bytes of UTF-8, any characters (`/` included).
    pub name: String,
    /// 16 random bytes naming its data file (FORMAT.md §2); part of its associated data.
    pub object_id: [u8; 16],
    /// Plaintext size in bytes.
    pub size: u64,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
    /// The entity tag (FORMAT.md §7).
    pub etag: String,
    /// Object format of the data file: 1 (written before foundation v2; the envelope inside
    /// the file header is authoritative) or 2.
    pub format: u8,
    /// 0 = stored in clear, 1 = AES-256-GCM chunked.
    pub suite: u8,
    /// log2 of the chunk size.
    pub chunk_shift: u8,
    /// The random per-object nonce prefix (all zero in clear).
    pub nonce_prefix: [u8; 7],
    /// Envelope kind byte (KEYS.md §4); `None` in clear.
    pub envelope_kind: Option<u8>,
    /// Envelope bytes (key reference and wrapped data key, KEYS.md §4); `None` in clear.
    pub envelope: Option<Vec<u8>>,
    /// The user metadata: AES-GCM sealed under the data key (suite 1) or the clear encoding
    /// (suite 0); FORMAT.md §5. Empty for format 1 (it is in the data file).
    pub meta: Vec<u8>,
    /// Optimistic-concurrency version: 1 when the row is created, bumped by each rewrap. An
    /// overwrite creates a new row (new object id).
    pub row_version: u64,
}

impl fmt::Debug for ObjectRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectRecord")
            .field("bucket_id", &self.bucket_id)
            .field("name", &self.name)
            .field("object_id", &hex(&self.object_id))
            .field("size", &self.size)
            .field("etag", &self.etag)
            .field("format", &self.format)
            .field("suite", &self.suite)
            .field("envelope_kind", &self.envelope_kind)
            .field("row_version", &self.row_version)
            .finish_non_exhaustive()
    }
}

/// Lower-case hex of bytes (object ids in messages and file names).
pub fn hex(b: &[u8]) -> String {
    use fmt::Write;
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// Which object names a listing returns: names that start with `prefix` and sort strictly
/// after `after` (byte order of their UTF-8, as S3 lists), ascending.
///
/// `after` is raw bytes rather than a name so that a listing can skip past a whole common
/// prefix: the smallest byte string above every name starting with `P` is `P` with its last
/// byte incremented, which is not always UTF-8.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameRange<'a> {
    /// Only names starting with these bytes.
    pub prefix: &'a str,
    /// Only names sorting strictly after these bytes.
    pub after: Option<&'a [u8]>,
}

/// The primary-key range scan a [`NameRange`] is, as every backend runs it: names above
/// `lower` (strictly when `exclusive`) and below `end` (when there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NameBounds<'a> {
    /// The lower bound.
    pub lower: &'a [u8],
    /// Whether `lower` itself is excluded (it came from `after`).
    pub exclusive: bool,
    /// The exclusive upper bound: [`prefix_end`] of the prefix.
    pub end: Option<Vec<u8>>,
}

impl<'a> NameRange<'a> {
    /// The scan bounds. Names starting with `prefix` are >= `prefix`; an `after` below
    /// `prefix` adds nothing to that bound, one at or above it replaces it.
    pub(crate) fn bounds(&self) -> NameBounds<'a> {
        let prefix = self.prefix.as_bytes();
        let (lower, exclusive) = match self.after {
            Some(after) if after >= prefix => (after, true),
            _ => (prefix, false),
        };
        NameBounds {
            lower,
            exclusive,
            end: prefix_end(prefix),
        }
    }
}

/// The smallest byte string above every string that starts with `prefix`: `prefix` with its
/// last byte incremented (carrying past 0xFF bytes, which UTF-8 never holds anyway); `None`
/// when there is no such bound (an empty prefix).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if let Some(next) = last.checked_add(1) {
            end.push(next);
            return Some(end);
        }
    }
    None
}

/// The row version after `v`.
pub(crate) fn bump(v: u64) -> Result<u64, crate::MetaError> {
    v.checked_add(1)
        .ok_or_else(|| crate::MetaError::Database("row version overflow".into()))
}

#[cfg(test)]
mod name_range_tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_smallest_string_above_the_prefix() {
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(b"a/"), Some(b"a0".to_vec()));
        assert_eq!(prefix_end("¿".as_bytes()), Some(vec![0xc2, 0xc0]));
        // Not reachable from UTF-8, but correct: carry past 0xFF.
        assert_eq!(prefix_end(&[0x61, 0xff, 0xff]), Some(vec![0x62]));
        assert_eq!(prefix_end(&[0xff]), None);
    }

    #[test]
    fn bounds_take_the_larger_lower_bound() {
        let r = NameRange {
            prefix: "b/",
            after: Some(b"a"),
        };
        assert_eq!(r.bounds().lower, b"b/");
        assert!(!r.bounds().exclusive);
        let r = NameRange {
            prefix: "b/",
            after: Some(b"b/x"),
        };
        assert_eq!(r.bounds().lower, b"b/x");
        assert!(r.bounds().exclusive);
        assert_eq!(r.bounds().end, Some(b"b0".to_vec()));
    }
}
