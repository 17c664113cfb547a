//! What every AES-256-GCM kernel shares: the safe wrapper [`GcmKey`] (length
//! checks, constant-time tag comparison, zeroing on failure and on drop), written
//! once and generic over the [`Kernel`] trait, which each ISA file implements on
//! its zero-sized proof token; the error types and the SP 800-38D limits.
//!
//! Nothing here is `unsafe`. A kernel's raw entry points take pointers; the
//! wrapper hands them a [`Buffers`], which only this module can build and only
//! from checked slices, so the kernel's single `unsafe` call (in its own file)
//! rests on this type's invariants and its token.

use core::fmt;
use core::marker::PhantomData;

use subtle::ConstantTimeEq;
use zeroize::Zeroize;

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

/// The input, output and AAD of one kernel call, checked: the only way a kernel
/// receives memory. Built only by [`GcmKey`]'s methods, it guarantees:
/// - `src` is readable and `dst` writable for `len` bytes, for the lifetime
///   `'a` of the borrows they come from;
/// - `src` and `dst` are identical (in place) or do not overlap (a shared and
///   an exclusive borrow);
/// - `len` and `aad.len()` are within the SP 800-38D limits ([`lengths_ok`]),
///   so the 32-bit block counter cannot wrap.
pub(crate) struct Buffers<'a> {
    aad: &'a [u8],
    src: *const u8,
    dst: *mut u8,
    len: usize,
    _borrow: PhantomData<&'a mut [u8]>,
}

impl<'a> Buffers<'a> {
    /// `buf` transformed in place; `None` past the length limits.
    fn in_place(aad: &'a [u8], buf: &'a mut [u8]) -> Option<Self> {
        if !lengths_ok(aad.len(), buf.len()) {
            return None;
        }
        let p = buf.as_mut_ptr();
        Some(Self {
            aad,
            src: p,
            dst: p,
            len: buf.len(),
            _borrow: PhantomData,
        })
    }

    /// `input` into `output`; `None` if their lengths differ or are past the
    /// length limits.
    #[cfg_attr(not(any(test, feature = "raw-aead")), allow(dead_code))] // out-of-place API: raw-aead benches and kernel tests only
    fn separate(aad: &'a [u8], input: &'a [u8], output: &'a mut [u8]) -> Option<Self> {
        if input.len() != output.len() || !lengths_ok(aad.len(), input.len()) {
            return None;
        }
        Some(Self {
            aad,
            src: input.as_ptr(),
            dst: output.as_mut_ptr(),
            len: input.len(),
            _borrow: PhantomData,
        })
    }

    /// The additional authenticated data.
    pub(crate) fn aad(&self) -> &'a [u8] {
        self.aad
    }

    /// Start of the input (plaintext when sealing, ciphertext when opening).
    pub(crate) fn src(&self) -> *const u8 {
        self.src
    }

    /// Start of the output; equal to [`Self::src`] in place.
    pub(crate) fn dst(&self) -> *mut u8 {
        self.dst
    }

    /// Bytes of input and of output.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// The AAD and ciphertext of a tag computation without decryption
/// ([`Kernel::tag_only`]), checked: built only by [`GcmKey`]'s methods, it
/// guarantees that both lengths are within the SP 800-38D limits
/// ([`lengths_ok`]), so the bit lengths of the final GHASH block fit 64 bits.
/// The memory itself is two ordinary shared borrows.
pub(crate) struct TagInput<'a> {
    aad: &'a [u8],
    ct: &'a [u8],
}

impl<'a> TagInput<'a> {
    /// `None` past the length limits.
    fn new(aad: &'a [u8], ct: &'a [u8]) -> Option<Self> {
        lengths_ok(aad.len(), ct.len()).then_some(Self { aad, ct })
    }

    /// The additional authenticated data.
    pub(crate) fn aad(&self) -> &'a [u8] {
        self.aad
    }

    /// The whole ciphertext of the message.
    pub(crate) fn ct(&self) -> &'a [u8] {
        self.ct
    }
}

/// A span of a message to run the keystream over ([`Kernel::ctr_xor`]),
/// checked: built only by [`GcmKey`]'s methods, it guarantees that the span
/// (starting at data block `block` of its message, `16 * block` bytes in) ends
/// within the SP 800-38D message limit, so its 32-bit block counters never
/// wrap. The memory is one exclusive borrow.
pub(crate) struct CtrSpan<'a> {
    block: u32,
    buf: &'a mut [u8],
}

impl<'a> CtrSpan<'a> {
    /// `buf` holds the message's bytes from data block `block` on; `None` if
    /// they would end past [`MAX_PT_LEN`].
    fn new(block: u32, buf: &'a mut [u8]) -> Option<Self> {
        let end = u64::from(block)
            .checked_mul(16)?
            .checked_add(buf.len() as u64)?;
        (end <= MAX_PT_LEN).then_some(Self { block, buf })
    }

    /// Index of the span's first block among the message's data blocks
    /// (0 = the first, encrypted with counter `inc32(J0)`).
    pub(crate) fn block(&self) -> u32 {
        self.block
    }

    /// The bytes, XORed with the keystream in place.
    pub(crate) fn buf(&mut self) -> &mut [u8] {
        self.buf
    }
}

/// One ISA's AES-256-GCM code, implemented by the kernel's zero-sized proof
/// token: calling the kernel takes the token by value, and only the kernel's
/// `detect()` creates one. Safe to call: every pointer it receives comes in a
/// [`Buffers`].
pub(crate) trait Kernel: Copy {
    /// The key type's name in `Debug` output (nothing else is printed).
    const KEY_NAME: &'static str;
    /// Round keys and GHASH key powers in the kernel's layout; [`GcmKey`]
    /// zeroizes it on drop.
    type Schedule: Zeroize;
    /// AES-256 key expansion (FIPS 197 §5.2) and the GHASH key powers.
    fn schedule(self, key: &[u8; 32]) -> Self::Schedule;
    /// GCM-AE (SP 800-38D §7.1): encrypts `io`'s input into its output and
    /// returns the tag.
    fn seal(self, s: &Self::Schedule, nonce: &[u8; 12], io: Buffers<'_>) -> [u8; 16];
    /// GCM-AD (§7.2) without the tag check: decrypts `io`'s input into its
    /// output and returns the tag computed over the ciphertext, for
    /// [`GcmKey`] to compare.
    fn open(self, s: &Self::Schedule, nonce: &[u8; 12], io: Buffers<'_>) -> [u8; 16];
    /// The GCM tag of (AAD, ciphertext) without decrypting anything:
    /// `GHASH_H(A || 0^v || C || 0^u || [len(A)]_64 || [len(C)]_64) ⊕ E(K, J0)`
    /// (§7.2 steps 5-7), for [`GcmKey`] to compare before it decrypts part of
    /// the message.
    fn tag_only(self, s: &Self::Schedule, nonce: &[u8; 12], input: TagInput<'_>) -> [u8; 16];
    /// XORs the GCTR keystream (§6.5) into `span` in place, starting with the
    /// counter of data block `span.block()`: `inc32(J0)` advanced by that many
    /// blocks (block 0 is the message's first data block).
    fn ctr_xor(self, s: &Self::Schedule, nonce: &[u8; 12], span: CtrSpan<'_>);
}

/// An AES-256-GCM key on kernel `K`: the safe API every kernel shares, written
/// once (as ring's `LessSafeKey` or RustCrypto's `AesGcm<Aes, _>`). Length
/// checks come before any output is written, the tag is compared in constant
/// time, a failed open leaves only zeros, and the schedule is zeroized on drop.
pub(crate) struct GcmKey<K: Kernel> {
    kernel: K,
    schedule: K::Schedule,
}

impl<K: Kernel> Drop for GcmKey<K> {
    fn drop(&mut self) {
        self.schedule.zeroize();
    }
}

impl<K: Kernel> fmt::Debug for GcmKey<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {{ .. }}", K::KEY_NAME)
    }
}

impl<K: Kernel> GcmKey<K> {
    pub(crate) fn new(kernel: K, key: &[u8; 32]) -> Self {
        Self {
            kernel,
            schedule: kernel.schedule(key),
        }
    }

    /// Encrypts `in_out` in place and returns the 16-byte tag.
    /// Fails (writing nothing) only if the SP 800-38D length limits are exceeded.
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; 16], SealError> {
        let io = Buffers::in_place(aad, in_out).ok_or(SealError::TooLong)?;
        Ok(self.kernel.seal(&self.schedule, nonce, io))
    }

    #[cfg_attr(not(any(test, feature = "raw-aead")), allow(dead_code))] // out-of-place API: raw-aead benches and kernel tests only
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
        let io = Buffers::separate(aad, input, output).ok_or(SealError::TooLong)?;
        Ok(self.kernel.seal(&self.schedule, nonce, io))
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
        let ok = match Buffers::in_place(aad, in_out) {
            Some(io) => tag_matches(self.kernel.open(&self.schedule, nonce, io), tag),
            // Longer than any valid GCM ciphertext, so it cannot be authentic.
            None => false,
        };
        if ok {
            Ok(())
        } else {
            in_out.zeroize();
            Err(AuthFailed)
        }
    }

    #[cfg_attr(not(any(test, feature = "raw-aead")), allow(dead_code))] // out-of-place API: raw-aead benches and kernel tests only
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
        let ok = match Buffers::separate(aad, input, &mut *output) {
            Some(io) => tag_matches(self.kernel.open(&self.schedule, nonce, io), tag),
            None => false,
        };
        if ok {
            Ok(())
        } else {
            output.zeroize();
            Err(OpenFailed::AuthFailed)
        }
    }
}

impl<K: Kernel> GcmKey<K> {
    /// Verifies the tag over the whole of `buf` (ciphertext), then decrypts in
    /// place only `buf[part.start & !15 .. part.end]`: the part, its start
    /// rounded down to a block boundary. A range read needs the tag checked
    /// over the whole chunk but the plaintext of only the bytes it delivers,
    /// and GHASH alone runs several times faster than AES-CTR and GHASH
    /// together. Nothing is decrypted before the tag verified.
    ///
    /// On success the bytes of `buf` outside that span are unspecified (they
    /// hold ciphertext, which is public, but no caller may deliver them as
    /// plaintext). On failure, or if `part` is not inside `buf`, the whole of
    /// `buf` is zeroed.
    pub(crate) fn open_part(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; 16],
        part: core::ops::Range<usize>,
    ) -> Result<(), AuthFailed> {
        let inside = part.start <= part.end && part.end <= buf.len();
        let ok = inside
            && match TagInput::new(aad, buf) {
                Some(input) => tag_matches(self.kernel.tag_only(&self.schedule, nonce, input), tag),
                // Longer than any valid GCM ciphertext, so it cannot be authentic.
                None => false,
            };
        if !ok {
            buf.zeroize();
            return Err(AuthFailed);
        }
        let from = part.start & !15;
        // `from / 16 < 2^32` and the span ends within `buf`, whose length
        // passed `lengths_ok` above, so `CtrSpan::new` cannot refuse; were it
        // to, nothing is decrypted and the caller gets an error.
        match u32::try_from(from / 16)
            .ok()
            .and_then(|block| CtrSpan::new(block, &mut buf[from..part.end]))
        {
            Some(span) => {
                self.kernel.ctr_xor(&self.schedule, nonce, span);
                Ok(())
            }
            None => {
                buf.zeroize();
                Err(AuthFailed)
            }
        }
    }

    /// The tag [`Kernel::tag_only`] computes for (`aad`, `ct`), or `None` past
    /// the length limits. For the kernel tests, which compare it with `seal`'s.
    #[cfg(test)]
    pub(crate) fn tag_only(&self, nonce: &[u8; 12], aad: &[u8], ct: &[u8]) -> Option<[u8; 16]> {
        let input = TagInput::new(aad, ct)?;
        Some(self.kernel.tag_only(&self.schedule, nonce, input))
    }

    /// [`Kernel::ctr_xor`] on `buf` from data block `block`; `false` (nothing
    /// done) past the length limits. For the kernel tests.
    #[cfg(test)]
    pub(crate) fn ctr_xor(&self, nonce: &[u8; 12], block: u32, buf: &mut [u8]) -> bool {
        match CtrSpan::new(block, buf) {
            Some(span) => {
                self.kernel.ctr_xor(&self.schedule, nonce, span);
                true
            }
            None => false,
        }
    }
}

/// Compares in constant time and wipes the computed tag.
fn tag_matches(mut computed: [u8; 16], tag: &[u8; 16]) -> bool {
    let ok = tags_equal(&computed, tag);
    computed.zeroize();
    ok
}
