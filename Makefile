# ironlb developer targets. `make test` is what CI runs (.ci/run); the e2e tests need root.
SHELL := /bin/bash
GOBIN := $(shell go env GOPATH)/bin
GO_TEST_FLAGS ?= -count=1 -timeout 40m

.PHONY: deps generate lint test unit images lab lab-down bench bench-lab bench-burst bench-forward-vs-kube-proxy bench-faults bench-scale

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
	go test -count=1 ./allocator/... ./speaker/...

images: ## the container images as docker-archive tarballs, without Docker (internal/images)
	go run ./hack/mkimage

lab: deps ## the local lab: API server, nodes, routers, ironlb, a demo Service (root)
	go run ./cmd/ironlb-lab

lab-down: ## remove what a lab left behind (root)
	go run ./cmd/ironlb-lab -down

bench: ## Go benchmarks of the pure parts and the data planes (root for l2 and forward)
	go test -run '^$$' -bench . -benchmem ./allocator/...
	go test -run '^$$' -bench 'Owner|RequestToReply|SolicitationToAdvertisement|ARPReplies' -benchmem ./l2/...
	go test -run '^$$' -bench . -benchtime 1x -timeout 30m ./forward/...
	go test -run '^$$' -bench OneChange -benchtime 200x ./speaker/

bench-burst: deps ## the controller binary at the chart's defaults: 50, 500 and 5,000 Services created at once, then a restart
	go test ./controller -run '^$$' -bench Burst -benchtime 1x -timeout 30m

bench-forward-vs-kube-proxy: deps ## ironlb's speaker and kube-proxy (nftables) side by side: 10,000 Services, first programming, 5 minutes of endpoint churn (root)
	go test ./e2e/fwbench -run '^$$' -bench ForwardVsKubeProxy -benchtime 1x -timeout 60m -v
bench-scale: deps ## 50 speaker binaries on simulated nodes, BGP mode, 5,000 Services, against a real API server, then 10 endpoint changes/s (IRONLB_SCALE_NODES, IRONLB_SCALE_SERVICES, IRONLB_SCALE_CHURN_SECONDS)
	go test ./speaker -run '^$$' -bench Scale -benchtime 1x -timeout 45m -v

bench-lab: ## the lab measurements: failover, assign-to-answer, throughput, 10-minute steady state (root)
	go test ./e2e -run '^$$' -bench 'L2|Forwarding' -benchtime 1x -timeout 60m

bench-faults: ## the long faults in the lab: the API server frozen for 5 minutes, memberlist cut off one node for 60 s (root)
	go test ./e2e -run '^$$' -bench Fault -benchtime 1x -timeout 30m -v
