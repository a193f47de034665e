#!/usr/bin/env python3
"""Check what `docker-compose -f FILE config` resolved an example's compose file to (stdin).

    docker-compose -f examples/x/docker-compose.yaml config | python3 check_compose.py FILE WASM [LABEL]

The envoy service uses the default image envoyproxy/envoy:v1.40.0 (ENVOY_IMAGE unset), runs
/usr/local/bin/envoy -c /etc/envoy/envoy.yaml, and mounts an existing envoy.yaml and exactly
WASM (dist/subset_router.wasm) at the paths the envoy.yaml names. Needs pyyaml.
"""
import os
import sys

import yaml


def main(path, wasm, label=""):
    c = yaml.safe_load(sys.stdin)
    svc = c["services"]["envoy"]
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
    if mounts.get("/etc/envoy/subset_router.wasm") != os.path.abspath(wasm):
        problems.append(f"wasm mount {mounts.get('/etc/envoy/subset_router.wasm')!r}, expected {os.path.abspath(wasm)}")
    y = mounts.get("/etc/envoy/envoy.yaml")
    if not (y and os.path.isfile(y)):
        problems.append(f"envoy.yaml mount {y!r} is not a file")
    elif "/etc/envoy/subset_router.wasm" not in open(y, encoding="utf-8").read():
        problems.append(f"{y} does not load /etc/envoy/subset_router.wasm")
    if problems:
        print(f"FAIL {path} {label}: " + "; ".join(problems))
        return 1
    print(f"docker-compose config: {path} {label}-> {os.path.relpath(y)} + {os.path.relpath(wasm)} OK")
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(*sys.argv[1:]))
