#!/usr/bin/env bash
# End-to-end producer benchmark: smartkafka against rust-rdkafka, side by side.
#
# Builds the perf tool (benches/perf.rs) in release, then for every scenario runs the two
# clients alternately (A B A B ...) against a broker in a separate process
# (the librdkafka mock cluster by default; BROKER=fake for our fake cluster),
# and summarises medians, ranges and ratios with benches/summarize.py.
#
#   bash benches/e2e.sh                  # 5 alternations, mock cluster
#   RUNS=7 BROKER=fake bash benches/e2e.sh
#   SCALE=0.1 bash benches/e2e.sh        # a tenth of the records (a quick look)
#   ONLY=linger0 bash benches/e2e.sh     # only the scenarios whose label has this
#   TLS=1 BROKER=fake bash benches/e2e.sh  # both clients over TLS (the fake's TLS listener)
#   DELIVERY=count bash benches/e2e.sh   # both clients with their cheapest delivery report
#                                        # (a callback that only counts; rdkafka: BaseProducer
#                                        # and one poll thread); no latency, so the paced
#                                        # scenario is skipped
#   SEND=wait bash benches/e2e.sh        # smartkafka's tagged records through send_tagged, which
#                                        # waits while its task is behind, not try_send_tagged
#
# Output: $target_dir/e2e/results.jsonl (one JSON line per run) and
# $target_dir/e2e/summary.md (a one-line-per-scenario table, then every metric).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-5}
BROKER=${BROKER:-mock}
SCALE=${SCALE:-1}
ONLY=${ONLY:-}
TLS=${TLS:-0}
DELIVERY=${DELIVERY:-}
SEND=${SEND:-}
# Where cargo puts its output (honours CARGO_TARGET_DIR and .cargo/config).
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
OUT=${OUT:-$target_dir/e2e}
mkdir -p "$OUT"
results="$OUT/results.jsonl"
: > "$results"

cargo build --release -p smartkafka-benches --bin perf
bin=$target_dir/release/perf

# Shared settings: keyed (10,000 keys) over 6 partitions on 3 brokers,
# acks=all, idempotence on, linger 5 ms, batch 64 KiB, 64 MiB buffer.
common=(--spawn "$BROKER" --brokers 3 --partitions 6 --key-pattern sequential-mod:10000
        --acks all --idempotence true --batch-size 65536 --buffer-mb 64 --json --quiet)
prefix=""
if [[ "$TLS" == 1 ]]; then
    common+=(--tls)
    prefix="TLS "
fi
if [[ -n "$DELIVERY" ]]; then
    common+=(--delivery "$DELIVERY")
    prefix="$prefix$DELIVERY "
fi
if [[ -n "$SEND" ]]; then
    common+=(--send "$SEND")
    prefix="${prefix}send-$SEND "
fi

count() { python3 -c "print(max(1000, int($1 * $SCALE)))"; }

# label | records | extra arguments
scenarios=(
    "100B none|$(count 1000000)|--size 100 --compression none --linger-ms 5"
    "1KiB none|$(count 1000000)|--size 1024 --compression none --linger-ms 5"
    "1KiB lz4|$(count 500000)|--size 1024 --compression lz4 --linger-ms 5"
    "1KiB zstd|$(count 300000)|--size 1024 --compression zstd --level 3 --linger-ms 5"
    "100B linger0 20k/s|$(count 100000)|--size 100 --compression none --linger-ms 0 --rate 20000"
)

for scenario in "${scenarios[@]}"; do
    IFS='|' read -r label records extra <<<"$scenario"
    [[ -z "$ONLY" || "$label" == *"$ONLY"* ]] || continue
    # Counting reports measures no latency, which is all the paced run is for.
    [[ "$DELIVERY" == count && "$label" == *"/s"* ]] && continue
    for run in $(seq 1 "$RUNS"); do
        # Alternate which client goes first, so neither always runs on a
        # machine warmed (or loaded) by the other.
        if (( run % 2 )); then order=(smartkafka rdkafka); else order=(rdkafka smartkafka); fi
        for client in "${order[@]}"; do
            # shellcheck disable=SC2086
            line=$("$bin" --client "$client" --records "$records" --label "$prefix$label" \
                   "${common[@]}" $extra) || { echo "run failed: $client $label" >&2; exit 1; }
            echo "$line" >> "$results"
            python3 - "$line" "$run" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"{r['label']:<20} run {sys.argv[2]} {r['client']:<10} {r['records_per_sec']:>12,.0f} rec/s"
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
