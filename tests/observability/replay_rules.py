#!/usr/bin/env python3
"""Replay real Envoy scrapes through the rules: a `promtool test rules` file from two scrapes.

    replay_rules.py --rules RULES.yaml --scrape BUILD=BEFORE.prom,AFTER.prom [...] -o OUT.yaml
    promtool test rules OUT.yaml

`observability-scrape` (tests/src/bin) saves, for one build, /stats/prometheus right after
Envoy started (BEFORE) and after its traffic, forged headers and rejected configuration
(AFTER). This writes a promtool unit-test file whose input series are every sample of those
scrapes that RULES reads, as one proxy per build (`job="replay"`, `instance="<build>"`): the
BEFORE value at minute 0, the AFTER value from minute 1 on. At minute 5 a 5-minute rate spans
exactly the traffic, so `round(<rate5m rule> * 300)` is the number of requests, and it asserts:

* decisions per rule and subset, summed over the builds (`subset_router:decisions:rate5m`);
* the ramp share, the proxies with a guard open, the forged headers removed;
* requests per subset cluster joined from Envoy's cluster stats, and their error ratio
  (0 when Envoy never created a 5xx counter);
* the alerts the traffic triggers (a configuration rejected through ECDS, and by the dynamic
  module), with their rendered annotations, and every other alert silent when its input did
  not move.

So the rules are checked against the names, labels and values real Envoys print, not only
against hand-written series (tests.yaml). Needs PyYAML.
"""
import argparse
import os
import re
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_series import LABEL, SAMPLE, Selectors, rule_expressions, stored  # noqa: E402

W = "subset_router_"
N = "envoy_dynamicmodulescustom_subset_router_"
JOB = "replay"


def read_samples(path):
    """{(name, frozenset(labels)): value}"""
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            m = SAMPLE.match(line)
            # As Prometheus stores them: a named configuration's `instance` is exported_instance.
            labels = tuple(sorted((stored(k), v) for k, v in LABEL.findall(m.group(3) or "")))
            out[(m.group(1), labels)] = float(m.group(4))
    return out


def fmt_labels(labels):
    """A label set as promtool prints it: an empty value is no label."""
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels) if v != "") + "}"


def num(v):
    return int(v) if float(v).is_integer() else v


class Replay:
    def __init__(self, scrapes):
        self.scrapes = scrapes  # build -> (before, after)

    def deltas(self, family, key_labels, where=lambda labels: True):
        """{key label values: sum over builds of after - before} of both builds' names."""
        out = {}
        for build, (before, after) in self.scrapes.items():
            for (name, labels), v in after.items():
                if name not in (W + family, N + family) and name != family:
                    continue
                d = dict(labels)
                if not where(d):
                    continue
                key = tuple(d.get(k, "") for k in key_labels)
                out[key] = out.get(key, 0) + v - before.get((name, labels), 0)
        return out

    def last(self, family, key_labels, agg):
        out = {}
        for build, (_, after) in self.scrapes.items():
            for (name, labels), v in after.items():
                if name in (W + family, N + family):
                    d = dict(labels)
                    key = tuple(d.get(k, "") for k in key_labels)
                    out.setdefault(key, []).append(v)
        return {k: agg(v) for k, v in out.items()}


def render(template, labels, value):
    """The two template forms rules.yaml uses in the alerts this replay expects to fire."""
    def sub(m):
        expr = m.group(1).strip()
        if expr.startswith("$labels."):
            return labels.get(expr[len("$labels."):], "")
        if expr in ("$value | humanize", "$value"):
            if not float(value).is_integer():
                raise SystemExit(f"cannot render {{{{ {expr} }}}} of {value} exactly")
            return str(int(value))
        raise SystemExit(f"cannot render {{{{ {expr} }}}}")
    text = re.sub(r"\{\{(.*?)\}\}", sub, template)
    return " ".join(text.split())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rules", required=True)
    ap.add_argument("--scrape", action="append", required=True, metavar="BUILD=BEFORE,AFTER")
    ap.add_argument("-o", "--output", required=True)
    args = ap.parse_args()

    scrapes = {}
    for s in args.scrape:
        build, _, files = s.partition("=")
        before, _, after = files.partition(",")
        if not build or not before or not after:
            ap.error(f"--scrape {s!r}: expected BUILD=BEFORE.prom,AFTER.prom")
        scrapes[build] = (read_samples(before), read_samples(after))
    r = Replay(scrapes)

    # Input: every sample of a name the rules read.
    used = set()
    for e in rule_expressions(args.rules):
        for names, _, _ in Selectors(e["expr"]).selectors:
            used.update(names or [])
    series = []
    for build, (before, after) in scrapes.items():
        for (name, labels), v in sorted(after.items()):
            if name not in used:
                continue
            b = before.get((name, labels))
            full = tuple(sorted(labels + (("job", JOB), ("instance", build))))
            series.append({"series": name + fmt_labels(full),
                           "values": f"{'_' if b is None else num(b)} {num(v)}x9"})

    t = "5m"
    tests = []

    def expr_test(expr, samples):
        tests.append({"expr": expr, "eval_time": t,
                      "exp_samples": [{"labels": lab, "value": num(v)} for lab, v in samples]})

    # The rules on the filter's own families keep each configuration apart (exported_instance:
    # a named configuration's tag; none for an unnamed one).
    EI = "exported_instance"
    decisions = r.deltas("rule_subset", [EI, "rule", "subset"])
    expr_test("round(subset_router:decisions:rate5m * 300)",
              [(fmt_labels((("job", JOB), (EI, k[0]), ("rule", k[1]), ("subset", k[2]))), v)
               for k, v in sorted(decisions.items())])
    ramp = r.last("rule_ramp_ppm", [EI, "rule"], max)
    if ramp:
        expr_test("subset_router:ramp:share",
                  [("subset_router:ramp:share" + fmt_labels((("job", JOB), (EI, k[0]), ("rule", k[1]))), v / 1e6)
                   for k, v in sorted(ramp.items())])
    guard_open = r.last("guard_open", [EI, "subset"], sum)
    if guard_open:
        expr_test("subset_router:guard_open:proxies",
                  [("subset_router:guard_open:proxies" + fmt_labels((("job", JOB), (EI, k[0]), ("subset", k[1]))), v)
                   for k, v in sorted(guard_open.items())])
    forged_by = r.deltas("spoofed_header_removed", [EI])
    forged = sum(forged_by.values())
    expr_test("round(subset_router:spoofed_header_removed:rate5m * 300)",
              [(fmt_labels((("job", JOB), (EI, k[0]))), v) for k, v in sorted(forged_by.items())])
    # What the guards observed and the fleet rounds that failed, per configuration and subset
    # (the AFTER value from minute 1: a 1-minute rate at minute 1 spans the whole change).
    for family, record in (("guard_requests", "guard_requests:rate1m"),
                           ("guard_errors", "guard_errors:rate1m"),
                           ("guard_slow", "guard_slow:rate1m"),
                           ("guard_baseline_requests", "guard_baseline_requests:rate1m"),
                           ("guard_baseline_errors", "guard_baseline_errors:rate1m")):
        moved = r.deltas(family, [EI, "subset"])
        if moved:
            tests.append({"expr": f"round(subset_router:{record} * 60)", "eval_time": "1m",
                          "exp_samples": [{"labels": fmt_labels((("job", JOB), (EI, k[0]), ("subset", k[1]))),
                                           "value": num(v)} for k, v in sorted(moved.items())]})
    fleet_failed = r.deltas("guard_fleet_query_failed", [EI, "subset"])
    if fleet_failed:
        expr_test("round(subset_router:fleet_query_failed:rate5m * 300)",
                  [(fmt_labels((("job", JOB), (EI, k[0]), ("subset", k[1]))), v)
                   for k, v in sorted(fleet_failed.items())])

    subsets = {k[2] for k in decisions}
    rq = {k: v for k, v in r.deltas("envoy_cluster_upstream_rq_total", ["envoy_cluster_name"]).items() if k[0] in subsets}
    xx5 = r.deltas("envoy_cluster_upstream_rq_xx", ["envoy_cluster_name"],
                   lambda d: d.get("envoy_response_code_class") == "5")
    cl = lambda k: fmt_labels((("job", JOB), ("envoy_cluster_name", k[0]), ("subset", k[0])))
    expr_test("round(subset_router:upstream_rq:rate5m * 300)", [(cl(k), v) for k, v in sorted(rq.items())])
    expr_test("subset_router:upstream_error_ratio:ratio5m",
              [("subset_router:upstream_error_ratio:ratio5m" + cl(k), xx5.get(k, 0) / v)
               for k, v in sorted(rq.items()) if v > 0])

    # Alerts: those the traffic triggers, rendered; the others silent when their input is flat.
    with open(args.rules, encoding="utf-8") as f:
        alerts = {rule["alert"]: rule for g in yaml.safe_load(f)["groups"] for rule in g["rules"] if "alert" in rule}
    alert_tests = []

    def fired(name, key_labels, values):
        rule = alerts[name]
        exp = []
        for key, v in sorted(values.items()):
            if v <= 0:
                continue
            labels = dict(rule.get("labels") or {})
            labels.update({"job": JOB, **dict(zip(key_labels, key))})
            exp.append({"exp_labels": labels,
                        "exp_annotations": {k: render(a, labels, v) for k, a in rule["annotations"].items()}})
        alert_tests.append({"eval_time": t, "alertname": name, "exp_alerts": exp})
        return len(exp)

    rejected = r.deltas("envoy_extension_config_discovery_http_filter_config_fail", ["ecds_name"])
    n_rejected = fired("SubsetRouterConfigRejected", ["ecds_name"], rejected)
    module = r.deltas("envoy_dynamic_modules_config_init_error", ["config_name"])
    n_module = fired("SubsetRouterDynamicModuleConfigError", ["config_name"], module)
    quiet = {
        "SubsetRouterGuardTripped": sum(r.deltas("guard_tripped", []).values()),
        # failing fleet rounds fire only after 10 minutes of them
        "SubsetRouterFleetQueriesFailing": 0,
        "SubsetRouterGuardUndivertable": sum(r.deltas("guard_undivertable", []).values()),
        "SubsetRouterGuardOpen": sum(guard_open.values()),
        "SubsetRouterHostCallFailed": sum(r.deltas("host_call_failed", []).values()),
        "SubsetRouterWasmModuleFetchFailed": sum(r.deltas("envoy_wasm_remote_load_fetch_failures", []).values()),
        "SubsetRouterCanaryErrorRatioHigh": sum(xx5.values()),
        # the threshold is 1/s over 5 minutes
        "SubsetRouterForgedHeadersSpiking": 0 if forged / 300 <= 1 else forged,
    }
    for name, moved in quiet.items():
        if moved == 0:
            alert_tests.append({"eval_time": t, "alertname": name, "exp_alerts": []})

    # promtool evaluates rule groups in map order unless told: the alerts read the records,
    # so without this order an alert can see a record one evaluation late (a flaky value).
    with open(args.rules, encoding="utf-8") as f:
        group_order = [g["name"] for g in yaml.safe_load(f)["groups"]]
    doc = {"rule_files": [os.path.abspath(args.rules)], "evaluation_interval": "1m",
           "group_eval_order": group_order,
           "tests": [{"name": f"replay of real scrapes ({', '.join(scrapes)})", "interval": "1m",
                      "input_series": series, "promql_expr_test": tests, "alert_rule_test": alert_tests}]}
    with open(args.output, "w", encoding="utf-8") as f:
        f.write("# Generated by tests/observability/replay_rules.py from real Envoy scrapes: do not edit.\n")
        yaml.safe_dump(doc, f, sort_keys=False, width=1000)
    print(f"replay: {len(series)} real series ({', '.join(scrapes)}), "
          f"decisions {', '.join(f'{k[0] or chr(8709)}/{k[1]}/{k[2]}={num(v)}' for k, v in sorted(decisions.items()))}; "
          f"fleet rounds failed {', '.join(f'{k[0]}/{k[1]}={num(v)}' for k, v in sorted(fleet_failed.items()))}; "
          f"forged {num(forged)}; subset clusters {', '.join(f'{k[0]}={num(v)}' for k, v in sorted(rq.items()))}; "
          f"alerts expected to fire: ConfigRejected x{n_rejected}, DynamicModuleConfigError x{n_module}; "
          f"silent: {', '.join(n for n, m in quiet.items() if m == 0)} -> {args.output}")
    if not decisions or not n_rejected:
        print("replay: FAIL: the scrapes show no decisions or no rejected configuration")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
