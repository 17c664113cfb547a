//! The store directory's layout, and the small file helpers the modules share.
//!
//! ```text
//! <store>/dare.db (+ -wal, -shm)   the metadata database (0600)
//! <store>/objects/                 the data files, <bucket id>/<xx>/<object id> (0700 / 0600)
//! <store>/root.key                 the root key (0600), unless a passphrase protects the store
//! <store>/metadata.json            instead of dare.db: where the metadata is (PostgreSQL), 0600
//! ```
//!
//! A store whose metadata is on a PostgreSQL server has no `dare.db`: its directory (shared
//! by the nodes) holds `metadata.json`, which names the server without the password and the
//! store id the database must hold ([`LocationFile`], docs/METADATA.md §8).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use dare_envelope::KeyError;
use dare_keys::files::{self, Guard};

use crate::error::{Error, io};

/// The metadata database file inside a store directory.
pub const DB_FILE: &str = "dare.db";
/// The data volume directory inside a store directory.
pub const OBJECTS_DIR: &str = "objects";
/// The root key file inside a store directory.
pub const ROOT_KEY_FILE: &str = "root.key";
/// The file that says where a store's metadata is, when it is not `dare.db`.
pub const LOCATION_FILE: &str = "metadata.json";
/// The namespace every store starts with (encrypted).
pub const DEFAULT_NAMESPACE: &str = "default";

/// Creates a directory (and its parents) with mode 0700.
pub(crate) fn make_dir(dir: &Path) -> Result<(), Error> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("create directory", dir))
}

/// Refuses a store directory, or its metadata database or `metadata.json`, that another
/// local user could replace (dare_keys::files: owned by someone else, writable by group or
/// others, a symbolic link in the file's place). Checked before anything is read from them:
/// a `metadata.json` another user wrote could pair the store with a database of their
/// choosing.
pub(crate) fn check_store_trust(dir: &Path) -> Result<(), Error> {
    files::check_dir("store directory", dir, false)?;
    check_store_file(dir, DB_FILE, "metadata database")?;
    check_store_file(dir, LOCATION_FILE, "metadata location file")
}

fn check_store_file(dir: &Path, name: &str, what: &'static str) -> Result<(), Error> {
    let path = dir.join(name);
    match fs::symlink_metadata(&path) {
        Ok(md) if md.file_type().is_symlink() => Err(dare_keys::StoreError::Untrusted {
            what,
            path,
            why: "it is a symbolic link; dare uses only the store's own file".into(),
        }
        .into()),
        Ok(md) => Ok(files::check_file(what, &path, &md, Guard::Integrity)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("inspect", &path)(e)),
    }
}

/// What `metadata.json` records: the metadata is in a PostgreSQL database, which holds the
/// store `store_id`. Format (docs/METADATA.md §8):
///
/// ```json
/// {
///   "format": 1,
///   "backend": "postgres",
///   "url": "postgres://dare:***@db.internal:5432/dare",
///   "store_id": "5f0c...32 hex digits"
/// }
/// ```
///
/// `url` is the database's URL as `PostgresMetadata::describe` shows it — never with the
/// password — for messages only: the nodes give the URL themselves, and the store id is what
/// pairs a database with this directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationFile {
    /// The database's URL without its password (`***` in its place).
    pub url: String,
    /// The store id the database's store row must hold.
    pub store_id: [u8; 16],
    /// Where the data files are, when not `objects/` in the store directory: a site that
    /// joined the store (docs/KEYS.md §8.5) names the shared data directory. Absolute.
    pub objects: Option<PathBuf>,
}

/// The `format` this build writes and reads.
const LOCATION_FORMAT: u64 = 1;
/// A `metadata.json` is a few hundred bytes; anything much bigger is not one.
const LOCATION_MAX_LEN: u64 = 64 * 1024;

impl LocationFile {
    /// Reads `<dir>/metadata.json`; `None` when there is none. The file is checked as the
    /// store's other files are (owner, mode, no symbolic link) before it is read.
    pub(crate) fn read(dir: &Path) -> Result<Option<LocationFile>, Error> {
        let path = dir.join(LOCATION_FILE);
        if fs::symlink_metadata(&path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
            return Ok(None);
        }
        let (f, _) = files::open_store_file("metadata location file", &path, Guard::Integrity)?;
        let mut text = String::new();
        f.take(LOCATION_MAX_LEN)
            .read_to_string(&mut text)
            .map_err(io("read", &path))?;
        Self::parse(&text)
            .map(Some)
            .map_err(|why| Error::LocationFile { path, why })
    }

    fn parse(text: &str) -> Result<LocationFile, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("it is not JSON ({e})"))?;
        let format = v["format"].as_u64().ok_or("it has no \"format\" number")?;
        if format != LOCATION_FORMAT {
            return Err(format!(
                "its format {format} is not {LOCATION_FORMAT}, the one this dare reads \
                 (upgrade dare)"
            ));
        }
        match v["backend"].as_str() {
            Some("postgres") => {}
            Some(other) => {
                return Err(format!(
                    "it names the metadata backend {:?}, which this dare does not know \
                     (upgrade dare)",
                    crate::error::printable(other)
                ));
            }
            None => return Err("it has no \"backend\"".into()),
        }
        let url = v["url"].as_str().ok_or("it has no \"url\"")?;
        let id = v["store_id"].as_str().ok_or("it has no \"store_id\"")?;
        let store_id = parse_id(id).ok_or("its \"store_id\" is not 32 hex digits")?;
        let objects = match &v["objects"] {
            serde_json::Value::Null => None,
            serde_json::Value::String(p) if Path::new(p).is_absolute() => Some(PathBuf::from(p)),
            _ => return Err("its \"objects\" is not an absolute path".into()),
        };
        Ok(LocationFile {
            url: url.to_owned(),
            store_id,
            objects,
        })
    }

    /// The file's text.
    fn render(&self) -> String {
        let mut v = serde_json::json!({
            "format": LOCATION_FORMAT,
            "backend": "postgres",
            "url": self.url,
            "store_id": dare_engine::format::hex(&self.store_id),
        });
        if let Some(p) = &self.objects {
            v["objects"] = p.to_string_lossy().into_owned().into();
        }
        // A `Value` always serializes.
        let mut text = serde_json::to_string_pretty(&v).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Creates `<dir>/metadata.json` (mode 0600), durably, only if there is none: written
    /// to a temporary file, synced, then hard-linked into place — so that the file is never
    /// seen half-written, and of two nodes running `init` at once exactly one pairs the
    /// directory (the other gets `Ok(false)`).
    pub(crate) fn create(&self, dir: &Path) -> Result<bool, Error> {
        let path = dir.join(LOCATION_FILE);
        let tmp = dir.join(format!(
            ".{LOCATION_FILE}.{}",
            dare_engine::format::hex(&random_id()?)
        ));
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)
                .map_err(io("create", &tmp))?;
            f.write_all(self.render().as_bytes())
                .map_err(io("write", &tmp))?;
            f.sync_all().map_err(io("sync", &tmp))?;
            match fs::hard_link(&tmp, &path) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(io("create", &path)(e)),
            }
        })();
        let _ = fs::remove_file(&tmp);
        let created = written?;
        if created {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("sync directory", dir))?;
        }
        Ok(created)
    }

    /// Where the file is in a store directory.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(LOCATION_FILE)
    }
}

fn parse_id(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

/// Removes a file if present.
pub(crate) fn remove_if_present(p: &Path) -> Result<(), Error> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", p)(e)),
    }
}

/// A fresh random 16-byte id (object ids, store ids).
pub(crate) fn random_id() -> Result<[u8; 16], Error> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|_| KeyError::Rng)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_file_round_trips_and_refuses_what_it_does_not_know() {
        let loc = LocationFile {
            url: "postgres://dare:***@db.internal:5432/dare".into(),
            store_id: [0xa5; 16],
            objects: None,
        };
        let shared = LocationFile {
            objects: Some(PathBuf::from("/mnt/shared/dare/objects")),
            ..loc.clone()
        };
        assert_eq!(LocationFile::parse(&shared.render()), Ok(shared.clone()));
        assert!(
            LocationFile::parse(&shared.render().replace("/mnt/", "mnt/"))
                .unwrap_err()
                .contains("absolute")
        );
        assert_eq!(LocationFile::parse(&loc.render()), Ok(loc.clone()));
        let text = loc.render();
        for (from, to, why) in [
            ("\"format\": 1", "\"format\": 2", "upgrade dare"),
            ("\"postgres\"", "\"mysql\"", "does not know"),
            ("a5a5a5a5", "a5a5a5", "32 hex digits"),
            ("\"url\"", "\"uri\"", "no \"url\""),
        ] {
            let bad = text.replacen(from, to, 1);
            assert_ne!(bad, text, "{from}");
            let e = LocationFile::parse(&bad).unwrap_err();
            assert!(e.contains(why), "{from}: {e}");
        }
        assert!(LocationFile::parse("{").unwrap_err().contains("not JSON"));
    }
}
