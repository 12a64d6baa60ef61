#!/usr/bin/env bash
# build-jaeger.sh builds Jaeger (all-in-one, `cmd/jaeger`) from its Go module, as a test tool
# for the tracing end-to-end test, into the tool cache, once per version; it prints the
# binary's path. The module's go.mod has a replace directive, so `go install pkg@version`
# refuses it: the source is copied out of the module cache and built there.
source "$(dirname "$0")/lib.sh"

JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"
out="$CACHE_ROOT/tools/jaeger-$JAEGER_VERSION"
if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$CACHE_ROOT/tools"
src=$(go mod download -json "github.com/jaegertracing/jaeger@$JAEGER_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -n "$src" ] && [ -d "$src" ] || die "could not download github.com/jaegertracing/jaeger@$JAEGER_VERSION"
work=$(mktemp -d)
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cp -r "$src/." "$work/"
chmod -R u+w "$work"
log "building jaeger $JAEGER_VERSION (once; cached in $out)"
(cd "$work" && CGO_ENABLED=0 go build -trimpath -o "$out.tmp" ./cmd/jaeger) >&2
mv "$out.tmp" "$out"
echo "$out"
