#!/usr/bin/env python3
"""Offline checks of examples/istio/**.yaml against Istio's and Gateway API's own CRD schemas (no
cluster needed).

    python -m unittest tests/manifests/test_istio_manifests.py    (needs jsonschema, pyyaml)
    scripts/test-examples.sh istio                                 (sets up a venv for it)

Three ways to run the filter in Istio, each a folder of manifests applied together:
    sidecar   examples/istio/*.yaml           WasmPlugin `selector` (the callers' sidecars) +
                                              VirtualService + DestinationRule
    gateway   examples/istio/gateway/*.yaml   WasmPlugin `targetRefs` a Gateway API Gateway +
                                              that Gateway + its HTTPRoute
    waypoint  examples/istio/waypoint/*.yaml  WasmPlugin `targetRefs` a Service (kind Service,
                                              group ""), run by the ambient waypoint + the
                                              waypoint Gateway + the Service's HTTPRoute (GAMMA)

1. Every manifest validates against the `openAPIV3Schema` of its CRD and version: WasmPlugin,
   VirtualService and DestinationRule from istio-crds.yaml, Gateway and HTTPRoute (Gateway API
   v1.6.1) from envoy-gateway-crds.yaml. Each file is taken from $SUBSET_ROUTER_SHARED (the shared/
   directory, or the CRD file itself), else <repo>/../shared/schemas/, else the copy committed
   here (kept identical to the shared file by a test). Conversion, defaulting and CEL are
   crd_schema.py's; the CEL equivalents are cel_rules.py's (ISTIO, GATEWAY_API), and a rule
   without one fails.
2. Each WasmPlugin: `url` is oci:// and pinned by `sha256`, `failStrategy` is explicit
   FAIL_CLOSE, `phase` and `priority` are set, it is attached the way its variant needs (selector
   + CLIENT match; targetRefs to the folder's Gateway; targetRefs to a Service, with no CLIENT-only
   match, which a waypoint would never apply), and `pluginConfig` passes the filter's own validator
   (`subset-router validate`) and the committed JSON Schema, with `subsetHeader` and
   `clusterHeader: null`.
3. Every subset the pluginConfig can choose is routed on `<subsetHeader>: <subset>`: by the
   VirtualService to a DestinationRule subset (sidecar), by an HTTPRoute rule to that subset's
   Service for everything the default rule serves (gateway, waypoint).
4. The sha256 pins equal examples/oci-digests.json (oci_digests.py): without that file this fails
   under CI=true and is a loud SKIP locally.
"""
import copy
import json
import os
import sys
import unittest

import jsonschema

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cel_rules  # noqa: E402
import crd_schema  # noqa: E402
import httproutes  # noqa: E402
import oci_digests  # noqa: E402

ROOT = crd_schema.ROOT
ISTIO = os.path.join(ROOT, "examples", "istio")
CRD_NAME = "istio-crds.yaml"
GATEWAY_API_CRD_NAME = "envoy-gateway-crds.yaml"  # also holds Gateway API v1.6.1 Gateway and HTTPRoute
CEL_TABLE = {**cel_rules.ISTIO, **cel_rules.GATEWAY_API}
VARIANTS = {"sidecar": "", "gateway": "gateway", "waypoint": "waypoint", "progressive": "progressive"}
GATEWAY_API_KINDS = ("Gateway", "HTTPRoute")


def short_host(h):
    return h.split(".")[0]


class IstioManifests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.crd_path = crd_schema.crd_file(CRD_NAME)
        cls.gateway_api_crd_path = crd_schema.crd_file(GATEWAY_API_CRD_NAME)
        print(f"\n[istio] CRDs: {cls.crd_path}; Gateway API: {cls.gateway_api_crd_path}", file=sys.stderr)
        istio = crd_schema.load_crds(cls.crd_path)
        gateway_api = crd_schema.load_crds(cls.gateway_api_crd_path)
        cls.crds = {**istio, **{k: gateway_api[k] for k in GATEWAY_API_KINDS}}
        cls.manifests = crd_schema.load_manifests(ISTIO)

    def variant(self, name):
        folder = os.path.join("examples", "istio", VARIANTS[name]).rstrip("/")
        return [(p, d) for p, d in self.manifests if os.path.dirname(p) == folder]

    def one(self, kind, variant="sidecar"):
        docs = [d for _, d in self.variant(variant) if d["kind"] == kind]
        self.assertEqual(len(docs), 1, f"expected exactly one {kind} in the {variant} variant, found {len(docs)}")
        return docs[0]

    def test_00_committed_crd_copies_match_shared(self):
        checked = 0
        for name in (CRD_NAME, GATEWAY_API_CRD_NAME):
            shared = crd_schema.shared_crd_file(name)
            if shared is None:
                continue
            committed = crd_schema.committed_crd_file(name)
            with open(shared, "rb") as a, open(committed, "rb") as b:
                self.assertEqual(a.read(), b.read(), f"{committed} differs from {shared}: cp {shared} {committed}")
            checked += 1
        if not checked:
            self.skipTest("no shared/ CRD files next to the repository: using the committed copies")

    def test_01_crds_present(self):
        for kind in ("WasmPlugin", "VirtualService", "DestinationRule") + GATEWAY_API_KINDS:
            self.assertIn(kind, self.crds)

    def test_02_manifests_validate_against_crds(self):
        kinds = set()
        cel = crd_schema.Cel(CEL_TABLE)
        for path, doc in self.manifests:
            kinds.add(doc["kind"])
            with self.subTest(manifest=path, kind=doc["kind"]):
                errors = crd_schema.validate_manifest(doc, self.crds, cel)
                self.assertEqual(errors, [], f"{path} ({doc['kind']}) does not match its CRD:\n  " + "\n  ".join(errors))
        self.assertEqual(kinds, {"WasmPlugin", "VirtualService", "DestinationRule", "Gateway", "HTTPRoute"})
        for v in VARIANTS:
            self.assertTrue(self.variant(v), f"no manifests for the {v} variant")
        print(f"[istio] {len(self.manifests)} manifests; CEL rules evaluated by hand-written equivalents: "
              f"{len(cel.evaluated)} evaluations of {len(set(cel.evaluated))} distinct rules; without an "
              f"equivalent: {len(cel.unknown)}", file=sys.stderr)

    def test_03_schema_check_catches_mistakes(self):
        """The converted schemas are not vacuous: typical mistakes are rejected."""
        wp = self.one("WasmPlugin")
        gwp = self.one("WasmPlugin", "gateway")
        wwp = self.one("WasmPlugin", "waypoint")
        vs = self.one("VirtualService")
        dr = self.one("DestinationRule")
        route = self.one("HTTPRoute", "waypoint")

        def bad(doc, mutate):
            d = copy.deepcopy(doc)
            mutate(d)
            return crd_schema.validate_manifest(d, self.crds, crd_schema.Cel(CEL_TABLE))
        cases = {
            "failStrategy typo": bad(wp, lambda d: d["spec"].__setitem__("failStrategy", "FAIL_CLOSED")),
            "unknown phase": bad(wp, lambda d: d["spec"].__setitem__("phase", "ROUTER")),
            "unknown spec field": bad(wp, lambda d: d["spec"].__setitem__("pluginConf", {})),
            "url scheme": bad(wp, lambda d: d["spec"].__setitem__("url", "ftp://x/y")),
            "sha256 with prefix": bad(wp, lambda d: d["spec"].__setitem__("sha256", "sha256:" + "0" * 64)),
            "selector and targetRefs": bad(wp, lambda d: d["spec"].__setitem__(
                "targetRefs", [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "gw"}])),
            "targetRefs and selector": bad(gwp, lambda d: d["spec"].__setitem__("selector", {"matchLabels": {"a": "b"}})),
            "targetRef in another namespace": bad(wwp, lambda d: d["spec"]["targetRefs"][0].__setitem__("namespace", "other")),
            "targetRef without kind": bad(gwp, lambda d: d["spec"]["targetRefs"][0].pop("kind")),
            "duplicate port": bad(wp, lambda d: d["spec"]["match"][0]["ports"].append({"number": 9080})),
            "priority string": bad(wp, lambda d: d["spec"].__setitem__("priority", "high")),
            "VS header match typo": bad(vs, lambda d: d["spec"]["http"][0]["match"][0]["headers"]["x-subset"]
                                        .__setitem__("exactly", "v1")),
            "VS wrong version": bad(vs, lambda d: d.__setitem__("apiVersion", "networking.istio.io/v2")),
            "DR subset without name": bad(dr, lambda d: d["spec"]["subsets"][0].pop("name")),
            "HTTPRoute backend without port": bad(route, lambda d: d["spec"]["rules"][0]["backendRefs"][0].pop("port")),
            "HTTPRoute duplicate rule name": bad(route, lambda d: d["spec"]["rules"][1].__setitem__("name", "subset-v1")),
        }
        for what, errors in cases.items():
            if os.environ.get("VERBOSE"):
                print(f"[istio] {what}: {errors}", file=sys.stderr)
            with self.subTest(mistake=what):
                self.assertTrue(errors, f"the CRD check accepted a manifest with: {what}")

    def check_common(self, spec):
        self.assertTrue(spec["url"].startswith("oci://"), "url must reference the OCI image (oci://)")
        self.assertTrue(spec["url"].endswith("/subset-router:0.1.0"), spec["url"])
        self.assertRegex(spec.get("sha256", ""), oci_digests.HEX64, "the image must be pinned by sha256")
        self.assertEqual(spec.get("failStrategy"), "FAIL_CLOSE", "failStrategy must be explicit: FAIL_CLOSE")
        self.assertIn(spec.get("phase"), ("AUTHN", "AUTHZ", "STATS"), "phase must be chosen explicitly")
        self.assertIsInstance(spec.get("priority"), int, "priority must be set")
        self.assertEqual(spec.get("type", "HTTP"), "HTTP")
        pc = spec["pluginConfig"]
        self.assertIn("clusterHeader", pc, "clusterHeader must be set explicitly (null) for Istio")
        self.assertIsNone(pc["clusterHeader"])
        self.assertTrue(pc.get("subsetHeader"))

    def test_04_wasmplugin_sidecar(self):
        spec = self.one("WasmPlugin")["spec"]
        self.check_common(spec)
        self.assertTrue((spec.get("selector") or {}).get("matchLabels"), "selector.matchLabels must be set")
        self.assertEqual([m.get("mode") for m in spec.get("match") or []], ["CLIENT"],
                         "the callers' outbound traffic: match mode CLIENT")

    def test_05_wasmplugin_gateway(self):
        spec = self.one("WasmPlugin", "gateway")["spec"]
        self.check_common(spec)
        self.assertNotIn("selector", spec)
        gw = self.one("Gateway", "gateway")
        self.assertEqual(spec["targetRefs"], [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                               "name": gw["metadata"]["name"]}])
        self.assertEqual(gw["spec"]["gatewayClassName"], "istio")
        self.assertEqual(httproutes.namespace(gw), httproutes.namespace(self.one("WasmPlugin", "gateway")))
        for m in spec.get("match") or []:
            self.assertNotEqual(m.get("mode"), "SERVER", "gateway traffic is CLIENT mode for Istio")
        route = self.one("HTTPRoute", "gateway")
        self.assertIn((httproutes.namespace(gw), gw["metadata"]["name"]), httproutes.attached_gateways(route))

    def test_06_wasmplugin_waypoint(self):
        wp = self.one("WasmPlugin", "waypoint")
        spec = wp["spec"]
        self.check_common(spec)
        self.assertNotIn("selector", spec, "waypoints ignore selector policies")
        refs = spec["targetRefs"]
        self.assertEqual(len(refs), 1)
        self.assertEqual((refs[0].get("group"), refs[0]["kind"]), ("", "Service"), "a Service: group \"\" (core)")
        for m in spec.get("match") or []:
            self.assertNotEqual(m.get("mode"), "CLIENT", "a waypoint's chain is SERVER mode: CLIENT matches nothing")
        waypoint = self.one("Gateway", "waypoint")
        self.assertEqual(waypoint["spec"]["gatewayClassName"], "istio-waypoint")
        self.assertEqual(httproutes.namespace(waypoint), httproutes.namespace(wp))
        route = self.one("HTTPRoute", "waypoint")
        self.assertIn((httproutes.namespace(wp), refs[0]["name"]), httproutes.attached_services(route),
                      "the HTTPRoute must be the targeted Service's (GAMMA parentRef kind Service)")

    def test_07_pluginconfig_passes_the_filter_validator(self):
        for v in VARIANTS:
            with self.subTest(variant=v):
                rc, err = crd_schema.validate_plugin_config(self.one("WasmPlugin", v)["spec"]["pluginConfig"])
                self.assertEqual(rc, 0, f"subset-router validate rejected the {v} pluginConfig:\n{err}")

    def test_08_pluginconfig_matches_committed_json_schema(self):
        path = os.path.join(ROOT, "examples", "config.schema.json")
        if not os.path.isfile(path):
            self.skipTest("examples/config.schema.json missing")
        with open(path, encoding="utf-8") as f:
            schema = json.load(f)
        cls = jsonschema.validators.validator_for(schema)
        for v in VARIANTS:
            with self.subTest(variant=v):
                pc = self.one("WasmPlugin", v)["spec"]["pluginConfig"]
                self.assertEqual([e.message for e in cls(schema).iter_errors(pc)], [])

    def test_09_virtualservice_subsets_defined_in_destinationrule(self):
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
        self.assertEqual(used - defined, set(), "subsets routed by the VirtualService but not defined in the DestinationRule")

    def test_10_every_plugin_subset_is_routed_by_header_sidecar(self):
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
        for s in crd_schema.plugin_subsets(pc):
            with self.subTest(subset=s):
                self.assertIn(s, routed, f"the pluginConfig can choose {s}, but no VirtualService route "
                                         f"matches `{header}: {{exact: {s}}}`")
                self.assertEqual(routed[s], [s], f"`{header}: {s}` must route to subset {s}")

    def test_11_every_plugin_subset_is_routed_by_header_httproute(self):
        for v in ("gateway", "waypoint"):
            with self.subTest(variant=v):
                pc = self.one("WasmPlugin", v)["spec"]["pluginConfig"]
                routes = [(p, d) for p, d in self.variant(v) if d["kind"] == "HTTPRoute"]
                subsets = crd_schema.plugin_subsets(pc)
                problems, services = httproutes.unrouted(routes, pc["subsetHeader"], subsets, pc["default"].get("subset"))
                self.assertEqual(problems, [], "\n".join(problems))
                for s in subsets:
                    self.assertEqual(services[s], f"reviews-{s}", f"`{pc['subsetHeader']}: {s}` routes to {services[s]}")

    def test_12_pinned_digests_equal_the_build(self):
        pins, problems = oci_digests.all_pins([ISTIO])
        self.assertEqual(problems, [], "\n".join(problems))
        self.assertEqual(len(pins), len(VARIANTS), "every WasmPlugin pins its image")
        oci_digests.check_pins(self, [ISTIO], "examples/istio")

    def test_20_progressive_variant_ramps_and_guards_the_canary(self):
        """examples/istio/progressive: the ramp and guard of examples/progressive in the mesh."""
        wp = self.one("WasmPlugin", "progressive")
        config = wp["spec"]["pluginConfig"]
        status, stderr = crd_schema.validate_plugin_config(config)
        self.assertEqual(status, 0, stderr)
        canary = [r for r in config["rules"] if "split" in r["route"]]
        self.assertEqual(len(canary), 1)
        ramp = canary[0]["route"]["ramp"]
        self.assertEqual(ramp["subset"], "v2")
        self.assertEqual([g["subset"] for g in config["guards"]], ["v2"])
        with open(os.path.join(ROOT, "examples", "progressive", "config.json"), encoding="utf-8") as f:
            plain = json.load(f)
        plain_canary = [r for r in plain["rules"] if "split" in r["route"]][0]
        self.assertEqual(ramp, plain_canary["route"]["ramp"], "same ramp as examples/progressive")
        # The mesh adds the fleet guard (the sidecars' totals from the mesh's Prometheus).
        local = [{k: v for k, v in g.items() if k != "fleet"} for g in config["guards"]]
        self.assertEqual(local, plain["guards"], "same guards as examples/progressive")
        self.assertTrue(all(g.get("fleet") for g in config["guards"]), "the mesh variant guards the fleet")
        self.assertTrue(config.get("name"), "a fleet guard's configuration names its instance")


if __name__ == "__main__":
    unittest.main(verbosity=2)
