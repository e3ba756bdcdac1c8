# The plain Go commands work without make; these targets only wrap them.
GO ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Every package of every module in the workspace (go.work): the library,
# its adapter modules, the examples and the bench module.
ALL := github.com/taipattern/taikit/...
PKG ?= ./tai
BENCH ?= .
BENCHTIME ?= 1s
BIN ?= $(CURDIR)/bin

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {n[++i] = $$1; d[i] = $$2; if (length($$1) > w) w = length($$1)} \
	  END {for (j = 1; j <= i; j++) printf "  %-" w "s  %s\n", n[j], d[j]}' $(MAKEFILE_LIST)

.PHONY: test
test: ## every module's tests (tests needing absent servers skip)
	$(GO) test $(ALL)

.PHONY: race
race: ## every module's tests with the race detector
	$(GO) test -race $(ALL)

.PHONY: lint
lint: ## go vet and staticcheck, every module
	$(GO) vet $(ALL)
	$(STATICCHECK) $(ALL)

.PHONY: bench
bench: ## the benchmarks of every module, the peer comparisons included (BENCH=regexp BENCHTIME=1s)
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -benchmem $(ALL)

.PHONY: cover
cover: ## test coverage, written to coverage.html
	$(GO) test -coverprofile=coverage.out $(ALL)
	$(GO) tool cover -func=coverage.out | tail -1
	$(GO) tool cover -html=coverage.out -o coverage.html

.PHONY: fmt
fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

.PHONY: mutate
mutate: ## mutation testing of one package: PKG=./heijunka (FILES=a.go,b.go MIN=0.9 RUN=regexp J=1)
	$(GO) run ./internal/mutate $(if $(FILES),-files $(FILES)) $(if $(MIN),-min $(MIN)) $(if $(RUN),-run '$(RUN)') $(if $(J),-j $(J)) $(PKG)

# The unit tests of the payment example's fraud rules and idempotency stores,
# which start no service: the whole suite takes about a minute a run, too
# slow to run for every mutant.
PAYMENT_UNIT_TESTS := ^(TestIdempotencyStores.*|TestMemoryIdempotency.*|TestIdempotencyReleaseComparesTheWholeClaim|TestIdempotencyRefusalClaimsNothing|TestIdempotencyReleasedKeysHoldNoRoom|TestNATSIdempotency.*|TestHaversineKnownDistances|TestParseBlacklist|TestBlacklistEntriesArePaymentValues|TestFraud(FailsClosedOnState|ConfigLimits|ThresholdsAtTheirEdges|CELFailsClosedOnState|CELChangesTheStateOnce)|TestGoRules.*|TestImpossibleTravel.*|TestDaysSpendCountsChargesOnce|TestChargeAtItsDeadlineIsBooked|TestMovedFor)$$

.PHONY: mutate-payment
mutate-payment: ## mutation testing of the payment example's fraud.go and idempotency.go with their unit tests (J=1)
	$(GO) run ./internal/mutate -j $(or $(J),1) -files fraud.go,idempotency.go -run '$(PAYMENT_UNIT_TESTS)' ./examples/payment

.PHONY: deps
deps: ## check what a consumer module links for each set of taikit packages
	bash .ci/consumer-check

.PHONY: payment
payment: ## run the payment service on :3001 (embedded NATS, no setup)
	$(GO) run ./examples/payment

.PHONY: stress-payment
stress-payment: ## start the payment service, drive it with 100 clients for 30s (CLIENTS=, DURATION=, LOADGEN_FLAGS=)
	@$(GO) build -o "$(BIN)/payment" ./examples/payment
	@$(GO) build -o "$(BIN)/loadgen" ./examples/payment/loadgen
	@if curl -sf 127.0.0.1:3001/healthz >/dev/null 2>&1; then \
	  echo "another server answers on 127.0.0.1:3001 (the local stack's payment-1? make down stops it); stop it first" >&2; exit 1; fi; \
	  data=$$(mktemp -d); "$(BIN)/payment" -addr 127.0.0.1:3001 -data-dir "$$data" -blacklist country:KP -log-level warn & pid=$$!; \
	  trap 'kill -INT $$pid; wait $$pid; rm -rf "$$data"' EXIT; \
	  for i in $$(seq 50); do curl -sf 127.0.0.1:3001/healthz >/dev/null 2>&1 && break; sleep 0.1; done; \
	  "$(BIN)/loadgen" -url http://127.0.0.1:3001 -c $(or $(CLIENTS),100) -d $(or $(DURATION),30s) $(LOADGEN_FLAGS)

.PHONY: deployment
deployment: ## run the deployment service on :3002 (embedded NATS, demo catalog, no setup)
	$(GO) run ./examples/deployment

.PHONY: stress-deployment
stress-deployment: ## start the deployment service, send 50 concurrent deployments, print how they ended (N=)
	@$(GO) build -o "$(BIN)/deployment" ./examples/deployment
	@$(GO) build -o "$(BIN)/stress-deployment" ./examples/deployment/stress
	@if curl -sf 127.0.0.1:3002/healthz >/dev/null 2>&1; then \
	  echo "another server answers on 127.0.0.1:3002 (the local stack's deployment-1? make down stops it); stop it first" >&2; exit 1; fi; \
	  data=$$(mktemp -d); "$(BIN)/deployment" -addr 127.0.0.1:3002 -data-dir "$$data" -log-level warn & pid=$$!; \
	  trap 'kill -INT $$pid; wait $$pid; rm -rf "$$data"' EXIT; \
	  for i in $$(seq 100); do curl -sf 127.0.0.1:3002/healthz >/dev/null 2>&1 && break; sleep 0.1; done; \
	  "$(BIN)/stress-deployment" -url http://127.0.0.1:3002 -n $(or $(N),50)

# The operations files under deploy/ (docs/operations.md).
DEPLOY_SECRETS ?= $(CURDIR)/deploy/secrets
SECRET_FILES := payment_api_token payment_admin_token payment_audit_key deployment_api_token deployment_admin_token deployment_audit_key

# The directory is its owner's alone (0700), an existing one (a checkout's
# deploy/secrets is 0755) made so too: the files are 0644, for Compose
# mounts them as they are and the containers' user must read them, and
# the directory keeps every other local user out.
.PHONY: deploy-secrets
deploy-secrets: ## random tokens and audit keys for deploy/compose.yaml in deploy/secrets (DEPLOY_SECRETS=dir); existing ones are kept
	@mkdir -p "$(DEPLOY_SECRETS)"
	@chmod 0700 "$(DEPLOY_SECRETS)" || { echo "cannot make $(DEPLOY_SECRETS) private (0700): the tokens would be readable by every local user; use a directory of your own (DEPLOY_SECRETS=dir)" >&2; exit 1; }
	@for f in $(SECRET_FILES); do \
	  if [ -s "$(DEPLOY_SECRETS)/$$f" ]; then echo "kept $(DEPLOY_SECRETS)/$$f"; continue; fi; \
	  head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$(DEPLOY_SECRETS)/$$f.tmp" && \
	  chmod 0644 "$(DEPLOY_SECRETS)/$$f.tmp" && mv "$(DEPLOY_SECRETS)/$$f.tmp" "$(DEPLOY_SECRETS)/$$f" && \
	  echo "wrote $(DEPLOY_SECRETS)/$$f"; \
	done

.PHONY: deploy-rules
deploy-rules: ## write deploy/prometheus/rules/ from the services' -print-rules
	cd examples && $(GO) run ./payment -print-rules > ../deploy/prometheus/rules/payment.yml.tmp
	mv deploy/prometheus/rules/payment.yml.tmp deploy/prometheus/rules/payment.yml
	cd examples && $(GO) run ./deployment -print-rules > ../deploy/prometheus/rules/deployment.yml.tmp
	mv deploy/prometheus/rules/deployment.yml.tmp deploy/prometheus/rules/deployment.yml

.PHONY: dashboards
dashboards: ## write deploy/grafana/dashboards/ from deploy/check's dashboards.go (go generate)
	$(GO) generate -run dashboards ./deploy/check

.PHONY: deploy-check
deploy-check: ## check the files under deploy/ (compose-go, Kubernetes' types, promtool, amtool, nats-server)
	$(GO) test ./deploy/check/... ./deploy/probe/...

# The local stack from real binaries, no Docker (deploy/check/stack):
# NATS x3, Redis, Jaeger, both services x2, Prometheus, Alertmanager.
STACK_DIR ?= $(CURDIR)/.stack
# Quoted: a checkout's path may hold spaces.
STACK := "$(BIN)/stack" -dir "$(STACK_DIR)" -bin "$(BIN)" -repo "$(CURDIR)"

.PHONY: up
up: ## start the local stack from real binaries, no Docker (installs what is missing; STACK_DIR=.stack)
	@BIN="$(BIN)" GO=$(GO) bash deploy/local/install
	@$(STACK) up

.PHONY: status
status: ## each component of the local stack: PID, health, URL
	@$(GO) build -o "$(BIN)/stack" ./deploy/check/cmd/stack
	@$(STACK) status

.PHONY: logs
logs: ## the last lines of each log of the local stack (N=20)
	@$(GO) build -o "$(BIN)/stack" ./deploy/check/cmd/stack
	@$(STACK) logs -n $(or $(N),20)

.PHONY: down
down: ## stop every process the local stack started, by PID (its data stays in STACK_DIR; Ctrl-C kills what still runs at once)
	@$(GO) build -o "$(BIN)/stack" ./deploy/check/cmd/stack
	@$(STACK) down

.PHONY: ci
ci: ## what CI runs (installs servers when run as root)
	bash .ci/run
