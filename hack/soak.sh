#!/usr/bin/env bash
# soak.sh: what `make soak` runs (not part of `make test`). A long run under steady load with
# churn, recording the resident memory, open file descriptors and goroutines of every proxy
# and of the controller every minute (hack/soakwatch), which fails when any grows beyond its
# bound or requests fail.
#
# It installs its own control plane ($SOAK_CP_NAMESPACE, default lm-soak) with workload
# certificates of $SOAK_CERT_LIFETIME (default 20m: the identity container gets
# --leaf-lifetime, as `mesh install` has no value for it; proxies renew at 70 % of it, so
# the last 30 % must outlast the controller outage, or certificates expire during it: that is
# the separate scenario "controller down longer than the certificate lifetime"), meshes an e2e-echo Deployment of
# three replicas and a load client ($SOAK_NAMESPACE, default lm-soak-app) sending
# $SOAK_RATE GETs a second (default 1000), and for $SOAK_DURATION (default 1h):
#   - rotates endpoints every $SOAK_ROTATE_EVERY (default 5s: the Deployment scales 3 <-> 4),
#   - rolls the Deployment every $SOAK_ROLL_EVERY (default 10m),
#   - kills the controller once, a third of the way in, for $SOAK_CONTROLLER_DOWN (default 5m,
#     at most a fifth of the run).
# Results (soak.csv, soak.png, summary.txt, churn.log) go to $SOAK_OUT (default
# ~/.local/state/lightmesh/soak/<UTC time>). The namespaces are deleted at the end unless SOAK_KEEP=1.
#
#     make soak                      # one hour
#     SOAK_DURATION=5m make soak     # a short check
#
# Needs the local cluster (hack/cluster.sh up) or a cluster in $KUBECONFIG, and the images
# (`make images`, which this script runs).
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

SOAK_DURATION="${SOAK_DURATION:-1h}"
SOAK_RATE="${SOAK_RATE:-1000}"
SOAK_CERT_LIFETIME="${SOAK_CERT_LIFETIME:-20m}"
SOAK_ROTATE_EVERY="${SOAK_ROTATE_EVERY:-5}"
SOAK_ROLL_EVERY="${SOAK_ROLL_EVERY:-600}"
SOAK_CP_NAMESPACE="${SOAK_CP_NAMESPACE:-lm-soak}"
SOAK_NAMESPACE="${SOAK_NAMESPACE:-lm-soak-app}"
SOAK_OUT="${SOAK_OUT:-${XDG_STATE_HOME:-$HOME/.local/state}/lightmesh/soak/$(date -u +%Y%m%dT%H%M%SZ)}"
export KUBECONFIG="${KUBECONFIG:-$CLUSTER_KUBECONFIG}"
KUBECTL="${KUBECTL:-$KUBE_BIN_DIR/kubectl}"
[ -x "$KUBECTL" ] || KUBECTL=kubectl
k() { "$KUBECTL" "$@"; }

# Seconds of a Go-style duration (1h, 5m, 90s, 1h30m).
seconds() {
  local d="$1" total=0 n
  while [[ "$d" =~ ^([0-9]+)([hms])(.*)$ ]]; do
    n="${BASH_REMATCH[1]}"
    case "${BASH_REMATCH[2]}" in h) total=$((total + n * 3600)) ;; m) total=$((total + n * 60)) ;; s) total=$((total + n)) ;; esac
    d="${BASH_REMATCH[3]}"
  done
  [ -z "$d" ] || die "cannot read the duration $1: write it like 1h, 5m or 90s"
  echo "$total"
}
DURATION_S=$(seconds "$SOAK_DURATION")
DOWN_S=$(seconds "${SOAK_CONTROLLER_DOWN:-5m}")
[ "$DOWN_S" -le $((DURATION_S / 5)) ] || DOWN_S=$((DURATION_S / 5))
mkdir -p "$SOAK_OUT"
CHURN_LOG="$SOAK_OUT/churn.log"
churn() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$CHURN_LOG" >&2; }

if ! k version --request-timeout=5s >/dev/null 2>&1; then
  log "no cluster answers in KUBECONFIG=$KUBECONFIG; starting the local cluster"
  hack/cluster.sh up >/dev/null
fi
log "building mesh, soakwatch and the images"
go build -o bin/mesh ./cli
go build -o bin/soakwatch ./hack/soakwatch
make --no-print-directory images >/dev/null

cleanup() {
  [ -n "${CHURN_PID:-}" ] && kill "$CHURN_PID" 2>/dev/null || true
  if [ "${SOAK_KEEP:-0}" != 1 ]; then
    log "deleting $SOAK_NAMESPACE and the control plane $SOAK_CP_NAMESPACE (SOAK_KEEP=1 keeps them)"
    k delete namespace "$SOAK_NAMESPACE" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    [ -f "$SOAK_OUT/install.yaml" ] && k delete --ignore-not-found --wait=false -f "$SOAK_OUT/install.yaml" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

log "installing the control plane in $SOAK_CP_NAMESPACE, certificates of $SOAK_CERT_LIFETIME"
bin/mesh install --ignore-cluster --set namespace="$SOAK_CP_NAMESPACE" > "$SOAK_OUT/install-full.yaml"
# The CRDs are shared with other installations: applied when missing, never deleted.
if ! k get crd virtualservices.networking.istio.io >/dev/null 2>&1; then
  k apply -f "$SOAK_OUT/install-full.yaml" >/dev/null
fi
awk 'BEGIN{RS="\n---"; ORS="\n---"} !/\nkind: CustomResourceDefinition/ && !/^kind: CustomResourceDefinition/' "$SOAK_OUT/install-full.yaml" > "$SOAK_OUT/install.yaml"
k apply -f "$SOAK_OUT/install.yaml" >/dev/null
# Short workload certificates: the identity container (the first) gets --leaf-lifetime.
k -n "$SOAK_CP_NAMESPACE" patch deployment lightmesh-controller --type=json \
  -p "[{\"op\":\"add\",\"path\":\"/spec/template/spec/containers/0/args/-\",\"value\":\"--leaf-lifetime=$SOAK_CERT_LIFETIME\"}]" >/dev/null
k -n "$SOAK_CP_NAMESPACE" rollout status deployment/lightmesh-controller --timeout=300s >/dev/null
k -n "$SOAK_CP_NAMESPACE" wait --for=condition=Available deployment --all --timeout=300s >/dev/null

log "meshing the workload in $SOAK_NAMESPACE: echo x3 and a load client at $SOAK_RATE requests/s"
k create namespace "$SOAK_NAMESPACE" --dry-run=client -o yaml | k apply -f - >/dev/null
# The image `make images` built: internal/version's registry and version.
IMAGE="ghcr.io/lightmesh/e2e-echo:$(tr -d '[:space:]' < internal/version/VERSION)"
mkdir -p "$SOAK_OUT/app"
cat > "$SOAK_OUT/app/app.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 3
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 20
      containers:
      - name: echo
        image: $IMAGE
        imagePullPolicy: Never
        args: [serve, --addr, ":8080", --drain, 5s, --quiet]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: http, port: 80, targetPort: http}]
EOF
# The load client is applied once echo is ready: started with it, its first requests would
# find no ready endpoint yet and fail (503 no-endpoints), which says nothing of the mesh.
mkdir -p "$SOAK_OUT/load"
cat > "$SOAK_OUT/load/load.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: load
  # One pod sends all $SOAK_RATE requests a second: its proxy needs more CPU than the
  # default limit (200m, the seed's) allows at 1,000/s (see BENCHMARKS.md), and with the
  # CPU throttled it would shed the excess (503 overloaded).
  annotations: {config.lightmesh.io/skip-inbound-ports: "9000", config.lightmesh.io/proxy-cpu-limit: "1", config.lightmesh.io/proxy-memory-limit: 256Mi}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: load
    image: $IMAGE
    imagePullPolicy: Never
    args: [load, "http://echo/", --rate, "$SOAK_RATE", --timeout, 3s, --stats-addr, ":9000"]
EOF
bin/mesh inject --control-plane-namespace "$SOAK_CP_NAMESPACE" "$SOAK_OUT/app" | k -n "$SOAK_NAMESPACE" apply -f - >/dev/null
k -n "$SOAK_NAMESPACE" rollout status deployment/echo --timeout=300s >/dev/null
bin/mesh inject --control-plane-namespace "$SOAK_CP_NAMESPACE" "$SOAK_OUT/load" | k -n "$SOAK_NAMESPACE" apply -f - >/dev/null
k -n "$SOAK_NAMESPACE" wait --for=condition=Ready pod/load --timeout=300s >/dev/null
LOAD_IP=$(k -n "$SOAK_NAMESPACE" get pod load -o jsonpath='{.status.podIP}')

# The churn, in the background, logged to churn.log.
(
  start=$(date +%s)
  replicas=3 killed=0 last_roll=$start
  while :; do
    now=$(date +%s)
    elapsed=$((now - start))
    [ "$elapsed" -lt "$DURATION_S" ] || break
    if [ "$killed" -eq 0 ] && [ "$elapsed" -ge $((DURATION_S / 3)) ] && [ "$DOWN_S" -gt 0 ]; then
      churn "controller killed for ${DOWN_S}s"
      k -n "$SOAK_CP_NAMESPACE" scale deployment/lightmesh-controller --replicas=0 >/dev/null
      sleep "$DOWN_S" # the outage itself
      k -n "$SOAK_CP_NAMESPACE" scale deployment/lightmesh-controller --replicas=1 >/dev/null
      churn "controller back"
      killed=1
      continue
    fi
    if [ $((now - last_roll)) -ge "$SOAK_ROLL_EVERY" ]; then
      churn "rolling deployment/echo"
      k -n "$SOAK_NAMESPACE" rollout restart deployment/echo >/dev/null
      last_roll=$now
    fi
    replicas=$((replicas == 3 ? 4 : 3))
    k -n "$SOAK_NAMESPACE" scale deployment/echo --replicas="$replicas" >/dev/null && churn "echo scaled to $replicas"
    sleep "$SOAK_ROTATE_EVERY" # the rotation period
  done
) &
CHURN_PID=$!

log "recording for $SOAK_DURATION into $SOAK_OUT"
status=0
bin/soakwatch --duration "$SOAK_DURATION" --interval "${SOAK_INTERVAL:-1m}" --kubectl "$KUBECTL" \
  --namespaces "$SOAK_NAMESPACE" --controller-namespace "$SOAK_CP_NAMESPACE" \
  --load-stats "http://$LOAD_IP:9000/stats" --max-failures "${SOAK_MAX_FAILURES:-0}" --out "$SOAK_OUT" || status=$?
wait "$CHURN_PID" 2>/dev/null || true
CHURN_PID=
log "churn: $(grep -c scaled "$CHURN_LOG" || true) rotations, $(grep -c rolling "$CHURN_LOG" || true) rolls, $(grep -c 'controller killed' "$CHURN_LOG" || true) controller outage"
log "results in $SOAK_OUT (soak.csv, soak.png, summary.txt, churn.log)"
exit "$status"
