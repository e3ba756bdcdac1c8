# The plain Go commands work without make; these targets only wrap them.
GO ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCH ?= .
BENCHTIME ?= 1s

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: test
test: ## go test ./... (tests needing absent servers skip)
	$(GO) test ./...

.PHONY: race
race: ## go test -race ./...
	$(GO) test -race ./...

.PHONY: lint
lint: ## go vet and staticcheck, library and bench module
	$(GO) vet ./...
	cd bench && $(GO) vet ./...
	$(STATICCHECK) ./...

.PHONY: bench
bench: ## the library's benchmarks and the peer comparisons (BENCH=regexp BENCHTIME=1s)
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -benchmem ./...
	cd bench && $(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -benchmem ./...

.PHONY: cover
cover: ## test coverage, written to coverage.html
	$(GO) test -coverprofile=coverage.out ./...
	$(GO) tool cover -func=coverage.out | tail -1
	$(GO) tool cover -html=coverage.out -o coverage.html

.PHONY: fmt
fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

.PHONY: ci
ci: ## what CI runs (installs servers when run as root)
	bash .ci/run
