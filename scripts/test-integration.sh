#!/usr/bin/env bash
# Run the integration suite (package subset-router-integration, in tests/) against the
# built filter in a real Envoy.
#
#   scripts/test-integration.sh [cargo test filter args...]
#
# Environment handed to the suite:
#   WASM           absolute path of the filter (default dist/subset_router.wasm)
#   ENVOY_RUNTIME  docker | native, resolved from ENVOY_RUNTIME=docker|native|auto
#   ENVOY_IMAGE    image tag from scripts/envoy-image.sh (docker runtime only)
#   ENVOY_BIN      native envoy from scripts/envoy-native.sh (always; used for --mode validate)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

PKG=subset-router-integration
WASM="${WASM:-$ROOT/dist/subset_router.wasm}"
[ -f "$WASM" ] || die "$WASM does not exist: run make build first"

envoy_env
export WASM

host_env
# grep without -q: an early exit would SIGPIPE cargo and fail the pipeline under pipefail.
if ! cargo metadata -q --no-deps --format-version 1 | grep "\"name\":\"$PKG\"" >/dev/null; then
  die "package $PKG is not in the workspace (tests/ crate missing from [workspace] members)"
fi
log "WASM=$WASM ENVOY_RUNTIME=$ENVOY_RUNTIME ENVOY_IMAGE=${ENVOY_IMAGE:-<unset>} ENVOY_BIN=$ENVOY_BIN"
# The rollout scenarios only; the reliability suite (--test reliability) is make test-reliability.
log "cargo test -p $PKG --release --lib --test rollouts $* -- --test-threads=1 --nocapture"
cargo test -p "$PKG" --release --lib --test rollouts "$@" -- --test-threads=1 --nocapture
