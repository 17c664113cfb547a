//! Read and write transactions, each on one pooled connection.
//!
//! [`PgTx`] issues `BEGIN`/`COMMIT`/`ROLLBACK` itself: the client's `Transaction` borrows
//! its connection, which would make a struct holding both self-referential. Statements are
//! prepared once per connection and cached ([`Conn::statement`]), so a hot path (`object`,
//! `put_object`, `swap_envelope`) is one round trip.
//!
//! The store row is the one row that every change to key records updates (its row version
//! is their optimistic check), so writers of it contend. A write transaction whose first
//! statement reads it first takes `LOCK TABLE store IN SHARE ROW EXCLUSIVE MODE` (which
//! conflicts with itself and with UPDATE, not with plain reads), before its snapshot exists —
//! a repeatable-read snapshot is taken by the first query, and LOCK is not one. Such writers
//! queue, as SQLite's writers do, and each reads the row its predecessor committed, instead
//! of failing their update and retrying in step with each other until the retries run out.
//!
//! After a statement fails on the server, PostgreSQL has aborted the whole transaction (it
//! refuses every later statement). [`PgTx`] remembers that: later calls and `commit` return
//! an error (retryable if the first one was) instead of a silent rollback reported as a
//! commit.

use std::time::Duration;

use postgres::Row;
use postgres::types::ToSql;

use super::Pooled;
use super::error::{Doing, ForeignKey, KMS_AUDIT_TAKEN, Phase, connection_lost, map_err};
use super::rows::{
    self, bucket_columns, int, kms_audit_columns, kms_key_columns, kms_key_written_columns,
    kms_registration_columns, kms_version_columns, master_key_columns, namespace_columns,
    object_columns, opt_int, rotation_key_columns, site_columns, site_key_columns, store_columns,
    task_columns,
};
use crate::MetaError;
use crate::kms::{
    KmsAuditHead, KmsAuditRecord, KmsBy, KmsKeyRecord, KmsRegistration, KmsVersionRecord,
};
use crate::records::{
    BucketRecord, MasterKeyRecord, NameBounds, NameRange, NamespaceRecord, NewBucket, NewNamespace,
    NewTask, ObjectRecord, RotationKeyRecord, SiteKeyRecord, SiteRecord, StoreRecord, TaskRecord,
    TaskState, bump,
};
use crate::tx::{By, ReadTx, WriteTx};

/// Parameters of a statement.
type Params<'p> = [&'p (dyn ToSql + Sync)];

/// How a read transaction starts: one snapshot for the whole transaction (taken at its first
/// statement), and no writes.
const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// How a write transaction starts. Repeatable read: one snapshot, and an UPDATE or DELETE of
/// a row that another transaction changed since that snapshot fails with a serialization
/// failure (SQLSTATE 40001, mapped to the retryable [`MetaError::Conflict`]) instead of
/// overwriting it — on top of the row-version check every optimistic update carries.
const BEGIN_WRITE: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ WRITE";

/// A transaction on one pooled connection. Dropped unfinished, it rolls back; if that fails
/// the connection is closed instead of pooled, and the server rolls back on its own.
pub(super) struct PgTx<'a> {
    conn: Pooled<'a>,
    /// The lock timeout, reported by [`MetaError::Busy`].
    waited: Duration,
    write: bool,
    /// Whether a statement has run since BEGIN (the snapshot may exist).
    started: bool,
    finished: bool,
    /// Set when a statement failed on the server: whether that error was retryable.
    aborted: Option<bool>,
}

impl<'a> PgTx<'a> {
    /// Starts a read (`write == false`) or write transaction. A pooled connection that turns
    /// out to be dead (the server restarted, or ended the session) is dropped and the next
    /// one tried; a fresh connection's failure is the answer.
    pub(super) fn begin(home: &'a super::PostgresMetadata, write: bool) -> Result<Self, MetaError> {
        let sql = if write { BEGIN_WRITE } else { BEGIN_READ };
        loop {
            let (mut conn, fresh) = home.take()?;
            match conn.client().batch_execute(sql) {
                Ok(()) => {
                    return Ok(PgTx {
                        conn,
                        waited: home.opts.lock_timeout,
                        write,
                        started: false,
                        finished: false,
                        aborted: None,
                    });
                }
                Err(e) => {
                    let lost = connection_lost(&e);
                    conn.discard_if(lost);
                    if lost && !fresh {
                        continue;
                    }
                    return Err(map_err(
                        &e,
                        home.target.shown(),
                        home.opts.lock_timeout,
                        Doing::NOTHING,
                        Phase::Statement,
                    ));
                }
            }
        }
    }

    /// The error a transaction reports once the server has aborted it.
    fn refuse(&self) -> Result<(), MetaError> {
        match self.aborted {
            None => Ok(()),
            Some(true) => Err(MetaError::Conflict(
                "a row this transaction read or wrote (the transaction was aborted by an \
                 earlier serialization failure)",
            )),
            Some(false) => Err(MetaError::Database(
                "an earlier statement of this transaction failed, and PostgreSQL rolled the \
                 transaction back; start a new one"
                    .into(),
            )),
        }
    }

    /// Maps a failed statement's error, remembering that the transaction is aborted and
    /// whether the connection is still usable.
    fn fail(&mut self, e: &postgres::Error, doing: Doing<'_>) -> MetaError {
        self.conn.discard_if(connection_lost(e));
        let mapped = map_err(
            e,
            self.conn.home.target.shown(),
            self.waited,
            doing,
            Phase::Statement,
        );
        self.aborted = Some(mapped.is_retryable());
        mapped
    }

    /// Runs a query; returns its rows.
    fn rows(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
        doing: Doing<'_>,
    ) -> Result<Vec<Row>, MetaError> {
        self.refuse()?;
        self.started = true;
        let done = self.conn.statement(sql).and_then(|stmt| {
            let client = self.conn.client();
            client.query(&stmt, params)
        });
        done.map_err(|e| self.fail(&e, doing))
    }

    /// The first row of a query, decoded.
    fn one<T>(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
        decode: fn(&Row) -> Result<T, MetaError>,
        doing: Doing<'_>,
    ) -> Result<Option<T>, MetaError> {
        let rows = self.rows(sql, params, doing)?;
        rows.first().map(decode).transpose()
    }

    /// Every row of a query, decoded.
    fn all<T>(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
        decode: fn(&Row) -> Result<T, MetaError>,
    ) -> Result<Vec<T>, MetaError> {
        self.rows(sql, params, Doing::NOTHING)?
            .iter()
            .map(decode)
            .collect()
    }

    /// Runs a statement; returns how many rows it changed.
    fn exec(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
        doing: Doing<'_>,
    ) -> Result<u64, MetaError> {
        self.refuse()?;
        self.started = true;
        let done = self.conn.statement(sql).and_then(|stmt| {
            let client = self.conn.client();
            client.execute(&stmt, params)
        });
        done.map_err(|e| self.fail(&e, doing))
    }

    /// Runs an INSERT ... RETURNING id; returns the id of the new row.
    fn insert(
        &mut self,
        sql: &'static str,
        params: &Params<'_>,
        doing: Doing<'_>,
    ) -> Result<u64, MetaError> {
        self.one(sql, params, rows::id, doing)?
            .ok_or_else(|| MetaError::Database("an INSERT returned no id".into()))
    }

    /// Inserts a row with an id of the caller's (an import), then moves the table's id
    /// sequence past it so that allocated ids continue above imported ones.
    ///
    /// The table is locked against other inserts (SHARE ROW EXCLUSIVE conflicts with the ROW
    /// EXCLUSIVE lock every INSERT takes before it draws an id) until this transaction ends:
    /// no id can be drawn between reading the sequence and setting it, so the sequence only
    /// moves forward and no id is handed out twice. Imports are rare (a store being migrated
    /// in), so blocking inserts meanwhile costs nothing.
    fn insert_imported(
        &mut self,
        lock: &'static str,
        insert: &'static str,
        bump: &'static str,
        params: &Params<'_>,
        id: i64,
        doing: Doing<'_>,
    ) -> Result<u64, MetaError> {
        self.exec(lock, &[], Doing::NOTHING)?;
        let got = self.insert(insert, params, doing)?;
        self.exec(bump, &[&id], Doing::NOTHING)?;
        Ok(got)
    }
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Ends a read transaction too (it changed nothing). If this fails the connection is
        // broken; it is closed instead of pooled, and the server rolls back.
        let ended = self.conn.client().batch_execute("ROLLBACK");
        self.conn.discard_if(ended.is_err());
    }
}

/// The next version of a row after `v`.
/// Statements that move a table's id sequence past an imported id: to the larger of the id
/// and the sequence's last value (NULL before its first use).
macro_rules! bump_sequence {
    ($table:literal) => {
        concat!(
            "SELECT setval(pg_get_serial_sequence('",
            $table,
            "', 'id')::regclass, greatest($1::bigint, coalesce(pg_sequence_last_value(",
            "pg_get_serial_sequence('",
            $table,
            "', 'id')::regclass), 0)))"
        )
    };
}

impl ReadTx for PgTx<'_> {
    fn store(&mut self) -> Result<Option<StoreRecord>, MetaError> {
        const SQL: &str = concat!("SELECT ", store_columns!(), " FROM store WHERE id = 1");
        const LOCK: &str = "LOCK TABLE store IN SHARE ROW EXCLUSIVE MODE";
        if self.write && !self.started {
            // Queue behind other writers of the store row before the snapshot is taken
            // (module documentation).
            self.exec(LOCK, &[], Doing::NOTHING)?;
        }
        self.one(SQL, &[], rows::store, Doing::NOTHING)
    }

    fn master_keys(&mut self) -> Result<Vec<MasterKeyRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            master_key_columns!(),
            " FROM master_keys ORDER BY version"
        );
        self.all(SQL, &[], rows::master_key)
    }

    fn rotation_keys(&mut self) -> Result<Vec<RotationKeyRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            rotation_key_columns!(),
            " FROM rotation_keys ORDER BY version"
        );
        self.all(SQL, &[], rows::rotation_key)
    }

    fn namespace(&mut self, by: By<'_>) -> Result<Option<NamespaceRecord>, MetaError> {
        const BY_ID: &str = concat!(
            "SELECT ",
            namespace_columns!(),
            " FROM namespaces WHERE id = $1"
        );
        const BY_NAME: &str = concat!(
            "SELECT ",
            namespace_columns!(),
            " FROM namespaces WHERE name = $1"
        );
        match by {
            // An id above i64::MAX names no row.
            By::Id(id) => match i64::try_from(id) {
                Ok(id) => self.one(BY_ID, &[&id], rows::namespace, Doing::NOTHING),
                Err(_) => Ok(None),
            },
            By::Name(name) => self.one(BY_NAME, &[&name], rows::namespace, Doing::NOTHING),
        }
    }

    fn namespaces(&mut self) -> Result<Vec<NamespaceRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            namespace_columns!(),
            " FROM namespaces ORDER BY id"
        );
        self.all(SQL, &[], rows::namespace)
    }

    fn bucket(&mut self, by: By<'_>) -> Result<Option<BucketRecord>, MetaError> {
        const BY_ID: &str = concat!("SELECT ", bucket_columns!(), " FROM buckets WHERE id = $1");
        const BY_NAME: &str = concat!(
            "SELECT ",
            bucket_columns!(),
            " FROM buckets WHERE name = $1"
        );
        match by {
            By::Id(id) => match i64::try_from(id) {
                Ok(id) => self.one(BY_ID, &[&id], rows::bucket, Doing::NOTHING),
                Err(_) => Ok(None),
            },
            By::Name(name) => self.one(BY_NAME, &[&name], rows::bucket, Doing::NOTHING),
        }
    }

    fn buckets(&mut self, namespace_id: Option<u64>) -> Result<Vec<BucketRecord>, MetaError> {
        const ALL: &str = concat!("SELECT ", bucket_columns!(), " FROM buckets ORDER BY id");
        const OF: &str = concat!(
            "SELECT ",
            bucket_columns!(),
            " FROM buckets WHERE namespace_id = $1 ORDER BY id"
        );
        match namespace_id.map(i64::try_from) {
            None => self.all(ALL, &[], rows::bucket),
            Some(Ok(ns)) => self.all(OF, &[&ns], rows::bucket),
            Some(Err(_)) => Ok(Vec::new()),
        }
    }

    fn task(&mut self, id: u64) -> Result<Option<TaskRecord>, MetaError> {
        const SQL: &str = concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = $1");
        match i64::try_from(id) {
            Ok(id) => self.one(SQL, &[&id], rows::task, Doing::NOTHING),
            Err(_) => Ok(None),
        }
    }

    fn tasks(&mut self) -> Result<Vec<TaskRecord>, MetaError> {
        const SQL: &str = concat!("SELECT ", task_columns!(), " FROM tasks ORDER BY id");
        self.all(SQL, &[], rows::task)
    }

    fn object(&mut self, bucket_id: u64, name: &str) -> Result<Option<ObjectRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            object_columns!(),
            " FROM objects WHERE bucket_id = $1 AND name = $2"
        );
        let Ok(bucket_id) = i64::try_from(bucket_id) else {
            return Ok(None);
        };
        let name = name.as_bytes();
        self.one(SQL, &[&bucket_id, &name], rows::object, Doing::NOTHING)
    }

    fn objects(
        &mut self,
        bucket_id: u64,
        range: NameRange<'_>,
        limit: usize,
    ) -> Result<Vec<ObjectRecord>, MetaError> {
        // Every variant is a range scan of the primary key (bucket_id, name), in its order.
        const FROM: &str = concat!(
            "SELECT ",
            object_columns!(),
            " FROM objects WHERE bucket_id = $1 AND name >= $2 ORDER BY name LIMIT $3"
        );
        const FROM_TO: &str = concat!(
            "SELECT ",
            object_columns!(),
            " FROM objects WHERE bucket_id = $1 AND name >= $2 AND name < $3",
            " ORDER BY name LIMIT $4"
        );
        const AFTER: &str = concat!(
            "SELECT ",
            object_columns!(),
            " FROM objects WHERE bucket_id = $1 AND name > $2 ORDER BY name LIMIT $3"
        );
        const AFTER_TO: &str = concat!(
            "SELECT ",
            object_columns!(),
            " FROM objects WHERE bucket_id = $1 AND name > $2 AND name < $3",
            " ORDER BY name LIMIT $4"
        );
        let Ok(bucket_id) = i64::try_from(bucket_id) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let NameBounds {
            lower,
            exclusive,
            end,
        } = range.bounds();
        let sql = match (exclusive, end.is_some()) {
            (false, false) => FROM,
            (false, true) => FROM_TO,
            (true, false) => AFTER,
            (true, true) => AFTER_TO,
        };
        match &end {
            None => self.all(sql, &[&bucket_id, &lower, &limit], rows::object),
            Some(end) => {
                let end = end.as_slice();
                self.all(sql, &[&bucket_id, &lower, &end, &limit], rows::object)
            }
        }
    }

    fn object_count(&mut self, bucket_id: u64) -> Result<u64, MetaError> {
        const SQL: &str = "SELECT count(*) FROM objects WHERE bucket_id = $1";
        let Ok(bucket_id) = i64::try_from(bucket_id) else {
            return Ok(0);
        };
        self.one(SQL, &[&bucket_id], rows::count, Doing::NOTHING)?
            .ok_or_else(|| MetaError::Database("count(*) returned no row".into()))
    }

    fn kms_key(&mut self, by: KmsBy<'_>) -> Result<Option<KmsKeyRecord>, MetaError> {
        const BY_ID: &str = concat!(
            "SELECT ",
            kms_key_columns!(),
            " FROM kms_keys WHERE key_id = $1"
        );
        const BY_ALIAS: &str = concat!(
            "SELECT ",
            kms_key_columns!(),
            " FROM kms_keys WHERE alias = $1"
        );
        match by {
            KmsBy::Id(id) => self.one(BY_ID, &[&id], rows::kms_key, Doing::NOTHING),
            KmsBy::Alias(alias) => self.one(BY_ALIAS, &[&alias], rows::kms_key, Doing::NOTHING),
        }
    }

    fn kms_keys(&mut self) -> Result<Vec<KmsKeyRecord>, MetaError> {
        // key_id is COLLATE "C": ties on the creation time are broken by its bytes.
        const SQL: &str = concat!(
            "SELECT ",
            kms_key_columns!(),
            " FROM kms_keys ORDER BY created_ms, key_id"
        );
        self.all(SQL, &[], rows::kms_key)
    }

    fn kms_versions(&mut self, key_id: &str) -> Result<Vec<KmsVersionRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            kms_version_columns!(),
            " FROM kms_versions WHERE key_id = $1 ORDER BY version"
        );
        self.all(SQL, &[&key_id], rows::kms_version)
    }

    fn kms_registrations(&mut self, key_id: &str) -> Result<Vec<KmsRegistration>, MetaError> {
        // resource is COLLATE "C": ordered by the bytes of the UTF-8.
        const SQL: &str = concat!(
            "SELECT ",
            kms_registration_columns!(),
            " FROM kms_registrations WHERE key_id = $1 ORDER BY resource"
        );
        self.all(SQL, &[&key_id], rows::kms_registration)
    }

    fn kms_audit(
        &mut self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<KmsAuditRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            kms_audit_columns!(),
            " FROM kms_audit WHERE seq > $1 ORDER BY seq LIMIT $2"
        );
        // No record has a seq above i64::MAX.
        let Ok(after_seq) = i64::try_from(after_seq) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.all(SQL, &[&after_seq, &limit], rows::kms_audit)
    }

    fn kms_audit_head(&mut self) -> Result<KmsAuditHead, MetaError> {
        const SQL: &str = "SELECT seq, mac FROM kms_audit_head WHERE id = 1";
        const LOCK: &str = "LOCK TABLE kms_audit_head IN SHARE ROW EXCLUSIVE MODE";
        if self.write && !self.started {
            // As for the store row: appenders that start by reading the head queue behind
            // each other before their snapshot is taken, instead of conflicting.
            self.exec(LOCK, &[], Doing::NOTHING)?;
        }
        Ok(self
            .one(SQL, &[], rows::kms_audit_head, Doing::NOTHING)?
            .unwrap_or(KmsAuditHead {
                seq: 0,
                mac: Vec::new(),
            }))
    }

    fn sites(&mut self) -> Result<Vec<SiteRecord>, MetaError> {
        const SQL: &str = concat!("SELECT ", site_columns!(), " FROM sites ORDER BY name");
        self.all(SQL, &[], rows::site)
    }

    fn site_keys(&mut self, fingerprint: &[u8; 32]) -> Result<Vec<SiteKeyRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            site_key_columns!(),
            " FROM site_keys WHERE fingerprint = $1 ORDER BY blob_hash"
        );
        self.all(SQL, &[&&fingerprint[..]], rows::site_key)
    }
}

/// A CMK's values for the statements that write it: parameters 1..=22, the columns of
/// [`kms_key_written_columns`] in that order (every column but `created_ms` and
/// `row_version`), checked and converted once for the insert and the update.
struct KmsKeyValues<'k> {
    k: &'k KmsKeyRecord,
    state: &'static str,
    origin: &'static str,
    rotation_days: i64,
    last_rotation_ms: i64,
    rotations: i64,
    last_manual_rotation_ms: Option<i64>,
    deletion_due_ms: Option<i64>,
    state_before: Option<&'static str>,
    material_expires_ms: Option<i64>,
    min_decryption_version: i64,
    import_token_id: Option<&'k [u8]>,
    import_algorithm: Option<&'k str>,
    import_private_key: Option<&'k [u8]>,
    import_public_key: Option<&'k [u8]>,
    import_expires_ms: Option<i64>,
    deleted_ms: Option<i64>,
}

impl<'k> KmsKeyValues<'k> {
    fn new(k: &'k KmsKeyRecord) -> Result<Self, MetaError> {
        let import = k.import.as_ref();
        Ok(KmsKeyValues {
            k,
            state: k.state.as_str(),
            origin: k.origin.as_str(),
            rotation_days: i64::from(k.rotation_days),
            last_rotation_ms: int(k.last_rotation_ms, "kms key last rotation time")?,
            rotations: i64::from(k.rotations),
            last_manual_rotation_ms: opt_int(
                k.last_manual_rotation_ms,
                "kms key last manual rotation time",
            )?,
            deletion_due_ms: opt_int(k.deletion_due_ms, "kms key deletion time")?,
            state_before: k.state_before.map(|s| s.as_str()),
            material_expires_ms: opt_int(k.material_expires_ms, "kms key material expiry")?,
            min_decryption_version: i64::from(k.min_decryption_version),
            import_token_id: import.map(|i| &i.token_id[..]),
            import_algorithm: import.map(|i| i.algorithm.as_str()),
            import_private_key: import.map(|i| &i.sealed_private_key[..]),
            import_public_key: import.map(|i| &i.public_key[..]),
            import_expires_ms: opt_int(
                import.map(|i| i.expires_ms),
                "kms key import parameters expiry",
            )?,
            deleted_ms: opt_int(k.deleted_ms, "kms key deletion time")?,
        })
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 22] {
        let k = self.k;
        [
            &k.key_id,
            &k.alias,
            &k.description,
            &self.state,
            &self.origin,
            &k.default_key,
            &k.rotation_enabled,
            &self.rotation_days,
            &self.last_rotation_ms,
            &self.rotations,
            &self.last_manual_rotation_ms,
            &self.deletion_due_ms,
            &self.state_before,
            &self.material_expires_ms,
            &k.material_fingerprint,
            &self.min_decryption_version,
            &self.import_token_id,
            &self.import_algorithm,
            &self.import_private_key,
            &self.import_public_key,
            &self.import_expires_ms,
            &self.deleted_ms,
        ]
    }

    /// What a failed statement names: the key id, and the alias if a unique alias failed.
    fn doing(&self) -> Doing<'k> {
        Doing {
            name: &self.k.key_id,
            alias: self.k.alias.as_deref().unwrap_or(""),
            ..Doing::NOTHING
        }
    }
}

impl WriteTx for PgTx<'_> {
    fn insert_store(&mut self, s: &StoreRecord) -> Result<(), MetaError> {
        const SQL: &str = concat!(
            "INSERT INTO store (id, ",
            store_columns!(),
            ") VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        self.exec(
            SQL,
            &[
                &&s.store_id[..],
                &i16::from(s.chunk_shift),
                &s.root_of_trust,
                &s.rt_data_key,
                &i64::from(s.active_master),
                &i64::from(s.active_rotation),
                &int(s.key_epoch, "key epoch")?,
                &int(s.created, "store creation time")?,
                &int(s.row_version, "store row version")?,
            ],
            Doing::NOTHING,
        )?;
        Ok(())
    }

    fn update_store(&mut self, s: &StoreRecord) -> Result<u64, MetaError> {
        const SQL: &str = "UPDATE store SET chunk_shift = $1, root_of_trust = $2, \
             rt_data_key = $3, active_master = $4, active_rotation = $5, key_epoch = $6, \
             row_version = $7 WHERE id = 1 AND row_version = $8";
        let next = bump(s.row_version)?;
        let changed = self.exec(
            SQL,
            &[
                &i16::from(s.chunk_shift),
                &s.root_of_trust,
                &s.rt_data_key,
                &i64::from(s.active_master),
                &i64::from(s.active_rotation),
                &int(s.key_epoch, "key epoch")?,
                &int(next, "store row version")?,
                &int(s.row_version, "store row version")?,
            ],
            Doing::NOTHING,
        )?;
        if changed == 0 {
            return Err(MetaError::Conflict("store row"));
        }
        Ok(next)
    }

    fn insert_master_key(&mut self, m: &MasterKeyRecord) -> Result<(), MetaError> {
        const SQL: &str = concat!(
            "INSERT INTO master_keys (",
            master_key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        );
        let doing = Doing {
            id: Some(u64::from(m.version)),
            ..Doing::NOTHING
        };
        self.exec(
            SQL,
            &[
                &i64::from(m.version),
                &m.state.as_str(),
                &m.wrapped,
                &int(m.created, "master key creation time")?,
                &opt_int(m.retired, "master key retirement time")?,
                &m.root.root_of_trust,
                &m.root.management,
                &m.root.key_id,
                &m.root.rt_wrapped,
                &opt_int(m.root.deactivated, "master key deactivation time")?,
                &m.root.deactivation,
            ],
            doing,
        )?;
        Ok(())
    }

    fn update_master_key(&mut self, m: &MasterKeyRecord) -> Result<(), MetaError> {
        const SQL: &str = "UPDATE master_keys SET state = $1, wrapped = $2, retired = $3, \
             root_of_trust = $5, management = $6, key_id = $7, rt_wrapped = $8, \
             deactivated = $9, deactivation = $10 WHERE version = $4";
        let changed = self.exec(
            SQL,
            &[
                &m.state.as_str(),
                &m.wrapped,
                &opt_int(m.retired, "master key retirement time")?,
                &i64::from(m.version),
                &m.root.root_of_trust,
                &m.root.management,
                &m.root.key_id,
                &m.root.rt_wrapped,
                &opt_int(m.root.deactivated, "master key deactivation time")?,
                &m.root.deactivation,
            ],
            Doing::NOTHING,
        )?;
        if changed == 0 {
            return Err(MetaError::NotFound {
                what: "master key",
                name: m.version.to_string(),
            });
        }
        Ok(())
    }

    fn insert_rotation_key(&mut self, r: &RotationKeyRecord) -> Result<(), MetaError> {
        const SQL: &str = concat!(
            "INSERT INTO rotation_keys (",
            rotation_key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5)"
        );
        let doing = Doing {
            id: Some(u64::from(r.version)),
            foreign_key: ForeignKey::MissingParent {
                what: "master key",
                id: u64::from(r.master_version),
            },
            ..Doing::NOTHING
        };
        self.exec(
            SQL,
            &[
                &i64::from(r.version),
                &i64::from(r.master_version),
                &r.wrapped,
                &int(r.created, "rotation key creation time")?,
                &int(r.row_version, "rotation key row version")?,
            ],
            doing,
        )?;
        Ok(())
    }

    fn update_rotation_key(&mut self, r: &RotationKeyRecord) -> Result<u64, MetaError> {
        const SQL: &str = "UPDATE rotation_keys SET master_version = $1, wrapped = $2, \
             row_version = $3 WHERE version = $4 AND row_version = $5";
        let next = bump(r.row_version)?;
        let doing = Doing {
            foreign_key: ForeignKey::MissingParent {
                what: "master key",
                id: u64::from(r.master_version),
            },
            ..Doing::NOTHING
        };
        let changed = self.exec(
            SQL,
            &[
                &i64::from(r.master_version),
                &r.wrapped,
                &int(next, "rotation key row version")?,
                &i64::from(r.version),
                &int(r.row_version, "rotation key row version")?,
            ],
            doing,
        )?;
        if changed == 0 {
            return Err(MetaError::Conflict("rotation key"));
        }
        Ok(next)
    }

    fn insert_namespace(&mut self, n: &NewNamespace) -> Result<u64, MetaError> {
        const NEW: &str = "INSERT INTO namespaces (name, encryption, master_version, \
             wrapped_key, created, row_version) VALUES ($1, $2, $3, $4, $5, 1) RETURNING id";
        const IMPORTED: &str = "INSERT INTO namespaces (name, encryption, master_version, \
             wrapped_key, created, row_version, id) VALUES ($1, $2, $3, $4, $5, 1, $6) \
             RETURNING id";
        const LOCK: &str = "LOCK TABLE namespaces IN SHARE ROW EXCLUSIVE MODE";
        const BUMP: &str = bump_sequence!("namespaces");
        let doing = Doing {
            name: &n.name,
            id: n.id,
            foreign_key: ForeignKey::MissingParent {
                what: "master key",
                id: u64::from(n.master_version),
            },
            ..Doing::NOTHING
        };
        let master_version = i64::from(n.master_version);
        let created = int(n.created, "namespace creation time")?;
        let p: [&(dyn ToSql + Sync); 5] = [
            &n.name,
            &n.encryption,
            &master_version,
            &n.wrapped_key,
            &created,
        ];
        match opt_int(n.id, "namespace id")? {
            None => self.insert(NEW, &p, doing),
            Some(id) => {
                let [a, b, c, d, e] = p;
                self.insert_imported(LOCK, IMPORTED, BUMP, &[a, b, c, d, e, &id], id, doing)
            }
        }
    }

    fn update_namespace(&mut self, n: &NamespaceRecord) -> Result<u64, MetaError> {
        const SQL: &str = "UPDATE namespaces SET master_version = $1, wrapped_key = $2, \
             row_version = $3 WHERE id = $4 AND row_version = $5";
        let next = bump(n.row_version)?;
        let doing = Doing {
            foreign_key: ForeignKey::MissingParent {
                what: "master key",
                id: u64::from(n.master_version),
            },
            ..Doing::NOTHING
        };
        let changed = self.exec(
            SQL,
            &[
                &i64::from(n.master_version),
                &n.wrapped_key,
                &int(next, "namespace row version")?,
                &int(n.id, "namespace id")?,
                &int(n.row_version, "namespace row version")?,
            ],
            doing,
        )?;
        if changed == 0 {
            return Err(MetaError::Conflict("namespace"));
        }
        Ok(next)
    }

    fn delete_namespace(&mut self, id: u64) -> Result<(), MetaError> {
        let doing = Doing {
            foreign_key: ForeignKey::HasChildren("namespace still holds buckets"),
            ..Doing::NOTHING
        };
        let changed = self.exec(
            "DELETE FROM namespaces WHERE id = $1",
            &[&int(id, "namespace id")?],
            doing,
        )?;
        if changed == 0 {
            return Err(MetaError::NotFound {
                what: "namespace",
                name: id.to_string(),
            });
        }
        Ok(())
    }

    fn insert_bucket(&mut self, b: &NewBucket) -> Result<u64, MetaError> {
        const NEW: &str = "INSERT INTO buckets (name, namespace_id, encryption, wrapped_key, \
             kms_key_id, created, row_version) VALUES ($1, $2, $3, $4, $5, $6, 1) RETURNING id";
        const IMPORTED: &str = "INSERT INTO buckets (name, namespace_id, encryption, \
             wrapped_key, kms_key_id, created, row_version, id) \
             VALUES ($1, $2, $3, $4, $5, $6, 1, $7) RETURNING id";
        const LOCK: &str = "LOCK TABLE buckets IN SHARE ROW EXCLUSIVE MODE";
        const BUMP: &str = bump_sequence!("buckets");
        let doing = Doing {
            name: &b.name,
            id: b.id,
            foreign_key: ForeignKey::MissingParent {
                what: "namespace",
                id: b.namespace_id,
            },
            ..Doing::NOTHING
        };
        let namespace_id = int(b.namespace_id, "namespace id")?;
        let created = int(b.created, "bucket creation time")?;
        let p: [&(dyn ToSql + Sync); 6] = [
            &b.name,
            &namespace_id,
            &b.encryption,
            &b.wrapped_key,
            &b.kms_key_id,
            &created,
        ];
        match opt_int(b.id, "bucket id")? {
            None => self.insert(NEW, &p, doing),
            Some(id) => {
                let [a, b, c, d, e, f] = p;
                self.insert_imported(LOCK, IMPORTED, BUMP, &[a, b, c, d, e, f, &id], id, doing)
            }
        }
    }

    fn delete_bucket(&mut self, id: u64) -> Result<u64, MetaError> {
        let sql_id = int(id, "bucket id")?;
        let objects = self.exec(
            "DELETE FROM objects WHERE bucket_id = $1",
            &[&sql_id],
            Doing::NOTHING,
        )?;
        // An object inserted by a transaction that committed after this one's snapshot still
        // names the bucket: a conflict, and a retry deletes it too.
        let doing = Doing {
            foreign_key: ForeignKey::Concurrent("bucket (an object was put into it meanwhile)"),
            ..Doing::NOTHING
        };
        let changed = self.exec("DELETE FROM buckets WHERE id = $1", &[&sql_id], doing)?;
        if changed == 0 {
            return Err(MetaError::NotFound {
                what: "bucket",
                name: id.to_string(),
            });
        }
        Ok(objects)
    }

    fn insert_task(&mut self, t: &NewTask) -> Result<u64, MetaError> {
        const NEW: &str = concat!(
            "INSERT INTO tasks (",
            task_columns!(),
            ") VALUES (DEFAULT, $1, $2, 0, $3, NULL, NULL, NULL, $4, NULL, NULL, 0, 1, NULL, NULL, 0, \
             $5, NULL) ",
            "RETURNING id"
        );
        const IMPORTED: &str = concat!(
            "INSERT INTO tasks (",
            task_columns!(),
            ") VALUES ($6, $1, $2, 0, $3, NULL, NULL, NULL, $4, NULL, NULL, 0, 1, NULL, NULL, 0, \
             $5, NULL) ",
            "RETURNING id"
        );
        const LOCK: &str = "LOCK TABLE tasks IN SHARE ROW EXCLUSIVE MODE";
        const BUMP: &str = bump_sequence!("tasks");
        let doing = Doing {
            id: t.id,
            ..Doing::NOTHING
        };
        let kind = t.kind.as_str();
        let state = TaskState::Pending.as_str();
        let started = int(t.started, "task start time")?;
        let previous_master = i64::from(t.previous_master);
        let target = &t.target_root;
        let p: [&(dyn ToSql + Sync); 5] = [&kind, &state, &started, &previous_master, target];
        match opt_int(t.id, "task id")? {
            None => self.insert(NEW, &p, doing),
            Some(id) => {
                let [a, b, c, d, e] = p;
                self.insert_imported(LOCK, IMPORTED, BUMP, &[a, b, c, d, e, &id], id, doing)
            }
        }
    }

    fn update_task(&mut self, t: &TaskRecord) -> Result<u64, MetaError> {
        const SQL: &str = "UPDATE tasks SET state = $1, step = $2, ended = $3, outcome = $4, \
             error = $5, previous_master = $6, new_master = $7, new_rotation = $8, \
             master_attempts = $9, row_version = $10, lease_owner = $13, lease_expires = $14, \
             lease_token = $15, target_root = $16, updated = $17 WHERE id = $11 AND row_version = $12";
        let next = bump(t.row_version)?;
        let changed = self.exec(
            SQL,
            &[
                &t.state.as_str(),
                &i16::from(t.step),
                &opt_int(t.ended, "task end time")?,
                &t.outcome,
                &t.error,
                &i64::from(t.previous_master),
                &t.new_master.map(i64::from),
                &t.new_rotation.map(i64::from),
                &i64::from(t.master_attempts),
                &int(next, "task row version")?,
                &int(t.id, "task id")?,
                &int(t.row_version, "task row version")?,
                &t.lease_owner,
                &opt_int(t.lease_expires, "task lease expiry")?,
                &int(t.lease_token, "task lease token")?,
                &t.target_root,
                &opt_int(t.updated, "task update time")?,
            ],
            Doing::NOTHING,
        )?;
        if changed == 0 {
            return Err(MetaError::Conflict("task"));
        }
        Ok(next)
    }

    fn put_object(&mut self, o: &ObjectRecord) -> Result<Option<ObjectRecord>, MetaError> {
        // One round trip: every part of a statement sees the same snapshot, so `old` is the
        // row as it was before the upsert, which updates it in place.
        const SQL: &str = concat!(
            "WITH old AS (SELECT ",
            object_columns!(),
            " FROM objects WHERE bucket_id = $1 AND name = $2), ",
            "up AS (INSERT INTO objects (",
            object_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1) ",
            "ON CONFLICT (bucket_id, name) DO UPDATE SET object_id = excluded.object_id, ",
            "size = excluded.size, created_ms = excluded.created_ms, etag = excluded.etag, ",
            "format = excluded.format, suite = excluded.suite, ",
            "chunk_shift = excluded.chunk_shift, nonce_prefix = excluded.nonce_prefix, ",
            "envelope_kind = excluded.envelope_kind, envelope = excluded.envelope, ",
            "meta = excluded.meta, row_version = 1) ",
            "SELECT ",
            object_columns!(),
            " FROM old"
        );
        let bucket_id = int(o.bucket_id, "bucket id")?;
        let doing = Doing {
            foreign_key: ForeignKey::MissingParent {
                what: "bucket",
                id: o.bucket_id,
            },
            ..Doing::NOTHING
        };
        self.one(
            SQL,
            &[
                &bucket_id,
                &o.name.as_bytes(),
                &&o.object_id[..],
                &int(o.size, "object size")?,
                &int(o.created_ms, "object creation time")?,
                &o.etag,
                &i16::from(o.format),
                &i16::from(o.suite),
                &i16::from(o.chunk_shift),
                &&o.nonce_prefix[..],
                &o.envelope_kind.map(i16::from),
                &o.envelope,
                &o.meta,
            ],
            rows::object,
            doing,
        )
    }

    fn delete_object(
        &mut self,
        bucket_id: u64,
        name: &str,
    ) -> Result<Option<ObjectRecord>, MetaError> {
        const SQL: &str = concat!(
            "DELETE FROM objects WHERE bucket_id = $1 AND name = $2 RETURNING ",
            object_columns!()
        );
        let Ok(bucket_id) = i64::try_from(bucket_id) else {
            return Ok(None);
        };
        let name = name.as_bytes();
        self.one(SQL, &[&bucket_id, &name], rows::object, Doing::NOTHING)
    }

    fn swap_envelope(
        &mut self,
        bucket_id: u64,
        name: &str,
        object_id: &[u8; 16],
        row_version: u64,
        envelope_kind: u8,
        envelope: &[u8],
    ) -> Result<bool, MetaError> {
        const SQL: &str = "UPDATE objects SET envelope_kind = $1, envelope = $2, \
             row_version = row_version + 1 \
             WHERE bucket_id = $3 AND name = $4 AND object_id = $5 AND row_version = $6";
        let (Ok(bucket_id), Ok(row_version)) =
            (i64::try_from(bucket_id), i64::try_from(row_version))
        else {
            return Ok(false);
        };
        let changed = self.exec(
            SQL,
            &[
                &i16::from(envelope_kind),
                &envelope,
                &bucket_id,
                &name.as_bytes(),
                &&object_id[..],
                &row_version,
            ],
            Doing::NOTHING,
        )?;
        Ok(changed == 1)
    }

    fn update_bucket(&mut self, b: &BucketRecord) -> Result<u64, MetaError> {
        const SQL: &str = "UPDATE buckets SET wrapped_key = $1, kms_key_id = $2, \
             row_version = $3 WHERE id = $4 AND row_version = $5";
        let next = bump(b.row_version)?;
        let changed = self.exec(
            SQL,
            &[
                &b.wrapped_key,
                &b.kms_key_id,
                &int(next, "bucket row version")?,
                &int(b.id, "bucket id")?,
                &int(b.row_version, "bucket row version")?,
            ],
            Doing::NOTHING,
        )?;
        if changed == 0 {
            return Err(MetaError::Conflict("bucket"));
        }
        Ok(next)
    }

    fn insert_kms_key(&mut self, k: &KmsKeyRecord) -> Result<(), MetaError> {
        const SQL: &str = concat!(
            "INSERT INTO kms_keys (",
            kms_key_written_columns!(),
            ", created_ms, row_version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, ",
            "$12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)"
        );
        let values = KmsKeyValues::new(k)?;
        let created_ms = int(k.created_ms, "kms key creation time")?;
        let row_version = int(k.row_version, "kms key row version")?;
        let mut p = values.params().to_vec();
        p.extend([&created_ms as &(dyn ToSql + Sync), &row_version]);
        self.exec(SQL, &p, values.doing())?;
        Ok(())
    }

    fn update_kms_key(&mut self, k: &KmsKeyRecord) -> Result<u64, MetaError> {
        const SQL: &str = "UPDATE kms_keys SET alias = $2, description = $3, state = $4, \
             origin = $5, default_key = $6, rotation_enabled = $7, rotation_days = $8, \
             last_rotation_ms = $9, rotations = $10, last_manual_rotation_ms = $11, \
             deletion_due_ms = $12, state_before = $13, material_expires_ms = $14, \
             material_fingerprint = $15, min_decryption_version = $16, import_token_id = $17, \
             import_algorithm = $18, import_private_key = $19, import_public_key = $20, \
             import_expires_ms = $21, deleted_ms = $22, row_version = $23 \
             WHERE key_id = $1 AND row_version = $24";
        let values = KmsKeyValues::new(k)?;
        let next = bump(k.row_version)?;
        let sql_next = int(next, "kms key row version")?;
        let row_version = int(k.row_version, "kms key row version")?;
        let mut p = values.params().to_vec();
        p.extend([&sql_next as &(dyn ToSql + Sync), &row_version]);
        let changed = self.exec(SQL, &p, values.doing())?;
        if changed == 0 {
            return Err(MetaError::Conflict("kms key"));
        }
        Ok(next)
    }

    fn insert_kms_version(&mut self, v: &KmsVersionRecord) -> Result<(), MetaError> {
        const SQL: &str = concat!(
            "INSERT INTO kms_versions (",
            kms_version_columns!(),
            ") VALUES ($1, $2, $3, $4, $5)"
        );
        let doing = Doing {
            name: &v.key_id,
            id: Some(u64::from(v.version)),
            foreign_key: ForeignKey::MissingNamed { what: "kms key" },
            ..Doing::NOTHING
        };
        self.exec(
            SQL,
            &[
                &v.key_id,
                &i64::from(v.version),
                &v.material,
                &int(v.created_ms, "kms key version creation time")?,
                &int(v.encryptions, "kms key version encryptions")?,
            ],
            doing,
        )?;
        Ok(())
    }

    fn update_kms_version(&mut self, v: &KmsVersionRecord) -> Result<(), MetaError> {
        const SQL: &str = "UPDATE kms_versions SET material = $1, encryptions = $2 \
             WHERE key_id = $3 AND version = $4";
        let changed = self.exec(
            SQL,
            &[
                &v.material,
                &int(v.encryptions, "kms key version encryptions")?,
                &v.key_id,
                &i64::from(v.version),
            ],
            Doing::NOTHING,
        )?;
        if changed == 0 {
            return Err(MetaError::NotFound {
                what: "kms key version",
                name: format!("{} version {}", v.key_id, v.version),
            });
        }
        Ok(())
    }

    fn delete_kms_versions(&mut self, key_id: &str) -> Result<u64, MetaError> {
        // PostgreSQL never overwrites a row in place: the UPDATE writes new row versions
        // without the material and the DELETE marks those dead, but the old row versions,
        // material included, stay in the table's pages until VACUUM reclaims them (and in the
        // WAL and its archives until they are recycled). The UPDATE is no stronger than the
        // DELETE; it keeps both backends' steps alike. METADATA.md §7.7 and §9 state the
        // limitation (run `VACUUM kms_versions` after deleting material).
        const CLEAR: &str =
            "UPDATE kms_versions SET material = NULL WHERE key_id = $1 AND material IS NOT NULL";
        const DELETE: &str = "DELETE FROM kms_versions WHERE key_id = $1";
        self.exec(CLEAR, &[&key_id], Doing::NOTHING)?;
        self.exec(DELETE, &[&key_id], Doing::NOTHING)
    }

    fn put_kms_registration(&mut self, r: &KmsRegistration) -> Result<(), MetaError> {
        const SQL: &str = concat!(
            "INSERT INTO kms_registrations (",
            kms_registration_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6) ",
            "ON CONFLICT (key_id, resource) DO UPDATE SET version = excluded.version, ",
            "description = excluded.description, created_ms = excluded.created_ms, ",
            "updated_ms = excluded.updated_ms"
        );
        let doing = Doing {
            name: &r.key_id,
            foreign_key: ForeignKey::MissingNamed { what: "kms key" },
            ..Doing::NOTHING
        };
        self.exec(
            SQL,
            &[
                &r.key_id,
                &r.resource,
                &i64::from(r.version),
                &r.description,
                &int(r.created_ms, "kms registration time")?,
                &int(r.updated_ms, "kms registration change time")?,
            ],
            doing,
        )?;
        Ok(())
    }

    fn delete_kms_registration(&mut self, key_id: &str, resource: &str) -> Result<bool, MetaError> {
        const SQL: &str = "DELETE FROM kms_registrations WHERE key_id = $1 AND resource = $2";
        Ok(self.exec(SQL, &[&key_id, &resource], Doing::NOTHING)? == 1)
    }

    fn append_kms_audit(&mut self, r: &KmsAuditRecord) -> Result<(), MetaError> {
        // The head moves first, and only from `r.seq - 1`: a stale appender changes nothing.
        // Two appenders that read the same head: the second one's UPDATE waits for the first
        // to commit, then fails with a serialization failure (the row changed after its
        // snapshot); for the first record, its INSERT ... ON CONFLICT does (a conflicting
        // row its snapshot cannot see). Both are Conflict, retryable.
        const FIRST: &str = "INSERT INTO kms_audit_head (id, seq, mac) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO NOTHING";
        const NEXT: &str = "UPDATE kms_audit_head SET seq = $1, mac = $2 WHERE id = 1 AND seq = $3";
        const RECORD: &str = concat!(
            "INSERT INTO kms_audit (",
            kms_audit_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        );
        let seq = int(r.seq, "kms audit seq")?;
        let moved = match seq {
            0 => {
                return Err(MetaError::Database(
                    "kms audit seq 0: records are numbered from 1".into(),
                ));
            }
            1 => self.exec(FIRST, &[&seq, &r.mac], Doing::NOTHING)?,
            _ => self.exec(NEXT, &[&seq, &r.mac, &(seq - 1)], Doing::NOTHING)?,
        };
        if moved == 0 {
            return Err(MetaError::Conflict(KMS_AUDIT_TAKEN));
        }
        // A taken seq is a conflict too (postgres/error.rs).
        self.exec(
            RECORD,
            &[
                &seq,
                &int(r.time_ms, "kms audit time")?,
                &r.actor,
                &r.operation,
                &r.key_id,
                &r.version.map(i64::from),
                &r.request_id,
                &r.outcome,
                &r.detail,
                &r.mac,
            ],
            Doing::NOTHING,
        )?;
        Ok(())
    }

    fn insert_site(&mut self, s: &SiteRecord) -> Result<(), MetaError> {
        const SQL: &str = concat!(
            "INSERT INTO sites (",
            site_columns!(),
            ") VALUES ($1, $2, $3, $4)"
        );
        let doing = Doing {
            name: &s.name,
            ..Doing::NOTHING
        };
        self.exec(
            SQL,
            &[
                &s.name,
                &&s.fingerprint[..],
                &s.public_key,
                &int(s.granted, "site grant time")?,
            ],
            doing,
        )?;
        Ok(())
    }

    fn put_site_key(&mut self, k: &SiteKeyRecord) -> Result<(), MetaError> {
        const SQL: &str = concat!(
            "INSERT INTO site_keys (",
            site_key_columns!(),
            ") VALUES ($1, $2, $3) ",
            "ON CONFLICT (fingerprint, blob_hash) DO UPDATE SET wrapped = excluded.wrapped"
        );
        let doing = Doing {
            foreign_key: ForeignKey::MissingNamed { what: "site" },
            ..Doing::NOTHING
        };
        self.exec(
            SQL,
            &[&&k.fingerprint[..], &&k.blob_hash[..], &k.wrapped],
            doing,
        )?;
        Ok(())
    }

    fn delete_site(&mut self, name: &str) -> Result<bool, MetaError> {
        const KEYS: &str = "DELETE FROM site_keys WHERE fingerprint = \
             (SELECT fingerprint FROM sites WHERE name = $1)";
        const SQL: &str = "DELETE FROM sites WHERE name = $1";
        self.exec(KEYS, &[&name], Doing::NOTHING)?;
        Ok(self.exec(SQL, &[&name], Doing::NOTHING)? == 1)
    }

    fn commit(mut self: Box<Self>) -> Result<(), MetaError> {
        // COMMIT of an aborted transaction "succeeds" as a rollback: report the abort.
        self.refuse()?;
        match self.conn.client().batch_execute("COMMIT") {
            Ok(()) => {
                self.finished = true;
                Ok(())
            }
            Err(e) => {
                let lost = connection_lost(&e);
                self.conn.discard_if(lost);
                // A COMMIT that the server answered ends the transaction either way.
                self.finished = !lost;
                Err(map_err(
                    &e,
                    self.conn.home.target.shown(),
                    self.waited,
                    Doing::NOTHING,
                    Phase::Commit,
                ))
            }
        }
    }
}
