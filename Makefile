# Sluice build, test and demo entry points. `make test` is what CI runs.
GO       ?= go
BIN      := bin
PKGS     := ./...

.PHONY: all build test test-short demo bench bench-compare bench-overload stream-check fmt lint clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# vet + the whole suite under the race detector. Integration tests start the
# real binaries, so build them first.
test: build
	$(GO) vet $(PKGS)
	scripts/mutate.sh --check
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

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

# Overload goodput, priority and fairness: Sluice against HAProxy and no proxy.
bench-overload: build
	scripts/bench-overload.sh

# A 1 GiB download and uploads through Sluice; prints its peak memory.
stream-check: build
	scripts/stream-check.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

lint:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)

clean:
	rm -rf $(BIN) demo-out
