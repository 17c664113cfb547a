//! Error types, one per operation. Messages say what went wrong and what to do; none carries
//! key material, and authentication failures carry no detail beyond where they happened.

use std::fmt;
use std::io;

use dare_envelope::KeyError;

use crate::volume::FileLoc;

/// The bytes are not a well-formed dare object header or body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// The file is empty: zero bytes are not an object (an empty object still has a header and a tag).
    Empty,
    /// The input ended before the header did; `need` bytes are required.
    Truncated { need: u64 },
    /// The first four bytes are not `DARE`.
    BadMagic,
    /// A format version this build cannot read.
    UnsupportedVersion(u8),
    /// An AEAD suite id this build does not know.
    UnknownSuite(u8),
    /// A key-kind byte this build does not know.
    UnknownKeyKind(u8),
    /// The chunk size is not a power of two from 4 KiB to 4 MiB.
    BadChunkSize,
    /// The body length is not one a valid object can have (cut inside a tag, or too many chunks).
    BadLength,
    /// A name that is empty or too long (or, in format 1, could escape its directory).
    BadName(&'static str),
    /// Some other field is out of range.
    Invalid(&'static str),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Empty => {
                f.write_str("object file is empty (zero bytes): not a dare object")
            }
            FormatError::Truncated { need } => {
                write!(
                    f,
                    "object header is truncated (needs at least {need} bytes)"
                )
            }
            FormatError::BadMagic => f.write_str("not a dare object (bad magic bytes)"),
            FormatError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "object format version {v} is not supported by this build (it reads versions 1 and 2)"
                )
            }
            FormatError::UnknownSuite(s) => write!(f, "unknown encryption suite id {s}"),
            FormatError::UnknownKeyKind(k) => write!(f, "unknown key kind {k} in object header"),
            FormatError::BadChunkSize => f.write_str(
                "chunk size must be a power of two from 4096 (4 KiB) to 4194304 (4 MiB)",
            ),
            FormatError::BadLength => f.write_str(
                "object body has an impossible length: the object is truncated or extended",
            ),
            FormatError::BadName(why) => write!(f, "invalid name: {why}"),
            FormatError::Invalid(why) => write!(f, "malformed object header: {why}"),
        }
    }
}
impl std::error::Error for FormatError {}

/// Sealing (encrypting) an object failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum SealError {
    /// The key provider could not supply a data key.
    Key(KeyError),
    /// A header field (name, metadata) is out of its limits.
    Format(FormatError),
    /// The object would exceed 2^32 chunks (the nonce counter's limit).
    TooLarge,
    /// The random number generator failed.
    Rng,
    /// Reading the plaintext or writing the ciphertext failed.
    Io(io::Error),
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealError::Key(e) => write!(f, "cannot get a data key: {e}"),
            SealError::Format(e) => e.fmt(f),
            SealError::TooLarge => f.write_str(
                "object too large: at most 2^32 chunks (use a larger chunk size for larger objects)",
            ),
            SealError::Rng => f.write_str("the system random number generator failed"),
            SealError::Io(e) => write!(f, "I/O error while sealing: {e}"),
        }
    }
}
impl std::error::Error for SealError {}
impl From<io::Error> for SealError {
    fn from(e: io::Error) -> Self {
        SealError::Io(e)
    }
}
impl From<FormatError> for SealError {
    fn from(e: FormatError) -> Self {
        SealError::Format(e)
    }
}

/// Opening (verifying and decrypting) an object or a range of it failed. No plaintext of a
/// chunk that failed verification has been released.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The header does not parse.
    Format(FormatError),
    /// The data key could not be obtained (wrong root key, tampered key block, SSE-C key missing or wrong).
    Key(KeyError),
    /// The header or the user-metadata block failed authentication (or, for format 2, the
    /// data key from the envelope is not this object's: a substituted envelope or a wrong key).
    HeaderAuth,
    /// Chunk `index` failed authentication: flipped bits, a chunk swapped, duplicated or spliced in.
    ChunkAuth { index: u64 },
    /// The object ends early: its last chunk was sealed as a middle chunk.
    Truncated,
    /// Data follows the object's final chunk.
    Extended,
    /// The object is stored in clear but its bucket requires encryption: a plaintext file
    /// put in place of an encrypted object (a downgrade) is refused, never served.
    NotEncrypted,
    /// A format-2 data file whose length is not the one its row implies (cut or extended).
    FileLength { expected: u64, actual: u64 },
    /// An object stored in clear does not match its CRC-32C (corrupted on the drive).
    ChecksumMismatch,
    /// A range of zero bytes was asked for.
    EmptyRange,
    /// The range goes past the end of the object.
    RangeOutOfBounds { offset: u64, len: u64, size: u64 },
    /// Reading the stored object failed.
    Io(io::Error),
    /// The caller's sink refused verified plaintext (its own output failed: a full disk, a
    /// closed pipe). Nothing is wrong with the object.
    Sink(io::Error),
    /// A format-2 data file whose header names another object or other parameters than its
    /// row (swapped or damaged file).
    HeaderMismatch,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Format(e) => e.fmt(f),
            OpenError::Key(e) => e.fmt(f),
            OpenError::HeaderAuth => f.write_str(
                "object metadata failed authentication (corrupted, tampered, or wrong key)",
            ),
            OpenError::ChunkAuth { index } => write!(
                f,
                "chunk {index} failed authentication (corrupted, reordered, duplicated or spliced data)"
            ),
            OpenError::Truncated => f.write_str("object is truncated: its final chunk is missing"),
            OpenError::Extended => f.write_str("object is extended: data follows its final chunk"),
            OpenError::NotEncrypted => f.write_str(
                "object is stored in clear but its bucket is encrypted: refusing it (the file was replaced or forged)",
            ),
            OpenError::FileLength { expected, actual } => write!(
                f,
                "data file is {actual} bytes but the object needs {expected}: it was truncated, \
                 extended or replaced"
            ),
            OpenError::ChecksumMismatch => f.write_str(
                "object stored in clear does not match its CRC-32C checksum (corrupted data)",
            ),
            OpenError::EmptyRange => f.write_str("the requested range is empty"),
            OpenError::RangeOutOfBounds { offset, len, size } => write!(
                f,
                "range of {len} bytes at offset {offset} goes past the end of the object ({size} bytes)"
            ),
            OpenError::Io(e) => write!(f, "I/O error while reading the object: {e}"),
            OpenError::Sink(e) => write!(f, "writing the output failed: {e}"),
            OpenError::HeaderMismatch => f.write_str(
                "data file header does not match the object's record (file swapped or damaged)",
            ),
        }
    }
}
impl std::error::Error for OpenError {}
impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}
impl From<FormatError> for OpenError {
    fn from(e: FormatError) -> Self {
        OpenError::Format(e)
    }
}

/// A data-store operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoreError {
    /// The object's row names a data file that is not there (deleted or lost outside dare).
    DataFileMissing(FileLoc),
    /// Encrypting the object failed; nothing was written.
    Seal(SealError),
    /// Verifying or decrypting the object failed.
    Open(OpenError),
    /// The object's data file is not a regular file (a FIFO, device, socket, directory or
    /// symbolic link was put in its place outside dare); it is not read.
    NotRegularFile {
        /// Which data file.
        loc: FileLoc,
        /// What is there instead (`"FIFO"`, `"symbolic link"`, ...).
        kind: &'static str,
    },
    /// A file-system operation failed.
    Io(io::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::DataFileMissing(loc) => write!(
                f,
                "the data file of this object is missing ({}): it was removed outside dare; \
                 `dare fsck` lists every such object",
                loc.rel_path().display()
            ),
            StoreError::Seal(e) => e.fmt(f),
            StoreError::Open(e) => e.fmt(f),
            StoreError::NotRegularFile { loc, kind } => write!(
                f,
                "the data file of this object ({}) is not a regular file but a {kind}: \
                 something outside dare put it there; dare refuses to read it",
                loc.rel_path().display()
            ),
            StoreError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}
impl std::error::Error for StoreError {}
impl From<io::Error> for StoreError {
    fn from(e: io::Error) -> Self {
        StoreError::Io(e)
    }
}
impl From<SealError> for StoreError {
    fn from(e: SealError) -> Self {
        StoreError::Seal(e)
    }
}
impl From<OpenError> for StoreError {
    fn from(e: OpenError) -> Self {
        StoreError::Open(e)
    }
}
