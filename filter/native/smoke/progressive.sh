#!/usr/bin/env bash
# Progressive delivery in a real Envoy 1.40 with the native build (dist/libsubset_router.so), no
# Docker, `--concurrency 2`:
#
#  1. ramp: v2 from 10% to 50% over 60 s, started 30 s before Envoy: the observed v2 share of
#     each batch of requests follows the formula 10 + 40 * (t - start) / 60 at the batch's
#     midpoint, the gauge dynamicmodulescustom.subset_router.rule.canary.ramp_ppm follows it
#     (ticked once a second on Envoy's main thread, so it moves with or without traffic), and
#     after the end the share is exactly 50%;
#  2. guard: v2's upstream answers 503 (direct_response), split 50/50, guard maxErrorPercent 20,
#     minRequests 20, windowSeconds 5, cooldownSeconds 5: within ~7 s v2 gets no split request,
#     guard.v2.tripped = 1, guard.v2.open = 1, the `user-agent: debug` fixed route still reaches
#     v2; after the cooldown the guard closes, v2 gets traffic again and trips a second time.
#
#   filter/native/smoke/progressive.sh      (builds the .so and fetches Envoy if needed)
#   SO=dist/libsubset_router.so ENVOY=/path/to/envoy filter/native/smoke/progressive.sh
#
# Uses 127.0.0.1 ports 18100 (front), 18101 (admin), 18111, 18112. About 50 s. Prints
# `N passed, N failed`.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/lib.sh
source "$HERE/../../../scripts/lib.sh"
cd "$ROOT"

SO="${SO:-$(scripts/build-native.sh | tail -n1)}"
ENVOY="${ENVOY:-$(scripts/envoy-native.sh | tail -n1)}"
FRONT=http://127.0.0.1:18100
ADMIN=http://127.0.0.1:18101
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
# Floating-point comparisons, for `check`.
fcheck() { awk "BEGIN { exit !($1) }"; }

envoy_pid=
stop_envoy() {
  if [ -n "$envoy_pid" ]; then
    kill "$envoy_pid" 2>/dev/null || true
    wait "$envoy_pid" 2>/dev/null || true
    envoy_pid=
  fi
}
cleanup() { stop_envoy; rm -rf "$WORK"; }
trap cleanup EXIT

# render PLUGIN_JSON V2_STATUS: the Envoy config (front listener with the filter, two upstream
# listeners answering directly with their name; v2 with status V2_STATUS).
render() {
  local json="$1" v2_status="$2" name status port
  cat <<EOF
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 18101 } }
static_resources:
  listeners:
  - name: front
    address: { socket_address: { address: 127.0.0.1, port_value: 18100 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
          route_config:
            virtual_hosts:
            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster_header: x-upstream-cluster, cluster_not_found_response_code: NOT_FOUND }
          http_filters:
          - name: envoy.filters.http.dynamic_modules
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter
              dynamic_module_config: { name: subset_router }
              filter_name: subset_router
              filter_config:
                "@type": type.googleapis.com/google.protobuf.StringValue
                value: '$json'
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
EOF
  for name in v1 v2; do
    if [ "$name" = v1 ]; then status=200; port=18111; else status="$v2_status"; port=18112; fi
    cat <<EOF
  - name: upstream_$name
    address: { socket_address: { address: 127.0.0.1, port_value: $port } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: upstream_$name
          route_config:
            virtual_hosts:
            - name: $name
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: $status, body: { inline_string: "$name" } }
                response_headers_to_add:
                - header: { key: x-served-by, value: "$name" }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
EOF
  done
  cat <<EOF
  clusters:
  - name: v1
    type: STATIC
    load_assignment:
      cluster_name: v1
      endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 18111 } } } } ] } ]
  - name: v2
    type: STATIC
    load_assignment:
      cluster_name: v2
      endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 18112 } } } } ] } ]
EOF
}

# start_envoy NAME PLUGIN_JSON V2_STATUS
start_envoy() {
  render "$2" "$3" > "$WORK/$1.yaml"
  "$ENVOY" --mode validate -c "$WORK/$1.yaml" > "$WORK/$1-validate.log" 2>&1 \
    || { cat "$WORK/$1-validate.log" >&2; die "$1: envoy --mode validate failed"; }
  "$ENVOY" -c "$WORK/$1.yaml" --concurrency 2 --log-path "$WORK/$1.log" &
  envoy_pid=$!
  for _ in $(seq 1 100); do
    curl -fs "$ADMIN/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fs "$ADMIN/ready" >/dev/null || { cat "$WORK/$1.log" >&2; die "$1: envoy did not become ready"; }
}

stats() { curl -fs "$ADMIN/stats?filter=^dynamicmodulescustom\." ; }
stat() { stats | awk -v n="dynamicmodulescustom.$1:" '$1 == n { print $2 }'; }
now() { date +%s.%N; }

# burst N [CURL-ARGS...]: N requests to / over 8 parallel connections (so that both workers
# serve them); one line per response: `<served-by> <status>`.
burst() {
  local n="$1"; shift
  local per=$(( (n + 7) / 8 )) i urls=() pids=()
  for _ in $(seq 1 "$per"); do urls+=(-o /dev/null "$FRONT/"); done
  for i in 1 2 3 4 5 6 7 8; do
    curl -s "$@" -w '%header{x-served-by} %{http_code}\n' "${urls[@]}" > "$WORK/burst.$i" &
    pids+=($!)
  done
  wait "${pids[@]}"   # not a bare `wait`: Envoy is a background job too
  cat "$WORK"/burst.?
}

worker_cx() {  # per-worker downstream connections of the front listener
  curl -fs "$ADMIN/stats?filter=^listener\.127\.0\.0\.1_18100\.worker_.\.downstream_cx_total$"
}

# ============================================================================================
# 1. Ramp
# ============================================================================================
start_s=$(( $(date +%s) - 30 ))
start_rfc=$(date -u -d "@$start_s" +%Y-%m-%dT%H:%M:%SZ)
expected() {  # expected v2 share in percent at time $1 (Unix seconds, fractional)
  awk -v t="$1" -v s="$start_s" 'BEGIN { f = (t - s) / 60; if (f < 0) f = 0; if (f > 1) f = 1; printf "%.2f", 10 + 40 * f }'
}
RAMP_JSON='{"responseHeader": "x-routed-subset", "rules": [{"name": "canary", "route": {"split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}], "ramp": {"subset": "v2", "toPercent": 50, "start": "'"$start_rfc"'", "durationSeconds": 60}}}], "default": {"subset": "v1"}}'
log "ramp: v2 10% -> 50% from $start_rfc over 60 s"
start_envoy ramp "$RAMP_JSON" 200

ramp_gauge() { stat subset_router.rule.canary.ramp_ppm; }
g0=$(ramp_gauge); t0=$(now)
log "ramp_ppm right after start: $g0 (formula $(expected "$t0")%)"
check "ramp_ppm gauge defined and set at load" [ -n "$g0" ]
check "ramp_ppm at load matches the formula within 1.5 points" \
  fcheck "($g0 / 10000 - $(expected "$t0")) ^ 2 <= 1.5 ^ 2"

# Without traffic the gauge still moves: the tick runs on Envoy's main thread.
sleep 3
g1=$(ramp_gauge); t1=$(now)
log "ramp_ppm after 3 s without traffic: $g1 (formula $(expected "$t1")%)"
check "ramp_ppm moves without traffic (main-thread tick)" [ "$g1" -gt "$g0" ]

# Compared with the reading of the previous round (or the load-time one): >= 3.6 s apart.
prev_gauge="$g0"
for round in 1 2 3; do
  ta=$(now)
  burst 2000 > "$WORK/ramp.$round"
  tb=$(now)
  g=$(ramp_gauge); tg=$(now)
  n=$(wc -l < "$WORK/ramp.$round")
  v2=$(grep -c '^v2 200$' "$WORK/ramp.$round" || true)
  mid=$(awk -v a="$ta" -v b="$tb" 'BEGIN { printf "%.3f", (a + b) / 2 }')
  share=$(awk -v v="$v2" -v n="$n" 'BEGIN { printf "%.2f", 100 * v / n }')
  exp=$(expected "$mid")
  log "ramp round $round: t-start = $(awk -v m="$mid" -v s="$start_s" 'BEGIN { printf "%.1f", m - s }') s," \
      "$n requests in $(awk -v a="$ta" -v b="$tb" 'BEGIN { printf "%.2f", b - a }') s: v2 $v2 = $share% (formula $exp%);" \
      "ramp_ppm $g (formula $(expected "$tg")%)"
  check "ramp round $round: all $n requests answered 200" [ "$(grep -c ' 200$' "$WORK/ramp.$round")" -eq "$n" ]
  # 2000 requests at p ~ 0.3: one standard deviation is ~1 point; allow 3.5.
  check "ramp round $round: v2 share $share% within 3.5 points of $exp%" \
    fcheck "($share - $exp) ^ 2 <= 3.5 ^ 2"
  check "ramp round $round: ramp_ppm $g within 1.5 points of the formula" \
    fcheck "($g / 10000 - $(expected "$tg")) ^ 2 <= 1.5 ^ 2"
  check "ramp round $round: ramp_ppm grew ($prev_gauge -> $g)" [ "$g" -gt "$prev_gauge" ]
  prev_gauge="$g"
  sleep 4
done

# After the end (start + 60 s): exactly toPercent.
wait_s=$(awk -v s="$start_s" -v t="$(now)" 'BEGIN { w = s + 61.5 - t; printf "%.1f", (w > 0 ? w : 0) }')
log "waiting ${wait_s} s for the end of the ramp"
sleep "$wait_s"
g_end=$(ramp_gauge)
burst 2000 > "$WORK/ramp.end"
v2=$(grep -c '^v2 200$' "$WORK/ramp.end" || true)
log "after the end: ramp_ppm $g_end, v2 $v2 of 2000"
check "after the end: ramp_ppm = 500000" [ "$g_end" = 500000 ]
check "after the end: v2 share within 46.5..53.5%" fcheck "$v2 >= 930 && $v2 <= 1070"
ramp_total=$(( $(stat subset_router.rule.canary.subset.v1) + $(stat subset_router.rule.canary.subset.v2) ))
check "ramp: decision counters count every request (8000)" [ "$ramp_total" -eq 8000 ]
log "front listener connections per worker:"; worker_cx | sed 's/^/    /' >&2
check "both workers served connections" \
  [ "$(worker_cx | awk '$2 > 0' | wc -l)" -eq 2 ]
check "ramp: host_call_failed = 0" [ "$(stat subset_router.host_call_failed)" = 0 ]
stop_envoy
grep -E 'subset-router' "$WORK/ramp.log" | sed 's/^/    /' >&2 || true

# ============================================================================================
# 2. Guard
# ============================================================================================
GUARD_JSON='{"responseHeader": "x-routed-subset", "rules": [{"name": "debug", "match": {"headers": [{"name": "user-agent", "exact": "debug"}]}, "route": {"subset": "v2"}}, {"name": "canary", "route": {"split": [{"subset": "v1", "weight": 50}, {"subset": "v2", "weight": 50}]}}], "default": {"subset": "v1"}, "guards": [{"subset": "v2", "maxErrorPercent": 20, "minRequests": 20, "windowSeconds": 5, "cooldownSeconds": 5}]}'
log "guard: v2 answers 503, split 50/50, guard v2 at 20% errors (min 20 requests, 5 s window, 5 s cooldown)"
start_envoy guard "$GUARD_JSON" 503

log "guard stats before the first request:"; stats | grep guard | sed 's/^/    /' >&2
check "guard.v2.tripped = 0 before traffic" [ "$(stat subset_router.guard.v2.tripped)" = 0 ]
check "guard.v2.open = 0 before traffic" [ "$(stat subset_router.guard.v2.open)" = 0 ]

# Batches of 40 requests until a batch gets no v2 and the trip is counted.
g_start=$(now); tripped_at=; quiet_at=; batch=0
while :; do
  batch=$((batch + 1))
  burst 40 > "$WORK/guard.batch"
  v2=$(grep -c '^v2 ' "$WORK/guard.batch" || true)
  t=$(awk -v a="$g_start" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
  tripped=$(stat subset_router.guard.v2.tripped)
  [ -z "$tripped_at" ] && [ "$tripped" -ge 1 ] && tripped_at="$t"
  log "guard batch $batch at +${t} s: v2 $v2 of 40 (503), tripped=$tripped"
  if [ "$v2" -eq 0 ]; then [ -n "$quiet_at" ] || quiet_at="$t"; else quiet_at=; fi
  if [ -n "$tripped_at" ] && [ -n "$quiet_at" ]; then break; fi
  awk -v t="$t" 'BEGIN { exit !(t > 10) }' && break
  sleep 0.1
done
log "guard: tripped at +${tripped_at:-never} s; v2 got no split request from +${quiet_at:-never} s"
check "guard tripped within 7 s" fcheck "${tripped_at:-99} <= 7"
check "v2 got no split request within 7 s" fcheck "${quiet_at:-99} <= 7"
check "guard.v2.tripped = 1" [ "$(stat subset_router.guard.v2.tripped)" = 1 ]
check "guard.v2.open = 1" [ "$(stat subset_router.guard.v2.open)" = 1 ]

# While open (the 5 s cooldown): no split request reaches v2; the debug route still does.
diverted0=$(stat subset_router.guard.v2.diverted)
burst 400 > "$WORK/guard.open"
v2_open=$(grep -c '^v2 ' "$WORK/guard.open" || true)
diverted=$(( $(stat subset_router.guard.v2.diverted) - diverted0 ))
log "while open: v2 $v2_open of 400 split requests; diverted +$diverted"
check "while open: 0 of 400 split requests reach v2" [ "$v2_open" -eq 0 ]
check "while open: every request v2 would have had is diverted (100..300 of 400)" \
  fcheck "$diverted >= 100 && $diverted <= 300"
debug=$(curl -s -o /dev/null -H 'user-agent: debug' -w '%header{x-served-by} %{http_code}' "$FRONT/")
log "while open: user-agent: debug -> $debug"
check "while open: the debug fixed route still reaches v2" [ "$debug" = "v2 503" ]
check "guard.v2.tripped still 1 (counted once for the proxy)" [ "$(stat subset_router.guard.v2.tripped)" = 1 ]

# After the cooldown: closed, v2 back in the split, and (still failing) it trips again.
closed_at=
for _ in $(seq 1 100); do
  if [ "$(stat subset_router.guard.v2.open)" = 0 ]; then
    closed_at=$(awk -v a="$g_start" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'); break
  fi
  sleep 0.1
done
log "guard closed at +${closed_at:-never} s (tripped at +$tripped_at s, cooldown 5 s)"
check "guard closes after the 5 s cooldown (gauge open = 0, with no traffic)" [ -n "$closed_at" ]
burst 40 > "$WORK/guard.closed"
v2_back=$(grep -c '^v2 ' "$WORK/guard.closed" || true)
log "after the close: v2 $v2_back of 40"
check "after the close: v2 gets split requests again" [ "$v2_back" -gt 0 ]
for _ in $(seq 1 30); do
  [ "$(stat subset_router.guard.v2.tripped)" -ge 2 ] && break
  burst 40 > /dev/null
  sleep 0.1
done
check "still failing: the guard trips a second time (tripped = 2)" \
  [ "$(stat subset_router.guard.v2.tripped)" = 2 ]

log "guard stats at the end:"; stats | sed 's/^/    /' >&2
log "front listener connections per worker:"; worker_cx | sed 's/^/    /' >&2
check "guard: host_call_failed = 0" [ "$(stat subset_router.host_call_failed)" = 0 ]
stop_envoy   # also flushes the log file (Envoy writes it every 10 s otherwise)
log "Envoy log lines of the filter:"
grep -E 'subset-router' "$WORK/guard.log" | sed 's/^/    /' >&2 || true
check "a trip warning naming v2 in the Envoy log" \
  grep -q 'warning.*subset-router: guard v2 tripped (trip 1 of 3)' "$WORK/guard.log"
check "an info line when the guard closes" \
  grep -q 'info.*subset-router: guard v2 closed after trip 1 of 3' "$WORK/guard.log"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
