//! AES-256-GCM with VAES + VPCLMULQDQ over 256-bit registers (AVX2), for
//! CPUs that have the vector AES/carry-less-multiply extensions but no
//! AVX-512 (e.g. AMD Zen 3, Intel Alder Lake client cores).
//!
//! # Construction (NIST SP 800-38D)
//! * GCM-AE / GCM-AD (§7.1 / §7.2) with a 96-bit IV: `J0 = IV || 0^31 || 1`,
//!   keystream `GCTR(inc32(J0), ·)` (§6.5), tag
//!   `GHASH_H(A || 0^v || C || 0^u || [len(A)]_64 || [len(C)]_64) ⊕ E(K, J0)`.
//! * GHASH (§6.4), `X_i = (X_{i-1} ⊕ B_i) · H`, is unrolled over 16 blocks
//!   with precomputed H^1..H^16 so that the 16 products are independent and
//!   only their sum is reduced ("aggregated reduction": one reduction per 16
//!   blocks, and no serial multiply-reduce chain).
//!
//! # Why the design is as it is
//! * Two blocks per ymm, eight ymm (16 blocks) per iteration: as many
//!   independent AES chains as the AVX-512 kernel, so VAESENC latency is
//!   hidden. With only 16 vector registers the round keys and key powers are
//!   used as memory operands, which costs load-port bandwidth only.
//! * *Stitching*: the AES rounds of 16 counter blocks and the GHASH of 16
//!   ciphertext blocks run in one loop body on different execution units.
//!   Sealing hashes the previous iteration's ciphertext (it is only known at
//!   the end of an iteration); opening hashes its input in the same iteration.
//! * Same field representation as the AVX-512 kernel (after Eric Biggers'
//!   Linux/BoringSSL `aes-gcm-avx2`/`avx10`): byte-reflected blocks, H
//!   preprocessed by a 1-bit shift, schoolbook carry-less products and a
//!   two-multiply Montgomery-style reduction by `0xc2 << 56`.
//! * Counters are byte-reflected so `inc32` is one VPADDD (wraps mod 2^32 as
//!   §6.2 requires; the §5.2.1.1 length limit means it never does).
//! * AVX2 has no byte-masked loads/stores, so the final partial 16-block group
//!   goes through a zero-padded stack buffer, which is wiped afterwards.
//!
//! All `unsafe` of this kernel is in this file.
#![allow(unsafe_code)] // SIMD intrinsics: this file is the only place the kernel's unsafe lives

use core::arch::x86_64::*;
use core::fmt;

use zeroize::Zeroize;

use super::common::{AuthFailed, OpenFailed, SealError, lengths_ok, tags_equal};

/// Zero-sized proof that the CPU features this kernel needs were detected.
/// Only [`Vaes256Token::detect`] creates it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Vaes256Token(());

impl Vaes256Token {
    /// Returns a token if and only if every feature in this file's
    /// `#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]`
    /// lists is present at run time.
    pub(crate) fn detect() -> Option<Self> {
        let ok = is_x86_feature_detected!("aes")
            && is_x86_feature_detected!("pclmulqdq")
            && is_x86_feature_detected!("avx")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("vaes")
            && is_x86_feature_detected!("vpclmulqdq");
        if ok { Some(Self(())) } else { None }
    }
}

/// Expanded AES-256 key and GHASH key powers. Zeroized on drop.
pub(crate) struct Vaes256Key {
    /// AES-256 round keys 0..=14 in AES byte order.
    rk: [u128; 15],
    /// Byte-reflected, preprocessed `H^16, H^15, …, H^1`, then four zero
    /// entries: a partial group of `n` blocks loads powers starting at index
    /// `16 - n`, and its last 256-bit load may run one entry past `H^1`;
    /// the zeros keep that load in bounds and the products zero.
    h_pow: [u128; 20],
    token: Vaes256Token,
}

impl Drop for Vaes256Key {
    fn drop(&mut self) {
        self.rk.zeroize();
        self.h_pow.zeroize();
    }
}

impl fmt::Debug for Vaes256Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vaes256Key { .. }")
    }
}

impl Vaes256Key {
    pub(crate) fn new(token: Vaes256Token, key: &[u8; 32]) -> Self {
        let mut k = Self {
            rk: [0; 15],
            h_pow: [0; 20],
            token,
        };
        // SAFETY: `token` exists only if `detect()` found every feature that
        // `expand_key` enables; it only writes through the two `&mut` arrays.
        unsafe { expand_key(token, key, &mut k.rk, &mut k.h_pow) };
        k
    }

    /// Encrypts `in_out` in place and returns the 16-byte tag.
    /// Fails (writing nothing) only if the SP 800-38D length limits are exceeded.
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; 16], SealError> {
        if !lengths_ok(aad.len(), in_out.len()) {
            return Err(SealError::TooLong);
        }
        let len = in_out.len();
        let p = in_out.as_mut_ptr();
        // SAFETY: the token proves the CPU features; `p` is valid for reads
        // and writes of `len` bytes; src == dst is allowed by `seal_raw`.
        Ok(unsafe { seal_raw(self.token, self, nonce, aad, p, p, len) })
    }

    /// Out-of-place encryption. `output.len()` must equal `input.len()`,
    /// otherwise `Err(LengthMismatch)` is returned and nothing is written.
    pub(crate) fn seal(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<[u8; 16], SealError> {
        if input.len() != output.len() {
            return Err(SealError::LengthMismatch);
        }
        if !lengths_ok(aad.len(), input.len()) {
            return Err(SealError::TooLong);
        }
        // SAFETY: the token proves the CPU features; `input` is valid for
        // `len` reads, `output` for `len` writes, and they cannot overlap
        // (shared vs. exclusive borrow).
        Ok(unsafe {
            seal_raw(
                self.token,
                self,
                nonce,
                aad,
                input.as_ptr(),
                output.as_mut_ptr(),
                input.len(),
            )
        })
    }

    /// Decrypts in place and checks the tag in constant time. On failure the
    /// buffer is zeroed, so no unauthenticated plaintext is ever released.
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; 16],
    ) -> Result<(), AuthFailed> {
        if !lengths_ok(aad.len(), in_out.len()) {
            // Longer than any valid GCM ciphertext, so it cannot be authentic.
            in_out.zeroize();
            return Err(AuthFailed);
        }
        let len = in_out.len();
        let p = in_out.as_mut_ptr();
        // SAFETY: as in `seal_in_place`.
        let mut computed = unsafe { open_raw(self.token, self, nonce, aad, p, p, len) };
        let ok = tags_equal(&computed, tag);
        computed.zeroize();
        if ok {
            Ok(())
        } else {
            in_out.zeroize();
            Err(AuthFailed)
        }
    }

    /// Out-of-place decryption; see [`Self::open_in_place`]. On any error
    /// `output` is zeroed.
    pub(crate) fn open(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
        tag: &[u8; 16],
    ) -> Result<(), OpenFailed> {
        if input.len() != output.len() {
            output.zeroize();
            return Err(OpenFailed::LengthMismatch);
        }
        if !lengths_ok(aad.len(), input.len()) {
            output.zeroize();
            return Err(OpenFailed::AuthFailed);
        }
        // SAFETY: as in `seal`.
        let mut computed = unsafe {
            open_raw(
                self.token,
                self,
                nonce,
                aad,
                input.as_ptr(),
                output.as_mut_ptr(),
                input.len(),
            )
        };
        let ok = tags_equal(&computed, tag);
        computed.zeroize();
        if ok {
            Ok(())
        } else {
            output.zeroize();
            Err(OpenFailed::AuthFailed)
        }
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

/// GHASH of 16 byte-reflected blocks `g` into accumulator `x`.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn ghash16(x: __m128i, g: &[__m256i; 8], hp: &[__m256i; 8]) -> __m128i {
    let z = _mm256_setzero_si256();
    let (mut lo, mut mi, mut hi) = (z, z, z);
    mul_acc(
        _mm256_xor_si256(g[0], _mm256_zextsi128_si256(x)),
        hp[0],
        &mut lo,
        &mut mi,
        &mut hi,
    );
    for j in 1..8 {
        mul_acc(g[j], hp[j], &mut lo, &mut mi, &mut hi);
    }
    reduce_sum(lo, mi, hi)
}

#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn aes_round8(b: &mut [__m256i; 8], k: __m256i) {
    for v in b.iter_mut() {
        *v = _mm256_aesenc_epi128(*v, k);
    }
}

#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn aes_last8(b: &mut [__m256i; 8], k: __m256i) {
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

/// Eight counter ymm for blocks ctr+0..ctr+15 (lane order preserved).
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
#[inline]
fn counters8(ctr: __m256i) -> [__m256i; 8] {
    let mut b = [ctr; 8];
    for (j, v) in b.iter_mut().enumerate() {
        *v = _mm256_add_epi32(ctr, inc_by(2 * j as i32));
    }
    b
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

/// AES-256 key expansion (FIPS 197 §5.2) and GHASH key powers.
///
/// # Safety
/// The CPU must support every feature enabled on this function; holding a
/// [`Vaes256Token`] (passed by value) proves it.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
unsafe fn expand_key(
    _t: Vaes256Token,
    key: &[u8; 32],
    rk: &mut [u128; 15],
    h_pow: &mut [u128; 20],
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
    wipe_regs(&mut r);

    // Byte-reflect H, then multiply by x^-1 in GCM's bit order (a left shift
    // of the reflected value with the carry folded back in), which absorbs
    // the extra factor of x in the carry-less product of reflected operands.
    let hr = to_u128(_mm_shuffle_epi8(h, bswap_mask128()));
    let carry = hr >> 127;
    let h1 = (hr << 1) ^ (carry.wrapping_neg() & 0xc200_0000_0000_0000_0000_0000_0000_0001);
    let h1v = from_u128(h1);
    h_pow[15] = h1;
    let mut cur = h1v;
    for i in (0..15).rev() {
        cur = gf_mul128(cur, h1v);
        h_pow[i] = to_u128(cur);
    }
    for e in &mut h_pow[16..] {
        *e = 0;
    }
}

/// Per-call state shared by seal and open.
struct Setup {
    rk: [__m256i; 15],
    hp: [__m256i; 8],
    ctr: __m256i,
    ekj0: __m128i,
    x: __m128i,
}

/// # Safety
/// CPU features as for [`expand_key`] (proved by the token).
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
unsafe fn setup(t: Vaes256Token, key: &Vaes256Key, nonce: &[u8; 12], aad: &[u8]) -> Setup {
    let mut rk = [_mm256_setzero_si256(); 15];
    let mut rk0 = [_mm_setzero_si128(); 15];
    for i in 0..15 {
        rk0[i] = from_u128(key.rk[i]);
        rk[i] = _mm256_broadcastsi128_si256(rk0[i]);
    }
    let mut hp = [_mm256_setzero_si256(); 8];
    for (i, v) in hp.iter_mut().enumerate() {
        // SAFETY: reads entries 2i..2i+2 <= 16 of the 20-entry array.
        *v = unsafe { _mm256_loadu_si256(key.h_pow.as_ptr().add(2 * i).cast()) };
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
    wipe_regs(&mut rk0);
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
            &key.h_pow,
            &hp,
            _mm_setzero_si128(),
            aad.as_ptr(),
            aad.len(),
        )
    };
    Setup {
        rk,
        hp,
        ctr,
        ekj0,
        x,
    }
}

/// GHASH of `len` bytes at `p`, zero-padded to a block multiple (§6.4).
///
/// # Safety
/// CPU features (token); `p` valid for reads of `len` bytes.
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
unsafe fn ghash_bytes(
    t: Vaes256Token,
    h_pow: &[u128; 20],
    hp: &[__m256i; 8],
    mut x: __m128i,
    p: *const u8,
    len: usize,
) -> __m128i {
    let bs = bswap_mask();
    let mut i = 0;
    while len - i >= 256 {
        let mut g = [_mm256_setzero_si256(); 8];
        for (j, v) in g.iter_mut().enumerate() {
            // SAFETY: i + 32j + 32 <= i + 256 <= len.
            *v = _mm256_shuffle_epi8(unsafe { _mm256_loadu_si256(p.add(i + 32 * j).cast()) }, bs);
        }
        x = ghash16(x, &g, hp);
        i += 256;
    }
    let r = len - i;
    if r == 0 {
        return x;
    }
    let mut buf = [0u8; 256];
    // SAFETY: `p.add(i)` is valid for `r < 256` reads; `buf` is a distinct local.
    unsafe { core::ptr::copy_nonoverlapping(p.add(i), buf.as_mut_ptr(), r) };
    let x = ghash_padded(t, h_pow, x, &buf, r);
    buf.zeroize();
    x
}

/// GHASH of the first `r` (1..=255) bytes of a zero-padded 256-byte buffer,
/// one reduction, powers `H^n..H^1` (n = number of blocks).
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
fn ghash_padded(
    _t: Vaes256Token,
    h_pow: &[u128; 20],
    x: __m128i,
    buf: &[u8; 256],
    r: usize,
) -> __m128i {
    let bs = bswap_mask();
    let nblocks = r.div_ceil(16).clamp(1, 16);
    let first = 16 - nblocks;
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
        // first + 2v + 2 <= 16 - nblocks + nblocks + 1 = 17 <= 20 entries.
        let idx = first + 2 * v;
        // SAFETY: idx + 2 <= 17 < 20 as argued above.
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
fn finish(h_pow: &[u128; 20], x: __m128i, ekj0: __m128i, aad_len: usize, len: usize) -> [u8; 16] {
    let lens = _mm_set_epi64x((aad_len as u64 * 8) as i64, (len as u64 * 8) as i64);
    let x = gf_mul128(_mm_xor_si128(x, lens), from_u128(h_pow[15]));
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
    key: &Vaes256Key,
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
    let mut buf = [0u8; 256];
    // SAFETY: `src` valid for `r <= 256` reads; `buf` is a distinct local.
    unsafe { core::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), r) };
    let mut x = x;
    if !enc {
        x = ghash_padded(t, &key.h_pow, x, &buf, r);
    }
    ctr_padded(rk, ctr, &mut buf, r);
    // Bytes past `r` now hold keystream; GHASH needs them zero (§6.4 padding).
    buf[r..].fill(0);
    if enc {
        x = ghash_padded(t, &key.h_pow, x, &buf, r);
    }
    // SAFETY: `dst` valid for `r` writes; `buf` is a distinct local.
    unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), dst, r) };
    buf.zeroize();
    x
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
    key: &Vaes256Key,
    nonce: &[u8; 12],
    aad: &[u8],
    src: *const u8,
    dst: *mut u8,
    len: usize,
) -> [u8; 16] {
    // SAFETY: features proved by `t`; `aad` is a valid slice.
    let Setup {
        rk,
        hp,
        mut ctr,
        ekj0,
        mut x,
    } = unsafe { setup(t, key, nonce, aad) };
    let bs = bswap_mask();
    let inc16 = inc_by(16);
    let mut i = 0;
    if len >= 256 {
        // Prologue: first 16 blocks, nothing to hash yet.
        let mut b = counters8(ctr);
        ctr = _mm256_add_epi32(ctr, inc16);
        for v in b.iter_mut() {
            *v = aes1(_mm256_shuffle_epi8(*v, bs), &rk);
        }
        let mut g = [_mm256_setzero_si256(); 8];
        for j in 0..8 {
            // SAFETY: 32j + 32 <= 256 <= len; load before store (in-place OK).
            let c = unsafe {
                let c = _mm256_xor_si256(_mm256_loadu_si256(src.add(32 * j).cast()), b[j]);
                _mm256_storeu_si256(dst.add(32 * j).cast(), c);
                c
            };
            g[j] = _mm256_shuffle_epi8(c, bs);
        }
        i = 256;
        // Stitched loop: AES of blocks i..i+16 with GHASH of blocks i-16..i.
        while len - i >= 256 {
            let mut b = counters8(ctr);
            ctr = _mm256_add_epi32(ctr, inc16);
            for v in b.iter_mut() {
                *v = _mm256_xor_si256(_mm256_shuffle_epi8(*v, bs), rk[0]);
            }
            let z = _mm256_setzero_si256();
            let (mut lo, mut mi, mut hi) = (z, z, z);
            mul_acc(
                _mm256_xor_si256(g[0], _mm256_zextsi128_si256(x)),
                hp[0],
                &mut lo,
                &mut mi,
                &mut hi,
            );
            for r in 0..13 {
                aes_round8(&mut b, rk[r + 1]);
                if (1..8).contains(&r) {
                    mul_acc(g[r], hp[r], &mut lo, &mut mi, &mut hi);
                }
            }
            x = reduce_sum(lo, mi, hi);
            aes_last8(&mut b, rk[14]);
            for j in 0..8 {
                // SAFETY: i + 32j + 32 <= i + 256 <= len; load before store.
                let c = unsafe {
                    let c = _mm256_xor_si256(_mm256_loadu_si256(src.add(i + 32 * j).cast()), b[j]);
                    _mm256_storeu_si256(dst.add(i + 32 * j).cast(), c);
                    c
                };
                g[j] = _mm256_shuffle_epi8(c, bs);
            }
            i += 256;
        }
        x = ghash16(x, &g, &hp);
    }
    // SAFETY: offsets i..len are inside both buffers; r = len - i < 256.
    x = unsafe { tail(t, key, &rk, ctr, x, src.add(i), dst.add(i), len - i, true) };
    finish(&key.h_pow, x, ekj0, aad.len(), len)
}

/// GCM-AD (§7.2) without the tag check: decrypts `len` bytes from `src` to
/// `dst` and returns the expected tag computed over the ciphertext.
///
/// # Safety
/// As for [`seal_raw`].
#[target_feature(enable = "aes,pclmulqdq,avx,avx2,vaes,vpclmulqdq")]
unsafe fn open_raw(
    t: Vaes256Token,
    key: &Vaes256Key,
    nonce: &[u8; 12],
    aad: &[u8],
    src: *const u8,
    dst: *mut u8,
    len: usize,
) -> [u8; 16] {
    // SAFETY: features proved by `t`; `aad` is a valid slice.
    let Setup {
        rk,
        hp,
        mut ctr,
        ekj0,
        mut x,
    } = unsafe { setup(t, key, nonce, aad) };
    let bs = bswap_mask();
    let inc16 = inc_by(16);
    let mut i = 0;
    // Stitched loop: the ciphertext is the input, hashed in the same iteration.
    while len - i >= 256 {
        let mut c = [_mm256_setzero_si256(); 8];
        for (j, v) in c.iter_mut().enumerate() {
            // SAFETY: i + 32j + 32 <= len.
            *v = unsafe { _mm256_loadu_si256(src.add(i + 32 * j).cast()) };
        }
        let mut b = counters8(ctr);
        ctr = _mm256_add_epi32(ctr, inc16);
        for v in b.iter_mut() {
            *v = _mm256_xor_si256(_mm256_shuffle_epi8(*v, bs), rk[0]);
        }
        let z = _mm256_setzero_si256();
        let (mut lo, mut mi, mut hi) = (z, z, z);
        let g0 = _mm256_xor_si256(_mm256_shuffle_epi8(c[0], bs), _mm256_zextsi128_si256(x));
        mul_acc(g0, hp[0], &mut lo, &mut mi, &mut hi);
        for r in 0..13 {
            aes_round8(&mut b, rk[r + 1]);
            if (1..8).contains(&r) {
                mul_acc(
                    _mm256_shuffle_epi8(c[r], bs),
                    hp[r],
                    &mut lo,
                    &mut mi,
                    &mut hi,
                );
            }
        }
        x = reduce_sum(lo, mi, hi);
        aes_last8(&mut b, rk[14]);
        for j in 0..8 {
            // SAFETY: i + 32j + 32 <= len; all loads of this chunk are done.
            unsafe {
                _mm256_storeu_si256(dst.add(i + 32 * j).cast(), _mm256_xor_si256(c[j], b[j]))
            };
        }
        i += 256;
    }
    // SAFETY: offsets i..len are inside both buffers; r = len - i < 256.
    x = unsafe { tail(t, key, &rk, ctr, x, src.add(i), dst.add(i), len - i, false) };
    finish(&key.h_pow, x, ekj0, aad.len(), len)
}
