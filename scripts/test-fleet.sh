#!/usr/bin/env bash
# The fleet guard (guards[].fleet) against a real Prometheus server (tests/tests/fleet.rs):
# three Envoys of one service scraped every second, one busy and two quiet; a fake metrics
# server answering junk; run once per fleet composition.
#
#   scripts/test-fleet.sh [scenario filter...]
#
# Environment:
#   FLEET           wasm | native | mixed | all: the fleets to run (default from FILTER: wasm,
#                   native, or both -> all). `mixed` is a native busy proxy and Wasm quiet ones.
#                   A composition left out is reported as SKIPPED, a failure under CI=true.
#   WASM, NATIVE_SO the filter builds (default dist/; built when missing)
#   PROMETHEUS_BIN  the Prometheus server (default: PATH, else taken out of Debian's
#                   `prometheus` package into .cache/prometheus-deb without installing it or
#                   starting its service). Missing: SKIPPED locally, a failure under CI=true.
#   ENVOY_RUNTIME   docker | native | auto (Prometheus always runs natively, on loopback)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

PKG=subset-router-integration
requested="FLEET=${FLEET:-} FILTER=${FILTER:-both}"
ci() { [[ "${CI:-}" =~ ^([Tt][Rr][Uu][Ee]|1)$ ]]; }
all=(wasm native mixed)
case "${FLEET:-}" in
  "") case "${FILTER:-both}" in
        wasm) fleets=(wasm) ;;
        native) fleets=(native) ;;
        *) fleets=("${all[@]}") ;;
      esac ;;
  all) fleets=("${all[@]}") ;;
  wasm|native|mixed) fleets=("$FLEET") ;;
  *) die "FLEET must be wasm, native, mixed or all, not '$FLEET'" ;;
esac
# The builds those fleets need (made when missing).
need=()
for f in "${fleets[@]}"; do
  case "$f" in
    wasm) need+=(wasm) ;;
    native) need+=(native) ;;
    mixed) need+=(wasm native) ;;
  esac
done
if [[ " ${need[*]} " == *" wasm "* && " ${need[*]} " == *" native "* ]]; then FILTER=both
elif [[ " ${need[*]} " == *" native "* ]]; then FILTER=native
else FILTER=wasm; fi
mapfile -t _builds < <(FILTER="$FILTER" filter_builds)

rc=0
summary=()
if [ -z "${PROMETHEUS_BIN:-}" ]; then
  PROMETHEUS_BIN="$(prometheus_tool prometheus || true)"
fi
if [ -z "$PROMETHEUS_BIN" ] || [ ! -x "$PROMETHEUS_BIN" ]; then
  if ci; then die "no prometheus binary (PROMETHEUS_BIN, PATH, Debian's package): required under CI=true"; fi
  log "SKIPPED (loud): no prometheus binary (PROMETHEUS_BIN, PATH, Debian's package): the fleet guard was NOT tested"
  exit 0
fi
export PROMETHEUS_BIN
log "prometheus: $PROMETHEUS_BIN ($("$PROMETHEUS_BIN" --version 2>&1 | head -n1))"

envoy_env
host_env
for fleet in "${fleets[@]}"; do
  # The suite's own build (its Env) is the quiet proxies': Wasm for a mixed fleet.
  build="$fleet"; [ "$fleet" = mixed ] && build=wasm
  log "FLEET=$fleet ENVOY_RUNTIME=$ENVOY_RUNTIME: cargo test -p $PKG --release --test fleet $* -- --nocapture"
  if FILTER="$build" FLEET="$fleet" cargo test -p "$PKG" --release --test fleet "$@" -- --test-threads=1 --nocapture; then
    summary+=("fleet suite ($fleet fleet, $ENVOY_RUNTIME): PASS")
  else
    summary+=("fleet suite ($fleet fleet, $ENVOY_RUNTIME): FAIL")
    rc=1
  fi
done
for f in "${all[@]}"; do
  if [[ " ${fleets[*]} " != *" $f "* ]]; then
    if ci; then summary+=("fleet suite ($f fleet): FAIL: not run ($requested), CI=true"); rc=1
    else summary+=("fleet suite ($f fleet): SKIPPED ($requested): not run"); fi
  fi
done
for line in "${summary[@]}"; do log "$line"; done
exit "$rc"
