#!/usr/bin/env bash
# Load test of the collector with wrk, on loopback only:
#   1. single-event POST /v1/events requests/s, collector vs a bare hyper server answering 204
#      (benches/baseline_http.rs), same wrk settings, runs interleaved;
#   2. NDJSON batch events/s (POST /v1/events:batch, EVENTS_PER_BATCH events per request),
#      cross-checked against cx_events_received_total;
#   3. the collector's resident memory under that load (VmRSS peak sampled from /proc, and VmHWM).
# Prints the median of ROUNDS runs of each and the collector/baseline ratio.
#
# Needs wrk (apt-get install -y wrk) and curl. Tunables (environment): ROUNDS=5 DURATION=10s
# CONNECTIONS=64 THREADS=1 EVENTS_PER_BATCH=1000 BATCH_CONNECTIONS=4 SERVER_CPUS=0 WRK_CPUS=1.
# The servers are pinned to SERVER_CPUS and wrk to WRK_CPUS (taskset) so "per core" means one core.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-1}
EVENTS_PER_BATCH=${EVENTS_PER_BATCH:-1000}
BATCH_CONNECTIONS=${BATCH_CONNECTIONS:-4}
SERVER_CPUS=${SERVER_CPUS:-0}
WRK_CPUS=${WRK_CPUS:-1}
COLLECTOR_ADDR=127.0.0.1:18080
BASELINE_ADDR=127.0.0.1:18081
HEALTH_ADDR=127.0.0.1:18082
TARGET_DIR=${CARGO_TARGET_DIR:-target}
export EVENTS_PER_BATCH

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 2; }

pin() { # pin CPUS COMMAND...: exec pinned when taskset and enough CPUs exist (so that `pin ... &`
  # leaves $! as the server's own PID, whose /proc status is read for RSS)
  local cpus=$1; shift
  if command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}

echo "==> building (release)"
cargo build --release --bin cx-conductor
BASELINE_BIN=$(cargo bench --no-run --bench baseline_http --message-format=json 2>/dev/null |
  grep '"executable":"[^"]' | grep baseline_http | sed 's/.*"executable":"\([^"]*\)".*/\1/' | tail -1)
COLLECTOR_BIN=$TARGET_DIR/release/cx-conductor
[ -x "$BASELINE_BIN" ] || { echo "baseline binary not found" >&2; exit 2; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/collector.yaml" <<'YAML'
namespace: bench
touchpoint: load-test
channel: web
stage: support
surveys: [{ metric: nps }, { metric: csat, scale: 5 }]
interactions: { outcomes: [completed, abandoned, error], timings: [wait, handle] }
maxEventBytes: 65536
firstResponseSeconds: 60
YAML

for addr in "$COLLECTOR_ADDR" "$BASELINE_ADDR" "$HEALTH_ADDR"; do
  if curl -s -o /dev/null "http://$addr/" 2>/dev/null; then
    echo "something already listens on $addr: stop it first" >&2; exit 2
  fi
done

echo "==> starting servers (pinned to CPU $SERVER_CPUS; wrk on CPU $WRK_CPUS)"
RUST_LOG=warn pin "$SERVER_CPUS" "$COLLECTOR_BIN" collector --config "$WORK/collector.yaml" \
  --listen "$COLLECTOR_ADDR" --health-listen "$HEALTH_ADDR" --log-json >"$WORK/collector.log" 2>&1 &
COLLECTOR_PID=$!
PIDS+=("$COLLECTOR_PID")
pin "$SERVER_CPUS" "$BASELINE_BIN" --listen "$BASELINE_ADDR" >"$WORK/baseline.log" 2>&1 &
PIDS+=("$!")
for _ in $(seq 100); do
  curl -sf "http://$HEALTH_ADDR/readyz" >/dev/null 2>&1 &&
    curl -s -o /dev/null "http://$BASELINE_ADDR/" 2>/dev/null && break
  sleep 0.1
done
curl -sf "http://$HEALTH_ADDR/readyz" >/dev/null && kill -0 "$COLLECTOR_PID" ||
  { echo "the collector did not start:" >&2; cat "$WORK/collector.log" >&2; exit 1; }

# Peak VmRSS of the collector while a command runs (sampled every 100 ms), in KiB.
RSS_PEAK_KIB=0
sample_rss() {
  local peak=0 rss
  while kill -0 "$COLLECTOR_PID" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$COLLECTOR_PID/status" 2>/dev/null || echo 0)
    [ "${rss:-0}" -gt "$peak" ] && peak=$rss && echo "$peak" >"$WORK/rss_peak"
    sleep 0.1
  done
}
sample_rss &
SAMPLER_PID=$!
PIDS+=("$SAMPLER_PID")

requests_per_second() { awk '/^Requests\/sec:/ {print $2}'; }
received_total() {
  curl -sf "http://$COLLECTOR_ADDR/metrics" | awk '/^cx_events_received_total/ {print $2}'
}
median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
run_wrk() { # run_wrk CONNECTIONS SCRIPT URL -> wrk output (called in $(...), a subshell)
  pin "$WRK_CPUS" wrk -t"$THREADS" -c"$1" -d"$DURATION" -s "$2" "$3"
}

: >"$WORK/single_collector"; : >"$WORK/single_baseline"; : >"$WORK/ndjson"; : >"$WORK/ndjson_metrics"
for round in $(seq "$ROUNDS"); do
  echo "==> round $round/$ROUNDS"
  out=$(run_wrk "$CONNECTIONS" benches/wrk-single-event.lua "http://$BASELINE_ADDR")
  echo "$out" | requests_per_second | tee -a "$WORK/single_baseline" | sed 's/^/  baseline single req\/s: /'
  out=$(run_wrk "$CONNECTIONS" benches/wrk-single-event.lua "http://$COLLECTOR_ADDR")
  echo "$out" | grep -q "Non-2xx" && { echo "collector answered non-2xx:"; echo "$out"; exit 1; }
  echo "$out" | requests_per_second | tee -a "$WORK/single_collector" | sed 's/^/  collector single req\/s: /'
  before=$(received_total); start=$(date +%s.%N)
  out=$(run_wrk "$BATCH_CONNECTIONS" benches/wrk-ndjson-batch.lua "http://$COLLECTOR_ADDR")
  end=$(date +%s.%N); after=$(received_total)
  echo "$out" | grep -q "Non-2xx" && { echo "collector answered non-2xx to batches:"; echo "$out"; exit 1; }
  rps=$(echo "$out" | requests_per_second)
  echo "$rps $EVENTS_PER_BATCH" | awk '{printf "%.0f\n", $1 * $2}' | tee -a "$WORK/ndjson" |
    sed 's/^/  collector NDJSON events\/s (wrk): /'
  echo "$before $after $start $end" | awk '{printf "%.0f\n", ($2 - $1) / ($4 - $3)}' |
    tee -a "$WORK/ndjson_metrics" | sed 's/^/  collector NDJSON events\/s (cx_events_received_total, incl. wrk start-up): /'
done

kill "$SAMPLER_PID" 2>/dev/null || true
RSS_PEAK_KIB=$(cat "$WORK/rss_peak" 2>/dev/null || echo 0)
HWM_KIB=$(awk '/^VmHWM:/ {print $2}' "/proc/$COLLECTOR_PID/status" 2>/dev/null || echo 0)

single_collector=$(median <"$WORK/single_collector")
single_baseline=$(median <"$WORK/single_baseline")
ndjson=$(median <"$WORK/ndjson")
ndjson_metrics=$(median <"$WORK/ndjson_metrics")
ratio=$(echo "$single_collector $single_baseline" | awk '{printf "%.1f", 100 * $1 / $2}')

echo
echo "==> results: median of $ROUNDS runs, wrk -t$THREADS -d$DURATION, server on 1 core (CPU $SERVER_CPUS)"
printf '  single event, baseline (204, body unread) : %12.0f req/s (-c%s)\n' "$single_baseline" "$CONNECTIONS"
printf '  single event, collector (202, counted)    : %12.0f req/s (-c%s)\n' "$single_collector" "$CONNECTIONS"
printf '  collector / baseline                       : %11s %%   (target >= 60 %%)\n' "$ratio"
printf '  NDJSON batches of %s, collector           : %12.0f events/s (-c%s; target >= 1000000)\n' \
  "$EVENTS_PER_BATCH" "$ndjson" "$BATCH_CONNECTIONS"
printf '  NDJSON, from cx_events_received_total      : %12.0f events/s\n' "$ndjson_metrics"
printf '  collector RSS under load: peak VmRSS %s KiB (%.1f MiB), VmHWM %s KiB (%.1f MiB) (target < 50 MiB)\n' \
  "$RSS_PEAK_KIB" "$(echo "$RSS_PEAK_KIB" | awk '{print $1/1024}')" "$HWM_KIB" "$(echo "$HWM_KIB" | awk '{print $1/1024}')"
