//! Creating and opening a store: the root of trust, the metadata database, the data volume
//! and the key store, tied into one [`Dare`] handle. The directory layout is in [`layout`].
//!
//! The metadata database is `dare.db` in the store directory (SQLite, the default), or a
//! PostgreSQL database that several nodes share ([`MetadataLocation::Postgres`]). Then the
//! store directory — on a filesystem the nodes share — holds `metadata.json` instead of
//! `dare.db`: it records the database's URL without the password, and the store id that the
//! database must hold. Opening checks that id: a directory is never used with another
//! store's database, whose `fsck --repair` would take the directory's data files for garbage.
//!
//! [`layout`]: crate::layout

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use dare_engine::{DataStore, DiskOptions, DiskVolume, StoreConfig, Volume, format};
use dare_hsm::PkcsRoot;
use dare_keys::{
    CacheMode, KeyStore, PassphraseRoot, RootKeyFile, RootOfTrust, StoreOptions as KeyOptions,
};
use dare_kmip::KmipRoot;
use dare_metadata::{
    MetaError, Metadata, PostgresMetadata, PostgresOptions, SqliteMetadata, SqliteOptions,
    read_with, write_with,
};
use zeroize::Zeroizing;

use crate::error::{Error, io};
use crate::layout::{
    DB_FILE, DEFAULT_NAMESPACE, LocationFile, OBJECTS_DIR, ROOT_KEY_FILE, check_store_trust,
    make_dir, random_id,
};
use crate::migrate;

/// What protects the store's master keys.
#[derive(Clone)]
pub enum Root {
    /// 32 random bytes in `root.key` inside the store directory (created at init, mode 0600).
    KeyFile,
    /// A key derived from this passphrase with Argon2id (KEYS.md §5.2).
    Passphrase(Zeroizing<Vec<u8>>),
    /// An AES-256 key in a PKCS#11 HSM that never leaves it (KEYS.md §5.4): the module,
    /// the token and key labels, and the token's user PIN. The store records the key's
    /// PKCS#11 URI, and refuses to open without an HSM root.
    Pkcs11 {
        /// The module and the labels.
        config: dare_hsm::HsmConfig,
        /// The user PIN (`Debug` redacts it; zeroed when dropped).
        pin: dare_hsm::Pin,
    },
    /// A cluster of KMIP key servers (KEYS.md §5.5): each master key is encrypted inside
    /// them by a key of its own that never leaves them. The store records
    /// `kmip:cluster=NAME`, and refuses to open without this root or with another cluster.
    Kmip {
        /// The cluster: servers, TLS files, timeouts, cache times.
        cluster: dare_kmip::ClusterConfig,
    },
    /// Any other root of trust (a test double).
    Custom(Arc<dyn RootOfTrust>),
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Root::KeyFile => f.write_str("Root::KeyFile"),
            Root::Passphrase(_) => f.write_str("Root::Passphrase(<redacted>)"),
            Root::Pkcs11 { config, .. } => write!(
                f,
                "Root::Pkcs11({} in {})",
                dare_hsm::uri_of(&config.token, &config.key),
                config.module.display()
            ),
            Root::Kmip { cluster } => write!(
                f,
                "Root::Kmip({}{} {:?})",
                dare_kmip::DESCRIPTION_PREFIX,
                cluster.name,
                cluster.servers
            ),
            Root::Custom(r) => write!(f, "Root::Custom({r:?})"),
        }
    }
}

/// A PostgreSQL connection URL, which may hold a password: `Debug` never shows it, and the
/// text is zeroed when dropped. Messages name the database by
/// [`Metadata::describe`](dare_metadata::Metadata::describe) (`postgres://USER:***@HOST:PORT/DB`)
/// instead.
#[derive(Clone)]
pub struct PostgresUrl(Zeroizing<String>);

impl PostgresUrl {
    /// Wraps a URL: `postgres://USER:PASSWORD@HOST:PORT/DATABASE[?param=value&...]`,
    /// `postgresql://...` or libpq's `host=... user=...` pairs (docs/METADATA.md §7.1). It is
    /// parsed when the database is opened.
    pub fn new(url: impl Into<String>) -> PostgresUrl {
        PostgresUrl(Zeroizing::new(url.into()))
    }

    /// The URL as given, password included: only for connecting.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PostgresUrl(<redacted>)")
    }
}

/// An empty URL is refused; anything else is taken as it is and checked when opened.
impl FromStr for PostgresUrl {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err("the metadata database URL is empty");
        }
        Ok(PostgresUrl::new(s))
    }
}

/// Where a store's metadata database is.
#[derive(Debug, Clone, Default)]
pub enum MetadataLocation {
    /// `dare.db` in the store directory (embedded SQLite), the default. Opening a store whose
    /// `metadata.json` names a PostgreSQL database with this fails, asking for its URL.
    #[default]
    Sqlite,
    /// A PostgreSQL database, shared by every node of the store
    /// ([`Options::postgres`] for its timeouts).
    Postgres(PostgresUrl),
}

/// How a store handle is opened. The library reads no environment variable: a binary maps
/// its flags and environment onto these.
#[derive(Debug, Clone)]
pub struct Options {
    /// What protects the master keys.
    pub root: Root,
    /// How data files are read and written (io_uring or std, `O_DIRECT`).
    pub disk: DiskOptions,
    /// Batch size, AEAD backend, whether writes are synced.
    pub data: StoreConfig,
    /// Where the metadata database is: `dare.db` in the store directory (the default) or a
    /// PostgreSQL database.
    pub metadata: MetadataLocation,
    /// The SQLite database's lock wait.
    pub sqlite: SqliteOptions,
    /// The PostgreSQL database's lock wait and connect timeout (10 s each by default).
    pub postgres: PostgresOptions,
    /// Whether providers reuse derived keys (on) or derive the chain per request (off, as
    /// ECS does).
    pub key_cache: CacheMode,
    /// Size of the derived-key cache and how often the key records are re-checked.
    pub keys: KeyOptions,
    /// The key management service's clock (the system clock unless a test controls time).
    pub clock: Arc<dyn dare_kms::Clock>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            root: Root::KeyFile,
            disk: DiskOptions::default(),
            data: StoreConfig::default(),
            metadata: MetadataLocation::Sqlite,
            sqlite: SqliteOptions::default(),
            postgres: PostgresOptions::default(),
            key_cache: CacheMode::On,
            keys: KeyOptions::default(),
            clock: Arc::new(dare_kms::SystemClock),
        }
    }
}

/// An open store: the control plane over the metadata database, the key store and the data
/// files. `Send + Sync`: share it across threads (behind an `Arc`) as a server would.
#[derive(Debug)]
pub struct Dare {
    pub(crate) dir: Option<PathBuf>,
    pub(crate) meta: Arc<dyn Metadata>,
    pub(crate) sqlite: Option<Arc<SqliteMetadata>>,
    pub(crate) keys: Arc<KeyStore>,
    pub(crate) kms: Arc<dare_kms::Kms>,
    pub(crate) data: DataStore,
    pub(crate) store_id: [u8; 16],
    pub(crate) chunk_shift: u8,
    pub(crate) key_cache: CacheMode,
    /// The rekey target the store was opened with ([`Dare::open_with_target`]).
    pub(crate) rekey_target: Option<Arc<dyn RootOfTrust>>,
    /// Opened hot objects (data key schedule, verified metadata), for GETs (`opened`).
    pub(crate) opened: crate::opened::OpenedCache,
}

/// The description a [`RootKeyFile`] records.
const KEY_FILE_ROOT: &str = "root-key-file";
/// The description a [`PassphraseRoot`] records.
const PASSPHRASE_ROOT: &str = "passphrase-argon2id";

pub(crate) fn root_of_trust(
    dir: &Path,
    root: &Root,
    create: bool,
) -> Result<Arc<dyn RootOfTrust>, Error> {
    Ok(match root {
        Root::Pkcs11 { config, pin } => Arc::new(PkcsRoot::open(config, pin)?),
        Root::Kmip { cluster } => Arc::new(KmipRoot::open(cluster)?),
        Root::Passphrase(p) => {
            if create {
                dare_keys::check_new_passphrase(p)?;
            }
            Arc::new(PassphraseRoot::new(p.to_vec()))
        }
        Root::Custom(r) => r.clone(),
        Root::KeyFile => {
            let path = dir.join(ROOT_KEY_FILE);
            if create && !path.exists() {
                Arc::new(RootKeyFile::create(&path)?)
            } else if path.exists() {
                Arc::new(RootKeyFile::load(&path)?)
            } else {
                return Err(Error::Keys(dare_keys::StoreError::NotFound {
                    what: "root key file (a store protected by a passphrase needs the passphrase)",
                    name: path.display().to_string(),
                }));
            }
        }
    })
}

/// Refuses a root of trust of the wrong kind for a store whose `store.root_of_trust` is
/// `recorded`: a store made on an HSM opens only with an HSM root, and an HSM root opens only
/// such a store. Which HSM key it is, the key's fingerprint in each blob decides (a relabelled
/// key, or the same key restored into another token, still opens the store).
fn check_root_kind(recorded: &str, root: &Root) -> Result<(), Error> {
    match (dare_kmip::cluster_of_description(recorded), root) {
        (Some(rec), Root::Kmip { cluster }) if rec == cluster.name => return Ok(()),
        (Some(rec), Root::Kmip { cluster }) => {
            return Err(Error::KmipClusterMismatch {
                given: cluster.name.clone(),
                recorded: rec.to_string(),
            });
        }
        (Some(rec), Root::KeyFile | Root::Passphrase(_) | Root::Pkcs11 { .. }) => {
            return Err(Error::KmipNeeded {
                cluster: rec.to_string(),
            });
        }
        (None, Root::Kmip { .. }) => {
            return Err(Error::KmipNotApplicable {
                recorded: recorded.to_string(),
            });
        }
        _ => {}
    }
    match (dare_hsm::is_hsm_description(recorded), root) {
        // A rekey (KEYS.md §8.3) may have moved the store from one internal root to the other.
        (false, Root::KeyFile) if recorded == PASSPHRASE_ROOT => Err(Error::PassphraseNeeded),
        (false, Root::Passphrase(_)) if recorded == KEY_FILE_ROOT => {
            Err(Error::PassphraseNotApplicable)
        }
        (true, Root::Pkcs11 { .. }) | (false, Root::KeyFile | Root::Passphrase(_)) => Ok(()),
        (true, Root::KeyFile | Root::Passphrase(_)) => Err(Error::HsmNeeded {
            recorded: recorded.to_string(),
        }),
        (false, Root::Pkcs11 { .. }) => Err(Error::HsmNotApplicable {
            recorded: recorded.to_string(),
        }),
        (_, Root::Custom(_) | Root::Kmip { .. }) => Ok(()),
    }
}

/// A wrong-root failure of an HSM root as what it means: the HSM key given is not the one
/// the store was made with (or the key store was tampered with).
fn hsm_mismatch(e: Error, root: &dyn RootOfTrust, recorded: &str) -> Error {
    match e {
        Error::Key(dare_envelope::KeyError::WrongRootKey)
            if dare_hsm::is_hsm_description(&root.describe()) =>
        {
            Error::HsmKeyMismatch {
                given: root.describe(),
                recorded: recorded.to_string(),
            }
        }
        e => e,
    }
}

/// Pairs the store directory `dir` with the PostgreSQL database `db` at `create`: returns
/// the id the new store gets (or, re-running an interrupted create, got). `metadata.json` is
/// written first, so that a store row never exists without a directory that names it.
fn pair_new_database(dir: &Path, db: &dyn Metadata) -> Result<[u8; 16], Error> {
    let in_db = read_with(db, |tx| tx.store())?.map(|s| s.store_id);
    let mismatch = |loc: LocationFile| Error::StoreMismatch {
        dir: dir.to_path_buf(),
        url: db.describe(),
        recorded_url: loc.url,
        expected: loc.store_id,
        found: in_db,
    };
    match (LocationFile::read(dir)?, in_db) {
        // Created, or interrupted after the store row: `create_with` finishes or says so.
        (Some(loc), Some(id)) if loc.store_id == id => Ok(id),
        (Some(loc), Some(_)) => Err(mismatch(loc)),
        // Interrupted before the store row, on this same database.
        (Some(loc), None) if loc.url == db.describe() => Ok(loc.store_id),
        (Some(loc), None) => Err(mismatch(loc)),
        // The database belongs to another store directory.
        (None, Some(_)) => Err(Error::AlreadyAStore(PathBuf::from(db.describe()))),
        (None, None) => {
            let loc = LocationFile {
                url: db.describe(),
                store_id: random_id()?,
                objects: None,
            };
            if loc.create(dir)? {
                Ok(loc.store_id)
            } else {
                // Another `create` paired the directory meanwhile.
                Err(Error::AlreadyAStore(dir.to_path_buf()))
            }
        }
    }
}

impl Dare {
    /// Creates a store in `dir` (created 0700 if missing): the root of trust, the metadata
    /// database with master key 1, rotation key 1 and the namespace `default` (encrypted),
    /// and the data volume. `chunk_size` (a power of two, 4 KiB..=4 MiB) is fixed for the
    /// store's new objects. Re-running it after an interrupted `create` finishes the job.
    ///
    /// With [`MetadataLocation::Postgres`], the database (which must hold no store yet)
    /// takes the place of `dare.db`, and `dir` gets `metadata.json` naming it (without its
    /// password) and the new store's id, before the store row is written.
    pub fn create(dir: &Path, chunk_size: u64, opts: &Options) -> Result<Dare, Error> {
        let chunk_shift = format::chunk_shift_of(chunk_size)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        if migrate::is_v1_store(dir) {
            return Err(Error::AlreadyAStore(dir.to_path_buf()));
        }
        let has_db = dir.join(DB_FILE).exists();
        let has_location = LocationFile::path(dir).exists();
        match &opts.metadata {
            MetadataLocation::Sqlite if has_location => {
                return Err(Error::AlreadyAStore(dir.to_path_buf()));
            }
            MetadataLocation::Postgres(_) if has_db => {
                return Err(Error::AlreadyAStore(dir.to_path_buf()));
            }
            _ => {}
        }
        // A weak passphrase is refused before anything is created.
        if let Root::Passphrase(p) = &opts.root
            && !has_db
            && !has_location
        {
            dare_keys::check_new_passphrase(p)?;
        }
        // An HSM root is opened (module, token, PIN, key checked), and a KMIP cluster
        // checked (at least two servers, TLS files, one server answering), before anything
        // is created.
        let hsm: Option<Arc<dyn RootOfTrust>> = match &opts.root {
            Root::Pkcs11 { config, pin } => Some(Arc::new(PkcsRoot::open(config, pin)?)),
            Root::Kmip { cluster } => {
                let r = KmipRoot::open(cluster)?;
                r.check()?;
                Some(Arc::new(r))
            }
            _ => None,
        };
        // The server first: a database that cannot be reached leaves nothing behind.
        let pg: Option<Arc<dyn Metadata>> = match &opts.metadata {
            MetadataLocation::Postgres(url) => Some(Arc::new(PostgresMetadata::open(
                url.expose(),
                opts.postgres.clone(),
            )?)),
            MetadataLocation::Sqlite => None,
        };
        let made_dir = !dir.exists();
        make_dir(dir)?;
        check_store_trust(dir)?;
        let (meta, sqlite, store_id) = match pg {
            None => {
                let db = dir.join(DB_FILE);
                let sqlite = if db.exists() {
                    SqliteMetadata::open(&db, opts.sqlite.clone())?
                } else {
                    SqliteMetadata::create(&db, opts.sqlite.clone())?
                };
                let sqlite = Arc::new(sqlite);
                (sqlite.clone() as Arc<dyn Metadata>, Some(sqlite), None)
            }
            Some(pg) => {
                let store_id = pair_new_database(dir, &*pg).inspect_err(|_| {
                    // Refused (the database holds another store, ...): leave no empty
                    // directory behind. `remove_dir` removes only an empty one.
                    if made_dir {
                        let _ = std::fs::remove_dir(dir);
                    }
                })?;
                (pg, None, Some(store_id))
            }
        };
        let existing = read_with(&*meta, |tx| tx.store())?;
        if let Some(s) = &existing {
            check_root_kind(&s.root_of_trust, &opts.root)?;
        }
        let root = match hsm {
            Some(r) => r,
            None => root_of_trust(dir, &opts.root, existing.is_none())?,
        };
        let recorded = existing.map(|s| s.root_of_trust);
        let volume: Arc<dyn Volume> = Arc::new(
            DiskVolume::new(&dir.join(OBJECTS_DIR), opts.disk)
                .map_err(io("create", &dir.join(OBJECTS_DIR)))?,
        );
        let mut d = Self::create_with(meta, volume, root.clone(), chunk_shift, store_id, opts)
            .map_err(|e| match e {
                Error::AlreadyAStore(_) => Error::AlreadyAStore(dir.to_path_buf()),
                e => match &recorded {
                    Some(r) => hsm_mismatch(e, &*root, r),
                    None => e,
                },
            })?;
        d.dir = Some(dir.to_path_buf());
        d.sqlite = sqlite;
        Ok(d)
    }

    /// [`create`](Self::create) on parts supplied by the caller: any metadata database, any
    /// volume, any root of trust (how the crash-consistency tests run the control plane).
    pub fn create_parts(
        meta: Arc<dyn Metadata>,
        volume: Arc<dyn Volume>,
        root: Arc<dyn RootOfTrust>,
        chunk_shift: u8,
        opts: &Options,
    ) -> Result<Dare, Error> {
        Self::create_with(meta, volume, root, chunk_shift, None, opts)
    }

    /// [`create_parts`](Self::create_parts) with the store id chosen by the caller (the one
    /// `metadata.json` recorded), or a random one.
    fn create_with(
        meta: Arc<dyn Metadata>,
        volume: Arc<dyn Volume>,
        root: Arc<dyn RootOfTrust>,
        chunk_shift: u8,
        store_id: Option<[u8; 16]>,
        opts: &Options,
    ) -> Result<Dare, Error> {
        format::check_chunk_shift(chunk_shift)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let exists = read_with(&*meta, |tx| tx.store().map(|s| s.is_some()))?;
        if !exists {
            let store_id = match store_id {
                Some(id) => id,
                None => random_id()?,
            };
            write_with(&*meta, Error::is_retryable, |tx| {
                if tx.store()?.is_some() {
                    return Ok(());
                }
                KeyStore::create_in(tx, &*root, store_id, chunk_shift)?;
                Ok(())
            })?;
        }
        let d = Self::open_parts(meta, volume, root, opts)?;
        // The default namespace comes last: a store that has it is completely created.
        match d.create_namespace(DEFAULT_NAMESPACE, true) {
            Ok(_) => Ok(d),
            Err(Error::NamespaceExists(_)) if exists => {
                Err(Error::AlreadyAStore(PathBuf::from(d.meta.describe())))
            }
            Err(Error::NamespaceExists(_)) => Ok(d),
            Err(e) => Err(e),
        }
    }

    /// Opens the store in `dir`. A store made by the previous release (`keystore.dat`, one
    /// file per object named by the object's name) is migrated first, once (docs/METADATA.md
    /// §5).
    ///
    /// A store whose `metadata.json` names a PostgreSQL database needs
    /// [`MetadataLocation::Postgres`] with that database's URL
    /// ([`Error::MetadataUrlNeeded`] otherwise); a database that holds another store (or
    /// none) is refused ([`Error::StoreMismatch`]).
    pub fn open(dir: &Path, opts: &Options) -> Result<Dare, Error> {
        Self::open_inner(dir, opts, None)
    }

    /// Opens the store in `dir` to run or resume a rekey to `target` (KEYS.md §8.3): with the
    /// root of trust of `opts` (the one the store is protected by, or was before the rekey's
    /// switch) and with `target`, unwrapping with either, so that it opens at every step of
    /// the task. A [`Root::KeyFile`] target is `root.key` in `dir`, created (mode 0600) if
    /// missing; a passphrase target must be a new passphrase's length
    /// ([`dare_keys::check_new_passphrase`]); an HSM target is opened (PIN, key checked).
    pub fn open_with_target(dir: &Path, opts: &Options, target: &Root) -> Result<Dare, Error> {
        Self::open_inner(dir, opts, Some(target))
    }

    fn open_inner(dir: &Path, opts: &Options, target: Option<&Root>) -> Result<Dare, Error> {
        let db = dir.join(DB_FILE);
        if !Self::exists(dir) {
            return Err(Error::NotAStore(dir.to_path_buf()));
        }
        check_store_trust(dir)?;
        if let Some(loc) = LocationFile::read(dir)? {
            return Self::open_postgres(dir, &loc, opts, target);
        }
        if let MetadataLocation::Postgres(_) = opts.metadata {
            return Err(Error::MetadataUrlNotApplicable(dir.to_path_buf()));
        }
        if !db.exists() {
            if migrate::is_v1_store(dir) {
                migrate::migrate_v1(dir, &opts.sqlite, opts.disk)?;
            } else {
                return Err(Error::NotAStore(dir.to_path_buf()));
            }
        } else if migrate::has_v1_leftovers(dir) {
            migrate::finish(dir)?;
        }
        let sqlite = Arc::new(SqliteMetadata::open(&db, opts.sqlite.clone()).map_err(
            |e| match e {
                MetaError::NotInitialized(_) => Error::NotAStore(dir.to_path_buf()),
                e => Error::Metadata(e),
            },
        )?);
        let meta: Arc<dyn Metadata> = sqlite.clone();
        if read_with(&*meta, |tx| tx.store())?.is_none() {
            return Err(Error::NotAStore(dir.to_path_buf()));
        }
        let mut d = Self::open_dir(dir, meta, opts, target)?;
        d.sqlite = Some(sqlite);
        Ok(d)
    }

    /// Opens a store whose metadata is the PostgreSQL database `loc` describes.
    fn open_postgres(
        dir: &Path,
        loc: &LocationFile,
        opts: &Options,
        target: Option<&Root>,
    ) -> Result<Dare, Error> {
        if dir.join(DB_FILE).exists() {
            return Err(Error::LocationFile {
                path: LocationFile::path(dir),
                why: format!(
                    "the directory holds {DB_FILE} too, so it is unclear which database is \
                     the store's; remove the one that is not"
                ),
            });
        }
        let MetadataLocation::Postgres(url) = &opts.metadata else {
            return Err(Error::MetadataUrlNeeded {
                dir: dir.to_path_buf(),
                url: loc.url.clone(),
            });
        };
        let meta: Arc<dyn Metadata> =
            Arc::new(PostgresMetadata::open(url.expose(), opts.postgres.clone())?);
        let found = read_with(&*meta, |tx| tx.store())?.map(|s| s.store_id);
        if found != Some(loc.store_id) {
            return Err(Error::StoreMismatch {
                dir: dir.to_path_buf(),
                url: meta.describe(),
                recorded_url: loc.url.clone(),
                expected: loc.store_id,
                found,
            });
        }
        if crate::site::is_site(dir) {
            let objects = loc.objects.clone().unwrap_or_else(|| dir.join(OBJECTS_DIR));
            return crate::site::open_site(dir, meta, opts, target, &objects);
        }
        Self::open_dir(dir, meta, opts, target)
    }

    /// The root of trust and the data volume of `dir`, with `meta`.
    fn open_dir(
        dir: &Path,
        meta: Arc<dyn Metadata>,
        opts: &Options,
        target: Option<&Root>,
    ) -> Result<Dare, Error> {
        let recorded = read_with(&*meta, |tx| tx.store())?
            .map(|s| s.root_of_trust)
            .unwrap_or_default();
        // In a rekey the store may be past its switch to the target: either root opens it.
        if target.is_none() {
            check_root_kind(&recorded, &opts.root)?;
        }
        let root = root_of_trust(dir, &opts.root, false)?;
        let target = match target {
            None => None,
            Some(t) => Some(crate::rekey::target_root(dir, t)?),
        };
        let volume: Arc<dyn Volume> = Arc::new(
            DiskVolume::new(&dir.join(OBJECTS_DIR), opts.disk)
                .map_err(io("open", &dir.join(OBJECTS_DIR)))?,
        );
        let mut d = Self::open_parts_with_target(meta, volume, root.clone(), target, opts)
            .map_err(|e| hsm_mismatch(e, &*root, &recorded))?;
        d.dir = Some(dir.to_path_buf());
        Ok(d)
    }

    /// [`open`](Self::open) on parts supplied by the caller.
    pub fn open_parts(
        meta: Arc<dyn Metadata>,
        volume: Arc<dyn Volume>,
        root: Arc<dyn RootOfTrust>,
        opts: &Options,
    ) -> Result<Dare, Error> {
        Self::open_parts_with_target(meta, volume, root, None, opts)
    }

    /// [`open_parts`](Self::open_parts) for a rekey to `target`
    /// ([`open_with_target`](Self::open_with_target)).
    pub fn open_parts_with_target(
        meta: Arc<dyn Metadata>,
        volume: Arc<dyn Volume>,
        root: Arc<dyn RootOfTrust>,
        target: Option<Arc<dyn RootOfTrust>>,
        opts: &Options,
    ) -> Result<Dare, Error> {
        let keys = Arc::new(KeyStore::open_with_target(
            meta.clone(),
            root,
            target.clone(),
            opts.keys.clone(),
        )?);
        // A KMIP root stops unwrapping once its cluster has been down past the offline-cache
        // time; derived keys then expire after the root's cache time, so a long-running
        // process stops too (KEYS.md §5.5).
        let opened = crate::opened::OpenedCache::new(match opts.key_cache {
            CacheMode::On => crate::opened::DEFAULT_CAPACITY,
            CacheMode::Off => 0,
        });
        if let Root::Kmip { cluster } = &opts.root {
            keys.cache().set_max_age(Some(cluster.cache_time()));
            opened.set_max_age(Some(cluster.cache_time()));
        }
        let s = keys.store_record();
        let kms = Arc::new(dare_kms::Kms::new(
            keys.clone(),
            opts.clock.clone(),
            dare_kms::KmsOptions::default(),
        )?);
        kms.attach();
        Ok(Dare {
            dir: None,
            meta,
            sqlite: None,
            kms,
            keys,
            data: DataStore::new(volume, opts.data),
            store_id: s.store_id,
            chunk_shift: s.chunk_shift,
            key_cache: opts.key_cache,
            rekey_target: target,
            opened,
        })
    }

    /// Whether `dir` holds a store (of this release or, still to migrate, the previous one):
    /// `dare.db`, or `metadata.json` naming its database elsewhere.
    pub fn exists(dir: &Path) -> bool {
        dir.join(DB_FILE).exists() || LocationFile::path(dir).exists() || migrate::is_v1_store(dir)
    }

    /// The store's key management service (customer master keys, SSE-KMS; docs/KMS.md).
    pub fn kms(&self) -> &Arc<dare_kms::Kms> {
        &self.kms
    }

    /// The store directory (None for a store opened on custom parts).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The store's random id (bound into every object's associated data).
    pub fn store_id(&self) -> [u8; 16] {
        self.store_id
    }

    /// Chunk size of new objects, in bytes.
    pub fn chunk_size(&self) -> u64 {
        1 << self.chunk_shift
    }

    /// The key store (versions, rotation tasks, the derived-key cache).
    pub fn keys(&self) -> &Arc<KeyStore> {
        &self.keys
    }

    /// How many objects' opened state (data key schedule, verified user metadata) GETs reuse
    /// now (docs/PERFORMANCE.md §10); 0 with the key cache off.
    pub fn opened_objects(&self) -> usize {
        self.opened.len()
    }

    /// (hits, misses) of the opened-object cache since the store was opened: a hit is a GET
    /// that reused an opened object, a miss one that had to open it (only GETs the cache
    /// applies to are counted: bucket-key objects of format 2, key cache on).
    pub fn opened_cache_stats(&self) -> (u64, u64) {
        self.opened.stats()
    }

    /// The metadata database (its [`describe`](Metadata::describe) names it: a file, or a
    /// PostgreSQL URL without the password).
    pub fn metadata(&self) -> &Arc<dyn Metadata> {
        &self.meta
    }

    /// How data is sealed and synced.
    pub fn data_config(&self) -> &StoreConfig {
        self.data.config()
    }

    /// Changes how this handle seals and syncs (batch size, backend, sync).
    pub fn set_data_config(&mut self, cfg: StoreConfig) {
        self.data.set_config(cfg);
    }

    /// The data volume.
    pub fn volume(&self) -> &Arc<dyn Volume> {
        self.data.volume()
    }

    /// Writes a consistent copy of the metadata database — wrapped keys only, never a
    /// plaintext key — to `dest` (a new file, mode 0600), while the store stays in use. Data
    /// files are not copied: back them up separately (they are useless without the database).
    /// A PostgreSQL database is not copied: the error says to use `pg_dump` (METADATA.md §7.7).
    pub fn backup(&self, dest: &Path) -> Result<(), Error> {
        Ok(self.meta.backup(dest)?)
    }

    /// Replaces the metadata database of the store in `dir` with the backup `backup`. Objects
    /// written after the backup lose their rows (their data files become orphans that `dare
    /// fsck --repair` removes); objects deleted since lose their data files (fsck reports
    /// them missing). Keys and buckets are as they were at the backup.
    ///
    /// Only for a store whose metadata is `dare.db`: a PostgreSQL database is restored with
    /// PostgreSQL's own tools ([`Error::Unsupported`] says which).
    pub fn restore(dir: &Path, backup: &Path, opts: &Options) -> Result<(), Error> {
        let db = dir.join(DB_FILE);
        if !db.exists()
            && let Some(loc) = LocationFile::read(dir)?
        {
            return Err(Error::Unsupported(format!(
                "the store in {} keeps its metadata in PostgreSQL at {}: dare restores only its \
                 own SQLite database; restore a PostgreSQL database with pg_restore from a \
                 `pg_dump --format=custom` dump, or with the server's point-in-time recovery \
                 (docs/METADATA.md §7.7)",
                dir.display(),
                loc.url
            )));
        }
        if !db.exists() {
            return Err(Error::NotAStore(dir.to_path_buf()));
        }
        SqliteMetadata::restore(backup, &db, opts.sqlite.clone())?;
        Ok(())
    }

    /// After destroying keys (a deleted bucket or namespace), make sure no copy of the
    /// deleted rows stays in the database's write-ahead log (SQLite's `secure_delete` already
    /// overwrites them in the database file).
    pub(crate) fn shred_logs(&self) -> Result<(), Error> {
        if let Some(s) = &self.sqlite {
            s.checkpoint()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dare_is_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<super::Dare>();
    }
}
