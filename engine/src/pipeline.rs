//! The pipelines that overlap disk I/O with encryption, for one object (long encrypted
//! GETs: `overlap`).
//!
//! Put: the caller's thread fills and seals batch k+1 while batch k is written (io_uring:
//! several slots in flight on one ring; std: a writer thread). Get: batch k+1 is read while
//! batch k is verified and decrypted. Each pipeline holds a bounded number of batch buffers,
//! so memory is bounded whatever the object size. The data file is any [`DataFile`]: the
//! io_uring paths are taken when it is an io_uring-backed file, the generic paths otherwise
//! (std I/O, or the crash-simulating volume of the tests).

use std::io::{self, Read};
use std::sync::Arc;
use std::thread;

use crossbeam_channel::bounded;

use crate::batch::chunks_per_batch;
#[cfg(target_os = "linux")]
use crate::batch::{SLOT_BYTES, slots_for};
use crate::error::{OpenError, SealError};
use crate::seal::{ObjectOpener, ObjectSealer, fill_batch};
use crate::storage::{DataFile, ReadAt};

/// Seals everything `reader` yields into `file` (head at offset 0, then the batches).
/// Returns the plaintext length. The file is not synced here.
pub(crate) fn seal_to_file(
    sealer: &mut ObjectSealer,
    reader: &mut dyn Read,
    file: &dyn DataFile,
    batch_bytes: usize,
) -> Result<u64, SealError> {
    let mut offset = sealer.head().len() as u64;
    #[cfg(target_os = "linux")]
    if let Some((f, direct)) = file.uring_file() {
        if direct {
            return seal_uring_direct(sealer, reader, f, batch_bytes);
        }
        let (r, _) = file.write_prefix_at(sealer.head().to_vec(), 0..0, 0);
        r?;
        return seal_uring(sealer, reader, f, offset, batch_bytes);
    }
    if file.is_direct() {
        return Err(SealError::Io(io::Error::other(
            "O_DIRECT writes need io_uring",
        )));
    }
    let (r, _) = file.write_prefix_at(sealer.head().to_vec(), 0..0, 0);
    r?;
    let stride = sealer.stride();
    let chunk = sealer.chunk_size();
    let buf_len = chunks_per_batch(batch_bytes, stride) * stride;
    let mut carry = None;
    let mut total = 0u64;

    // First batch inline: most objects are a single batch and need no writer thread.
    let mut buf = vec![0u8; buf_len];
    let (plain, fin) = fill_batch(reader, &mut buf, chunk, stride, &mut carry)?;
    let n = sealer.seal_batch(&mut buf, plain, fin)?;
    total += plain as u64;
    if fin {
        // `0..0` would mean "all of buf" to write_prefix_at: an empty object in clear seals
        // to nothing, and nothing must be written.
        if n > 0 {
            let (r, _) = file.write_prefix_at(buf, 0..n, offset);
            r?;
        }
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
///
/// `shared` is the same opener behind an `Arc` when the caller has one: encrypted ranges of
/// several chunks are then opened on the crypto workers while the next slot is read
/// (`overlap`); without it everything happens on the calling thread.
pub(crate) fn open_range_pipelined<S: ReadAt + ?Sized>(
    opener: &ObjectOpener,
    shared: Option<&Arc<ObjectOpener>>,
    src: &S,
    offset: u64,
    len: u64,
    batch_bytes: usize,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), OpenError> {
    let (first, last) = opener.plan_range(offset, len)?;
    // Encrypted ranges of several slots: read the next slot while a worker opens this one.
    // Shorter ranges open on this thread: handing a chunk or two to another thread costs
    // about what opening them does.
    if let Some(shared) =
        shared.filter(|o| o.is_encrypted() && crate::overlap::worth_it(o, last - first + 1))
    {
        return crate::overlap::open_range(
            shared,
            src,
            first,
            last,
            offset,
            len,
            batch_bytes,
            sink,
        );
    }
    let stride = opener.stride();
    let per = chunks_per_batch(batch_bytes, stride as usize) as u64;
    let batches: Vec<(u64, u64)> = (first..=last)
        .step_by(per as usize)
        .map(|b| (b, per.min(last + 1 - b)))
        .collect();
    let end = offset + len;

    let mut deliver = |buf: &mut [u8], b: u64, count: u64| -> Result<(), OpenError> {
        // Chunks the range covers only partly are verified whole but decrypted only over the
        // bytes delivered below (`open_batch_range`): the slices taken here are exactly the
        // decrypted spans.
        if let Err(e) = opener.open_batch_range(buf, b, count, offset, end) {
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
                sink(&buf[at..at + (hi - lo) as usize]).map_err(OpenError::Sink)?;
            }
        }
        Ok(())
    };

    #[cfg(target_os = "linux")]
    if let Some((file, direct)) = src.uring_file() {
        use crate::storage::aligned_start;
        // Smaller batches, several in flight: decrypting batch k overlaps reading k+1 ...
        let per = chunks_per_batch(batch_bytes.min(SLOT_BYTES), stride as usize) as u64;
        let batches: Vec<(u64, u64)> = (first..=last)
            .step_by(per as usize)
            .map(|b| (b, per.min(last + 1 - b)))
            .collect();
        if batches.len() > 1 {
            let slots = slots_for(batch_bytes);
            let window = |k: usize| read_window(opener, batches[k], direct);
            return crate::storage::with_queue(slots, |q| -> Result<(), OpenError> {
                let n = batches.len();
                let start = |q: &mut crate::storage::uring::UringQueue, k: usize, buf: Vec<u8>| {
                    start_window_read(q, k % slots, file, buf, window(k), direct);
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
pub(crate) fn classify<S: ReadAt + ?Sized>(
    opener: &ObjectOpener,
    src: &S,
    e: OpenError,
) -> OpenError {
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

/// Reads the whole object, passing verified plaintext to `sink` batch by batch. An empty
/// object still has its empty final chunk verified; a format-2 object in clear has its
/// CRC-32C checked at the end ([`OpenError::ChecksumMismatch`]: what was handed to `sink`
/// must then be discarded — the CLI writes files only after a whole read succeeded).
pub(crate) fn read_all<S: ReadAt + ?Sized>(
    opener: &ObjectOpener,
    shared: Option<&Arc<ObjectOpener>>,
    src: &S,
    batch_bytes: usize,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), OpenError> {
    if opener.plaintext_len() == 0 {
        if let Some(crc) = opener.clear_crc()
            && crc != 0
        {
            return Err(OpenError::ChecksumMismatch);
        }
        if !opener.is_encrypted() {
            return Ok(());
        }
        // Nothing to hand out, but the empty final chunk must still authenticate.
        let (off, n) = opener.chunk_extent(0, 1);
        let mut buf = vec![0u8; n as usize];
        src.read_exact_at(&mut buf, off)?;
        return opener
            .open_batch(&mut buf, 0, 1)
            .map(|_| ())
            .map_err(|e| classify(opener, src, e));
    }
    let Some(expected) = opener.clear_crc() else {
        return open_range_pipelined(
            opener,
            shared,
            src,
            0,
            opener.plaintext_len(),
            batch_bytes,
            sink,
        );
    };
    let mut crc = 0u32;
    open_range_pipelined(
        opener,
        shared,
        src,
        0,
        opener.plaintext_len(),
        batch_bytes,
        &mut |p| {
            crc = crc32c::crc32c_append(crc, p);
            sink(p)
        },
    )?;
    if crc == expected {
        Ok(())
    } else {
        Err(OpenError::ChecksumMismatch)
    }
}

/// Seals `data` into the bytes of an in-memory data file (header, then chunks), `batch_bytes`
/// at a time, through the same batch code as the file pipeline. For embedders that keep
/// objects in memory, tests, fuzzing and benchmarks. `sealer.summary()` is set afterwards.
pub fn seal_to_vec(
    sealer: &mut ObjectSealer,
    data: &[u8],
    batch_bytes: usize,
) -> Result<Vec<u8>, SealError> {
    let body = crate::format::Geometry::body_len(sealer.chunk_shift(), data.len() as u64)
        .ok_or(SealError::TooLarge)?;
    let mut out = Vec::with_capacity(
        sealer.head().len() + usize::try_from(body).map_err(|_| SealError::TooLarge)?,
    );
    out.extend_from_slice(sealer.head());
    let stride = sealer.stride();
    let mut buf = vec![0u8; chunks_per_batch(batch_bytes, stride) * stride];
    let mut carry = None;
    let mut reader = data;
    loop {
        let (plain, fin) = fill_batch(
            &mut reader,
            &mut buf,
            sealer.chunk_size(),
            stride,
            &mut carry,
        )?;
        let n = sealer.seal_batch(&mut buf, plain, fin)?;
        out.extend_from_slice(&buf[..n]);
        if fin {
            return Ok(out);
        }
    }
}

/// Opens a whole in-memory data file with `opener`: its plaintext, or an error and no
/// plaintext at all.
pub fn open_from_slice(
    opener: &ObjectOpener,
    file: &[u8],
    batch_bytes: usize,
) -> Result<Vec<u8>, OpenError> {
    opener.check_file_len(file.len() as u64)?;
    opener.check_file_header(file)?;
    let mut out = Vec::new();
    match read_all(opener, None, file, batch_bytes, &mut |p| {
        out.extend_from_slice(p);
        Ok(())
    }) {
        Ok(()) => Ok(out),
        Err(e) => {
            zeroize::Zeroize::zeroize(&mut out);
            Err(e)
        }
    }
}

/// Opens `len` bytes at `offset` of an in-memory data file with `opener`.
pub fn open_range_from_slice(
    opener: &ObjectOpener,
    file: &[u8],
    offset: u64,
    len: u64,
    batch_bytes: usize,
) -> Result<Vec<u8>, OpenError> {
    opener.check_file_len(file.len() as u64)?;
    opener.check_file_header(file)?;
    let mut out = Vec::new();
    match open_range_pipelined(opener, None, file, offset, len, batch_bytes, &mut |p| {
        out.extend_from_slice(p);
        Ok(())
    }) {
        Ok(()) => Ok(out),
        Err(e) => {
            zeroize::Zeroize::zeroize(&mut out);
            Err(e)
        }
    }
}

/// The file window that batch `(first chunk, count)` is read from: exactly its chunks, or for
/// O_DIRECT the block-aligned window around them (its tail may run past the end of the file).
/// Returns (file offset, length, where the chunks start in the window).
#[cfg(target_os = "linux")]
pub(crate) fn read_window(
    opener: &ObjectOpener,
    batch: (u64, u64),
    direct: bool,
) -> (u64, u64, u64) {
    use crate::storage::{DIRECT_ALIGN, align_up};
    let (off, len) = opener.chunk_extent(batch.0, batch.1);
    if direct {
        let a0 = off - off % DIRECT_ALIGN as u64;
        (a0, align_up(off + len) - a0, off - a0)
    } else {
        (off, len, 0)
    }
}

/// Starts reading `window` (from [`read_window`]) of `file` into `buf` on ring slot `slot`.
#[cfg(target_os = "linux")]
pub(crate) fn start_window_read(
    q: &mut crate::storage::uring::UringQueue,
    slot: usize,
    file: &std::fs::File,
    mut buf: Vec<u8>,
    window: (u64, u64, u64),
    direct: bool,
) {
    use crate::storage::{DIRECT_ALIGN, aligned_start};
    let (at, wlen, _) = window;
    let extra = if direct { DIRECT_ALIGN } else { 0 };
    buf.resize(wlen as usize + extra, 0);
    let base = if direct { aligned_start(&buf) } else { 0 };
    q.start(
        slot,
        file,
        false,
        buf,
        base..base + wlen as usize,
        at,
        direct,
    );
}
