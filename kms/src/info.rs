//! What the service reports: plain serializable views of keys, versions, registrations and
//! the results of batch and scheduler operations (the `--json` of `dare kms`).

use dare_metadata::{KmsKeyRecord, KmsKeyState, KmsRegistration, KmsVersionRecord};
use serde::Serialize;

use crate::clock::{DAY_MS, iso8601};

/// One version of a CMK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    /// From 1.
    pub version: u32,
    /// Creation time (RFC 3339).
    pub created: String,
    /// Whether its material is present (imported material may be deleted or expired).
    pub has_material: bool,
    /// Encryptions reserved under it.
    pub encryptions: u64,
    /// Whether it may decrypt (at or above the minimum decryption version).
    pub decrypts: bool,
}

/// A CMK's rotation state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationInfo {
    /// Automatic rotation on.
    pub enabled: bool,
    /// Period in days.
    pub period_days: u32,
    /// Rotations so far.
    pub rotations: u32,
    /// When the current version was made.
    pub last_rotation: String,
    /// When automatic rotation is due (if enabled).
    pub next_rotation: Option<String>,
}

/// Everything about a CMK but its material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// UUID.
    pub key_id: String,
    /// Alias (none once deleted).
    pub alias: Option<String>,
    /// Description.
    pub description: String,
    /// `enabled`, `disabled`, `pending-deletion`, `pending-import`, `deleted`.
    pub state: &'static str,
    /// `generated` or `external`.
    pub origin: &'static str,
    /// A default master key (`<service>/default`).
    pub default_key: bool,
    /// Creation time.
    pub created: String,
    /// The version that encrypts (0 before any material).
    pub current_version: u32,
    /// Versions below this refuse to decrypt.
    pub min_decryption_version: u32,
    /// Rotation.
    pub rotation: RotationInfo,
    /// When a pending deletion takes effect.
    pub deletion_due: Option<String>,
    /// When imported material expires (`None`: never or not imported).
    pub material_expires: Option<String>,
    /// When import parameters handed out expire, while some are pending.
    pub import_parameters_expire: Option<String>,
    /// When it was deleted.
    pub deleted: Option<String>,
    /// Every version, ascending.
    pub versions: Vec<VersionInfo>,
    /// How many resources are registered with it.
    pub registrations: usize,
}

impl KeyInfo {
    /// The view of a key record with its versions.
    pub fn of(k: &KmsKeyRecord, versions: &[KmsVersionRecord], registrations: usize) -> Self {
        let auto =
            k.rotation_enabled && k.origin == dare_metadata::KmsOrigin::Generated && !k.default_key;
        KeyInfo {
            key_id: k.key_id.clone(),
            alias: k.alias.clone(),
            description: k.description.clone(),
            state: k.state.as_str(),
            origin: k.origin.as_str(),
            default_key: k.default_key,
            created: iso8601(k.created_ms),
            current_version: versions.last().map_or(0, |v| v.version),
            min_decryption_version: k.min_decryption_version,
            rotation: RotationInfo {
                enabled: k.rotation_enabled,
                period_days: k.rotation_days,
                rotations: k.rotations,
                last_rotation: iso8601(k.last_rotation_ms),
                next_rotation: auto
                    .then(|| iso8601(k.last_rotation_ms + u64::from(k.rotation_days) * DAY_MS)),
            },
            deletion_due: k.deletion_due_ms.map(iso8601),
            material_expires: k.material_expires_ms.map(iso8601),
            import_parameters_expire: k.import.as_ref().map(|p| iso8601(p.expires_ms)),
            deleted: k.deleted_ms.map(iso8601),
            versions: versions
                .iter()
                .map(|v| VersionInfo {
                    version: v.version,
                    created: iso8601(v.created_ms),
                    has_material: v.material.is_some(),
                    encryptions: v.encryptions,
                    decrypts: v.version >= k.min_decryption_version,
                })
                .collect(),
            registrations,
        }
    }

    /// `alias (id)`, or the id alone.
    pub fn label(&self) -> String {
        label_of(self.alias.as_deref(), &self.key_id)
    }
}

/// `alias (id)` of a record.
pub fn label(k: &KmsKeyRecord) -> String {
    label_of(k.alias.as_deref(), &k.key_id)
}

fn label_of(alias: Option<&str>, key_id: &str) -> String {
    match alias {
        Some(a) => format!("{a} ({key_id})"),
        None => key_id.to_string(),
    }
}

/// A registration as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistrationInfo {
    /// The CMK.
    pub key_id: String,
    /// The resource.
    pub resource: String,
    /// The version its key is wrapped under.
    pub key_version: u32,
    /// Free text.
    pub description: String,
    /// Registration time.
    pub created: String,
    /// Last change.
    pub updated: String,
}

impl From<&KmsRegistration> for RegistrationInfo {
    fn from(r: &KmsRegistration) -> Self {
        RegistrationInfo {
            key_id: r.key_id.clone(),
            resource: r.resource.clone(),
            key_version: r.version,
            description: r.description.clone(),
            created: iso8601(r.created_ms),
            updated: iso8601(r.updated_ms),
        }
    }
}

/// A page of `list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyPage {
    /// The keys of this page.
    pub keys: Vec<KeyInfo>,
    /// Pass as the marker of the next call; `None` on the last page.
    pub next_marker: Option<String>,
    /// How many keys matched the filter in all.
    pub total: usize,
}

/// What `list` returns.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only keys in this state (tombstones of deleted keys are listed only when asked for).
    pub state: Option<KmsKeyState>,
    /// Only keys whose alias contains this text.
    pub alias_contains: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Start after this key id (the previous page's `next_marker`).
    pub marker: Option<String>,
}

/// What one scheduler run did (`dare kms tick`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// When it ran.
    pub now: String,
    /// Keys rotated by their policy (`alias (id) -> version`).
    pub rotated: Vec<String>,
    /// Keys whose deletion took effect.
    pub deleted: Vec<String>,
    /// Keys whose imported material expired.
    pub expired: Vec<String>,
    /// Bucket keys rewrapped to their key's current version.
    pub rewrapped: Vec<String>,
    /// What failed (each other item still ran).
    pub errors: Vec<String>,
}
