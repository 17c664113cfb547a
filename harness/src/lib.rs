//! The `dare` command-line tool: object put/get, key operations, and the benchmarks that
//! measure what encryption costs. This is the only crate that uses `anyhow`: library errors
//! stay typed in `dare-engine` and `dare-keys`; here they become one line for a person.

pub mod bench_aead;
pub mod bench_overhead;
pub mod cli;
pub mod commands;
pub mod control;
pub mod cpuinfo;
pub mod keycmd;

use std::process::ExitCode;

use anyhow::Result;
use cli::{BenchCommand, Cli, Command, IoChoice};
use control::{Dare, Tuning};
use dare_engine::{IoMode, OpenError, StoreError};

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let tuning = Tuning {
        backend: cli.backend.clone(),
        io: cli.io.map(|c| match c {
            IoChoice::Uring => IoMode::Uring,
            IoChoice::Std => IoMode::Std,
        }),
    };
    if let Some(b) = &cli.backend {
        dare_engine::AeadBackend::forced(b)?;
    }
    let open = || -> Result<Dare> {
        commands::require_store(&cli.store)?;
        Dare::open(&cli.store, &tuning)
    };
    match cli.command {
        Command::Init(a) => {
            let d = Dare::init(
                &cli.store,
                a.chunk_size,
                a.passphrase_file.as_deref(),
                &tuning,
            )?;
            println!(
                "initialized dare store at {} (chunk size {} bytes, namespace `default` with encryption on)",
                d.objects.root().display(),
                a.chunk_size
            );
        }
        Command::Ns(c) => commands::ns(&open()?, c)?,
        Command::Bucket(c) => commands::bucket(&open()?, c)?,
        Command::Put(a) => commands::put(&open()?, a)?,
        Command::Get(a) => commands::get(&open()?, a)?,
        Command::Head(a) => commands::head(&open()?, a)?,
        Command::Ls(a) => commands::ls(&open()?, a)?,
        Command::Rm(a) => commands::rm(&open()?, a)?,
        Command::Cpu(j) => cpuinfo::run(j.json)?,
        Command::Keys(c) => keycmd::run(&open()?, c)?,
        Command::Bench(BenchCommand::Aead(a)) => bench_aead::run(a)?,
        Command::Bench(BenchCommand::Overhead(a)) => bench_overhead::run(a, &tuning)?,
    }
    Ok(())
}

/// Exit codes: 1 for most errors, 3 when a bucket or object does not exist, 4 when data or
/// keys failed verification (tampering, corruption, wrong key). clap uses 2 for usage errors.
pub fn exit_code(e: &anyhow::Error) -> ExitCode {
    for cause in e.chain() {
        if let Some(s) = cause.downcast_ref::<StoreError>() {
            return match s {
                StoreError::NoSuchBucket(_) | StoreError::NoSuchObject { .. } => ExitCode::from(3),
                StoreError::Open(o) if is_integrity(o) => ExitCode::from(4),
                _ => ExitCode::from(1),
            };
        }
        if let Some(o) = cause.downcast_ref::<OpenError>() {
            return if is_integrity(o) {
                ExitCode::from(4)
            } else {
                ExitCode::from(1)
            };
        }
    }
    ExitCode::from(1)
}

fn is_integrity(o: &OpenError) -> bool {
    !matches!(
        o,
        OpenError::EmptyRange | OpenError::RangeOutOfBounds { .. } | OpenError::Io(_)
    )
}
