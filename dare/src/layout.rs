//! The store directory's layout, and the small file helpers the modules share.
//!
//! ```text
//! <store>/dare.db (+ -wal, -shm)   the metadata database (0600)
//! <store>/objects/                 the data files, <bucket id>/<xx>/<object id> (0700 / 0600)
//! <store>/root.key                 the root key (0600), unless a passphrase protects the store
//! ```

use std::fs::{self, DirBuilder};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use dare_envelope::KeyError;
use dare_keys::files::{self, Guard};

use crate::error::{Error, io};

/// The metadata database file inside a store directory.
pub const DB_FILE: &str = "dare.db";
/// The data volume directory inside a store directory.
pub const OBJECTS_DIR: &str = "objects";
/// The root key file inside a store directory.
pub const ROOT_KEY_FILE: &str = "root.key";
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

/// Refuses a store directory, or its metadata database, that another local user could
/// replace (dare_keys::files: owned by someone else, writable by group or others, a
/// symbolic link in the database's place). Checked before anything is read from them.
pub(crate) fn check_store_trust(dir: &Path) -> Result<(), Error> {
    files::check_dir("store directory", dir, false)?;
    let db = dir.join(DB_FILE);
    match fs::symlink_metadata(&db) {
        Ok(md) if md.file_type().is_symlink() => Err(dare_keys::StoreError::Untrusted {
            what: "metadata database",
            path: db,
            why: "it is a symbolic link; dare uses only the store's own file".into(),
        }
        .into()),
        Ok(md) => Ok(files::check_file(
            "metadata database",
            &db,
            &md,
            Guard::Integrity,
        )?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("inspect", &db)(e)),
    }
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
