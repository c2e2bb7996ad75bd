# Sluice build, test and demo entry points. `make test` is what CI runs.
GO       ?= go
BIN      := bin
PKGS     := ./...
# Extra flags for go build: the Dockerfile passes -trimpath.
BUILDFLAGS ?=
# make install puts the binaries in $(DESTDIR)$(PREFIX)/bin.
PREFIX   ?= /usr/local
DESTDIR  ?=
# The commands, one per directory of cmd/: what build builds and install
# installs.
CMDS     := $(sort $(notdir $(patsubst %/,%,$(wildcard cmd/*/))))

.PHONY: all build install test test-alloc test-browser test-short demo bench bench-compare bench-overload bench-qos bench-sweep bench-matrix bench-cache bench-clients stream-check agent-cost fmt lint clean

all: build

build:
	$(GO) build $(BUILDFLAGS) -o $(BIN)/ ./cmd/...

# configs/sluice.service expects sluice in /usr/local/bin, the default.
install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(addprefix $(BIN)/,$(CMDS)) $(DESTDIR)$(PREFIX)/bin/

# vet + the whole suite under the race detector, then the allocation guards
# without it. Integration tests start the real binaries, so build them first.
test: build
	$(GO) vet $(PKGS)
	scripts/mutate.sh --check
	$(GO) test -race -count=1 -timeout 20m $(PKGS)
	$(GO) test -count=1 -timeout 5m -run '$(ALLOC_TESTS)' $(PKGS)

# The zero-allocation guards: every test whose name ends in ZeroAlloc. The
# race detector allocates on its own, so under -race some of them skip and
# the others measure the detector too; this pass is the one that counts.
ALLOC_TESTS := ZeroAlloc$$
test-alloc:
	$(GO) test -count=1 -timeout 5m -run '$(ALLOC_TESTS)' $(PKGS)

# The admin dashboard in a real headless browser (Debian's chromium, over the
# DevTools protocol): it loads the page while the gateway serves traffic
# through a queue and checks the numbers against /metrics. Skips without
# chromium, except under CI=true. About 15 s.
test-browser:
	$(GO) test -tags browser -count=1 -timeout 5m -run Browser ./admin

test-short:
	$(GO) test -short -count=1 $(PKGS)

# The mutation pass (docs/testing.md): plants each bug of scripts/mutants.txt
# in turn and runs its package's tests. Minutes, so `make test` only checks
# that every mutant still applies to the code (mutate.sh --check).
# MUTANTS="id ..." runs only those.
.PHONY: mutate
mutate:
	GO=$(GO) scripts/mutate.sh $(MUTANTS)

# Sluice in front of a simulated overloaded origin, side by side with the
# origin alone. About a minute; cleans up after itself.
demo: build
	$(BIN)/sluice-bench demo --sluice $(BIN)/sluice --out demo-out

# Go micro-benchmarks (allocations and ns/op of the hot paths).
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# CPU per request: Sluice against HAProxy and nginx on one pinned core.
bench-compare: build
	scripts/bench-compare.sh

# Overload goodput, priority, fairness and backend QoS: Sluice against
# HAProxy, nginx and no proxy. About 8.5 minutes.
bench-overload: build
	scripts/bench-overload.sh

# CPU per request across sizes, connections and origin placement.
bench-matrix: build
	scripts/bench-matrix.sh

# CPU per cache hit: Sluice's cache against nginx's proxy_cache, object
# sizes 0 B to 256 KiB, 32 and 256 connections. About 7 minutes.
bench-cache: build
	scripts/bench-cache.sh

# The admission floors from 0.5x to 10x, Sluice beside haproxy-tuned.
bench-sweep: build
	SCENARIO=sweep scripts/bench-overload.sh

# Backend QoS alone: redundant origins of which one fails, hangs or is slow,
# long polls beside quick requests, and a standby brought in for an
# overload; Sluice against HAProxy leastconn. About 4 minutes.
bench-qos: build
	SCENARIO=qos scripts/bench-overload.sh

# Slow readers, slow uploads and idle connections beside a well-behaved
# client: Sluice against nginx and HAProxy. About 2 minutes.
bench-clients: build
	scripts/clients.sh

# A 1 GiB download and uploads through Sluice: the bytes that arrived (length,
# SHA-256) and Sluice's peak memory, PASS/FAIL each; exits 1 on a FAIL.
stream-check: build
	scripts/stream-check.sh

# sluice-agent's own CPU at the default 1 s interval, over 30 s: must be
# under 1% of a core. Flags after AGENT_FLAGS= go to the agent.
agent-cost: build
	scripts/agent-cost.sh $(AGENT_FLAGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

lint:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)

clean:
	rm -rf $(BIN) demo-out
