#!/usr/bin/env python3
"""Tables from bench/compose/run.sh's results.jsonl: medians over rounds, ratios to the peer
measured in the same run (ffmpeg xstack; the SFU path alone; the SFU without compositions)."""

import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1]) if line.startswith("{")]
by = defaultdict(list)
for r in rows:
    by[r["what"]].append(r)


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


if by["compose"]:
    print("CPU per composed frame, ms (median over rounds)")
    print("| inputs | ours | ffmpeg xstack | ratio |")
    for n in sorted({r["inputs"] for r in by["compose"]}):
        ours = med([r["cpu_ms_per_frame"] for r in by["compose"] if r["inputs"] == n])
        peer = med([r["cpu_ms_per_frame"] for r in by["ffmpeg_xstack"] if r["inputs"] == n])
        print(f"| {n} | {ours:.1f} | {peer:.1f} | {ours / peer:.2f} |")
    for r in by["filter"]:
        print(f"filter {r['filter']} ({r['size']}): {r['cpu_ms_per_frame']:.2f} ms/frame")

if by["composition_latency"]:
    print("\nLatency, publisher frame to decoded frame at a WHEP player, ms (median over rounds)")
    print("| publishers | direct p50 / p95 | composed p50 / p95 | added p50 / p95 |")
    for n in sorted({r["publishers"] for r in by["composition_latency"]}):
        rs = [r for r in by["composition_latency"] if r["publishers"] == n]
        d50, d95 = med([r["direct"]["p50_ms"] for r in rs]), med([r["direct"]["p95_ms"] for r in rs])
        c50, c95 = med([r["composed"]["p50_ms"] for r in rs]), med([r["composed"]["p95_ms"] for r in rs])
        a50, a95 = med([r.get("added_p50_ms") for r in rs]), med([r.get("added_p95_ms") for r in rs])
        print(f"| {n} | {d50:.0f} / {d95:.0f} | {c50:.0f} / {c95:.0f} | {a50:.0f} / {a95:.0f} |")

if by["sfu_latency"]:
    print("\nSFU forwarding latency in another room (bench/sfu load generator), ms (median over rounds)")
    print("| compositions running | p50 | p99 | p99 / without | loss | server CPU s |")
    rs = by["sfu_latency"]
    base = med([r["latency_ms"]["p99"] for r in rs if r["compositions"] == 0])
    for k in sorted({r["compositions"] for r in rs}):
        ks = [r for r in rs if r["compositions"] == k]
        p50, p99 = med([r["latency_ms"]["p50"] for r in ks]), med([r["latency_ms"]["p99"] for r in ks])
        loss, cpu = med([r["loss"] for r in ks]), med([r["server_cpu_s"] for r in ks])
        print(f"| {k} | {p50:.1f} | {p99:.1f} | {p99 / base:.2f} | {loss:.4f} | {cpu:.1f} |")
