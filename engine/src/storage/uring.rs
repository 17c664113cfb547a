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
/// file offset `off`, resubmitting short transfers, with up to DEPTH pieces in flight.
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
                0 if p.len > 0 => {
                    first_err.get_or_insert(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "unexpected end of file",
                    ));
                }
                r => {
                    let n = r as usize;
                    if n < p.len {
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
    with_ring(|ring| unsafe { transfer(ring, file, Dir::Read(ptr), len, off) })
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
    let r = with_ring(|ring| unsafe { transfer(ring, file, Dir::Write(ptr), len, off) });
    (r, buf)
}
