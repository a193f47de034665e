#!/usr/bin/env python3
"""subset-router benchmark: the filter against Envoy's native routing, interleaved, one run.

Configurations (each front Envoy's config is rendered by envoy-config bench, envoy/config):
  A   native Istio-equivalent: header match user-agent: debug -> v2, else weighted_clusters 90/10
  B   subset-router, same semantics (bench/config/B.json), route by cluster_header
  B2  subset-router, realistic: 20 rules, match at the last, sticky 90/10 by x-user-id,
      subsetHeader + responseHeader on (bench/config/B2.json)
  B3  B + sticky, a ramp and a guard on v2 (bench/config/B3.json)
  B3-fleet  B3 with `fleet` on the guard (bench/config/B3-fleet.json): a query each second
      through the Envoy cluster `prometheus` to a fake metrics server started here (FakeMetrics:
      a valid answer, 1000 requests and 0 errors, never a breach), so the rounds measure what
      the fleet rounds add to the request path's CPU, not Prometheus
  N   the native build (dynamic module, NATIVE_SO) with B's configuration, as an HTTP filter
  N2  the same module and configuration as the route's cluster specifier (no HTTP filter)
  W   Wasm floor: bench/wasm-floor only sets x-upstream-cluster: v1
  C   floor: route straight to v1, no filter

One front Envoy per configuration (native binary, --concurrency 1, pinned to FRONT_CPU), all
started up front and kept running; one upstream shared by all (listeners v1 and v2 answering
200 with the subset name as body), pinned with the load generators to LOAD_CPU. The upstream is
bench-upstream (bench/loadgen/src/bin/bench-upstream.rs, one read + one write per request) by
default: an Envoy upstream with direct_response (--upstream envoy) costs about as much CPU per
request as the front Envoy and shares the generators' core, so the closed loop then measures
that core (front Envoy ~25% busy) instead of the proxy. Every round runs every configuration
(the order rotates by one each round so no configuration always goes first):

  closed loop  wrk -t1 -c CONNS for CLOSED_SECS: max requests/s; Envoy CPU us/request from
               /proc/<pid>/stat (utime+stime) delta / requests
  fixed rate   bench-loadgen (bench/loadgen, open loop, wrk2-style) at RATE req/s for FIXED_SECS:
               p50/p99 latency, and CPU us/request at that rate
  memory       VmRSS of the front Envoy after the load

Then the memory phase: VmRSS of C, W, B, B3 and N at 1 and 4 workers, idle after start-up and
after 1,000 requests, over C's, with where it is (bench/memory.py); alone with --memory-only
(bench/results/memory.{json,md}). Then the JSON (bench/results/results.json), the markdown table
(bench/results/results.md) and the plot (bench/results/bench.png, if matplotlib is importable).

Only loopback traffic. Everything started here is stopped here (by PID).
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import memory

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")

CONFIGS = {
    "A": "native: header match + weighted_clusters 90/10",
    "B": "subset-router: debug rule + random 90/10",
    "B2": "subset-router: 20 rules, sticky 90/10, subset+response headers",
    "B3": "subset-router: B + sticky, a ramp and a guard on v2 (progressive delivery)",
    "B3-fleet": "subset-router: B3 + fleet on the guard (a query each second, fake metrics server)",
    "N": "subset-router native (dynamic module): B's configuration",
    "N2": "subset-router native, cluster-specifier form: B's configuration",
    "W": "Wasm floor: sets one header",
    "C": "floor: straight to v1, no filter",
}
RATIOS = [("N", "A"), ("N2", "A"), ("N2", "N"), ("B", "A"), ("B2", "A"), ("B", "W"), ("B2", "W"), ("B3", "B"), ("B3-fleet", "B3"), ("W", "A"), ("A", "C")]
# The renderer's Envoy shape of each configuration (envoy-config bench SHAPE): B2 and B3 are B's
# Envoy with their own plugin configuration (bench/config/<name>.json); N and N2 run B's.
SHAPES = {"A": "A", "B": "B", "B2": "B", "B3": "B", "B3-fleet": "B", "N": "N", "N2": "N2", "W": "W",
          "C": "C"}
PLUGIN_CONFIGS = {"B": "B", "B2": "B2", "B3": "B3", "B3-fleet": "B3-fleet", "N": "B", "N2": "B"}
# The configurations whose guard queries the fleet's totals: their Envoy has a cluster
# `prometheus` to the run's FakeMetrics.
FLEET_CONFIGS = ("B3-fleet",)
# The configurations (profiles, see main) that split 90/10 and send `user-agent: debug` to v2.
SPLIT_CONFIGS = ("A", "B", "B2", "N", "N2")
# Where each subset-router profile's counters are in Envoy's admin /stats.
STAT_PREFIXES = {"B": "wasmcustom.", "B2": "wasmcustom.", "N": "dynamicmodulescustom.",
                 "N2": "dynamicmodulescustom."}
# Requests with a forged `x-upstream-cluster: v2` in the sanity check.
SPOOFED = 100
# The one Envoy-config renderer (envoy/config); bench/run.sh builds it.
DEFAULT_ENVOY_CONFIG = os.environ.get("ENVOY_CONFIG_BIN", os.path.join(ROOT, "target", "release", "envoy-config"))


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def cpu_ticks(pid):
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def http_get(url, headers=None, timeout=5):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, dict(r.headers), r.read()


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
    }


def plugin_config_path(name):
    return os.path.join(HERE, "config", f"{name}.json")


class Front:
    """One front Envoy's configuration: the renderer's shape (A, B, N, N2, W, C), its listener
    port, the .wasm (B, W), the plugin configuration file (B, N, N2) and more clusters
    (`NAME=ADDR:PORT`, e.g. B3-fleet's `prometheus`)."""

    def __init__(self, shape, port, wasm=None, plugin_config=None, clusters=()):
        self.shape, self.port, self.wasm, self.plugin_config = shape, port, wasm, plugin_config
        self.clusters = list(clusters)

    def variant(self, port, wasm=None, plugin_config=None):
        """The same Envoy on another port, optionally with another .wasm or plugin config."""
        return Front(self.shape, port, wasm or self.wasm, plugin_config or self.plugin_config,
                     self.clusters)

    def render_args(self):
        args = [self.shape, "--listen", f"127.0.0.1:{self.port}"]
        if self.wasm:
            args += ["--wasm", self.wasm]
        if self.plugin_config:
            args += ["--plugin-config", self.plugin_config]
        for cluster in self.clusters:
            args += ["--cluster", cluster]
        return args


class FakeMetrics:
    """A stand-in for Prometheus's `GET /api/v1/query` (B3-fleet): every query answered at once
    with a valid vector the guard reads as 1000 requests and 0 errors in the fleet's window, so
    the fleet rounds always succeed and never trip. A fake, since the benchmark measures what the
    rounds cost the proxy, not Prometheus. A thread of this process: one query a second."""

    ANSWER = ('{"status":"success","data":{"resultType":"vector","result":['
              '{"metric":{"counter":"requests"},"value":[%.3f,"1000"]},'
              '{"metric":{"counter":"errors"},"value":[%.3f,"0"]}]}}')

    def __init__(self):
        import http.server
        import threading
        fake = self
        self.queries = 0
        self.others = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            # Keep-alive, as Envoy's connection pool expects of an HTTP/1.1 server.
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path.startswith("/api/v1/query?"):
                    fake.queries += 1
                    now = time.time()
                    status, body = 200, (FakeMetrics.ANSWER % (now, now)).encode()
                else:
                    fake.others += 1
                    status, body = 404, b"not found\n"
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Renderer:
    """envoy-config bench (envoy/config), the project's one Envoy-config renderer, for one run:
    every Envoy it renders has its clusters v1 and v2 (or, for the upstream Envoy, its
    listeners) at 127.0.0.1:v1_port and :v2_port."""

    def __init__(self, binary, v1_port, v2_port):
        if not binary or not os.path.exists(binary):
            raise SystemExit(f"envoy-config {binary!r} does not exist: set ENVOY_CONFIG_BIN or build it "
                             "(cargo build --release -p subset-router-envoy-config; bench/run.sh does)")
        self.binary, self.v1_port, self.v2_port = binary, v1_port, v2_port

    def render(self, render_args, admin_port, path):
        """Writes the config of render_args (Front.render_args(), or ["upstream"]) to path."""
        cmd = [self.binary, "bench"] + render_args + [
            "--admin", f"127.0.0.1:{admin_port}", "--v1", f"127.0.0.1:{self.v1_port}",
            "--v2", f"127.0.0.1:{self.v2_port}", "-o", path]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")


class Envoy:
    """A native Envoy process started from a config the renderer makes of render_args."""

    def __init__(self, name, binary, renderer, render_args, work, cpu, concurrency=1):
        self.name = name
        self.admin_port = free_port()
        self.config = os.path.join(work, f"{name}.yaml")
        renderer.render(render_args, self.admin_port, self.config)
        self.log_path = os.path.join(work, f"{name}.log")
        cmd = [binary, "-c", self.config, "--concurrency", str(concurrency),
               "--disable-hot-restart", "-l", "warning"]
        env = envoy_env()
        if cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(cpu)] + cmd
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)
        self.pid = self.proc.pid  # taskset execs envoy in place: same PID

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"envoy {self.name} exited ({self.proc.returncode}); "
                                 f"log {self.log_path}:\n" + open(self.log_path).read()[-3000:])
            try:
                status, _, body = http_get(f"http://127.0.0.1:{self.admin_port}/ready", timeout=1)
                if status == 200 and body.strip() == b"LIVE":
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise SystemExit(f"envoy {self.name} not ready after {timeout}s; log {self.log_path}")

    def stats(self, filt):
        _, _, body = http_get(f"http://127.0.0.1:{self.admin_port}/stats?filter={filt}")
        out = {}
        for line in body.decode().splitlines():
            k, _, v = line.partition(": ")
            if v.strip().isdigit():
                out[k] = int(v)
        return out

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        self.logf.close()


class Upstream:
    """bench-upstream (bench/loadgen/src/bin/bench-upstream.rs): fixed 200 responses, body = subset."""

    def __init__(self, binary, ports, work, cpu):
        self.name = "upstream"
        self.log_path = os.path.join(work, "upstream.log")
        cmd = taskset(cpu) + [binary] + [f"127.0.0.1:{port}={body}" for body, port in ports.items()]
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.logf, text=True,
                                     start_new_session=True)
        self.pid = self.proc.pid
        self.config = None

    def wait_ready(self, timeout=10):
        line = self.proc.stdout.readline()
        if line.strip() != "READY":
            raise SystemExit(f"bench-upstream did not start: {line!r}; log {self.log_path}:\n"
                             + open(self.log_path).read()[-3000:])

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        self.logf.close()


def envoy_env():
    """The environment Envoy runs in: for the native build (N, N2), the directory Envoy loads
    lib<name>.so from."""
    env = dict(os.environ)
    if os.environ.get("NATIVE_SO"):
        env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = os.path.dirname(os.environ["NATIVE_SO"])
    return env


def validate(binary, config):
    r = subprocess.run([binary, "--mode", "validate", "-c", config, "-l", "error"],
                       capture_output=True, text=True, env=envoy_env())
    if r.returncode != 0:
        raise SystemExit(f"envoy --mode validate {config} failed:\n{r.stdout}\n{r.stderr}")


def taskset(cpu):
    return ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []


def run_wrk(args, port, seconds):
    cmd = taskset(args.load_cpu) + [
        args.wrk, "-t1", f"-c{args.connections}", f"-d{max(1, int(round(seconds)))}s", "--timeout", "5s",
        "-s", os.path.join(HERE, "wrk.lua"), f"http://127.0.0.1:{port}/",
        "--", os.path.join(HERE, "requests.txt")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"^WRK_JSON (.*)$", r.stdout, re.M)
    if r.returncode != 0 or not m:
        raise SystemExit(f"wrk failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    out = json.loads(m.group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    out["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    return out


def run_loadgen(args, port, seconds, warmup=1.0):
    cmd = taskset(args.load_cpu) + [
        args.loadgen, "--addr", f"127.0.0.1:{port}", "--rate", str(args.rate),
        "--connections", str(args.fixed_connections), "--duration", str(seconds),
        "--warmup", str(warmup), "--requests", os.path.join(HERE, "requests.txt")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bench-loadgen failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def wasm_budget():
    """The size budget of the .wasm (bench/wasm-budget: the last line is the number of bytes)."""
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "wasm-budget")) as f:
        return int([line for line in f if line.strip() and not line.startswith("#")][-1])


def check_wasm_budget(path):
    size, budget = os.path.getsize(path), wasm_budget()
    if size > budget:
        raise SystemExit(f"sanity check failed: {path} is {size:,} bytes, over the budget of "
                         f"{budget:,} (bench/wasm-budget; bench/wasm-size.py says what grew)")
    log(f"{os.path.basename(path)}: {size:,} bytes, budget {budget:,}")


def sanity_check(name, port, strict=True, stats=None):
    """Routing works as configured: debug goes to v2 where it should, the split is ~90/10, and
    SPOOFED requests carrying a forged `x-upstream-cluster: v2` are routed by the rules like any
    other (~10% v2 where the configuration splits, none where it does not), not by the header.
    stats: the Envoy's stats reader (Envoy.stats), to check that a subset-router configuration
    counted every forged header (spoofed_header_removed)."""
    base = f"http://127.0.0.1:{port}/api/v1/items?page=2"
    counts = {}
    routed_hdr = set()
    for i in range(400):
        status, headers, body = http_get(base, {"x-user-id": f"user-{i}", "host": "shop.example.com"})
        if status != 200:
            raise SystemExit(f"{name}: status {status}")
        counts[body.decode()] = counts.get(body.decode(), 0) + 1
        routed_hdr.add(headers.get("x-routed-subset"))
    _, _, dbg = http_get(base, {"user-agent": "debug"})
    spoofed = {}
    for i in range(SPOOFED):
        _, _, body = http_get(base, {"x-upstream-cluster": "v2", "user-agent": "x", "x-user-id": f"spoof-{i}"})
        spoofed[body.decode()] = spoofed.get(body.decode(), 0) + 1
    v2 = counts.get("v2", 0)
    spoofed_v2 = spoofed.get("v2", 0)
    expect_split = name in SPLIT_CONFIGS
    problems = []
    if expect_split and not (10 <= v2 <= 80):
        problems.append(f"split v2={v2}/400, expected ~40")
    if not expect_split and v2:
        problems.append(f"v2={v2}, expected none")
    # 10% of 100: ~10 ± 3; a filter that let the forged header through would give 100.
    if expect_split and spoofed_v2 > 35:
        problems.append(f"forged x-upstream-cluster: v2 reached v2 {spoofed_v2}/{SPOOFED} times, expected ~10")
    if not expect_split and spoofed_v2:
        problems.append(f"forged x-upstream-cluster: v2 reached v2 {spoofed_v2}/{SPOOFED} times, expected none")
    if name in SPLIT_CONFIGS and dbg != b"v2":
        problems.append(f"user-agent: debug went to {dbg!r}")
    if name == "B2" and None in routed_hdr:
        problems.append("x-routed-subset missing")
    counted = None
    if stats is not None and name in STAT_PREFIXES:
        counter = f"{STAT_PREFIXES[name]}subset_router.spoofed_header_removed"
        counted = stats(counter).get(counter)
        if counted != SPOOFED:
            problems.append(f"{counter} = {counted}, expected {SPOOFED}")
    log(f"check {name}: {counts}, debug->{dbg.decode()}, forged v2 header->{spoofed}"
        f"{'' if counted is None else f' (counted {counted})'}, "
        f"x-routed-subset={sorted(h for h in routed_hdr if h) or '-'}")
    if problems and strict:
        raise SystemExit(f"sanity check {name} failed: {'; '.join(problems)}")
    if problems:
        log(f"check {name}: {'; '.join(problems)} (an --extra variant: not fatal)")
    return {"counts": counts, "debug": dbg.decode(), "spoofed": spoofed, "spoofed_counted": counted}


def fleet_stats(envoy):
    """The fleet guard's counters of a B3-fleet Envoy (Wasm build, guard on v2)."""
    pre = "wasmcustom.subset_router.guard.v2."
    st = envoy.stats("subset_router.guard.v2.")
    return {k: st.get(pre + k, 0) for k in ("fleet_query_failed", "tripped", "tripped_by_fleet")}


def fleet_check(name, envoy, fake, timeout=10):
    """B3-fleet's rounds flow before anything is measured: the fake has answered two queries
    from its Envoy, the guard read them (fleet_query_failed 0) and did not trip."""
    q0, deadline = fake.queries, time.monotonic() + timeout
    while fake.queries - q0 < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    st = fleet_stats(envoy)
    log(f"check {name}: {fake.queries - q0} fleet queries answered in the last "
        f"{timeout - max(deadline - time.monotonic(), 0):.1f}s; {st}")
    if fake.queries - q0 < 2 or st["fleet_query_failed"] or st["tripped"]:
        raise SystemExit(f"sanity check {name} failed: fleet rounds not flowing "
                         f"({fake.queries - q0} queries, {st}, other paths asked {fake.others})")
    return {"queries": fake.queries - q0, **st}


def steal_ticks(cpu):
    """Steal time (ticks) of one CPU, or of all: time the hypervisor ran someone else."""
    name = f"cpu{cpu} " if cpu is not None else "cpu "
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(name):
                return int(line.split()[8])
    return 0


def foreign_load():
    """Benchmark-like processes this run did not start (another Envoy, wrk, loadgen, cargo):
    they would share the cores and skew the numbers."""
    me = os.getpid()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        exe = os.path.basename(argv[0].decode(errors="replace")) if argv and argv[0] else ""
        if exe in ("envoy", "wrk", "bench-loadgen", "bench-upstream", "rustc", "cargo", "node"):
            found.append(f"{pid}:{exe}")
    return found


def measure_closed(args, env, seconds):
    s0 = steal_ticks(args.front_cpu)
    t0, w0 = cpu_ticks(env.pid), time.monotonic()
    w = run_wrk(args, env.front_port, seconds)
    t1, w1 = cpu_ticks(env.pid), time.monotonic()
    cpu_s = (t1 - t0) / CLK_TCK
    n = max(w["requests"], 1)
    return {
        "steal": (steal_ticks(args.front_cpu) - s0) / CLK_TCK / (w1 - w0),
        "rps": w["requests"] / (w["duration_us"] / 1e6),
        "requests": w["requests"],
        "cpu_us_per_req": cpu_s * 1e6 / n,
        "cpu_util": cpu_s / (w1 - w0),
        "latency_us": w["latency_us"],
        "errors": sum(w["errors"].values()),
        "non2xx": w["non2xx"],
    }


def measure_fixed(args, env, seconds):
    t0 = cpu_ticks(env.pid)
    g = run_loadgen(args, env.front_port, seconds, warmup=0.5)
    t1 = cpu_ticks(env.pid)
    # The CPU window also covers the 0.5 s generator warm-up: count its requests too.
    sent_total = g["requests"] + g.get("warmup_requests", 0)
    return {
        "achieved_rps": g["achieved_rps"],
        "requests": g["requests"],
        "cpu_us_per_req": (t1 - t0) / CLK_TCK * 1e6 / max(sent_total, 1),
        "service_us": g["service_us"],
        "corrected_us": g["corrected_us"],
        "late_sends": g["late_sends"],
        "errors": g["errors"],
        "non2xx": g["non2xx"],
        "bodies": g["bodies"],
    }


def med(xs):
    return statistics.median(xs) if xs else None


def summarize(rounds, names):
    per = {}
    for name in names:
        rs = [r[name] for r in rounds]
        c = [r["closed"] for r in rs]
        f = [r["fixed"] for r in rs]
        per[name] = {
            "rps": [x["rps"] for x in c],
            "cpu_us_per_req": [x["cpu_us_per_req"] for x in c],
            "cpu_util": [x["cpu_util"] for x in c],
            "fixed_cpu_us_per_req": [x["cpu_us_per_req"] for x in f],
            "p50_us": [x["service_us"]["p50"] for x in f],
            "p99_us": [x["service_us"]["p99"] for x in f],
            "p99_corrected_us": [x["corrected_us"]["p99"] for x in f],
            "rss_mib": [r["rss_kib"] / 1024 for r in rs],
            "errors": sum(x["errors"] + x["non2xx"] for x in c + f),
        }
    ratios = {}
    for a, b in RATIOS:
        if a not in names or b not in names:
            continue
        ent = {}
        for key in ("rps", "cpu_us_per_req", "p99_us"):
            xs = [ra / rb for ra, rb in zip(per[a][key], per[b][key]) if rb]
            ent[key] = {"median": med(xs), "min": min(xs), "max": max(xs), "rounds": xs}
        ratios[f"{a}/{b}"] = ent
    return per, ratios


def fmt_range(xs, f="{:.0f}"):
    return f"{f.format(med(xs))} ({f.format(min(xs))}–{f.format(max(xs))})"


TARGETS = {
    # ratio: (metric, comparison, bound, description)
    "B/W": [("cpu_us_per_req", "<=", 1.05), ("rps", ">=", 0.95)],
    "B2/W": [("cpu_us_per_req", "<=", 1.10), ("rps", ">=", 0.90)],
    "B/A": [("rps", ">=", 0.85), ("p99_us", "<=", 1.15)],
    "B2/A": [("p99_us", "<=", 1.15)],
    # The fleet rounds run off the request path (one query a second on a tick): they may cost
    # the requests next to nothing.
    "B3-fleet/B3": [("cpu_us_per_req", "<=", 1.05)],
}


def markdown(result):
    per, ratios, meta = result["per_config"], result["ratios"], result["meta"]
    lines = [
        f"Run {meta['date']} on {meta['machine']['cores']} cores ({meta['machine']['cpu_model']}), "
        f"kernel {meta['machine']['kernel']}; load average at start {meta['loadavg_start']}, "
        f"at end {meta['loadavg_end']}; {meta['rounds']} interleaved rounds; closed loop "
        f"wrk -t1 -c{meta['connections']} × {meta['closed_secs']} s; fixed rate {meta['rate']} req/s "
        f"× {meta['fixed_secs']} s on {meta['fixed_connections']} connections; Envoy pinned to CPU "
        f"{meta['front_cpu']}, load generators + upstream ({meta.get('upstream', 'envoy')}) to CPU "
        f"{meta['load_cpu']}. 1-minute load average during the rounds: "
        f"{min(meta['loadavg_during']):.2f}–{max(meta['loadavg_during']):.2f}; steal time on the front "
        f"CPU {100 * meta['front_cpu_steal']:.1f}%; other benchmark/build processes at start: "
        f"{', '.join(meta['foreign_processes_start']) or 'none'}.",
        "",
        "Median across rounds (min–max in parentheses).",
        "",
        "| config | what | req/s (closed loop) | Envoy CPU µs/req (closed) | Envoy CPU µs/req (fixed rate) | p50 µs (fixed) | p99 µs (fixed) | RSS MiB after load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, p in per.items():
        lines.append(
            f"| {name} | {CONFIGS[name]} | {fmt_range(p['rps'])} | {fmt_range(p['cpu_us_per_req'], '{:.1f}')} "
            f"| {fmt_range(p['fixed_cpu_us_per_req'], '{:.1f}')} | {fmt_range(p['p50_us'])} "
            f"| {fmt_range(p['p99_us'])} | {fmt_range(p['rss_mib'], '{:.1f}')} |")
    lines += ["", "Ratios, paired per round (median, min–max across rounds):", "",
              "| ratio | throughput | CPU µs/request | p99 (fixed rate) | target | met? |",
              "|---|---|---|---|---|---|"]
    for key, r in ratios.items():
        targets = TARGETS.get(key, [])
        verdicts, texts = [], []
        for metric, op, bound in targets:
            v = r[metric]["median"]
            ok = v <= bound if op == "<=" else v >= bound
            verdicts.append("yes" if ok else "**no**")
            label = {"rps": "throughput", "cpu_us_per_req": "CPU", "p99_us": "p99"}[metric]
            texts.append(f"{label} {op} {bound:.2f}")
        cell = lambda m: f"{r[m]['median']:.3f} ({r[m]['min']:.3f}–{r[m]['max']:.3f})"
        lines.append(f"| {key} | {cell('rps')} | {cell('cpu_us_per_req')} | {cell('p99_us')} | "
                     f"{', '.join(texts) or '—'} | {', '.join(verdicts) or '—'} |")
    fleet = result.get("fleet")
    if fleet:
        lines += ["", f"Fleet rounds ({', '.join(fleet['config'])}): {fleet['queries']} queries to the "
                  f"fake metrics server in {fleet['seconds']:.0f} s of rounds "
                  f"({fleet['queries'] / max(fleet['seconds'], 1):.2f}/s), every one answered and read: "
                  + "; ".join(f"{n} fleet_query_failed {v['fleet_query_failed']}, tripped {v['tripped']}"
                              for n, v in fleet["per_config"].items()) + "."]
    mem = result.get("memory")
    if mem:
        lines += ["", memory_markdown(mem).rstrip("\n")]
    return "\n".join(lines) + "\n"


def plot(result, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not importable: no plot (bench/run.sh installs it in .cache/bench-venv)")
        return False
    per = result["per_config"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    panels = [("rps", "closed-loop throughput (req/s)"),
              ("cpu_us_per_req", "Envoy CPU µs per request (closed loop)"),
              ("p99_us", f"p99 latency µs at {result['meta']['rate']} req/s")]
    for ax, (key, title) in zip(axes, panels):
        for name, p in per.items():
            xs = list(range(1, len(p[key]) + 1))
            ax.plot(xs, p[key], marker="o", label=name)
        ax.set_title(title)
        ax.set_xlabel("round")
        ax.set_xticks(range(1, len(next(iter(per.values()))[key]) + 1))
        ax.grid(alpha=0.3)
    axes[0].legend()
    meta = result["meta"]
    fig.suptitle(f"subset-router vs native Envoy routing — Envoy 1.40, 1 worker, "
                 f"{meta['machine']['cpu_model']} ({meta['date']}, load {meta['loadavg_start'][0]})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


# The memory phase (`make bench`, or alone: bench/run.sh --memory-only): each configuration's
# front Envoy at each worker count, idle after start-up and after MEM_REQUESTS requests.
# MEM_CONFIGS / MEM_WORKERS (comma-separated) narrow it, e.g. to weigh a variant given by --extra:
#   MEM_CONFIGS=C,W,B,Bx MEM_WORKERS=1 bench/run.sh --memory-only --extra Bx=B:/tmp/x.wasm
MEM_CONFIGS = tuple(os.environ.get("MEM_CONFIGS", "C,W,B,B3,B3-fleet,N").split(","))
MEM_WORKERS = tuple(int(w) for w in os.environ.get("MEM_WORKERS", "1,4").split(","))
MEM_REQUESTS = 1000
# After /ready: Envoy has loaded every Wasm VM by then; a moment for its start-up to settle.
MEM_SETTLE_SECS = 2.0


def memory_phase(args, renderer, fronts, work):
    """VmRSS of a front Envoy (alone on the machine's Envoys: the rounds' are stopped) for each of
    MEM_CONFIGS at each of MEM_WORKERS, idle after start-up and after MEM_REQUESTS requests (one
    connection each, so that the kernel spreads them over the workers), with where the memory is
    (bench/memory.py: file-backed vs anonymous, tcmalloc's heap, Wasm VMs alive). "Over C" is the
    RSS minus C's at the same worker count and point: what the filter (and its runtime) costs."""
    runs = {}
    for name in MEM_CONFIGS:
        for conc in MEM_WORKERS:
            env = Envoy(f"mem-{name}-{conc}", args.envoy, renderer, fronts[name].render_args(), work,
                        args.front_cpu, concurrency=conc)
            try:
                env.wait_ready()
                time.sleep(MEM_SETTLE_SECS)
                idle = memory.snapshot(env.pid, env.admin_port)
                port = fronts[name].port
                for i in range(MEM_REQUESTS):
                    http_get(f"http://127.0.0.1:{port}/", {"x-user-id": f"user-{i}"})
                time.sleep(1.0)
                loaded = memory.snapshot(env.pid, env.admin_port)
            finally:
                env.stop()
            runs[f"{name}@{conc}"] = {"idle": idle, "loaded": loaded}
            heap = idle.get("tcmalloc_kib", {})
            log(f"memory {name} at {conc} worker(s): RSS idle {idle['split_kib']['rss'] / 1024:.1f} MiB, "
                f"after {MEM_REQUESTS} requests {loaded['split_kib']['rss'] / 1024:.1f} MiB; idle heap "
                f"{heap.get('allocated', 0) / 1024:.1f} MiB live of {heap.get('heap_size', 0) / 1024:.1f}")
    rss = {key: {phase: run[phase]["split_kib"]["rss"] for phase in ("idle", "loaded")}
           for key, run in runs.items()}
    # Over C: only when C was measured at that worker count (MEM_CONFIGS may leave it out).
    over_c = {key: {phase: kib - rss[f"C@{key.split('@')[1]}"][phase] for phase, kib in r.items()}
              for key, r in rss.items() if f"C@{key.split('@')[1]}" in rss}
    return {"configs": list(MEM_CONFIGS), "workers": list(MEM_WORKERS), "requests": MEM_REQUESTS,
            "rss_kib": rss, "over_c_kib": over_c, "runs": runs}


def memory_markdown(mem):
    """The "Memory per proxy" table of a memory phase."""
    mib = lambda kib: f"{kib / 1024:.1f}"
    lo, hi = mem["workers"][0], mem["workers"][-1]
    lines = [f"Memory per proxy: VmRSS MiB of the front Envoy (over C's at the same point in "
             f"parentheses), idle after start-up and after {mem['requests']:,} requests; resident "
             f"anonymous / file-backed MiB and Wasm VMs alive at {lo} worker idle.", "",
             "| config | what | " + " | ".join(f"{w} worker{'s' if w > 1 else ''}: {p}"
                                               for w in mem["workers"] for p in ("idle", "after load"))
             + " | anon / file | Wasm VMs |",
             "|---|---|" + "---|" * (2 * len(mem["workers"])) + "---|---|"]
    for name in mem["configs"]:
        cells = []
        for w in mem["workers"]:
            for phase in ("idle", "loaded"):
                kib = mem["rss_kib"][f"{name}@{w}"][phase]
                over = mem["over_c_kib"].get(f"{name}@{w}", {}).get(phase)
                cells.append(mib(kib) if name == "C" or over is None else f"{mib(kib)} (+{mib(over)})")
        split = mem["runs"][f"{name}@{lo}"]["idle"]["split_kib"]
        vms = "/".join(str(mem["runs"][f"{name}@{w}"]["idle"].get("wasm_vms") or 0)
                       for w in mem["workers"])
        lines.append(f"| {name} | {CONFIGS[name]} | " + " | ".join(cells)
                     + f" | {mib(split['anon'])} / {mib(split['file'])} | {vms} |")
    extra = hi - lo
    if not extra or "C" not in mem["configs"]:
        return "\n".join(lines) + "\n"
    per_worker = {n: ((mem["rss_kib"][f"{n}@{hi}"]["loaded"] - mem["rss_kib"][f"{n}@{lo}"]["loaded"])
                      - (mem["rss_kib"][f"C@{hi}"]["loaded"] - mem["rss_kib"][f"C@{lo}"]["loaded"])) / extra
                  for n in mem["configs"] if n != "C"}
    lines += ["", f"Per extra worker (after load, RSS at {hi} minus {lo} workers, minus the same for "
              f"C, ÷ {extra}): " + ", ".join(f"{n} {mib(v)} MiB" for n, v in per_worker.items()) + "."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envoy", default=os.environ.get("ENVOY_BIN"))
    ap.add_argument("--wasm", default=os.environ.get("WASM", os.path.join(ROOT, "dist", "subset_router.wasm")))
    ap.add_argument("--wasm-floor", default=os.environ.get("WASM_FLOOR", os.path.join(ROOT, "dist", "wasm_floor.wasm")))
    ap.add_argument("--loadgen", default=os.environ.get("LOADGEN"))
    ap.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    ap.add_argument("--upstream", choices=("rust", "envoy"), default=os.environ.get("UPSTREAM", "rust"),
                    help="upstream server: bench-upstream (default; cheap, so the front Envoy is the "
                         "bottleneck) or an Envoy with direct_response (envoy-config bench upstream)")
    ap.add_argument("--upstream-bin", default=os.environ.get("UPSTREAM_BIN"))
    ap.add_argument("--envoy-config", default=DEFAULT_ENVOY_CONFIG,
                    help="the envoy-config binary (envoy/config) that renders every Envoy config; "
                         "env ENVOY_CONFIG_BIN, default target/release/envoy-config")
    ap.add_argument("--configs", default=os.environ.get("CONFIGS", "A,N,N2,B,B2,B3,B3-fleet,W,C"))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 10)))
    ap.add_argument("--closed-secs", type=float, default=float(os.environ.get("CLOSED_SECS", 2)))
    ap.add_argument("--fixed-secs", type=float, default=float(os.environ.get("FIXED_SECS", 2)))
    ap.add_argument("--warmup-secs", type=float, default=float(os.environ.get("WARMUP_SECS", 2)))
    ap.add_argument("--connections", type=int, default=int(os.environ.get("CONNS", 16)))
    ap.add_argument("--rate", type=int, default=int(os.environ.get("RATE", 1000)))
    ap.add_argument("--fixed-connections", type=int, default=int(os.environ.get("FIXED_CONNS", 4)))
    ap.add_argument("--front-cpu", default=os.environ.get("FRONT_CPU", "0"))
    ap.add_argument("--load-cpu", default=os.environ.get("LOAD_CPU", "1"))
    ap.add_argument("--out", default=os.environ.get("OUT", os.path.join(HERE, "results")))
    ap.add_argument("--no-memory", action="store_true", help="skip the memory phase")
    ap.add_argument("--memory-only", action="store_true",
                    help="only the memory phase (C, W, B, B3, N at 1 and 4 workers, idle and after "
                         "load): bench/results/memory.{json,md}")
    ap.add_argument("--label", default=os.environ.get("LABEL", ""))
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=BASE:WASM",
                    help="an extra configuration: BASE's Envoy and plugin config with another .wasm "
                         "(to measure a variant of the filter side by side), e.g. Bx=B:/tmp/x.wasm")
    args = ap.parse_args()
    if args.front_cpu in ("", "none"):
        args.front_cpu = None
    if args.load_cpu in ("", "none"):
        args.load_cpu = None
    names = [n for n in args.configs.split(",") if n]
    for n in names:
        if n not in CONFIGS:
            raise SystemExit(f"unknown configuration {n}")
    extras = {}
    for spec in args.extra:
        m = re.fullmatch(r"([A-Za-z0-9_]+)=([A-Z0-9]+):(.+)", spec)
        if not m or m.group(2) not in ("B", "B2", "W") or m.group(1) in CONFIGS:
            raise SystemExit(f"--extra {spec!r}: want NAME=B|B2|W:/path/to.wasm with a new NAME")
        extras[m.group(1)] = (m.group(2), os.path.abspath(m.group(3)))
        CONFIGS[m.group(1)] = f"{m.group(2)} with {os.path.basename(m.group(3))}"
        RATIOS.append((m.group(1), m.group(2)))
        names.append(m.group(1))
    needed = [("--envoy", args.envoy), ("--wasm", args.wasm),
              ("--wasm-floor", args.wasm_floor), ("--envoy-config", args.envoy_config)]
    if not args.memory_only:
        needed.append(("--loadgen", args.loadgen))
    if args.upstream == "rust":
        needed.append(("--upstream-bin", args.upstream_bin))
    for what, path in needed:
        if not path or not os.path.exists(path):
            raise SystemExit(f"{what}: {path!r} does not exist (bench/run.sh provides them)")

    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="subset-router-bench-")
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "loadavg_start": loadavg(),
        "envoy": subprocess.run([args.envoy, "--version"], capture_output=True, text=True).stdout.strip().splitlines()[-1],
        "wasm_bytes": os.path.getsize(args.wasm),
        "wasm_floor_bytes": os.path.getsize(args.wasm_floor),
        "rounds": args.rounds, "closed_secs": args.closed_secs, "fixed_secs": args.fixed_secs,
        "connections": args.connections, "rate": args.rate, "fixed_connections": args.fixed_connections,
        "front_cpu": args.front_cpu, "load_cpu": args.load_cpu, "configs": names, "label": args.label,
        "upstream": "bench-upstream" if args.upstream == "rust" else "Envoy direct_response",
    }
    check_wasm_budget(args.wasm)
    meta["foreign_processes_start"] = foreign_load()
    if meta["foreign_processes_start"]:
        log(f"WARNING: other benchmark/build processes are running ({', '.join(meta['foreign_processes_start'])}): "
            "they share the cores; the numbers will be noisier")
    log(f"machine {meta['machine']}, load {meta['loadavg_start']}, {meta['envoy']}")

    v1_port, v2_port = free_port(), free_port()
    renderer = Renderer(args.envoy_config, v1_port, v2_port)
    fake = FakeMetrics()
    fronts = {}
    for n in CONFIGS:
        if n in extras:
            continue
        shape = SHAPES[n]
        wasm = {"B": args.wasm, "W": args.wasm_floor}.get(shape)
        plugin = plugin_config_path(PLUGIN_CONFIGS[n]) if n in PLUGIN_CONFIGS else None
        clusters = [f"prometheus=127.0.0.1:{fake.port}"] if n in FLEET_CONFIGS else []
        fronts[n] = Front(shape, free_port(), wasm, plugin, clusters)
    for n, (base, wasm) in extras.items():
        fronts[n] = fronts[base].variant(free_port(), wasm=wasm)
    # What each configuration behaves like, for the sanity checks and the counters read: an
    # --extra like its base, B3 and B3-fleet like B (the ramp holds v2 at 10%).
    profile = {n: extras[n][0] if n in extras else ("B" if n in ("B3", "B3-fleet") else n)
               for n in CONFIGS}

    envoys = {}
    try:
        if args.upstream == "envoy":
            up = Envoy("upstream", args.envoy, renderer, ["upstream"], work, args.load_cpu)
        else:
            up = Upstream(args.upstream_bin, {"v1": v1_port, "v2": v2_port}, work, args.load_cpu)
        envoys["upstream"] = up
        if args.memory_only:
            up.wait_ready()
            mem = memory_phase(args, renderer, fronts, work)
            meta["loadavg_end"] = loadavg()
            with open(os.path.join(args.out, "memory.json"), "w") as f:
                json.dump({"meta": meta, "memory": mem}, f, indent=1)
            md = (f"Run {meta['date']}, {meta['envoy']}, .wasm {meta['wasm_bytes']:,} bytes, floor "
                  f"{meta['wasm_floor_bytes']:,} bytes; load average {meta['loadavg_start']} at start, "
                  f"{meta['loadavg_end']} at end.\n\n" + memory_markdown(mem))
            with open(os.path.join(args.out, "memory.md"), "w") as f:
                f.write(md)
            print(md)
            shutil.rmtree(work, ignore_errors=True)
            return
        for n in names:
            e = Envoy(n, args.envoy, renderer, fronts[n].render_args(), work, args.front_cpu)
            e.front_port = fronts[n].port
            envoys[n] = e
        if up.config:
            validate(args.envoy, up.config)
        for n in names:
            validate(args.envoy, envoys[n].config)
        for e in envoys.values():
            e.wait_ready()
        checks = {n: sanity_check(profile[n], envoys[n].front_port, strict=n not in extras,
                                  stats=envoys[n].stats)
                  for n in names}
        fleet_names = [n for n in names if n in FLEET_CONFIGS]
        for n in fleet_names:
            checks[n]["fleet"] = fleet_check(n, envoys[n], fake)
        fleet_t0, fleet_q0 = time.monotonic(), fake.queries

        log(f"warm-up: {args.warmup_secs}s closed loop per configuration")
        for n in names:
            run_wrk(args, envoys[n].front_port, max(1, round(args.warmup_secs)))

        rounds = []
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            res = {}
            for n in order:
                e = envoys[n]
                closed = measure_closed(args, e, args.closed_secs)
                fixed = measure_fixed(args, e, args.fixed_secs)
                res[n] = {"closed": closed, "fixed": fixed, "rss_kib": vm_rss_kib(e.pid),
                          "loadavg": loadavg()}
                log(f"round {r + 1}/{args.rounds} {n:>2}: {closed['rps']:7.0f} req/s, "
                    f"{closed['cpu_us_per_req']:6.1f} us CPU/req (util {closed['cpu_util']:.2f}); "
                    f"fixed {fixed['achieved_rps']:.0f} req/s p50 {fixed['service_us']['p50']} "
                    f"p99 {fixed['service_us']['p99']} us, {fixed['cpu_us_per_req']:.1f} us CPU/req; "
                    f"RSS {res[n]['rss_kib'] / 1024:.1f} MiB; load {res[n]['loadavg'][0]}")
            rounds.append(res)

        counters = {n: envoys[n].stats(STAT_PREFIXES[profile[n]].rstrip("."))
                    for n in names if profile[n] in STAT_PREFIXES}
        fleet = None
        if fleet_names:
            secs = time.monotonic() - fleet_t0
            fleet = {"config": fleet_names, "queries": fake.queries - fleet_q0, "seconds": secs,
                     "per_config": {n: fleet_stats(envoys[n]) for n in fleet_names}}
            log(f"fleet: {fleet['queries']} queries answered in {secs:.0f}s of rounds; "
                + ", ".join(f"{n}: {v}" for n, v in fleet["per_config"].items()))
            bad = {n: v for n, v in fleet["per_config"].items() if v["fleet_query_failed"] or v["tripped"]}
            # A failing or tripping round takes another path than the one measured for: the run
            # would not say what the fleet guard costs.
            if bad or fleet["queries"] < secs / 2:
                raise SystemExit(f"fleet rounds not flowing as they should during the run: {fleet}")
        for n in names:
            envoys[n].stop()
        mem = None if args.no_memory else memory_phase(args, renderer, fronts, work)
    finally:
        for e in envoys.values():
            e.stop()
        fake.stop()

    per, ratios = summarize(rounds, names)
    meta["loadavg_end"] = loadavg()
    meta["foreign_processes_end"] = foreign_load()
    meta["loadavg_during"] = [rd[n]["loadavg"][0] for rd in rounds for n in names]
    meta["front_cpu_steal"] = statistics.mean(rd[n]["closed"]["steal"] for rd in rounds for n in names)
    result = {"meta": meta, "per_config": per, "ratios": ratios, "rounds": rounds,
              "sanity": checks, "counters": counters, "fleet": fleet, "memory": mem}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    md = markdown(result)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(md)
    if plot(result, os.path.join(args.out, "bench.png")):
        log(f"plot: {os.path.join(args.out, 'bench.png')}")
    shutil.rmtree(work, ignore_errors=True)
    print(md)


if __name__ == "__main__":
    main()
