#!/usr/bin/env bash
# The Prometheus 3 server users run today, built from Go modules once per version and cached
# outside the repository (Debian's package is 2.x; the tests run against both).
#
#   scripts/prometheus.sh build   build prometheus and promtool if not cached yet (about 9 minutes
#                                 cold on 2 cores)
#   scripts/prometheus.sh path    print the server's path (after build)
#   scripts/prometheus.sh promtool  print promtool's path (after build)
#
# Settings (environment): CX_CLUSTER_CACHE (cache root, default ~/.cache/cx-conductor, shared
# with scripts/cluster.sh).
set -euo pipefail

# Module versions v0.3XX.Y are Prometheus 3.XX.Y.
PROMETHEUS_MODULE_VERSION=v0.316.0
PROMETHEUS_VERSION=3.16.0

CACHE_ROOT=${CX_CLUSTER_CACHE:-$HOME/.cache/cx-conductor}
DIR=$CACHE_ROOT/prometheus-$PROMETHEUS_MODULE_VERSION
BINARY=$DIR/prometheus

die() {
  echo "prometheus.sh: $*" >&2
  exit 1
}

cmd_build() {
  if [ -x "$BINARY" ] && [ -x "$DIR/promtool" ] && [ -f "$DIR/.complete" ]; then
    return 0
  fi
  command -v go >/dev/null 2>&1 || die "Go is not installed; Prometheus 3 is built from Go modules"
  mkdir -p "$DIR"
  local log=$CACHE_ROOT/build-prometheus-$PROMETHEUS_MODULE_VERSION.log
  local started=$SECONDS
  echo "==> building Prometheus $PROMETHEUS_VERSION (log: $log)" >&2
  # The version is stamped so that /api/v1/status/buildinfo reports it; no UI assets (the tests
  # use the HTTP API only).
  if ! CGO_ENABLED=0 GOBIN=$DIR go install -trimpath \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
    "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_MODULE_VERSION" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_MODULE_VERSION" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "building Prometheus failed; full log in $log"
  fi
  touch "$DIR/.complete"
  echo "    Prometheus $PROMETHEUS_VERSION built in $((SECONDS - started)) s into $BINARY" >&2
}

locked() {
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/.prometheus-lock"
  flock 9
  "$@"
}

case "${1:-}" in
build) locked cmd_build ;;
path) echo "$BINARY" ;;
promtool) echo "$DIR/promtool" ;;
*)
  echo "usage: $0 build|path|promtool" >&2
  exit 2
  ;;
esac
