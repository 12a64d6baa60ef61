#!/usr/bin/env bash
# Regenerates the generated code: Go from every .proto under controller/api/ (protoc from
# Debian's protobuf-compiler, protoc-gen-go and protoc-gen-go-grpc pinned below and installed
# from the Go module proxy into the cache), then `go generate ./...`.
source "$(dirname "$0")/lib.sh"

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
TOOLS="$CACHE_ROOT/tools"

cd "$REPO_ROOT"
protos=$(git ls-files --cached --others --exclude-standard -- '*.proto')
if [ -n "$protos" ]; then
  command -v protoc >/dev/null || ensure_packages protobuf-compiler
  # The well-known types the protos import (google/protobuf/timestamp.proto) are in
  # libprotobuf-dev, which protobuf-compiler only recommends.
  [ -f /usr/include/google/protobuf/timestamp.proto ] || ensure_packages libprotobuf-dev
  gen_go="$TOOLS/protoc-gen-go-$PROTOC_GEN_GO_VERSION"
  gen_grpc="$TOOLS/protoc-gen-go-grpc-$PROTOC_GEN_GO_GRPC_VERSION"
  mkdir -p "$TOOLS/.install"
  if [ ! -x "$gen_go" ]; then
    GOBIN="$TOOLS/.install" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
    mv "$TOOLS/.install/protoc-gen-go" "$gen_go"
  fi
  if [ ! -x "$gen_grpc" ]; then
    GOBIN="$TOOLS/.install" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
    mv "$TOOLS/.install/protoc-gen-go-grpc" "$gen_grpc"
  fi
  for proto in $protos; do
    log "protoc $proto"
    protoc -I . --plugin=protoc-gen-go="$gen_go" --plugin=protoc-gen-go-grpc="$gen_grpc" \
      --go_out=paths=source_relative:. --go-grpc_out=paths=source_relative:. "$proto"
  done
fi
go generate ./...
