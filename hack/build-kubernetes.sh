#!/usr/bin/env bash
# Builds the Kubernetes components the local cluster runs (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl) from the Go module
# proxy, at $KUBE_VERSION, into $KUBE_BIN_DIR (outside the repository). Cached: a component
# already built at that version is not rebuilt.
#
# k8s.io/kubernetes points its staging modules (k8s.io/api, k8s.io/client-go, ...) at
# ./staging/..., so `go install k8s.io/kubernetes/cmd/...@VERSION` fails. A throwaway module
# requires k8s.io/kubernetes and replaces every staging module with its published v0.x.y.
source "$(dirname "$0")/lib.sh"

COMPONENTS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

missing=()
for c in "${COMPONENTS[@]}"; do
  [ -x "$KUBE_BIN_DIR/$c" ] || missing+=("$c")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "kubernetes $KUBE_VERSION binaries cached in $KUBE_BIN_DIR"
  exit 0
fi

staging_version="v0.${KUBE_VERSION#v1.}"
work="$CACHE_ROOT/kubernetes/$KUBE_VERSION/module"
mkdir -p "$work" "$KUBE_BIN_DIR"
cd "$work"

if [ ! -f go.sum ] || [ ! -f tools.go ]; then
  log "preparing a build module for k8s.io/kubernetes $KUBE_VERSION in $work"
  rm -f go.mod go.sum tools.go
  go mod init lightmesh.local/kubebuild >/dev/null 2>&1
  gomod=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$KUBE_VERSION (see go's output above)"
  go mod edit -require="k8s.io/kubernetes@$KUBE_VERSION"
  # Every "k8s.io/x => ./staging/src/k8s.io/x" becomes "k8s.io/x => k8s.io/x v0.y.z".
  for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$gomod"); do
    go mod edit -replace="$m=$m@$staging_version"
  done
  {
    echo '//go:build tools'
    echo
    echo 'package tools'
    echo
    echo 'import ('
    for c in "${COMPONENTS[@]}"; do echo "	_ \"k8s.io/kubernetes/cmd/$c\""; done
    echo ')'
  } > tools.go
  go mod tidy >&2 || { rm -f go.sum; die "go mod tidy failed in $work"; }
fi

# Stamp the version the way Kubernetes' own build does, so servers and kubectl report it (and
# version-skew checks work) instead of v0.0.0-master.
minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  version_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

for c in "${missing[@]}"; do
  log "building $c $KUBE_VERSION (cold, on 2 cores: kube-apiserver about 10 minutes, the others 1-3)"
  start=$(date +%s)
  CGO_ENABLED=0 go build -trimpath -ldflags="-s -w $version_ldflags" -o "$KUBE_BIN_DIR/$c.tmp" "k8s.io/kubernetes/cmd/$c" \
    || die "building $c failed"
  mv "$KUBE_BIN_DIR/$c.tmp" "$KUBE_BIN_DIR/$c"
  log "built $c in $(( $(date +%s) - start ))s"
done
