//! [`DataStore`]: writing data files durably and reading them back verified.
//!
//! The data plane does not decide when an object becomes visible: a put writes a *new* data
//! file (named by a fresh random object id, so it can never clobber a visible object), syncs
//! its data and its directory entry, and returns; the control plane then commits the object's
//! row, and that commit is the moment the object exists. A failed write removes its file.

use std::io::{self, Read};
use std::sync::Arc;

use crate::backend::AeadBackend;
use crate::error::{OpenError, StoreError};
use crate::pipeline;
use crate::seal::{DEFAULT_BATCH_BYTES, ObjectOpener, ObjectSealer};
use crate::storage::DataFile;
use crate::volume::{FileLoc, NotRegularFile, Volume};

/// How a data store seals and syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Plaintext bytes sealed or opened per parallel step.
    pub batch_bytes: usize,
    /// AEAD backend.
    pub backend: AeadBackend,
    /// Sync every data file (and its directory entry) before returning (default). Off only
    /// for benchmarks that measure the CPU cost alone.
    pub sync: bool,
}

impl Default for StoreConfig {
    /// 4 MiB batches, the fastest backend of this CPU, syncing.
    fn default() -> Self {
        StoreConfig {
            batch_bytes: DEFAULT_BATCH_BYTES,
            backend: AeadBackend::best(),
            sync: true,
        }
    }
}

/// What a write produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Plaintext size.
    pub size: u64,
    /// The ETag (FORMAT.md §7).
    pub etag: String,
    /// Bytes the data file takes.
    pub stored_size: u64,
}

/// Data files on a [`Volume`].
#[derive(Debug, Clone)]
pub struct DataStore {
    volume: Arc<dyn Volume>,
    cfg: StoreConfig,
}

impl DataStore {
    /// A data store on `volume`.
    pub fn new(volume: Arc<dyn Volume>, cfg: StoreConfig) -> DataStore {
        DataStore { volume, cfg }
    }

    /// Its configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    /// Changes how this handle seals and syncs.
    pub fn set_config(&mut self, cfg: StoreConfig) {
        self.cfg = cfg;
    }

    /// The volume.
    pub fn volume(&self) -> &Arc<dyn Volume> {
        &self.volume
    }

    /// Seals everything `data` yields into the new data file `loc` and, unless the config
    /// says not to sync, makes it durable (data, then the directory entry). On any failure
    /// the file is removed and nothing else changed.
    pub fn write(
        &self,
        loc: &FileLoc,
        sealer: &mut ObjectSealer,
        data: &mut dyn Read,
    ) -> Result<Written, StoreError> {
        let file = self.volume.create(loc)?;
        let result = (|| -> Result<Written, StoreError> {
            pipeline::seal_to_file(sealer, data, &*file, self.cfg.batch_bytes)?;
            if self.cfg.sync {
                file.sync_data()?;
                self.volume.sync_dir(loc)?;
            }
            let summary = sealer.summary().ok_or(StoreError::Io(io::Error::other(
                "the seal pipeline stopped before the final chunk",
            )))?;
            Ok(Written {
                size: summary.size,
                etag: summary.etag,
                stored_size: file.len()?,
            })
        })();
        if result.is_err() {
            drop(file);
            let _ = self.volume.remove(loc);
        }
        result
    }

    /// Opens data file `loc` for reading. A missing file is [`StoreError::DataFileMissing`].
    pub fn open_file(&self, loc: &FileLoc) -> Result<Box<dyn DataFile>, StoreError> {
        self.volume.open(loc).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::DataFileMissing(*loc)
            } else if let Some(bad) = NotRegularFile::in_io(&e) {
                StoreError::NotRegularFile {
                    loc: *loc,
                    kind: bad.kind,
                }
            } else {
                StoreError::Io(e)
            }
        })
    }

    /// Removes data file `loc` and syncs its directory (when syncing). A missing file is
    /// not an error: removal is what was asked for.
    pub fn remove(&self, loc: &FileLoc) -> Result<(), StoreError> {
        match self.volume.remove(loc) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if self.cfg.sync {
            self.volume.sync_dir(loc)?;
        }
        Ok(())
    }
}

/// An object ready to read: its data file, and its opener (metadata verified, data key
/// ready). Plaintext leaves only chunk by chunk, each after its tag verified.
#[derive(Debug)]
pub struct ObjectReader {
    file: Box<dyn DataFile>,
    opener: Arc<ObjectOpener>,
    batch_bytes: usize,
}

impl ObjectReader {
    /// Pairs a data file with its opener; refuses a format-2 file whose length or header is
    /// not what the object's row implies. The opener may be shared (`Arc`): a control plane
    /// that caches opened objects hands the same opener to every reader of one object.
    pub fn new(
        file: Box<dyn DataFile>,
        opener: impl Into<Arc<ObjectOpener>>,
        batch_bytes: usize,
    ) -> Result<ObjectReader, OpenError> {
        let opener = opener.into();
        opener.check_file_len(file.len()?)?;
        if opener.format() == crate::format::v2::VERSION {
            let mut head = [0u8; crate::format::v2::HEADER_LEN];
            file.read_exact_at(&mut head, 0)?;
            opener.check_file_header(&head)?;
        }
        Ok(ObjectReader {
            file,
            opener,
            batch_bytes,
        })
    }

    /// Plaintext size.
    pub fn size(&self) -> u64 {
        self.opener.plaintext_len()
    }

    /// The verified user metadata.
    pub fn meta(&self) -> &[(String, String)] {
        self.opener.meta()
    }

    /// The opener.
    pub fn opener(&self) -> &ObjectOpener {
        &self.opener
    }

    /// Reads the whole object, passing verified plaintext to `sink` batch by batch.
    pub fn read_all(&self, sink: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> Result<(), OpenError> {
        pipeline::read_all(
            &self.opener,
            Some(&self.opener),
            &*self.file,
            self.batch_bytes,
            sink,
        )
    }

    /// Reads `len` bytes at `offset`, decrypting only the chunks that cover them.
    pub fn read_range(
        &self,
        offset: u64,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), OpenError> {
        pipeline::open_range_pipelined(
            &self.opener,
            Some(&self.opener),
            &*self.file,
            offset,
            len,
            self.batch_bytes,
            sink,
        )
    }
}
