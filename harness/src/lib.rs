//! The `dare` command: a thin shell over the [`dare`] library. It parses the command line
//! ([`cli`]), maps the global flags and their environment variables onto [`dare::Options`]
//! ([`settings`]), calls [`dare::Dare`] ([`commands`]) and prints the result for a person or,
//! with `--json`, for a script. Beside the store commands it has the tools an operator runs on
//! a machine: `dare cpu` ([`cpuinfo`]) and the benchmarks ([`bench_aead`], [`bench_overhead`]).
//!
//! This is the only crate that uses `anyhow`: library errors stay typed; here they become one
//! line for a person and an exit status ([`exit_code`]).

pub mod args;
pub mod bench_aead;
pub mod bench_kms;
pub mod bench_meta;
pub mod bench_overhead;
pub mod bench_s3;
pub mod cli;
pub mod commands;
pub mod cpuinfo;
pub mod out;
pub mod serve;
pub mod settings;

use std::io;
use std::process::ExitCode;

use anyhow::Result;
use cli::{BenchCommand, Cli, Command, HsmCommand};
use commands::{Usage, hsm, keys, kms, maintenance, object, resource, site};
use settings::Settings;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let s = Settings::from_cli(&cli)?;
    match cli.command {
        Command::Init(a) => resource::init(&s, a),
        Command::Ns(c) => resource::ns(&s.open()?, c),
        Command::Bucket(c) => resource::bucket(&s.open()?, c),
        Command::Put(a) => object::put(&s.open()?, a),
        Command::Get(a) => object::get(&s.open()?, a),
        Command::Head(a) => object::head(&s.open()?, a),
        Command::Ls(a) => object::ls(&s.open()?, a),
        Command::Rm(a) => object::rm(&s.open()?, a),
        Command::Keys(c) => keys::run(&s, c),
        Command::Kms(c) => kms::run(&s.open()?, c),
        Command::Fsck(a) => maintenance::fsck(&s.open()?, a),
        Command::Backup(a) => maintenance::backup(&s.open()?, a),
        Command::Restore(a) => maintenance::restore(&s, a),
        Command::Hsm(HsmCommand::InitKey(j)) => hsm::init_key(&s, j),
        Command::Site(c) => site::run(&s, c),
        Command::Serve(a) => serve::run(&s, a),
        Command::Cpu(j) => cpuinfo::run(s.data.backend, s.disk.io, j.json),
        Command::Bench(BenchCommand::Aead(a)) => bench_aead::run(a, s.data.backend),
        Command::Bench(BenchCommand::Overhead(a)) => bench_overhead::run(a, &s.engine_options()),
        Command::Bench(BenchCommand::Meta(a)) => bench_meta::run(a),
        Command::Bench(BenchCommand::Kms(a)) => bench_kms::run(a),
        Command::Bench(BenchCommand::S3(a)) => bench_s3::run(a),
    }
}

/// The exit status for an error: 3 when a namespace, bucket, object, task or customer master
/// key does not exist, 4 when data or keys failed verification (tampering, corruption, a wrong
/// key or encryption context, a broken audit trail) or fsck found an unreadable object, 2 for
/// a command line that makes no sense or a request the key management service's rules or a
/// key's state refuse, 1 otherwise. (clap exits with 2 on its own usage errors.)
pub fn exit_code(e: &anyhow::Error) -> ExitCode {
    for cause in e.chain() {
        if let Some(k) = cause.downcast_ref::<dare_kms::KmsError>() {
            return kms_exit_code(k);
        }
        if let Some(dare::Error::Kms(k)) = cause.downcast_ref::<dare::Error>() {
            return kms_exit_code(k);
        }
        if cause.is::<kms::AuditBroken>() {
            return ExitCode::from(4);
        }
        if let Some(d) = cause.downcast_ref::<dare::Error>() {
            return ExitCode::from(if d.is_not_found() {
                3
            } else if d.is_integrity() {
                4
            } else if matches!(d, dare::Error::Keys(dare::KeyStoreError::NotFound { .. })) {
                3
            } else {
                1
            });
        }
        if cause.is::<maintenance::Unclean>() {
            return ExitCode::from(4);
        }
        if cause.is::<Usage>() {
            return ExitCode::from(2);
        }
    }
    ExitCode::from(1)
}

/// The exit status for a key management error: 3 when no key has the id or alias, 4 when a
/// ciphertext failed authentication, 2 for the caller's errors (a rule, a key's state, bad
/// input), 1 for the system's (database, root of trust, audit trail unreadable).
fn kms_exit_code(k: &dare_kms::KmsError) -> ExitCode {
    ExitCode::from(match k {
        dare_kms::KmsError::NotFound(_) => 3,
        dare_kms::KmsError::DecryptFailed => 4,
        k if k.is_usage() => 2,
        _ => 1,
    })
}

/// Whether the error is standard output closed under us (`dare get ... | head`): a shell tool
/// stops quietly then.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The error as one line: the outermost context and its causes, joined with `: `. A cause
/// whose text the line already holds is left out (a wrapper that prints its cause and also
/// returns it as `source` would otherwise say it twice), and control characters — from
/// names, paths or a cause's text — are escaped so nothing reaches the terminal raw.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    escape_controls(&line)
}

/// `s` with every control character escaped (`\n`, `\u{1b}`, ...); all else as it is.
pub fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
