//! The GET pipeline of encrypted objects, which overlaps decryption with the reads on two
//! cores: for a range of at least three slots, the calling thread reads slot k+1 (io_uring
//! or std) while a crypto worker verifies and decrypts slot k, and the calling thread hands
//! each slot's plaintext to the sink in order.
//!
//! The workers are a few threads of the process (one fewer than the CPUs, at least one)
//! that sleep on a channel between jobs. Not the rayon pool: its idle threads spin before
//! they sleep; with the slots handed to it, a 1 MiB PUT showed ~0.9 ms more CPU on other
//! threads than a plaintext PUT in a `--quick` run of `dare bench overhead` on two cores
//! (docs/PERFORMANCE.md §10) — CPU the I/O needed. A job owns everything it touches (its
//! buffer, an `Arc` of the opener), so no borrowed memory crosses threads and a request
//! that fails early leaves nothing dangling.
//!
//! PUTs do not use the workers: sealing slot k on a worker while the next slot was filled
//! made a 1 MiB PUT slower, not faster, on the shared two-vCPU machine of §10 (+314 µs per
//! request against +184 µs sealing on the calling thread), so the batch pipeline seals them.
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
use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use crossbeam_channel::{Receiver, Sender, unbounded};
use zeroize::Zeroize;

use crate::error::OpenError;
use crate::pipeline::classify;
use crate::seal::ObjectOpener;
use crate::storage::ReadAt;

/// Plaintext bytes per slot (rounded down to whole chunks, at least one): small enough that
/// a 1 MiB GET has 8 slots to overlap, large enough that a slot's hand-off (two channel
/// messages, a few µs) is small against its decrypt (~25 µs at 5 GB/s).
const SLOT_PLAIN_BYTES: u64 = 128 << 10;

/// Most slots decrypted (or being decrypted) ahead of the one the sink waits for.
const AHEAD: usize = 4;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The crypto workers' job queue, started on first use; `None` if no thread could be started
/// (the pipelines then do the work on the calling thread).
fn workers() -> Option<&'static Sender<Job>> {
    static QUEUE: OnceLock<Option<Sender<Job>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let n = std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .clamp(1, 8);
            let (tx, rx) = unbounded::<Job>();
            let mut started = 0;
            for i in 0..n {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("dare-crypto-{i}"))
                    .spawn(move || {
                        for job in rx {
                            // A job that panicked dropped its result sender: its request
                            // fails ("worker stopped"); the worker serves the next one.
                            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                        }
                    });
                if spawned.is_ok() {
                    started += 1;
                }
            }
            (started > 0).then_some(tx)
        })
        .as_ref()
}

/// Runs `job` on a crypto worker, or here if there is none.
fn run(job: Job) {
    match workers() {
        Some(q) => {
            if let Err(e) = q.send(job) {
                (e.0)();
            }
        }
        None => job(),
    }
}

/// A slot a worker has opened: the result, its buffer, and where in it the batch sits.
struct Opened {
    k: usize,
    result: Result<usize, OpenError>,
    buf: Vec<u8>,
    at: usize,
    len: usize,
}

/// A slot's buffer, taken by whichever thread starts on it first: a worker, or the
/// requesting thread when it would otherwise wait.
type Claim<T> = Arc<Mutex<Option<T>>>;

fn take<T>(c: &Claim<T>) -> Option<T> {
    c.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Verifies and decrypts slot `k` (chunks `batch`) in `buf[at..at + len]`.
fn open_slot(
    opener: &ObjectOpener,
    (b, count): (u64, u64),
    k: usize,
    mut buf: Vec<u8>,
    at: usize,
    len: usize,
) -> Opened {
    let result = match buf.get_mut(at..at + len) {
        Some(batch) => opener.open_batch(batch, b, count),
        None => Err(OpenError::Truncated),
    };
    Opened {
        k,
        result,
        buf,
        at,
        len,
    }
}

/// Slots handed to the workers, and the in-order delivery of their plaintext.
struct InOrder<'s, S: ?Sized> {
    opener: &'s Arc<ObjectOpener>,
    src: &'s S,
    batches: &'s [(u64, u64)],
    offset: u64,
    end: u64,
    tx: Sender<Opened>,
    rx: Receiver<Opened>,
    /// Opened slots that arrived before an earlier one.
    ready: BTreeMap<usize, Opened>,
    /// Slots handed to the workers and not back yet.
    claims: BTreeMap<usize, (Claim<Vec<u8>>, usize, usize)>,
    spawned: usize,
    delivered: usize,
    free: Vec<Vec<u8>>,
}

impl<'s, S: ReadAt + ?Sized> InOrder<'s, S> {
    /// Hands slot `k`, read into `buf[at..at + len]`, to a worker — or, for the last slot,
    /// opens it here: nothing is left to read, and a worker that went to sleep would take
    /// longer to wake than the one chunk takes to open.
    fn submit(&mut self, k: usize, buf: Vec<u8>, at: usize, len: usize) {
        self.spawned += 1;
        if k + 1 == self.batches.len() {
            let o = open_slot(self.opener, self.batches[k], k, buf, at, len);
            self.ready.insert(k, o);
            return;
        }
        let cell: Claim<Vec<u8>> = Arc::new(Mutex::new(Some(buf)));
        self.claims.insert(k, (cell.clone(), at, len));
        let (tx, opener, batch) = (self.tx.clone(), Arc::clone(self.opener), self.batches[k]);
        run(Box::new(move || {
            // The requesting thread may have opened the slot itself meanwhile.
            let Some(buf) = take(&cell) else { return };
            let opened = open_slot(&opener, batch, k, buf, at, len);
            // The receiver is gone when the read already failed: wipe what was decrypted.
            if let Err(mut e) = tx.send(opened) {
                e.0.buf.zeroize();
            }
        }));
    }

    /// Delivers opened slots in order until at most `ahead` submitted slots are undelivered
    /// (waiting for them), then whatever else is ready. Rather than wait for a worker, this
    /// thread opens the oldest slot no worker has started: when the reads are done, both
    /// cores decrypt.
    fn deliver(
        &mut self,
        ahead: usize,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), OpenError> {
        loop {
            while let Ok(o) = self.rx.try_recv() {
                self.claims.remove(&o.k);
                self.ready.insert(o.k, o);
            }
            if let Some(o) = self.ready.remove(&self.delivered) {
                self.emit(o, sink)?;
                continue;
            }
            if self.spawned - self.delivered <= ahead {
                return Ok(());
            }
            let claimed = self
                .claims
                .iter()
                .find_map(|(&k, (cell, at, len))| take(cell).map(|buf| (k, buf, *at, *len)));
            if let Some((k, buf, at, len)) = claimed {
                self.claims.remove(&k);
                let o = open_slot(self.opener, self.batches[k], k, buf, at, len);
                self.ready.insert(k, o);
                continue;
            }
            let o = self
                .rx
                .recv()
                .map_err(|_| io::Error::other("decrypt worker stopped"))?;
            self.claims.remove(&o.k);
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

impl<S: ?Sized> Drop for InOrder<'_, S> {
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
    opener: &Arc<ObjectOpener>,
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
    {
        let mut io = InOrder {
            opener,
            src,
            batches: &batches,
            offset,
            end: offset + len,
            tx,
            rx,
            ready: BTreeMap::new(),
            claims: BTreeMap::new(),
            spawned: 0,
            delivered: 0,
            free: Vec::new(),
        };
        #[cfg(target_os = "linux")]
        if let Some((file, direct)) = src.uring_file() {
            return read_uring(&mut io, file, direct, slots, sink);
        }
        let _ = slots;
        for (k, &(b, count)) in batches.iter().enumerate() {
            let (off, n) = opener.chunk_extent(b, count);
            let mut buf = io.take_buf();
            buf.resize(n as usize, 0);
            src.read_exact_at(&mut buf, off)?;
            io.submit(k, buf, 0, n as usize);
            io.deliver(AHEAD, sink)?;
        }
        io.deliver(0, sink)
    }
}

/// The io_uring reader: `slots` reads in flight on one ring (block-aligned windows with
/// `O_DIRECT`); each completed slot goes to a worker and its buffer, once delivered, carries
/// a later read.
#[cfg(target_os = "linux")]
fn read_uring<S: ReadAt + ?Sized>(
    io: &mut InOrder<'_, S>,
    file: &std::fs::File,
    direct: bool,
    slots: usize,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(), OpenError> {
    use crate::storage::aligned_start;
    let batches = io.batches;
    let opener: &ObjectOpener = io.opener;
    let n = batches.len();
    let window = |k: usize| crate::pipeline::read_window(opener, batches[k], direct);
    let start = |q: &mut crate::storage::uring::UringQueue, k: usize, buf: Vec<u8>| {
        crate::pipeline::start_window_read(q, k % slots, file, buf, window(k), direct);
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

/// Whether a range of `chunks` chunks is long enough to overlap: at least three slots.
pub(crate) fn worth_it(opener: &ObjectOpener, chunks: u64) -> bool {
    chunks >= 3 * chunks_per_slot(opener.geometry().chunk_size)
}

/// How many plaintext chunks a slot holds: [`SLOT_PLAIN_BYTES`] worth, at least one.
fn chunks_per_slot(chunk_size: u64) -> u64 {
    (SLOT_PLAIN_BYTES / chunk_size).max(1)
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
