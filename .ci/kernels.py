#!/usr/bin/env python3
"""Which AEAD kernels the test run exercised on this machine, and which it skipped.

Usage: kernels.py CPU_JSON TEST_LOG

CPU_JSON is the output of `dare cpu --json` (the features and the backends this CPU
supports, from the same detector the engine dispatches with). TEST_LOG is the output of
`cargo test`. Every per-backend test writes one uncaptured line to stderr
(dare_engine::raw::kernel_under_test):

    KERNEL: <backend> exercised (<test>)
    SKIPPED: <backend> not supported by this CPU (<test>)

The script prints, per backend, whether this CPU supports it and how many tests exercised
or skipped it, then the two lists. It fails when the log and the CPU disagree (a supported
backend skipped, an unsupported one exercised), when a backend has no per-backend test in
the log at all, or when a backend named in DARE_CI_REQUIRE_KERNELS (space-separated) was
not exercised.
"""

import json
import os
import re
import sys
from collections import defaultdict

LINE = re.compile(
    r"(KERNEL): (\S+) exercised \((.*)\)|(SKIPPED): (\S+) not supported by this CPU \((.*)\)"
)


def main(cpu_json: str, test_log: str) -> int:
    with open(cpu_json, encoding="utf-8") as f:
        cpu = json.load(f)
    supported = {b["name"]: bool(b["supported"]) for b in cpu["backends"]}
    ran = defaultdict(list)
    skipped = defaultdict(list)
    with open(test_log, encoding="utf-8", errors="replace") as f:
        for line in f:
            for m in LINE.finditer(line):
                if m.group(1):
                    ran[m.group(2)].append(m.group(3))
                else:
                    skipped[m.group(5)].append(m.group(6))

    features = [n for n, v in cpu["features"].items() if v]
    print(f"cpu: {cpu['cpu']}; features present: {' '.join(features) or 'none'}")
    print(f"{'backend':<10} {'this CPU':<14} {'tests exercised':>15} {'tests skipped':>14}")
    problems = []
    names = list(supported) + sorted((set(ran) | set(skipped)) - set(supported))
    for name in names:
        sup = supported.get(name)
        state = "supported" if sup else ("not supported" if sup is not None else "unknown")
        print(f"{name:<10} {state:<14} {len(ran[name]):>15} {len(skipped[name]):>14}")
        if sup is None:
            problems.append(f"{name}: named by the tests but not by `dare cpu`")
        elif sup and skipped[name]:
            problems.append(f"{name}: this CPU supports it, yet skipped by {skipped[name]}")
        elif not sup and ran[name]:
            problems.append(f"{name}: this CPU lacks it, yet reported exercised by {ran[name]}")
        if not ran[name] and not skipped[name]:
            problems.append(f"{name}: no per-backend test reported on it (suite missing?)")
    exercised = [n for n in names if ran[n]]
    missing = [n for n in names if skipped[n] and not ran[n]]
    print(f"kernels exercised on this machine: {', '.join(exercised) or 'none'}")
    if missing:
        print(f"kernels SKIPPED on this machine (this CPU lacks them; their code was not "
              f"tested here): {', '.join(missing)}")
    else:
        print("kernels skipped on this machine: none")
    for name in os.environ.get("DARE_CI_REQUIRE_KERNELS", "").split():
        if not ran.get(name):
            problems.append(f"{name}: required by DARE_CI_REQUIRE_KERNELS but not exercised")
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
