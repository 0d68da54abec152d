#!/usr/bin/env bash
# Load test of comments and themes in the collector with wrk, on loopback only. The issue's
# target: collector throughput with comments and themes on, against the same binary with comments
# absent, same wrk, pinned to one core: single events >= 85 %, NDJSON batches >= 70 %; peak RSS
# unchanged within 10 %.
#
# Two fresh collectors of the same release binary run side by side, both pinned to SERVER_CPUS:
#   - "without comments": the configuration of benches/collector-load.sh (no comment settings, no
#     themes: what a touchpoint without comments deploys; BASELINE_THEMES=1 gives it the themes
#     too, to isolate the cost of the comments in the traffic), sent events without a comment;
#   - "with comments": the same plus maxCommentBytes and a realistic theme set (the five themes
#     of examples/retail/journey.yaml, Italian and English, with their exclusions, and three more
#     built alike: returns, payment, product-quality), sent the same events each carrying a
#     ~300-byte comment (benches/wrk-comments-table.lua: 20 Italian and English comments,
#     accents, emoji, JSON escapes; most mention themes, one none).
# Each collector only ever serves its own workload, so its VmHWM (and the VmRSS sampled every
# 100 ms) is the peak of that workload alone, from the same fresh start: the RSS comparison is
# honest. Throughput runs are interleaved round by round (single events then NDJSON batches, the
# order of the two collectors swapped every round), so drift and the machine's other load hit
# both alike; only one collector is under load at a time, the other idles. Note that the same
# number of events with comments is about 6 times the bytes (1,000 NDJSON events: ~382 KB against
# ~63 KB); an NDJSON batch is parsed chunk by chunk as it arrives, so its size shows in VmHWM
# only through a connection's read buffer (at most 64 KiB). (While a body was held whole, the
# collector without comments, sent 6,000-event batches of ~376 KB, peaked at 17.2 MiB against
# 17.3 MiB with comments.)
#
# Before the load, every comment of the table is sent once as a single event to the "with
# comments" collector: each must be accepted (2xx), and the themes it is counted for are compared
# with those the table expects. After the load the counters are cross-checked against
# /metrics: cx_feedback_comments_total must be > 0 and equal cx_events_received_total (every
# event sent carries a comment) and the events wrk saw acknowledged (2xx single events + the
# "accepted" of the batch answers) -- up to the requests still in flight when wrk stopped, which
# the collector counts but wrk never sees answered; cx_feedback_themes_total must be > 0; the
# collector without comments must count no comment; no event may be rejected.
#
# Prints per workload the median of ROUNDS runs of single-event requests/s (POST /v1/events,
# benches/wrk-comments-single.lua) and NDJSON events/s (POST /v1/events:batch,
# EVENTS_PER_BATCH events a request, benches/wrk-comments-batch.lua), the with/without ratios,
# the peak RSS of each collector, and a Markdown summary with the command that reproduces it.
# Also, per workload, the collector's CPU time per event (utime + stime from /proc/PID/stat over
# each run, divided by the events it received): on a shared machine the rates move with whatever
# else runs on the server's core, the CPU per event much less. wrk's own CPU share is taken with
# /usr/bin/time when present: a run where wrk used more than 90 % of its core is reported, its
# rate may be wrk's limit. Both workloads go through the same Lua request() path, so wrk does
# the same work per request either way.
#
# Needs wrk (apt-get install -y wrk) and curl. Tunables (environment): ROUNDS=5 DURATION=10s
# CONNECTIONS=64 THREADS=1 EVENTS_PER_BATCH=1000 BATCH_CONNECTIONS=4 SERVER_CPUS=0 WRK_CPUS=1
# BASELINE_THEMES=0. The servers are pinned to SERVER_CPUS and wrk to WRK_CPUS (taskset) so "per
# core" means one core.
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
BASELINE_THEMES=${BASELINE_THEMES:-0}
# Not the ports of collector-load.sh (18080-18082) or pool-load.sh (18180-18190, 18280-18290).
PLAIN_ADDR=127.0.0.1:18380
PLAIN_HEALTH=127.0.0.1:18381
COMMENTS_ADDR=127.0.0.1:18382
COMMENTS_HEALTH=127.0.0.1:18383
TARGET_DIR=${CARGO_TARGET_DIR:-target}
TABLE=benches/wrk-comments-table.lua
export EVENTS_PER_BATCH
COMMAND="ROUNDS=$ROUNDS DURATION=$DURATION CONNECTIONS=$CONNECTIONS THREADS=$THREADS \
EVENTS_PER_BATCH=$EVENTS_PER_BATCH BATCH_CONNECTIONS=$BATCH_CONNECTIONS SERVER_CPUS=$SERVER_CPUS \
WRK_CPUS=$WRK_CPUS BASELINE_THEMES=$BASELINE_THEMES bash benches/comments-load.sh"

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl not found" >&2; exit 2; }

pin() { # pin CPUS COMMAND...: exec pinned when taskset and enough CPUs exist (so that `pin ... &`
  # leaves $! as the server's own PID, whose /proc status is read for RSS)
  local cpus=$1; shift
  if command -v taskset >/dev/null && [ "$(nproc)" -gt 1 ]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}

echo "==> building (release)"
cargo build --release --bin cx-conductor
COLLECTOR_BIN=$TARGET_DIR/release/cx-conductor
[ -x "$COLLECTOR_BIN" ] || { echo "$COLLECTOR_BIN not found" >&2; exit 2; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The configuration of collector-load.sh: what a touchpoint without comment settings deploys.
cat >"$WORK/plain.yaml" <<'YAML'
namespace: bench
touchpoint: load-test
channel: web
stage: support
surveys: [{ metric: nps }, { metric: csat, scale: 5 }]
interactions: { outcomes: [completed, abandoned, error], timings: [wait, handle] }
maxEventBytes: 65536
firstResponseSeconds: 60
YAML
# Comment settings as `collector_config` (src/core/plan.rs) writes them: a touchpoint's
# maxCommentBytes (left out when it keeps the default 4096) and its journeys' themes.
cat >"$WORK/themes.yaml" <<'YAML'
themes:
  - name: delivery
    keywords: [consegn*, corriere, spedizion*, pacco, in ritardo, delivery, delivered, courier, parcel, late]
    exclude: [non in ritardo, not late, on time, in orario]
  - name: price
    keywords: [prezz*, caro, costos*, sconto, price*, expensive, discount*, overpriced]
  - name: staff
    keywords: [personale, commess*, operator*, gentil*, scortes*, staff, assistant*, rude, friendly, helpful]
  - name: app-crashes
    keywords: [crash*, si blocca, si chiude, bloccat*, freez*, froze, keeps closing, not loading]
  - name: waiting-time
    keywords: [attes*, aspettat*, coda, tempi lunghi, wait*, queue*, on hold, took ages]
  - name: returns
    keywords: [reso, resi, rimbors*, restitu*, return*, refund*]
  - name: payment
    keywords: [pagament*, carta di credito, paypal, addebit*, payment*, charged, card declined]
  - name: product-quality
    keywords: [qualit*, difettos*, rott*, danneggiat*, broken, damaged, defective, quality]
YAML
{ cat "$WORK/plain.yaml"; echo "maxCommentBytes: 1000"; cat "$WORK/themes.yaml"; } >"$WORK/comments.yaml"
if [ "$BASELINE_THEMES" = 1 ]; then cat "$WORK/themes.yaml" >>"$WORK/plain.yaml"; fi

for addr in "$PLAIN_ADDR" "$PLAIN_HEALTH" "$COMMENTS_ADDR" "$COMMENTS_HEALTH"; do
  if curl -s -o /dev/null "http://$addr/" 2>/dev/null; then
    echo "something already listens on $addr: stop it first" >&2; exit 2
  fi
done

start() { # start NAME ADDR HEALTH_ADDR: a fresh collector with $WORK/NAME.yaml; sets PID
  RUST_LOG=warn pin "$SERVER_CPUS" "$COLLECTOR_BIN" collector --config "$WORK/$1.yaml" \
    --listen "$2" --health-listen "$3" --log-json >"$WORK/$1.log" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 100); do
    curl -sf "http://$3/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -sf "http://$3/readyz" >/dev/null && kill -0 "$PID" ||
    { echo "the collector ($1) did not start:" >&2; cat "$WORK/$1.log" >&2; exit 1; }
}

echo "==> starting two collectors (pinned to CPU $SERVER_CPUS; wrk on CPU $WRK_CPUS)"
start plain "$PLAIN_ADDR" "$PLAIN_HEALTH"
PLAIN_PID=$PID
start comments "$COMMENTS_ADDR" "$COMMENTS_HEALTH"
COMMENTS_PID=$PID
echo "  without comments: PID $PLAIN_PID on $PLAIN_ADDR; with comments and themes: PID $COMMENTS_PID on $COMMENTS_ADDR"

# Peak VmRSS of each collector (sampled every 100 ms), in KiB, into $WORK/rss_peak_<pid>.
sample_rss() {
  local plain=0 comments=0 rss
  while kill -0 "$PLAIN_PID" 2>/dev/null || kill -0 "$COMMENTS_PID" 2>/dev/null; do
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$PLAIN_PID/status" 2>/dev/null || echo 0)
    [ "${rss:-0}" -gt "$plain" ] && plain=$rss && echo "$plain" >"$WORK/rss_peak_$PLAIN_PID"
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$COMMENTS_PID/status" 2>/dev/null || echo 0)
    [ "${rss:-0}" -gt "$comments" ] && comments=$rss && echo "$comments" >"$WORK/rss_peak_$COMMENTS_PID"
    sleep 0.1
  done
}
sample_rss &
SAMPLER_PID=$!
PIDS+=("$SAMPLER_PID")

metrics() { curl -sf "http://$1/metrics"; }
# Sum of every series of a counter family in a /metrics text on stdin (0 when absent).
family_sum() { awk -v name="$1" '$1 == name || index($1, name "{") == 1 {s += $NF} END {printf "%.0f\n", s}'; }
# "theme count" lines of cx_feedback_themes_total, summed over metric and segment.
theme_counts() {
  awk '/^cx_feedback_themes_total\{/ {
         if (match($0, /theme="[^"]*"/)) { t = substr($0, RSTART + 7, RLENGTH - 8); s[t] += $NF }
       } END { for (t in s) printf "%s %.0f\n", t, s[t] }' | sort
}
median() { sort -g | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
field() { awk -v k="$1:" '$1 == k {print $2; exit}'; } # field NAME: value of "NAME: value" in wrk's output
requests_per_second() { awk '/^Requests\/sec:/ {print $2}'; }
TIME=(); [ -x /usr/bin/time ] && TIME=(/usr/bin/time -f 'wrk_cpu: %U %S %e')
run_wrk() { # run_wrk COMMENTS CONNECTIONS SCRIPT URL -> wrk output (called in $(...), a subshell)
  pin "$WRK_CPUS" "${TIME[@]}" env COMMENTS="$1" wrk -t"$THREADS" -c"$2" -d"$DURATION" -s "$3" "$4" 2>&1
}
thousands() { awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); o = ""
  while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
  print s o }'; }
percent() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", 100 * a / b; else print "n/a" }'; }

# --- pre-flight: every comment of the table, once, as a single event ----------------------------
echo "==> pre-flight: each of the table's comments once to the collector with comments"
SEP=$'\x1f' # between the fields of a table line (a tab would not do: an empty field vanishes)
sed -n "s/^c(\"\([a-z]*\)\", \"\([^\"]*\)\", \[\[\(.*\)\]\])\$/\1$SEP\2$SEP\3/p" "$TABLE" >"$WORK/table"
[ "$(wc -l <"$WORK/table")" -ge 10 ] || { echo "could not read the comments of $TABLE" >&2; exit 2; }
PREFLIGHT_MISMATCHES=0
EXPECTED_THEMES=0
n=0
metrics "$COMMENTS_ADDR" | theme_counts >"$WORK/themes_before"
while IFS=$SEP read -r language expected text; do
  n=$((n + 1))
  body="{\"type\":\"survey\",\"metric\":\"nps\",\"score\":$(((n - 1) % 11)),\"sessionId\":\"s-7f3a9c\",\"comment\":\"$text\"}"
  status=$(curl -s -o "$WORK/answer" -w '%{http_code}' -H 'Content-Type: application/json' \
    --data-binary "$body" "http://$COMMENTS_ADDR/v1/events")
  if [ "${status:0:1}" != 2 ]; then
    echo "  comment $n ($language) refused with $status: $(cat "$WORK/answer")" >&2
    echo "  request body: $body" >&2
    exit 1
  fi
  metrics "$COMMENTS_ADDR" | theme_counts >"$WORK/themes_after"
  counted=$(join -a 2 "$WORK/themes_before" "$WORK/themes_after" |
    awk 'NF == 3 && $3 > $2 {print $1} NF == 2 && $2 > 0 {print $1}' | sort | paste -sd, -)
  mv "$WORK/themes_after" "$WORK/themes_before"
  EXPECTED_THEMES=$((EXPECTED_THEMES + $(echo "$expected" | awk -F, '{print ($0 == "" ? 0 : NF)}')))
  if [ "$counted" = "$expected" ]; then
    echo "  comment $n ($language, $(printf %s "$text" | wc -c) bytes): $status, themes ${counted:-none}"
  else
    PREFLIGHT_MISMATCHES=$((PREFLIGHT_MISMATCHES + 1))
    echo "  comment $n ($language): $status, themes counted '${counted:-none}', the table expects '${expected:-none}'"
  fi
done <"$WORK/table"
TABLE_COMMENTS=$n
TABLE_THEMES_PER_COMMENT=$(awk -v t="$EXPECTED_THEMES" -v n="$n" 'BEGIN {printf "%.2f", t / n}')
# The load's counts start here.
metrics "$COMMENTS_ADDR" >"$WORK/base_comments.prom"
metrics "$PLAIN_ADDR" >"$WORK/base_plain.prom"

# --- load ---------------------------------------------------------------------------------------
declare -A ADDR=([plain]=$PLAIN_ADDR [comments]=$COMMENTS_ADDR)
declare -A FLAG=([plain]=0 [comments]=1)
declare -A LABEL=([plain]="without comments" [comments]="with comments   ")
declare -A ACKED=([plain]=0 [comments]=0)
for mode in plain comments; do
  for kind in single ndjson; do : >"$WORK/${kind}_$mode"; : >"$WORK/${kind}_metrics_$mode"; : >"$WORK/${kind}_cpu_$mode"; done
done

check_wrk() { # check_wrk WHAT OUTPUT: exits on any failed answer; warns on socket errors
  local bad
  bad=$(echo "$2" | field responses_non_2xx)
  if [ "${bad:-x}" != 0 ] || echo "$2" | grep -q '^first_failure:\|^first_non_2xx:'; then
    echo "$1: the collector refused events:"; echo "$2"; exit 1
  fi
  if echo "$2" | grep -q '^  Socket errors:'; then
    echo "  warning, $1: $(echo "$2" | grep '^  Socket errors:' | sed 's/^ *//')"
  fi
}

declare -A PID_OF=([plain]=$PLAIN_PID [comments]=$COMMENTS_PID)
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system time of all its threads
WRK_BUSY=()

# run KIND MODE: one wrk run of KIND (single or ndjson) against the collector of MODE. Records
# the wrk rate, the rate from cx_events_received_total, and the collector's CPU time per event
# (from /proc: what the event costs on a core of its own, whatever else the machine runs).
run() {
  local kind=$1 mode=$2 out before after start end ticks_before ticks_after rate events cpu
  local script=benches/wrk-comments-single.lua connections=$CONNECTIONS
  [ "$kind" = ndjson ] && script=benches/wrk-comments-batch.lua && connections=$BATCH_CONNECTIONS
  before=$(metrics "${ADDR[$mode]}" | family_sum cx_events_received_total)
  ticks_before=$(cpu_ticks "${PID_OF[$mode]}"); start=$(date +%s.%N)
  out=$(run_wrk "${FLAG[$mode]}" "$connections" "$script" "http://${ADDR[$mode]}")
  end=$(date +%s.%N); ticks_after=$(cpu_ticks "${PID_OF[$mode]}")
  after=$(metrics "${ADDR[$mode]}" | family_sum cx_events_received_total)
  check_wrk "$kind ($mode)" "$out"
  if [ "$kind" = ndjson ]; then
    [ "$(echo "$out" | field events_rejected)" = 0 ] || { echo "batch events rejected:"; echo "$out"; exit 1; }
    ACKED[$mode]=$((ACKED[$mode] + $(echo "$out" | field events_accepted)))
    rate=$(echo "$out" | requests_per_second | awk -v n="$EVENTS_PER_BATCH" '{printf "%.0f\n", $1 * n}')
  else
    ACKED[$mode]=$((ACKED[$mode] + $(echo "$out" | field responses_2xx)))
    rate=$(echo "$out" | requests_per_second)
  fi
  echo "$rate" >>"$WORK/${kind}_$mode"
  events=$((after - before))
  echo "$before $after $start $end" | awk '{printf "%.0f\n", ($2 - $1) / ($4 - $3)}' >>"$WORK/${kind}_metrics_$mode"
  cpu=$(awk -v t=$((ticks_after - ticks_before)) -v hz="$CLK_TCK" -v n="$events" \
    'BEGIN {if (n > 0) printf "%.3f", t * 1e6 / hz / n; else print 0}')
  echo "$cpu" >>"$WORK/${kind}_cpu_$mode"
  local unit="req/s" extra="" busy
  # The share of its core wrk used (from /usr/bin/time): above 90 %, the rate may be wrk's limit
  # rather than the collector's.
  busy=$(echo "$out" | awk '$1 == "wrk_cpu:" && $4 > 0 {printf "%.0f", 100 * ($2 + $3) / $4}')
  [ -n "$busy" ] && [ "$busy" -gt 90 ] && WRK_BUSY+=("$kind $mode: $busy %")
  [ "$kind" = ndjson ] && unit="events/s" && extra=", $(echo "$out" | field batch_bytes) bytes a batch"
  echo "  ${LABEL[$mode]}: $kind $unit $rate (cx_events_received_total, incl. wrk start-up:" \
    "$(tail -1 "$WORK/${kind}_metrics_$mode"); collector CPU $cpu µs/event$extra; wrk ${busy:-?} % of its core)"
}
for round in $(seq "$ROUNDS"); do
  order="plain comments"; [ $((round % 2)) = 0 ] && order="comments plain"
  echo "==> round $round/$ROUNDS ($order)"
  for mode in $order; do run single "$mode"; done
  for mode in $order; do run ndjson "$mode"; done
done

kill "$SAMPLER_PID" 2>/dev/null || true
hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
HWM_PLAIN=$(hwm "$PLAIN_PID"); HWM_COMMENTS=$(hwm "$COMMENTS_PID")
RSS_PLAIN=$(cat "$WORK/rss_peak_$PLAIN_PID" 2>/dev/null || echo 0)
RSS_COMMENTS=$(cat "$WORK/rss_peak_$COMMENTS_PID" 2>/dev/null || echo 0)

# --- cross-check against /metrics ---------------------------------------------------------------
metrics "$COMMENTS_ADDR" >"$WORK/end_comments.prom"
metrics "$PLAIN_ADDR" >"$WORK/end_plain.prom"
delta() { # delta FAMILY MODE: the family's sum over the load
  echo $(($(family_sum "$1" <"$WORK/end_$2.prom") - $(family_sum "$1" <"$WORK/base_$2.prom")))
}
COMMENTS_COUNTED=$(delta cx_feedback_comments_total comments)
RECEIVED_COMMENTS=$(delta cx_events_received_total comments)
THEMES_COUNTED=$(delta cx_feedback_themes_total comments)
REJECTED_COMMENTS=$(delta cx_events_rejected_total comments)
PLAIN_COMMENTS=$(family_sum cx_feedback_comments_total <"$WORK/end_plain.prom")
PLAIN_RECEIVED=$(delta cx_events_received_total plain)
REJECTED_PLAIN=$(family_sum cx_events_rejected_total <"$WORK/end_plain.prom")
# Requests wrk had sent but not seen answered when it stopped: at most one per connection per run.
IN_FLIGHT=$((ROUNDS * (CONNECTIONS + BATCH_CONNECTIONS * EVENTS_PER_BATCH)))
UNSEEN=$((COMMENTS_COUNTED - ACKED[comments]))

echo
echo "==> cross-check with /metrics (the load only, after the pre-flight)"
echo "  with comments: cx_feedback_comments_total $COMMENTS_COUNTED, cx_events_received_total $RECEIVED_COMMENTS," \
  "events wrk saw acknowledged ${ACKED[comments]} (2xx single events + accepted of the batch answers)"
echo "  with comments: cx_feedback_themes_total $THEMES_COUNTED" \
  "($(percent "$THEMES_COUNTED" "$((COMMENTS_COUNTED * 100))") themes per comment; the table's comments average" \
  "$TABLE_THEMES_PER_COMMENT), cx_events_rejected_total $REJECTED_COMMENTS"
theme_counts <"$WORK/base_comments.prom" >"$WORK/themes_base"
metrics_themes=$(theme_counts <"$WORK/end_comments.prom" | join - "$WORK/themes_base" |
  awk '{printf "%s%s %d", (NR > 1 ? ", " : ""), $1, $2 - $3}')
echo "  with comments, by theme: $metrics_themes"
echo "  without comments: cx_events_received_total $PLAIN_RECEIVED (wrk saw ${ACKED[plain]} acknowledged)," \
  "cx_feedback_comments_total $PLAIN_COMMENTS, cx_events_rejected_total $REJECTED_PLAIN"
FAILED=()
[ "$COMMENTS_COUNTED" -gt 0 ] || FAILED+=("no comment counted")
[ "$COMMENTS_COUNTED" = "$RECEIVED_COMMENTS" ] ||
  FAILED+=("comments counted ($COMMENTS_COUNTED) != events received ($RECEIVED_COMMENTS), yet every event had a comment")
if [ "$UNSEEN" = 0 ]; then
  echo "  comments counted = events wrk saw acknowledged: exact"
elif [ "$UNSEEN" -gt 0 ] && [ "$UNSEEN" -le "$IN_FLIGHT" ]; then
  echo "  comments counted = events wrk saw acknowledged + $UNSEEN sent in requests still in flight when wrk" \
    "stopped (at most $IN_FLIGHT: one request per connection per run)"
else
  FAILED+=("comments counted ($COMMENTS_COUNTED) - events acknowledged (${ACKED[comments]}) = $UNSEEN, outside [0, $IN_FLIGHT]")
fi
[ "$THEMES_COUNTED" -gt 0 ] || FAILED+=("no theme counted")
[ "$PLAIN_COMMENTS" = 0 ] || FAILED+=("the collector without comments counted $PLAIN_COMMENTS comments")
[ "$REJECTED_COMMENTS" = 0 ] && [ "$REJECTED_PLAIN" = 0 ] || FAILED+=("events rejected")

# --- results ------------------------------------------------------------------------------------
single_plain=$(median <"$WORK/single_plain"); single_comments=$(median <"$WORK/single_comments")
ndjson_plain=$(median <"$WORK/ndjson_plain"); ndjson_comments=$(median <"$WORK/ndjson_comments")
ndjson_metrics_plain=$(median <"$WORK/ndjson_metrics_plain")
ndjson_metrics_comments=$(median <"$WORK/ndjson_metrics_comments")
single_ratio=$(percent "$single_comments" "$single_plain")
ndjson_ratio=$(percent "$ndjson_comments" "$ndjson_plain")
ndjson_metrics_ratio=$(percent "$ndjson_metrics_comments" "$ndjson_metrics_plain")
cpu_single_plain=$(median <"$WORK/single_cpu_plain"); cpu_single_comments=$(median <"$WORK/single_cpu_comments")
cpu_ndjson_plain=$(median <"$WORK/ndjson_cpu_plain"); cpu_ndjson_comments=$(median <"$WORK/ndjson_cpu_comments")
# Without / with CPU per event: the throughput ratio a core of its own would give.
cpu_single_ratio=$(percent "$cpu_single_plain" "$cpu_single_comments")
cpu_ndjson_ratio=$(percent "$cpu_ndjson_plain" "$cpu_ndjson_comments")
hwm_ratio=$(percent "$HWM_COMMENTS" "$HWM_PLAIN")
rss_ratio=$(percent "$RSS_COMMENTS" "$RSS_PLAIN")
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
verdict() { # verdict RATIO MIN [MAX]: met / **not met**
  awk -v r="$1" -v lo="$2" -v hi="${3:-1e9}" 'BEGIN {print (r >= lo && r <= hi) ? "met" : "**not met**"}'; }
baseline_config="no comment settings, no themes"
[ "$BASELINE_THEMES" = 1 ] && baseline_config="the same themes, no maxCommentBytes"

echo
echo "==> results: median of $ROUNDS runs, wrk -t$THREADS -d$DURATION, each collector on 1 core (CPU $SERVER_CPUS), wrk on CPU $WRK_CPUS"
echo
echo "| Workload | Without comments | With comments and themes | With / without | Target |"
echo "|---|---|---|---|---|"
echo "| Single events, \`-c$CONNECTIONS\`, req/s | $(thousands "$single_plain") | $(thousands "$single_comments") | **$single_ratio %** | ≥ 85 %: $(verdict "$single_ratio" 85) |"
echo "| NDJSON batches of $(thousands "$EVENTS_PER_BATCH"), \`-c$BATCH_CONNECTIONS\`, events/s | $(thousands "$ndjson_plain") | $(thousands "$ndjson_comments") | **$ndjson_ratio %** | ≥ 70 %: $(verdict "$ndjson_ratio" 70) |"
echo "| NDJSON events/s from \`cx_events_received_total\` (incl. wrk start-up) | $(thousands "$ndjson_metrics_plain") | $(thousands "$ndjson_metrics_comments") | $ndjson_metrics_ratio % | |"
echo "| Collector CPU per single event, µs (from /proc; the ratio is without / with) | $cpu_single_plain | $cpu_single_comments | $cpu_single_ratio % | |"
echo "| Collector CPU per NDJSON event, µs (idem) | $cpu_ndjson_plain | $cpu_ndjson_comments | $cpu_ndjson_ratio % | |"
echo "| Peak RSS (VmHWM), MiB | $(mib "$HWM_PLAIN") | $(mib "$HWM_COMMENTS") | **$hwm_ratio %** | within 10 %: $(verdict "$hwm_ratio" 90 110) |"
echo "| Peak VmRSS sampled every 100 ms, MiB | $(mib "$RSS_PLAIN") | $(mib "$RSS_COMMENTS") | $rss_ratio % | |"
echo
echo "| What | Command | Result |"
echo "|---|---|---|"
echo "| Collector with comments and themes (~300-byte Italian/English comments on every event, $(grep -c '^  - name:' "$WORK/themes.yaml") themes, ~$TABLE_THEMES_PER_COMMENT matched a comment) vs the same binary without (configuration: $baseline_config; events without comments), same \`wrk -t$THREADS -c$CONNECTIONS -d$DURATION\` (NDJSON: \`-c$BATCH_CONNECTIONS\`, $(thousands "$EVENTS_PER_BATCH") events per batch), each collector a fresh process pinned to one core, median of $ROUNDS interleaved runs | \`$COMMAND\` (needs \`apt-get install wrk\`) | single events $(thousands "$single_plain") vs $(thousands "$single_comments") req/s: **$single_ratio %** (target ≥ 85 %: $(verdict "$single_ratio" 85)); NDJSON $(thousands "$ndjson_plain") vs $(thousands "$ndjson_comments") events/s: **$ndjson_ratio %** (target ≥ 70 %: $(verdict "$ndjson_ratio" 70)); collector CPU per event without / with: single $cpu_single_ratio %, NDJSON $cpu_ndjson_ratio %; peak RSS (VmHWM) $(mib "$HWM_PLAIN") vs $(mib "$HWM_COMMENTS") MiB: **$hwm_ratio %** (target within 10 %: $(verdict "$hwm_ratio" 90 110)); $(thousands "$COMMENTS_COUNTED") comments and $(thousands "$THEMES_COUNTED") theme matches counted |"
echo
echo "Reproduce: $COMMAND"
[ "${#WRK_BUSY[@]}" = 0 ] ||
  echo "note: wrk used more than 90 % of its core in some runs (${WRK_BUSY[*]}): those rates may be wrk's limit"
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
echo "load average at the end: $LOAD on $(nproc) CPUs (other work on CPU $SERVER_CPUS lowers both rates; the CPU per event is less sensitive to it)"
[ "$PREFLIGHT_MISMATCHES" = 0 ] ||
  echo "note: $PREFLIGHT_MISMATCHES of the table's $TABLE_COMMENTS comments were counted for other themes than the table expects (see the pre-flight above)"
if [ "${#FAILED[@]}" -gt 0 ]; then
  printf 'cross-check FAILED: %s\n' "${FAILED[@]}" >&2
  exit 1
fi
echo "cross-check passed"
