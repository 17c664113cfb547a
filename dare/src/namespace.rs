//! Namespaces and buckets, and their encryption policy (ECS D@RE §2.1).
//!
//! Every namespace and bucket is encrypted unless encryption is turned off when it is
//! created, and the setting never changes afterwards: an encrypted namespace refuses
//! unencrypted buckets, and a bucket inherits its namespace's setting unless told otherwise.
//! Each namespace has its own namespace key and each encrypted bucket its own bucket key,
//! both stored wrapped in the resource table. Deleting a bucket deletes its wrapped bucket key
//! with its rows (crypto-shredding: its data files can never be decrypted again, even from a
//! backup of the data files).

use dare_metadata::{By, MetaError, NewBucket, NewNamespace, read_with, write_with};

use crate::Dare;
use crate::error::Error;

/// A namespace (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// Id, allocated by the database, never reused.
    pub id: u64,
    /// Unique name.
    pub name: String,
    /// Whether its buckets are encrypted by default (and must be, when true).
    pub encryption: bool,
    /// Creation time, Unix seconds.
    pub created: u64,
}

/// A bucket (no key material).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Id, allocated by the database, never reused.
    pub id: u64,
    /// Unique name across the store, as S3 bucket names.
    pub name: String,
    /// Its namespace's id.
    pub namespace_id: u64,
    /// Its namespace's name.
    pub namespace: String,
    /// Whether its objects are encrypted (fixed at creation).
    pub encryption: bool,
    /// SSE-KMS: the customer master key (id) that wraps its bucket key.
    pub kms_key_id: Option<String>,
    /// Creation time, Unix seconds.
    pub created: u64,
}

/// Checks a namespace or bucket name: 1–255 characters of `A-Z a-z 0-9 . _ -`, not `.` or
/// `..` (they appear in URLs and messages; object names are free-form).
pub fn check_name(what: &'static str, name: &str) -> Result<(), Error> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 255 || !name.chars().all(ok) || name == "." || name == ".." {
        return Err(Error::InvalidName {
            what,
            reason: format!(
                "{:?} must be 1-255 characters of A-Z a-z 0-9 . _ - (and not . or ..)",
                crate::error::printable(name)
            ),
        });
    }
    Ok(())
}

/// Checks a new bucket's name against S3's rules for bucket names, so that every bucket can
/// be served by an S3 endpoint and named in a virtual-hosted URL: 3–63 characters of
/// lowercase letters, digits, `.` and `-`; beginning and ending with a letter or digit; no
/// `..`; not an IPv4 address; not beginning with `xn--`, `sthree-` or `amzn-s3-demo-`; not
/// ending with `-s3alias`, `--ol-s3`, `.mrap`, `--x-s3` or `--table-s3`. (Buckets created
/// before this rule keep their names.)
pub fn check_bucket_name(name: &str) -> Result<(), Error> {
    let bad = |why: &str| Error::InvalidName {
        what: "bucket",
        reason: format!(
            "{:?}: {why} (S3's bucket naming rules: 3-63 characters of a-z 0-9 . -, \
             beginning and ending with a letter or digit)",
            crate::error::printable(name)
        ),
    };
    if !(3..=63).contains(&name.len()) {
        return Err(bad("a bucket name has 3 to 63 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'))
    {
        return Err(bad(&format!(
            "{:?} is not allowed: only lowercase letters, digits, . and -",
            c.escape_debug().to_string()
        )));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(name.chars().next()) || !alnum(name.chars().last()) {
        return Err(bad("it must begin and end with a letter or digit"));
    }
    if name.contains("..") {
        return Err(bad("it must not hold two adjacent periods"));
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(bad("it must not be formatted as an IP address"));
    }
    for p in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(p) {
            return Err(bad(&format!("the prefix {p} is reserved")));
        }
    }
    for x in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(x) {
            return Err(bad(&format!("the suffix {x} is reserved")));
        }
    }
    Ok(())
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Dare {
    /// Creates a namespace with its own namespace key, wrapped under the active master key.
    /// `encryption` is fixed for the namespace's life.
    pub fn create_namespace(&self, name: &str, encryption: bool) -> Result<Namespace, Error> {
        check_name("namespace", name)?;
        let created = now();
        loop {
            let (master_version, wrapped_key) = self.keys.new_namespace_key()?;
            let r = write_with(&*self.meta, Error::is_retryable, |tx| {
                // A rotation that switched the active master key since the key was wrapped
                // could already have finished its rewrap step: wrap again under the new one.
                let active = tx.store()?.map(|s| s.active_master);
                if active != Some(master_version) {
                    return Ok(None);
                }
                let id = tx
                    .insert_namespace(&NewNamespace {
                        id: None,
                        name: name.to_owned(),
                        encryption,
                        master_version,
                        wrapped_key: wrapped_key.clone(),
                        created,
                    })
                    .map_err(|e| match e {
                        MetaError::AlreadyExists { .. } => Error::NamespaceExists(name.into()),
                        e => e.into(),
                    })?;
                Ok(Some(id))
            })?;
            match r {
                Some(id) => {
                    return Ok(Namespace {
                        id,
                        name: name.to_owned(),
                        encryption,
                        created,
                    });
                }
                None => {
                    self.keys.refresh()?;
                }
            }
        }
    }

    /// Deletes an empty namespace and its namespace key.
    pub fn delete_namespace(&self, name: &str) -> Result<(), Error> {
        write_with(&*self.meta, Error::is_retryable, |tx| {
            let ns = tx
                .namespace(By::Name(name))?
                .ok_or_else(|| Error::NoSuchNamespace(name.into()))?;
            let buckets = tx.buckets(Some(ns.id))?.len() as u64;
            if buckets > 0 {
                return Err(Error::NamespaceNotEmpty {
                    name: name.into(),
                    buckets,
                });
            }
            tx.delete_namespace(ns.id)?;
            Ok(())
        })?;
        self.shred_logs()
    }

    /// The namespace called `name`.
    pub fn namespace(&self, name: &str) -> Result<Namespace, Error> {
        read_with(&*self.meta, |tx| tx.namespace(By::Name(name)))?
            .map(|n| Namespace {
                id: n.id,
                name: n.name,
                encryption: n.encryption,
                created: n.created,
            })
            .ok_or_else(|| Error::NoSuchNamespace(name.into()))
    }

    /// Every namespace, by id.
    pub fn namespaces(&self) -> Result<Vec<Namespace>, Error> {
        Ok(read_with(&*self.meta, |tx| tx.namespaces())?
            .into_iter()
            .map(|n| Namespace {
                id: n.id,
                name: n.name,
                encryption: n.encryption,
                created: n.created,
            })
            .collect())
    }

    /// Creates a bucket in `namespace`. `encryption` defaults to the namespace's setting; an
    /// encrypted namespace refuses an unencrypted bucket. An encrypted bucket gets its own
    /// bucket key, wrapped under the namespace key.
    pub fn create_bucket(
        &self,
        name: &str,
        namespace: &str,
        encryption: Option<bool>,
    ) -> Result<Bucket, Error> {
        check_bucket_name(name)?;
        let ns = read_with(&*self.meta, |tx| tx.namespace(By::Name(namespace)))?
            .ok_or_else(|| Error::NoSuchNamespace(namespace.into()))?;
        let encrypted = encryption.unwrap_or(ns.encryption);
        if ns.encryption && !encrypted {
            return Err(Error::EncryptionPolicy(format!(
                "namespace {namespace} is encrypted, so its buckets must be; create the bucket \
                 in a namespace created with encryption off"
            )));
        }
        let wrapped_key = if encrypted {
            Some(self.keys.new_bucket_key(&ns)?)
        } else {
            None
        };
        let created = now();
        let id = write_with(&*self.meta, Error::is_retryable, |tx| {
            tx.insert_bucket(&NewBucket {
                id: None,
                name: name.to_owned(),
                namespace_id: ns.id,
                encryption: encrypted,
                wrapped_key: wrapped_key.clone(),
                kms_key_id: None,
                created,
            })
            .map_err(|e| match e {
                MetaError::AlreadyExists { .. } => Error::BucketExists(name.into()),
                MetaError::InUse(_) => Error::NoSuchNamespace(namespace.into()),
                e => e.into(),
            })
        })?;
        Ok(Bucket {
            id,
            name: name.to_owned(),
            namespace_id: ns.id,
            namespace: ns.name,
            encryption: encrypted,
            kms_key_id: None,
            created,
        })
    }

    /// Creates an SSE-KMS bucket in `namespace` (KMS.md §4): its bucket key is wrapped under
    /// the current version of customer master key `kms_key` (id or alias; the default master
    /// key `dare/default`, created on first use, when `None`) and the bucket is registered
    /// with that key, in the transaction that inserts the bucket. Objects then need no call
    /// to the key management service; a rotation of the key rewraps the bucket key.
    pub fn create_bucket_kms(
        &self,
        name: &str,
        namespace: &str,
        kms_key: Option<&str>,
    ) -> Result<Bucket, Error> {
        check_bucket_name(name)?;
        let ns = read_with(&*self.meta, |tx| tx.namespace(By::Name(namespace)))?
            .ok_or_else(|| Error::NoSuchNamespace(namespace.into()))?;
        if read_with(&*self.meta, |tx| tx.bucket(By::Name(name)))?.is_some() {
            return Err(Error::BucketExists(name.into()));
        }
        let key = match kms_key {
            Some(k) => k.to_string(),
            None => self.kms.default_key()?.key_id,
        };
        let bk = dare_keys::Secret32::generate("bucket key")?;
        let created = now();
        let (id, key_id) = write_with(&*self.meta, Error::is_retryable, |tx| {
            let (key_id, _version, wrapped) = self.kms.wrap_bucket_key_in(tx, &key, name, &bk)?;
            let id = tx
                .insert_bucket(&NewBucket {
                    id: None,
                    name: name.to_owned(),
                    namespace_id: ns.id,
                    encryption: true,
                    wrapped_key: Some(wrapped),
                    kms_key_id: Some(key_id.clone()),
                    created,
                })
                .map_err(|e| match e {
                    MetaError::AlreadyExists { .. } => Error::BucketExists(name.into()),
                    MetaError::InUse(_) => Error::NoSuchNamespace(namespace.into()),
                    e => e.into(),
                })?;
            Ok((id, key_id))
        })?;
        Ok(Bucket {
            id,
            name: name.to_owned(),
            namespace_id: ns.id,
            namespace: ns.name,
            encryption: true,
            kms_key_id: Some(key_id),
            created,
        })
    }

    /// Deletes a bucket. Refused while it holds objects unless `force`; with `force` its
    /// objects go with it. The bucket key is destroyed in the same transaction, so the data
    /// files can never be read again even if a copy of them survives; then the files are
    /// removed. Returns how many objects were deleted.
    pub fn delete_bucket(&self, name: &str, force: bool) -> Result<u64, Error> {
        let (id, count) = write_with(&*self.meta, Error::is_retryable, |tx| {
            let b = tx
                .bucket(By::Name(name))?
                .ok_or_else(|| Error::NoSuchBucket(name.into()))?;
            let objects = tx.object_count(b.id)?;
            if objects > 0 && !force {
                return Err(Error::BucketNotEmpty {
                    name: name.into(),
                    objects,
                });
            }
            let n = tx.delete_bucket(b.id)?;
            if let Some(kid) = &b.kms_key_id {
                // The key no longer protects it (the bucket key is destroyed with the row).
                tx.delete_kms_registration(kid, &dare_kms::bucket_resource(name))?;
            }
            Ok((b.id, n))
        })?;
        // The bucket key is destroyed: no opened object of the bucket may outlive it here.
        self.opened.forget_bucket(id);
        self.shred_logs()?;
        self.data
            .volume()
            .remove_bucket(id)
            .map_err(|e| Error::Data(e.into()))?;
        Ok(count)
    }

    /// Changes the encryption of an *empty* encrypted bucket between SSE-S3 (`kms_key` None:
    /// a bucket key under the namespace key) and SSE-KMS (`kms_key`: a customer master key
    /// id or alias). Refused with [`Error::BucketNotEmpty`] once the bucket holds objects
    /// (including an S3 server's incomplete multipart uploads): the policy is fixed once
    /// there is data, as ECS fixes it at creation. A bucket created with encryption off
    /// stays off ([`Error::EncryptionPolicy`]). Asking for the policy it has is a no-op.
    ///
    /// The bucket is deleted (refused if not empty, atomically) and created again with the
    /// new policy and the same name and namespace, so it gets a new id and a fresh bucket
    /// key and no cached key of the old one can ever serve it. Between the two steps the
    /// bucket does not exist: a concurrent put fails with no such bucket, and a crash there
    /// leaves no bucket (it was empty, so no object is lost). Returns the bucket as it is now.
    pub fn set_bucket_encryption(
        &self,
        name: &str,
        kms_key: Option<&str>,
    ) -> Result<Bucket, Error> {
        let b = self.bucket(name)?;
        if !b.encryption {
            return Err(Error::EncryptionPolicy(format!(
                "bucket {name} was created with encryption off, and encryption never changes \
                 once a bucket exists"
            )));
        }
        let want = match kms_key {
            Some(k) => Some(self.kms.describe(k)?.key_id),
            None => None,
        };
        if want == b.kms_key_id {
            return Ok(b);
        }
        self.delete_bucket(name, false)?;
        match &want {
            Some(k) => self.create_bucket_kms(name, &b.namespace, Some(k)),
            None => self.create_bucket(name, &b.namespace, Some(true)),
        }
    }

    /// The bucket called `name`.
    pub fn bucket(&self, name: &str) -> Result<Bucket, Error> {
        read_with(&*self.meta, |tx| {
            let Some(b) = tx.bucket(By::Name(name))? else {
                return Ok(None);
            };
            let ns = tx
                .namespace(By::Id(b.namespace_id))?
                .map(|n| n.name)
                .unwrap_or_default();
            Ok::<_, Error>(Some(bucket_view(b, ns)))
        })?
        .ok_or_else(|| Error::NoSuchBucket(name.into()))
    }

    /// Every bucket (of one namespace, if given), by id.
    pub fn buckets(&self, namespace: Option<&str>) -> Result<Vec<Bucket>, Error> {
        read_with(&*self.meta, |tx| {
            let filter = match namespace {
                Some(n) => Some(
                    tx.namespace(By::Name(n))?
                        .ok_or_else(|| Error::NoSuchNamespace(n.into()))?
                        .id,
                ),
                None => None,
            };
            let names: std::collections::HashMap<u64, String> = tx
                .namespaces()?
                .into_iter()
                .map(|n| (n.id, n.name))
                .collect();
            Ok(tx
                .buckets(filter)?
                .into_iter()
                .map(|b| {
                    let ns = names.get(&b.namespace_id).cloned().unwrap_or_default();
                    bucket_view(b, ns)
                })
                .collect())
        })
    }
}

fn bucket_view(b: dare_metadata::BucketRecord, namespace: String) -> Bucket {
    Bucket {
        id: b.id,
        name: b.name,
        namespace_id: b.namespace_id,
        namespace,
        encryption: b.encryption,
        kms_key_id: b.kms_key_id,
        created: b.created,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3() {
        for ok in [
            "abc",
            "photos-2026",
            "a.b-c",
            "192.168.1",
            &"x".repeat(63),
            "1ab",
        ] {
            check_bucket_name(ok).unwrap();
        }
        let long = "x".repeat(64);
        for bad in [
            "ab",
            &long,
            "Abc",
            "ab_c",
            "-abc",
            "abc-",
            ".abc",
            "abc.",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "sthree-x",
            "amzn-s3-demo-x",
            "abc-s3alias",
            "abc--ol-s3",
            "abc.mrap",
            "abc--x-s3",
            "abc--table-s3",
            "a b",
            "abé",
            "ab\nc",
            "a/b",
        ] {
            let e = check_bucket_name(bad).unwrap_err();
            assert!(
                matches!(e, Error::InvalidName { what: "bucket", .. }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names() {
        for ok in ["a", "photos-2026", "A.b_c", &"x".repeat(255)] {
            check_name("bucket", ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(256), "a\nb"] {
            assert!(check_name("bucket", bad).is_err(), "{bad:?}");
        }
    }
}
