//! A new site joins the store (ECS white paper §2.5; docs/KEYS.md §8.5).
//!
//! In ECS every VDC has an RSA key pair; the master key and the RT data key are stored once
//! per VDC, wrapped to its public key, and a VDC that knows the master key shares it with a
//! VDC that joins by encrypting it to the newcomer's public key. dare keeps its root of trust
//! (a key file, passphrase, HSM or KMIP cluster) per site, and adds the same exchange on top:
//!
//! - the joining site makes an RSA-3072 key pair ([`SiteKey::create_file`]): the private key
//!   (PKCS#8) is sealed with AES-256-GCM under a random file key that *the site's own root of
//!   trust* protects, in `site.key` (0600); the public key (SubjectPublicKeyInfo, PEM) and its
//!   fingerprint (SHA-256 of the DER) are given to an operator of a site that holds the keys;
//! - that site grants ([`KeyStore::grant_site`]): every top-level key it can unwrap — each
//!   master key blob, each per-master RT blob, the store's RT blob — is encrypted to the public
//!   key with RSA-OAEP-SHA256 (MGF1-SHA256, not the paper's PKCS#1 v1.5, which is open to
//!   Bleichenbacher's attack), under a label that binds the store id, the site's fingerprint
//!   and the hash of the blob; `sites` and `site_keys` record it in the shared database;
//! - the joined site opens the store with a [`SiteRoot`]: a [`RootOfTrust`] that unwraps a
//!   blob by finding its hash in the site's grant and decrypting with the private key. The key
//!   store above it is unchanged.
//!
//! Every later master key (a rotation's or a rekey's step 1, and a rekey's RT blob) is
//! encrypted to every granted site in the same transaction that inserts it, so a joined site
//! reads and writes across rotations without a new grant. A joined site cannot create master
//! keys itself (its root has no blob of the origin's root to make): rotations and rekeys run
//! on a site whose root of trust protects the store.
//!
//! RSA is aws-lc-rs's (AWS-LC: constant-time, FIPS-validated code), as in `dare-kms`'s key
//! import; no RSA is written here.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dare_metadata::{Metadata, SiteKeyRecord, SiteRecord, WriteTx, read_with, write_with};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::files::{self, Guard};
use crate::root::RootOfTrust;
use crate::store::now;
use crate::{KeyError, KeyStore, Secret32, StoreError};

/// The size of the key pairs [`SiteKey::create_file`] makes.
pub const SITE_KEY_BITS: usize = 3072;
/// The smallest RSA modulus a grant accepts (NIST SP 800-57: 128-bit security).
pub const MIN_SITE_KEY_BITS: usize = 3072;
/// The largest RSA modulus a grant accepts.
pub const MAX_SITE_KEY_BITS: usize = 8192;
/// The OAEP label's prefix (docs/KEYS.md §8.5).
pub const GRANT_LABEL: &[u8] = b"dare/v1/site-grant";
/// The site key file's magic.
const FILE_MAGIC: &[u8; 8] = b"DARESITE";
/// The site key file's layout version.
const FILE_VERSION: u8 = 1;
/// How many times a grant reads the key records again when they changed under it.
const GRANT_ATTEMPTS: u32 = 8;
/// A site key file is a few kilobytes; anything much bigger is not one.
const FILE_MAX_LEN: u64 = 64 * 1024;

/// Why a site could not be set up, granted, revoked or opened. Carries no key bytes.
#[derive(Debug)]
#[non_exhaustive]
pub enum SiteError {
    /// The public key given is not a PEM or DER SubjectPublicKeyInfo of an RSA key.
    PublicKeyInvalid(String),
    /// The public key's modulus is outside what a grant accepts.
    KeySize {
        /// Its size in bits.
        bits: usize,
    },
    /// A site name must be 1-64 characters of `A-Z a-z 0-9 . _ -`.
    InvalidName(String),
    /// A site of that name was granted already.
    NameTaken(String),
    /// This public key was granted already, under the site name given.
    AlreadyGranted {
        /// The name it was granted under.
        name: String,
    },
    /// No site of that name was granted.
    UnknownSite(String),
    /// The store holds no grant for this site's key pair.
    NotGranted {
        /// The site's fingerprint, hex.
        fingerprint: String,
    },
    /// A granted key does not decrypt with this site's private key under this store's label:
    /// the grant was tampered with, made for another key pair, or copied from another store.
    GrantInvalid {
        /// The site's fingerprint, hex.
        fingerprint: String,
    },
    /// The grant lacks a key the store needs now (it was made before a key this site's grant
    /// was not extended to).
    GrantIncomplete {
        /// The site's fingerprint, hex.
        fingerprint: String,
    },
    /// The site key file is damaged or not a site key file.
    KeyFileInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The site key file is protected by another root of trust than the one given.
    KeyFileWrongRoot {
        /// The file.
        path: PathBuf,
        /// The root that protects it, as recorded in the file.
        recorded: String,
        /// The root given.
        given: String,
    },
    /// A site that joined by a grant was asked to create master keys (a rotation, a rekey).
    JoinedSite {
        /// The site's fingerprint, hex.
        fingerprint: String,
    },
    /// An RSA operation failed (key generation, encoding, encryption).
    Rsa(&'static str),
}

impl fmt::Display for SiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiteError::PublicKeyInvalid(why) => write!(
                f,
                "not a site public key: {why} (give the PEM file `dare site init` wrote)"
            ),
            SiteError::KeySize { bits } => write!(
                f,
                "the site public key is RSA-{bits}; a grant needs RSA of \
                 {MIN_SITE_KEY_BITS} to {MAX_SITE_KEY_BITS} bits"
            ),
            SiteError::InvalidName(n) => write!(
                f,
                "invalid site name {:?}: use 1 to 64 characters of A-Z a-z 0-9 . _ -",
                n.chars().take(80).collect::<String>()
            ),
            SiteError::NameTaken(n) => write!(
                f,
                "a site named {n} was granted already (`dare site list`; `dare site revoke {n}` \
                 first to replace it)"
            ),
            SiteError::AlreadyGranted { name } => {
                write!(f, "this public key was granted already, as site {name}")
            }
            SiteError::UnknownSite(n) => write!(f, "no site named {n:?} (`dare site list`)"),
            SiteError::NotGranted { fingerprint } => write!(
                f,
                "this site (fingerprint {fingerprint}) has no grant in this store: run `dare \
                 site grant` with its public key on a site that holds the master keys"
            ),
            SiteError::GrantInvalid { fingerprint } => write!(
                f,
                "the grant to this site (fingerprint {fingerprint}) does not decrypt with its \
                 private key: it was tampered with, made for another key pair or copied from \
                 another store; revoke it and grant again"
            ),
            SiteError::GrantIncomplete { fingerprint } => write!(
                f,
                "the grant to this site (fingerprint {fingerprint}) lacks the store's current \
                 keys: revoke it and grant again"
            ),
            SiteError::KeyFileInvalid { path, why } => {
                write!(f, "site key file {}: {why}", path.display())
            }
            SiteError::KeyFileWrongRoot {
                path,
                recorded,
                given,
            } => write!(
                f,
                "site key file {} is protected by {recorded}, and the root of trust given \
                 ({given}) cannot unwrap it: give this site's own root",
                path.display()
            ),
            SiteError::JoinedSite { fingerprint } => write!(
                f,
                "this site (fingerprint {fingerprint}) joined the store by a grant and cannot \
                 create master keys: rotate or rekey on a site whose root of trust protects \
                 the store"
            ),
            SiteError::Rsa(what) => write!(f, "RSA {what} failed"),
        }
    }
}

impl std::error::Error for SiteError {}

/// Lower-case hex.
fn hex(b: &[u8]) -> String {
    dare_metadata::records::hex(b)
}

/// SHA-256 of a root-of-trust blob: how a grant names the key in it.
pub fn blob_hash(blob: &[u8]) -> [u8; 32] {
    Sha256::digest(blob).into()
}

/// The OAEP label of the key in blob `blob_hash`, granted to site `fingerprint` in store
/// `store_id`: `"dare/v1/site-grant" || 0x00 || u32le(1) || store_id[16] || fingerprint[32]
/// || blob_hash[32]` (103 bytes).
pub fn grant_label(store_id: &[u8; 16], fingerprint: &[u8; 32], blob_hash: &[u8; 32]) -> Vec<u8> {
    [
        GRANT_LABEL,
        &[0u8],
        &crate::derive::FORMAT_VERSION.to_le_bytes(),
        store_id,
        fingerprint,
        blob_hash,
    ]
    .concat()
}

/// Checks a site name: 1-64 characters of `A-Z a-z 0-9 . _ -`.
pub fn check_site_name(name: &str) -> Result<(), SiteError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SiteError::InvalidName(name.to_owned()))
    }
}

/// A site's RSA public key (X.509 SubjectPublicKeyInfo), checked.
#[derive(Clone, PartialEq, Eq)]
pub struct SitePublicKey {
    der: Vec<u8>,
    fingerprint: [u8; 32],
    bits: usize,
}

impl fmt::Debug for SitePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SitePublicKey(RSA-{} {})",
            self.bits,
            self.fingerprint_hex()
        )
    }
}

impl SitePublicKey {
    /// Parses a public key: PEM (`-----BEGIN PUBLIC KEY-----`) or DER SubjectPublicKeyInfo of
    /// an RSA key of [`MIN_SITE_KEY_BITS`]..=[`MAX_SITE_KEY_BITS`] bits.
    pub fn parse(bytes: &[u8]) -> Result<SitePublicKey, SiteError> {
        let der = if bytes.first() == Some(&0x30) {
            bytes.to_vec()
        } else {
            SubjectPublicKeyInfoDer::from_pem_slice(bytes)
                .map_err(|e| {
                    SiteError::PublicKeyInvalid(format!("no PEM PUBLIC KEY block in it ({e})"))
                })?
                .as_ref()
                .to_vec()
        };
        Self::from_der(der)
    }

    fn from_der(der: Vec<u8>) -> Result<SitePublicKey, SiteError> {
        let key = PublicEncryptingKey::from_der(&der).map_err(|e| {
            SiteError::PublicKeyInvalid(format!("not an RSA SubjectPublicKeyInfo ({e})"))
        })?;
        let bits = key.key_size_bits();
        if !(MIN_SITE_KEY_BITS..=MAX_SITE_KEY_BITS).contains(&bits) {
            return Err(SiteError::KeySize { bits });
        }
        // The fingerprint is of the DER as it will be stored, re-encoded canonically, so that
        // one key has one fingerprint however it was written.
        let canonical = AsDer::<PublicKeyX509Der<'static>>::as_der(&key)
            .map_err(|_| SiteError::Rsa("public key encoding"))?
            .as_ref()
            .to_vec();
        Ok(SitePublicKey {
            fingerprint: Sha256::digest(&canonical).into(),
            der: canonical,
            bits,
        })
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// SHA-256 of [`der`](Self::der).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// The fingerprint in lower-case hex.
    pub fn fingerprint_hex(&self) -> String {
        hex(&self.fingerprint)
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// PEM: `-----BEGIN PUBLIC KEY-----`, base64 in lines of 64, `-----END PUBLIC KEY-----`.
    pub fn to_pem(&self) -> String {
        let b64 = STANDARD.encode(&self.der);
        let mut s = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            s.push_str(std::str::from_utf8(line).unwrap_or_default());
            s.push('\n');
        }
        s.push_str("-----END PUBLIC KEY-----\n");
        s
    }

    /// RSA-OAEP-SHA256 (MGF1-SHA256) of `key` with `label`.
    pub fn encrypt(&self, label: &[u8], key: &Secret32) -> Result<Vec<u8>, SiteError> {
        let public = PublicEncryptingKey::from_der(&self.der)
            .map_err(|_| SiteError::Rsa("public key decoding"))?;
        let oaep =
            OaepPublicEncryptingKey::new(public).map_err(|_| SiteError::Rsa("OAEP setup"))?;
        let mut out = vec![0u8; oaep.ciphertext_size()];
        let n = oaep
            .encrypt(
                &OAEP_SHA256_MGF1SHA256,
                key.expose_secret(),
                &mut out,
                Some(label),
            )
            .map_err(|_| SiteError::Rsa("OAEP encryption"))?
            .len();
        out.truncate(n);
        Ok(out)
    }
}

/// A site's RSA private key, unsealed. `Debug` shows only the fingerprint; AWS-LC frees (and
/// clears) the key when dropped.
pub struct SiteKey {
    key: OaepPrivateDecryptingKey,
    public: SitePublicKey,
}

impl fmt::Debug for SiteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SiteKey({})", self.public.fingerprint_hex())
    }
}

impl SiteKey {
    /// A fresh RSA-3072 key pair, and its PKCS#8 DER (for sealing).
    pub fn generate() -> Result<(SiteKey, Zeroizing<Vec<u8>>), SiteError> {
        let key = PrivateDecryptingKey::generate(KeySize::Rsa3072)
            .map_err(|_| SiteError::Rsa("key generation"))?;
        let pkcs8 = Zeroizing::new(
            AsDer::<Pkcs8V1Der<'static>>::as_der(&key)
                .map_err(|_| SiteError::Rsa("private key encoding"))?
                .as_ref()
                .to_vec(),
        );
        Ok((Self::from_private(key)?, pkcs8))
    }

    fn from_private(key: PrivateDecryptingKey) -> Result<SiteKey, SiteError> {
        let public = AsDer::<PublicKeyX509Der<'static>>::as_der(&key.public_key())
            .map_err(|_| SiteError::Rsa("public key encoding"))?
            .as_ref()
            .to_vec();
        let public = SitePublicKey::from_der(public)?;
        let key = OaepPrivateDecryptingKey::new(key).map_err(|_| SiteError::Rsa("OAEP setup"))?;
        Ok(SiteKey { key, public })
    }

    /// The public half.
    pub fn public(&self) -> &SitePublicKey {
        &self.public
    }

    /// Decrypts a granted key: exactly 32 bytes under `label`, else [`None`].
    fn decrypt(&self, label: &[u8], ct: &[u8]) -> Option<Secret32> {
        if ct.len() != self.key.key_size_bytes() {
            return None;
        }
        let mut out = Zeroizing::new(vec![0u8; self.key.min_output_size()]);
        let plain = self
            .key
            .decrypt(&OAEP_SHA256_MGF1SHA256, ct, &mut out, Some(label))
            .ok()?;
        let mut b: [u8; 32] = (&*plain).try_into().ok()?;
        let key = Secret32::from_bytes("granted key", b);
        zeroize::Zeroize::zeroize(&mut b);
        Some(key)
    }

    /// Makes a key pair and seals it into a new file `path` (mode 0600, `O_EXCL`, synced with
    /// its directory) under `root` (docs/KEYS.md §8.5 for the layout).
    pub fn create_file(path: &Path, root: &dyn RootOfTrust) -> Result<SiteKey, StoreError> {
        let (key, pkcs8) = SiteKey::generate()?;
        let file_key = Secret32::generate("site file key")?;
        let blob = root.wrap_master(&file_key)?;
        let describe = root.describe();
        let header = file_header(&key.public.fingerprint, &describe, &blob)?;
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).map_err(|_| KeyError::Rng)?;
        let ct = Aes256Gcm::new(file_key.expose_secret().into())
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &pkcs8,
                    aad: &header,
                },
            )
            .map_err(|_| SiteError::Rsa("sealing the private key"))?;
        let bytes = [&header[..], &nonce, &ct].concat();
        let io = |op, source| StoreError::Io {
            op,
            path: path.to_path_buf(),
            source,
        };
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| io("create", e))?;
        let written = f
            .write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| io("write", e));
        if let Err(e) = written {
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        let dir = files::parent_of(path);
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StoreError::Io {
                op: "sync directory",
                path: dir,
                source,
            })?;
        Ok(key)
    }

    /// Loads a site key file made by [`create_file`](Self::create_file), unsealing it with
    /// `root`. The file is checked as a key file (owner, mode 0600 or stricter, no symbolic
    /// link) before it is read.
    pub fn load_file(path: &Path, root: &dyn RootOfTrust) -> Result<SiteKey, StoreError> {
        let (f, _) = files::open_store_file("site key file", path, Guard::Secret)?;
        let mut bytes = Vec::new();
        f.take(FILE_MAX_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| StoreError::Io {
                op: "read",
                path: path.to_path_buf(),
                source,
            })?;
        let bad = |why: &str| {
            StoreError::from(SiteError::KeyFileInvalid {
                path: path.to_path_buf(),
                why: why.to_owned(),
            })
        };
        if bytes.len() as u64 > FILE_MAX_LEN {
            return Err(bad("it is larger than a site key file"));
        }
        let parsed = parse_file(&bytes).ok_or_else(|| bad("it is not a site key file"))?;
        let file_key = root.unwrap_master(parsed.blob).map_err(|e| match e {
            KeyError::WrongRootKey => StoreError::from(SiteError::KeyFileWrongRoot {
                path: path.to_path_buf(),
                recorded: parsed.describe.to_owned(),
                given: root.describe(),
            }),
            e => StoreError::Key(e),
        })?;
        let pkcs8 = Zeroizing::new(
            Aes256Gcm::new(file_key.expose_secret().into())
                .decrypt(
                    &Nonce::from(*parsed.nonce),
                    Payload {
                        msg: parsed.sealed,
                        aad: parsed.header,
                    },
                )
                .map_err(|_| bad("its sealed private key fails authentication (tampered)"))?,
        );
        let key = PrivateDecryptingKey::from_pkcs8(&pkcs8)
            .map_err(|_| bad("its private key is not an RSA PKCS#8 key"))?;
        let key = SiteKey::from_private(key)?;
        if key.public.fingerprint != *parsed.fingerprint {
            return Err(bad(
                "its private key does not match the fingerprint it records",
            ));
        }
        Ok(key)
    }
}

/// `"DARESITE" || u8 1 || fingerprint[32] || u16le(len) || describe || u32le(len) || blob`.
fn file_header(fingerprint: &[u8; 32], describe: &str, blob: &[u8]) -> Result<Vec<u8>, KeyError> {
    let dlen = u16::try_from(describe.len())
        .map_err(|_| KeyError::Malformed("root description too long"))?;
    let blen = u32::try_from(blob.len()).map_err(|_| KeyError::Malformed("root blob too long"))?;
    Ok([
        &FILE_MAGIC[..],
        &[FILE_VERSION],
        fingerprint,
        &dlen.to_le_bytes(),
        describe.as_bytes(),
        &blen.to_le_bytes(),
        blob,
    ]
    .concat())
}

struct ParsedFile<'a> {
    header: &'a [u8],
    fingerprint: &'a [u8; 32],
    describe: &'a str,
    blob: &'a [u8],
    nonce: &'a [u8; 12],
    sealed: &'a [u8],
}

fn parse_file(b: &[u8]) -> Option<ParsedFile<'_>> {
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let end = at.checked_add(n)?;
        let s = b.get(*at..end)?;
        *at = end;
        Some(s)
    };
    let mut at = 0;
    if take(&mut at, 8)? != FILE_MAGIC || take(&mut at, 1)? != [FILE_VERSION] {
        return None;
    }
    let fingerprint: &[u8; 32] = take(&mut at, 32)?.try_into().ok()?;
    let dlen = u16::from_le_bytes(take(&mut at, 2)?.try_into().ok()?);
    let describe = std::str::from_utf8(take(&mut at, usize::from(dlen))?).ok()?;
    let blen = u32::from_le_bytes(take(&mut at, 4)?.try_into().ok()?);
    let blob = take(&mut at, usize::try_from(blen).ok()?)?;
    let header = &b[..at];
    let nonce: &[u8; 12] = take(&mut at, 12)?.try_into().ok()?;
    let sealed = b.get(at..)?;
    // The GCM tag alone is 16 bytes; a PKCS#8 RSA key is hundreds more.
    if sealed.len() < 16 + 64 {
        return None;
    }
    Some(ParsedFile {
        header,
        fingerprint,
        describe,
        blob,
        nonce,
        sealed,
    })
}

/// The root of trust of a site that joined by a grant: unwraps a root-of-trust blob of the
/// store by finding its hash among the keys granted to this site and decrypting it with the
/// site's private key. Keys are read from the database when first needed (a rotation on
/// another site adds one) and kept, zeroized when dropped. It cannot wrap.
pub struct SiteRoot {
    meta: Arc<dyn Metadata>,
    key: SiteKey,
    store_id: [u8; 16],
    name: String,
    keys: Mutex<HashMap<[u8; 32], Secret32>>,
}

impl fmt::Debug for SiteRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiteRoot")
            .field("site", &self.name)
            .field("fingerprint", &self.key.public.fingerprint_hex())
            .field("keys", &self.keys.lock().map(|k| k.len()).unwrap_or(0))
            .finish()
    }
}

impl SiteRoot {
    /// The root of the site whose key is `key`, in the store `meta` holds. Reads and decrypts
    /// the whole grant, and checks that it covers the store's RT data key and active master
    /// key: [`SiteError::NotGranted`], [`SiteError::GrantInvalid`] or
    /// [`SiteError::GrantIncomplete`] otherwise, before anything else is done.
    pub fn open(meta: Arc<dyn Metadata>, key: SiteKey) -> Result<SiteRoot, StoreError> {
        let (store, site) = read_with::<_, StoreError>(&*meta, |tx| {
            let store = tx
                .store()?
                .ok_or_else(|| StoreError::NotInitialized(meta.describe()))?;
            let fp = key.public.fingerprint;
            Ok((store, tx.sites()?.into_iter().find(|s| s.fingerprint == fp)))
        })?;
        let fingerprint = key.public.fingerprint_hex();
        let site = site.ok_or_else(|| SiteError::NotGranted {
            fingerprint: fingerprint.clone(),
        })?;
        let root = SiteRoot {
            meta,
            key,
            store_id: store.store_id,
            name: site.name,
            keys: Mutex::new(HashMap::new()),
        };
        root.load()?;
        let masters = read_with::<_, StoreError>(&*root.meta, |tx| Ok(tx.master_keys()?))?;
        let active = masters
            .iter()
            .find(|m| m.version == store.active_master)
            .map(|m| m.wrapped.clone())
            .unwrap_or_default();
        let have = root.keys.lock().unwrap_or_else(|e| e.into_inner());
        for blob in [&store.rt_data_key, &active] {
            if !have.contains_key(&blob_hash(blob)) {
                return Err(SiteError::GrantIncomplete { fingerprint }.into());
            }
        }
        drop(have);
        Ok(root)
    }

    /// The site's name, as the grant recorded it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The site's key pair's fingerprint.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.key.public.fingerprint
    }

    /// Reads every key granted to this site and decrypts the ones not held yet.
    fn load(&self) -> Result<(), StoreError> {
        let fp = self.key.public.fingerprint;
        let rows = read_with::<_, StoreError>(&*self.meta, |tx| Ok(tx.site_keys(&fp)?))?;
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        for row in rows {
            if keys.contains_key(&row.blob_hash) {
                continue;
            }
            let label = grant_label(&self.store_id, &fp, &row.blob_hash);
            let k =
                self.key
                    .decrypt(&label, &row.wrapped)
                    .ok_or_else(|| SiteError::GrantInvalid {
                        fingerprint: self.key.public.fingerprint_hex(),
                    })?;
            keys.insert(row.blob_hash, k);
        }
        Ok(())
    }
}

impl RootOfTrust for SiteRoot {
    fn wrap_master(&self, _key: &Secret32) -> Result<Vec<u8>, KeyError> {
        Err(KeyError::Provider(
            SiteError::JoinedSite {
                fingerprint: self.key.public.fingerprint_hex(),
            }
            .to_string(),
        ))
    }

    fn unwrap_master(&self, blob: &[u8]) -> Result<Secret32, KeyError> {
        let h = blob_hash(blob);
        if let Some(k) = self.keys.lock().unwrap_or_else(|e| e.into_inner()).get(&h) {
            return Ok(k.clone());
        }
        // A key made after this root was opened (another site rotated): its grant was
        // written in the same transaction as the key.
        self.load().map_err(KeyError::from)?;
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&h)
            .cloned()
            .ok_or(KeyError::WrongRootKey)
    }

    fn describe(&self) -> String {
        format!("site-grant:{}", self.name)
    }

    fn joined_site(&self) -> Option<String> {
        Some(self.key.public.fingerprint_hex())
    }
}

/// A site as `dare site list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteInfo {
    /// Its name.
    pub name: String,
    /// SHA-256 of its public key, hex.
    pub fingerprint: String,
    /// Its modulus size in bits (0 if the stored key no longer parses).
    pub bits: usize,
    /// When it was granted, Unix seconds.
    pub granted: u64,
    /// How many top-level keys it holds (master key blobs and RT blobs).
    pub keys: usize,
}

/// Encrypts each `(blob, key)` to every granted site, in the caller's transaction: what a
/// rotation's or rekey's step 1 does for the keys it creates (docs/KEYS.md §8.5).
pub(crate) fn grant_to_sites(
    tx: &mut dyn WriteTx,
    store_id: &[u8; 16],
    keys: &[(&[u8], &Secret32)],
) -> Result<(), StoreError> {
    for site in tx.sites()? {
        let public = SitePublicKey::from_der(site.public_key.clone())?;
        for (blob, key) in keys {
            let h = blob_hash(blob);
            let label = grant_label(store_id, &site.fingerprint, &h);
            tx.put_site_key(&SiteKeyRecord {
                fingerprint: site.fingerprint,
                blob_hash: h,
                wrapped: public.encrypt(&label, key)?,
            })?;
        }
    }
    Ok(())
}

impl KeyStore {
    /// Grants this store's keys to a new site (docs/KEYS.md §8.5): every top-level key this
    /// store's root unwraps — each master key's blob, each master's RT blob, the store's RT
    /// blob — encrypted to `public`, recorded under `name` with the grants in one transaction
    /// that also moves the store row (so a rotation's step 1 running meanwhile retries, and
    /// extends the grant to its new key). Returns how many keys were granted. Refuses a
    /// taken name or an already granted key pair, writing nothing.
    pub fn grant_site(&self, name: &str, public: &SitePublicKey) -> Result<usize, StoreError> {
        check_site_name(name)?;
        let meta = self.metadata().clone();
        let fp = public.fingerprint();
        let mut attempts = 0;
        loop {
            attempts += 1;
            // The root's calls happen before the transaction, as every root-of-trust call.
            let (store, blobs) = read_with::<_, StoreError>(&*meta, |tx| {
                let store = tx
                    .store()?
                    .ok_or_else(|| StoreError::NotInitialized(meta.describe()))?;
                let mut blobs = vec![store.rt_data_key.clone()];
                for m in tx.master_keys()? {
                    blobs.push(m.wrapped);
                    blobs.extend(m.root.rt_wrapped);
                }
                Ok((store, blobs))
            })?;
            let mut rows: Vec<SiteKeyRecord> = Vec::new();
            for blob in &blobs {
                let h = blob_hash(blob);
                if rows.iter().any(|r| r.blob_hash == h) {
                    continue;
                }
                // A retired master left under another root by a rekey: nothing needs it.
                let Ok(key) = self.root.unwrap_master(blob) else {
                    continue;
                };
                rows.push(SiteKeyRecord {
                    fingerprint: fp,
                    blob_hash: h,
                    wrapped: public.encrypt(&grant_label(&store.store_id, &fp, &h), &key)?,
                });
            }
            let r = write_with(&*meta, StoreError::is_retryable, |tx| {
                let now_store = tx
                    .store()?
                    .ok_or_else(|| StoreError::NotInitialized(meta.describe()))?;
                if now_store.row_version != store.row_version {
                    // A key record changed since the read (a rotation's new master key):
                    // read and encrypt again.
                    return Ok(None);
                }
                for s in tx.sites()? {
                    if s.name == name {
                        return Err(SiteError::NameTaken(name.to_owned()).into());
                    }
                    if s.fingerprint == fp {
                        return Err(SiteError::AlreadyGranted { name: s.name }.into());
                    }
                }
                tx.insert_site(&SiteRecord {
                    name: name.to_owned(),
                    fingerprint: fp,
                    public_key: public.der().to_vec(),
                    granted: now(),
                })?;
                for r in &rows {
                    tx.put_site_key(r)?;
                }
                tx.update_store(&now_store)?;
                Ok(Some(rows.len()))
            })?;
            match r {
                Some(n) => return Ok(n),
                None if attempts >= GRANT_ATTEMPTS => {
                    return Err(StoreError::Metadata(dare_metadata::MetaError::Conflict(
                        "store (the key records kept changing during the grant)",
                    )));
                }
                None => continue,
            }
        }
    }

    /// Every granted site, by name.
    pub fn sites(&self) -> Result<Vec<SiteInfo>, StoreError> {
        read_with::<_, StoreError>(&**self.metadata(), |tx| {
            let mut out = Vec::new();
            for s in tx.sites()? {
                let keys = tx.site_keys(&s.fingerprint)?.len();
                out.push(SiteInfo {
                    bits: SitePublicKey::from_der(s.public_key.clone())
                        .map(|p| p.bits())
                        .unwrap_or(0),
                    name: s.name,
                    fingerprint: hex(&s.fingerprint),
                    granted: s.granted,
                    keys,
                });
            }
            Ok(out)
        })
    }

    /// Revokes a site's grant: its row and every key granted to it are deleted, so it can no
    /// longer open the store, and later master keys are not encrypted to it. What it already
    /// unwrapped it may have kept: rotate afterwards so that new objects are under keys it
    /// never saw (docs/KEYS.md §8.5).
    pub fn revoke_site(&self, name: &str) -> Result<(), StoreError> {
        let meta = self.metadata().clone();
        write_with(&*meta, StoreError::is_retryable, |tx| {
            let store = tx
                .store()?
                .ok_or_else(|| StoreError::NotInitialized(meta.describe()))?;
            if !tx.delete_site(name)? {
                return Err(SiteError::UnknownSite(name.to_owned()).into());
            }
            tx.update_store(&store)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_label_is_103_bytes_and_binds_every_field() {
        let l = grant_label(&[1; 16], &[2; 32], &[3; 32]);
        assert_eq!(l.len(), 18 + 1 + 4 + 16 + 32 + 32);
        assert_eq!(&l[..19], b"dare/v1/site-grant\0");
        assert_ne!(l, grant_label(&[9; 16], &[2; 32], &[3; 32]));
        assert_ne!(l, grant_label(&[1; 16], &[9; 32], &[3; 32]));
        assert_ne!(l, grant_label(&[1; 16], &[2; 32], &[9; 32]));
    }

    #[test]
    fn a_granted_key_opens_only_with_its_label_and_private_key() {
        let (site, _) = SiteKey::generate().expect("key");
        let (other, _) = SiteKey::generate().expect("key");
        let pem = site.public().to_pem();
        let public = SitePublicKey::parse(pem.as_bytes()).expect("parse PEM");
        assert_eq!(public, *site.public());
        assert_eq!(SitePublicKey::parse(public.der()).expect("DER"), public);
        let key = Secret32::from_bytes("k", [7; 32]);
        let label = grant_label(&[1; 16], &public.fingerprint(), &[3; 32]);
        let ct = public.encrypt(&label, &key).expect("encrypt");
        assert_eq!(ct.len(), 384);
        assert!(site.decrypt(&label, &ct).expect("decrypts") == key);
        // Another store id, another blob, another site's key, a flipped bit: nothing.
        let other_store = grant_label(&[2; 16], &public.fingerprint(), &[3; 32]);
        assert!(site.decrypt(&other_store, &ct).is_none());
        assert!(other.decrypt(&label, &ct).is_none());
        let mut tampered = ct.clone();
        tampered[100] ^= 1;
        assert!(site.decrypt(&label, &tampered).is_none());
        assert!(site.decrypt(&label, &ct[1..]).is_none());
    }

    /// The grant's RSA-OAEP parameters (SHA-256, MGF1-SHA-256, the label of KEYS.md §8.5)
    /// checked against an independent implementation: `openssl pkeyutl` decrypts what a grant
    /// encrypts, and a grant opens what `openssl pkeyutl` encrypts to the site's PEM.
    #[test]
    fn grants_interoperate_with_openssl_pkeyutl() {
        let Ok(out) = std::process::Command::new("openssl")
            .arg("version")
            .output()
        else {
            panic!("this test needs the openssl command: apt-get install openssl");
        };
        assert!(out.status.success());
        let dir = tempfile::tempdir().expect("tempdir");
        let (site, pkcs8) = SiteKey::generate().expect("key");
        let key_file = dir.path().join("site.der");
        std::fs::write(&key_file, &*pkcs8).expect("write key");
        let pem_file = dir.path().join("site.pem");
        std::fs::write(&pem_file, site.public().to_pem()).expect("write pem");
        let store_id = [0x5a; 16];
        let label = grant_label(
            &store_id,
            &site.public().fingerprint(),
            &blob_hash(b"a blob"),
        );
        let oaep = |extra: &[&str], input: &Path, output: &Path| {
            let label_opt = format!("rsa_oaep_label:{}", hex(&label));
            let st = std::process::Command::new("openssl")
                .arg("pkeyutl")
                .args(extra)
                .arg("-in")
                .arg(input)
                .arg("-out")
                .arg(output)
                .args(["-pkeyopt", "rsa_padding_mode:oaep"])
                .args(["-pkeyopt", "rsa_oaep_md:sha256"])
                .args(["-pkeyopt", "rsa_mgf1_md:sha256"])
                .args(["-pkeyopt", &label_opt])
                .status()
                .expect("run openssl");
            assert!(st.success(), "openssl pkeyutl {extra:?}");
        };
        // dare encrypts, openssl decrypts.
        let key = Secret32::from_bytes("k", [0x3c; 32]);
        let ct = site.public().encrypt(&label, &key).expect("encrypt");
        let ct_file = dir.path().join("ct");
        std::fs::write(&ct_file, &ct).expect("write ct");
        let pt_file = dir.path().join("pt");
        let key_arg = key_file.to_str().expect("path");
        oaep(
            &["-decrypt", "-keyform", "DER", "-inkey", key_arg],
            &ct_file,
            &pt_file,
        );
        assert_eq!(std::fs::read(&pt_file).expect("pt"), [0x3c; 32]);
        // openssl encrypts to the PEM, dare decrypts.
        let in_file = dir.path().join("in");
        std::fs::write(&in_file, [0x77; 32]).expect("write in");
        let ct2_file = dir.path().join("ct2");
        let pem_arg = pem_file.to_str().expect("path");
        oaep(
            &["-encrypt", "-pubin", "-inkey", pem_arg],
            &in_file,
            &ct2_file,
        );
        let ct2 = std::fs::read(&ct2_file).expect("ct2");
        let got = site
            .decrypt(&label, &ct2)
            .expect("dare decrypts openssl's grant");
        assert!(got == Secret32::from_bytes("k", [0x77; 32]));
    }

    #[test]
    fn public_keys_that_are_not_rsa_3072_or_more_are_refused() {
        assert!(matches!(
            SitePublicKey::parse(b"hello"),
            Err(SiteError::PublicKeyInvalid(_))
        ));
        assert!(matches!(
            SitePublicKey::parse(&[0x30, 0x03, 0x02, 0x01, 0x00]),
            Err(SiteError::PublicKeyInvalid(_))
        ));
        let small = PrivateDecryptingKey::generate(KeySize::Rsa2048).expect("2048");
        let der = AsDer::<PublicKeyX509Der<'static>>::as_der(&small.public_key())
            .expect("der")
            .as_ref()
            .to_vec();
        assert!(matches!(
            SitePublicKey::parse(&der),
            Err(SiteError::KeySize { bits: 2048 })
        ));
    }

    #[test]
    fn site_names_are_checked() {
        for ok in ["b", "site-B.eu_1", &"x".repeat(64)] {
            check_site_name(ok).expect(ok);
        }
        for bad in ["", "a b", "é", "a/b", &"x".repeat(65)] {
            assert!(check_site_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_file_round_trips_and_refuses_another_root_and_tampering() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("site.key");
        let root = crate::RootKeyFile::from_secret(Secret32::from_bytes("r", [5; 32]));
        let made = SiteKey::create_file(&path, &root).expect("create");
        let loaded = SiteKey::load_file(&path, &root).expect("load");
        assert_eq!(made.public(), loaded.public());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("md").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Refuses to overwrite.
        assert!(SiteKey::create_file(&path, &root).is_err());
        let other = crate::RootKeyFile::from_secret(Secret32::from_bytes("r", [6; 32]));
        match SiteKey::load_file(&path, &other) {
            Err(StoreError::Site(SiteError::KeyFileWrongRoot { recorded, .. })) => {
                assert_eq!(recorded, "root-key-file")
            }
            other => panic!("{other:?}"),
        }
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        match SiteKey::load_file(&path, &root) {
            Err(StoreError::Site(SiteError::KeyFileInvalid { why, .. })) => {
                assert!(why.contains("tampered"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(&path, b"DARESITE").expect("write");
        assert!(matches!(
            SiteKey::load_file(&path, &root),
            Err(StoreError::Site(SiteError::KeyFileInvalid { .. }))
        ));
    }
}
