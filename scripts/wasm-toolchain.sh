#!/usr/bin/env bash
# Select (and, when needed, install) a toolchain that can build for a wasm32 target.
#
# Sourced by build-wasm.sh / test-wasm.sh:   wasm_toolchain_setup <target> <target-dir-suffix>
# Run directly to just check/install it:       scripts/wasm-toolchain.sh [wasm32-wasip1]
#
# Two paths:
#   rustup    -- rustup's own std for the target (`rustup target list --installed` has it)
#   fallback  -- offline path from BUILD-NOTES.md: Debian's rustc-web/cargo-web (/usr/bin),
#                std rebuilt from rust-web-src with `-Z build-std`, wasi-libc for wasip1,
#                lld's wasm-ld as linker, and a separate CARGO_TARGET_DIR so the host
#                toolchain's artifacts in target/ are never invalidated.
# WASM_TOOLCHAIN=rustup|fallback forces a path (default: auto).
#
# After setup these are set:
#   WASM_PATH_TAKEN   rustup | fallback
#   WASM_CARGO        the cargo binary to run
#   WASM_CARGO_ARGS   array of extra cargo args (e.g. -Z build-std=std,panic_abort)
# and the needed environment (PATH, RUSTC, RUSTFLAGS, RUSTC_BOOTSTRAP, CARGO_TARGET_DIR)
# is exported.

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FALLBACK_DEBS=(rustc-web cargo-web rust-web-src wasi-libc lld)

rustup_has_target() {
  local t="$1"
  [ -x "$CARGO_HOME/bin/rustup" ] || command -v rustup >/dev/null 2>&1 || return 1
  # `target list --installed` only reads local state; it never downloads.
  PATH="$CARGO_HOME/bin:$PATH" rustup target list --installed 2>/dev/null | grep -x "$t" >/dev/null
}

wasm_toolchain_setup() {
  local target="$1" dir_suffix="${2:-wasm-fallback}"
  local want="${WASM_TOOLCHAIN:-auto}"
  case "$want" in auto|rustup|fallback) ;; *) die "WASM_TOOLCHAIN must be auto|rustup|fallback, not '$want'";; esac

  if [ "$want" != fallback ] && rustup_has_target "$target"; then
    host_env
    WASM_PATH_TAKEN=rustup
    WASM_CARGO=cargo
    WASM_CARGO_ARGS=()
    log "toolchain path: rustup ($(rustc --version), target $target installed via rustup)"
    return 0
  fi
  [ "$want" = rustup ] && die "WASM_TOOLCHAIN=rustup but rustup has no $target target installed"

  log "toolchain path: fallback (rustup has no $target target; Debian rustc-web + build-std)"
  apt_ensure "${FALLBACK_DEBS[@]}"
  [ -x /usr/bin/cargo ] && [ -x /usr/bin/rustc ] || die "/usr/bin/cargo or /usr/bin/rustc missing after install"
  [ -x /usr/bin/wasm-ld ] || die "/usr/bin/wasm-ld missing (package lld)"
  # bookworm main carries rustc-web 1.85, bookworm-security 1.96 (verified): too old a
  # Debian rustc cannot build today's crates. Warn early with the likely cause.
  local deb_minor host_minor
  deb_minor="$(/usr/bin/rustc --version | sed -nE 's/^rustc 1\.([0-9]+).*/\1/p')"
  host_minor="$(PATH="$CARGO_HOME/bin:$PATH" rustc --version 2>/dev/null | sed -nE 's/^rustc 1\.([0-9]+).*/\1/p' || true)"
  if [ -n "$deb_minor" ] && [ -n "$host_minor" ] && [ "$deb_minor" -lt "$host_minor" ]; then
    log "WARNING: Debian rustc 1.$deb_minor is older than the host rustc 1.$host_minor; if the build fails," \
        "make sure bookworm-security and bookworm-updates are in the apt sources (they carry rustc-web 1.96)" \
        "and run: apt-get install --only-upgrade ${FALLBACK_DEBS[*]}"
  fi
  local sysroot; sysroot="$(/usr/bin/rustc --print sysroot)"
  [ -d "$sysroot/lib/rustlib/src/rust/library" ] || die "std sources missing under $sysroot/lib/rustlib/src/rust (package rust-web-src)"

  # /usr/bin first: Debian's cargo/rustc. $CARGO_HOME/bin after it, for cargo-installed
  # tools such as wasm-bindgen-test-runner. RUSTC is pinned explicitly anyway.
  PATH="/usr/bin:$CARGO_HOME/bin:$PATH"
  export PATH
  unset RUSTUP_TOOLCHAIN
  export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
  local flags="-C linker=/usr/bin/wasm-ld"
  case "$target" in
    wasm32-wasi*) flags="$flags -L /usr/lib/wasm32-wasi" ;;
  esac
  export RUSTFLAGS="$flags${RUSTFLAGS:+ $RUSTFLAGS}"
  export CARGO_TARGET_DIR="${WASM_FALLBACK_TARGET_DIR:-$ROOT/target/$dir_suffix}"
  WASM_PATH_TAKEN=fallback
  WASM_CARGO=/usr/bin/cargo
  WASM_CARGO_ARGS=(-Z build-std=std,panic_abort)
  log "fallback: $(/usr/bin/rustc --version), RUSTFLAGS='$RUSTFLAGS', CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  wasm_toolchain_setup "${1:-wasm32-wasip1}"
  echo "$WASM_PATH_TAKEN"
fi
