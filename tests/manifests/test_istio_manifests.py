#!/usr/bin/env python3
"""Offline checks of examples/istio/*.yaml against Istio's own CRD schemas (no cluster needed).

    python -m unittest tests/manifests/test_istio_manifests.py    (needs jsonschema, pyyaml)
    scripts/test-examples.sh istio                                 (sets up a venv for it)

1. Every manifest validates against the `openAPIV3Schema` of its CRD and version, taken from
   $SUBSET_ROUTER_SHARED (the shared/ directory or the CRD file itself), else
   <repo>/../shared/schemas/istio-crds.yaml, else the copy committed here
   (tests/manifests/istio-crds.yaml, kept identical to the shared file by a test).
   The structural schema is turned into a JSON Schema the way the API server reads it:
     * `nullable: true` also admits null;
     * objects with `properties` reject unknown fields (kubectl's default strict field
       validation; the API server would otherwise prune them silently), unless
       `x-kubernetes-preserve-unknown-fields: true`;
     * `x-kubernetes-int-or-string` admits an integer or a string;
     * `x-kubernetes-list-type: map` requires the `x-kubernetes-list-map-keys` to be unique,
       `set` requires unique items;
     * `x-kubernetes-validations` (CEL): the rules that apply to our manifests are evaluated
       by hand-written equivalents (listed in CEL_EQUIVALENTS, keyed by the exact rule text);
       any other rule met on a field that is present fails the test, so a CRD update that adds
       a rule cannot be silently ignored.
   apiVersion must be <group>/<a served version>, kind the CRD's kind, metadata a valid name
   (and namespace).
2. The WasmPlugin: `url` is oci://, `failStrategy` is explicit, `phase` and `priority` are
   set, `pluginConfig` passes the filter's own validator (`subset-router validate`) and the
   committed JSON Schema, and it uses `subsetHeader` with `clusterHeader: null`.
3. Every subset the VirtualService routes to is defined in the DestinationRule (same host).
4. Every subset the pluginConfig can choose is routed by the VirtualService: a route whose
   match is `<subsetHeader>: {exact: <subset>}` and whose destination is that subset.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ISTIO = os.path.join(ROOT, "examples", "istio")
COMMITTED_CRDS = os.path.join(HERE, "istio-crds.yaml")
CRD_NAME = "istio-crds.yaml"


def shared_crds():
    """The shared CRD file if one is reachable: $SUBSET_ROUTER_SHARED, then ../shared."""
    env = os.environ.get("SUBSET_ROUTER_SHARED", "").strip()
    candidates = []
    if env:
        candidates += [env, os.path.join(env, "schemas", CRD_NAME), os.path.join(env, CRD_NAME)]
    candidates.append(os.path.join(os.path.dirname(ROOT), "shared", "schemas", CRD_NAME))
    for c in candidates:
        if os.path.isfile(c):
            return os.path.abspath(c)
    return None


def crd_file():
    return shared_crds() or COMMITTED_CRDS


def cli():
    path = os.environ.get("SUBSET_ROUTER_CLI") or os.path.join(ROOT, "target", "release", "subset-router")
    if not os.path.isfile(path):
        raise AssertionError(f"validator CLI {path} not built: "
                             "cargo build --release -p subset-router-cli --bin subset-router")
    return path


# ---- CEL rules met on our manifests, as Python ------------------------------------------------

def _url_scheme_ok(url):
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return (m.group(1).lower() if m else "") in ("", "http", "https", "oci", "file")


CEL_EQUIVALENTS = {
    # WasmPlugin.spec
    '(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1':
        lambda v: sum(k in v for k in ("selector", "targetRef", "targetRefs")) <= 1,
    # WasmPlugin.spec.url
    'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])':
        lambda v: _url_scheme_ok(v),
    # WorkloadSelector.matchLabels
    'self.all(key, !key.contains("*"))': lambda v: all("*" not in k for k in v),
    'self.all(key, key.size() != 0)': lambda v: all(len(k) != 0 for k in v),
    '!self.contains("*")': lambda v: "*" not in v,
}


def norm_rule(rule):
    return " ".join(rule.split())


CEL = {norm_rule(k): f for k, f in CEL_EQUIVALENTS.items()}


# ---- structural schema -> JSON Schema --------------------------------------------------------

def convert(s):
    if not isinstance(s, dict):
        return s
    out = {}
    for k, v in s.items():
        if k == "properties":
            out[k] = {n: convert(p) for n, p in v.items()}
        elif k in ("items", "not"):
            out[k] = convert(v)
        elif k == "additionalProperties":
            out[k] = convert(v) if isinstance(v, dict) else v
        elif k in ("anyOf", "oneOf", "allOf"):
            out[k] = [convert(x) for x in v]
        elif k in ("nullable", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
                   "x-kubernetes-embedded-resource"):
            continue
        else:
            out[k] = v  # validation keywords, description, format and the remaining x-kubernetes-*
    if s.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = list(out["enum"]) + [None]
    if s.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in s and "additionalProperties" not in s and not s.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _list_type(validator, list_type, instance, schema):
    if not isinstance(instance, list):
        return
    if list_type == "set":
        seen = []
        for item in instance:
            if item in seen:
                yield jsonschema.ValidationError(f"duplicate item {item!r} in a list-type set")
            seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen = set()
        for item in instance:
            k = tuple(json.dumps(item.get(key), sort_keys=True) if isinstance(item, dict) else None for key in keys)
            if k in seen:
                yield jsonschema.ValidationError(f"duplicate entry for list-map key(s) {keys}: {k}")
            seen.add(k)


class CelRecorder:
    def __init__(self):
        self.evaluated = []
        self.unknown = []

    def keyword(self, validator, rules, instance, schema):
        for r in rules:
            rule = norm_rule(r["rule"])
            fn = CEL.get(rule)
            if fn is None:
                self.unknown.append(rule)
                yield jsonschema.ValidationError(
                    f"CEL rule not evaluated by this test (add an equivalent to CEL_EQUIVALENTS): {rule}")
                continue
            self.evaluated.append(rule)
            if not fn(instance):
                yield jsonschema.ValidationError(r.get("message") or f"CEL rule failed: {rule}")


def make_validator(schema, cel):
    base = jsonschema.validators.validator_for({"$schema": "http://json-schema.org/draft-07/schema#"})
    cls = jsonschema.validators.extend(base, {
        "x-kubernetes-list-type": _list_type,
        "x-kubernetes-validations": cel.keyword,
    })
    return cls(schema)


DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def load_crds(path):
    by_kind = {}
    with open(path, encoding="utf-8") as f:
        for d in yaml.safe_load_all(f):
            if d and d.get("kind") == "CustomResourceDefinition":
                by_kind[d["spec"]["names"]["kind"]] = d
    return by_kind


def validate_manifest(doc, crds, cel):
    """Errors of one manifest against its CRD (empty list: valid)."""
    errors = []
    kind = doc.get("kind")
    crd = crds.get(kind)
    if crd is None:
        return [f"kind {kind!r}: no CRD for it in {crd_file()}"]
    group = crd["spec"]["group"]
    versions = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    api = doc.get("apiVersion", "")
    g, _, ver = api.partition("/")
    if g != group or ver not in versions:
        return [f"apiVersion {api!r}: {kind} is served as {', '.join(group + '/' + v for v in versions)}"]
    meta = doc.get("metadata") or {}
    name = meta.get("name", "")
    if not (isinstance(name, str) and len(name) <= 253 and DNS1123_SUBDOMAIN.match(name)):
        errors.append(f"metadata.name {name!r}: not a DNS-1123 subdomain")
    ns = meta.get("namespace")
    if ns is not None and not (isinstance(ns, str) and len(ns) <= 63 and DNS1123_LABEL.match(ns)):
        errors.append(f"metadata.namespace {ns!r}: not a DNS-1123 label")
    for extra in set(doc) - {"apiVersion", "kind", "metadata", "spec"}:
        errors.append(f"{extra}: unexpected top-level field in a manifest")
    schema = convert(versions[ver]["schema"]["openAPIV3Schema"])
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    for e in sorted(make_validator(schema, cel).iter_errors(body), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in e.absolute_path) or "(root)"
        errors.append(f"{path}: {e.message}")
    return errors


def load_manifests():
    out = {}
    for fn in sorted(os.listdir(ISTIO)):
        if fn.endswith((".yaml", ".yml")):
            with open(os.path.join(ISTIO, fn), encoding="utf-8") as f:
                for d in yaml.safe_load_all(f):
                    if d:
                        out.setdefault(d["kind"], []).append((fn, d))
    return out


def plugin_subsets(config):
    subsets = []

    def route(r):
        for n in ([r["subset"]] if "subset" in r else []) + [e["subset"] for e in r.get("split") or []]:
            if n not in subsets:
                subsets.append(n)
    for rule in config.get("rules") or []:
        route(rule["route"])
    route(config["default"])
    return subsets


def short_host(h):
    return h.split(".")[0]


class IstioManifests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.crd_path = crd_file()
        print(f"\n[istio] CRDs: {cls.crd_path}", file=sys.stderr)
        cls.crds = load_crds(cls.crd_path)
        cls.manifests = load_manifests()

    def one(self, kind):
        docs = self.manifests.get(kind) or []
        self.assertEqual(len(docs), 1, f"expected exactly one {kind} in examples/istio, found {len(docs)}")
        return docs[0][1]

    def test_00_committed_crd_copy_matches_shared(self):
        shared = shared_crds()
        if shared is None:
            self.skipTest("no shared/ CRD file next to the repository: using the committed copy")
        with open(shared, "rb") as a, open(COMMITTED_CRDS, "rb") as b:
            self.assertEqual(a.read(), b.read(),
                             f"{COMMITTED_CRDS} differs from {shared}: cp {shared} {COMMITTED_CRDS}")

    def test_01_crds_present(self):
        for kind in ("WasmPlugin", "VirtualService", "DestinationRule"):
            self.assertIn(kind, self.crds)

    def test_02_manifests_validate_against_crds(self):
        kinds = set()
        cel = CelRecorder()
        for kind, docs in self.manifests.items():
            for fn, doc in docs:
                kinds.add(kind)
                with self.subTest(manifest=fn, kind=kind):
                    errors = validate_manifest(doc, self.crds, cel)
                    self.assertEqual(errors, [], f"{fn} ({kind}) does not match its CRD:\n  " + "\n  ".join(errors))
        self.assertEqual(kinds, {"WasmPlugin", "VirtualService", "DestinationRule"})
        print(f"[istio] CEL rules evaluated by hand-written equivalents: {len(cel.evaluated)} "
              f"({len(set(cel.evaluated))} distinct); not evaluable: {len(cel.unknown)}", file=sys.stderr)

    def test_03_schema_check_catches_mistakes(self):
        """The converted schemas are not vacuous: typical mistakes are rejected."""
        wp = self.one("WasmPlugin")
        vs = self.one("VirtualService")
        dr = self.one("DestinationRule")

        def bad(doc, mutate):
            d = json.loads(json.dumps(doc))
            mutate(d)
            return validate_manifest(d, self.crds, CelRecorder())
        cases = {
            "failStrategy typo": bad(wp, lambda d: d["spec"].__setitem__("failStrategy", "FAIL_CLOSED")),
            "unknown phase": bad(wp, lambda d: d["spec"].__setitem__("phase", "ROUTER")),
            "unknown spec field": bad(wp, lambda d: d["spec"].__setitem__("pluginConf", {})),
            "url scheme": bad(wp, lambda d: d["spec"].__setitem__("url", "ftp://x/y")),
            "selector and targetRefs": bad(wp, lambda d: d["spec"].__setitem__(
                "targetRefs", [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}])),
            "duplicate port": bad(wp, lambda d: d["spec"]["match"][0]["ports"].append({"number": 9080})),
            "priority string": bad(wp, lambda d: d["spec"].__setitem__("priority", "high")),
            "VS header match typo": bad(vs, lambda d: d["spec"]["http"][0]["match"][0]["headers"]["x-subset"]
                                        .__setitem__("exactly", "v1")),
            "VS wrong version": bad(vs, lambda d: d.__setitem__("apiVersion", "networking.istio.io/v2")),
            "DR subset without name": bad(dr, lambda d: d["spec"]["subsets"][0].pop("name")),
        }
        for what, errors in cases.items():
            if os.environ.get("VERBOSE"):
                print(f"[istio] {what}: {errors}", file=sys.stderr)
            with self.subTest(mistake=what):
                self.assertTrue(errors, f"the CRD check accepted a manifest with: {what}")

    def test_04_wasmplugin(self):
        spec = self.one("WasmPlugin")["spec"]
        self.assertTrue(spec["url"].startswith("oci://"), "url must reference the OCI image (oci://)")
        self.assertTrue(spec["url"].endswith("/subset-router:0.1.0"), spec["url"])
        self.assertEqual(spec.get("failStrategy"), "FAIL_CLOSE", "failStrategy must be explicit: FAIL_CLOSE")
        self.assertIn(spec.get("phase"), ("AUTHN", "AUTHZ", "STATS"), "phase must be chosen explicitly")
        self.assertIsInstance(spec.get("priority"), int, "priority must be set")
        self.assertTrue((spec.get("selector") or {}).get("matchLabels"), "selector.matchLabels must be set")
        self.assertEqual(spec.get("type", "HTTP"), "HTTP")
        pc = spec["pluginConfig"]
        self.assertIn("clusterHeader", pc, "clusterHeader must be set explicitly (null) for Istio")
        self.assertIsNone(pc["clusterHeader"])
        self.assertTrue(pc.get("subsetHeader"))

    def test_05_pluginconfig_passes_the_filter_validator(self):
        pc = self.one("WasmPlugin")["spec"]["pluginConfig"]
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(pc, f)
        try:
            r = subprocess.run([cli(), "validate", f.name], capture_output=True, text=True)
        finally:
            os.unlink(f.name)
        self.assertEqual(r.returncode, 0, f"subset-router validate rejected the pluginConfig:\n{r.stderr}")

    def test_06_pluginconfig_matches_committed_json_schema(self):
        path = os.path.join(ROOT, "examples", "config.schema.json")
        if not os.path.isfile(path):
            self.skipTest("examples/config.schema.json missing")
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
        cls = jsonschema.validators.validator_for(schema)
        errors = [e.message for e in cls(schema).iter_errors(self.one("WasmPlugin")["spec"]["pluginConfig"])]
        self.assertEqual(errors, [])

    def test_07_virtualservice_subsets_defined_in_destinationrule(self):
        vs = self.one("VirtualService")["spec"]
        dr = self.one("DestinationRule")["spec"]
        defined = {s["name"] for s in dr.get("subsets") or []}
        used = set()
        for http in vs.get("http") or []:
            for r in http.get("route") or []:
                d = r["destination"]
                if "subset" in d:
                    self.assertEqual(short_host(d["host"]), short_host(dr["host"]),
                                     f"route {http.get('name')} goes to host {d['host']}, DestinationRule is for {dr['host']}")
                    used.add(d["subset"])
        self.assertTrue(used, "the VirtualService routes to no subset")
        self.assertEqual(used - defined, set(),
                         f"subsets routed by the VirtualService but not defined in the DestinationRule")

    def test_08_every_plugin_subset_is_routed_by_header(self):
        pc = self.one("WasmPlugin")["spec"]["pluginConfig"]
        header = pc["subsetHeader"]
        vs = self.one("VirtualService")["spec"]
        routed = {}
        for http in vs.get("http") or []:
            dests = [r["destination"].get("subset") for r in http.get("route") or []]
            for m in http.get("match") or []:
                exact = ((m.get("headers") or {}).get(header) or {}).get("exact")
                if exact is not None:
                    routed[exact] = dests
        for s in plugin_subsets(pc):
            with self.subTest(subset=s):
                self.assertIn(s, routed, f"the pluginConfig can choose {s}, but no VirtualService route "
                                         f"matches `{header}: {{exact: {s}}}`")
                self.assertEqual(routed[s], [s], f"`{header}: {s}` must route to subset {s}")


if __name__ == "__main__":
    unittest.main(verbosity=2)
