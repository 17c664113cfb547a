//! Why opening the HSM root of trust (or creating its key) failed: one variant per thing an
//! operator fixes differently, each a line that says what to do. No message carries the PIN.

use std::fmt;
use std::path::PathBuf;

use dare_keys::StoreError;

/// Why the HSM root of trust could not be opened, or its key created.
#[derive(Debug)]
#[non_exhaustive]
pub enum HsmError {
    /// The PKCS#11 module could not be loaded or initialised.
    ModuleLoad {
        /// The module as given.
        module: PathBuf,
        /// What went wrong.
        why: String,
    },
    /// A file dare refuses or cannot read: the PIN file, or a module another user could
    /// replace (the checks of docs/KEYS.md §5.3).
    File(StoreError),
    /// The PIN is empty.
    EmptyPin,
    /// The PIN is longer than [`crate::MAX_PIN_LEN`].
    PinTooLong,
    /// No initialised token has this label.
    TokenNotFound {
        /// The label asked for.
        token: String,
        /// The module searched.
        module: PathBuf,
        /// The labels of the tokens it has.
        found: Vec<String>,
    },
    /// Several tokens have this label.
    TokenAmbiguous {
        /// The label.
        token: String,
        /// How many slots hold a token with it.
        slots: usize,
    },
    /// The token refused the PIN (`CKR_PIN_INCORRECT`, or a PIN of a length it never takes).
    PinIncorrect {
        /// The token's label.
        token: String,
    },
    /// The token's user PIN is locked after too many wrong attempts (`CKR_PIN_LOCKED`).
    PinLocked {
        /// The token's label.
        token: String,
    },
    /// The token holds no secret key with this label.
    KeyNotFound {
        /// The token's label.
        token: String,
        /// The key label asked for.
        key: String,
    },
    /// The token holds several secret keys with this label.
    KeyAmbiguous {
        /// The key's PKCS#11 URI.
        uri: String,
        /// How many.
        count: usize,
    },
    /// The key may leave the HSM (`CKA_EXTRACTABLE = true`, or not reported).
    KeyExtractable {
        /// The key's PKCS#11 URI.
        uri: String,
    },
    /// The key's value may be read out of the HSM (`CKA_SENSITIVE = false`, or not reported).
    KeyNotSensitive {
        /// The key's PKCS#11 URI.
        uri: String,
    },
    /// The key is not a 256-bit AES key.
    KeyWrongType {
        /// The key's PKCS#11 URI.
        uri: String,
        /// What it is instead (`CKK_DES3`, `a 128-bit AES key`, ...).
        found: String,
    },
    /// The key may not wrap or unwrap keys.
    KeyUsage {
        /// The key's PKCS#11 URI.
        uri: String,
        /// The attribute that is not `true` (`CKA_WRAP`, `CKA_UNWRAP`).
        attribute: &'static str,
    },
    /// The token does not offer `CKM_AES_KEY_WRAP_PAD` for both wrapping and unwrapping.
    MechanismUnsupported {
        /// The token's label.
        token: String,
    },
    /// Creating a key: the token already holds an object with this label.
    KeyExists {
        /// The key's PKCS#11 URI.
        uri: String,
    },
    /// Any other PKCS#11 failure.
    Device {
        /// The token's label.
        token: String,
        /// The PKCS#11 function (`C_OpenSession`, ...).
        op: &'static str,
        /// Its return value (`SessionCountExceeded`, ...).
        why: String,
    },
}

impl fmt::Display for HsmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HsmError::ModuleLoad { module, why } => write!(
                f,
                "cannot load the PKCS#11 module {}: {why} (give the HSM vendor's PKCS#11 \
                 library with --hsm-module or DARE_HSM_MODULE; for SoftHSM2: apt-get install \
                 softhsm2, /usr/lib/softhsm/libsofthsm2.so)",
                module.display()
            ),
            HsmError::File(e) => e.fmt(f),
            HsmError::EmptyPin => f.write_str(
                "the HSM PIN is empty: give the token's user PIN in the PIN file \
                 (--hsm-pin-file, DARE_HSM_PIN_FILE) or in DARE_HSM_PIN",
            ),
            HsmError::PinTooLong => write!(
                f,
                "the HSM PIN is longer than {} bytes: the PIN file or DARE_HSM_PIN should \
                 hold the token's user PIN only",
                crate::MAX_PIN_LEN
            ),
            HsmError::TokenNotFound {
                token,
                module,
                found,
            } => {
                write!(
                    f,
                    "no initialised token labelled {token:?} in the PKCS#11 module {} (",
                    module.display()
                )?;
                if found.is_empty() {
                    f.write_str("it has no initialised token")?;
                } else {
                    f.write_str("tokens found: ")?;
                    for (i, l) in found.iter().enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "{l:?}")?;
                    }
                }
                f.write_str("); check --hsm-token or DARE_HSM_TOKEN")
            }
            HsmError::TokenAmbiguous { token, slots } => write!(
                f,
                "{slots} tokens are labelled {token:?}: dare cannot tell which holds the key; \
                 give the tokens distinct labels"
            ),
            HsmError::PinIncorrect { token } => write!(
                f,
                "the HSM token {token:?} refused the PIN (CKR_PIN_INCORRECT): check the PIN \
                 file (--hsm-pin-file, DARE_HSM_PIN_FILE) or DARE_HSM_PIN; repeated wrong PINs \
                 may lock the token"
            ),
            HsmError::PinLocked { token } => write!(
                f,
                "the user PIN of the HSM token {token:?} is locked after too many wrong \
                 attempts (CKR_PIN_LOCKED): the token's security officer must unlock it"
            ),
            HsmError::KeyNotFound { token, key } => write!(
                f,
                "the HSM token {token:?} holds no secret key labelled {key:?}: check \
                 --hsm-key or DARE_HSM_KEY, or create the key with `dare hsm init-key` \
                 (docs/KEYS.md §5.4)"
            ),
            HsmError::KeyAmbiguous { uri, count } => write!(
                f,
                "{count} secret keys match {uri}: dare cannot tell which protects the store; \
                 give the key a label of its own"
            ),
            HsmError::KeyExtractable { uri } => write!(
                f,
                "refusing the HSM key {uri}: it is extractable (CKA_EXTRACTABLE is not false), \
                 so it can leave the HSM; dare needs a key that never does (create one with \
                 `dare hsm init-key`)"
            ),
            HsmError::KeyNotSensitive { uri } => write!(
                f,
                "refusing the HSM key {uri}: it is not sensitive (CKA_SENSITIVE is not true), \
                 so its value can be read out of the HSM; dare needs a key that never leaves \
                 it (create one with `dare hsm init-key`)"
            ),
            HsmError::KeyWrongType { uri, found } => write!(
                f,
                "refusing the HSM key {uri}: it is {found}; dare needs a 256-bit AES key \
                 (CKK_AES, CKA_VALUE_LEN = 32)"
            ),
            HsmError::KeyUsage { uri, attribute } => write!(
                f,
                "refusing the HSM key {uri}: {attribute} is not true, so the HSM will not \
                 wrap and unwrap the store's keys with it (create one with `dare hsm \
                 init-key`)"
            ),
            HsmError::MechanismUnsupported { token } => write!(
                f,
                "the HSM token {token:?} does not offer CKM_AES_KEY_WRAP_PAD (AES key wrap \
                 with padding, RFC 5649) for wrapping and unwrapping, which dare's HSM root of \
                 trust needs"
            ),
            HsmError::KeyExists { uri } => write!(
                f,
                "the HSM token already holds an object labelled as {uri}: dare creates a new \
                 key only; choose another label"
            ),
            HsmError::Device { token, op, why } => {
                write!(f, "the HSM token {token:?}: {op} failed: {why}")
            }
        }
    }
}

impl std::error::Error for HsmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HsmError::File(e) => Some(e),
            _ => None,
        }
    }
}
