#!/usr/bin/env bash
# Cross-check of docs/KMS.md: what `dare kms` writes is read by kms.py, which follows only
# docs/KMS.md, docs/KEYS.md and docs/METADATA.md. A `dare kms encrypt` ciphertext (with an
# encryption context) and `create-datakey` / `encrypt-datakey` data keys decrypt byte for byte,
# before and after a rotation (versions 1 and 2); a wrong context, flipped bytes, another store
# id, a wrong root key and a disabled CMK are refused with nothing on stdout; SSE-KMS bucket
# keys unwrap, before and after the rotation's rewrap, and open an object put into such a
# bucket through decrypt.py's key hierarchy (KMS.md §4.4 -> KEYS.md §3.2); the audit trail
# verifies, agrees with `dare kms audit verify`, and an edited byte of a record's detail or a
# removed record breaks it.
# Needs: cargo, python3 with `cryptography`. No sqlite3 CLI.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
unset DARE_STORE DARE_PASSPHRASE_FILE
export PYTHONDONTWRITEBYTECODE=1 # the SSE-KMS object check imports decrypt.py and kms.py
python3 -c 'import cryptography.hazmat.primitives.keywrap' 2>/dev/null ||
  { echo "xcheck kms: needs python3 with the cryptography package (AES-GCM, RFC 5649)" >&2; exit 1; }
cargo build --release -q -p dare-cli
target_dir=${CARGO_TARGET_DIR:-$repo/target} # where that build put the binary
case $target_dir in /*) ;; *) target_dir=$repo/$target_dir ;; esac
kms=${XCHECK_KMS:-$repo/tools/xcheck/kms.py}  # override only to test this script
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A private copy: another build replacing target/release/dare mid-run must not mix versions.
cp "$target_dir/release/dare" "$work/dare"
dare=$work/dare
store=$work/store
x() { "$dare" --store "$store" "$@"; }
die() { echo "xcheck kms: FAILED: $*" >&2; exit 1; }
n=0 # plaintexts compared byte for byte
m=0 # refusals

# same WHAT EXPECTED_FILE STORE kms.py-args...: kms.py must succeed with exactly EXPECTED_FILE
same() {
  local what=$1 f=$2 s=$3; shift 3
  python3 "$kms" "$s" "$@" > "$work/out" 2> "$work/err" || die "$what: kms.py refused it: $(cat "$work/err")"
  cmp -s "$f" "$work/out" || die "$what: kms.py's plaintext differs"
  n=$((n+1))
}
# refused WHAT PATTERN STORE kms.py-args...: kms.py must fail, write nothing on stdout, and say
# why in one line matching PATTERN (grep -E)
refused() {
  local what=$1 pat=$2 s=$3; shift 3
  if python3 "$kms" "$s" "$@" > "$work/out" 2> "$work/err"; then
    die "accepted: $what"
  fi
  [ ! -s "$work/out" ] || die "$what: output written before the refusal"
  [ "$(wc -l < "$work/err")" = 1 ] || die "$what: not a one-line message: $(cat "$work/err")"
  grep -Eq "$pat" "$work/err" || die "$what: refused for another reason: $(cat "$work/err")"
  m=$((m+1))
}
# ct_field FILE key|version: the key id (UUID text) or the version of a ciphertext (KMS.md §4.1)
ct_field() {
  python3 - "$@" <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read()
if sys.argv[2] == "key":
    h = b[2:18].hex(); print(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
else:
    print(struct.unpack_from("<I", b, 18)[0])
EOF
}

# ---- a store, a CMK, a ciphertext with a context ---------------------------------------------
x init >/dev/null
x kms create --alias k1 > "$work/create.out" || die "dare kms create failed"
kid=$(grep -oE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}' "$work/create.out" | head -n1)
[ -n "$kid" ] || die "dare kms create printed no key id: $(cat "$work/create.out")"

printf 'attack at dawn, ünïcödé € 日本 🙂\n' > "$work/in"
head -c 1000 /dev/urandom >> "$work/in"                        # binary, 1–4096 bytes (§2.1)
x kms encrypt k1 --in "$work/in" --context app=x --context "z=a=b" --out "$work/ct1" >/dev/null
[ "$(ct_field "$work/ct1" key)" = "$kid" ] || die "ciphertext names key $(ct_field "$work/ct1" key), not $kid"
[ "$(ct_field "$work/ct1" version)" = 1 ] || die "ciphertext not under version 1"
[ "$(stat -c %s "$work/ct1")" = $(( $(stat -c %s "$work/in") + 50 )) ] || die "ciphertext is not 50 + n bytes"
same "encrypt v1" "$work/in" "$store" decrypt "$work/ct1" --context app=x --context "z=a=b"
same "encrypt v1, context in another order" "$work/in" "$store" decrypt "$work/ct1" --context "z=a=b" --context app=x
# the smallest input, the empty context
printf 'A' > "$work/in1"
x kms encrypt k1 --in "$work/in1" --out "$work/ct-small" >/dev/null
same "1-byte encrypt, no context" "$work/in1" "$store" decrypt "$work/ct-small"

# ---- refusals --------------------------------------------------------------------------------
refused "wrong context value" "decryption failed" "$store" decrypt "$work/ct1" --context app=y --context "z=a=b"
refused "missing context pair" "decryption failed" "$store" decrypt "$work/ct1" --context app=x
refused "extra context pair" "decryption failed" "$store" decrypt "$work/ct1" --context app=x --context "z=a=b" --context q=r
refused "context on a context-free ciphertext" "decryption failed" "$store" decrypt "$work/ct-small" --context app=x
flip() { # flip FILE OFFSET OUT: a copy with one byte's low bit flipped
  python3 -c "import sys; b=bytearray(open(sys.argv[1],'rb').read()); b[int(sys.argv[2])]^=1; open(sys.argv[3],'wb').write(b)" "$@"
}
flip "$work/ct1" 40 "$work/ct-flip"        # in the GCM ciphertext
refused "flipped ciphertext byte" "decryption failed" "$store" decrypt "$work/ct-flip" --context app=x --context "z=a=b"
flip "$work/ct1" 25 "$work/ct-flip"        # in the nonce
refused "flipped nonce byte" "decryption failed" "$store" decrypt "$work/ct-flip" --context app=x --context "z=a=b"
flip "$work/ct1" $(( $(stat -c %s "$work/ct1") - 1 )) "$work/ct-flip"   # in the tag
refused "flipped tag byte" "decryption failed" "$store" decrypt "$work/ct-flip" --context app=x --context "z=a=b"
flip "$work/ct1" 1 "$work/ct-flip"         # purpose 2 -> 3 (a bucket key; also the wrong length)
refused "purpose changed" "purpose|malformed" "$store" decrypt "$work/ct-flip" --context app=x --context "z=a=b"
flip "$work/ct1" 5 "$work/ct-flip"         # the key id
refused "key id changed" "not found" "$store" decrypt "$work/ct-flip" --context app=x --context "z=a=b"
flip "$work/ct1" 19 "$work/ct-flip"        # the version (1 -> 257)
refused "version changed" "no version" "$store" decrypt "$work/ct-flip" --context app=x --context "z=a=b"
head -c 49 "$work/ct1" > "$work/ct-short"
refused "ciphertext cut to 49 bytes" "malformed" "$store" decrypt "$work/ct-short" --context app=x --context "z=a=b"
"$dare" --store "$work/store2" init >/dev/null   # another store (store id, root key): a refusal below

# ---- data keys -------------------------------------------------------------------------------
x kms create-datakey k1 --plaintext-out "$work/dk.pt" --ciphertext-out "$work/dk.ct" >/dev/null
[ "$(stat -c %s "$work/dk.pt")" = 32 ] || die "create-datakey: plaintext not 32 bytes"
same "create-datakey (256 bits)" "$work/dk.pt" "$store" decrypt "$work/dk.ct"
x kms create-datakey k1 --bits 512 --context who=me --plaintext-out "$work/dk512.pt" --ciphertext-out "$work/dk512.ct" >/dev/null
same "create-datakey (512 bits, context)" "$work/dk512.pt" "$store" decrypt "$work/dk512.ct" --context who=me
refused "data key, wrong context" "decryption failed" "$store" decrypt "$work/dk512.ct" --context who=you
head -c 32 /dev/urandom > "$work/mine.pt"
x kms encrypt-datakey k1 --in "$work/mine.pt" --out "$work/mine.ct" >/dev/null
same "encrypt-datakey" "$work/mine.pt" "$store" decrypt "$work/mine.ct"

# ---- rotation: version 2 encrypts, version 1 still decrypts ------------------------------------
x bucket create kms-b0 --kms-key k1 >/dev/null   # an SSE-KMS bucket made under version 1
python3 "$kms" "$store" bucket-key kms-b0 > "$work/bk0" 2> "$work/err" || die "bucket-key kms-b0: $(cat "$work/err")"
x kms rotate k1 >/dev/null
x kms encrypt k1 --in "$work/in" --context app=x --out "$work/ct2" >/dev/null
[ "$(ct_field "$work/ct2" version)" = 2 ] || die "after rotate, encrypt not under version 2"
same "encrypt v2" "$work/in" "$store" decrypt "$work/ct2" --context app=x
same "encrypt v1 after the rotation" "$work/in" "$store" decrypt "$work/ct1" --context app=x --context "z=a=b"
x kms create-datakey k1 --plaintext-out "$work/dk2.pt" --ciphertext-out "$work/dk2.ct" >/dev/null
[ "$(ct_field "$work/dk2.ct" version)" = 2 ] || die "after rotate, create-datakey not under version 2"
same "create-datakey v2" "$work/dk2.pt" "$store" decrypt "$work/dk2.ct"
# kms.py and dare agree the other way round too: dare decrypts what it made
x kms decrypt --in "$work/ct2" --context app=x --out "$work/dare.pt" >/dev/null
cmp -s "$work/in" "$work/dare.pt" || die "dare kms decrypt differs from its input"

# ---- SSE-KMS bucket key (KMS.md §4.4) --------------------------------------------------------
x bucket create kms-b1 --kms-key k1 >/dev/null
python3 "$kms" "$store" bucket-key kms-b1 > "$work/bk" 2> "$work/err" || die "bucket-key kms-b1: $(cat "$work/err")"
grep -Eqx '[0-9a-f]{64}' "$work/bk" || die "bucket-key kms-b1: not 32 bytes of hex: $(cat "$work/bk")"
refused "bucket-key of a missing bucket" "bucket nob: 0 rows" "$store" bucket-key nob
x bucket create plainbk >/dev/null      # an ordinary encrypted bucket: no CMK
refused "bucket-key of a non-SSE-KMS bucket" "not an SSE-KMS bucket" "$store" bucket-key plainbk
# The bucket key must be the one dare uses: an object put into kms-b1 opens with it, through
# KEYS.md §3.2 (VBK) and §4.2 (kind-2 envelope) and FORMAT.md, with decrypt.py's code for all
# but the bucket key.
head -c 70000 /dev/urandom > "$work/obj"
x put kms-b1/o "$work/obj" --meta k=v >/dev/null
python3 - "$repo/tools/xcheck" "$store" "$(cat "$work/bk")" > "$work/obj.out" <<'EOF' || die "object in SSE-KMS bucket kms-b1 did not open with kms.py's bucket key"
import sqlite3, struct, sys
sys.path.insert(0, sys.argv[1])
import decrypt, kms
store_dir, bk = sys.argv[2], bytes.fromhex(sys.argv[3])

class SseKmsStore(decrypt.Store):
    def __init__(self, path):  # decrypt.Store's, without its schema version check (v3 adds KMS)
        self.path, self.passphrase_file = path, None
        self.db = sqlite3.connect(f"file:{path}/dare.db?mode=ro", uri=True)
        self.db.row_factory = sqlite3.Row
        self.store = self.one("SELECT * FROM store WHERE id = 1", (), "store row")
        self.store_id = self.store["store_id"]
        self._root = self._rt = self._kek = None
        self._mk, self._vmk = {}, {}

    def data_key_hierarchy(self, env, row_bucket_id):  # KEYS.md §4.2 with BK from KMS.md §4.4
        assert len(env) == 60
        ns_id, bucket_id, r = struct.unpack_from("<QQI", env, 0)
        assert bucket_id == row_bucket_id, "envelope names another bucket"
        b = self.one("SELECT * FROM buckets WHERE id = ?", (bucket_id,), f"bucket {bucket_id}")
        assert b["namespace_id"] == ns_id and b["kms_key_id"] is not None, "envelope context"
        rk_row = self.one("SELECT * FROM rotation_keys WHERE version = ?", (r,), f"rotation key {r}")
        rk = decrypt.unwrap(self.vmk(rk_row["master_version"]), rk_row["wrapped"], f"rotation key {r}")
        vbk = decrypt.vbk_of(rk, ns_id, bucket_id, r, bk)
        return decrypt.unwrap(vbk, env[20:60], "data key"), "sse-kms"

s = SseKmsStore(store_dir)
bucket, row = decrypt.find(s, "kms-b1", "o")
meta, chunks, how = decrypt.open_object(s, bucket, row, None)
assert dict(meta) == {"k": "v"}, meta
sys.stdout.buffer.write(b"".join(chunks))
EOF
cmp -s "$work/obj" "$work/obj.out" || die "object in SSE-KMS bucket kms-b1: plaintext differs"
n=$((n+1))
# the rotation rewrapped kms-b0's key under version 2 (KMS.md §6); the key itself is unchanged
python3 "$kms" "$store" bucket-key kms-b0 > "$work/bk0.after" 2> "$work/err" || die "bucket-key kms-b0 after the rotation: $(cat "$work/err")"
cmp -s "$work/bk0" "$work/bk0.after" || die "kms-b0's bucket key changed with the rotation"
python3 - "$store" <<'EOF' || die "kms-b0's wrapped key is not under version 2 after the rotation"
import sqlite3, struct, sys
db = sqlite3.connect(f"file:{sys.argv[1]}/dare.db?mode=ro", uri=True)
(ct,) = db.execute("SELECT wrapped_key FROM buckets WHERE name = 'kms-b0'").fetchone()
sys.exit(0 if ct[1] == 3 and struct.unpack_from("<I", ct, 18)[0] == 2 else 1)
EOF
# the same ciphertext in another store: its CMK is not there
refused "ciphertext of another store" "not found" "$work/store2" decrypt "$work/ct1" --context app=x --context "z=a=b"

# ---- audit trail (KMS.md §7) -----------------------------------------------------------------
python3 "$kms" "$store" audit-verify > "$work/audit" 2> "$work/err" || die "audit-verify: $(cat "$work/err")"
grep -Eqx 'ok [0-9]+' "$work/audit" || die "audit-verify printed $(cat "$work/audit")"
records=$(cut -d' ' -f2 "$work/audit")
[ "$records" -ge 10 ] || die "audit-verify saw only $records records"
x kms audit verify >/dev/null || die "dare kms audit verify fails on an intact trail"
t=$work/t
fresh() { rm -rf "$t"; cp -a "$store" "$t"; }
# edit STORE PYTHON: run one change on a copy's database (Python's sqlite3, no CLI)
edit() {
  python3 - "$1" "$2" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"{sys.argv[1]}/dare.db")
exec(sys.argv[2])
db.commit(); db.close()
EOF
}
# a copy of the store with another store id (same root key and CMK): the store id is in the
# AAD (KMS.md §4.2), so nothing decrypts, the bucket key included
fresh
edit "$t" 'assert db.execute("UPDATE store SET store_id = randomblob(16) WHERE id = 1").rowcount == 1'
refused "another store id" "decryption failed" "$t" decrypt "$work/ct1" --context app=x --context "z=a=b"
refused "another store id (bucket key)" "decryption failed" "$t" bucket-key kms-b1
# one byte of one record's detail (the middle record with a non-empty detail)
fresh
edit "$t" '
rows = db.execute("SELECT seq, detail FROM kms_audit WHERE length(detail) > 0 ORDER BY seq").fetchall()
seq, d = rows[len(rows) // 2]
b = bytearray(d.encode()); b[0] ^= 1
assert db.execute("UPDATE kms_audit SET detail = ? WHERE seq = ?", (b.decode(), seq)).rowcount == 1'
refused "audit detail edited" "MAC mismatch" "$t" audit-verify
if "$dare" --store "$t" kms audit verify >/dev/null 2>&1; then die "dare kms audit verify accepts an edited detail"; fi
# the last record removed (head left as it was)
fresh
edit "$t" 'assert db.execute("DELETE FROM kms_audit WHERE seq = (SELECT max(seq) FROM kms_audit)").rowcount == 1'
refused "last audit record removed" "last records were removed" "$t" audit-verify
# a record in the middle removed
fresh
edit "$t" 'assert db.execute("DELETE FROM kms_audit WHERE seq = 3").rowcount == 1'
refused "audit record removed" "missing" "$t" audit-verify
# the wrong root key: K_audit differs, nothing verifies
fresh; rm -f "$t/root.key"; head -c 32 /dev/urandom > "$t/root.key"; chmod 600 "$t/root.key"
refused "wrong root key file" "wrong root key file" "$t" audit-verify
refused "wrong root key file (decrypt)" "wrong root key file" "$t" decrypt "$work/ct1" --context app=x --context "z=a=b"
# disabled CMK: KMS.md §2.3, cryptographic operations need it Enabled
x kms disable k1 --force >/dev/null
refused "disabled CMK" "is disabled" "$store" decrypt "$work/ct2" --context app=x
x kms enable k1 >/dev/null
same "re-enabled CMK" "$work/in" "$store" decrypt "$work/ct2" --context app=x
python3 "$kms" "$store" audit-verify > "$work/audit" 2> "$work/err" || die "audit-verify at the end: $(cat "$work/err")"
[ "$(cut -d' ' -f2 "$work/audit")" -gt "$records" ] || die "audit trail did not grow"

echo "xcheck kms: $n plaintexts decrypted independently from docs/KMS.md (data, data keys, versions 1-2," \
  "an SSE-KMS bucket key and its object); $m tamperings refused; audit chain of $(cut -d' ' -f2 "$work/audit") records verified"
