//! Objects: put, get (whole or by range), head, delete — the data path of docs/FORMAT.md with
//! the object table of docs/METADATA.md.
//!
//! PUT: pick the protection from the bucket's policy (its bucket key, or the customer's key
//! for SSE-C, or clear for a bucket created with encryption off) → a fresh data key and its
//! envelope → a fresh random object id → seal the data into a new data file and sync it →
//! commit the object's row in one transaction. The commit is the moment the object becomes
//! visible; an overwrite swaps the row in that same commit and removes the old data file only
//! afterwards. A crash anywhere leaves the old or the new object, never a mix: before the
//! commit the new file is an unreferenced orphan (`fsck --repair` removes it); after it, the
//! old file is. A file is removed only when the commit's outcome is known: when the
//! connection to a database server is lost during a put's commit
//! ([`MetaError::CommitUnknown`]), the row may exist, so the new file is kept (and the old
//! one too) and the put fails with [`Error::PutOutcomeUnknown`].
//!
//! GET: read the row → unwrap the envelope → verify the sealed user metadata → read only the
//! chunks asked for, each released after its tag verified.

use std::io::{self, Read};
use std::sync::Arc;

use dare_engine::format::v1;
use dare_engine::{
    FileLoc, ObjectIdentity, ObjectOpener, ObjectParams, ObjectReader, ObjectSealer, OpenError,
    Protection, Suite,
};
use dare_envelope::{DataKey, Envelope, KeyError, KeyKind, KeyProvider, Secret32};
use dare_keys::{CustomerKeyProvider, HierarchyBlock, HierarchyProvider, NoCustomerKey};
use dare_metadata::{BucketRecord, By, MetaError, ObjectRecord, read_with, write_with};

use crate::Dare;
use crate::error::Error;

/// How to write an object.
#[derive(Debug, Default, Clone)]
pub struct PutOptions {
    /// User metadata (key/value pairs), stored encrypted with the object.
    pub meta: Vec<(String, String)>,
    /// A customer-supplied key (SSE-C): the object's data key is wrapped under a key derived
    /// from it, and reading it needs the same key. Never stored.
    pub customer_key: Option<Secret32>,
}

/// How to read an object.
#[derive(Debug, Default, Clone)]
pub struct GetOptions {
    /// The customer key of an SSE-C object. Giving one for an object that has none is an
    /// error, as in S3.
    pub customer_key: Option<Secret32>,
}

/// How an object's data key is protected, as its row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRef {
    /// Stored in clear.
    None,
    /// Wrapped under the virtual bucket key of `rotation_version` (KEYS.md §4.2).
    Hierarchy {
        /// Namespace id.
        namespace_id: u64,
        /// Bucket id.
        bucket_id: u64,
        /// Rotation key version.
        rotation_version: u32,
    },
    /// Wrapped under a key derived from a customer-supplied key (SSE-C).
    CustomerKey,
    /// An envelope of another kind (or malformed).
    Other(u8),
}

/// What the object table says about an object (no key needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Bucket name.
    pub bucket: String,
    /// Object name.
    pub name: String,
    /// The object's random id (names its data file).
    pub object_id: [u8; 16],
    /// Plaintext size.
    pub size: u64,
    /// Bytes its data file takes (None for a format-1 file, whose header length varies).
    pub stored_size: Option<u64>,
    /// Chunk size.
    pub chunk_size: u64,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
    /// The entity tag.
    pub etag: String,
    /// Object format (1 or 2).
    pub format: u8,
    /// Whether the data is encrypted.
    pub encrypted: bool,
    /// What protects the data key.
    pub key_ref: KeyRef,
    /// SSE-KMS: the customer master key and the version that wrap the bucket key now (as S3
    /// shows `x-amz-server-side-encryption-aws-kms-key-id`).
    pub kms_key: Option<(String, u32)>,
}

/// An object opened for reading: metadata verified, data key ready.
#[derive(Debug)]
pub struct Object {
    info: ObjectInfo,
    reader: ObjectReader,
}

impl Object {
    /// What the object table says.
    pub fn info(&self) -> &ObjectInfo {
        &self.info
    }
    /// Plaintext size.
    pub fn size(&self) -> u64 {
        self.reader.size()
    }
    /// The decrypted, verified user metadata.
    pub fn meta(&self) -> &[(String, String)] {
        self.reader.meta()
    }
    /// Reads the whole object, passing verified plaintext to `sink` in order.
    pub fn read_all(&self, sink: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> Result<(), Error> {
        Ok(self.reader.read_all(sink)?)
    }
    /// Reads `len` bytes at `offset` (decrypting only the chunks that cover them).
    pub fn read_range(
        &self,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), Error> {
        Ok(self.reader.read_range(offset, len, sink)?)
    }
    /// The whole object in memory.
    pub fn to_vec(&self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(usize::try_from(self.size()).unwrap_or(0));
        match self.read_all(&mut |p| {
            out.extend_from_slice(p);
            Ok(())
        }) {
            Ok(()) => Ok(out),
            Err(e) => {
                zeroize::Zeroize::zeroize(&mut out);
                Err(e)
            }
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn key_ref_of(row: &ObjectRecord) -> KeyRef {
    match (row.envelope_kind, row.envelope.as_deref()) {
        (None, _) | (_, None) => KeyRef::None,
        (Some(k), Some(bytes)) => match KeyKind::from_byte(k) {
            Some(KeyKind::Hierarchy) => match HierarchyBlock::parse(bytes) {
                Ok(b) => KeyRef::Hierarchy {
                    namespace_id: b.ns_id,
                    bucket_id: b.bucket_id,
                    rotation_version: b.rotation_version,
                },
                Err(_) => KeyRef::Other(k),
            },
            Some(KeyKind::CustomerKey) => KeyRef::CustomerKey,
            _ => KeyRef::Other(k),
        },
    }
}

pub(crate) fn info_of(bucket: &str, row: &ObjectRecord) -> ObjectInfo {
    let chunk_shift = row.chunk_shift.min(63);
    let stored_size = (row.format == dare_engine::format::v2::VERSION).then(|| {
        let body = if row.suite == Suite::Aes256Gcm.id() {
            dare_engine::format::Geometry::body_len(chunk_shift, row.size).unwrap_or(u64::MAX)
        } else {
            row.size
        };
        body.saturating_add(dare_engine::format::v2::HEADER_LEN as u64)
    });
    ObjectInfo {
        bucket: bucket.to_owned(),
        name: row.name.clone(),
        object_id: row.object_id,
        size: row.size,
        stored_size,
        chunk_size: 1 << chunk_shift,
        created_ms: row.created_ms,
        etag: row.etag.clone(),
        format: row.format,
        encrypted: row.suite != Suite::Plaintext.id(),
        key_ref: key_ref_of(row),
        kms_key: None,
    }
}

/// The CMK id and version of an SSE-KMS bucket's key.
pub(crate) fn kms_key_of(b: &BucketRecord) -> Option<(String, u32)> {
    b.kms_key_id.as_ref()?;
    b.wrapped_key
        .as_deref()
        .and_then(dare_kms::bucket_key_version)
}

fn envelope_of(row: &ObjectRecord) -> Option<Envelope> {
    match (row.envelope_kind, &row.envelope) {
        (Some(k), Some(b)) => KeyKind::from_byte(k).map(|kind| Envelope {
            kind,
            bytes: b.clone(),
        }),
        _ => None,
    }
}

/// The ETag of a multipart object without its `-N` suffix (what the engine computed).
fn etag_without_parts(etag: &str) -> &str {
    match etag.rsplit_once('-') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => base,
        _ => etag,
    }
}

/// Objects whose data file is at most this long are read whole by any GET of them: their
/// file is prefetched when opened.
const PREFETCH_MAX: u64 = 256 << 10;

/// Starts reading a small object's data file while the GET unwraps its key and verifies its
/// metadata, so that work overlaps the drive's latency instead of preceding it (measured:
/// docs/PERFORMANCE.md §10). Objects in clear get the same hint, so both pay the same
/// system call. Larger objects are not prefetched: a range GET would read other bytes.
fn prefetch_small(file: &dyn dare_engine::DataFile, info: &ObjectInfo) {
    if let Some(len) = info.stored_size.filter(|&n| n <= PREFETCH_MAX) {
        file.prefetch(0, len);
    }
}

fn loc_of(row: &ObjectRecord) -> FileLoc {
    FileLoc {
        bucket_id: row.bucket_id,
        object_id: row.object_id,
    }
}

/// Opens any envelope an object of one bucket can carry.
struct ReadKeys {
    hierarchy: Option<HierarchyProvider>,
    customer: Option<CustomerKeyProvider>,
}

impl KeyProvider for ReadKeys {
    fn new_data_key(&self) -> Result<(DataKey, Envelope), KeyError> {
        Err(KeyError::Provider("read-only provider".into()))
    }

    fn open_data_key(&self, env: &Envelope) -> Result<DataKey, KeyError> {
        match (env.kind, &self.hierarchy, &self.customer) {
            (KeyKind::CustomerKey, _, Some(c)) => c.open_data_key(env),
            (KeyKind::CustomerKey, _, None) => NoCustomerKey.open_data_key(env),
            (KeyKind::Hierarchy, Some(h), _) => h.open_data_key(env),
            (KeyKind::Hierarchy, None, _) => Err(KeyError::Provider(
                "object carries a bucket-key envelope but its bucket is unencrypted".into(),
            )),
            (kind, _, _) => Err(KeyError::WrongKind {
                expected: KeyKind::Hierarchy.to_byte(),
                found: kind.to_byte(),
            }),
        }
    }
}

impl Dare {
    fn bucket_record(&self, name: &str) -> Result<BucketRecord, Error> {
        read_with(&*self.meta, |tx| tx.bucket(By::Name(name)))?
            .ok_or_else(|| Error::NoSuchBucket(name.into()))
    }

    pub(crate) fn hierarchy(&self, b: &BucketRecord) -> Result<HierarchyProvider, Error> {
        Ok(HierarchyProvider::new(
            self.keys.clone(),
            b,
            self.key_cache,
        )?)
    }

    /// Stores an object read from `data` as `bucket/name`, replacing any previous object of
    /// that name only once the new one is complete and durable. Encrypted per the bucket's
    /// policy (or under the customer key, SSE-C).
    pub fn put(
        &self,
        bucket: &str,
        name: &str,
        data: &mut dyn Read,
        opts: &PutOptions,
    ) -> Result<ObjectInfo, Error> {
        self.put_inner(bucket, name, data, opts, None)
    }

    /// As [`put`](Self::put), for an object assembled from `parts` parts (an S3 multipart
    /// upload): its ETag gets S3's `-N` suffix (FORMAT.md §7); readers strip the suffix
    /// before checking a clear object's checksum.
    pub fn put_multipart(
        &self,
        bucket: &str,
        name: &str,
        data: &mut dyn Read,
        opts: &PutOptions,
        parts: u32,
    ) -> Result<ObjectInfo, Error> {
        self.put_inner(bucket, name, data, opts, Some(parts))
    }

    fn put_inner(
        &self,
        bucket: &str,
        name: &str,
        data: &mut dyn Read,
        opts: &PutOptions,
        parts: Option<u32>,
    ) -> Result<ObjectInfo, Error> {
        dare_engine::format::check_object_name(name).map_err(|e| Error::InvalidName {
            what: "object",
            reason: match e {
                dare_engine::FormatError::BadName(why) => why.to_string(),
                e => e.to_string(),
            },
        })?;
        // The limits of FORMAT.md §5, as a validation error rather than a format error.
        if let Err(e) = dare_engine::format::encode_meta(&opts.meta) {
            return Err(Error::InvalidArgument(format!(
                "user metadata refused: {} (limits: 65535 entries, keys non-empty, each key and \
                 value up to 65535 bytes, 64 KiB encoded in all)",
                match e {
                    dare_engine::FormatError::Invalid(why) => why.to_string(),
                    e => e.to_string(),
                }
            )));
        }
        let mut keys: Vec<&str> = opts.meta.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::InvalidArgument(format!(
                "user metadata key {:?} is given twice",
                crate::error::printable(w[0])
            )));
        }
        let b = self.bucket_record(bucket)?;
        let (key, envelope) = match &opts.customer_key {
            Some(ck) => {
                let (dk, env) = CustomerKeyProvider::new(ck.clone()).new_data_key()?;
                (Some(dk), Some(env))
            }
            None if b.encryption => {
                let (dk, env) = self.hierarchy(&b)?.new_data_key()?;
                (Some(dk), Some(env))
            }
            None => (None, None),
        };
        let protection = match &key {
            Some(dk) => Protection::Encrypted(dk),
            None => Protection::Clear,
        };
        let object_id = crate::layout::random_id()?;
        let id = ObjectIdentity {
            store_id: self.store_id,
            bucket_id: b.id,
            object_id,
            name,
        };
        let mut sealer = ObjectSealer::new(
            &id,
            protection,
            self.chunk_shift,
            self.data.config().backend,
        )?;
        let meta = sealer.seal_meta(&opts.meta)?;
        let loc = FileLoc {
            bucket_id: b.id,
            object_id,
        };
        let written = self.data.write(&loc, &mut sealer, data)?;
        let row = ObjectRecord {
            bucket_id: b.id,
            name: name.to_owned(),
            object_id,
            size: written.size,
            created_ms: now_ms(),
            etag: match parts {
                Some(n) => format!("{}-{n}", written.etag),
                None => written.etag,
            },
            format: dare_engine::format::v2::VERSION,
            suite: sealer.suite().id(),
            chunk_shift: self.chunk_shift,
            nonce_prefix: sealer.nonce_prefix(),
            envelope_kind: envelope.as_ref().map(|e| e.kind.to_byte()),
            envelope: envelope.map(|e| e.bytes),
            meta,
            row_version: 1,
        };
        let committed = write_with(&*self.meta, Error::is_retryable, |tx| {
            // The bucket may have been deleted (and its name reused) while we wrote.
            match tx.bucket(By::Id(b.id))? {
                Some(now) if now.name == b.name => {}
                _ => return Err(Error::NoSuchBucket(bucket.into())),
            }
            Ok(tx.put_object(&row)?)
        });
        let old = match committed {
            Ok(old) => old,
            // The connection was lost during the commit: the row may name the new file now
            // (or soon: a commit the server still has in hand), so it must stay. If the
            // commit did not happen, the file is garbage for `fsck --repair`.
            Err(Error::Metadata(source @ MetaError::CommitUnknown(_))) => {
                return Err(Error::PutOutcomeUnknown {
                    bucket: bucket.into(),
                    name: name.into(),
                    source,
                });
            }
            // Anything else rolled the transaction back: no row names the file.
            Err(e) => {
                let _ = self.data.remove(&loc);
                return Err(e);
            }
        };
        if let Some(old) = old {
            self.opened.forget(old.bucket_id, &old.object_id);
            // Best effort: a failure leaves an orphan that `fsck --repair` removes.
            let _ = self.data.remove(&loc_of(&old));
        }
        let mut info = info_of(bucket, &row);
        info.stored_size = Some(written.stored_size);
        Ok(info)
    }

    /// What the object table says about `bucket/name` (no key needed; the user metadata is
    /// encrypted, [`get`](Self::get) returns it).
    pub fn head(&self, bucket: &str, name: &str) -> Result<ObjectInfo, Error> {
        let (b, row) = self.row(bucket, name)?;
        let mut info = info_of(bucket, &row);
        info.kms_key = kms_key_of(&b);
        Ok(info)
    }

    fn row(&self, bucket: &str, name: &str) -> Result<(BucketRecord, ObjectRecord), Error> {
        read_with(&*self.meta, |tx| {
            let b = tx
                .bucket(By::Name(bucket))?
                .ok_or_else(|| Error::NoSuchBucket(bucket.into()))?;
            let row = tx.object(b.id, name)?.ok_or_else(|| Error::NoSuchObject {
                bucket: bucket.into(),
                name: name.into(),
            })?;
            Ok((b, row))
        })
    }

    /// Opens `bucket/name` for reading: unwraps its data key and verifies its metadata. In a
    /// bucket created encrypted, an object stored in clear is refused (it can only be a
    /// replaced record or file).
    pub fn get(&self, bucket: &str, name: &str, opts: &GetOptions) -> Result<Object, Error> {
        // An overwrite between reading the row and opening its data file removes that file;
        // then the row has changed and we read the new one.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let (b, row) = self.row(bucket, name)?;
            match self.open_row(&b, &row, opts) {
                Err(Error::DataFileMissing { .. }) if attempts < 3 => {
                    let (_, now) = self.row(bucket, name)?;
                    if now.object_id == row.object_id {
                        return Err(Error::DataFileMissing {
                            bucket: bucket.into(),
                            name: name.into(),
                        });
                    }
                }
                r => return r,
            }
        }
    }

    /// Opens an object from its row (also used by fsck).
    pub(crate) fn open_row(
        &self,
        b: &BucketRecord,
        row: &ObjectRecord,
        opts: &GetOptions,
    ) -> Result<Object, Error> {
        let info = info_of(&b.name, row);
        if b.encryption && row.suite == Suite::Plaintext.id() {
            return Err(Error::NotEncrypted {
                bucket: b.name.clone(),
                name: row.name.clone(),
            });
        }
        let envelope = envelope_of(row);
        let is_sse_c = envelope.as_ref().map(|e| e.kind) == Some(KeyKind::CustomerKey);
        if opts.customer_key.is_some() && !is_sse_c {
            return Err(Error::CustomerKeyNotApplicable {
                bucket: b.name.clone(),
                name: row.name.clone(),
            });
        }
        // A hot object's opener is reused while its row and the key epoch are unchanged
        // (`opened`): bucket-key objects of format 2 only, with the derived-key cache on.
        let cached = (row.format != v1::VERSION
            && b.encryption
            && row.bucket_id == b.id
            && row.suite == Suite::Aes256Gcm.id()
            && envelope.as_ref().map(|e| e.kind) == Some(KeyKind::Hierarchy))
        .then(|| self.keys.key_epoch());
        if let Some(opener) = cached.and_then(|epoch| self.opened.get(epoch, row)) {
            let file = self.data.open_file(&loc_of(row)).map_err(|e| match e {
                dare_engine::StoreError::DataFileMissing(_) => Error::DataFileMissing {
                    bucket: b.name.clone(),
                    name: row.name.clone(),
                },
                e => e.into(),
            })?;
            prefetch_small(&*file, &info);
            let reader = ObjectReader::new(file, opener, self.data.config().batch_bytes)?;
            return Ok(Object { info, reader });
        }
        let keys = ReadKeys {
            hierarchy: if b.encryption {
                Some(self.hierarchy(b)?)
            } else {
                None
            },
            customer: opts.customer_key.clone().map(CustomerKeyProvider::new),
        };
        let missing = |e: dare_engine::StoreError| match e {
            dare_engine::StoreError::DataFileMissing(_) => Error::DataFileMissing {
                bucket: b.name.clone(),
                name: row.name.clone(),
            },
            e => e.into(),
        };
        let file = self.data.open_file(&loc_of(row)).map_err(missing)?;
        prefetch_small(&*file, &info);
        let batch = self.data.config().batch_bytes;
        let backend = self.data.config().backend;
        let opener = if row.format == v1::VERSION {
            let len = file.len().map_err(OpenError::Io)?;
            let o = ObjectOpener::open_v1(&*file, len, Some(&keys), backend)?;
            if o.v1_header().map(|h| h.name.as_str()) != Some(row.name.as_str()) {
                return Err(Error::Open(OpenError::Format(
                    dare_engine::FormatError::Invalid(
                        "format-1 data file names another object (file was swapped)",
                    ),
                )));
            }
            if b.encryption && !o.is_encrypted() {
                return Err(Error::NotEncrypted {
                    bucket: b.name.clone(),
                    name: row.name.clone(),
                });
            }
            // The row's copies of the header's fields must agree with the (authenticated)
            // header, or listings and HEAD would describe another object than GET returns.
            let h = o.v1_header().ok_or(OpenError::HeaderMismatch)?;
            let agrees = h.suite.id() == row.suite
                && h.chunk_shift == row.chunk_shift
                && h.nonce_prefix == row.nonce_prefix
                && h.key_block.as_ref().map(|k| k.kind.to_byte()) == row.envelope_kind
                && h.key_block.as_ref().map(|k| &k.bytes) == row.envelope.as_ref()
                && o.plaintext_len() == row.size;
            if !agrees {
                return Err(Error::Open(OpenError::HeaderMismatch));
            }
            Arc::new(o.with_clear_checksum(&row.etag)?)
        } else {
            let suite = Suite::from_id(row.suite).ok_or(OpenError::Format(
                dare_engine::FormatError::UnknownSuite(row.suite),
            ))?;
            let dk = match (&envelope, suite) {
                (Some(env), Suite::Aes256Gcm) => Some(keys.open_data_key(env)?),
                (None, Suite::Aes256Gcm) => {
                    return Err(Error::Key(KeyError::Malformed(
                        "encrypted object without an envelope",
                    )));
                }
                _ => None,
            };
            let id = ObjectIdentity {
                store_id: self.store_id,
                bucket_id: b.id,
                object_id: row.object_id,
                name: &row.name,
            };
            let opener = Arc::new(ObjectOpener::new(
                &id,
                &ObjectParams {
                    suite,
                    chunk_shift: row.chunk_shift,
                    nonce_prefix: row.nonce_prefix,
                    size: row.size,
                    meta_block: &row.meta,
                    etag: etag_without_parts(&row.etag),
                },
                dk.as_ref(),
                backend,
            )?);
            if let Some(epoch) = cached {
                self.opened.insert(epoch, row, opener.clone());
            }
            opener
        };
        let reader = ObjectReader::new(file, opener, batch)?;
        Ok(Object { info, reader })
    }

    /// Deletes `bucket/name`: its row goes in one transaction, then its data file. The file
    /// is removed only after a commit that is known to have happened: when the connection to
    /// the database is lost during the commit ([`Error::is_outcome_unknown`]), the row may
    /// still be there and name the file.
    pub fn delete(&self, bucket: &str, name: &str) -> Result<(), Error> {
        let row = write_with(&*self.meta, Error::is_retryable, |tx| {
            let b = tx
                .bucket(By::Name(bucket))?
                .ok_or_else(|| Error::NoSuchBucket(bucket.into()))?;
            tx.delete_object(b.id, name)?
                .ok_or_else(|| Error::NoSuchObject {
                    bucket: bucket.into(),
                    name: name.into(),
                })
        })?;
        self.opened.forget(row.bucket_id, &row.object_id);
        // Best effort: a failure leaves an orphan that `fsck --repair` removes.
        let _ = self.data.remove(&loc_of(&row));
        Ok(())
    }
}
