#!/usr/bin/env bash
# The previous release of cx-conductor (binary and chart), for the upgrade test
# (tests/operator_upgrade.rs): the sources of a pinned commit of this repository's history,
# built once and cached outside the repository like the control plane.
#
#   scripts/previous-release.sh build   build the binary if not cached yet (a debug build with its
#                                       own target folder: about 6 minutes cold on 2 cores)
#   scripts/previous-release.sh dir     print the folder holding `cx-conductor` and `chart/`
#   scripts/previous-release.sh commit  print the pinned commit
#
# Settings (environment): CX_CLUSTER_CACHE (cache root, default ~/.cache/cx-conductor, shared
# with scripts/cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# The last commit that landed (its CI passed): the chart and operator users run before upgrading.
# Move it forward when a release lands.
PREVIOUS_COMMIT=89589e3bdf1e134ace3fffdb6356be042472e2e8

CACHE_ROOT=${CX_CLUSTER_CACHE:-$HOME/.cache/cx-conductor}
DIR=$CACHE_ROOT/previous-release-${PREVIOUS_COMMIT:0:12}

die() {
  echo "previous-release.sh: $*" >&2
  exit 1
}

cmd_build() {
  if [ -x "$DIR/cx-conductor" ] && [ -f "$DIR/chart/Chart.yaml" ] && [ -f "$DIR/.complete" ]; then
    return 0
  fi
  git cat-file -e "$PREVIOUS_COMMIT^{commit}" 2>/dev/null ||
    die "commit $PREVIOUS_COMMIT is not in this clone's history (a shallow clone?); fetch it with 'git fetch --unshallow'"
  rm -rf "$DIR"
  mkdir -p "$DIR/src"
  git archive "$PREVIOUS_COMMIT" | tar -x -C "$DIR/src"
  cp -r "$DIR/src/charts/cx-conductor" "$DIR/chart"
  local log=$CACHE_ROOT/build-previous-release-${PREVIOUS_COMMIT:0:12}.log
  local started=$SECONDS
  echo "==> building cx-conductor at ${PREVIOUS_COMMIT:0:12} (log: $log)" >&2
  # No debug info: the binary only runs; the build is smaller and faster.
  if ! (cd "$DIR/src" && CARGO_TARGET_DIR="$DIR/target" CARGO_PROFILE_DEV_DEBUG=0 \
    cargo build --locked --bin cx-conductor) >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "building the previous release failed; full log in $log"
  fi
  cp "$DIR/target/debug/cx-conductor" "$DIR/cx-conductor"
  rm -rf "$DIR/target"
  touch "$DIR/.complete"
  echo "    previous release built in $((SECONDS - started)) s into $DIR" >&2
}

locked() {
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/.previous-release-lock"
  flock 9
  "$@"
}

case "${1:-}" in
build) locked cmd_build ;;
dir) echo "$DIR" ;;
commit) echo "$PREVIOUS_COMMIT" ;;
*)
  echo "usage: $0 build|dir|commit" >&2
  exit 2
  ;;
esac
