#!/usr/bin/env bash
# build-prometheus.sh builds the Prometheus server (`cmd/prometheus`) from its Go module, as a
# test tool for the end-to-end test of the stats service's Prometheus backend, into the tool
# cache, once per version; it prints the binary's path. Only the HTTP API is used: the build
# has no UI assets (no `builtinassets` tag) and only the Kubernetes service discovery
# (`remove_all_sd,enable_kubernetes_sd`), which keeps the cloud SDKs out of it.
source "$(dirname "$0")/lib.sh"

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-v0.316.0}" # Prometheus 3.16
out="$CACHE_ROOT/tools/prometheus-$PROMETHEUS_VERSION"
if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$CACHE_ROOT/tools"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
log "building prometheus $PROMETHEUS_VERSION (once; cached in $out)"
# The module has no replace directive, so `go install pkg@version` builds it as released.
(cd "$bin" && GOBIN="$bin" CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install -trimpath \
  -tags remove_all_sd,enable_kubernetes_sd \
  "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION") >&2 \
  || die "could not build github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
mv "$bin/prometheus" "$out.tmp"
mv "$out.tmp" "$out"
echo "$out"
