# lightmesh: run `make` (or `make help`) to list the targets.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO ?= go
CACHE_ROOT ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/lightmesh
# Large build outputs (image tarballs, tools) live outside the repository.
IMAGES_OUT ?= $(CACHE_ROOT)/images
TOOLS_BIN ?= $(CACHE_ROOT)/tools
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(TOOLS_BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
KUBE_VERSION := v1.37.2
KUBECTL := $(CACHE_ROOT)/kubernetes/$(KUBE_VERSION)/bin/kubectl
CLUSTER_KUBECONFIG := $(or $(LIGHTMESH_CLUSTER_DIR),/var/lib/lightmesh-cluster)/admin.kubeconfig

# The binaries, one per component: binary name -> package.
BINARIES := mesh:./cli mesh-controller:./controller mesh-proxy:./proxy \
	mesh-proxy-init:./proxy-init mesh-web:./web
# Programs the end-to-end tests and the demo run in pods; `make images` builds their images too.
APP_BINARIES := e2e-echo:./test/images/echo demo-user-service:./demo/user-service \
	demo-order-service:./demo/order-service demo-traffic:./demo/traffic
comma := ,
empty :=
space := $(empty) $(empty)
APP_IMAGES := $(subst $(space),$(comma),$(foreach b,$(APP_BINARIES),$(firstword $(subst :, ,$(b)))))
# Packages that hold root-only integration tests (files tagged `integration`).
INTEGRATION_PKGS = $(shell grep -rl --include='*_test.go' '^//go:build integration' . | xargs -r -n1 dirname | sort -u)

.PHONY: help
help: ## List the targets
	@echo "lightmesh make targets:"
	@awk -F ':.*## ' '/^[a-z][a-z0-9-]*:.*## /{printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build every binary into bin/
	@mkdir -p bin
	@for b in $(BINARIES); do \
		echo "go build -o bin/$${b%%:*} $${b#*:}"; \
		CGO_ENABLED=0 $(GO) build -trimpath -o bin/$${b%%:*} $${b#*:}; \
	done

# Debian packages the tests and image builds use (the cluster script installs its own).
TEST_PACKAGES := iptables iproute2

.PHONY: deps
deps: ## Install the Debian packages tests and images need (as root; a fresh machine has none)
	hack/ensure-packages.sh $(TEST_PACKAGES)

.PHONY: unit
unit: deps ## Fast tests: no root, no network beyond loopback
	$(GO) test -count=1 ./...

.PHONY: integration
# One package at a time: the slowloris test measures other clients' latency and the
# connections' lifetimes, which the other packages' tests would otherwise disturb on 2 cores.
integration: deps ## Root-only tests: real iptables in network namespaces, real processes
	@if [ "$$(id -u)" -ne 0 ]; then \
		echo "!!! SKIPPED: integration tests need root (real iptables, network namespaces); CI runs them as root"; \
	elif [ -z "$(INTEGRATION_PKGS)" ]; then \
		echo "no integration tests yet"; \
	else \
		$(GO) test -count=1 -p 1 -tags integration $(INTEGRATION_PKGS); \
	fi

.PHONY: e2e
e2e: ## End-to-end tests on the local cluster (started if needed, stopped again if it was not running)
	hack/test-e2e.sh

.PHONY: test
test: lint gen-check unit fuzz integration e2e ## Everything: lint, generated code, unit, short fuzzing, integration, end-to-end

# Go fuzz targets (package:Target), each fuzzed for FUZZTIME by `make fuzz`; their corpora are
# in the packages' testdata/fuzz.
FUZZ_TARGETS := ./proxy/h1:FuzzReadRequest ./proxy/detect:FuzzDetect ./internal/policy:FuzzNormalizePath \
	./internal/policy:FuzzAuthorize ./internal/policy/translate:FuzzTranslateYAML ./proxy/envoy:FuzzParse \
	./internal/inject:FuzzInject ./controller/injector:FuzzInjectReview ./controller/identity:FuzzCertify
FUZZTIME ?= 5s
# Go 1.26's fuzzing coordinator can fail a target with a bare "context deadline exceeded" when
# -fuzztime ends while a worker is busy (go.dev/issue/75804; it did in CI on a loaded machine),
# fixed in Go 1.27: the fuzz runs use Go 1.27.3, which the go command fetches as a toolchain
# module once per machine (about 76 MB). Everything else stays on the machine's Go.
FUZZ_GOTOOLCHAIN ?= go1.27.3

.PHONY: fuzz
fuzz: ## A short run of every fuzz target (FUZZTIME each, 5s by default; Go FUZZ_GOTOOLCHAIN)
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzzing $$name in $$pkg for $(FUZZTIME)"; \
		GOTOOLCHAIN=$(FUZZ_GOTOOLCHAIN) $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

.PHONY: lint
lint: $(GOLANGCI_LINT) ## golangci-lint (pinned, installed from the Go module proxy)
	$(GOLANGCI_LINT) run ./...
	@bad=$$(git ls-files '*.sh' | xargs -r bash -n 2>&1) || { echo "$$bad"; exit 1; }

$(GOLANGCI_LINT):
	@mkdir -p $(TOOLS_BIN)
	@echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) into $(TOOLS_BIN)"
	GOBIN=$(TOOLS_BIN)/.install $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(TOOLS_BIN)/.install/golangci-lint $@

.PHONY: gen
gen: ## Regenerate generated code (protobuf under controller/api, go generate)
	hack/gen.sh

.PHONY: gen-check
gen-check: ## Fail when generated code is not current
	@before=$$(git status --porcelain; git diff | sha256sum); \
	$(MAKE) --no-print-directory gen >/dev/null; \
	after=$$(git status --porcelain; git diff | sha256sum); \
	if [ "$$before" != "$$after" ]; then \
		echo "generated code is stale: run 'make gen' and commit the result"; git status --short; exit 1; \
	fi; \
	echo "generated code is current"

.PHONY: images
images: build deps ## Build every image (components, test and demo programs); import them into the local cluster when it runs
	@mkdir -p $(IMAGES_OUT)/bin
	@for b in $(APP_BINARIES); do \
		CGO_ENABLED=0 $(GO) build -trimpath -o $(IMAGES_OUT)/bin/$${b%%:*} $${b#*:}; \
	done
	@cp bin/mesh-* $(IMAGES_OUT)/bin/
	$(GO) run ./hack/imagebuild --bin-dir $(IMAGES_OUT)/bin --out $(IMAGES_OUT) \
		--only $$($(GO) run ./hack/imagebuild --print-components),$(APP_IMAGES) \
		> $(IMAGES_OUT)/built.txt
	@if [ -S /run/lightmesh-containerd/containerd.sock ]; then \
		while read -r ref file; do \
			echo "importing $$ref"; \
			ctr --address /run/lightmesh-containerd/containerd.sock -n k8s.io images import "$$file" >/dev/null; \
		done < $(IMAGES_OUT)/built.txt; \
	else \
		echo "the local cluster is not running: images are in $(IMAGES_OUT); 'make cluster images' imports them"; \
	fi

.PHONY: docker-images
docker-images: ## Build the images with a Docker engine, for real registries
	@docker info >/dev/null 2>&1 || { echo "no Docker engine answers here: use 'make images' (no Docker needed)"; exit 1; }
	@for c in controller proxy proxy-init web; do \
		ref=$$($(GO) run ./hack/imagebuild --print-ref mesh-$$c); \
		echo "docker build -f $$c/Dockerfile -t $$ref ."; \
		docker build -f $$c/Dockerfile -t $$ref .; \
	done

.PHONY: cluster
cluster: ## Start (or repair) the local single-node Kubernetes cluster
	hack/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop the local cluster and remove its state
	hack/cluster.sh down

.PHONY: cluster-status
cluster-status: ## Show the local cluster's components
	hack/cluster.sh status

# Flags of the side-by-side data-plane benchmark (`go run ./bench -h`), e.g. BENCH_ARGS='-reps 5 -raw raw.json'.
BENCH_ARGS ?=

.PHONY: bench
bench: ## Go benchmarks of the hot paths, then the side-by-side data-plane benchmark (root; about 7 min; BENCH_ARGS)
	$(GO) test -run '^$$' -bench . -benchmem ./...
	@if [ "$$(id -u)" -ne 0 ]; then \
		echo "!!! SKIPPED: the side-by-side benchmark needs root (network namespaces, iptables): sudo make bench"; \
	else \
		hack/ensure-packages.sh haproxy nginx $(TEST_PACKAGES) && $(GO) run ./bench $(BENCH_ARGS); \
	fi

.PHONY: bench-controlplane
bench-controlplane: ## Control-plane figures: destination with 1,000 services, 10,000 endpoints and 5,000 streams; identity issuance; kubectl apply to the first proxied request (root; local cluster)
	$(GO) test ./controller/destination -run '^$$' -bench 'BenchmarkScale/namespaces=(100|10)$$' -benchtime 200x
	$(GO) test ./controller/identity -run '^$$' -bench 'BenchmarkCertify' -benchtime 3s
	E2E_RUN='^TestApplyToFirstRequest$$' hack/test-e2e.sh

.PHONY: bench-smoke
bench-smoke: ## The side-by-side benchmark in a few seconds: every candidate carries traffic, the tables are produced (root)
	@if [ "$$(id -u)" -ne 0 ]; then \
		echo "!!! SKIPPED: the side-by-side benchmark needs root (network namespaces, iptables): sudo make bench-smoke"; \
	else \
		hack/ensure-packages.sh haproxy nginx $(TEST_PACKAGES) && $(GO) run ./bench -smoke $(BENCH_ARGS); \
	fi

.PHONY: soak
soak: ## Long run under load with churn (not in `make test`): RSS, fds and goroutines of every proxy and the controller stay flat (SOAK_DURATION, default 1h; see hack/soak.sh)
	hack/soak.sh

.PHONY: demo
demo: ## The seed's microservices, meshed: starts the local cluster if none answers, installs, injects, drives traffic, shows mesh check and mesh stat
	hack/demo.sh up

.PHONY: demo-down
demo-down: ## Remove the demo and the control plane it installed (the cluster keeps running)
	hack/demo.sh down

clean: ## Remove bin/ and the image tarballs
	rm -rf bin $(IMAGES_OUT)
