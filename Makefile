# deployhook: `make help` lists the targets.
GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
STATICCHECK_VERSION := v0.8.2
DEMO_SECRET := local-demo-secret-not-for-production

.PHONY: help run test fuzz chaos replicas lint bench screenshots build docker send-test-webhook clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# run execs the binary, so the signal of a Ctrl-C or a kill reaches deployhook
# itself (not a shell or go run between): it shuts down in order and exits 0,
# and make says nothing more.
run: build ## serve the local demo (config/local.yaml) on 127.0.0.1:8080
	export DEPLOYHOOK_WEBHOOK_SECRET="$${DEPLOYHOOK_WEBHOOK_SECRET:-$(DEMO_SECRET)}"; \
		exec bin/deployhook serve --config config/local.yaml

send-test-webhook: build ## send a signed sample push to the demo started by make run
	export DEPLOYHOOK_WEBHOOK_SECRET="$${DEPLOYHOOK_WEBHOOK_SECRET:-$(DEMO_SECRET)}"; \
		exec bin/deployhook send-test-webhook --url http://127.0.0.1:8080/webhook

test: ## vet, the whole test suite with the race detector, and a short fuzz of the webhook parser
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...
	$(GO) test -run=NONE -fuzz=FuzzParse -fuzztime=10s ./webhook/
	$(GO) test -run=NONE -fuzz=FuzzVerify -fuzztime=5s ./webhook/

fuzz: ## fuzz the webhook parser for a minute
	$(GO) test -run=NONE -fuzz=FuzzParse -fuzztime=60s ./webhook/

chaos: ## the chaos test of the safety invariants, long: 3000 events, 20 minutes (SEED=N to pick one)
	DEPLOYHOOK_CHAOS_SEED=$(SEED) DEPLOYHOOK_CHAOS_EVENTS=3000 DEPLOYHOOK_CHAOS_DURATION=20m \
		$(GO) test -race -count=1 -timeout 30m -run 'TestChaos_Invariants$$' -v .

replicas: ## three replicas on a real PostgreSQL, long: 300 SHAs x 10 signed pushes, the lane's holder killed (SHAS=N to pick)
	DEPLOYHOOK_REPLICAS_SHAS=$(or $(SHAS),300) \
		$(GO) test -race -count=1 -timeout 30m -run 'TestReplicas_ThreeServe$$' -v .

lint: ## go vet and staticcheck (pinned)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

bench: ## the benchmarks named in BENCHMARKS.md
	$(GO) test -run=NONE -bench=. -benchmem -benchtime=1s . ./webhook/ ./server/ ./executor/...

screenshots: ## the console's pictures in docs/screenshots, made by TestConsole_Browser in headless Chromium
	DEPLOYHOOK_UPDATE_SCREENSHOTS=1 $(GO) test -count=1 -run '^TestConsole_Browser$$' .

build: ## a static binary in bin/deployhook
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/deployhook .

docker: ## the container image (needs a Docker engine)
	docker build --build-arg VERSION=$(VERSION) -t deployhook:$(VERSION) .

clean: ## remove build output and the demo's journal
	rm -rf bin dist .deployhook

# --- release (issue 12): reproducible binaries, SBOMs and sums --------------
.PHONY: release
release: ## reproducible static binaries (linux/amd64, linux/arm64, darwin/arm64), CycloneDX SBOMs and SHA256SUMS in dist/
	$(GO) run ./tools/release -out dist -version $(VERSION)
