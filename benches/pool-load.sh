#!/usr/bin/env bash
# Load test of a collector pool with wrk, on loopback: the same release binary serving a pool of
# 1 touchpoint and a pool of POOL_SIZE touchpoints (events spread at random over them), runs
# interleaved, server pinned to one core. Prints medians of ROUNDS runs of single-event req/s and
# NDJSON events/s, the POOL_SIZE/1 ratio of each (target ≥ 90 %), and the pool's peak RSS
# (target < 64 MiB). Needs wrk and curl. Tunables: ROUNDS=3 DURATION=10s CONNECTIONS=64
# BATCH_CONNECTIONS=4 EVENTS_PER_BATCH=1000 POOL_SIZE=1000 SERVER_CPUS=0 WRK_CPUS=1.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
BATCH_CONNECTIONS=${BATCH_CONNECTIONS:-4}
EVENTS_PER_BATCH=${EVENTS_PER_BATCH:-1000}
POOL_SIZE=${POOL_SIZE:-1000}
SERVER_CPUS=${SERVER_CPUS:-0}
WRK_CPUS=${WRK_CPUS:-1}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
export EVENTS_PER_BATCH

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 2; }
pin() { local cpus=$1; shift
  if command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi; }

echo "==> building (release)"
cargo build --release --bin cx-conductor
BIN=$TARGET_DIR/release/cx-conductor
WORK=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

pool_config() { # pool_config N FILE: a pool of N touchpoints tp-0 .. tp-(N-1)
  { echo "namespace: bench"; echo "touchpoints:"
    for ((i = 0; i < $1; i++)); do
      echo "- {namespace: bench, touchpoint: tp-$i, channel: web, stage: support, surveys: [{metric: nps}, {metric: csat}], interactions: {outcomes: [completed, abandoned], timings: [wait]}, maxEventBytes: 1024}"
    done; } >"$2"
}

start() { # start N PORT: a pool of N touchpoints on PORT (health on PORT+100); sets PID
  pool_config "$1" "$WORK/pool-$1.yaml"
  pin "$SERVER_CPUS" "$BIN" collector --config "$WORK/pool-$1.yaml" --listen "127.0.0.1:$2" \
    --health-listen "127.0.0.1:$(($2 + 100))" --max-connections 4096 >"$WORK/pool-$1.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$(($2 + 100))/readyz" >/dev/null && return; sleep 0.1; done
  echo "pool of $1 did not start" >&2; cat "$WORK/pool-$1.log" >&2; exit 1
}

median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
rate() { awk '/^Requests\/sec:/ {print $2}'; }

start 1 18180; ONE=$PID
start "$POOL_SIZE" 18190; MANY=$PID
echo "==> $ROUNDS rounds of $DURATION, server on CPU $SERVER_CPUS, wrk on CPU $WRK_CPUS"
for round in $(seq "$ROUNDS"); do
  for size in 1 "$POOL_SIZE"; do
    port=18180; [ "$size" = 1 ] || port=18190
    single=$(TOUCHPOINTS=$size pin "$WRK_CPUS" wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s benches/wrk-pool.lua "http://127.0.0.1:$port" | rate)
    batch=$(TOUCHPOINTS=$size BATCH=1 pin "$WRK_CPUS" wrk -t1 -c"$BATCH_CONNECTIONS" -d"$DURATION" -s benches/wrk-pool.lua "http://127.0.0.1:$port" | rate)
    echo "$single" >>"$WORK/single-$size"
    awk -v r="$batch" -v n="$EVENTS_PER_BATCH" 'BEGIN {printf "%.0f\n", r * n}' >>"$WORK/ndjson-$size"
    echo "  round $round, pool of $size: $single req/s single, $(tail -1 "$WORK/ndjson-$size") NDJSON events/s"
  done
done
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
s1=$(median <"$WORK/single-1"); sn=$(median <"$WORK/single-$POOL_SIZE")
n1=$(median <"$WORK/ndjson-1"); nn=$(median <"$WORK/ndjson-$POOL_SIZE")
echo "==> results: median of $ROUNDS runs"
printf '  single events:  pool of 1: %.0f req/s; pool of %s: %.0f req/s (%.1f %%)\n' "$s1" "$POOL_SIZE" "$sn" "$(awk -v a="$sn" -v b="$s1" 'BEGIN {print 100 * a / b}')"
printf '  NDJSON events:  pool of 1: %.0f events/s; pool of %s: %.0f events/s (%.1f %%)\n' "$n1" "$POOL_SIZE" "$nn" "$(awk -v a="$nn" -v b="$n1" 'BEGIN {print 100 * a / b}')"
printf '  peak RSS (VmHWM): pool of 1: %.1f MiB; pool of %s: %.1f MiB (target < 64 MiB)\n' "$(awk -v k="$(hwm "$ONE")" 'BEGIN {print k / 1024}')" "$POOL_SIZE" "$(awk -v k="$(hwm "$MANY")" 'BEGIN {print k / 1024}')"
