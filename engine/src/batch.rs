//! Scheduling: chunks of a batch across the rayon pool, and the two-stage pipelines that
//! overlap disk I/O with encryption. No cryptography is decided here; the sealer and opener
//! say what to do with each chunk.
//!
//! Put: the caller's thread fills and seals batch k+1 while a writer thread writes batch k.
//! Get: a reader thread reads batch k+1 while the caller's thread verifies and decrypts
//! batch k. Each pipeline holds at most two batch buffers, so memory is bounded by twice the
//! batch size whatever the object size. A crossbeam channel of capacity one links the stages
//! and a second one returns the buffers for reuse.

use std::io::{self, Read};
use std::thread;

use crossbeam_channel::bounded;
use rayon::prelude::*;

use crate::error::{OpenError, SealError};
use crate::seal::{ObjectOpener, ObjectSealer, fill_batch};
use crate::storage::{IoFile, ReadAt};

/// Below this many bytes a batch is sealed or opened on the calling thread: at 15–20 GB/s a
/// core gets through 1 MiB in about 50 µs, about what it costs to wake pool threads, hand
/// them the work and wait for them (measured: handing 512 KiB batches to the pool added
/// ~150 µs and 15 context switches to a 1 MiB GET).
const PARALLEL_MIN_BYTES: usize = 1 << 20;

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
const SLOT_BYTES: usize = 512 << 10;

/// How many slots of [`SLOT_BYTES`] fit the batch budget (2 ..= 8).
#[cfg(target_os = "linux")]
fn slots_for(batch_bytes: usize) -> usize {
    (batch_bytes / SLOT_BYTES).clamp(2, 8)
}

/// Chunks per batch for a given stride (at least one).
pub(crate) fn chunks_per_batch(batch_bytes: usize, stride: usize) -> usize {
    (batch_bytes / stride).max(1)
}

/// Seals everything `reader` yields into `file` (head at offset 0, then the batches).
/// Returns the plaintext length. The file is not synced here.
pub(crate) fn seal_to_file(
    sealer: &mut ObjectSealer,
    reader: &mut dyn Read,
    file: &IoFile,
    batch_bytes: usize,
) -> Result<u64, SealError> {
    if !file.is_direct() {
        let (r, _) = file.write_all_at(sealer.head().to_vec(), 0);
        r?;
    } else if file.mode() != crate::storage::IoMode::Uring {
        return Err(SealError::Io(io::Error::other(
            "O_DIRECT writes need io_uring",
        )));
    }
    let mut offset = sealer.head().len() as u64;
    let stride = sealer.stride();
    let chunk = sealer.chunk_size();
    #[cfg(target_os = "linux")]
    if file.mode() == crate::storage::IoMode::Uring {
        if file.is_direct() {
            return seal_uring_direct(sealer, reader, file.file(), batch_bytes);
        }
        return seal_uring(sealer, reader, file.file(), offset, batch_bytes);
    }
    let buf_len = chunks_per_batch(batch_bytes, stride) * stride;
    let mut carry = None;
    let mut total = 0u64;

    // First batch inline: most objects are a single batch and need no writer thread.
    let mut buf = vec![0u8; buf_len];
    let (plain, fin) = fill_batch(reader, &mut buf, chunk, stride, &mut carry)?;
    let n = sealer.seal_batch(&mut buf, plain, fin)?;
    total += plain as u64;
    if fin {
        let (r, _) = file.write_prefix_at(buf, 0..n, offset);
        r?;
        return Ok(total);
    }

    thread::scope(|s| -> Result<u64, SealError> {
        let (work_tx, work_rx) = bounded::<(Vec<u8>, usize, u64)>(1);
        let (free_tx, free_rx) = bounded::<io::Result<Vec<u8>>>(2);
        let writer = s.spawn(move || {
            for (buf, len, off) in work_rx {
                let (r, buf) = if len == 0 {
                    (Ok(()), buf)
                } else {
                    file.write_prefix_at(buf, 0..len, off)
                };
                let failed = r.is_err();
                if free_tx.send(r.map(|()| buf)).is_err() || failed {
                    return;
                }
            }
        });
        let mut spare = Some(vec![0u8; buf_len]);
        work_tx
            .send((buf, n, offset))
            .map_err(|_| io::Error::other("writer stopped"))?;
        offset += n as u64;
        loop {
            let mut buf = match spare.take() {
                Some(b) => b,
                None => free_rx
                    .recv()
                    .map_err(|_| io::Error::other("writer stopped"))??,
            };
            let (plain, fin) = fill_batch(reader, &mut buf, chunk, stride, &mut carry)?;
            let n = sealer.seal_batch(&mut buf, plain, fin)?;
            total += plain as u64;
            work_tx
                .send((buf, n, offset))
                .map_err(|_| io::Error::other("writer stopped"))?;
            offset += n as u64;
            if fin {
                break;
            }
        }
        drop(work_tx);
        // Collect the writer's results: any failed write fails the put.
        for r in free_rx.iter() {
            r?;
        }
        writer
            .join()
            .map_err(|_| io::Error::other("writer thread panicked"))?;
        Ok(total)
    })
}

/// The io_uring put pipeline: seal slot k+1 while slots k, k-1, ... are being written.
#[cfg(target_os = "linux")]
fn seal_uring(
    sealer: &mut ObjectSealer,
    reader: &mut dyn Read,
    file: &std::fs::File,
    mut offset: u64,
    batch_bytes: usize,
) -> Result<u64, SealError> {
    let stride = sealer.stride();
    let chunk = sealer.chunk_size();
    let slot_len = chunks_per_batch(batch_bytes.min(SLOT_BYTES), stride) * stride;
    let slots = slots_for(batch_bytes);
    crate::storage::with_queue(slots, |q| -> Result<u64, SealError> {
        let mut carry = None;
        let mut total = 0u64;
        let mut started = 0usize;
        loop {
            let slot = started % slots;
            let mut buf = if started >= slots {
                let (r, b) = q.wait(slot);
                r?;
                b
            } else {
                vec![0u8; slot_len]
            };
            let (plain, fin) = fill_batch(reader, &mut buf, chunk, stride, &mut carry)?;
            let n = sealer.seal_batch(&mut buf, plain, fin)?;
            total += plain as u64;
            q.start(slot, file, true, buf, 0..n, offset, false);
            offset += n as u64;
            started += 1;
            if fin {
                break;
            }
        }
        for slot in 0..started.min(slots) {
            q.wait(slot).0?;
        }
        Ok(total)
    })?
}

/// The O_DIRECT put pipeline: like [`seal_uring`], but every write is block-aligned in file
/// offset, length and memory. Each slot buffer starts with the unaligned tail the previous
/// write left over (the head, for the first), the next batch is sealed in place after it, and
/// only whole blocks are written; the final block is padded with zeros and the file is cut
/// back to its real length once every write completed.
#[cfg(target_os = "linux")]
fn seal_uring_direct(
    sealer: &mut ObjectSealer,
    reader: &mut dyn Read,
    file: &std::fs::File,
    batch_bytes: usize,
) -> Result<u64, SealError> {
    use crate::storage::{DIRECT_ALIGN, align_up, aligned_start};
    let stride = sealer.stride();
    let chunk = sealer.chunk_size();
    let payload = chunks_per_batch(batch_bytes.min(SLOT_BYTES), stride) * stride;
    let slots = slots_for(batch_bytes);
    let mut tail = sealer.head().to_vec();
    let mut written = 0u64; // file offset of `tail[0]`, always aligned
    let mut total = 0u64;
    let logical = crate::storage::with_queue(slots, |q| -> Result<u64, SealError> {
        let mut carry = None;
        let mut started = 0usize;
        loop {
            let slot = started % slots;
            let mut buf = if started >= slots {
                let (r, b) = q.wait(slot);
                r?;
                b
            } else {
                Vec::new()
            };
            buf.clear();
            buf.resize(
                align_up((tail.len() + payload) as u64) as usize + DIRECT_ALIGN,
                0,
            );
            let base = aligned_start(&buf);
            buf[base..base + tail.len()].copy_from_slice(&tail);
            let p0 = base + tail.len();
            let batch = &mut buf[p0..p0 + payload];
            let (plain, fin) = fill_batch(reader, batch, chunk, stride, &mut carry)?;
            let n = sealer.seal_batch(batch, plain, fin)?;
            total += plain as u64;
            let filled = tail.len() + n;
            // Whole blocks only; the final write is padded (the buffer is zeroed past `filled`).
            let wlen = if fin {
                align_up(filled as u64) as usize
            } else {
                filled - filled % DIRECT_ALIGN
            };
            tail.clear();
            if !fin {
                tail.extend_from_slice(&buf[base + wlen..base + filled]);
            }
            let at = written;
            written += wlen as u64;
            if wlen > 0 {
                q.start(slot, file, true, buf, base..base + wlen, at, false);
            }
            started += 1;
            if fin {
                for s in 0..started.min(slots) {
                    q.wait(s).0?;
                }
                return Ok(at + filled as u64);
            }
        }
    })??;
    file.set_len(logical)?;
    Ok(total)
}

/// Reads, verifies and decrypts chunks covering `[offset, offset + len)` of the object and
/// passes the plaintext of the range to `sink`, in order.
pub(crate) fn open_range_pipelined<S: ReadAt + ?Sized>(
    opener: &ObjectOpener,
    src: &S,
    offset: u64,
    len: u64,
    batch_bytes: usize,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), OpenError> {
    let (first, last) = opener.plan_range(offset, len)?;
    let stride = opener.stride();
    let per = chunks_per_batch(batch_bytes, stride as usize) as u64;
    let batches: Vec<(u64, u64)> = (first..=last)
        .step_by(per as usize)
        .map(|b| (b, per.min(last + 1 - b)))
        .collect();
    let end = offset + len;

    let mut deliver = |buf: &mut [u8], b: u64, count: u64| -> Result<(), OpenError> {
        if let Err(e) = opener.open_batch(buf, b, count) {
            return Err(classify(opener, src, e));
        }
        let g = opener.geometry();
        for i in 0..count {
            let k = b + i;
            let start = k * g.chunk_size;
            let plen = g.chunk_plain_len(k);
            let lo = offset.max(start);
            let hi = end.min(start + plen);
            if lo < hi {
                let at = (i * stride + (lo - start)) as usize;
                sink(&buf[at..at + (hi - lo) as usize])?;
            }
        }
        Ok(())
    };

    #[cfg(target_os = "linux")]
    if let Some((file, direct)) = src.uring_file() {
        use crate::storage::{DIRECT_ALIGN, align_up, aligned_start};
        // Smaller batches, several in flight: decrypting batch k overlaps reading k+1 ...
        let per = chunks_per_batch(batch_bytes.min(SLOT_BYTES), stride as usize) as u64;
        let batches: Vec<(u64, u64)> = (first..=last)
            .step_by(per as usize)
            .map(|b| (b, per.min(last + 1 - b)))
            .collect();
        if batches.len() > 1 {
            let slots = slots_for(batch_bytes);
            // The file window a batch is read from: exactly its chunks, or for O_DIRECT the
            // block-aligned window around them (its tail may run past the end of the file).
            let window = |k: usize| -> (u64, u64, u64) {
                let (b, count) = batches[k];
                let (off, len) = opener.chunk_extent(b, count);
                if direct {
                    let a0 = off - off % DIRECT_ALIGN as u64;
                    (a0, align_up(off + len) - a0, off - a0)
                } else {
                    (off, len, 0)
                }
            };
            return crate::storage::with_queue(slots, |q| -> Result<(), OpenError> {
                let n = batches.len();
                let start =
                    |q: &mut crate::storage::uring::UringQueue, k: usize, mut buf: Vec<u8>| {
                        let (at, wlen, _) = window(k);
                        let extra = if direct { DIRECT_ALIGN } else { 0 };
                        buf.resize(wlen as usize + extra, 0);
                        let base = if direct { aligned_start(&buf) } else { 0 };
                        q.start(
                            k % slots,
                            file,
                            false,
                            buf,
                            base..base + wlen as usize,
                            at,
                            direct,
                        );
                    };
                for k in 0..n.min(slots) {
                    start(q, k, Vec::new());
                }
                for (k, &(b, count)) in batches.iter().enumerate() {
                    let (r, mut buf) = q.wait(k % slots);
                    r?;
                    let (_, len) = opener.chunk_extent(b, count);
                    let (_, _, skip) = window(k);
                    let base = if direct { aligned_start(&buf) } else { 0 } + skip as usize;
                    deliver(&mut buf[base..base + len as usize], b, count)?;
                    if k + slots < n {
                        start(q, k + slots, buf);
                    }
                }
                Ok(())
            })?;
        }
    }

    if batches.len() == 1 {
        let (b, count) = batches[0];
        let (off, n) = opener.chunk_extent(b, count);
        let mut buf = vec![0u8; n as usize];
        src.read_exact_at(&mut buf, off)?;
        return deliver(&mut buf, b, count);
    }

    thread::scope(|s| -> Result<(), OpenError> {
        let (full_tx, full_rx) = bounded::<(io::Result<Vec<u8>>, u64, u64)>(1);
        let (free_tx, free_rx) = bounded::<Vec<u8>>(2);
        let batches_ref = &batches;
        s.spawn(move || {
            let mut spare = 2;
            for &(b, count) in batches_ref {
                let mut buf = if spare > 0 {
                    spare -= 1;
                    Vec::new()
                } else {
                    match free_rx.recv() {
                        Ok(b) => b,
                        Err(_) => return,
                    }
                };
                let (off, n) = opener.chunk_extent(b, count);
                buf.resize(n as usize, 0);
                let r = src.read_exact_at(&mut buf, off).map(|()| buf);
                let failed = r.is_err();
                if full_tx.send((r, b, count)).is_err() || failed {
                    return;
                }
            }
        });
        for _ in 0..batches.len() {
            let (r, b, count) = full_rx
                .recv()
                .map_err(|_| io::Error::other("reader stopped"))?;
            let mut buf = r?;
            deliver(&mut buf, b, count)?;
            let _ = free_tx.send(buf);
        }
        Ok(())
    })
}

/// Turns a chunk failure into its most specific error by re-reading that chunk (cold path).
fn classify<S: ReadAt + ?Sized>(opener: &ObjectOpener, src: &S, e: OpenError) -> OpenError {
    let OpenError::ChunkAuth { index } = e else {
        return e;
    };
    let (off, n) = opener.chunk_extent(index, 1);
    let mut stored = vec![0u8; n as usize];
    if src.read_exact_at(&mut stored, off).is_err() {
        return e;
    }
    opener.classify_failure(&stored, index)
}
