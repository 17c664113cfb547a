//! The pipelines of encrypted objects, which overlap the cryptography with the I/O on two
//! cores. GET (ranges of several chunks): the calling thread reads slot k+1 (io_uring or
//! std) while a rayon pool thread verifies and decrypts slot k, and the calling thread hands
//! each slot's plaintext to the sink in order. PUT: the calling thread fills slot k+1 from
//! the source and writes sealed slots in order while pool threads seal slot k.
//!
//! Why not decrypt on the calling thread, as the batch pipeline does: a buffered read's copy
//! out of the page cache runs on the thread that asked for it (a `pread`, or an io_uring
//! completion's task work), so a thread that also decrypts serialises the two, and a 1 MiB
//! GET paid its whole decrypt on top of its read (issue 13). Here the copy of slot k+1 and
//! the decrypt of slot k run on two cores. What cannot hide is the decrypt of the last slot,
//! which is therefore one chunk long.
//!
//! Verification is unchanged: a slot's plaintext reaches the sink only after every tag in it
//! verified (`ObjectOpener::open_batch` zeroes the slot otherwise), and slots reach the sink
//! in order, so after a failure at chunk i the sink has seen exactly the verified chunks
//! before the failed slot. Slots decrypted ahead of a failure are zeroed, never delivered.
//! Memory is bounded: at most `slots` reads in flight plus [`AHEAD`] slots decrypted ahead.

use std::collections::BTreeMap;
use std::io::{self, Read};

use crossbeam_channel::{Receiver, Sender, unbounded};
use zeroize::Zeroize;

use crate::error::{OpenError, SealError};
use crate::pipeline::classify;
use crate::seal::{ObjectOpener, ObjectSealer, Reserved, fill_batch};
use crate::storage::ReadAt;

/// Plaintext bytes per slot (rounded down to whole chunks, at least one): small enough that
/// a 1 MiB GET has 8 slots to overlap, large enough that a slot's hand-off (a rayon spawn and
/// a channel message, a few µs) is small against its decrypt (~25 µs at 5 GB/s).
const SLOT_PLAIN_BYTES: u64 = 128 << 10;

/// Most slots decrypted (or being decrypted) ahead of the one the sink waits for.
const AHEAD: usize = 4;

/// A slot the pool has opened: the result, its buffer, and where in it the batch sits.
struct Opened {
    k: usize,
    result: Result<usize, OpenError>,
    buf: Vec<u8>,
    at: usize,
    len: usize,
}

/// Slots handed to the pool, and the in-order delivery of their plaintext.
struct InOrder<'a, 's, S: ?Sized> {
    scope: &'a rayon::Scope<'s>,
    opener: &'s ObjectOpener,
    src: &'s S,
    batches: &'s [(u64, u64)],
    offset: u64,
    end: u64,
    tx: Sender<Opened>,
    rx: Receiver<Opened>,
    /// Opened slots that arrived before an earlier one.
    ready: BTreeMap<usize, Opened>,
    spawned: usize,
    delivered: usize,
    free: Vec<Vec<u8>>,
}

impl<'a, 's, S: ReadAt + ?Sized> InOrder<'a, 's, S> {
    /// Hands slot `k`, read into `buf[at..at + len]`, to the pool — or, for the last slot,
    /// opens it here: nothing is left to read, and a pool thread that went to sleep would
    /// take longer to wake than the one chunk takes to open.
    fn submit(&mut self, k: usize, buf: Vec<u8>, at: usize, len: usize) {
        let (tx, opener, (b, count)) = (self.tx.clone(), self.opener, self.batches[k]);
        if k + 1 == self.batches.len() {
            let mut buf = buf;
            let result = match buf.get_mut(at..at + len) {
                Some(batch) => opener.open_batch(batch, b, count),
                None => Err(OpenError::Truncated),
            };
            let opened = Opened {
                k,
                result,
                buf,
                at,
                len,
            };
            self.ready.insert(k, opened);
            self.spawned += 1;
            return;
        }
        self.scope.spawn(move |_| {
            let mut buf = buf;
            let result = match buf.get_mut(at..at + len) {
                Some(batch) => opener.open_batch(batch, b, count),
                None => Err(OpenError::Truncated),
            };
            let opened = Opened {
                k,
                result,
                buf,
                at,
                len,
            };
            // The receiver is gone when the read already failed: wipe what was decrypted.
            if let Err(mut e) = tx.send(opened) {
                e.0.buf.zeroize();
            }
        });
        self.spawned += 1;
    }

    /// Delivers opened slots in order until at most `ahead` submitted slots are undelivered
    /// (blocking for them), then whatever else is ready without blocking.
    fn deliver(
        &mut self,
        ahead: usize,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), OpenError> {
        loop {
            while let Ok(o) = self.rx.try_recv() {
                self.ready.insert(o.k, o);
            }
            if let Some(o) = self.ready.remove(&self.delivered) {
                self.emit(o, sink)?;
                continue;
            }
            if self.spawned - self.delivered <= ahead {
                return Ok(());
            }
            let o = self
                .rx
                .recv()
                .map_err(|_| io::Error::other("decrypt worker stopped"))?;
            self.ready.insert(o.k, o);
        }
    }

    /// Passes the part of slot `o` inside the range to the sink (the slot verified), or
    /// turns its failure into the most specific error.
    fn emit(
        &mut self,
        o: Opened,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), OpenError> {
        let Opened {
            k,
            result,
            buf,
            at,
            len,
        } = o;
        self.delivered += 1;
        if let Err(e) = result {
            return Err(classify(self.opener, self.src, e));
        }
        let (b, count) = self.batches[k];
        let g = *self.opener.geometry();
        let stride = self.opener.stride();
        let plain = &buf[at..at + len];
        for i in 0..count {
            let c = b + i;
            let start = c * g.chunk_size;
            let lo = self.offset.max(start);
            let hi = self.end.min(start + g.chunk_plain_len(c));
            if lo < hi {
                let from = (i * stride + (lo - start)) as usize;
                sink(&plain[from..from + (hi - lo) as usize]).map_err(OpenError::Sink)?;
            }
        }
        self.free.push(buf);
        Ok(())
    }

    /// A buffer for the next read: one whose plaintext was delivered, or a new one.
    fn take_buf(&mut self) -> Vec<u8> {
        self.free.pop().unwrap_or_default()
    }
}

impl<S: ?Sized> Drop for InOrder<'_, '_, S> {
    fn drop(&mut self) {
        // Slots opened but never delivered (a failure stopped the read): no plaintext stays.
        for o in self.ready.values_mut() {
            o.buf.zeroize();
        }
        while let Ok(mut o) = self.rx.try_recv() {
            o.buf.zeroize();
        }
    }
}

/// The slots of chunks `first..=last`: `per` chunks each, and the last chunk alone, so that
/// the decrypt no read can hide is one chunk's.
fn slots_of(first: u64, last: u64, per: u64) -> Vec<(u64, u64)> {
    let mut v = Vec::with_capacity(((last - first) / per + 2) as usize);
    let mut b = first;
    while b < last {
        let n = per.min(last - b);
        v.push((b, n));
        b += n;
    }
    v.push((last, 1));
    v
}

/// Reads, verifies and decrypts chunks `first..=last` (`first < last`) of an encrypted
/// object, passing the plaintext of `[offset, offset + len)` to `sink` in order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn open_range<S: ReadAt + ?Sized>(
    opener: &ObjectOpener,
    src: &S,
    first: u64,
    last: u64,
    offset: u64,
    len: u64,
    batch_bytes: usize,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), OpenError> {
    let per = chunks_per_slot(opener.geometry().chunk_size);
    let batches = slots_of(first, last, per);
    let slot_bytes = (per * opener.stride()) as usize;
    // Reads in flight: what the batch budget allows, 2 ..= 16 (one io_uring piece each).
    let slots = (batch_bytes / slot_bytes).clamp(2, 16);
    let (tx, rx) = unbounded();
    rayon::in_place_scope(|scope| {
        let mut io = InOrder {
            scope,
            opener,
            src,
            batches: &batches,
            offset,
            end: offset + len,
            tx,
            rx,
            ready: BTreeMap::new(),
            spawned: 0,
            delivered: 0,
            free: Vec::new(),
        };
        #[cfg(target_os = "linux")]
        if let Some((file, direct)) = src.uring_file() {
            return read_uring(&mut io, file, direct, slots, sink);
        }
        let _ = slots;
        for k in 0..batches.len() {
            let (b, count) = batches[k];
            let (off, n) = opener.chunk_extent(b, count);
            let mut buf = io.take_buf();
            buf.resize(n as usize, 0);
            src.read_exact_at(&mut buf, off)?;
            io.submit(k, buf, 0, n as usize);
            io.deliver(AHEAD, sink)?;
        }
        io.deliver(0, sink)
    })
}

/// The io_uring reader: `slots` reads in flight on one ring (block-aligned windows with
/// `O_DIRECT`); each completed slot goes to the pool and its buffer, once delivered, carries
/// a later read.
#[cfg(target_os = "linux")]
fn read_uring<S: ReadAt + ?Sized>(
    io: &mut InOrder<'_, '_, S>,
    file: &std::fs::File,
    direct: bool,
    slots: usize,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), OpenError> {
    use crate::storage::{DIRECT_ALIGN, align_up, aligned_start};
    let batches = io.batches;
    let opener = io.opener;
    let n = batches.len();
    // The file window slot k is read from: exactly its chunks, or for O_DIRECT the
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
    let start = |q: &mut crate::storage::uring::UringQueue, k: usize, mut buf: Vec<u8>| {
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
    crate::storage::with_queue(slots, |q| -> Result<(), OpenError> {
        for k in 0..n.min(slots) {
            start(q, k, Vec::new());
        }
        for (k, &(b, count)) in batches.iter().enumerate() {
            let (r, buf) = q.wait(k % slots);
            r?;
            let (_, len) = opener.chunk_extent(b, count);
            let (_, _, skip) = window(k);
            let at = if direct { aligned_start(&buf) } else { 0 } + skip as usize;
            io.submit(k, buf, at, len as usize);
            io.deliver(AHEAD, sink)?;
            if k + slots < n {
                start(q, k + slots, io.take_buf());
            }
        }
        io.deliver(0, sink)
    })?
}

/// How many plaintext chunks a slot holds: [`SLOT_PLAIN_BYTES`] worth, at least one.
fn chunks_per_slot(chunk_size: u64) -> u64 {
    (SLOT_PLAIN_BYTES / chunk_size).max(1)
}

/// A sealed slot back from the pool: its index, result, buffer and reservation.
type Sealed = (usize, Result<usize, SealError>, Vec<u8>, Reserved);

/// Writes sealed slot `k` (`buf[..n]` at file offset `off`), or starts writing it; returns a
/// buffer free for reuse, if one is.
pub(crate) type WriteSlot<'w> =
    dyn FnMut(usize, Vec<u8>, usize, u64) -> Result<Option<Vec<u8>>, SealError> + 'w;

/// The PUT pipeline of an encrypted object: fills slot k+1 from `reader` while pool threads
/// seal earlier slots, and passes sealed slots to `write` in order, from file offset
/// `offset`. The final slot is sealed on the calling thread (nothing is left to fill). An
/// object of one slot is filled, sealed and written without the pool. Returns the plaintext
/// length. At most [`AHEAD`] slots are being sealed or waiting to be written.
pub(crate) fn seal_with(
    sealer: &mut ObjectSealer,
    reader: &mut dyn Read,
    mut offset: u64,
    write: &mut WriteSlot<'_>,
) -> Result<u64, SealError> {
    let ctx = sealer
        .seal_ctx()
        .ok_or(SealError::Io(io::Error::other("object is not encrypted")))?;
    let (chunk, stride) = (sealer.chunk_size(), sealer.stride());
    let slot_len = chunks_per_slot(chunk as u64) as usize * stride;
    let mut carry = None;
    let mut buf = vec![0u8; slot_len];
    let (plain, fin) = fill_batch(reader, &mut buf, chunk, stride, &mut carry)?;
    if fin {
        let n = sealer.seal_batch(&mut buf, plain, fin)?;
        write(0, buf, n, offset)?;
        return Ok(plain as u64);
    }
    let mut first = Some((buf, plain));
    let (tx, rx) = unbounded::<Sealed>();
    rayon::in_place_scope(|scope| -> Result<u64, SealError> {
        let mut ready: BTreeMap<usize, Sealed> = BTreeMap::new();
        let mut free: Vec<Vec<u8>> = Vec::new();
        let (mut spawned, mut written, mut total) = (0usize, 0usize, 0u64);
        loop {
            let (mut buf, plain, fin) = match first.take() {
                Some((buf, plain)) => (buf, plain, false),
                None => {
                    let mut buf = free.pop().unwrap_or_else(|| vec![0u8; slot_len]);
                    let (plain, fin) = fill_batch(reader, &mut buf, chunk, stride, &mut carry)?;
                    (buf, plain, fin)
                }
            };
            let r = sealer.reserve(plain, fin)?;
            total += plain as u64;
            let k = spawned;
            spawned += 1;
            if fin {
                let res = ctx.seal(&mut buf, &r);
                ready.insert(k, (k, res, buf, r));
            } else {
                let (ctx, tx) = (ctx.clone(), tx.clone());
                scope.spawn(move |_| {
                    let mut buf = buf;
                    let res = ctx.seal(&mut buf, &r);
                    // A failed put dropped the receiver; the slot is simply dropped.
                    let _ = tx.send((k, res, buf, r));
                });
            }
            // Write sealed slots in order; wait for them while too many are outstanding
            // (all of them once the final slot is sealed).
            let ahead = if fin { 0 } else { AHEAD };
            loop {
                while let Ok(s) = rx.try_recv() {
                    ready.insert(s.0, s);
                }
                if let Some((_, res, buf, r)) = ready.remove(&written) {
                    let n = res?;
                    sealer.absorb(&buf, &r)?;
                    if let Some(b) = write(written, buf, n, offset)? {
                        free.push(b);
                    }
                    offset += r.sealed_len() as u64;
                    written += 1;
                    continue;
                }
                if spawned - written <= ahead {
                    break;
                }
                let s = rx
                    .recv()
                    .map_err(|_| io::Error::other("seal worker stopped"))?;
                ready.insert(s.0, s);
            }
            if fin {
                return Ok(total);
            }
        }
    })
}

/// [`seal_with`] on io_uring: sealed slots are written with several in flight on one ring.
#[cfg(target_os = "linux")]
pub(crate) fn seal_uring(
    sealer: &mut ObjectSealer,
    reader: &mut dyn Read,
    file: &std::fs::File,
    offset: u64,
    batch_bytes: usize,
) -> Result<u64, SealError> {
    let slot_len = chunks_per_slot(sealer.chunk_size() as u64) as usize * sealer.stride();
    let slots = (batch_bytes / slot_len).clamp(2, 16);
    crate::storage::with_queue(slots, |q| -> Result<u64, SealError> {
        let mut started = 0usize;
        let total = seal_with(sealer, reader, offset, &mut |k, buf, n, off| {
            let slot = k % slots;
            let back = if k >= slots {
                let (r, b) = q.wait(slot);
                r?;
                Some(b)
            } else {
                None
            };
            q.start(slot, file, true, buf, 0..n, off, false);
            started = k + 1;
            Ok(back)
        })?;
        for slot in 0..started.min(slots) {
            q.wait(slot).0?;
        }
        Ok(total)
    })?
}

#[cfg(test)]
mod tests {
    use super::slots_of;

    #[test]
    fn slots_cover_the_range_and_end_with_one_chunk() {
        assert_eq!(slots_of(0, 1, 2), [(0, 1), (1, 1)]);
        assert_eq!(slots_of(0, 15, 2), {
            let mut v: Vec<(u64, u64)> = (0..7).map(|i| (2 * i, 2)).collect();
            v.extend([(14, 1), (15, 1)]);
            v
        });
        assert_eq!(slots_of(3, 9, 4), [(3, 4), (7, 2), (9, 1)]);
        assert_eq!(slots_of(5, 6, 1), [(5, 1), (6, 1)]);
    }
}
