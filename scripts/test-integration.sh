#!/usr/bin/env bash
# Run the integration suites (package subset-router-integration, in tests/) against the
# built filter in a real Envoy, once per build: the rollout scenarios (--test rollouts) and
# progressive delivery, ramps and canary guards at --concurrency 2 (--test progressive).
#
#   scripts/test-integration.sh [cargo test filter args...]
#
# Environment handed to the suite:
#   FILTER         wasm | native | both (default both): the builds under test, one run each
#   WASM, NATIVE_SO  the filter files (default dist/subset_router.wasm, dist/libsubset_router.so)
#   ENVOY_RUNTIME  docker | native, resolved from ENVOY_RUNTIME=docker|native|auto
#   ENVOY_IMAGE    image tag from scripts/envoy-image.sh (docker runtime only)
#   ENVOY_BIN      native envoy from scripts/envoy-native.sh (always; used for --mode validate)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

PKG=subset-router-integration
mapfile -t builds < <(filter_builds)
envoy_env

host_env
# grep without -q: an early exit would SIGPIPE cargo and fail the pipeline under pipefail.
if ! cargo metadata -q --no-deps --format-version 1 | grep "\"name\":\"$PKG\"" >/dev/null; then
  die "package $PKG is not in the workspace (tests/ crate missing from [workspace] members)"
fi
rc=0
summary=()
for build in "${builds[@]}"; do
  log "FILTER=$build ENVOY_RUNTIME=$ENVOY_RUNTIME ENVOY_IMAGE=${ENVOY_IMAGE:-<unset>} ENVOY_BIN=$ENVOY_BIN"
  # Rollouts and progressive delivery; the reliability suite (--test reliability) is make
  # test-reliability. --no-fail-fast: a failing suite does not keep the other from running.
  # A scenario filter goes to both suites: one that matches none of a suite's scenarios prints
  # SKIPPED for it (a failure under CI=true).
  log "cargo test -p $PKG --release --no-fail-fast --lib --test rollouts --test progressive $* -- --test-threads=1 --nocapture"
  if FILTER="$build" cargo test -p "$PKG" --release --no-fail-fast --lib --test rollouts --test progressive "$@" -- --test-threads=1 --nocapture; then
    summary+=("integration suite ($build build, $ENVOY_RUNTIME): PASS")
  else
    summary+=("integration suite ($build build, $ENVOY_RUNTIME): FAIL")
    rc=1
  fi
done
for line in "${summary[@]}"; do log "$line"; done
exit "$rc"
