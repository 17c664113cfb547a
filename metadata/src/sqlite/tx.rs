//! Read and write transactions, each on one pooled connection.
//!
//! [`SqliteTx`] issues `BEGIN`/`COMMIT`/`ROLLBACK` itself: rusqlite's `Transaction` borrows
//! its connection, which would make a struct holding both self-referential. Every statement
//! goes through `prepare_cached`, so the hot paths (`object`, `put_object`,
//! `swap_envelope`) bind and step an already compiled statement.

use std::time::{Duration, Instant};

use rusqlite::types::ToSql;
use rusqlite::{Params, Row, params, params_from_iter};

use super::PooledConn;
use super::error::{Doing, ForeignKey, KMS_AUDIT_TAKEN, map_err};
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

/// A transaction on one pooled connection. Dropped unfinished, a read transaction commits
/// (it changed nothing) and a write transaction rolls back; if that fails the connection is
/// closed instead of pooled ([`PooledConn`] pools only connections outside a transaction),
/// which rolls back too.
pub(super) struct SqliteTx<'a> {
    conn: PooledConn<'a>,
    /// The busy timeout, reported by [`MetaError::Busy`].
    waited: Duration,
    write: bool,
    finished: bool,
}

impl<'a> SqliteTx<'a> {
    /// `BEGIN DEFERRED`: the snapshot is fixed at the first read.
    pub(super) fn begin_read(conn: PooledConn<'a>, waited: Duration) -> Result<Self, MetaError> {
        Self::begin(conn, waited, false)
    }

    /// `BEGIN IMMEDIATE`: takes the write lock now, waiting up to the busy timeout.
    pub(super) fn begin_write(conn: PooledConn<'a>, waited: Duration) -> Result<Self, MetaError> {
        Self::begin(conn, waited, true)
    }

    fn begin(conn: PooledConn<'a>, waited: Duration, write: bool) -> Result<Self, MetaError> {
        let started = Instant::now();
        let sql = if write {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN DEFERRED"
        };
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map_err(|e| map_err(e, started.elapsed(), Doing::NOTHING))?;
        Ok(SqliteTx {
            conn,
            waited,
            write,
            finished: false,
        })
    }

    /// Maps an error of a statement doing `doing`.
    fn on<'d>(&self, doing: Doing<'d>) -> impl Fn(rusqlite::Error) -> MetaError + Copy + use<'d> {
        let waited = self.waited;
        move |e| map_err(e, waited, doing)
    }

    /// Maps an error of a statement that needs no names.
    fn e(&self) -> impl Fn(rusqlite::Error) -> MetaError + Copy + use<> {
        self.on(Doing::NOTHING)
    }

    /// The first row of a query, decoded.
    fn one<T>(
        &self,
        sql: &str,
        params: impl Params,
        decode: fn(&Row<'_>) -> Result<T, MetaError>,
    ) -> Result<Option<T>, MetaError> {
        let e = self.e();
        let mut stmt = self.conn.prepare_cached(sql).map_err(e)?;
        let mut rows = stmt.query(params).map_err(e)?;
        match rows.next().map_err(e)? {
            Some(r) => decode(r).map(Some),
            None => Ok(None),
        }
    }

    /// Every row of a query, decoded.
    fn all<T>(
        &self,
        sql: &str,
        params: impl Params,
        decode: fn(&Row<'_>) -> Result<T, MetaError>,
    ) -> Result<Vec<T>, MetaError> {
        let e = self.e();
        let mut stmt = self.conn.prepare_cached(sql).map_err(e)?;
        let mut rows = stmt.query(params).map_err(e)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(e)? {
            out.push(decode(r)?);
        }
        Ok(out)
    }

    /// Runs a statement; returns how many rows it changed.
    fn exec(&self, sql: &str, params: impl Params, doing: Doing<'_>) -> Result<usize, MetaError> {
        let e = self.on(doing);
        self.conn
            .prepare_cached(sql)
            .map_err(e)?
            .execute(params)
            .map_err(e)
    }

    /// Runs an INSERT; returns the rowid of the new row.
    fn insert(&self, sql: &str, params: impl Params, doing: Doing<'_>) -> Result<u64, MetaError> {
        self.exec(sql, params, doing)?;
        u64::try_from(self.conn.last_insert_rowid())
            .map_err(|_| MetaError::Corrupt("the database allocated a negative id".into()))
    }
}

impl Drop for SqliteTx<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let end = if self.write { "ROLLBACK" } else { "COMMIT" };
        let ended = self
            .conn
            .prepare_cached(end)
            .and_then(|mut s| s.execute([]));
        if ended.is_err() && !self.write {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        // If the connection is still inside the transaction now, dropping `conn` closes it.
    }
}

/// The next version of a row after `v`.
impl ReadTx for SqliteTx<'_> {
    fn store(&mut self) -> Result<Option<StoreRecord>, MetaError> {
        const SQL: &str = concat!("SELECT ", store_columns!(), " FROM store WHERE id = 1");
        self.one(SQL, [], rows::store)
    }

    fn master_keys(&mut self) -> Result<Vec<MasterKeyRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            master_key_columns!(),
            " FROM master_keys ORDER BY version"
        );
        self.all(SQL, [], rows::master_key)
    }

    fn rotation_keys(&mut self) -> Result<Vec<RotationKeyRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            rotation_key_columns!(),
            " FROM rotation_keys ORDER BY version"
        );
        self.all(SQL, [], rows::rotation_key)
    }

    fn namespace(&mut self, by: By<'_>) -> Result<Option<NamespaceRecord>, MetaError> {
        const BY_ID: &str = concat!(
            "SELECT ",
            namespace_columns!(),
            " FROM namespaces WHERE id = ?1"
        );
        const BY_NAME: &str = concat!(
            "SELECT ",
            namespace_columns!(),
            " FROM namespaces WHERE name = ?1"
        );
        match by {
            // An id above i64::MAX names no row.
            By::Id(id) => match i64::try_from(id) {
                Ok(id) => self.one(BY_ID, [id], rows::namespace),
                Err(_) => Ok(None),
            },
            By::Name(name) => self.one(BY_NAME, [name], rows::namespace),
        }
    }

    fn namespaces(&mut self) -> Result<Vec<NamespaceRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            namespace_columns!(),
            " FROM namespaces ORDER BY id"
        );
        self.all(SQL, [], rows::namespace)
    }

    fn bucket(&mut self, by: By<'_>) -> Result<Option<BucketRecord>, MetaError> {
        const BY_ID: &str = concat!("SELECT ", bucket_columns!(), " FROM buckets WHERE id = ?1");
        const BY_NAME: &str = concat!(
            "SELECT ",
            bucket_columns!(),
            " FROM buckets WHERE name = ?1"
        );
        match by {
            By::Id(id) => match i64::try_from(id) {
                Ok(id) => self.one(BY_ID, [id], rows::bucket),
                Err(_) => Ok(None),
            },
            By::Name(name) => self.one(BY_NAME, [name], rows::bucket),
        }
    }

    fn buckets(&mut self, namespace_id: Option<u64>) -> Result<Vec<BucketRecord>, MetaError> {
        const ALL: &str = concat!("SELECT ", bucket_columns!(), " FROM buckets ORDER BY id");
        const OF: &str = concat!(
            "SELECT ",
            bucket_columns!(),
            " FROM buckets WHERE namespace_id = ?1 ORDER BY id"
        );
        match namespace_id.map(i64::try_from) {
            None => self.all(ALL, [], rows::bucket),
            Some(Ok(ns)) => self.all(OF, [ns], rows::bucket),
            Some(Err(_)) => Ok(Vec::new()),
        }
    }

    fn task(&mut self, id: u64) -> Result<Option<TaskRecord>, MetaError> {
        const SQL: &str = concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = ?1");
        match i64::try_from(id) {
            Ok(id) => self.one(SQL, [id], rows::task),
            Err(_) => Ok(None),
        }
    }

    fn tasks(&mut self) -> Result<Vec<TaskRecord>, MetaError> {
        const SQL: &str = concat!("SELECT ", task_columns!(), " FROM tasks ORDER BY id");
        self.all(SQL, [], rows::task)
    }

    fn object(&mut self, bucket_id: u64, name: &str) -> Result<Option<ObjectRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            object_columns!(),
            " FROM objects WHERE bucket_id = ?1 AND name = ?2"
        );
        let Ok(bucket_id) = i64::try_from(bucket_id) else {
            return Ok(None);
        };
        self.one(SQL, params![bucket_id, name.as_bytes()], rows::object)
    }

    fn objects(
        &mut self,
        bucket_id: u64,
        range: NameRange<'_>,
        limit: usize,
    ) -> Result<Vec<ObjectRecord>, MetaError> {
        // Every variant is a range on the primary key (bucket_id, name): no scan, no sort.
        const FROM: &str = concat!(
            "SELECT ",
            object_columns!(),
            " FROM objects WHERE bucket_id = ?1 AND name >= ?2 ORDER BY name LIMIT ?3"
        );
        const FROM_TO: &str = concat!(
            "SELECT ",
            object_columns!(),
            " FROM objects WHERE bucket_id = ?1 AND name >= ?2 AND name < ?3",
            " ORDER BY name LIMIT ?4"
        );
        const AFTER: &str = concat!(
            "SELECT ",
            object_columns!(),
            " FROM objects WHERE bucket_id = ?1 AND name > ?2 ORDER BY name LIMIT ?3"
        );
        const AFTER_TO: &str = concat!(
            "SELECT ",
            object_columns!(),
            " FROM objects WHERE bucket_id = ?1 AND name > ?2 AND name < ?3",
            " ORDER BY name LIMIT ?4"
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
        match (exclusive, end) {
            (false, None) => self.all(FROM, params![bucket_id, lower, limit], rows::object),
            (false, Some(end)) => {
                self.all(FROM_TO, params![bucket_id, lower, end, limit], rows::object)
            }
            (true, None) => self.all(AFTER, params![bucket_id, lower, limit], rows::object),
            (true, Some(end)) => self.all(
                AFTER_TO,
                params![bucket_id, lower, end, limit],
                rows::object,
            ),
        }
    }

    fn object_count(&mut self, bucket_id: u64) -> Result<u64, MetaError> {
        const SQL: &str = "SELECT count(*) FROM objects WHERE bucket_id = ?1";
        let Ok(bucket_id) = i64::try_from(bucket_id) else {
            return Ok(0);
        };
        let e = self.e();
        let n: i64 = self
            .conn
            .prepare_cached(SQL)
            .map_err(e)?
            .query_row([bucket_id], |r| r.get(0))
            .map_err(e)?;
        u64::try_from(n).map_err(|_| MetaError::Corrupt("negative object count".into()))
    }

    fn kms_key(&mut self, by: KmsBy<'_>) -> Result<Option<KmsKeyRecord>, MetaError> {
        const BY_ID: &str = concat!(
            "SELECT ",
            kms_key_columns!(),
            " FROM kms_keys WHERE key_id = ?1"
        );
        const BY_ALIAS: &str = concat!(
            "SELECT ",
            kms_key_columns!(),
            " FROM kms_keys WHERE alias = ?1"
        );
        match by {
            KmsBy::Id(id) => self.one(BY_ID, [id], rows::kms_key),
            KmsBy::Alias(alias) => self.one(BY_ALIAS, [alias], rows::kms_key),
        }
    }

    fn kms_keys(&mut self) -> Result<Vec<KmsKeyRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            kms_key_columns!(),
            " FROM kms_keys ORDER BY created_ms, key_id"
        );
        self.all(SQL, [], rows::kms_key)
    }

    fn kms_versions(&mut self, key_id: &str) -> Result<Vec<KmsVersionRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            kms_version_columns!(),
            " FROM kms_versions WHERE key_id = ?1 ORDER BY version"
        );
        self.all(SQL, [key_id], rows::kms_version)
    }

    fn kms_registrations(&mut self, key_id: &str) -> Result<Vec<KmsRegistration>, MetaError> {
        // TEXT in the BINARY collation: ordered by the bytes of the UTF-8.
        const SQL: &str = concat!(
            "SELECT ",
            kms_registration_columns!(),
            " FROM kms_registrations WHERE key_id = ?1 ORDER BY resource"
        );
        self.all(SQL, [key_id], rows::kms_registration)
    }

    fn kms_audit(
        &mut self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<KmsAuditRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            kms_audit_columns!(),
            " FROM kms_audit WHERE seq > ?1 ORDER BY seq LIMIT ?2"
        );
        // No record has a seq above i64::MAX.
        let Ok(after_seq) = i64::try_from(after_seq) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.all(SQL, params![after_seq, limit], rows::kms_audit)
    }

    fn kms_audit_head(&mut self) -> Result<KmsAuditHead, MetaError> {
        const SQL: &str = "SELECT seq, mac FROM kms_audit_head WHERE id = 1";
        Ok(self
            .one(SQL, [], rows::kms_audit_head)?
            .unwrap_or(KmsAuditHead {
                seq: 0,
                mac: Vec::new(),
            }))
    }

    fn sites(&mut self) -> Result<Vec<SiteRecord>, MetaError> {
        const SQL: &str = concat!("SELECT ", site_columns!(), " FROM sites ORDER BY name");
        self.all(SQL, [], rows::site)
    }

    fn site_keys(&mut self, fingerprint: &[u8; 32]) -> Result<Vec<SiteKeyRecord>, MetaError> {
        const SQL: &str = concat!(
            "SELECT ",
            site_key_columns!(),
            " FROM site_keys WHERE fingerprint = ?1 ORDER BY blob_hash"
        );
        self.all(SQL, [&fingerprint[..]], rows::site_key)
    }
}

/// A CMK's values for the statements that write it: parameters 1..=22, the columns of
/// [`kms_key_written_columns`] in that order (every column but `created_ms` and
/// `row_version`), checked and converted once for the insert and the update.
struct KmsKeyValues<'k> {
    k: &'k KmsKeyRecord,
    state: &'static str,
    origin: &'static str,
    last_rotation_ms: i64,
    last_manual_rotation_ms: Option<i64>,
    deletion_due_ms: Option<i64>,
    state_before: Option<&'static str>,
    material_expires_ms: Option<i64>,
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
            last_rotation_ms: int(k.last_rotation_ms, "kms key last rotation time")?,
            last_manual_rotation_ms: opt_int(
                k.last_manual_rotation_ms,
                "kms key last manual rotation time",
            )?,
            deletion_due_ms: opt_int(k.deletion_due_ms, "kms key deletion time")?,
            state_before: k.state_before.map(|s| s.as_str()),
            material_expires_ms: opt_int(k.material_expires_ms, "kms key material expiry")?,
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

    fn params(&self) -> [&dyn ToSql; 22] {
        let k = self.k;
        [
            &k.key_id,
            &k.alias,
            &k.description,
            &self.state,
            &self.origin,
            &k.default_key,
            &k.rotation_enabled,
            &k.rotation_days,
            &self.last_rotation_ms,
            &k.rotations,
            &self.last_manual_rotation_ms,
            &self.deletion_due_ms,
            &self.state_before,
            &self.material_expires_ms,
            &k.material_fingerprint,
            &k.min_decryption_version,
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

impl WriteTx for SqliteTx<'_> {
    fn insert_store(&mut self, s: &StoreRecord) -> Result<(), MetaError> {
        const SQL: &str = concat!(
            "INSERT INTO store (id, ",
            store_columns!(),
            ") VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        );
        self.exec(
            SQL,
            params![
                &s.store_id[..],
                s.chunk_shift,
                s.root_of_trust,
                s.rt_data_key,
                s.active_master,
                s.active_rotation,
                int(s.key_epoch, "key epoch")?,
                int(s.created, "store creation time")?,
                int(s.row_version, "store row version")?,
            ],
            Doing::NOTHING,
        )?;
        Ok(())
    }

    fn update_store(&mut self, s: &StoreRecord) -> Result<u64, MetaError> {
        const SQL: &str = "UPDATE store SET chunk_shift = ?1, root_of_trust = ?2, \
             rt_data_key = ?3, active_master = ?4, active_rotation = ?5, key_epoch = ?6, \
             row_version = ?7 WHERE id = 1 AND row_version = ?8";
        let next = bump(s.row_version)?;
        let changed = self.exec(
            SQL,
            params![
                s.chunk_shift,
                s.root_of_trust,
                s.rt_data_key,
                s.active_master,
                s.active_rotation,
                int(s.key_epoch, "key epoch")?,
                int(next, "store row version")?,
                int(s.row_version, "store row version")?,
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
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        );
        let doing = Doing {
            id: Some(u64::from(m.version)),
            ..Doing::NOTHING
        };
        self.exec(
            SQL,
            params![
                m.version,
                m.state.as_str(),
                m.wrapped,
                int(m.created, "master key creation time")?,
                opt_int(m.retired, "master key retirement time")?,
                m.root.root_of_trust,
                m.root.management,
                m.root.key_id,
                m.root.rt_wrapped,
                opt_int(m.root.deactivated, "master key deactivation time")?,
                m.root.deactivation,
            ],
            doing,
        )?;
        Ok(())
    }

    fn update_master_key(&mut self, m: &MasterKeyRecord) -> Result<(), MetaError> {
        const SQL: &str = "UPDATE master_keys SET state = ?1, wrapped = ?2, retired = ?3, \
             root_of_trust = ?5, management = ?6, key_id = ?7, rt_wrapped = ?8, \
             deactivated = ?9, deactivation = ?10 WHERE version = ?4";
        let changed = self.exec(
            SQL,
            params![
                m.state.as_str(),
                m.wrapped,
                opt_int(m.retired, "master key retirement time")?,
                m.version,
                m.root.root_of_trust,
                m.root.management,
                m.root.key_id,
                m.root.rt_wrapped,
                opt_int(m.root.deactivated, "master key deactivation time")?,
                m.root.deactivation,
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
            ") VALUES (?1, ?2, ?3, ?4, ?5)"
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
            params![
                r.version,
                r.master_version,
                r.wrapped,
                int(r.created, "rotation key creation time")?,
                int(r.row_version, "rotation key row version")?,
            ],
            doing,
        )?;
        Ok(())
    }

    fn update_rotation_key(&mut self, r: &RotationKeyRecord) -> Result<u64, MetaError> {
        const SQL: &str = "UPDATE rotation_keys SET master_version = ?1, wrapped = ?2, \
             row_version = ?3 WHERE version = ?4 AND row_version = ?5";
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
            params![
                r.master_version,
                r.wrapped,
                int(next, "rotation key row version")?,
                r.version,
                int(r.row_version, "rotation key row version")?,
            ],
            doing,
        )?;
        if changed == 0 {
            return Err(MetaError::Conflict("rotation key"));
        }
        Ok(next)
    }

    fn insert_namespace(&mut self, n: &NewNamespace) -> Result<u64, MetaError> {
        const SQL: &str = concat!(
            "INSERT INTO namespaces (",
            namespace_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)"
        );
        let doing = Doing {
            name: &n.name,
            id: n.id,
            foreign_key: ForeignKey::MissingParent {
                what: "master key",
                id: u64::from(n.master_version),
            },
            ..Doing::NOTHING
        };
        self.insert(
            SQL,
            params![
                opt_int(n.id, "namespace id")?,
                n.name,
                n.encryption,
                n.master_version,
                n.wrapped_key,
                int(n.created, "namespace creation time")?,
            ],
            doing,
        )
    }

    fn update_namespace(&mut self, n: &NamespaceRecord) -> Result<u64, MetaError> {
        const SQL: &str = "UPDATE namespaces SET master_version = ?1, wrapped_key = ?2, \
             row_version = ?3 WHERE id = ?4 AND row_version = ?5";
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
            params![
                n.master_version,
                n.wrapped_key,
                int(next, "namespace row version")?,
                int(n.id, "namespace id")?,
                int(n.row_version, "namespace row version")?,
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
            "DELETE FROM namespaces WHERE id = ?1",
            [int(id, "namespace id")?],
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
        const SQL: &str = concat!(
            "INSERT INTO buckets (",
            bucket_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)"
        );
        let doing = Doing {
            name: &b.name,
            id: b.id,
            foreign_key: ForeignKey::MissingParent {
                what: "namespace",
                id: b.namespace_id,
            },
            ..Doing::NOTHING
        };
        self.insert(
            SQL,
            params![
                opt_int(b.id, "bucket id")?,
                b.name,
                int(b.namespace_id, "namespace id")?,
                b.encryption,
                b.wrapped_key,
                b.kms_key_id,
                int(b.created, "bucket creation time")?,
            ],
            doing,
        )
    }

    fn delete_bucket(&mut self, id: u64) -> Result<u64, MetaError> {
        let sql_id = int(id, "bucket id")?;
        let objects = self.exec(
            "DELETE FROM objects WHERE bucket_id = ?1",
            [sql_id],
            Doing::NOTHING,
        )?;
        let changed = self.exec(
            "DELETE FROM buckets WHERE id = ?1",
            [sql_id],
            Doing::NOTHING,
        )?;
        if changed == 0 {
            return Err(MetaError::NotFound {
                what: "bucket",
                name: id.to_string(),
            });
        }
        u64::try_from(objects).map_err(|_| MetaError::Database("object count overflow".into()))
    }

    fn insert_task(&mut self, t: &NewTask) -> Result<u64, MetaError> {
        const SQL: &str = concat!(
            "INSERT INTO tasks (",
            task_columns!(),
            ") VALUES (?1, ?2, ?3, 0, ?4, NULL, NULL, NULL, ?5, NULL, NULL, 0, 1, NULL, NULL, 0, ?6, NULL)"
        );
        let doing = Doing {
            id: t.id,
            ..Doing::NOTHING
        };
        self.insert(
            SQL,
            params![
                opt_int(t.id, "task id")?,
                t.kind.as_str(),
                TaskState::Pending.as_str(),
                int(t.started, "task start time")?,
                t.previous_master,
                t.target_root,
            ],
            doing,
        )
    }

    fn update_task(&mut self, t: &TaskRecord) -> Result<u64, MetaError> {
        const SQL: &str = "UPDATE tasks SET state = ?1, step = ?2, ended = ?3, outcome = ?4, \
             error = ?5, previous_master = ?6, new_master = ?7, new_rotation = ?8, \
             master_attempts = ?9, row_version = ?10, lease_owner = ?13, lease_expires = ?14, \
             lease_token = ?15, target_root = ?16, updated = ?17 WHERE id = ?11 AND row_version = ?12";
        let next = bump(t.row_version)?;
        let changed = self.exec(
            SQL,
            params![
                t.state.as_str(),
                t.step,
                opt_int(t.ended, "task end time")?,
                t.outcome,
                t.error,
                t.previous_master,
                t.new_master,
                t.new_rotation,
                t.master_attempts,
                int(next, "task row version")?,
                int(t.id, "task id")?,
                int(t.row_version, "task row version")?,
                t.lease_owner,
                opt_int(t.lease_expires, "task lease expiry")?,
                int(t.lease_token, "task lease token")?,
                t.target_root,
                opt_int(t.updated, "task update time")?,
            ],
            Doing::NOTHING,
        )?;
        if changed == 0 {
            return Err(MetaError::Conflict("task"));
        }
        Ok(next)
    }

    fn put_object(&mut self, o: &ObjectRecord) -> Result<Option<ObjectRecord>, MetaError> {
        // An upsert rather than INSERT OR REPLACE: the row is updated in place instead of
        // deleted and inserted again.
        const SQL: &str = concat!(
            "INSERT INTO objects (",
            object_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 1) ",
            "ON CONFLICT (bucket_id, name) DO UPDATE SET object_id = excluded.object_id, ",
            "size = excluded.size, created_ms = excluded.created_ms, etag = excluded.etag, ",
            "format = excluded.format, suite = excluded.suite, ",
            "chunk_shift = excluded.chunk_shift, nonce_prefix = excluded.nonce_prefix, ",
            "envelope_kind = excluded.envelope_kind, envelope = excluded.envelope, ",
            "meta = excluded.meta, row_version = 1"
        );
        let bucket_id = int(o.bucket_id, "bucket id")?;
        let old = self.object(o.bucket_id, &o.name)?;
        let doing = Doing {
            foreign_key: ForeignKey::MissingParent {
                what: "bucket",
                id: o.bucket_id,
            },
            ..Doing::NOTHING
        };
        self.exec(
            SQL,
            params![
                bucket_id,
                o.name.as_bytes(),
                &o.object_id[..],
                int(o.size, "object size")?,
                int(o.created_ms, "object creation time")?,
                o.etag,
                o.format,
                o.suite,
                o.chunk_shift,
                &o.nonce_prefix[..],
                o.envelope_kind,
                o.envelope,
                o.meta,
            ],
            doing,
        )?;
        Ok(old)
    }

    fn delete_object(
        &mut self,
        bucket_id: u64,
        name: &str,
    ) -> Result<Option<ObjectRecord>, MetaError> {
        const SQL: &str = concat!(
            "DELETE FROM objects WHERE bucket_id = ?1 AND name = ?2 RETURNING ",
            object_columns!()
        );
        let Ok(bucket_id) = i64::try_from(bucket_id) else {
            return Ok(None);
        };
        self.one(SQL, params![bucket_id, name.as_bytes()], rows::object)
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
        const SQL: &str = "UPDATE objects SET envelope_kind = ?1, envelope = ?2, \
             row_version = row_version + 1 \
             WHERE bucket_id = ?3 AND name = ?4 AND object_id = ?5 AND row_version = ?6";
        let (Ok(bucket_id), Ok(row_version)) =
            (i64::try_from(bucket_id), i64::try_from(row_version))
        else {
            return Ok(false);
        };
        let changed = self.exec(
            SQL,
            params![
                envelope_kind,
                envelope,
                bucket_id,
                name.as_bytes(),
                &object_id[..],
                row_version,
            ],
            Doing::NOTHING,
        )?;
        Ok(changed == 1)
    }

    fn update_bucket(&mut self, b: &BucketRecord) -> Result<u64, MetaError> {
        const SQL: &str = "UPDATE buckets SET wrapped_key = ?1, kms_key_id = ?2, \
             row_version = ?3 WHERE id = ?4 AND row_version = ?5";
        let next = bump(b.row_version)?;
        let changed = self.exec(
            SQL,
            params![
                b.wrapped_key,
                b.kms_key_id,
                int(next, "bucket row version")?,
                int(b.id, "bucket id")?,
                int(b.row_version, "bucket row version")?,
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
            ", created_ms, row_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ",
            "?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)"
        );
        let values = KmsKeyValues::new(k)?;
        let created_ms = int(k.created_ms, "kms key creation time")?;
        let row_version = int(k.row_version, "kms key row version")?;
        let extra: [&dyn ToSql; 2] = [&created_ms, &row_version];
        self.exec(
            SQL,
            params_from_iter(values.params().into_iter().chain(extra)),
            values.doing(),
        )?;
        Ok(())
    }

    fn update_kms_key(&mut self, k: &KmsKeyRecord) -> Result<u64, MetaError> {
        const SQL: &str = "UPDATE kms_keys SET alias = ?2, description = ?3, state = ?4, \
             origin = ?5, default_key = ?6, rotation_enabled = ?7, rotation_days = ?8, \
             last_rotation_ms = ?9, rotations = ?10, last_manual_rotation_ms = ?11, \
             deletion_due_ms = ?12, state_before = ?13, material_expires_ms = ?14, \
             material_fingerprint = ?15, min_decryption_version = ?16, import_token_id = ?17, \
             import_algorithm = ?18, import_private_key = ?19, import_public_key = ?20, \
             import_expires_ms = ?21, deleted_ms = ?22, row_version = ?23 \
             WHERE key_id = ?1 AND row_version = ?24";
        let values = KmsKeyValues::new(k)?;
        let next = bump(k.row_version)?;
        let sql_next = int(next, "kms key row version")?;
        let row_version = int(k.row_version, "kms key row version")?;
        let extra: [&dyn ToSql; 2] = [&sql_next, &row_version];
        let changed = self.exec(
            SQL,
            params_from_iter(values.params().into_iter().chain(extra)),
            values.doing(),
        )?;
        if changed == 0 {
            return Err(MetaError::Conflict("kms key"));
        }
        Ok(next)
    }

    fn insert_kms_version(&mut self, v: &KmsVersionRecord) -> Result<(), MetaError> {
        const SQL: &str = concat!(
            "INSERT INTO kms_versions (",
            kms_version_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5)"
        );
        let doing = Doing {
            name: &v.key_id,
            id: Some(u64::from(v.version)),
            foreign_key: ForeignKey::MissingNamed { what: "kms key" },
            ..Doing::NOTHING
        };
        self.exec(
            SQL,
            params![
                v.key_id,
                v.version,
                v.material,
                int(v.created_ms, "kms key version creation time")?,
                int(v.encryptions, "kms key version encryptions")?,
            ],
            doing,
        )?;
        Ok(())
    }

    fn update_kms_version(&mut self, v: &KmsVersionRecord) -> Result<(), MetaError> {
        const SQL: &str = "UPDATE kms_versions SET material = ?1, encryptions = ?2 \
             WHERE key_id = ?3 AND version = ?4";
        let changed = self.exec(
            SQL,
            params![
                v.material,
                int(v.encryptions, "kms key version encryptions")?,
                v.key_id,
                v.version,
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
        const SECURE_DELETE: &str = "PRAGMA secure_delete";
        // Same length, so that SQLite rewrites each row in place (its overwrite of a cell
        // whose size does not change) rather than writing a new cell and freeing the old one.
        const ZERO: &str = "UPDATE kms_versions SET material = zeroblob(length(material)) \
             WHERE key_id = ?1 AND material IS NOT NULL";
        const DELETE: &str = "DELETE FROM kms_versions WHERE key_id = ?1";
        // The material must not outlive the delete in the file. Every connection of dare
        // turns secure_delete on, which zeroes a deleted row's bytes in its page; a database
        // or connection without it (a setting is per connection, and FAST only zeroes what
        // costs no extra I/O) would leave the deleted rows' bytes in the page's free space,
        // so the material is overwritten with zeros first. Either way the old page images
        // stay in the WAL until the next checkpoint (SqliteMetadata::checkpoint).
        let e = self.e();
        let secure: i64 = self
            .conn
            .prepare_cached(SECURE_DELETE)
            .map_err(e)?
            .query_row([], |r| r.get(0))
            .map_err(e)?;
        if secure != 1 {
            self.exec(ZERO, [key_id], Doing::NOTHING)?;
        }
        let deleted = self.exec(DELETE, [key_id], Doing::NOTHING)?;
        u64::try_from(deleted).map_err(|_| MetaError::Database("version count overflow".into()))
    }

    fn put_kms_registration(&mut self, r: &KmsRegistration) -> Result<(), MetaError> {
        const SQL: &str = concat!(
            "INSERT INTO kms_registrations (",
            kms_registration_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6) ",
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
            params![
                r.key_id,
                r.resource,
                r.version,
                r.description,
                int(r.created_ms, "kms registration time")?,
                int(r.updated_ms, "kms registration change time")?,
            ],
            doing,
        )?;
        Ok(())
    }

    fn delete_kms_registration(&mut self, key_id: &str, resource: &str) -> Result<bool, MetaError> {
        const SQL: &str = "DELETE FROM kms_registrations WHERE key_id = ?1 AND resource = ?2";
        Ok(self.exec(SQL, [key_id, resource], Doing::NOTHING)? == 1)
    }

    fn append_kms_audit(&mut self, r: &KmsAuditRecord) -> Result<(), MetaError> {
        // The head moves first, and only from `r.seq - 1`: a stale appender changes nothing.
        const FIRST: &str = "INSERT INTO kms_audit_head (id, seq, mac) VALUES (1, ?1, ?2) \
             ON CONFLICT (id) DO NOTHING";
        const NEXT: &str = "UPDATE kms_audit_head SET seq = ?1, mac = ?2 WHERE id = 1 AND seq = ?3";
        const RECORD: &str = concat!(
            "INSERT INTO kms_audit (",
            kms_audit_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        );
        let seq = int(r.seq, "kms audit seq")?;
        let moved = match seq {
            0 => {
                return Err(MetaError::Database(
                    "kms audit seq 0: records are numbered from 1".into(),
                ));
            }
            1 => self.exec(FIRST, params![seq, r.mac], Doing::NOTHING)?,
            _ => self.exec(NEXT, params![seq, r.mac, seq - 1], Doing::NOTHING)?,
        };
        if moved == 0 {
            return Err(MetaError::Conflict(KMS_AUDIT_TAKEN));
        }
        // A taken seq (a record beyond the head) is a conflict too (sqlite/error.rs).
        self.exec(
            RECORD,
            params![
                seq,
                int(r.time_ms, "kms audit time")?,
                r.actor,
                r.operation,
                r.key_id,
                r.version,
                r.request_id,
                r.outcome,
                r.detail,
                r.mac,
            ],
            Doing::NOTHING,
        )?;
        Ok(())
    }

    fn insert_site(&mut self, s: &SiteRecord) -> Result<(), MetaError> {
        const SQL: &str = concat!(
            "INSERT INTO sites (",
            site_columns!(),
            ") VALUES (?1, ?2, ?3, ?4)"
        );
        let doing = Doing {
            name: &s.name,
            ..Doing::NOTHING
        };
        self.exec(
            SQL,
            params![
                s.name,
                &s.fingerprint[..],
                s.public_key,
                int(s.granted, "site grant time")?
            ],
            doing,
        )?;
        Ok(())
    }

    fn put_site_key(&mut self, k: &SiteKeyRecord) -> Result<(), MetaError> {
        const SQL: &str = concat!(
            "INSERT INTO site_keys (",
            site_key_columns!(),
            ") VALUES (?1, ?2, ?3) ",
            "ON CONFLICT (fingerprint, blob_hash) DO UPDATE SET wrapped = excluded.wrapped"
        );
        let doing = Doing {
            foreign_key: ForeignKey::MissingNamed { what: "site" },
            ..Doing::NOTHING
        };
        self.exec(
            SQL,
            params![&k.fingerprint[..], &k.blob_hash[..], k.wrapped],
            doing,
        )?;
        Ok(())
    }

    fn delete_site(&mut self, name: &str) -> Result<bool, MetaError> {
        const KEYS: &str = "DELETE FROM site_keys WHERE fingerprint = \
             (SELECT fingerprint FROM sites WHERE name = ?1)";
        const SQL: &str = "DELETE FROM sites WHERE name = ?1";
        self.exec(KEYS, [name], Doing::NOTHING)?;
        Ok(self.exec(SQL, [name], Doing::NOTHING)? == 1)
    }

    fn commit(mut self: Box<Self>) -> Result<(), MetaError> {
        let e = self.e();
        self.conn
            .prepare_cached("COMMIT")
            .and_then(|mut s| s.execute([]))
            .map_err(e)?;
        self.finished = true;
        Ok(())
    }
}
