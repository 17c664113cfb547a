//! The rules of the seeds as constants and checks (KMS.md §2): aliases, descriptions,
//! deletion windows, rotation periods.

use crate::KmsError;

/// Suffix of default master keys' aliases (`dare/default`).
pub const DEFAULT_SUFFIX: &str = "/default";
/// Alias length limit, in characters.
pub const MAX_ALIAS: usize = 255;
/// Description length limit, in characters.
pub const MAX_DESCRIPTION: usize = 255;
/// Shortest deletion window, days.
pub const MIN_DELETION_DAYS: i64 = 7;
/// Longest deletion window, days.
pub const MAX_DELETION_DAYS: i64 = 1096;
/// Shortest rotation period, days.
pub const MIN_ROTATION_DAYS: i64 = 30;
/// Longest rotation period, days.
pub const MAX_ROTATION_DAYS: i64 = 365;
/// Rotation period when none is given, days.
pub const DEFAULT_ROTATION_DAYS: u32 = 365;
/// Largest `encrypt` input, bytes.
pub const MAX_ENCRYPT: usize = 4096;
/// Encryptions per version at which the CMK rotates (random 96-bit nonces: NIST SP 800-38D
/// §8.3 bounds one key to 2^32 invocations).
pub const ENCRYPTION_LIMIT: u64 = 1 << 32;
/// Import parameters' validity, ms (24 hours).
pub const IMPORT_VALIDITY_MS: u64 = crate::clock::DAY_MS;
/// Default expiry of imported material after the import, ms (24 hours, as the seed says).
pub const DEFAULT_MATERIAL_VALIDITY_MS: u64 = crate::clock::DAY_MS;

/// Checks an alias for a CMK the user creates or renames: 1–255 characters of ASCII letters,
/// digits, `_`, `-`, `:` and `/`, not ending in `/default`.
pub fn check_alias(alias: &str) -> Result<(), KmsError> {
    check_alias_chars(alias)?;
    if alias.ends_with(DEFAULT_SUFFIX) {
        return Err(KmsError::InvalidAlias(format!(
            "{alias:?} ends in {DEFAULT_SUFFIX}, which only default master keys may"
        )));
    }
    Ok(())
}

/// The character and length rules alone (default master keys pass them too).
pub fn check_alias_chars(alias: &str) -> Result<(), KmsError> {
    let n = alias.chars().count();
    if n == 0 || n > MAX_ALIAS {
        return Err(KmsError::InvalidAlias(format!(
            "an alias is 1 to {MAX_ALIAS} characters; this one has {n}"
        )));
    }
    if let Some(c) = alias
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '/')))
    {
        return Err(KmsError::InvalidAlias(format!(
            "{c:?} is not allowed; an alias holds only letters, digits, '_', '-', ':' and '/'"
        )));
    }
    if looks_like_key_id(alias) {
        return Err(KmsError::InvalidAlias(
            "an alias cannot have the form of a key id (a UUID)".into(),
        ));
    }
    Ok(())
}

/// Checks a description: at most 255 characters.
pub fn check_description(d: &str) -> Result<(), KmsError> {
    let n = d.chars().count();
    if n > MAX_DESCRIPTION {
        return Err(KmsError::DescriptionTooLong(n));
    }
    Ok(())
}

/// Checks a deletion window.
pub fn check_deletion_days(days: i64) -> Result<u64, KmsError> {
    if !(MIN_DELETION_DAYS..=MAX_DELETION_DAYS).contains(&days) {
        return Err(KmsError::DeletionWindow(days));
    }
    Ok(days as u64)
}

/// Checks a rotation period.
pub fn check_rotation_days(days: i64) -> Result<u32, KmsError> {
    if !(MIN_ROTATION_DAYS..=MAX_ROTATION_DAYS).contains(&days) {
        return Err(KmsError::RotationPeriod(days));
    }
    Ok(days as u32)
}

/// Whether `s` is a lower- or upper-case hyphenated UUID (then it names a key id, not an
/// alias).
pub fn looks_like_key_id(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok()
}

/// Checks a registered resource identifier: 1..=1024 bytes.
pub fn check_resource(r: &str) -> Result<(), KmsError> {
    if r.is_empty() || r.len() > 1024 {
        return Err(KmsError::InvalidResource);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases() {
        for ok in ["a", "photos-key", "app:prod/key_1", &"x".repeat(255)] {
            check_alias(ok).unwrap();
        }
        for bad in [
            "",
            &"x".repeat(256),
            "with space",
            "é",
            "a.b",
            "obs/default",
            "9b2f0f3e-6a0e-4c47-8f5a-2d2f5f0b8a11",
        ] {
            assert!(
                matches!(check_alias(bad), Err(KmsError::InvalidAlias(_))),
                "{bad}"
            );
        }
        check_alias_chars("dare/default").unwrap();
    }

    #[test]
    fn windows() {
        assert!(check_deletion_days(6).is_err());
        assert_eq!(check_deletion_days(7).unwrap(), 7);
        assert_eq!(check_deletion_days(1096).unwrap(), 1096);
        assert!(check_deletion_days(1097).is_err());
        assert!(check_rotation_days(29).is_err());
        assert_eq!(check_rotation_days(30).unwrap(), 30);
        assert_eq!(check_rotation_days(365).unwrap(), 365);
        assert!(check_rotation_days(366).is_err());
        assert!(check_description(&"d".repeat(255)).is_ok());
        assert!(matches!(
            check_description(&"d".repeat(256)),
            Err(KmsError::DescriptionTooLong(256))
        ));
    }
}
