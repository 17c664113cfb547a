"""Raw signed S3 requests for what boto3 never sends on its own: a clock 20 minutes off,
signed streaming uploads (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, what the Java and Go SDKs and
MinIO's clients send), unsigned trailers with a chosen (wrong) checksum, and reading an error
body byte for byte.

Hand-written rather than through botocore's signer because botocore has no way to sign a
chunked body chunk by chunk, nor to sign at a chosen time; the algorithm is AWS's published
one (Signature Version 4, "Signature calculations for the Authorization header" and "Streaming
uploads (chunked upload)")."""

import base64
import datetime
import hashlib
import hmac
import http.client
import ssl
import struct
import zlib
from urllib.parse import quote, urlsplit

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def signing_key(secret, date, region="us-east-1", service="s3"):
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli), bitwise: botocore computes it only with awscrt installed."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def b64_crc32(data):
    return base64.b64encode(struct.pack(">I", zlib.crc32(data) & 0xFFFFFFFF)).decode()


def b64_crc32c(data):
    return base64.b64encode(struct.pack(">I", crc32c(data))).decode()


class Raw:
    """Signed requests to one endpoint."""

    def __init__(self, url, access, secret, cafile=None):
        u = urlsplit(url)
        self.scheme, self.host, self.port = u.scheme, u.hostname, u.port
        self.netloc = u.netloc
        self.access, self.secret = access, secret
        self.ctx = ssl.create_default_context(cafile=cafile) if u.scheme == "https" else None

    def conn(self):
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=60)
        return http.client.HTTPConnection(self.host, self.port, timeout=60)

    def sign(self, method, path, query, headers, payload_hash, when=None):
        """Adds x-amz-date, x-amz-content-sha256 and Authorization; returns (signature,
        timestamp, scope) for chunk signing."""
        when = when or datetime.datetime.now(datetime.timezone.utc)
        ts = when.strftime("%Y%m%dT%H%M%SZ")
        date = ts[:8]
        headers["host"] = self.netloc
        headers["x-amz-date"] = ts
        headers["x-amz-content-sha256"] = payload_hash
        names = sorted(k.lower() for k in headers)
        lower = {k.lower(): str(v).strip() for k, v in headers.items()}
        canon_headers = "".join(f"{n}:{lower[n]}\n" for n in names)
        signed = ";".join(names)
        canon_query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())
        )
        canon = "\n".join(
            [method, quote(path, safe="/-_.~"), canon_query, canon_headers, signed, payload_hash]
        )
        scope = f"{date}/us-east-1/s3/aws4_request"
        sts = "\n".join(
            ["AWS4-HMAC-SHA256", ts, scope, hashlib.sha256(canon.encode()).hexdigest()]
        )
        key = signing_key(self.secret, date)
        sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access}/{scope}, SignedHeaders={signed}, Signature={sig}"
        )
        return sig, ts, scope, key

    def send(self, method, path, body=b"", query=None, headers=None, when=None, payload_hash=None):
        """A request with the payload's SHA-256 signed; returns (status, headers, body)."""
        query = query or {}
        headers = dict(headers or {})
        ph = payload_hash or hashlib.sha256(body).hexdigest()
        self.sign(method, path, query, headers, ph, when)
        return self._do(method, path, query, headers, body)

    def _do(self, method, path, query, headers, body):
        qs = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in query.items())
        target = quote(path, safe="/-_.~") + ("?" + qs if qs else "")
        c = self.conn()
        try:
            c.request(method, target, body=body, headers=headers)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def put_signed_streaming(self, path, data, chunk=65536, tamper_chunk=None, headers=None):
        """PutObject with `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`: every chunk signed, chained
        from the seed signature. `tamper_chunk=i` flips a byte of chunk i after signing it."""
        headers = dict(headers or {})
        pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] + [b""]
        sig_len = 64
        body_len = sum(
            len(f"{len(p):x};chunk-signature=") + sig_len + 2 + len(p) + 2 for p in pieces
        )
        headers["content-encoding"] = "aws-chunked"
        headers["x-amz-decoded-content-length"] = str(len(data))
        headers["content-length"] = str(body_len)
        prev, ts, scope, key = self.sign(
            "PUT", path, {}, headers, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
        )
        body = bytearray()
        for i, p in enumerate(pieces):
            sts = "\n".join(
                [
                    "AWS4-HMAC-SHA256-PAYLOAD",
                    ts,
                    scope,
                    prev,
                    EMPTY_SHA256,
                    hashlib.sha256(p).hexdigest(),
                ]
            )
            prev = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
            if tamper_chunk == i and p:
                p = bytes([p[0] ^ 1]) + p[1:]
            body += f"{len(p):x};chunk-signature={prev}\r\n".encode() + p + b"\r\n"
        assert len(body) == body_len
        return self._do("PUT", path, {}, headers, bytes(body))

    def put_unsigned_trailer(self, path, data, algo, value, chunk=65536, headers=None):
        """PutObject as boto3 sends it over HTTPS: `STREAMING-UNSIGNED-PAYLOAD-TRAILER`, the
        body aws-chunked, the checksum `x-amz-checksum-ALGO: value` in the trailer."""
        headers = dict(headers or {})
        name = f"x-amz-checksum-{algo}"
        body = bytearray()
        for i in range(0, len(data), chunk):
            p = data[i : i + chunk]
            body += f"{len(p):x}\r\n".encode() + p + b"\r\n"
        body += b"0\r\n" + f"{name}:{value}\r\n\r\n".encode()
        headers["content-encoding"] = "aws-chunked"
        headers["x-amz-decoded-content-length"] = str(len(data))
        headers["x-amz-trailer"] = name
        headers["content-length"] = str(len(body))
        self.sign("PUT", path, {}, headers, "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        return self._do("PUT", path, {}, headers, bytes(body))
