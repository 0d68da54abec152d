#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine, installing what the tests need first.
# This is the README's test command and exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> tools the tests need"
# A real Prometheus (and promtool, same package) for the KPI tests (tests/kpi_*.rs); Chromium
# and a font for the experience-map tests (tests/map*.rs); Java and Maven for the Kafka broker of the
# export tests (tests/export_pipeline.rs).
if ! command -v prometheus >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1 ||
  ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus chromium fonts-dejavu-core \
    default-jre-headless maven
fi
# Kubernetes' schemas, to validate the chart and deploy/ (tests/chart.rs).
python3 -c 'import kubernetes_validate' 2>/dev/null ||
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore kubernetes-validate

# The previous release (binary and chart) for the upgrade test (tests/operator_upgrade.rs), built
# once per pinned commit and cached like the control plane; in the background meanwhile.
bash scripts/previous-release.sh build &
previous_release=$!

# A real control plane (etcd, kube-apiserver with RBAC, controller-manager, scheduler, kwok) and
# the real kubectl and helm, built from Go modules once per version and cached outside the
# repository (~/.cache/cx-conductor); the operator, chart and RBAC tests run against it.
echo "==> control plane"
bash scripts/cluster.sh start >/dev/null
trap 'bash scripts/pipeline.sh stop; bash scripts/cluster.sh stop' EXIT

# The event pipeline of the export tests (an OpenTelemetry Collector from the official builder,
# Kafka from its published jars), cached like the control plane; built in the background while
# Prometheus 3 builds and the lints run. tests/export_pipeline.rs starts it.
echo "==> event pipeline (OpenTelemetry Collector, Kafka), building in the background"
bash scripts/pipeline.sh build &
pipeline_build=$!

# The Prometheus 3 server users run today (Debian's is 2.x), built from Go modules once per version
# and cached like the control plane; the Prometheus tests run against both.
echo "==> Prometheus 3"
bash scripts/prometheus.sh build

wait "$previous_release"

echo "==> formatting and lints"
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings

if ! wait "$pipeline_build"; then
  echo "test.sh: building the event pipeline failed (scripts/pipeline.sh build)" >&2
  exit 1
fi

echo "==> tests"
cargo test --locked --all-targets

echo "==> the Prometheus tests again, on Prometheus 3 (KPIs, rules, dashboards, rollouts)"
CX_PROMETHEUS="$(bash scripts/prometheus.sh path)" CX_PROMTOOL="$(bash scripts/prometheus.sh promtool)" \
  cargo test --locked --test kpi_prometheus --test kpi_history --test operator_kpi --test kpi_rules \
  --test dashboards_live --test collector_rollout
