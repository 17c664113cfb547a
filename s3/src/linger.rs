//! Lingering close: a connection the server ends while the client is still sending (an
//! error answered before the request body was read: a bad signature, a bad chunk signature,
//! a refused SSE header) keeps reading — and discarding — what the client sends for a short,
//! bounded while after the server's FIN, instead of closing at once.
//!
//! Without it the client, still writing its body, meets a TCP reset: the error response the
//! server already sent is lost with it (the kernel drops unread received data on a reset),
//! and the client reports a broken pipe or a TLS EOF instead of the S3 error. nginx calls
//! this `lingering_close`; hyper has no such option, so it is written here, below TLS, as a
//! wrapper of the TCP stream whose `poll_shutdown` half-closes and then drains.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long a closing connection keeps draining what the client still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// How many bytes a closing connection drains at most before it closes anyway.
pub const LINGER_BYTES: u64 = 64 << 20;

/// A stream whose shutdown half-closes, then drains the peer's remaining bytes (bounded in
/// time and bytes) until the peer closes.
#[derive(Debug)]
pub struct Linger<S> {
    inner: S,
    state: State,
}

#[derive(Debug)]
enum State {
    Open,
    Draining {
        deadline: Pin<Box<Sleep>>,
        left: u64,
    },
    Closed,
}

impl<S> Linger<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Linger<S> {
        Linger {
            inner,
            state: State::Open,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Linger<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Linger<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Open => {
                    // Our FIN first: the response is complete and the client may see it.
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    this.state = State::Draining {
                        deadline: Box::pin(tokio::time::sleep(LINGER_TIME)),
                        left: LINGER_BYTES,
                    };
                }
                State::Draining { deadline, left } => {
                    if deadline.as_mut().poll(cx).is_ready() {
                        this.state = State::Closed;
                        continue;
                    }
                    let mut scratch = [0u8; 16 * 1024];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf)) {
                        Ok(()) if !buf.filled().is_empty() => {
                            let n = buf.filled().len() as u64;
                            *left = left.saturating_sub(n);
                            if *left == 0 {
                                this.state = State::Closed;
                            }
                        }
                        // The peer closed, or the connection failed: nothing left to wait for.
                        Ok(()) | Err(_) => this.state = State::Closed,
                    }
                }
                State::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}
