//! Test machinery shared by the control-plane suites: a metadata database whose commits run
//! a hook first (a simulated crash, a full disk), forwarding everything else to SQLite.
#![allow(dead_code)]

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use dare_metadata::{MetaError, Metadata, ReadTx, SqliteMetadata, WriteTx};

/// Runs before every commit; an error aborts the commit (the transaction rolls back).
pub type CommitHook = Arc<dyn Fn() -> Result<(), MetaError> + Send + Sync>;
/// Runs before every transaction starts; an error refuses it.
pub type BeginHook = Arc<dyn Fn() -> Result<(), MetaError> + Send + Sync>;

/// SQLite with hooks.
pub struct HookedMeta {
    pub inner: SqliteMetadata,
    pub on_commit: CommitHook,
    pub on_begin: BeginHook,
}

impl HookedMeta {
    pub fn new(inner: SqliteMetadata, on_commit: CommitHook, on_begin: BeginHook) -> Self {
        HookedMeta {
            inner,
            on_commit,
            on_begin,
        }
    }
}

impl fmt::Debug for HookedMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HookedMeta")
    }
}

struct HookedTx<'a> {
    inner: Box<dyn WriteTx + 'a>,
    on_commit: CommitHook,
}

macro_rules! forward_read {
    () => {
        fn store(&mut self) -> Result<Option<dare_metadata::StoreRecord>, MetaError> {
            self.inner.store()
        }
        fn master_keys(&mut self) -> Result<Vec<dare_metadata::MasterKeyRecord>, MetaError> {
            self.inner.master_keys()
        }
        fn rotation_keys(&mut self) -> Result<Vec<dare_metadata::RotationKeyRecord>, MetaError> {
            self.inner.rotation_keys()
        }
        fn namespace(
            &mut self,
            by: dare_metadata::By<'_>,
        ) -> Result<Option<dare_metadata::NamespaceRecord>, MetaError> {
            self.inner.namespace(by)
        }
        fn namespaces(&mut self) -> Result<Vec<dare_metadata::NamespaceRecord>, MetaError> {
            self.inner.namespaces()
        }
        fn bucket(
            &mut self,
            by: dare_metadata::By<'_>,
        ) -> Result<Option<dare_metadata::BucketRecord>, MetaError> {
            self.inner.bucket(by)
        }
        fn buckets(
            &mut self,
            ns: Option<u64>,
        ) -> Result<Vec<dare_metadata::BucketRecord>, MetaError> {
            self.inner.buckets(ns)
        }
        fn task(&mut self, id: u64) -> Result<Option<dare_metadata::TaskRecord>, MetaError> {
            self.inner.task(id)
        }
        fn tasks(&mut self) -> Result<Vec<dare_metadata::TaskRecord>, MetaError> {
            self.inner.tasks()
        }
        fn object(
            &mut self,
            b: u64,
            name: &str,
        ) -> Result<Option<dare_metadata::ObjectRecord>, MetaError> {
            self.inner.object(b, name)
        }
        fn objects(
            &mut self,
            b: u64,
            r: dare_metadata::NameRange<'_>,
            limit: usize,
        ) -> Result<Vec<dare_metadata::ObjectRecord>, MetaError> {
            self.inner.objects(b, r, limit)
        }
        fn object_count(&mut self, b: u64) -> Result<u64, MetaError> {
            self.inner.object_count(b)
        }
        fn kms_key(
            &mut self,
            by: dare_metadata::KmsBy<'_>,
        ) -> Result<Option<dare_metadata::KmsKeyRecord>, MetaError> {
            self.inner.kms_key(by)
        }
        fn kms_keys(&mut self) -> Result<Vec<dare_metadata::KmsKeyRecord>, MetaError> {
            self.inner.kms_keys()
        }
        fn kms_versions(
            &mut self,
            key_id: &str,
        ) -> Result<Vec<dare_metadata::KmsVersionRecord>, MetaError> {
            self.inner.kms_versions(key_id)
        }
        fn kms_registrations(
            &mut self,
            key_id: &str,
        ) -> Result<Vec<dare_metadata::KmsRegistration>, MetaError> {
            self.inner.kms_registrations(key_id)
        }
        fn kms_audit(
            &mut self,
            after_seq: u64,
            limit: usize,
        ) -> Result<Vec<dare_metadata::KmsAuditRecord>, MetaError> {
            self.inner.kms_audit(after_seq, limit)
        }
        fn kms_audit_head(&mut self) -> Result<dare_metadata::KmsAuditHead, MetaError> {
            self.inner.kms_audit_head()
        }
        fn sites(&mut self) -> Result<Vec<dare_metadata::SiteRecord>, MetaError> {
            self.inner.sites()
        }
        fn site_keys(
            &mut self,
            fingerprint: &[u8; 32],
        ) -> Result<Vec<dare_metadata::SiteKeyRecord>, MetaError> {
            self.inner.site_keys(fingerprint)
        }
    };
}

impl ReadTx for HookedTx<'_> {
    forward_read!();
}

impl WriteTx for HookedTx<'_> {
    fn insert_store(&mut self, s: &dare_metadata::StoreRecord) -> Result<(), MetaError> {
        self.inner.insert_store(s)
    }
    fn update_store(&mut self, s: &dare_metadata::StoreRecord) -> Result<u64, MetaError> {
        self.inner.update_store(s)
    }
    fn insert_master_key(&mut self, m: &dare_metadata::MasterKeyRecord) -> Result<(), MetaError> {
        self.inner.insert_master_key(m)
    }
    fn update_master_key(&mut self, m: &dare_metadata::MasterKeyRecord) -> Result<(), MetaError> {
        self.inner.update_master_key(m)
    }
    fn insert_rotation_key(
        &mut self,
        r: &dare_metadata::RotationKeyRecord,
    ) -> Result<(), MetaError> {
        self.inner.insert_rotation_key(r)
    }
    fn update_rotation_key(
        &mut self,
        r: &dare_metadata::RotationKeyRecord,
    ) -> Result<u64, MetaError> {
        self.inner.update_rotation_key(r)
    }
    fn insert_namespace(&mut self, n: &dare_metadata::NewNamespace) -> Result<u64, MetaError> {
        self.inner.insert_namespace(n)
    }
    fn update_namespace(&mut self, n: &dare_metadata::NamespaceRecord) -> Result<u64, MetaError> {
        self.inner.update_namespace(n)
    }
    fn delete_namespace(&mut self, id: u64) -> Result<(), MetaError> {
        self.inner.delete_namespace(id)
    }
    fn insert_bucket(&mut self, b: &dare_metadata::NewBucket) -> Result<u64, MetaError> {
        self.inner.insert_bucket(b)
    }
    fn delete_bucket(&mut self, id: u64) -> Result<u64, MetaError> {
        self.inner.delete_bucket(id)
    }
    fn insert_task(&mut self, t: &dare_metadata::NewTask) -> Result<u64, MetaError> {
        self.inner.insert_task(t)
    }
    fn update_task(&mut self, t: &dare_metadata::TaskRecord) -> Result<u64, MetaError> {
        self.inner.update_task(t)
    }
    fn put_object(
        &mut self,
        o: &dare_metadata::ObjectRecord,
    ) -> Result<Option<dare_metadata::ObjectRecord>, MetaError> {
        self.inner.put_object(o)
    }
    fn delete_object(
        &mut self,
        b: u64,
        name: &str,
    ) -> Result<Option<dare_metadata::ObjectRecord>, MetaError> {
        self.inner.delete_object(b, name)
    }
    fn swap_envelope(
        &mut self,
        b: u64,
        name: &str,
        id: &[u8; 16],
        rv: u64,
        kind: u8,
        env: &[u8],
    ) -> Result<bool, MetaError> {
        self.inner.swap_envelope(b, name, id, rv, kind, env)
    }
    fn update_bucket(&mut self, b: &dare_metadata::BucketRecord) -> Result<u64, MetaError> {
        self.inner.update_bucket(b)
    }
    fn insert_kms_key(&mut self, k: &dare_metadata::KmsKeyRecord) -> Result<(), MetaError> {
        self.inner.insert_kms_key(k)
    }
    fn update_kms_key(&mut self, k: &dare_metadata::KmsKeyRecord) -> Result<u64, MetaError> {
        self.inner.update_kms_key(k)
    }
    fn insert_kms_version(&mut self, v: &dare_metadata::KmsVersionRecord) -> Result<(), MetaError> {
        self.inner.insert_kms_version(v)
    }
    fn update_kms_version(&mut self, v: &dare_metadata::KmsVersionRecord) -> Result<(), MetaError> {
        self.inner.update_kms_version(v)
    }
    fn delete_kms_versions(&mut self, key_id: &str) -> Result<u64, MetaError> {
        self.inner.delete_kms_versions(key_id)
    }
    fn put_kms_registration(
        &mut self,
        r: &dare_metadata::KmsRegistration,
    ) -> Result<(), MetaError> {
        self.inner.put_kms_registration(r)
    }
    fn delete_kms_registration(&mut self, key_id: &str, resource: &str) -> Result<bool, MetaError> {
        self.inner.delete_kms_registration(key_id, resource)
    }
    fn append_kms_audit(&mut self, r: &dare_metadata::KmsAuditRecord) -> Result<(), MetaError> {
        self.inner.append_kms_audit(r)
    }
    fn insert_site(&mut self, s: &dare_metadata::SiteRecord) -> Result<(), MetaError> {
        self.inner.insert_site(s)
    }
    fn put_site_key(&mut self, k: &dare_metadata::SiteKeyRecord) -> Result<(), MetaError> {
        self.inner.put_site_key(k)
    }
    fn delete_site(&mut self, name: &str) -> Result<bool, MetaError> {
        self.inner.delete_site(name)
    }
    fn commit(self: Box<Self>) -> Result<(), MetaError> {
        // A failing hook takes the commit with it: the transaction rolls back when dropped.
        (self.on_commit)()?;
        self.inner.commit()
    }
}

impl Metadata for HookedMeta {
    fn read(&self) -> Result<Box<dyn ReadTx + '_>, MetaError> {
        (self.on_begin)()?;
        self.inner.read()
    }
    fn write(&self) -> Result<Box<dyn WriteTx + '_>, MetaError> {
        (self.on_begin)()?;
        Ok(Box::new(HookedTx {
            inner: self.inner.write()?,
            on_commit: self.on_commit.clone(),
        }))
    }
    fn backup(&self, dest: &Path) -> Result<(), MetaError> {
        self.inner.backup(dest)
    }
    fn describe(&self) -> String {
        "hooked metadata".into()
    }
}
