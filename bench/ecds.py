#!/usr/bin/env python3
"""ECDS apply time: from replacing the filter's configuration file that Envoy watches to the
moment requests are decided by the new configuration, for both builds at 1 and 4 workers.

    bench/ecds.py [--builds wasm,native] [--workers 1,4] [--trials 10] [--rules 0] [--one-of 0]
                  [--envoy BIN] [--wasm dist/subset_router.wasm] [--so dist/libsubset_router.so]

Each Envoy is rendered by `envoy-config render --ecds DIR` (the filter delivered by file-based
Extension Config Discovery, as Istio delivers WasmPlugin updates; upstreams v1 and v2 are
direct_response listeners of the same Envoy that answer their name). Two plugin configurations
alternate: one sends every request to v1, the other to v2 (each with --rules exact-match rules in
front, or a rule whose `oneOf` lists --one-of values, to see what the configuration's size costs). A trial renders the next one with
`envoy-config ecds` into the directory, then renames it over the watched file (t0) and sends
requests, each on a new connection (so that the kernel spreads them over the workers), until 50
in a row come back from the new subset:

  first        the first request decided by the new configuration, after t0
  all workers  the first request after the last one still decided by the old configuration:
               from then on every worker decides with the new one

Resolution: one request, ~1–3 ms on a loaded machine. Every trial also checks Envoy's ECDS counter
(`extension_config_discovery.http_filter.subset_router.config_reload`) and that no request failed.
Results: bench/results/ecds.{json,md}. Only loopback traffic; every Envoy started here is stopped
here (by PID).
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
IN_A_ROW = 50


def log(msg):
    print(f"[ecds] {msg}", file=sys.stderr, flush=True)


def free_ports(n):
    """n consecutive free ports (the renderer gives the upstreams consecutive ports)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return list(range(base, base + n))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SystemExit("no consecutive free ports")


def get(port, path="/"):
    """(status, body) of one request on a new connection."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().strip()
    except urllib.error.HTTPError as e:
        return e.code, e.read().strip()


def plugin_config(subset, rules, one_of=0):
    """Every request to `subset`, behind `rules` exact-match rules (or one rule whose `oneOf` lists
    `one_of` values) that match nothing sent here (and one rule that keeps the other subset in the
    configuration, so both have upstreams)."""
    other = "v1" if subset == "v2" else "v2"
    testers = [{"name": "testers", "match": {"headers": [
        {"name": "x-user-id", "oneOf": [f"user-{i}" for i in range(one_of)]}]},
        "route": {"subset": other}}] if one_of else []
    listed = testers + [{"name": f"user-{i}", "match": {"headers": [{"name": "x-user-id", "exact": f"user-{i}"}]},
               "route": {"subset": other}} for i in range(rules)]
    listed.append({"name": "never", "match": {"headers": [{"name": "x-never", "present": True}]},
                   "route": {"subset": other}})
    return json.dumps({"rules": listed, "default": {"subset": subset}})


def counter(admin, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?filter=^{name}$", timeout=5) as r:
        for line in r.read().decode().splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
    return 0


def run(args, build, workers, work):
    renderer = args.envoy_config
    listen, admin = free_ports(1)[0], free_ports(1)[0]
    upstream = free_ports(2)[0]
    ecds_dir = os.path.join(work, f"ecds-{build}-{workers}")
    os.makedirs(ecds_dir)
    configs = {}
    for subset in ("v1", "v2"):
        configs[subset] = os.path.join(work, f"{build}-{workers}-{subset}.json")
        with open(configs[subset], "w") as f:
            f.write(plugin_config(subset, args.rules, args.one_of))
    envoy_yaml = os.path.join(work, f"envoy-{build}-{workers}.yaml")
    subprocess.run([renderer, "render", configs["v1"], "--build", build, "--wasm", args.wasm,
                    "--listen", f"127.0.0.1:{listen}", "--admin", f"127.0.0.1:{admin}",
                    "--upstream-port", str(upstream), "--ecds", ecds_dir, "-o", envoy_yaml],
                   check=True)
    env = dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=os.path.dirname(os.path.abspath(args.so)))
    logf = open(os.path.join(work, f"envoy-{build}-{workers}.log"), "w")
    proc = subprocess.Popen([args.envoy, "-c", envoy_yaml, "--concurrency", str(workers),
                             "--disable-hot-restart", "-l", "warning"], stdout=logf,
                            stderr=subprocess.STDOUT, start_new_session=True, env=env)
    trials = []
    try:
        deadline = time.time() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"envoy exited; log {logf.name}")
            try:
                if get(admin, "/ready") == (200, b"LIVE"):
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit(f"envoy not ready; log {logf.name}")
            time.sleep(0.05)
        current = "v1"
        status, body = get(listen)
        if (status, body) != (200, b"v1"):
            raise SystemExit(f"{build}@{workers}: first request answered {status} {body!r}, not v1")
        reload_name = "extension_config_discovery.http_filter.subset_router.config_reload"
        for trial in range(args.trials):
            new = "v2" if current == "v1" else "v1"
            staged = os.path.join(ecds_dir, ".next.yaml")
            subprocess.run([renderer, "ecds", configs[new], "--build", build, "--wasm", args.wasm,
                            "-o", staged], check=True)
            reloads = counter(admin, reload_name)
            time.sleep(0.2)  # the renderer's own start-up is not part of the trial
            t0 = time.perf_counter()
            os.rename(staged, os.path.join(ecds_dir, "subset_router.yaml"))
            first = last_old = None
            in_a_row = 0
            failed = 0
            while in_a_row < IN_A_ROW:
                status, body = get(listen)
                t = time.perf_counter() - t0
                if status != 200:
                    failed += 1
                elif body == new.encode():
                    first = t if first is None else first
                    in_a_row += 1
                else:
                    last_old = t
                    in_a_row = 0
                if t > 30:
                    raise SystemExit(f"{build}@{workers}: not applied after 30 s")
            # The first request after the last old answer: every worker decides anew from then on.
            all_workers = first if last_old is None or last_old < first else last_old
            applied = counter(admin, reload_name) - reloads
            trials.append({"first_ms": first * 1000, "all_workers_ms": all_workers * 1000,
                           "failed_requests": failed, "config_reloads": applied})
            log(f"{build} at {workers} worker(s), trial {trial + 1}: first {first * 1000:.1f} ms, "
                f"all workers {all_workers * 1000:.1f} ms, reloads +{applied}, failed {failed}")
            current = new
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logf.close()
    return trials


def summary(trials, key):
    xs = [t[key] for t in trials]
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envoy", default=os.environ.get("ENVOY_BIN"))
    ap.add_argument("--envoy-config", default=os.environ.get(
        "ENVOY_CONFIG_BIN", os.path.join(ROOT, "target", "release", "envoy-config")))
    ap.add_argument("--wasm", default=os.environ.get("WASM", os.path.join(ROOT, "dist", "subset_router.wasm")))
    ap.add_argument("--so", default=os.environ.get("NATIVE_SO", os.path.join(ROOT, "dist", "libsubset_router.so")))
    ap.add_argument("--builds", default="wasm,native")
    ap.add_argument("--workers", default="1,4")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--rules", type=int, default=0, help="exact-match rules in front (configuration size)")
    ap.add_argument("--one-of", type=int, default=0, help="a rule in front whose oneOf lists this many values")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    args = ap.parse_args()
    for what, path in (("--envoy", args.envoy), ("--envoy-config", args.envoy_config),
                       ("--wasm", args.wasm), ("--so", args.so)):
        if not path or not os.path.exists(path):
            raise SystemExit(f"{what}: {path!r} does not exist")
    args.wasm = os.path.abspath(args.wasm)
    work = tempfile.mkdtemp(prefix="subset-router-ecds-")
    results = {}
    for build in args.builds.split(","):
        for workers in (int(w) for w in args.workers.split(",")):
            trials = run(args, build, workers, work)
            results[f"{build}@{workers}"] = {
                "build": build, "workers": workers, "trials": trials,
                "first_ms": summary(trials, "first_ms"),
                "all_workers_ms": summary(trials, "all_workers_ms"),
                "failed_requests": sum(t["failed_requests"] for t in trials)}
    fmt = lambda s: f"{s['median']:.1f} ({s['min']:.1f}–{s['max']:.1f})"
    lines = [f"ECDS apply time, ms from the rename of the watched file: median (min–max) of "
             f"{args.trials} trials; {args.rules} exact-match rules in front"
             + (f", and a rule whose oneOf lists {args.one_of:,} values" if args.one_of else "") + ".", "",
             "| build | workers | first request decided anew | every worker decides anew | failed requests |",
             "|---|---|---|---|---|"]
    for r in results.values():
        lines.append(f"| {r['build']} | {r['workers']} | {fmt(r['first_ms'])} | "
                     f"{fmt(r['all_workers_ms'])} | {r['failed_requests']} |")
    md = "\n".join(lines) + "\n"
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "ecds.json"), "w") as f:
        json.dump({"rules": args.rules, "one_of": args.one_of, "results": results}, f, indent=1)
    with open(os.path.join(args.out, "ecds.md"), "w") as f:
        f.write(md)
    shutil.rmtree(work, ignore_errors=True)
    print(md)


if __name__ == "__main__":
    main()
