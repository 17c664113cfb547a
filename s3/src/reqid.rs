//! Request ids: every response carries `x-amz-request-id` (and `x-amz-id-2`), and every XML
//! error body a `<RequestId>` equal to it. s3s writes `RequestId` only when an error carries
//! one, and its own errors (signature, parsing) do not, so the id is added here, around the
//! whole service, where every response passes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use s3s::Body;
use s3s::service::S3Service;

/// Error bodies are short; one longer than this is passed on untouched.
const MAX_ERROR_BODY: usize = 64 * 1024;

#[derive(Clone)]
pub(crate) struct WithRequestId {
    inner: S3Service,
}

impl WithRequestId {
    pub(crate) fn new(inner: S3Service) -> Self {
        WithRequestId { inner }
    }
}

/// A fresh request id: 16 random bytes in upper-case hex, as S3's look.
pub(crate) fn new_request_id() -> String {
    let mut b = [0u8; 8];
    // A request id is not a secret; if the system's generator fails, a counter will do.
    if getrandom::fill(&mut b).is_err() {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        b = N
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_be_bytes();
    }
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn with_id(mut body: Vec<u8>, id: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(&body);
    if !text.contains("<Error>") || text.contains("<RequestId>") {
        return body;
    }
    if let Some(at) = text.rfind("</Error>") {
        let tail = body.split_off(at);
        body.extend_from_slice(format!("<RequestId>{id}</RequestId>").as_bytes());
        body.extend_from_slice(&tail);
    }
    body
}

impl hyper::service::Service<Request<Incoming>> for WithRequestId {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let inner = self.inner.clone();
        Box::pin(async move {
            let id = new_request_id();
            let sends_body = http1_with_body(&req);
            let req = req.map(Body::from);
            let mut resp = match inner.call(req).await {
                Ok(r) => r,
                Err(e) => {
                    // s3s could not even produce an S3 error: answer 500 with a body of ours.
                    let msg = format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InternalError</Code>\
                         <Message>{}</Message></Error>",
                        xml_escape(&format!("{:?}", s3s::StdError::from(e)))
                    );
                    let mut r = Response::new(Body::from(msg));
                    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    r
                }
            };
            if resp.status().as_u16() >= 400 {
                let (mut parts, body) = resp.into_parts();
                let small = http_body::Body::size_hint(&body)
                    .upper()
                    .is_some_and(|n| n <= MAX_ERROR_BODY as u64);
                let body = if small {
                    match body.collect().await {
                        Ok(b) => {
                            let bytes = with_id(b.to_bytes().to_vec(), &id);
                            parts.headers.remove(http::header::CONTENT_LENGTH);
                            Body::from(Bytes::from(bytes))
                        }
                        Err(_) => Body::empty(),
                    }
                } else {
                    body
                };
                resp = Response::from_parts(parts, body);
                if sends_body {
                    // The body may be unread, or (after `Expect: 100-continue` answered with
                    // this error) never sent: the bytes that follow on the connection cannot be
                    // told from a next request, so this connection ends after the response
                    // (hyper would otherwise take the next request's first bytes for the body).
                    // The lingering close (`linger.rs`) lets the client read the response.
                    resp.headers_mut()
                        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
                }
            }
            if let Ok(v) = HeaderValue::from_str(&id) {
                resp.headers_mut().insert("x-amz-request-id", v.clone());
                resp.headers_mut().insert("x-amz-id-2", v);
            }
            Ok(resp)
        })
    }
}

/// Whether `req` is an HTTP/1 request that announces a body (HTTP/2 frames bodies itself and
/// has no `Connection` header).
fn http1_with_body<B>(req: &Request<B>) -> bool {
    if req.version() > http::Version::HTTP_11 {
        return false;
    }
    let h = req.headers();
    h.contains_key(http::header::TRANSFER_ENCODING)
        || h.get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
