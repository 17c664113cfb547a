//! AEAD backends and CPU-feature dispatch.
//!
//! CPU features are detected once, by one detector ([`CpuFeatures`], used by the kernels'
//! proof tokens and by `dare cpu` alike), and the backend is chosen once per process, then
//! once per key: an `AeadKey` holds the backend's own key schedule and
//! every chunk goes straight to it with no further checks. A backend can be forced with
//! [`AeadBackend::from_name`] (the `--backend` option) or the `DARE_AEAD_BACKEND` environment
//! variable, for tests and benchmarks; forcing a backend the CPU lacks is an error, never a
//! silent fallback.
//!
//! The portable backend is RustCrypto `aes-gcm` (two passes: AES-CTR, then GHASH). The
//! hand-written kernels live one ISA per file under `backend/` (`vaes512.rs`, `vaes256.rs`,
//! `aesni.rs` for CPUs without VAES),
//! the only place their `unsafe` may live; each proves its CPU features with a zero-sized
//! token that only its `detect()` creates, and the `#[target_feature]` list sits beside the
//! detection list. The safe API over them (length checks, tag comparison, zeroing) is
//! written once, generic over the kernel (`common::GcmKey`). All backends produce identical bytes (tests and fuzzing check it).

use std::fmt;
use std::sync::OnceLock;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};

use crate::format::TAG_LEN;

#[cfg(target_arch = "x86_64")]
mod aesni;
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
use aesni::AesNiToken;
#[cfg(target_arch = "x86_64")]
use vaes256::Vaes256Token;
#[cfg(target_arch = "x86_64")]
use vaes512::Vaes512Token;

/// The safe API (written once, in `common.rs`) over each kernel.
#[cfg(target_arch = "x86_64")]
type Vaes512Key = common::GcmKey<Vaes512Token>;
#[cfg(target_arch = "x86_64")]
type Vaes256Key = common::GcmKey<Vaes256Token>;
#[cfg(target_arch = "x86_64")]
type AesNiKey = common::GcmKey<AesNiToken>;

/// The kernels' proof tokens, detected once per process and then only copied.
#[cfg(target_arch = "x86_64")]
fn tokens() -> Tokens {
    static TOKENS: OnceLock<Tokens> = OnceLock::new();
    *TOKENS.get_or_init(|| Tokens {
        vaes512: Vaes512Token::detect(),
        vaes256: Vaes256Token::detect(),
        aesni: AesNiToken::detect(),
    })
}

/// One optional proof token per kernel.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Tokens {
    vaes512: Option<Vaes512Token>,
    vaes256: Option<Vaes256Token>,
    aesni: Option<AesNiToken>,
}

/// The CPU features that matter to AES-GCM, as detected on this machine: the one detector
/// behind both the kernels' proof tokens (each kernel's `supported_by`) and `dare cpu`.
///
/// It reads std's `is_x86_feature_detected!`, which is what `#[target_feature]` code is
/// written against (CPUID cached once per process; AVX and AVX-512 only where `XCR0` says
/// the OS saves the ymm / zmm state). `vaes` and `vpclmulqdq` mean the instructions on
/// 256-bit registers: the CPUID bit and the OS's ymm state, nothing of AVX-512 — a CPU with
/// VAES and no AVX-512 (AMD Zen 3, Intel Alder Lake) reports them. (The `cpufeatures` crate,
/// used before, demands the zmm state for these two names, so on such a CPU it reported
/// them absent while the vaes256 kernel ran.) Linux's `/proc/cpuinfo` flags follow the same
/// rules; a test compares the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CpuFeatures {
    /// AES-NI round instructions.
    pub aes: bool,
    /// Carry-less multiply (GHASH).
    pub pclmulqdq: bool,
    /// 256-bit floating-point SIMD, and the OS saves the ymm registers.
    pub avx: bool,
    /// 256-bit integer SIMD.
    pub avx2: bool,
    /// AVX-512 foundation, and the OS saves the zmm and mask registers.
    pub avx512f: bool,
    /// AVX-512 vector-length extensions.
    pub avx512vl: bool,
    /// AVX-512 byte/word instructions.
    pub avx512bw: bool,
    /// Vector AES: AES rounds on 256-bit registers (512-bit ones too where `avx512f`).
    pub vaes: bool,
    /// Vector carry-less multiply on 256-bit registers (512-bit ones too where `avx512f`).
    pub vpclmulqdq: bool,
}

impl CpuFeatures {
    /// Detects the features (std reads CPUID and XCR0 once per process and caches them).
    pub fn detect() -> CpuFeatures {
        #[cfg(target_arch = "x86_64")]
        {
            let avx = std::arch::is_x86_feature_detected!("avx");
            CpuFeatures {
                aes: std::arch::is_x86_feature_detected!("aes"),
                pclmulqdq: std::arch::is_x86_feature_detected!("pclmulqdq"),
                avx,
                avx2: std::arch::is_x86_feature_detected!("avx2"),
                avx512f: std::arch::is_x86_feature_detected!("avx512f"),
                avx512vl: std::arch::is_x86_feature_detected!("avx512vl"),
                avx512bw: std::arch::is_x86_feature_detected!("avx512bw"),
                // std sets these two from the CPUID bits alone; their VEX (ymm) forms also
                // need the OS to save the ymm registers, which `avx` says.
                vaes: avx && std::arch::is_x86_feature_detected!("vaes"),
                vpclmulqdq: avx && std::arch::is_x86_feature_detected!("vpclmulqdq"),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        CpuFeatures::NONE
    }

    /// No feature at all (what a non-x86 build reports, and a starting point for tests).
    pub const NONE: CpuFeatures = CpuFeatures {
        aes: false,
        pclmulqdq: false,
        avx: false,
        avx2: false,
        avx512f: false,
        avx512vl: false,
        avx512bw: false,
        vaes: false,
        vpclmulqdq: false,
    };

    /// `(name, present)` pairs in a fixed order, for reports. The names are those of
    /// `is_x86_feature_detected!` and of Linux's `/proc/cpuinfo` flags.
    pub fn list(&self) -> [(&'static str, bool); 9] {
        [
            ("aes", self.aes),
            ("pclmulqdq", self.pclmulqdq),
            ("avx", self.avx),
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
    /// Stitched AES-NI + PCLMULQDQ kernel over 128-bit registers (AVX encodings), for CPUs
    /// without VAES (Intel Skylake to Cascade Lake, AMD Zen 2).
    AesNi,
    /// RustCrypto `aes-gcm` (uses AES-NI and PCLMULQDQ when present, constant-time soft AES otherwise).
    Portable,
}

impl AeadBackend {
    /// Every backend this build has, fastest first.
    pub const ALL: &'static [AeadBackend] = &[
        AeadBackend::Vaes512,
        AeadBackend::Vaes256,
        AeadBackend::AesNi,
        AeadBackend::Portable,
    ];

    /// The backend's name, as accepted by [`AeadBackend::from_name`].
    pub fn name(self) -> &'static str {
        match self {
            AeadBackend::Vaes512 => "vaes512",
            AeadBackend::Vaes256 => "vaes256",
            AeadBackend::AesNi => "aesni",
            AeadBackend::Portable => "portable",
        }
    }

    /// Parses a backend name.
    pub fn from_name(s: &str) -> Option<AeadBackend> {
        Self::ALL.iter().copied().find(|b| b.name() == s)
    }

    /// Whether a CPU with the features `f` can run the backend: each kernel's own list,
    /// which sits beside its `#[target_feature]` attributes.
    pub fn supported_by(self, f: &CpuFeatures) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            AeadBackend::Vaes512 => Vaes512Token::supported_by(f),
            #[cfg(target_arch = "x86_64")]
            AeadBackend::Vaes256 => Vaes256Token::supported_by(f),
            #[cfg(target_arch = "x86_64")]
            AeadBackend::AesNi => AesNiToken::supported_by(f),
            #[cfg(not(target_arch = "x86_64"))]
            AeadBackend::Vaes512 | AeadBackend::Vaes256 | AeadBackend::AesNi => {
                let _ = f;
                false
            }
            AeadBackend::Portable => true,
        }
    }

    /// The fastest backend a CPU with the features `f` can run.
    pub fn best_for(f: &CpuFeatures) -> AeadBackend {
        Self::ALL
            .iter()
            .copied()
            .find(|b| b.supported_by(f))
            .unwrap_or(AeadBackend::Portable)
    }

    /// Whether this CPU can run the backend (its proof token was issued).
    pub fn is_supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            AeadBackend::Vaes512 => tokens().vaes512.is_some(),
            #[cfg(target_arch = "x86_64")]
            AeadBackend::Vaes256 => tokens().vaes256.is_some(),
            #[cfg(target_arch = "x86_64")]
            AeadBackend::AesNi => tokens().aesni.is_some(),
            #[cfg(not(target_arch = "x86_64"))]
            AeadBackend::Vaes512 | AeadBackend::Vaes256 | AeadBackend::AesNi => false,
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
    #[cfg(target_arch = "x86_64")]
    AesNi(Box<AesNiKey>),
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
                if let Some(t) = tokens().vaes512 {
                    return AeadKey::Vaes512(Box::new(Vaes512Key::new(t, key)));
                }
            }
            AeadBackend::Vaes256 => {
                if let Some(t) = tokens().vaes256 {
                    return AeadKey::Vaes256(Box::new(Vaes256Key::new(t, key)));
                }
            }
            AeadBackend::AesNi => {
                if let Some(t) = tokens().aesni {
                    return AeadKey::AesNi(Box::new(AesNiKey::new(t, key)));
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
            #[cfg(target_arch = "x86_64")]
            AeadKey::AesNi(_) => AeadBackend::AesNi,
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
            #[cfg(target_arch = "x86_64")]
            AeadKey::AesNi(k) => k.seal_in_place(nonce, aad, buf).unwrap_or([0; TAG_LEN]),
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
            #[cfg(target_arch = "x86_64")]
            AeadKey::AesNi(k) => k.seal(nonce, aad, input, output).ok(),
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
            #[cfg(target_arch = "x86_64")]
            AeadKey::AesNi(k) => k.open(nonce, aad, input, output, tag).is_ok(),
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

    /// Verifies the tag over the whole of `buf` (ciphertext), then decrypts in place only
    /// `buf[part.start & !15 .. part.end]` (the part, its start rounded down to a block):
    /// what a range read delivers from a chunk it covers only partly. The kernels check the
    /// tag by GHASH alone and run AES-CTR over that span only; nothing is decrypted before
    /// the tag verified. On success, bytes of `buf` outside the span are unspecified and must
    /// not be delivered. On failure, or if `part` is not inside `buf`, `buf` is zeroed.
    ///
    /// The portable backend opens the whole buffer (the part is then decrypted too).
    pub(crate) fn open_part(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
        part: std::ops::Range<usize>,
    ) -> Result<(), AuthFailed> {
        let ok = match self {
            #[cfg(target_arch = "x86_64")]
            AeadKey::Vaes512(k) => k.open_part(nonce, aad, buf, tag, part).is_ok(),
            #[cfg(target_arch = "x86_64")]
            AeadKey::Vaes256(k) => k.open_part(nonce, aad, buf, tag, part).is_ok(),
            #[cfg(target_arch = "x86_64")]
            AeadKey::AesNi(k) => k.open_part(nonce, aad, buf, tag, part).is_ok(),
            AeadKey::Portable(_) => {
                part.start <= part.end
                    && part.end <= buf.len()
                    && self.open_in_place(nonce, aad, buf, tag).is_ok()
            }
        };
        if ok {
            Ok(())
        } else {
            zeroize::Zeroize::zeroize(buf);
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
            #[cfg(target_arch = "x86_64")]
            AeadKey::AesNi(k) => k.open_in_place(nonce, aad, buf, tag).is_ok(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// AMD Zen 3 (and Intel Alder Lake): VAES and VPCLMULQDQ on ymm, AVX2, no AVX-512.
    const ZEN3: CpuFeatures = CpuFeatures {
        aes: true,
        pclmulqdq: true,
        avx: true,
        avx2: true,
        vaes: true,
        vpclmulqdq: true,
        ..CpuFeatures::NONE
    };

    /// Zen 4 / Sapphire Rapids and later: the same plus AVX-512F/VL/BW.
    const AVX512: CpuFeatures = CpuFeatures {
        avx512f: true,
        avx512vl: true,
        avx512bw: true,
        ..ZEN3
    };

    /// Skylake to Cascade Lake servers, Zen 2: AES-NI, AVX2, no VAES.
    const NO_VAES: CpuFeatures = CpuFeatures {
        vaes: false,
        vpclmulqdq: false,
        ..ZEN3
    };

    #[test]
    fn dispatch_rules_follow_the_features() {
        assert_eq!(AeadBackend::best_for(&ZEN3), AeadBackend::Vaes256);
        assert!(!AeadBackend::Vaes512.supported_by(&ZEN3));
        assert_eq!(AeadBackend::best_for(&AVX512), AeadBackend::Vaes512);
        assert!(AeadBackend::Vaes256.supported_by(&AVX512));
        assert_eq!(AeadBackend::best_for(&NO_VAES), AeadBackend::AesNi);
        assert!(AeadBackend::AesNi.supported_by(&ZEN3));
        assert!(AeadBackend::AesNi.supported_by(&AVX512));
        // AES-NI without AVX (pre-Sandy Bridge, or an OS that does not save ymm): portable.
        let no_avx = CpuFeatures {
            avx: false,
            ..NO_VAES
        };
        assert_eq!(AeadBackend::best_for(&no_avx), AeadBackend::Portable);
        assert_eq!(
            AeadBackend::best_for(&CpuFeatures::NONE),
            AeadBackend::Portable
        );
        // Each feature a kernel lists is needed: dropping any one refuses the kernel.
        for (name, _) in AVX512.list() {
            let mut f = AVX512;
            set(&mut f, name, false);
            assert!(
                !AeadBackend::Vaes512.supported_by(&f),
                "vaes512 without {name}"
            );
            assert_eq!(
                AeadBackend::Vaes256.supported_by(&f),
                name.starts_with("avx512"),
                "vaes256 without {name}"
            );
            assert_eq!(
                AeadBackend::AesNi.supported_by(&f),
                !matches!(name, "aes" | "pclmulqdq" | "avx"),
                "aesni without {name}"
            );
        }
    }

    fn set(f: &mut CpuFeatures, name: &str, v: bool) {
        match name {
            "aes" => f.aes = v,
            "pclmulqdq" => f.pclmulqdq = v,
            "avx" => f.avx = v,
            "avx2" => f.avx2 = v,
            "avx512f" => f.avx512f = v,
            "avx512vl" => f.avx512vl = v,
            "avx512bw" => f.avx512bw = v,
            "vaes" => f.vaes = v,
            "vpclmulqdq" => f.vpclmulqdq = v,
            other => panic!("unknown feature {other}"),
        }
    }

    /// The one detector, the tokens and the backend list agree on this machine.
    #[test]
    fn tokens_come_from_the_one_detector() {
        let f = CpuFeatures::detect();
        for &b in AeadBackend::ALL {
            assert_eq!(b.is_supported(), b.supported_by(&f), "{b}");
        }
        assert_eq!(AeadBackend::best(), AeadBackend::best_for(&f));
        #[cfg(target_arch = "x86_64")]
        {
            assert_eq!(f.aes, std::arch::is_x86_feature_detected!("aes"));
            assert_eq!(f.avx2, std::arch::is_x86_feature_detected!("avx2"));
            assert_eq!(f.avx512f, std::arch::is_x86_feature_detected!("avx512f"));
            assert_eq!(f.vaes, std::arch::is_x86_feature_detected!("vaes") && f.avx);
        }
    }
}
