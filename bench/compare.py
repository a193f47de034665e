#!/usr/bin/env python3
"""Paired A/B comparison of filter builds in Envoy: what one change buys, measured.

  bench/compare.py --config B2 base=/tmp/base.wasm new=/tmp/new.wasm [more=/tmp/x.wasm ...]
                   [--rounds 20] [--secs 1.5]
  bench/compare.py --config B2 b2=/tmp/x.wasm b200=/tmp/x.wasm@/tmp/200-rules.json

A build may bring its own plugin configuration (NAME=PATH.wasm@CONFIG.json), to measure what a
configuration costs with the same module.

Every build runs in its own front Envoy (--concurrency 1, pinned to FRONT_CPU) with the same
Envoy and plugin configuration: bench/run.py's configuration <config> (its Envoy config rendered
by envoy-config bench, envoy/config; bench/config/<config>.json); the upstream and the
closed-loop load (wrk, bench/requests.txt) are those of bench/run.py. The builds are measured in
short closed-loop windows that alternate (A B A B …, the order flipping each round), so that the
drift of a shared machine (other tenants, steal time: Envoy's CPU µs/request moves by ±20% over
a minute here) hits both sides of each pair alike. Reported: for each build
against the first, the median and min–max over rounds of the paired CPU µs/request difference
and ratio, and of the throughput ratio; and the front CPU's steal time.

Environment as for bench/run.py (ENVOY_BIN, UPSTREAM_BIN, ENVOY_CONFIG_BIN, FRONT_CPU, LOAD_CPU);
the `.wasm` files are given, nothing is built (ENVOY_CONFIG_BIN defaults to
target/release/envoy-config: cargo build --release -p subset-router-envoy-config).
"""

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (bench/run.py: Envoy, Upstream, measure_closed, …)


def steal_ticks(cpu):
    with open("/proc/stat") as f:
        for line in f:
            if cpu is not None and line.startswith(f"cpu{cpu} "):
                return int(line.split()[8])
            if cpu is None and line.startswith("cpu "):
                return int(line.split()[8])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("builds", nargs="+", metavar="NAME=PATH.wasm")
    ap.add_argument("--config", default="B", choices=("B", "B2", "B3", "B3-fleet", "W"),
                    help="the Envoy + plugin configuration of bench/run.py the builds run in")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--secs", type=float, default=1.5, help="closed-loop window per build per round")
    ap.add_argument("--envoy", default=os.environ.get("ENVOY_BIN"))
    ap.add_argument("--upstream-bin", default=os.environ.get("UPSTREAM_BIN"))
    ap.add_argument("--envoy-config", default=bench.DEFAULT_ENVOY_CONFIG,
                    help="the envoy-config binary (env ENVOY_CONFIG_BIN)")
    ap.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    ap.add_argument("--connections", type=int, default=int(os.environ.get("CONNS", 16)))
    ap.add_argument("--front-cpu", default=os.environ.get("FRONT_CPU", "0"))
    ap.add_argument("--load-cpu", default=os.environ.get("LOAD_CPU", "1"))
    ap.add_argument("--json", help="write the raw windows here")
    args = ap.parse_args()
    args.front_cpu = None if args.front_cpu in ("", "none") else args.front_cpu
    args.load_cpu = None if args.load_cpu in ("", "none") else args.load_cpu
    shape = bench.SHAPES[args.config]
    builds = []
    configs = {}
    for spec in args.builds:
        name, _, path = spec.partition("=")
        path, _, config = path.partition("@")
        if not name or not os.path.exists(path) or (config and not os.path.exists(config)):
            raise SystemExit(f"{spec!r}: want NAME=/path/to.wasm[@/path/to/config.json] (existing files)")
        if config and shape == "W":
            raise SystemExit(f"{spec!r}: the Wasm floor (--config W) takes no plugin configuration")
        builds.append((name, os.path.abspath(path)))
        if config:
            with open(config) as f:
                json.load(f)  # a broken file fails here, not as an Envoy that will not start
            configs[name] = os.path.abspath(config)
    if len(builds) < 2:
        raise SystemExit("give at least two builds")
    if not args.envoy or not args.upstream_bin:
        raise SystemExit("ENVOY_BIN and UPSTREAM_BIN must be set (bench/run.sh sets them)")

    v1, v2 = bench.free_port(), bench.free_port()
    renderer = bench.Renderer(args.envoy_config, v1, v2)
    plugin = None if shape == "W" else bench.plugin_config_path(bench.PLUGIN_CONFIGS[args.config])
    work = tempfile.mkdtemp(prefix="subset-router-compare-")
    envoys = {}
    # B3-fleet's guard queries a `prometheus` cluster: bench/run.py's fake metrics server.
    fake = bench.FakeMetrics() if args.config in bench.FLEET_CONFIGS else None
    clusters = [f"prometheus=127.0.0.1:{fake.port}"] if fake else []
    try:
        up = bench.Upstream(args.upstream_bin, {"v1": v1, "v2": v2}, work, args.load_cpu)
        envoys["upstream"] = up
        for name, path in builds:
            front = bench.Front(shape, bench.free_port(), path, configs.get(name, plugin), clusters)
            e = bench.Envoy(name, args.envoy, renderer, front.render_args(), work, args.front_cpu)
            e.front_port = front.port
            envoys[name] = e
        for e in envoys.values():
            e.wait_ready()
        for name, _ in builds:
            # B3 and B3-fleet route like B (the ramp holds v2 at 10%).
            profile = "B" if args.config in ("B3", "B3-fleet") else args.config
            bench.sanity_check(profile, envoys[name].front_port, strict=False)
            bench.run_wrk(args, envoys[name].front_port, 1)
        windows = []
        names = [n for n, _ in builds]
        for r in range(args.rounds):
            order = names if r % 2 == 0 else list(reversed(names))
            res = {}
            for n in order:
                s0 = steal_ticks(args.front_cpu)
                m = bench.measure_closed(args, envoys[n], args.secs)
                m["steal_ticks"] = steal_ticks(args.front_cpu) - s0
                res[n] = m
            windows.append(res)
            bench.log(f"round {r + 1}/{args.rounds}: " + ", ".join(
                f"{n} {res[n]['cpu_us_per_req']:.1f} us/req {res[n]['rps']:.0f} req/s" for n in names))
    finally:
        for e in envoys.values():
            e.stop()
        if fake:
            fake.stop()
        shutil.rmtree(work, ignore_errors=True)

    base = names[0]
    med = statistics.median
    steal = [w[n]["steal_ticks"] for w in windows for n in names]
    total_secs = args.secs * len(steal)
    print(f"config {args.config}, {args.rounds} rounds x {args.secs} s per build, front CPU steal "
          f"{100 * sum(steal) / bench.CLK_TCK / total_secs:.1f}% of the time")
    print(f"{base}: CPU {med([w[base]['cpu_us_per_req'] for w in windows]):.1f} us/req, "
          f"{med([w[base]['rps'] for w in windows]):.0f} req/s (medians)")
    out = {"config": args.config, "builds": dict(builds), "windows": windows, "pairs": {}}
    for n in names[1:]:
        diff = [w[n]["cpu_us_per_req"] - w[base]["cpu_us_per_req"] for w in windows]
        ratio = [w[n]["cpu_us_per_req"] / w[base]["cpu_us_per_req"] for w in windows]
        rps = [w[n]["rps"] / w[base]["rps"] for w in windows]
        out["pairs"][f"{n}-{base}"] = {"cpu_diff_us": diff, "cpu_ratio": ratio, "rps_ratio": rps}
        print(f"{n} vs {base}: CPU {med(diff):+.1f} us/req (min {min(diff):+.1f}, max {max(diff):+.1f}), "
              f"ratio {med(ratio):.3f} ({min(ratio):.3f}–{max(ratio):.3f}); throughput ratio "
              f"{med(rps):.3f} ({min(rps):.3f}–{max(rps):.3f}); {n} won {sum(d < 0 for d in diff)}/{len(diff)} rounds")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
