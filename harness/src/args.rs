//! Argument types shared by the command line (`cli`) and the benchmarks that define their own
//! argument structs (`bench_overhead`), kept apart so neither module depends on the other.

use clap::ValueEnum;

/// A switch given as `on` or `off` (encryption of a namespace or bucket, the key cache).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    /// `true` for `on`.
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
}

/// The I/O path for data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IoChoice {
    /// io_uring (an error if the kernel or sandbox refuses a ring)
    Uring,
    /// positioned std I/O (pread/pwrite)
    Std,
}
