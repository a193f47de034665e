#!/usr/bin/env python3
"""Helpers for scripts/run.sh (standard library only).

    run-demo.py free-ports PORT...           exit 1 (naming them) if any port is taken on 127.0.0.1
    run-demo.py wait-ready ADMIN_URL SECS    poll ADMIN_URL/ready until it answers 200
    run-demo.py burst CONFIG FRONT_HOST:PORT ADMIN_URL [--requests N] [--curl-host H]
        send a burst of requests shaped by the plugin config and print the observed split:
          * "plain": N requests to /, each with its own sticky key (user-0, user-1, ...);
          * one probe of 20 requests per rule with a fixed subset whose match can be built
            from the config (headers, cookies, query, path, method, host; not regex/invert);
          * a probe for each split rule the plain requests did not reach;
          * "sticky": the same key 20 times (when a rule is sticky).
        The deciding rule of each probe is read from the filter's own counters in admin
        /stats (delta before/after). Exit 1 when a check fails: a non-200 answer, a
        fixed-subset probe not all on its subset, a sticky probe spread over several subsets,
        or a responseHeader that disagrees with the upstream that served.
        Then print three ready-to-paste curl lines (plain, debug, sticky user).
"""
import http.client
import json
import re
import socket
import sys
import time
import urllib.parse
import urllib.request

STAT_RE = re.compile(r"^(?:wasmcustom\.)?subset_router\.rule\.(.+)\.subset\.([A-Za-z0-9._-]+): (\d+)$")


def free_ports(ports):
    taken = []
    for p in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # As Envoy's listeners do: connections of a previous run in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", int(p)))
        except OSError:
            taken.append(p)
        finally:
            s.close()
    if taken:
        print("port(s) already in use: " + " ".join(map(str, taken)), file=sys.stderr)
        return 1
    return 0


def wait_ready(admin, secs):
    deadline = time.time() + float(secs)
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(admin + "/ready", timeout=1) as r:
                if r.status == 200:
                    return 0
        except Exception:
            pass
        time.sleep(0.2)
    return 1


def counters(admin):
    with urllib.request.urlopen(admin + "/stats?filter=subset_router", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = STAT_RE.match(line.strip())
        if m:
            out[(m.group(1), m.group(2))] = int(m.group(3))
    return out


# ---- building requests from the config -------------------------------------------------

class Unbuildable(Exception):
    pass


def value_for(cond):
    """A value satisfying one value condition, or None to leave the value out."""
    if cond.get("invert") or "regex" in cond:
        raise Unbuildable("regex/invert")
    if "present" in cond:
        return "1" if cond["present"] else None
    for op in ("exact", "prefix", "suffix", "contains"):
        if op in cond:
            return cond[op]
    raise Unbuildable("no operator")


def sticky_sources(config):
    """Every sticky key source used by a rule: [('header', name) | ('cookie', n) | ('query', n)]."""
    out = []
    for rule in config.get("rules") or []:
        sb = (rule.get("route") or {}).get("stickyBy") or {}
        for kind in ("header", "cookie", "query"):
            if kind in sb and (kind, sb[kind]) not in out:
                out.append((kind, sb[kind]))
    return out


class Req:
    def __init__(self):
        self.method = "GET"
        self.path = "/"
        self.query = []
        self.headers = []
        self.cookies = []
        self.host = None

    def add_key(self, sources, key):
        for kind, name in sources:
            if kind == "header":
                self.headers.append((name, key))
            elif kind == "cookie":
                self.cookies.append((name, key))
            else:
                self.query.append((name, key))
        return self

    def target(self):
        qs = urllib.parse.urlencode(self.query)
        return self.path + ("?" + qs if qs else "")

    def all_headers(self):
        h = list(self.headers)
        if self.cookies:
            h.append(("cookie", "; ".join(f"{n}={v}" for n, v in self.cookies)))
        return h

    def describe(self):
        parts = [f"{n}: {v}" for n, v in self.all_headers()]
        if self.method != "GET":
            parts.insert(0, self.method)
        if self.host:
            parts.append(f"host {self.host}")
        if self.target() != "/":
            parts.append(self.target())
        return ", ".join(parts) or "GET /"

    def curl(self, base):
        args = ["curl", "-s"]
        if self.method != "GET":
            args += ["-X", self.method]
        for n, v in self.all_headers():
            args += ["-H", shq(f"{n}: {v}")]
        if self.host:
            args += ["-H", shq(f"host: {self.host}")]
        args.append(shq(base + self.target()))
        return " ".join(args)


def shq(s):
    return s if re.fullmatch(r"[A-Za-z0-9_./:=@%+,-]+", s) else "'" + s.replace("'", "'\\''") + "'"


def build(match):
    """A request satisfying `match`, or raise Unbuildable."""
    r = Req()
    match = match or {}
    for c in match.get("headers") or []:
        v = value_for(c)
        if v is not None:
            if c["name"].lower() == "host" or c["name"] == ":authority":
                r.host = v
            else:
                r.headers.append((c["name"], v))
    for c in match.get("cookies") or []:
        v = value_for(c)
        if v is not None:
            r.cookies.append((c["name"], v))
    for c in match.get("query") or []:
        v = value_for(c)
        if v is not None:
            r.query.append((c["name"], v))
    if match.get("path"):
        r.path = match["path"]
    elif match.get("pathPrefix"):
        r.path = match["pathPrefix"] if match["pathPrefix"].startswith("/") else "/" + match["pathPrefix"]
    methods = match.get("methods") or []
    if methods:
        ok = [m for m in methods if m.upper() in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")]
        if not ok:
            raise Unbuildable("methods")
        r.method = ok[0].upper()
    hosts = match.get("hosts") or []
    if hosts:
        h = hosts[0]
        r.host = ("demo." + h[2:]) if h.startswith("*.") else h
    if match.get("sourceCidrs"):
        import ipaddress
        nets = [ipaddress.ip_network(c, strict=False) for c in match["sourceCidrs"]]
        if not any(ipaddress.ip_address("127.0.0.1") in n for n in nets):
            raise Unbuildable("sourceCidrs excludes 127.0.0.1")
    return r


# ---- sending ----------------------------------------------------------------------------

class Front:
    def __init__(self, hostport, response_header):
        host, _, port = hostport.rpartition(":")
        self.host, self.port = host, int(port)
        self.response_header = response_header
        self.conn = None

    def send(self, req):
        """(status, served_by, routed_header_value)."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
            try:
                hs = req.all_headers()
                self.conn.putrequest(req.method, req.target(), skip_host=True, skip_accept_encoding=True)
                self.conn.putheader("host", req.host or f"localhost:{self.port}")
                for n, v in hs:
                    self.conn.putheader(n, v)
                self.conn.endheaders()
                resp = self.conn.getresponse()
                resp.read()
                return (resp.status, resp.getheader("x-served-by"),
                        resp.getheader(self.response_header) if self.response_header else None)
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise


class Probe:
    def __init__(self, label, reqs, expect_subset=None, expect_sticky=False):
        self.label = label
        self.reqs = reqs
        self.expect_subset = expect_subset
        self.expect_sticky = expect_sticky
        self.served = {}
        self.errors = {}
        self.mismatch = 0
        self.rules = {}

    def run(self, front, admin):
        before = counters(admin)
        for req in self.reqs:
            status, served, routed = front.send(req)
            if status != 200:
                self.errors[status] = self.errors.get(status, 0) + 1
                continue
            self.served[served] = self.served.get(served, 0) + 1
            if front.response_header and routed != served:
                self.mismatch += 1
        after = counters(admin)
        for k, v in after.items():
            d = v - before.get(k, 0)
            if d:
                self.rules[k[0]] = self.rules.get(k[0], 0) + d

    def problems(self):
        p = []
        if self.errors:
            p.append("HTTP " + ", ".join(f"{s} x{n}" for s, n in sorted(self.errors.items())))
        if self.mismatch:
            p.append(f"{self.mismatch} response(s) whose response header disagrees with the upstream")
        if self.expect_subset and set(self.served) - {self.expect_subset}:
            p.append(f"expected every request on {self.expect_subset}")
        if self.expect_sticky and len(self.served) > 1:
            p.append("the same key landed on several subsets")
        return p


def configured(config, rule_names):
    """What the config says for the rules that decided a probe."""
    rules = {r.get("name"): r for r in config.get("rules") or []}
    out = []
    for name in rule_names:
        route = (rules.get(name) or {}).get("route") if name != "default" else config.get("default")
        route = route or {}
        if "subset" in route:
            out.append(f"{name}: -> {route['subset']}")
        elif route.get("split"):
            total = sum(e["weight"] for e in route["split"]) or 1
            split = " / ".join(f"{e['subset']} {100.0 * e['weight'] / total:g}%" for e in route["split"])
            sticky = route.get("stickyBy")
            out.append(f"{name}: {split}" + (" sticky" if sticky else ""))
    return "; ".join(out) or "-"


def burst(config_path, front_addr, admin, n, curl_host):
    from render_envoy import cluster_name, subsets_of  # sibling module, loaded in __main__

    config = json.load(open(config_path, encoding="utf-8"))
    subsets = subsets_of(config)
    sources = sticky_sources(config)
    front = Front(front_addr, config.get("responseHeader"))
    rules = config.get("rules") or []
    t0 = time.time()

    probes = []
    plain = Probe(f"plain, {n} different users" if sources else "plain",
                  [Req().add_key(sources, f"user-{i}") for i in range(n)])
    plain.run(front, admin)
    probes.append(plain)
    debug_req, debug_subset = None, None
    for rule in rules:
        route = rule.get("route") or {}
        try:
            req = build(rule.get("match"))
        except Unbuildable:
            continue
        if "subset" in route:
            p = Probe(f"{req.describe()}", [req] * 20, expect_subset=route["subset"])
            if debug_req is None:
                debug_req, debug_subset = req, route["subset"]
        elif rule.get("name") not in plain.rules:
            p = Probe(f"rule {rule.get('name')}: {req.describe()}",
                      [build(rule.get("match")).add_key(sources, f"user-{i}") for i in range(n // 2)])
        else:
            continue
        p.run(front, admin)
        probes.append(p)
    sticky_req = None
    if sources:
        sticky_req = Req().add_key(sources, "user-42")
        p = Probe(f"sticky: {sticky_req.describe()}, 20 times", [sticky_req] * 20, expect_sticky=True)
        p.run(front, admin)
        probes.append(p)
    elapsed = time.time() - t0

    # ---- the table ----
    cols = subsets + sorted({s for p in probes for s in p.served} - set(subsets) - {None})
    head = ["requests", "decided by (filter counters)", "configured"] + cols + ["check"]
    rows = []
    failed = False
    for p in probes:
        total = len(p.reqs)
        cells = [p.label, str(total),
                 ", ".join(f"{r} x{c}" for r, c in p.rules.items()) or "-",
                 configured(config, list(p.rules))]
        for s in cols:
            c = p.served.get(s, 0)
            cells.append(f"{c} ({100.0 * c / total:.1f}%)" if c else "0")
        probs = p.problems()
        failed |= bool(probs)
        cells.append("ok" if not probs else "FAIL: " + "; ".join(probs))
        rows.append(cells)
    head = ["traffic"] + head
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    line = lambda cells: "  ".join(str(c).ljust(w) if i < 4 else str(c).rjust(w) if i < len(head) - 1 else str(c)
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    sent = sum(len(p.reqs) for p in probes)
    print()
    print("Upstreams (each answers its subset name): " + ", ".join(
        s + (f" (cluster {cluster_name(config, s)})" if cluster_name(config, s) != s else "") for s in subsets))
    print(f"Observed split: {sent} requests in {elapsed:.1f}s through Envoy at {front_addr} "
          f"(column = subset whose upstream answered)")
    print()
    print(line(head))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))
    print()

    # ---- curl lines ----
    base = f"http://{curl_host}:{front.port}"
    print("Try it yourself:")
    lines = [(Req().curl(base), "plain request")]
    if debug_req is not None:
        lines.append((debug_req.curl(base), f"debug rule: always {debug_subset}"))
    else:
        lines.append((build({"headers": [{"name": "user-agent", "exact": "debug"}]}).curl(base),
                      "no debug (fixed-subset) rule in this config: same as plain"))
    if sticky_req is not None:
        lines.append((Req().add_key(sources, "alice").curl(base), "sticky user: the same subset every time"))
    else:
        lines.append((Req().add_key([("header", "x-user-id")], "alice").curl(base),
                      "no sticky rule in this config: same as plain"))
    width = max(len(c) for c, _ in lines)
    for c, why in lines:
        print(f"  {c.ljust(width)}   # {why}")
    if config.get("responseHeader"):
        print(f"  (add -i to see the `{config['responseHeader']}` response header)")
    print(f"  Filter counters: curl -s '{admin}/stats?filter=subset_router'")
    return 1 if failed else 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "free-ports":
        return free_ports(argv[2:])
    if len(argv) == 4 and argv[1] == "wait-ready":
        return wait_ready(argv[2], argv[3])
    if len(argv) >= 5 and argv[1] == "burst":
        import argparse
        ap = argparse.ArgumentParser(prog="run-demo.py burst")
        ap.add_argument("config")
        ap.add_argument("front")
        ap.add_argument("admin")
        ap.add_argument("--requests", type=int, default=1000)
        ap.add_argument("--curl-host", default="localhost")
        a = ap.parse_args(argv[2:])
        return burst(a.config, a.front, a.admin, a.requests, a.curl_host)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    import importlib.util
    import os
    spec = importlib.util.spec_from_file_location(
        "render_envoy", os.path.join(os.path.dirname(os.path.abspath(__file__)), "render-envoy.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.modules["render_envoy"] = mod
    try:
        sys.exit(main(sys.argv))
    except KeyboardInterrupt:
        sys.exit(130)
