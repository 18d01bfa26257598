#!/usr/bin/env bash
# End-to-end consumer benchmark: smartkafka's group Consumer against
# rust-rdkafka's BaseConsumer, side by side.
#
# Builds the perf tool (benches/perf.rs, consume mode in benches/consume.rs)
# in release, then for every scenario does RUNS runs. Each run starts its own
# broker process (the librdkafka mock cluster by default; BROKER=fake for our
# fake cluster), fills the topic once from another process (rdkafka's
# producer by default, FILL=smartkafka for ours), then reads every record
# back from the beginning with each client in turn (A B, then B A, ...), as a
# group consumer in a process of its own (`perf --both`); only the consuming
# is measured. Both clients read the same batches: a fill per client let the
# batches (and so the broker's work per record) differ between the two.
# Summaries (medians, ranges, ratios) come from benches/summarize.py.
#
#   bash benches/consume.sh                  # 3 alternations, mock cluster
#   RUNS=5 BROKER=fake bash benches/consume.sh
#   SCALE=0.1 bash benches/consume.sh        # a tenth of the records (a quick look)
#   ONLY=zstd bash benches/consume.sh        # only the scenarios whose label has this
#   EXTRA="--auto-commit true" bash benches/consume.sh
#
# Output: $target_dir/consume/results.jsonl (one JSON line per run) and
# $target_dir/consume/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
BROKER=${BROKER:-mock}
FILL=${FILL:-rdkafka}
SCALE=${SCALE:-1}
ONLY=${ONLY:-}
EXTRA=${EXTRA:-}
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
OUT=${OUT:-$target_dir/consume}
mkdir -p "$OUT"
results="$OUT/results.jsonl"
: > "$results"

cargo build --release -p smartkafka-benches --bin perf
bin=$target_dir/release/perf

# Shared settings: 512 partitions on 3 brokers (the librdkafka mock cluster
# keeps at most 5 MiB per partition and drops older batches past that, so a
# topic big enough for runs of several seconds needs many partitions), the
# topic written with the producer benchmark's settings except the keys
# (random keys from a pool of 65,536, which spread the records evenly over
# the partitions; acks=all, idempotence, linger 5 ms, batch 64 KiB), read
# with fetch.max.bytes 50 MiB, max.partition.fetch.bytes 1 MiB,
# fetch.min.bytes 1, fetch.wait.max.ms 500, read_committed, no automatic
# commits.
PARTITIONS=${PARTITIONS:-512}
common=(--mode consume --spawn "$BROKER" --fill-client "$FILL" --brokers 3 --partitions "$PARTITIONS"
        --key-pattern random --batch-size 65536 --linger-ms 5
        --max-fetch-bytes 52428800 --max-partition-bytes 1048576 --json --quiet)

count() { python3 -c "print(max(1000, int($1 * $SCALE)))"; }

# label | records | extra arguments
scenarios=(
    "100B none|$(count 5000000)|--size 100 --compression none"
    "1KiB none|$(count 2000000)|--size 1024 --compression none"
    "1KiB lz4|$(count 2000000)|--size 1024 --compression lz4"
    "1KiB zstd|$(count 2000000)|--size 1024 --compression zstd --level 3"
)

for scenario in "${scenarios[@]}"; do
    IFS='|' read -r label records extra <<<"$scenario"
    [[ -z "$ONLY" || "$label" == *"$ONLY"* ]] || continue
    for run in $(seq 1 "$RUNS"); do
        # One fill per run, read by both clients in turn (each in its own
        # process, against the same broker), so both read the very same
        # batches. Alternate which client reads first, so neither always
        # runs on a machine warmed (or loaded) by the other.
        if (( run % 2 )); then first=smartkafka; else first=rdkafka; fi
        # shellcheck disable=SC2086
        lines=$("$bin" --both --client "$first" --records "$records" --label "$label" \
                "${common[@]}" $extra $EXTRA) || { echo "run failed: $label" >&2; exit 1; }
        while IFS= read -r line; do
            [[ "$line" == "{"* ]] || continue
            echo "$line" >> "$results"
            python3 - "$line" "$run" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"{r['label']:<12} run {sys.argv[2]} {r['client']:<10} {r['records_per_sec']:>12,.0f} rec/s"
      f" {r['mb_per_sec']:8.1f} MB/s {r['cpu_us_per_record']:6.3f} us/rec"
      f"  rss {r['peak_rss_kb'] / 1024:6.1f} MiB  {r['seconds']:5.2f} s"
      f" (first record {r['first_record_seconds']:.2f} s)")
PY
        done <<<"$lines"
    done
done

{
    python3 benches/summarize.py consume-compact "$results"
    echo
    python3 benches/summarize.py consume "$results"
} | tee "$OUT/summary.md"
