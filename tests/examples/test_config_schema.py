#!/usr/bin/env python3
"""The committed JSON Schema (examples/config.schema.json) against the filter's own validator.

    python -m unittest tests/examples/test_config_schema.py     (needs jsonschema, pyyaml)

* The schema is a valid JSON Schema (its own `$schema` dialect) and is exactly what
  `subset-router schema` prints (generated from the Rust types, never edited by hand).
* It accepts every example plugin config (examples/**/config.json, config-route.json) and the Istio
  WasmPlugin's pluginConfig; the validator accepts them too.
* filter/core/tests/data/invalid-configs.json: every entry is rejected by the validator with
  the recorded `path: reason`; entries marked "rejects" are rejected by the schema as well;
  "semantic" ones (only the filter can tell: duplicate subset, bad regex, bad CIDR, ...) are
  accepted by the schema; "not-json" ones are not JSON at all.
"""
import glob
import json
import os
import subprocess
import tempfile
import unittest

import jsonschema
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCHEMA = os.path.join(ROOT, "examples", "config.schema.json")
INVALID = os.path.join(ROOT, "filter", "core", "tests", "data", "invalid-configs.json")


def cli():
    path = os.environ.get("SUBSET_ROUTER_CLI") or os.path.join(ROOT, "target", "release", "subset-router")
    if not os.path.isfile(path):
        raise AssertionError(f"validator CLI {path} not built: "
                             "cargo build --release -p subset-router-cli --bin subset-router")
    return path


def validate_text(text):
    """(exit code, stderr) of `subset-router validate` on a config given as text."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        f.write(text)
    try:
        r = subprocess.run([cli(), "validate", f.name], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    return r.returncode, r.stderr.replace(f.name + ": ", "")


def example_configs():
    out = {}
    paths = [p for name in ("config.json", "config-route.json")
             for p in glob.glob(os.path.join(ROOT, "examples", "**", name), recursive=True)]
    for p in sorted(paths):
        with open(p, encoding="utf-8") as f:
            out[os.path.relpath(p, ROOT)] = f.read()
    wp = os.path.join(ROOT, "examples", "istio", "wasmplugin.yaml")
    if os.path.isfile(wp):
        with open(wp, encoding="utf-8") as f:
            for d in yaml.safe_load_all(f):
                if d and d.get("kind") == "WasmPlugin":
                    out["examples/istio/wasmplugin.yaml#spec.pluginConfig"] = json.dumps(d["spec"]["pluginConfig"])
    return out


class ConfigSchema(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(SCHEMA, encoding="utf-8") as f:
            cls.schema = json.load(f)
        cls.cls = jsonschema.validators.validator_for(cls.schema)
        cls.validator = cls.cls(cls.schema)

    def schema_errors(self, doc):
        return sorted(f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                      for e in self.validator.iter_errors(doc))

    def test_00_schema_is_valid(self):
        self.cls.check_schema(self.schema)
        self.assertIn("2020-12", self.schema.get("$schema", ""), "expected a draft 2020-12 schema")

    def test_01_schema_is_generated(self):
        r = subprocess.run([cli(), "schema"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), self.schema,
                         "examples/config.schema.json is stale: subset-router schema > examples/config.schema.json")

    def test_02_examples_accepted(self):
        configs = example_configs()
        self.assertGreaterEqual(len(configs), 10, sorted(configs))
        for name, text in configs.items():
            with self.subTest(config=name):
                self.assertEqual(self.schema_errors(json.loads(text)), [], f"the schema rejects {name}")
                rc, err = validate_text(text)
                self.assertEqual(rc, 0, f"the validator rejects {name}: {err}")

    def test_03_invalid_configs(self):
        with open(INVALID, encoding="utf-8") as f:
            entries = json.load(f)
        self.assertGreater(len(entries), 0)
        kinds = {}
        for i, e in enumerate(entries):
            kinds[e["schema"]] = kinds.get(e["schema"], 0) + 1
            with self.subTest(entry=i, error=e["error"]):
                rc, err = validate_text(e["config"])
                self.assertEqual(rc, 1, f"the validator accepted {e['config']!r}")
                self.assertIn(e["error"], err, f"validator output for {e['config']!r}")
                if e["schema"] == "not-json":
                    with self.assertRaises(ValueError):
                        json.loads(e["config"])
                    continue
                doc = json.loads(e["config"])
                errors = self.schema_errors(doc)
                if e["schema"] == "rejects":
                    self.assertTrue(errors, f"the schema accepts {e['config']} (validator: {e['error']})")
                elif e["schema"] == "semantic":
                    self.assertEqual(errors, [], f"the schema rejects a config only the filter should: {e['config']}")
                else:
                    self.fail(f"unknown schema expectation {e['schema']!r}")
        print(f"\n[schema] invalid-configs.json: {kinds}")
        self.assertGreater(kinds.get("rejects", 0), 0)
        self.assertGreater(kinds.get("semantic", 0), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
