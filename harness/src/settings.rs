//! The global flags and their environment variables, mapped onto [`dare::Options`]. The
//! library reads no environment variable; clap reads `DARE_STORE`, `DARE_PASSPHRASE_FILE`,
//! `DARE_METADATA_URL`, `DARE_AEAD_BACKEND` and `DARE_IO` into the flags, and this module
//! turns the flags into options.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use dare::{
    AeadBackend, Dare, DiskOptions, IoMode, MetadataLocation, Options, PostgresUrl, Root,
    StoreConfig,
};

use crate::args::IoChoice;
use crate::cli::Cli;

/// What the global flags say, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The store directory.
    pub store: PathBuf,
    /// The passphrase file, when the store is protected by a passphrase.
    pub passphrase_file: Option<PathBuf>,
    /// The PostgreSQL metadata database, when the store keeps its metadata there (`Debug`
    /// shows no password).
    pub metadata: Option<PostgresUrl>,
    /// How data files are read and written.
    pub disk: DiskOptions,
    /// How data is sealed (backend) and synced.
    pub data: StoreConfig,
}

impl Settings {
    /// Checks `--backend` and `--io`; reads no file.
    pub fn from_cli(cli: &Cli) -> Result<Settings> {
        let mut data = StoreConfig::default();
        if let Some(b) = &cli.backend {
            data.backend = AeadBackend::forced(b)?;
        }
        let mut disk = DiskOptions::default();
        match cli.io {
            None => {}
            Some(IoChoice::Std) => disk.io = IoMode::Std,
            Some(IoChoice::Uring) => {
                if !dare_engine::storage::uring_available() {
                    bail!(
                        "io_uring is not available here (the kernel or sandbox refuses a ring); \
                         use --io std"
                    );
                }
                disk.io = IoMode::Uring;
            }
        }
        Ok(Settings {
            store: cli.store.clone(),
            passphrase_file: cli.passphrase_file.clone(),
            metadata: cli.metadata.clone(),
            disk,
            data,
        })
    }

    /// Options with the root of trust the flags name (reads the passphrase file, if any).
    pub fn options(&self) -> Result<Options> {
        let root = match &self.passphrase_file {
            Some(p) => Root::Passphrase(
                dare::read_passphrase_file(p)
                    .map_err(dare::Error::from)
                    .context("--passphrase-file (or DARE_PASSPHRASE_FILE)")?,
            ),
            None => Root::KeyFile,
        };
        Ok(Options {
            root,
            metadata: match &self.metadata {
                Some(url) => MetadataLocation::Postgres(url.clone()),
                None => MetadataLocation::Sqlite,
            },
            clock: clock()?,
            ..self.engine_options()
        })
    }

    /// Options for a store with its own root key file and SQLite database (the benchmark's
    /// scratch store): the flags' disk and data settings only.
    pub fn engine_options(&self) -> Options {
        Options {
            root: Root::KeyFile,
            disk: self.disk,
            data: self.data,
            ..Options::default()
        }
    }

    /// Opens the store.
    pub fn open(&self) -> Result<Dare> {
        let dir = &self.store;
        if !Dare::exists(dir) {
            bail!(
                "{} is not a dare store (create one with `dare init`, or point --store or \
                 DARE_STORE at one)",
                dir.display()
            );
        }
        Ok(Dare::open(dir, &self.options()?)?)
    }

    /// Creates the store.
    pub fn create(&self, chunk_size: u64) -> Result<Dare> {
        Ok(Dare::create(&self.store, chunk_size, &self.options()?)?)
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.store
    }
}

/// The key management service's clock: the system's. Test builds (feature `test-hooks`) read
/// a fixed time from the environment instead, so that tests cover deletion windows, rotation
/// periods and token expiry without waiting (see [`test_clock`]).
fn clock() -> Result<Arc<dyn dare_kms::Clock>> {
    #[cfg(feature = "test-hooks")]
    if let Some(c) = test_clock()? {
        return Ok(c);
    }
    Ok(Arc::new(dare_kms::SystemClock))
}

/// Test builds only: `DARE_TEST_NOW` (RFC 3339, or Unix milliseconds) fixes the key
/// management service's clock at that time for this process.
#[cfg(feature = "test-hooks")]
pub fn test_clock() -> Result<Option<Arc<dyn dare_kms::Clock>>> {
    let Ok(v) = std::env::var("DARE_TEST_NOW") else {
        return Ok(None);
    };
    let v = v.trim();
    let ms = match v.parse::<u64>() {
        Ok(ms) => ms,
        Err(_) => dare_kms::clock::parse_time(v).with_context(|| {
            format!("DARE_TEST_NOW={v:?} is neither an RFC 3339 time nor Unix milliseconds")
        })?,
    };
    Ok(Some(Arc::new(dare_kms::ManualClock::new(ms))))
}
