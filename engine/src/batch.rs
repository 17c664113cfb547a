//! Scheduling: how a batch's chunks are spread across the rayon pool, and how big batches
//! and io_uring slots are. No cryptography and no I/O here: the sealer and opener say what to
//! do with each chunk, and `pipeline` moves batches between the drive and the CPU.

use rayon::prelude::*;

/// Below this many bytes a batch is sealed or opened on the calling thread: waking pool
/// threads, handing them the work and waiting for them costs about what a core takes for the
/// batch. Measured: handing 512 KiB batches to the pool added ~150 µs and 15 context switches
/// to a 1 MiB GET (docs/PERFORMANCE.md §2); on the 2-vCPU Zen 3, sealing a 1 MiB PUT's one
/// batch on the pool cost +218…+268 µs per PUT over plaintext and ~400 µs of the pool
/// threads' CPU, on the calling thread +106…+144 µs and none (§14.5). Batches of the default
/// 4 MiB budget (a 64 MiB object's) are just above this and still go to the pool.
const PARALLEL_MIN_BYTES: usize = 2 << 20;

/// Calls `f(i, chunk_i)` for each `stride`-sized chunk of `buf` (the last may be shorter),
/// in parallel on the rayon pool when the batch is large enough to pay for it. Stops at the
/// first error.
pub(crate) fn for_each_chunk<E, F>(buf: &mut [u8], stride: usize, f: F) -> Result<(), E>
where
    E: Send,
    F: Fn(usize, &mut [u8]) -> Result<(), E> + Sync + Send,
{
    if buf.len() < PARALLEL_MIN_BYTES {
        return buf
            .chunks_mut(stride)
            .enumerate()
            .try_for_each(|(i, c)| f(i, c));
    }
    buf.par_chunks_mut(stride)
        .enumerate()
        .try_for_each(|(i, c)| f(i, c))
}

/// With io_uring, the pipelines move data in slots of this many bytes (rounded to whole
/// chunks), several slots in flight at once: small enough that even a 1 MiB object overlaps
/// its I/O with its encryption, large enough (two 256 KiB requests) to keep the drive busy.
#[cfg(target_os = "linux")]
pub(crate) const SLOT_BYTES: usize = 512 << 10;

/// How many slots of [`SLOT_BYTES`] fit the batch budget (2 ..= 8).
#[cfg(target_os = "linux")]
pub(crate) fn slots_for(batch_bytes: usize) -> usize {
    (batch_bytes / SLOT_BYTES).clamp(2, 8)
}

/// Chunks per batch for a given stride (at least one).
pub(crate) fn chunks_per_batch(batch_bytes: usize, stride: usize) -> usize {
    (batch_bytes / stride).max(1)
}
