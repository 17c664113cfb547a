//! Standard output for every command: errors say they are about standard output.
//!
//! A write to a full disk (`dare ls > /dev/full`) becomes one line, "cannot write to standard
//! output: No space left on device", with exit status 1; a closed pipe keeps its
//! `BrokenPipe` kind, which `main` turns into a quiet exit as shell tools do.

use std::fmt;
use std::io::{self, Write};

/// Locked standard output whose errors name it.
#[derive(Debug)]
pub struct Out(io::StdoutLock<'static>);

/// Standard output, locked.
pub fn stdout() -> Out {
    Out(io::stdout().lock())
}

impl Out {
    /// Itself (so `stdout().lock()` reads as with `std::io`).
    pub fn lock(self) -> Out {
        self
    }
}

/// An error writing standard output: the system's error, named.
#[derive(Debug)]
struct StdoutError(io::Error);

impl fmt::Display for StdoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot write to standard output: {}", self.0)
    }
}

impl std::error::Error for StdoutError {}

fn named(e: io::Error) -> io::Error {
    io::Error::new(e.kind(), StdoutError(e))
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(named)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(named)
    }
}

/// Writes one line to standard error (progress notes, warnings); a closed standard error is
/// not worth failing for, so the result may be ignored.
pub fn note_line(msg: &str) -> io::Result<()> {
    writeln!(io::stderr(), "{msg}")
}
