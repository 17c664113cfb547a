//! The command line (clap derive). Every command has `--help`; every command that prints
//! something takes `--json`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::args::{IoChoice, OnOff};

/// dare: data-at-rest encryption for object storage — put and get objects encrypted with
/// chunked AES-256-GCM under a master/namespace/bucket key hierarchy, rotate keys and rewrap
/// envelopes without touching data, check and back up a store, and measure what encryption
/// costs on your drive.
///
/// A store is protected by a random root key file (`root.key` in the store directory) unless
/// it was created with `--passphrase-file` (or DARE_PASSPHRASE_FILE): then every command that
/// opens it needs the same passphrase file.
///
/// Its metadata is in `dare.db` in the store directory, unless it was created with a
/// PostgreSQL database (DARE_METADATA_URL or --metadata) for several nodes to share: then
/// every command needs that database's URL (docs/NODES.md).
///
/// Exit status: 0 success, 1 error, 2 usage, 3 not found (namespace, bucket, object), 4
/// integrity (tampered or corrupt data, wrong key; `fsck` found an unreadable object).
#[derive(Debug, Parser)]
#[command(name = "dare", version, propagate_version = true)]
pub struct Cli {
    /// Store directory.
    #[arg(long, global = true, env = "DARE_STORE", default_value = "./dare-data")]
    pub store: PathBuf,
    /// Protect (init) or unlock the store's master keys with a passphrase read from this file
    /// (Argon2id; one trailing newline is ignored) instead of the root key file. Set
    /// DARE_PASSPHRASE_FILE instead to give it once for every command. The passphrase must be
    /// at least 12 bytes; the file must be yours (or root's), mode 0600 or stricter, in a
    /// directory others cannot write.
    #[arg(long, global = true, env = "DARE_PASSPHRASE_FILE", value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Keep the store's metadata in this PostgreSQL database instead of dare.db, so that
    /// several nodes share one store: postgres://USER:PASSWORD@HOST:PORT/DATABASE. Given to
    /// `init` (which records the URL without its password in the store's metadata.json) and to
    /// every later command. Prefer the environment variable DARE_METADATA_URL: a password on
    /// the command line is visible to every user of the machine in `ps`. dare never prints the
    /// password (it shows `USER:***@`).
    #[arg(
        long,
        global = true,
        env = "DARE_METADATA_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub metadata: Option<dare::PostgresUrl>,
    /// Force an AEAD backend (`dare cpu` lists them).
    #[arg(long, global = true, env = "DARE_AEAD_BACKEND", value_name = "NAME")]
    pub backend: Option<String>,
    /// Force the I/O path for data files: io_uring or std (positioned reads and writes).
    #[arg(long, global = true, env = "DARE_IO", value_enum)]
    pub io: Option<IoChoice>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a store: metadata database, root of trust, master key, namespace `default`.
    ///
    /// The master keys are protected by a random root key file (`root.key`, mode 0600) in the
    /// store directory, or, with --passphrase-file FILE (or DARE_PASSPHRASE_FILE), by a key
    /// derived from the passphrase in FILE with Argon2id; every later command then needs the
    /// same passphrase file.
    ///
    /// The metadata goes to `dare.db` in the store directory, or, with DARE_METADATA_URL (or
    /// --metadata URL), to that PostgreSQL database (empty, existing): the store directory
    /// then gets `metadata.json` naming the database without its password, and every later
    /// command needs the same URL.
    Init(InitArgs),
    /// Namespaces: each has its own namespace key and an encryption setting.
    #[command(subcommand)]
    Ns(NsCommand),
    /// Buckets: objects live in buckets, as in S3.
    #[command(subcommand)]
    Bucket(BucketCommand),
    /// Store an object from a file or standard input.
    Put(PutArgs),
    /// Read an object (or a byte range of it), verified, to a file or standard output.
    Get(GetArgs),
    /// Show an object's id, sizes, ETag, format, encryption and key reference, and its
    /// metadata.
    Head(HeadArgs),
    /// List buckets, or one page of a bucket's objects (with prefix, delimiter, pagination).
    Ls(LsArgs),
    /// Delete an object.
    Rm(RmArgs),
    /// Show the CPU features, the AEAD backend in use and whether io_uring works here.
    Cpu(JsonFlag),
    /// Key management: dump the key records, rotate keys, rewrap envelopes.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check the store: pair every object with its data file and every file with an object.
    ///
    /// Reports unreadable objects (missing, cut or swapped data files; with --deep, any that
    /// fails to decrypt) and garbage (files no object owns: puts killed before their commit,
    /// leftovers of deletes). Exit status 4 when an object is unreadable; garbage alone is
    /// not an error, and --repair removes it.
    Fsck(FsckArgs),
    /// Write a consistent copy of the metadata database (wrapped keys only), while the store
    /// is in use.
    ///
    /// Data files are not copied: back up `objects/` separately.
    Backup(FileArgs),
    /// Replace the store's metadata database with a backup made by `dare backup`.
    ///
    /// Objects written after the backup become garbage (`dare fsck --repair` removes them);
    /// objects deleted since have lost their data files (`dare fsck` lists them).
    Restore(FileArgs),
    /// Benchmarks: AEAD kernels, encryption overhead on a drive.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Chunk size in bytes for objects in this store: a power of two from 4096 to 4194304.
    #[arg(long, default_value_t = 65536)]
    pub chunk_size: u64,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, Subcommand)]
pub enum NsCommand {
    /// Create a namespace. Encryption is on unless turned off here, and can never change.
    Create {
        name: String,
        #[arg(long, value_enum, default_value = "on")]
        encryption: OnOff,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List namespaces.
    Ls(JsonFlag),
    /// Delete a namespace and its namespace key (refused while it has buckets).
    Rm {
        name: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum BucketCommand {
    /// Create a bucket. It inherits its namespace's encryption setting unless given here;
    /// the setting can never change afterwards.
    Create {
        /// The bucket's name, as S3 names buckets: 3-63 characters of a-z 0-9 . - beginning
        /// and ending with a letter or digit.
        name: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        #[arg(long, value_enum)]
        encryption: Option<OnOff>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List buckets.
    Ls(JsonFlag),
    /// Delete a bucket (refused while it holds objects, unless --force).
    Rm {
        name: String,
        /// Delete its objects too. This destroys the bucket key (crypto-shredding): the
        /// objects can never be read again, not even from a copy of their data files.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Args)]
pub struct SseC {
    /// Customer-supplied key (SSE-C): a file holding 32 raw bytes or their base64 text.
    #[arg(long, value_name = "FILE")]
    pub sse_c_key_file: Option<PathBuf>,
    /// Expected base64 MD5 of the customer key (as S3's key-MD5 header).
    #[arg(long, requires = "sse_c_key_file", value_name = "MD5")]
    pub sse_c_key_md5: Option<String>,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// BUCKET/NAME: the bucket is up to the first `/`, the object name (1-1024 bytes of
    /// UTF-8, `/` allowed, as S3 keys) everything after it.
    #[arg(value_parser = clap::value_parser!(OsString))]
    pub target: OsString,
    /// Input file, or `-` (the default) for standard input.
    pub file: Option<PathBuf>,
    /// User metadata, stored encrypted: `--meta key=value`, repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    #[command(flatten)]
    pub sse_c: SseC,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// BUCKET/NAME
    #[arg(value_parser = clap::value_parser!(OsString))]
    pub target: OsString,
    /// Output file; written to a temporary file (mode 0600) beside it and renamed into place
    /// only once everything verified, so a failed get leaves no output file. Standard output
    /// when omitted (streamed: every byte written has verified, but a failure part-way leaves
    /// the verified prefix written); a device or FIFO is streamed to likewise.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Byte range as in an HTTP Range header: `FIRST-LAST` (inclusive), `FIRST-` or
    /// `-SUFFIX`, with or without `bytes=`. LAST past the end is clamped.
    #[arg(long, allow_hyphen_values = true)]
    pub range: Option<String>,
    #[command(flatten)]
    pub sse_c: SseC,
}

#[derive(Debug, Args)]
pub struct HeadArgs {
    /// BUCKET/NAME
    #[arg(value_parser = clap::value_parser!(OsString))]
    pub target: OsString,
    #[command(flatten)]
    pub sse_c: SseC,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Bucket to list; lists the buckets when omitted.
    pub bucket: Option<String>,
    /// Only names starting with this.
    #[arg(long, requires = "bucket")]
    pub prefix: Option<String>,
    /// Roll names up to the first occurrence of this after the prefix into common prefixes
    /// (`PRE` lines), as `aws s3 ls` does with `/`.
    #[arg(long, requires = "bucket")]
    pub delimiter: Option<String>,
    /// Only names after this one.
    #[arg(long, requires = "bucket", value_name = "NAME")]
    pub start_after: Option<String>,
    /// Most entries (objects and common prefixes) on the page, 1 to 1000.
    #[arg(long, requires = "bucket", value_parser = clap::value_parser!(u16).range(1..=1000), default_value_t = 1000)]
    pub max_keys: u16,
    /// Continue a listing from the token a truncated page printed.
    #[arg(long, requires = "bucket", value_name = "TOKEN")]
    pub continuation_token: Option<String>,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// BUCKET/NAME
    #[arg(value_parser = clap::value_parser!(OsString))]
    pub target: OsString,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Also decrypt and verify every object (objects under a customer key are skipped: their
    /// key is not stored).
    #[arg(long)]
    pub deep: bool,
    /// Remove garbage older than --grace (never a file an object owns).
    #[arg(long)]
    pub repair: bool,
    /// Seconds an unreferenced file must have existed before --repair removes it (a put in
    /// flight owns a young unreferenced file).
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub grace: u64,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, Args)]
pub struct FileArgs {
    /// The backup file.
    pub file: PathBuf,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print every key record as stored, as JSON (wrapped keys in base64, never plaintext).
    Dump(JsonFlag),
    /// Start a key rotation: new master and rotation keys; everything above the objects is
    /// rewrapped. Runs in a background process and prints the task id, or in this process
    /// with --wait.
    Rotate {
        /// Run the rotation here and return when it has finished.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Rotation tasks: status and resume.
    #[command(subcommand)]
    Rotation(RotationCommand),
    /// Move object envelopes to the active rotation key without touching data files.
    ///
    /// One metadata update per object; resumable and idempotent (running it again continues
    /// where it stopped, and rewraps nothing once every envelope is current).
    Rewrap(RewrapArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).multiple(true).args(["bucket", "all"])))]
pub struct RewrapArgs {
    /// A bucket to rewrap (repeatable).
    #[arg(long, value_name = "BUCKET")]
    pub bucket: Vec<String>,
    /// Every object: of every encrypted bucket, or of the buckets given with --bucket.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, Subcommand)]
pub enum RotationCommand {
    /// Show a rotation task (or the latest) and the history of all rotations.
    Status {
        /// Task id; the latest when omitted.
        id: Option<u64>,
        /// Wait until the task has finished.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Resume an interrupted rotation from its last saved step.
    Resume {
        /// Task id; the unfinished one when omitted.
        id: Option<u64>,
        /// If another process holds the task's lease, wait until it finishes the task or its
        /// lease expires (then go on), instead of failing.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// AES-256-GCM seal/open throughput of every backend this CPU supports.
    Aead(crate::bench_aead::AeadArgs),
    /// What encryption costs on a drive: PUT/GET/range-GET, encrypted against plaintext.
    Overhead(crate::bench_overhead::OverheadArgs),
    /// What the metadata database costs a request: lookups, commits and rewraps, SQLite
    /// against a PostgreSQL server in the same run.
    Meta(crate::bench_meta::MetaArgs),
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
