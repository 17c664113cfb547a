//! Bodies between hyper (async) and the dare library (synchronous `Read` and sinks), over
//! bounded channels so that a request holds at most [`DEPTH`] pieces in memory.
//!
//! Uploads: an async feeder moves the body's pieces into a channel; the library's put reads
//! them through [`ChannelReader`] on the blocking pool. The reader hashes what passes
//! (MD5 for `Content-MD5`, and the `x-amz-checksum-*` algorithm asked for) and, at the end of
//! the body, compares the digests with the headers or the aws-chunked trailer: on a mismatch,
//! a body cut short, a client gone or a body over the limit it returns an error *instead of*
//! end-of-file, so the library's put fails and removes its data file — the object never
//! becomes visible (dare's put publishes only after the reader reached its end).

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use http::HeaderMap;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Md5};
use s3s::dto::StreamingBlob;
use s3s::{S3Error, S3ErrorCode, TrailingHeaders, s3_error};
use tokio::sync::mpsc;

/// Pieces in flight per request, each one piece of the body as hyper delivers it (or one
/// read of the library), so a request holds a few hundred KiB at most.
pub(crate) const DEPTH: usize = 4;

/// The largest object one PUT (or one part) may carry: 5 GiB, as S3.
pub(crate) const MAX_PUT: u64 = 5 * 1024 * 1024 * 1024;

enum Msg {
    Data(Bytes),
    Failed(io::Error),
    End(Option<HeaderMap>),
}

/// The checksums a request declares.
#[derive(Debug, Default, Clone)]
pub(crate) struct Expect {
    /// `Content-MD5`, base64.
    pub md5: Option<String>,
    /// `x-amz-checksum-<alg>` headers, (algorithm, base64 value).
    pub checksums: Vec<(ChecksumAlg, String)>,
    /// Algorithms whose value arrives in the aws-chunked trailer (`x-amz-trailer`).
    pub trailer: Vec<ChecksumAlg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChecksumAlg {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlg {
    pub(crate) const ALL: [ChecksumAlg; 5] = [
        ChecksumAlg::Crc32,
        ChecksumAlg::Crc32c,
        ChecksumAlg::Crc64Nvme,
        ChecksumAlg::Sha1,
        ChecksumAlg::Sha256,
    ];
    pub(crate) fn header(self) -> &'static str {
        match self {
            ChecksumAlg::Crc32 => "x-amz-checksum-crc32",
            ChecksumAlg::Crc32c => "x-amz-checksum-crc32c",
            ChecksumAlg::Crc64Nvme => "x-amz-checksum-crc64nvme",
            ChecksumAlg::Sha1 => "x-amz-checksum-sha1",
            ChecksumAlg::Sha256 => "x-amz-checksum-sha256",
        }
    }
    fn from_header(h: &str) -> Option<ChecksumAlg> {
        ChecksumAlg::ALL
            .into_iter()
            .find(|a| a.header().eq_ignore_ascii_case(h.trim()))
    }
}

impl Expect {
    /// The checks a request's headers ask for.
    pub(crate) fn from_headers(h: &HeaderMap) -> Result<Expect, S3Error> {
        let text = |name: &str| -> Result<Option<String>, S3Error> {
            match h.get(name) {
                None => Ok(None),
                Some(v) => v
                    .to_str()
                    .map(|s| Some(s.trim().to_owned()))
                    .map_err(|_| s3_error!(InvalidArgument, "header {name} is not ASCII")),
            }
        };
        let mut e = Expect {
            md5: text("content-md5")?,
            ..Expect::default()
        };
        if let Some(m) = &e.md5 {
            use base64::Engine as _;
            match base64::engine::general_purpose::STANDARD.decode(m) {
                Ok(b) if b.len() == 16 => {}
                _ => {
                    return Err(s3_error!(
                        InvalidDigest,
                        "The Content-MD5 you specified was invalid."
                    ));
                }
            }
        }
        for a in ChecksumAlg::ALL {
            if let Some(v) = text(a.header())? {
                e.checksums.push((a, v));
            }
        }
        if let Some(t) = text("x-amz-trailer")? {
            for name in t.split(',') {
                match ChecksumAlg::from_header(name) {
                    Some(a) => e.trailer.push(a),
                    None => {
                        return Err(s3_error!(
                            InvalidArgument,
                            "x-amz-trailer names {:?}; supported: the x-amz-checksum-* headers",
                            name.trim()
                        ));
                    }
                }
            }
        }
        if e.checksums.len() + e.trailer.len() > 1 {
            return Err(s3_error!(
                InvalidRequest,
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
            ));
        }
        Ok(e)
    }

    /// The algorithm whose checksum the object gets (for the response), if any.
    pub(crate) fn algorithm(&self) -> Option<ChecksumAlg> {
        self.checksums
            .first()
            .map(|(a, _)| *a)
            .or(self.trailer.first().copied())
    }
}

/// What the reader saw once it reached the end: the digests the response may echo.
#[derive(Debug, Default, Clone)]
pub(crate) struct Seen {
    pub checksum: Option<(ChecksumAlg, String)>,
}

/// Why an upload's reader failed, for the S3 error (the library only sees an `io::Error`).
pub(crate) type Verdict = Arc<Mutex<Option<S3Error>>>;

pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Msg>,
    cur: Bytes,
    md5: Md5,
    hasher: ChecksumHasher,
    alg: Option<ChecksumAlg>,
    expect: Expect,
    len: u64,
    limit: u64,
    verdict: Verdict,
    seen: Arc<Mutex<Option<Seen>>>,
    ended: bool,
}

fn hasher_for(alg: Option<ChecksumAlg>) -> ChecksumHasher {
    use s3s::crypto::{Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
    let mut h = ChecksumHasher::default();
    match alg {
        Some(ChecksumAlg::Crc32) => h.crc32 = Some(Crc32::new()),
        Some(ChecksumAlg::Crc32c) => h.crc32c = Some(Crc32c::new()),
        Some(ChecksumAlg::Crc64Nvme) => h.crc64nvme = Some(Crc64Nvme::new()),
        Some(ChecksumAlg::Sha1) => h.sha1 = Some(Sha1::new()),
        Some(ChecksumAlg::Sha256) => h.sha256 = Some(Sha256::new()),
        None => {}
    }
    h
}

fn digest_of(alg: ChecksumAlg, c: &s3s::dto::Checksum) -> Option<String> {
    match alg {
        ChecksumAlg::Crc32 => c.checksum_crc32.clone(),
        ChecksumAlg::Crc32c => c.checksum_crc32c.clone(),
        ChecksumAlg::Crc64Nvme => c.checksum_crc64nvme.clone(),
        ChecksumAlg::Sha1 => c.checksum_sha1.clone(),
        ChecksumAlg::Sha256 => c.checksum_sha256.clone(),
    }
}

impl ChannelReader {
    fn fail(&self, err: S3Error) -> io::Error {
        let msg = err.message().unwrap_or("upload refused").to_owned();
        if let Ok(mut v) = self.verdict.lock()
            && v.is_none()
        {
            *v = Some(err);
        }
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    /// The body ended: every declared digest must match before the put may publish.
    fn finish(&mut self, trailers: Option<HeaderMap>) -> io::Result<()> {
        let md5 = std::mem::take(&mut self.md5).finalize();
        let md5: [u8; 16] = md5;
        if let Some(want) = &self.expect.md5 {
            use base64::Engine as _;
            let got = base64::engine::general_purpose::STANDARD.encode(md5);
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                got.as_bytes(),
                want.as_bytes(),
            )) {
                return Err(self.fail(s3_error!(
                    BadDigest,
                    "The Content-MD5 you specified did not match what we received."
                )));
            }
        }
        let mut checksum = None;
        if let Some(alg) = self.alg {
            let sums = std::mem::take(&mut self.hasher).finalize();
            let got = digest_of(alg, &sums).unwrap_or_default();
            let want = match self.expect.checksums.first() {
                Some((_, v)) => Some(v.clone()),
                None => trailers
                    .as_ref()
                    .and_then(|t| t.get(alg.header()))
                    .and_then(|v| v.to_str().ok())
                    .map(|s| s.trim().to_owned()),
            };
            match want {
                None => {
                    return Err(self.fail(s3_error!(
                        InvalidRequest,
                        "x-amz-trailer announced {} but the body's trailer did not carry it",
                        alg.header()
                    )));
                }
                Some(w) if w != got => {
                    let mut e = S3Error::with_message(
                        S3ErrorCode::Custom("XAmzContentChecksumMismatch".into()),
                        format!(
                            "The provided '{}' checksum does not match what was computed.",
                            alg.header().trim_start_matches("x-amz-checksum-")
                        ),
                    );
                    e.set_status_code(http::StatusCode::BAD_REQUEST);
                    // AWS answers BadDigest for a checksum header on a plain upload;
                    // for a trailer it answers XAmzContentChecksumMismatch. Same status.
                    if !self.expect.checksums.is_empty() {
                        e = s3_error!(
                            BadDigest,
                            "The {} you specified did not match the calculated checksum.",
                            alg.header()
                        );
                    }
                    return Err(self.fail(e));
                }
                Some(_) => checksum = Some((alg, got)),
            }
        }
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(Seen { checksum });
        }
        Ok(())
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.cur.is_empty() {
                let n = buf.len().min(self.cur.len());
                let piece = self.cur.split_to(n);
                buf[..n].copy_from_slice(&piece);
                self.md5.update(&piece);
                self.hasher.update(&piece);
                return Ok(n);
            }
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Msg::Data(b)) => {
                    self.len = self.len.saturating_add(b.len() as u64);
                    if self.len > self.limit {
                        return Err(self.fail(s3_error!(
                            EntityTooLarge,
                            "Your proposed upload exceeds the maximum allowed object size."
                        )));
                    }
                    self.cur = b;
                }
                Some(Msg::Failed(e)) => {
                    return Err(self.fail(s3_error!(
                        IncompleteBody,
                        "The request body could not be read to its end: {e}"
                    )));
                }
                Some(Msg::End(trailers)) => {
                    self.finish(trailers)?;
                    self.ended = true;
                    return Ok(0);
                }
                None => {
                    return Err(self.fail(s3_error!(
                        IncompleteBody,
                        "The client went away before the body ended."
                    )));
                }
            }
        }
    }
}

/// An upload in progress: the reader for the library and the future that feeds it.
pub(crate) struct Upload {
    pub reader: ChannelReader,
    pub verdict: Verdict,
    pub seen: Arc<Mutex<Option<Seen>>>,
}

/// Starts feeding `body` into a reader. `declared_len` is Content-Length (or the decoded
/// length of an aws-chunked body) when known: a body that ends early or runs long fails.
pub(crate) fn upload(
    body: Option<StreamingBlob>,
    expect: Expect,
    trailers: Option<TrailingHeaders>,
    declared_len: Option<u64>,
    limit: u64,
) -> Upload {
    let (tx, rx) = mpsc::channel(DEPTH);
    let verdict: Verdict = Arc::default();
    let seen = Arc::default();
    let alg = expect.algorithm();
    tokio::spawn(async move {
        let mut n: u64 = 0;
        if let Some(mut body) = body {
            while let Some(piece) = body.next().await {
                match piece {
                    Ok(b) => {
                        n = n.saturating_add(b.len() as u64);
                        if tx.send(Msg::Data(b)).await.is_err() {
                            return; // the put gave up
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Msg::Failed(io::Error::other(e.to_string()))).await;
                        return;
                    }
                }
            }
        }
        if let Some(want) = declared_len
            && want != n
        {
            let _ = tx
                .send(Msg::Failed(io::Error::other(format!(
                    "body has {n} bytes, Content-Length said {want}"
                ))))
                .await;
            return;
        }
        let t = trailers.and_then(|t| t.take());
        let _ = tx.send(Msg::End(t)).await;
    });
    Upload {
        reader: ChannelReader {
            rx,
            cur: Bytes::new(),
            md5: Md5::new(),
            hasher: hasher_for(alg),
            alg,
            expect,
            len: 0,
            limit,
            verdict: verdict.clone(),
            seen: Arc::clone(&seen),
            ended: false,
        },
        verdict,
        seen,
    }
}

/// Streams `len` bytes at `offset` of an opened object as a response body: the library
/// reads (verifying each chunk before releasing it) on the blocking pool, and blocks when the
/// client reads slower than we decrypt. A client that goes away ends the read.
pub(crate) fn download(obj: dare::Object, offset: u64, len: u64) -> StreamingBlob {
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(DEPTH);
    tokio::task::spawn_blocking(move || {
        let r = obj.read_range(offset, len, &mut |piece| {
            tx.blocking_send(Ok(Bytes::copy_from_slice(piece)))
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "client went away"))
        });
        if let Err(e) = r {
            // Headers are sent: all we can do is cut the body short, which the client sees
            // as a length mismatch. Nothing unverified was sent.
            let _ = tx.blocking_send(Err(io::Error::other(dare::Error::to_string(&e))));
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    StreamingBlob::wrap(stream)
}
