#!/usr/bin/env python3
"""Every PromQL series the observability pack uses is in a real Envoy scrape.

    check_series.py --rules RULES.yaml --dashboard DASHBOARD.json \
                    --scrape wasm=WASM.prom [--scrape native=NATIVE.prom] [--promtool PATH]

RULES is a Prometheus rule file (examples/observability/rules.yaml), DASHBOARD a Grafana
dashboard (examples/observability/dashboard.json), each scrape Envoy's /stats/prometheus
saved by `observability-scrape` (tests/src/bin) for one build of the filter.

Checks, for every PromQL expression of the rules (recording and alerting), of the dashboard's
panels and of its template variables (`label_values(<selector>, label)`):

1. every metric name it selects (`name{...}`, `{__name__="..."}`, `{__name__=~"a|b"}`) is a
   recording rule of RULES or is printed in at least one scrape (a name only one build prints,
   `subset_router_*`/`envoy_wasm_*` or `envoy_dynamicmodulescustom_*`/`envoy_dynamic_modules_*`,
   is reported NOT CHECKED when that build's scrape is not given);
2. the filter's own families are read for both builds: an expression that names
   `subset_router_<x>` (Wasm build) also names `envoy_dynamicmodulescustom_subset_router_<x>`
   (dynamic module), and the other way round;
3. an alert labelled `build: wasm|native` uses only names of that build's scrape;
4. every label name it matches on, groups by (`by`, `without`, `on`, `ignoring`,
   `group_left/right`) or reads in `label_replace` exists: on a series of the expression in a
   scrape, as an output of a recording rule it reads, as a `label_replace` target, or as a label
   Prometheus adds to every target (job, instance, namespace, pod);
5. the dashboard's expressions are valid PromQL: `promtool check rules` on a temporary rule
   file holding each of them (Grafana's `$__rate_interval`/`$__range` as 5m, variables as .*);
   and the dashboard is importable: unique panel ids, every panel on the `$datasource`
   variable, every `$variable` defined.

Prints every name with the builds whose scrape has it; exit 1 on any problem. Needs PyYAML.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

TARGET_LABELS = {"job", "instance", "namespace", "pod", "__name__"}
FILTER_WASM = "subset_router_"
FILTER_NATIVE = "envoy_dynamicmodulescustom_subset_router_"
# Names only one build prints: checked only when that build's scrape is given.
BUILD_PREFIXES = {"wasm": (FILTER_WASM, "envoy_wasm_"),
                  "native": ("envoy_dynamicmodulescustom_", "envoy_dynamic_modules_")}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                "count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}
NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LITERAL_ALTERNATION = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\|[a-zA-Z_:][a-zA-Z0-9_:]*)*")


# ---- scrapes -------------------------------------------------------------------------------

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def stored(label):
    """A scraped label's name as Prometheus stores it: a target's own `instance` label wins
    (honor_labels: false), so a series' `instance` (a named configuration's tag) is renamed
    `exported_instance`."""
    return "exported_instance" if label == "instance" else label


def read_scrape(path):
    """{metric name: set of label names, as Prometheus stores them} of a text exposition."""
    names = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            m = SAMPLE.match(line)
            if not m:
                raise SystemExit(f"{path}: not a sample line: {line!r}")
            labels = names.setdefault(m.group(1), set())
            labels.update(stored(k) for k, _ in LABEL.findall(m.group(3) or ""))
    return names


# ---- PromQL ---------------------------------------------------------------------------------

TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<num>[0-9.][0-9a-zA-Z.]*)
  | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^=<>@,(){}\[\]])
""", re.X)


def tokenize(expr):
    out, pos = [], 0
    while pos < len(expr):
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot read PromQL at {expr[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind != "ws":
            out.append((kind, m.group()))
    return out


def unquote(s):
    if s.startswith("`"):
        return s[1:-1]
    return bytes(s[1:-1], "utf-8").decode("unicode_escape")


class Selectors:
    """What one expression selects and which label names it relies on."""

    def __init__(self, expr):
        self.selectors = []     # (names or None, regex or None, [(label, op, value)])
        self.used_labels = set()    # label names matched on, grouped by or read
        self.made_labels = set()    # label_replace targets
        toks = tokenize(expr)
        i = 0
        while i < len(toks):
            kind, text = toks[i]
            nxt = toks[i + 1][1] if i + 1 < len(toks) else None
            if kind == "ident":
                low = text.lower()
                if low in LABEL_LIST_KEYWORDS:
                    if nxt == "(":
                        j = i + 2
                        while toks[j][1] != ")":
                            if toks[j][0] == "ident":
                                self.used_labels.add(toks[j][1])
                            j += 1
                        i = j
                elif text == "label_replace" and nxt == "(":
                    # label_replace(v, "dst", "replacement", "src", "regex"): strings 1 and 3
                    strings = self._call_strings(toks, i + 1)
                    if len(strings) >= 3:
                        self.made_labels.add(strings[0])
                        self.used_labels.add(strings[2])
                elif low in KEYWORDS or nxt == "(" or (low in AGGREGATIONS and nxt in ("by", "without")):
                    pass
                else:
                    matchers = []
                    if nxt == "{":
                        matchers, i = self._matchers(toks, i + 2)
                    self._add(text, matchers)
            elif text == "{":
                matchers, i = self._matchers(toks, i + 1)
                self._add(None, matchers)
            elif text == "[":
                while toks[i][1] != "]":
                    i += 1
            i += 1

    @staticmethod
    def _call_strings(toks, open_paren):
        depth, strings, j = 0, [], open_paren
        while j < len(toks):
            t = toks[j][1]
            if t in "([{":
                depth += 1
            elif t in ")]}":
                depth -= 1
                if depth == 0:
                    break
            elif toks[j][0] == "str" and depth == 1:
                strings.append(unquote(t))
            j += 1
        return strings

    def _matchers(self, toks, j):
        matchers = []
        while toks[j][1] != "}":
            if toks[j][1] == ",":
                j += 1
                continue
            label, op, value = toks[j][1], toks[j + 1][1], unquote(toks[j + 2][1])
            matchers.append((label, op, value))
            j += 3
        return matchers, j

    def _add(self, name, matchers):
        names, regex = ([name] if name else None), None
        for label, op, value in matchers:
            if label == "__name__":
                if op == "=":
                    names = [value]
                elif op == "=~" and LITERAL_ALTERNATION.fullmatch(value):
                    names = value.split("|")
                else:
                    regex = (op, value)
            else:
                self.used_labels.add(label)
        self.selectors.append((names, regex, matchers))


def grafana_to_promql(expr):
    """A dashboard query with Grafana's variables replaced by what Prometheus accepts."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}", "5m", expr)
    expr = re.sub(r"\$\{[a-zA-Z0-9_]+(:[a-z]+)?\}|\[\[[a-zA-Z0-9_]+\]\]|\$[a-zA-Z_][a-zA-Z0-9_]*", ".*", expr)
    return expr


def label_values_selector(query):
    """`label_values(<selector>, label)` -> the selector; `label_values(label)` -> None."""
    m = re.fullmatch(r"\s*label_values\((.*)\)\s*", query, re.S)
    if not m:
        return query  # a plain PromQL query variable
    inner, depth = m.group(1), 0
    for k in range(len(inner) - 1, -1, -1):
        c = inner[k]
        if c in ")}]":
            depth += 1
        elif c in "({[":
            depth -= 1
        elif c == "," and depth == 0:
            return inner[:k]
    return None


# ---- what the pack uses ---------------------------------------------------------------------

def rule_expressions(path):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    out = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            what = rule.get("record") or rule.get("alert")
            out.append({"where": f"{os.path.basename(path)}: {what}", "expr": rule["expr"],
                        "record": rule.get("record"), "build": (rule.get("labels") or {}).get("build")})
    return out


def dashboard_expressions(path):
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    out = []

    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels") or [])

    for p in panels(dash.get("panels") or []):
        for t in p.get("targets") or []:
            if t.get("expr"):
                out.append({"where": f"{os.path.basename(path)}: panel {p.get('title')!r} {t.get('refId')}",
                            "expr": grafana_to_promql(t["expr"]), "record": None, "build": None,
                            "promtool": f"dashboard:panel_{p.get('id')}_{t.get('refId')}"})
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        sel = label_values_selector(q or "")
        if sel:
            out.append({"where": f"{os.path.basename(path)}: variable ${v.get('name')}",
                        "expr": grafana_to_promql(sel), "record": None, "build": None,
                        "promtool": f"dashboard:variable_{v.get('name')}", "wrap": "count"})
    return out


def dashboard_problems(path):
    """Shape checks of the Grafana JSON: what an import needs, and one data source variable."""
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    problems, ids = [], set()
    names = [v.get("name") for v in (dash.get("templating") or {}).get("list") or []]
    if not any(v.get("type") == "datasource" and v.get("query") == "prometheus"
               for v in dash["templating"]["list"]):
        problems.append("no Prometheus data source variable")
    for key in ("title", "uid", "schemaVersion", "panels"):
        if key not in dash:
            problems.append(f"no {key!r}")
    for p in dash.get("panels") or []:
        where = f"panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in ids:
            problems.append(f"{where}: id used twice")
        ids.add(p.get("id"))
        g = p.get("gridPos") or {}
        if not all(k in g for k in ("h", "w", "x", "y")) or g.get("x", 0) + g.get("w", 0) > 24:
            problems.append(f"{where}: gridPos {g}")
        if p.get("type") == "row":
            continue
        if p.get("type") not in ("timeseries", "table", "state-timeline", "stat"):
            problems.append(f"{where}: panel type {p.get('type')!r}")
        for t in [p] + (p.get("targets") or []):
            ds = t.get("datasource") or {}
            if ds.get("uid") != "${datasource}":
                problems.append(f"{where}: data source {ds} is not the $datasource variable")
        if not p.get("targets"):
            problems.append(f"{where}: no query")
        for t in p.get("targets") or []:
            for var in re.findall(r"\$([a-zA-Z_][a-zA-Z0-9_]*)", t.get("expr", "")):
                if not var.startswith("__") and var not in names:
                    problems.append(f"{where}: ${var} is not a variable of the dashboard")
    return [f"{os.path.basename(path)}: {p}" for p in problems]


def promtool_check(exprs, promtool):
    """Valid PromQL, as Prometheus itself reads it."""
    rules = [{"record": e["promtool"], "expr": f"{e['wrap']}({e['expr']})" if e.get("wrap") else e["expr"]}
             for e in exprs if e.get("promtool")]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f, sort_keys=False)
        tmp = f.name
    try:
        r = subprocess.run([promtool, "check", "rules", tmp], capture_output=True, text=True)
    finally:
        os.unlink(tmp)
    return r.returncode == 0, (r.stdout + r.stderr).strip(), len(rules)


def twin(name):
    if name.startswith(FILTER_NATIVE):
        return FILTER_WASM + name[len(FILTER_NATIVE):]
    if name.startswith(FILTER_WASM):
        return FILTER_NATIVE + name[len(FILTER_WASM):]
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rules", required=True)
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--scrape", action="append", required=True, metavar="BUILD=FILE")
    ap.add_argument("--promtool", default="promtool")
    args = ap.parse_args()

    scrapes = {}
    for s in args.scrape:
        build, _, path = s.partition("=")
        if build not in ("wasm", "native") or not path:
            ap.error(f"--scrape {s!r}: expected wasm=FILE or native=FILE")
        scrapes[build] = read_scrape(path)
        print(f"scrape {build}: {path}: {len(scrapes[build])} metric names")

    exprs = rule_expressions(args.rules) + dashboard_expressions(args.dashboard)
    recorded = {e["record"]: e for e in exprs if e["record"]}
    problems = []
    used = {}  # name -> set of places
    unchecked = set()  # names of a build whose scrape was not given

    parsed = {}
    for e in exprs:
        try:
            parsed[e["where"]] = Selectors(e["expr"])
        except (ValueError, IndexError) as err:
            problems.append(f"{e['where']}: cannot read the expression: {err}")

    def available_labels(e, seen=()):
        """Label names an expression can rely on (check 4)."""
        sel = parsed.get(e["where"])
        if sel is None:
            return set()
        labels = set(TARGET_LABELS) | sel.made_labels
        for names, regex, _ in sel.selectors:
            for name in names or []:
                if name in recorded and name not in seen:
                    rec = recorded[name]
                    labels |= available_labels(rec, seen + (name,))
                    labels |= parsed[rec["where"]].used_labels if rec["where"] in parsed else set()
                for sc in scrapes.values():
                    labels |= sc.get(name, set())
            if regex:
                rx = re.compile(regex[1])
                for sc in scrapes.values():
                    for n, ls in sc.items():
                        if rx.fullmatch(n):
                            labels |= ls
        return labels

    for e in exprs:
        sel = parsed.get(e["where"])
        if sel is None:
            continue
        names_here = set()
        for names, regex, _ in sel.selectors:
            if regex:
                op, rx = regex
                hits = {b for b, sc in scrapes.items() if any(re.fullmatch(rx, n) for n in sc)}
                if op == "=~" and not hits:
                    problems.append(f"{e['where']}: __name__=~{rx!r} matches no name in any scrape")
                continue
            if names is None:
                problems.append(f"{e['where']}: a selector without a metric name")
                continue
            names_here.update(names)
        for name in sorted(names_here):
            used.setdefault(name, set()).add(e["where"])
            if name in recorded:
                continue
            builds = [b for b, sc in scrapes.items() if name in sc]
            owner = next((b for b, ps in BUILD_PREFIXES.items() if name.startswith(ps)), None)
            if not builds and owner and owner not in scrapes:
                unchecked.add(name)
            elif not builds:
                problems.append(f"{e['where']}: {name} is in no scrape ({', '.join(scrapes)})")
            if e["build"] and e["build"] in scrapes and name not in scrapes[e["build"]]:
                problems.append(f"{e['where']}: labelled build: {e['build']} but {name} is not in the {e['build']} scrape")
            t = twin(name)
            if t and t not in names_here:
                problems.append(f"{e['where']}: reads {name} but not {t}: the other build is not covered")
        missing = sel.used_labels - available_labels(e)
        if missing and not names_here & unchecked:
            problems.append(f"{e['where']}: label(s) {sorted(missing)} exist on none of its series")

    problems += dashboard_problems(args.dashboard)
    ok, out, n = promtool_check(exprs, args.promtool)
    print(f"promtool check rules on the dashboard's {n} expressions: {'SUCCESS' if ok else 'FAILED'}")
    if not ok:
        problems.append(f"dashboard PromQL rejected by promtool:\n{out}")

    builds = list(scrapes)
    print(f"\n{'series':<66} " + " ".join(f"{b:<7}" for b in builds) + " used by")
    for name in sorted(used):
        if name in recorded:
            where = "recording rule"
            cols = " ".join(f"{'(rule)':<7}" for _ in builds)
        else:
            where = f"{len(used[name])} expression(s)"
            cols = " ".join(f"{'yes' if name in scrapes[b] else '-':<7}" for b in builds)
            if name in unchecked:
                where += ", NOT CHECKED (its build was not scraped)"
        print(f"{name:<66} {cols} {where}")
    raw = [n for n in used if n not in recorded]
    print(f"\n{len(raw)} series names from Envoy, {len(used) - len(raw)} recording rules, "
          f"{len(exprs)} expressions ({sum(1 for e in exprs if e['record'] is None and not e.get('promtool'))} alerts, "
          f"{sum(1 for e in exprs if e.get('promtool'))} dashboard queries)")
    for b in ("wasm", "native"):
        if b not in scrapes:
            print(f"SKIPPED: no {b} scrape given: {len(unchecked)} name(s) of the {b} build were not checked")
    if problems:
        print("\nFAIL:")
        for p in problems:
            print(f"  {p}")
        return 1
    partial = f" (partial: {len(unchecked)} name(s) of an unscraped build not checked)" if unchecked else ""
    print(f"PASS: every series the rules and the dashboard use is in a real Envoy scrape{partial}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
