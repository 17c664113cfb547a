//! [`PkcsRoot`]: the master keys wrapped and unwrapped inside a PKCS#11 token.
//!
//! Wrap (`wrap_master`): the 32-byte key becomes a session object (`CKA_TOKEN = false`,
//! extractable, sensitive) for one `C_WrapKey(CKM_AES_KEY_WRAP_PAD, KEK, object)` and is
//! destroyed right after. Unwrap (`unwrap_master`): `C_UnwrapKey` makes a session object
//! that is extractable and not sensitive, its `CKA_VALUE` is read once and it is destroyed
//! at once. `C_Encrypt`/`C_Decrypt` with the mechanism would avoid the short-lived object,
//! but SoftHSM2 refuses them (`CKR_MECHANISM_INVALID`, tested), many HSMs offer the wrap
//! mechanisms only to `C_WrapKey`/`C_UnwrapKey`, and they would need `CKA_ENCRYPT` and
//! `CKA_DECRYPT` on the KEK, letting anyone with the PIN use it as a general cipher; the KEK
//! here needs only `CKA_WRAP` and `CKA_UNWRAP` (docs/KEYS.md §5.4).

use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use dare_keys::{KeyError, Management, ProviderKey, RootOfTrust, Secret32};
use zeroize::{Zeroize, Zeroizing};

use crate::blob::{self, FINGERPRINT_LEN, WRAPPED_LEN};
use crate::module::{self, rv_text};
use crate::{HsmError, Pin};

/// Where the HSM key is: the PKCS#11 module, the token's label, the key's label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmConfig {
    /// The HSM vendor's PKCS#11 library (`/usr/lib/softhsm/libsofthsm2.so`).
    pub module: PathBuf,
    /// The token's label (`CK_TOKEN_INFO.label`).
    pub token: String,
    /// The AES key's label (`CKA_LABEL`).
    pub key: String,
}

/// The RFC 7512 PKCS#11 URI of a secret key on a token: what a store records as its root of
/// trust (`pkcs11:token=dare;object=dare-root;type=secret-key`). No PIN, no module path.
pub fn uri_of(token: &str, key: &str) -> String {
    format!(
        "{}token={};object={};type=secret-key",
        crate::URI_PREFIX,
        pct(token),
        pct(key)
    )
}

/// RFC 3986 percent-encoding of everything but the unreserved characters.
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A root of trust whose key-encryption key lives in a PKCS#11 token and never leaves it.
///
/// Opened with [`PkcsRoot::open`], which logs in and checks the key; `Send + Sync` (one
/// logged-in session behind a mutex).
pub struct PkcsRoot {
    uri: String,
    token: String,
    fingerprint: [u8; FINGERPRINT_LEN],
    inner: Mutex<Inner>,
}

struct Inner {
    session: Session,
    kek: ObjectHandle,
}

/// A session object destroyed when dropped, whatever happened in between.
struct SessionObject<'a> {
    session: &'a Session,
    handle: ObjectHandle,
}

impl Drop for SessionObject<'_> {
    fn drop(&mut self) {
        let _ = self.session.destroy_object(self.handle);
    }
}

/// The template of the session object a key is wrapped from: its value is zeroed when the
/// template is dropped.
struct ValueTemplate(Vec<Attribute>);

impl Drop for ValueTemplate {
    fn drop(&mut self) {
        for a in &mut self.0 {
            if let Attribute::Value(v) = a {
                v.zeroize();
            }
        }
    }
}

fn device<'a>(token: &'a str, op: &'static str) -> impl Fn(CkError) -> HsmError + 'a {
    move |e| HsmError::Device {
        token: token.to_string(),
        op,
        why: rv_text(&e),
    }
}

/// The module's context and the slot of the one initialised token labelled `token`. A module
/// that shows no initialised token at all is finalised and initialised again, twice at most,
/// 100 and 200 ms later: SoftHSM2 lists its tokens when initialised, reading each token's
/// file, and a token whose file another process is using at that moment can be left out as
/// uninitialised for the whole life of the context (seen: a command started while a
/// background rotation runner logged in to the same token). A token that is really missing
/// costs 300 ms more to refuse.
fn find_token_reloading(cfg: &HsmConfig) -> Result<(Pkcs11, Slot), HsmError> {
    let mut attempt = 0u64;
    loop {
        let ctx = module::load(&cfg.module)?;
        match find_token(&ctx, cfg) {
            Err(HsmError::TokenNotFound { found, .. }) if found.is_empty() && attempt < 2 => {
                attempt += 1;
                module::reload(&cfg.module, ctx);
                std::thread::sleep(std::time::Duration::from_millis(100 * attempt));
            }
            r => return r.map(|slot| (ctx, slot)),
        }
    }
}

/// The slot of the one initialised token labelled `token`.
fn find_token(ctx: &Pkcs11, cfg: &HsmConfig) -> Result<Slot, HsmError> {
    let slots = ctx
        .get_slots_with_token()
        .map_err(device(&cfg.token, "C_GetSlotList"))?;
    let mut found = Vec::new();
    let mut matching = Vec::new();
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(device(&cfg.token, "C_GetTokenInfo"))?;
        if !info.token_initialized() {
            continue;
        }
        if info.label() == cfg.token {
            matching.push(slot);
        }
        found.push(info.label().to_string());
    }
    match matching.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(HsmError::TokenNotFound {
            token: cfg.token.clone(),
            module: cfg.module.clone(),
            found,
        }),
        many => Err(HsmError::TokenAmbiguous {
            token: cfg.token.clone(),
            slots: many.len(),
        }),
    }
}

/// Logs the process in as the token's user. A process already logged in to the token (by
/// another root of the same module, or by the application embedding dare) stays so.
fn login(session: &Session, token: &str, pin: &Pin) -> Result<(), HsmError> {
    match session.login_with_raw(UserType::User, &pin.auth()) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(
            RvError::PinIncorrect | RvError::PinLenRange | RvError::PinInvalid,
            _,
        )) => Err(HsmError::PinIncorrect {
            token: token.to_string(),
        }),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(HsmError::PinLocked {
            token: token.to_string(),
        }),
        Err(e) => Err(device(token, "C_Login")(e)),
    }
}

/// Checks that the token wraps and unwraps with `CKM_AES_KEY_WRAP_PAD`.
fn check_mechanism(ctx: &Pkcs11, slot: Slot, token: &str) -> Result<(), HsmError> {
    match ctx.get_mechanism_info(slot, MechanismType::AES_KEY_WRAP_PAD) {
        Ok(info) if info.wrap() && info.unwrap() => Ok(()),
        Ok(_) | Err(CkError::Pkcs11(RvError::MechanismInvalid, _)) => {
            Err(HsmError::MechanismUnsupported {
                token: token.to_string(),
            })
        }
        Err(e) => Err(device(token, "C_GetMechanismInfo")(e)),
    }
}

/// The one token secret key labelled `cfg.key`.
fn find_key(session: &Session, cfg: &HsmConfig, uri: &str) -> Result<ObjectHandle, HsmError> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Token(true),
            Attribute::Label(cfg.key.as_bytes().to_vec()),
        ])
        .map_err(device(&cfg.token, "C_FindObjects"))?;
    match found.as_slice() {
        [h] => Ok(*h),
        [] => Err(HsmError::KeyNotFound {
            token: cfg.token.clone(),
            key: cfg.key.clone(),
        }),
        many => Err(HsmError::KeyAmbiguous {
            uri: uri.to_string(),
            count: many.len(),
        }),
    }
}

/// Refuses a key that is not a 256-bit AES key, that may leave the HSM, or that may not wrap
/// and unwrap. An attribute the token does not report counts as the unsafe value.
fn check_key(session: &Session, kek: ObjectHandle, token: &str, uri: &str) -> Result<(), HsmError> {
    let attrs = session
        .get_attributes(
            kek,
            &[
                AttributeType::KeyType,
                AttributeType::ValueLen,
                AttributeType::Extractable,
                AttributeType::Sensitive,
                AttributeType::Wrap,
                AttributeType::Unwrap,
            ],
        )
        .map_err(device(token, "C_GetAttributeValue"))?;
    let (mut kind, mut len, mut extractable, mut sensitive, mut wrap, mut unwrap) =
        (None, None, None, None, None, None);
    for a in attrs {
        match a {
            Attribute::KeyType(k) => kind = Some(k),
            Attribute::ValueLen(l) => len = Some(u64::from(l)),
            Attribute::Extractable(b) => extractable = Some(b),
            Attribute::Sensitive(b) => sensitive = Some(b),
            Attribute::Wrap(b) => wrap = Some(b),
            Attribute::Unwrap(b) => unwrap = Some(b),
            _ => {}
        }
    }
    let uri = uri.to_string();
    match (kind, len) {
        (Some(k), Some(32)) if k == KeyType::AES => {}
        (Some(k), Some(l)) if k == KeyType::AES => {
            return Err(HsmError::KeyWrongType {
                uri,
                found: format!("a {}-bit AES key", l.saturating_mul(8)),
            });
        }
        (Some(k), _) if k == KeyType::AES => {
            return Err(HsmError::KeyWrongType {
                uri,
                found: "an AES key of unreported length".into(),
            });
        }
        (Some(k), _) => {
            return Err(HsmError::KeyWrongType {
                uri,
                found: format!("a {k} key"),
            });
        }
        (None, _) => {
            return Err(HsmError::KeyWrongType {
                uri,
                found: "a key of unreported type".into(),
            });
        }
    }
    if extractable != Some(false) {
        return Err(HsmError::KeyExtractable { uri });
    }
    if sensitive != Some(true) {
        return Err(HsmError::KeyNotSensitive { uri });
    }
    if wrap != Some(true) {
        return Err(HsmError::KeyUsage {
            uri,
            attribute: "CKA_WRAP",
        });
    }
    if unwrap != Some(true) {
        return Err(HsmError::KeyUsage {
            uri,
            attribute: "CKA_UNWRAP",
        });
    }
    Ok(())
}

impl Inner {
    /// `C_WrapKey(CKM_AES_KEY_WRAP_PAD, KEK, key)` of 32 bytes, through a session object that
    /// lives for that one call.
    fn wrap(&self, key: &[u8; 32]) -> Result<[u8; WRAPPED_LEN], CkError> {
        let template = ValueTemplate(vec![
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(true),
            Attribute::Value(key.to_vec()),
        ]);
        let handle = self.session.create_object(&template.0)?;
        drop(template);
        let obj = SessionObject {
            session: &self.session,
            handle,
        };
        let w = self
            .session
            .wrap_key(&Mechanism::AesKeyWrapPad, self.kek, obj.handle)?;
        drop(obj);
        w.as_slice().try_into().map_err(|_| CkError::InvalidValue)
    }

    /// `C_UnwrapKey(CKM_AES_KEY_WRAP_PAD, KEK, wrapped)` into a session object whose value is
    /// read once; the object is destroyed before this returns.
    fn unwrap(&self, wrapped: &[u8]) -> Result<Option<Zeroizing<[u8; 32]>>, CkError> {
        let handle = self.session.unwrap_key(
            &Mechanism::AesKeyWrapPad,
            self.kek,
            wrapped,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::Token(false),
                Attribute::Private(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
            ],
        )?;
        let obj = SessionObject {
            session: &self.session,
            handle,
        };
        let attrs = self
            .session
            .get_attributes(obj.handle, &[AttributeType::Value]);
        drop(obj);
        let mut key = None;
        for a in attrs? {
            if let Attribute::Value(mut v) = a {
                if let Ok(k) = <[u8; 32]>::try_from(v.as_slice()) {
                    key = Some(Zeroizing::new(k));
                }
                v.zeroize();
            }
        }
        Ok(key)
    }
}

impl PkcsRoot {
    /// Loads the module, finds the token by label, logs in with `pin`, finds the key by label
    /// and checks it (docs/KEYS.md §5.4): each refusal is its own [`HsmError`].
    pub fn open(cfg: &HsmConfig, pin: &Pin) -> Result<PkcsRoot, HsmError> {
        let (ctx, slot) = find_token_reloading(cfg)?;
        let uri = uri_of(&cfg.token, &cfg.key);
        let session = ctx
            .open_ro_session(slot)
            .map_err(device(&cfg.token, "C_OpenSession"))?;
        login(&session, &cfg.token, pin)?;
        check_mechanism(&ctx, slot, &cfg.token)?;
        let kek = find_key(&session, cfg, &uri)?;
        check_key(&session, kek, &cfg.token, &uri)?;
        let inner = Inner { session, kek };
        let zero = inner
            .wrap(&[0u8; 32])
            .map_err(device(&cfg.token, "C_WrapKey"))?;
        Ok(PkcsRoot {
            fingerprint: blob::fingerprint(&zero),
            uri,
            token: cfg.token.clone(),
            inner: Mutex::new(inner),
        })
    }

    /// The key's PKCS#11 URI (what [`RootOfTrust::describe`] returns).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// The key's fingerprint, as recorded in every blob it makes (docs/KEYS.md §5.4).
    pub fn fingerprint(&self) -> [u8; FINGERPRINT_LEN] {
        self.fingerprint
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn provider(&self, op: &str, e: &CkError) -> KeyError {
        KeyError::Provider(format!("HSM key {}: {op} failed: {}", self.uri, rv_text(e)))
    }
}

/// Creates a new AES-256 key on the token for [`PkcsRoot`]: generated inside the HSM
/// (`CKM_AES_KEY_GEN`) as a token object with `CKA_EXTRACTABLE = false`, `CKA_SENSITIVE =
/// true`, `CKA_PRIVATE = true`, usable to wrap and unwrap only. Refuses a label the token
/// already has. Returns the root opened on it.
pub fn create_key(cfg: &HsmConfig, pin: &Pin) -> Result<PkcsRoot, HsmError> {
    let ctx = module::load(&cfg.module)?;
    let slot = find_token(&ctx, cfg)?;
    let uri = uri_of(&cfg.token, &cfg.key);
    {
        let session = ctx
            .open_rw_session(slot)
            .map_err(device(&cfg.token, "C_OpenSession"))?;
        login(&session, &cfg.token, pin)?;
        check_mechanism(&ctx, slot, &cfg.token)?;
        let label = Attribute::Label(cfg.key.as_bytes().to_vec());
        let existing = session
            .find_objects(&[Attribute::Token(true), label.clone()])
            .map_err(device(&cfg.token, "C_FindObjects"))?;
        if !existing.is_empty() {
            return Err(HsmError::KeyExists { uri });
        }
        session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32.into()),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Wrap(true),
                    Attribute::Unwrap(true),
                    Attribute::Encrypt(false),
                    Attribute::Decrypt(false),
                    Attribute::Sign(false),
                    Attribute::Verify(false),
                    Attribute::Derive(false),
                    label,
                ],
            )
            .map_err(device(&cfg.token, "C_GenerateKey"))?;
    }
    PkcsRoot::open(cfg, pin)
}

impl fmt::Debug for PkcsRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut fp = String::new();
        for b in self.fingerprint {
            fp.push_str(&format!("{b:02x}"));
        }
        f.debug_struct("PkcsRoot")
            .field("uri", &self.uri)
            .field("fingerprint", &fp)
            .finish_non_exhaustive()
    }
}

impl RootOfTrust for PkcsRoot {
    fn wrap_master(&self, key: &Secret32) -> Result<Vec<u8>, KeyError> {
        let w = self
            .inner()
            .wrap(key.expose_secret())
            .map_err(|e| self.provider("C_WrapKey", &e))?;
        Ok(blob::encode(&self.fingerprint, &w))
    }

    fn unwrap_master(&self, blob: &[u8]) -> Result<Secret32, KeyError> {
        let (fp, wrapped) = blob::decode(blob).map_err(KeyError::Malformed)?;
        if fp != self.fingerprint {
            // Made by another key: refused before the HSM is asked.
            return Err(KeyError::WrongRootKey);
        }
        match self.inner().unwrap(&wrapped) {
            Ok(Some(k)) => Ok(Secret32::from_bytes("master key", *k)),
            // The HSM unwrapped something that is not a 32-byte key: only a blob wrapped by
            // someone else with this key's PIN can do that.
            Ok(None) => Err(KeyError::WrongRootKey),
            // RFC 5649's integrity check failed (SoftHSM2 reports it as CKR_GENERAL_ERROR).
            Err(CkError::Pkcs11(
                RvError::GeneralError
                | RvError::WrappedKeyInvalid
                | RvError::WrappedKeyLenRange
                | RvError::EncryptedDataInvalid
                | RvError::EncryptedDataLenRange,
                _,
            )) => Err(KeyError::WrongRootKey),
            Err(e) => Err(self.provider("C_UnwrapKey", &e)),
        }
    }

    fn describe(&self) -> String {
        self.uri.clone()
    }

    fn provider_key(&self, _blob: &[u8]) -> ProviderKey {
        ProviderKey {
            management: Management::Hsm,
            provider: self.uri.clone(),
            key_id: None,
        }
    }
}

impl PkcsRoot {
    /// The token's label.
    pub fn token(&self) -> &str {
        &self.token
    }
}
