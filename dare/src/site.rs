//! A new site joins the store (ECS white paper §2.5; docs/KEYS.md §8.5): the control plane of
//! `dare site init`, `grant`, `list` and `revoke`, and opening a store as a joined site.
//!
//! A site is a store directory of its own, with its own root of trust, paired with the shared
//! PostgreSQL database of an existing store:
//!
//! ```text
//! <site>/site.key        the site's RSA private key, sealed under the site's root (0600)
//! <site>/site.pub.pem    its public key, for the operator to hand to a granting site
//! <site>/root.key        the site's root key (0600), unless a passphrase, HSM or KMIP root
//! <site>/metadata.json   the database, the store id, and where the shared data files are
//! ```
//!
//! `metadata.json` is written last: a directory without it is not a store, so an interrupted
//! `site init` leaves nothing that opens.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dare_engine::{DiskVolume, Volume};
use dare_keys::{SiteInfo, SiteKey, SitePublicKey, SiteRoot};
use dare_metadata::{Metadata, PostgresMetadata, read_with};

use crate::error::{Error, io};
use crate::layout::{LocationFile, ROOT_KEY_FILE, check_store_trust, make_dir};
use crate::store::{Dare, MetadataLocation, Options, Root, root_of_trust};

/// The site's sealed RSA private key, inside the site's directory.
pub const SITE_KEY_FILE: &str = "site.key";
/// The site's public key (PEM), inside the site's directory.
pub const SITE_PUBLIC_FILE: &str = "site.pub.pem";

/// What `dare site init` made.
#[derive(Debug, Clone)]
pub struct SiteInit {
    /// The site's public key: give [`SitePublicKey::to_pem`] to a site that holds the keys.
    pub public: SitePublicKey,
    /// Where the PEM was written.
    pub public_file: PathBuf,
    /// The store the site will join.
    pub store_id: [u8; 16],
    /// The data directory the site uses.
    pub objects: PathBuf,
}

/// Whether `dir` is a joined site's directory (it holds `site.key`).
pub fn is_site(dir: &Path) -> bool {
    fs::symlink_metadata(dir.join(SITE_KEY_FILE)).is_ok()
}

/// Opens a joined site: its own root of trust unseals `site.key`, whose private key opens the
/// grant ([`SiteRoot`]); the store's keys are then unwrapped through the grant.
pub(crate) fn open_site(
    dir: &Path,
    meta: Arc<dyn Metadata>,
    opts: &Options,
    target: Option<&Root>,
    objects: &Path,
) -> Result<Dare, Error> {
    let local = root_of_trust(dir, &opts.root, false)?;
    let key = SiteKey::load_file(&dir.join(SITE_KEY_FILE), &*local)?;
    let fingerprint = key.public().fingerprint_hex();
    if target.is_some() {
        return Err(dare_keys::SiteError::JoinedSite { fingerprint }.into());
    }
    let root: Arc<dyn dare_keys::RootOfTrust> = Arc::new(SiteRoot::open(meta.clone(), key)?);
    let volume: Arc<dyn Volume> =
        Arc::new(DiskVolume::new(objects, opts.disk).map_err(io("open", objects))?);
    let mut d = Dare::open_parts(meta, volume, root, opts)?;
    d.dir = Some(dir.to_path_buf());
    Ok(d)
}

impl Dare {
    /// `dare site init` (docs/KEYS.md §8.5): makes `dir` a new site of the store kept in the
    /// PostgreSQL database `opts.metadata` names. The site's own root of trust (`opts.root`:
    /// a new `root.key`, a passphrase, an HSM key or a KMIP cluster) seals a new RSA-3072
    /// private key in `site.key`; the public key goes to `site.pub.pem`. The site opens the
    /// store once a site holding the keys has granted them to that public key.
    ///
    /// `objects` is the data directory the store's sites share (the existing site's
    /// `objects/` on a shared filesystem); `None` uses `objects/` in `dir`. Refuses a
    /// directory that holds a store or a site already, an SQLite store, and a database
    /// without a store; on failure it removes what it created.
    pub fn site_init(
        dir: &Path,
        opts: &Options,
        objects: Option<&Path>,
    ) -> Result<SiteInit, Error> {
        let MetadataLocation::Postgres(url) = &opts.metadata else {
            return Err(Error::InvalidArgument(
                "a site joins a store kept in PostgreSQL: give the store's database URL \
                 (DARE_METADATA_URL or --metadata)"
                    .into(),
            ));
        };
        if Dare::exists(dir) || is_site(dir) {
            return Err(Error::AlreadyAStore(dir.to_path_buf()));
        }
        let meta: Arc<dyn Metadata> =
            Arc::new(PostgresMetadata::open(url.expose(), opts.postgres.clone())?);
        let store = read_with(&*meta, |tx| tx.store())?
            .ok_or_else(|| Error::Keys(dare_keys::StoreError::NotInitialized(meta.describe())))?;
        let shared = objects.is_some();
        let objects = match objects {
            Some(p) => fs::canonicalize(p).map_err(io("resolve", p))?,
            None => std::path::absolute(dir)
                .map_err(io("resolve", dir))?
                .join(crate::layout::OBJECTS_DIR),
        };
        let made_dir = !dir.exists();
        make_dir(dir)?;
        check_store_trust(dir)?;
        let mut made: Vec<PathBuf> = Vec::new();
        let done = (|| {
            let root_key = dir.join(ROOT_KEY_FILE);
            if matches!(opts.root, Root::KeyFile) && !root_key.exists() {
                made.push(root_key);
            }
            let root = root_of_trust(dir, &opts.root, true)?;
            let key_path = dir.join(SITE_KEY_FILE);
            let key = SiteKey::create_file(&key_path, &*root)?;
            made.push(key_path);
            let public = key.public().clone();
            let public_file = dir.join(SITE_PUBLIC_FILE);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&public_file)
                .map_err(io("create", &public_file))?;
            made.push(public_file.clone());
            f.write_all(public.to_pem().as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(io("write", &public_file))?;
            if !shared {
                make_dir(&objects)?;
            }
            let loc = LocationFile {
                url: meta.describe(),
                store_id: store.store_id,
                objects: Some(objects.clone()),
            };
            if !loc.create(dir)? {
                return Err(Error::AlreadyAStore(dir.to_path_buf()));
            }
            Ok(SiteInit {
                public,
                public_file,
                store_id: store.store_id,
                objects: objects.clone(),
            })
        })();
        if done.is_err() {
            for p in made.iter().rev() {
                let _ = fs::remove_file(p);
            }
            if made_dir {
                let _ = fs::remove_dir(dir.join(crate::layout::OBJECTS_DIR));
                let _ = fs::remove_dir(dir);
            }
        }
        done
    }

    /// `dare site grant` (docs/KEYS.md §8.5): grants the store's keys to the site whose public
    /// key is `public_key` (PEM or DER), recorded under `name`. Returns the site as listed.
    pub fn grant_site(&self, name: &str, public_key: &[u8]) -> Result<SiteInfo, Error> {
        let public = SitePublicKey::parse(public_key)?;
        let keys = self.keys.grant_site(name, &public)?;
        Ok(self
            .sites()?
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or(SiteInfo {
                name: name.to_owned(),
                fingerprint: public.fingerprint_hex(),
                bits: public.bits(),
                granted: 0,
                keys,
            }))
    }

    /// Every site granted the store's keys, by name.
    pub fn sites(&self) -> Result<Vec<SiteInfo>, Error> {
        Ok(self.keys.sites()?)
    }

    /// `dare site revoke`: deletes a site's grant (docs/KEYS.md §8.5 says what it does not
    /// undo, and to rotate afterwards).
    pub fn revoke_site(&self, name: &str) -> Result<(), Error> {
        Ok(self.keys.revoke_site(name)?)
    }

    /// This handle's own site, when the store was opened as a joined site: its fingerprint.
    pub fn joined_site(&self) -> Option<String> {
        self.keys.root_of_trust().joined_site()
    }
}
