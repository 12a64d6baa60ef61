#!/usr/bin/env bash
# Builds CoreDNS $COREDNS_VERSION from the Go module proxy into $COREDNS_BIN_DIR/coredns
# (outside the repository), for the local cluster's DNS. Cached: does nothing when the binary
# already exists. CoreDNS is a plain Go module, so a throwaway module that requires it is
# enough: `go get -tool` records it, `go build` builds it statically.
source "$(dirname "$0")/lib.sh"

bin="$COREDNS_BIN_DIR/coredns"
if [ -x "$bin" ]; then
  log "coredns $COREDNS_VERSION cached at $bin"
  exit 0
fi

work="$CACHE_ROOT/coredns/$COREDNS_VERSION/module"
mkdir -p "$work" "$COREDNS_BIN_DIR"
cd "$work"

if [ ! -f go.sum ] || ! grep -q '^tool github.com/coredns/coredns$' go.mod 2>/dev/null; then
  log "preparing a build module for github.com/coredns/coredns $COREDNS_VERSION in $work"
  rm -f go.mod go.sum
  go mod init lightmesh.local/corednsbuild >/dev/null 2>&1
  go get -tool "github.com/coredns/coredns@$COREDNS_VERSION" >&2 \
    || { rm -f go.sum; die "could not fetch github.com/coredns/coredns@$COREDNS_VERSION (see go's output above)"; }
fi

log "building coredns $COREDNS_VERSION (cold: 2 to 6 minutes)"
start=$(date +%s)
CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o "$bin.tmp" github.com/coredns/coredns \
  || { rm -f "$bin.tmp"; die "building coredns failed"; }
mv "$bin.tmp" "$bin"
log "built $bin in $(( $(date +%s) - start ))s"
