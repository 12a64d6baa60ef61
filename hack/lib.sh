# shellcheck shell=bash
# Shared settings and helpers for the hack/ scripts. Source it; do not run it.

set -euo pipefail

# One place for versions of the things we build or install for the local cluster.
KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.14.7}"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/lightmesh"
# Built Kubernetes binaries, keyed by version, outside the repository.
KUBE_BIN_DIR="$CACHE_ROOT/kubernetes/$KUBE_VERSION/bin"
COREDNS_BIN_DIR="$CACHE_ROOT/coredns/$COREDNS_VERSION/bin"

# Runtime state of the local cluster (certificates, etcd data, PID files, logs). The kubeconfig
# is always written to $CLUSTER_DIR/admin.kubeconfig, never to $KUBECONFIG.
CLUSTER_DIR="${LIGHTMESH_CLUSTER_DIR:-/var/lib/lightmesh-cluster}"
CLUSTER_KUBECONFIG="$CLUSTER_DIR/admin.kubeconfig"

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ensure_packages PKG... installs the Debian packages that are missing.
ensure_packages() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages: ${missing[*]}; install them as root (apt-get install ${missing[*]})"
  log "installing Debian packages: ${missing[*]}"
  # apt-get update once per run: a fresh machine has no package lists.
  if [ -z "${LIGHTMESH_APT_UPDATED:-}" ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
    export LIGHTMESH_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
}

# wait_for DESC SECONDS CMD... polls CMD every half second until it succeeds or the deadline
# passes; returns 1 on timeout.
wait_for() {
  local desc="$1" secs="$2"; shift 2
  local deadline=$(( $(date +%s) + secs ))
  until "$@" >/dev/null 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "timed out after ${secs}s waiting for $desc"
      return 1
    fi
    sleep 0.5
  done
}
