#!/usr/bin/env bash
# Runs the end-to-end tests (test/e2e) on the local cluster. A cluster that was already running
# is used and left running; one this script started is stopped again afterwards (and
# `cluster.sh down` checks that nothing of it is left), unless KEEP_CLUSTER=1.
source "$(dirname "$0")/lib.sh"

if [ "$(id -u)" -ne 0 ]; then
  echo "!!! SKIPPED: end-to-end tests need root to run the local cluster (kubelet, containerd, iptables); CI runs them as root"
  exit 0
fi

cd "$REPO_ROOT"
# A cluster with any live component is somebody's: repair it with `up` and leave it running.
# With none alive, this run owns the cluster: it clears what a dead one left behind (mounts,
# rules, network namespaces of a machine whose processes were killed), starts a fresh one,
# and stops it at the end.
started=1
for pidfile in "$CLUSTER_DIR"/pids/*.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then started=0; fi
done
if [ "$started" -eq 1 ] && [ -d "$CLUSTER_DIR" ]; then
  log "clearing what a stopped cluster left in $CLUSTER_DIR"
  hack/cluster.sh down
fi
hack/cluster.sh up >/dev/null
# The dashboard's end-to-end test loads its pages in Debian's headless Chromium.
hack/ensure-packages.sh chromium
# The tracing test sends spans to a real Jaeger, built once from its Go module.
hack/build-jaeger.sh >/dev/null
# The stat test through Prometheus queries a real Prometheus, built the same way.
hack/build-prometheus.sh >/dev/null
make --no-print-directory images

status=0
# E2E_RUN selects tests by name (go test -run), as make bench-controlplane does.
KUBECONFIG="$CLUSTER_KUBECONFIG" KUBECTL="$KUBE_BIN_DIR/kubectl" \
  go test -count=1 -tags e2e -timeout 60m -v ${E2E_RUN:+-run "$E2E_RUN"} ./test/e2e/... || status=$?

if [ "$status" -ne 0 ]; then
  # The cluster's logs go with it when it is stopped: show their ends now.
  for f in "$CLUSTER_DIR"/logs/*.log; do
    echo "----- last lines of $f"
    tail -n 15 "$f"
  done
fi

if [ "$started" -eq 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
  log "stopping the cluster this run started (KEEP_CLUSTER=1 keeps it)"
  hack/cluster.sh down || status=1
fi
exit "$status"
