//! io_uring positioned I/O. Each batch is split into pieces of up to [`PIECE`] bytes that
//! are all in flight at once (queue depth up to [`DEPTH`]), so one batch keeps the drive's
//! queue busy. Each thread keeps one ring, created on first use.
//!
//! This module and its sibling are the only places the engine's storage `unsafe` lives: a
//! submission queue entry carries a raw pointer into a buffer, and the kernel uses that
//! buffer until the matching completion arrives. Every function here waits for *every*
//! submitted entry to complete before it returns, on success and on error alike, so no
//! buffer is ever released while the kernel may still touch it.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use io_uring::{IoUring, opcode, types};

/// Largest single request.
const PIECE: usize = 256 << 10;
/// Most requests in flight per call.
const DEPTH: usize = 16;

thread_local! {
    static RING: RefCell<Option<IoUring>> = const { RefCell::new(None) };
}

/// Whether a ring can be set up and completes a no-op (seccomp can allow the setup call and
/// still block `io_uring_enter`).
pub(super) fn probe() -> bool {
    let Ok(mut ring) = IoUring::new(2) else {
        return false;
    };
    let nop = opcode::Nop::new().build().user_data(7);
    // SAFETY: a NOP entry references no memory, so nothing has to outlive it.
    if unsafe { ring.submission().push(&nop) }.is_err() {
        return false;
    }
    if ring.submit_and_wait(1).is_err() {
        return false;
    }
    ring.completion()
        .next()
        .is_some_and(|c| c.user_data() == 7 && c.result() >= 0)
}

fn with_ring<T>(f: impl FnOnce(&mut IoUring) -> io::Result<T>) -> io::Result<T> {
    RING.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| io::Error::other("io_uring ring busy"))?;
        if slot.is_none() {
            *slot = Some(IoUring::new(DEPTH as u32 * 2)?);
        }
        match slot.as_mut() {
            Some(ring) => f(ring),
            None => Err(io::Error::other("io_uring ring unavailable")),
        }
    })
}

/// One outstanding piece: `len` bytes at buffer position `pos`, file offset `off`.
#[derive(Clone, Copy)]
struct Piece {
    pos: usize,
    len: usize,
    off: u64,
}

enum Dir {
    Read(*mut u8),
    Write(*const u8),
}

/// Transfers every piece of `[0, total)` between the buffer at `dir` and the file starting at
/// file offset `off`, resubmitting short transfers, with up to DEPTH pieces in flight. With
/// `eof_stops` (O_DIRECT reads of an aligned window that may run past the end of the file), a
/// read that ends short of a block boundary, or returns nothing, has reached the end of the
/// file: the piece is done rather than resubmitted at an unaligned offset.
///
/// # Safety
/// - `dir`'s pointer must be valid for reads (Write) or writes (Read) of `total` bytes for the
///   whole call, and not accessed by anything else meanwhile.
unsafe fn transfer(
    ring: &mut IoUring,
    file: &File,
    dir: Dir,
    total: usize,
    off: u64,
    eof_stops: bool,
) -> io::Result<()> {
    let fd = types::Fd(file.as_raw_fd());
    let mut todo: Vec<Piece> = (0..total.div_ceil(PIECE))
        .map(|i| {
            let pos = i * PIECE;
            Piece {
                pos,
                len: PIECE.min(total - pos),
                off: off + pos as u64,
            }
        })
        .rev()
        .collect();
    let mut in_flight: Vec<Option<Piece>> = vec![None; DEPTH];
    let mut outstanding = 0usize;
    let mut first_err: Option<io::Error> = None;
    loop {
        // Fill free slots unless an error already occurred.
        while first_err.is_none() && outstanding < DEPTH {
            let Some(p) = todo.pop() else { break };
            let Some(slot) = in_flight.iter().position(Option::is_none) else {
                todo.push(p);
                break;
            };
            // PIECE (256 KiB) fits a u32, so the length always converts; never return early
            // here: requests may be in flight and must be reaped first.
            let len = p.len.min(PIECE) as u32;
            // `wrapping_add` only computes the address (`p.pos + p.len <= total`, inside the
            // buffer); the kernel is the one that dereferences it.
            let sqe = match dir {
                Dir::Read(ptr) => opcode::Read::new(fd, ptr.wrapping_add(p.pos), len)
                    .offset(p.off)
                    .build(),
                Dir::Write(ptr) => opcode::Write::new(fd, ptr.wrapping_add(p.pos), len)
                    .offset(p.off)
                    .build(),
            }
            .user_data(slot as u64);
            // SAFETY:
            // - the entry points into the caller's buffer, valid for `total` bytes for the
            //   whole call (this function's contract);
            // - we do not return before every pushed entry completed (the drain loop below),
            //   so the buffer outlives the kernel's use of it;
            // - pieces never overlap, so no two requests write the same bytes.
            if unsafe { ring.submission().push(&sqe) }.is_err() {
                todo.push(p);
                break;
            }
            in_flight[slot] = Some(p);
            outstanding += 1;
        }
        if outstanding == 0 {
            break;
        }
        if let Err(e) = ring.submit_and_wait(1) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // Entries already submitted must still be reaped before the buffer is released.
            first_err.get_or_insert(e);
            if ring.submit_and_wait(outstanding).is_err() {
                // The ring is unusable and requests may still be in flight; we cannot
                // prove the buffer is free, so we must not return it to the caller.
                std::process::abort();
            }
        }
        let done: Vec<(u64, i32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (slot, res) in done {
            let Some(p) = in_flight.get_mut(slot as usize).and_then(Option::take) else {
                continue;
            };
            outstanding -= 1;
            match res {
                r if r < 0 => {
                    first_err.get_or_insert(io::Error::from_raw_os_error(-r));
                }
                0 if p.len > 0 && !eof_stops => {
                    first_err.get_or_insert(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "unexpected end of file",
                    ));
                }
                r => {
                    let n = r as usize;
                    if n < p.len
                        && !(eof_stops && (n == 0 || !n.is_multiple_of(super::DIRECT_ALIGN)))
                    {
                        todo.push(Piece {
                            pos: p.pos + n,
                            len: p.len - n,
                            off: p.off + n as u64,
                        });
                    }
                }
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

pub(super) fn read_exact_at(file: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    let (ptr, len) = (buf.as_mut_ptr(), buf.len());
    // SAFETY: `buf` is exclusively borrowed for the whole call and valid for `len` bytes;
    // `transfer` reaps every request before returning.
    with_ring(|ring| unsafe { transfer(ring, file, Dir::Read(ptr), len, off, false) })
}

/// O_DIRECT read of the aligned window `buf` at aligned `off`; bytes past the end of the file
/// are left as they were.
pub(super) fn read_direct_at(file: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    let (ptr, len) = (buf.as_mut_ptr(), buf.len());
    // SAFETY: as in `read_exact_at`; the caller aligned `buf`, `len` and `off` for O_DIRECT.
    with_ring(|ring| unsafe { transfer(ring, file, Dir::Read(ptr), len, off, true) })
}

pub(super) fn write_all_at(
    file: &File,
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
    off: u64,
) -> (io::Result<()>, Vec<u8>) {
    let Some(part) = buf.get(range) else {
        return (Err(io::Error::other("write range outside buffer")), buf);
    };
    let (ptr, len) = (part.as_ptr(), part.len());
    // SAFETY: `buf` is owned by this function until `transfer` returned, and `transfer` reaps
    // every request before returning, so the kernel never reads freed memory.
    let r = with_ring(|ring| unsafe { transfer(ring, file, Dir::Write(ptr), len, off, false) });
    (r, buf)
}

/// Several batch transfers in flight at once on one ring, for the pipelines: while the
/// caller decrypts batch k, batches k+1 .. k+n are being read; while it seals batch k+1,
/// batch k is being written. Each slot *owns* its buffer from [`UringQueue::start`] until
/// [`UringQueue::wait`] hands it back, so the kernel never sees freed or borrowed memory;
/// dropping the queue (or [`UringQueue::drain`]) reaps every request first.
pub(crate) struct UringQueue {
    ring: IoUring,
    slots: Vec<Slot>,
    /// In-flight requests by `user_data`: (slot, piece).
    inflight: Vec<Option<(usize, Piece)>>,
    /// Slots with pieces not yet submitted, oldest first.
    order: std::collections::VecDeque<usize>,
}

#[derive(Default)]
struct Slot {
    buf: Option<Vec<u8>>,
    fd: i32,
    write: bool,
    todo: Vec<Piece>,
    outstanding: usize,
    err: Option<io::Error>,
    eof_stops: bool,
}

impl UringQueue {
    /// A queue with `slots` transfer slots.
    pub(crate) fn new(slots: usize) -> io::Result<UringQueue> {
        Ok(UringQueue {
            ring: IoUring::new(DEPTH as u32 * 2)?,
            slots: (0..slots).map(|_| Slot::default()).collect(),
            inflight: (0..DEPTH).map(|_| None).collect(),
            order: std::collections::VecDeque::new(),
        })
    }

    /// Starts transferring `buf[range]` to (`write`) or from the file at `off`, in `slot`
    /// (which must be idle). The queue owns `buf` until `wait(slot)`.
    /// With `eof_stops` (O_DIRECT reads of aligned windows), a read cut short by the end of
    /// the file completes the piece instead of failing (see [`transfer`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        &mut self,
        slot: usize,
        file: &File,
        write: bool,
        buf: Vec<u8>,
        range: std::ops::Range<usize>,
        off: u64,
        eof_stops: bool,
    ) {
        let s = &mut self.slots[slot];
        debug_assert!(s.buf.is_none() && s.outstanding == 0 && s.todo.is_empty());
        let total = range.end.saturating_sub(range.start);
        s.todo = (0..total.div_ceil(PIECE))
            .map(|i| {
                let pos = range.start + i * PIECE;
                Piece {
                    pos,
                    len: PIECE.min(range.end - pos),
                    off: off + (i * PIECE) as u64,
                }
            })
            .rev()
            .collect();
        s.fd = file.as_raw_fd();
        s.write = write;
        s.eof_stops = eof_stops && !write;
        s.err = None;
        s.buf = Some(buf);
        self.order.push_back(slot);
        self.pump();
    }

    /// Submits queued pieces into free request entries, oldest slot first, without waiting.
    fn pump(&mut self) {
        let mut pushed = false;
        while let Some(&slot) = self.order.front() {
            let Some(entry) = self.inflight.iter().position(Option::is_none) else {
                break;
            };
            let s = &mut self.slots[slot];
            let Some(p) = s.todo.pop() else {
                self.order.pop_front();
                continue;
            };
            let Some(buf) = s.buf.as_mut() else {
                s.todo.clear();
                continue;
            };
            // PIECE fits a u32. `wrapping_add` computes the address only; `p.pos + p.len` is
            // inside `buf`, which this slot owns until every request on it completed.
            let len = p.len.min(PIECE) as u32;
            let fd = types::Fd(s.fd);
            let sqe = if s.write {
                opcode::Write::new(fd, buf.as_ptr().wrapping_add(p.pos), len)
                    .offset(p.off)
                    .build()
            } else {
                opcode::Read::new(fd, buf.as_mut_ptr().wrapping_add(p.pos), len)
                    .offset(p.off)
                    .build()
            }
            .user_data(entry as u64);
            // SAFETY:
            // - the entry points into `buf`, a heap buffer owned by this slot; it is neither
            //   moved out, resized nor dropped before the slot's `outstanding` count is back to
            //   zero (`wait`, `drain` and `Drop` all reap first);
            // - pieces of one slot never overlap, and no two slots share a buffer;
            // - the file descriptor stays open: callers hold the `File` for the queue's use.
            if unsafe { self.ring.submission().push(&sqe) }.is_err() {
                s.todo.push(p);
                break;
            }
            s.outstanding += 1;
            self.inflight[entry] = Some((slot, p));
            pushed = true;
        }
        if pushed {
            // Errors surface when reaping; a failed submit leaves entries queued for the next one.
            let _ = self.ring.submit();
        }
    }

    fn outstanding(&self) -> usize {
        self.inflight.iter().filter(|e| e.is_some()).count()
    }

    /// Waits for at least one completion and records every completion available.
    fn reap(&mut self) {
        if let Err(e) = self.ring.submit_and_wait(1)
            && e.kind() != io::ErrorKind::Interrupted
        {
            // The ring itself failed with requests in flight: there is no way to prove the
            // kernel is done with their buffers, so the buffers must never be reused.
            std::process::abort();
        }
        let done: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (entry, res) in done {
            let Some((slot, p)) = self.inflight.get_mut(entry as usize).and_then(Option::take)
            else {
                continue;
            };
            let s = &mut self.slots[slot];
            s.outstanding -= 1;
            match res {
                r if r < 0 => {
                    s.err.get_or_insert(io::Error::from_raw_os_error(-r));
                    s.todo.clear();
                }
                0 if p.len > 0 && !s.eof_stops => {
                    s.err.get_or_insert(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "unexpected end of file",
                    ));
                    s.todo.clear();
                }
                r => {
                    let n = r as usize;
                    let at_eof = s.eof_stops && (n == 0 || !n.is_multiple_of(super::DIRECT_ALIGN));
                    if n < p.len && s.err.is_none() && !at_eof {
                        s.todo.push(Piece {
                            pos: p.pos + n,
                            len: p.len - n,
                            off: p.off + n as u64,
                        });
                        if !self.order.contains(&slot) {
                            self.order.push_back(slot);
                        }
                    }
                }
            }
        }
    }

    /// Waits until `slot`'s transfer completed and returns its result and buffer.
    pub(crate) fn wait(&mut self, slot: usize) -> (io::Result<()>, Vec<u8>) {
        loop {
            self.pump();
            let s = &self.slots[slot];
            if s.outstanding == 0 && (s.todo.is_empty() || s.err.is_some()) {
                break;
            }
            self.reap();
        }
        let s = &mut self.slots[slot];
        s.todo.clear();
        self.order.retain(|&o| o != slot);
        let buf = s.buf.take().unwrap_or_default();
        match s.err.take() {
            Some(e) => (Err(e), buf),
            None => (Ok(()), buf),
        }
    }

    /// Waits for every request in flight and forgets all transfers (their buffers are dropped).
    pub(crate) fn drain(&mut self) {
        for s in &mut self.slots {
            s.todo.clear();
        }
        self.order.clear();
        while self.outstanding() > 0 {
            self.reap();
        }
        for s in &mut self.slots {
            *s = Slot::default();
        }
    }
}

impl Drop for UringQueue {
    fn drop(&mut self) {
        self.drain();
    }
}

thread_local! {
    static QUEUE: RefCell<Option<UringQueue>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's idle queue of `slots` slots (created on first use, reused
/// afterwards). The queue is drained before it is put back, whatever `f` did.
pub(crate) fn with_queue<T>(slots: usize, f: impl FnOnce(&mut UringQueue) -> T) -> io::Result<T> {
    let cached = QUEUE.with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.take()));
    let mut q = match cached {
        Some(mut q) => {
            q.slots.resize_with(slots, Slot::default);
            q
        }
        None => UringQueue::new(slots)?,
    };
    let out = f(&mut q);
    q.drain();
    QUEUE.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            *c = Some(q);
        }
    });
    Ok(out)
}
