//! `dare bench aead`: AES-256-GCM seal and open throughput of every engine backend this CPU
//! supports and, in the same run, of reference implementations (aws-lc-rs, ring; RustCrypto
//! is the engine's portable backend), so ratios are taken under the same machine load.
//!
//! Seal encrypts one buffer in place over and over. Open decrypts *valid* ciphertext on the
//! one footing every implementation offers: each call copies the sealed buffer into a
//! working buffer and opens it there, in place (ring opens in place only; aws-lc-rs opens in
//! place with the tag after the ciphertext, so its copy carries the tag too). Earlier runs
//! opened out of place where the API allowed and charged only ring the copy. Each thread has its own
//! buffers and key. Each round measures every implementation once, back to back (the order
//! rotating from round to round), so drift hits all of them. Each rate is reported as the
//! median of the rounds and the best round; comparisons are *paired*: the ratio of two
//! implementations' rates within each round, summarised by the median and quartiles of those
//! ratios. On this shared host the rates of one implementation move by ±30% between rounds
//! while the within-round ratio moves far less, so only the paired figure can say whether one
//! implementation is ahead at sizes where they are close (4 KiB).
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
    /// into rounds (the default: 100 rounds of 10 ms).
    #[arg(long, default_value_t = 1.0)]
    pub seconds: f64,
    /// Leave out the reference implementations (aws-lc-rs, ring).
    #[arg(long)]
    pub no_reference: bool,
    /// Rounds per figure: each round measures every implementation back to back; the report
    /// gives the median and the best round of each rate, and the quartiles of the per-round
    /// ratios against ring and aws-lc-rs.
    #[arg(long, default_value_t = 100)]
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
    /// This implementation's rate over ring's, and over aws-lc-rs's, *in the same round*:
    /// the median and quartiles of the per-round ratios (absent without that reference).
    pub paired: Vec<(&'static str, Paired)>,
}

/// Quartiles of per-round ratios against one reference implementation. Each round measures
/// every implementation back to back, so a ratio taken within a round sees nearly the same
/// machine load on both sides; the spread of these ratios, not of the rates, says whether
/// two implementations differ (the rates themselves move by ±30% on this shared host).
#[derive(Debug, Clone, Copy)]
pub struct Paired {
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
}

/// The implementations ratios are taken against, in report order.
const REFERENCES: [&str; 2] = ["ring", "aws-lc-rs"];

/// Median and quartiles of `v` (not empty), by nearest rank.
fn quartiles(mut v: Vec<f64>) -> Paired {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Paired {
        median: at(0.5),
        p25: at(0.25),
        p75: at(0.75),
    }
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
                    // Touch the working buffer's pages before the clock starts (a fresh
                    // allocation of 1 MiB faults on first write), and check the pair.
                    assert!(imp.open(&buf, &tag, out), "valid ciphertext failed to open");
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
    if a.rounds == 0 || a.rounds > 100_000 {
        bail!("--rounds must be from 1 to 100000");
    }
    let imps = implementations(!a.no_reference);
    let rounds = a.rounds;
    let slice = Duration::from_secs_f64(a.seconds / f64::from(rounds));
    let mut out = Vec::new();
    for &size in &a.sizes {
        for &threads in &a.threads {
            for op in ["seal", "open"] {
                // rates[round][i]; the order within a round rotates, so no implementation
                // always runs first (or right after the same neighbour).
                let mut rates = vec![vec![0f64; imps.len()]; rounds as usize];
                for (round, row) in rates.iter_mut().enumerate() {
                    for k in 0..imps.len() {
                        let i = (round + k) % imps.len();
                        row[i] = measure(imps[i].1.as_ref(), op, size as usize, threads, slice);
                    }
                }
                for (i, (name, _)) in imps.iter().enumerate() {
                    let paired = REFERENCES
                        .iter()
                        .filter_map(|&r| {
                            let j = imps.iter().position(|(n, _)| n == r)?;
                            let ratios = rates.iter().map(|row| row[i] / row[j]).collect();
                            Some((r, quartiles(ratios)))
                        })
                        .collect();
                    let mut r: Vec<f64> = rates.iter().map(|row| row[i]).collect();
                    r.sort_by(f64::total_cmp);
                    out.push(Sample {
                        backend: name.clone(),
                        op,
                        bytes: size,
                        threads,
                        bytes_per_sec: r[r.len() / 2],
                        best_bytes_per_sec: r[r.len() - 1],
                        paired,
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
                "paired": s.paired.iter().map(|(r, p)| (r.to_string(), json!({
                    "median": p.median, "p25": p.p25, "p75": p.p75,
                }))).collect::<serde_json::Map<_, _>>(),
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
        "{} rounds, {:.1} s per figure; GB/s = 10^9 bytes/s, median and best round; \
         \"x ring\" and \"x aws-lc\": median [quartiles] of this implementation's rate over \
         the reference's in the same round",
        a.rounds, a.seconds
    )?;
    writeln!(
        o,
        "{:<10} {:<4} {:>8} {:>3} {:>6} {:>6}  {:<19} {:<19}",
        "impl", "op", "bytes", "thr", "GB/s", "best", "x ring", "x aws-lc"
    )?;
    for s in &samples {
        let ratio = |name: &str| {
            s.paired
                .iter()
                .find(|(r, _)| *r == name)
                .map(|(_, p)| format!("{:.2} [{:.2}-{:.2}]", p.median, p.p25, p.p75))
                .unwrap_or_else(|| "-".into())
        };
        writeln!(
            o,
            "{:<10} {:<4} {:>8} {:>3} {:>6.2} {:>6.2}  {:<19} {:<19}",
            s.backend,
            s.op,
            s.bytes,
            s.threads,
            s.bytes_per_sec / 1e9,
            s.best_bytes_per_sec / 1e9,
            ratio("ring"),
            ratio("aws-lc-rs"),
        )?;
    }
    Ok(())
}

/// The `OPENSSL_ia32cap` value aws-lc-rs reads, if set (see the module docs).
fn aws_lc_mask() -> Option<String> {
    std::env::var("OPENSSL_ia32cap").ok()
}
