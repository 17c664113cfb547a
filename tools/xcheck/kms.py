#!/usr/bin/env python3
"""Independent reader of dare's key management service, written from docs/KMS.md,
docs/KEYS.md and docs/METADATA.md only (no Rust source of dare-kms).

    kms.py STORE decrypt CIPHERTEXT_FILE [--context K=V]...   > plaintext (raw bytes)
    kms.py STORE audit-verify                                 > "ok N"
    kms.py STORE bucket-key BUCKET                            > hex of the bucket key BK

STORE is a store directory protected by a root key file: `root.key` (32 bytes, KEYS.md §5.1)
and `dare.db` (METADATA.md §2, §9: schema version 3), opened read-only.

- decrypt: a ciphertext of `dare kms encrypt` (purpose 2) or a data key of
  `dare kms create-datakey` / `encrypt-datakey` (purpose 1), KMS.md §4.1-§4.3. The CMK version
  material is unwrapped with the root key (KMS.md §1, KEYS.md §2, §5.1); the associated data
  binds the store id, the header and the encryption context (KMS.md §4.2).
- audit-verify: recomputes the HMAC chain of `kms_audit` under K_audit (KMS.md §1.1, §7.2-§7.3)
  in one read snapshot and compares it with `kms_audit_head`.
- bucket-key: unwraps `buckets.wrapped_key` of an SSE-KMS bucket, a ciphertext of purpose 3
  with the context {"dare:bucket": BUCKET} under the CMK `buckets.kms_key_id` (KMS.md §4.4).

Any failure: one line on stderr, nothing on stdout, exit status 1 (2 for usage errors).
Nothing is written to stdout before every check has passed.

Where the documents leave a reader's duty open, this reader is strict: the ciphertext's key id
must be a CMK of the store, not a tombstone, Enabled (KMS.md §2.3 "Cryptographic
operations"), the version must exist, be at least the CMK's minimum decryption version
(§3.4) and have material; the plaintext length must be the one of its purpose (§4.1);
`--context` splits at the first `=` (as the `dare` CLI) and refuses a repeated name; the
bucket key's ciphertext must name the CMK of `buckets.kms_key_id`.

Uses `cryptography` (AES-GCM, RFC 5649 unwrap) and the standard library.
"""
import hashlib
import hmac
import os
import sqlite3
import stat
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding


class Refused(Exception):
    """Any reason not to release a plaintext or to call a trail intact."""


def need(cond, msg):
    if not cond:
        raise Refused(msg)


u8 = lambda v: struct.pack("<B", v)
u32le = lambda v: struct.pack("<I", v)
u64le = lambda v: struct.pack("<Q", v)


def hmac256(key, *parts):
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def unwrap(kek, wrapped, what):
    """KEYS.md §2: RFC 5649, exactly 40 bytes in, 32 bytes out."""
    need(isinstance(wrapped, (bytes, bytearray)), f"{what}: wrapped key is not a BLOB")
    need(len(wrapped) == 40, f"{what}: wrapped key is {len(wrapped)} bytes, not 40")
    try:
        k = aes_key_unwrap_with_padding(kek, bytes(wrapped))
    except (InvalidUnwrap, ValueError) as e:
        raise Refused(f"{what}: unwrap failed ({str(e) or 'integrity check failed'})") from None
    need(len(k) == 32, f"{what}: unwrapped key is {len(k)} bytes, not 32")
    return k


# KMS.md §1.1 (KEYS.md §3.4): service keys derived from the RT data key.
LABEL_AUDIT_KEY = b"dare/v1/kms/audit-key"
LABEL_IMPORT_KEY = b"dare/v1/kms/import-key"
LABEL_FP_KEY = b"dare/v1/kms/material-fingerprint-key"
# KMS.md §4.2 and §7.2: the labels of the ciphertext AAD and of the audit record MAC.
LABEL_CIPHERTEXT = b"dare/v1/kms/ciphertext"
LABEL_AUDIT_RECORD = b"dare/v1/kms/audit-record"


def service_key(rt, label):
    return hmac256(rt, label, b"\x00", u32le(1))


# ---------------------------------------------------------------------------------------------
# KMS.md §4: ciphertexts.

FORMAT = 0x01
PURPOSE_DATA_KEY, PURPOSE_DATA, PURPOSE_BUCKET_KEY = 0x01, 0x02, 0x03
PURPOSE_NAMES = {PURPOSE_DATA_KEY: "data key", PURPOSE_DATA: "data", PURPOSE_BUCKET_KEY: "bucket key"}
HEADER = 34  # format, purpose, key id[16], u32le version, nonce[12]
TAG = 16


def uuid_text(b):
    """§4.1: the 16 bytes of the UUID in the order of its hex text -> lower-case hyphenated."""
    h = b.hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def uuid_bytes(text):
    need(isinstance(text, str), "key id is not TEXT")
    h = text.replace("-", "")
    need(len(text) == 36 and len(h) == 32 and all(c in "0123456789abcdef" for c in h)
         and [len(p) for p in text.split("-")] == [8, 4, 4, 4, 12],
         f"key id {text!r} is not a lower-case hyphenated UUID")
    return bytes.fromhex(h)


def plaintext_length_ok(purpose, n):
    if purpose == PURPOSE_DATA_KEY:
        return n in (32, 64)
    if purpose == PURPOSE_DATA:
        return 1 <= n <= 4096
    return n == 32


def parse_ciphertext(ct):
    """§4.3: a format or purpose byte other than those of §4.1, version 0, or fewer than 50
    bytes is malformed."""
    need(len(ct) >= HEADER + TAG, f"ciphertext malformed: {len(ct)} bytes, fewer than 50")
    need(ct[0] == FORMAT, f"ciphertext malformed: format byte {ct[0]:#04x}, not 0x01")
    need(ct[1] in PURPOSE_NAMES, f"ciphertext malformed: purpose byte {ct[1]:#04x}")
    (version,) = struct.unpack_from("<I", ct, 18)
    need(version >= 1, "ciphertext malformed: CMK version 0")
    return ct[1], uuid_text(ct[2:18]), version


def encode_context(pairs):
    """§4.2: u32le(count) || per pair, names in ascending byte order,
    u32le(len(name)) || name || u32le(len(value)) || value (UTF-8)."""
    enc = [(k.encode("utf-8"), v.encode("utf-8")) for k, v in pairs.items()]
    enc.sort(key=lambda kv: kv[0])
    out = [u32le(len(enc))]
    for k, v in enc:
        out += [u32le(len(k)), k, u32le(len(v)), v]
    return b"".join(out)


def aad_of(store_id, ct, pairs):
    return b"".join([LABEL_CIPHERTEXT, b"\x00", u32le(1), store_id, ct[0:22], encode_context(pairs)])


# ---------------------------------------------------------------------------------------------
# The store: database (read-only) and root key file.

class Store:
    def __init__(self, path):
        self.path = path
        db = os.path.join(path, "dare.db")
        need(os.path.isfile(db), f"{db}: no such file (not a dare store with SQLite metadata?)")
        try:
            # isolation_level=None: we issue BEGIN ourselves, so a whole audit walk is one
            # read snapshot (KMS.md §7.3).
            self.db = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("BEGIN")
            (version,) = self.db.execute("SELECT version FROM dare_schema").fetchone()
            # METADATA.md §1: the KMS tables (§9) and buckets.kms_key_id came with version 3;
            # version 4 (the rekey, §2.1) and version 5 (sites, §2) changed none of them.
            need(version in (3, 4, 5), f"metadata schema version {version} not supported (3 to 5)")
            self.store = self.one("SELECT * FROM store WHERE id = 1", (), "store row")
        except sqlite3.Error as e:
            raise Refused(f"{db}: {e}") from None
        self.store_id = self.store["store_id"]
        need(isinstance(self.store_id, bytes) and len(self.store_id) == 16, "store.store_id is not 16 bytes")
        need(self.store["root_of_trust"] == "root-key-file",
             f"root of trust {self.store['root_of_trust']!r} not supported (root key file only)")
        self._root = None
        self._rt = None

    def one(self, sql, args, what):
        try:
            rows = self.db.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise Refused(f"{what}: {e}") from None
        need(len(rows) == 1, f"{what}: {len(rows)} rows")
        return rows[0]

    def all(self, sql, args, what):
        try:
            return self.db.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise Refused(f"{what}: {e}") from None

    # KEYS.md §5.1: the root key file, exactly 32 bytes; blob = WRAP(ROOT, key).
    def root_unwrap(self, blob, what):
        if self._root is None:
            f = os.path.join(self.path, "root.key")
            try:
                fd = os.open(f, os.O_RDONLY | os.O_NOFOLLOW)
                try:
                    st = os.fstat(fd)
                    need(stat.S_ISREG(st.st_mode), f"{f}: not a regular file")
                    need(stat.S_IMODE(st.st_mode) & 0o077 == 0,
                         f"{f}: mode {stat.S_IMODE(st.st_mode):o} has group or other bits")
                    root = os.read(fd, 33)
                finally:
                    os.close(fd)
            except OSError as e:
                raise Refused(f"{f}: {e.strerror}") from None
            need(len(root) == 32, f"{f}: {len(root)} bytes, not 32")
            self._root = root
        try:
            return unwrap(self._root, blob, what)
        except Refused as e:
            raise Refused(f"{e} (wrong root key file, or the key store was tampered with)") from None

    def rt(self):
        if self._rt is None:
            self._rt = self.root_unwrap(self.store["rt_data_key"], "RT data key")
        return self._rt

    # KMS.md §4.3: look the CMK up, check its state and the version, unwrap the material.
    def material(self, key_id, version):
        rows = self.all("SELECT * FROM kms_keys WHERE key_id = ?", (key_id,), "kms_keys")
        need(rows, f"customer master key {key_id} not found")
        key = rows[0]
        state = key["state"]
        need(state != "deleted", f"customer master key {key_id} was deleted")
        need(state == "enabled", f"customer master key {key_id} is {state}, not enabled")
        rows = self.all("SELECT * FROM kms_versions WHERE key_id = ? AND version = ?",
                        (key_id, version), "kms_versions")
        need(rows, f"customer master key {key_id} has no version {version}")
        minimum = key["min_decryption_version"]
        need(version >= minimum,
             f"version {version} of {key_id} is below its minimum decryption version {minimum}")
        blob = rows[0]["material"]
        need(blob is not None, f"the material of version {version} of {key_id} is deleted or expired")
        return self.root_unwrap(blob, f"material of {key_id} version {version}")

    def open_ciphertext(self, ct, purposes, pairs):
        """§4.3; returns (purpose, key id, version, plaintext)."""
        purpose, key_id, version = parse_ciphertext(ct)
        need(purpose in purposes,
             f"ciphertext of purpose {purpose} ({PURPOSE_NAMES[purpose]}) where "
             + " or ".join(f"{p} ({PURPOSE_NAMES[p]})" for p in purposes) + " is expected")
        n = len(ct) - HEADER - TAG
        need(plaintext_length_ok(purpose, n),
             f"ciphertext malformed: a {PURPOSE_NAMES[purpose]} of {n} bytes")
        m = self.material(key_id, version)
        try:
            pt = AESGCM(m).decrypt(ct[22:34], ct[34:], aad_of(self.store_id, ct, pairs))
        except InvalidTag:
            raise Refused(f"decryption failed under {key_id} version {version}: wrong context, "
                          "another store, or the ciphertext was changed") from None
        return purpose, key_id, version, pt

    def bucket_key(self, name):
        """§4.4: buckets.wrapped_key is a purpose-3 ciphertext, context {"dare:bucket": B}."""
        b = self.one("SELECT * FROM buckets WHERE name = ?", (name,), f"bucket {name}")
        keys = b.keys()
        need("kms_key_id" in keys, "buckets has no kms_key_id column (no SSE-KMS in this schema)")
        kid = b["kms_key_id"]
        need(kid is not None, f"bucket {name} is not an SSE-KMS bucket (no kms_key_id)")
        ct = b["wrapped_key"]
        need(isinstance(ct, bytes), f"bucket {name}: wrapped_key is not a BLOB")
        need(len(ct) == HEADER + 32 + TAG, f"bucket {name}: wrapped_key is {len(ct)} bytes, not 82")
        _, ct_kid, _ = parse_ciphertext(ct)
        need(ct_kid == kid, f"bucket {name}: wrapped_key names CMK {ct_kid}, the row {kid}")
        _, _, _, bk = self.open_ciphertext(ct, (PURPOSE_BUCKET_KEY,), {"dare:bucket": name})
        return bk

    def audit_verify(self):
        """§7.2-§7.3, in the read snapshot begun at open. Returns the number of records."""
        k_audit = service_key(self.rt(), LABEL_AUDIT_KEY)
        prev_mac = bytes(32)
        prev_seq = 0
        n = 0
        cur = self.db.execute("SELECT * FROM kms_audit ORDER BY seq")
        for r in cur:
            seq = r["seq"]
            need(seq != prev_seq, f"audit record {seq} repeated (records reordered)")
            need(seq == prev_seq + 1,
                 f"audit records {prev_seq + 1}..{seq - 1} missing (records removed)"
                 if seq > prev_seq + 1 else f"audit record {seq} out of order")
            version = r["version"]
            key_id = r["key_id"]
            try:
                msg = b"".join([
                    LABEL_AUDIT_RECORD, b"\x00", u32le(1), prev_mac,
                    u64le(seq), u64le(r["time_ms"]),
                    F(r["actor"]), F(r["operation"]), F("" if key_id is None else key_id),
                    u8(0 if version is None else 1), u32le(0 if version is None else version),
                    F(r["request_id"]), F(r["outcome"]), F(r["detail"]),
                ])
            except (struct.error, TypeError, UnicodeError) as e:
                raise Refused(f"audit record {seq}: malformed field ({e})") from None
            mac = hmac256(k_audit, msg)
            stored = r["mac"]
            need(isinstance(stored, bytes) and hmac.compare_digest(stored, mac),
                 f"audit record {seq}: MAC mismatch (this record or an earlier one was changed)")
            prev_mac, prev_seq, n = mac, seq, n + 1
        # METADATA.md §9: one row (id 1); no row before the first record (seq 0, empty MAC).
        heads = self.all("SELECT * FROM kms_audit_head", (), "kms_audit_head")
        need(len(heads) <= 1, f"kms_audit_head has {len(heads)} rows")
        need(not heads or heads[0]["id"] == 1, "kms_audit_head row id is not 1")
        hseq, hmac_ = (heads[0]["seq"], heads[0]["mac"]) if heads else (0, b"")
        need(hseq >= prev_seq, f"audit head says {hseq} records, the trail has {prev_seq}: "
                               "records added around the service, or the head rolled back")
        need(hseq <= prev_seq, f"audit head says {hseq} records, the trail has {prev_seq}: "
                               "the last records were removed")
        if hseq != 0:
            need(isinstance(hmac_, bytes) and hmac.compare_digest(hmac_, prev_mac),
                 f"audit head MAC differs from record {prev_seq}'s")
        return n


def F(s):
    """§7.2: u32le(len(s)) || s, UTF-8."""
    if isinstance(s, bytes):  # a TEXT column stored as a BLOB: take it as its bytes
        b = s
    else:
        need(isinstance(s, str), f"text field is {type(s).__name__}")
        b = s.encode("utf-8")
    return u32le(len(b)) + b


# ---------------------------------------------------------------------------------------------

USAGE = (f"usage: {os.path.basename(sys.argv[0])} STORE decrypt CIPHERTEXT_FILE [--context K=V]...\n"
         f"       {os.path.basename(sys.argv[0])} STORE audit-verify\n"
         f"       {os.path.basename(sys.argv[0])} STORE bucket-key BUCKET")


def usage(msg=None):
    if msg:
        print(f"kms.py: {msg}", file=sys.stderr)
    print(USAGE, file=sys.stderr)
    sys.exit(2)


def parse_args(argv):
    if len(argv) < 2:
        usage()
    store, cmd, rest = argv[0], argv[1], argv[2:]
    if cmd == "decrypt":
        ctfile, pairs = None, {}
        i = 0
        while i < len(rest):
            a = rest[i]
            if a == "--context" or a.startswith("--context="):
                if a == "--context":
                    i += 1
                    if i >= len(rest):
                        usage("--context needs K=V")
                    kv = rest[i]
                else:
                    kv = a[len("--context="):]
                k, eq, v = kv.partition("=")
                if not eq or not k:
                    usage(f"--context expects KEY=VALUE, got {kv!r}")
                if k in pairs:
                    usage(f"--context gives {k!r} twice")
                pairs[k] = v
            elif ctfile is None and not a.startswith("--"):
                ctfile = a
            else:
                usage(f"unexpected argument {a!r}")
            i += 1
        if ctfile is None:
            usage("decrypt needs a CIPHERTEXT_FILE")
        return store, cmd, (ctfile, pairs)
    if cmd == "audit-verify":
        if rest:
            usage(f"unexpected argument {rest[0]!r}")
        return store, cmd, ()
    if cmd == "bucket-key":
        if len(rest) != 1:
            usage("bucket-key needs exactly one BUCKET")
        return store, cmd, (rest[0],)
    usage(f"unknown command {cmd!r}")


def main(argv):
    store_dir, cmd, args = parse_args(argv)
    try:
        st = Store(store_dir)
        if cmd == "decrypt":
            ctfile, pairs = args
            try:
                with open(ctfile, "rb") as f:
                    ct = f.read()
            except OSError as e:
                raise Refused(f"{ctfile}: {e.strerror}") from None
            _, _, _, pt = st.open_ciphertext(ct, (PURPOSE_DATA_KEY, PURPOSE_DATA), pairs)
            sys.stdout.buffer.write(pt)
            sys.stdout.buffer.flush()
        elif cmd == "audit-verify":
            n = st.audit_verify()
            print(f"ok {n}")
        else:
            print(st.bucket_key(args[0]).hex())
    except Refused as e:
        print(f"kms.py: refused: {e}", file=sys.stderr)
        return 1
    except sqlite3.Error as e:
        print(f"kms.py: refused: database: {e}", file=sys.stderr)
        return 1
    except IndexError as e:  # sqlite3.Row without the column the documents name
        print(f"kms.py: refused: database: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
