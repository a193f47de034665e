#!/usr/bin/env bash
# Build a cdylib crate to a .wasm file (release) and copy it to OUT.
#
#   scripts/build-wasm.sh <package> <out.wasm> [--target wasm32-wasip1] [--manifest-path P] [-- extra cargo args]
#
# Uses rustup's target when installed, else the Debian offline fallback (see
# scripts/wasm-toolchain.sh). Prints the toolchain path taken and the size;
# the last stdout line is the absolute path of OUT.
set -euo pipefail
# shellcheck source=scripts/wasm-toolchain.sh
source "$(dirname "$0")/wasm-toolchain.sh"

[ $# -ge 2 ] || die "usage: $0 <package> <out.wasm> [--target T] [--manifest-path P] [-- cargo args]"
pkg="$1"; out="$2"; shift 2
target=wasm32-wasip1
manifest=()
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target="$2"; shift 2 ;;
    --manifest-path) manifest=(--manifest-path "$2"); shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown argument: $1" ;;
  esac
done
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac

cd "$ROOT"
wasm_toolchain_setup "$target" wasm-fallback

# Size: a proxy is handed this module by every xDS update, so it should be small.
# opt-level z (WASM_OPT_LEVEL) for the wasm only (host builds keep the workspace's "s"); on the
# fallback path std is rebuilt anyway, so panics can compile to a bare trap
# (panic=immediate-abort: no formatting machinery; the filter never panics by design).
export CARGO_PROFILE_RELEASE_OPT_LEVEL="${WASM_OPT_LEVEL:-z}"
if [ "$WASM_PATH_TAKEN" = fallback ] && [ "${WASM_IMMEDIATE_ABORT:-1}" = 1 ]; then
  export RUSTFLAGS="$RUSTFLAGS -Zunstable-options -Cpanic=immediate-abort"
fi

# Reproducible from any checkout on any machine (same pinned toolchain): workspace crates are
# compiled with relative paths, the rustup std with /rustc/<hash>/, Debian's with /usr/; the
# rest is mapped by reproducible_rustflags (scripts/lib.sh).
reproducible_rustflags
if [ "$WASM_PATH_TAKEN" = fallback ]; then
  pin_check "Debian rustc-web" "$WASM_RUSTC_DEB" "$(dpkg-query -W -f='${Version}' rustc-web 2>/dev/null)"
fi

start=$(date +%s)
log "cargo build --release --target $target -p $pkg --lib ${WASM_CARGO_ARGS[*]} ${extra[*]}"
# JSON messages on stdout (diagnostics rendered on stderr) tell us the artifact path.
artifacts="$("$WASM_CARGO" build --release --target "$target" -p "$pkg" --lib \
  ${manifest[@]+"${manifest[@]}"} ${WASM_CARGO_ARGS[@]+"${WASM_CARGO_ARGS[@]}"} \
  --message-format=json-render-diagnostics ${extra[@]+"${extra[@]}"} |
  python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and "cdylib" in m["target"]["kind"]:
        for f in m["filenames"]:
            if f.endswith(".wasm"):
                print(f)
')"
wasm="$(printf '%s\n' "$artifacts" | tail -n1)"
[ -n "$wasm" ] && [ -f "$wasm" ] || die "no .wasm cdylib artifact produced for package $pkg (is crate-type cdylib?)"

mkdir -p "$(dirname "$out")"
cp -f "$wasm" "$out"
# binaryen's wasm-opt -Oz shrinks the module by another ~15% (Debian package binaryen).
# --one-caller-inline-max-function-size=100: -Oz inlines every function that has one caller,
# whatever its size, which welds the configuration and request paths into a few 15-29 KB
# functions. Envoy compiles every function of a module with TurboFan when it loads it (V8 runs
# with --no-liftoff), and TurboFan's working memory grows faster than a function's size; the
# allocator keeps those pages afterwards. Capped, the largest function is 13 KB, the module
# 0.6% larger, B's Envoy ~10 MiB smaller at every worker count, requests as fast (BENCHMARKS.md,
# "Memory per proxy").
if [ "${WASM_OPT:-1}" = 1 ]; then
  # In a subshell: apt_ensure dies on failure, and a missing wasm-opt only costs size.
  command -v wasm-opt >/dev/null 2>&1 || (apt_ensure binaryen) || log "binaryen unavailable: skipping wasm-opt"
  if command -v wasm-opt >/dev/null 2>&1; then
    pin_check "binaryen (wasm-opt)" "$WASM_OPT_DEB" "$(dpkg-query -W -f='${Version}' binaryen 2>/dev/null || wasm-opt --version)"
    before=$(stat -c %s "$out")
    wasm-opt -Oz --one-caller-inline-max-function-size="${WASM_OPT_ONE_CALLER_INLINE:-100}" --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
      --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types \
      "$out" -o "$out.opt" && mv -f "$out.opt" "$out"
    log "wasm-opt -Oz ($(wasm-opt --version)): $before -> $(stat -c %s "$out") bytes"
  fi
fi
size=$(stat -c %s "$out")
log "built $out via $WASM_PATH_TAKEN toolchain in $(( $(date +%s) - start ))s: $size bytes ($(( (size + 1023) / 1024 )) KiB)"
# The filter's own module keeps to its size budget (bench/wasm-budget), where wasm-opt ran.
if [ "$pkg" = subset-router-wasm ] && [ "${WASM_OPT:-1}" = 1 ]; then
  budget="$(grep -v '^#' "$ROOT/bench/wasm-budget" | tail -n1)"
  if [ "$size" -gt "$budget" ]; then
    msg="$out is $size bytes, over the budget of $budget (bench/wasm-budget; bench/wasm-size.py says what grew)"
    [ "${CI:-}" = true ] && die "$msg"
    log "WARNING: $msg"
  fi
  # ...and to its largest-function budget: V8 compiles every function at load, and the memory
  # that takes grows with the largest ones (bench/wasm-function-budget).
  fbudget="$(grep -v '^#' "$ROOT/bench/wasm-function-budget" | tail -n1)"
  largest="$("$ROOT/scripts/wasm-functions.py" "$out")"
  if [ "$largest" -gt "$fbudget" ]; then
    msg="$out has a function of $largest bytes, over the budget of $fbudget (bench/wasm-function-budget): configuration-time code can stay out of line with #[inline(never)]; twiggy top on a build with names (make wasm-size) names it"
    [ "${CI:-}" = true ] && die "$msg"
    log "WARNING: $msg"
  fi
fi
echo "$out"
