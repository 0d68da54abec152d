#!/usr/bin/env bash
# A real event pipeline on loopback, for the export tests and for people: an OpenTelemetry
# Collector (OTLP/HTTP receiver -> Kafka exporter + file exporter, and detractors' comments routed
# to a topic of their own) in front of a single-node KRaft Kafka broker.
#
#   scripts/pipeline.sh build   build (once per version, cached outside the repository) the
#                               OpenTelemetry Collector with the official builder, from Go modules,
#                               and fetch Kafka's jars with Maven
#   scripts/pipeline.sh start   build if needed and start whatever is not running (Kafka, then the
#                               OpenTelemetry Collector); prints the OTLP/HTTP endpoint
#   scripts/pipeline.sh stop [otelcol|kafka]
#                               stop one part (its state is kept, `start` brings it back) or, with no
#                               argument, both and remove the state
#   scripts/pipeline.sh env     print the endpoints of a running pipeline as shell variables
#   scripts/pipeline.sh consume [TOPIC]
#                               print every record of a topic (default cx-feedback) from the
#                               beginning, one per line, and exit when no record arrived for 5 s
#
# The OpenTelemetry Collector keeps the collectors' delivery guarantee: no batch processor and the
# Kafka exporter's sending_queue disabled, so its OTLP answer waits for Kafka (acks from all
# in-sync replicas) and carries Kafka's error.
#
# Settings (environment): CX_PIPELINE_CACHE (binaries and jars; default $CX_CLUSTER_CACHE or
# ~/.cache/cx-conductor), CX_PIPELINE_DIR (state of a running pipeline, default
# $TMPDIR/cx-conductor-pipeline), CX_PIPELINE_PORT (first of five loopback ports, default 19090:
# Kafka, Kafka controller, OTLP/HTTP, the OpenTelemetry Collector's own metrics, spare).
set -euo pipefail

OTELCOL_VERSION=v0.165.0
CONTRIB_VERSION=v0.165.0
CONFMAP_VERSION=v1.71.0
# The newest release of the OTLP encoding extension the module proxy serves (see build_otelcol).
OTLP_ENCODING_VERSION=v0.135.0
KAFKA_VERSION=4.4.0
SCALA_VERSION=2.13

CACHE_ROOT=${CX_PIPELINE_CACHE:-${CX_CLUSTER_CACHE:-$HOME/.cache/cx-conductor}}
# The components are part of the key: a build with other components goes into another directory.
ROOT=$CACHE_ROOT/pipeline-otelcol-$OTELCOL_VERSION-filter-kafka-$KAFKA_VERSION
STATE=${CX_PIPELINE_DIR:-${TMPDIR:-/tmp}/cx-conductor-pipeline}
BASE_PORT=${CX_PIPELINE_PORT:-19090}
KAFKA_PORT=$BASE_PORT
CONTROLLER_PORT=$((BASE_PORT + 1))
OTLP_PORT=$((BASE_PORT + 2))
TELEMETRY_PORT=$((BASE_PORT + 3))
TOPIC=cx-feedback
# Detractors' comments, routed there besides $TOPIC (README, "Routing detractor comments").
DETRACTOR_TOPIC=cx-detractor-comments

die() {
  echo "pipeline.sh: $*" >&2
  exit 1
}
step() { echo "==> $*" >&2; }

build_step() {
  local name=$1
  shift
  local log=$CACHE_ROOT/build-pipeline-$name.log
  local started=$SECONDS
  step "building $name (log: $log)"
  if ! "$@" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "step 'build $name' failed; full log in $log"
  fi
  echo "    $name built in $((SECONDS - started)) s" >&2
}

build_otelcol() {
  local dir=$ROOT.partial/otelcol-src
  mkdir -p "$dir" || return 1
  GOBIN="$ROOT.partial/builder-bin" go install "go.opentelemetry.io/collector/cmd/builder@$OTELCOL_VERSION" || return 1
  cat >"$dir/builder.yaml" <<YAML
dist:
  name: cx-otelcol
  description: OpenTelemetry Collector for cx-conductor's export tests
  output_path: $dir/dist
  version: ${OTELCOL_VERSION#v}
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver $OTELCOL_VERSION
exporters:
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/exporter/kafkaexporter $CONTRIB_VERSION
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter $CONTRIB_VERSION
processors:
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/processor/filterprocessor $CONTRIB_VERSION
providers:
  - gomod: go.opentelemetry.io/collector/confmap/provider/envprovider $CONFMAP_VERSION
  - gomod: go.opentelemetry.io/collector/confmap/provider/fileprovider $CONFMAP_VERSION
  - gomod: go.opentelemetry.io/collector/confmap/provider/yamlprovider $CONFMAP_VERSION
# The file exporter's tests import an encoding extension whose $CONTRIB_VERSION the module proxy does
# not serve; \`go mod tidy\` resolves test imports of dependencies too. Nothing of it is compiled.
replaces:
  - github.com/open-telemetry/opentelemetry-collector-contrib/extension/encoding/otlpencodingextension => github.com/open-telemetry/opentelemetry-collector-contrib/extension/encoding/otlpencodingextension $OTLP_ENCODING_VERSION
YAML
  (cd "$dir" && CGO_ENABLED=0 "$ROOT.partial/builder-bin/builder" --config builder.yaml) || return 1
  cp "$dir/dist/cx-otelcol" "$ROOT.partial/otelcol" || return 1
  rm -rf "$dir" "$ROOT.partial/builder-bin"
}

fetch_kafka() {
  local dir=$ROOT.partial/kafka
  mkdir -p "$dir" || return 1
  cat >"$dir/pom.xml" <<XML
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.conductor.cx</groupId>
  <artifactId>pipeline-kafka</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_$SCALA_VERSION</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
  </dependencies>
</project>
XML
  (cd "$dir" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=lib) || return 1
  ls "$dir"/lib/kafka_"$SCALA_VERSION"-"$KAFKA_VERSION".jar >/dev/null
}

cmd_build() {
  if [ -f "$ROOT/.complete" ]; then
    return 0
  fi
  command -v go >/dev/null 2>&1 || die "step 'build': Go is not installed; the OpenTelemetry Collector is built from Go modules"
  command -v mvn >/dev/null 2>&1 || die "step 'build': Maven (mvn) is not installed; Kafka's jars are fetched with it"
  command -v java >/dev/null 2>&1 || die "step 'build': Java is not installed; Kafka runs on it (17 or newer)"
  mkdir -p "$ROOT.partial"
  local started=$SECONDS
  [ -x "$ROOT.partial/otelcol" ] || build_step otelcol build_otelcol
  [ -f "$ROOT.partial/kafka/lib/kafka_$SCALA_VERSION-$KAFKA_VERSION.jar" ] || build_step kafka fetch_kafka
  touch "$ROOT.partial/.complete"
  rm -rf "$ROOT"
  mv "$ROOT.partial" "$ROOT"
  echo "    pipeline built in $((SECONDS - started)) s into $ROOT" >&2
}

# --- running it ---------------------------------------------------------------------------------

classpath() { echo "$ROOT/kafka/lib/*"; }

pid_of() { [ -f "$STATE/$1.pid" ] && cat "$STATE/$1.pid"; }

alive() {
  local pid
  pid=$(pid_of "$1") || return 1
  kill -0 "$pid" 2>/dev/null
}

kafka_ready() {
  java -cp "$(classpath)" org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
    --describe --topic "$TOPIC" >/dev/null 2>&1
}

otelcol_ready() { curl -fsS "http://127.0.0.1:$TELEMETRY_PORT/metrics" >/dev/null 2>&1; }

launch() {
  local name=$1
  shift
  # Not holding the lock of this script (fd 9) while running.
  "$@" >>"$STATE/logs/$name.log" 2>&1 9>&- &
  echo $! >"$STATE/$name.pid"
}

wait_for() {
  local name=$1 timeout=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    if ! alive "$name"; then
      tail -n 20 "$STATE/logs/$name.log" >&2 || true
      die "step 'start': $name exited while starting (log: $STATE/logs/$name.log)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 20 "$STATE/logs/$name.log" >&2 || true
      die "step 'start': $name not ready after ${timeout}s (log: $STATE/logs/$name.log)"
    fi
    sleep 0.5
  done
}

start_kafka() {
  mkdir -p "$STATE/kafka"
  cat >"$STATE/kafka/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$STATE/kafka/data
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
  if [ ! -f "$STATE/kafka/data/meta.properties" ]; then
    local id
    id=$(java -cp "$(classpath)" kafka.tools.StorageTool random-uuid 2>>"$STATE/logs/kafka.log")
    java -cp "$(classpath)" kafka.tools.StorageTool format -t "$id" -c "$STATE/kafka/server.properties" \
      >>"$STATE/logs/kafka.log" 2>&1 || die "step 'start': formatting Kafka's storage failed (log: $STATE/logs/kafka.log)"
  fi
  launch kafka java -Xmx512m -cp "$(classpath)" kafka.Kafka "$STATE/kafka/server.properties"
  local deadline=$((SECONDS + 120))
  until java -cp "$(classpath)" org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
    --create --if-not-exists --topic "$TOPIC" --partitions 1 --replication-factor 1 >>"$STATE/logs/kafka.log" 2>&1; do
    alive kafka || die "step 'start': Kafka exited while starting (log: $STATE/logs/kafka.log)"
    [ $SECONDS -lt $deadline ] || die "step 'start': Kafka not ready after 120s (log: $STATE/logs/kafka.log)"
    sleep 1
  done
  wait_for kafka 60 kafka_ready
  java -cp "$(classpath)" org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
    --create --if-not-exists --topic "$DETRACTOR_TOPIC" --partitions 1 --replication-factor 1 >>"$STATE/logs/kafka.log" 2>&1 ||
    die "step 'start': creating topic $DETRACTOR_TOPIC failed (log: $STATE/logs/kafka.log)"
}

start_otelcol() {
  mkdir -p "$STATE/otelcol"
  # Lossless path: no batch processor, no sending queue (the receiver's answer waits for the
  # export and carries its error), no exporter-side retry that would outlive the client's timeout.
  cat >"$STATE/otelcol/config.yaml" <<YAML
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:$OTLP_PORT
exporters:
  kafka:
    brokers: ["127.0.0.1:$KAFKA_PORT"]
    logs:
      topic: $TOPIC
      encoding: otlp_json
    producer:
      required_acks: -1
    timeout: 5s
    sending_queue:
      enabled: false
    retry_on_failure:
      enabled: false
  kafka/detractors:
    brokers: ["127.0.0.1:$KAFKA_PORT"]
    logs:
      topic: $DETRACTOR_TOPIC
      encoding: otlp_json
    producer:
      required_acks: -1
    timeout: 5s
    sending_queue:
      enabled: false
    retry_on_failure:
      enabled: false
  file:
    path: $STATE/otelcol/logs.jsonl
processors:
  # Drops every record but detractors' comments (a record matching any condition is dropped).
  filter/detractor-comments:
    error_mode: propagate
    logs:
      log_record:
        - attributes["cx.survey.segment"] != "detractor"
        - not IsString(body)
service:
  telemetry:
    metrics:
      level: basic
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: $TELEMETRY_PORT
  pipelines:
    logs:
      receivers: [otlp]
      exporters: [kafka, file]
    # The receiver hands each request to both pipelines synchronously: its answer waits for
    # (and carries the error of) both topics' exports.
    logs/detractor-comments:
      receivers: [otlp]
      processors: [filter/detractor-comments]
      exporters: [kafka/detractors]
YAML
  launch otelcol "$ROOT/otelcol" --config "file:$STATE/otelcol/config.yaml"
  wait_for otelcol 60 otelcol_ready
}

cmd_start() {
  cmd_build
  command -v curl >/dev/null 2>&1 || die "step 'start': curl is needed to wait for the OpenTelemetry Collector"
  mkdir -p "$STATE/logs"
  local started=$SECONDS
  if ! alive kafka || ! kafka_ready; then
    if alive kafka; then kill_part kafka; fi
    start_kafka
  fi
  if ! alive otelcol || ! otelcol_ready; then
    if alive otelcol; then kill_part otelcol; fi
    start_otelcol
  fi
  echo "    pipeline up in $((SECONDS - started)) s: Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (topic $TOPIC), OpenTelemetry Collector ${OTELCOL_VERSION#v}" >&2
  echo "http://127.0.0.1:$OTLP_PORT"
}

kill_part() {
  local name=$1 pid
  pid=$(pid_of "$name") || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$STATE/$name.pid"
}

cmd_stop() {
  case "${1:-}" in
  otelcol | kafka) kill_part "$1" ;;
  "")
    kill_part otelcol
    kill_part kafka
    rm -rf "$STATE"
    ;;
  *) die "step 'stop': unknown part '$1' (otelcol or kafka)" ;;
  esac
}

cmd_env() {
  alive kafka && alive otelcol || die "step 'env': no pipeline is running (scripts/pipeline.sh start)"
  echo "CX_PIPELINE_OTLP_ENDPOINT=http://127.0.0.1:$OTLP_PORT"
  echo "CX_PIPELINE_KAFKA=127.0.0.1:$KAFKA_PORT"
  echo "CX_PIPELINE_TOPIC=$TOPIC"
  echo "CX_PIPELINE_DETRACTOR_TOPIC=$DETRACTOR_TOPIC"
  echo "CX_PIPELINE_FILE=$STATE/otelcol/logs.jsonl"
  echo "CX_PIPELINE_OTELCOL_METRICS=http://127.0.0.1:$TELEMETRY_PORT/metrics"
  echo "CX_PIPELINE_STATE=$STATE"
  echo "CX_PIPELINE_OTELCOL_BIN=$ROOT/otelcol"
}

cmd_consume() {
  [ -f "$ROOT/.complete" ] || die "step 'consume': the pipeline is not built (scripts/pipeline.sh build)"
  java -cp "$(classpath)" org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
    --topic "${1:-$TOPIC}" --from-beginning --timeout-ms 5000 2>/dev/null || true
}

# One build, start or stop at a time (test binaries and people may ask concurrently).
locked() {
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/.pipeline-lock"
  flock 9
  "$@"
}

case "${1:-}" in
build) locked cmd_build ;;
start) locked cmd_start ;;
stop) locked cmd_stop "${2:-}" ;;
env) cmd_env ;;
consume) cmd_consume "${2:-}" ;;
*)
  echo "usage: $0 build|start|stop [otelcol|kafka]|env|consume [TOPIC]" >&2
  exit 2
  ;;
esac
