#!/usr/bin/env bash
# demo.sh up|down: the seed's microservices, meshed by lightmesh (make demo / make demo-down).
#
# up: uses the cluster of $KUBECONFIG when one answers, else starts the local cluster
# (hack/cluster.sh); builds the binaries and images (imported into the local cluster's
# containerd); installs the control plane with the ingress gateway (or upgrades the one
# there), meshes the demo app
# (demo/manifests through `mesh inject`), applies the seed's Istio files when their CRDs are
# served, waits for every rollout, and shows `mesh check` and `mesh stat` with traffic
# flowing. Everything keeps running. A second run reuses what is there.
#
# down: removes the demo namespace and the control plane `up` installed; the local cluster
# keeps running (`make cluster-down` stops it).
#
# Each step prints its elapsed time; a failing step names itself and its log file.
source "$(dirname "$0")/lib.sh"

cd "$REPO_ROOT"
DEMO_NS=microservices
MESH_NS="${DEMO_MESH_NAMESPACE:-lightmesh}"
LOG_DIR="${DEMO_LOG_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/lightmesh/demo}"
ROLLOUT_TIMEOUT="${DEMO_ROLLOUT_TIMEOUT:-300}"
STAT_TIMEOUT="${DEMO_STAT_TIMEOUT:-120}"
# Extra `mesh install` flags, e.g. DEMO_INSTALL_ARGS='--set tracing.enabled=true'.
read -r -a INSTALL_ARGS <<< "${DEMO_INSTALL_ARGS:-}"
MESH="$REPO_ROOT/bin/mesh"
mkdir -p "$LOG_DIR"

demo_start=$(date +%s)
# step NAME CMD...: runs CMD with its output in $LOG_DIR/NAME.log and prints the elapsed time;
# on failure it names the step and shows the end of its log.
step() {
  local name="$1"; shift
  local logfile="$LOG_DIR/$name.log" start
  start=$(date +%s)
  printf '==> %-28s ' "$name" >&2
  if "$@" >"$logfile" 2>&1; then
    printf 'ok (%ss, total %ss)\n' "$(( $(date +%s) - start ))" "$(( $(date +%s) - demo_start ))" >&2
    return 0
  fi
  printf 'FAILED after %ss\n' "$(( $(date +%s) - start ))" >&2
  echo "---- step '$name' failed; last lines of $logfile:" >&2
  tail -n 25 "$logfile" >&2
  echo "---- full log: $logfile" >&2
  exit 1
}

# The cluster: $KUBECONFIG's when it answers, else the local one.
pick_cluster() {
  if [ -n "${KUBECONFIG:-}" ] && kubectl_cmd version --request-timeout=5s >/dev/null 2>&1; then
    echo "using the cluster of KUBECONFIG=$KUBECONFIG"
    return 0
  fi
  echo "no cluster answers in KUBECONFIG; starting the local cluster"
  hack/cluster.sh up
}

kubectl_cmd() {
  if command -v kubectl >/dev/null 2>&1; then kubectl "$@"; else "$KUBE_BIN_DIR/kubectl" "$@"; fi
}

local_cluster() { [ "${KUBECONFIG:-}" = "$CLUSTER_KUBECONFIG" ]; }

build_all() {
  make --no-print-directory build
  if local_cluster; then
    make --no-print-directory images
  else
    echo "not the local cluster: images are not imported; push them to a registry your cluster pulls from (make docker-images)"
  fi
}

installed() { kubectl_cmd get namespace "$MESH_NS" >/dev/null 2>&1 && kubectl_cmd -n "$MESH_NS" get deploy lightmesh-controller >/dev/null 2>&1; }

install_mesh() {
  if installed; then
    echo "lightmesh is installed in $MESH_NS: upgrading it, and restarting it on the images just built"
    "$MESH" upgrade --ingress --control-plane-namespace "$MESH_NS" "${INSTALL_ARGS[@]}" | kubectl_cmd apply -f -
    # The images keep their tag from build to build: restart so the new ones run.
    kubectl_cmd -n "$MESH_NS" rollout restart deploy/lightmesh-controller deploy/lightmesh-ingress
  else
    "$MESH" install --ingress --set namespace="$MESH_NS" "${INSTALL_ARGS[@]}" | kubectl_cmd apply -f -
  fi
  kubectl_cmd -n "$MESH_NS" rollout status deploy/lightmesh-controller --timeout="${ROLLOUT_TIMEOUT}s"
  kubectl_cmd -n "$MESH_NS" rollout status deploy/lightmesh-ingress --timeout="${ROLLOUT_TIMEOUT}s"
}

check_mesh() {
  "$MESH" check --control-plane-namespace "$MESH_NS" --wait 2m
}

mesh_demo() {
  local existed=0
  kubectl_cmd get namespace "$DEMO_NS" >/dev/null 2>&1 && existed=1
  kubectl_cmd apply -f demo/manifests/00-namespace.yaml
  "$MESH" inject demo/manifests/ | kubectl_cmd apply -f -
  if [ "$existed" -eq 1 ]; then
    # A second run: restart the demo so its pods get the proxy just built.
    kubectl_cmd -n "$DEMO_NS" rollout restart deploy
  fi
}

# The seed's Istio files need their CRDs (installed by mesh install).
apply_istio() {
  local missing=0 crd
  for crd in virtualservices.networking.istio.io destinationrules.networking.istio.io \
    gateways.networking.istio.io peerauthentications.security.istio.io \
    authorizationpolicies.security.istio.io; do
    kubectl_cmd get crd "$crd" >/dev/null 2>&1 || { echo "CRD $crd is not served"; missing=1; }
  done
  if [ "$missing" -eq 1 ]; then
    echo "the seed's Istio files are not applied: this mesh install does not serve their CRDs"
    return 0
  fi
  kubectl_cmd apply -n "$DEMO_NS" -f demo/istio/
}

wait_rollouts() {
  local d
  for d in user-service-v1 user-service-v2 order-service traffic; do
    kubectl_cmd -n "$DEMO_NS" rollout status "deploy/$d" --timeout="${ROLLOUT_TIMEOUT}s"
  done
}

# mesh stat shows every demo deployment meshed with traffic once the stats service has
# scraped a few windows.
stat_has_traffic() {
  local table
  table=$("$MESH" stat deploy -n "$DEMO_NS" --control-plane-namespace "$MESH_NS" 2>/dev/null) || return 1
  # NAME MESHED SUCCESS RPS ...: every demo deployment meshed (n/n, n > 0), and the three services
  # (user-service v1 and v2, order-service) with a non-zero request rate.
  echo "$table" | awk '
    $1 == "user-service-v1" || $1 == "user-service-v2" || $1 == "order-service" || $1 == "traffic" {
      split($2, m, "/"); rps = $4; sub(/rps$/, "", rps)
      meshed = m[1] > 0 && m[1] == m[2]
      if (meshed && ($1 == "traffic" || (rps != "-" && rps + 0 > 0))) ok[$1] = 1
    }
    END { exit (("user-service-v1" in ok) && ("user-service-v2" in ok) && ("order-service" in ok) && ("traffic" in ok)) ? 0 : 1 }'
}

wait_traffic() {
  wait_for "mesh stat to show traffic on the demo deployments" "$STAT_TIMEOUT" stat_has_traffic
  "$MESH" stat deploy -n "$DEMO_NS" --control-plane-namespace "$MESH_NS"
}

up() {
  step cluster pick_cluster
  if [ -z "${KUBECONFIG:-}" ] || ! kubectl_cmd version --request-timeout=5s >/dev/null 2>&1; then
    export KUBECONFIG="$CLUSTER_KUBECONFIG"
  fi
  step build build_all
  step install install_mesh
  step check check_mesh
  step inject-demo mesh_demo
  step wait-demo wait_rollouts
  step seed-istio-policies apply_istio
  step traffic wait_traffic

  echo
  "$MESH" check --control-plane-namespace "$MESH_NS" || true
  echo
  "$MESH" stat deploy -n "$DEMO_NS" --control-plane-namespace "$MESH_NS"
  echo
  local node_ip node_port
  node_ip=$(kubectl_cmd get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}')
  node_port=$(kubectl_cmd -n "$MESH_NS" get service lightmesh-ingress -o jsonpath='{.spec.ports[0].nodePort}')
  cat <<EOF
The demo is running (KUBECONFIG=$KUBECONFIG). Logs of each step: $LOG_DIR
  curl http://$node_ip:$node_port/api/orders/1  through the ingress gateway (the seed's Gateway)
  bin/mesh stat deploy -n $DEMO_NS        golden metrics per deployment
  kubectl -n $DEMO_NS logs -f deploy/traffic   what the traffic generator sees
  bin/mesh dashboard                       the dashboard: serves http://localhost:50750 until Ctrl-C
Stop it with 'make demo-down' (removes the demo and the mesh; 'make cluster-down' stops the
local cluster).
EOF
}

# remove_mesh deletes what mesh uninstall lists (the CRDs too once nothing uses them).
remove_mesh() {
  "$MESH" uninstall --control-plane-namespace "$MESH_NS" | kubectl_cmd delete --ignore-not-found --wait --timeout=120s -f -
}

down() {
  if [ -z "${KUBECONFIG:-}" ]; then export KUBECONFIG="$CLUSTER_KUBECONFIG"; fi
  if ! kubectl_cmd version --request-timeout=5s >/dev/null 2>&1; then
    echo "no cluster answers (KUBECONFIG=$KUBECONFIG): nothing to remove"
    return 0
  fi
  step remove-demo kubectl_cmd delete namespace "$DEMO_NS" --ignore-not-found --wait --timeout=120s
  if installed; then
    step remove-mesh remove_mesh
  fi
  echo "the demo is removed; the cluster keeps running ('make cluster-down' stops the local one)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) die "usage: demo.sh up|down" ;;
esac
