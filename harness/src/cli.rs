//! Command-line interface definition (clap derive). Every command has `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// dare: data-at-rest encryption for object storage — put and get objects encrypted with
/// chunked AES-256-GCM under a master/namespace/bucket key hierarchy, rotate keys, and
/// measure what encryption costs on your drive.
#[derive(Debug, Parser)]
#[command(name = "dare", version, propagate_version = true)]
pub struct Cli {
    /// Store directory.
    #[arg(long, global = true, env = "DARE_STORE", default_value = "./dare-data")]
    pub store: PathBuf,
    /// Force an AEAD backend (see `dare cpu`); also DARE_AEAD_BACKEND.
    #[arg(long, global = true)]
    pub backend: Option<String>,
    /// Force the I/O path: io_uring or std (positioned reads/writes).
    #[arg(long, global = true, value_enum)]
    pub io: Option<IoChoice>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoChoice {
    /// io_uring (falls back with an error if the kernel refuses a ring)
    Uring,
    /// positioned std I/O
    Std,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a store: directory layout, root key and key store.
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
    /// Show an object's size, chunk size, encryption status and key reference.
    Head(HeadArgs),
    /// List buckets, or the objects of a bucket.
    Ls(LsArgs),
    /// Delete an object.
    Rm(RmArgs),
    /// Show the CPU features, the AEAD backend in use and whether io_uring works here.
    Cpu(JsonFlag),
    /// Key management: dump the key store, rotate keys.
    #[command(subcommand)]
    Keys(KeysCommand),
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
    /// Protect the master key with a passphrase read from this file (argon2id) instead of a
    /// random root key file.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum NsCommand {
    /// Create a namespace. Encryption is on unless turned off here, and can never change.
    Create {
        name: String,
        #[arg(long, value_enum, default_value = "on")]
        encryption: OnOff,
    },
    /// List namespaces.
    Ls(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub enum BucketCommand {
    /// Create a bucket. It inherits its namespace's encryption setting unless given here;
    /// the setting can never change afterwards.
    Create {
        name: String,
        #[arg(long, default_value = "default")]
        namespace: String,
        #[arg(long, value_enum)]
        encryption: Option<OnOff>,
    },
    /// List buckets.
    Ls(JsonFlag),
}

#[derive(Debug, Args)]
pub struct SseC {
    /// Customer-supplied key (SSE-C): a file holding 32 raw bytes or their base64 text.
    #[arg(long)]
    pub sse_c_key_file: Option<PathBuf>,
    /// Expected base64 MD5 of the customer key (as S3's key-MD5 header).
    #[arg(long, requires = "sse_c_key_file")]
    pub sse_c_key_md5: Option<String>,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// BUCKET/KEY
    pub target: String,
    /// Input file, or `-` (the default) for standard input.
    pub file: Option<PathBuf>,
    /// User metadata, stored encrypted: `--meta key=value`, repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    #[command(flatten)]
    pub sse_c: SseC,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// BUCKET/KEY
    pub target: String,
    /// Output file; written to a temporary file and renamed only once everything verified,
    /// so a failed get leaves no output file. Standard output when omitted (streamed: every
    /// byte written has verified, but a failure part-way leaves the verified prefix written).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Inclusive byte range as in an HTTP Range header: `START-END`, `START-` or `-SUFFIX`.
    #[arg(long, allow_hyphen_values = true)]
    pub range: Option<String>,
    #[command(flatten)]
    pub sse_c: SseC,
}

#[derive(Debug, Args)]
pub struct HeadArgs {
    /// BUCKET/KEY
    pub target: String,
    #[command(flatten)]
    pub sse_c: SseC,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Bucket to list; lists the buckets when omitted.
    pub bucket: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// BUCKET/KEY
    pub target: String,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print every key-store record as stored (wrapped keys in base64, never plaintext).
    Dump(JsonFlag),
    /// Start a key rotation: new master and rotation keys, everything above the objects rewrapped.
    Rotate {
        /// Block until the rotation has finished.
        #[arg(long)]
        wait: bool,
    },
    /// Rotation tasks: status and resume.
    #[command(subcommand)]
    Rotation(RotationCommand),
}

#[derive(Debug, Subcommand)]
pub enum RotationCommand {
    /// Show a rotation task (or the latest) and the history of all rotations.
    Status {
        /// Task id; the latest when omitted.
        id: Option<u64>,
        #[arg(long)]
        json: bool,
        /// Wait until the task has finished.
        #[arg(long)]
        wait: bool,
    },
    /// Resume an interrupted rotation from its last saved step.
    Resume { id: Option<u64> },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// AES-256-GCM seal/open throughput of every backend this CPU supports.
    Aead(crate::bench_aead::AeadArgs),
    /// What encryption costs on a drive: PUT/GET/range-GET, encrypted against plaintext.
    Overhead(crate::bench_overhead::OverheadArgs),
}
