#!/usr/bin/env bash
# Build the Envoy dynamic module (filter/native, release) and copy it to OUT.
#
#   scripts/build-native.sh [out.so]      default: dist/libsubset_router.so
#
# Host toolchain (rustup's cargo, see lib.sh host_env). Envoy loads the module by
# `dynamic_module_config: {name: subset_router}` as lib<name>.so from
# ENVOY_DYNAMIC_MODULES_SEARCH_PATH, so the file name must stay libsubset_router.so.
# Prints the size and the glibc symbol versions it needs; the last stdout line is the
# absolute path of OUT.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

out="${1:-dist/libsubset_router.so}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
pkg=subset-router-native

cd "$ROOT"
host_env
# The cargo profile `native` (workspace Cargo.toml): release, but panic = "unwind" (the release
# profile says "abort", right for the .wasm): every hook catches a panic at the FFI boundary
# (filter/native/src/ffi) and answers safely instead of aborting the whole Envoy process.
profile=native
# Light on a shared machine: CARGO_BUILD_JOBS is honoured if set.

# Reproducible from any checkout and cargo home (the .so otherwise embeds
# $CARGO_HOME/registry/src/... paths of its dependencies' panic locations).
reproducible_rustflags
pin_check "host rustc" "$HOST_RUST_PIN" "$(rustc --version | awk '{print $2}')"

start=$(date +%s)
log "$(cargo --version); cargo build --profile $profile -p $pkg --lib"
# JSON messages on stdout (diagnostics rendered on stderr) tell us the artifact path.
artifacts="$(cargo build --profile "$profile" -p "$pkg" --lib --message-format=json-render-diagnostics |
  python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and "cdylib" in m["target"]["kind"]:
        for f in m["filenames"]:
            if f.endswith(".so"):
                print(f)
')"
so="$(printf '%s\n' "$artifacts" | tail -n1)"
[ -n "$so" ] && [ -f "$so" ] || die "no .so cdylib artifact produced for package $pkg"

mkdir -p "$(dirname "$out")"
cp -f "$so" "$out"
size=$(stat -c %s "$out")
log "built $out in $(( $(date +%s) - start ))s: $size bytes ($(( (size + 1023) / 1024 )) KiB)"
if command -v objdump >/dev/null 2>&1; then
  log "needs: $(objdump -T "$out" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tr '\n' ' ')"
fi
echo "$out"
