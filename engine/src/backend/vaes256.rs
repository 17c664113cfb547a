//! AES-256-GCM with VAES + VPCLMULQDQ over 256-bit registers (AVX2), for
//! CPUs that have the vector AES/carry-less-multiply extensions but no
//! AVX-512 (e.g. AMD Zen 3, Intel Alder Lake client cores).
//!
//! # Construction (NIST SP 800-38D)
//! * GCM-AE / GCM-AD (§7.1 / §7.2) with a 96-bit IV: `J0 = IV || 0^31 || 1`,
//!   keystream `GCTR(inc32(J0), ·)` (§6.5), tag
//!   `GHASH_H(A || 0^v || C || 0^u || [len(A)]_64 || [len(C)]_64) ⊕ E(K, J0)`.
//! * GHASH (§6.4), `X_i = (X_{i-1} ⊕ B_i) · H`, is unrolled over 20 blocks
//!   with precomputed H^1..H^20 so that the 20 products are independent and
//!   only their sum is reduced ("aggregated reduction": one reduction per 20
//!   blocks, and no serial multiply-reduce chain).
//!
//! # Why the design is as it is
//! * Two blocks per ymm, ten ymm (20 blocks, 320 bytes) per iteration, one
//!   GHASH reduction per iteration. VAESENC has 4-cycle latency and
//!   two-per-cycle throughput (Zen 3/4/5, Alder/Raptor Lake P-cores), so
//!   eight chains (16 blocks) are the bare minimum and leave no slack: every
//!   AES issue delayed by a neighbouring instruction is lost. Ten chains
//!   give 25% slack (measured +4-5% over the same loop at 16 blocks). More
//!   is impossible without spilling: AVX2 has only ymm0..15 (ymm16..31 need
//!   AVX-512VL, which this kernel must not require), and ten AES states +
//!   round key + two GHASH temporaries + three accumulators is all sixteen.
//!   The counter and GHASH state therefore live in memory between uses, as
//!   do the byte-swap mask, counter increment, reduction constant, round keys
//!   and key powers (memory operands; L1-resident, store-to-load forwarded).
//! * VPCLMULQDQ competes with VAESENC (on Zen 5, measured: each ymm
//!   VPCLMULQDQ costs roughly one VAESENC issue slot or more), so GHASH is
//!   costed in carry-less multiplies: Karatsuba (three per ymm of two blocks
//!   instead of four, with the `hi ^ lo` halves of the powers precomputed in
//!   the key) plus one two-multiply reduction gives 32 per 20 blocks instead
//!   of 42 (or 34 per 16 with schoolbook products as before).
//! * *Stitching*: each iteration runs the 14 AES rounds of 20 counter blocks
//!   and, interleaved with them, the GHASH of 20 ciphertext blocks. Sealing
//!   hashes the previous iteration's ciphertext (read back from the output,
//!   since it is only known at the end of an iteration); opening hashes its
//!   input in the same iteration.
//! * The bulk iteration is inline assembly (`iter20_asm!`), for the same
//!   reason as in the AVX-512 kernel: with intrinsics LLVM clusters the GHASH
//!   work away from the AES rounds and, with all 16 registers in use,
//!   spills; the assembly spreads the 32 VPCLMULQDQ evenly over the 140
//!   VAESENC. Everything else (set-up, 16-block remainder, tails, AAD) stays
//!   in intrinsics.
//! * Same field representation as the AVX-512 kernel (after Eric Biggers'
//!   Linux/BoringSSL `aes-gcm-avx2`/`avx10`): byte-reflected blocks, H
//!   preprocessed by a 1-bit shift, and a two-multiply Montgomery-style
//!   reduction by `0xc2 << 56`. Cold paths (AAD/message tails, key powers)
//!   keep the schoolbook product.
//! * Counters are byte-reflected so `inc32` is one VPADDD (wraps mod 2^32 as
//!   §6.2 requires; the §5.2.1.1 length limit means it never does).
//! * AVX2 has no byte-masked loads/stores, so the final partial 16-block group
//!   goes through a zero-padded stack buffer, which is wiped afterwards.
//! * Required CPU features, exactly: `aes, pclmulqdq, avx, avx2, vaes,
//!   vpclmulqdq`. No AVX-512 instruction (EVEX encoding, zmm, ymm16..31,
//!   mask registers) is emitted; only VEX-encoded ymm/xmm code.
//!
//! All `unsafe` of this kernel is in this file.
#![allow(unsafe_code)] // SIMD intrinsics and inline assembly: this file is the only place the kernel's unsafe lives

use core::arch::asm;
use core::arch::x86_64::*;

use zeroize::Zeroize;

use super::CpuFeatures;
use super::common::{Buffers, CtrSpan, Kernel, TagInput};

/// Zero-sized proof that the CPU features this kernel needs were detected.
/// Only [`Vaes256Token::detect`] creates it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vaes256Token(());

impl Vaes256Token {
    /// Whether `f` has every feature in this file's
    /// `#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]` lists. No
    /// AVX-512 feature: the kernel emits only VEX-encoded xmm/ymm code.
    pub(crate) fn supported_by(f: &CpuFeatures) -> bool {
        f.aes && f.pclmulqdq && f.avx && f.avx2 && f.vaes && f.vpclmulqdq
    }

    /// Returns a token if and only if this CPU has every feature [`Self::supported_by`]
    /// lists, as the one detector ([`CpuFeatures::detect`]) reports them.
    pub(crate) fn detect() -> Option<Self> {
        Self::supported_by(&CpuFeatures::detect()).then_some(Self(()))
    }
}

/// Blocks per bulk iteration, and so the number of GHASH key powers.
const NPOW: usize = 20;
/// ymm (two blocks each) per bulk iteration.
const NV: usize = NPOW / 2;

/// Expanded AES-256 key and GHASH key powers; [`GcmKey`](super::common::GcmKey) zeroizes them on drop.
///
/// Each value is stored once, in the form the bulk loops load (1,184 bytes): the 128-bit
/// round keys are the low lanes of `rkb`, and the powers as single blocks are a view of
/// `pw` ([`Self::h_pow`]). An earlier layout kept both forms (2,064 bytes), and building,
/// copying and wiping the second copy was part of a per-object set-up measured at
/// ~530 ns against ring's ~230 ns (`cargo bench -p dare-benches --bench keysetup`).
#[derive(Zeroize)]
pub(crate) struct Vaes256Schedule {
    /// AES-256 round keys 0..=14 (AES byte order), broadcast to both lanes.
    rkb: [__m256i; 15],
    /// GHASH key powers with their Karatsuba companions.
    pw: Powers,
}

impl Vaes256Schedule {
    /// Byte-reflected, preprocessed `H^20, H^19, …, H^1`, then four zero entries: a partial
    /// group of `n <= 16` blocks loads powers starting at index `20 - n`, and its last
    /// 256-bit load may run one entry past `H^1`; the zeros keep that load in bounds and
    /// the products zero. A view of `pw.hp` followed by `pw.pad`.
    fn h_pow(&self) -> &[u128; NPOW + 4] {
        let p = core::ptr::addr_of!(self.pw).cast::<[u128; NPOW + 4]>();
        // SAFETY: `Powers` is `repr(C)` and starts with `hp` (NV = NPOW/2 ymm) then `pad`
        // (2 ymm): its first (NPOW + 4) * 16 bytes are those two arrays, contiguous,
        // initialised, 32-byte aligned (>= u128's 16); any bit pattern is a valid `u128`.
        // The pointer comes from the whole `pw` field, so the view stays inside it, and it
        // borrows `self` immutably for the reference's lifetime.
        unsafe { &*p }
    }

    /// Round key `i` as one 128-bit block.
    #[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
    #[inline]
    fn rk128(&self, i: usize) -> __m128i {
        _mm256_castsi256_si128(self.rkb[i])
    }
}

/// The safe API ([`GcmKey`](super::common::GcmKey)) over this kernel.
impl Kernel for Vaes256Token {
    const KEY_NAME: &'static str = "Vaes256Key";
    type Schedule = Vaes256Schedule;

    fn schedule(self, key: &[u8; 32]) -> Vaes256Schedule {
        // SAFETY: `self` exists only if `detect()` found every feature that
        // `_mm256_setzero_si256` and `expand_key` enable; `expand_key` only writes
        // through the `&mut` schedule.
        unsafe {
            let z = _mm256_setzero_si256();
            let mut s = Vaes256Schedule {
                rkb: [z; 15],
                pw: Powers {
                    hp: [z; NV],
                    pad: [z; 2],
                    hk: [z; NV],
                },
            };
            expand_key(self, key, &mut s);
            s
        }
    }

    fn seal(self, s: &Vaes256Schedule, nonce: &[u8; 12], io: Buffers<'_>) -> [u8; 16] {
        // SAFETY: `self` proves the CPU features; `io` guarantees `seal_raw`'s
        // memory and length preconditions (see `Buffers`).
        unsafe { seal_raw(self, s, nonce, io.aad(), io.src(), io.dst(), io.len()) }
    }

    fn open(self, s: &Vaes256Schedule, nonce: &[u8; 12], io: Buffers<'_>) -> [u8; 16] {
        // SAFETY: as in `seal`, for `open_raw`'s identical preconditions.
        unsafe { open_raw(self, s, nonce, io.aad(), io.src(), io.dst(), io.len()) }
    }

    fn tag_only(self, s: &Vaes256Schedule, nonce: &[u8; 12], input: TagInput<'_>) -> [u8; 16] {
        let ct = input.ct();
        // SAFETY: `self` proves the CPU features; `ct` is a valid slice of
        // `ct.len()` bytes and `input` guarantees the length limits.
        unsafe { tag_raw(self, s, nonce, input.aad(), ct.as_ptr(), ct.len()) }
    }

    fn ctr_xor(self, s: &Vaes256Schedule, nonce: &[u8; 12], mut span: CtrSpan<'_>) {
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
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn bswap_mask128() -> __m128i {
    _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
}

#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn bswap_mask() -> __m256i {
    _mm256_broadcastsi128_si256(bswap_mask128())
}

/// x^128 + x^7 + x^2 + x + 1 in the reflected form used by the reduction;
/// only the high qword (0xc2 << 56) is multiplied.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn gfpoly128() -> __m128i {
    _mm_set_epi64x(0xc200_0000_0000_0000_u64 as i64, 1)
}

#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn xor3(a: __m256i, b: __m256i, c: __m256i) -> __m256i {
    _mm256_xor_si256(_mm256_xor_si256(a, b), c)
}

/// Two-step Montgomery-style reduction of a (LO, MI, HI) product.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn reduce128(lo: __m128i, mi: __m128i, hi: __m128i) -> __m128i {
    let p = gfpoly128();
    let t = _mm_clmulepi64_si128::<0x01>(p, lo);
    let mi = _mm_xor_si128(_mm_xor_si128(mi, _mm_shuffle_epi32::<0x4e>(lo)), t);
    let t = _mm_clmulepi64_si128::<0x01>(p, mi);
    _mm_xor_si128(_mm_xor_si128(hi, _mm_shuffle_epi32::<0x4e>(mi)), t)
}

/// One GF(2^128) multiply `a · b` (b a preprocessed key power).
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
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

/// Two GF(2^128) multiplies, lane by lane, each reduced (key powers only).
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn gf_mul256(a: __m256i, b: __m256i) -> __m256i {
    let lo = _mm256_clmulepi64_epi128::<0x00>(a, b);
    let mi = _mm256_xor_si256(
        _mm256_clmulepi64_epi128::<0x01>(a, b),
        _mm256_clmulepi64_epi128::<0x10>(a, b),
    );
    let hi = _mm256_clmulepi64_epi128::<0x11>(a, b);
    let p = _mm256_broadcastsi128_si256(gfpoly128());
    let t = _mm256_clmulepi64_epi128::<0x01>(p, lo);
    let mi = xor3(mi, _mm256_shuffle_epi32::<0x4e>(lo), t);
    let t = _mm256_clmulepi64_epi128::<0x01>(p, mi);
    xor3(hi, _mm256_shuffle_epi32::<0x4e>(mi), t)
}

/// Accumulates the unreduced product of two block/power lane pairs.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn mul_acc(a: __m256i, h: __m256i, lo: &mut __m256i, mi: &mut __m256i, hi: &mut __m256i) {
    *lo = _mm256_xor_si256(*lo, _mm256_clmulepi64_epi128::<0x00>(a, h));
    *mi = xor3(
        *mi,
        _mm256_clmulepi64_epi128::<0x01>(a, h),
        _mm256_clmulepi64_epi128::<0x10>(a, h),
    );
    *hi = _mm256_xor_si256(*hi, _mm256_clmulepi64_epi128::<0x11>(a, h));
}

/// Reduces both lanes at once, then XORs them.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn reduce_sum(lo: __m256i, mi: __m256i, hi: __m256i) -> __m128i {
    let p = _mm256_broadcastsi128_si256(gfpoly128());
    let t = _mm256_clmulepi64_epi128::<0x01>(p, lo);
    let mi = xor3(mi, _mm256_shuffle_epi32::<0x4e>(lo), t);
    let t = _mm256_clmulepi64_epi128::<0x01>(p, mi);
    let r = xor3(hi, _mm256_shuffle_epi32::<0x4e>(mi), t);
    _mm_xor_si128(_mm256_castsi256_si128(r), _mm256_extracti128_si256::<1>(r))
}

/// Unreduced GHASH partial-product sums, two lanes each.
#[derive(Clone, Copy)]
struct Acc {
    lo: __m256i,
    mi: __m256i,
    hi: __m256i,
}

/// Karatsuba multiply-accumulate of two block/power lane pairs: `lo += a0·h0`,
/// `hi += a1·h1`, `mi += (a0^a1)·(h0^h1)` (`hk` holds `h0^h1`). Three
/// VPCLMULQDQ instead of four; the correction `mi ^= lo ^ hi` is linear, so
/// it is applied once to the sums in [`kreduce`].
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn kmul_acc(a: __m256i, h: __m256i, hk: __m256i, acc: &mut Acc) {
    let am = _mm256_xor_si256(a, _mm256_shuffle_epi32::<0x4e>(a));
    acc.lo = _mm256_xor_si256(acc.lo, _mm256_clmulepi64_epi128::<0x00>(a, h));
    acc.hi = _mm256_xor_si256(acc.hi, _mm256_clmulepi64_epi128::<0x11>(a, h));
    acc.mi = _mm256_xor_si256(acc.mi, _mm256_clmulepi64_epi128::<0x00>(am, hk));
}

/// Karatsuba correction, then reduction and horizontal sum of the lanes.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn kreduce(acc: Acc) -> __m128i {
    let mi = xor3(acc.mi, acc.lo, acc.hi);
    reduce_sum(acc.lo, mi, acc.hi)
}

/// Key powers for the bulk loops: `hp[j]` holds `H^(20-2j), H^(19-2j)`,
/// `hk[j]` their Karatsuba companions. `repr(C)` with `pad` (zeros) right after `hp`:
/// [`Vaes256Schedule::h_pow`] views `hp` and `pad` as one array of single blocks.
#[derive(Zeroize)]
#[repr(C)]
struct Powers {
    hp: [__m256i; NV],
    pad: [__m256i; 2],
    hk: [__m256i; NV],
}

/// GHASH of `2N` byte-reflected blocks `g` into accumulator `x` (Karatsuba,
/// powers `H^2N..H^1`, one reduction). `N <= NV`.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn ghash_n<const N: usize>(x: __m128i, g: &[__m256i; N], pw: &Powers) -> __m128i {
    let z = _mm256_setzero_si256();
    let mut acc = Acc {
        lo: z,
        mi: z,
        hi: z,
    };
    let o = NV - N;
    kmul_acc(
        _mm256_xor_si256(g[0], _mm256_zextsi128_si256(x)),
        pw.hp[o],
        pw.hk[o],
        &mut acc,
    );
    for ((gj, h), hk) in g.iter().zip(&pw.hp[o..]).zip(&pw.hk[o..]).skip(1) {
        kmul_acc(*gj, *h, *hk, &mut acc);
    }
    kreduce(acc)
}

#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn aes_round<const N: usize>(b: &mut [__m256i; N], k: __m256i) {
    for v in b.iter_mut() {
        *v = _mm256_aesenc_epi128(*v, k);
    }
}

#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn aes_last<const N: usize>(b: &mut [__m256i; N], k: __m256i) {
    for v in b.iter_mut() {
        *v = _mm256_aesenclast_epi128(*v, k);
    }
}

/// Full AES-256 of one ymm (two blocks).
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn aes1(b: __m256i, rk: &[__m256i; 15]) -> __m256i {
    let mut b = _mm256_xor_si256(b, rk[0]);
    for k in &rk[1..14] {
        b = _mm256_aesenc_epi128(b, *k);
    }
    _mm256_aesenclast_epi128(b, rk[14])
}

#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn inc_by(n: i32) -> __m256i {
    _mm256_broadcastsi128_si256(_mm_set_epi32(0, 0, 0, n))
}

/// `N` counter ymm (`2N` blocks) starting at `*ctr`, byte-swapped into AES
/// order and whitened with round key 0; advances `*ctr` by `2N`.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn counters<const N: usize>(ctr: &mut __m256i, rk0: __m256i) -> [__m256i; N] {
    let bs = bswap_mask();
    let inc2 = inc_by(2);
    let mut b = [_mm256_setzero_si256(); N];
    for v in b.iter_mut() {
        *v = _mm256_xor_si256(_mm256_shuffle_epi8(*ctr, bs), rk0);
        *ctr = _mm256_add_epi32(*ctr, inc2);
    }
    b
}

/// Full AES-256 (after whitening) of `N` ymm, round-major so the `N` chains
/// interleave.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn aes_rounds<const N: usize>(b: &mut [__m256i; N], rk: &[__m256i; 15]) {
    for k in &rk[1..14] {
        aes_round(b, *k);
    }
    aes_last(b, rk[14]);
}

/// One AES-256 key-expansion step for an even round key (RotWord+SubWord+Rcon).
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
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
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
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

/// Overwrites a local register array; round keys should not linger on the stack.
fn wipe_regs(a: &mut [__m128i; 15]) {
    for v in a.iter_mut() {
        // SAFETY: `v` is a valid, aligned, exclusive reference; the volatile
        // write keeps the clearing from being optimised out.
        unsafe { core::ptr::write_volatile(v, core::mem::zeroed()) };
    }
}

/// AES-256 key expansion (FIPS 197 §5.2) and GHASH key powers, written straight into the
/// schedule's broadcast form.
///
/// # Safety
/// The CPU must support every feature enabled on this function; holding a
/// [`Vaes256Token`] (passed by value) proves it.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
unsafe fn expand_key(_t: Vaes256Token, key: &[u8; 32], s: &mut Vaes256Schedule) {
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
    for (dst, v) in s.rkb.iter_mut().zip(r.iter()) {
        *dst = _mm256_broadcastsi128_si256(*v);
    }
    wipe_regs(&mut r);

    // Byte-reflect H, then multiply by x^-1 in GCM's bit order (a left shift
    // of the reflected value with the carry folded back in), which absorbs
    // the extra factor of x in the carry-less product of reflected operands.
    let hr = to_u128(_mm_shuffle_epi8(h, bswap_mask128()));
    let carry = hr >> 127;
    let h1 =
        from_u128((hr << 1) ^ (carry.wrapping_neg() & 0xc200_0000_0000_0000_0000_0000_0000_0001));
    // H^2..H^4 one at a time, then two independent chains of lane pairs, each step a
    // multiply of both lanes by H^4: [H^2,H^1]·H^4 = [H^6,H^5], [H^4,H^3]·H^4 = [H^8,H^7],
    // … — 3 + 2·4 multiplies, 6 deep, instead of a chain of 19 (`hp[j]` holds
    // `H^(20-2j)` in its low lane, `H^(19-2j)` in its high lane).
    let h2 = gf_mul128(h1, h1);
    let h3 = gf_mul128(h2, h1);
    let h4 = gf_mul128(h2, h2);
    let hp = &mut s.pw.hp;
    hp[NV - 1] = _mm256_set_m128i(h1, h2);
    hp[NV - 2] = _mm256_set_m128i(h3, h4);
    let b4 = _mm256_broadcastsi128_si256(h4);
    for j in (0..NV - 2).rev() {
        hp[j] = gf_mul256(hp[j + 2], b4);
    }
    // Karatsuba companions: `hi ^ lo` of each power in both 64-bit halves.
    for (k, h) in s.pw.hk.iter_mut().zip(hp.iter()) {
        *k = _mm256_xor_si256(*h, _mm256_shuffle_epi32::<0x4e>(*h));
    }
    s.pw.pad = [_mm256_setzero_si256(); 2];
}

/// Constants the assembly loop takes as memory operands (no register is
/// left for them). `repr(C)`: `iter20_asm!` addresses the fields at byte
/// offsets 0, 32 and 64.
#[repr(C)]
struct Consts {
    /// [`bswap_mask`].
    bs: __m256i,
    /// [`inc_by`]`(2)`: advances both lanes' counters by two blocks.
    inc2: __m256i,
    /// The reduction constant `0xc2 << 56` (high qword of each lane).
    poly: __m256i,
}

/// Per-call state shared by seal and open: the broadcast round keys and key
/// powers (borrowed from the schedule), first counter, E(K, J0) and GHASH of the AAD.
struct Setup<'k> {
    rk: &'k [__m256i; 15],
    pw: &'k Powers,
    ctr: __m256i,
    ekj0: __m128i,
    x: __m128i,
}

/// Wipes the key material one call copied to its stack frame, with `zeroize`'s
/// volatile writes: E(K, J0), the mask of the tag (with it, a tag gives away the
/// GHASH value, an equation in H); and the final GHASH state (likewise). Called
/// at the end of [`seal_raw`] and [`open_raw`]. The other copies are wiped where
/// they are made (the round keys in [`expand_key`], the bulk loop's GHASH state in
/// [`LoopState`], the zero-padded tail buffers); [`setup`] reads the round keys from
/// the schedule in place, with no stack copy.
/// Best effort: registers are not cleared (later SIMD code overwrites them;
/// clearing them would take assembly after every call), nor any spill slot the
/// compiler might make for a copy.
fn wipe_call_state(ekj0: &mut __m128i, x: &mut __m128i) {
    ekj0.zeroize();
    x.zeroize();
}

/// # Safety
/// CPU features as for [`expand_key`] (proved by the token).
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
unsafe fn setup<'k>(
    t: Vaes256Token,
    key: &'k Vaes256Schedule,
    nonce: &[u8; 12],
    aad: &[u8],
) -> Setup<'k> {
    let rk = &key.rkb;
    let pw = &key.pw;
    // J0 = IV || 0^31 || 1 (§7.1 step 2).
    let mut j0b = [0u8; 16];
    j0b[..12].copy_from_slice(nonce);
    j0b[15] = 1;
    let j0 = from_u128(u128::from_le_bytes(j0b));
    let mut e = _mm_xor_si128(j0, key.rk128(0));
    for i in 1..14 {
        e = _mm_aesenc_si128(e, key.rk128(i));
    }
    let ekj0 = _mm_aesenclast_si128(e, key.rk128(14));
    // First data counter is inc32(J0), kept byte-reflected; lane 1 is +1.
    let le = _mm_add_epi32(
        _mm_shuffle_epi8(j0, bswap_mask128()),
        _mm_set_epi32(0, 0, 0, 1),
    );
    let ctr = _mm256_add_epi32(
        _mm256_broadcastsi128_si256(le),
        _mm256_set_epi32(0, 0, 0, 1, 0, 0, 0, 0),
    );
    // SAFETY: `aad` is a valid slice of `aad.len()` bytes.
    let x = unsafe {
        ghash_bytes(
            t,
            key.h_pow(),
            pw,
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

/// The zero-padded stack buffer of a partial final group (or AAD tail),
/// aligned so it can be wiped with 8 vector stores: `zeroize` on a byte
/// array makes one volatile store per byte (256 of them, a fixed cost per
/// message that showed at 4 KiB).
#[repr(C, align(32))]
struct Pad([u8; 256]);

impl Pad {
    /// Overwrites the buffer with zeros, with volatile stores the compiler
    /// cannot drop, then a compiler fence (as `zeroize` does).
    fn wipe(&mut self) {
        let p = self.0.as_mut_ptr().cast::<__m256i>();
        for i in 0..8 {
            // SAFETY: `p` is 32-byte aligned (`repr(align(32))`) and
            // 8 vectors of 32 bytes span exactly the 256-byte buffer,
            // which `&mut self` borrows exclusively; an all-zero vector is valid.
            unsafe { core::ptr::write_volatile(p.add(i), core::mem::zeroed()) };
        }
        core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
    }
}

/// GHASH of `len` bytes at `p`, zero-padded to a block multiple (§6.4).
///
/// # Safety
/// CPU features (token); `p` valid for reads of `len` bytes.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
unsafe fn ghash_bytes(
    t: Vaes256Token,
    h_pow: &[u128; NPOW + 4],
    pw: &Powers,
    mut x: __m128i,
    p: *const u8,
    len: usize,
) -> __m128i {
    let bs = bswap_mask();
    let mut i = 0;
    // 20 blocks per reduction while they last (long AAD, or a whole ciphertext for
    // `tag_raw`), then 16, then pairs or the padded remainder.
    while len - i >= 32 * NV {
        let mut g = [_mm256_setzero_si256(); NV];
        for (j, v) in g.iter_mut().enumerate() {
            // SAFETY: i + 32j + 32 <= i + 320 <= len.
            *v = _mm256_shuffle_epi8(unsafe { _mm256_loadu_si256(p.add(i + 32 * j).cast()) }, bs);
        }
        x = ghash_n(x, &g, pw);
        i += 32 * NV;
    }
    while len - i >= 256 {
        let mut g = [_mm256_setzero_si256(); 8];
        for (j, v) in g.iter_mut().enumerate() {
            // SAFETY: i + 32j + 32 <= i + 256 <= len.
            *v = _mm256_shuffle_epi8(unsafe { _mm256_loadu_si256(p.add(i + 32 * j).cast()) }, bs);
        }
        x = ghash_n(x, &g, pw);
        i += 256;
    }
    if (len - i).is_multiple_of(32) {
        // Whole pairs of blocks (the engine's 32-byte associated data is one): straight from
        // memory, without the padded stack copy and its wipe.
        while i < len {
            // SAFETY: `len - i` is a positive multiple of 32, so i + 32 <= len.
            let g = _mm256_shuffle_epi8(unsafe { _mm256_loadu_si256(p.add(i).cast()) }, bs);
            x = ghash_n(x, &[g], pw);
            i += 32;
        }
        return x;
    }
    let r = len - i;
    let mut pad = Pad([0u8; 256]);
    let buf = &mut pad.0;
    // SAFETY: `p.add(i)` is valid for `r < 256` reads; `buf` is a distinct local.
    unsafe { core::ptr::copy_nonoverlapping(p.add(i), buf.as_mut_ptr(), r) };
    let x = ghash_padded(t, h_pow, x, buf, r);
    pad.wipe();
    x
}

/// GHASH of the first `r` (1..=255) bytes of a zero-padded 256-byte buffer,
/// one reduction, powers `H^n..H^1` (n = number of blocks).
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
fn ghash_padded(
    _t: Vaes256Token,
    h_pow: &[u128; NPOW + 4],
    x: __m128i,
    buf: &[u8; 256],
    r: usize,
) -> __m128i {
    let bs = bswap_mask();
    let nblocks = r.div_ceil(16).clamp(1, 16);
    let first = NPOW - nblocks;
    let nvec = nblocks.div_ceil(2);
    let z = _mm256_setzero_si256();
    let (mut lo, mut mi, mut hi) = (z, z, z);
    for v in 0..nvec {
        // SAFETY: 32v + 32 <= 32 * nvec <= 256 = buf.len().
        let d = unsafe { _mm256_loadu_si256(buf.as_ptr().add(32 * v).cast()) };
        let mut g = _mm256_shuffle_epi8(d, bs);
        if v == 0 {
            g = _mm256_xor_si256(g, _mm256_zextsi128_si256(x));
        }
        // first + 2v + 2 <= NPOW - nblocks + nblocks + 1 = NPOW + 1 entries.
        let idx = first + 2 * v;
        // SAFETY: idx + 2 <= NPOW + 1 < NPOW + 4 as argued above.
        let h = unsafe { _mm256_loadu_si256(h_pow.as_ptr().add(idx).cast()) };
        mul_acc(g, h, &mut lo, &mut mi, &mut hi);
    }
    reduce_sum(lo, mi, hi)
}

/// Keystream for the final `r` (1..=255) bytes, applied to a padded buffer
/// in place (two blocks per step).
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
fn ctr_padded(rk: &[__m256i; 15], mut ctr: __m256i, buf: &mut [u8; 256], r: usize) {
    let bs = bswap_mask();
    let inc2 = inc_by(2);
    let mut off = 0;
    while off < r {
        let ks = aes1(_mm256_shuffle_epi8(ctr, bs), rk);
        ctr = _mm256_add_epi32(ctr, inc2);
        // SAFETY: off < r <= 255 and off is a multiple of 32, so off + 32 <= 256.
        unsafe {
            let p = buf.as_mut_ptr().add(off);
            let d = _mm256_loadu_si256(p.cast());
            _mm256_storeu_si256(p.cast(), _mm256_xor_si256(d, ks));
        }
        off += 32;
    }
}

/// Final GHASH block (lengths, §7.1 step 5) and tag = GCTR(J0, S).
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn finish(
    h_pow: &[u128; NPOW + 4],
    x: __m128i,
    ekj0: __m128i,
    aad_len: usize,
    len: usize,
) -> [u8; 16] {
    let lens = _mm_set_epi64x((aad_len as u64 * 8) as i64, (len as u64 * 8) as i64);
    let x = gf_mul128(_mm_xor_si128(x, lens), from_u128(h_pow[NPOW - 1]));
    let s = _mm_xor_si128(_mm_shuffle_epi8(x, bswap_mask128()), ekj0);
    to_u128(s).to_le_bytes()
}

/// Handles the final `r < 256` bytes through a zero-padded stack buffer.
/// `enc` selects whether the hashed text is the output (seal) or input (open).
///
/// # Safety
/// CPU features (token); `src` readable and `dst` writable for `r` bytes
/// (may be equal); `r < 256`.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[allow(clippy::too_many_arguments)] // internal kernel entry; grouping would only add a struct
unsafe fn tail(
    t: Vaes256Token,
    key: &Vaes256Schedule,
    rk: &[__m256i; 15],
    ctr: __m256i,
    x: __m128i,
    src: *const u8,
    dst: *mut u8,
    r: usize,
    enc: bool,
) -> __m128i {
    if r == 0 {
        return x;
    }
    let mut pad = Pad([0u8; 256]);
    let buf = &mut pad.0;
    // SAFETY: `src` valid for `r <= 256` reads; `buf` is a distinct local.
    unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), r) };
    let mut x = x;
    if !enc {
        x = ghash_padded(t, key.h_pow(), x, buf, r);
    }
    ctr_padded(rk, ctr, buf, r);
    // Bytes past `r` now hold keystream; GHASH needs them zero (§6.4 padding).
    buf[r..].fill(0);
    if enc {
        x = ghash_padded(t, key.h_pow(), x, buf, r);
    }
    // SAFETY: `dst` valid for `r` writes; `buf` is a distinct local.
    unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), dst, r) };
    pad.wipe();
    x
}

/// Counter and GHASH state of the bulk loop, kept in memory (L1, store-to-
/// load forwarded) because the loop has no register left for them.
/// `repr(C)`: `iter20_asm!` addresses `x` at byte offset 32.
#[repr(C)]
struct LoopState {
    /// Next counter pair (byte-reflected), lanes `n, n+1`.
    ctr: __m256i,
    /// GHASH state in the low lane, high lane zero.
    x: __m256i,
}

/// One 20-block (320-byte) iteration of the bulk loop, shared by seal and
/// open: CTR-encrypts `$src[0..320]` into `$dst[0..320]` with counters
/// `st.ctr..st.ctr+19` (advancing `st.ctr` by 20), and folds the GHASH of the
/// 20 ciphertext blocks at `$gsrc[0..320]` into `st.x` with a single
/// reduction (Karatsuba products against `H^20..H^1`).
///
/// # Why inline assembly, and why 20 blocks
/// VAESENC has 4-cycle latency and two-per-cycle throughput, so eight
/// independent ymm chains are the bare minimum to keep the AES units busy:
/// with exactly eight (16 blocks), every cycle in which another instruction
/// delays an AES issue is lost for good, and the stitched 16-block loop ran
/// at ~80 cycles per 56 cycles of AES work. Ten chains give 25% slack. That
/// takes the whole register file: ten AES states, the round key, two GHASH
/// temporaries and three accumulators; the counter and the GHASH state live
/// in memory (`$st`, a [`LoopState`]), as do round keys, key powers and the
/// constants (`$cst`, a [`Consts`]). At that register pressure LLVM cannot
/// be relied on to keep its hands off (with intrinsics it clustered the
/// GHASH work away from the AES rounds and spilled), hence assembly with an
/// explicit schedule: the 32 VPCLMULQDQ (three per ymm, Karatsuba, plus two
/// for the reduction) are spread evenly over the 140 VAESENC. The ymm
/// holding block 0 (which needs the previous iteration's GHASH state) is
/// hashed last, so the loop-carried dependency through the reduction does not
/// stall the carry-less multiplier at the start of an iteration.
///
/// Loads of `$gsrc` all happen before any store to `$dst`, and each store to
/// `$dst + 32j` follows the load of `$src + 32j`, so `$src == $dst` and
/// `$gsrc == $src` are both fine.
///
/// Must be expanded inside a function with the kernel's target features and
/// an `unsafe` block whose SAFETY comment covers: `$rk` points to 15
/// 32-byte-aligned broadcast round keys, `$hp`/`$hk` to 10 readable ymm
/// each, `$cst` to an aligned [`Consts`], `$st` to an aligned, writable
/// [`LoopState`], `$src`, `$gsrc` are readable and `$dst` writable for 320
/// bytes.
macro_rules! iter20_asm {
    ($rk:expr, $hp:expr, $hk:expr, $cst:expr, $st:expr, $src:expr, $dst:expr, $gsrc:expr) => {
        asm!(
            "vmovdqa {lo}, ymmword ptr [{st}]",
            "vpshufb {b0}, {lo}, ymmword ptr [{cst}]",
            "vpaddd {lo}, {lo}, ymmword ptr [{cst} + 32]",
            "vpshufb {b1}, {lo}, ymmword ptr [{cst}]",
            "vpaddd {lo}, {lo}, ymmword ptr [{cst} + 32]",
            "vpshufb {b2}, {lo}, ymmword ptr [{cst}]",
            "vpaddd {lo}, {lo}, ymmword ptr [{cst} + 32]",
            "vpshufb {b3}, {lo}, ymmword ptr [{cst}]",
            "vpaddd {lo}, {lo}, ymmword ptr [{cst} + 32]",
            "vpshufb {b4}, {lo}, ymmword ptr [{cst}]",
            "vpaddd {lo}, {lo}, ymmword ptr [{cst} + 32]",
            "vpshufb {b5}, {lo}, ymmword ptr [{cst}]",
            "vpaddd {lo}, {lo}, ymmword ptr [{cst} + 32]",
            "vpshufb {b6}, {lo}, ymmword ptr [{cst}]",
            "vpaddd {lo}, {lo}, ymmword ptr [{cst} + 32]",
            "vpshufb {b7}, {lo}, ymmword ptr [{cst}]",
            "vpaddd {lo}, {lo}, ymmword ptr [{cst} + 32]",
            "vpshufb {b8}, {lo}, ymmword ptr [{cst}]",
            "vpaddd {lo}, {lo}, ymmword ptr [{cst} + 32]",
            "vpshufb {b9}, {lo}, ymmword ptr [{cst}]",
            "vpaddd {lo}, {lo}, ymmword ptr [{cst} + 32]",
            "vmovdqa ymmword ptr [{st}], {lo}",
            "vmovdqa {k}, ymmword ptr [{rk}]",
            "vpxor {b0}, {b0}, {k}",
            "vpxor {b1}, {b1}, {k}",
            "vpxor {b2}, {b2}, {k}",
            "vpxor {b3}, {b3}, {k}",
            "vpxor {b4}, {b4}, {k}",
            "vpxor {b5}, {b5}, {k}",
            "vpxor {b6}, {b6}, {k}",
            "vpxor {b7}, {b7}, {k}",
            "vpxor {b8}, {b8}, {k}",
            "vpxor {b9}, {b9}, {k}",
            "vmovdqa {k}, ymmword ptr [{rk} + 32]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vaesenc {b2}, {b2}, {k}",
            "vaesenc {b3}, {b3}, {k}",
            "vmovdqu {g}, ymmword ptr [{gsrc} + 32]",
            "vpshufb {g}, {g}, ymmword ptr [{cst}]",
            "vpshufd {t1}, {g}, 0x4e",
            "vpxor {t1}, {t1}, {g}",
            "vpclmulqdq {lo}, {g}, ymmword ptr [{hp} + 32], 0x00",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vaesenc {b6}, {b6}, {k}",
            "vaesenc {b7}, {b7}, {k}",
            "vpclmulqdq {hi}, {g}, ymmword ptr [{hp} + 32], 0x11",
            "vaesenc {b8}, {b8}, {k}",
            "vaesenc {b9}, {b9}, {k}",
            "vmovdqa {k}, ymmword ptr [{rk} + 64]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vpclmulqdq {mi}, {t1}, ymmword ptr [{hk} + 32], 0x00",
            "vaesenc {b2}, {b2}, {k}",
            "vaesenc {b3}, {b3}, {k}",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vmovdqu {g}, ymmword ptr [{gsrc} + 64]",
            "vpshufb {g}, {g}, ymmword ptr [{cst}]",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 64], 0x00",
            "vpxor {lo}, {lo}, {t1}",
            "vaesenc {b6}, {b6}, {k}",
            "vaesenc {b7}, {b7}, {k}",
            "vaesenc {b8}, {b8}, {k}",
            "vaesenc {b9}, {b9}, {k}",
            "vmovdqa {k}, ymmword ptr [{rk} + 96]",
            "vaesenc {b0}, {b0}, {k}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 64], 0x11",
            "vpxor {hi}, {hi}, {t1}",
            "vaesenc {b1}, {b1}, {k}",
            "vaesenc {b2}, {b2}, {k}",
            "vaesenc {b3}, {b3}, {k}",
            "vaesenc {b4}, {b4}, {k}",
            "vpshufd {t1}, {g}, 0x4e",
            "vpxor {g}, {g}, {t1}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hk} + 64], 0x00",
            "vpxor {mi}, {mi}, {t1}",
            "vaesenc {b5}, {b5}, {k}",
            "vaesenc {b6}, {b6}, {k}",
            "vaesenc {b7}, {b7}, {k}",
            "vaesenc {b8}, {b8}, {k}",
            "vmovdqu {g}, ymmword ptr [{gsrc} + 96]",
            "vpshufb {g}, {g}, ymmword ptr [{cst}]",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 96], 0x00",
            "vpxor {lo}, {lo}, {t1}",
            "vaesenc {b9}, {b9}, {k}",
            "vmovdqa {k}, ymmword ptr [{rk} + 128]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vaesenc {b2}, {b2}, {k}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 96], 0x11",
            "vpxor {hi}, {hi}, {t1}",
            "vaesenc {b3}, {b3}, {k}",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vaesenc {b6}, {b6}, {k}",
            "vaesenc {b7}, {b7}, {k}",
            "vpshufd {t1}, {g}, 0x4e",
            "vpxor {g}, {g}, {t1}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hk} + 96], 0x00",
            "vpxor {mi}, {mi}, {t1}",
            "vaesenc {b8}, {b8}, {k}",
            "vaesenc {b9}, {b9}, {k}",
            "vmovdqa {k}, ymmword ptr [{rk} + 160]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vmovdqu {g}, ymmword ptr [{gsrc} + 128]",
            "vpshufb {g}, {g}, ymmword ptr [{cst}]",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 128], 0x00",
            "vpxor {lo}, {lo}, {t1}",
            "vaesenc {b2}, {b2}, {k}",
            "vaesenc {b3}, {b3}, {k}",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 128], 0x11",
            "vpxor {hi}, {hi}, {t1}",
            "vaesenc {b6}, {b6}, {k}",
            "vaesenc {b7}, {b7}, {k}",
            "vaesenc {b8}, {b8}, {k}",
            "vaesenc {b9}, {b9}, {k}",
            "vpshufd {t1}, {g}, 0x4e",
            "vpxor {g}, {g}, {t1}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hk} + 128], 0x00",
            "vpxor {mi}, {mi}, {t1}",
            "vmovdqa {k}, ymmword ptr [{rk} + 192]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vaesenc {b2}, {b2}, {k}",
            "vaesenc {b3}, {b3}, {k}",
            "vaesenc {b4}, {b4}, {k}",
            "vmovdqu {g}, ymmword ptr [{gsrc} + 160]",
            "vpshufb {g}, {g}, ymmword ptr [{cst}]",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 160], 0x00",
            "vpxor {lo}, {lo}, {t1}",
            "vaesenc {b5}, {b5}, {k}",
            "vaesenc {b6}, {b6}, {k}",
            "vaesenc {b7}, {b7}, {k}",
            "vaesenc {b8}, {b8}, {k}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 160], 0x11",
            "vpxor {hi}, {hi}, {t1}",
            "vaesenc {b9}, {b9}, {k}",
            "vmovdqa {k}, ymmword ptr [{rk} + 224]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vaesenc {b2}, {b2}, {k}",
            "vpshufd {t1}, {g}, 0x4e",
            "vpxor {g}, {g}, {t1}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hk} + 160], 0x00",
            "vpxor {mi}, {mi}, {t1}",
            "vaesenc {b3}, {b3}, {k}",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vaesenc {b6}, {b6}, {k}",
            "vmovdqu {g}, ymmword ptr [{gsrc} + 192]",
            "vpshufb {g}, {g}, ymmword ptr [{cst}]",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 192], 0x00",
            "vpxor {lo}, {lo}, {t1}",
            "vaesenc {b7}, {b7}, {k}",
            "vaesenc {b8}, {b8}, {k}",
            "vaesenc {b9}, {b9}, {k}",
            "vmovdqa {k}, ymmword ptr [{rk} + 256]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 192], 0x11",
            "vpxor {hi}, {hi}, {t1}",
            "vaesenc {b2}, {b2}, {k}",
            "vaesenc {b3}, {b3}, {k}",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vpshufd {t1}, {g}, 0x4e",
            "vpxor {g}, {g}, {t1}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hk} + 192], 0x00",
            "vpxor {mi}, {mi}, {t1}",
            "vaesenc {b6}, {b6}, {k}",
            "vaesenc {b7}, {b7}, {k}",
            "vaesenc {b8}, {b8}, {k}",
            "vaesenc {b9}, {b9}, {k}",
            "vmovdqu {g}, ymmword ptr [{gsrc} + 224]",
            "vpshufb {g}, {g}, ymmword ptr [{cst}]",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 224], 0x00",
            "vpxor {lo}, {lo}, {t1}",
            "vmovdqa {k}, ymmword ptr [{rk} + 288]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vaesenc {b2}, {b2}, {k}",
            "vaesenc {b3}, {b3}, {k}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 224], 0x11",
            "vpxor {hi}, {hi}, {t1}",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vaesenc {b6}, {b6}, {k}",
            "vaesenc {b7}, {b7}, {k}",
            "vaesenc {b8}, {b8}, {k}",
            "vpshufd {t1}, {g}, 0x4e",
            "vpxor {g}, {g}, {t1}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hk} + 224], 0x00",
            "vpxor {mi}, {mi}, {t1}",
            "vaesenc {b9}, {b9}, {k}",
            "vmovdqa {k}, ymmword ptr [{rk} + 320]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vaesenc {b2}, {b2}, {k}",
            "vmovdqu {g}, ymmword ptr [{gsrc} + 256]",
            "vpshufb {g}, {g}, ymmword ptr [{cst}]",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 256], 0x00",
            "vpxor {lo}, {lo}, {t1}",
            "vaesenc {b3}, {b3}, {k}",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vaesenc {b6}, {b6}, {k}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 256], 0x11",
            "vpxor {hi}, {hi}, {t1}",
            "vaesenc {b7}, {b7}, {k}",
            "vaesenc {b8}, {b8}, {k}",
            "vaesenc {b9}, {b9}, {k}",
            "vmovdqa {k}, ymmword ptr [{rk} + 352]",
            "vaesenc {b0}, {b0}, {k}",
            "vpshufd {t1}, {g}, 0x4e",
            "vpxor {g}, {g}, {t1}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hk} + 256], 0x00",
            "vpxor {mi}, {mi}, {t1}",
            "vaesenc {b1}, {b1}, {k}",
            "vaesenc {b2}, {b2}, {k}",
            "vaesenc {b3}, {b3}, {k}",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vmovdqu {g}, ymmword ptr [{gsrc} + 288]",
            "vpshufb {g}, {g}, ymmword ptr [{cst}]",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 288], 0x00",
            "vpxor {lo}, {lo}, {t1}",
            "vaesenc {b6}, {b6}, {k}",
            "vaesenc {b7}, {b7}, {k}",
            "vaesenc {b8}, {b8}, {k}",
            "vaesenc {b9}, {b9}, {k}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 288], 0x11",
            "vpxor {hi}, {hi}, {t1}",
            "vmovdqa {k}, ymmword ptr [{rk} + 384]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vaesenc {b2}, {b2}, {k}",
            "vaesenc {b3}, {b3}, {k}",
            "vpshufd {t1}, {g}, 0x4e",
            "vpxor {g}, {g}, {t1}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hk} + 288], 0x00",
            "vpxor {mi}, {mi}, {t1}",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vaesenc {b6}, {b6}, {k}",
            "vaesenc {b7}, {b7}, {k}",
            "vmovdqu {g}, ymmword ptr [{gsrc} + 0]",
            "vpshufb {g}, {g}, ymmword ptr [{cst}]",
            "vpxor {g}, {g}, ymmword ptr [{st} + 32]",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 0], 0x00",
            "vpxor {lo}, {lo}, {t1}",
            "vaesenc {b8}, {b8}, {k}",
            "vaesenc {b9}, {b9}, {k}",
            "vmovdqa {k}, ymmword ptr [{rk} + 416]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vaesenc {b2}, {b2}, {k}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hp} + 0], 0x11",
            "vpxor {hi}, {hi}, {t1}",
            "vaesenc {b3}, {b3}, {k}",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vaesenc {b6}, {b6}, {k}",
            "vpshufd {t1}, {g}, 0x4e",
            "vpxor {g}, {g}, {t1}",
            "vpclmulqdq {t1}, {g}, ymmword ptr [{hk} + 0], 0x00",
            "vpxor {mi}, {mi}, {t1}",
            "vaesenc {b7}, {b7}, {k}",
            "vaesenc {b8}, {b8}, {k}",
            "vaesenc {b9}, {b9}, {k}",
            "vmovdqa {k}, ymmword ptr [{rk} + 448]",
            "vaesenclast {b0}, {b0}, {k}",
            "vpxor {mi}, {mi}, {lo}",
            "vpxor {mi}, {mi}, {hi}",
            "vpclmulqdq {t1}, {lo}, ymmword ptr [{cst} + 64], 0x10",
            "vpshufd {g}, {lo}, 0x4e",
            "vpxor {mi}, {mi}, {g}",
            "vpxor {mi}, {mi}, {t1}",
            "vaesenclast {b1}, {b1}, {k}",
            "vaesenclast {b2}, {b2}, {k}",
            "vaesenclast {b3}, {b3}, {k}",
            "vaesenclast {b4}, {b4}, {k}",
            "vpclmulqdq {t1}, {mi}, ymmword ptr [{cst} + 64], 0x10",
            "vpshufd {g}, {mi}, 0x4e",
            "vpxor {hi}, {hi}, {g}",
            "vpxor {hi}, {hi}, {t1}",
            "vextracti128 {g:x}, {hi}, 1",
            "vpxor {g:x}, {hi:x}, {g:x}",
            "vmovdqa ymmword ptr [{st} + 32], {g}",
            "vaesenclast {b5}, {b5}, {k}",
            "vaesenclast {b6}, {b6}, {k}",
            "vaesenclast {b7}, {b7}, {k}",
            "vaesenclast {b8}, {b8}, {k}",
            "vaesenclast {b9}, {b9}, {k}",
            "vpxor {b0}, {b0}, ymmword ptr [{src} + 0]",
            "vmovdqu ymmword ptr [{dst} + 0], {b0}",
            "vpxor {b1}, {b1}, ymmword ptr [{src} + 32]",
            "vmovdqu ymmword ptr [{dst} + 32], {b1}",
            "vpxor {b2}, {b2}, ymmword ptr [{src} + 64]",
            "vmovdqu ymmword ptr [{dst} + 64], {b2}",
            "vpxor {b3}, {b3}, ymmword ptr [{src} + 96]",
            "vmovdqu ymmword ptr [{dst} + 96], {b3}",
            "vpxor {b4}, {b4}, ymmword ptr [{src} + 128]",
            "vmovdqu ymmword ptr [{dst} + 128], {b4}",
            "vpxor {b5}, {b5}, ymmword ptr [{src} + 160]",
            "vmovdqu ymmword ptr [{dst} + 160], {b5}",
            "vpxor {b6}, {b6}, ymmword ptr [{src} + 192]",
            "vmovdqu ymmword ptr [{dst} + 192], {b6}",
            "vpxor {b7}, {b7}, ymmword ptr [{src} + 224]",
            "vmovdqu ymmword ptr [{dst} + 224], {b7}",
            "vpxor {b8}, {b8}, ymmword ptr [{src} + 256]",
            "vmovdqu ymmword ptr [{dst} + 256], {b8}",
            "vpxor {b9}, {b9}, ymmword ptr [{src} + 288]",
            "vmovdqu ymmword ptr [{dst} + 288], {b9}",

            rk = in(reg) $rk,
            hp = in(reg) $hp,
            hk = in(reg) $hk,
            cst = in(reg) $cst,
            st = in(reg) $st,
            src = in(reg) $src,
            dst = in(reg) $dst,
            gsrc = in(reg) $gsrc,
            b0 = out(ymm_reg) _,
            b1 = out(ymm_reg) _,
            b2 = out(ymm_reg) _,
            b3 = out(ymm_reg) _,
            b4 = out(ymm_reg) _,
            b5 = out(ymm_reg) _,
            b6 = out(ymm_reg) _,
            b7 = out(ymm_reg) _,
            b8 = out(ymm_reg) _,
            b9 = out(ymm_reg) _,
            k = out(ymm_reg) _,
            g = out(ymm_reg) _,
            t1 = out(ymm_reg) _,
            lo = out(ymm_reg) _,
            mi = out(ymm_reg) _,
            hi = out(ymm_reg) _,
            options(nostack, preserves_flags),
        )
    };
}

/// Encrypts one `2N`-block chunk from `src` to `dst` without stitching;
/// returns the byte-reflected ciphertext for GHASH.
///
/// # Safety
/// CPU features (token); `src` readable and `dst` writable for `32N` bytes
/// (may be equal).
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
unsafe fn ctr_chunk<const N: usize>(
    _t: Vaes256Token,
    rk: &[__m256i; 15],
    ctr: &mut __m256i,
    src: *const u8,
    dst: *mut u8,
) -> [__m256i; N] {
    let bs = bswap_mask();
    let mut b = counters::<N>(ctr, rk[0]);
    aes_rounds(&mut b, rk);
    for (j, v) in b.iter_mut().enumerate() {
        // SAFETY: 32j + 32 <= 32N, within the caller's guarantee; the load
        // precedes the store, so src == dst is fine.
        unsafe {
            let c = _mm256_xor_si256(_mm256_loadu_si256(src.add(32 * j).cast()), *v);
            _mm256_storeu_si256(dst.add(32 * j).cast(), c);
            *v = _mm256_shuffle_epi8(c, bs);
        }
    }
    b
}

/// GCM-AE (§7.1): encrypts `len` bytes from `src` to `dst`, returns the tag.
///
/// # Safety
/// CPU features (token); `src` readable and `dst` writable for `len` bytes;
/// they are either identical or non-overlapping; `len` and `aad.len()`
/// within SP 800-38D limits (so the 32-bit counter cannot wrap).
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
unsafe fn seal_raw(
    t: Vaes256Token,
    key: &Vaes256Schedule,
    nonce: &[u8; 12],
    aad: &[u8],
    src: *const u8,
    dst: *mut u8,
    len: usize,
) -> [u8; 16] {
    // SAFETY: features proved by `t`; `aad` is a valid slice.
    let Setup {
        rk,
        pw,
        mut ctr,
        mut ekj0,
        mut x,
    } = unsafe { setup(t, key, nonce, aad) };
    let bs = bswap_mask();
    let mut i = 0;
    if len >= 32 * NV {
        // Prologue: first 20 blocks, nothing to hash yet. GHASH then lags
        // AES by one iteration, so its multiplies are ready at once.
        // SAFETY: 32 * NV <= len bytes of src/dst.
        unsafe { ctr_chunk::<NV>(t, rk, &mut ctr, src, dst) };
        i = 32 * NV;
        let cst = Consts {
            bs,
            inc2: inc_by(2),
            poly: _mm256_broadcastsi128_si256(gfpoly128()),
        };
        let mut st = LoopState {
            ctr,
            x: _mm256_zextsi128_si256(x),
        };
        while len - i >= 32 * NV {
            // SAFETY: `rk` is 15 aligned round keys, `pw.hp`/`pw.hk` NV ymm
            // each, `cst` a `Consts`, `st` a `LoopState`; src/dst offsets
            // i..i+320 <= len are in bounds, and the GHASH input
            // dst[i-320..i] (written by the previous iteration or the
            // prologue) too.
            unsafe {
                iter20_asm!(
                    rk.as_ptr(),
                    pw.hp.as_ptr(),
                    pw.hk.as_ptr(),
                    &cst,
                    &mut st,
                    src.add(i),
                    dst.add(i),
                    dst.add(i - 32 * NV)
                );
            }
            i += 32 * NV;
        }
        ctr = st.ctr;
        x = _mm256_castsi256_si128(st.x);
        // The GHASH state lived in memory during the loop (see `LoopState`).
        st.x.zeroize();
        let mut g = [_mm256_setzero_si256(); NV];
        for (j, v) in g.iter_mut().enumerate() {
            // SAFETY: i - 320 + 32j + 32 <= i <= len.
            *v = _mm256_shuffle_epi8(
                unsafe { _mm256_loadu_si256(dst.add(i - 32 * NV + 32 * j).cast()) },
                bs,
            );
        }
        x = ghash_n(x, &g, pw);
    }
    if len - i >= 256 {
        // SAFETY: i + 256 <= len.
        let g = unsafe { ctr_chunk::<8>(t, rk, &mut ctr, src.add(i), dst.add(i)) };
        x = ghash_n(x, &g, pw);
        i += 256;
    }
    // SAFETY: offsets i..len are inside both buffers; r = len - i < 256.
    x = unsafe { tail(t, key, rk, ctr, x, src.add(i), dst.add(i), len - i, true) };
    let tag = finish(key.h_pow(), x, ekj0, aad.len(), len);
    wipe_call_state(&mut ekj0, &mut x);
    tag
}

/// GCM-AD (§7.2) without the tag check: decrypts `len` bytes from `src` to
/// `dst` and returns the expected tag computed over the ciphertext.
///
/// # Safety
/// As for [`seal_raw`].
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
unsafe fn open_raw(
    t: Vaes256Token,
    key: &Vaes256Schedule,
    nonce: &[u8; 12],
    aad: &[u8],
    src: *const u8,
    dst: *mut u8,
    len: usize,
) -> [u8; 16] {
    // SAFETY: features proved by `t`; `aad` is a valid slice.
    let Setup {
        rk,
        pw,
        ctr,
        mut ekj0,
        mut x,
    } = unsafe { setup(t, key, nonce, aad) };
    let bs = bswap_mask();
    let mut i = 0;
    // Stitched loop: the ciphertext is the input, hashed in the same iteration.
    let cst = Consts {
        bs,
        inc2: inc_by(2),
        poly: _mm256_broadcastsi128_si256(gfpoly128()),
    };
    let mut st = LoopState {
        ctr,
        x: _mm256_zextsi128_si256(x),
    };
    while len - i >= 32 * NV {
        // SAFETY: `rk` is 15 aligned round keys, `pw.hp`/`pw.hk` NV ymm each,
        // `cst` a `Consts`, `st` a `LoopState`; offsets i..i+320 <= len of
        // src (read, also as GHASH input) and dst (written) are in bounds.
        unsafe {
            iter20_asm!(
                rk.as_ptr(),
                pw.hp.as_ptr(),
                pw.hk.as_ptr(),
                &cst,
                &mut st,
                src.add(i),
                dst.add(i),
                src.add(i)
            );
        }
        i += 32 * NV;
    }
    let mut ctr = st.ctr;
    x = _mm256_castsi256_si128(st.x);
    // The GHASH state lived in memory during the loop (see `LoopState`).
    st.x.zeroize();
    if len - i >= 256 {
        let mut g = [_mm256_setzero_si256(); 8];
        for (j, v) in g.iter_mut().enumerate() {
            // SAFETY: i + 32j + 32 <= i + 256 <= len.
            *v = _mm256_shuffle_epi8(
                unsafe { _mm256_loadu_si256(src.add(i + 32 * j).cast()) },
                bs,
            );
        }
        x = ghash_n(x, &g, pw);
        // SAFETY: i + 256 <= len; hashed above, before any in-place overwrite.
        unsafe { ctr_chunk::<8>(t, rk, &mut ctr, src.add(i), dst.add(i)) };
        i += 256;
    }
    // SAFETY: offsets i..len are inside both buffers; r = len - i < 256.
    x = unsafe { tail(t, key, rk, ctr, x, src.add(i), dst.add(i), len - i, false) };
    let tag = finish(key.h_pow(), x, ekj0, aad.len(), len);
    wipe_call_state(&mut ekj0, &mut x);
    tag
}

// ---------------------------------------------------------------------------
// Partial opens (range reads): the tag by GHASH alone, then AES-CTR over only
// the bytes delivered.
// ---------------------------------------------------------------------------

/// The GCM tag of (`aad`, the `len` bytes of ciphertext at `ct`) without
/// decrypting: GHASH over both (§7.2 step 5-6), masked with E(K, J0).
///
/// # Safety
/// CPU features (token); `ct` readable for `len` bytes; `len` and
/// `aad.len()` within SP 800-38D limits.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
unsafe fn tag_raw(
    t: Vaes256Token,
    key: &Vaes256Schedule,
    nonce: &[u8; 12],
    aad: &[u8],
    ct: *const u8,
    len: usize,
) -> [u8; 16] {
    // SAFETY: features proved by `t`; `aad` is a valid slice.
    let Setup {
        pw,
        mut ekj0,
        mut x,
        ..
    } = unsafe { setup(t, key, nonce, aad) };
    // SAFETY: caller's guarantee for `ct`/`len`.
    x = unsafe { ghash_bytes(t, key.h_pow(), pw, x, ct, len) };
    let tag = finish(key.h_pow(), x, ekj0, aad.len(), len);
    wipe_call_state(&mut ekj0, &mut x);
    tag
}

/// XORs the keystream of `N` ymm (`2N` blocks) from `*ctr` into the `32N`
/// bytes at `p` in place, round-major so the `N` AES chains interleave;
/// advances `*ctr` by `2N`.
///
/// # Safety
/// CPU features (token); `p` readable and writable for `32N` bytes.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
unsafe fn ctr_only<const N: usize>(rk: &[__m256i; 15], ctr: &mut __m256i, p: *mut u8) {
    let mut b = counters::<N>(ctr, rk[0]);
    aes_rounds(&mut b, rk);
    for (j, v) in b.iter().enumerate() {
        // SAFETY: 32j + 32 <= 32N, within the caller's guarantee.
        unsafe {
            let q = p.add(32 * j);
            let d = _mm256_loadu_si256(q.cast());
            _mm256_storeu_si256(q.cast(), _mm256_xor_si256(d, *v));
        }
    }
}

/// XORs the GCTR keystream into the `len` bytes at `p` in place, starting at
/// data block `block` of the message (counter `inc32(J0) + block`): ten
/// counter chains (20 blocks) per step, as many as the sixteen ymm registers
/// hold with a round key, then eight, then a padded tail.
///
/// # Safety
/// CPU features (token); `p` readable and writable for `len` bytes;
/// `16 * block + len` within the SP 800-38D message limit (no counter wrap).
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
unsafe fn ctr_raw(
    t: Vaes256Token,
    key: &Vaes256Schedule,
    nonce: &[u8; 12],
    block: u32,
    p: *mut u8,
    len: usize,
) {
    // No AAD: the GHASH part of the set-up is empty; E(K, J0) is not needed.
    // SAFETY: features proved by `t`; the empty AAD is a valid slice.
    let Setup {
        rk,
        ctr,
        mut ekj0,
        mut x,
        ..
    } = unsafe { setup(t, key, nonce, &[]) };
    wipe_call_state(&mut ekj0, &mut x);
    // Both lanes advance by `block` (wrapping inc32, §6.2).
    let mut ctr = _mm256_add_epi32(
        ctr,
        _mm256_broadcastsi128_si256(_mm_set_epi32(0, 0, 0, block as i32)),
    );
    let mut i = 0;
    while len - i >= 32 * NV {
        // SAFETY: i + 320 <= len.
        unsafe { ctr_only::<NV>(rk, &mut ctr, p.add(i)) };
        i += 32 * NV;
    }
    if len - i >= 256 {
        // SAFETY: i + 256 <= len.
        unsafe { ctr_only::<8>(rk, &mut ctr, p.add(i)) };
        i += 256;
    }
    let r = len - i;
    if r > 0 {
        let mut pad = Pad([0u8; 256]);
        let buf = &mut pad.0;
        // SAFETY: `p.add(i)` is valid for `r < 256` reads and writes; `buf`
        // is a distinct local.
        unsafe { core::ptr::copy_nonoverlapping(p.add(i), buf.as_mut_ptr(), r) };
        ctr_padded(rk, ctr, buf, r);
        // SAFETY: as above.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), p.add(i), r) };
        pad.wipe();
    }
}
