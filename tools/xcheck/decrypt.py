#!/usr/bin/env python3
"""Independent reader of dare objects, written from docs/FORMAT.md and docs/KEYS.md only.

    decrypt.py STORE_DIR BUCKET KEY [--sse-c-key-file F] > plaintext

Re-derives the data key from the root key file and the key store (KEYS.md), then verifies
and decrypts the object file (FORMAT.md). Uses the `cryptography` package for AES-GCM and
RFC 5649, and the standard library for HMAC-SHA256 and SHA-256. Exits non-zero on any
verification failure.
"""
import base64
import hashlib
import hmac
import json
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding


def unwrap(kek, wrapped):
    if len(wrapped) != 40:
        raise ValueError("wrapped key must be 40 bytes")
    k = aes_key_unwrap_with_padding(kek, wrapped)
    if len(k) != 32:
        raise ValueError("unwrapped key is not 32 bytes")
    return k


def hm(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


u32 = lambda v: struct.pack("<I", v)
u64 = lambda v: struct.pack("<Q", v)


def load_table(store):
    raw = open(f"{store}/keystore.dat", "rb").read()
    assert raw[:8] == b"DAREKEYS", "bad key store magic"
    (version,) = struct.unpack_from("<I", raw, 8)
    assert version == 1, f"key store format {version}"
    (n,) = struct.unpack_from("<Q", raw, 12)
    assert len(raw) == 52 + n, "key store length"
    body = raw[52:]
    assert hashlib.sha256(raw[:20] + body).digest() == raw[20:52], "key store checksum"
    return json.loads(body)


def data_key_hierarchy(store, table, block):
    ns_id, bucket_id, r = struct.unpack_from("<QQI", block, 0)
    wrapped_dk = block[20:60]
    root = open(f"{store}/root.key", "rb").read()
    assert len(root) == 32
    b64 = base64.b64decode
    rt = unwrap(root, b64(table["rt_data_key"]["wrapped"]))
    masters = {m["version"]: unwrap(root, b64(m["wrapped"])) for m in table["masters"]}

    def vmk(v):
        return hm(masters[v], b"dare/v1/virtual-master-key", b"\x00", u32(1), u32(v), rt)

    rk = next(x for x in table["rotation_keys"] if x["version"] == r)
    rk_key = unwrap(vmk(rk["master_version"]), b64(rk["wrapped"]))
    ns = next(x for x in table["namespaces"] if x["id"] == ns_id)
    nk = unwrap(vmk(ns["master_version"]), b64(ns["wrapped_key"]))
    bucket = next(x for x in table["buckets"] if x["id"] == bucket_id)
    bk = unwrap(nk, b64(bucket["wrapped_key"]))
    vbk = hm(rk_key, b"dare/v1/virtual-bucket-key", b"\x00", u32(1), u64(ns_id), u64(bucket_id), u32(r), bk)
    return unwrap(vbk, wrapped_dk)


def data_key_sse_c(block, ck):
    salt, verifier, wrapped = block[:16], block[16:48], block[48:88]
    expect = hm(ck, b"dare/v1/sse-c/key-verifier", b"\x00", u32(1), salt)
    if not hmac.compare_digest(expect, verifier):
        raise ValueError("customer key does not match")
    kek = hm(ck, b"dare/v1/sse-c/key-encryption-key", b"\x00", u32(1), salt)
    return unwrap(kek, wrapped)


def decrypt(F, data_key_of):
    assert F[0:4] == b"DARE", "magic"
    assert F[4] == 1, "version"
    suite, shift, kind = F[5], F[6], F[7]
    prefix = F[8:15]
    assert F[15] == 0
    name_len, kb_len, meta_len = struct.unpack_from("<HHI", F, 16)
    assert 12 <= shift <= 22
    hlen = 24 + name_len + kb_len
    name = F[24 : 24 + name_len].decode()
    block = F[24 + name_len : hlen]
    meta_raw = F[hlen : hlen + meta_len]
    body = F[hlen + meta_len :]
    if suite == 0:
        return name, meta_raw, body
    assert suite == 1 and kind != 0
    ad = hashlib.sha256(F[:hlen]).digest()
    gcm = AESGCM(data_key_of(kind, block))
    nonce = lambda i, m: prefix + struct.pack(">I", i) + bytes([m])
    meta = gcm.decrypt(nonce(0, 2), meta_raw, ad)
    C = 1 << shift
    stride = C + 16
    L = len(body)
    if L == 16:
        n = 1
    else:
        n = -(-L // stride)
        assert L - (n - 1) * stride > 16, "impossible body length"
    out = []
    for i in range(n):
        out.append(gcm.decrypt(nonce(i, 1 if i == n - 1 else 0), body[i * stride : (i + 1) * stride], ad))
    return name, meta, b"".join(out)


def main():
    args = sys.argv[1:]
    ck = None
    if "--sse-c-key-file" in args:
        i = args.index("--sse-c-key-file")
        ck = open(args[i + 1], "rb").read()
        assert len(ck) == 32, "this checker takes raw 32-byte customer keys"
        del args[i : i + 2]
    store, bucket, key = args
    table = load_table(store)
    F = open(f"{store}/buckets/{bucket}/{key}", "rb").read()

    def data_key_of(kind, block):
        if kind == 2:
            return data_key_hierarchy(store, table, block)
        if kind == 3:
            return data_key_sse_c(block, ck)
        raise ValueError(f"key kind {kind} not handled")

    name, meta, plain = decrypt(F, data_key_of)
    assert name == key, "object name in header differs"
    (count,) = struct.unpack_from("<H", meta, 0)
    sys.stdout.buffer.write(plain)
    print(f"ok: {bucket}/{key}: {len(plain)} bytes, {count} metadata entries", file=sys.stderr)


if __name__ == "__main__":
    main()
