# The plain Go commands work without make; these targets only wrap them.
GO ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCH ?= .
BENCHTIME ?= 1s
BIN ?= $(CURDIR)/bin

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

.PHONY: payment
payment: ## run the payment service on :3001 (embedded NATS, no setup)
	$(GO) run ./examples/payment

.PHONY: stress-payment
stress-payment: ## start the payment service, drive it with 100 clients for 30s (CLIENTS=, DURATION=, LOADGEN_FLAGS=)
	@$(GO) build -o $(BIN)/payment ./examples/payment
	@$(GO) build -o $(BIN)/loadgen ./examples/payment/loadgen
	@data=$$(mktemp -d); $(BIN)/payment -addr 127.0.0.1:3001 -data-dir $$data -blacklist country:KP -log-level warn & pid=$$!; \
	  trap "kill -INT $$pid; wait $$pid; rm -rf $$data" EXIT; \
	  for i in $$(seq 50); do curl -sf 127.0.0.1:3001/healthz >/dev/null 2>&1 && break; sleep 0.1; done; \
	  $(BIN)/loadgen -url http://127.0.0.1:3001 -c $(or $(CLIENTS),100) -d $(or $(DURATION),30s) $(LOADGEN_FLAGS)

.PHONY: ci
ci: ## what CI runs (installs servers when run as root)
	bash .ci/run
