# Portcullis — make help lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c

BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)
GO ?= go

# Pinned tool versions; tools are built from source through the Go module proxy.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)

.DEFAULT_GOAL := help

##@ General
.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-12s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development
.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object paths=./apis/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs into config/crd/bases.
	$(CONTROLLER_GEN) crd paths=./apis/... output:crd:artifacts:config=config/crd/bases

.PHONY: build
build: ## Build the binaries into bin/.
	$(GO) build -o $(BIN)/ ./cmd/...

.PHONY: lint
lint: ## gofmt and go vet.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: verify
verify: generate manifests ## Fail if generated files are stale.
	@git diff --exit-code -- apis config/crd || { echo "generated files are stale: run make generate manifests"; exit 1; }

.PHONY: test
test: lint $(CONTROLLER_GEN) ## Run every test (unit, CRD, CLI golden).
	CONTROLLER_GEN=$(CONTROLLER_GEN) $(GO) test ./...

.PHONY: bench
bench: ## Run the benchmarks reported in docs/benchmarks.md.
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 3x ./policy/...

.PHONY: e2e
e2e: ## End-to-end tests (none yet beyond make test).
	CONTROLLER_GEN=$(CONTROLLER_GEN) $(GO) test ./e2e/...

.PHONY: demo
demo: build ## Trace the demo requests over examples/.
	./hack/demo.sh

##@ Tools
$(CONTROLLER_GEN):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(BIN)/controller-gen $@
