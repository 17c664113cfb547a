//! The metadata seam: a database reached through read and write transactions.
//!
//! Every implementation (SQLite and PostgreSQL here) must give these guarantees, which the
//! shared test suite checks:
//! - a [`ReadTx`] sees one consistent snapshot for its whole life;
//! - a [`WriteTx`] is atomic and durable once [`WriteTx::commit`] returns `Ok`; dropping it
//!   without committing rolls everything back; a crash at any moment leaves either all or none
//!   of its changes;
//! - updates that name a `row_version` fail with [`MetaError::Conflict`] when the row changed
//!   since (and then change nothing); ids are allocated by the database and never reused;
//! - names compare and sort as the bytes of their UTF-8 (what S3 listing order is).

use std::fmt;
use std::path::Path;

use crate::MetaError;
use crate::kms::{
    KmsAuditHead, KmsAuditRecord, KmsBy, KmsKeyRecord, KmsRegistration, KmsVersionRecord,
};
use crate::records::{
    BucketRecord, MasterKeyRecord, NameRange, NamespaceRecord, NewBucket, NewNamespace, NewTask,
    ObjectRecord, RotationKeyRecord, SiteKeyRecord, SiteRecord, StoreRecord, TaskRecord,
};

/// Look a namespace or bucket up by id or by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By<'a> {
    /// Its id.
    Id(u64),
    /// Its unique name.
    Name(&'a str),
}

/// Reads within one transaction (one consistent snapshot).
pub trait ReadTx {
    /// The store row; `None` before `insert_store`.
    fn store(&mut self) -> Result<Option<StoreRecord>, MetaError>;
    /// Every master key version, ascending.
    fn master_keys(&mut self) -> Result<Vec<MasterKeyRecord>, MetaError>;
    /// Every rotation key version, ascending.
    fn rotation_keys(&mut self) -> Result<Vec<RotationKeyRecord>, MetaError>;
    /// One namespace.
    fn namespace(&mut self, by: By<'_>) -> Result<Option<NamespaceRecord>, MetaError>;
    /// Every namespace, by id.
    fn namespaces(&mut self) -> Result<Vec<NamespaceRecord>, MetaError>;
    /// One bucket.
    fn bucket(&mut self, by: By<'_>) -> Result<Option<BucketRecord>, MetaError>;
    /// Every bucket (of one namespace, if given), by id.
    fn buckets(&mut self, namespace_id: Option<u64>) -> Result<Vec<BucketRecord>, MetaError>;
    /// One task.
    fn task(&mut self, id: u64) -> Result<Option<TaskRecord>, MetaError>;
    /// Every task, by id.
    fn tasks(&mut self) -> Result<Vec<TaskRecord>, MetaError>;
    /// One object.
    fn object(&mut self, bucket_id: u64, name: &str) -> Result<Option<ObjectRecord>, MetaError>;
    /// Up to `limit` objects of a bucket in `range`, ascending by name bytes.
    fn objects(
        &mut self,
        bucket_id: u64,
        range: NameRange<'_>,
        limit: usize,
    ) -> Result<Vec<ObjectRecord>, MetaError>;
    /// How many objects a bucket holds.
    fn object_count(&mut self, bucket_id: u64) -> Result<u64, MetaError>;

    // ---- key management service (docs/KMS.md) --------------------------------------------

    /// One CMK (tombstones of deleted keys included when looked up by id; they have no alias).
    fn kms_key(&mut self, by: KmsBy<'_>) -> Result<Option<KmsKeyRecord>, MetaError>;
    /// Every CMK, tombstones included, ascending by `(created_ms, key_id)`.
    fn kms_keys(&mut self) -> Result<Vec<KmsKeyRecord>, MetaError>;
    /// Every version of a CMK, ascending.
    fn kms_versions(&mut self, key_id: &str) -> Result<Vec<KmsVersionRecord>, MetaError>;
    /// Every registration of a CMK, ascending by resource bytes.
    fn kms_registrations(&mut self, key_id: &str) -> Result<Vec<KmsRegistration>, MetaError>;
    /// Up to `limit` audit records with `seq > after_seq`, ascending.
    fn kms_audit(&mut self, after_seq: u64, limit: usize)
    -> Result<Vec<KmsAuditRecord>, MetaError>;
    /// The audit head (`seq` 0 and an empty MAC before the first record).
    fn kms_audit_head(&mut self) -> Result<KmsAuditHead, MetaError>;

    // ---- sites (docs/KEYS.md §8.5) -------------------------------------------------------

    /// Every site granted the store's keys, ascending by name bytes.
    fn sites(&mut self) -> Result<Vec<SiteRecord>, MetaError>;
    /// Every key granted to the site with this fingerprint, ascending by blob hash.
    fn site_keys(&mut self, fingerprint: &[u8; 32]) -> Result<Vec<SiteKeyRecord>, MetaError>;
}

/// Reads and writes within one atomic transaction. Dropped without [`commit`](Self::commit),
/// it rolls back.
pub trait WriteTx: ReadTx {
    /// Inserts the store row (once, at init). `row_version` is stored as given.
    fn insert_store(&mut self, s: &StoreRecord) -> Result<(), MetaError>;
    /// Replaces the store row's mutable fields (`chunk_shift`, `root_of_trust`,
    /// `rt_data_key`, `active_master`, `active_rotation`, `key_epoch`) if its `row_version`
    /// is still `s.row_version`; returns the new row version. `store_id` and `created` never
    /// change.
    fn update_store(&mut self, s: &StoreRecord) -> Result<u64, MetaError>;
    /// Inserts a master key version (the version must be unused).
    fn insert_master_key(&mut self, m: &MasterKeyRecord) -> Result<(), MetaError>;
    /// Replaces `state`, `wrapped` and `retired` of master key `m.version`. Callers update the
    /// store row in the same transaction, which is the optimistic check.
    fn update_master_key(&mut self, m: &MasterKeyRecord) -> Result<(), MetaError>;
    /// Inserts a rotation key version (the version must be unused; its master must exist).
    fn insert_rotation_key(&mut self, r: &RotationKeyRecord) -> Result<(), MetaError>;
    /// Replaces `master_version` and `wrapped` of rotation key `r.version` if its row version
    /// is still `r.row_version`; returns the new row version.
    fn update_rotation_key(&mut self, r: &RotationKeyRecord) -> Result<u64, MetaError>;
    /// Inserts a namespace; returns its id. A taken name is [`MetaError::AlreadyExists`].
    fn insert_namespace(&mut self, n: &NewNamespace) -> Result<u64, MetaError>;
    /// Replaces `master_version` and `wrapped_key` of namespace `n.id` if its row version is
    /// still `n.row_version`; returns the new row version.
    fn update_namespace(&mut self, n: &NamespaceRecord) -> Result<u64, MetaError>;
    /// Deletes a namespace. [`MetaError::InUse`] while it holds buckets.
    fn delete_namespace(&mut self, id: u64) -> Result<(), MetaError>;
    /// Inserts a bucket; returns its id. A taken name is [`MetaError::AlreadyExists`].
    fn insert_bucket(&mut self, b: &NewBucket) -> Result<u64, MetaError>;
    /// Deletes a bucket and every object row of it; returns how many object rows went.
    fn delete_bucket(&mut self, id: u64) -> Result<u64, MetaError>;
    /// Inserts a task in state `Pending` at step 0; returns its id. [`MetaError::InUse`] when
    /// a task of that kind is not completed.
    fn insert_task(&mut self, t: &NewTask) -> Result<u64, MetaError>;
    /// Replaces every field of task `t.id` but `id`, `kind` and `started` if its row version
    /// is still `t.row_version`; returns the new row version.
    fn update_task(&mut self, t: &TaskRecord) -> Result<u64, MetaError>;
    /// Makes `o` the visible object `(o.bucket_id, o.name)`, replacing any previous one, which
    /// is returned (its data file is the caller's to remove after commit). `o.row_version` is
    /// ignored: the new row gets version 1.
    fn put_object(&mut self, o: &ObjectRecord) -> Result<Option<ObjectRecord>, MetaError>;
    /// Removes an object row; returns it.
    fn delete_object(
        &mut self,
        bucket_id: u64,
        name: &str,
    ) -> Result<Option<ObjectRecord>, MetaError>;
    /// Replaces the envelope of object `(bucket_id, name)` if the row still has `object_id`
    /// and `row_version` (no overwrite, delete or other rewrap came in between); bumps its
    /// row version. Returns whether it did.
    fn swap_envelope(
        &mut self,
        bucket_id: u64,
        name: &str,
        object_id: &[u8; 16],
        row_version: u64,
        envelope_kind: u8,
        envelope: &[u8],
    ) -> Result<bool, MetaError>;
    /// Replaces `wrapped_key` and `kms_key_id` of bucket `b.id` if its row version is still
    /// `b.row_version`; returns the new row version. (Encryption itself never changes.)
    fn update_bucket(&mut self, b: &BucketRecord) -> Result<u64, MetaError>;

    // ---- key management service (docs/KMS.md) --------------------------------------------

    /// Inserts a CMK; `row_version` is stored as given. A taken key id or alias is
    /// [`MetaError::AlreadyExists`] (`what` = `"kms key"` or `"kms alias"`).
    fn insert_kms_key(&mut self, k: &KmsKeyRecord) -> Result<(), MetaError>;
    /// Replaces every field of CMK `k.key_id` but `key_id` and `created_ms` if its row version
    /// is still `k.row_version`; returns the new row version. A taken alias is
    /// [`MetaError::AlreadyExists`]; a vanished key [`MetaError::Conflict`].
    fn update_kms_key(&mut self, k: &KmsKeyRecord) -> Result<u64, MetaError>;
    /// Inserts a version (its CMK must exist; the version must be unused). Callers update the
    /// CMK row in the same transaction, which is the optimistic check.
    fn insert_kms_version(&mut self, v: &KmsVersionRecord) -> Result<(), MetaError>;
    /// Replaces `material` and `encryptions` of version `(v.key_id, v.version)`;
    /// [`MetaError::NotFound`] if it does not exist. Callers update the CMK row in the same
    /// transaction.
    fn update_kms_version(&mut self, v: &KmsVersionRecord) -> Result<(), MetaError>;
    /// Deletes every version of a CMK (its material is gone for good); returns how many.
    fn delete_kms_versions(&mut self, key_id: &str) -> Result<u64, MetaError>;
    /// Inserts or replaces the registration `(r.key_id, r.resource)` (its CMK must exist).
    fn put_kms_registration(&mut self, r: &KmsRegistration) -> Result<(), MetaError>;
    /// Deletes a registration; returns whether it existed.
    fn delete_kms_registration(&mut self, key_id: &str, resource: &str) -> Result<bool, MetaError>;
    /// Appends an audit record and moves the head to `(r.seq, r.mac)` — only if the head is
    /// at `r.seq - 1` now, else [`MetaError::Conflict`] (another writer appended first).
    fn append_kms_audit(&mut self, r: &KmsAuditRecord) -> Result<(), MetaError>;

    /// Inserts a site. A taken name or fingerprint is [`MetaError::AlreadyExists`]
    /// (`what` = `"site"` or `"site key pair"`).
    fn insert_site(&mut self, s: &SiteRecord) -> Result<(), MetaError>;
    /// Inserts, or replaces, a key granted to a site (the site must exist).
    fn put_site_key(&mut self, k: &SiteKeyRecord) -> Result<(), MetaError>;
    /// Deletes a site and every key granted to it; returns whether it existed.
    fn delete_site(&mut self, name: &str) -> Result<bool, MetaError>;

    /// Makes every change durable and visible at once.
    fn commit(self: Box<Self>) -> Result<(), MetaError>;
}

/// A metadata database.
pub trait Metadata: Send + Sync + fmt::Debug {
    /// Starts a read transaction.
    fn read(&self) -> Result<Box<dyn ReadTx + '_>, MetaError>;
    /// Starts a write transaction (waiting a bounded time for other writers).
    fn write(&self) -> Result<Box<dyn WriteTx + '_>, MetaError>;
    /// Writes a consistent copy of the whole database to `dest` (a new file, mode 0600)
    /// while the database stays in use.
    fn backup(&self, dest: &Path) -> Result<(), MetaError>;
    /// Where the database is, for messages (`sqlite:/srv/dare/dare.db`).
    fn describe(&self) -> String;
}

/// Runs `f` in a read transaction.
pub fn read_with<T, E: From<MetaError>>(
    m: &dyn Metadata,
    f: impl FnOnce(&mut dyn ReadTx) -> Result<T, E>,
) -> Result<T, E> {
    let mut tx = m.read()?;
    f(&mut *tx)
}

/// How many times [`write_with`] runs a transaction that lost an optimistic check.
pub const WRITE_ATTEMPTS: u32 = 8;

/// Runs `f` in a write transaction and commits it. A transaction that fails with a retryable
/// error ([`MetaError::is_retryable`]) — inside `f` or at commit — is run again from the
/// start, up to [`WRITE_ATTEMPTS`] times; `f` must therefore read what it depends on inside
/// the transaction. `retryable` tells which of `f`'s own errors are retryable.
pub fn write_with<T, E: From<MetaError>>(
    m: &dyn Metadata,
    retryable: impl Fn(&E) -> bool,
    mut f: impl FnMut(&mut dyn WriteTx) -> Result<T, E>,
) -> Result<T, E> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = m.write()?;
        let out = match f(&mut *tx) {
            Ok(v) => v,
            Err(e) if attempt < WRITE_ATTEMPTS && retryable(&e) => continue,
            Err(e) => return Err(e),
        };
        match tx.commit() {
            Ok(()) => return Ok(out),
            Err(e) if attempt < WRITE_ATTEMPTS && e.is_retryable() => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
