//! The error of every key management operation: one variant per broken rule, so that callers
//! (the CLI, a later S3 endpoint) can map each to its own message and status. Messages never
//! carry key material, plaintext or import tokens.

use std::fmt;

use dare_keys::KeyError;
use dare_metadata::MetaError;

/// Why a key management operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum KmsError {
    /// No CMK has this id or alias.
    NotFound(String),
    /// The CMK was deleted (its material destroyed) at `deleted_ms`.
    Deleted {
        /// The key id.
        key_id: String,
        /// When.
        deleted_ms: u64,
    },
    /// An alias that breaks the rules (KMS.md §2.1): the reason says which.
    InvalidAlias(String),
    /// The alias is taken by another CMK.
    AliasTaken(String),
    /// A description longer than 255 characters.
    DescriptionTooLong(usize),
    /// The CMK is disabled: enable it first.
    Disabled {
        /// `alias (id)`.
        key: String,
    },
    /// The CMK is scheduled for deletion: cancel the deletion first.
    PendingDeletion {
        /// `alias (id)`.
        key: String,
        /// When the deletion takes effect.
        due_ms: u64,
    },
    /// The CMK has no key material: import it first.
    PendingImport {
        /// `alias (id)`.
        key: String,
    },
    /// The operation is not allowed in the CMK's state (e.g. enabling an enabled key).
    InvalidState {
        /// `alias (id)`.
        key: String,
        /// Its state.
        state: &'static str,
        /// The operation.
        op: &'static str,
        /// The states it would need.
        needs: &'static str,
    },
    /// Default master keys cannot be disabled, deleted, renamed, re-described or rotated.
    DefaultKey {
        /// Its alias.
        alias: String,
        /// The operation refused.
        op: &'static str,
    },
    /// A deletion window outside 7..=1096 days.
    DeletionWindow(i64),
    /// A rotation period outside 30..=365 days.
    RotationPeriod(i64),
    /// A second manual rotation within an hour.
    RotationTooSoon {
        /// `alias (id)`.
        key: String,
        /// When the next manual rotation is allowed.
        next_ms: u64,
    },
    /// Imported CMKs rotate only manually, with new material.
    ImportedKeyRotation(&'static str),
    /// A generated CMK has no material to import or delete.
    NotExternal(String),
    /// Disabling or deleting a CMK that still protects resources, without `force`.
    HasRegistrations {
        /// `alias (id)`.
        key: String,
        /// The registered resources (and the version each is under).
        resources: Vec<String>,
        /// The operation refused.
        op: &'static str,
    },
    /// `min_decryption_version` cannot pass versions still in use.
    VersionInUse {
        /// `alias (id)`.
        key: String,
        /// The resources under older versions.
        resources: Vec<String>,
    },
    /// A version number that the CMK does not have.
    NoSuchVersion {
        /// `alias (id)`.
        key: String,
        /// The version asked for.
        version: u32,
    },
    /// The ciphertext is under a version below the CMK's minimum decryption version.
    VersionRetired {
        /// `alias (id)`.
        key: String,
        /// The ciphertext's version.
        version: u32,
        /// The minimum.
        min: u32,
    },
    /// The material of this version was deleted or has expired: re-import it.
    MaterialMissing {
        /// `alias (id)`.
        key: String,
        /// The version.
        version: u32,
    },
    /// The wrapping algorithm is refused (PKCS#1 v1.5) or unknown.
    WrappingAlgorithm(String),
    /// An RSA wrapping key size other than 2048, 3072 or 4096 bits.
    WrappingKeySize(u32),
    /// The import token is not one this service issued, or not the latest for this CMK.
    ImportTokenInvalid,
    /// The import token has expired.
    ImportTokenExpired {
        /// When it expired.
        expired_ms: u64,
    },
    /// The import token was issued for another CMK.
    ImportTokenWrongKey {
        /// The CMK the token belongs to.
        token_key: String,
    },
    /// The unwrapped key material is not 32 bytes.
    MaterialLength(usize),
    /// The encrypted material does not decrypt under the wrapping key (wrong key, wrong
    /// algorithm or damaged file).
    MaterialUnwrap,
    /// Re-imported material differs from the material this CMK is bound to.
    MaterialMismatch,
    /// Material given where none may be (rotating a generated key) or missing where needed.
    MaterialArgument(&'static str),
    /// An expiry time in the past.
    ExpiryInPast,
    /// Data to encrypt is larger than 4096 bytes, or a data key not 32 or 64 bytes.
    InputLength {
        /// What.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The allowed lengths.
        allowed: &'static str,
    },
    /// Data-key sizes other than 256 and 512 bits.
    DataKeyBits(u32),
    /// The ciphertext is not one of this service's (bad length, format or purpose).
    CiphertextMalformed(&'static str),
    /// The ciphertext failed authentication: tampered, truncated, made by another CMK or
    /// store, or given with another encryption context. No plaintext is released.
    DecryptFailed,
    /// A resource identifier outside 1..=1024 bytes.
    InvalidResource,
    /// The audit trail's key or records could not be read.
    Audit(String),
    /// The metadata database failed.
    Meta(MetaError),
    /// The key hierarchy (root of trust, RNG) failed.
    Key(KeyError),
}

impl KmsError {
    /// A short stable name of the error, recorded as the audit record's outcome and printed
    /// as `"error"` in `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            KmsError::NotFound(_) => "NotFound",
            KmsError::Deleted { .. } => "KeyDeleted",
            KmsError::InvalidAlias(_) => "InvalidAlias",
            KmsError::AliasTaken(_) => "AliasTaken",
            KmsError::DescriptionTooLong(_) => "DescriptionTooLong",
            KmsError::Disabled { .. } => "KeyDisabled",
            KmsError::PendingDeletion { .. } => "KeyPendingDeletion",
            KmsError::PendingImport { .. } => "KeyPendingImport",
            KmsError::InvalidState { .. } => "InvalidState",
            KmsError::DefaultKey { .. } => "DefaultKey",
            KmsError::DeletionWindow(_) => "InvalidDeletionWindow",
            KmsError::RotationPeriod(_) => "InvalidRotationPeriod",
            KmsError::RotationTooSoon { .. } => "RotationTooSoon",
            KmsError::ImportedKeyRotation(_) => "ImportedKeyRotation",
            KmsError::NotExternal(_) => "NotExternal",
            KmsError::HasRegistrations { .. } => "HasRegistrations",
            KmsError::VersionInUse { .. } => "VersionInUse",
            KmsError::NoSuchVersion { .. } => "NoSuchVersion",
            KmsError::VersionRetired { .. } => "VersionBelowMinimum",
            KmsError::MaterialMissing { .. } => "MaterialMissing",
            KmsError::WrappingAlgorithm(_) => "UnsupportedWrappingAlgorithm",
            KmsError::WrappingKeySize(_) => "UnsupportedWrappingKeySize",
            KmsError::ImportTokenInvalid => "ImportTokenInvalid",
            KmsError::ImportTokenExpired { .. } => "ImportTokenExpired",
            KmsError::ImportTokenWrongKey { .. } => "ImportTokenWrongKey",
            KmsError::MaterialLength(_) => "MaterialLength",
            KmsError::MaterialUnwrap => "MaterialUnwrapFailed",
            KmsError::MaterialMismatch => "MaterialMismatch",
            KmsError::MaterialArgument(_) => "MaterialArgument",
            KmsError::ExpiryInPast => "ExpiryInPast",
            KmsError::InputLength { .. } => "InputLength",
            KmsError::DataKeyBits(_) => "DataKeyBits",
            KmsError::CiphertextMalformed(_) => "CiphertextMalformed",
            KmsError::DecryptFailed => "DecryptFailed",
            KmsError::InvalidResource => "InvalidResource",
            KmsError::Audit(_) => "Audit",
            KmsError::Meta(_) => "Metadata",
            KmsError::Key(_) => "Key",
        }
    }

    /// Whether the error is the caller's (bad input, a rule, a state) rather than the
    /// system's (database, root of trust).
    pub fn is_usage(&self) -> bool {
        !matches!(
            self,
            KmsError::Meta(_) | KmsError::Key(_) | KmsError::Audit(_) | KmsError::DecryptFailed
        )
    }
}

fn list(items: &[String]) -> String {
    const SHOWN: usize = 10;
    let mut s = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(" and {} more", items.len() - SHOWN));
    }
    s
}

impl fmt::Display for KmsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::clock::iso8601;
        match self {
            KmsError::NotFound(k) => write!(f, "no customer master key has the id or alias {k:?}"),
            KmsError::Deleted { key_id, deleted_ms } => write!(
                f,
                "customer master key {key_id} was deleted at {} and its key material destroyed: \
                 data under it cannot be decrypted",
                iso8601(*deleted_ms)
            ),
            KmsError::InvalidAlias(why) => write!(f, "invalid alias: {why}"),
            KmsError::AliasTaken(a) => write!(f, "the alias {a:?} is taken by another key"),
            KmsError::DescriptionTooLong(n) => {
                write!(
                    f,
                    "description is {n} characters long; at most 255 are allowed"
                )
            }
            KmsError::Disabled { key } => write!(
                f,
                "customer master key {key} is disabled: it refuses to encrypt and decrypt until \
                 `dare kms enable` enables it"
            ),
            KmsError::PendingDeletion { key, due_ms } => write!(
                f,
                "customer master key {key} is pending deletion (due {}): it refuses to encrypt \
                 and decrypt; `dare kms cancel-deletion` keeps it",
                iso8601(*due_ms)
            ),
            KmsError::PendingImport { key } => write!(
                f,
                "customer master key {key} has no key material (pending import): import it with \
                 `dare kms get-import-parameters` and `dare kms import-key-material`"
            ),
            KmsError::InvalidState {
                key,
                state,
                op,
                needs,
            } => write!(
                f,
                "cannot {op} customer master key {key}: it is {state}, and {op} needs it {needs}"
            ),
            KmsError::DefaultKey { alias, op } => {
                write!(f, "{alias} is a default master key: it cannot be {op}")
            }
            KmsError::DeletionWindow(d) => write!(
                f,
                "deletion window of {d} days refused: it must be 7 to 1096 days"
            ),
            KmsError::RotationPeriod(d) => write!(
                f,
                "rotation period of {d} days refused: it must be 30 to 365 days"
            ),
            KmsError::RotationTooSoon { key, next_ms } => write!(
                f,
                "customer master key {key} was rotated manually less than an hour ago; the next \
                 manual rotation is allowed at {}",
                iso8601(*next_ms)
            ),
            KmsError::ImportedKeyRotation(why) => f.write_str(why),
            KmsError::NotExternal(key) => write!(
                f,
                "customer master key {key} has generated key material (origin generated): there \
                 is no imported material to import or delete"
            ),
            KmsError::HasRegistrations { key, resources, op } => write!(
                f,
                "customer master key {key} still protects {} resource(s): {}; {op} would make \
                 them unreadable — rewrap them to another key first, or pass --force",
                resources.len(),
                list(resources)
            ),
            KmsError::VersionInUse { key, resources } => write!(
                f,
                "cannot raise the minimum decryption version of {key}: {} resource(s) are still \
                 under older versions: {}",
                resources.len(),
                list(resources)
            ),
            KmsError::NoSuchVersion { key, version } => {
                write!(f, "customer master key {key} has no version {version}")
            }
            KmsError::VersionRetired { key, version, min } => write!(
                f,
                "the ciphertext is under version {version} of {key}, below its minimum \
                 decryption version {min}: lower the minimum or rewrap it beforehand"
            ),
            KmsError::MaterialMissing { key, version } => write!(
                f,
                "the key material of version {version} of {key} was deleted or has expired: \
                 re-import the same material to decrypt"
            ),
            KmsError::WrappingAlgorithm(why) => f.write_str(why),
            KmsError::WrappingKeySize(b) => write!(
                f,
                "RSA wrapping key of {b} bits refused: use 2048, 3072 or 4096"
            ),
            KmsError::ImportTokenInvalid => f.write_str(
                "the import token is not valid: not issued by this service, damaged, or \
                 superseded by a later get-import-parameters for this key",
            ),
            KmsError::ImportTokenExpired { expired_ms } => write!(
                f,
                "the import token expired at {}: run get-import-parameters again and wrap the \
                 material with the new wrapping key",
                iso8601(*expired_ms)
            ),
            KmsError::ImportTokenWrongKey { token_key } => write!(
                f,
                "the import token was issued for another key ({token_key})"
            ),
            KmsError::MaterialLength(n) => write!(
                f,
                "imported key material is {n} bytes; it must be a 256-bit key (32 bytes)"
            ),
            KmsError::MaterialUnwrap => f.write_str(
                "the encrypted key material does not decrypt under this import's wrapping key: \
                 wrap it with the public key and algorithm of the same get-import-parameters",
            ),
            KmsError::MaterialMismatch => f.write_str(
                "this key material is not the material the key is bound to: a key accepts only \
                 the material first imported into it (or, for a new version, with rotate)",
            ),
            KmsError::MaterialArgument(why) => f.write_str(why),
            KmsError::ExpiryInPast => f.write_str("the key material expiry time is in the past"),
            KmsError::InputLength { what, len, allowed } => {
                write!(f, "{what} is {len} bytes; allowed: {allowed}")
            }
            KmsError::DataKeyBits(b) => {
                write!(f, "data keys of {b} bits are not offered: use 256 or 512")
            }
            KmsError::CiphertextMalformed(why) => {
                write!(f, "not a ciphertext of this key management service: {why}")
            }
            KmsError::DecryptFailed => f.write_str(
                "the ciphertext failed authentication: tampered or truncated, made by another \
                 key or store, or given with another encryption context",
            ),
            KmsError::InvalidResource => {
                f.write_str("a resource identifier must be 1 to 1024 bytes")
            }
            KmsError::Audit(why) => write!(f, "audit trail: {why}"),
            KmsError::Meta(e) => write!(f, "key management metadata: {e}"),
            KmsError::Key(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for KmsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KmsError::Meta(e) => Some(e),
            KmsError::Key(e) => Some(e),
            _ => None,
        }
    }
}

impl From<MetaError> for KmsError {
    fn from(e: MetaError) -> Self {
        KmsError::Meta(e)
    }
}

impl From<KeyError> for KmsError {
    fn from(e: KeyError) -> Self {
        KmsError::Key(e)
    }
}
