#!/usr/bin/env bash
# Does the shipped module catch a panic at its FFI boundary? Every hook of
# dist/libsubset_router.so runs under a catch_unwind guard (filter/native/src/ffi), which only
# works in a module built with panic = "unwind" (scripts/build-native.sh's cargo profile
# `native`). This loads the module the way Envoy does and calls its panic-guard self-test: a
# module built with panic = "abort" kills the process instead of answering.
#
#   filter/native/unwind/check.sh [libsubset_router.so]   default: dist/libsubset_router.so
#                                                          (built if missing)
#
# Needs a C compiler (cc) and nm; under CI=true a missing one fails.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/../../../scripts/lib.sh"

so="${1:-$ROOT/dist/libsubset_router.so}"
for tool in cc nm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    [ "${CI:-}" = true ] && die "$tool is missing: under CI=true the panic-guard check is required"
    log "SKIPPED (loud): $tool is missing; the module's panic guard was NOT checked"
    exit 0
  fi
done
if [ ! -f "$so" ]; then
  log "$so missing: building it"
  "$ROOT/scripts/build-native.sh" "$so" >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Rust links the module with -z now: every Envoy callback it imports must resolve at dlopen.
# Stubs for exactly those (the self-test calls none of them; one that is called says so).
imports="$(nm -D --undefined-only "$so" | awk '$NF ~ /^envoy_dynamic_module_callback_/ {print $NF}')"
[ -n "$imports" ] || die "$so imports no envoy_dynamic_module_callback_*: not the module?"
{
  echo '#include <stdio.h>'
  echo '#include <unistd.h>'
  for name in $imports; do
    printf 'void %s(void) { fputs("stub %s called\\n", stderr); _exit(3); }\n' "$name" "$name"
  done
} >"$work/stubs.c"
cc -O1 -rdynamic -o "$work/harness" "$ROOT/filter/native/unwind/harness.c" "$work/stubs.c" -ldl

rc=0
"$work/harness" "$so" >"$work/out" 2>"$work/err" || rc=$?
if [ "$rc" -ne 0 ] || [ "$(cat "$work/out")" != caught ]; then
  cat "$work/err" >&2
  case "$rc" in
    134) die "$so aborted on a panic its FFI guard should have caught (SIGABRT): built with panic = \"abort\"? Build it with scripts/build-native.sh (cargo --profile native)" ;;
    *) die "$so failed the panic-guard self-test (exit $rc)" ;;
  esac
fi
log "$so caught a panic in its FFI guard and answered the fallback ($(echo "$imports" | wc -l) Envoy imports stubbed)"
