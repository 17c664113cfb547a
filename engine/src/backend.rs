//! AEAD backends and CPU-feature dispatch.
//!
//! CPU features are detected once (cpufeatures caches CPUID) and the backend is chosen once
//! per process, then once per key: an `AeadKey` holds the backend's own key schedule and
//! every chunk goes straight to it with no further checks. A backend can be forced with
//! [`AeadBackend::from_name`] (the `--backend` option) or the `DARE_AEAD_BACKEND` environment
//! variable, for tests and benchmarks; forcing a backend the CPU lacks is an error, never a
//! silent fallback.
//!
//! The portable backend is RustCrypto `aes-gcm` (two passes: AES-CTR, then GHASH). The
//! hand-written kernels live one ISA per file under `backend/` (`vaes512.rs`, `vaes256.rs`),
//! the only place their `unsafe` may live; each proves its CPU features with a zero-sized
//! token that only its `detect()` creates, and the `#[target_feature]` list sits beside the
//! detection list. All backends produce identical bytes (tests and fuzzing check it).

use std::fmt;
use std::sync::OnceLock;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};

use crate::format::TAG_LEN;

#[cfg(target_arch = "x86_64")]
mod common;
/// Every kernel against RustCrypto and Wycheproof through all four entry points
/// (in place, out of place, seal, open), instantiated once per kernel.
#[cfg(all(test, target_arch = "x86_64"))]
mod kernel_tests;
#[cfg(target_arch = "x86_64")]
mod vaes256;
#[cfg(target_arch = "x86_64")]
mod vaes512;

#[cfg(target_arch = "x86_64")]
use vaes256::{Vaes256Key, Vaes256Token};
#[cfg(target_arch = "x86_64")]
use vaes512::{Vaes512Key, Vaes512Token};

/// The kernels' proof tokens, detected once per process and then only copied.
#[cfg(target_arch = "x86_64")]
fn tokens() -> (Option<Vaes512Token>, Option<Vaes256Token>) {
    static TOKENS: OnceLock<(Option<Vaes512Token>, Option<Vaes256Token>)> = OnceLock::new();
    *TOKENS.get_or_init(|| (Vaes512Token::detect(), Vaes256Token::detect()))
}

cpufeatures::new!(has_aes, "aes");
cpufeatures::new!(has_pclmulqdq, "pclmulqdq");
cpufeatures::new!(has_avx2, "avx2");
cpufeatures::new!(has_avx512f, "avx512f");
cpufeatures::new!(has_avx512vl, "avx512vl");
cpufeatures::new!(has_avx512bw, "avx512bw");
cpufeatures::new!(has_vaes, "vaes");
cpufeatures::new!(has_vpclmulqdq, "vpclmulqdq");

/// The CPU features that matter to AES-GCM, as detected on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AES-NI round instructions.
    pub aes: bool,
    /// Carry-less multiply (GHASH).
    pub pclmulqdq: bool,
    /// 256-bit integer SIMD.
    pub avx2: bool,
    /// AVX-512 foundation.
    pub avx512f: bool,
    /// AVX-512 vector-length extensions.
    pub avx512vl: bool,
    /// AVX-512 byte/word instructions.
    pub avx512bw: bool,
    /// Vector AES (AES rounds on 256/512-bit registers).
    pub vaes: bool,
    /// Vector carry-less multiply.
    pub vpclmulqdq: bool,
}

impl CpuFeatures {
    /// Detects the features (CPUID is read once and cached).
    pub fn detect() -> CpuFeatures {
        CpuFeatures {
            aes: has_aes::get(),
            pclmulqdq: has_pclmulqdq::get(),
            avx2: has_avx2::get(),
            avx512f: has_avx512f::get(),
            avx512vl: has_avx512vl::get(),
            avx512bw: has_avx512bw::get(),
            vaes: has_vaes::get(),
            vpclmulqdq: has_vpclmulqdq::get(),
        }
    }

    /// `(name, present)` pairs in a fixed order, for reports.
    pub fn list(&self) -> [(&'static str, bool); 8] {
        [
            ("aes", self.aes),
            ("pclmulqdq", self.pclmulqdq),
            ("avx2", self.avx2),
            ("avx512f", self.avx512f),
            ("avx512vl", self.avx512vl),
            ("avx512bw", self.avx512bw),
            ("vaes", self.vaes),
            ("vpclmulqdq", self.vpclmulqdq),
        ]
    }
}

/// An AES-256-GCM implementation the engine can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AeadBackend {
    /// Stitched VAES + VPCLMULQDQ kernel over 512-bit registers (AVX-512F/VL/BW).
    Vaes512,
    /// Stitched VAES + VPCLMULQDQ kernel over 256-bit registers (AVX2), for CPUs without AVX-512.
    Vaes256,
    /// RustCrypto `aes-gcm` (uses AES-NI and PCLMULQDQ when present, constant-time soft AES otherwise).
    Portable,
}

impl AeadBackend {
    /// Every backend this build has, fastest first.
    pub const ALL: &'static [AeadBackend] = &[
        AeadBackend::Vaes512,
        AeadBackend::Vaes256,
        AeadBackend::Portable,
    ];

    /// The backend's name, as accepted by [`AeadBackend::from_name`].
    pub fn name(self) -> &'static str {
        match self {
            AeadBackend::Vaes512 => "vaes512",
            AeadBackend::Vaes256 => "vaes256",
            AeadBackend::Portable => "portable",
        }
    }

    /// Parses a backend name.
    pub fn from_name(s: &str) -> Option<AeadBackend> {
        Self::ALL.iter().copied().find(|b| b.name() == s)
    }

    /// Whether this CPU can run the backend.
    pub fn is_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            AeadBackend::Vaes512 => tokens().0.is_some(),
            #[cfg(target_arch = "x86_64")]
            AeadBackend::Vaes256 => tokens().1.is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            AeadBackend::Vaes512 | AeadBackend::Vaes256 => false,
            AeadBackend::Portable => true,
        }
    }

    /// The backends this CPU can run, fastest first.
    pub fn available() -> Vec<AeadBackend> {
        Self::ALL
            .iter()
            .copied()
            .filter(|b| b.is_supported())
            .collect()
    }

    /// The fastest backend this CPU supports.
    pub fn best() -> AeadBackend {
        Self::available()
            .first()
            .copied()
            .unwrap_or(AeadBackend::Portable)
    }

    /// The named backend, if it exists and this CPU supports it.
    pub fn forced(name: &str) -> Result<AeadBackend, BackendError> {
        let b = Self::from_name(name).ok_or_else(|| BackendError::Unknown(name.to_owned()))?;
        if b.is_supported() {
            Ok(b)
        } else {
            Err(BackendError::Unsupported(b.name()))
        }
    }
}

impl fmt::Display for AeadBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend could not be selected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendError {
    /// No backend has that name.
    Unknown(String),
    /// The CPU lacks features the backend needs.
    Unsupported(&'static str),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::Unknown(n) => {
                let names: Vec<_> = AeadBackend::ALL.iter().map(|b| b.name()).collect();
                write!(
                    f,
                    "unknown AEAD backend {n:?} (known: {})",
                    names.join(", ")
                )
            }
            BackendError::Unsupported(n) => {
                write!(f, "AEAD backend {n} is not supported by this CPU")
            }
        }
    }
}
impl std::error::Error for BackendError {}

/// An AES-256-GCM key schedule on one backend. Zeroized on drop by each backend's key type.
pub(crate) enum AeadKey {
    #[cfg(target_arch = "x86_64")]
    Vaes512(Box<Vaes512Key>),
    #[cfg(target_arch = "x86_64")]
    Vaes256(Box<Vaes256Key>),
    Portable(Box<Aes256Gcm>),
}

impl fmt::Debug for AeadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AeadKey({}, <redacted>)", self.backend())
    }
}

/// Tag verification failed; the buffer has been zeroed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthFailed;

impl AeadKey {
    /// The key schedule of `key` on `backend`. Detection happened once ([`tokens`]); a
    /// backend this CPU lacks falls back to the portable one, which produces the
    /// same bytes — callers choose backends through [`AeadBackend::forced`], which refuses.
    pub(crate) fn new(backend: AeadBackend, key: &[u8; 32]) -> AeadKey {
        #[cfg(target_arch = "x86_64")]
        match backend {
            AeadBackend::Vaes512 => {
                if let Some(t) = tokens().0 {
                    return AeadKey::Vaes512(Box::new(Vaes512Key::new(t, key)));
                }
            }
            AeadBackend::Vaes256 => {
                if let Some(t) = tokens().1 {
                    return AeadKey::Vaes256(Box::new(Vaes256Key::new(t, key)));
                }
            }
            AeadBackend::Portable => {}
        }
        AeadKey::Portable(Box::new(Aes256Gcm::new(key.into())))
    }

    pub(crate) fn backend(&self) -> AeadBackend {
        match self {
            #[cfg(target_arch = "x86_64")]
            AeadKey::Vaes512(_) => AeadBackend::Vaes512,
            #[cfg(target_arch = "x86_64")]
            AeadKey::Vaes256(_) => AeadBackend::Vaes256,
            AeadKey::Portable(_) => AeadBackend::Portable,
        }
    }

    /// Encrypts `buf` in place and returns the tag.
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
    ) -> [u8; TAG_LEN] {
        // Every backend fails only past 2^36 bytes per message; chunks are at most 4 MiB.
        // Returning a zero tag makes such a chunk fail to open rather than panic here.
        match self {
            #[cfg(target_arch = "x86_64")]
            AeadKey::Vaes512(k) => k.seal_in_place(nonce, aad, buf).unwrap_or([0; TAG_LEN]),
            #[cfg(target_arch = "x86_64")]
            AeadKey::Vaes256(k) => k.seal_in_place(nonce, aad, buf).unwrap_or([0; TAG_LEN]),
            AeadKey::Portable(k) => match k.encrypt_inout_detached(nonce.into(), aad, buf.into()) {
                Ok(tag) => tag.into(),
                Err(_) => [0; TAG_LEN],
            },
        }
    }

    #[cfg_attr(not(any(test, feature = "raw-aead")), allow(dead_code))] // out-of-place API: raw-aead benches and kernel tests only
    /// Encrypts `input` into `output` (same length) and returns the tag; `None` if the
    /// lengths differ.
    pub(crate) fn seal_to(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Option<[u8; TAG_LEN]> {
        if input.len() != output.len() {
            return None;
        }
        match self {
            #[cfg(target_arch = "x86_64")]
            AeadKey::Vaes512(k) => k.seal(nonce, aad, input, output).ok(),
            #[cfg(target_arch = "x86_64")]
            AeadKey::Vaes256(k) => k.seal(nonce, aad, input, output).ok(),
            AeadKey::Portable(_) => {
                output.copy_from_slice(input);
                Some(self.seal_in_place(nonce, aad, output))
            }
        }
    }

    #[cfg_attr(not(any(test, feature = "raw-aead")), allow(dead_code))] // out-of-place API: raw-aead benches and kernel tests only
    /// Verifies `input` (ciphertext) and decrypts it into `output` (same length). On failure
    /// `output` is zeroed.
    pub(crate) fn open_to(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthFailed> {
        let ok = match self {
            #[cfg(target_arch = "x86_64")]
            AeadKey::Vaes512(k) => k.open(nonce, aad, input, output, tag).is_ok(),
            #[cfg(target_arch = "x86_64")]
            AeadKey::Vaes256(k) => k.open(nonce, aad, input, output, tag).is_ok(),
            AeadKey::Portable(k) => match aes_gcm::aead::inout::InOutBuf::new(input, output) {
                Ok(io) => k
                    .decrypt_inout_detached(nonce.into(), aad, io, tag.into())
                    .is_ok(),
                Err(_) => false,
            },
        };
        if ok {
            Ok(())
        } else {
            zeroize::Zeroize::zeroize(output);
            Err(AuthFailed)
        }
    }

    /// Verifies and decrypts `buf` in place. On failure `buf` is zeroed: no unauthenticated
    /// plaintext is left for anyone to read.
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AuthFailed> {
        let ok = match self {
            #[cfg(target_arch = "x86_64")]
            AeadKey::Vaes512(k) => k.open_in_place(nonce, aad, buf, tag).is_ok(),
            #[cfg(target_arch = "x86_64")]
            AeadKey::Vaes256(k) => k.open_in_place(nonce, aad, buf, tag).is_ok(),
            AeadKey::Portable(k) => k
                .decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into())
                .is_ok(),
        };
        if ok {
            Ok(())
        } else {
            zeroize::Zeroize::zeroize(buf);
            Err(AuthFailed)
        }
    }
}
