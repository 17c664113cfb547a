//! The service: every operation on customer master keys, each one write transaction that
//! checks the key's state as stored, does its work and appends its audit record, so a state
//! change is seen by the very next operation of any process, and no operation happens without
//! its record. A failed operation appends a failure record in a transaction of its own.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use dare_keys::{BucketKeyService, KeyError, KeyStore, Secret32};
use dare_metadata::{
    KmsAuditRecord, KmsBy, KmsImportParams, KmsKeyRecord, KmsKeyState, KmsOrigin, KmsRegistration,
    KmsVersionRecord, MetaError, Metadata, ReadTx, WriteTx, read_with, write_with,
};
use zeroize::Zeroizing;

use crate::KmsError;
use crate::audit::{self, AuditVerification, LABEL_AUDIT_KEY, Verifier};
use crate::ciphertext::{self, Context, Purpose};
use crate::clock::{Clock, DAY_MS, HOUR_MS};
use crate::import::{self, LABEL_FINGERPRINT_KEY, LABEL_IMPORT_KEY, WrappingAlgorithm};
use crate::info::{KeyInfo, KeyPage, ListFilter, RegistrationInfo, TickReport, label};
use crate::rules::{self, DEFAULT_ROTATION_DAYS, DEFAULT_SUFFIX};

/// The context bound to an SSE-KMS bucket key: `{"dare:bucket": <bucket name>}`.
pub const BUCKET_CONTEXT_KEY: &str = "dare:bucket";
/// Resource id of a bucket in registrations: `bucket:<name>`.
pub fn bucket_resource(bucket: &str) -> String {
    format!("bucket:{bucket}")
}

fn bucket_context(bucket: &str) -> Context {
    let mut c = Context::new();
    c.insert(BUCKET_CONTEXT_KEY.into(), bucket.into());
    c
}

/// How the service is set up.
#[derive(Debug, Clone)]
pub struct KmsOptions {
    /// Service name of default master keys: `<service>/default` (default `dare`).
    pub service: String,
    /// Who is acting, for the audit trail.
    pub actor: String,
    /// Encryptions per version before an automatic rotation ([`rules::ENCRYPTION_LIMIT`];
    /// lower only to test the limit).
    pub encryption_limit: u64,
}

impl Default for KmsOptions {
    fn default() -> Self {
        KmsOptions {
            service: "dare".into(),
            actor: dare_keys::process_lease_owner().to_string(),
            encryption_limit: rules::ENCRYPTION_LIMIT,
        }
    }
}

/// When imported material expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// 24 hours after the import (the seed's default).
    Default,
    /// Never.
    Never,
    /// At this time (Unix ms).
    At(u64),
}

/// Import parameters handed out by [`Kms::get_import_parameters`].
pub struct ImportParameters {
    /// The CMK.
    pub key_id: String,
    /// The wrapping algorithm to use.
    pub algorithm: WrappingAlgorithm,
    /// The RSA public key, SubjectPublicKeyInfo DER (`openssl pkeyutl -keyform der -pubin`).
    pub public_key_der: Vec<u8>,
    /// The import token (opaque, [`import::TOKEN_LEN`] bytes).
    pub token: Vec<u8>,
    /// When both expire.
    pub expires_ms: u64,
}

impl fmt::Debug for ImportParameters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportParameters")
            .field("key_id", &self.key_id)
            .field("algorithm", &self.algorithm)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

/// Imported material as given: the RSA-wrapped bytes and the import token.
#[derive(Clone, Copy)]
pub struct WrappedMaterial<'a> {
    /// `EncryptedKeyMaterial.bin`.
    pub encrypted: &'a [u8],
    /// The import token.
    pub token: &'a [u8],
}

impl fmt::Debug for WrappedMaterial<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WrappedMaterial { .. }")
    }
}

/// A data key made by [`Kms::create_data_key`].
pub struct DataKeyOutput {
    /// The CMK.
    pub key_id: String,
    /// Its version.
    pub version: u32,
    /// The plaintext key (absent for `without_plaintext`), zeroized on drop.
    pub plaintext: Option<Zeroizing<Vec<u8>>>,
    /// The key under the CMK.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for DataKeyOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKeyOutput")
            .field("key_id", &self.key_id)
            .field("version", &self.version)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// A decrypted ciphertext.
pub struct Decrypted {
    /// The CMK that made it.
    pub key_id: String,
    /// Its version.
    pub version: u32,
    /// The plaintext, zeroized on drop.
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decrypted")
            .field("key_id", &self.key_id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// One item of a batch operation: its own result.
#[derive(Debug)]
pub struct BatchItem {
    /// The key as given.
    pub key: String,
    /// What happened to it.
    pub result: Result<KeyInfo, KmsError>,
}

/// What an operation records in the audit trail, filled in as it learns the key.
#[derive(Debug, Default, Clone)]
struct Event {
    key_id: Option<String>,
    version: Option<u32>,
    detail: String,
}

/// How many unwrapped version materials are kept in memory.
const MATERIAL_CACHE: usize = 256;

/// The key management service of one store.
pub struct Kms {
    meta: Arc<dyn Metadata>,
    keys: Arc<KeyStore>,
    clock: Arc<dyn Clock>,
    opts: KmsOptions,
    store_id: [u8; 16],
    audit_key: Secret32,
    import_key: Secret32,
    fp_key: Secret32,
    /// Root-of-trust blob → unwrapped material (blobs never change; a deleted version's
    /// entry is dropped with [`Kms::forget`]).
    materials: Mutex<HashMap<Vec<u8>, Secret32>>,
}

impl fmt::Debug for Kms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kms")
            .field("metadata", &self.meta.describe())
            .field("service", &self.opts.service)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

fn retryable(e: &KmsError) -> bool {
    matches!(e, KmsError::Meta(m) if m.is_retryable())
}

impl Kms {
    /// The service over an open key store (its metadata, root of trust and RT-derived keys).
    pub fn new(
        keys: Arc<KeyStore>,
        clock: Arc<dyn Clock>,
        opts: KmsOptions,
    ) -> Result<Self, KmsError> {
        let store_id = keys.store_record().store_id;
        Ok(Kms {
            meta: keys.metadata().clone(),
            audit_key: keys.service_key(LABEL_AUDIT_KEY)?,
            import_key: keys.service_key(LABEL_IMPORT_KEY)?,
            fp_key: keys.service_key(LABEL_FINGERPRINT_KEY)?,
            keys,
            clock,
            opts,
            store_id,
            materials: Mutex::new(HashMap::new()),
        })
    }

    /// Makes this service the unwrapper of the key store's SSE-KMS bucket keys.
    pub fn attach(self: &Arc<Self>) {
        let me: Arc<dyn BucketKeyService> = self.clone();
        self.keys.set_bucket_key_service(&me);
    }

    /// The clock in use.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    // ---- plumbing --------------------------------------------------------------------------

    /// Runs `f` in a write transaction with its audit record; on failure, records the failure.
    fn run<T>(
        &self,
        op: &'static str,
        key_hint: Option<&str>,
        mut f: impl FnMut(&mut dyn WriteTx, &mut Event) -> Result<T, KmsError>,
    ) -> Result<T, KmsError> {
        let request_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let last = RefCell::new(Event::default());
        let out = write_with(&*self.meta, retryable, |tx| {
            let mut ev = Event::default();
            let r = f(tx, &mut ev);
            *last.borrow_mut() = ev.clone();
            let v = r?;
            self.append(tx, op, &request_id, &ev, "ok")?;
            Ok(v)
        });
        if let Err(e) = &out {
            let mut ev = last.into_inner();
            if ev.key_id.is_none() && ev.detail.is_empty() {
                ev.detail = key_hint.unwrap_or("").to_string();
            }
            ev.detail = if ev.detail.is_empty() {
                e.to_string()
            } else {
                format!("{}: {e}", ev.detail)
            };
            // Best effort: the caller gets the operation's own error either way.
            let _ = write_with(&*self.meta, retryable, |tx| {
                self.append(tx, op, &request_id, &ev, e.kind())
            });
        }
        out
    }

    fn append(
        &self,
        tx: &mut dyn WriteTx,
        op: &str,
        request_id: &str,
        ev: &Event,
        outcome: &str,
    ) -> Result<(), KmsError> {
        let head = tx.kms_audit_head()?;
        let prev: [u8; 32] = if head.seq == 0 {
            [0; 32]
        } else {
            head.mac.as_slice().try_into().map_err(|_| {
                KmsError::Audit("the audit head's MAC is not 32 bytes: the trail is damaged".into())
            })?
        };
        let mut r = KmsAuditRecord {
            seq: head.seq + 1,
            time_ms: self.clock.now_ms(),
            actor: self.opts.actor.clone(),
            operation: op.to_string(),
            key_id: ev.key_id.clone(),
            version: ev.version,
            request_id: request_id.to_string(),
            outcome: outcome.to_string(),
            detail: ev.detail.clone(),
            mac: Vec::new(),
        };
        r.mac = audit::mac(&self.audit_key, &prev, &r).to_vec();
        tx.append_kms_audit(&r)?;
        Ok(())
    }

    /// Looks a key up by id or alias; deleted keys are [`KmsError::Deleted`].
    fn resolve(&self, tx: &mut dyn ReadTx, key: &str) -> Result<KmsKeyRecord, KmsError> {
        let rec = if rules::looks_like_key_id(key) {
            tx.kms_key(KmsBy::Id(&key.to_ascii_lowercase()))?
        } else {
            tx.kms_key(KmsBy::Alias(key))?
        };
        let rec = rec.ok_or_else(|| KmsError::NotFound(key.to_string()))?;
        if rec.state == KmsKeyState::Deleted {
            return Err(KmsError::Deleted {
                key_id: rec.key_id,
                deleted_ms: rec.deleted_ms.unwrap_or(0),
            });
        }
        Ok(rec)
    }

    fn resolve_ev(
        &self,
        tx: &mut dyn ReadTx,
        key: &str,
        ev: &mut Event,
    ) -> Result<KmsKeyRecord, KmsError> {
        let k = self.resolve(tx, key)?;
        ev.key_id = Some(k.key_id.clone());
        Ok(k)
    }

    /// The state check of every cryptographic operation.
    fn usable(k: &KmsKeyRecord) -> Result<(), KmsError> {
        match k.state {
            KmsKeyState::Enabled => Ok(()),
            KmsKeyState::Disabled => Err(KmsError::Disabled { key: label(k) }),
            KmsKeyState::PendingDeletion => Err(KmsError::PendingDeletion {
                key: label(k),
                due_ms: k.deletion_due_ms.unwrap_or(0),
            }),
            KmsKeyState::PendingImport => Err(KmsError::PendingImport { key: label(k) }),
            KmsKeyState::Deleted => Err(KmsError::Deleted {
                key_id: k.key_id.clone(),
                deleted_ms: k.deleted_ms.unwrap_or(0),
            }),
        }
    }

    fn invalid_state(k: &KmsKeyRecord, op: &'static str, needs: &'static str) -> KmsError {
        KmsError::InvalidState {
            key: label(k),
            state: k.state.as_str(),
            op,
            needs,
        }
    }

    fn not_default(k: &KmsKeyRecord, op: &'static str) -> Result<(), KmsError> {
        if k.default_key {
            return Err(KmsError::DefaultKey {
                alias: k.alias.clone().unwrap_or_default(),
                op,
            });
        }
        Ok(())
    }

    fn save(tx: &mut dyn WriteTx, k: &mut KmsKeyRecord) -> Result<(), KmsError> {
        match tx.update_kms_key(k) {
            Ok(v) => {
                k.row_version = v;
                Ok(())
            }
            Err(MetaError::AlreadyExists { name, .. }) => Err(KmsError::AliasTaken(name)),
            Err(e) => Err(e.into()),
        }
    }

    /// Empties every process's derived-key cache (KEYS.md §9): after a change that must stop
    /// SSE-KMS buckets from using a key.
    fn bump_epoch(tx: &mut dyn WriteTx) -> Result<(), KmsError> {
        let mut s = tx
            .store()?
            .ok_or_else(|| KmsError::Audit("the store row is missing".into()))?;
        s.key_epoch += 1;
        tx.update_store(&s)?;
        Ok(())
    }

    fn info(&self, tx: &mut dyn ReadTx, k: &KmsKeyRecord) -> Result<KeyInfo, KmsError> {
        let versions = tx.kms_versions(&k.key_id)?;
        let regs = tx.kms_registrations(&k.key_id)?.len();
        Ok(KeyInfo::of(k, &versions, regs))
    }

    fn material(&self, blob: &[u8]) -> Result<Secret32, KmsError> {
        let mut m = self.materials.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = m.get(blob) {
            return Ok(s.clone());
        }
        let s = self.keys.root_of_trust().unwrap_master(blob)?;
        if m.len() >= MATERIAL_CACHE {
            m.clear();
        }
        m.insert(blob.to_vec(), s.clone());
        Ok(s)
    }

    fn forget(&self, versions: &[KmsVersionRecord]) {
        let mut m = self.materials.lock().unwrap_or_else(|e| e.into_inner());
        for v in versions {
            if let Some(b) = &v.material {
                m.remove(b);
            }
        }
    }

    fn protect(&self, material: &Secret32) -> Result<Vec<u8>, KmsError> {
        Ok(self.keys.root_of_trust().wrap_master(material)?)
    }

    fn fingerprints(k: &KmsKeyRecord) -> Vec<[u8; 32]> {
        k.material_fingerprint
            .as_deref()
            .unwrap_or(&[])
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32"))
            .collect()
    }

    /// Adds a version with `material` and makes it current.
    fn add_version(
        &self,
        tx: &mut dyn WriteTx,
        k: &mut KmsKeyRecord,
        material: &Secret32,
        manual: bool,
    ) -> Result<u32, KmsError> {
        let now = self.clock.now_ms();
        let versions = tx.kms_versions(&k.key_id)?;
        let v = versions.last().map_or(1, |l| l.version + 1);
        tx.insert_kms_version(&KmsVersionRecord {
            key_id: k.key_id.clone(),
            version: v,
            material: Some(self.protect(material)?),
            created_ms: now,
            encryptions: 0,
        })?;
        if v > 1 {
            k.rotations += 1;
        }
        k.last_rotation_ms = now;
        if manual {
            k.last_manual_rotation_ms = Some(now);
        }
        Self::save(tx, k)?;
        Ok(v)
    }

    // ---- keys ------------------------------------------------------------------------------

    fn new_record(
        &self,
        alias: &str,
        description: &str,
        origin: KmsOrigin,
        default_key: bool,
    ) -> KmsKeyRecord {
        let now = self.clock.now_ms();
        KmsKeyRecord {
            key_id: uuid::Uuid::new_v4().hyphenated().to_string(),
            alias: Some(alias.to_string()),
            description: description.to_string(),
            state: match origin {
                KmsOrigin::Generated => KmsKeyState::Enabled,
                KmsOrigin::External => KmsKeyState::PendingImport,
            },
            origin,
            default_key,
            created_ms: now,
            rotation_enabled: false,
            rotation_days: DEFAULT_ROTATION_DAYS,
            last_rotation_ms: now,
            rotations: 0,
            last_manual_rotation_ms: None,
            deletion_due_ms: None,
            state_before: None,
            material_expires_ms: None,
            material_fingerprint: None,
            min_decryption_version: 1,
            import: None,
            deleted_ms: None,
            row_version: 1,
        }
    }

    fn insert_new(&self, tx: &mut dyn WriteTx, k: &KmsKeyRecord) -> Result<(), KmsError> {
        match tx.insert_kms_key(k) {
            Err(MetaError::AlreadyExists {
                what: "kms alias",
                name,
            }) => Err(KmsError::AliasTaken(name)),
            other => Ok(other?),
        }
    }

    /// Creates a CMK (KMS.md §2.1): `generated` ones are Enabled with version 1, `external`
    /// ones Pending import.
    pub fn create_key(
        &self,
        alias: &str,
        description: &str,
        origin: KmsOrigin,
    ) -> Result<KeyInfo, KmsError> {
        self.run("createKey", Some(alias), |tx, ev| {
            ev.detail = format!("alias {alias}");
            rules::check_alias(alias)?;
            rules::check_description(description)?;
            let mut k = self.new_record(alias, description, origin, false);
            ev.key_id = Some(k.key_id.clone());
            self.insert_new(tx, &k)?;
            if origin == KmsOrigin::Generated {
                let m = Secret32::generate("CMK material")?;
                ev.version = Some(self.add_version(tx, &mut k, &m, false)?);
            }
            self.info(tx, &k)
        })
    }

    /// The default master key of the service (`dare/default`), created on first use.
    pub fn default_key(&self) -> Result<KeyInfo, KmsError> {
        let alias = format!("{}{DEFAULT_SUFFIX}", self.opts.service);
        rules::check_alias_chars(&alias)?;
        if let Ok(info) = read_with::<_, KmsError>(&*self.meta, |tx| {
            let k = self.resolve(tx, &alias)?;
            self.info(tx, &k)
        }) {
            return Ok(info);
        }
        let created = self.run("createKey", Some(&alias), |tx, ev| {
            ev.detail = format!("default master key {alias}");
            if let Some(k) = tx.kms_key(KmsBy::Alias(&alias))? {
                ev.key_id = Some(k.key_id.clone());
                return self.info(tx, &k);
            }
            let mut k = self.new_record(&alias, "default master key", KmsOrigin::Generated, true);
            ev.key_id = Some(k.key_id.clone());
            self.insert_new(tx, &k)?;
            let m = Secret32::generate("CMK material")?;
            ev.version = Some(self.add_version(tx, &mut k, &m, false)?);
            self.info(tx, &k)
        });
        match created {
            // Another process created it in between.
            Err(KmsError::AliasTaken(_)) => self.describe(&alias),
            other => other,
        }
    }

    /// Everything about a key.
    pub fn describe(&self, key: &str) -> Result<KeyInfo, KmsError> {
        self.run("describeKey", Some(key), |tx, ev| {
            let k = self.resolve_ev(tx, key, ev)?;
            self.info(tx, &k)
        })
    }

    /// Keys, filtered and paginated in `(created, key id)` order.
    pub fn list(&self, filter: &ListFilter) -> Result<KeyPage, KmsError> {
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        self.run("listKeys", None, |tx, _ev| {
            let all = tx.kms_keys()?;
            let matching: Vec<&KmsKeyRecord> = all
                .iter()
                .filter(|k| match filter.state {
                    Some(s) => k.state == s,
                    None => k.state != KmsKeyState::Deleted,
                })
                .filter(|k| match &filter.alias_contains {
                    Some(t) => k.alias.as_deref().is_some_and(|a| a.contains(t.as_str())),
                    None => true,
                })
                .collect();
            let start = match &filter.marker {
                Some(m) => matching
                    .iter()
                    .position(|k| &k.key_id == m)
                    .map(|i| i + 1)
                    .ok_or_else(|| KmsError::NotFound(format!("marker {m}")))?,
                None => 0,
            };
            let page: Vec<&KmsKeyRecord> =
                matching.iter().skip(start).take(limit).copied().collect();
            let next_marker = (start + page.len() < matching.len())
                .then(|| page.last().map(|k| k.key_id.clone()))
                .flatten();
            let keys = page
                .iter()
                .map(|k| self.info(tx, k))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(KeyPage {
                keys,
                next_marker,
                total: matching.len(),
            })
        })
    }

    fn batch(
        &self,
        keys: &[String],
        mut one: impl FnMut(&str) -> Result<KeyInfo, KmsError>,
    ) -> Vec<BatchItem> {
        keys.iter()
            .map(|k| BatchItem {
                key: k.clone(),
                result: one(k),
            })
            .collect()
    }

    /// Enables Disabled keys, each on its own.
    pub fn enable(&self, keys: &[String]) -> Vec<BatchItem> {
        self.batch(keys, |key| {
            self.run("enableKey", Some(key), |tx, ev| {
                let mut k = self.resolve_ev(tx, key, ev)?;
                if k.state != KmsKeyState::Disabled {
                    return Err(Self::invalid_state(&k, "enable", "disabled"));
                }
                k.state = KmsKeyState::Enabled;
                k.state_before = None;
                Self::save(tx, &mut k)?;
                self.info(tx, &k)
            })
        })
    }

    fn registered(tx: &mut dyn ReadTx, k: &KmsKeyRecord) -> Result<Vec<String>, KmsError> {
        Ok(tx
            .kms_registrations(&k.key_id)?
            .iter()
            .map(|r| format!("{} (v{})", r.resource, r.version))
            .collect())
    }

    /// Disables Enabled keys, each on its own. A key with registrations is refused unless
    /// `force`.
    pub fn disable(&self, keys: &[String], force: bool) -> Vec<BatchItem> {
        self.batch(keys, |key| {
            self.run("disableKey", Some(key), |tx, ev| {
                let mut k = self.resolve_ev(tx, key, ev)?;
                Self::not_default(&k, "disabled")?;
                if k.state != KmsKeyState::Enabled {
                    return Err(Self::invalid_state(&k, "disable", "enabled"));
                }
                let regs = Self::registered(tx, &k)?;
                if !regs.is_empty() && !force {
                    return Err(KmsError::HasRegistrations {
                        key: label(&k),
                        resources: regs,
                        op: "disabling it",
                    });
                }
                k.state = KmsKeyState::Disabled;
                Self::save(tx, &mut k)?;
                Self::bump_epoch(tx)?;
                self.info(tx, &k)
            })
        })
    }

    /// Schedules deletion `days` (7..=1096) from now, each key on its own.
    pub fn schedule_deletion(&self, keys: &[String], days: i64, force: bool) -> Vec<BatchItem> {
        self.batch(keys, |key| {
            self.run("scheduleKeyDeletion", Some(key), |tx, ev| {
                let days = rules::check_deletion_days(days)?;
                ev.detail = format!("{days} days");
                let mut k = self.resolve_ev(tx, key, ev)?;
                Self::not_default(&k, "scheduled for deletion")?;
                if !matches!(
                    k.state,
                    KmsKeyState::Enabled | KmsKeyState::Disabled | KmsKeyState::PendingImport
                ) {
                    return Err(Self::invalid_state(
                        &k,
                        "schedule the deletion of",
                        "enabled, disabled or pending import",
                    ));
                }
                let regs = Self::registered(tx, &k)?;
                if !regs.is_empty() && !force {
                    return Err(KmsError::HasRegistrations {
                        key: label(&k),
                        resources: regs,
                        op: "deleting it",
                    });
                }
                // What a cancellation restores is decided then (KMS.md §2.3); remembered
                // only for keys that had material in use.
                k.state_before = matches!(k.state, KmsKeyState::Enabled | KmsKeyState::Disabled)
                    .then_some(k.state);
                k.state = KmsKeyState::PendingDeletion;
                k.deletion_due_ms = Some(self.clock.now_ms() + days * DAY_MS);
                Self::save(tx, &mut k)?;
                Self::bump_epoch(tx)?;
                self.info(tx, &k)
            })
        })
    }

    /// Cancels pending deletions: each key returns to Disabled (Pending import if it is an
    /// imported key without material).
    pub fn cancel_deletion(&self, keys: &[String]) -> Vec<BatchItem> {
        self.batch(keys, |key| {
            self.run("cancelKeyDeletion", Some(key), |tx, ev| {
                let mut k = self.resolve_ev(tx, key, ev)?;
                if k.state != KmsKeyState::PendingDeletion {
                    return Err(Self::invalid_state(
                        &k,
                        "cancel the deletion of",
                        "pending deletion",
                    ));
                }
                let versions = tx.kms_versions(&k.key_id)?;
                let has_material = versions.last().is_some_and(|v| v.material.is_some());
                k.state = if has_material {
                    KmsKeyState::Disabled
                } else {
                    KmsKeyState::PendingImport
                };
                k.deletion_due_ms = None;
                k.state_before = None;
                Self::save(tx, &mut k)?;
                self.info(tx, &k)
            })
        })
    }

    fn renamable(k: &KmsKeyRecord, op: &'static str) -> Result<(), KmsError> {
        Self::not_default(k, op)?;
        if k.state == KmsKeyState::PendingDeletion {
            return Err(Self::invalid_state(
                k,
                if op == "renamed" {
                    "change the alias of"
                } else {
                    "change the description of"
                },
                "not pending deletion",
            ));
        }
        Ok(())
    }

    /// Changes a key's alias.
    pub fn update_alias(&self, key: &str, new_alias: &str) -> Result<KeyInfo, KmsError> {
        self.run("updateKeyAlias", Some(key), |tx, ev| {
            ev.detail = format!("new alias {new_alias}");
            let mut k = self.resolve_ev(tx, key, ev)?;
            Self::renamable(&k, "renamed")?;
            rules::check_alias(new_alias)?;
            k.alias = Some(new_alias.to_string());
            Self::save(tx, &mut k)?;
            self.info(tx, &k)
        })
    }

    /// Changes a key's description.
    pub fn update_description(&self, key: &str, text: &str) -> Result<KeyInfo, KmsError> {
        self.run("updateKeyDescription", Some(key), |tx, ev| {
            let mut k = self.resolve_ev(tx, key, ev)?;
            Self::renamable(&k, "re-described")?;
            rules::check_description(text)?;
            k.description = text.to_string();
            Self::save(tx, &mut k)?;
            self.info(tx, &k)
        })
    }

    // ---- rotation --------------------------------------------------------------------------

    /// Rotates a key now (at most once an hour). Generated keys get new random material;
    /// imported keys need new imported material (`material`).
    pub fn rotate(
        &self,
        key: &str,
        material: Option<WrappedMaterial<'_>>,
    ) -> Result<KeyInfo, KmsError> {
        let info = self.run("rotateKey", Some(key), |tx, ev| {
            ev.detail = "manual".into();
            let mut k = self.resolve_ev(tx, key, ev)?;
            Self::not_default(&k, "rotated manually")?;
            Self::usable(&k)?;
            let now = self.clock.now_ms();
            if let Some(last) = k.last_manual_rotation_ms
                && now < last + HOUR_MS
            {
                return Err(KmsError::RotationTooSoon {
                    key: label(&k),
                    next_ms: last + HOUR_MS,
                });
            }
            let m = match (k.origin, material) {
                (KmsOrigin::Generated, None) => Secret32::generate("CMK material")?,
                (KmsOrigin::Generated, Some(_)) => {
                    return Err(KmsError::MaterialArgument(
                        "this key's material is generated by the service: rotate it without \
                         --material",
                    ));
                }
                (KmsOrigin::External, None) => {
                    return Err(KmsError::ImportedKeyRotation(
                        "a key with imported material rotates only with new imported material: \
                         get-import-parameters, then rotate --material FILE --token FILE",
                    ));
                }
                (KmsOrigin::External, Some(w)) => {
                    let m = self.check_import(&k, w)?;
                    let fp = import::fingerprint(&self.fp_key, &k.key_id, &m);
                    if Self::fingerprints(&k).contains(&fp) {
                        return Err(KmsError::MaterialArgument(
                            "this material is already a version of the key: rotate with new material",
                        ));
                    }
                    let mut all = k.material_fingerprint.take().unwrap_or_default();
                    all.extend_from_slice(&fp);
                    k.material_fingerprint = Some(all);
                    k.import = None;
                    m
                }
            };
            ev.version = Some(self.add_version(tx, &mut k, &m, true)?);
            self.info(tx, &k)
        })?;
        self.rewrap_registered(&info.key_id, &mut Vec::new(), &mut Vec::new());
        self.describe(&info.key_id).or(Ok(info))
    }

    /// Turns automatic rotation on with a period of `days` (30..=365), or off (`None`).
    pub fn set_rotation_policy(&self, key: &str, days: Option<i64>) -> Result<KeyInfo, KmsError> {
        self.run("updateKeyRotation", Some(key), |tx, ev| {
            let mut k = self.resolve_ev(tx, key, ev)?;
            Self::not_default(
                &k,
                "given a rotation policy (default master keys are not rotated)",
            )?;
            if k.origin == KmsOrigin::External {
                return Err(KmsError::ImportedKeyRotation(
                    "a key with imported material has no automatic rotation: rotate it \
                     manually with new material",
                ));
            }
            if !matches!(k.state, KmsKeyState::Enabled | KmsKeyState::Disabled) {
                return Err(Self::invalid_state(
                    &k,
                    "set the rotation policy of",
                    "enabled or disabled",
                ));
            }
            match days {
                Some(d) => {
                    k.rotation_days = rules::check_rotation_days(d)?;
                    k.rotation_enabled = true;
                    ev.detail = format!("enabled, {d} days");
                }
                None => {
                    k.rotation_enabled = false;
                    ev.detail = "disabled".into();
                }
            }
            Self::save(tx, &mut k)?;
            self.info(tx, &k)
        })
    }

    /// Sets the minimum decryption version. Raising it past versions that registered
    /// resources are still under is refused, naming them.
    pub fn set_min_decryption_version(&self, key: &str, min: u32) -> Result<KeyInfo, KmsError> {
        self.run("updateMinDecryptionVersion", Some(key), |tx, ev| {
            ev.detail = format!("minimum {min}");
            let mut k = self.resolve_ev(tx, key, ev)?;
            let versions = tx.kms_versions(&k.key_id)?;
            let latest = versions.last().map_or(0, |v| v.version);
            if min == 0 || min > latest {
                return Err(KmsError::NoSuchVersion {
                    key: label(&k),
                    version: min,
                });
            }
            let stale: Vec<String> = tx
                .kms_registrations(&k.key_id)?
                .iter()
                .filter(|r| r.version < min)
                .map(|r| format!("{} (v{})", r.resource, r.version))
                .collect();
            if !stale.is_empty() {
                return Err(KmsError::VersionInUse {
                    key: label(&k),
                    resources: stale,
                });
            }
            k.min_decryption_version = min;
            Self::save(tx, &mut k)?;
            Self::bump_epoch(tx)?;
            self.info(tx, &k)
        })
    }

    // ---- import ----------------------------------------------------------------------------

    /// New import parameters for an `external` key (an RSA wrapping key of `bits` and an
    /// import token, both valid 24 hours); they replace any earlier ones.
    pub fn get_import_parameters(
        &self,
        key: &str,
        algorithm: WrappingAlgorithm,
        bits: u32,
    ) -> Result<ImportParameters, KmsError> {
        // Key generation (up to seconds for 4096 bits) happens before the transaction.
        let (private, public) = import::generate_wrapping_key(bits)?;
        self.run("getParametersForImport", Some(key), |tx, ev| {
            ev.detail = format!("{} RSA-{bits}", algorithm.as_str());
            let mut k = self.resolve_ev(tx, key, ev)?;
            if k.origin != KmsOrigin::External {
                return Err(KmsError::NotExternal(label(&k)));
            }
            if k.state == KmsKeyState::PendingDeletion {
                return Err(Self::invalid_state(
                    &k,
                    "import material into",
                    "not pending deletion",
                ));
            }
            let mut token_id = [0u8; 32];
            getrandom::fill(&mut token_id).map_err(|_| KmsError::Key(KeyError::Rng))?;
            let expires_ms = self.clock.now_ms() + rules::IMPORT_VALIDITY_MS;
            k.import = Some(KmsImportParams {
                token_id: token_id.to_vec(),
                algorithm: algorithm.as_str().into(),
                sealed_private_key: import::seal_private_key(
                    &self.import_key,
                    &k.key_id,
                    &private,
                )?,
                public_key: public.clone(),
                expires_ms,
            });
            Self::save(tx, &mut k)?;
            Ok(ImportParameters {
                key_id: k.key_id.clone(),
                algorithm,
                public_key_der: public.clone(),
                token: import::make_token(&self.import_key, &k.key_id, &token_id, expires_ms),
                expires_ms,
            })
        })
    }

    /// Checks a token against `k`'s pending import parameters and unwraps the material.
    fn check_import(&self, k: &KmsKeyRecord, w: WrappedMaterial<'_>) -> Result<Secret32, KmsError> {
        let t = import::check_token(&self.import_key, w.token)?;
        if t.key_id != k.key_id {
            return Err(KmsError::ImportTokenWrongKey {
                token_key: t.key_id,
            });
        }
        let p = k.import.as_ref().ok_or(KmsError::ImportTokenInvalid)?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            &p.token_id[..],
            &t.token_id[..],
        )) {
            return Err(KmsError::ImportTokenInvalid);
        }
        if self.clock.now_ms() >= t.expires_ms {
            return Err(KmsError::ImportTokenExpired {
                expired_ms: t.expires_ms,
            });
        }
        let alg = WrappingAlgorithm::parse(&p.algorithm)?;
        import::unwrap_material(
            &self.import_key,
            &k.key_id,
            &p.sealed_private_key,
            alg,
            w.encrypted,
        )
    }

    /// Imports key material: the first import binds the key to it (version 1); later imports
    /// must bring the material of one of its versions again (after a deletion or expiry) and
    /// restore it. The key becomes Enabled once its current version has material.
    pub fn import_key_material(
        &self,
        key: &str,
        w: WrappedMaterial<'_>,
        expiry: Expiry,
    ) -> Result<KeyInfo, KmsError> {
        self.run("importKeyMaterial", Some(key), |tx, ev| {
            let mut k = self.resolve_ev(tx, key, ev)?;
            if k.origin != KmsOrigin::External {
                return Err(KmsError::NotExternal(label(&k)));
            }
            if k.state == KmsKeyState::PendingDeletion {
                return Err(Self::invalid_state(
                    &k,
                    "import material into",
                    "not pending deletion",
                ));
            }
            let now = self.clock.now_ms();
            let expires = match expiry {
                Expiry::Default => Some(now + rules::DEFAULT_MATERIAL_VALIDITY_MS),
                Expiry::Never => None,
                Expiry::At(t) if t <= now => return Err(KmsError::ExpiryInPast),
                Expiry::At(t) => Some(t),
            };
            let m = self.check_import(&k, w)?;
            let fp = import::fingerprint(&self.fp_key, &k.key_id, &m);
            let fps = Self::fingerprints(&k);
            k.import = None;
            k.material_expires_ms = expires;
            ev.detail = match expires {
                Some(t) => format!("expires {}", crate::clock::iso8601(t)),
                None => "never expires".into(),
            };
            if fps.is_empty() {
                k.material_fingerprint = Some(fp.to_vec());
                ev.version = Some(self.add_version(tx, &mut k, &m, false)?);
            } else {
                let idx = fps
                    .iter()
                    .position(|f| bool::from(subtle::ConstantTimeEq::ct_eq(&f[..], &fp[..])))
                    .ok_or(KmsError::MaterialMismatch)?;
                let versions = tx.kms_versions(&k.key_id)?;
                let mut v = versions
                    .get(idx)
                    .cloned()
                    .ok_or(KmsError::MaterialMismatch)?;
                if v.material.is_none() {
                    v.material = Some(self.protect(&m)?);
                    tx.update_kms_version(&v)?;
                }
                ev.version = Some(v.version);
            }
            let versions = tx.kms_versions(&k.key_id)?;
            if k.state == KmsKeyState::PendingImport
                && versions.last().is_some_and(|v| v.material.is_some())
            {
                k.state = KmsKeyState::Enabled;
                k.state_before = None;
            }
            Self::save(tx, &mut k)?;
            self.info(tx, &k)
        })
    }

    fn drop_material(&self, tx: &mut dyn WriteTx, k: &mut KmsKeyRecord) -> Result<(), KmsError> {
        let versions = tx.kms_versions(&k.key_id)?;
        for v in &versions {
            if v.material.is_some() {
                let mut v2 = v.clone();
                v2.material = None;
                tx.update_kms_version(&v2)?;
            }
        }
        self.forget(&versions);
        if matches!(k.state, KmsKeyState::Enabled | KmsKeyState::Disabled) {
            k.state_before = Some(k.state);
            k.state = KmsKeyState::PendingImport;
        }
        k.material_expires_ms = None;
        Self::save(tx, k)?;
        Self::bump_epoch(tx)
    }

    /// Deletes an imported key's material: the key goes to Pending import until the same
    /// material is imported again.
    pub fn delete_key_material(&self, key: &str) -> Result<KeyInfo, KmsError> {
        self.run("deleteImportedKeyMaterial", Some(key), |tx, ev| {
            let mut k = self.resolve_ev(tx, key, ev)?;
            if k.origin != KmsOrigin::External {
                return Err(KmsError::NotExternal(label(&k)));
            }
            if !matches!(k.state, KmsKeyState::Enabled | KmsKeyState::Disabled) {
                return Err(Self::invalid_state(
                    &k,
                    "delete the material of",
                    "enabled or disabled",
                ));
            }
            self.drop_material(tx, &mut k)?;
            self.info(tx, &k)
        })
    }

    // ---- cryptographic operations ----------------------------------------------------------

    /// Encrypts under `k`'s current version, reserving one encryption; rotates first at the
    /// encryption limit.
    fn seal_with(
        &self,
        tx: &mut dyn WriteTx,
        k: &mut KmsKeyRecord,
        purpose: Purpose,
        plaintext: &[u8],
        ctx: &Context,
        ev: &mut Event,
    ) -> Result<Vec<u8>, KmsError> {
        Self::usable(k)?;
        let mut versions = tx.kms_versions(&k.key_id)?;
        let mut cur = versions
            .pop()
            .ok_or_else(|| KmsError::PendingImport { key: label(k) })?;
        if cur.encryptions >= self.opts.encryption_limit {
            if k.origin == KmsOrigin::External {
                return Err(KmsError::ImportedKeyRotation(
                    "the current version of this imported key reached its encryption limit \
                     (2^32): rotate it with new material",
                ));
            }
            let m = Secret32::generate("CMK material")?;
            self.add_version(tx, k, &m, false)?;
            cur = tx
                .kms_versions(&k.key_id)?
                .pop()
                .ok_or_else(|| KmsError::PendingImport { key: label(k) })?;
        }
        let blob = cur
            .material
            .clone()
            .ok_or_else(|| KmsError::MaterialMissing {
                key: label(k),
                version: cur.version,
            })?;
        cur.encryptions += 1;
        tx.update_kms_version(&cur)?;
        Self::save(tx, k)?;
        ev.version = Some(cur.version);
        let m = self.material(&blob)?;
        ciphertext::seal(
            &self.store_id,
            purpose,
            &k.key_id,
            cur.version,
            &m,
            plaintext,
            ctx,
        )
    }

    /// Decrypts a ciphertext of `purpose` (its header names the key and version).
    fn open_with(
        &self,
        tx: &mut dyn WriteTx,
        ct: &[u8],
        purpose: Purpose,
        ctx: &Context,
        ev: &mut Event,
    ) -> Result<(KmsKeyRecord, Decrypted), KmsError> {
        let h = ciphertext::parse_header(ct)?;
        if h.purpose != purpose {
            return Err(KmsError::CiphertextMalformed(match h.purpose {
                Purpose::DataKey => "this is a data key ciphertext: use decrypt-datakey",
                Purpose::Data => "this is a data ciphertext: use decrypt",
                Purpose::BucketKey => "this is a bucket key ciphertext",
            }));
        }
        ev.key_id = Some(h.key_id.clone());
        ev.version = Some(h.version);
        let k = match tx.kms_key(KmsBy::Id(&h.key_id))? {
            Some(k) => k,
            None => return Err(KmsError::NotFound(h.key_id)),
        };
        Self::usable(&k)?;
        let v = tx
            .kms_versions(&k.key_id)?
            .into_iter()
            .find(|v| v.version == h.version)
            .ok_or(KmsError::NoSuchVersion {
                key: label(&k),
                version: h.version,
            })?;
        if v.version < k.min_decryption_version {
            return Err(KmsError::VersionRetired {
                key: label(&k),
                version: v.version,
                min: k.min_decryption_version,
            });
        }
        let blob = v.material.ok_or_else(|| KmsError::MaterialMissing {
            key: label(&k),
            version: h.version,
        })?;
        let m = self.material(&blob)?;
        let plaintext = ciphertext::open(&self.store_id, ct, &m, ctx)?;
        Ok((
            k,
            Decrypted {
                key_id: h.key_id,
                version: h.version,
                plaintext,
            },
        ))
    }

    /// A new data key of `bits` (256 or 512) under `key`: its ciphertext, and its plaintext
    /// unless `with_plaintext` is false.
    pub fn create_data_key(
        &self,
        key: &str,
        bits: u32,
        with_plaintext: bool,
        ctx: &Context,
    ) -> Result<DataKeyOutput, KmsError> {
        let op = if with_plaintext {
            "createDataKey"
        } else {
            "createDataKeyWithoutPlaintext"
        };
        self.run(op, Some(key), |tx, ev| {
            let len = match bits {
                256 => 32,
                512 => 64,
                other => return Err(KmsError::DataKeyBits(other)),
            };
            let mut k = self.resolve_ev(tx, key, ev)?;
            let mut dk = Zeroizing::new(vec![0u8; len]);
            getrandom::fill(&mut dk).map_err(|_| KmsError::Key(KeyError::Rng))?;
            let ct = self.seal_with(tx, &mut k, Purpose::DataKey, &dk, ctx, ev)?;
            Ok(DataKeyOutput {
                key_id: k.key_id.clone(),
                version: ev.version.unwrap_or(0),
                plaintext: with_plaintext.then(|| dk.clone()),
                ciphertext: ct,
            })
        })
    }

    /// Encrypts a data key the caller holds (32 or 64 bytes).
    pub fn encrypt_data_key(
        &self,
        key: &str,
        dk: &[u8],
        ctx: &Context,
    ) -> Result<Vec<u8>, KmsError> {
        self.run("encryptDataKey", Some(key), |tx, ev| {
            if dk.len() != 32 && dk.len() != 64 {
                return Err(KmsError::InputLength {
                    what: "a data key",
                    len: dk.len(),
                    allowed: "32 or 64 bytes",
                });
            }
            let mut k = self.resolve_ev(tx, key, ev)?;
            self.seal_with(tx, &mut k, Purpose::DataKey, dk, ctx, ev)
        })
    }

    /// Decrypts a data key ciphertext.
    pub fn decrypt_data_key(&self, ct: &[u8], ctx: &Context) -> Result<Decrypted, KmsError> {
        self.run("decryptDataKey", None, |tx, ev| {
            self.open_with(tx, ct, Purpose::DataKey, ctx, ev)
                .map(|(_, d)| d)
        })
    }

    /// Encrypts up to 4096 bytes of data.
    pub fn encrypt(&self, key: &str, data: &[u8], ctx: &Context) -> Result<Vec<u8>, KmsError> {
        self.run("encrypt", Some(key), |tx, ev| {
            if data.is_empty() || data.len() > rules::MAX_ENCRYPT {
                return Err(KmsError::InputLength {
                    what: "data to encrypt",
                    len: data.len(),
                    allowed: "1 to 4096 bytes",
                });
            }
            let mut k = self.resolve_ev(tx, key, ev)?;
            self.seal_with(tx, &mut k, Purpose::Data, data, ctx, ev)
        })
    }

    /// Decrypts a data ciphertext.
    pub fn decrypt(&self, ct: &[u8], ctx: &Context) -> Result<Decrypted, KmsError> {
        self.run("decrypt", None, |tx, ev| {
            self.open_with(tx, ct, Purpose::Data, ctx, ev)
                .map(|(_, d)| d)
        })
    }

    /// Re-encrypts a ciphertext (data or data key) under its key's current version; the
    /// plaintext never leaves the service.
    pub fn rewrap(&self, ct: &[u8], ctx: &Context) -> Result<Vec<u8>, KmsError> {
        self.run("rewrap", None, |tx, ev| {
            let h = ciphertext::parse_header(ct)?;
            if h.purpose == Purpose::BucketKey {
                return Err(KmsError::CiphertextMalformed(
                    "bucket keys are rewrapped by the service itself",
                ));
            }
            let (mut k, d) = self.open_with(tx, ct, h.purpose, ctx, ev)?;
            let from = d.version;
            let out = self.seal_with(tx, &mut k, h.purpose, &d.plaintext, ctx, ev)?;
            ev.detail = format!("version {from} -> {}", ev.version.unwrap_or(0));
            Ok(out)
        })
    }

    /// `bytes` random bytes from the operating system's generator (the seed offers 512 bits).
    pub fn random(&self, bytes: usize) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.run("genRandom", None, |_tx, ev| {
            if bytes == 0 || bytes > 1024 {
                return Err(KmsError::InputLength {
                    what: "random output",
                    len: bytes,
                    allowed: "1 to 1024 bytes",
                });
            }
            ev.detail = format!("{bytes} bytes");
            let mut r = Zeroizing::new(vec![0u8; bytes]);
            getrandom::fill(&mut r).map_err(|_| KmsError::Key(KeyError::Rng))?;
            Ok(r)
        })
    }

    // ---- registrations and SSE-KMS bucket keys ---------------------------------------------

    /// The resources registered with a key.
    pub fn registrations(&self, key: &str) -> Result<Vec<RegistrationInfo>, KmsError> {
        self.run("listRegistrations", Some(key), |tx, ev| {
            let k = self.resolve_ev(tx, key, ev)?;
            Ok(tx
                .kms_registrations(&k.key_id)?
                .iter()
                .map(RegistrationInfo::from)
                .collect())
        })
    }

    /// Registers a resource with a key, at its current version (or updates the
    /// registration's version and description).
    pub fn register(
        &self,
        key: &str,
        resource: &str,
        version: Option<u32>,
        description: &str,
    ) -> Result<RegistrationInfo, KmsError> {
        self.run("createRegistration", Some(key), |tx, ev| {
            ev.detail = resource.to_string();
            rules::check_resource(resource)?;
            rules::check_description(description)?;
            let mut k = self.resolve_ev(tx, key, ev)?;
            if k.state == KmsKeyState::PendingDeletion {
                return Err(Self::invalid_state(
                    &k,
                    "register a resource with",
                    "not pending deletion",
                ));
            }
            let versions = tx.kms_versions(&k.key_id)?;
            let latest = versions.last().map_or(0, |v| v.version);
            let version = version.unwrap_or(latest);
            if version == 0 || version > latest {
                return Err(KmsError::NoSuchVersion {
                    key: label(&k),
                    version,
                });
            }
            ev.version = Some(version);
            let now = self.clock.now_ms();
            let created = tx
                .kms_registrations(&k.key_id)?
                .into_iter()
                .find(|r| r.resource == resource)
                .map_or(now, |r| r.created_ms);
            let r = KmsRegistration {
                key_id: k.key_id.clone(),
                resource: resource.to_string(),
                version,
                description: description.to_string(),
                created_ms: created,
                updated_ms: now,
            };
            tx.put_kms_registration(&r)?;
            Self::save(tx, &mut k)?;
            Ok(RegistrationInfo::from(&r))
        })
    }

    /// Removes a registration; returns whether it existed.
    pub fn deregister(&self, key: &str, resource: &str) -> Result<bool, KmsError> {
        self.run("deleteRegistration", Some(key), |tx, ev| {
            ev.detail = resource.to_string();
            let k = self.resolve_ev(tx, key, ev)?;
            Ok(tx.delete_kms_registration(&k.key_id, resource)?)
        })
    }

    /// A new SSE-KMS bucket key for bucket `bucket`, wrapped under `key`'s current version
    /// and the bucket registered with the key, inside the caller's transaction (the one that
    /// inserts the bucket row), with its audit record: all or nothing. Returns
    /// `(key id, version, ciphertext)` for the bucket row. `key` is an id or alias; resolve
    /// the default master key with [`Kms::default_key`] first. (A failure rolls the caller's
    /// transaction back and leaves no failure record: the caller reports it.)
    pub fn wrap_bucket_key_in(
        &self,
        tx: &mut dyn WriteTx,
        key: &str,
        bucket: &str,
        bk: &Secret32,
    ) -> Result<(String, u32, Vec<u8>), KmsError> {
        let request_id = uuid::Uuid::new_v4().hyphenated().to_string();
        let mut ev = Event {
            detail: bucket_resource(bucket),
            ..Event::default()
        };
        let mut k = self.resolve_ev(tx, key, &mut ev)?;
        let ct = self.seal_with(
            tx,
            &mut k,
            Purpose::BucketKey,
            bk.expose_secret(),
            &bucket_context(bucket),
            &mut ev,
        )?;
        let version = ev.version.unwrap_or(0);
        let now = self.clock.now_ms();
        tx.put_kms_registration(&KmsRegistration {
            key_id: k.key_id.clone(),
            resource: bucket_resource(bucket),
            version,
            description: "SSE-KMS bucket key".into(),
            created_ms: now,
            updated_ms: now,
        })?;
        self.append(tx, "createBucketKey", &request_id, &ev, "ok")?;
        Ok((k.key_id.clone(), version, ct))
    }

    /// Rewraps every registered bucket key of `key_id` that is under an older version
    /// (resumable: the registrations are the work list).
    fn rewrap_registered(&self, key_id: &str, done: &mut Vec<String>, errors: &mut Vec<String>) {
        let regs = match read_with::<_, KmsError>(&*self.meta, |tx| {
            let k = tx.kms_key(KmsBy::Id(key_id))?;
            let latest = tx.kms_versions(key_id)?.last().map_or(0, |v| v.version);
            Ok(match k {
                Some(k) if k.state == KmsKeyState::Enabled => tx
                    .kms_registrations(key_id)?
                    .into_iter()
                    .filter(|r| r.version < latest && r.resource.starts_with("bucket:"))
                    .collect(),
                _ => Vec::new(),
            })
        }) {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("{key_id}: {e}"));
                return;
            }
        };
        for r in regs {
            let bucket = r.resource["bucket:".len()..].to_string();
            let res = self.run("rewrapBucketKey", Some(key_id), |tx, ev| {
                ev.key_id = Some(key_id.to_string());
                ev.detail = r.resource.clone();
                let Some(mut b) = tx.bucket(dare_metadata::By::Name(&bucket))? else {
                    // The bucket is gone: so is the reason for the registration.
                    tx.delete_kms_registration(key_id, &r.resource)?;
                    return Ok(None);
                };
                let (Some(wrapped), Some(kid)) = (b.wrapped_key.clone(), b.kms_key_id.clone())
                else {
                    tx.delete_kms_registration(key_id, &r.resource)?;
                    return Ok(None);
                };
                if kid != key_id {
                    tx.delete_kms_registration(key_id, &r.resource)?;
                    return Ok(None);
                }
                let ctx = bucket_context(&bucket);
                let (mut k, d) = self.open_with(tx, &wrapped, Purpose::BucketKey, &ctx, ev)?;
                let from = d.version;
                let ct = self.seal_with(tx, &mut k, Purpose::BucketKey, &d.plaintext, &ctx, ev)?;
                let to = ev.version.unwrap_or(0);
                b.wrapped_key = Some(ct);
                tx.update_bucket(&b)?;
                tx.put_kms_registration(&KmsRegistration {
                    version: to,
                    updated_ms: self.clock.now_ms(),
                    ..r.clone()
                })?;
                ev.detail = format!("{}: version {from} -> {to}", r.resource);
                Ok(Some(format!("{bucket}: v{from} -> v{to}")))
            });
            match res {
                Ok(Some(s)) => done.push(s),
                Ok(None) => {}
                Err(e) => errors.push(format!("{}: {e}", r.resource)),
            }
        }
    }

    /// Removes the registration of a bucket that is deleted.
    pub fn bucket_deleted(&self, key_id: &str, bucket: &str) -> Result<(), KmsError> {
        self.deregister(key_id, &bucket_resource(bucket))
            .map(|_| ())
    }

    // ---- scheduler -------------------------------------------------------------------------

    /// Carries out what is due (KMS.md §6): deletions, expired imported material, policy
    /// rotations (and the rewrap of registered bucket keys after each), and bucket keys left
    /// behind by an interrupted rewrap. Each item is its own transaction; a failure is
    /// reported and the others still run.
    pub fn tick(&self) -> TickReport {
        let now = self.clock.now_ms();
        let mut rep = TickReport {
            now: crate::clock::iso8601(now),
            ..TickReport::default()
        };
        let keys = match read_with::<_, KmsError>(&*self.meta, |tx| Ok(tx.kms_keys()?)) {
            Ok(k) => k,
            Err(e) => {
                rep.errors.push(e.to_string());
                return rep;
            }
        };
        for k in keys {
            let id = k.key_id.clone();
            let lab = label(&k);
            if k.state == KmsKeyState::PendingDeletion
                && k.deletion_due_ms.is_some_and(|d| d <= now)
            {
                match self.run("deleteKey", Some(&id), |tx, ev| {
                    ev.key_id = Some(id.clone());
                    ev.detail = "scheduled deletion".into();
                    let Some(mut k) = tx.kms_key(KmsBy::Id(&id))? else {
                        return Ok(false);
                    };
                    if k.state != KmsKeyState::PendingDeletion
                        || k.deletion_due_ms.is_none_or(|d| d > now)
                    {
                        return Ok(false);
                    }
                    let versions = tx.kms_versions(&id)?;
                    self.forget(&versions);
                    tx.delete_kms_versions(&id)?;
                    for r in tx.kms_registrations(&id)? {
                        tx.delete_kms_registration(&id, &r.resource)?;
                    }
                    k.state = KmsKeyState::Deleted;
                    k.alias = None;
                    k.import = None;
                    k.deleted_ms = Some(now);
                    k.rotation_enabled = false;
                    Self::save(tx, &mut k)?;
                    Self::bump_epoch(tx)?;
                    Ok(true)
                }) {
                    Ok(true) => rep.deleted.push(lab.clone()),
                    Ok(false) => {}
                    Err(e) => rep.errors.push(format!("{lab}: {e}")),
                }
                continue;
            }
            if k.origin == KmsOrigin::External
                && matches!(k.state, KmsKeyState::Enabled | KmsKeyState::Disabled)
                && k.material_expires_ms.is_some_and(|t| t <= now)
            {
                match self.run("expireKeyMaterial", Some(&id), |tx, ev| {
                    ev.key_id = Some(id.clone());
                    let Some(mut k) = tx.kms_key(KmsBy::Id(&id))? else {
                        return Ok(false);
                    };
                    if k.material_expires_ms.is_none_or(|t| t > now) {
                        return Ok(false);
                    }
                    self.drop_material(tx, &mut k)?;
                    Ok(true)
                }) {
                    Ok(true) => rep.expired.push(lab.clone()),
                    Ok(false) => {}
                    Err(e) => rep.errors.push(format!("{lab}: {e}")),
                }
                continue;
            }
            let due = k.rotation_enabled
                && !k.default_key
                && k.origin == KmsOrigin::Generated
                && k.state == KmsKeyState::Enabled
                && now >= k.last_rotation_ms + u64::from(k.rotation_days) * DAY_MS;
            if due {
                match self.run("rotateKey", Some(&id), |tx, ev| {
                    ev.key_id = Some(id.clone());
                    ev.detail = "rotation policy".into();
                    let Some(mut k) = tx.kms_key(KmsBy::Id(&id))? else {
                        return Ok(None);
                    };
                    if k.state != KmsKeyState::Enabled
                        || now < k.last_rotation_ms + u64::from(k.rotation_days) * DAY_MS
                    {
                        return Ok(None);
                    }
                    let m = Secret32::generate("CMK material")?;
                    let v = self.add_version(tx, &mut k, &m, false)?;
                    ev.version = Some(v);
                    Ok(Some(v))
                }) {
                    Ok(Some(v)) => rep.rotated.push(format!("{lab} -> version {v}")),
                    Ok(None) => {}
                    Err(e) => rep.errors.push(format!("{lab}: {e}")),
                }
            }
            if matches!(k.state, KmsKeyState::Enabled) {
                self.rewrap_registered(&id, &mut rep.rewrapped, &mut rep.errors);
            }
        }
        rep
    }

    // ---- audit trail -----------------------------------------------------------------------

    /// Audit records, oldest first: of one key and from a time, if given.
    pub fn audit_records(
        &self,
        key_id: Option<&str>,
        since_ms: Option<u64>,
    ) -> Result<Vec<KmsAuditRecord>, KmsError> {
        read_with::<_, KmsError>(&*self.meta, |tx| {
            let mut out = Vec::new();
            let mut after = 0;
            loop {
                let page = tx.kms_audit(after, 1000)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                out.extend(page.into_iter().filter(|r| {
                    key_id.is_none_or(|k| r.key_id.as_deref() == Some(k))
                        && since_ms.is_none_or(|t| r.time_ms >= t)
                }));
            }
            Ok(out)
        })
    }

    /// Verifies the whole trail against its chain and head, in one snapshot.
    pub fn verify_audit(&self) -> Result<AuditVerification, KmsError> {
        read_with::<_, KmsError>(&*self.meta, |tx| {
            let head = tx.kms_audit_head()?;
            let mut v = Verifier::new(&self.audit_key);
            let mut after = 0;
            'outer: loop {
                let page = tx.kms_audit(after, 1000)?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for r in &page {
                    if !v.feed(r) {
                        break 'outer;
                    }
                }
            }
            Ok(v.finish(&head))
        })
    }
}

impl BucketKeyService for Kms {
    fn unwrap_bucket_key(&self, bucket_name: &str, wrapped: &[u8]) -> Result<Secret32, KeyError> {
        let ctx = bucket_context(bucket_name);
        let r = self.run("decryptBucketKey", None, |tx, ev| {
            ev.detail = bucket_resource(bucket_name);
            self.open_with(tx, wrapped, Purpose::BucketKey, &ctx, ev)
                .map(|(_, d)| d)
        });
        match r {
            Ok(d) => {
                let bytes: [u8; 32] = d
                    .plaintext
                    .as_slice()
                    .try_into()
                    .map_err(|_| KeyError::Malformed("SSE-KMS bucket key is not 32 bytes"))?;
                Ok(Secret32::from_bytes("bucket key", bytes))
            }
            Err(KmsError::DecryptFailed) => Err(KeyError::UnwrapFailed),
            Err(KmsError::Key(e)) => Err(e),
            Err(e @ (KmsError::Meta(_) | KmsError::Audit(_))) => {
                Err(KeyError::Provider(format!("key management service: {e}")))
            }
            Err(e) => Err(KeyError::KmsRefused(format!(
                "SSE-KMS bucket {bucket_name}: {e}"
            ))),
        }
    }
}

/// Helper for tests and callers that show the key behind an SSE-KMS bucket: the key id and
/// version a bucket key ciphertext names.
pub fn bucket_key_version(wrapped: &[u8]) -> Option<(String, u32)> {
    ciphertext::parse_header(wrapped)
        .ok()
        .filter(|h| h.purpose == Purpose::BucketKey)
        .map(|h| (h.key_id, h.version))
}
