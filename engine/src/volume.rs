//! Where data files live: the [`Volume`] seam and its on-disk implementation.
//!
//! A data file is named by its object's random id, never by the object's name (FORMAT.md §1):
//!
//! ```text
//! <volume root>/<bucket id>/<first two hex digits of the object id>/<object id, 32 hex digits>
//! ```
//!
//! so object names of any bytes and length up to 1024 work, a bucket's files can be removed
//! as one directory, and no directory grows beyond what a file system handles well (256
//! subdirectories per bucket). Directories are created 0700 and files 0600, whatever the
//! umask allows beyond that.
//!
//! The trait is small on purpose (redb's `StorageBackend`): the crash-consistency tests plug
//! in a volume that keeps a live and a durable image and loses whatever was not synced.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::storage::{DataFile, IoFile, IoMode};

/// Which data file: the object's bucket and random id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileLoc {
    /// The bucket's id.
    pub bucket_id: u64,
    /// The object's random id.
    pub object_id: [u8; 16],
}

impl FileLoc {
    /// The path of the data file relative to the volume root.
    pub fn rel_path(&self) -> PathBuf {
        let hex = crate::format::hex(&self.object_id);
        PathBuf::from(self.bucket_id.to_string())
            .join(&hex[..2])
            .join(hex)
    }

    /// Parses a path relative to the volume root back into a location; `None` for anything
    /// that is not a data file name (temporary or foreign files).
    pub fn from_rel_path(p: &Path) -> Option<FileLoc> {
        let mut it = p.components().map(|c| c.as_os_str().to_str());
        let (Some(Some(b)), Some(Some(fan)), Some(Some(name)), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return None;
        };
        let bucket_id: u64 = b.parse().ok().filter(|_| !b.starts_with('0') || b == "0")?;
        if name.len() != 32 || !name.starts_with(fan) || fan.len() != 2 {
            return None;
        }
        let mut object_id = [0u8; 16];
        for (i, out) in object_id.iter_mut().enumerate() {
            let pair = name.get(2 * i..2 * i + 2)?;
            if !pair
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
            {
                return None;
            }
            *out = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(FileLoc {
            bucket_id,
            object_id,
        })
    }
}

/// One file found by [`Volume::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeEntry {
    /// A file at a data-file location.
    Data {
        /// Where.
        loc: FileLoc,
        /// Its length.
        len: u64,
        /// Its last modification time.
        modified: Option<SystemTime>,
    },
    /// Any other file (a leftover temporary file, something foreign), relative to the root.
    Other {
        /// The path relative to the volume root.
        path: PathBuf,
        /// Its last modification time.
        modified: Option<SystemTime>,
    },
}

/// The payload of the `io::Error` a [`Volume`] returns when a data file's place holds
/// something that is not a regular file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotRegularFile {
    /// What is there: `"FIFO"`, `"symbolic link"`, `"socket"`, `"character device"`,
    /// `"block device"` or `"directory"`.
    pub kind: &'static str,
}

impl fmt::Display for NotRegularFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a regular file (a {})", self.kind)
    }
}

impl std::error::Error for NotRegularFile {}

impl NotRegularFile {
    /// What `ft` is, if it is not a regular file.
    pub fn of(ft: fs::FileType) -> Option<NotRegularFile> {
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_file() {
            return None;
        } else if ft.is_symlink() {
            "symbolic link"
        } else if ft.is_fifo() {
            "FIFO"
        } else if ft.is_socket() {
            "socket"
        } else if ft.is_char_device() {
            "character device"
        } else if ft.is_block_device() {
            "block device"
        } else if ft.is_dir() {
            "directory"
        } else {
            "special file"
        };
        Some(NotRegularFile { kind })
    }

    /// The `io::Error` that carries it.
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }

    /// The `NotRegularFile` an `io::Error` carries, if any.
    pub fn in_io(e: &io::Error) -> Option<NotRegularFile> {
        e.get_ref()?.downcast_ref::<NotRegularFile>().copied()
    }
}

/// Storage for data files.
pub trait Volume: Send + Sync + fmt::Debug {
    /// Creates a new, empty data file (never an existing one: `AlreadyExists`), with its
    /// directories as needed.
    fn create(&self, loc: &FileLoc) -> io::Result<Box<dyn DataFile>>;
    /// Opens an existing data file for reading (`NotFound` if absent). Anything but a
    /// regular file — a FIFO or device planted there, a symbolic link — is refused with an
    /// error carrying [`NotRegularFile`], without blocking and without following the link.
    fn open(&self, loc: &FileLoc) -> io::Result<Box<dyn DataFile>>;
    /// Makes the directory entry of a file created or removed at `loc` durable.
    fn sync_dir(&self, loc: &FileLoc) -> io::Result<()>;
    /// Removes a data file (`NotFound` if absent).
    fn remove(&self, loc: &FileLoc) -> io::Result<()>;
    /// Removes a bucket's directory and everything in it (no error if absent).
    fn remove_bucket(&self, bucket_id: u64) -> io::Result<()>;
    /// Every file on the volume.
    fn scan(&self) -> io::Result<Vec<VolumeEntry>>;
    /// Removes a file that [`scan`](Self::scan) reported as [`VolumeEntry::Other`].
    fn remove_other(&self, rel: &Path) -> io::Result<()>;
    /// Moves an existing file (on the same file system) into place as data file `loc`, and
    /// makes that durable. Used once, to migrate format-1 stores.
    fn adopt(&self, from: &Path, loc: &FileLoc) -> io::Result<()>;
    /// Where it is, for messages.
    fn describe(&self) -> String;
}

/// How a [`DiskVolume`] reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskOptions {
    /// io_uring or positioned std I/O.
    pub io: IoMode,
    /// Open data files with `O_DIRECT` (needs io_uring; for benchmarking drives).
    pub direct: bool,
}

impl Default for DiskOptions {
    /// Buffered files read and written with positioned std I/O. Measured on the project's
    /// machine (docs/PERFORMANCE.md §14), cold buffered reads through `pread` ran 1.2–2.8×
    /// faster than the io_uring pipeline's (the kernel's readahead sees one sequential
    /// reader, not a burst of concurrent slot reads), and decryption then hid behind them;
    /// writes were even. io_uring is the path for `O_DIRECT` (which needs it), or when asked
    /// for ([`IoMode::detect`] says whether this kernel allows a ring).
    fn default() -> Self {
        DiskOptions {
            io: IoMode::Std,
            direct: false,
        }
    }
}

/// Data files in a directory of a local file system.
#[derive(Debug, Clone)]
pub struct DiskVolume {
    root: PathBuf,
    opts: DiskOptions,
}

impl DiskVolume {
    /// A volume rooted at `root` (created 0700 if missing).
    pub fn new(root: &Path, opts: DiskOptions) -> io::Result<DiskVolume> {
        if opts.direct && opts.io != IoMode::Uring {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "O_DIRECT needs the io_uring I/O path",
            ));
        }
        match DirBuilder::new().mode(0o700).create(root) {
            Ok(()) => sync_parent(root)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(DiskVolume {
            root: root.to_owned(),
            opts,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How it reads and writes.
    pub fn options(&self) -> DiskOptions {
        self.opts
    }

    fn path(&self, loc: &FileLoc) -> PathBuf {
        self.root.join(loc.rel_path())
    }

    fn flags(&self) -> i32 {
        if self.opts.direct { libc::O_DIRECT } else { 0 }
    }

    fn wrap(&self, f: File) -> Box<dyn DataFile> {
        Box::new(if self.opts.direct {
            IoFile::new_direct(f, self.opts.io)
        } else {
            IoFile::new(f, self.opts.io)
        })
    }

    /// Creates `dir` and any missing parent below the root (0700), syncing each parent whose
    /// entries changed.
    fn ensure_dir(&self, dir: &Path) -> io::Result<()> {
        match DirBuilder::new().mode(0o700).create(dir) {
            Ok(()) => sync_parent(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound && dir != self.root => {
                if let Some(parent) = dir.parent() {
                    self.ensure_dir(parent)?;
                }
                match DirBuilder::new().mode(0o700).create(dir) {
                    Ok(()) => sync_parent(dir),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}

fn sync_parent(p: &Path) -> io::Result<()> {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => File::open(d)?.sync_all(),
        _ => Ok(()),
    }
}

impl Volume for DiskVolume {
    fn create(&self, loc: &FileLoc) -> io::Result<Box<dyn DataFile>> {
        let path = self.path(loc);
        if let Some(dir) = path.parent() {
            self.ensure_dir(dir)?;
        }
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(self.flags())
            .open(&path)?;
        Ok(self.wrap(f))
    }

    fn open(&self, loc: &FileLoc) -> io::Result<Box<dyn DataFile>> {
        let path = self.path(loc);
        // O_NOFOLLOW: a symbolic link planted here is refused, not followed. O_NONBLOCK: a
        // FIFO planted here does not block the open (it has no effect on regular files).
        // Then fstat the descriptor itself, so nothing can be swapped in between.
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(self.flags() | libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => NotRegularFile {
                    kind: "symbolic link",
                }
                .into_io(),
                _ => e,
            })?;
        if let Some(bad) = NotRegularFile::of(f.metadata()?.file_type()) {
            return Err(bad.into_io());
        }
        Ok(self.wrap(f))
    }

    fn sync_dir(&self, loc: &FileLoc) -> io::Result<()> {
        sync_parent(&self.path(loc))
    }

    fn remove(&self, loc: &FileLoc) -> io::Result<()> {
        fs::remove_file(self.path(loc))
    }

    fn remove_bucket(&self, bucket_id: u64) -> io::Result<()> {
        let dir = self.root.join(bucket_id.to_string());
        match fs::remove_dir_all(&dir) {
            Ok(()) => File::open(&self.root)?.sync_all(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn scan(&self) -> io::Result<Vec<VolumeEntry>> {
        let mut out = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let rd = match fs::read_dir(self.root.join(&rel)) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for e in rd {
                let e = e?;
                let child = rel.join(e.file_name());
                let ft = e.file_type()?;
                if ft.is_dir() {
                    stack.push(child);
                    continue;
                }
                let md = e.metadata()?;
                let modified = md.modified().ok();
                out.push(match FileLoc::from_rel_path(&child) {
                    Some(loc) if ft.is_file() => VolumeEntry::Data {
                        loc,
                        len: md.len(),
                        modified,
                    },
                    _ => VolumeEntry::Other {
                        path: child,
                        modified,
                    },
                });
            }
        }
        Ok(out)
    }

    fn remove_other(&self, rel: &Path) -> io::Result<()> {
        if rel.is_absolute()
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a path inside the volume",
            ));
        }
        let p = self.root.join(rel);
        fs::remove_file(&p)?;
        sync_parent(&p)
    }

    fn adopt(&self, from: &Path, loc: &FileLoc) -> io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let to = self.path(loc);
        if let Some(dir) = to.parent() {
            self.ensure_dir(dir)?;
        }
        // Link, then unlink: unlike rename, a link never replaces an existing file. After a
        // crash between the two, both names exist and are the same file: finish the move.
        match fs::hard_link(from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let (a, b) = (fs::metadata(from)?, fs::metadata(&to)?);
                if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        sync_parent(&to)?;
        fs::remove_file(from)?;
        sync_parent(from)
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_roundtrip_through_paths() {
        let loc = FileLoc {
            bucket_id: 42,
            object_id: [0xab; 16],
        };
        let p = loc.rel_path();
        assert_eq!(p, Path::new("42/ab/abababababababababababababababab"));
        assert_eq!(FileLoc::from_rel_path(&p), Some(loc));
        for bad in [
            "42/ab/ABABABABABABABABABABABABABABABAB",
            "42/cd/abababababababababababababababab",
            "042/ab/abababababababababababababababab",
            "42/ab/abababababababababababababababab.tmp",
            "42/abababababababababababababababab",
            "x/ab/abababababababababababababababab",
        ] {
            assert_eq!(FileLoc::from_rel_path(Path::new(bad)), None, "{bad}");
        }
    }
}
