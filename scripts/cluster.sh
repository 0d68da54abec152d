#!/usr/bin/env bash
# A real Kubernetes control plane on loopback, for the tests and for people.
#
#   scripts/cluster.sh build   build (once per version, cached outside the repository) etcd,
#                              kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
#                              kwok and helm from Go modules
#   scripts/cluster.sh start   build if needed, start everything with RBAC on, a kwok node and the
#                              Prometheus Operator's ServiceMonitor/PrometheusRule CRDs; prints the
#                              admin KUBECONFIG path
#   scripts/cluster.sh env     print `export KUBECONFIG=... PATH=...` for a running control plane
#   scripts/cluster.sh stop    stop every process started by `start` and remove its state
#
# Settings (environment): CX_CLUSTER_CACHE (binaries, default ~/.cache/cx-conductor),
# CX_CLUSTER_DIR (state of a running plane, default $TMPDIR/cx-conductor-cluster),
# CX_CLUSTER_PORT (apiserver port, default 16443).
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0
# The newest release of the root module the proxy serves (its example/ folder holds the CRDs).
PROMETHEUS_OPERATOR_VERSION=v0.85.0

CACHE_ROOT=${CX_CLUSTER_CACHE:-$HOME/.cache/cx-conductor}
BIN=$CACHE_ROOT/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION-helm-$HELM_VERSION/bin
STATE=${CX_CLUSTER_DIR:-${TMPDIR:-/tmp}/cx-conductor-cluster}
API_PORT=${CX_CLUSTER_PORT:-16443}
ETCD_PORT=$((API_PORT + 1))
ETCD_PEER_PORT=$((API_PORT + 2))

die() {
  echo "cluster.sh: $*" >&2
  exit 1
}
step() { echo "==> $*" >&2; }

need_go() {
  command -v go >/dev/null 2>&1 ||
    die "step 'build': Go is not installed; the control plane is built from Go modules (Go >= 1.26 needed)"
}

# Runs a build step, naming it when it fails.
build_step() {
  local name=$1
  shift
  local log=$CACHE_ROOT/build-$name.log
  local started=$SECONDS
  step "building $name (log: $log)"
  if ! "$@" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "step 'build $name' failed; full log in $log"
  fi
  echo "    $name built in $((SECONDS - started)) s" >&2
}

build_kubernetes() {
  local dir=$CACHE_ROOT/src/kubernetes-$K8S_VERSION
  mkdir -p "$dir"
  cd "$dir"
  # k8s.io/kubernetes replaces its staging modules with ./staging/src/...: a scratch module that
  # requires it and replaces each staging module with its published tag (kubernetes#79384).
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  [ -f "$gomod" ] || return 1
  local staging_tag=v0.${K8S_VERSION#v1.}
  rm -f go.mod go.sum
  go mod init cx-conductor-cluster-build
  go mod edit -require="k8s.io/kubernetes@$K8S_VERSION"
  local module
  for module in $(sed -n 's#^\s*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$gomod"); do
    go mod edit -replace="$module=$module@$staging_tag"
  done
  local flags="" pkg
  local major=${K8S_VERSION#v}
  major=${major%%.*}
  local minor=${K8S_VERSION#v*.}
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitCommit=0000000000000000000000000000000000000000 -X $pkg.gitTreeState=clean"
    flags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  CGO_ENABLED=0 go build -mod=mod -trimpath -pgo=off -tags selinux,notest -ldflags "-s -w $flags" \
    -o "$BIN.partial/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
}

build_etcd() {
  local dir=$CACHE_ROOT/src/etcd-$ETCD_VERSION
  mkdir -p "$dir"
  cd "$dir"
  rm -f go.mod go.sum
  go mod init cx-conductor-etcd-build
  go mod edit -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  local module
  for module in go.etcd.io/etcd/api/v3 go.etcd.io/etcd/client/pkg/v3 go.etcd.io/etcd/client/v3 go.etcd.io/etcd/pkg/v3; do
    go mod edit -replace="$module=$module@$ETCD_VERSION"
  done
  CGO_ENABLED=0 go build -mod=mod -trimpath -ldflags "-s -w" -o "$BIN.partial/etcd" go.etcd.io/etcd/server/v3
}

build_kwok() {
  CGO_ENABLED=0 GOBIN="$BIN.partial" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # kwok has no stages built in: take the ones its module ships.
  local moddir
  moddir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  local stage first=1
  : >"$BIN.partial/kwok-stages.yaml"
  for stage in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    [ -f "$moddir/kustomize/stage/$stage" ] || return 1
    [ $first = 1 ] || echo "---" >>"$BIN.partial/kwok-stages.yaml"
    first=0
    cat "$moddir/kustomize/stage/$stage" >>"$BIN.partial/kwok-stages.yaml"
  done
}

build_helm() {
  CGO_ENABLED=0 GOBIN="$BIN.partial" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

fetch_prometheus_operator_crds() {
  local moddir
  moddir=$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
    sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  local crd
  for crd in servicemonitors prometheusrules; do
    cp "$moddir/example/prometheus-operator-crd/monitoring.coreos.com_$crd.yaml" "$BIN.partial/" || return 1
  done
}

cmd_build() {
  if [ -x "$BIN/kube-apiserver" ] && [ -f "$BIN/.complete" ]; then
    return 0
  fi
  need_go
  mkdir -p "$CACHE_ROOT" "$BIN.partial"
  local started=$SECONDS
  [ -x "$BIN.partial/etcd" ] || build_step etcd build_etcd
  [ -x "$BIN.partial/kube-apiserver" ] || build_step kubernetes build_kubernetes
  [ -x "$BIN.partial/kwok" ] || build_step kwok build_kwok
  [ -x "$BIN.partial/helm" ] || build_step helm build_helm
  build_step prometheus-operator-crds fetch_prometheus_operator_crds
  touch "$BIN.partial/.complete"
  rm -rf "$BIN"
  mv "$BIN.partial" "$BIN"
  echo "    control plane built in $((SECONDS - started)) s into $BIN" >&2
}

# --- running it ---------------------------------------------------------------------------------

kubeconfig() { echo "$STATE/admin.kubeconfig"; }

running() {
  [ -f "$STATE/pids" ] || return 1
  local pid
  while read -r _ pid; do
    kill -0 "$pid" 2>/dev/null || return 1
  done <"$STATE/pids"
  curl -fsS --cacert "$STATE/pki/ca.crt" -H "Authorization: Bearer $(cat "$STATE/admin.token")" \
    "https://127.0.0.1:$API_PORT/readyz" >/dev/null 2>&1
}

# Certificates: one CA, a serving certificate for 127.0.0.1/localhost, a service-account key.
# People and tests authenticate with a static admin token (group system:masters), which keeps
# kubeconfigs, helm and the tests' fault proxy simple.
make_pki() {
  local pki=$STATE/pki
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=cx-conductor-test-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' >"$pki/ext.cnf"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -extfile "$pki/ext.cnf" -out "$pki/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$STATE/admin.token"
  echo "$(cat "$STATE/admin.token"),cx-admin,cx-admin,system:masters" >"$pki/tokens.csv"
  cat >"$(kubeconfig)" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: cx-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority: $pki/ca.crt
users:
- name: cx-admin
  user:
    token: $(cat "$STATE/admin.token")
contexts:
- name: cx-test
  context: {cluster: cx-test, user: cx-admin}
current-context: cx-test
YAML
}

launch() {
  local name=$1
  shift
  # Not holding the lock of this script (fd 9) while running.
  "$@" >"$STATE/logs/$name.log" 2>&1 9>&- &
  echo "$name $!" >>"$STATE/pids"
}

wait_for() {
  local what=$1 timeout=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    local name pid
    while read -r name pid; do
      if ! kill -0 "$pid" 2>/dev/null; then
        tail -n 20 "$STATE/logs/$name.log" >&2 || true
        die "step 'start': $name exited while waiting for $what (log: $STATE/logs/$name.log)"
      fi
    done <"$STATE/pids"
    if [ $SECONDS -ge $deadline ]; then
      tail -n 20 "$STATE/logs/"*.log >&2 || true
      die "step 'start': $what not ready after ${timeout}s (logs in $STATE/logs)"
    fi
    sleep 0.5
  done
}

kubectl_admin() { "$BIN/kubectl" --kubeconfig "$(kubeconfig)" "$@"; }

cmd_start() {
  if running; then
    kubeconfig
    return 0
  fi
  cmd_stop >/dev/null 2>&1 || true
  cmd_build
  command -v openssl >/dev/null 2>&1 || die "step 'start': openssl is needed to make the test certificates"
  command -v curl >/dev/null 2>&1 || die "step 'start': curl is needed to wait for the API server"
  local started=$SECONDS
  rm -rf "$STATE"
  mkdir -p "$STATE/logs" "$STATE/etcd"
  : >"$STATE/pids"
  make_pki
  local pki=$STATE/pki
  launch etcd "$BIN/etcd" --data-dir "$STATE/etcd" --name cx-test \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "cx-test=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --quota-backend-bytes 2147483648
  wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"
  launch kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --cert-dir "$pki" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
    --authorization-mode RBAC --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.0.0.0/16 --allow-privileged=true --endpoint-reconciler-type none \
    --enable-admission-plugins NamespaceLifecycle,ServiceAccount,DefaultStorageClass,ResourceQuota
  wait_for kube-apiserver 120 curl -fsS --cacert "$pki/ca.crt" -H "Authorization: Bearer $(cat "$STATE/admin.token")" \
    "https://127.0.0.1:$API_PORT/readyz"
  launch kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$(kubeconfig)" \
    --leader-elect=false --use-service-account-credentials=false --secure-port=0 \
    --controllers garbage-collector-controller,deployment-controller,replicaset-controller,namespace-controller,serviceaccount-controller \
    --concurrent-deployment-syncs 10 --concurrent-replicaset-syncs 10 --concurrent-gc-syncs 10
  launch kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$(kubeconfig)" --leader-elect=false --secure-port=0
  launch kwok "$BIN/kwok" --kubeconfig "$(kubeconfig)" --config "$BIN/kwok-stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --server-address "127.0.0.1:$((API_PORT + 3))"
  kubectl_admin apply --server-side -f "$BIN/monitoring.coreos.com_servicemonitors.yaml" \
    -f "$BIN/monitoring.coreos.com_prometheusrules.yaml" >/dev/null
  kubectl_admin apply -f - >/dev/null <<'YAML'
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-0
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: kwok-node-0, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
spec: {}
status:
  allocatable: {cpu: "1000", memory: 4Ti, pods: "10000"}
  capacity: {cpu: "1000", memory: 4Ti, pods: "10000"}
YAML
  wait_for "the kwok node" 60 sh -c "'$BIN/kubectl' --kubeconfig '$(kubeconfig)' get node kwok-node-0 -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -q True"
  # Node admission taints a new node not-ready; without a node lifecycle controller nobody lifts it.
  kubectl_admin taint nodes kwok-node-0 node.kubernetes.io/not-ready:NoSchedule- >/dev/null 2>&1 || true
  wait_for "the default ServiceAccount" 60 kubectl_admin -n default get serviceaccount default
  echo "    control plane up in $((SECONDS - started)) s: etcd, kube-apiserver (RBAC), kube-controller-manager, kube-scheduler, kwok" >&2
  kubeconfig
}

cmd_stop() {
  if [ -f "$STATE/pids" ]; then
    local name pid
    while read -r name pid; do
      kill "$pid" 2>/dev/null || true
    done <"$STATE/pids"
    for _ in $(seq 1 50); do
      local alive=0
      while read -r name pid; do
        if kill -0 "$pid" 2>/dev/null; then alive=1; fi
      done <"$STATE/pids"
      [ $alive = 1 ] || break
      sleep 0.2
    done
    while read -r name pid; do
      kill -9 "$pid" 2>/dev/null || true
    done <"$STATE/pids"
  fi
  rm -rf "$STATE"
}

cmd_env() {
  running || die "step 'env': no control plane is running (scripts/cluster.sh start)"
  echo "export KUBECONFIG=$(kubeconfig)"
  echo "export PATH=$BIN:\$PATH"
}

# One build or start at a time (test binaries and people may ask concurrently).
locked() {
  mkdir -p "$CACHE_ROOT"
  exec 9>"$CACHE_ROOT/.lock"
  flock 9
  "$@"
}

case "${1:-}" in
build) locked cmd_build ;;
start) locked cmd_start ;;
stop) locked cmd_stop ;;
env) cmd_env ;;
bin) echo "$BIN" ;;
*)
  echo "usage: $0 build|start|stop|env|bin" >&2
  exit 2
  ;;
esac
