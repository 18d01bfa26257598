#!/usr/bin/env python3
"""Summarizes alternated runs of the `record_batch` benchmark as a Markdown table.

Usage (from the repository root):

    for i in 1 2 3 4 5; do
        cargo bench --bench record_batch -- --save-baseline run$i | tee target/record_batch-run$i.log
    done
    python3 benches/summarize.py target/record_batch-run1.log run1 run2 run3 run4 run5

For every scenario (value size, codec) and implementation it reads criterion's
median estimate of each named baseline, turns it into ns/record and GB/s
(key + value bytes), and prints the median over the runs with the range
(min-max). Ratios are computed per run, from measurements taken side by side,
then summarized the same way. Allocations per record come from the log of one
run (they are deterministic).
"""

import json
import re
import statistics
import sys
from pathlib import Path

CRITERION = Path("target/criterion")
SIZES = ["100B", "1KiB"]
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
IMPLS = ["smartkafka", "kafka-protocol", "raw-codec"]


def estimate(size, codec, impl, baseline):
    """(ns per batch, records per batch, bytes per batch) or None."""
    group = CRITERION / f"encode_{size}_{codec}" / impl
    if not group.is_dir():
        return None
    (records_dir,) = [d for d in group.iterdir() if d.is_dir() and d.name.isdigit()]
    base = records_dir / baseline
    est = json.loads((base / "estimates.json").read_text())
    bench = json.loads((base / "benchmark.json").read_text())
    ns = est["median"]["point_estimate"]
    return ns, int(records_dir.name), bench["throughput"]["Bytes"]


def spread(values, fmt):
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def allocations(log):
    """{(size, codec): (ours append, ours append+seal, kafka-protocol)}."""
    out = {}
    pattern = re.compile(
        r"allocations/record\s+(\S+)\s+(\S+): smartkafka append ([\d.]+), "
        r"append\+seal ([\d.]+); kafka-protocol ([\d.]+)"
    )
    for line in Path(log).read_text().splitlines():
        m = pattern.search(line)
        if m:
            out[(m[1], m[2])] = (m[3], m[4], m[5])
    return out


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    allocs = allocations(argv[1])
    baselines = argv[2:]
    print(
        "| scenario | smartkafka ns/record | smartkafka GB/s | kafka-protocol ns/record "
        "| speed-up vs kafka-protocol | raw codec GB/s | smartkafka time / raw codec time "
        "| allocations/record: append, append+seal (kafka-protocol) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for size in SIZES:
        for codec in CODECS:
            runs = {impl: [] for impl in IMPLS}
            for b in baselines:
                for impl in IMPLS:
                    e = estimate(size, codec, impl, b)
                    if e is not None:
                        runs[impl].append(e)
            ours, peer, raw = runs["smartkafka"], runs["kafka-protocol"], runs["raw-codec"]
            if not ours:
                continue
            ns_rec = [ns / n for ns, n, _ in ours]
            gbps = [bytes_ / ns for ns, _, bytes_ in ours]
            peer_ns = [ns / n for ns, n, _ in peer]
            speedup = [p[0] / o[0] for o, p in zip(ours, peer)]
            if raw:
                raw_gbps = spread([bytes_ / ns for ns, _, bytes_ in raw], "{:.3f}")
                vs_raw = spread([o[0] / r[0] for o, r in zip(ours, raw)], "{:.2f}")
            else:
                raw_gbps = vs_raw = "-"
            a = allocs.get((size, codec), ("?", "?", "?"))
            print(
                f"| {size} {codec} | {spread(ns_rec, '{:.1f}')} | {spread(gbps, '{:.3f}')} "
                f"| {spread(peer_ns, '{:.1f}')} | {spread(speedup, '{:.2f}')}x "
                f"| {raw_gbps} | {vs_raw} | {a[0]}, {a[1]} ({a[2]}) |"
            )


if __name__ == "__main__":
    main(sys.argv)
