#!/usr/bin/env python3
"""Unit tests of check_series.py and replay_rules.py (python3 -m unittest, from this folder;
scripts/test-observability.sh runs them). Needs PyYAML; the end-to-end cases need promtool
(PROMTOOL, else on PATH) and are skipped without it."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from check_series import Selectors, grafana_to_promql, label_values_selector  # noqa: E402
from replay_rules import render  # noqa: E402

PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool")

WASM_SCRAPE = """# TYPE subset_router_rule_subset counter
subset_router_rule_subset{rule="canary",subset="v1"} 3
subset_router_rule_subset{instance="checkout",rule="canary",subset="v1"} 1
# TYPE envoy_cluster_upstream_rq_xx counter
envoy_cluster_upstream_rq_xx{envoy_response_code_class="2",envoy_cluster_name="v1"} 3
"""
NATIVE_SCRAPE = """envoy_dynamicmodulescustom_subset_router_rule_subset{rule="canary",subset="v1"} 3
envoy_dynamicmodulescustom_subset_router_rule_subset{instance="checkout",rule="canary",subset="v1"} 1
envoy_cluster_upstream_rq_xx{envoy_response_code_class="2",envoy_cluster_name="v1"} 3
"""
GOOD_RULE = ('sum by (job, rule, subset) (rate(subset_router_rule_subset[5m]) '
             'or rate(envoy_dynamicmodulescustom_subset_router_rule_subset[5m]))')


class PromQL(unittest.TestCase):
    def test_selectors_names_and_labels(self):
        s = Selectors('sum by (job, subset) (rate(a_total{rule=~"x|y", subset!="v"}[5m] offset 1h)) '
                      '/ ignoring (subset) group_left sum without (instance) (b) > bool 0.5 '
                      'and on (job) {__name__=~"c|d", le="+Inf"} unless {__name__=~"e.*"} '
                      '* label_replace(f, "dst", "$1", "src", "(.*)") + absent(g) + vector(1) + 1e6')
        names = sorted(n for ns, _, _ in s.selectors for n in ns or [])
        self.assertEqual(names, ["a_total", "b", "c", "d", "f", "g"])
        self.assertEqual([r for _, r, _ in s.selectors if r], [("=~", "e.*")])
        self.assertEqual(s.used_labels, {"job", "subset", "rule", "instance", "le", "src"})
        self.assertEqual(s.made_labels, {"dst"})

    def test_grafana_variables(self):
        self.assertEqual(grafana_to_promql('rate(x{a=~"$job",b=~"${rule}"}[$__rate_interval]) + y[$__range]'),
                         'rate(x{a=~".*",b=~".*"}[5m]) + y[5m]')
        self.assertEqual(label_values_selector('label_values({__name__=~"a|b", job=~"$job"}, rule)'),
                         '{__name__=~"a|b", job=~"$job"}')
        self.assertIsNone(label_values_selector("label_values(job)"))

    def test_render_annotations(self):
        self.assertEqual(render("Rejected {{ $value | humanize }} of {{ $labels.ecds_name }}\n  twice",
                                {"ecds_name": "x"}, 2.0), "Rejected 2 of x twice")


@unittest.skipUnless(PROMTOOL, "promtool not found")
class CheckSeries(unittest.TestCase):
    def run_check(self, rule_expr, dash_expr='sum(rate(subset_router_rule_subset[$__rate_interval]) '
                                             'or rate(envoy_dynamicmodulescustom_subset_router_rule_subset[$__rate_interval]))',
                  native=True, build=None, named=True):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        rule = {"alert": "A", "expr": rule_expr}
        if build:
            rule["labels"] = {"build": build}
        with open(f"{d}/rules.yaml", "w") as f:
            json.dump({"groups": [{"name": "g", "rules": [rule]}]}, f)
        dash = {"title": "t", "uid": "u", "schemaVersion": 39,
                "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"}]},
                "panels": [{"id": 1, "type": "timeseries", "title": "p", "gridPos": {"h": 1, "w": 1, "x": 0, "y": 0},
                            "datasource": {"uid": "${datasource}"},
                            "targets": [{"refId": "A", "expr": dash_expr, "datasource": {"uid": "${datasource}"}}]}]}
        with open(f"{d}/dash.json", "w") as f:
            json.dump(dash, f)
        unnamed = lambda text: "".join(l for l in text.splitlines(True) if 'instance="' not in l)
        with open(f"{d}/wasm.prom", "w") as f:
            f.write(WASM_SCRAPE if named else unnamed(WASM_SCRAPE))
        with open(f"{d}/native.prom", "w") as f:
            f.write(NATIVE_SCRAPE if named else unnamed(NATIVE_SCRAPE))
        cmd = [sys.executable, f"{HERE}/check_series.py", "--rules", f"{d}/rules.yaml", "--dashboard",
               f"{d}/dash.json", "--scrape", f"wasm={d}/wasm.prom", "--promtool", PROMTOOL]
        if native:
            cmd += ["--scrape", f"native={d}/native.prom"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr

    def test_a_good_pack_passes(self):
        rc, out = self.run_check(GOOD_RULE)
        self.assertEqual(rc, 0, out)

    def test_a_name_in_no_scrape_fails(self):
        rc, out = self.run_check("rate(envoy_cluster_upstream_rq_xxx[5m])")
        self.assertEqual(rc, 1)
        self.assertIn("envoy_cluster_upstream_rq_xxx is in no scrape", out)

    def test_one_build_only_fails(self):
        rc, out = self.run_check("rate(subset_router_rule_subset[5m])")
        self.assertIn("the other build is not covered", out)
        self.assertEqual(rc, 1)

    def test_a_label_typo_fails(self):
        rc, out = self.run_check('rate(envoy_cluster_upstream_rq_xx{envoy_response_class="5"}[5m])')
        self.assertIn("['envoy_response_class'] exist on none of its series", out)
        rc2, out2 = self.run_check('sum by (envoy_cluster) (rate(envoy_cluster_upstream_rq_xx[5m]))')
        self.assertIn("['envoy_cluster'] exist on none", out2)
        self.assertEqual((rc, rc2), (1, 1))

    def test_a_named_configurations_instance_is_stored_as_exported_instance(self):
        by = ('sum by (job, exported_instance, rule, subset) (rate(subset_router_rule_subset[5m]) '
              'or rate(envoy_dynamicmodulescustom_subset_router_rule_subset[5m]))')
        rc, out = self.run_check(by)
        self.assertEqual(rc, 0, out)
        # Without a named configuration in the scrapes, exported_instance exists nowhere.
        rc, out = self.run_check(by, named=False)
        self.assertEqual(rc, 1)
        self.assertIn("['exported_instance'] exist on none", out)

    def test_a_build_label_needs_that_builds_name(self):
        rc, out = self.run_check("rate(envoy_cluster_upstream_rq_xx[5m]) + rate(envoy_dynamicmodulescustom_x[5m])",
                                 build="wasm")
        self.assertEqual(rc, 1)
        self.assertIn("not in the wasm scrape", out)

    def test_invalid_dashboard_promql_fails(self):
        rc, out = self.run_check(GOOD_RULE, dash_expr="sum(rate(subset_router_rule_subset[5m])")
        self.assertEqual(rc, 1)
        self.assertIn("rejected by promtool", out)

    def test_without_a_native_scrape_its_names_are_not_checked(self):
        rc, out = self.run_check(GOOD_RULE, native=False)
        self.assertEqual(rc, 0, out)
        self.assertIn("NOT CHECKED", out)
        self.assertIn("SKIPPED: no native scrape", out)


if __name__ == "__main__":
    unittest.main()
