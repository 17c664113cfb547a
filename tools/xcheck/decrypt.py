#!/usr/bin/env python3
"""Independent reader of dare stores, written from docs/FORMAT.md, docs/METADATA.md and
docs/KEYS.md only (no Rust source, no schema file).

    decrypt.py STORE_DIR BUCKET NAME [--sse-c-key-file F [--sse-c-key-md5 B64]] [--meta] > plaintext
    decrypt.py STORE_DIR --all [--sse-c-key-file F]      > bucket<TAB>name<TAB>sha256 lines

Opens STORE_DIR/dare.db read-only, finds the object's row (METADATA.md §3), recovers its data
key from STORE_DIR/root.key and the resource-table rows (KEYS.md §3-§5) or from a customer key
(KEYS.md §3.3, §4.3), then verifies and decrypts the user metadata and the data file
(FORMAT.md §2-§7 for format 2, §9 for format 1). Nothing is written to stdout until the whole
object has verified. Any failure: one line on stderr, exit status 1 (2 for usage errors).

Extra options: --meta prints the decrypted user metadata as a JSON object instead of the
data; --passphrase-file F opens a store whose root of trust is `passphrase-argon2id`
(KEYS.md §5.2); --quiet drops the per-object "ok:" line on stderr.

Where the documents leave a reader's duty open, this reader is strict (each is in the
cross-check report): a kind-2 envelope must name the row's bucket and that bucket's namespace
(KEYS.md §4.2 "WrongContext"); a format-1 row's suite, chunk shift, nonce prefix, size and
envelope kind must agree with its file; the suite-0-in-an-encrypted-bucket rule applies to
format-1 rows too and is checked before the data file is read; the suite-1 ETag (FORMAT.md §7)
and the format-1 ETag are verified on a whole read; base64 customer keys must be canonical;
--meta keeps the last of duplicate metadata keys (as `dare head --json`). A store-root (kind 1)
envelope is refused: its key is not part of a store.

Uses `cryptography` (AES-GCM, RFC 5649 unwrap, Argon2id) and the standard library.
"""
import base64
import binascii
import hashlib
import hmac
import json
import os
import sqlite3
import stat
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding


class Refused(Exception):
    """Any reason not to release an object."""


def need(cond, msg):
    if not cond:
        raise Refused(msg)


u32le = lambda v: struct.pack("<I", v)
u64le = lambda v: struct.pack("<Q", v)
u16le = lambda v: struct.pack("<H", v)


# ---------------------------------------------------------------------------------------------
# CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF.

def _crc32c_table():
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data, crc=0):
    c = crc ^ 0xFFFFFFFF
    t = _CRC32C
    for byte in data:
        c = t[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C (RFC 3720 B.4)


# ---------------------------------------------------------------------------------------------
# KEYS.md §2 wrapping, §3 derivations.

def unwrap(kek, wrapped, what):
    need(isinstance(wrapped, (bytes, bytearray)), f"{what}: wrapped key is not a BLOB")
    need(len(wrapped) == 40, f"{what}: wrapped key is {len(wrapped)} bytes, not 40")
    try:
        k = aes_key_unwrap_with_padding(kek, bytes(wrapped))
    except (InvalidUnwrap, ValueError) as e:
        raise Refused(f"{what}: unwrap failed ({str(e) or 'integrity check failed'})") from None
    need(len(k) == 32, f"{what}: unwrapped key is {len(k)} bytes, not 32")
    return k


def hmac256(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


LABEL_VMK = b"dare/v1/virtual-master-key"
LABEL_VBK = b"dare/v1/virtual-bucket-key"
LABEL_KEK_C = b"dare/v1/sse-c/key-encryption-key"
LABEL_VERIFIER = b"dare/v1/sse-c/key-verifier"
# KEYS.md §3 gives the hex of each label: check we typed them as specified.
assert LABEL_VMK.hex() == "646172652f76312f7669727475616c2d6d61737465722d6b6579"
assert LABEL_VBK.hex() == "646172652f76312f7669727475616c2d6275636b65742d6b6579"
assert LABEL_KEK_C.hex() == "646172652f76312f7373652d632f6b65792d656e6372797074696f6e2d6b6579"
assert LABEL_VERIFIER.hex() == "646172652f76312f7373652d632f6b65792d7665726966696572"


def vmk_of(mk, v, rt):
    msg = LABEL_VMK + b"\x00" + u32le(1) + u32le(v) + rt
    assert len(msg) == 67
    return hmac256(mk, msg)


def vbk_of(rk, ns_id, bucket_id, r, bk):
    msg = LABEL_VBK + b"\x00" + u32le(1) + u64le(ns_id) + u64le(bucket_id) + u32le(r) + bk
    assert len(msg) == 83
    return hmac256(rk, msg)


def parse_customer_key(raw):
    """KEYS.md §4.3: exactly 32 bytes are the raw key; otherwise stripped standard base64."""
    if len(raw) == 32:
        return raw
    text = raw.strip(b" \t\n\r\x0c")  # ASCII whitespace as WHATWG / Rust define it (no VT)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Refused("customer key file: neither 32 raw bytes nor standard base64") from None
    need(len(key) == 32, f"customer key file: base64 of {len(key)} bytes, not 32")
    # RFC 4648 §3.5 lets a decoder accept non-canonical encodings (non-zero pad bits); dare
    # refuses them, and so do we: the text must be exactly the encoding of the key.
    need(base64.b64encode(key) == text, "customer key file: non-canonical base64")
    return key


def check_key_md5(key, md5_b64):
    """KEYS.md §4.3: the optional key-MD5 is base64 of MD5 of the 32 raw key bytes."""
    expect = base64.b64encode(hashlib.md5(key).digest()).decode()
    need(hmac.compare_digest(expect, md5_b64.strip()), "customer key MD5 mismatch")


# ---------------------------------------------------------------------------------------------
# The store: database, root of trust, key hierarchy.

class Store:
    def __init__(self, path, passphrase_file=None):
        self.path = path
        db = os.path.join(path, "dare.db")
        need(os.path.isfile(db), f"{db}: no such file (not a dare store of format 2?)")
        try:
            self.db = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            self.db.row_factory = sqlite3.Row
            (version,) = self.db.execute("SELECT version FROM dare_schema").fetchone()
        except sqlite3.Error as e:
            raise Refused(f"{db}: {e}") from None
        # Version 2 added only the task lease columns (METADATA.md), which this reader does
        # not use; version 3 the key management service's tables (METADATA.md §9), which it
        # does not read either, and buckets.kms_key_id (an SSE-KMS bucket, refused below).
        # Version 4 (the rekey, METADATA.md §2.1) added columns it does not read: master key
        # rows say which root protects them, and `wrapped` stays that root's blob.
        # Version 5 (sites that joined the store, METADATA.md §2, KEYS.md §8.5) added two
        # tables it does not read: keys granted to other sites' RSA keys; the store's own
        # blobs are unchanged. Every other column it reads is as in version 1.
        need(version in (1, 2, 3, 4, 5), f"metadata schema version {version} not supported")
        self.store = self.one("SELECT * FROM store WHERE id = 1", (), "store row")
        self.store_id = self.store["store_id"]
        need(isinstance(self.store_id, bytes) and len(self.store_id) == 16, "store_id is not 16 bytes")
        self.passphrase_file = passphrase_file
        self._root = None
        self._rt = None
        self._mk = {}
        self._vmk = {}
        self._kek = None

    def one(self, sql, args, what):
        rows = self.db.execute(sql, args).fetchall()
        need(len(rows) == 1, f"{what}: {len(rows)} rows")
        return rows[0]

    # KEYS.md §5: the root of trust protects MK_v and RT.
    def root_unwrap(self, blob, what):
        need(isinstance(blob, bytes), f"{what}: not a BLOB")
        rot = self.store["root_of_trust"]
        if rot == "root-key-file":
            if self._root is None:
                f = os.path.join(self.path, "root.key")
                try:
                    st = os.stat(f)
                    need(stat.S_IMODE(st.st_mode) & 0o077 == 0,
                         f"{f}: mode {stat.S_IMODE(st.st_mode):o} has group or other bits")
                    root = open(f, "rb").read()
                except OSError as e:
                    raise Refused(f"{f}: {e.strerror}") from None
                need(len(root) == 32, f"{f}: {len(root)} bytes, not 32")
                self._root = root
            try:
                return unwrap(self._root, blob, what)
            except Refused as e:
                raise Refused(f"{e} (wrong root key file, or the key store was tampered with)") from None
        if rot == "passphrase-argon2id":
            need(self.passphrase_file, "store protected by a passphrase: give --passphrase-file")
            need(len(blob) == 69 and blob[0] == 1, f"{what}: not a passphrase blob")
            m, t, p = struct.unpack_from("<III", blob, 1)
            salt = blob[13:29]
            need(m <= 4194304 and t <= 64 and p <= 64, f"{what}: Argon2 parameters too large")
            if self._kek is None or self._kek[0] != (m, t, p, salt):
                from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
                pw = open(self.passphrase_file, "rb").read()
                if pw.endswith(b"\r\n"):
                    pw = pw[:-2]
                elif pw.endswith(b"\n"):
                    pw = pw[:-1]
                kek = Argon2id(salt=salt, length=32, iterations=t, lanes=p, memory_cost=m).derive(pw)
                self._kek = ((m, t, p, salt), kek)
            return unwrap(self._kek[1], blob[29:], what)
        raise Refused(f"root of trust {rot!r} not supported")

    def rt(self):
        if self._rt is None:
            self._rt = self.root_unwrap(self.store["rt_data_key"], "RT data key")
        return self._rt

    def vmk(self, v):
        if v not in self._vmk:
            row = self.one("SELECT * FROM master_keys WHERE version = ?", (v,), f"master key {v}")
            mk = self.root_unwrap(row["wrapped"], f"master key {v}")
            self._vmk[v] = vmk_of(mk, v, self.rt())
        return self._vmk[v]

    # KEYS.md §4.2
    def data_key_hierarchy(self, env, row_bucket_id):
        need(len(env) == 60, f"hierarchy envelope is {len(env)} bytes, not 60")
        ns_id, bucket_id, r = struct.unpack_from("<QQI", env, 0)
        need(bucket_id == row_bucket_id,
             f"envelope names bucket {bucket_id}, the object is in bucket {row_bucket_id} (wrong context)")
        rk_row = self.one("SELECT * FROM rotation_keys WHERE version = ?", (r,), f"rotation key {r}")
        rk = unwrap(self.vmk(rk_row["master_version"]), rk_row["wrapped"], f"rotation key {r}")
        ns = self.one("SELECT * FROM namespaces WHERE id = ?", (ns_id,), f"namespace {ns_id}")
        nk = unwrap(self.vmk(ns["master_version"]), ns["wrapped_key"], f"namespace key {ns_id}")
        b = self.one("SELECT * FROM buckets WHERE id = ?", (bucket_id,), f"bucket {bucket_id}")
        need(b["namespace_id"] == ns_id,
             f"envelope names namespace {ns_id}, bucket {bucket_id} is in namespace {b['namespace_id']}")
        need(b["wrapped_key"] is not None, f"bucket {bucket_id} has no bucket key (not encrypted)")
        # METADATA.md §2: an SSE-KMS bucket's key is wrapped by a CMK of the key management
        # service (KMS.md), not by its namespace key; this reader does not implement the KMS.
        cmk = b["kms_key_id"] if "kms_key_id" in b.keys() else None
        need(cmk is None, f"bucket {bucket_id} is an SSE-KMS bucket (CMK {cmk}): its key is "
             "wrapped by the key management service, which this reader does not implement")
        bk = unwrap(nk, b["wrapped_key"], f"bucket key {bucket_id}")
        vbk = vbk_of(rk, ns_id, bucket_id, r, bk)
        dk = unwrap(vbk, env[20:60], "data key")
        return dk, f"hierarchy ns={ns_id} bucket={bucket_id} r={r}"


# KEYS.md §4.3
def data_key_sse_c(env, ck):
    need(len(env) == 88, f"SSE-C envelope is {len(env)} bytes, not 88")
    need(ck is not None, "object is encrypted with a customer key (SSE-C): give --sse-c-key-file")
    salt, verifier, wrapped = env[:16], env[16:48], env[48:88]
    expect = hmac256(ck, LABEL_VERIFIER + b"\x00" + u32le(1) + salt)
    need(hmac.compare_digest(expect, verifier), "customer key does not match the object's (SSE-C)")
    kek = hmac256(ck, LABEL_KEK_C + b"\x00" + u32le(1) + salt)
    return unwrap(kek, wrapped, "data key (SSE-C)"), "sse-c"


def data_key(store, kind, env, bucket_id, ck):
    if kind == 2:
        return store.data_key_hierarchy(env, bucket_id)
    if kind == 3:
        return data_key_sse_c(env, ck)
    if kind == 1:
        raise Refused("key kind 1 (StoreRoot) not supported: its key is not part of a store")
    raise Refused(f"key kind {kind} not supported")


# ---------------------------------------------------------------------------------------------
# FORMAT.md §5 user metadata encoding.

def decode_meta(enc):
    need(len(enc) <= 65536, "user metadata longer than 65536 bytes")
    need(len(enc) >= 2, "user metadata shorter than 2 bytes")
    (count,) = struct.unpack_from("<H", enc, 0)
    pos, out = 2, []
    for _ in range(count):
        entry = []
        for part in ("key", "value"):
            need(pos + 2 <= len(enc), "user metadata truncated")
            (ln,) = struct.unpack_from("<H", enc, pos)
            pos += 2
            need(pos + ln <= len(enc), "user metadata truncated")
            try:
                entry.append(enc[pos:pos + ln].decode("utf-8"))
            except UnicodeDecodeError:
                raise Refused(f"user metadata {part} is not UTF-8") from None
            pos += ln
        need(entry[0] != "", "user metadata key is empty")
        out.append(tuple(entry))
    need(pos == len(enc), "trailing bytes after the user metadata")
    return out


def nonce(prefix, i, marker):
    return prefix + struct.pack(">I", i) + bytes([marker])


def open_chunks(gcm, prefix, ad, body, C, n):
    """FORMAT.md §6 suite 1: every chunk verified; returns (plaintext chunks, tags)."""
    stride = C + 16
    out, tags = [], []
    for i in range(n):
        piece = body[i * stride:(i + 1) * stride]
        try:
            out.append(gcm.decrypt(nonce(prefix, i, 1 if i == n - 1 else 0), piece, ad))
        except InvalidTag:
            raise Refused(f"chunk {i} of {n} failed authentication") from None
        tags.append(piece[-16:])
    return out, tags


# ---------------------------------------------------------------------------------------------
# One object.

def read_file(store, row):
    oid = row["object_id"]
    need(isinstance(oid, bytes) and len(oid) == 16, "object_id is not 16 bytes")
    h = oid.hex()
    f = os.path.join(store.path, "objects", str(row["bucket_id"]), h[:2], h)
    try:
        with open(f, "rb") as fh:
            return fh.read()
    except OSError as e:
        raise Refused(f"data file {f}: {e.strerror}") from None


def open_v2(store, bucket, row, F, ck):
    suite, shift, prefix = row["suite"], row["chunk_shift"], row["nonce_prefix"]
    name, N = row["name"], row["size"]
    need(suite in (0, 1), f"suite {suite} not supported")
    need(isinstance(shift, int) and 12 <= shift <= 22, f"chunk_shift {shift} out of range")
    need(isinstance(prefix, bytes) and len(prefix) == 7, "nonce_prefix is not 7 bytes")
    need(isinstance(N, int) and N >= 0, "size is negative")
    C = 1 << shift
    n = max(1, -(-N // C))
    need(n <= 1 << 32, "more than 2^32 chunks")
    # §2 header: every value must agree with the row.
    need(len(F) >= 32, "data file shorter than its 32-byte header")
    need(F[0:4] == b"DARE", "data file: bad magic")
    need(F[4] == 2, f"data file version {F[4]}, row says format 2")
    need(F[5] == suite and F[6] == shift and F[7] == 0 and F[31] == 0,
         "data file header disagrees with the row (suite, chunk shift or reserved bytes)")
    need(F[8:24] == row["object_id"], "data file header names another object id")
    need(F[24:31] == prefix, "data file header nonce prefix disagrees with the row")
    meta_blob = row["meta"]
    need(isinstance(meta_blob, bytes), "meta is not a BLOB")
    body = memoryview(F)[32:]

    if suite == 0:
        # §6 suite 0: refused in an encrypted bucket (downgrade).
        need(bucket["encryption"] == 0, "stored in clear but its bucket is encrypted")
        need(prefix == bytes(7), "suite-0 nonce prefix is not zero")
        need(row["envelope_kind"] is None and row["envelope"] is None, "suite-0 row has an envelope")
        need(len(F) == 32 + N, f"data file is {len(F)} bytes, expected {32 + N}")
        plain = bytes(body)
        etag = "%08x" % crc32c(plain)
        need(row["etag"] == etag, f"CRC-32C {etag} differs from the ETag {row['etag']} (corrupted)")
        return decode_meta(meta_blob), [plain], "clear"

    kind, env = row["envelope_kind"], row["envelope"]
    need(kind is not None and isinstance(env, bytes), "encrypted row without an envelope")
    need(18 <= len(meta_blob) <= 65552, f"sealed metadata is {len(meta_blob)} bytes")
    # §6 suite 1: exact length before decrypting anything.
    need(len(F) == 32 + N + 16 * n, f"data file is {len(F)} bytes, expected {32 + N + 16 * n}")
    dk, how = data_key(store, kind, env, row["bucket_id"], ck)
    ad = hashlib.sha256(b"dare/v2/object\x00" + store.store_id + u64le(row["bucket_id"])
                        + row["object_id"] + bytes([suite, shift]) + prefix
                        + u16le(len(name)) + name).digest()
    gcm = AESGCM(dk)
    try:
        enc = gcm.decrypt(nonce(prefix, 0, 2), meta_blob, ad)
    except InvalidTag:
        raise Refused("user metadata failed authentication (wrong data key or tampered row)") from None
    meta = decode_meta(enc)
    chunks, tags = open_chunks(gcm, prefix, ad, body, C, n)
    etag = hashlib.sha256(b"dare/v2/etag\x00" + b"".join(tags)).digest()[:16].hex()
    need(row["etag"] == etag, f"ETag {row['etag']} differs from the chunks' tags ({etag})")
    return meta, chunks, how


def open_v1(store, bucket, row, F, ck):
    need(len(F) >= 24, "format-1 file shorter than its fixed header")
    need(F[0:4] == b"DARE", "format-1 file: bad magic")
    need(F[4] == 1, f"format-1 file has version {F[4]}")
    suite, shift, kind, prefix = F[5], F[6], F[7], F[8:15]
    need(F[15] == 0, "format-1 reserved byte is not zero")
    name_len, kb_len, meta_len = struct.unpack_from("<HHI", F, 16)
    need(suite in (0, 1), f"suite {suite} not supported")
    need(12 <= shift <= 22, f"chunk_shift {shift} out of range")
    need(1 <= name_len <= 1024, "format-1 name length out of range")
    need(kb_len <= 1024, "format-1 key block length out of range")
    need(meta_len <= 65536 + 16, "format-1 metadata block too long")
    hlen = 24 + name_len + kb_len
    need(len(F) >= hlen + meta_len, "format-1 file truncated in its header")
    H = F[:hlen]
    name = F[24:24 + name_len]
    need(name == row["name"], "format-1 file holds another object's name")
    # The row copies these from the file (METADATA.md §5); they must agree.
    need(row["suite"] == suite and row["chunk_shift"] == shift,
         "format-1 row disagrees with its file (suite or chunk shift)")
    need(row["nonce_prefix"] == prefix, "format-1 row disagrees with its file (nonce prefix)")
    env = F[24 + name_len:hlen]
    meta_blob = F[hlen:hlen + meta_len]
    body = memoryview(F)[hlen + meta_len:]
    L = len(body)
    if suite == 0:
        need(bucket["encryption"] == 0, "stored in clear but its bucket is encrypted")
        need(kind == 0 and kb_len == 0, "format-1 clear object with a key")
        need(prefix == bytes(7), "suite-0 nonce prefix is not zero")
        need(L == row["size"], f"format-1 body is {L} bytes, row says {row['size']}")
        # FORMAT.md §7: a clear object's ETag is the CRC-32C of its content (both formats).
        etag = "%08x" % crc32c(bytes(body))
        need(row["etag"] == etag, f"CRC-32C {etag} differs from the ETag {row['etag']} (corrupted)")
        return decode_meta(meta_blob), [bytes(body)], "clear"

    need(row["etag"] == row["object_id"].hex(), "format-1 ETag is not the object id")
    need(row["envelope"] == env, "format-1 row's envelope differs from its file's")

    need(kind != 0, "format-1 encrypted object with key kind 0")
    need(meta_len >= 18, "format-1 sealed metadata shorter than 18 bytes")
    C = 1 << shift
    stride = C + 16
    need(L >= 16, f"format-1 body of {L} bytes is invalid")
    if L == 16:
        n = 1
    else:
        n = -(-L // stride)
        last = L - (n - 1) * stride
        need(last > 16, f"format-1 body of {L} bytes is invalid (empty final chunk)")
    N = L - 16 * n
    need(N == row["size"], f"format-1 body holds {N} bytes, row says {row['size']}")
    need(row["envelope_kind"] == kind, "format-1 row's envelope kind differs from its file's")
    dk, how = data_key(store, kind, env, row["bucket_id"], ck)
    ad = hashlib.sha256(H).digest()
    gcm = AESGCM(dk)
    try:
        enc = gcm.decrypt(nonce(prefix, 0, 2), meta_blob, ad)
    except InvalidTag:
        raise Refused("user metadata failed authentication (wrong key or tampered file)") from None
    meta = decode_meta(enc)
    chunks, _ = open_chunks(gcm, prefix, ad, body, C, n)
    return meta, chunks, how + " (format 1)"


def open_object(store, bucket, row, ck):
    # FORMAT.md §6: a clear row in an encrypted bucket is refused before anything else, so a
    # forged row (with a matching clear data file) cannot serve plaintext of its choosing.
    if row["suite"] == 0:
        need(bucket["encryption"] == 0, "stored in clear but its bucket is encrypted")
    F = read_file(store, row)
    fmt = row["format"]
    if fmt == 2:
        return open_v2(store, bucket, row, F, ck)
    if fmt == 1:
        return open_v1(store, bucket, row, F, ck)
    raise Refused(f"object format {fmt} not supported")


def find(store, bucket_name, name):
    bucket = store.db.execute("SELECT * FROM buckets WHERE name = ?", (bucket_name,)).fetchone()
    need(bucket is not None, f"no bucket {bucket_name!r}")
    row = store.db.execute("SELECT * FROM objects WHERE bucket_id = ? AND name = ?",
                           (bucket["id"], name.encode("utf-8"))).fetchone()
    need(row is not None, f"no object {name!r} in bucket {bucket_name!r}")
    return bucket, row


def main():
    args = sys.argv[1:]
    opts = {"--sse-c-key-file": None, "--sse-c-key-md5": None, "--passphrase-file": None}
    flags = set()
    pos = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in opts:
            if i + 1 >= len(args):
                usage()
            opts[a] = args[i + 1]
            i += 2
            continue
        if a in ("--meta", "--all", "--quiet"):
            flags.add(a)
        elif a.startswith("--"):
            usage()
        else:
            pos.append(a)
        i += 1
    if ("--all" in flags and len(pos) != 1) or ("--all" not in flags and len(pos) != 3):
        usage()
    try:
        ck = None
        if opts["--sse-c-key-file"]:
            try:
                raw = open(opts["--sse-c-key-file"], "rb").read()
            except OSError as e:
                raise Refused(f"customer key file: {e.strerror}") from None
            ck = parse_customer_key(raw)
            if opts["--sse-c-key-md5"] is not None:
                check_key_md5(ck, opts["--sse-c-key-md5"])
        store = Store(pos[0], opts["--passphrase-file"])
        if "--all" in flags:
            run_all(store, ck, flags)
            return
        bucket, row = find(store, pos[1], pos[2])
        meta, chunks, how = open_object(store, bucket, row, ck)
    except Refused as e:
        fail(pos, f"refused: {e}")
    except (sqlite3.Error, OSError, KeyError, IndexError, TypeError, ValueError, struct.error) as e:
        # a malformed database or file that got past the checks above: still one line, no plaintext
        fail(pos, f"refused (malformed store): {type(e).__name__}: {e}")
    # Everything verified: only now does any plaintext leave.
    out = sys.stdout.buffer
    try:
        if "--meta" in flags:
            # FORMAT.md §5 does not say keys are unique; like `dare head --json`, the last wins.
            out.write(json.dumps(dict(meta), ensure_ascii=False, sort_keys=True).encode() + b"\n")
        else:
            for c in chunks:
                out.write(c)
        out.flush()
    except OSError as e:
        fail(pos, f"writing the output: {e.strerror}")
    if "--quiet" not in flags:
        size = sum(len(c) for c in chunks)
        print(f"ok: {pos[1]}/{pos[2]}: {size} bytes, format {row['format']}, suite {row['suite']}, "
              f"key {how}, {len(meta)} metadata entries", file=sys.stderr)


def fail(pos, msg):
    where = f"{pos[1]}/{pos[2]}: " if len(pos) == 3 else ""
    print(f"decrypt.py: {where}{' '.join(str(msg).splitlines())}", file=sys.stderr)
    sys.exit(1)


def run_all(store, ck, flags):
    n = skipped = 0
    buckets = store.db.execute("SELECT * FROM buckets ORDER BY name").fetchall()
    out = sys.stdout
    for bucket in buckets:
        rows = store.db.execute("SELECT * FROM objects WHERE bucket_id = ? ORDER BY name",
                                (bucket["id"],)).fetchall()
        for row in rows:
            try:
                label = row["name"].decode("utf-8")
            except UnicodeDecodeError:
                raise Refused(f"bucket {bucket['name']}: an object name is not UTF-8") from None
            if row["envelope_kind"] == 3 and ck is None:
                print(f"skipped: {bucket['name']}/{label}: customer key (SSE-C) not given",
                      file=sys.stderr)
                skipped += 1
                continue
            try:
                _, chunks, _ = open_object(store, bucket, row, ck)
            except Refused as e:
                raise Refused(f"{bucket['name']}/{label}: {e}") from None
            h = hashlib.sha256()
            for c in chunks:
                h.update(c)
            out.write(f"{bucket['name']}\t{label}\t{h.hexdigest()}\n")
            n += 1
    out.flush()
    if "--quiet" not in flags:
        print(f"ok: {n} objects decrypted, {skipped} skipped (customer key not given)", file=sys.stderr)


def usage():
    print("usage: decrypt.py STORE_DIR BUCKET NAME [--sse-c-key-file F [--sse-c-key-md5 B64]] [--passphrase-file F] [--meta]\n"
          "       decrypt.py STORE_DIR --all [--sse-c-key-file F] [--passphrase-file F]", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
    main()
