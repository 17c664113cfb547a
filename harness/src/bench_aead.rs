//! `dare bench aead`: AES-256-GCM seal and open throughput of every engine backend this CPU
//! supports and, in the same run, of reference implementations (aws-lc-rs, ring; RustCrypto
//! is the engine's portable backend), so ratios are taken under the same machine load.
//!
//! Seal encrypts one buffer in place over and over. Open decrypts *valid* ciphertext on the
//! one footing every implementation offers: each call copies the sealed buffer into a
//! working buffer and opens it there, in place (ring opens in place only; aws-lc-rs opens in
//! place with the tag after the ciphertext, so its copy carries the tag too). Earlier runs
//! opened out of place where the API allowed and charged only ring the copy. Each thread has its own
//! buffers and key. Rounds alternate between implementations so drift hits all of them.
//! Each figure is reported twice: the median of the rounds and the best round (on a shared,
//! noisy host the best round is the one least disturbed by other processes).
//!
//! aws-lc-rs picks its own AES-GCM code from the CPU's features, and honours the
//! `OPENSSL_ia32cap` environment variable (read once, when aws-lc initialises). To compare a
//! kernel without VAES against aws-lc's AES-NI code on a CPU that has VAES and AVX-512, run
//! with `OPENSSL_ia32cap='~0x0:~0x60000000000'`: this clears the VAES (bit 41) and VPCLMULQDQ
//! (bit 42) bits of aws-lc's second capability word, which turns off its AVX-512 path
//! (`crypto_gcm_avx512_enabled` needs both) and leaves `aesni_gcm_encrypt`/`_decrypt` (AES-NI,
//! PCLMULQDQ, AVX, MOVBE). The engine and ring detect the CPU themselves and are unaffected;
//! the report prints the mask in effect.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use dare_engine::AeadBackend;
use dare_engine::raw::RawAead;
use serde_json::json;

#[derive(Debug, Args)]
pub struct AeadArgs {
    /// Message size in bytes (repeatable).
    #[arg(long = "size", default_values_t = [4096u64, 65536, 1048576])]
    pub sizes: Vec<u64>,
    /// Threads, each sealing/opening its own buffers (repeatable).
    #[arg(long = "threads", default_values_t = [1usize])]
    pub threads: Vec<usize>,
    /// Seconds of measurement per implementation, operation, size and thread count, split
    /// into alternating rounds.
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Leave out the reference implementations (aws-lc-rs, ring).
    #[arg(long)]
    pub no_reference: bool,
    /// Rounds per figure; implementations alternate from round to round, and the report
    /// gives the median and the best round.
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// One implementation under test.
trait Impl: Send + Sync {
    fn seal(&self, buf: &mut [u8]) -> [u8; 16];
    /// Copies `ct` into the working buffer `out` (`ct.len() + 16` bytes: room for a tag)
    /// and opens it there, in place.
    fn open(&self, ct: &[u8], tag: &[u8; 16], out: &mut [u8]) -> bool;
}

const NONCE: [u8; 12] = [7; 12];
const AAD: [u8; 32] = [3; 32];

struct Engine(RawAead);
impl Impl for Engine {
    fn seal(&self, buf: &mut [u8]) -> [u8; 16] {
        self.0.seal_in_place(&NONCE, &AAD, buf)
    }
    fn open(&self, ct: &[u8], tag: &[u8; 16], out: &mut [u8]) -> bool {
        let buf = &mut out[..ct.len()];
        buf.copy_from_slice(ct);
        self.0.open_in_place(&NONCE, &AAD, buf, tag)
    }
}

#[cfg(feature = "reference-impls")]
mod reference {
    use super::{AAD, Impl, NONCE};

    pub struct AwsLc(pub aws_lc_rs::aead::LessSafeKey);
    impl AwsLc {
        pub fn new(key: &[u8; 32]) -> Option<Self> {
            let k = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, key).ok()?;
            Some(AwsLc(aws_lc_rs::aead::LessSafeKey::new(k)))
        }
    }
    impl Impl for AwsLc {
        fn seal(&self, buf: &mut [u8]) -> [u8; 16] {
            use aws_lc_rs::aead::{Aad, Nonce};
            let mut t = [0u8; 16];
            if let Ok(tag) = self.0.seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(NONCE),
                Aad::from(&AAD),
                buf,
            ) {
                t.copy_from_slice(tag.as_ref());
            }
            t
        }
        fn open(&self, ct: &[u8], tag: &[u8; 16], out: &mut [u8]) -> bool {
            use aws_lc_rs::aead::{Aad, Nonce};
            // aws-lc-rs opens in place only with the tag after the ciphertext.
            let n = ct.len();
            out[..n].copy_from_slice(ct);
            out[n..n + 16].copy_from_slice(tag);
            self.0
                .open_in_place(
                    Nonce::assume_unique_for_key(NONCE),
                    Aad::from(&AAD),
                    &mut out[..n + 16],
                )
                .is_ok()
        }
    }

    pub struct Ring(pub ring::aead::LessSafeKey);
    impl Ring {
        pub fn new(key: &[u8; 32]) -> Option<Self> {
            let k = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, key).ok()?;
            Some(Ring(ring::aead::LessSafeKey::new(k)))
        }
    }
    impl Impl for Ring {
        fn seal(&self, buf: &mut [u8]) -> [u8; 16] {
            use ring::aead::{Aad, Nonce};
            let mut t = [0u8; 16];
            if let Ok(tag) = self.0.seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(NONCE),
                Aad::from(&AAD),
                buf,
            ) {
                t.copy_from_slice(tag.as_ref());
            }
            t
        }
        fn open(&self, ct: &[u8], tag: &[u8; 16], out: &mut [u8]) -> bool {
            use ring::aead::{Aad, Nonce, Tag};
            let out = &mut out[..ct.len()];
            out.copy_from_slice(ct);
            let Ok(tag) = Tag::try_from(&tag[..]) else {
                return false;
            };
            self.0
                .open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(NONCE),
                    Aad::from(&AAD),
                    tag,
                    out,
                    0..,
                )
                .is_ok()
        }
    }
}

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Sample {
    pub backend: String,
    pub op: &'static str,
    pub bytes: u64,
    pub threads: usize,
    /// Median over the rounds.
    pub bytes_per_sec: f64,
    /// Best round.
    pub best_bytes_per_sec: f64,
}

fn implementations(with_reference: bool) -> Vec<(String, Box<dyn Impl>)> {
    let key = [0x42u8; 32];
    let mut v: Vec<(String, Box<dyn Impl>)> = AeadBackend::available()
        .into_iter()
        .map(|b| {
            (
                b.name().to_owned(),
                Box::new(Engine(RawAead::new(b, &key))) as Box<dyn Impl>,
            )
        })
        .collect();
    #[cfg(feature = "reference-impls")]
    if with_reference {
        if let Some(k) = reference::AwsLc::new(&key) {
            v.push(("aws-lc-rs".into(), Box::new(k)));
        }
        if let Some(k) = reference::Ring::new(&key) {
            v.push(("ring".into(), Box::new(k)));
        }
    }
    #[cfg(not(feature = "reference-impls"))]
    let _ = with_reference;
    v
}

/// Runs `op` on `threads` threads for `dur`; returns bytes per second.
fn measure(imp: &dyn Impl, op: &'static str, size: usize, threads: usize, dur: Duration) -> f64 {
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let mut buf = vec![0x5au8; size];
                    // The working buffer of open (room for a tag), placed so that it starts
                    // half a page away from `buf` modulo 4096: when the copy's source and
                    // destination sit at nearly the same offset in their pages, the copy
                    // stalls on 4K aliasing (measured here: opens of 4 KiB and 64 KiB at
                    // 1.1–1.7 GB/s for every implementation, ~3.5x slower than at 1 MiB).
                    let mut work = vec![0u8; size + 16 + 4096];
                    let d = (work.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize) % 4096;
                    let at = (2048 + 4096 - d) % 4096;
                    let out = &mut work[at..at + size + 16];
                    let tag = imp.seal(&mut buf); // valid ciphertext for open
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < dur {
                        for _ in 0..8 {
                            if op == "seal" {
                                std::hint::black_box(imp.seal(std::hint::black_box(&mut buf)));
                            } else {
                                let ok = imp.open(std::hint::black_box(&buf), &tag, out);
                                assert!(ok, "valid ciphertext failed to open");
                            }
                        }
                        n += 8;
                    }
                    (n * size as u64, start.elapsed())
                })
            })
            .collect();
        let mut bytes = 0u64;
        let mut secs = 0f64;
        for h in handles {
            let (b, e) = h.join().unwrap_or((0, Duration::from_secs(1)));
            bytes += b;
            secs = secs.max(e.as_secs_f64());
        }
        (bytes as f64 / secs) as u64
    });
    total as f64
}

/// Measures every implementation; rounds alternate between implementations.
pub fn run_bench(a: &AeadArgs) -> Result<Vec<Sample>> {
    if a.seconds <= 0.0 || !a.seconds.is_finite() {
        bail!("--seconds must be positive");
    }
    for &s in &a.sizes {
        if s == 0 || s > (64 << 20) {
            bail!("--size must be from 1 byte to 64 MiB");
        }
    }
    if a.threads.iter().any(|&t| t == 0 || t > 256) {
        bail!("--threads must be from 1 to 256");
    }
    if a.rounds == 0 || a.rounds > 1000 {
        bail!("--rounds must be from 1 to 1000");
    }
    let imps = implementations(!a.no_reference);
    let rounds = a.rounds;
    let slice = Duration::from_secs_f64(a.seconds / f64::from(rounds));
    let mut out = Vec::new();
    for &size in &a.sizes {
        for &threads in &a.threads {
            for op in ["seal", "open"] {
                let mut rates = vec![Vec::new(); imps.len()];
                for _ in 0..rounds {
                    for (i, (_, imp)) in imps.iter().enumerate() {
                        rates[i].push(measure(imp.as_ref(), op, size as usize, threads, slice));
                    }
                }
                for (i, (name, _)) in imps.iter().enumerate() {
                    let r = &mut rates[i];
                    r.sort_by(f64::total_cmp);
                    out.push(Sample {
                        backend: name.clone(),
                        op,
                        bytes: size,
                        threads,
                        bytes_per_sec: r[r.len() / 2],
                        best_bytes_per_sec: r[r.len() - 1],
                    });
                }
            }
        }
    }
    Ok(out)
}

/// `dare bench aead`; `selected` is the backend the store commands would use.
pub fn run(a: AeadArgs, selected: AeadBackend) -> Result<()> {
    let samples = run_bench(&a)?;
    let mut o = crate::out::stdout().lock();
    if a.json {
        let v = json!({
            "cpu": crate::cpuinfo::cpu_model(),
            "selected": selected.name(),
            "openssl_ia32cap": aws_lc_mask(),
            "rounds": a.rounds,
            "results": samples.iter().map(|s| json!({
                "backend": s.backend, "op": s.op, "bytes": s.bytes, "threads": s.threads, "bytes_per_sec": s.bytes_per_sec,
                "best_bytes_per_sec": s.best_bytes_per_sec,
            })).collect::<Vec<_>>(),
        });
        writeln!(o, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(
        o,
        "cpu: {}   selected backend: {}",
        crate::cpuinfo::cpu_model(),
        selected
    )?;
    if let Some(m) = aws_lc_mask() {
        writeln!(
            o,
            "aws-lc-rs runs with OPENSSL_ia32cap={m} (its CPU features masked; engine and ring are not)"
        )?;
    }
    writeln!(
        o,
        "{} alternating rounds, {:.1} s per figure; median and best round; GB/s = 10^9 bytes/s",
        a.rounds, a.seconds
    )?;
    writeln!(
        o,
        "{:<12} {:<5} {:>9} {:>7} {:>9} {:>12} {:>9} {:>12}",
        "impl", "op", "bytes", "threads", "GB/s", "vs aws-lc-rs", "best", "vs aws-lc-rs"
    )?;
    for s in &samples {
        let base = samples.iter().find(|b| {
            b.backend == "aws-lc-rs" && b.op == s.op && b.bytes == s.bytes && b.threads == s.threads
        });
        let ratio = |f: fn(&Sample) -> f64| {
            base.map(|b| format!("{:.2}x", f(s) / f(b)))
                .unwrap_or_else(|| "-".into())
        };
        writeln!(
            o,
            "{:<12} {:<5} {:>9} {:>7} {:>9.2} {:>12} {:>9.2} {:>12}",
            s.backend,
            s.op,
            s.bytes,
            s.threads,
            s.bytes_per_sec / 1e9,
            ratio(|x| x.bytes_per_sec),
            s.best_bytes_per_sec / 1e9,
            ratio(|x| x.best_bytes_per_sec),
        )?;
    }
    Ok(())
}

/// The `OPENSSL_ia32cap` value aws-lc-rs reads, if set (see the module docs).
fn aws_lc_mask() -> Option<String> {
    std::env::var("OPENSSL_ia32cap").ok()
}
