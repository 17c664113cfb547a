//! AES-256-GCM with AES-NI + PCLMULQDQ over 128-bit registers, for CPUs that
//! have no vector AES (Intel Skylake to Cascade Lake, AMD Zen 2 and older):
//! the kernel the engine uses there instead of RustCrypto's two-pass code.
//!
//! # Construction (NIST SP 800-38D)
//! * GCM-AE / GCM-AD (§7.1 / §7.2) with a 96-bit IV: `J0 = IV || 0^31 || 1`,
//!   keystream `GCTR(inc32(J0), ·)` (§6.5), tag
//!   `GHASH_H(A || 0^v || C || 0^u || [len(A)]_64 || [len(C)]_64) ⊕ E(K, J0)`.
//! * GHASH (§6.4), `X_i = (X_{i-1} ⊕ B_i) · H`, is unrolled over 8 blocks with
//!   precomputed `H^8..H^1`, so the 8 products are independent and only their
//!   sum is reduced (aggregated reduction, one per 8 blocks).
//!
//! # Why the design is as it is
//! * *Stitching*, as in OpenSSL's / aws-lc's `aesni-gcm-x86_64.pl`: each
//!   iteration runs the 14 AES rounds of 8 counter blocks and, between the
//!   rounds, the GHASH of 8 ciphertext blocks, so AESENC (AES unit) and
//!   PCLMULQDQ (another port) issue side by side instead of in two passes.
//!   Sealing hashes the previous iteration's ciphertext (read back from the
//!   output, where it was just stored); opening hashes its own input.
//! * 8 blocks, not aws-lc's 6: AESENC has 3-4 cycles of latency and issues
//!   one (Skylake, Zen 2) or two (Ice Lake and later) per cycle, so 8
//!   independent chains keep the unit busy on all of them, and 8 states plus
//!   the GHASH accumulators still fit the 16 xmm registers (the round keys
//!   and key powers are memory operands, read from the key schedule).
//! * Karatsuba products (three PCLMULQDQ per block instead of four, with the
//!   `hi ^ lo` halves of the powers precomputed in the key), plus one
//!   two-multiply reduction per 8 blocks: 26 PCLMULQDQ per 112 AESENC.
//! * Same field representation as the VAES kernels (after Eric Biggers'
//!   Linux/BoringSSL `aes-gcm-avx2`): byte-reflected blocks, H preprocessed
//!   by a 1-bit shift, and a two-multiply Montgomery-style reduction by
//!   `0xc2 << 56`.
//! * The bulk iteration is inline assembly (`asm!`, generated round by round:
//!   one GHASH block's loads, shuffles and three multiplies spread over the
//!   eight AESENC of each of rounds 1-8, the reduction over rounds 9-10).
//!   Written with intrinsics first, the same loop ran at about 0.65× the
//!   assembly's speed (3.1 against 4.8 GB/s, best of 30 runs at 64 KiB on the
//!   Xeon of docs/PERFORMANCE.md): LLVM reordered it block by block (14
//!   dependent AESENC per block in a row), hoisted the GHASH work ahead of
//!   the AES rounds and spilled the round keys to the stack. Set-up, tails,
//!   AAD and the counters stay in intrinsics.
//! * Counters are byte-reflected, so `inc32` is one PADDD (wraps mod 2^32 as
//!   §6.2 requires; the §5.2.1.1 length limit means it never does).
//! * The final partial group of fewer than 8 blocks goes through a
//!   zero-padded stack buffer (no masked loads before AVX-512), which is
//!   wiped afterwards.
//! * Required CPU features, exactly: `aes, pclmulqdq, avx` (AVX for the
//!   three-operand VEX encodings, which save register copies; every CPU with
//!   AES-NI since Sandy Bridge / Bulldozer has it). Only VEX-encoded xmm code
//!   is emitted: no ymm, no AVX2, no AVX-512.
//!
//! All `unsafe` of this kernel is in this file.
#![allow(unsafe_code)] // SIMD intrinsics: this file is the only place the kernel's unsafe lives

use core::arch::asm;
use core::arch::x86_64::*;

use zeroize::Zeroize;

use super::CpuFeatures;
use super::common::{Buffers, CtrSpan, Kernel, TagInput};

/// Zero-sized proof that the CPU features this kernel needs were detected.
/// Only [`AesNiToken::detect`] creates it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AesNiToken(());

impl AesNiToken {
    /// Whether `f` has every feature in this file's
    /// `#[target_feature(enable = "aes,pclmulqdq,avx")]` lists.
    pub(crate) fn supported_by(f: &CpuFeatures) -> bool {
        f.aes && f.pclmulqdq && f.avx
    }

    /// Returns a token if and only if this CPU has every feature [`Self::supported_by`]
    /// lists, as the one detector ([`CpuFeatures::detect`]) reports them.
    pub(crate) fn detect() -> Option<Self> {
        Self::supported_by(&CpuFeatures::detect()).then_some(Self(()))
    }
}

/// Blocks per bulk iteration, and so the number of GHASH key powers.
const NB: usize = 8;

/// Expanded AES-256 key and GHASH key powers; [`GcmKey`](super::common::GcmKey)
/// zeroizes them on drop. The bulk loop reads them in place (memory operands),
/// so it makes no stack copy of them.
#[derive(Zeroize)]
pub(crate) struct AesNiSchedule {
    /// AES-256 round keys 0..=14 in AES byte order.
    rk: [u128; 15],
    /// Byte-reflected, preprocessed `H^8, H^7, …, H^1`: block `j` of a group of
    /// `n` is multiplied by entry `8 - n + j`.
    h_pow: [u128; NB],
    /// Karatsuba companions: entry `i` holds `hi ^ lo` of `h_pow[i]` in its low
    /// 64 bits, so the middle partial product costs one multiply, not two.
    h_kar: [u128; NB],
}

/// The safe API ([`GcmKey`](super::common::GcmKey)) over this kernel.
impl Kernel for AesNiToken {
    const KEY_NAME: &'static str = "AesNiKey";
    type Schedule = AesNiSchedule;

    fn schedule(self, key: &[u8; 32]) -> AesNiSchedule {
        let mut s = AesNiSchedule {
            rk: [0; 15],
            h_pow: [0; NB],
            h_kar: [0; NB],
        };
        // SAFETY: `self` exists only if `detect()` found every feature that
        // `expand_key` enables; it only writes through the `&mut` schedule.
        unsafe { expand_key(self, key, &mut s) };
        s
    }

    fn seal(self, s: &AesNiSchedule, nonce: &[u8; 12], io: Buffers<'_>) -> [u8; 16] {
        // SAFETY: `self` proves the CPU features; `io` guarantees `seal_raw`'s
        // memory and length preconditions (see `Buffers`).
        unsafe { seal_raw(self, s, nonce, io.aad(), io.src(), io.dst(), io.len()) }
    }

    fn open(self, s: &AesNiSchedule, nonce: &[u8; 12], io: Buffers<'_>) -> [u8; 16] {
        // SAFETY: as in `seal`, for `open_raw`'s identical preconditions.
        unsafe { open_raw(self, s, nonce, io.aad(), io.src(), io.dst(), io.len()) }
    }

    fn tag_only(self, s: &AesNiSchedule, nonce: &[u8; 12], input: TagInput<'_>) -> [u8; 16] {
        let ct = input.ct();
        // SAFETY: `self` proves the CPU features; `ct` is a valid slice of
        // `ct.len()` bytes and `input` guarantees the length limits.
        unsafe { tag_raw(self, s, nonce, input.aad(), ct.as_ptr(), ct.len()) }
    }

    fn ctr_xor(self, s: &AesNiSchedule, nonce: &[u8; 12], mut span: CtrSpan<'_>) {
        let block = span.block();
        let buf = span.buf();
        // SAFETY: `self` proves the CPU features; `buf` is an exclusive slice
        // of `buf.len()` bytes; `span` guarantees the counters do not wrap.
        unsafe { ctr_raw(self, s, nonce, block, buf.as_mut_ptr(), buf.len()) }
    }
}

// ---------------------------------------------------------------------------
// Register-only helpers: safe `#[target_feature]` functions, callable only
// from code that already has the features; they inline into the kernels.
// ---------------------------------------------------------------------------

/// Byte reversal: GCM blocks are big-endian, PCLMULQDQ and PADDD little-endian.
#[target_feature(enable = "aes,pclmulqdq,avx")]
#[inline]
fn bswap_mask() -> __m128i {
    _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)
}

/// x^128 + x^7 + x^2 + x + 1 in the reflected form used by the reduction;
/// only the high qword (0xc2 << 56) is multiplied.
#[target_feature(enable = "aes,pclmulqdq,avx")]
#[inline]
fn gfpoly() -> __m128i {
    _mm_set_epi64x(0xc200_0000_0000_0000_u64 as i64, 1)
}

#[target_feature(enable = "aes,pclmulqdq,avx")]
#[inline]
fn xor3(a: __m128i, b: __m128i, c: __m128i) -> __m128i {
    _mm_xor_si128(_mm_xor_si128(a, b), c)
}

/// Two-step Montgomery-style reduction of a (LO, MI, HI) product.
#[target_feature(enable = "aes,pclmulqdq,avx")]
#[inline]
fn reduce(lo: __m128i, mi: __m128i, hi: __m128i) -> __m128i {
    let p = gfpoly();
    let t = _mm_clmulepi64_si128::<0x01>(p, lo);
    let mi = xor3(mi, _mm_shuffle_epi32::<0x4e>(lo), t);
    let t = _mm_clmulepi64_si128::<0x01>(p, mi);
    xor3(hi, _mm_shuffle_epi32::<0x4e>(mi), t)
}

/// One GF(2^128) multiply `a · b` (b a preprocessed key power), schoolbook:
/// for the key powers and the final length block.
#[target_feature(enable = "aes,pclmulqdq,avx")]
#[inline]
fn gf_mul(a: __m128i, b: __m128i) -> __m128i {
    let lo = _mm_clmulepi64_si128::<0x00>(a, b);
    let mi = _mm_xor_si128(
        _mm_clmulepi64_si128::<0x01>(a, b),
        _mm_clmulepi64_si128::<0x10>(a, b),
    );
    let hi = _mm_clmulepi64_si128::<0x11>(a, b);
    reduce(lo, mi, hi)
}

/// Unreduced GHASH partial-product sums.
#[derive(Clone, Copy)]
struct Acc {
    lo: __m128i,
    mi: __m128i,
    hi: __m128i,
}

#[target_feature(enable = "aes,pclmulqdq,avx")]
#[inline]
fn acc_zero() -> Acc {
    let z = _mm_setzero_si128();
    Acc {
        lo: z,
        mi: z,
        hi: z,
    }
}

/// Karatsuba multiply-accumulate: `lo += a0·h0`, `hi += a1·h1`,
/// `mi += (a0^a1)·(h0^h1)` (`hk` holds `h0^h1`). The correction
/// `mi ^= lo ^ hi` is linear, so [`kreduce`] applies it once to the sums.
#[target_feature(enable = "aes,pclmulqdq,avx")]
#[inline]
fn kmul_acc(a: __m128i, h: __m128i, hk: __m128i, acc: &mut Acc) {
    let am = _mm_xor_si128(a, _mm_shuffle_epi32::<0x4e>(a));
    acc.lo = _mm_xor_si128(acc.lo, _mm_clmulepi64_si128::<0x00>(a, h));
    acc.hi = _mm_xor_si128(acc.hi, _mm_clmulepi64_si128::<0x11>(a, h));
    acc.mi = _mm_xor_si128(acc.mi, _mm_clmulepi64_si128::<0x00>(am, hk));
}

/// Karatsuba correction, then reduction.
#[target_feature(enable = "aes,pclmulqdq,avx")]
#[inline]
fn kreduce(acc: Acc) -> __m128i {
    let mi = xor3(acc.mi, acc.lo, acc.hi);
    reduce(acc.lo, mi, acc.hi)
}

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

/// Round key `i` (a memory operand where the compiler can fold it).
#[target_feature(enable = "aes,pclmulqdq,avx")]
#[inline]
fn rk(key: &AesNiSchedule, i: usize) -> __m128i {
    from_u128(key.rk[i])
}

/// Full AES-256 of one block.
#[target_feature(enable = "aes,pclmulqdq,avx")]
#[inline]
fn aes_block(key: &AesNiSchedule, b: __m128i) -> __m128i {
    let mut b = _mm_xor_si128(b, rk(key, 0));
    for i in 1..14 {
        b = _mm_aesenc_si128(b, rk(key, i));
    }
    _mm_aesenclast_si128(b, rk(key, 14))
}

/// `NB` counter blocks starting at `*ctr` (byte-reflected), swapped into AES
/// order and whitened with round key 0; advances `*ctr` by `NB`.
#[target_feature(enable = "aes,pclmulqdq,avx")]
#[inline]
fn counters(key: &AesNiSchedule, ctr: &mut __m128i) -> [__m128i; NB] {
    let bs = bswap_mask();
    let one = _mm_set_epi32(0, 0, 0, 1);
    let k0 = rk(key, 0);
    let mut b = [_mm_setzero_si128(); NB];
    for v in b.iter_mut() {
        *v = _mm_xor_si128(_mm_shuffle_epi8(*ctr, bs), k0);
        *ctr = _mm_add_epi32(*ctr, one);
    }
    b
}

/// AES rounds 1..=14 of `NB` whitened blocks, round-major so the chains interleave.
#[target_feature(enable = "aes,pclmulqdq,avx")]
#[inline]
fn aes_rounds(key: &AesNiSchedule, b: &mut [__m128i; NB]) {
    for i in 1..14 {
        let k = rk(key, i);
        for v in b.iter_mut() {
            *v = _mm_aesenc_si128(*v, k);
        }
    }
    let k = rk(key, 14);
    for v in b.iter_mut() {
        *v = _mm_aesenclast_si128(*v, k);
    }
}

/// GHASH of `n` (1..=8) byte-reflected blocks `g[..n]` into `x`, powers
/// `H^n..H^1`, one reduction.
#[target_feature(enable = "aes,pclmulqdq,avx")]
#[inline]
fn ghash_blocks(key: &AesNiSchedule, x: __m128i, g: &[__m128i; NB], n: usize) -> __m128i {
    let mut acc = acc_zero();
    let first = NB - n;
    for j in 0..n {
        let a = if j == 0 { _mm_xor_si128(g[0], x) } else { g[j] };
        kmul_acc(
            a,
            from_u128(key.h_pow[first + j]),
            from_u128(key.h_kar[first + j]),
            &mut acc,
        );
    }
    kreduce(acc)
}

/// One AES-256 key-expansion step for an even round key (RotWord+SubWord+Rcon).
#[target_feature(enable = "aes,pclmulqdq,avx")]
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
#[target_feature(enable = "aes,pclmulqdq,avx")]
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

/// AES-256 key expansion (FIPS 197 §5.2) and GHASH key powers.
///
/// # Safety
/// The CPU must support every feature enabled on this function; holding an
/// [`AesNiToken`] (passed by value) proves it.
#[target_feature(enable = "aes,pclmulqdq,avx")]
unsafe fn expand_key(_t: AesNiToken, key: &[u8; 32], s: &mut AesNiSchedule) {
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
    for (dst, v) in s.rk.iter_mut().zip(r.iter()) {
        *dst = to_u128(*v);
    }
    r.zeroize();

    // H = E(K, 0^128) (§6.4 / §7.1 step 1).
    let h = aes_block(s, _mm_setzero_si128());
    // Byte-reflect H, then multiply by x^-1 in GCM's bit order (a left shift
    // of the reflected value with the carry folded back in), which absorbs
    // the extra factor of x in the carry-less product of reflected operands.
    let hr = to_u128(_mm_shuffle_epi8(h, bswap_mask()));
    let carry = hr >> 127;
    let h1 = (hr << 1) ^ (carry.wrapping_neg() & 0xc200_0000_0000_0000_0000_0000_0000_0001);
    let h1v = from_u128(h1);
    s.h_pow[NB - 1] = h1;
    let mut cur = h1v;
    for i in (0..NB - 1).rev() {
        cur = gf_mul(cur, h1v);
        s.h_pow[i] = to_u128(cur);
    }
    for (k, h) in s.h_kar.iter_mut().zip(s.h_pow.iter()) {
        *k = (*h ^ (*h >> 64)) as u64 as u128;
    }
}

/// `NB` whitened counter blocks for counter value `c` (the 32-bit block
/// counter) under the byte-swapped `J0` prefix `nb`. When the low byte of `c`
/// does not carry within the group (31 groups in 32), the counters are one
/// byte-add each in AES byte order, without the byte swaps of [`counters`].
#[target_feature(enable = "aes,pclmulqdq,avx")]
#[inline]
fn counters_be(key: &AesNiSchedule, nb: __m128i, c: u32) -> [__m128i; NB] {
    let k0 = rk(key, 0);
    let mut b = [_mm_setzero_si128(); NB];
    if c & 0xff <= 0xff - (NB as u32 - 1) {
        let base = _mm_insert_epi32::<3>(nb, c.swap_bytes() as i32);
        for (j, v) in b.iter_mut().enumerate() {
            // Byte 15 (the counter's least significant byte) plus j.
            let inc = _mm_set_epi8(j as i8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
            *v = _mm_xor_si128(_mm_add_epi8(base, inc), k0);
        }
    } else {
        for (j, v) in b.iter_mut().enumerate() {
            let cj = c.wrapping_add(j as u32).swap_bytes() as i32;
            *v = _mm_xor_si128(_mm_insert_epi32::<3>(nb, cj), k0);
        }
    }
    b
}

/// Constants the assembly loop reads as memory operands (no register is left
/// for them). `repr(C)`: the loop addresses the fields at byte offsets 0 and 16.
#[repr(C)]
struct Consts {
    /// [`bswap_mask`].
    bs: __m128i,
    /// [`gfpoly`]: the reduction constant `0xc2 << 56` in the high qword.
    poly: __m128i,
}

/// The stitched bulk loop over `n` groups of 8 blocks: encrypts (or decrypts)
/// `src` into `dst` with the next counters, and meanwhile hashes 8 ciphertext
/// blocks per group into `x`: for sealing (`SEAL`) the group stored one step
/// earlier (`dst - 128`), for opening the group being decrypted. Returns the
/// new GHASH state and advances `*ctr` by `8n`.
///
/// # Safety
/// CPU features (token); `src` readable and `dst` writable for `128n` bytes,
/// identical or disjoint; when `SEAL`, `dst - 128` is readable for 128 bytes
/// (the previous group's ciphertext) and part of the same allocation.
#[target_feature(enable = "aes,pclmulqdq,avx")]
#[allow(clippy::too_many_arguments)] // internal kernel entry; grouping would only add a struct
unsafe fn bulk<const SEAL: bool>(
    _t: AesNiToken,
    key: &AesNiSchedule,
    ctr: &mut __m128i,
    mut x: __m128i,
    src: *const u8,
    dst: *mut u8,
    n: usize,
) -> __m128i {
    let cst = Consts {
        bs: bswap_mask(),
        poly: gfpoly(),
    };
    let nb = _mm_shuffle_epi8(*ctr, cst.bs);
    let mut c = _mm_cvtsi128_si32(*ctr) as u32;
    for it in 0..n {
        let off = 16 * NB * it;
        // SAFETY: `off + 128 <= 128n`; the GHASH input is `dst[off-128..off]`
        // (seal, readable by the caller's guarantee, disjoint from the bytes
        // written below) or `src[off..off+128]` (open, read in full before
        // the first store).
        let (s, d, g) = unsafe {
            let s = src.add(off);
            let d = dst.add(off);
            let g = if SEAL { d.sub(16 * NB).cast_const() } else { s };
            (s, d, g)
        };
        let [b0, b1, b2, b3, b4, b5, b6, b7] = counters_be(key, nb, c);
        c = c.wrapping_add(NB as u32);
        // SAFETY: `asm!` reads the 15 round keys, 8 key powers and 8 Karatsuba
        // companions of `key` (u128 arrays) and the two constants of `cst`;
        // 128 bytes at `s` and `g`, and writes 128 bytes at `d`, all in bounds
        // as argued above, the `g` loads all before the first store. It uses
        // only the xmm registers it declares, no stack, and leaves flags alone.
        // Only VEX-encoded AES-NI, PCLMULQDQ and AVX instructions on xmm.
        unsafe {
            asm!(
            "vmovdqu {k}, xmmword ptr [{rk} + 16]",
            "vaesenc {b0}, {b0}, {k}",
            "vmovdqu {g}, xmmword ptr [{gsrc} + 0]",
            "vaesenc {b1}, {b1}, {k}",
            "vpshufb {g}, {g}, xmmword ptr [{cst}]",
            "vaesenc {b2}, {b2}, {k}",
            "vpxor {g}, {g}, {x}",
            "vaesenc {b3}, {b3}, {k}",
            "vpclmulqdq {lo}, {g}, xmmword ptr [{hp} + 0], 0x00",
            "vaesenc {b4}, {b4}, {k}",
            "vpclmulqdq {hi}, {g}, xmmword ptr [{hp} + 0], 0x11",
            "vaesenc {b5}, {b5}, {k}",
            "vpshufd {t}, {g}, 0x4e",
            "vaesenc {b6}, {b6}, {k}",
            "vpxor {g}, {g}, {t}",
            "vaesenc {b7}, {b7}, {k}",
            "vpclmulqdq {mi}, {g}, xmmword ptr [{hk} + 0], 0x00",
            "vmovdqu {k}, xmmword ptr [{rk} + 32]",
            "vaesenc {b0}, {b0}, {k}",
            "vmovdqu {g}, xmmword ptr [{gsrc} + 16]",
            "vaesenc {b1}, {b1}, {k}",
            "vpshufb {g}, {g}, xmmword ptr [{cst}]",
            "vaesenc {b2}, {b2}, {k}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hp} + 16], 0x00",
            "vaesenc {b3}, {b3}, {k}",
            "vpxor {lo}, {lo}, {t}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hp} + 16], 0x11",
            "vaesenc {b4}, {b4}, {k}",
            "vpxor {hi}, {hi}, {t}",
            "vaesenc {b5}, {b5}, {k}",
            "vpshufd {t}, {g}, 0x4e",
            "vaesenc {b6}, {b6}, {k}",
            "vpxor {g}, {g}, {t}",
            "vaesenc {b7}, {b7}, {k}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hk} + 16], 0x00",
            "vpxor {mi}, {mi}, {t}",
            "vmovdqu {k}, xmmword ptr [{rk} + 48]",
            "vaesenc {b0}, {b0}, {k}",
            "vmovdqu {g}, xmmword ptr [{gsrc} + 32]",
            "vaesenc {b1}, {b1}, {k}",
            "vpshufb {g}, {g}, xmmword ptr [{cst}]",
            "vaesenc {b2}, {b2}, {k}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hp} + 32], 0x00",
            "vaesenc {b3}, {b3}, {k}",
            "vpxor {lo}, {lo}, {t}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hp} + 32], 0x11",
            "vaesenc {b4}, {b4}, {k}",
            "vpxor {hi}, {hi}, {t}",
            "vaesenc {b5}, {b5}, {k}",
            "vpshufd {t}, {g}, 0x4e",
            "vaesenc {b6}, {b6}, {k}",
            "vpxor {g}, {g}, {t}",
            "vaesenc {b7}, {b7}, {k}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hk} + 32], 0x00",
            "vpxor {mi}, {mi}, {t}",
            "vmovdqu {k}, xmmword ptr [{rk} + 64]",
            "vaesenc {b0}, {b0}, {k}",
            "vmovdqu {g}, xmmword ptr [{gsrc} + 48]",
            "vaesenc {b1}, {b1}, {k}",
            "vpshufb {g}, {g}, xmmword ptr [{cst}]",
            "vaesenc {b2}, {b2}, {k}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hp} + 48], 0x00",
            "vaesenc {b3}, {b3}, {k}",
            "vpxor {lo}, {lo}, {t}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hp} + 48], 0x11",
            "vaesenc {b4}, {b4}, {k}",
            "vpxor {hi}, {hi}, {t}",
            "vaesenc {b5}, {b5}, {k}",
            "vpshufd {t}, {g}, 0x4e",
            "vaesenc {b6}, {b6}, {k}",
            "vpxor {g}, {g}, {t}",
            "vaesenc {b7}, {b7}, {k}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hk} + 48], 0x00",
            "vpxor {mi}, {mi}, {t}",
            "vmovdqu {k}, xmmword ptr [{rk} + 80]",
            "vaesenc {b0}, {b0}, {k}",
            "vmovdqu {g}, xmmword ptr [{gsrc} + 64]",
            "vaesenc {b1}, {b1}, {k}",
            "vpshufb {g}, {g}, xmmword ptr [{cst}]",
            "vaesenc {b2}, {b2}, {k}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hp} + 64], 0x00",
            "vaesenc {b3}, {b3}, {k}",
            "vpxor {lo}, {lo}, {t}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hp} + 64], 0x11",
            "vaesenc {b4}, {b4}, {k}",
            "vpxor {hi}, {hi}, {t}",
            "vaesenc {b5}, {b5}, {k}",
            "vpshufd {t}, {g}, 0x4e",
            "vaesenc {b6}, {b6}, {k}",
            "vpxor {g}, {g}, {t}",
            "vaesenc {b7}, {b7}, {k}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hk} + 64], 0x00",
            "vpxor {mi}, {mi}, {t}",
            "vmovdqu {k}, xmmword ptr [{rk} + 96]",
            "vaesenc {b0}, {b0}, {k}",
            "vmovdqu {g}, xmmword ptr [{gsrc} + 80]",
            "vaesenc {b1}, {b1}, {k}",
            "vpshufb {g}, {g}, xmmword ptr [{cst}]",
            "vaesenc {b2}, {b2}, {k}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hp} + 80], 0x00",
            "vaesenc {b3}, {b3}, {k}",
            "vpxor {lo}, {lo}, {t}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hp} + 80], 0x11",
            "vaesenc {b4}, {b4}, {k}",
            "vpxor {hi}, {hi}, {t}",
            "vaesenc {b5}, {b5}, {k}",
            "vpshufd {t}, {g}, 0x4e",
            "vaesenc {b6}, {b6}, {k}",
            "vpxor {g}, {g}, {t}",
            "vaesenc {b7}, {b7}, {k}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hk} + 80], 0x00",
            "vpxor {mi}, {mi}, {t}",
            "vmovdqu {k}, xmmword ptr [{rk} + 112]",
            "vaesenc {b0}, {b0}, {k}",
            "vmovdqu {g}, xmmword ptr [{gsrc} + 96]",
            "vaesenc {b1}, {b1}, {k}",
            "vpshufb {g}, {g}, xmmword ptr [{cst}]",
            "vaesenc {b2}, {b2}, {k}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hp} + 96], 0x00",
            "vaesenc {b3}, {b3}, {k}",
            "vpxor {lo}, {lo}, {t}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hp} + 96], 0x11",
            "vaesenc {b4}, {b4}, {k}",
            "vpxor {hi}, {hi}, {t}",
            "vaesenc {b5}, {b5}, {k}",
            "vpshufd {t}, {g}, 0x4e",
            "vaesenc {b6}, {b6}, {k}",
            "vpxor {g}, {g}, {t}",
            "vaesenc {b7}, {b7}, {k}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hk} + 96], 0x00",
            "vpxor {mi}, {mi}, {t}",
            "vmovdqu {k}, xmmword ptr [{rk} + 128]",
            "vaesenc {b0}, {b0}, {k}",
            "vmovdqu {g}, xmmword ptr [{gsrc} + 112]",
            "vaesenc {b1}, {b1}, {k}",
            "vpshufb {g}, {g}, xmmword ptr [{cst}]",
            "vaesenc {b2}, {b2}, {k}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hp} + 112], 0x00",
            "vaesenc {b3}, {b3}, {k}",
            "vpxor {lo}, {lo}, {t}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hp} + 112], 0x11",
            "vaesenc {b4}, {b4}, {k}",
            "vpxor {hi}, {hi}, {t}",
            "vaesenc {b5}, {b5}, {k}",
            "vpshufd {t}, {g}, 0x4e",
            "vaesenc {b6}, {b6}, {k}",
            "vpxor {g}, {g}, {t}",
            "vaesenc {b7}, {b7}, {k}",
            "vpclmulqdq {t}, {g}, xmmword ptr [{hk} + 112], 0x00",
            "vpxor {mi}, {mi}, {t}",
            "vmovdqu {k}, xmmword ptr [{rk} + 144]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vpxor {mi}, {mi}, {lo}",
            "vaesenc {b2}, {b2}, {k}",
            "vpxor {mi}, {mi}, {hi}",
            "vaesenc {b3}, {b3}, {k}",
            "vpclmulqdq {t}, {lo}, xmmword ptr [{cst} + 16], 0x10",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vpshufd {g}, {lo}, 0x4e",
            "vaesenc {b6}, {b6}, {k}",
            "vpxor {mi}, {mi}, {g}",
            "vaesenc {b7}, {b7}, {k}",
            "vpxor {mi}, {mi}, {t}",
            "vmovdqu {k}, xmmword ptr [{rk} + 160]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vpclmulqdq {t}, {mi}, xmmword ptr [{cst} + 16], 0x10",
            "vaesenc {b2}, {b2}, {k}",
            "vaesenc {b3}, {b3}, {k}",
            "vpshufd {g}, {mi}, 0x4e",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vpxor {hi}, {hi}, {g}",
            "vaesenc {b6}, {b6}, {k}",
            "vaesenc {b7}, {b7}, {k}",
            "vpxor {x}, {hi}, {t}",
            "vmovdqu {k}, xmmword ptr [{rk} + 176]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vaesenc {b2}, {b2}, {k}",
            "vaesenc {b3}, {b3}, {k}",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vaesenc {b6}, {b6}, {k}",
            "vaesenc {b7}, {b7}, {k}",
            "vmovdqu {k}, xmmword ptr [{rk} + 192]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vaesenc {b2}, {b2}, {k}",
            "vaesenc {b3}, {b3}, {k}",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vaesenc {b6}, {b6}, {k}",
            "vaesenc {b7}, {b7}, {k}",
            "vmovdqu {k}, xmmword ptr [{rk} + 208]",
            "vaesenc {b0}, {b0}, {k}",
            "vaesenc {b1}, {b1}, {k}",
            "vaesenc {b2}, {b2}, {k}",
            "vaesenc {b3}, {b3}, {k}",
            "vaesenc {b4}, {b4}, {k}",
            "vaesenc {b5}, {b5}, {k}",
            "vaesenc {b6}, {b6}, {k}",
            "vaesenc {b7}, {b7}, {k}",
            "vmovdqu {k}, xmmword ptr [{rk} + 224]",
            "vpxor {t}, {k}, xmmword ptr [{src} + 0]",
            "vaesenclast {b0}, {b0}, {t}",
            "vmovdqu xmmword ptr [{dst} + 0], {b0}",
            "vpxor {t}, {k}, xmmword ptr [{src} + 16]",
            "vaesenclast {b1}, {b1}, {t}",
            "vmovdqu xmmword ptr [{dst} + 16], {b1}",
            "vpxor {t}, {k}, xmmword ptr [{src} + 32]",
            "vaesenclast {b2}, {b2}, {t}",
            "vmovdqu xmmword ptr [{dst} + 32], {b2}",
            "vpxor {t}, {k}, xmmword ptr [{src} + 48]",
            "vaesenclast {b3}, {b3}, {t}",
            "vmovdqu xmmword ptr [{dst} + 48], {b3}",
            "vpxor {t}, {k}, xmmword ptr [{src} + 64]",
            "vaesenclast {b4}, {b4}, {t}",
            "vmovdqu xmmword ptr [{dst} + 64], {b4}",
            "vpxor {t}, {k}, xmmword ptr [{src} + 80]",
            "vaesenclast {b5}, {b5}, {t}",
            "vmovdqu xmmword ptr [{dst} + 80], {b5}",
            "vpxor {t}, {k}, xmmword ptr [{src} + 96]",
            "vaesenclast {b6}, {b6}, {t}",
            "vmovdqu xmmword ptr [{dst} + 96], {b6}",
            "vpxor {t}, {k}, xmmword ptr [{src} + 112]",
            "vaesenclast {b7}, {b7}, {t}",
            "vmovdqu xmmword ptr [{dst} + 112], {b7}",
                rk = in(reg) key.rk.as_ptr(),
                hp = in(reg) key.h_pow.as_ptr(),
                hk = in(reg) key.h_kar.as_ptr(),
                cst = in(reg) &cst,
                src = in(reg) s,
                dst = in(reg) d,
                gsrc = in(reg) g,
                b0 = inout(xmm_reg) b0 => _,
                b1 = inout(xmm_reg) b1 => _,
                b2 = inout(xmm_reg) b2 => _,
                b3 = inout(xmm_reg) b3 => _,
                b4 = inout(xmm_reg) b4 => _,
                b5 = inout(xmm_reg) b5 => _,
                b6 = inout(xmm_reg) b6 => _,
                b7 = inout(xmm_reg) b7 => _,
                x = inout(xmm_reg) x,
                k = out(xmm_reg) _,
                g = out(xmm_reg) _,
                t = out(xmm_reg) _,
                lo = out(xmm_reg) _,
                mi = out(xmm_reg) _,
                hi = out(xmm_reg) _,
                options(nostack, preserves_flags),
            );
        }
    }
    *ctr = _mm_insert_epi32::<0>(*ctr, c as i32);
    x
}

/// Encrypts 8 blocks from `src` to `dst` without hashing (seal's prologue).
///
/// # Safety
/// CPU features (token); `src` readable and `dst` writable for 128 bytes
/// (identical or disjoint).
#[target_feature(enable = "aes,pclmulqdq,avx")]
unsafe fn ctr8(
    _t: AesNiToken,
    key: &AesNiSchedule,
    ctr: &mut __m128i,
    src: *const u8,
    dst: *mut u8,
) {
    let mut b = counters(key, ctr);
    aes_rounds(key, &mut b);
    for (j, v) in b.iter().enumerate() {
        // SAFETY: 16j + 16 <= 128; the load precedes the store.
        unsafe {
            let d = _mm_loadu_si128(src.add(16 * j).cast());
            _mm_storeu_si128(dst.add(16 * j).cast(), _mm_xor_si128(*v, d));
        }
    }
}

/// GHASH of the 8 blocks at `p` into `x`.
///
/// # Safety
/// CPU features (token); `p` readable for 128 bytes.
#[target_feature(enable = "aes,pclmulqdq,avx")]
unsafe fn ghash8(_t: AesNiToken, key: &AesNiSchedule, x: __m128i, p: *const u8) -> __m128i {
    let bs = bswap_mask();
    let mut g = [_mm_setzero_si128(); NB];
    for (j, v) in g.iter_mut().enumerate() {
        // SAFETY: 16j + 16 <= 128.
        *v = _mm_shuffle_epi8(unsafe { _mm_loadu_si128(p.add(16 * j).cast()) }, bs);
    }
    ghash_blocks(key, x, &g, NB)
}

/// GHASH of the first `r` (1..=127) bytes of a zero-padded 128-byte buffer.
#[target_feature(enable = "aes,pclmulqdq,avx")]
fn ghash_padded(key: &AesNiSchedule, x: __m128i, buf: &[u8; 128], r: usize) -> __m128i {
    let bs = bswap_mask();
    let n = r.div_ceil(16).clamp(1, NB);
    let mut g = [_mm_setzero_si128(); NB];
    for (j, v) in g.iter_mut().enumerate().take(n) {
        // SAFETY: 16j + 16 <= 16n <= 128 = buf.len().
        *v = _mm_shuffle_epi8(
            unsafe { _mm_loadu_si128(buf.as_ptr().add(16 * j).cast()) },
            bs,
        );
    }
    ghash_blocks(key, x, &g, n)
}

/// The zero-padded stack buffer of a partial final group (or AAD tail),
/// aligned so it can be wiped with 8 vector stores: `zeroize` on a byte
/// array makes one volatile store per byte (128 of them, a fixed cost per
/// message that showed at 4 KiB).
#[repr(C, align(16))]
struct Pad([u8; 128]);

impl Pad {
    /// Overwrites the buffer with zeros, with volatile stores the compiler
    /// cannot drop, then a compiler fence (as `zeroize` does).
    fn wipe(&mut self) {
        let p = self.0.as_mut_ptr().cast::<__m128i>();
        for i in 0..8 {
            // SAFETY: `p` is 16-byte aligned (`repr(align(16))`) and
            // 8 vectors of 16 bytes span exactly the 128-byte buffer,
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
#[target_feature(enable = "aes,pclmulqdq,avx")]
unsafe fn ghash_bytes(
    t: AesNiToken,
    key: &AesNiSchedule,
    mut x: __m128i,
    p: *const u8,
    len: usize,
) -> __m128i {
    let mut i = 0;
    while len - i >= 16 * NB {
        // SAFETY: i + 128 <= len.
        x = unsafe { ghash8(t, key, x, p.add(i)) };
        i += 16 * NB;
    }
    let r = len - i;
    if r == 0 {
        return x;
    }
    let mut pad = Pad([0u8; 128]);
    let buf = &mut pad.0;
    // SAFETY: `p.add(i)` is valid for `r < 128` reads; `buf` is a distinct local.
    unsafe { core::ptr::copy_nonoverlapping(p.add(i), buf.as_mut_ptr(), r) };
    let x = ghash_padded(key, x, buf, r);
    pad.wipe();
    x
}

/// Handles the final `r < 128` bytes through a zero-padded stack buffer.
/// `enc` selects whether the hashed text is the output (seal) or input (open).
///
/// # Safety
/// CPU features (token); `src` readable and `dst` writable for `r` bytes
/// (may be equal); `r < 128`.
#[target_feature(enable = "aes,pclmulqdq,avx")]
#[allow(clippy::too_many_arguments)] // internal kernel entry; grouping would only add a struct
unsafe fn tail(
    _t: AesNiToken,
    key: &AesNiSchedule,
    mut ctr: __m128i,
    x: __m128i,
    src: *const u8,
    dst: *mut u8,
    r: usize,
    enc: bool,
) -> __m128i {
    if r == 0 {
        return x;
    }
    let mut pad = Pad([0u8; 128]);
    let buf = &mut pad.0;
    // SAFETY: `src` valid for `r <= 128` reads; `buf` is a distinct local.
    unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), r) };
    let mut x = x;
    if !enc {
        x = ghash_padded(key, x, buf, r);
    }
    // All 8 counters in parallel: cheaper than a serial chain for n > 1.
    let mut ks = counters(key, &mut ctr);
    aes_rounds(key, &mut ks);
    for (j, v) in ks.iter_mut().enumerate() {
        // SAFETY: 16j + 16 <= 128 = buf.len().
        unsafe {
            let p = buf.as_mut_ptr().add(16 * j);
            let d = _mm_loadu_si128(p.cast());
            _mm_storeu_si128(p.cast(), _mm_xor_si128(d, *v));
        }
    }
    ks.zeroize();
    // Bytes past `r` now hold keystream; GHASH needs them zero (§6.4 padding).
    buf[r..].fill(0);
    if enc {
        x = ghash_padded(key, x, buf, r);
    }
    // SAFETY: `dst` valid for `r` writes; `buf` is a distinct local.
    unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), dst, r) };
    pad.wipe();
    x
}

/// Per-call state: first data counter (byte-reflected), E(K, J0) and GHASH of the AAD.
///
/// # Safety
/// CPU features (token).
#[target_feature(enable = "aes,pclmulqdq,avx")]
unsafe fn setup(
    t: AesNiToken,
    key: &AesNiSchedule,
    nonce: &[u8; 12],
    aad: &[u8],
) -> (__m128i, __m128i, __m128i) {
    // J0 = IV || 0^31 || 1 (§7.1 step 2).
    let mut j0b = [0u8; 16];
    j0b[..12].copy_from_slice(nonce);
    j0b[15] = 1;
    let j0 = from_u128(u128::from_le_bytes(j0b));
    let ekj0 = aes_block(key, j0);
    // First data counter is inc32(J0), kept byte-reflected.
    let ctr = _mm_add_epi32(
        _mm_shuffle_epi8(j0, bswap_mask()),
        _mm_set_epi32(0, 0, 0, 1),
    );
    // SAFETY: `aad` is a valid slice of `aad.len()` bytes.
    let x = unsafe { ghash_bytes(t, key, _mm_setzero_si128(), aad.as_ptr(), aad.len()) };
    (ctr, ekj0, x)
}

/// Final GHASH block (lengths, §7.1 step 5) and tag = GCTR(J0, S). Wipes
/// E(K, J0) and the GHASH state (with the tag, either gives away an equation in H).
#[target_feature(enable = "aes,pclmulqdq,avx")]
#[inline]
fn finish(
    key: &AesNiSchedule,
    mut x: __m128i,
    mut ekj0: __m128i,
    aad_len: usize,
    len: usize,
) -> [u8; 16] {
    let lens = _mm_set_epi64x((aad_len as u64 * 8) as i64, (len as u64 * 8) as i64);
    let mut s = gf_mul(_mm_xor_si128(x, lens), from_u128(key.h_pow[NB - 1]));
    let tag = to_u128(_mm_xor_si128(_mm_shuffle_epi8(s, bswap_mask()), ekj0)).to_le_bytes();
    x.zeroize();
    s.zeroize();
    ekj0.zeroize();
    tag
}

/// GCM-AE (§7.1): encrypts `len` bytes from `src` to `dst`, returns the tag.
///
/// # Safety
/// CPU features (token); `src` readable and `dst` writable for `len` bytes;
/// they are either identical or non-overlapping; `len` and `aad.len()`
/// within SP 800-38D limits (so the 32-bit counter cannot wrap).
#[target_feature(enable = "aes,pclmulqdq,avx")]
unsafe fn seal_raw(
    t: AesNiToken,
    key: &AesNiSchedule,
    nonce: &[u8; 12],
    aad: &[u8],
    src: *const u8,
    dst: *mut u8,
    len: usize,
) -> [u8; 16] {
    // SAFETY: features proved by `t`; `aad` is a valid slice.
    let (mut ctr, ekj0, mut x) = unsafe { setup(t, key, nonce, aad) };
    let mut i = 0;
    if len >= 16 * NB {
        // Prologue: first 8 blocks, nothing to hash yet. GHASH then lags AES
        // by one iteration and hashes the ciphertext just stored.
        // SAFETY: 128 <= len bytes of src/dst.
        unsafe { ctr8(t, key, &mut ctr, src, dst) };
        i = 16 * NB;
        let n = (len - i) / (16 * NB);
        // SAFETY: src/dst[i..i + 128n] lie within `len`; dst[i-128..i] holds
        // the prologue's ciphertext.
        x = unsafe { bulk::<true>(t, key, &mut ctr, x, src.add(i), dst.add(i), n) };
        i += 16 * NB * n;
        // SAFETY: i - 128 + 128 <= len.
        x = unsafe { ghash8(t, key, x, dst.add(i - 16 * NB)) };
    }
    // SAFETY: offsets i..len are inside both buffers; len - i < 128.
    x = unsafe { tail(t, key, ctr, x, src.add(i), dst.add(i), len - i, true) };
    finish(key, x, ekj0, aad.len(), len)
}

/// GCM-AD (§7.2) without the tag check: decrypts `len` bytes from `src` to
/// `dst` and returns the expected tag computed over the ciphertext.
///
/// # Safety
/// As for [`seal_raw`].
#[target_feature(enable = "aes,pclmulqdq,avx")]
unsafe fn open_raw(
    t: AesNiToken,
    key: &AesNiSchedule,
    nonce: &[u8; 12],
    aad: &[u8],
    src: *const u8,
    dst: *mut u8,
    len: usize,
) -> [u8; 16] {
    // SAFETY: features proved by `t`; `aad` is a valid slice.
    let (mut ctr, ekj0, mut x) = unsafe { setup(t, key, nonce, aad) };
    let n = len / (16 * NB);
    // SAFETY: src/dst[0..128n] lie within `len`.
    x = unsafe { bulk::<false>(t, key, &mut ctr, x, src, dst, n) };
    let i = 16 * NB * n;
    // SAFETY: offsets i..len are inside both buffers; len - i < 128.
    x = unsafe { tail(t, key, ctr, x, src.add(i), dst.add(i), len - i, false) };
    finish(key, x, ekj0, aad.len(), len)
}

// ---------------------------------------------------------------------------
// Partial opens (range reads): the tag by GHASH alone, then AES-CTR over only
// the bytes delivered.
// ---------------------------------------------------------------------------

/// The GCM tag of (`aad`, the `len` bytes of ciphertext at `ct`) without
/// decrypting: GHASH over both (§7.2 steps 5-6, 8 blocks per reduction in
/// [`ghash_bytes`]), masked with E(K, J0).
///
/// # Safety
/// CPU features (token); `ct` readable for `len` bytes; `len` and
/// `aad.len()` within SP 800-38D limits.
#[target_feature(enable = "aes,pclmulqdq,avx")]
unsafe fn tag_raw(
    t: AesNiToken,
    key: &AesNiSchedule,
    nonce: &[u8; 12],
    aad: &[u8],
    ct: *const u8,
    len: usize,
) -> [u8; 16] {
    // SAFETY: features proved by `t`; `aad` is a valid slice.
    let (_, ekj0, mut x) = unsafe { setup(t, key, nonce, aad) };
    // SAFETY: caller's guarantee for `ct`/`len`.
    x = unsafe { ghash_bytes(t, key, x, ct, len) };
    finish(key, x, ekj0, aad.len(), len)
}

/// XORs the GCTR keystream into the `len` bytes at `p` in place, starting at
/// data block `block` of the message (counter `inc32(J0) + block`), 8
/// counter chains per step, then a padded tail.
///
/// # Safety
/// CPU features (token); `p` readable and writable for `len` bytes;
/// `16 * block + len` within the SP 800-38D message limit (no counter wrap).
#[target_feature(enable = "aes,pclmulqdq,avx")]
unsafe fn ctr_raw(
    t: AesNiToken,
    key: &AesNiSchedule,
    nonce: &[u8; 12],
    block: u32,
    p: *mut u8,
    len: usize,
) {
    // No AAD: the GHASH part of the set-up is empty; E(K, J0) is not needed.
    // SAFETY: features proved by `t`; the empty AAD is a valid slice.
    let (ctr, mut ekj0, mut x) = unsafe { setup(t, key, nonce, &[]) };
    ekj0.zeroize();
    x.zeroize();
    // Wrapping inc32 by `block` (§6.2).
    let mut ctr = _mm_add_epi32(ctr, _mm_set_epi32(0, 0, 0, block as i32));
    let mut i = 0;
    while len - i >= 16 * NB {
        // SAFETY: i + 128 <= len; in place.
        unsafe { ctr8(t, key, &mut ctr, p.add(i), p.add(i)) };
        i += 16 * NB;
    }
    let r = len - i;
    if r > 0 {
        let mut pad = Pad([0u8; 128]);
        let buf = &mut pad.0;
        // SAFETY: `p.add(i)` is valid for `r < 128` reads; `buf` is a
        // distinct local.
        unsafe { core::ptr::copy_nonoverlapping(p.add(i), buf.as_mut_ptr(), r) };
        // SAFETY: `buf` holds 128 bytes; in place.
        unsafe { ctr8(t, key, &mut ctr, buf.as_ptr(), buf.as_mut_ptr()) };
        // SAFETY: `p.add(i)` is valid for `r` writes; `buf` is a distinct local.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), p.add(i), r) };
        pad.wipe();
    }
}
