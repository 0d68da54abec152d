#!/usr/bin/env bash
# Load test of the OTLP export (guaranteed delivery) on loopback, against two real
# OpenTelemetry Collectors: one writing each request to its file exporter alone (the issue's
# target), and the pipeline of scripts/pipeline.sh (-> Kafka, acks from all replicas, and its file
# exporter), reported separately:
#   1. single-event POST /v1/events requests/s, the same release binary without export, with
#      export to the file-only collector and with export to the Kafka pipeline, runs interleaved,
#      and the latency wrk reports for each;
#   2. NDJSON batch events/s with export (EVENTS_PER_BATCH events per request), to each;
#   3. CPU seconds per exported event of the collector and of the OpenTelemetry Collector (from
#      /proc, over the export runs), for each;
#   4. the p99 latency at about PACED_RATE requests/s (default 1,000), without export and with
#      export to the file-only collector: what group commit adds;
#   5. the file-only OpenTelemetry Collector's own ceiling, with a core to itself: the export
#      requests the collector sends (captured), posted to it by wrk as fast as it answers, and
#      one-record OTLP/HTTP JSON requests against the collector's single events (per core, and
#      peak memory).
# The collectors are pinned to SERVER_CPUS, wrk, the OpenTelemetry Collectors and Kafka to
# OTHER_CPUS. Stops the pipeline at the end (its Kafka log and file export can be gigabytes).
#
# Needs wrk (apt-get install -y wrk), curl, python3 and what scripts/pipeline.sh needs. Tunables
# (environment): ROUNDS=3 DURATION=10s CONNECTIONS=64 BATCH_DURATION=5s EVENTS_PER_BATCH=1000
# BATCH_CONNECTIONS=4 SERVER_CPUS=0 OTHER_CPUS=1 LINGER_MILLIS=0 (the exporting collectors'
# lingerMillis) FILE_FORMAT=json (the file exporter's format: json or proto) GROUP_EVENTS=23.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
BATCH_DURATION=${BATCH_DURATION:-5s}
EVENTS_PER_BATCH=${EVENTS_PER_BATCH:-1000}
BATCH_CONNECTIONS=${BATCH_CONNECTIONS:-4}
LINGER_MILLIS=${LINGER_MILLIS:-0}
FILE_FORMAT=${FILE_FORMAT:-json}
SERVER_CPUS=${SERVER_CPUS:-0}
OTHER_CPUS=${OTHER_CPUS:-1}
PLAIN_ADDR=127.0.0.1:18180
EXPORT_ADDR=127.0.0.1:18181
KAFKA_ADDR=127.0.0.1:18184
FILE_OTLP=127.0.0.1:18190
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
  if [ -n "${1:-}" ]; then echo "export: { endpoint: \"$1\", lingerMillis: $LINGER_MILLIS }"; fi
}
config >"$WORK/plain.yaml"
config "http://$FILE_OTLP" >"$WORK/export.yaml"
config "$ENDPOINT" >"$WORK/kafka.yaml"

# The file-only OpenTelemetry Collector: the same binary, the lossless path (no batch processor,
# no sending queue), each request written to a file.
start_file_otelcol() { # start_file_otelcol NAME ADDR: its pid in $WORK/NAME.pid
  cat >"$WORK/$1.yaml" <<YAML
receivers:
  otlp:
    protocols:
      http:
        endpoint: $2
exporters:
  file:
    path: $WORK/$1.$FILE_FORMAT
    format: $FILE_FORMAT
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [file]
YAML
  taskset -c "$OTHER_CPUS" "$CX_PIPELINE_OTELCOL_BIN" --config "file:$WORK/$1.yaml" \
    >"$WORK/$1.log" 2>&1 &
  PIDS+=("$!")
  echo "$!" >"$WORK/$1.pid"
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://$2/v1/logs" && return 0
    sleep 0.1
  done
  echo "the OpenTelemetry Collector $1 did not start:" >&2
  cat "$WORK/$1.log" >&2
  exit 1
}
start_file_otelcol otelcol-file "$FILE_OTLP"
FILE_OTELCOL_PID=$(cat "$WORK/otelcol-file.pid")

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
start kafka "$KAFKA_ADDR" 18185
EXPORT_PID=$(cat "$WORK/export.pid")
KAFKA_EXPORT_PID=$(cat "$WORK/kafka.pid")

cpu_seconds() { # cpu_seconds PID: user + system CPU time of a process, in seconds
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}
exported() { # exported ADDR [FAMILY]: events (or, with cx_export_batches_total, requests) exported
  curl -sf "http://$1/metrics" | awk -v family="${2:-cx_export_events_total}" \
    '$0 ~ "^" family "\\{.*result=\"exported\"" {print $2}'
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

: >"$WORK/plain_rps"; : >"$WORK/plain_p99"
declare -A cpu_ours cpu_theirs events requests
for to in file kafka; do
  : >"$WORK/${to}_rps"; : >"$WORK/${to}_p99"
  cpu_ours[$to]=0; cpu_theirs[$to]=0; events[$to]=0; requests[$to]=0
done
addr_of() { if [ "$1" = file ]; then echo "$EXPORT_ADDR"; else echo "$KAFKA_ADDR"; fi; }
ours_of() { if [ "$1" = file ]; then echo "$EXPORT_PID"; else echo "$KAFKA_EXPORT_PID"; fi; }
theirs_of() { if [ "$1" = file ]; then echo "$FILE_OTELCOL_PID"; else echo "$OTELCOL_PID"; fi; }
add() { echo "$1 $2 $3" | awk '{print $1 + $3 - $2}'; }
for round in $(seq "$ROUNDS"); do
  echo "==> round $round/$ROUNDS"
  out=$(run_wrk "$CONNECTIONS" "$DURATION" benches/wrk-single-event.lua "http://$PLAIN_ADDR")
  no_errors "$out"
  echo "$out" | requests_per_second | tee -a "$WORK/plain_rps" | sed 's/^/  without export, req\/s: /'
  echo "$out" | p99 | tee -a "$WORK/plain_p99" | sed 's/^/  without export, p99: /'
  for to in file kafka; do
    addr=$(addr_of $to); ours=$(ours_of $to); theirs=$(theirs_of $to)
    before=$(exported "$addr"); requests0=$(exported "$addr" cx_export_batches_total)
    ours0=$(cpu_seconds "$ours"); theirs0=$(cpu_seconds "$theirs")
    out=$(run_wrk "$CONNECTIONS" "$DURATION" benches/wrk-single-event.lua "http://$addr")
    no_errors "$out"
    events[$to]=$(add "${events[$to]}" "$before" "$(exported "$addr")")
    requests[$to]=$(add "${requests[$to]}" "$requests0" "$(exported "$addr" cx_export_batches_total)")
    cpu_ours[$to]=$(add "${cpu_ours[$to]}" "$ours0" "$(cpu_seconds "$ours")")
    cpu_theirs[$to]=$(add "${cpu_theirs[$to]}" "$theirs0" "$(cpu_seconds "$theirs")")
    echo "$out" | requests_per_second | tee -a "$WORK/${to}_rps" | sed "s/^/  export to $to, req\/s: /"
    echo "$out" | p99 | tee -a "$WORK/${to}_p99" | sed "s/^/  export to $to, p99: /"
  done
done
# Paced: about PACED_RATE requests/s (PACED_CONNECTIONS connections, each waiting between its
# requests), the latency group commit adds at that rate.
PACED_CONNECTIONS=${PACED_CONNECTIONS:-10}
PACED_RATE=${PACED_RATE:-1000}
delay_ms=$((1000 * PACED_CONNECTIONS / PACED_RATE))
: >"$WORK/paced_plain_p99"; : >"$WORK/paced_file_p99"; : >"$WORK/paced_plain_rps"; : >"$WORK/paced_file_rps"
for round in $(seq "$ROUNDS"); do
  for which in plain file; do
    if [ "$which" = plain ]; then addr=$PLAIN_ADDR; else addr=$EXPORT_ADDR; fi
    out=$(export WRK_DELAY_MS=$delay_ms; run_wrk "$PACED_CONNECTIONS" "$DURATION" benches/wrk-single-event.lua "http://$addr")
    no_errors "$out"
    echo "$out" | requests_per_second >>"$WORK/paced_${which}_rps"
    echo "$out" | p99 >>"$WORK/paced_${which}_p99"
  done
done
ms() { sed -E 's/([0-9.]+)us$/\1 0.001/; s/([0-9.]+)ms$/\1 1/; s/([0-9.]+)s$/\1 1000/' | awk '{print $1 * $2}'; }
declare -A batch_rate
for to in file kafka; do
  addr=$(addr_of $to)
  before=$(exported "$addr"); start_time=$(date +%s.%N)
  out=$(run_wrk "$BATCH_CONNECTIONS" "$BATCH_DURATION" benches/wrk-ndjson-batch.lua "http://$addr")
  end_time=$(date +%s.%N); after=$(exported "$addr")
  no_errors "$out"
  batch_rate[$to]=$(echo "$before $after $start_time $end_time" | awk '{printf "%.0f", ($2 - $1) / ($4 - $3)}')
done

# 5. The OpenTelemetry Collector's own ceiling: the export requests the collector sends,
# captured, then posted to the file-only OpenTelemetry Collector by wrk on the collectors' core
# (idle now), so the OpenTelemetry Collector has its core to itself: an NDJSON batch's request
# (EVENTS_PER_BATCH records) and a single-event group's (GROUP_EVENTS records, about what a
# group holds at CONNECTIONS single-event connections; cx_export_* shows it).
GROUP_EVENTS=${GROUP_EVENTS:-23}
CAPTURE_PORT=18192
cat >"$WORK/capture.py" <<'PY'
import http.server, sys
class Capture(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open(sys.argv[2], "wb") as captured:
            captured.write(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Capture).serve_forever()
PY
python3 "$WORK/capture.py" "$CAPTURE_PORT" "$WORK/captured.bin" &
PIDS+=("$!")
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$CAPTURE_PORT/" && break
  sleep 0.1
done
config "http://127.0.0.1:$CAPTURE_PORT" | sed "s/lingerMillis: $LINGER_MILLIS/lingerMillis: 0, maxBatchEvents: $EVENTS_PER_BATCH/" \
  >"$WORK/capture.yaml"
start capture 127.0.0.1:18186 18187
capture() { # capture FILE: posts stdin (NDJSON) as one batch and keeps the export request
  rm -f "$WORK/captured.bin"
  curl -sS --fail-with-body -H 'Content-Type: application/x-ndjson' --data-binary @- \
    http://127.0.0.1:18186/v1/events:batch >/dev/null
  mv "$WORK/captured.bin" "$1"
}
awk -v n="$EVENTS_PER_BATCH" 'BEGIN { split("completed abandoned error", outcome, " ")
  for (i = 1; i <= n; i++) {
    if (i % 2 == 0) printf "{\"type\":\"survey\",\"metric\":\"nps\",\"score\":%d}\n", i % 11
    else printf "{\"type\":\"interaction\",\"outcome\":\"%s\",\"waitSeconds\":%d.5,\"handleSeconds\":%d}\n", outcome[(i % 3) + 1], i % 90, i % 600
  } }' | capture "$WORK/batch.bin"
single_event=$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" benches/wrk-single-event.lua)
for _ in $(seq "$GROUP_EVENTS"); do echo "$single_event"; done | capture "$WORK/group.bin"
# A fresh one, writing a fresh file, once what the runs above wrote is on disk.
kill "$FILE_OTELCOL_PID"
rm -f "$WORK/otelcol-file.$FILE_FORMAT"
sync
CEILING_OTLP=127.0.0.1:18191
start_file_otelcol otelcol-ceiling "$CEILING_OTLP"
# And the peer's way in for one event: OTLP/HTTP JSON, one log record a request, the record the
# collector makes of wrk-single-event.lua's event, from CONNECTIONS connections.
cat >"$WORK/one.json" <<'JSON'
{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cx-conductor-collector"}}]},"scopeLogs":[{"scope":{"name":"cx-conductor"},"logRecords":[{"observedTimeUnixNano":"1796630400000000000","severityNumber":9,"severityText":"INFO","eventName":"cx.feedback.survey","attributes":[{"key":"event.name","value":{"stringValue":"cx.feedback.survey"}},{"key":"cx.touchpoint","value":{"stringValue":"load-test"}},{"key":"cx.channel","value":{"stringValue":"web"}},{"key":"cx.journey.stage","value":{"stringValue":"support"}},{"key":"cx.event.kind","value":{"stringValue":"survey"}},{"key":"cx.survey.metric","value":{"stringValue":"nps"}},{"key":"cx.survey.score","value":{"intValue":"9"}},{"key":"cx.survey.segment","value":{"stringValue":"promoter"}},{"key":"cx.event.id","value":{"stringValue":"0f8e5c3a-6b1d-4e2f-9a7c-3d5b8e1f2a4c"}}]}]}]}]}
JSON
declare -A ceiling
for shape in batch group one; do
  records=$EVENTS_PER_BATCH; file="$WORK/$shape.bin"; type=application/x-protobuf
  connections=$BATCH_CONNECTIONS
  [ "$shape" = group ] && records=$GROUP_EVENTS
  [ "$shape" = one ] && { records=1; file="$WORK/one.json"; type=application/json; connections=$CONNECTIONS; }
  out=$(BODY_FILE="$file" CONTENT_TYPE="$type" taskset -c "$SERVER_CPUS" \
    wrk -t1 -c"$connections" -d"$BATCH_DURATION" -s benches/wrk-otlp-body.lua "http://$CEILING_OTLP")
  no_errors "$out"
  ceiling[$shape]=$(echo "$out" | requests_per_second | awk -v n="$records" '{printf "%.0f", $1 * n}')
done
peak_mib() { awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
ceiling_hwm=$(peak_mib "$(cat "$WORK/otelcol-ceiling.pid")")
plain_hwm=$(peak_mib "$(cat "$WORK/plain.pid")")

plain=$(median <"$WORK/plain_rps")
echo
echo "==> results: median of $ROUNDS runs, wrk -t1 -c$CONNECTIONS -d$DURATION, lingerMillis $LINGER_MILLIS," \
  "collectors on CPU $SERVER_CPUS, wrk, the OpenTelemetry Collectors and Kafka on CPU $OTHER_CPUS"
printf '  single event without export        : %10.0f req/s, p99 %s\n' "$plain" "$(ms <"$WORK/plain_p99" | median) ms"
for to in file kafka; do
  rate=$(median <"$WORK/${to}_rps")
  printf '  single event, export to %-5s      : %10.0f req/s, p99 %s (%s %% of without; target >= 50 %%)\n' \
    "$to" "$rate" "$(ms <"$WORK/${to}_p99" | median) ms" "$(echo "$rate $plain" | awk '{printf "%.1f", 100 * $1 / $2}')"
done
paced_plain=$(ms <"$WORK/paced_plain_p99" | median)
paced_file=$(ms <"$WORK/paced_file_p99" | median)
printf '  paced, about %s req/s (-c%s, %s ms between requests): %s and %s req/s; p99 %.2f ms without export, %.2f ms with export to the file: %.2f ms added (target < 10 ms)\n' \
  "$PACED_RATE" "$PACED_CONNECTIONS" "$delay_ms" "$(median <"$WORK/paced_plain_rps")" "$(median <"$WORK/paced_file_rps")" \
  "$paced_plain" "$paced_file" "$(echo "$paced_file $paced_plain" | awk '{print $1 - $2}')"
for to in file kafka; do
  printf '  NDJSON batches of %s, export to %-5s, from cx_export_events_total: %s events/s (-c%s -d%s)\n' \
    "$EVENTS_PER_BATCH" "$to" "${batch_rate[$to]}" "$BATCH_CONNECTIONS" "$BATCH_DURATION"
done
for to in file kafka; do
  printf '  CPU per exported single event, export to %-5s: collector %.2f µs, OpenTelemetry Collector %.2f µs (%s events, %.1f a request)\n' \
    "$to" "$(echo "${cpu_ours[$to]} ${events[$to]}" | awk '{print 1e6 * $1 / $2}')" \
    "$(echo "${cpu_theirs[$to]} ${events[$to]}" | awk '{print 1e6 * $1 / $2}')" "${events[$to]}" \
    "$(echo "${events[$to]} ${requests[$to]}" | awk '{print $1 / $2}')"
  # Below 100 %, the collector waited on CPU $OTHER_CPUS (wrk and the OpenTelemetry Collector).
  printf '    share of a core used during those runs: collector %.0f %%, OpenTelemetry Collector %.0f %%\n' \
    "$(echo "${cpu_ours[$to]} $ROUNDS ${DURATION%s}" | awk '{print 100 * $1 / ($2 * $3)}')" \
    "$(echo "${cpu_theirs[$to]} $ROUNDS ${DURATION%s}" | awk '{print 100 * $1 / ($2 * $3)}')"
done
printf '  the OpenTelemetry Collector alone on CPU %s (wrk on CPU %s posting the collector'"'"'s own export requests, -c%s -d%s):\n' \
  "$OTHER_CPUS" "$SERVER_CPUS" "$BATCH_CONNECTIONS" "$BATCH_DURATION"
printf '    requests of %s records (an NDJSON batch): %s records/s; of %s single-event records (%s bytes): %s records/s\n' \
  "$EVENTS_PER_BATCH" "${ceiling[batch]}" "$GROUP_EVENTS" "$(wc -c <"$WORK/group.bin")" "${ceiling[group]}"
printf '    one-record OTLP/HTTP JSON requests (-c%s): %s req/s, against %.0f req/s of single events into this collector without export: %s× per core; peak RSS (VmHWM) %s MiB, against %s MiB\n' \
  "$CONNECTIONS" "${ceiling[one]}" "$plain" "$(echo "$plain ${ceiling[one]}" | awk '{printf "%.1f", $1 / $2}')" \
  "$ceiling_hwm" "$plain_hwm"
