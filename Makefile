# tickplant: `make run` brings the whole chain up from etc/; `make test` builds and runs every test.
# Both install what is missing first (scripts/install-deps: Debian packages and the tests' Python venv).

SWIFT ?= swift
RELEASE_BIN = .build/release
DEBUG_BIN = .build/debug

.PHONY: all build release run test examples autobahn bench bench-micro bench-chain bench-check bench-edge deps \
	test-deps proto proto-check clean fuzz soak

all: build

deps:
	@scripts/install-deps

test-deps:
	@scripts/install-deps --with-test-tools

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release

## Start sim + feedd + plantd + edged from etc/ and stop them all on Ctrl-C.
run: release
	@scripts/run-chain $(RELEASE_BIN)

## Build and run every test: unit tests of each module and the end-to-end tests with the real executables.
## The chaos test drives 100 000 messages/s through release executables (a debug feedd would be the bottleneck),
## the snapshot and crash tests 200 000 ticks/s: the tests run one at a time, because on two cores such a test
## starves the timing-sensitive ones beside it (a 500 ms gap give-up, a retransmission window).
## The reference consumers (examples/) join, heal a gap and ride through a plantd restart against the real chain.
## The demo page runs in headless Chromium (screenshots in .build/test-artifacts/); tickplant.js's own tests run in
## Node's test runner. Then the WebSocket conformance run (Autobahn) and the benchmarks' allocation check: the
## per-message paths must not allocate. Last, every input the fuzzers keep (Fuzz/corpus: seeds and past findings)
## runs once through its fuzz target, built with AddressSanitizer.
test: test-deps proto-check examples
	node --test web/test/
	$(SWIFT) build -c release
	$(SWIFT) build --build-tests
	TICKPLANT_PYTHON=$(CURDIR)/.venv/bin/python TICKPLANT_RELEASE_BIN_DIR=$(CURDIR)/$(RELEASE_BIN) \
		$(SWIFT) test --skip-build --no-parallel
	scripts/autobahn $(RELEASE_BIN)/edged
	$(MAKE) bench-check
	scripts/fuzz --regress

## The reference raw consumers of docs/protocol.md: the C one (examples/consumer-c/consumer) built on the project's
## generated C, the Python one's protoc code generated into examples/consumer-python/generated/.
examples: deps
	$(MAKE) -s -C examples/consumer-c
	@mkdir -p examples/consumer-python/generated
	protoc -I Proto --python_out=examples/consumer-python/generated Proto/tick.proto Proto/control.proto

## Fuzzing (libFuzzer + AddressSanitizer, the package in Fuzz/): every target for FUZZ_SECONDS (60) from its seeds
## in Fuzz/corpus, with progress; a table of executions and findings at the end (.build-fuzz/report.md). A finding's
## input lands in .build-fuzz/findings/TARGET. docs/reliability.md has the targets and the recorded runs.
FUZZ_SECONDS ?= 60
fuzz: deps
	scripts/fuzz --seconds $(FUZZ_SECONDS) $(FUZZ_TARGETS)

## The long run, not in CI: rule-breakers of every kind (`mktctl bench edge --hostile --returning`: each comes back
## a second after edged ends it; 19 000 connections from one address) beside 1 000 well-behaved clients for
## SOAK_SECONDS (1 800, after 120 s without them): edged stays up, the others get every update in order, its RSS
## stays under its bound and flat after the warm-up. A table at the end; docs/reliability.md has the recorded run.
SOAK_SECONDS ?= 1800
soak: release
	$(RELEASE_BIN)/mktctl bench edge --hostile --returning --clients 1000 --slow-rate 100 \
		--quiet-seconds 120 --seconds $(SOAK_SECONDS) --from-one-address 19000

## WebSocket conformance: the Autobahn testsuite (cases 1-7, 9.1) against edged's /echo, which only this run turns
## on; every case must be OK, NON-STRICT or INFORMATIONAL. The report: .build/autobahn/index.html.
autobahn: release
	scripts/autobahn $(RELEASE_BIN)/edged

## Every benchmark, with progress, writing the figures down (scripts/bench says what goes where): the per-tick paths
## (ordo-one/benchmark), the whole chain on 1 core and on all beside bare libzmq (docs/performance.md and its SVG
## plots in docs/bench/), plantd beside a bare relay, edged beside uWebSockets and NATS. Takes about ten minutes.
bench: release deps
	RELEASE_BIN=$(RELEASE_BIN) SWIFT=$(SWIFT) scripts/bench

## Only the per-tick benchmarks (ordo-one/benchmark, in their own package under Benchmarks/): time and mallocs.
bench-micro: deps
	cd Benchmarks && $(SWIFT) package --disable-sandbox benchmark

## Only the chain: sim -> feedd -> plantd -> consumer at stepped rates beside bare libzmq, on 1 core and on all.
bench-chain: release
	$(RELEASE_BIN)/mktctl bench chain --cores 1,all

## edged's fan-out to 1 000 WebSocket clients beside uWebSockets (socketify) and NATS's WebSocket listener in the
## same run (installs them first), three rounds, plus latency and memory per connection: docs/performance.md.
bench-edge: release
	@scripts/install-deps --with-bench-peers
	$(RELEASE_BIN)/mktctl bench edge --peers --rounds 3 --event-loops 1 2

## Fail when a benchmark allocates more than Benchmarks/Thresholds/ allows: 0 mallocs per sample (a thousand or a
## million iterations). A new benchmark needs its file there too: FeedBenchmarks.<name>.p90.json.
bench-check: deps
	cd Benchmarks && $(SWIFT) package --disable-sandbox benchmark thresholds check --no-progress

## Regenerate the committed protobuf-c code from Proto/*.proto.
proto:
	scripts/gen-proto

proto-check:
	@scripts/gen-proto --check

clean:
	rm -rf .build .venv .autobahn
