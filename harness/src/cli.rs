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
/// it was created with `--passphrase-file` (or DARE_PASSPHRASE_FILE) or on a PKCS#11 HSM
/// (`--hsm-module`, `--hsm-token`, `--hsm-key` and the PIN from `--hsm-pin-file` or
/// DARE_HSM_PIN; DARE_HSM_* in the environment) or on a KMIP cluster (`--kmip-config`,
/// `--kmip-cluster`; DARE_KMIP_*): then every command that opens it needs the same
/// passphrase file, the same HSM key, or the same cluster.
///
/// Its metadata is in `dare.db` in the store directory, unless it was created with a
/// PostgreSQL database (DARE_METADATA_URL or --metadata) for several nodes to share: then
/// every command needs that database's URL (docs/NODES.md).
///
/// Exit status: 0 success, 1 error, 2 usage (and requests the key management service's rules
/// or a key's state refuse), 3 not found (namespace, bucket, object, customer master key), 4
/// integrity (tampered or corrupt data, wrong key or encryption context; `fsck` found an
/// unreadable object; `kms audit verify` found the audit trail broken).
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
    /// Protect (init) or unlock the store's master keys with an AES-256 key in a PKCS#11 HSM
    /// that never leaves it, instead of the root key file: the HSM vendor's PKCS#11 library
    /// (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so). Goes with --hsm-token, --hsm-key and the
    /// token's user PIN (--hsm-pin-file, or the environment variable DARE_HSM_PIN; never on
    /// the command line). A store created on an HSM needs them for every command
    /// (docs/KEYS.md §5.4).
    #[arg(long, global = true, env = "DARE_HSM_MODULE", value_name = "PATH")]
    pub hsm_module: Option<PathBuf>,
    /// The label of the HSM token that holds the key.
    #[arg(long, global = true, env = "DARE_HSM_TOKEN", value_name = "LABEL")]
    pub hsm_token: Option<String>,
    /// The label of the AES-256 key on the token (create it with `dare hsm init-key`).
    #[arg(long, global = true, env = "DARE_HSM_KEY", value_name = "LABEL")]
    pub hsm_key: Option<String>,
    /// Read the HSM token's user PIN from this file (one trailing newline is ignored). The
    /// file must be yours (or root's), mode 0600 or stricter, in a directory others cannot
    /// write. Or set DARE_HSM_PIN to the PIN itself.
    #[arg(long, global = true, env = "DARE_HSM_PIN_FILE", value_name = "FILE")]
    pub hsm_pin_file: Option<PathBuf>,
    /// Protect (init) or unlock the store's master keys with a cluster of KMIP key servers
    /// instead of the root key file: the JSON file naming the clusters (servers, CA, client
    /// certificate and key, timeouts, cache times; docs/KEYS.md §5.5). Goes with
    /// --kmip-cluster. A store created on a KMIP cluster needs both for every command.
    #[arg(long, global = true, env = "DARE_KMIP_CONFIG", value_name = "FILE")]
    pub kmip_config: Option<PathBuf>,
    /// The cluster of the --kmip-config file that protects the store.
    #[arg(long, global = true, env = "DARE_KMIP_CLUSTER", value_name = "NAME")]
    pub kmip_cluster: Option<String>,
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
    /// The I/O path for data files: std (positioned reads and writes; the default, measured
    /// faster for cold reads of buffered files) or io_uring (several requests in flight).
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
    /// derived from the passphrase in FILE with Argon2id, or, with --hsm-module, --hsm-token,
    /// --hsm-key and the PIN (--hsm-pin-file or DARE_HSM_PIN), by an AES-256 key that never
    /// leaves a PKCS#11 HSM; every later command then needs the same passphrase file or HSM
    /// key.
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
    /// The key management service: customer master keys (CMKs) with versions, rotation
    /// policies, imported material and scheduled deletion; data keys, small-data encryption,
    /// rewrap; registrations; the audit trail.
    ///
    /// KEY is a key id (UUID) or an alias. Binary outputs (ciphertexts, data keys, random
    /// bytes) are printed as one line of standard base64, or written with --out FILE (a new
    /// file, mode 0600). Ciphertext inputs (--in FILE, `-` for standard input) may be raw or
    /// base64. Exit status: 3 when no key has the id or alias, 4 when a ciphertext fails
    /// authentication (tampered, truncated, another context) or the audit trail is broken, 2
    /// when a rule or the key's state refuses the operation.
    #[command(subcommand)]
    Kms(KmsCommand),
    /// PKCS#11 HSM root of trust: create the key a store's master keys are wrapped under.
    #[command(subcommand)]
    Hsm(HsmCommand),
    /// Sites sharing one store (docs/KEYS.md §8.5, ECS §2.5): a new site makes an RSA key
    /// pair under its own root of trust (`init`), a site that holds the master keys grants
    /// them to its public key (`grant`), and the new site then opens the store.
    #[command(subcommand)]
    Site(SiteCommand),
    /// Benchmarks: AEAD kernels, encryption overhead on a drive.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Serve the store over S3 (docs/S3.md): SigV4 with the keys of --credentials, SSE-S3,
    /// SSE-C and SSE-KMS, ranges, listing, copy, multipart. Prints `listening on
    /// http://ADDR` (or https) once ready; SIGTERM stops it after in-flight requests finish.
    Serve(crate::serve::ServeArgs),
}

#[derive(Debug, Subcommand)]
pub enum HsmCommand {
    /// Generate the AES-256 key named by --hsm-key inside the token named by --hsm-token
    /// (--hsm-module, and the PIN from --hsm-pin-file or DARE_HSM_PIN): a token object that
    /// can never leave the HSM (CKA_EXTRACTABLE false, CKA_SENSITIVE true) and may only wrap
    /// and unwrap keys. Refused when the token holds an object with that label already. Then
    /// `dare init` with the same options creates a store protected by it.
    InitKey(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub enum SiteCommand {
    /// Make --store a new site of the store in the PostgreSQL database DARE_METADATA_URL (or
    /// --metadata) names: an RSA-3072 key pair whose private key is sealed under this site's
    /// own root of trust (a new root.key, or --passphrase-file, --hsm-*, --kmip-*) in
    /// site.key, and its public key in site.pub.pem, printed with its fingerprint. Give the
    /// PEM to `dare site grant` on a site that holds the master keys; then every command
    /// opens the store here with this site's root flags.
    Init {
        /// The data directory the sites share (the existing site's `objects/` on a shared
        /// filesystem); default `objects/` in --store.
        #[arg(long, value_name = "DIR")]
        objects: Option<PathBuf>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Grant the store's master keys and RT data key to a new site: each is encrypted to the
    /// site's RSA public key with RSA-OAEP-SHA256 and recorded in the metadata database under
    /// NAME. Later rotations and rekeys extend the grant to their new keys.
    Grant {
        /// The new site's public key: the PEM file `dare site init` wrote (or its DER).
        public_key: PathBuf,
        /// The name to record the site under: 1-64 characters of A-Z a-z 0-9 . _ -
        #[arg(long, value_name = "NAME")]
        site_name: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List the sites granted the store's keys.
    List(JsonFlag),
    /// Revoke a site's grant: it can no longer open the store, and new master keys are not
    /// granted to it. Rotate afterwards: what it unwrapped before, it may have kept.
    Revoke {
        /// The site's name.
        name: String,
        #[command(flatten)]
        out: JsonFlag,
    },
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
        /// SSE-KMS: wrap the bucket key under this customer master key (alias or key id) and
        /// register the bucket with it. Objects need no call to the key management service; a
        /// rotation of the key rewraps the bucket key, and disabling the key makes the bucket
        /// unreadable until it is enabled again.
        #[arg(long, value_name = "ALIAS|ID")]
        kms_key: Option<String>,
        /// SSE-KMS under the default master key `dare/default` (created on first use).
        #[arg(long, conflicts_with = "kms_key")]
        sse_kms: bool,
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
    /// Move the master keys to another root of trust (docs/KEYS.md §8.3): a new master key
    /// protected by the target replaces the current one (never overwriting it), every rotation
    /// and namespace key is rewrapped under it, and the retired master key is deactivated.
    /// Runs in a background process and prints the task's handle (follow it with `dare keys
    /// task HANDLE`), or in this process with --wait. The global root flags (--passphrase-file,
    /// --hsm-*) name the root the store is protected by now; the --new-* flags the target.
    Rekey {
        #[command(flatten)]
        target: TargetArgs,
        /// Run the rekey here and return when it has finished.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Report a rotation or rekey task by its handle: state, create and last-update time, the
    /// key to decommission and the new key (NetApp's GetAsyncResult). --resume continues an
    /// interrupted task from its last saved step (a rekey needs its --to target again).
    Task {
        /// The task's handle (its id).
        handle: u64,
        /// Wait until the task has finished.
        #[arg(long)]
        wait: bool,
        /// Resume the task from its last saved step (as `dare keys rotation resume` does for a
        /// rotation), in this process.
        #[arg(long)]
        resume: bool,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// The current master key — version, state, management type (internal, external, hsm),
    /// provider and key id — and every retired one with its deactivation
    /// (GetSoftwareEncryptionAtRestInfo).
    Info(JsonFlag),
}

/// Which kind of root of trust a rekey moves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RootKind {
    /// dare's own: the root key file root.key in the store directory, or with
    /// --new-passphrase-file a passphrase.
    Internal,
    /// An AES-256 key in a PKCS#11 HSM (--new-hsm-module, --new-hsm-token, --new-hsm-key,
    /// --new-hsm-pin-file).
    Hsm,
    /// A KMIP key server cluster (--cluster NAME).
    External,
}

/// The target root of trust of a rekey.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The kind of root of trust to move to.
    #[arg(long = "to", value_enum, value_name = "KIND")]
    pub to: Option<RootKind>,
    /// --to internal: protect the master keys with the passphrase in this file (at least 12
    /// bytes; the file must be yours, mode 0600 or stricter) instead of the root key file.
    #[arg(long, value_name = "FILE")]
    pub new_passphrase_file: Option<PathBuf>,
    /// --to hsm: the HSM vendor's PKCS#11 library.
    #[arg(long, value_name = "PATH")]
    pub new_hsm_module: Option<PathBuf>,
    /// --to hsm: the token's label.
    #[arg(long, value_name = "LABEL")]
    pub new_hsm_token: Option<String>,
    /// --to hsm: the AES-256 key's label (create it with `dare hsm init-key`).
    #[arg(long, value_name = "LABEL")]
    pub new_hsm_key: Option<String>,
    /// --to hsm: the file holding the token's user PIN (mode 0600 or stricter).
    #[arg(long, value_name = "FILE")]
    pub new_hsm_pin_file: Option<PathBuf>,
    /// --to external: the KMIP cluster's name.
    #[arg(long, value_name = "NAME")]
    pub cluster: Option<String>,
    /// --to external: the KMIP configuration file that defines the cluster (KEYS.md §5.5).
    /// The global --kmip-config names the configuration of the store's current root.
    #[arg(long, value_name = "FILE")]
    pub new_kmip_config: Option<PathBuf>,
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

/// Where a CMK's key material comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Origin {
    /// Made by the service (enabled at once, version 1).
    Generated,
    /// Imported by you (pending import until `import-key-material`).
    External,
}

/// A CMK state, as `list --state` filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyStateArg {
    Enabled,
    Disabled,
    PendingDeletion,
    PendingImport,
    /// Tombstones of deleted keys (listed only when asked for).
    Deleted,
}

/// One or more keys, each handled on its own.
#[derive(Debug, Args)]
pub struct KeyList {
    /// Key ids or aliases.
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<String>,
}

/// An encryption context: string pairs bound to a ciphertext; decrypting needs the same.
#[derive(Debug, Args)]
pub struct ContextArgs {
    /// Encryption context pair (repeatable): the same pairs are needed to decrypt.
    #[arg(long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
}

/// A binary input and output.
#[derive(Debug, Args)]
pub struct InOut {
    /// Input file (`-`: standard input).
    #[arg(long = "in", value_name = "FILE")]
    pub input: PathBuf,
    /// Write the output to this new file (mode 0600) instead of printing it as base64.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum KmsCommand {
    /// Create a customer master key: `generated` keys are enabled with version 1; `external`
    /// ones wait for imported material (pending import).
    Create {
        /// Alias: 1-255 characters of letters, digits, `_ - : /`, not ending in `/default`.
        #[arg(long)]
        alias: String,
        /// Free text, at most 255 characters.
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, value_enum, default_value = "generated")]
        origin: Origin,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show keys: state, versions, rotation, deletion and material expiry, registrations.
    Describe {
        #[command(flatten)]
        keys: KeyList,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Enable disabled keys.
    Enable {
        #[command(flatten)]
        keys: KeyList,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Disable enabled keys: they refuse to encrypt and decrypt (SSE-KMS buckets under them
    /// become unreadable) until enabled again.
    Disable {
        #[command(flatten)]
        keys: KeyList,
        /// Disable a key that still protects registered resources.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Rotate a key now (at most once an hour): a new version encrypts from now on, older
    /// ones still decrypt. A key with imported material rotates only with new material.
    Rotate {
        key: String,
        /// New key material, wrapped with the public key of `get-import-parameters`.
        #[arg(long, value_name = "FILE", requires = "token")]
        material: Option<PathBuf>,
        /// The import token of that `get-import-parameters`.
        #[arg(long, value_name = "FILE", requires = "material")]
        token: Option<PathBuf>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Cancel pending deletions: the keys become disabled (pending import without material).
    CancelDeletion {
        #[command(flatten)]
        keys: KeyList,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Schedule keys for deletion after a waiting period of 7 to 1096 days, during which
    /// they refuse every cryptographic operation and `cancel-deletion` keeps them.
    ScheduleDeletion {
        #[command(flatten)]
        keys: KeyList,
        /// The waiting period in days (7 to 1096).
        #[arg(long, allow_negative_numbers = true)]
        days: i64,
        /// Schedule a key that still protects registered resources.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Give a key another alias.
    UpdateAlias {
        key: String,
        new_alias: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Change a key's description.
    UpdateDescription {
        key: String,
        text: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List keys (deleted ones only with --state deleted), in creation order, a page at a
    /// time.
    List {
        #[arg(long, value_enum)]
        state: Option<KeyStateArg>,
        /// Only keys whose alias contains this text.
        #[arg(long, value_name = "TEXT")]
        alias: Option<String>,
        /// At most this many keys (default 100, at most 1000).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Start after this key id (the previous page's next marker).
        #[arg(long, value_name = "ID")]
        marker: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Turn automatic rotation on (every 30 to 365 days) or off.
    #[command(group(ArgGroup::new("policy").required(true).args(["enable", "disable"])))]
    RotationPolicy {
        key: String,
        /// Rotate automatically (at `dare kms tick`) every --days days.
        #[arg(long)]
        enable: bool,
        /// No automatic rotation.
        #[arg(long)]
        disable: bool,
        /// The rotation period in days (30 to 365; default 365).
        #[arg(long, requires = "enable", allow_negative_numbers = true)]
        days: Option<i64>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Refuse to decrypt ciphertexts under versions below N (refused while a registered
    /// resource is still under one).
    MinDecryptionVersion {
        key: String,
        version: u32,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Get an RSA wrapping key and an import token (valid 24 hours) for importing material
    /// into an `external` key: writes wrappingKey_<id>.der (SubjectPublicKeyInfo DER, for
    /// `openssl pkeyutl -encrypt -keyform der -pubin -inkey`) and importToken_<id>.bin.
    GetImportParameters {
        key: String,
        /// RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1 (RSAES_PKCS1_V1_5 is refused).
        #[arg(long, default_value = "RSAES_OAEP_SHA_256", value_name = "ALGORITHM")]
        wrapping_algorithm: String,
        /// RSA key size: 2048, 3072 or 4096.
        #[arg(long, default_value_t = 2048, value_name = "BITS")]
        key_bits: u32,
        /// Directory to write the two files to.
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Import key material (32 bytes wrapped with the wrapping key of
    /// `get-import-parameters`): the first import binds the key to it; later imports must
    /// bring the same material again (after a deletion or expiry).
    ImportKeyMaterial {
        key: String,
        /// The wrapped material.
        #[arg(long, value_name = "FILE")]
        material: PathBuf,
        /// The import token.
        #[arg(long, value_name = "FILE")]
        token: PathBuf,
        /// When the material expires: an RFC 3339 time or `never` (default: 24 hours after
        /// the import).
        #[arg(long, value_name = "TIME|never")]
        expires: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Delete an imported key's material: the key is pending import until the same
    /// material is imported again.
    DeleteKeyMaterial {
        key: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Make a data key: its plaintext (unless --without-plaintext) and its ciphertext under
    /// the key.
    CreateDatakey {
        key: String,
        /// 256 or 512.
        #[arg(long, default_value_t = 256)]
        bits: u32,
        /// Only the ciphertext.
        #[arg(long, conflicts_with = "plaintext_out")]
        without_plaintext: bool,
        #[command(flatten)]
        context: ContextArgs,
        /// Write the plaintext key to this new file (mode 0600).
        #[arg(long, value_name = "FILE")]
        plaintext_out: Option<PathBuf>,
        /// Write the ciphertext to this new file (mode 0600).
        #[arg(long, value_name = "FILE")]
        ciphertext_out: Option<PathBuf>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Encrypt a data key you hold (32 or 64 raw bytes).
    EncryptDatakey {
        key: String,
        #[command(flatten)]
        io: InOut,
        #[command(flatten)]
        context: ContextArgs,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Decrypt a data key ciphertext (it names its key).
    DecryptDatakey {
        #[command(flatten)]
        io: InOut,
        #[command(flatten)]
        context: ContextArgs,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Encrypt up to 4096 bytes.
    Encrypt {
        key: String,
        #[command(flatten)]
        io: InOut,
        #[command(flatten)]
        context: ContextArgs,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Decrypt a ciphertext of `encrypt` (it names its key).
    Decrypt {
        #[command(flatten)]
        io: InOut,
        #[command(flatten)]
        context: ContextArgs,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Re-encrypt a ciphertext (data or data key) under its key's current version, without
    /// the plaintext leaving the service.
    Rewrap {
        #[command(flatten)]
        io: InOut,
        #[command(flatten)]
        context: ContextArgs,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Random bytes from the operating system's generator.
    Random {
        /// How many (1 to 1024).
        #[arg(long, default_value_t = 64)]
        bytes: usize,
        /// Write them to this new file (mode 0600).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// The resources registered with a key (SSE-KMS buckets are `bucket:<name>`).
    Registrations {
        key: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Register a resource as protected by a key (at its current version).
    Register {
        key: String,
        resource: String,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Remove a registration.
    Deregister {
        key: String,
        resource: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Carry out what is due: deletions past their window, expired imported material,
    /// policy rotations and the rewrap of SSE-KMS bucket keys after them. Run it
    /// periodically (cron, a systemd timer).
    Tick(JsonFlag),
    /// The audit trail: every operation, chained with HMACs.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List audit records, oldest first.
    Ls {
        /// Only the records of this key (id or alias).
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        /// Only records from this time on (RFC 3339).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Verify the whole trail against its chain and head: exit status 4, naming the first
    /// problem, when a record was changed, removed or added.
    Verify(JsonFlag),
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
    /// What the key management service costs per call: create-datakey and decrypt-datakey
    /// per second and their latency on one thread, beside the bare AES-GCM they wrap.
    Kms(crate::bench_kms::KmsArgs),
    /// What encryption costs an S3 client: PUT and GET requests/s, MB/s and latency against
    /// `dare serve` (its own on a scratch store, or --endpoint), a plaintext bucket against
    /// SSE-S3, SSE-C and SSE-KMS, interleaved.
    S3(crate::bench_s3::S3Args),
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
