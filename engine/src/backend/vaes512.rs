//! AES-256-GCM with VAES + VPCLMULQDQ over 512-bit registers (AVX-512).
//!
//! # Construction (NIST SP 800-38D)
//! * GCM-AE / GCM-AD (§7.1 / §7.2) with a 96-bit IV: `J0 = IV || 0^31 || 1`,
//!   the keystream is `GCTR(inc32(J0), ·)` (§6.5), and the tag is
//!   `GHASH_H(A || 0^v || C || 0^u || [len(A)]_64 || [len(C)]_64) ⊕ E(K, J0)`.
//! * GHASH (§6.4) is `X_i = (X_{i-1} ⊕ B_i) · H` in GF(2^128). Unrolling it
//!   over n blocks gives `X_n = (X_0 ⊕ B_1)·H^n ⊕ B_2·H^(n-1) ⊕ … ⊕ B_n·H`,
//!   so with H^1..H^32 precomputed, the n ≤ 32 products are independent and
//!   only their *sum* needs reducing modulo the field polynomial ("aggregated
//!   reduction"): one reduction per 32 blocks instead of 32, and no serial
//!   multiply-reduce chain to wait on.
//!
//! # Why the design is as it is
//! * Bulk loop: 32 blocks (512 bytes, eight zmm of four blocks) per
//!   iteration, one GHASH reduction per iteration, powers H^1..H^32. On Zen
//!   4/5, VAESENC zmm has 4-cycle latency and 2-per-cycle throughput, so
//!   eight independent zmm per round are needed to keep the AES pipes full;
//!   the older 16-block loop (four zmm) left them half idle whenever the
//!   out-of-order window could not overlap two iterations.
//! * VPCLMULQDQ runs at only one per two cycles (any width) on a pipe of its
//!   own, so GHASH costs are counted in carry-less multiplies: Karatsuba
//!   (three per block-power product instead of four, with the `hi ^ lo`
//!   halves of the powers precomputed in the key) plus one two-multiply
//!   reduction per 32 blocks gives 26 per 32 blocks instead of 36 (or 32 for
//!   aws-lc's Intel-derived loop), under the AES cost.
//! * *Stitching*: each iteration runs the 14 AES rounds of 32 counter blocks
//!   and, interleaved with them, the GHASH of 32 ciphertext blocks; the two
//!   are independent and use different pipes. When sealing, the ciphertext
//!   of an iteration is only known at its end, so GHASH lags one iteration
//!   behind (it reads back the ciphertext just stored); when opening, the
//!   ciphertext is the input and is hashed in the same iteration.
//! * The bulk iteration is inline assembly (`iter32_asm!`): with intrinsics,
//!   LLVM moved all GHASH work ahead of all AES rounds, which measured ~0.90x
//!   of aws-lc; the explicit interleaving measures ~1.15x. Everything else
//!   (set-up, tails, AAD) stays in intrinsics.
//! * Field representation follows the approach of Eric Biggers'
//!   `aes-gcm-avx10` (Linux / BoringSSL): blocks are byte-reflected (one
//!   VPSHUFB) instead of bit-reflected; H is preprocessed by a 1-bit shift
//!   so that the 255-bit carry-less product can be reduced with two
//!   multiplications by the constant `0xc2 << 56` (a Montgomery-style fold
//!   of the low half into the high half). Bulk GHASH uses Karatsuba (see
//!   above); the cold paths (AAD tail, message tail, key powers) keep the
//!   schoolbook product.
//! * Counters are kept byte-reflected so `inc32` is a single VPADDD on the
//!   low dword of each lane (wrapping mod 2^32 as §6.2 requires; with the
//!   §5.2.1.1 length limit it never wraps anyway).
//! * Partial final blocks use AVX-512BW byte-masked loads and stores, which
//!   never touch bytes outside the mask, so no bounce buffer is needed.
//!
//! All `unsafe` of this kernel is in this file.
#![allow(unsafe_code)] // SIMD intrinsics and inline assembly: this file is the only place the kernel's unsafe lives

use core::arch::asm;
use core::arch::x86_64::*;

use zeroize::Zeroize;

use super::CpuFeatures;
use super::common::{Buffers, CtrSpan, Kernel, TagInput};

/// Zero-sized proof that the CPU features this kernel needs were detected.
/// Only [`Vaes512Token::detect`] creates it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vaes512Token(());

impl Vaes512Token {
    /// Whether `f` has every feature in this file's
    /// `#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]`
    /// lists, and `avx`, which `avx2` implies (the code runs VEX-encoded ymm instructions).
    pub(crate) fn supported_by(f: &CpuFeatures) -> bool {
        f.aes
            && f.pclmulqdq
            && f.avx
            && f.avx2
            && f.avx512f
            && f.avx512vl
            && f.avx512bw
            && f.vaes
            && f.vpclmulqdq
    }

    /// Returns a token if and only if this CPU has every feature [`Self::supported_by`]
    /// lists, as the one detector ([`CpuFeatures::detect`]) reports them.
    pub(crate) fn detect() -> Option<Self> {
        Self::supported_by(&CpuFeatures::detect()).then_some(Self(()))
    }
}

/// Expanded AES-256 key and GHASH key powers; [`GcmKey`](super::common::GcmKey) zeroizes them on drop.
#[derive(Zeroize)]
pub(crate) struct Vaes512Schedule {
    /// AES-256 round keys 0..=14 in AES byte order.
    rk: [u128; 15],
    /// Byte-reflected, preprocessed `H^32, H^31, …, H^1`, then four zero
    /// entries: a partial group of `n <= 16` blocks loads powers starting at
    /// index `32 - n`, and its last 512-bit load may run up to three entries
    /// past `H^1`; the zeros keep that load in bounds and the products zero.
    h_pow: [u128; 36],
    /// Karatsuba companions of `h_pow[..32]`: entry `i` holds `hi ^ lo` of
    /// `h_pow[i]` in both 64-bit halves, so the middle partial product of a
    /// block and a power costs one carry-less multiply instead of two.
    h_kar: [u128; 32],
}

/// The safe API ([`GcmKey`](super::common::GcmKey)) over this kernel.
impl Kernel for Vaes512Token {
    const KEY_NAME: &'static str = "Vaes512Key";
    type Schedule = Vaes512Schedule;

    fn schedule(self, key: &[u8; 32]) -> Vaes512Schedule {
        let mut s = Vaes512Schedule {
            rk: [0; 15],
            h_pow: [0; 36],
            h_kar: [0; 32],
        };
        // SAFETY: `self` exists only if `detect()` found every feature that
        // `expand_key` enables; it only writes through the three `&mut` arrays.
        unsafe { expand_key(self, key, &mut s.rk, &mut s.h_pow, &mut s.h_kar) };
        s
    }

    fn seal(self, s: &Vaes512Schedule, nonce: &[u8; 12], io: Buffers<'_>) -> [u8; 16] {
        // SAFETY: `self` proves the CPU features; `io` guarantees `seal_raw`'s
        // memory and length preconditions (see `Buffers`).
        unsafe { seal_raw(self, s, nonce, io.aad(), io.src(), io.dst(), io.len()) }
    }

    fn open(self, s: &Vaes512Schedule, nonce: &[u8; 12], io: Buffers<'_>) -> [u8; 16] {
        // SAFETY: as in `seal`, for `open_raw`'s identical preconditions.
        unsafe { open_raw(self, s, nonce, io.aad(), io.src(), io.dst(), io.len()) }
    }

    fn tag_only(self, s: &Vaes512Schedule, nonce: &[u8; 12], input: TagInput<'_>) -> [u8; 16] {
        let ct = input.ct();
        // SAFETY: `self` proves the CPU features; `ct` is a valid slice of
        // `ct.len()` bytes and `input` guarantees the length limits.
        unsafe { tag_raw(self, s, nonce, input.aad(), ct.as_ptr(), ct.len()) }
    }

    fn ctr_xor(self, s: &Vaes512Schedule, nonce: &[u8; 12], mut span: CtrSpan<'_>) {
        let block = span.block();
        let buf = span.buf();
        // SAFETY: `self` proves the CPU features; `buf` is an exclusive slice
        // of `buf.len()` bytes; `span` guarantees the counters do not wrap.
        unsafe { ctr_raw(self, s, nonce, block, buf.as_mut_ptr(), buf.len()) }
    }
}

// ---------------------------------------------------------------------------
// Register-only helpers. They are safe `#[target_feature]` functions, so the
// compiler only lets them be called from code that already has the features;
// they inline into the `unsafe fn` kernels below.
// ---------------------------------------------------------------------------

/// Byte-reversal of each 128-bit lane: GCM blocks are big-endian, the
/// carry-less multiplier and VPADDD work on little-endian lanes.
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn bswap_mask128() -> __m128i {
    _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
}

#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn bswap_mask() -> __m512i {
    _mm512_broadcast_i32x4(bswap_mask128())
}

/// x^128 + x^7 + x^2 + x + 1 in the reflected form used by the reduction;
/// only the high qword (0xc2 << 56) is multiplied.
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn gfpoly128() -> __m128i {
    _mm_set_epi64x(0xc200_0000_0000_0000_u64 as i64, 1)
}

#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn gfpoly() -> __m512i {
    _mm512_broadcast_i32x4(gfpoly128())
}

/// Two-step Montgomery-style reduction of the 256-bit product given as
/// (LO, MI, HI) partial products: fold LO into MI, then MI into HI.
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn reduce128(lo: __m128i, mi: __m128i, hi: __m128i) -> __m128i {
    let p = gfpoly128();
    let t = _mm_clmulepi64_si128::<0x01>(p, lo);
    let mi = _mm_ternarylogic_epi64::<0x96>(mi, _mm_shuffle_epi32::<0x4e>(lo), t);
    let t = _mm_clmulepi64_si128::<0x01>(p, mi);
    _mm_ternarylogic_epi64::<0x96>(hi, _mm_shuffle_epi32::<0x4e>(mi), t)
}

/// One GF(2^128) multiply `a · b` (b a preprocessed key power).
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn gf_mul128(a: __m128i, b: __m128i) -> __m128i {
    let lo = _mm_clmulepi64_si128::<0x00>(a, b);
    let mi = _mm_xor_si128(
        _mm_clmulepi64_si128::<0x01>(a, b),
        _mm_clmulepi64_si128::<0x10>(a, b),
    );
    let hi = _mm_clmulepi64_si128::<0x11>(a, b);
    reduce128(lo, mi, hi)
}

/// Accumulates the unreduced product of four block/power lane pairs.
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn mul_acc(a: __m512i, h: __m512i, lo: &mut __m512i, mi: &mut __m512i, hi: &mut __m512i) {
    *lo = _mm512_xor_si512(*lo, _mm512_clmulepi64_epi128::<0x00>(a, h));
    *mi = _mm512_ternarylogic_epi64::<0x96>(
        *mi,
        _mm512_clmulepi64_epi128::<0x01>(a, h),
        _mm512_clmulepi64_epi128::<0x10>(a, h),
    );
    *hi = _mm512_xor_si512(*hi, _mm512_clmulepi64_epi128::<0x11>(a, h));
}

/// Reduces all four lanes at once (cheaper than reducing after the
/// horizontal sum would be in latency, same in throughput) and XORs them.
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn reduce_sum(lo: __m512i, mi: __m512i, hi: __m512i) -> __m128i {
    let p = gfpoly();
    let t = _mm512_clmulepi64_epi128::<0x01>(p, lo);
    let mi = _mm512_ternarylogic_epi64::<0x96>(mi, _mm512_shuffle_epi32::<_MM_PERM_BADC>(lo), t);
    let t = _mm512_clmulepi64_epi128::<0x01>(p, mi);
    let r = _mm512_ternarylogic_epi64::<0x96>(hi, _mm512_shuffle_epi32::<_MM_PERM_BADC>(mi), t);
    let a = _mm256_xor_si256(_mm512_castsi512_si256(r), _mm512_extracti64x4_epi64::<1>(r));
    _mm_xor_si128(_mm256_castsi256_si128(a), _mm256_extracti128_si256::<1>(a))
}

/// Unreduced GHASH partial-product sums, four lanes each.
#[derive(Clone, Copy)]
struct Acc {
    lo: __m512i,
    mi: __m512i,
    hi: __m512i,
}

#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn acc_zero() -> Acc {
    let z = _mm512_setzero_si512();
    Acc {
        lo: z,
        mi: z,
        hi: z,
    }
}

/// Karatsuba multiply-accumulate of four block/power lane pairs: `lo += a0·h0`,
/// `hi += a1·h1`, `mi += (a0^a1)·(h0^h1)` (`hk` holds `h0^h1`). Three
/// VPCLMULQDQ instead of four; the correction `mi ^= lo ^ hi` is linear, so
/// it is applied once to the sums in [`kreduce`].
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn kmul_acc(a: __m512i, h: __m512i, hk: __m512i, acc: &mut Acc) {
    let am = _mm512_xor_si512(a, _mm512_shuffle_epi32::<_MM_PERM_BADC>(a));
    acc.lo = _mm512_xor_si512(acc.lo, _mm512_clmulepi64_epi128::<0x00>(a, h));
    acc.hi = _mm512_xor_si512(acc.hi, _mm512_clmulepi64_epi128::<0x11>(a, h));
    acc.mi = _mm512_xor_si512(acc.mi, _mm512_clmulepi64_epi128::<0x00>(am, hk));
}

/// Karatsuba correction, then reduction and horizontal sum of the lanes.
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn kreduce(acc: Acc) -> __m128i {
    let mi = _mm512_ternarylogic_epi64::<0x96>(acc.mi, acc.lo, acc.hi);
    reduce_sum(acc.lo, mi, acc.hi)
}

/// Key powers broadcast for the bulk loops: `hp[j]` holds `H^(32-4j)..H^(29-4j)`,
/// `hk[j]` their Karatsuba companions. `repr(C)`: the assembly main loop
/// addresses `hk` at byte offset 512.
#[repr(C)]
struct Powers {
    hp: [__m512i; 8],
    hk: [__m512i; 8],
}

/// GHASH of 16 byte-reflected blocks `g` into accumulator `x` (powers H^16..H^1).
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn ghash16(x: __m128i, g: &[__m512i; 4], pw: &Powers) -> __m128i {
    let mut acc = acc_zero();
    kmul_acc(
        _mm512_xor_si512(g[0], _mm512_zextsi128_si512(x)),
        pw.hp[4],
        pw.hk[4],
        &mut acc,
    );
    for ((gj, h), hk) in g.iter().zip(&pw.hp[4..]).zip(&pw.hk[4..]).skip(1) {
        kmul_acc(*gj, *h, *hk, &mut acc);
    }
    kreduce(acc)
}

/// GHASH of 32 byte-reflected blocks `g` into accumulator `x` (powers H^32..H^1).
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn ghash32(x: __m128i, g: &[__m512i; 8], pw: &Powers) -> __m128i {
    let mut acc = acc_zero();
    kmul_acc(
        _mm512_xor_si512(g[0], _mm512_zextsi128_si512(x)),
        pw.hp[0],
        pw.hk[0],
        &mut acc,
    );
    for ((gj, h), hk) in g.iter().zip(&pw.hp).zip(&pw.hk).skip(1) {
        kmul_acc(*gj, *h, *hk, &mut acc);
    }
    kreduce(acc)
}

#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn aes_round4(b: &mut [__m512i; 4], k: __m512i) {
    for v in b.iter_mut() {
        *v = _mm512_aesenc_epi128(*v, k);
    }
}

#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn aes_last4(b: &mut [__m512i; 4], k: __m512i) {
    for v in b.iter_mut() {
        *v = _mm512_aesenclast_epi128(*v, k);
    }
}

/// Full AES-256 of one zmm (four blocks).
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn aes1(b: __m512i, rk: &[__m512i; 15]) -> __m512i {
    let mut b = _mm512_xor_si512(b, rk[0]);
    for k in &rk[1..14] {
        b = _mm512_aesenc_epi128(b, *k);
    }
    _mm512_aesenclast_epi128(b, rk[14])
}

/// Counter zmm for blocks `ctr+0..ctr+3` (lane i gets +i).
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn lane_offsets() -> __m512i {
    _mm512_set_epi32(0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0)
}

#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn inc_by(n: i32) -> __m512i {
    _mm512_broadcast_i32x4(_mm_set_epi32(0, 0, 0, n))
}

/// One AES-256 key-expansion step for an even round key (RotWord+SubWord+Rcon).
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn expand_even(prev2: __m128i, assist: __m128i) -> __m128i {
    let t = _mm_shuffle_epi32::<0xff>(assist);
    let mut a = prev2;
    a = _mm_xor_si128(a, _mm_slli_si128::<4>(a));
    a = _mm_xor_si128(a, _mm_slli_si128::<4>(a));
    a = _mm_xor_si128(a, _mm_slli_si128::<4>(a));
    _mm_xor_si128(a, t)
}

/// Odd round keys of AES-256 use SubWord without rotation or Rcon.
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn expand_odd(prev2: __m128i, prev1: __m128i) -> __m128i {
    let t = _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(prev1));
    let mut a = prev2;
    a = _mm_xor_si128(a, _mm_slli_si128::<4>(a));
    a = _mm_xor_si128(a, _mm_slli_si128::<4>(a));
    a = _mm_xor_si128(a, _mm_slli_si128::<4>(a));
    _mm_xor_si128(a, t)
}

// ---------------------------------------------------------------------------
// Kernels touching memory.
// ---------------------------------------------------------------------------

#[inline(always)]
fn to_u128(v: __m128i) -> u128 {
    // SAFETY: `__m128i` and `u128` are both 16 plain bytes; any bit pattern is valid.
    unsafe { core::mem::transmute::<__m128i, u128>(v) }
}

#[inline(always)]
fn from_u128(v: u128) -> __m128i {
    // SAFETY: as in `to_u128`.
    unsafe { core::mem::transmute::<u128, __m128i>(v) }
}

/// AES-256 key expansion (FIPS 197 §5.2) and GHASH key powers.
///
/// # Safety
/// The CPU must support every feature enabled on this function; holding a
/// [`Vaes512Token`] (passed by value) proves it.
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
unsafe fn expand_key(
    _t: Vaes512Token,
    key: &[u8; 32],
    rk: &mut [u128; 15],
    h_pow: &mut [u128; 36],
    h_kar: &mut [u128; 32],
) {
    // SAFETY: both reads are 16 bytes inside the 32-byte `key`.
    let (k0, k1) = unsafe {
        (
            _mm_loadu_si128(key.as_ptr().cast()),
            _mm_loadu_si128(key.as_ptr().add(16).cast()),
        )
    };
    let mut r = [_mm_setzero_si128(); 15];
    r[0] = k0;
    r[1] = k1;
    macro_rules! step {
        ($i:literal, $rcon:literal) => {
            r[$i] = expand_even(r[$i - 2], _mm_aeskeygenassist_si128::<$rcon>(r[$i - 1]));
            r[$i + 1] = expand_odd(r[$i - 1], r[$i]);
        };
    }
    step!(2, 0x01);
    step!(4, 0x02);
    step!(6, 0x04);
    step!(8, 0x08);
    step!(10, 0x10);
    step!(12, 0x20);
    // The last round key has no odd partner.
    r[14] = expand_even(r[12], _mm_aeskeygenassist_si128::<0x40>(r[13]));

    // H = E(K, 0^128) (§6.4 / §7.1 step 1).
    let mut h = r[0];
    for k in &r[1..14] {
        h = _mm_aesenc_si128(h, *k);
    }
    h = _mm_aesenclast_si128(h, r[14]);
    for (dst, v) in rk.iter_mut().zip(r.iter()) {
        *dst = to_u128(*v);
    }
    r.zeroize_regs();

    // Byte-reflect H, then multiply by x^-1 in GCM's bit order, i.e. shift
    // the reflected value left by one and fold the carry back in with the
    // reflected polynomial. This absorbs the extra factor of x that the
    // carry-less product of two reflected operands carries.
    let hr = to_u128(_mm_shuffle_epi8(h, bswap_mask128()));
    let carry = hr >> 127;
    let h1 = (hr << 1) ^ (carry.wrapping_neg() & 0xc200_0000_0000_0000_0000_0000_0000_0001);
    let h1v = from_u128(h1);
    h_pow[31] = h1;
    let mut cur = h1v;
    for i in (0..31).rev() {
        cur = gf_mul128(cur, h1v);
        h_pow[i] = to_u128(cur);
    }
    for e in &mut h_pow[32..] {
        *e = 0;
    }
    for (k, h) in h_kar.iter_mut().zip(h_pow.iter()) {
        let m = (*h ^ (*h >> 64)) as u64 as u128;
        *k = m | (m << 64);
    }
}

/// Overwrites a local register array; round keys should not linger on the stack.
trait ZeroizeRegs {
    fn zeroize_regs(&mut self);
}
impl ZeroizeRegs for [__m128i; 15] {
    fn zeroize_regs(&mut self) {
        for v in self.iter_mut() {
            // SAFETY: `v` is a valid, aligned, exclusive reference; the
            // volatile write keeps the clearing from being optimised out.
            unsafe { core::ptr::write_volatile(v, core::mem::zeroed()) };
        }
    }
}

/// Per-call state shared by seal and open: broadcast round keys, key powers,
/// first counter, E(K, J0) and GHASH of the AAD.
struct Setup {
    rk: [__m512i; 15],
    pw: Powers,
    ctr: __m512i,
    ekj0: __m128i,
    x: __m128i,
}

/// Wipes the key material one call copied to its stack frame, with `zeroize`'s
/// volatile writes: the broadcast round keys and GHASH key powers of its
/// [`Setup`]; E(K, J0), the mask of the tag (with it, a tag gives away the
/// GHASH value, an equation in H); and the final GHASH state (likewise). Called
/// at the end of [`seal_raw`] and [`open_raw`]. The other copies are wiped where
/// they are made (`rk0` in [`setup`], the round keys in [`expand_key`]).
/// Best effort: registers are not cleared (later SIMD code overwrites them;
/// clearing them would take assembly after every call), nor any spill slot the
/// compiler might make for a copy.
fn wipe_call_state(rk: &mut [__m512i; 15], pw: &mut Powers, ekj0: &mut __m128i, x: &mut __m128i) {
    rk.zeroize();
    pw.hp.zeroize();
    pw.hk.zeroize();
    ekj0.zeroize();
    x.zeroize();
}

/// # Safety
/// CPU features as for [`expand_key`] (proved by the token).
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
unsafe fn setup(t: Vaes512Token, key: &Vaes512Schedule, nonce: &[u8; 12], aad: &[u8]) -> Setup {
    let mut rk = [_mm512_setzero_si512(); 15];
    let mut rk0 = [_mm_setzero_si128(); 15];
    for i in 0..15 {
        rk0[i] = from_u128(key.rk[i]);
        rk[i] = _mm512_broadcast_i32x4(rk0[i]);
    }
    let mut pw = Powers {
        hp: [_mm512_setzero_si512(); 8],
        hk: [_mm512_setzero_si512(); 8],
    };
    for i in 0..8 {
        // SAFETY: reads entries 4i..4i+4 <= 32 of the 36- and 32-entry arrays.
        unsafe {
            pw.hp[i] = _mm512_loadu_si512(key.h_pow.as_ptr().add(4 * i).cast());
            pw.hk[i] = _mm512_loadu_si512(key.h_kar.as_ptr().add(4 * i).cast());
        }
    }
    // J0 = IV || 0^31 || 1 (§7.1 step 2).
    let mut j0b = [0u8; 16];
    j0b[..12].copy_from_slice(nonce);
    j0b[15] = 1;
    let j0 = from_u128(u128::from_le_bytes(j0b));
    let mut e = _mm_xor_si128(j0, rk0[0]);
    for k in &rk0[1..14] {
        e = _mm_aesenc_si128(e, *k);
    }
    let ekj0 = _mm_aesenclast_si128(e, rk0[14]);
    rk0.zeroize_regs();
    // First data counter is inc32(J0), kept byte-reflected.
    let le = _mm_add_epi32(
        _mm_shuffle_epi8(j0, bswap_mask128()),
        _mm_set_epi32(0, 0, 0, 1),
    );
    let ctr = _mm512_add_epi32(_mm512_broadcast_i32x4(le), lane_offsets());
    // SAFETY: `aad` is a valid slice; `ghash_bytes` reads only `aad.len()` bytes.
    let x = unsafe {
        ghash_bytes(
            t,
            &key.h_pow,
            &pw,
            _mm_setzero_si128(),
            aad.as_ptr(),
            aad.len(),
        )
    };
    Setup {
        rk,
        pw,
        ctr,
        ekj0,
        x,
    }
}

/// GHASH of `len` bytes at `p` (zero-padded to a block multiple, §6.4 / §7.1
/// step 4) into `x`.
///
/// # Safety
/// CPU features (token); `p` valid for reads of `len` bytes.
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
unsafe fn ghash_bytes(
    _t: Vaes512Token,
    h_pow: &[u128; 36],
    pw: &Powers,
    mut x: __m128i,
    p: *const u8,
    len: usize,
) -> __m128i {
    let bs = bswap_mask();
    let mut i = 0;
    while len - i >= 256 {
        let mut g = [_mm512_setzero_si512(); 4];
        for (j, v) in g.iter_mut().enumerate() {
            // SAFETY: i + 64j + 64 <= i + 256 <= len.
            *v = _mm512_shuffle_epi8(unsafe { _mm512_loadu_si512(p.add(i + 64 * j).cast()) }, bs);
        }
        x = ghash16(x, &g, pw);
        i += 256;
    }
    // SAFETY: caller's guarantee for `p`/`len`; `i <= len`.
    unsafe { ghash_partial(_t, h_pow, x, p.add(i), len - i) }
}

/// GHASH of the final `r < 256` bytes, zero-padding the last block, with a
/// single reduction using powers `H^n..H^1` (n = number of blocks).
///
/// # Safety
/// CPU features (token); `p` valid for reads of `r` bytes; `r < 256`.
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
unsafe fn ghash_partial(
    _t: Vaes512Token,
    h_pow: &[u128; 36],
    x: __m128i,
    p: *const u8,
    r: usize,
) -> __m128i {
    if r == 0 {
        return x;
    }
    let bs = bswap_mask();
    let nblocks = r.div_ceil(16); // 1..=16
    let first = 32 - nblocks;
    let z = _mm512_setzero_si512();
    let (mut lo, mut mi, mut hi) = (z, z, z);
    let mut off = 0;
    let mut v = 0;
    while off < r {
        let n = core::cmp::min(64, r - off);
        let mask: u64 = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        // SAFETY: the byte mask covers only offsets off..off+n <= r, and
        // masked-off bytes are neither read nor able to fault.
        let d = unsafe { _mm512_maskz_loadu_epi8(mask, p.add(off).cast()) };
        let mut g = _mm512_shuffle_epi8(d, bs);
        if v == 0 {
            g = _mm512_xor_si512(g, _mm512_zextsi128_si512(x));
        }
        // 4v <= nblocks - 1 rounded down to a multiple of 4, so
        // idx + 4 = 32 - nblocks + 4v + 4 <= 35 <= 36 (see `h_pow`).
        let idx = first + 4 * v;
        debug_assert!(idx + 4 <= h_pow.len());
        // SAFETY: idx + 4 <= 36 as argued above.
        let h = unsafe { _mm512_loadu_si512(h_pow.as_ptr().add(idx).cast()) };
        mul_acc(g, h, &mut lo, &mut mi, &mut hi);
        off += 64;
        v += 1;
    }
    reduce_sum(lo, mi, hi)
}

/// Applies the keystream to the final `r < 256` bytes with masked loads and
/// stores; returns nothing (GHASH of the tail is done by the caller).
///
/// # Safety
/// CPU features (token); `src` readable and `dst` writable for `r` bytes
/// (they may be equal); `r < 256`.
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
unsafe fn ctr_partial(
    _t: Vaes512Token,
    rk: &[__m512i; 15],
    mut ctr: __m512i,
    src: *const u8,
    dst: *mut u8,
    r: usize,
) {
    let bs = bswap_mask();
    let inc4 = inc_by(4);
    let mut off = 0;
    while off < r {
        let n = core::cmp::min(64, r - off);
        let mask: u64 = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
        let ks = aes1(_mm512_shuffle_epi8(ctr, bs), rk);
        ctr = _mm512_add_epi32(ctr, inc4);
        // SAFETY: masked to offsets off..off+n <= r of src/dst; the load
        // precedes the store, so src == dst is fine.
        unsafe {
            let d = _mm512_maskz_loadu_epi8(mask, src.add(off).cast());
            _mm512_mask_storeu_epi8(dst.add(off).cast(), mask, _mm512_xor_si512(d, ks));
        }
        off += 64;
    }
}

/// Final GHASH block (lengths, §7.1 step 5) and tag = MSB_128(GCTR(J0, S)).
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn finish(h_pow: &[u128; 36], x: __m128i, ekj0: __m128i, aad_len: usize, len: usize) -> [u8; 16] {
    let lens = _mm_set_epi64x((aad_len as u64 * 8) as i64, (len as u64 * 8) as i64);
    let x = gf_mul128(_mm_xor_si128(x, lens), from_u128(h_pow[31]));
    let s = _mm_xor_si128(_mm_shuffle_epi8(x, bswap_mask128()), ekj0);
    to_u128(s).to_le_bytes()
}

/// Eight counter zmm (32 blocks) starting at `*ctr`, byte-swapped into AES
/// order and whitened with round key 0; advances `*ctr` by 32.
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn counters8(ctr: &mut __m512i, rk0: __m512i) -> [__m512i; 8] {
    let bs = bswap_mask();
    let inc4 = inc_by(4);
    let mut b = [_mm512_setzero_si512(); 8];
    for v in b.iter_mut() {
        *v = _mm512_xor_si512(_mm512_shuffle_epi8(*ctr, bs), rk0);
        *ctr = _mm512_add_epi32(*ctr, inc4);
    }
    b
}

/// Four counter zmm (16 blocks), as [`counters8`].
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
#[inline]
fn counters4(ctr: &mut __m512i, rk0: __m512i) -> [__m512i; 4] {
    let bs = bswap_mask();
    let inc4 = inc_by(4);
    let mut b = [_mm512_setzero_si512(); 4];
    for v in b.iter_mut() {
        *v = _mm512_xor_si512(_mm512_shuffle_epi8(*ctr, bs), rk0);
        *ctr = _mm512_add_epi32(*ctr, inc4);
    }
    b
}

/// One 32-block (512-byte) iteration of the bulk loop, shared by seal and
/// open: CTR-encrypts `$src[0..512]` into `$dst[0..512]` with counters
/// `$ctr..$ctr+31` (advancing `$ctr` by 32), and folds the GHASH of the 32
/// ciphertext blocks at `$gsrc[0..512]` into `$x` with a single reduction
/// (Karatsuba products against `H^32..H^1`).
///
/// # Why inline assembly
/// On Zen 4/5 the loop is limited by keeping enough independent AES work in
/// flight (VAESENC: 4-cycle latency, 2 zmm per cycle, so eight zmm = 32
/// blocks per round) while VPCLMULQDQ (one per two cycles, on a different
/// pipe) and the shuffles drain alongside. With intrinsics, LLVM's scheduler
/// hoisted all GHASH work in front of all AES rounds (and, as a function,
/// declined to inline the body and spilled every operand), leaving the
/// out-of-order core a window too small to overlap them: ~0.90x of aws-lc.
/// Written out explicitly, one GHASH vector is issued after each of AES
/// rounds 1..8 and the reduction after rounds 9..11, so both pipes stay fed.
/// Round keys and key powers stay in memory (L1-resident, one load per round
/// feeding eight VAESENCs; VPCLMULQDQ takes the powers as memory operands),
/// which leaves enough registers that nothing is spilled.
///
/// Loads of `$gsrc` all happen before any store to `$dst`, and each store to
/// `$dst + 64j` follows the load of `$src + 64j`, so `$src == $dst` and
/// `$gsrc == $src` are both fine.
///
/// Must be expanded inside a function with the kernel's target features and
/// an `unsafe` block whose SAFETY comment covers: `$rk` points to 15
/// 64-byte-aligned broadcast round keys, `$pw` to a [`Powers`], `$src`,
/// `$gsrc` are readable and `$dst` writable for 512 bytes.
macro_rules! iter32_asm {
    ($rk:expr, $pw:expr, $ctr:ident, $x:ident, $bs:ident, $inc4:ident, $poly:ident, $lane0:ident, $src:expr, $dst:expr, $gsrc:expr) => {
        // Typed scratch outputs: `out(zmm_reg) _` makes rustc 1.95 print
        // zmm16..31 scratch operands with a bogus name, so give them a type.
        let mut _scratch: [__m512i; 16] = [_mm512_setzero_si512(); 16];
        asm!(
            "vpshufb {b0:z}, {ctr:z}, {bs:z}",
            "vpaddd {ctr:z}, {ctr:z}, {inc4:z}",
            "vpshufb {b1:z}, {ctr:z}, {bs:z}",
            "vpaddd {ctr:z}, {ctr:z}, {inc4:z}",
            "vpshufb {b2:z}, {ctr:z}, {bs:z}",
            "vpaddd {ctr:z}, {ctr:z}, {inc4:z}",
            "vpshufb {b3:z}, {ctr:z}, {bs:z}",
            "vpaddd {ctr:z}, {ctr:z}, {inc4:z}",
            "vpshufb {b4:z}, {ctr:z}, {bs:z}",
            "vpaddd {ctr:z}, {ctr:z}, {inc4:z}",
            "vpshufb {b5:z}, {ctr:z}, {bs:z}",
            "vpaddd {ctr:z}, {ctr:z}, {inc4:z}",
            "vpshufb {b6:z}, {ctr:z}, {bs:z}",
            "vpaddd {ctr:z}, {ctr:z}, {inc4:z}",
            "vpshufb {b7:z}, {ctr:z}, {bs:z}",
            "vpaddd {ctr:z}, {ctr:z}, {inc4:z}",
            "vmovdqa64 {k:z}, zmmword ptr [{rk}]",
            "vpxorq {b0:z}, {b0:z}, {k:z}",
            "vpxorq {b1:z}, {b1:z}, {k:z}",
            "vpxorq {b2:z}, {b2:z}, {k:z}",
            "vpxorq {b3:z}, {b3:z}, {k:z}",
            "vpxorq {b4:z}, {b4:z}, {k:z}",
            "vpxorq {b5:z}, {b5:z}, {k:z}",
            "vpxorq {b6:z}, {b6:z}, {k:z}",
            "vpxorq {b7:z}, {b7:z}, {k:z}",
            "vmovdqa64 {k:z}, zmmword ptr [{rk} + 64]",
            "vaesenc {b0:z}, {b0:z}, {k:z}",
            "vaesenc {b1:z}, {b1:z}, {k:z}",
            "vaesenc {b2:z}, {b2:z}, {k:z}",
            "vaesenc {b3:z}, {b3:z}, {k:z}",
            "vaesenc {b4:z}, {b4:z}, {k:z}",
            "vaesenc {b5:z}, {b5:z}, {k:z}",
            "vaesenc {b6:z}, {b6:z}, {k:z}",
            "vaesenc {b7:z}, {b7:z}, {k:z}",
            "vmovdqu64 {g:z}, zmmword ptr [{gsrc} + 0]",
            "vpshufb {g:z}, {g:z}, {bs:z}",
            "vpternlogq {g:z}, {x:z}, {lane0:z}, 0x78",
            "vpshufd {t3:z}, {g:z}, 0x4e",
            "vpxorq {t3:z}, {t3:z}, {g:z}",
            "vpclmulqdq {lo:z}, {g:z}, zmmword ptr [{pw} + 0], 0x00",
            "vpclmulqdq {hi:z}, {g:z}, zmmword ptr [{pw} + 0], 0x11",
            "vpclmulqdq {mi:z}, {t3:z}, zmmword ptr [{pw} + 512], 0x00",
            "vmovdqa64 {k:z}, zmmword ptr [{rk} + 128]",
            "vaesenc {b0:z}, {b0:z}, {k:z}",
            "vaesenc {b1:z}, {b1:z}, {k:z}",
            "vaesenc {b2:z}, {b2:z}, {k:z}",
            "vaesenc {b3:z}, {b3:z}, {k:z}",
            "vaesenc {b4:z}, {b4:z}, {k:z}",
            "vaesenc {b5:z}, {b5:z}, {k:z}",
            "vaesenc {b6:z}, {b6:z}, {k:z}",
            "vaesenc {b7:z}, {b7:z}, {k:z}",
            "vmovdqu64 {g:z}, zmmword ptr [{gsrc} + 64]",
            "vpshufb {g:z}, {g:z}, {bs:z}",
            "vpshufd {t3:z}, {g:z}, 0x4e",
            "vpxorq {t3:z}, {t3:z}, {g:z}",
            "vpclmulqdq {t1:z}, {g:z}, zmmword ptr [{pw} + 64], 0x00",
            "vpclmulqdq {t2:z}, {g:z}, zmmword ptr [{pw} + 64], 0x11",
            "vpclmulqdq {t3:z}, {t3:z}, zmmword ptr [{pw} + 576], 0x00",
            "vpxorq {lo:z}, {lo:z}, {t1:z}",
            "vpxorq {hi:z}, {hi:z}, {t2:z}",
            "vpxorq {mi:z}, {mi:z}, {t3:z}",
            "vmovdqa64 {k:z}, zmmword ptr [{rk} + 192]",
            "vaesenc {b0:z}, {b0:z}, {k:z}",
            "vaesenc {b1:z}, {b1:z}, {k:z}",
            "vaesenc {b2:z}, {b2:z}, {k:z}",
            "vaesenc {b3:z}, {b3:z}, {k:z}",
            "vaesenc {b4:z}, {b4:z}, {k:z}",
            "vaesenc {b5:z}, {b5:z}, {k:z}",
            "vaesenc {b6:z}, {b6:z}, {k:z}",
            "vaesenc {b7:z}, {b7:z}, {k:z}",
            "vmovdqu64 {g:z}, zmmword ptr [{gsrc} + 128]",
            "vpshufb {g:z}, {g:z}, {bs:z}",
            "vpshufd {t3:z}, {g:z}, 0x4e",
            "vpxorq {t3:z}, {t3:z}, {g:z}",
            "vpclmulqdq {t1:z}, {g:z}, zmmword ptr [{pw} + 128], 0x00",
            "vpclmulqdq {t2:z}, {g:z}, zmmword ptr [{pw} + 128], 0x11",
            "vpclmulqdq {t3:z}, {t3:z}, zmmword ptr [{pw} + 640], 0x00",
            "vpxorq {lo:z}, {lo:z}, {t1:z}",
            "vpxorq {hi:z}, {hi:z}, {t2:z}",
            "vpxorq {mi:z}, {mi:z}, {t3:z}",
            "vmovdqa64 {k:z}, zmmword ptr [{rk} + 256]",
            "vaesenc {b0:z}, {b0:z}, {k:z}",
            "vaesenc {b1:z}, {b1:z}, {k:z}",
            "vaesenc {b2:z}, {b2:z}, {k:z}",
            "vaesenc {b3:z}, {b3:z}, {k:z}",
            "vaesenc {b4:z}, {b4:z}, {k:z}",
            "vaesenc {b5:z}, {b5:z}, {k:z}",
            "vaesenc {b6:z}, {b6:z}, {k:z}",
            "vaesenc {b7:z}, {b7:z}, {k:z}",
            "vmovdqu64 {g:z}, zmmword ptr [{gsrc} + 192]",
            "vpshufb {g:z}, {g:z}, {bs:z}",
            "vpshufd {t3:z}, {g:z}, 0x4e",
            "vpxorq {t3:z}, {t3:z}, {g:z}",
            "vpclmulqdq {t1:z}, {g:z}, zmmword ptr [{pw} + 192], 0x00",
            "vpclmulqdq {t2:z}, {g:z}, zmmword ptr [{pw} + 192], 0x11",
            "vpclmulqdq {t3:z}, {t3:z}, zmmword ptr [{pw} + 704], 0x00",
            "vpxorq {lo:z}, {lo:z}, {t1:z}",
            "vpxorq {hi:z}, {hi:z}, {t2:z}",
            "vpxorq {mi:z}, {mi:z}, {t3:z}",
            "vmovdqa64 {k:z}, zmmword ptr [{rk} + 320]",
            "vaesenc {b0:z}, {b0:z}, {k:z}",
            "vaesenc {b1:z}, {b1:z}, {k:z}",
            "vaesenc {b2:z}, {b2:z}, {k:z}",
            "vaesenc {b3:z}, {b3:z}, {k:z}",
            "vaesenc {b4:z}, {b4:z}, {k:z}",
            "vaesenc {b5:z}, {b5:z}, {k:z}",
            "vaesenc {b6:z}, {b6:z}, {k:z}",
            "vaesenc {b7:z}, {b7:z}, {k:z}",
            "vmovdqu64 {g:z}, zmmword ptr [{gsrc} + 256]",
            "vpshufb {g:z}, {g:z}, {bs:z}",
            "vpshufd {t3:z}, {g:z}, 0x4e",
            "vpxorq {t3:z}, {t3:z}, {g:z}",
            "vpclmulqdq {t1:z}, {g:z}, zmmword ptr [{pw} + 256], 0x00",
            "vpclmulqdq {t2:z}, {g:z}, zmmword ptr [{pw} + 256], 0x11",
            "vpclmulqdq {t3:z}, {t3:z}, zmmword ptr [{pw} + 768], 0x00",
            "vpxorq {lo:z}, {lo:z}, {t1:z}",
            "vpxorq {hi:z}, {hi:z}, {t2:z}",
            "vpxorq {mi:z}, {mi:z}, {t3:z}",
            "vmovdqa64 {k:z}, zmmword ptr [{rk} + 384]",
            "vaesenc {b0:z}, {b0:z}, {k:z}",
            "vaesenc {b1:z}, {b1:z}, {k:z}",
            "vaesenc {b2:z}, {b2:z}, {k:z}",
            "vaesenc {b3:z}, {b3:z}, {k:z}",
            "vaesenc {b4:z}, {b4:z}, {k:z}",
            "vaesenc {b5:z}, {b5:z}, {k:z}",
            "vaesenc {b6:z}, {b6:z}, {k:z}",
            "vaesenc {b7:z}, {b7:z}, {k:z}",
            "vmovdqu64 {g:z}, zmmword ptr [{gsrc} + 320]",
            "vpshufb {g:z}, {g:z}, {bs:z}",
            "vpshufd {t3:z}, {g:z}, 0x4e",
            "vpxorq {t3:z}, {t3:z}, {g:z}",
            "vpclmulqdq {t1:z}, {g:z}, zmmword ptr [{pw} + 320], 0x00",
            "vpclmulqdq {t2:z}, {g:z}, zmmword ptr [{pw} + 320], 0x11",
            "vpclmulqdq {t3:z}, {t3:z}, zmmword ptr [{pw} + 832], 0x00",
            "vpxorq {lo:z}, {lo:z}, {t1:z}",
            "vpxorq {hi:z}, {hi:z}, {t2:z}",
            "vpxorq {mi:z}, {mi:z}, {t3:z}",
            "vmovdqa64 {k:z}, zmmword ptr [{rk} + 448]",
            "vaesenc {b0:z}, {b0:z}, {k:z}",
            "vaesenc {b1:z}, {b1:z}, {k:z}",
            "vaesenc {b2:z}, {b2:z}, {k:z}",
            "vaesenc {b3:z}, {b3:z}, {k:z}",
            "vaesenc {b4:z}, {b4:z}, {k:z}",
            "vaesenc {b5:z}, {b5:z}, {k:z}",
            "vaesenc {b6:z}, {b6:z}, {k:z}",
            "vaesenc {b7:z}, {b7:z}, {k:z}",
            "vmovdqu64 {g:z}, zmmword ptr [{gsrc} + 384]",
            "vpshufb {g:z}, {g:z}, {bs:z}",
            "vpshufd {t3:z}, {g:z}, 0x4e",
            "vpxorq {t3:z}, {t3:z}, {g:z}",
            "vpclmulqdq {t1:z}, {g:z}, zmmword ptr [{pw} + 384], 0x00",
            "vpclmulqdq {t2:z}, {g:z}, zmmword ptr [{pw} + 384], 0x11",
            "vpclmulqdq {t3:z}, {t3:z}, zmmword ptr [{pw} + 896], 0x00",
            "vpxorq {lo:z}, {lo:z}, {t1:z}",
            "vpxorq {hi:z}, {hi:z}, {t2:z}",
            "vpxorq {mi:z}, {mi:z}, {t3:z}",
            "vmovdqa64 {k:z}, zmmword ptr [{rk} + 512]",
            "vaesenc {b0:z}, {b0:z}, {k:z}",
            "vaesenc {b1:z}, {b1:z}, {k:z}",
            "vaesenc {b2:z}, {b2:z}, {k:z}",
            "vaesenc {b3:z}, {b3:z}, {k:z}",
            "vaesenc {b4:z}, {b4:z}, {k:z}",
            "vaesenc {b5:z}, {b5:z}, {k:z}",
            "vaesenc {b6:z}, {b6:z}, {k:z}",
            "vaesenc {b7:z}, {b7:z}, {k:z}",
            "vmovdqu64 {g:z}, zmmword ptr [{gsrc} + 448]",
            "vpshufb {g:z}, {g:z}, {bs:z}",
            "vpshufd {t3:z}, {g:z}, 0x4e",
            "vpxorq {t3:z}, {t3:z}, {g:z}",
            "vpclmulqdq {t1:z}, {g:z}, zmmword ptr [{pw} + 448], 0x00",
            "vpclmulqdq {t2:z}, {g:z}, zmmword ptr [{pw} + 448], 0x11",
            "vpclmulqdq {t3:z}, {t3:z}, zmmword ptr [{pw} + 960], 0x00",
            "vpxorq {lo:z}, {lo:z}, {t1:z}",
            "vpxorq {hi:z}, {hi:z}, {t2:z}",
            "vpxorq {mi:z}, {mi:z}, {t3:z}",
            "vmovdqa64 {k:z}, zmmword ptr [{rk} + 576]",
            "vaesenc {b0:z}, {b0:z}, {k:z}",
            "vaesenc {b1:z}, {b1:z}, {k:z}",
            "vaesenc {b2:z}, {b2:z}, {k:z}",
            "vaesenc {b3:z}, {b3:z}, {k:z}",
            "vaesenc {b4:z}, {b4:z}, {k:z}",
            "vaesenc {b5:z}, {b5:z}, {k:z}",
            "vaesenc {b6:z}, {b6:z}, {k:z}",
            "vaesenc {b7:z}, {b7:z}, {k:z}",
            "vpternlogq {mi:z}, {lo:z}, {hi:z}, 0x96",
            "vpclmulqdq {t1:z}, {poly:z}, {lo:z}, 0x01",
            "vpshufd {t2:z}, {lo:z}, 0x4e",
            "vpternlogq {mi:z}, {t2:z}, {t1:z}, 0x96",
            "vmovdqa64 {k:z}, zmmword ptr [{rk} + 640]",
            "vaesenc {b0:z}, {b0:z}, {k:z}",
            "vaesenc {b1:z}, {b1:z}, {k:z}",
            "vaesenc {b2:z}, {b2:z}, {k:z}",
            "vaesenc {b3:z}, {b3:z}, {k:z}",
            "vaesenc {b4:z}, {b4:z}, {k:z}",
            "vaesenc {b5:z}, {b5:z}, {k:z}",
            "vaesenc {b6:z}, {b6:z}, {k:z}",
            "vaesenc {b7:z}, {b7:z}, {k:z}",
            "vpclmulqdq {t1:z}, {poly:z}, {mi:z}, 0x01",
            "vpshufd {t2:z}, {mi:z}, 0x4e",
            "vpternlogq {hi:z}, {t2:z}, {t1:z}, 0x96",
            "vmovdqa64 {k:z}, zmmword ptr [{rk} + 704]",
            "vaesenc {b0:z}, {b0:z}, {k:z}",
            "vaesenc {b1:z}, {b1:z}, {k:z}",
            "vaesenc {b2:z}, {b2:z}, {k:z}",
            "vaesenc {b3:z}, {b3:z}, {k:z}",
            "vaesenc {b4:z}, {b4:z}, {k:z}",
            "vaesenc {b5:z}, {b5:z}, {k:z}",
            "vaesenc {b6:z}, {b6:z}, {k:z}",
            "vaesenc {b7:z}, {b7:z}, {k:z}",
            "vshufi64x2 {t1:z}, {hi:z}, {hi:z}, 0x4e",
            "vpxorq {hi:z}, {hi:z}, {t1:z}",
            "vshufi64x2 {t1:z}, {hi:z}, {hi:z}, 0xb1",
            "vpxorq {x:z}, {hi:z}, {t1:z}",
            "vmovdqa64 {k:z}, zmmword ptr [{rk} + 768]",
            "vaesenc {b0:z}, {b0:z}, {k:z}",
            "vaesenc {b1:z}, {b1:z}, {k:z}",
            "vaesenc {b2:z}, {b2:z}, {k:z}",
            "vaesenc {b3:z}, {b3:z}, {k:z}",
            "vaesenc {b4:z}, {b4:z}, {k:z}",
            "vaesenc {b5:z}, {b5:z}, {k:z}",
            "vaesenc {b6:z}, {b6:z}, {k:z}",
            "vaesenc {b7:z}, {b7:z}, {k:z}",
            "vmovdqa64 {k:z}, zmmword ptr [{rk} + 832]",
            "vaesenc {b0:z}, {b0:z}, {k:z}",
            "vaesenc {b1:z}, {b1:z}, {k:z}",
            "vaesenc {b2:z}, {b2:z}, {k:z}",
            "vaesenc {b3:z}, {b3:z}, {k:z}",
            "vaesenc {b4:z}, {b4:z}, {k:z}",
            "vaesenc {b5:z}, {b5:z}, {k:z}",
            "vaesenc {b6:z}, {b6:z}, {k:z}",
            "vaesenc {b7:z}, {b7:z}, {k:z}",
            "vmovdqa64 {k:z}, zmmword ptr [{rk} + 896]",
            "vaesenclast {b0:z}, {b0:z}, {k:z}",
            "vaesenclast {b1:z}, {b1:z}, {k:z}",
            "vaesenclast {b2:z}, {b2:z}, {k:z}",
            "vaesenclast {b3:z}, {b3:z}, {k:z}",
            "vaesenclast {b4:z}, {b4:z}, {k:z}",
            "vaesenclast {b5:z}, {b5:z}, {k:z}",
            "vaesenclast {b6:z}, {b6:z}, {k:z}",
            "vaesenclast {b7:z}, {b7:z}, {k:z}",
            "vpxorq {b0:z}, {b0:z}, zmmword ptr [{src} + 0]",
            "vmovdqu64 zmmword ptr [{dst} + 0], {b0:z}",
            "vpxorq {b1:z}, {b1:z}, zmmword ptr [{src} + 64]",
            "vmovdqu64 zmmword ptr [{dst} + 64], {b1:z}",
            "vpxorq {b2:z}, {b2:z}, zmmword ptr [{src} + 128]",
            "vmovdqu64 zmmword ptr [{dst} + 128], {b2:z}",
            "vpxorq {b3:z}, {b3:z}, zmmword ptr [{src} + 192]",
            "vmovdqu64 zmmword ptr [{dst} + 192], {b3:z}",
            "vpxorq {b4:z}, {b4:z}, zmmword ptr [{src} + 256]",
            "vmovdqu64 zmmword ptr [{dst} + 256], {b4:z}",
            "vpxorq {b5:z}, {b5:z}, zmmword ptr [{src} + 320]",
            "vmovdqu64 zmmword ptr [{dst} + 320], {b5:z}",
            "vpxorq {b6:z}, {b6:z}, zmmword ptr [{src} + 384]",
            "vmovdqu64 zmmword ptr [{dst} + 384], {b6:z}",
            "vpxorq {b7:z}, {b7:z}, zmmword ptr [{src} + 448]",
            "vmovdqu64 zmmword ptr [{dst} + 448], {b7:z}",

            rk = in(reg) $rk,
            pw = in(reg) $pw,
            src = in(reg) $src,
            dst = in(reg) $dst,
            gsrc = in(reg) $gsrc,
            ctr = inout(zmm_reg) $ctr,
            x = inout(zmm_reg) $x,
            bs = in(zmm_reg) $bs,
            inc4 = in(zmm_reg) $inc4,
            poly = in(zmm_reg) $poly,
            lane0 = in(zmm_reg) $lane0,
            b0 = out(zmm_reg) _scratch[0],
            b1 = out(zmm_reg) _scratch[1],
            b2 = out(zmm_reg) _scratch[2],
            b3 = out(zmm_reg) _scratch[3],
            b4 = out(zmm_reg) _scratch[4],
            b5 = out(zmm_reg) _scratch[5],
            b6 = out(zmm_reg) _scratch[6],
            b7 = out(zmm_reg) _scratch[7],
            k = out(zmm_reg) _scratch[8],
            g = out(zmm_reg) _scratch[9],
            t1 = out(zmm_reg) _scratch[10],
            t2 = out(zmm_reg) _scratch[11],
            t3 = out(zmm_reg) _scratch[12],
            lo = out(zmm_reg) _scratch[13],
            mi = out(zmm_reg) _scratch[14],
            hi = out(zmm_reg) _scratch[15],
            options(nostack, preserves_flags),
        )
    };
}

/// GCM-AE (§7.1): encrypts `len` bytes from `src` to `dst`, returns the tag.
///
/// # Safety
/// CPU features (token); `src` readable and `dst` writable for `len` bytes;
/// they are either identical or non-overlapping; `len` and `aad.len()`
/// within SP 800-38D limits (so the 32-bit counter cannot wrap).
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
unsafe fn seal_raw(
    t: Vaes512Token,
    key: &Vaes512Schedule,
    nonce: &[u8; 12],
    aad: &[u8],
    src: *const u8,
    dst: *mut u8,
    len: usize,
) -> [u8; 16] {
    // SAFETY: features proved by `t`; `aad` is a valid slice.
    let Setup {
        mut rk,
        mut pw,
        mut ctr,
        mut ekj0,
        mut x,
    } = unsafe { setup(t, key, nonce, aad) };
    let bs = bswap_mask();
    let mut i = 0;
    if len >= 512 {
        // GHASH lags AES by one 32-block iteration: the ciphertext it
        // multiplies was finished an iteration earlier, so the multiplies are
        // ready at once and overlap the AES rounds.
        let mut b = counters8(&mut ctr, rk[0]);
        for v in b.iter_mut() {
            for k in &rk[1..14] {
                *v = _mm512_aesenc_epi128(*v, *k);
            }
            *v = _mm512_aesenclast_epi128(*v, rk[14]);
        }
        for (j, v) in b.iter().enumerate() {
            // SAFETY: 64j + 64 <= 512 <= len; load before store.
            unsafe {
                let c = _mm512_xor_si512(_mm512_loadu_si512(src.add(64 * j).cast()), *v);
                _mm512_storeu_si512(dst.add(64 * j).cast(), c);
            }
        }
        i = 512;
        // The reduced GHASH value leaves the assembly broadcast to all four
        // lanes; `lane0` selects the one that is XORed into the first block.
        let (inc4, poly, lane0) = (
            inc_by(4),
            gfpoly(),
            _mm512_zextsi128_si512(_mm_set1_epi8(-1)),
        );
        let mut xz = _mm512_zextsi128_si512(x);
        while len - i >= 512 {
            // SAFETY: `rk` is 15 aligned round keys and `pw` a `Powers`;
            // src/dst offsets i..i+512 <= len are in bounds, and the GHASH
            // input dst[i-512..i] (written by the previous iteration) too.
            unsafe {
                iter32_asm!(
                    rk.as_ptr(),
                    &pw,
                    ctr,
                    xz,
                    bs,
                    inc4,
                    poly,
                    lane0,
                    src.add(i),
                    dst.add(i),
                    dst.add(i - 512)
                );
            }
            i += 512;
        }
        x = _mm512_castsi512_si128(xz);
        let mut g = [_mm512_setzero_si512(); 8];
        for (j, v) in g.iter_mut().enumerate() {
            // SAFETY: i - 512 + 64j + 64 <= i <= len.
            *v = _mm512_shuffle_epi8(
                unsafe { _mm512_loadu_si512(dst.add(i - 512 + 64 * j).cast()) },
                bs,
            );
        }
        x = ghash32(x, &g, &pw);
    }
    if len - i >= 256 {
        let mut b = counters4(&mut ctr, rk[0]);
        for k in &rk[1..14] {
            aes_round4(&mut b, *k);
        }
        aes_last4(&mut b, rk[14]);
        for (j, v) in b.iter_mut().enumerate() {
            // SAFETY: i + 64j + 64 <= i + 256 <= len; load before store.
            unsafe {
                let c = _mm512_xor_si512(_mm512_loadu_si512(src.add(i + 64 * j).cast()), *v);
                _mm512_storeu_si512(dst.add(i + 64 * j).cast(), c);
                *v = _mm512_shuffle_epi8(c, bs);
            }
        }
        x = ghash16(x, &b, &pw);
        i += 256;
    }
    let r = len - i;
    // SAFETY: offsets i..len are inside both buffers; the ciphertext is hashed
    // from `dst` after `ctr_partial` has written it.
    unsafe {
        ctr_partial(t, &rk, ctr, src.add(i), dst.add(i), r);
        x = ghash_partial(t, &key.h_pow, x, dst.add(i), r);
    }
    let tag = finish(&key.h_pow, x, ekj0, aad.len(), len);
    wipe_call_state(&mut rk, &mut pw, &mut ekj0, &mut x);
    tag
}

/// GCM-AD (§7.2) without the tag check: decrypts `len` bytes from `src` to
/// `dst` and returns the expected tag computed over the ciphertext.
///
/// # Safety
/// As for [`seal_raw`].
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
unsafe fn open_raw(
    t: Vaes512Token,
    key: &Vaes512Schedule,
    nonce: &[u8; 12],
    aad: &[u8],
    src: *const u8,
    dst: *mut u8,
    len: usize,
) -> [u8; 16] {
    // SAFETY: features proved by `t`; `aad` is a valid slice.
    let Setup {
        mut rk,
        mut pw,
        mut ctr,
        mut ekj0,
        mut x,
    } = unsafe { setup(t, key, nonce, aad) };
    let bs = bswap_mask();
    let mut i = 0;
    // Stitched loop: the ciphertext is the input, so it is hashed in the
    // same iteration that decrypts it.
    // The reduced GHASH value leaves the assembly broadcast to all four
    // lanes; `lane0` selects the one that is XORed into the first block.
    let (inc4, poly, lane0) = (
        inc_by(4),
        gfpoly(),
        _mm512_zextsi128_si512(_mm_set1_epi8(-1)),
    );
    let mut xz = _mm512_zextsi128_si512(x);
    while len - i >= 512 {
        // SAFETY: `rk` is 15 aligned round keys and `pw` a `Powers`;
        // offsets i..i+512 <= len of src (read, also as GHASH input) and dst
        // (written) are in bounds.
        unsafe {
            iter32_asm!(
                rk.as_ptr(),
                &pw,
                ctr,
                xz,
                bs,
                inc4,
                poly,
                lane0,
                src.add(i),
                dst.add(i),
                src.add(i)
            );
        }
        i += 512;
    }
    x = _mm512_castsi512_si128(xz);
    if len - i >= 256 {
        let mut c = [_mm512_setzero_si512(); 4];
        let mut g = [_mm512_setzero_si512(); 4];
        for j in 0..4 {
            // SAFETY: i + 64j + 64 <= i + 256 <= len.
            c[j] = unsafe { _mm512_loadu_si512(src.add(i + 64 * j).cast()) };
            g[j] = _mm512_shuffle_epi8(c[j], bs);
        }
        let mut b = counters4(&mut ctr, rk[0]);
        for k in &rk[1..14] {
            aes_round4(&mut b, *k);
        }
        aes_last4(&mut b, rk[14]);
        x = ghash16(x, &g, &pw);
        for j in 0..4 {
            // SAFETY: i + 64j + 64 <= len; all loads of this chunk are done.
            unsafe {
                _mm512_storeu_si512(dst.add(i + 64 * j).cast(), _mm512_xor_si512(c[j], b[j]))
            };
        }
        i += 256;
    }
    let r = len - i;
    // SAFETY: offsets i..len are inside both buffers; the ciphertext is hashed
    // before `ctr_partial` may overwrite it (in-place).
    unsafe {
        x = ghash_partial(t, &key.h_pow, x, src.add(i), r);
        ctr_partial(t, &rk, ctr, src.add(i), dst.add(i), r);
    }
    let tag = finish(&key.h_pow, x, ekj0, aad.len(), len);
    wipe_call_state(&mut rk, &mut pw, &mut ekj0, &mut x);
    tag
}

// ---------------------------------------------------------------------------
// Partial opens (range reads). Written the simple way, from this kernel's own
// set-up, GHASH and tail routines, with no new loop: this kernel cannot run on
// the machine the partial opens were written on (AMD Zen 3, no AVX-512), so
// only its structure was reviewed here; the kernel tests run it wherever the
// CPU has AVX-512 and report SKIPPED elsewhere.
// ---------------------------------------------------------------------------

/// The GCM tag of (`aad`, the `len` bytes of ciphertext at `ct`) without
/// decrypting: [`setup`] (GHASH of the AAD, E(K, J0)), [`ghash_bytes`] over
/// the ciphertext (16 blocks per reduction), [`finish`].
///
/// # Safety
/// CPU features (token); `ct` readable for `len` bytes; `len` and
/// `aad.len()` within SP 800-38D limits.
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
unsafe fn tag_raw(
    t: Vaes512Token,
    key: &Vaes512Schedule,
    nonce: &[u8; 12],
    aad: &[u8],
    ct: *const u8,
    len: usize,
) -> [u8; 16] {
    // SAFETY: features proved by `t`; `aad` is a valid slice.
    let Setup {
        mut rk,
        mut pw,
        mut ekj0,
        mut x,
        ..
    } = unsafe { setup(t, key, nonce, aad) };
    // SAFETY: caller's guarantee for `ct`/`len`.
    x = unsafe { ghash_bytes(t, &key.h_pow, &pw, x, ct, len) };
    let tag = finish(&key.h_pow, x, ekj0, aad.len(), len);
    wipe_call_state(&mut rk, &mut pw, &mut ekj0, &mut x);
    tag
}

/// XORs the GCTR keystream into the `len` bytes at `p` in place, starting at
/// data block `block` of the message (counter `inc32(J0) + block`), with
/// [`ctr_partial`] (masked, one zmm of four blocks at a time) over pieces of
/// 192 bytes (12 blocks; `ctr_partial` takes fewer than 256).
///
/// # Safety
/// CPU features (token); `p` readable and writable for `len` bytes;
/// `16 * block + len` within the SP 800-38D message limit (no counter wrap).
#[target_feature(enable = "aes,pclmulqdq,avx2,avx512f,avx512vl,avx512bw,vaes,vpclmulqdq")]
unsafe fn ctr_raw(
    t: Vaes512Token,
    key: &Vaes512Schedule,
    nonce: &[u8; 12],
    block: u32,
    p: *mut u8,
    len: usize,
) {
    // SAFETY: features proved by `t`; the empty AAD is a valid slice.
    let Setup {
        mut rk,
        mut pw,
        ctr,
        mut ekj0,
        mut x,
    } = unsafe { setup(t, key, nonce, &[]) };
    // All four lanes advance by `block` (wrapping inc32, §6.2).
    let mut ctr = _mm512_add_epi32(
        ctr,
        _mm512_broadcast_i32x4(_mm_set_epi32(0, 0, 0, block as i32)),
    );
    let mut off = 0;
    while off < len {
        let n = core::cmp::min(192, len - off);
        // SAFETY: offsets off..off + n <= len of `p`, in place; n < 256.
        unsafe { ctr_partial(t, &rk, ctr, p.add(off), p.add(off), n) };
        ctr = _mm512_add_epi32(ctr, inc_by(12));
        off += n;
    }
    wipe_call_state(&mut rk, &mut pw, &mut ekj0, &mut x);
}
