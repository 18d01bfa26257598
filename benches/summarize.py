#!/usr/bin/env python3
"""Summarizes alternated benchmark runs as Markdown tables.

Three inputs:

- the end-to-end producer benchmark (`benches/e2e.sh`), from the JSON lines
  that `perf --json` (benches/perf.rs) prints:

      python3 benches/summarize.py e2e target/e2e/results.jsonl
      python3 benches/summarize.py e2e-compact target/e2e/results.jsonl


  For every scenario (the `label` of the runs) it prints, per client, the
  median over the runs with the range (min-max) of records/s, MB/s, client CPU
  us/record, peak RSS, and p50/p99 delivery latency, and the ratio
  smartkafka/rdkafka of each, computed from the run pairs (run i of one
  client against run i of the other, measured side by side) and then
  summarized the same way.

- the end-to-end consumer benchmark (`benches/consume.sh`), from the JSON
  lines of `perf --mode consume --json`:

      python3 benches/summarize.py consume target/consume/results.jsonl
      python3 benches/summarize.py consume-compact target/consume/results.jsonl

  The same per-scenario medians, ranges and pairwise ratios, for records/s,
  MB/s, client CPU us/record, peak RSS and the time to the first record.

- the `record_batch` encode benchmark:

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


E2E_METRICS = [
    # key, header, format, higher is better
    ("records_per_sec", "records/s", "{:,.0f}", True),
    ("mb_per_sec", "MB/s", "{:.1f}", True),
    ("cpu_us_per_record", "CPU us/record", "{:.2f}", False),
    ("peak_rss_kb", "peak RSS MiB", "{:.0f}", False),
    ("p50_ms", "p50 ms", "{:.2f}", False),
    ("p99_ms", "p99 ms", "{:.2f}", False),
]


CONSUME_METRICS = [
    ("records_per_sec", "records/s", "{:,.0f}", True),
    ("mb_per_sec", "MB/s", "{:.1f}", True),
    ("cpu_us_per_record", "CPU us/record", "{:.3f}", False),
    ("peak_rss_kb", "peak RSS MiB", "{:.0f}", False),
    ("first_record_seconds", "s to first record", "{:.2f}", False),
]


def e2e_runs(path):
    runs = {}
    order = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if r["label"] not in runs:
            order.append(r["label"])
            runs[r["label"]] = {"smartkafka": [], "rdkafka": []}
        runs[r["label"]][r["client"]].append(r)
    return runs, order


def e2e_value(r, key):
    return r[key] / 1024 if key == "peak_rss_kb" else r[key]


def e2e_cell(ours, peer, key, fmt):
    """(ours, peer, ratio) as median (range) strings."""
    a = [e2e_value(r, key) for r in ours]
    b = [e2e_value(r, key) for r in peer]
    ratios = [x / y for x, y in zip(a, b) if y]
    return (
        spread(a, fmt) if a else "-",
        spread(b, fmt) if b else "-",
        spread(ratios, "{:.2f}") + "x" if ratios else "-",
    )


def e2e_compact(path):
    """One line per scenario: records/s, CPU us/record, p99 and ratios."""
    runs, order = e2e_runs(path)
    print(
        "| scenario | records/s smartkafka | records/s rdkafka | ratio "
        "| CPU us/rec smartkafka | CPU us/rec rdkafka | ratio "
        "| p99 ms smartkafka | p99 ms rdkafka | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label in order:
        ours, peer = runs[label]["smartkafka"], runs[label]["rdkafka"]
        n = min(len(ours), len(peer))
        ours, peer = ours[:n], peer[:n]
        cells = []
        for key, fmt in (("records_per_sec", "{:,.0f}"), ("cpu_us_per_record", "{:.2f}"), ("p99_ms", "{:.2f}")):
            cells.extend(e2e_cell(ours, peer, key, fmt))
        print(f"| {label} | " + " | ".join(cells) + " |")


def consume_compact(path):
    """One line per scenario: records/s, MB/s, CPU us/record, peak RSS and ratios."""
    runs, order = e2e_runs(path)
    print(
        "| scenario | records/s smartkafka | records/s rdkafka | ratio "
        "| MB/s smartkafka | MB/s rdkafka "
        "| CPU us/rec smartkafka | CPU us/rec rdkafka | ratio "
        "| peak RSS MiB smartkafka | peak RSS MiB rdkafka | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label in order:
        ours, peer = runs[label]["smartkafka"], runs[label]["rdkafka"]
        n = min(len(ours), len(peer))
        ours, peer = ours[:n], peer[:n]
        cells = []
        for key, fmt in (
            ("records_per_sec", "{:,.0f}"),
            ("mb_per_sec", "{:.1f}"),
            ("cpu_us_per_record", "{:.3f}"),
            ("peak_rss_kb", "{:.0f}"),
        ):
            a, b, ratio = e2e_cell(ours, peer, key, fmt)
            cells.extend((a, b) if key == "mb_per_sec" else (a, b, ratio))
        print(f"| {label} | " + " | ".join(cells) + " |")


def e2e(path, metrics=None):
    metrics = metrics or E2E_METRICS
    runs, order = e2e_runs(path)
    value = e2e_value
    print("| scenario | metric | smartkafka | rdkafka | ratio smartkafka/rdkafka |")
    print("|---|---|---|---|---|")
    for label in order:
        ours, peer = runs[label]["smartkafka"], runs[label]["rdkafka"]
        n = min(len(ours), len(peer))
        errors = sum(r["errors"] for r in ours + peer)
        for key, header, fmt, _ in metrics:
            a = [value(r, key) for r in ours]
            b = [value(r, key) for r in peer]
            ratios = [x / y for x, y in zip(a[:n], b[:n]) if y]
            ratio = spread(ratios, "{:.2f}") + "x" if ratios else "-"
            name = f"{label} ({n} runs{', ERRORS %d' % errors if errors else ''})"
            print(
                f"| {name} | {header} | {spread(a, fmt) if a else '-'} "
                f"| {spread(b, fmt) if b else '-'} | {ratio} |"
            )


def main(argv):
    if len(argv) >= 3 and argv[1] == "e2e":
        e2e(argv[2])
        return
    if len(argv) >= 3 and argv[1] == "e2e-compact":
        e2e_compact(argv[2])
        return
    if len(argv) >= 3 and argv[1] == "consume":
        e2e(argv[2], CONSUME_METRICS)
        return
    if len(argv) >= 3 and argv[1] == "consume-compact":
        consume_compact(argv[2])
        return
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
