#!/usr/bin/env bash
# Run a crate's wasm-bindgen-test tests compiled to wasm32-unknown-unknown, under Node.
#
#   scripts/test-wasm.sh [package] [test-target] [--manifest-path P]
#   (defaults: subset-router wasm_agreement)
#
# 1. The wasm-bindgen version is read from Cargo.lock; wasm-bindgen-test-runner of exactly
#    that version must be in $CARGO_HOME/bin, else `cargo install wasm-bindgen-cli
#    --version <v>` (not --locked: its lockfile pins a yanked crate; ~4-5 min on 2 cores, once).
# 2. Toolchain: rustup's wasm32-unknown-unknown target when installed, else the Debian
#    fallback with -Z build-std (CARGO_TARGET_DIR=target/wasm-test), see wasm-toolchain.sh.
set -euo pipefail
# shellcheck source=scripts/wasm-toolchain.sh
source "$(dirname "$0")/wasm-toolchain.sh"

pkg=subset-router
test_target=wasm_agreement
manifest=()
pos=()
while [ $# -gt 0 ]; do
  case "$1" in
    --manifest-path) manifest=(--manifest-path "$2"); shift 2 ;;
    -*) die "unknown option $1" ;;
    *) pos+=("$1"); shift ;;
  esac
done
[ "${#pos[@]}" -ge 1 ] && pkg="${pos[0]}"
[ "${#pos[@]}" -ge 2 ] && test_target="${pos[1]}"
TARGET=wasm32-unknown-unknown

cd "$ROOT"
host_env
# Make sure Cargo.lock is resolved (adds a new dev-dependency without upgrading others).
cargo metadata -q --format-version 1 ${manifest[@]+"${manifest[@]}"} >/dev/null
lock="$(dirname "$(cargo locate-project --workspace --message-format plain ${manifest[@]+"${manifest[@]}"})")/Cargo.lock"
ver="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$lock")"
[ -n "$ver" ] || die "$lock has no wasm-bindgen: add wasm-bindgen-test as a wasm32 dev-dependency of $pkg"
log "wasm-bindgen in $lock: $ver"

runner="$CARGO_HOME/bin/wasm-bindgen-test-runner"
have="$("$runner" --version 2>/dev/null || true)"
if [ "$have" = "wasm-bindgen-test-runner $ver" ]; then
  log "runner: $runner $ver already installed"
else
  log "runner: installing wasm-bindgen-cli $ver (found: ${have:-none}); takes minutes, once"
  t0=$(date +%s)
  cargo install wasm-bindgen-cli --version "=$ver" >&2
  log "runner: wasm-bindgen-cli $ver installed in $(( $(date +%s) - t0 ))s"
  have="$("$runner" --version 2>/dev/null || true)"
  [ "$have" = "wasm-bindgen-test-runner $ver" ] || die "installed runner reports '$have', want $ver"
fi

if ! command -v node >/dev/null 2>&1; then
  log "node missing: installing Debian nodejs"
  apt_ensure nodejs
fi
log "node: $(command -v node) $(node --version)"

wasm_toolchain_setup "$TARGET" wasm-test
export CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$runner"
log "cargo test --target $TARGET ${WASM_CARGO_ARGS[*]} -p $pkg --test $test_target (toolchain: $WASM_PATH_TAKEN)"
"$WASM_CARGO" test --target "$TARGET" ${WASM_CARGO_ARGS[@]+"${WASM_CARGO_ARGS[@]}"} \
  ${manifest[@]+"${manifest[@]}"} -p "$pkg" --test "$test_target"
log "wasm tests passed ($WASM_PATH_TAKEN toolchain)"
