#!/usr/bin/env bash
# CI smoke fuzzing: every target for FUZZ_SMOKE_SECONDS (default 20) from the seed corpora.
# Fails on any crash, property violation, timeout or OOM. Called from .ci/run.
set -euo pipefail
exec "$(dirname "$0")/campaign.sh" all "${FUZZ_SMOKE_SECONDS:-20}"
