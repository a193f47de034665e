#!/usr/bin/env python3
"""Check what `docker-compose -f FILE config` resolved an example's compose file to (stdin).

    docker-compose -f examples/x/docker-compose.yaml config | python3 check_compose.py FILE WASM [LABEL]

Every Envoy service (`envoy`, `envoy-…`) uses the default image envoyproxy/envoy:v1.40.0 (ENVOY_IMAGE unset), runs
/usr/local/bin/envoy -c /etc/envoy/envoy.yaml, and mounts an existing envoy.yaml and exactly
WASM (dist/subset_router.wasm) at the path the envoy.yaml names; or, for an example of the
native build (its envoy.yaml loads the dynamic module), dist/libsubset_router.so beside WASM
as libsubset_router.so in the directory ENVOY_DYNAMIC_MODULES_SEARCH_PATH names. Needs pyyaml.
"""
import os
import sys

import yaml


def check_service(svc, wasm):
    """The problems of one Envoy service, the envoy.yaml it mounts and the filter file it loads."""
    problems = []
    if svc.get("image") != "envoyproxy/envoy:v1.40.0":
        problems.append(f"default image is {svc.get('image')!r}")
    entry = svc.get("entrypoint")
    if (entry if isinstance(entry, str) else " ".join(entry or [])) != "/usr/local/bin/envoy":
        problems.append(f"entrypoint {entry!r}")
    if list(svc.get("command") or [])[:2] != ["-c", "/etc/envoy/envoy.yaml"]:
        problems.append(f"command {svc.get('command')!r}")
    mounts = {}
    for v in svc.get("volumes") or []:
        if isinstance(v, str):
            src, dst = v.split(":")[:2]
        else:
            src, dst = v["source"], v["target"]
        mounts[dst] = src
    y = mounts.get("/etc/envoy/envoy.yaml")
    text = open(y, encoding="utf-8").read() if y and os.path.isfile(y) else None
    if text is None:
        problems.append(f"envoy.yaml mount {y!r} is not a file")
    native = text is not None and "dynamic_module_config" in text
    if native:
        module = os.path.join(os.path.dirname(os.path.abspath(wasm)), "libsubset_router.so")
        env = svc.get("environment") or {}
        search = env.get("ENVOY_DYNAMIC_MODULES_SEARCH_PATH") if isinstance(env, dict) else None
        want = f"{search}/libsubset_router.so" if search else None
        if not want or mounts.get(want) != module:
            problems.append(f"module mount {mounts.get(want) if want else None!r} at {want!r}, expected {module} "
                            "in ENVOY_DYNAMIC_MODULES_SEARCH_PATH")
        wasm = module
    else:
        if mounts.get("/etc/envoy/subset_router.wasm") != os.path.abspath(wasm):
            problems.append(f"wasm mount {mounts.get('/etc/envoy/subset_router.wasm')!r}, expected {os.path.abspath(wasm)}")
        if text is not None and "/etc/envoy/subset_router.wasm" not in text:
            problems.append(f"{y} does not load /etc/envoy/subset_router.wasm")
    return problems, y, wasm


def main(path, wasm, label=""):
    """Every service named `envoy` or `envoy-…` (examples/native runs both native forms,
    examples/fleet three replicas)."""
    c = yaml.safe_load(sys.stdin)
    services = {n: s for n, s in c["services"].items() if n == "envoy" or n.startswith("envoy-")}
    # `envoy`, or numbered replicas (examples/fleet: envoy-1, envoy-2, envoy-3).
    if "envoy" not in services and "envoy-1" not in services:
        print(f"FAIL {path} {label}: no `envoy` (or `envoy-1`) service")
        return 1
    failed = 0
    prom = c["services"].get("prometheus")
    if prom is not None:
        # examples/fleet: the config the Envoys' fleet queries depend on must be mounted.
        mounts = {(v.split(":")[1] if isinstance(v, str) else v["target"]):
                  (v.split(":")[0] if isinstance(v, str) else v["source"]) for v in prom.get("volumes") or []}
        cfg = mounts.get("/etc/prometheus/prometheus.yml")
        if not (cfg and os.path.isfile(cfg)) or "--config.file=/etc/prometheus/prometheus.yml" not in (prom.get("command") or []):
            print(f"FAIL {path} {label}[prometheus]: prometheus.yml mount {cfg!r} / command {prom.get('command')!r}")
            failed = 1
        else:
            print(f"docker-compose config: {path} {label}[prometheus] -> {os.path.relpath(cfg)} OK")
    for name, svc in sorted(services.items()):
        problems, y, loaded = check_service(svc, wasm)
        if problems:
            print(f"FAIL {path} {label}[{name}]: " + "; ".join(problems))
            failed = 1
        else:
            print(f"docker-compose config: {path} {label}[{name}] -> {os.path.relpath(y)} + {os.path.relpath(loaded)} OK")
    return failed


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
