//! A raw AES-256-GCM interface that takes caller-chosen nonces: for the kernel benchmarks
//! (`dare bench aead`, `benches/`), differential tests and fuzzing only. It is compiled only
//! with the `raw-aead` feature; embedders use the object API, which never takes a nonce.

use crate::backend::{AeadBackend, AeadKey};

/// A raw AES-256-GCM key schedule on one backend (for benchmarks and differential tests).
#[derive(Debug)]
pub struct RawAead(AeadKey);

impl RawAead {
    /// Expands `key` for `backend` (which must be supported; see `AeadBackend::forced`).
    pub fn new(backend: AeadBackend, key: &[u8; 32]) -> RawAead {
        RawAead(AeadKey::new(backend, key))
    }
    /// Seals in place, returns the tag.
    pub fn seal_in_place(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8]) -> [u8; 16] {
        self.0.seal_in_place(nonce, aad, buf)
    }
    /// Seals `input` into `output` (same length); `None` on a length mismatch.
    pub fn seal_to(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Option<[u8; 16]> {
        self.0.seal_to(nonce, aad, input, output)
    }
    /// Opens in place; on failure `buf` is zeroed.
    pub fn open_in_place(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; 16],
    ) -> bool {
        self.0.open_in_place(nonce, aad, buf, tag).is_ok()
    }
    /// Verifies the tag over the whole of `buf`, then decrypts in place only
    /// `buf[part.start & !15 .. part.end]`; the rest of `buf` is unspecified on success. On
    /// failure, or if `part` is not inside `buf`, `buf` is zeroed.
    pub fn open_part(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; 16],
        part: std::ops::Range<usize>,
    ) -> bool {
        self.0.open_part(nonce, aad, buf, tag, part).is_ok()
    }
    /// Opens `input` into `output`; on failure `output` is zeroed.
    pub fn open_to(
        &self,
        nonce: &[u8; 12],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
        tag: &[u8; 16],
    ) -> bool {
        self.0.open_to(nonce, aad, input, output, tag).is_ok()
    }
}

/// One AES-256-GCM seal on `backend`, in place; returns the tag.
pub fn aead_seal(
    backend: AeadBackend,
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; 16] {
    AeadKey::new(backend, key).seal_in_place(nonce, aad, buf)
}

/// One AES-256-GCM open on `backend`, in place; on failure `buf` is zeroed.
pub fn aead_open(
    backend: AeadBackend,
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; 16],
) -> bool {
    AeadKey::new(backend, key)
        .open_in_place(nonce, aad, buf, tag)
        .is_ok()
}

/// For a test suite instantiated once per backend: whether `backend` runs on this CPU. Either
/// way one line goes straight to the test process's stderr, which libtest does not capture
/// (it captures only `print!`/`eprint!`), so a CI log shows it next to the test's `ok`:
///
/// - `KERNEL: vaes512 exercised (<test>)`, or
/// - `SKIPPED: vaes512 not supported by this CPU (<test>)`, and the test returns at once.
///
/// `<test>` is the test's name (libtest names each test's thread after it). `.ci/run` counts
/// these lines to print which kernels the tests exercised on the machine and which they
/// skipped, so a missing kernel never passes for a tested one.
pub fn kernel_under_test(backend: AeadBackend) -> bool {
    use std::io::Write;
    let supported = backend.is_supported();
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("unnamed test");
    let line = if supported {
        format!("KERNEL: {backend} exercised ({test})")
    } else {
        format!("SKIPPED: {backend} not supported by this CPU ({test})")
    };
    // One write of the whole line, so lines of tests running in parallel do not interleave.
    let _ = std::io::stderr()
        .lock()
        .write_all(format!("{line}\n").as_bytes());
    supported
}
