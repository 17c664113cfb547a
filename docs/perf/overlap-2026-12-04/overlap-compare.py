#!/usr/bin/env python3
"""Side-by-side of two `dare bench overhead --json` files (before, after): per size and op,
plaintext and encrypted MB/s, overhead % (median [min–max]), paired +µs/req and that as a %
of the plaintext request time (1e6 / plaintext ops/s median), thread and other-thread CPU."""
import json, sys
def load(p): return json.load(open(p))
def row(s, op):
    o = s['ops'][op]; p, e = o['plain'], o['enc']
    t = 1e6 / p['ops_per_sec']['median']
    us = e['extra_us_per_request_paired_median']
    ov = e['overhead_pct']
    return (p['mb_per_sec']['median'], e['mb_per_sec']['median'], ov['median'], ov['min'], ov['max'],
            us, 100 * us / t, t, e['extra_thread_cpu_us_per_request'], e['extra_other_threads_cpu_us_per_request'])
files = sys.argv[1:]
data = [load(f) for f in files]
print('| size | op | run | plain MB/s | enc MB/s | overhead [min–max] | +µs/req | +µs as % of plain req | plain req µs | +thr CPU µs | +oth CPU µs |')
print('|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|')
for i, s in enumerate(data[0]['sizes']):
    for op in ['put', 'get', 'range_get']:
        for name, d in zip(['before', 'after'], data):
            r = row(d['sizes'][i], op)
            print(f"| {s['size_label']} | {op.replace('_',' ').upper().replace('RANGE GET','range GET')} | {name} | {r[0]:.1f} | {r[1]:.1f} | {r[2]:+.1f}% [{r[3]:+.1f} – {r[4]:+.1f}] | {r[5]:+.1f} | {r[6]:+.1f}% | {r[7]:.0f} | {r[8]:+.1f} | {r[9]:+.1f} |")
