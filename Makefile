# ironlb developer targets. `make test` is what CI runs (.ci/run); the e2e tests need root.
SHELL := /bin/bash
GOBIN := $(shell go env GOPATH)/bin
GO_TEST_FLAGS ?= -count=1 -timeout 40m

.PHONY: deps generate lint test unit lab lab-down bench

deps: ## install Debian packages, pinned Go tools and the cached kube-apiserver
	hack/install-deps.sh

generate: ## regenerate deepcopy and CRDs from api/
	hack/generate.sh

lint: deps
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	$(GOBIN)/staticcheck ./...

test: lint ## everything CI runs: lint, unit, integration (real API server) and e2e (root) tests
	go test $(GO_TEST_FLAGS) ./...

unit: ## the tests that need neither root nor the API server
	go test -count=1 ./allocator/...

lab: deps ## the local lab: API server, nodes, routers, ironlb, a demo Service (root)
	go run ./cmd/ironlb-lab

lab-down: ## remove what a lab left behind (root)
	go run ./cmd/ironlb-lab -down

bench: ## Go benchmarks (figures go to BENCHMARKS.md)
	go test -run '^$$' -bench . -benchmem ./allocator/...
