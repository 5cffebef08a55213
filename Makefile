# Portcullis — make help lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c

BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)
GO ?= go

# Pinned tool versions; tools are built from source through the Go module proxy.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
# The rest come from the modules under hack/tools (go.mod/go.sum committed) via
# hack/build-tool.sh; a pin here must match that module's go.mod (the script checks).
KUBERNETES_VERSION ?= 1.37.2
ETCD_VERSION ?= v3.6.16
HELM_VERSION ?= v4.3.1
# kustomize v5.8.3 needs go 1.27.
KUSTOMIZE_VERSION ?= v5.8.2
# The local cluster's kube-dns.
COREDNS_VERSION ?= v1.15.0
BUILD_TOOL := $(CURDIR)/hack/build-tool.sh
# What controller-runtime envtest takes as KUBEBUILDER_ASSETS.
KUBEBUILDER_ASSETS := $(BIN)/k8s/$(KUBERNETES_VERSION)
KUBE_APISERVER := $(KUBEBUILDER_ASSETS)/kube-apiserver
KUBECTL := $(KUBEBUILDER_ASSETS)/kubectl
# A symlink to $(BIN)/etcd-$(ETCD_VERSION), so that etcd is cached by its own version.
ETCD := $(KUBEBUILDER_ASSETS)/etcd
HELM := $(BIN)/helm-$(HELM_VERSION)
KUSTOMIZE := $(BIN)/kustomize-$(KUSTOMIZE_VERSION)
COREDNS := $(BIN)/coredns-$(COREDNS_VERSION)
# What the tests find the tools by.
TEST_ENV := CONTROLLER_GEN=$(CONTROLLER_GEN) KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS) KUBECTL=$(KUBECTL) HELM=$(HELM) KUSTOMIZE=$(KUSTOMIZE) COREDNS=$(COREDNS)

.DEFAULT_GOAL := help

##@ General
.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-12s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development
.PHONY: generate
generate: $(CONTROLLER_GEN) deps ## Generate deepcopy code and the BPF objects (bpf2go).
	$(CONTROLLER_GEN) object paths=./apis/...
	$(GO) generate ./bpf/...

# clang, llvm (llvm-strip) and libbpf headers for bpf2go, and curl, the real
# client of the proxy's e2e tests and the demo; from Debian, only when missing.
DEBS := clang llvm libbpf-dev curl iproute2 kcat bind9-dnsutils dnsmasq dnsperf openssl
.PHONY: deps
deps: ## Install the BPF toolchain (clang llvm libbpf-dev), curl, iproute2 and kcat (a Kafka client for the e2e) with apt-get if missing.
	@dpkg -s $(DEBS) >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(DEBS); }

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs into config/crd/bases and RBAC into config/rbac.
	$(CONTROLLER_GEN) crd paths=./apis/... output:crd:artifacts:config=config/crd/bases
	@# Two roles from markers: the operator's (controllers/operator) and the
	@# agent's (controllers/agent); one run per role, or the markers would merge.
	$(CONTROLLER_GEN) rbac:roleName=portcullis-operator paths=./controllers/operator/... output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) rbac:roleName=portcullis-agent,fileName=agent_role.yaml paths=./controllers/agent/... output:rbac:artifacts:config=config/rbac
	@# The chart ships the same CRDs and RBAC; e2e/packaging fails when they differ.
	rm -f charts/portcullis/crds/*.yaml && cp config/crd/bases/*.yaml charts/portcullis/crds/
	rm -f charts/portcullis/files/rbac/*.yaml && cp config/rbac/*.yaml charts/portcullis/files/rbac/ && rm charts/portcullis/files/rbac/kustomization.yaml

.PHONY: build
build: ## Build the binaries into bin/.
	$(GO) build -o $(BIN)/ ./cmd/...

.PHONY: lint
lint: ## gofmt, go vet, no executable binaries among the tracked files, no broken documentation links.
	@hack/check-binaries.sh
	@hack/check-doc-links.sh
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

.PHONY: verify
verify: generate manifests ## Fail if generated files are stale.
	@git diff --exit-code -- apis bpf config/crd config/rbac charts/portcullis/crds charts/portcullis/files/rbac || { echo "generated files are stale: run make generate manifests"; exit 1; }

.PHONY: test
test: lint tools deps ## Run every test (unit, CRD, CLI golden, real-apiserver, local cluster; needs root).
	$(TEST_ENV) $(GO) test -timeout 30m ./...

.PHONY: bench
bench: ## Run the benchmarks reported in docs/benchmarks.md.
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./policy/
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./bpf/ ./controllers/agent/
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./bench/proxy/
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./apis/policy/validation/

.PHONY: bench-agent
bench-agent: tools ## Agent change-to-map latency, pod throughput with/without programs, agent memory with 10,000 policies, one agent with remote pods (root; about 15 minutes).
	bench/agent-latency.sh
	bench/throughput.sh
	bench/agent-memory.sh
	bench/agent-remote.sh

.PHONY: bench-proxy
bench-proxy: ## The L7 proxy against direct and haproxy (root; wrk, h2load, haproxy from apt; about 5 minutes).
	bench/proxy/run.sh

.PHONY: e2e
e2e: tools ## End-to-end tests only (also part of make test).
	$(TEST_ENV) $(GO) test -timeout 30m ./e2e/... ./internal/localcluster/...

.PHONY: demo
demo: build tools ## Local cluster, operator, agent, demo pods, examples/ applied, real traffic with portcullis monitor, verdict table (needs root).
	KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS) KUBECTL=$(BIN)/kubectl $(GO) run ./hack/demo

##@ Tools
$(CONTROLLER_GEN):
	@mkdir -p $(BIN)
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(BIN)/controller-gen $@

.PHONY: tools
tools: $(CONTROLLER_GEN) $(KUBE_APISERVER) $(ETCD) $(KUBECTL) $(HELM) $(KUSTOMIZE) $(COREDNS) $(BIN)/kubectl $(BIN)/helm $(BIN)/kustomize $(BIN)/coredns ## Build the tool binaries into bin/ (once per pinned version).

$(KUBE_APISERVER):
	$(BUILD_TOOL) kube-apiserver $(KUBERNETES_VERSION) $@

$(KUBECTL):
	$(BUILD_TOOL) kubectl $(KUBERNETES_VERSION) $@

$(BIN)/etcd-$(ETCD_VERSION):
	$(BUILD_TOOL) etcd $(ETCD_VERSION) $@

$(HELM):
	$(BUILD_TOOL) helm $(HELM_VERSION) $@

$(KUSTOMIZE):
	$(BUILD_TOOL) kustomize $(KUSTOMIZE_VERSION) $@

$(COREDNS): hack/tools/coredns/main.go hack/tools/coredns/go.mod
	$(BUILD_TOOL) coredns $(COREDNS_VERSION) $@

# Symlinks to the pinned versions; phony so that they follow a pin that moves
# back to a version that is already built (ln -sfn is idempotent).
.PHONY: $(ETCD) $(BIN)/kubectl $(BIN)/helm $(BIN)/kustomize $(BIN)/coredns
$(ETCD): $(BIN)/etcd-$(ETCD_VERSION)
	@mkdir -p $(@D) && ln -sfn ../../etcd-$(ETCD_VERSION) $@
$(BIN)/kubectl: $(KUBECTL)
	@ln -sfn k8s/$(KUBERNETES_VERSION)/kubectl $@
$(BIN)/helm: $(HELM)
	@ln -sfn $(notdir $(HELM)) $@
$(BIN)/kustomize: $(KUSTOMIZE)
	@ln -sfn $(notdir $(KUSTOMIZE)) $@
$(BIN)/coredns: $(COREDNS)
	@ln -sfn $(notdir $(COREDNS)) $@

.PHONY: tools-smoke
tools-smoke: $(KUBE_APISERVER) $(ETCD) $(KUBECTL) ## Run etcd + kube-apiserver from bin/k8s and kubectl against them.
	hack/tools/smoke.sh $(KUBEBUILDER_ASSETS)
