//! The control plane the CLI drives: an [`ObjectStore`] (data) and a [`KeyStore`] (keys,
//! namespaces, buckets) in one store directory, and the glue that picks the key provider
//! for each request.
//!
//! Layout of a store directory: `dare-store.conf` and `buckets/` (the engine's), the key
//! store file and its lock files (dare-keys'), and `root.key` (0600) when the master key is
//! protected by a local root key file rather than a passphrase.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use dare_engine::{AeadBackend, IoMode, ObjectStore, format};
use dare_keys::{
    CacheMode, CustomerKeyProvider, DataKey, Envelope, HierarchyProvider, KeyError, KeyKind,
    KeyProvider, KeyStore, NoCustomerKey, PassphraseRoot, RootKeyFile, RootOfTrust, Secret32,
    StoreOptions,
};

/// File name of the local root key inside a store directory.
pub const ROOT_KEY_FILE: &str = "root.key";
/// Environment variable naming a passphrase file, for stores protected by a passphrase.
pub const PASSPHRASE_ENV: &str = "DARE_PASSPHRASE_FILE";
/// The namespace every store starts with.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Options that change how a store handle reads and writes.
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    /// Force an AEAD backend by name.
    pub backend: Option<String>,
    /// Force the I/O path.
    pub io: Option<IoMode>,
}

/// An open store: objects and keys.
#[derive(Debug)]
pub struct Dare {
    /// The data plane.
    pub objects: ObjectStore,
    /// The key hierarchy.
    pub keys: Arc<KeyStore>,
}

fn root_of_trust(
    dir: &Path,
    passphrase_file: Option<&Path>,
    create: bool,
) -> Result<Arc<dyn RootOfTrust>> {
    let key_path = dir.join(ROOT_KEY_FILE);
    let pass = passphrase_file
        .map(PathBuf::from)
        .or_else(|| std::env::var_os(PASSPHRASE_ENV).map(PathBuf::from));
    match pass {
        Some(p) => {
            let phrase = dare_keys::read_passphrase_file(&p)?;
            Ok(Arc::new(PassphraseRoot::new(phrase.to_vec())))
        }
        None if create => Ok(Arc::new(RootKeyFile::create(&key_path)?)),
        None if key_path.exists() => Ok(Arc::new(RootKeyFile::load(&key_path)?)),
        None => bail!(
            "{} has no root key file and no passphrase was given (set {PASSPHRASE_ENV} to the passphrase file)",
            dir.display()
        ),
    }
}

impl Dare {
    /// Creates a store: object layout, root of trust, key store with master key version 1,
    /// rotation key version 1 and the `default` namespace (encrypted).
    pub fn init(
        dir: &Path,
        chunk_size: u64,
        passphrase_file: Option<&Path>,
        tuning: &Tuning,
    ) -> Result<Dare> {
        let shift = format::chunk_shift_of(chunk_size).context("--chunk-size")?;
        if dir.join("dare-store.conf").exists() || dare_keys::is_initialized(dir) {
            bail!("{} already holds a dare store", dir.display());
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let root = root_of_trust(dir, passphrase_file, true)?;
        let keys = KeyStore::init(dir, root, StoreOptions::default())?;
        keys.create_namespace(DEFAULT_NAMESPACE, true)?;
        let objects = ObjectStore::init(dir, shift)?;
        let mut d = Dare {
            objects,
            keys: Arc::new(keys),
        };
        d.apply(tuning)?;
        Ok(d)
    }

    /// Opens an existing store.
    pub fn open(dir: &Path, tuning: &Tuning) -> Result<Dare> {
        let objects = ObjectStore::open(dir)?;
        let root = root_of_trust(dir, None, false)?;
        let keys = KeyStore::open(dir, root, StoreOptions::default())?;
        let mut d = Dare {
            objects,
            keys: Arc::new(keys),
        };
        d.apply(tuning)?;
        Ok(d)
    }

    fn apply(&mut self, t: &Tuning) -> Result<()> {
        let mut cfg = *self.objects.config();
        if let Some(b) = &t.backend {
            cfg.backend = AeadBackend::forced(b)?;
        }
        if let Some(io) = t.io {
            if io == IoMode::Uring && !dare_engine::storage::uring_available() {
                bail!(
                    "io_uring is not available here (kernel or sandbox refuses a ring); use --io std"
                );
            }
            cfg.io = io;
        }
        self.objects.set_config(cfg);
        Ok(())
    }

    /// Creates a bucket in a namespace; `encryption` defaults to the namespace's setting.
    pub fn create_bucket(
        &self,
        name: &str,
        namespace: &str,
        encryption: Option<bool>,
    ) -> Result<dare_keys::Bucket> {
        format::check_name(name)?;
        self.keys.namespace(namespace)?;
        self.objects.create_bucket(name)?;
        match self.keys.create_bucket(name, namespace, encryption) {
            Ok(b) => Ok(b),
            Err(e) => {
                let _ = self.objects.delete_bucket(name);
                Err(e.into())
            }
        }
    }

    /// The provider for writing a new object into `bucket`: the customer key when given
    /// (SSE-C), else the bucket's hierarchy key when the bucket is encrypted, else none.
    pub fn write_provider(
        &self,
        bucket: &str,
        customer_key: Option<Secret32>,
        cache: CacheMode,
    ) -> Result<Option<Box<dyn KeyProvider>>> {
        let b = self.keys.bucket(bucket)?;
        if let Some(k) = customer_key {
            return Ok(Some(Box::new(CustomerKeyProvider::new(k))));
        }
        if !b.encryption {
            return Ok(None);
        }
        Ok(Some(Box::new(HierarchyProvider::new(
            self.keys.clone(),
            bucket,
            cache,
        )?)))
    }

    /// Opens an object for reading with the keys at hand; in a bucket created encrypted, an
    /// object stored in clear is refused (it can only be a replaced or forged file).
    pub fn open_for_read(
        &self,
        bucket: &str,
        key: &str,
        customer_key: Option<Secret32>,
    ) -> Result<dare_engine::store::StoredObject> {
        let encrypted = self.keys.bucket(bucket)?.encryption;
        let provider = self.read_provider(bucket, customer_key, CacheMode::On)?;
        let o = if encrypted {
            self.objects.open_encrypted_object(bucket, key, &provider)?
        } else {
            self.objects.open_object(bucket, key, Some(&provider))?
        };
        Ok(o)
    }

    /// The provider for reading objects of `bucket`: resolves hierarchy blocks through the
    /// bucket's keys and SSE-C blocks through the customer key, if one was given.
    pub fn read_provider(
        &self,
        bucket: &str,
        customer_key: Option<Secret32>,
        cache: CacheMode,
    ) -> Result<ReadProvider> {
        let b = self.keys.bucket(bucket)?;
        let hierarchy = if b.encryption {
            Some(HierarchyProvider::new(self.keys.clone(), bucket, cache)?)
        } else {
            None
        };
        Ok(ReadProvider {
            hierarchy,
            customer: customer_key.map(CustomerKeyProvider::new),
        })
    }
}

/// Opens any key block an object of one bucket can carry.
#[derive(Debug)]
pub struct ReadProvider {
    hierarchy: Option<HierarchyProvider>,
    customer: Option<CustomerKeyProvider>,
}

impl KeyProvider for ReadProvider {
    fn new_data_key(&self) -> Result<(DataKey, Envelope), KeyError> {
        Err(KeyError::Provider("read-only provider".into()))
    }

    fn open_data_key(&self, block: &Envelope) -> Result<DataKey, KeyError> {
        match (block.kind, &self.hierarchy, &self.customer) {
            (KeyKind::CustomerKey, _, Some(c)) => c.open_data_key(block),
            (KeyKind::CustomerKey, _, None) => NoCustomerKey.open_data_key(block),
            (KeyKind::Hierarchy, Some(h), _) => h.open_data_key(block),
            (KeyKind::Hierarchy, None, _) => Err(KeyError::Provider(
                "object carries a hierarchy key but its bucket is unencrypted".into(),
            )),
            (kind, _, _) => Err(KeyError::WrongKind {
                expected: KeyKind::Hierarchy.to_byte(),
                found: kind.to_byte(),
            }),
        }
    }
}
