# Image URL to use for building and pushing the manager image. VERSION is the one place the release tag
# is set.
VERSION ?= v0.1.0
IMG ?= ghcr.io/1flow/webhook-operator:$(VERSION)

# Kubernetes version of the envtest control plane built by hack/setup-envtest.sh.
ENVTEST_K8S_VERSION ?= 1.37.2

# Get the currently used golang install path (in GOPATH/bin, unless GOBIN is set)
ifeq (,$(shell go env GOBIN))
GOBIN=$(shell go env GOPATH)/bin
else
GOBIN=$(shell go env GOBIN)
endif

CONTAINER_TOOL ?= docker

# Setting SHELL to bash allows bash commands to be executed by recipes.
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRDs and the ClusterRole from the Go markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases
	go run ./hack/decimal-schema config/crd/bases/webhooks.1flow.io_documentevents.yaml spec.document.totalAmount

.PHONY: generate
generate: controller-gen ## Generate the DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./..."

.PHONY: fmt
fmt: ## Run go fmt against code.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet against code.
	go vet ./...

.PHONY: test
test: manifests generate fmt vet setup-envtest ## Run every test against a real kube-apiserver and etcd.
	KUBEBUILDER_ASSETS="$$($(ENVTEST_SETUP))" go test ./... -count=1 -timeout 20m

# The packages whose tests run in-process without the manager binary: the race detector sees their
# goroutines. The simulation runs RACE_SEEDS seeds under it (about 30 s a seed on 2 cores).
RACE_PACKAGES ?= ./internal/engine ./internal/delivery ./internal/routing ./internal/payload ./internal/tracing \
	./internal/redact ./internal/metrics ./internal/console ./pkg/... ./test/e2e
RACE_SEEDS ?= 3

.PHONY: test-race
test-race: setup-envtest ## Run the unit packages, the engine, the e2e tests and the simulation under the race detector.
	KUBEBUILDER_ASSETS="$$($(ENVTEST_SETUP))" go test -race $(RACE_PACKAGES) -count=1 -timeout 20m
	go test -race ./internal/controller/ -run '^TestSimulation$$' -count=1 -timeout 30m -sim.seeds=$(RACE_SEEDS)

FUZZTIME ?= 10s

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (their seed corpora already run in make test).
	go test ./internal/payload/ -run '^$$' -fuzz '^FuzzRoundTrip$$' -fuzztime $(FUZZTIME)
	go test ./internal/payload/ -run '^$$' -fuzz '^FuzzEncode$$' -fuzztime $(FUZZTIME)
	go test ./internal/delivery/ -run '^$$' -fuzz '^FuzzValidateURL$$' -fuzztime $(FUZZTIME)
	go test ./internal/delivery/ -run '^$$' -fuzz '^FuzzEgressEmbeddedIPv4$$' -fuzztime $(FUZZTIME)
	go test ./internal/delivery/ -run '^$$' -fuzz '^FuzzParseRetryAfter$$' -fuzztime $(FUZZTIME)
	go test ./pkg/signature/ -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME)
	go test ./pkg/signature/ -run '^$$' -fuzz '^FuzzVerifyStandard$$' -fuzztime $(FUZZTIME)

SEEDS ?= 200
STEPS ?= 400

.PHONY: simulate
simulate: ## Run the deterministic simulation of the engine and reconcilers: SEEDS seeds, or replay one with SEED=n (traced).
	go test ./internal/controller/ -run '^TestSimulation$$' -count=1 -timeout 60m \
		-sim.seeds=$(SEEDS) -sim.steps=$(STEPS) $(if $(SEED),-sim.seed=$(SEED) -sim.trace -v)

# Flags of hack/mutate, for example MUTATE_ARGS="-only ack-before-patch -seeds 5", or -list to check
# that every mutant still applies without running anything.
MUTATE_ARGS ?=

.PHONY: mutate
mutate: ## Run the mutation gate: each mutant of hack/mutate/mutants.go must fail the engine tests, a short simulation or the in-process controller tests (flags in MUTATE_ARGS).
	go run ./hack/mutate $(MUTATE_ARGS)

.PHONY: lint
lint: golangci-lint ## Run golangci-lint.
	$(GOLANGCI_LINT) run

.PHONY: lint-fix
lint-fix: golangci-lint ## Run golangci-lint and apply its fixes.
	$(GOLANGCI_LINT) run --fix

.PHONY: demo
demo: manifests setup-envtest ## Run the local demo: control plane, manager, signed deliveries to a sample receiver.
	KUBEBUILDER_ASSETS="$$($(ENVTEST_SETUP))" go run ./hack/demo

##@ Benchmark

.PHONY: bench
bench: manifests setup-envtest ## Measure throughput, latency, isolation, fan-out, writes, memory and delivery under chaos; writes bench/results/latest.json.
	KUBEBUILDER_ASSETS="$$($(ENVTEST_SETUP))" go run ./bench

.PHONY: bench-quick
bench-quick: manifests setup-envtest ## Run the benchmark at CI smoke sizes (targets reported, not asserted).
	KUBEBUILDER_ASSETS="$$($(ENVTEST_SETUP))" go run ./bench --quick --out bench/results/quick.json

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the manager binary.
	go build -o bin/manager ./cmd/manager

# Manager flags for make run, for example ARGS="--allowed-cidrs=127.0.0.0/8" to deliver to a receiver on
# this machine, whose loopback address the egress policy refuses by default.
ARGS ?=

.PHONY: run
run: manifests generate fmt vet ## Run the manager against the cluster of the current kubeconfig, with the flags in ARGS (e.g. ARGS="--allowed-cidrs=127.0.0.0/8" for a receiver on 127.0.0.1).
	go run ./cmd/manager $(ARGS)

.PHONY: docker-build
docker-build: ## Build the manager image (needs a Docker engine).
	$(CONTAINER_TOOL) build -t ${IMG} .

.PHONY: docker-push
docker-push: ## Push the manager image.
	$(CONTAINER_TOOL) push ${IMG}

.PHONY: build-installer
build-installer: manifests generate kustomize ## Write dist/install.yaml: CRDs and deployment, pinned to IMG.
	mkdir -p dist
	cd config/manager && $(KUSTOMIZE) edit set image controller=${IMG}
	$(KUSTOMIZE) build config/default > dist/install.yaml

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

.PHONY: install
install: manifests kustomize ## Install the CRDs into the cluster of the current kubeconfig.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply -f -

.PHONY: uninstall
uninstall: manifests kustomize ## Uninstall the CRDs. Call with ignore-not-found=true to ignore missing resources.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: deploy
deploy: manifests kustomize ## Deploy the operator to the cluster of the current kubeconfig.
	cd config/manager && $(KUSTOMIZE) edit set image controller=${IMG}
	$(KUSTOMIZE) build config/default | $(KUBECTL) apply -f -

.PHONY: undeploy
undeploy: kustomize ## Remove the operator. Call with ignore-not-found=true to ignore missing resources.
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

##@ Dependencies

LOCALBIN ?= $(shell pwd)/bin
$(LOCALBIN):
	mkdir -p $(LOCALBIN)

KUBECTL ?= kubectl
KUSTOMIZE ?= $(LOCALBIN)/kustomize
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint
ENVTEST_SETUP ?= ENVTEST_K8S_VERSION=$(ENVTEST_K8S_VERSION) hack/setup-envtest.sh

KUSTOMIZE_VERSION ?= v5.8.1
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0

.PHONY: kustomize
kustomize: $(KUSTOMIZE) ## Install kustomize into bin/.
$(KUSTOMIZE): $(LOCALBIN)
	$(call go-install-tool,$(KUSTOMIZE),sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Install controller-gen into bin/.
$(CONTROLLER_GEN): $(LOCALBIN)
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

.PHONY: setup-envtest
setup-envtest: ## Build (first run only) the kube-apiserver and etcd binaries for the tests and print their folder.
	@$(ENVTEST_SETUP) >/dev/null

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT) ## Install golangci-lint into bin/.
$(GOLANGCI_LINT): $(LOCALBIN)
	$(call go-install-tool,$(GOLANGCI_LINT),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))

# go-install-tool will 'go install' any package with custom target and name of binary, if it doesn't exist
# $1 - target path with name of binary
# $2 - package url which can be installed
# $3 - specific version of package
define go-install-tool
@[ -f "$(1)-$(3)" ] && [ "$$(readlink -- "$(1)" 2>/dev/null)" = "$(1)-$(3)" ] || { \
set -e; \
package=$(2)@$(3) ;\
echo "Downloading $${package}" ;\
rm -f "$(1)" ;\
GOBIN="$(LOCALBIN)" go install $${package} ;\
mv "$(LOCALBIN)/$$(basename "$(1)")" "$(1)-$(3)" ;\
} ;\
ln -sf "$$(realpath "$(1)-$(3)")" "$(1)"
endef

##@ Release

# The chart's version is VERSION without the leading "v" (Helm chart versions are SemVer 2); its
# appVersion and image.tag are VERSION, the manager image tag that build-installer pins.
CHART_DIR ?= dist/chart

.PHONY: helm-chart
helm-chart: manifests ## Refresh dist/chart from config/ (CRDs, manager ClusterRole, Prometheus files) and set its versions from VERSION.
	mkdir -p $(CHART_DIR)/crds $(CHART_DIR)/files/rbac $(CHART_DIR)/files/prometheus
	rm -f $(CHART_DIR)/crds/*.yaml
	cp config/crd/bases/*.yaml $(CHART_DIR)/crds/
	cp config/rbac/role.yaml $(CHART_DIR)/files/rbac/role.yaml
	cp config/prometheus/monitor.yaml config/prometheus/alerts.yaml config/prometheus/dashboard.json $(CHART_DIR)/files/prometheus/
	sed -i.bak -e 's/^version: .*/version: $(patsubst v%,%,$(VERSION))/' -e 's/^appVersion: .*/appVersion: $(VERSION)/' $(CHART_DIR)/Chart.yaml
	sed -i.bak -e 's/^  tag: .*/  tag: $(VERSION)/' $(CHART_DIR)/values.yaml
	rm -f $(CHART_DIR)/Chart.yaml.bak $(CHART_DIR)/values.yaml.bak

##@ kubectl plugin

.PHONY: install-plugin
install-plugin: ## Install kubectl-webhook into $(GOBIN) so kubectl finds it as `kubectl webhook`, with kubectl_complete-webhook for its shell completion.
	GOBIN="$(GOBIN)" go install ./cmd/kubectl-webhook
	install -m 0755 cmd/kubectl-webhook/kubectl_complete-webhook "$(GOBIN)/kubectl_complete-webhook"

##@ Documentation

.PHONY: docs
docs: ## Regenerate docs/api-reference.md from the API types.
	go run ./hack/gen-api-docs -o docs/api-reference.md
