#!/usr/bin/env bash
# Fuzzing campaign: fuzz/campaign.sh [TARGET|all] [SECONDS]   (docs/FUZZING.md)
#
# Installs cargo-fuzz if missing, builds every target (optimized, no sanitizer: stable Rust with
# RUSTC_BOOTSTRAP=1), regenerates the seed corpora, then runs the targets one after the other,
# each for SECONDS (default 600) as a single niced libFuzzer process. Prints per target the
# executions, coverage (cov/ft from libFuzzer's last status line), corpus size and new corpus
# entries; keeps crashing inputs in fuzz/artifacts/<target>/ and logs in fuzz/logs/. Exits
# non-zero if any target crashed, timed out or ran out of memory.
#
# Environment: FUZZ_NICE (default 10), FUZZ_TIMEOUT (seconds per input, default 20),
# FUZZ_RSS_MB (default 2048), FUZZ_SANITIZER (default none; `address` needs a nightly-like
# compiler, which RUSTC_BOOTSTRAP=1 provides), FUZZ_ARGS (extra libFuzzer flags),
# RAYON_NUM_THREADS (default 1, so one fuzzer uses about one core).
set -euo pipefail

cd "$(dirname "$0")"
TARGET=${1:-all}
SECS=${2:-600}
NICE=${FUZZ_NICE:-10}
SANITIZER=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-1}

ALL_TARGETS=(header open_object open_range roundtrip open_v1 unwrap_key keystore_load aead_differential kms_ciphertext kmip_ttlv)
if [[ $TARGET == all ]]; then
    TARGETS=("${ALL_TARGETS[@]}")
elif [[ " ${ALL_TARGETS[*]} " == *" $TARGET "* ]]; then
    TARGETS=("$TARGET")
else
    echo "campaign.sh: unknown target '$TARGET' (known: all ${ALL_TARGETS[*]})" >&2
    exit 2
fi
if ! [[ $SECS =~ ^[0-9]+$ ]] || ((SECS == 0)); then
    echo "campaign.sh: SECONDS must be a positive integer, got '$SECS'" >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "== building fuzz targets (sanitizer: $SANITIZER)"
nice -n "$NICE" cargo fuzz build -O --sanitizer "$SANITIZER"
BIN_DIR=${CARGO_TARGET_DIR:-target}/$(rustc -vV | sed -n 's/^host: //p')/release

echo "== generating seed corpora"
nice -n "$NICE" cargo run --quiet --example gen_corpus -- corpus

mkdir -p logs
failed=()
summary=()
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(find "corpus/$t" -type f | wc -l)
    dict=()
    [[ -f dict/$t.dict ]] && dict=("-dict=dict/$t.dict")
    echo "== $t: ${SECS}s, corpus $before entries"
    rc=0
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    nice -n "$NICE" "$BIN_DIR/$t" "corpus/$t" "${dict[@]}" \
        -max_total_time="$SECS" -timeout="${FUZZ_TIMEOUT:-20}" -rss_limit_mb="${FUZZ_RSS_MB:-2048}" \
        -print_final_stats=1 -artifact_prefix="artifacts/$t/" ${FUZZ_ARGS:-} \
        >"logs/$t.log" 2>&1 || rc=$?
    after=$(find "corpus/$t" -type f | wc -l)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "logs/$t.log" | tail -1)
    last=$(grep -E '^#[0-9]+.*cov: ' "logs/$t.log" | tail -1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    status=ok
    if ((rc != 0)); then
        status="CRASH (exit $rc)"
        failed+=("$t")
        echo "-- $t failed; end of logs/$t.log:"
        tail -n 40 "logs/$t.log"
        grep -E 'Test unit written to' "logs/$t.log" || true
    fi
    line=$(printf '%-18s %-16s execs=%-10s exec/s=%-7s cov=%-6s ft=%-6s corpus=%-5s new=%s' \
        "$t" "$status" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$after" "$((after - before))")
    echo "$line"
    summary+=("$line")
done

echo "== summary ($(date -u +%Y-%m-%dT%H:%MZ), ${SECS}s per target)"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/, logs in fuzz/logs/)" >&2
    exit 1
fi
