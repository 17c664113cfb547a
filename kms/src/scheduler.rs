//! The scheduler of a long-running process: [`Kms::tick`] on a background thread every
//! interval, stopped (and joined) when the handle is dropped.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{Kms, TickReport};

/// A running scheduler; dropping it stops the thread.
#[derive(Debug)]
pub struct Scheduler {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Scheduler {
    /// Ticks `kms` now and then every `every`, handing each report to `report`.
    pub fn spawn(
        kms: Arc<Kms>,
        every: Duration,
        report: impl Fn(TickReport) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("dare-kms-scheduler".into())
            .spawn(move || {
                loop {
                    report(kms.tick());
                    match rx.recv_timeout(every) {
                        Err(RecvTimeoutError::Timeout) => continue,
                        _ => break,
                    }
                }
            })?;
        Ok(Scheduler {
            stop: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
