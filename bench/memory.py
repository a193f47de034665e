#!/usr/bin/env python3
"""Where an Envoy's memory is: the process's resident set split by kind, as /proc sees it, plus
what Envoy itself reports (tcmalloc's heap from admin /memory, Wasm VMs from admin /stats).

Used by bench/run.py (the "Memory per proxy" table of `make bench`) and on its own to look at
one running Envoy:

    python3 bench/memory.py PID [ADMIN_PORT]        one snapshot, as JSON
    python3 bench/memory.py --maps PID              its largest resident mappings

Kinds of resident memory (from /proc/PID/smaps; KiB):
  rss              VmRSS (= the sum of the mappings' Rss)
  file             file-backed pages (the Envoy binary's text and data, shared libraries)
  anon             anonymous pages: the heap, thread stacks, V8's heaps, JIT code, Wasm memories
  anon_exec        anonymous executable mappings: code generated at run time (V8's Wasm code)
  anon_reservation anonymous pages inside mappings of 1 GiB or more: what V8 reserves for each Wasm
                   linear memory (4 GiB plus guard regions; only touched pages are resident)
Envoy's admin /memory (tcmalloc): allocated (live heap), heap_size (all the heap's pages),
pageheap_free / pageheap_unmapped (freed pages kept / returned), total_thread_cache.
"""

import json
import sys
import urllib.request

GIB = 1 << 30


def mappings(pid):
    """Every mapping of /proc/PID/smaps: dict(start, end, perms, path, size_kib, rss_kib,
    anon_kib, pss_kib)."""
    out = []
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if not head:
                continue
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                start, end = (int(x, 16) for x in head[0].split("-"))
                cur = {"start": start, "end": end, "perms": head[1],
                       "path": head[5] if len(head) > 5 else "", "size_kib": (end - start) // 1024,
                       "rss_kib": 0, "anon_kib": 0, "pss_kib": 0}
                out.append(cur)
            elif cur is not None and head[0] in ("Rss:", "Anonymous:", "Pss:"):
                key = {"Rss:": "rss_kib", "Anonymous:": "anon_kib", "Pss:": "pss_kib"}[head[0]]
                cur[key] = int(head[1])
    return out


def split(pid):
    """The resident set by kind (see the module documentation), KiB."""
    kinds = {"rss": 0, "file": 0, "anon": 0, "anon_exec": 0, "anon_reservation": 0,
             "heap": 0, "stacks": 0}
    for m in mappings(pid):
        kinds["rss"] += m["rss_kib"]
        kinds["anon"] += m["anon_kib"]
        if m["path"].startswith("/"):
            kinds["file"] += m["rss_kib"] - m["anon_kib"]
        if not m["path"].startswith("/"):
            if "x" in m["perms"]:
                kinds["anon_exec"] += m["anon_kib"]
            if m["end"] - m["start"] >= GIB:
                kinds["anon_reservation"] += m["anon_kib"]
            if m["path"] == "[heap]":
                kinds["heap"] += m["anon_kib"]
            if m["path"].startswith("[stack"):
                kinds["stacks"] += m["anon_kib"]
    return kinds


def admin_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.loads(r.read())


def tcmalloc(port):
    """Envoy's admin /memory, KiB (all fields are byte counts as strings)."""
    try:
        mem = admin_json(port, "/memory")
    except Exception:
        return {}
    return {k: int(v) // 1024 for k, v in mem.items() if str(v).isdigit()}


def wasm_vms(port):
    """Wasm VMs alive (admin /stats gauges wasm.envoy.wasm.runtime.<rt>.active), or None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats?filter=wasm.*active",
                                    timeout=5) as r:
            body = r.read().decode()
    except Exception:
        return None
    total = None
    for line in body.splitlines():
        name, _, value = line.partition(": ")
        if name.endswith(".active") and "runtime" in name and value.strip().isdigit():
            total = (total or 0) + int(value)
    return total


def snapshot(pid, admin_port=None):
    """Everything above for one process."""
    out = {"split_kib": split(pid)}
    if admin_port:
        out["tcmalloc_kib"] = tcmalloc(admin_port)
        out["wasm_vms"] = wasm_vms(admin_port)
    return out


def largest(pid, n=25):
    """The n mappings with the most resident pages."""
    return sorted(mappings(pid), key=lambda m: -m["rss_kib"])[:n]


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "--maps":
        for m in largest(int(sys.argv[2])):
            print(f"{m['rss_kib']:>8} KiB rss {m['anon_kib']:>8} anon  {m['size_kib']:>12} KiB "
                  f"{m['perms']} {m['path']}")
        return
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    port = int(sys.argv[2]) if len(sys.argv) > 2 else None
    print(json.dumps(snapshot(int(sys.argv[1]), port), indent=1))


if __name__ == "__main__":
    main()
