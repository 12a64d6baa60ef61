#!/usr/bin/env bash
# A real single-node Kubernetes cluster on this Linux machine, as root, without Docker and
# without a registry: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet
# and kube-proxy (built from upstream sources by build-kubernetes.sh), containerd + runc + the
# CNI bridge plugin (Debian), and CoreDNS as a Deployment in kube-system.
#
#   hack/cluster.sh up       start what is not running (a healthy cluster is left alone)
#   hack/cluster.sh down     stop what `up` started (by PID) and remove its state; then check
#                            that no process, mount, network namespace or iptables rule is left
#   hack/cluster.sh status   print each component's state; exit 1 unless all are healthy
#   hack/cluster.sh env      print `export KUBECONFIG=...` for this cluster
#
# State lives in $CLUSTER_DIR (default /var/lib/lightmesh-cluster): certificates, etcd data,
# PID files and logs (logs/<component>.log). The admin kubeconfig is written to
# $CLUSTER_DIR/admin.kubeconfig; $KUBECONFIG is never written.
source "$(dirname "$0")/lib.sh"

NODE_NAME="${LIGHTMESH_NODE_NAME:-node1}"
SERVICE_CIDR="10.96.0.0/16"
KUBERNETES_SERVICE_IP="10.96.0.1"
DNS_SERVICE_IP="10.96.0.10"
POD_CIDR="10.244.0.0/16"
NODE_POD_CIDR="10.244.0.0/24"
CLUSTER_DOMAIN="cluster.local"
APISERVER_PORT=6443

PKI="$CLUSTER_DIR/pki"
LOGS="$CLUSTER_DIR/logs"
PIDS="$CLUSTER_DIR/pids"
RUN_DIR="/run/lightmesh-containerd"
CONTAINERD_SOCK="$RUN_DIR/containerd.sock"
CNI_CONF_DIR="$CLUSTER_DIR/cni/net.d"
CNI_BIN_DIR="/usr/lib/cni"
KUBELET_ROOT="$CLUSTER_DIR/kubelet"
IMAGES_DIR="$CLUSTER_DIR/images"
KUBECTL="$KUBE_BIN_DIR/kubectl"

# Components in start order; `down` stops them in reverse.
COMPONENTS=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)

# Filled in by detect_node_ip.
NODE_IP=""

kubectl_admin() { "$KUBECTL" --kubeconfig "$CLUSTER_KUBECONFIG" --request-timeout=20s "$@"; }
ctr_k8s() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

detect_node_ip() {
  NODE_IP=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1)
  if [ -z "$NODE_IP" ]; then
    NODE_IP=$(ip -4 -o addr show scope global | awk '{sub("/.*", "", $4); print $4; exit}')
  fi
  [ -n "$NODE_IP" ] || die "no global IPv4 address on this machine to use as the node's address"
}

# ---------------------------------------------------------------------------------------------
# Processes we start: PID files, liveness, start and stop.

pid_of() { cat "$PIDS/$1.pid" 2>/dev/null || true; }

# running NAME is true when the PID in NAME's PID file is alive and is still our binary (a
# reused PID of some other program does not count).
running() {
  local pid; pid=$(pid_of "$1")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$(binary_of "$1")"
}

binary_of() {
  case "$1" in
    containerd) command -v containerd ;;
    etcd) command -v etcd ;;
    *) echo "$KUBE_BIN_DIR/$1" ;;
  esac
}

# start NAME ARGS... starts NAME's binary in its own session, logging to logs/NAME.log.
start() {
  local name="$1"; shift
  mkdir -p "$LOGS" "$PIDS"
  log "starting $name (log: $LOGS/$name.log)"
  echo "=== $(date -u +%FT%TZ) start" >> "$LOGS/$name.log"
  # 9>&-: the daemon must not inherit (and so hold) the lock of this script.
  setsid "$(binary_of "$name")" "$@" >> "$LOGS/$name.log" 2>&1 < /dev/null 9>&- &
  echo $! > "$PIDS/$name.pid"
}

# stop NAME sends SIGTERM to NAME's process, waits up to 20 s, then SIGKILL.
stop() {
  local name="$1" pid
  pid=$(pid_of "$name")
  if [ -n "$pid" ] && running "$name"; then
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_for "$name to exit" 20 bash -c "! kill -0 $pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      wait_for "$name to exit after SIGKILL" 10 bash -c "! kill -0 $pid" || true
    fi
  fi
  rm -f "$PIDS/$name.pid"
}

# ensure NAME HEALTHCHECK-FUNC START-FUNC: a running, healthy component is left alone; a dead
# one is started; a running but unhealthy one gets its deadline to become healthy, then is
# restarted once. A component that does not become healthy stops the script, naming its log.
ensure() {
  local name="$1" check="$2" starter="$3" deadline="${4:-90}"
  if running "$name"; then
    if wait_for "$name to be healthy" 15 "$check"; then
      log "$name is running and healthy (pid $(pid_of "$name"))"
      return 0
    fi
    log "$name is running but unhealthy: restarting it"
    stop "$name"
  fi
  "$starter"
  if ! wait_for "$name to become healthy" "$deadline" "$check"; then
    running "$name" || log "$name exited"
    tail -n 20 "$LOGS/$name.log" >&2 || true
    die "$name did not become healthy within ${deadline}s; read its log: $LOGS/$name.log"
  fi
  log "$name is healthy"
}

# ---------------------------------------------------------------------------------------------
# Certificates and kubeconfigs.

openssl_quiet() { openssl "$@" 2>/dev/null; }

# gen_cert NAME CN ORG USAGE SANS: an ECDSA P-256 key and certificate signed by the cluster CA.
# USAGE is serverAuth, clientAuth or "serverAuth,clientAuth"; SANS is a subjectAltName value or
# empty. Existing files are kept.
gen_cert() {
  local name="$1" cn="$2" org="$3" usage="$4" sans="$5"
  [ -f "$PKI/$name.crt" ] && [ -f "$PKI/$name.key" ] && return 0
  local subj="/CN=$cn"
  [ -n "$org" ] && subj="/O=$org$subj"
  local ext="$PKI/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -n "$sans" ] && echo "subjectAltName=$sans"
  } > "$ext"
  openssl_quiet ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key"
  openssl_quiet req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr"
  openssl_quiet x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -CAcreateserial -days 3650 -sha256 -extfile "$ext" -out "$PKI/$name.crt" \
    || die "signing the $name certificate failed"
  rm -f "$PKI/$name.csr" "$ext"
}

gen_kubeconfig() {
  local name="$1" user="$2"
  local file="$CLUSTER_DIR/$name.kubeconfig"
  [ -f "$file" ] && return 0
  "$KUBECTL" config set-cluster lightmesh --server="https://$NODE_IP:$APISERVER_PORT" \
    --certificate-authority="$PKI/ca.crt" --embed-certs=true --kubeconfig="$file.tmp" >/dev/null
  "$KUBECTL" config set-credentials "$user" --client-certificate="$PKI/$name.crt" \
    --client-key="$PKI/$name.key" --embed-certs=true --kubeconfig="$file.tmp" >/dev/null
  "$KUBECTL" config set-context lightmesh --cluster=lightmesh --user="$user" \
    --kubeconfig="$file.tmp" >/dev/null
  "$KUBECTL" config use-context lightmesh --kubeconfig="$file.tmp" >/dev/null
  mv "$file.tmp" "$file"
}

gen_pki() {
  mkdir -p "$PKI"
  chmod 700 "$PKI"
  # A certificate names the node's address; a machine that changed address gets new ones.
  if [ -f "$PKI/node-ip" ] && [ "$(cat "$PKI/node-ip")" != "$NODE_IP" ]; then
    log "the node address changed to $NODE_IP: regenerating certificates and kubeconfigs"
    rm -f "$PKI"/*.crt "$PKI"/*.key "$CLUSTER_DIR"/*.kubeconfig
  fi
  echo "$NODE_IP" > "$PKI/node-ip"
  if [ ! -f "$PKI/ca.crt" ]; then
    log "generating the cluster CA in $PKI"
    openssl_quiet ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key"
    openssl_quiet req -x509 -new -key "$PKI/ca.key" -subj "/CN=lightmesh-local-cluster-ca" \
      -days 3650 -sha256 -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$PKI/ca.crt" \
      || die "generating the cluster CA failed"
  fi
  gen_cert etcd-server etcd-server "" "serverAuth,clientAuth" "IP:127.0.0.1,DNS:localhost"
  gen_cert apiserver-etcd-client kube-apiserver-etcd-client "" clientAuth ""
  gen_cert apiserver kube-apiserver "" serverAuth \
    "IP:$NODE_IP,IP:127.0.0.1,IP:$KUBERNETES_SERVICE_IP,DNS:localhost,DNS:$NODE_NAME,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
  gen_cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth ""
  gen_cert admin lightmesh-admin system:masters clientAuth ""
  gen_cert controller-manager system:kube-controller-manager "" clientAuth ""
  gen_cert scheduler system:kube-scheduler "" clientAuth ""
  gen_cert kube-proxy system:kube-proxy "" clientAuth ""
  gen_cert kubelet "system:node:$NODE_NAME" system:nodes clientAuth ""
  gen_cert kubelet-serving "system:node:$NODE_NAME" system:nodes serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
  if [ ! -f "$PKI/sa.key" ]; then
    openssl_quiet genrsa -out "$PKI/sa.key" 2048
    openssl_quiet rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
  fi
  gen_kubeconfig admin lightmesh-admin
  gen_kubeconfig controller-manager system:kube-controller-manager
  gen_kubeconfig scheduler system:kube-scheduler
  gen_kubeconfig kube-proxy system:kube-proxy
  gen_kubeconfig kubelet "system:node:$NODE_NAME"
}

# ---------------------------------------------------------------------------------------------
# Health checks.

https_ok() { curl -fsS --max-time 5 --cacert "$PKI/ca.crt" "$@" >/dev/null; }
containerd_healthy() { ctr --address "$CONTAINERD_SOCK" version; }
etcd_healthy() {
  https_ok --cert "$PKI/apiserver-etcd-client.crt" --key "$PKI/apiserver-etcd-client.key" \
    https://127.0.0.1:2379/health
}
apiserver_healthy() {
  https_ok --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://127.0.0.1:$APISERVER_PORT/readyz"
}
controller_manager_healthy() { curl -fsSk --max-time 5 https://127.0.0.1:10257/healthz >/dev/null; }
scheduler_healthy() { curl -fsSk --max-time 5 https://127.0.0.1:10259/healthz >/dev/null; }
kubelet_healthy() {
  curl -fsS --max-time 5 http://127.0.0.1:10248/healthz >/dev/null &&
    [ "$(kubectl_admin get node "$NODE_NAME" \
      -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
kube_proxy_healthy() { curl -fsS --max-time 5 http://127.0.0.1:10256/healthz >/dev/null; }

# ---------------------------------------------------------------------------------------------
# Starting each component.

start_containerd() {
  mkdir -p "$CLUSTER_DIR/containerd" "$RUN_DIR" "$CNI_CONF_DIR" "$CLUSTER_DIR/cni/networks"
  local pause_ref; pause_ref=$(image_ref pause)
  cat > "$CLUSTER_DIR/containerd/config.toml" <<EOF
version = 2
root = "$CLUSTER_DIR/containerd/root"
state = "$RUN_DIR/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_ref"
  # This machine may not lower oom_score_adj (no CAP_SYS_RESOURCE); without this every pod
  # fails in runc with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CNI_CONF_DIR"
EOF
  cat > "$CNI_CONF_DIR/10-lightmesh.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "lightmesh",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$CLUSTER_DIR/cni/networks",
        "ranges": [[{"subnet": "$NODE_POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  start containerd --config "$CLUSTER_DIR/containerd/config.toml"
}

start_etcd() {
  mkdir -p "$CLUSTER_DIR/etcd"
  chmod 700 "$CLUSTER_DIR/etcd"
  start etcd --name "$NODE_NAME" --data-dir "$CLUSTER_DIR/etcd" \
    --listen-client-urls https://127.0.0.1:2379 --advertise-client-urls https://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster "$NODE_NAME=http://127.0.0.1:2380" \
    --listen-metrics-urls http://127.0.0.1:2381 \
    --cert-file "$PKI/etcd-server.crt" --key-file "$PKI/etcd-server.key" \
    --client-cert-auth --trusted-ca-file "$PKI/ca.crt"
}

start_kube_apiserver() {
  start kube-apiserver \
    --advertise-address="$NODE_IP" --secure-port="$APISERVER_PORT" \
    --allow-privileged=true \
    --authorization-mode=Node,RBAC \
    --enable-admission-plugins=NodeRestriction \
    --client-ca-file="$PKI/ca.crt" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --etcd-servers=https://127.0.0.1:2379 --etcd-cafile="$PKI/ca.crt" \
    --etcd-certfile="$PKI/apiserver-etcd-client.crt" --etcd-keyfile="$PKI/apiserver-etcd-client.key" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer="https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR"
}

start_kube_controller_manager() {
  local kc="$CLUSTER_DIR/controller-manager.kubeconfig"
  start kube-controller-manager \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --leader-elect=false \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
    --use-service-account-credentials=true \
    --service-cluster-ip-range="$SERVICE_CIDR" --cluster-cidr="$POD_CIDR"
}

start_kube_scheduler() {
  local kc="$CLUSTER_DIR/scheduler.kubeconfig"
  start kube-scheduler \
    --kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
    --bind-address=127.0.0.1 --leader-elect=false
}

start_kubelet() {
  mkdir -p "$KUBELET_ROOT"
  cat > "$CLUSTER_DIR/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: Webhook
# This machine has cgroup v1 (hybrid) and no systemd.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: $CLUSTER_DOMAIN
clusterDNS:
  - $DNS_SERVICE_IP
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
resolvConf: /etc/resolv.conf
serializeImagePulls: false
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%
  imagefs.available: 2%
EOF
  start kubelet --config="$CLUSTER_DIR/kubelet-config.yaml" \
    --kubeconfig="$CLUSTER_DIR/kubelet.kubeconfig" --root-dir="$KUBELET_ROOT" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP"
}

start_kube_proxy() {
  cat > "$CLUSTER_DIR/kube-proxy-config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $CLUSTER_DIR/kube-proxy.kubeconfig
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Leave the host's conntrack sysctls alone (this machine may not change them).
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
  start kube-proxy --config="$CLUSTER_DIR/kube-proxy-config.yaml"
}

# ---------------------------------------------------------------------------------------------
# Images: the sandbox (pause) image and CoreDNS are built here and imported into containerd.

# imagebuild ARGS... runs the repository's image builder (hack/imagebuild), built once per run.
IMAGEBUILD=""
imagebuild() {
  if [ -z "$IMAGEBUILD" ]; then
    IMAGEBUILD="$CLUSTER_DIR/images/bin/imagebuild"
    mkdir -p "$(dirname "$IMAGEBUILD")"
    (cd "$REPO_ROOT" && go build -o "$IMAGEBUILD" ./hack/imagebuild) || die "building hack/imagebuild failed"
  fi
  "$IMAGEBUILD" "$@"
}

image_ref() {
  case "$1" in
    pause) imagebuild --print-pause-ref ;;
    coredns) imagebuild --print-coredns-ref --coredns-version "$COREDNS_VERSION" ;;
  esac
}

image_present() { ctr_k8s images ls -q | grep -qxF "$1"; }

import_cluster_images() {
  local pause_ref coredns_ref
  pause_ref=$(image_ref pause)
  coredns_ref=$(image_ref coredns)
  if image_present "$pause_ref" && image_present "$coredns_ref"; then
    log "pause and CoreDNS images are in containerd"
    return 0
  fi
  "$REPO_ROOT/hack/build-coredns.sh"
  mkdir -p "$IMAGES_DIR/bin"
  (cd "$REPO_ROOT" && CGO_ENABLED=0 go build -trimpath -o "$IMAGES_DIR/bin/pause" ./hack/pause) \
    || die "building the pause program failed"
  imagebuild --bin-dir "$IMAGES_DIR/bin" --out "$IMAGES_DIR" --only pause,coredns \
    --coredns "$COREDNS_BIN_DIR/coredns" --coredns-version "$COREDNS_VERSION" \
    > "$IMAGES_DIR/built.txt" || die "building the pause and CoreDNS images failed"
  local ref file
  while read -r ref file; do
    log "importing $ref"
    ctr_k8s images import "$file" >/dev/null || die "ctr could not import $file"
  done < "$IMAGES_DIR/built.txt"
}

coredns_ready() {
  [ "$(kubectl_admin -n kube-system get deployment coredns -o jsonpath='{.status.readyReplicas}' 2>/dev/null)" = 1 ]
}

deploy_coredns() {
  local coredns_ref; coredns_ref=$(image_ref coredns)
  sed -e "s#@COREDNS_IMAGE@#$coredns_ref#g" -e "s#@DNS_SERVICE_IP@#$DNS_SERVICE_IP#g" \
    -e "s#@CLUSTER_DOMAIN@#$CLUSTER_DOMAIN#g" "$REPO_ROOT/hack/manifests/coredns.yaml" \
    | kubectl_admin apply -f - >/dev/null || die "applying the CoreDNS manifests failed"
  if ! wait_for "CoreDNS to be ready" 120 coredns_ready; then
    kubectl_admin -n kube-system get pods -l k8s-app=kube-dns -o wide >&2 || true
    die "CoreDNS did not become ready within 120s; see: kubectl -n kube-system describe pods -l k8s-app=kube-dns (logs: $LOGS/kubelet.log)"
  fi
  log "CoreDNS is ready"
}

# ---------------------------------------------------------------------------------------------

host_setup() {
  [ "$(id -u)" -eq 0 ] || die "the local cluster needs root (it runs kubelet, containerd and iptables)"
  ensure_packages etcd-server containerd runc containernetworking-plugins iptables conntrack \
    iproute2 curl openssl ca-certificates
  # Pods reach each other and Services through the bridge, so forwarding and bridge netfilter
  # must be on.
  modprobe br_netfilter 2>/dev/null || true
  sysctl -qw net.ipv4.ip_forward=1 || die "cannot enable IPv4 forwarding (sysctl net.ipv4.ip_forward)"
  if [ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]; then
    sysctl -qw net.bridge.bridge-nf-call-iptables=1
  else
    die "bridge netfilter is unavailable (modprobe br_netfilter failed); Services cannot work"
  fi
}

cmd_up() {
  local begin; begin=$(date +%s)
  host_setup
  "$REPO_ROOT/hack/build-kubernetes.sh"
  detect_node_ip
  mkdir -p "$CLUSTER_DIR" "$LOGS" "$PIDS"
  gen_pki
  local name
  for name in "${COMPONENTS[@]}"; do
    ensure "$name" "$(health_check_of "$name")" "start_${name//-/_}" "$(deadline_of "$name")"
    # Pods need the sandbox image before kubelet starts them.
    [ "$name" = containerd ] && import_cluster_images
  done
  if coredns_ready; then
    log "CoreDNS is ready"
  else
    deploy_coredns
  fi
  log "cluster is up ($(( $(date +%s) - begin ))s); kubeconfig: $CLUSTER_KUBECONFIG"
  echo "export KUBECONFIG=$CLUSTER_KUBECONFIG"
}

# deadline_of NAME: seconds NAME gets to become healthy after it starts.
deadline_of() {
  case "$1" in
    containerd) echo 30 ;;
    kube-apiserver | kubelet) echo 120 ;;
    *) echo 60 ;;
  esac
}

health_check_of() {
  case "$1" in
    containerd) echo containerd_healthy ;;
    etcd) echo etcd_healthy ;;
    kube-apiserver) echo apiserver_healthy ;;
    kube-controller-manager) echo controller_manager_healthy ;;
    kube-scheduler) echo scheduler_healthy ;;
    kubelet) echo kubelet_healthy ;;
    kube-proxy) echo kube_proxy_healthy ;;
  esac
}

cmd_status() {
  local ok=0 name
  detect_node_ip
  for name in "${COMPONENTS[@]}"; do
    if running "$name" && "$(health_check_of "$name")" >/dev/null 2>&1; then
      printf '%-24s healthy   pid %s\n' "$name" "$(pid_of "$name")"
    elif running "$name"; then
      printf '%-24s UNHEALTHY pid %s (log: %s)\n' "$name" "$(pid_of "$name")" "$LOGS/$name.log"; ok=1
    else
      printf '%-24s stopped\n' "$name"; ok=1
    fi
  done
  if [ $ok -eq 0 ] && coredns_ready >/dev/null 2>&1; then
    printf '%-24s ready\n' coredns
  else
    printf '%-24s not ready\n' coredns; ok=1
  fi
  return $ok
}

# ---------------------------------------------------------------------------------------------
# Tear-down.

# remove_chains_from IPTABLES-SAVE IPTABLES-RESTORE removes every KUBE-* and CNI-* chain and
# every rule that jumps to one, table by table, leaving every other rule as it was.
remove_chains_from() {
  local save="$1" restore="$2" table dump
  command -v "$save" >/dev/null || return 0
  for table in nat filter mangle raw; do
    dump=$("$save" -t "$table" 2>/dev/null) || continue
    grep -qE '(^:|-A |-j )(KUBE-|CNI-)' <<<"$dump" || continue
    grep -vE '^:(KUBE-|CNI-)|^-A (KUBE-|CNI-)|-j (KUBE-|CNI-)' <<<"$dump" | "$restore" -T "$table" \
      || log "could not clean the $table table with $restore"
  done
}

# unmount_under DIR unmounts every mount point at or below DIR, deepest first.
unmount_under() {
  local dir="$1" m
  awk -v d="$dir" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || log "could not unmount $m"; done
}

no_running_tasks() { ! ctr_k8s tasks ls 2>/dev/null | awk 'NR > 1 {print $3}' | grep -q RUNNING; }

cmd_down() {
  [ "$(id -u)" -eq 0 ] || die "stopping the local cluster needs root"
  # kubelet first, so nothing restarts containers while they are stopped.
  stop kubelet
  if running containerd; then
    local task
    # Kill every pod's processes before containerd, or their shims outlive it.
    for task in $(ctr_k8s tasks ls -q 2>/dev/null); do
      ctr_k8s tasks kill --all --signal SIGKILL "$task" >/dev/null 2>&1 || true
    done
    wait_for "every container to stop" 30 no_running_tasks || log "some containers still run"
    for task in $(ctr_k8s tasks ls -q 2>/dev/null); do
      ctr_k8s tasks delete --force "$task" >/dev/null 2>&1 || true
    done
  fi
  # Containers and shims that outlived containerd (or were left by a machine whose processes
  # were killed): ours by the PID files the runtime wrote.
  local pidfile
  for pidfile in "$RUN_DIR"/state/io.containerd.runtime.v2.task/*/*/init.pid \
                 "$RUN_DIR"/state/io.containerd.runtime.v2.task/*/*/shim.pid; do
    [ -f "$pidfile" ] && kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
  done
  # Shims whose PID files are gone are still ours by the containerd address they were given
  # (our own socket): stop the container processes under each, then the shim.
  local shim child
  for shim in $(pgrep -f -- "-address $CONTAINERD_SOCK" || true); do
    for child in $(ps -o pid= --ppid "$shim" 2>/dev/null); do kill -KILL "$child" 2>/dev/null || true; done
    kill -KILL "$shim" 2>/dev/null || true
  done
  local i
  for (( i=${#COMPONENTS[@]}-1; i>=0; i-- )); do
    [ "${COMPONENTS[$i]}" = kubelet ] || stop "${COMPONENTS[$i]}"
  done
  # What the processes leave behind: kube-proxy's and kubelet's chains, the CNI plugins' chains
  # and bridge, pod network namespaces, and mounts.
  if [ -x "$KUBE_BIN_DIR/kube-proxy" ]; then
    "$KUBE_BIN_DIR/kube-proxy" --cleanup >/dev/null 2>&1 || true
  fi
  remove_chains_from iptables-save iptables-restore
  remove_chains_from ip6tables-save ip6tables-restore
  remove_chains_from iptables-legacy-save iptables-legacy-restore
  local ns
  for ns in $(ip netns list 2>/dev/null | awk '/^cni-/{print $1}'); do
    ip netns delete "$ns" 2>/dev/null || true
  done
  ip link show cni0 >/dev/null 2>&1 && ip link delete cni0
  unmount_under "$CLUSTER_DIR"
  unmount_under "$RUN_DIR"
  rm -rf "$CLUSTER_DIR" "$RUN_DIR"
  verify_down
  log "cluster is down"
}

# verify_down fails, naming each, if anything the cluster made is still on the host.
verify_down() {
  local left=()
  local pid
  for pid in $(pgrep -f -- "$KUBE_BIN_DIR/" || true) $(pgrep -f -- "$CONTAINERD_SOCK" || true) \
             $(pgrep -f -- "--data-dir $CLUSTER_DIR/etcd" || true); do
    [ "$pid" = $$ ] && continue
    left+=("process $pid: $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-100)")
  done
  local s
  for s in iptables-save ip6tables-save iptables-legacy-save; do
    command -v "$s" >/dev/null || continue
    if "$s" 2>/dev/null | grep -qE '(^:|-j )(KUBE-|CNI-)'; then left+=("iptables rules ($s)"); fi
  done
  ip link show cni0 >/dev/null 2>&1 && left+=("network interface cni0")
  ip netns list 2>/dev/null | grep -q '^cni-' && left+=("network namespaces cni-*")
  grep -qE " ($CLUSTER_DIR|$RUN_DIR)[/ ]" /proc/self/mountinfo && left+=("mounts under $CLUSTER_DIR")
  if [ ${#left[@]} -gt 0 ]; then
    printf 'error: the cluster left these behind:\n' >&2
    printf '  %s\n' "${left[@]}" >&2
    exit 1
  fi
}

# One `up` or `down` at a time: two at once would start every component twice.
lock() {
  mkdir -p /run/lock
  exec 9>/run/lock/lightmesh-cluster.lock
  flock -w 900 9 || die "another hack/cluster.sh up/down held the lock for 15 minutes"
}

case "${1:-}" in
  up) lock; cmd_up ;;
  down) lock; cmd_down ;;
  status) cmd_status ;;
  env) echo "export KUBECONFIG=$CLUSTER_KUBECONFIG" ;;
  *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
