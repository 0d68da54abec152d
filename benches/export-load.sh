#!/usr/bin/env bash
# Load test of the OTLP export (guaranteed delivery) on loopback, against the real pipeline of
# scripts/pipeline.sh (OpenTelemetry Collector -> Kafka, and its file exporter):
#   1. single-event POST /v1/events requests/s, the same release binary without export and with
#      export, runs interleaved, and the latency wrk reports for each;
#   2. NDJSON batch events/s with export (EVENTS_PER_BATCH events per request);
#   3. CPU seconds per exported event of the collector and of the OpenTelemetry Collector (from
#      /proc, over the export runs).
# The collectors are pinned to SERVER_CPUS, wrk, the OpenTelemetry Collector and Kafka to
# OTHER_CPUS. Stops the pipeline at the end (its Kafka log and file export can be gigabytes).
#
# Needs wrk (apt-get install -y wrk), curl and what scripts/pipeline.sh needs. Tunables
# (environment): ROUNDS=3 DURATION=10s CONNECTIONS=64 BATCH_DURATION=5s EVENTS_PER_BATCH=1000
# BATCH_CONNECTIONS=4 SERVER_CPUS=0 OTHER_CPUS=1.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
BATCH_DURATION=${BATCH_DURATION:-5s}
EVENTS_PER_BATCH=${EVENTS_PER_BATCH:-1000}
BATCH_CONNECTIONS=${BATCH_CONNECTIONS:-4}
SERVER_CPUS=${SERVER_CPUS:-0}
OTHER_CPUS=${OTHER_CPUS:-1}
PLAIN_ADDR=127.0.0.1:18180
EXPORT_ADDR=127.0.0.1:18181
TARGET_DIR=${CARGO_TARGET_DIR:-target}
export EVENTS_PER_BATCH

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 2; }

echo "==> building (release) and starting the pipeline"
cargo build --release --bin cx-conductor
BIN=$TARGET_DIR/release/cx-conductor
ENDPOINT=$(bash scripts/pipeline.sh start)
eval "$(bash scripts/pipeline.sh env)"
OTELCOL_PID=$(cat "$CX_PIPELINE_STATE/otelcol.pid")
KAFKA_PID=$(cat "$CX_PIPELINE_STATE/kafka.pid")
taskset -acp "$OTHER_CPUS" "$OTELCOL_PID" >/dev/null
taskset -acp "$OTHER_CPUS" "$KAFKA_PID" >/dev/null

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
  bash scripts/pipeline.sh stop
}
trap cleanup EXIT

config() { # config [EXPORT_ENDPOINT]
  cat <<YAML
namespace: bench
touchpoint: load-test
channel: web
stage: support
surveys: [{ metric: nps }, { metric: csat, scale: 5 }]
interactions: { outcomes: [completed, abandoned, error], timings: [wait, handle] }
maxEventBytes: 65536
YAML
  if [ -n "${1:-}" ]; then echo "export: { endpoint: \"$1\" }"; fi
}
config >"$WORK/plain.yaml"
config "$ENDPOINT" >"$WORK/export.yaml"

start() { # start NAME ADDR HEALTH_PORT
  RUST_LOG=warn taskset -c "$SERVER_CPUS" "$BIN" collector --config "$WORK/$1.yaml" \
    --listen "$2" --health-listen "127.0.0.1:$3" >"$WORK/$1.log" 2>&1 &
  PIDS+=("$!")
  echo "$!" >"$WORK/$1.pid"
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$3/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "the $1 collector did not start:" >&2
  cat "$WORK/$1.log" >&2
  exit 1
}
start plain "$PLAIN_ADDR" 18182
start export "$EXPORT_ADDR" 18183
EXPORT_PID=$(cat "$WORK/export.pid")

cpu_seconds() { # cpu_seconds PID: user + system CPU time of a process, in seconds
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}
exported() {
  curl -sf "http://$EXPORT_ADDR/metrics" | awk '/^cx_export_events_total\{.*result="exported"/ {print $2}'
}
requests_per_second() { awk '/^Requests\/sec:/ {print $2}'; }
p99() { awk '$1 == "99%" {print $2}'; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
run_wrk() { # run_wrk CONNECTIONS DURATION SCRIPT URL
  taskset -c "$OTHER_CPUS" wrk -t1 -c"$1" -d"$2" --latency -s "$3" "$4"
}
no_errors() {
  if echo "$1" | grep -q "Non-2xx"; then
    echo "non-2xx answers:" >&2
    echo "$1" >&2
    exit 1
  fi
}

: >"$WORK/plain_rps"; : >"$WORK/export_rps"; : >"$WORK/plain_p99"; : >"$WORK/export_p99"
exported_cpu_ours=0; exported_cpu_theirs=0; exported_events=0
for round in $(seq "$ROUNDS"); do
  echo "==> round $round/$ROUNDS"
  out=$(run_wrk "$CONNECTIONS" "$DURATION" benches/wrk-single-event.lua "http://$PLAIN_ADDR")
  no_errors "$out"
  echo "$out" | requests_per_second | tee -a "$WORK/plain_rps" | sed 's/^/  without export, req\/s: /'
  echo "$out" | p99 | tee -a "$WORK/plain_p99" | sed 's/^/  without export, p99: /'
  before=$(exported); ours=$(cpu_seconds "$EXPORT_PID"); theirs=$(cpu_seconds "$OTELCOL_PID")
  out=$(run_wrk "$CONNECTIONS" "$DURATION" benches/wrk-single-event.lua "http://$EXPORT_ADDR")
  no_errors "$out"
  after=$(exported)
  exported_events=$(echo "$exported_events $before $after" | awk '{print $1 + $3 - $2}')
  exported_cpu_ours=$(echo "$exported_cpu_ours $ours $(cpu_seconds "$EXPORT_PID")" | awk '{print $1 + $3 - $2}')
  exported_cpu_theirs=$(echo "$exported_cpu_theirs $theirs $(cpu_seconds "$OTELCOL_PID")" | awk '{print $1 + $3 - $2}')
  echo "$out" | requests_per_second | tee -a "$WORK/export_rps" | sed 's/^/  with export, req\/s: /'
  echo "$out" | p99 | tee -a "$WORK/export_p99" | sed 's/^/  with export, p99: /'
done
before=$(exported); start_time=$(date +%s.%N)
out=$(run_wrk "$BATCH_CONNECTIONS" "$BATCH_DURATION" benches/wrk-ndjson-batch.lua "http://$EXPORT_ADDR")
end_time=$(date +%s.%N); after=$(exported)
no_errors "$out"
batch_rate=$(echo "$before $after $start_time $end_time" | awk '{printf "%.0f", ($2 - $1) / ($4 - $3)}')

plain=$(median <"$WORK/plain_rps")
export=$(median <"$WORK/export_rps")
echo
echo "==> results: median of $ROUNDS runs, wrk -t1 -c$CONNECTIONS -d$DURATION, collectors on CPU $SERVER_CPUS," \
  "wrk, the OpenTelemetry Collector and Kafka on CPU $OTHER_CPUS"
printf '  single event without export : %10.0f req/s, p99 %s\n' "$plain" "$(median <"$WORK/plain_p99")"
printf '  single event with export    : %10.0f req/s, p99 %s (%s %% of without; target >= 50 %%)\n' \
  "$export" "$(median <"$WORK/export_p99")" "$(echo "$export $plain" | awk '{printf "%.1f", 100 * $1 / $2}')"
printf '  NDJSON batches of %s with export, from cx_export_events_total: %s events/s (-c%s -d%s)\n' \
  "$EVENTS_PER_BATCH" "$batch_rate" "$BATCH_CONNECTIONS" "$BATCH_DURATION"
printf '  CPU per exported single event: collector %.2f µs, OpenTelemetry Collector %.2f µs (%s events)\n' \
  "$(echo "$exported_cpu_ours $exported_events" | awk '{print 1e6 * $1 / $2}')" \
  "$(echo "$exported_cpu_theirs $exported_events" | awk '{print 1e6 * $1 / $2}')" "$exported_events"
