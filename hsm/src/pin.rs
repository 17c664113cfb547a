//! The HSM user PIN: from a file checked as a passphrase file is, or from a value the caller
//! read (an environment variable). Never an argument, never printed, zeroed when dropped.

use std::fmt;
use std::path::Path;

use cryptoki::types::RawAuthPin;
use zeroize::Zeroizing;

use crate::HsmError;

/// The longest PIN accepted, in bytes (PKCS#11 tokens take far shorter ones).
pub const MAX_PIN_LEN: u64 = 1024;

/// A token's user PIN. `Debug` shows no byte of it; it is zeroed when dropped.
#[derive(Clone)]
pub struct Pin(Zeroizing<Vec<u8>>);

impl Pin {
    /// A PIN from its bytes (for example an environment variable's value, as the CLI reads
    /// `DARE_HSM_PIN`). An empty PIN or one longer than [`MAX_PIN_LEN`] is refused.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Pin, HsmError> {
        let v = Zeroizing::new(bytes.into());
        if v.is_empty() {
            return Err(HsmError::EmptyPin);
        }
        if v.len() as u64 > MAX_PIN_LEN {
            return Err(HsmError::PinTooLong);
        }
        Ok(Pin(v))
    }

    /// Reads a PIN file: its contents without one trailing newline. The file must be owned by
    /// the user running dare (or root), not readable or writable by group or others, in a
    /// directory they cannot write (a sticky one such as `/tmp` is allowed) — the checks of a
    /// passphrase file (docs/KEYS.md §5.3).
    pub fn read_file(path: &Path) -> Result<Pin, HsmError> {
        let v = dare_keys::files::read_secret_file("HSM PIN file", path, MAX_PIN_LEN)
            .map_err(HsmError::File)?;
        if v.is_empty() {
            return Err(HsmError::EmptyPin);
        }
        Ok(Pin(v))
    }

    /// The PIN as cryptoki takes it (a `SecretBox`, zeroed when dropped).
    pub(crate) fn auth(&self) -> RawAuthPin {
        RawAuthPin::new(Box::new(self.0.to_vec()))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn pin_file_checks_and_redaction() {
        let d = tempfile::tempdir().unwrap();
        fs::set_permissions(d.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let p = d.path().join("pin");
        fs::write(&p, b"98765432\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        let pin = Pin::read_file(&p).unwrap();
        assert_eq!(&pin.0[..], b"98765432");
        let dbg = format!("{pin:?}");
        assert!(!dbg.contains("9876"), "{dbg}");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let e = Pin::read_file(&p).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert!(!e.to_string().contains("9876"), "{e}");
        fs::write(&p, b"\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(Pin::read_file(&p), Err(HsmError::EmptyPin)));
        assert!(matches!(Pin::new(""), Err(HsmError::EmptyPin)));
        assert!(matches!(
            Pin::new(vec![b'1'; 1025]),
            Err(HsmError::PinTooLong)
        ));
    }
}
