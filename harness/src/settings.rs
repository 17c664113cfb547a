//! The global flags and their environment variables, mapped onto [`dare::Options`]. The
//! library reads no environment variable; clap reads `DARE_STORE`, `DARE_PASSPHRASE_FILE`,
//! `DARE_HSM_MODULE`, `DARE_HSM_TOKEN`, `DARE_HSM_KEY`, `DARE_HSM_PIN_FILE`,
//! `DARE_KMIP_CONFIG`, `DARE_KMIP_CLUSTER`, `DARE_METADATA_URL`, `DARE_AEAD_BACKEND` and
//! `DARE_IO` into the flags, this module reads
//! `DARE_HSM_PIN` (a PIN is never a flag: `ps` would show it), and turns them into options.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use dare::{
    AeadBackend, Dare, DiskOptions, IoMode, MetadataLocation, Options, PostgresUrl, Root,
    StoreConfig,
};

use crate::args::IoChoice;
use crate::cli::Cli;
use crate::commands::Usage;

/// What the global flags say, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The store directory.
    pub store: PathBuf,
    /// The passphrase file, when the store is protected by a passphrase.
    pub passphrase_file: Option<PathBuf>,
    /// The HSM key, when the store is protected by one (the PIN is read when opening).
    pub hsm: Option<Hsm>,
    /// The KMIP cluster, when the store is protected by one (the file is read when opening).
    pub kmip: Option<Kmip>,
    /// The PostgreSQL metadata database, when the store keeps its metadata there (`Debug`
    /// shows no password).
    pub metadata: Option<PostgresUrl>,
    /// How data files are read and written.
    pub disk: DiskOptions,
    /// How data is sealed (backend) and synced.
    pub data: StoreConfig,
}

/// Where the HSM key is, and where its PIN comes from.
#[derive(Debug, Clone)]
pub struct Hsm {
    /// Module, token label, key label.
    pub config: dare::HsmConfig,
    /// The PIN file, or `None`: the PIN is in `DARE_HSM_PIN`.
    pub pin_file: Option<PathBuf>,
}

/// Where the KMIP configuration is and which of its clusters protects the store.
#[derive(Debug, Clone)]
pub struct Kmip {
    /// The JSON configuration file.
    pub config: PathBuf,
    /// The cluster's name.
    pub cluster: String,
}

impl Kmip {
    /// `--kmip-config` and `--kmip-cluster`, checked: both or neither, and no other root.
    fn from_cli(cli: &Cli) -> Result<Option<Kmip>> {
        let usage = |m: &str| anyhow::Error::new(Usage(m.to_string()));
        let (config, cluster) = match (&cli.kmip_config, &cli.kmip_cluster) {
            (None, None) => return Ok(None),
            (Some(f), Some(c)) => (f.clone(), c.clone()),
            (None, Some(_)) => {
                return Err(usage(
                    "--kmip-cluster needs the configuration that names it: --kmip-config FILE \
                     (DARE_KMIP_CONFIG)",
                ));
            }
            (Some(_), None) => {
                return Err(usage(
                    "--kmip-config needs the cluster to use: --kmip-cluster NAME \
                     (DARE_KMIP_CLUSTER)",
                ));
            }
        };
        if cli.passphrase_file.is_some() || cli.hsm_module.is_some() {
            return Err(usage(
                "choose one root of trust: --passphrase-file, an HSM (--hsm-*) or a KMIP \
                 cluster (--kmip-*), not several",
            ));
        }
        Ok(Some(Kmip { config, cluster }))
    }

    /// Reads the configuration file and picks the cluster.
    pub fn cluster(&self) -> Result<dare::KmipClusterConfig> {
        let cfg = dare::KmipConfig::load(&self.config)
            .map_err(dare::Error::from)
            .context("--kmip-config (or DARE_KMIP_CONFIG)")?;
        Ok(cfg
            .cluster(&self.cluster)
            .map_err(dare::Error::from)?
            .clone())
    }
}

/// The environment variable that may hold the HSM PIN itself.
pub const PIN_ENV: &str = "DARE_HSM_PIN";

impl Hsm {
    /// The `--hsm-*` flags, checked: module, token and key go together; the PIN comes from
    /// one place. `None` when no `--hsm-*` flag (or `DARE_HSM_*` variable) names a module,
    /// token, key or PIN file.
    fn from_cli(cli: &Cli) -> Result<Option<Hsm>> {
        let given = cli.hsm_module.is_some()
            || cli.hsm_token.is_some()
            || cli.hsm_key.is_some()
            || cli.hsm_pin_file.is_some();
        if !given {
            return Ok(None);
        }
        let usage = |m: String| anyhow::Error::new(Usage(m));
        let missing: Vec<&str> = [
            (
                cli.hsm_module.is_none(),
                "--hsm-module PATH (DARE_HSM_MODULE)",
            ),
            (
                cli.hsm_token.is_none(),
                "--hsm-token LABEL (DARE_HSM_TOKEN)",
            ),
            (cli.hsm_key.is_none(), "--hsm-key LABEL (DARE_HSM_KEY)"),
        ]
        .into_iter()
        .filter_map(|(m, name)| m.then_some(name))
        .collect();
        if !missing.is_empty() {
            return Err(usage(format!(
                "an HSM root of trust needs --hsm-module, --hsm-token and --hsm-key together; \
                 missing: {}",
                missing.join(", ")
            )));
        }
        if cli.passphrase_file.is_some() {
            return Err(usage(
                "choose one root of trust: --passphrase-file (DARE_PASSPHRASE_FILE) or an HSM \
                 (--hsm-*, DARE_HSM_*), not both"
                    .into(),
            ));
        }
        let pin_env = std::env::var_os(PIN_ENV).is_some();
        match (&cli.hsm_pin_file, pin_env) {
            (Some(_), true) => {
                return Err(usage(format!(
                    "the HSM PIN is given twice: --hsm-pin-file (DARE_HSM_PIN_FILE) and \
                     {PIN_ENV}; give one"
                )));
            }
            (None, false) => {
                return Err(usage(format!(
                    "the HSM token's user PIN is needed: --hsm-pin-file FILE \
                     (DARE_HSM_PIN_FILE), or {PIN_ENV}"
                )));
            }
            _ => {}
        }
        Ok(Some(Hsm {
            config: dare::HsmConfig {
                module: cli.hsm_module.clone().unwrap_or_default(),
                token: cli.hsm_token.clone().unwrap_or_default(),
                key: cli.hsm_key.clone().unwrap_or_default(),
            },
            pin_file: cli.hsm_pin_file.clone(),
        }))
    }

    /// Reads the PIN: from the PIN file (checked as a passphrase file is), or from
    /// `DARE_HSM_PIN`.
    pub fn pin(&self) -> Result<dare::HsmPin> {
        match &self.pin_file {
            Some(p) => dare::HsmPin::read_file(p)
                .map_err(dare::Error::from)
                .context("--hsm-pin-file (or DARE_HSM_PIN_FILE)"),
            None => {
                let v = std::env::var_os(PIN_ENV).unwrap_or_default();
                let v = zeroize::Zeroizing::new(std::os::unix::ffi::OsStringExt::into_vec(v));
                dare::HsmPin::new(v.as_slice())
                    .map_err(dare::Error::from)
                    .context(PIN_ENV)
            }
        }
    }
}

impl Settings {
    /// Checks `--backend`, `--io` and the `--hsm-*` flags; reads no file.
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
            hsm: Hsm::from_cli(cli)?,
            kmip: Kmip::from_cli(cli)?,
            metadata: cli.metadata.clone(),
            disk,
            data,
        })
    }

    /// Options with the root of trust the flags name (reads the passphrase file, if any).
    pub fn options(&self) -> Result<Options> {
        let root = match (&self.passphrase_file, &self.hsm, &self.kmip) {
            (None, None, Some(k)) => Root::Kmip {
                cluster: k.cluster()?,
            },
            (Some(p), _, _) => Root::Passphrase(
                dare::read_passphrase_file(p)
                    .map_err(dare::Error::from)
                    .context("--passphrase-file (or DARE_PASSPHRASE_FILE)")?,
            ),
            (None, Some(h), _) => Root::Pkcs11 {
                config: h.config.clone(),
                pin: h.pin()?,
            },
            (None, None, None) => Root::KeyFile,
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
