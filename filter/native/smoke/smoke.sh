#!/usr/bin/env bash
# Smoke test of the native build in a real Envoy 1.40 (no Docker): loads
# dist/libsubset_router.so with filter/native/smoke/envoy.yaml and checks, with curl, the
# counters at 0 before the first request, a debug rule, the 90/10 split, a forged routing
# header, the response header, and that an invalid configuration fails `envoy --mode validate`
# with its `path: reason` line. Then runs progressive.sh (ramps and guards in a real Envoy, about
# 40 s; PROGRESSIVE=0 skips it).
#
#   filter/native/smoke/smoke.sh            (builds the .so and fetches Envoy if needed)
#   SO=dist/libsubset_router.so ENVOY=/path/to/envoy filter/native/smoke/smoke.sh
#
# Uses 127.0.0.1 ports 18000 (front), 18001 (admin), 18011, 18012 (progressive.sh: 181xx).
# Prints `N passed, N failed`.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$HERE/../../../scripts/lib.sh"
cd "$ROOT"

SO="${SO:-$(scripts/build-native.sh | tail -n1)}"
ENVOY="${ENVOY:-$(scripts/envoy-native.sh | tail -n1)}"
CONFIG="$HERE/envoy.yaml"
FRONT=http://127.0.0.1:18000
ADMIN=http://127.0.0.1:18001
WORK="$(mktemp -d)"
mkdir -p "$WORK/modules"
cp "$SO" "$WORK/modules/libsubset_router.so"
export ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$WORK/modules"

passed=0; failed=0
check() {  # check NAME CONDITION-COMMAND...
  local name="$1"; shift
  if "$@"; then passed=$((passed + 1)); log "ok: $name"
  else failed=$((failed + 1)); log "FAILED: $name"; fi
}

envoy_pid=
cleanup() {
  [ -n "$envoy_pid" ] && kill "$envoy_pid" 2>/dev/null && wait "$envoy_pid" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- validate: the good config passes, an invalid one fails with `path: reason` -------------
validate_ok() { "$ENVOY" --mode validate -c "$CONFIG" > "$WORK/validate-ok.log" 2>&1; }
check "valid config passes --mode validate" validate_ok
sed 's/"weight": 90}/"weight": 1000001}/' "$CONFIG" > "$WORK/invalid.yaml"
if "$ENVOY" --mode validate -c "$WORK/invalid.yaml" > "$WORK/validate-bad.log" 2>&1; then
  bad_rc=0; else bad_rc=$?; fi
log "invalid config: --mode validate exit $bad_rc; lines:"
grep -E 'subset-router|Failed to create filter config|dynamic module' "$WORK/validate-bad.log" | sed 's/^/    /' >&2 || true
check "invalid config fails --mode validate" [ "$bad_rc" -ne 0 ]
check "invalid config logs the path: reason line" \
  grep -q 'subset-router: invalid configuration: rules\[2\].route.split\[0\].weight: 1000001 exceeds 1000000' "$WORK/validate-bad.log"

# --- run it -----------------------------------------------------------------------------------
"$ENVOY" -c "$CONFIG" --concurrency 2 --log-path "$WORK/envoy.log" &
envoy_pid=$!
for _ in $(seq 1 100); do
  curl -fs "$ADMIN/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "$ADMIN/ready" >/dev/null || { cat "$WORK/envoy.log" >&2; die "envoy did not become ready"; }

stats() { curl -fs "$ADMIN/stats?filter=^dynamicmodulescustom\." ; }
stat() { stats | awk -v n="dynamicmodulescustom.$1:" '$1 == n { print $2 }'; }

log "counters before the first request:"; stats | sed 's/^/    /' >&2
check "8 counters defined before the first request" [ "$(stats | wc -l)" -eq 8 ]
check "all counters at 0 before the first request" [ -z "$(stats | awk '$2 != 0')" ]

# Debug rule.
curl -fs -D "$WORK/h" -o "$WORK/b" -H 'user-agent: debug' "$FRONT/"
check "debug rule -> v2 (body)" [ "$(cat "$WORK/b")" = v2 ]
check "debug rule -> response header x-routed-subset: v2" grep -qi '^x-routed-subset: v2' "$WORK/h"
check "debug rule -> upstream saw x-upstream-cluster: v2" grep -qi '^x-echo-cluster-header: v2' "$WORK/h"
check "debug counter = 1" [ "$(stat subset_router.rule.debug.subset.v2)" = 1 ]

# sourceCidrs rule: the source.address attribute (a client bound to 127.0.0.2).
body=$(curl -fs --interface 127.0.0.2 "$FRONT/")
check "sourceCidrs 127.0.0.2/32 -> v2" [ "$body" = v2 ]
check "trusted-net counter = 1" [ "$(stat subset_router.rule.trusted-net.subset.v2)" = 1 ]

# Forged header naming a cluster that does not exist: removed, so the request is routed (not 404).
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'x-upstream-cluster: internal-admin' "$FRONT/")
check "forged x-upstream-cluster: internal-admin -> routed (200, not 404)" [ "$code" = 200 ]
check "spoofed_header_removed = 1" [ "$(stat subset_router.spoofed_header_removed)" = 1 ]

# Forged `x-upstream-cluster: v2` x200: the split decides (about 90% v1), not the client.
urls=(); for _ in $(seq 1 200); do urls+=(-o /dev/null "$FRONT/"); done
v1=$(curl -s -H 'x-upstream-cluster: v2' -w '%header{x-served-by}\n' "${urls[@]}" | grep -c '^v1$' || true)
log "forged x-upstream-cluster: v2 x200 -> v1 served $v1"
check "forged v2 is ignored (>= 150 of 200 served by v1)" [ "$v1" -ge 150 ]
check "spoofed_header_removed = 201" [ "$(stat subset_router.spoofed_header_removed)" = 201 ]

# 90/10 split over 2000 requests.
urls=(); for _ in $(seq 1 2000); do urls+=(-o /dev/null "$FRONT/"); done
curl -s -w '%header{x-routed-subset} %header{x-served-by}\n' "${urls[@]}" > "$WORK/split"
v2=$(grep -c '^v2 v2$' "$WORK/split" || true)
v1=$(grep -c '^v1 v1$' "$WORK/split" || true)
log "90/10 split x2000: v1=$v1 v2=$v2 (response header agrees with the upstream on every line: $((v1 + v2)) of 2000)"
check "split: every response names its serving subset" [ $((v1 + v2)) -eq 2000 ]
in_range() { [ "$1" -ge "$2" ] && [ "$1" -le "$3" ]; }
check "split: v2 share within 7..13%" in_range "$v2" 140 260

log "counters after:"; stats | sed 's/^/    /' >&2
total=$(( $(stat subset_router.rule.canary.subset.v1) + $(stat subset_router.rule.canary.subset.v2) ))
check "canary counters count 2201 split decisions" [ "$total" -eq 2201 ]
check "host_call_failed = 0" [ "$(stat subset_router.host_call_failed)" = 0 ]

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] || exit 1

if [ "${PROGRESSIVE:-1}" != 0 ]; then
  kill "$envoy_pid" 2>/dev/null && wait "$envoy_pid" 2>/dev/null
  envoy_pid=
  SO="$SO" ENVOY="$ENVOY" "$HERE/progressive.sh"
fi
