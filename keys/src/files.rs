//! Which files dare trusts to hold or guard keys.
//!
//! A root key file, a passphrase or HSM PIN file, a PKCS#11 module or a metadata database
//! that another local user can replace is a key that other user chooses: the next `put`
//! would encrypt under it. So, as OpenSSH does for `authorized_keys`, dare refuses such a
//! file before reading it:
//!
//! - the file must be owned by the user running dare or by root;
//! - a file holding a secret (root key, passphrase, PIN) must not be readable or writable by
//!   group or others (`mode & 0o077 == 0`); the metadata database, which holds only wrapped
//!   keys, must not be writable by them (`mode & 0o022 == 0`);
//! - the directory it is in must be owned by that user or root and not writable by group or
//!   others — except, for a passphrase file outside the store, a sticky directory such as
//!   `/tmp`, where nobody can rename or remove a file they do not own.
//!
//! Every refusal is a [`StoreError::Untrusted`] that names the file and the command that
//! fixes it.

use std::fs::{self, File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::StoreError;

/// What a file guards, which decides how private it must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// It holds a secret (a root key, a passphrase): owner-only access.
    Secret,
    /// It holds wrapped keys (the metadata database): nobody else may write it.
    Integrity,
}

/// The user id dare runs as (the effective one: what the kernel checks access against).
pub fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn untrusted(what: &'static str, path: &Path, why: String) -> StoreError {
    StoreError::Untrusted {
        what,
        path: path.to_path_buf(),
        why,
    }
}

fn owner_ok(uid: u32, me: u32) -> bool {
    uid == me || uid == 0
}

/// Checks a file's owner and mode (from `fstat` of the open file, so nothing can be swapped
/// in between the check and the read).
pub fn check_file(
    what: &'static str,
    path: &Path,
    md: &Metadata,
    guard: Guard,
) -> Result<(), StoreError> {
    let me = current_uid();
    if !owner_ok(md.uid(), me) {
        return Err(untrusted(
            what,
            path,
            format!(
                "it is owned by uid {}, not by uid {me} (the user running dare) or root; \
                 another user could have replaced it (fix: chown {me} {})",
                md.uid(),
                path.display()
            ),
        ));
    }
    let mode = md.mode() & 0o7777;
    let (mask, fix, who) = match guard {
        Guard::Secret => (0o077, "chmod 600", "readable or writable"),
        Guard::Integrity => (0o022, "chmod go-w", "writable"),
    };
    if mode & mask != 0 {
        return Err(untrusted(
            what,
            path,
            format!(
                "it has mode {mode:o} and must not be {who} by group or others (fix: {fix} {})",
                path.display()
            ),
        ));
    }
    Ok(())
}

/// Checks a directory that holds key files: owned by the user running dare or root, and not
/// writable by group or others (unless `sticky_ok` and the sticky bit is set).
pub fn check_dir(what: &'static str, dir: &Path, sticky_ok: bool) -> Result<(), StoreError> {
    let md = fs::metadata(dir).map_err(|source| StoreError::Io {
        op: "inspect",
        path: dir.to_path_buf(),
        source,
    })?;
    let me = current_uid();
    if !owner_ok(md.uid(), me) {
        return Err(untrusted(
            what,
            dir,
            format!(
                "the directory is owned by uid {}, not by uid {me} (the user running dare) or \
                 root; its owner could replace the key files in it (fix: chown {me} {})",
                md.uid(),
                dir.display()
            ),
        ));
    }
    let mode = md.mode() & 0o7777;
    if mode & 0o022 != 0 && !(sticky_ok && mode & 0o1000 != 0) {
        return Err(untrusted(
            what,
            dir,
            format!(
                "the directory has mode {mode:o}: group or others may write it and so replace \
                 the key files in it (fix: chmod go-w {})",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// The directory a file is in (`.` for a bare file name).
pub fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Opens a key file inside a store directory for reading, refusing a symbolic link (the
/// store directory is checked, so the file must be the store's own) and then checking it.
pub fn open_store_file(
    what: &'static str,
    path: &Path,
    guard: Guard,
) -> Result<(File, Metadata), StoreError> {
    check_dir("store directory", &parent_of(path), false)?;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ELOOP) => untrusted(
                what,
                path,
                "it is a symbolic link; dare reads only the store's own file".into(),
            ),
            _ => StoreError::Io {
                op: "open",
                path: path.to_path_buf(),
                source,
            },
        })?;
    let md = f.metadata().map_err(|source| StoreError::Io {
        op: "inspect",
        path: path.to_path_buf(),
        source,
    })?;
    if !md.is_file() {
        return Err(untrusted(what, path, "it is not a regular file".into()));
    }
    check_file(what, path, &md, guard)?;
    Ok((f, md))
}

/// Reads a small secret (a passphrase, an HSM PIN) from a file: its contents without one
/// trailing newline (`\n` or `\r\n`), at most `max_len` bytes. The file must be owned by the
/// user running dare (or root) and not readable or writable by group or others; a regular
/// file's directory must not be writable by them either (a sticky directory such as `/tmp` is
/// allowed). A pipe (`<(...)`) is accepted. `what` names the file in every refusal.
pub fn read_secret_file(
    what: &'static str,
    path: &Path,
    max_len: u64,
) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let io = |op, source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    let mut f = File::open(path).map_err(|e| io("read", e))?;
    let md = f.metadata().map_err(|e| io("inspect", e))?;
    check_file(what, path, &md, Guard::Secret)?;
    if md.is_file() {
        let real = fs::canonicalize(path).map_err(|e| io("resolve", e))?;
        check_dir(what, &parent_of(&real), true)?;
    }
    // Bounded: a secret file is small; a device or endless pipe must not fill memory.
    // Allocated once, so no reallocation leaves a copy of the secret behind.
    let cap = usize::try_from(max_len.saturating_add(1)).unwrap_or(usize::MAX);
    let mut v = Zeroizing::new(Vec::with_capacity(cap));
    (&mut f)
        .take(max_len.saturating_add(1))
        .read_to_end(&mut v)
        .map_err(|e| io("read", e))?;
    if v.len() as u64 > max_len {
        return Err(StoreError::Corrupt(format!(
            "{what} {} is longer than {}; it should hold one secret",
            path.display(),
            human_len(max_len)
        )));
    }
    if v.last() == Some(&b'\n') {
        v.pop();
        if v.last() == Some(&b'\r') {
            v.pop();
        }
    }
    Ok(v)
}

fn human_len(n: u64) -> String {
    if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path, m: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn modes_and_directories() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("k");
        fs::write(&f, b"x").unwrap();
        mode(d.path(), 0o700);
        for (m, secret_ok, integrity_ok) in [
            (0o600, true, true),
            (0o400, true, true),
            (0o640, false, true),
            (0o604, false, true),
            (0o620, false, false),
            (0o602, false, false),
        ] {
            mode(&f, m);
            let md = fs::metadata(&f).unwrap();
            assert_eq!(
                check_file("key", &f, &md, Guard::Secret).is_ok(),
                secret_ok,
                "{m:o}"
            );
            assert_eq!(
                check_file("key", &f, &md, Guard::Integrity).is_ok(),
                integrity_ok,
                "{m:o}"
            );
        }
        mode(&f, 0o600);
        assert!(open_store_file("key", &f, Guard::Secret).is_ok());
        for m in [0o770, 0o707, 0o777] {
            mode(d.path(), m);
            let e = open_store_file("key", &f, Guard::Secret).unwrap_err();
            assert!(e.to_string().contains("chmod go-w"), "{e}");
            assert!(check_dir("dir", d.path(), false).is_err());
            assert!(check_dir("dir", d.path(), true).is_err());
        }
        mode(d.path(), 0o1777);
        assert!(check_dir("dir", d.path(), true).is_ok());
        assert!(check_dir("dir", d.path(), false).is_err());
        mode(d.path(), 0o700);

        let link = d.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let e = open_store_file("key", &link, Guard::Secret).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }

    /// Only root can give a file away; the test runs where it can (CI runs as root) and
    /// says so where it cannot.
    #[test]
    fn foreign_owner_is_refused() {
        assert_eq!(
            current_uid(),
            0,
            "this test gives a file to another user, which needs root (CI runs as root)"
        );
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("k");
        fs::write(&f, b"x").unwrap();
        mode(&f, 0o600);
        std::os::unix::fs::chown(&f, Some(65534), None).unwrap();
        let e = open_store_file("root key file", &f, Guard::Secret).unwrap_err();
        assert!(e.to_string().contains("owned by uid 65534"), "{e}");
        std::os::unix::fs::chown(&f, Some(0), None).unwrap();
        std::os::unix::fs::chown(d.path(), Some(65534), None).unwrap();
        let e = open_store_file("root key file", &f, Guard::Secret).unwrap_err();
        assert!(
            e.to_string().contains("directory is owned by uid 65534"),
            "{e}"
        );
    }
}
