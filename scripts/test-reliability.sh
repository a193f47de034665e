#!/usr/bin/env bash
# Reliability and security suite: the fuzz/property run over the config parser and
# the decision function (fuzz/), then tests/tests/reliability.rs against the real Envoy 1.40
# (forged routing headers, invalid configs at start-up, live reload through ECDS under load,
# hostile raw requests, a 200,000-request soak).
#
#   scripts/test-reliability.sh [scenario filter...]      (make test-reliability SCENARIO=...)
#
# Environment:
#   FILTER          wasm | native | both (default both): the builds the Envoy half runs, one
#                   run each (files WASM / NATIVE_SO, default in dist/; built when missing)
#   ENVOY_RUNTIME   docker | native | auto (default auto: Docker when an engine answers)
#   FUZZ_CASES      fuzz cases (default 1000000); FUZZ_SEED (default 0x5eed = 24301)
#   SOAK_REQUESTS   soak size (default 200000)
#   SKIP_FUZZ=1 / SKIP_ENVOY=1   run only one half: printed as SKIPPED, and a failure
#                   under CI=true (as is a scenario filter that selects nothing)
# Both halves always run; the exit code is non-zero if either failed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

rc=0
skipped=()
ci() { [[ "${CI:-}" =~ ^([Tt][Rr][Uu][Ee]|1)$ ]]; }

host_env
if [ "${SKIP_FUZZ:-0}" = 1 ]; then
  fuzz_line="fuzz: SKIPPED (SKIP_FUZZ=1): no fuzz run, no regression tests"
  skipped+=("the fuzz run (SKIP_FUZZ=1)")
else
  log "fuzz: cargo run -p subset-router-fuzz --release -- --cases ${FUZZ_CASES:-1000000}"
  cargo build -q -p subset-router-fuzz --release
  # The oracle's own tests (the reference matcher, a short seeded run), then the regression
  # cases the fuzzer found, replayed exactly.
  cargo test -q -p subset-router-fuzz --release --lib --test filter_regressions || rc=1
  start=$(date +%s)
  if cargo run -q -p subset-router-fuzz --release -- --cases "${FUZZ_CASES:-1000000}" \
       ${FUZZ_SEED:+--seed "$FUZZ_SEED"} | tee "$ROOT/target/fuzz-last.txt"; then
    fuzz_line="fuzz: PASS ($(grep -m1 '^FUZZ_CASES=' "$ROOT/target/fuzz-last.txt" || true), $(( $(date +%s) - start ))s)"
  else
    fuzz_line="fuzz: FAIL (see above; the failing case prints its replay command)"
    rc=1
  fi
fi

if [ "${SKIP_ENVOY:-0}" = 1 ]; then
  envoy_line="reliability suite: SKIPPED (SKIP_ENVOY=1): no Envoy scenario ran"
  skipped+=("the Envoy reliability suite (SKIP_ENVOY=1)")
else
  mapfile -t builds < <(filter_builds)
  envoy_env
  runtime="$ENVOY_RUNTIME"
  host_env
  envoy_line=""
  for build in "${builds[@]}"; do
    log "FILTER=$build ENVOY_RUNTIME=$ENVOY_RUNTIME ENVOY_IMAGE=${ENVOY_IMAGE:-<unset>} ENVOY_BIN=$ENVOY_BIN"
    log "cargo test -p subset-router-integration --release --test reliability -- $*"
    if FILTER="$build" cargo test -p subset-router-integration --release --test reliability -- "$@"; then
      envoy_line+="reliability suite ($build build, $runtime): PASS; "
    else
      envoy_line+="reliability suite ($build build, $runtime): FAIL; "
      rc=1
    fi
  done
fi

log "$fuzz_line"
log "$envoy_line"
if [ "${#skipped[@]}" -gt 0 ]; then
  for what in "${skipped[@]}"; do log "SKIPPED: $what did not run"; done
  if ci; then
    log "FAIL: CI=true and part of the reliability run was skipped"
    rc=1
  fi
fi
exit "$rc"
