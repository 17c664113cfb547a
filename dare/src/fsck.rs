//! `fsck`: pairs every object row with its data file and every data file with a row.
//!
//! Errors — things that make an object unreadable: a row whose data file is missing, a data
//! file of the wrong length or whose header names another object, and with `deep`, an object
//! that fails to decrypt and verify. Garbage — things that cost only space: data files no row
//! names (a put killed before its commit, a delete or overwrite killed before removing the
//! old file, a bucket removal cut short) and other files (temporary files of format-1 stores,
//! anything foreign). `repair` removes garbage older than a grace period — a put in flight
//! has a young unreferenced file — and never a file any row names.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use dare_engine::format::v2::{self, FileHeader};
use dare_engine::{FileLoc, Suite, VolumeEntry};
use dare_metadata::{By, ObjectRecord, read_with};

use crate::Dare;
use crate::error::Error;
use crate::object::{GetOptions, KeyRef, info_of};
use crate::pages::for_each_page;

/// How thoroughly to check, and whether to clean up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsckOptions {
    /// Decrypt and verify every object (objects under a customer key are skipped: their key
    /// is not stored).
    pub deep: bool,
    /// Remove garbage older than `grace`.
    pub repair: bool,
    /// How old an unreferenced file must be before `repair` removes it.
    pub grace: Duration,
}

impl Default for FsckOptions {
    fn default() -> Self {
        FsckOptions {
            deep: false,
            repair: false,
            grace: Duration::from_secs(15 * 60),
        }
    }
}

/// One object with a problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Bucket name.
    pub bucket: String,
    /// Object name.
    pub name: String,
    /// Its data file, relative to the volume.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: String,
}

/// A file no row names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Garbage {
    /// Relative to the volume.
    pub path: PathBuf,
    /// Whether it is at a data-file location (else: a temporary or foreign file).
    pub data_file: bool,
    /// Its length, when known.
    pub len: Option<u64>,
    /// Its age, when known.
    pub age: Option<Duration>,
    /// Whether `repair` removed it.
    pub removed: bool,
}

/// What fsck found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Object rows checked.
    pub objects: u64,
    /// Files on the volume.
    pub files: u64,
    /// Objects decrypted and verified (deep).
    pub verified: u64,
    /// Objects not decrypted because they are under a customer key (deep).
    pub skipped_customer_keys: u64,
    /// Unreadable objects.
    pub errors: Vec<Finding>,
    /// Unreferenced files.
    pub garbage: Vec<Garbage>,
}

impl FsckReport {
    /// No object is unreadable (garbage is allowed).
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }
}

impl Dare {
    /// Checks the store; see the module docs.
    pub fn fsck(&self, opts: &FsckOptions) -> Result<FsckReport, Error> {
        let mut report = FsckReport::default();
        // Rows first, then files: a put that commits in between shows up as a young
        // unreferenced file, never as a missing one.
        let buckets = read_with(&*self.meta, |tx| tx.buckets(None))?;
        let mut referenced: HashMap<FileLoc, (usize, ObjectRecord)> = HashMap::new();
        for (bi, b) in buckets.iter().enumerate() {
            for_each_page(&*self.meta, b.id, 1000, |rows| {
                for row in rows {
                    report.objects += 1;
                    let loc = FileLoc {
                        bucket_id: row.bucket_id,
                        object_id: row.object_id,
                    };
                    referenced.insert(loc, (bi, row.clone()));
                }
                Ok(())
            })?;
        }
        let entries = self
            .data
            .volume()
            .scan()
            .map_err(|e| Error::Data(e.into()))?;
        report.files = entries.len() as u64;
        let now = SystemTime::now();
        let mut on_disk: HashMap<FileLoc, u64> = HashMap::new();
        for e in entries {
            match e {
                VolumeEntry::Data { loc, len, modified } => {
                    if referenced.contains_key(&loc) {
                        on_disk.insert(loc, len);
                    } else {
                        report.garbage.push(Garbage {
                            path: loc.rel_path(),
                            data_file: true,
                            len: Some(len),
                            age: modified.and_then(|m| now.duration_since(m).ok()),
                            removed: false,
                        });
                    }
                }
                VolumeEntry::Other { path, modified } => report.garbage.push(Garbage {
                    path,
                    data_file: false,
                    len: None,
                    age: modified.and_then(|m| now.duration_since(m).ok()),
                    removed: false,
                }),
            }
        }
        let mut locs: Vec<&FileLoc> = referenced.keys().collect();
        locs.sort();
        for loc in locs {
            let (bi, row) = &referenced[loc];
            let b = &buckets[*bi];
            let finding = |problem: String| Finding {
                bucket: b.name.clone(),
                name: row.name.clone(),
                path: loc.rel_path(),
                problem,
            };
            let Some(&len) = on_disk.get(loc) else {
                // Deleted or overwritten since the row was read? Then it is not missing.
                let still = read_with(&*self.meta, |tx| tx.object(b.id, &row.name))?;
                if still.is_some_and(|r| r.object_id == row.object_id) {
                    report.errors.push(finding("data file missing".into()));
                }
                continue;
            };
            if let Some(problem) = self.check_file(row, len) {
                report.errors.push(finding(problem));
                continue;
            }
            if opts.deep {
                if info_of(&b.name, row).key_ref == KeyRef::CustomerKey {
                    report.skipped_customer_keys += 1;
                    continue;
                }
                let r = self
                    .open_row(b, row, &GetOptions::default())
                    .and_then(|o| o.read_all(&mut |_| Ok(())));
                match r {
                    Ok(()) => report.verified += 1,
                    Err(Error::DataFileMissing { .. }) => {}
                    Err(e) => report.errors.push(finding(e.to_string())),
                }
            }
        }
        if opts.repair {
            for g in &mut report.garbage {
                if g.age.is_some_and(|a| a >= opts.grace) {
                    let r = if g.data_file {
                        FileLoc::from_rel_path(&g.path)
                            .map(|loc| self.data.volume().remove(&loc))
                            .unwrap_or(Ok(()))
                    } else {
                        self.data.volume().remove_other(&g.path)
                    };
                    g.removed = r.is_ok();
                }
            }
        }
        Ok(report)
    }

    /// Length and header of a format-2 data file against its row; `None` when they agree.
    fn check_file(&self, row: &ObjectRecord, len: u64) -> Option<String> {
        if row.format != v2::VERSION {
            return None;
        }
        let info = info_of("", row);
        let expected = info.stored_size.unwrap_or(0);
        if len != expected {
            return Some(format!(
                "data file is {len} bytes, the object needs {expected} (cut or extended)"
            ));
        }
        let loc = FileLoc {
            bucket_id: row.bucket_id,
            object_id: row.object_id,
        };
        let file = match self.data.open_file(&loc) {
            Ok(f) => f,
            Err(e) => return Some(e.to_string()),
        };
        let mut head = [0u8; v2::HEADER_LEN];
        if let Err(e) = file.read_exact_at(&mut head, 0) {
            return Some(format!("cannot read the data file header: {e}"));
        }
        match FileHeader::parse(&head) {
            Ok(h)
                if h.object_id == row.object_id
                    && h.suite.id() == row.suite
                    && h.chunk_shift == row.chunk_shift
                    && (h.nonce_prefix == row.nonce_prefix || h.suite == Suite::Plaintext) =>
            {
                None
            }
            Ok(_) => Some("data file header names another object (file swapped)".into()),
            Err(e) => Some(format!("data file header: {e}")),
        }
    }

    /// The bucket a garbage file's location belongs to, if it still exists (for messages).
    pub fn bucket_name_of(&self, bucket_id: u64) -> Option<String> {
        read_with(&*self.meta, |tx| tx.bucket(By::Id(bucket_id)))
            .ok()
            .flatten()
            .map(|b| b.name)
    }
}
