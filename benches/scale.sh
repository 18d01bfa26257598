#!/usr/bin/env bash
# Cost growth: how records/s, CPU per record and memory change as a producer
# spreads keyed records over more partitions and topics, smartkafka against
# rust-rdkafka side by side.
#
# Same method as benches/e2e.sh: the perf tool in release, the two clients
# alternated (A B A B ...) against a broker in a separate process (the
# librdkafka mock cluster by default; BROKER=fake for our fake cluster), each
# run time-bound, and benches/summarize.py for medians, ranges and ratios.
#
#   bash benches/scale.sh                 # 3 alternations of 10 s runs
#   RUNS=5 SECONDS_PER_RUN=20 bash benches/scale.sh
#   ONLY="10,000" bash benches/scale.sh   # only the scenarios whose label has this
#   ONLY=linger bash benches/scale.sh     # only the paced rows
#
# Three kinds of scenario: flat out for SECONDS_PER_RUN (records/s and CPU per
# record as the spread grows), paced at 20,000 records/s with linger 0
# (100,000 records each; p99 delivery latency as the spread grows, where the
# buffer never fills), and paced with linger 5 ms at 150,000 records/s
# (600,000 records each; CPU per record at a rate both clients keep up with,
# where over 10,000 partitions a batch holds a record or two) and at 20,000
# records/s over 6 partitions (records sent 0.8 ms apart in bursts of 16:
# where the wake-ups of the producer's task, not the records, set the cost).
#
# Output: $target_dir/scale/results.jsonl and $target_dir/scale/summary.md.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
BROKER=${BROKER:-mock}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ONLY=${ONLY:-}
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
OUT=${OUT:-$target_dir/scale}
mkdir -p "$OUT"
results="$OUT/results.jsonl"
: > "$results"

cargo build --release -p smartkafka-benches --bin perf
bin=$target_dir/release/perf

# Shared settings: 100-byte values with random keys (every partition in
# use), acks=all, idempotence on, batch 64 KiB, 64 MiB buffer, 3 brokers.
common=(--spawn "$BROKER" --brokers 3 --key-pattern random --size 100 --compression none
        --acks all --idempotence true --batch-size 65536 --buffer-mb 64 --json --quiet)
flat_out="--linger-ms 5 --duration $SECONDS_PER_RUN"
paced="--linger-ms 0 --rate 20000 --records 100000"
paced_linger="--linger-ms 5 --rate 150000 --records 600000"

# label | extra arguments
scenarios=(
    "6 partitions|--partitions 6 $flat_out"
    "100 partitions|--partitions 100 $flat_out"
    "1,000 partitions|--partitions 1000 $flat_out"
    "10,000 partitions|--partitions 10000 $flat_out"
    "100 topics x 10 partitions|--topics 100 --partitions 10 $flat_out"
    "linger 0 20k/s, 6 partitions|--partitions 6 $paced"
    "linger 0 20k/s, 100 partitions|--partitions 100 $paced"
    "linger 0 20k/s, 1,000 partitions|--partitions 1000 $paced"
    "linger 0 20k/s, 10,000 partitions|--partitions 10000 $paced"
    "linger 5 20k/s, 6 partitions|--partitions 6 --linger-ms 5 --rate 20000 --records 120000"
    "linger 5 150k/s, 6 partitions|--partitions 6 $paced_linger"
    "linger 5 150k/s, 10,000 partitions|--partitions 10000 $paced_linger"
)

for scenario in "${scenarios[@]}"; do
    IFS='|' read -r label extra <<<"$scenario"
    [[ -z "$ONLY" || "$label" == *"$ONLY"* ]] || continue
    for run in $(seq 1 "$RUNS"); do
        if (( run % 2 )); then order=(smartkafka rdkafka); else order=(rdkafka smartkafka); fi
        for client in "${order[@]}"; do
            # shellcheck disable=SC2086
            line=$("$bin" --client "$client" --label "$label" "${common[@]}" $extra) ||
                { echo "run failed: $client $label" >&2; exit 1; }
            echo "$line" >> "$results"
            python3 - "$line" "$run" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"{r['label']:<28} run {sys.argv[2]} {r['client']:<10} {r['records_per_sec']:>12,.0f} rec/s"
      f" {r['cpu_us_per_record']:6.2f} us/rec  p99 {r['p99_ms']:8.2f} ms  rss {r['peak_rss_kb'] / 1024:6.1f} MiB")
PY
        done
    done
done

{
    python3 benches/summarize.py e2e-compact "$results"
    echo
    python3 benches/summarize.py e2e "$results"
} | tee "$OUT/summary.md"
