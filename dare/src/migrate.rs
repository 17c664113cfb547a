//! One-time migration of a store made by the release before foundation v2 (docs/METADATA.md
//! §5): `keystore.dat` (the resource table in one JSON file) and `buckets/<bucket>/<name>`
//! (one format-1 file per object, named by the object's name).
//!
//! 1. Into a new database `dare.db.migrating`, in one transaction: every key record,
//!    namespace and bucket of `keystore.dat` with their ids (existing envelopes name them),
//!    and one format-1 row per object file (its header read without any key: name, suite,
//!    chunk size, nonce prefix, envelope), each with a fresh object id.
//! 2. Each object file is renamed to its data-file location `objects/<bucket>/<xx>/<id>`.
//!    The files are not rewritten: format-1 data stays readable as it is.
//! 3. `dare.db.migrating` is renamed to `dare.db`: from then on the store is a v2 store.
//! 4. The old files are cleaned up: `keystore.dat` is kept as `keystore.dat.v1-migrated`
//!    (wrapped keys only), the lock files, `dare-store.conf`, leftover temporary files of
//!    killed puts and the emptied bucket directories are removed.
//!
//! A crash at any point is resumed by the next open: before step 1's commit the half-made
//! database is discarded and the migration starts again; during step 2 the renames continue
//! (a file already at its new place is skipped); after step 3 only the cleanup remains.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use dare_engine::format::v1::{FIXED_LEN, Header};
use dare_engine::format::{Geometry, Suite};
use dare_engine::{DiskVolume, FileLoc, FormatError, Volume};
use dare_metadata::{Metadata, ObjectRecord, SqliteMetadata, read_with, write_with};

use dare_engine::DiskOptions;
use dare_metadata::SqliteOptions;

use crate::error::{Error, io};
use crate::layout::{DB_FILE, OBJECTS_DIR, random_id, remove_if_present};
use crate::pages::for_each_page;

const CONF: &str = "dare-store.conf";
const KEYSTORE: &str = "keystore.dat";
const BUCKETS: &str = "buckets";
const MIGRATING: &str = "dare.db.migrating";

/// Whether `dir` holds a store of the previous release that has not been migrated.
pub(crate) fn is_v1_store(dir: &Path) -> bool {
    !dir.join(DB_FILE).exists() && dir.join(KEYSTORE).exists()
}

/// Whether a migrated store still has files of its previous life to clean up.
pub(crate) fn has_v1_leftovers(dir: &Path) -> bool {
    dir.join(KEYSTORE).exists() || dir.join(CONF).exists() || dir.join(BUCKETS).exists()
}

fn chunk_shift_of_conf(dir: &Path) -> Result<u8, Error> {
    let path = dir.join(CONF);
    let text = fs::read_to_string(&path).map_err(io("read", &path))?;
    let mut shift = None;
    for line in text.lines() {
        match line.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
            Some(("format", v)) if v != "1" => {
                return Err(Error::Migration(format!(
                    "{CONF} says format {v}, expected 1"
                )));
            }
            Some(("chunk_shift", v)) => shift = v.parse::<u8>().ok(),
            _ => {}
        }
    }
    shift
        .filter(|s| dare_engine::format::check_chunk_shift(*s).is_ok())
        .ok_or_else(|| Error::Migration(format!("{} has no valid chunk_shift", path.display())))
}

/// Reads the format-1 header of `path` (no key needed) and its file length.
fn read_v1_header(path: &Path) -> Result<(Header, u64), Error> {
    let bad = |e: FormatError| {
        Error::Migration(format!(
            "{} is not a readable format-1 object ({e}); move it out of the store and open again",
            path.display()
        ))
    };
    let mut f = fs::File::open(path).map_err(io("open", path))?;
    let len = f.metadata().map_err(io("stat", path))?.len();
    let mut buf = Vec::new();
    (&mut f)
        .take(FIXED_LEN as u64 + 4096)
        .read_to_end(&mut buf)
        .map_err(io("read", path))?;
    let (h, _) = Header::parse(&buf).map_err(bad)?;
    if h.body_offset() > len {
        return Err(bad(FormatError::Truncated {
            need: h.body_offset(),
        }));
    }
    Ok((h, len))
}

fn modified_ms(path: &Path) -> u64 {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn remove_db(path: &Path) -> Result<(), Error> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        remove_if_present(&PathBuf::from(format!("{}{suffix}", path.display())))?;
    }
    Ok(())
}

/// Runs (or resumes) the migration of the previous release's store in `dir`.
pub(crate) fn migrate_v1(
    dir: &Path,
    sqlite: &SqliteOptions,
    disk: DiskOptions,
) -> Result<(), Error> {
    let tmp = dir.join(MIGRATING);
    let mut db = None;
    if tmp.exists() {
        let m = SqliteMetadata::open(&tmp, sqlite.clone())?;
        if read_with(&m, |tx| tx.store())?.is_some() {
            db = Some(m);
        } else {
            drop(m);
            remove_db(&tmp)?;
        }
    }
    let db = match db {
        Some(m) => m,
        None => import(dir, &tmp, sqlite)?,
    };
    let volume = DiskVolume::new(&dir.join(OBJECTS_DIR), disk)
        .map_err(io("create", &dir.join(OBJECTS_DIR)))?;
    move_files(dir, &db, &volume)?;
    db.checkpoint()?;
    drop(db);
    let target = dir.join(DB_FILE);
    fs::rename(&tmp, &target).map_err(io("rename", &tmp))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))?;
    finish(dir)
}

/// Step 1: the new database with every key record and one row per object file.
fn import(dir: &Path, tmp: &Path, sqlite: &SqliteOptions) -> Result<SqliteMetadata, Error> {
    let chunk_shift = chunk_shift_of_conf(dir)?;
    let db = SqliteMetadata::create(tmp, sqlite.clone())?;
    let store_id = random_id()?;
    write_with(&db, Error::is_retryable, |tx| {
        dare_keys::legacy::import_v1(dir, tx, store_id, chunk_shift)?;
        for b in tx.buckets(None)? {
            let bdir = dir.join(BUCKETS).join(&b.name);
            let rd = match fs::read_dir(&bdir) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("list", &bdir)(e)),
            };
            let mut names: Vec<PathBuf> = Vec::new();
            for e in rd {
                let e = e.map_err(io("list", &bdir))?;
                let is_file = e.file_type().map_err(io("stat", &e.path()))?.is_file();
                let name = e.file_name();
                if is_file && !name.to_string_lossy().starts_with(".dare") {
                    names.push(e.path());
                }
            }
            names.sort();
            for path in names {
                let (h, len) = read_v1_header(&path)?;
                if Some(h.name.as_str()) != path.file_name().and_then(|n| n.to_str()) {
                    return Err(Error::Migration(format!(
                        "{} holds the object {:?}: a renamed file; move it out of the store and \
                         open again",
                        path.display(),
                        h.name
                    )));
                }
                let body = len - h.body_offset();
                let size = match h.suite {
                    Suite::Aes256Gcm => {
                        Geometry::from_body_len(h.chunk_shift, body)
                            .map_err(|e| Error::Migration(format!("{}: {e}", path.display())))?
                            .plaintext_len
                    }
                    _ => body,
                };
                let object_id = random_id()?;
                // A format-1 file in clear has no checksum: compute its CRC-32C now (no key
                // is needed), so whole reads detect corruption as for format 2.
                let etag = match h.suite {
                    Suite::Plaintext => format!("{:08x}", crc_of_body(&path, h.body_offset())?),
                    _ => dare_metadata::records::hex(&object_id),
                };
                let row = ObjectRecord {
                    bucket_id: b.id,
                    name: h.name.clone(),
                    object_id,
                    size,
                    created_ms: modified_ms(&path),
                    etag,
                    format: dare_engine::format::v1::VERSION,
                    suite: h.suite.id(),
                    chunk_shift: h.chunk_shift,
                    nonce_prefix: h.nonce_prefix,
                    envelope_kind: h.key_block.as_ref().map(|k| k.kind.to_byte()),
                    envelope: h.key_block.as_ref().map(|k| k.bytes.clone()),
                    meta: Vec::new(),
                    row_version: 1,
                };
                tx.put_object(&row)?;
            }
        }
        Ok(())
    })?;
    Ok(db)
}

fn crc_of_body(path: &Path, body_offset: u64) -> Result<u32, Error> {
    use std::io::{Seek, SeekFrom};
    let mut f = fs::File::open(path).map_err(io("open", path))?;
    f.seek(SeekFrom::Start(body_offset))
        .map_err(io("read", path))?;
    let mut crc = 0u32;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            return Ok(crc);
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
    }
}

/// Step 2: every object file to its data-file location (idempotent).
fn move_files(dir: &Path, db: &SqliteMetadata, volume: &DiskVolume) -> Result<(), Error> {
    let meta: &dyn Metadata = db;
    let buckets = read_with(meta, |tx| tx.buckets(None))?;
    for b in buckets {
        for_each_page(meta, b.id, 1000, |rows| {
            for row in rows {
                let from = dir.join(BUCKETS).join(&b.name).join(&row.name);
                let loc = FileLoc {
                    bucket_id: b.id,
                    object_id: row.object_id,
                };
                if from.exists() {
                    volume.adopt(&from, &loc).map_err(io("move", &from))?;
                } else if volume.open(&loc).is_err() {
                    return Err(Error::Migration(format!(
                        "{} disappeared during the migration",
                        from.display()
                    )));
                }
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Step 4: removes what the previous release left (the store is already migrated).
pub(crate) fn finish(dir: &Path) -> Result<(), Error> {
    let ks = dir.join(KEYSTORE);
    if ks.exists() {
        let kept = dir.join("keystore.dat.v1-migrated");
        fs::rename(&ks, &kept).map_err(io("rename", &ks))?;
    }
    for f in [CONF, "keystore.lock", "rotation.lock", "keystore.dat.tmp"] {
        remove_if_present(&dir.join(f))?;
    }
    let buckets = dir.join(BUCKETS);
    if let Ok(rd) = fs::read_dir(&buckets) {
        for e in rd.flatten() {
            let bdir = e.path();
            if let Ok(files) = fs::read_dir(&bdir) {
                for f in files.flatten() {
                    if f.file_name().to_string_lossy().starts_with(".dare-tmp-") {
                        remove_if_present(&f.path())?;
                    }
                }
            }
            // Only empty directories go; anything unmigrated stays where it is.
            let _ = fs::remove_dir(&bdir);
        }
        let _ = fs::remove_dir(&buckets);
    }
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync", dir))?;
    Ok(())
}
