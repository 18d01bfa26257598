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
#   ONLY=10000 bash benches/scale.sh      # only the scenarios whose label has this
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
# use), acks=all, idempotence on, linger 5 ms, batch 64 KiB, 64 MiB buffer,
# 3 brokers; flat out.
common=(--spawn "$BROKER" --brokers 3 --key-pattern random --size 100 --compression none
        --acks all --idempotence true --linger-ms 5 --batch-size 65536 --buffer-mb 64
        --duration "$SECONDS_PER_RUN" --json --quiet)

# label | extra arguments
scenarios=(
    "6 partitions|--partitions 6"
    "100 partitions|--partitions 100"
    "1,000 partitions|--partitions 1000"
    "10,000 partitions|--partitions 10000"
    "100 topics x 10 partitions|--topics 100 --partitions 10"
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
