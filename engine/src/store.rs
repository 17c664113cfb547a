//! [`ObjectStore`]: objects in buckets on a directory, written durably and published
//! atomically.
//!
//! Layout: `<root>/dare-store.conf` (format and chunk size), `<root>/buckets/<bucket>/<key>`
//! (one file per object, in the format of docs/FORMAT.md). A put writes a temporary file
//! `.dare-tmp-*` in the bucket directory, syncs it (`fdatasync`), renames it over the object
//! name and syncs the directory: a crash leaves either the old object or the new one, never
//! a half-written one, and a failed put removes its temporary file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use dare_envelope::{KeyKind, KeyProvider};
use rayon::prelude::*;

use crate::backend::AeadBackend;
use crate::batch;
use crate::error::{FormatError, OpenError, StoreError};
use crate::format::{self, DEFAULT_CHUNK_SHIFT, Geometry, Header, Suite};
use crate::seal::{DEFAULT_BATCH_BYTES, ObjectOpener, ObjectSealer, SealOptions};
use crate::storage::{IoFile, IoMode, ReadAt};

const CONF: &str = "dare-store.conf";
const BUCKETS: &str = "buckets";
const TMP_PREFIX: &str = ".dare-tmp-";

/// How a store reads, writes and encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// log2 of the chunk size for new objects (fixed when the store is created).
    pub chunk_shift: u8,
    /// Plaintext bytes sealed or opened per parallel step.
    pub batch_bytes: usize,
    /// AEAD backend.
    pub backend: AeadBackend,
    /// io_uring or std I/O.
    pub io: IoMode,
    /// Sync every put before acknowledging it (default). Off only for benchmarks.
    pub sync: bool,
    /// Open object files with `O_DIRECT` (bypassing the page cache; needs io_uring). Off by
    /// default; for benchmarking drives.
    pub direct: bool,
}

impl StoreConfig {
    /// Defaults: 64 KiB chunks, 4 MiB batches, the process's backend and I/O mode, syncing.
    pub fn detect() -> Result<StoreConfig, StoreError> {
        Ok(StoreConfig {
            chunk_shift: DEFAULT_CHUNK_SHIFT,
            batch_bytes: DEFAULT_BATCH_BYTES,
            backend: AeadBackend::default_for_process()
                .map_err(|e| StoreError::Config(e.to_string()))?,
            io: IoMode::detect(),
            sync: true,
            direct: false,
        })
    }
}

/// What a put, head or list reports about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Bucket name.
    pub bucket: String,
    /// Object name.
    pub key: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Bytes the object file takes (header, metadata, tags included).
    pub stored_size: u64,
    /// Chunk size in bytes.
    pub chunk_size: u64,
    /// Whether the object is encrypted.
    pub encrypted: bool,
    /// Which key management wrapped its data key.
    pub key_kind: Option<KeyKind>,
    /// The key block (key reference and wrapped data key) as stored; not secret.
    pub key_block: Vec<u8>,
    /// Last modification time of the object file.
    pub modified: Option<SystemTime>,
}

/// A directory of buckets of objects.
#[derive(Debug, Clone)]
pub struct ObjectStore {
    root: PathBuf,
    cfg: StoreConfig,
}

impl ObjectStore {
    /// Creates a store at `root` (the directory may exist but must not hold a store).
    pub fn init(root: &Path, chunk_shift: u8) -> Result<ObjectStore, StoreError> {
        format::chunk_shift_of(1u64 << chunk_shift.min(63)).map_err(StoreError::BadName)?;
        if root.join(CONF).exists() {
            return Err(StoreError::Config(format!(
                "{} already holds a dare store",
                root.display()
            )));
        }
        fs::create_dir_all(root.join(BUCKETS))?;
        let conf = format!(
            "format = {}\nchunk_shift = {chunk_shift}\n",
            format::VERSION
        );
        write_file_durably(&root.join(CONF), conf.as_bytes())?;
        sync_dir(root)?;
        let mut cfg = StoreConfig::detect()?;
        cfg.chunk_shift = chunk_shift;
        Ok(ObjectStore {
            root: root.to_owned(),
            cfg,
        })
    }

    /// Opens an existing store.
    pub fn open(root: &Path) -> Result<ObjectStore, StoreError> {
        let text = fs::read_to_string(root.join(CONF)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotAStore(root.display().to_string()),
            _ => StoreError::Io(e),
        })?;
        let mut cfg = StoreConfig::detect()?;
        let mut shift = None;
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match (k.trim(), v.trim()) {
                ("format", v) if v != "1" => {
                    return Err(StoreError::Config(format!(
                        "store format {v} is not supported"
                    )));
                }
                ("chunk_shift", v) => shift = v.parse::<u8>().ok(),
                _ => {}
            }
        }
        let shift =
            shift.ok_or_else(|| StoreError::Config(format!("{CONF} has no valid chunk_shift")))?;
        format::chunk_shift_of(1u64 << shift.min(63)).map_err(StoreError::BadName)?;
        cfg.chunk_shift = shift;
        Ok(ObjectStore {
            root: root.to_owned(),
            cfg,
        })
    }

    /// The store's configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// Changes how this handle reads and writes (backend, I/O mode, batch size, sync).
    /// The chunk size of new objects stays the store's.
    pub fn set_config(&mut self, cfg: StoreConfig) {
        let shift = self.cfg.chunk_shift;
        self.cfg = StoreConfig {
            chunk_shift: shift,
            ..cfg
        };
    }

    /// Extra open flags for object files: `O_DIRECT` when configured (io_uring only).
    fn direct_flags(&self) -> Result<i32, StoreError> {
        match (self.cfg.direct, self.cfg.io) {
            (false, _) => Ok(0),
            (true, IoMode::Uring) => Ok(libc::O_DIRECT),
            (true, _) => Err(StoreError::Config(
                "O_DIRECT needs the io_uring I/O path".into(),
            )),
        }
    }

    fn io_file(&self, file: File) -> IoFile {
        if self.cfg.direct {
            IoFile::new_direct(file, self.cfg.io)
        } else {
            IoFile::new(file, self.cfg.io)
        }
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn bucket_dir(&self, bucket: &str) -> Result<PathBuf, StoreError> {
        format::check_name(bucket).map_err(StoreError::BadName)?;
        Ok(self.root.join(BUCKETS).join(bucket))
    }

    fn existing_bucket(&self, bucket: &str) -> Result<PathBuf, StoreError> {
        let dir = self.bucket_dir(bucket)?;
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(StoreError::NoSuchBucket(bucket.to_owned()))
        }
    }

    fn object_path(&self, bucket: &str, key: &str) -> Result<PathBuf, StoreError> {
        let dir = self.existing_bucket(bucket)?;
        format::check_name(key).map_err(StoreError::BadName)?;
        Ok(dir.join(key))
    }

    /// Creates an empty bucket.
    pub fn create_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        let dir = self.bucket_dir(bucket)?;
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::BucketExists(bucket.to_owned()));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotAStore(self.root.display().to_string()));
            }
            Err(e) => return Err(e.into()),
        }
        sync_dir(&self.root.join(BUCKETS))?;
        Ok(())
    }

    /// Removes an empty bucket.
    pub fn delete_bucket(&self, bucket: &str) -> Result<(), StoreError> {
        let dir = self.existing_bucket(bucket)?;
        if !self.list(bucket)?.is_empty() {
            return Err(StoreError::BucketNotEmpty(bucket.to_owned()));
        }
        fs::remove_dir_all(&dir)?;
        sync_dir(&self.root.join(BUCKETS))?;
        Ok(())
    }

    /// Whether the bucket exists.
    pub fn bucket_exists(&self, bucket: &str) -> bool {
        self.existing_bucket(bucket).is_ok()
    }

    /// Bucket names, sorted.
    pub fn list_buckets(&self) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.root.join(BUCKETS))? {
            let e = e?;
            if e.file_type()?.is_dir()
                && let Some(n) = e.file_name().to_str()
            {
                out.push(n.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Stores an object read from `data` under `bucket/key`, replacing any previous one only
    /// once the new one is complete and durable. With `provider` the object is encrypted
    /// under a fresh data key; with `None` it is stored in clear.
    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        data: &mut dyn Read,
        provider: Option<&dyn KeyProvider>,
        meta: &[(String, String)],
    ) -> Result<ObjectInfo, StoreError> {
        let path = self.object_path(bucket, key)?;
        let dir = self.existing_bucket(bucket)?;
        let opts = SealOptions {
            name: key,
            chunk_shift: self.cfg.chunk_shift,
            meta,
            backend: self.cfg.backend,
        };
        let mut sealer = ObjectSealer::new(provider, &opts)?;
        let (tmp, file) = create_temp(&dir, self.direct_flags()?)?;
        let io = self.io_file(file);
        let result = (|| -> Result<u64, StoreError> {
            let size = batch::seal_to_file(&mut sealer, data, &io, self.cfg.batch_bytes)?;
            if self.cfg.sync {
                io.sync_data()?;
            }
            fs::rename(&tmp, &path)?;
            if self.cfg.sync {
                sync_dir(&dir)?;
            }
            Ok(size)
        })();
        let size = match result {
            Ok(s) => s,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let stored_size = io.len()?;
        let (header, _) = Header::parse(sealer.head()).map_err(StoreError::BadName)?;
        Ok(info_of(
            bucket,
            key,
            &header,
            size,
            stored_size,
            io.file().metadata().ok(),
        ))
    }

    /// Stores many small objects at once: they are sealed, written and synced in parallel on
    /// the rayon pool. Results come back in input order.
    pub fn put_many(
        &self,
        bucket: &str,
        objects: &[(String, Vec<u8>)],
        provider: Option<&dyn KeyProvider>,
    ) -> Vec<Result<ObjectInfo, StoreError>> {
        objects
            .par_iter()
            .map(|(key, data)| self.put(bucket, key, &mut data.as_slice(), provider, &[]))
            .collect()
    }

    /// Reads many small objects at once: each is opened, verified and decrypted in parallel
    /// on the rayon pool. Results come back in input order; an object that fails verification
    /// yields its error and no bytes.
    pub fn get_many(
        &self,
        bucket: &str,
        keys: &[String],
        provider: Option<&dyn KeyProvider>,
    ) -> Vec<Result<Vec<u8>, StoreError>> {
        keys.par_iter()
            .map(|key| {
                let obj = self.open_object(bucket, key, provider)?;
                let mut out = Vec::with_capacity(usize::try_from(obj.size()).unwrap_or(0));
                obj.read_all(self.cfg.batch_bytes, &mut |p| {
                    out.extend_from_slice(p);
                    Ok(())
                })?;
                Ok(out)
            })
            .collect()
    }

    /// Opens an object of a bucket created with encryption on: like [`open_object`]
    /// (Self::open_object), and an object stored in clear is refused with
    /// [`OpenError::NotEncrypted`]. Without this check, anyone able to write the bucket
    /// directory could replace an encrypted object by a plaintext file of their choosing and
    /// have it served as genuine.
    pub fn open_encrypted_object(
        &self,
        bucket: &str,
        key: &str,
        provider: &dyn KeyProvider,
    ) -> Result<StoredObject, StoreError> {
        let o = self.open_object(bucket, key, Some(provider))?;
        if o.opener.is_encrypted() {
            Ok(o)
        } else {
            Err(StoreError::Open(OpenError::NotEncrypted))
        }
    }

    /// Opens an object for reading: parses and authenticates its header and metadata. An
    /// encrypted object is authenticated; an object stored in clear (suite 0) is not — use
    /// [`open_encrypted_object`](Self::open_encrypted_object) for buckets created encrypted.
    pub fn open_object(
        &self,
        bucket: &str,
        key: &str,
        provider: Option<&dyn KeyProvider>,
    ) -> Result<StoredObject, StoreError> {
        let path = self.object_path(bucket, key)?;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(self.direct_flags()?)
            .open(&path)
            .map_err(|e| not_found(e, bucket, key))?;
        let io = self.io_file(file);
        let len = io.len()?;
        let opener = ObjectOpener::new(&io, len, provider, self.cfg.backend)?;
        if opener.header().name != key {
            // The file was renamed or copied from another object: its header names another key.
            return Err(StoreError::Open(OpenError::Format(FormatError::Invalid(
                "object header names another object (file was renamed or swapped)",
            ))));
        }
        let modified = io.file().metadata().ok();
        Ok(StoredObject {
            io,
            opener,
            info_meta: modified,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            stored_size: len,
        })
    }

    /// System metadata of an object, read from its header without any key: size, chunk size,
    /// encryption status and key reference. (The user metadata is encrypted; see
    /// [`StoredObject::meta`].)
    pub fn head(&self, bucket: &str, key: &str) -> Result<ObjectInfo, StoreError> {
        let path = self.object_path(bucket, key)?;
        let file = File::open(&path).map_err(|e| not_found(e, bucket, key))?;
        let io = IoFile::new(file, self.cfg.io);
        let len = io.len()?;
        if len == 0 {
            return Err(OpenError::Format(FormatError::Empty).into());
        }
        let mut buf = vec![0u8; len.min(4096) as usize];
        io.read_exact_at(&mut buf, 0)?;
        let header = match Header::parse(&buf) {
            Err(FormatError::Truncated { need }) if need <= len && need > buf.len() as u64 => {
                buf.resize(need as usize, 0);
                io.read_exact_at(&mut buf, 0)?;
                Header::parse(&buf).map_err(OpenError::Format)?.0
            }
            r => r.map_err(OpenError::Format)?.0,
        };
        let body = len
            .checked_sub(header.body_offset())
            .ok_or(OpenError::Format(FormatError::BadLength))?;
        let size = match header.suite {
            Suite::Aes256Gcm => {
                Geometry::from_body_len(header.chunk_shift, body)
                    .map_err(OpenError::Format)?
                    .plaintext_len
            }
            _ => body,
        };
        Ok(info_of(
            bucket,
            key,
            &header,
            size,
            len,
            io.file().metadata().ok(),
        ))
    }

    /// Object names in a bucket, sorted, with their stored sizes and times.
    pub fn list(&self, bucket: &str) -> Result<Vec<(String, u64, Option<SystemTime>)>, StoreError> {
        let dir = self.existing_bucket(bucket)?;
        let mut out = Vec::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with(".dare") || !e.file_type()?.is_file() {
                continue;
            }
            let md = e.metadata()?;
            out.push((name, md.len(), md.modified().ok()));
        }
        out.sort();
        Ok(out)
    }

    /// Deletes an object.
    pub fn delete(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        let path = self.object_path(bucket, key)?;
        fs::remove_file(&path).map_err(|e| not_found(e, bucket, key))?;
        if self.cfg.sync {
            sync_dir(path.parent().unwrap_or(&self.root))?;
        }
        Ok(())
    }
}

/// An object opened for reading, its header and metadata already authenticated.
#[derive(Debug)]
pub struct StoredObject {
    io: IoFile,
    opener: ObjectOpener,
    info_meta: Option<fs::Metadata>,
    bucket: String,
    key: String,
    stored_size: u64,
}

impl StoredObject {
    /// Plaintext size.
    pub fn size(&self) -> u64 {
        self.opener.plaintext_len()
    }

    /// The decrypted user metadata.
    pub fn meta(&self) -> &[(String, String)] {
        self.opener.meta()
    }

    /// System metadata.
    pub fn info(&self) -> ObjectInfo {
        info_of(
            &self.bucket,
            &self.key,
            self.opener.header(),
            self.size(),
            self.stored_size,
            self.info_meta.clone(),
        )
    }

    /// Reads the whole object, passing verified plaintext to `sink` batch by batch.
    pub fn read_all(
        &self,
        batch_bytes: usize,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), OpenError> {
        if self.size() == 0 {
            // Nothing to hand out, but the empty final chunk must still authenticate.
            let (off, n) = self.opener.chunk_extent(0, 1);
            let mut buf = vec![0u8; n as usize];
            self.io.read_exact_at(&mut buf, off)?;
            self.opener
                .open_batch(&mut buf, 0, 1)
                .map(|_| ())
                .map_err(|e| match e {
                    OpenError::ChunkAuth { index } => {
                        let mut stored = vec![0u8; n as usize];
                        match self.io.read_exact_at(&mut stored, off) {
                            Ok(()) => self.opener.classify_failure(&stored, index),
                            Err(_) => e,
                        }
                    }
                    e => e,
                })
        } else {
            self.opener
                .open_range(&self.io, 0, self.size(), batch_bytes, sink)
        }
    }

    /// Reads `len` bytes at `offset`, decrypting only the chunks that cover them.
    pub fn read_range(
        &self,
        offset: u64,
        len: u64,
        batch_bytes: usize,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), OpenError> {
        self.opener
            .open_range(&self.io, offset, len, batch_bytes, sink)
    }
}

fn info_of(
    bucket: &str,
    key: &str,
    h: &Header,
    size: u64,
    stored_size: u64,
    md: Option<fs::Metadata>,
) -> ObjectInfo {
    ObjectInfo {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        size,
        stored_size,
        chunk_size: h.chunk_size(),
        encrypted: h.suite == Suite::Aes256Gcm,
        key_kind: h.key_block.as_ref().map(|k| k.kind),
        key_block: h
            .key_block
            .as_ref()
            .map(|k| k.bytes.clone())
            .unwrap_or_default(),
        modified: md.and_then(|m| m.modified().ok()),
    }
}

fn not_found(e: io::Error, bucket: &str, key: &str) -> StoreError {
    if e.kind() == io::ErrorKind::NotFound {
        StoreError::NoSuchObject {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }
    } else {
        StoreError::Io(e)
    }
}

fn create_temp(dir: &Path, flags: i32) -> Result<(PathBuf, File), StoreError> {
    for _ in 0..8 {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).map_err(|_| StoreError::Seal(crate::SealError::Rng))?;
        let name = format!("{TMP_PREFIX}{:016x}", u64::from_le_bytes(r));
        let path = dir.join(name);
        match OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .custom_flags(flags)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Io(io::Error::other(
        "could not create a temporary file",
    )))
}

/// Writes a small file durably: temp file, fsync, rename, directory fsync.
pub fn write_file_durably(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        io::Write::write_all(&mut f, data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// `fsync` on a directory, so a rename or create in it is durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
