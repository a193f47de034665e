#!/usr/bin/env bash
# Byte-for-byte reproducibility of the two shipped artifacts: builds dist/subset_router.wasm
# and dist/libsubset_router.so a second time from a copy of this checkout at another path,
# with another (empty) CARGO_HOME, and compares the bytes with the ones in dist/. The digests
# pinned in examples/oci-digests.json hold for anyone on the pinned toolchains only if this
# passes.
#
#   scripts/check-reproducible.sh        (make check-reproducible; part of make test)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

wasm="$ROOT/dist/subset_router.wasm"
so="$ROOT/dist/libsubset_router.so"
[ -f "$wasm" ] || scripts/build-wasm.sh subset-router-wasm "$wasm" >/dev/null
[ -f "$so" ] || scripts/build-native.sh "$so" >/dev/null

scratch="$(mktemp -d "${TMPDIR:-/tmp}/subset-router-repro.XXXXXX")"
elsewhere="$scratch/another/checkout/path"
other_home="$scratch/another-cargo-home"
mkdir -p "$elsewhere" "$other_home"
# The working tree as it is (tracked and new files, .gitignore'd ones left out).
git ls-files -z --cached --others --exclude-standard |
  tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$elsewhere"
log "second build: checkout $elsewhere, CARGO_HOME $other_home"

# rustup's proxies stay reachable (they live in the first cargo home); crates are fetched
# anew into the other one, so their sources sit under a different absolute path.
rustup_bin="$CARGO_HOME/bin"
(
  export CARGO_HOME="$other_home" PATH="$rustup_bin:$PATH" RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}"
  unset RUSTFLAGS CARGO_TARGET_DIR WASM_FALLBACK_TARGET_DIR
  "$elsewhere/scripts/build-wasm.sh" subset-router-wasm "$elsewhere/dist/subset_router.wasm" >/dev/null
  "$elsewhere/scripts/build-native.sh" "$elsewhere/dist/libsubset_router.so" >/dev/null
)

fail=0
for pair in "$wasm:$elsewhere/dist/subset_router.wasm" "$so:$elsewhere/dist/libsubset_router.so"; do
  a="${pair%%:*}"; b="${pair#*:}"
  ha="$(sha256sum "$a" | cut -d' ' -f1)"; hb="$(sha256sum "$b" | cut -d' ' -f1)"
  if [ "$ha" = "$hb" ]; then
    log "identical: $(basename "$a") sha256 $ha ($(stat -c %s "$a") bytes)"
  else
    log "DIFFERENT: $(basename "$a"): $ha here, $hb from the other checkout and cargo home"
    cmp "$a" "$b" | head -n1 >&2 || true
    strings "$b" | grep -F -e "$elsewhere" -e "$other_home" | head -n3 | sed 's/^/  embeds: /' >&2 || true
    fail=1
  fi
done
if [ "$fail" = 0 ]; then
  rm -rf "$scratch"
  log "reproducible: both artifacts are byte-identical from another path and cargo home"
else
  die "not reproducible (second build kept in $scratch)"
fi
