//! Items shared by every AES-256-GCM kernel: error types, SP 800-38D length
//! limits and the constant-time tag check. Nothing here is `unsafe`; the
//! kernels keep all of their `unsafe` in their own files.

use subtle::ConstantTimeEq;

/// Largest plaintext accepted, in bytes: SP 800-38D §5.2.1.1 caps it at
/// 2^39 - 256 bits. This also guarantees that the 32-bit block counter, which
/// starts at 2 for a 96-bit IV, never wraps (§7.1 step 5 uses `inc32`).
pub(crate) const MAX_PT_LEN: u64 = (1 << 36) - 32;
/// Largest AAD accepted, in bytes: §5.2.1.1 caps it at 2^64 - 1 bits.
pub(crate) const MAX_AAD_LEN: u64 = (1 << 61) - 1;

/// Why sealing was refused. No output has been written when this is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SealError {
    /// `output.len() != input.len()` (out-of-place API only).
    #[cfg_attr(not(any(test, feature = "raw-aead")), allow(dead_code))]
    // out-of-place API: raw-aead benches and kernel tests only
    LengthMismatch,
    /// Plaintext longer than 2^36 - 32 bytes or AAD longer than 2^61 - 1 bytes.
    TooLong,
}

/// The tag did not verify (or the input exceeded the SP 800-38D limits and so
/// cannot be authentic). The buffer that would have held plaintext is zeroed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AuthFailed;

/// Why out-of-place opening failed. The output buffer is zeroed in both cases.
#[cfg_attr(not(any(test, feature = "raw-aead")), allow(dead_code))] // out-of-place API: raw-aead benches and kernel tests only
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpenFailed {
    /// `output.len() != input.len()`.
    LengthMismatch,
    /// See [`AuthFailed`].
    AuthFailed,
}

impl From<AuthFailed> for OpenFailed {
    fn from(_: AuthFailed) -> Self {
        OpenFailed::AuthFailed
    }
}

/// True when the lengths are within SP 800-38D §5.2.1.1 limits.
#[inline]
pub(crate) fn lengths_ok(aad_len: usize, msg_len: usize) -> bool {
    // `usize` -> `u64` is lossless on every x86_64 target.
    (aad_len as u64) <= MAX_AAD_LEN && (msg_len as u64) <= MAX_PT_LEN
}

/// Constant-time tag comparison (§7.2 step 8): the time taken must not reveal
/// how many leading bytes matched, or an attacker could forge byte by byte.
#[inline]
pub(crate) fn tags_equal(a: &[u8; 16], b: &[u8; 16]) -> bool {
    bool::from(a.ct_eq(b))
}
