#!/usr/bin/env python3
"""Offline checks of examples/envoy-gateway/**.yaml against Envoy Gateway's and Gateway API's own
CRD schemas (no cluster needed).

    python -m unittest tests/manifests/test_envoy_gateway_manifests.py   (needs jsonschema, pyyaml,
                                                                          and the validator CLI)

1. Every manifest validates against the `openAPIV3Schema` of its CRD and version, from
   $SUBSET_ROUTER_SHARED, else <repo>/../shared/schemas/envoy-gateway-crds.yaml, else the copy
   committed here (tests/manifests/envoy-gateway-crds.yaml, kept identical to the shared file by
   a test): EnvoyExtensionPolicy (gateway.envoyproxy.io/v1alpha1), Gateway and HTTPRoute
   (Gateway API v1.6.1). Conversion, defaulting and CEL as in crd_schema.py; the CEL rules are
   evaluated by the hand-written equivalents in cel_rules.py (GATEWAY_API, ENVOY_GATEWAY), and a
   rule without one fails. EnvoyProxy (the dynamic-module registration) has no CRD in that file:
   it is checked against the fields of its Go API type by hand (ENVOYPROXY_SCHEMA below).
2. Every filter configuration (wasm[].config, dynamicModule[].config) passes `subset-router
   validate` and the committed JSON Schema, is the same in every policy, and uses
   `subsetHeader` with `clusterHeader: null`.
3. Every subset the configuration can choose is routed by an HTTPRoute of the targeted Gateway:
   a rule whose match is `<subsetHeader>: <subset>` (Exact) and whose backend is that subset's
   Service, for every hostname; the default rule goes to the default subset's Service.
4. The leak shape is refused: every EnvoyExtensionPolicy targets the Gateway (kind Gateway,
   whole Gateway: no sectionName), never an HTTPRoute, and every HTTPRoute to a subset's Service
   is attached to a targeted Gateway. (Envoy Gateway enables the filter only on the routes of its
   targets; a forged `x-subset: v2` matching a route without the filter reaches v2.)
5. Every module is pinned by sha256, and the pins equal examples/oci-digests.json (oci_digests.py);
   without that file the check fails under CI=true and is a loud SKIP locally.
6. The dynamicModule variant (the CRD has `dynamicModule`): the module it loads is registered by
   an EnvoyProxy of the example, which the variant's Gateway references.
"""
import copy
import json
import os
import sys
import unittest

import jsonschema
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cel_rules  # noqa: E402
import crd_schema  # noqa: E402
import httproutes  # noqa: E402
import oci_digests  # noqa: E402

ROOT = crd_schema.ROOT
EXAMPLES = os.path.join(ROOT, "examples", "envoy-gateway")
CRD_NAME = "envoy-gateway-crds.yaml"
CEL_TABLE = {**cel_rules.GATEWAY_API, **cel_rules.ENVOY_GATEWAY}
GATEWAY_GROUP = "gateway.networking.k8s.io"
EG_GROUP = "gateway.envoyproxy.io"

# EnvoyProxy: not in envoy-gateway-crds.yaml. The fields the example uses, from the Go types of
# envoyproxy/gateway api/v1alpha1 (envoyproxy_types.go, shared_types.go, dynamic_module_types.go)
# at the commit the CRDs come from (d32f282), with their kubebuilder validations, and the
# Kubernetes core/v1 Container and Volume fields they embed.
_NAME = {"type": "string", "minLength": 1, "maxLength": 253, "pattern": r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$"}
_DNS_LABEL = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"}
_STRINGS = {"type": "array", "items": {"type": "string"}}


def _obj(properties, required=()):
    return {"type": "object", "additionalProperties": False, "properties": properties, "required": list(required)}


_VOLUME_MOUNTS = {"type": "array", "items": _obj(
    {"name": _DNS_LABEL, "mountPath": {"type": "string", "minLength": 1}, "readOnly": {"type": "boolean"}},
    ("name", "mountPath"))}
_CONTAINER = _obj({  # core/v1 Container (the fields used)
    "name": _DNS_LABEL, "image": {"type": "string", "minLength": 1}, "command": _STRINGS, "args": _STRINGS,
    "env": {"type": "array", "items": _obj({"name": {"type": "string", "minLength": 1}, "value": {"type": "string"}},
                                           ("name",))},
    "volumeMounts": _VOLUME_MOUNTS}, ("name",))
ENVOYPROXY_SCHEMA = _obj({"spec": _obj({
    "provider": _obj({
        "type": {"enum": ["Kubernetes", "Custom"]},
        "kubernetes": _obj({"envoyDeployment": _obj({
            "pod": _obj({"volumes": {"type": "array", "items": _obj({  # core/v1 Volume (the fields used)
                "name": _DNS_LABEL,
                "emptyDir": _obj({"medium": {"type": "string"}, "sizeLimit": {"type": ["string", "integer"]}}),
                "image": _obj({"reference": {"type": "string"}, "pullPolicy": {"enum": ["Always", "Never", "IfNotPresent"]}}),
            }, ("name",))}}),
            "initContainers": {"type": "array", "items": _CONTAINER},
            "container": _obj({"image": {"type": "string", "minLength": 1}, "volumeMounts": _VOLUME_MOUNTS}),
        })}),
    }, ("type",)),
    # EnvoyProxy.spec.bootstrap (ProxyBootstrap): Replace, Merge (YAML merged into Envoy Gateway's
    # bootstrap) or JSONPatch.
    "bootstrap": dict(_obj({
        "type": {"enum": ["Replace", "Merge", "JSONPatch"]},
        "value": {"type": "string", "minLength": 1},
        "jsonPatches": {"type": "array"},
    })),
    "dynamicModules": {
        "type": "array", "maxItems": 16,
        "items": _obj({
            "name": _NAME,
            "doNotClose": {"type": "boolean"},
            "loadGlobally": {"type": "boolean"},
            "source": dict(_obj({
                "type": {"enum": ["Local", "Remote"]},
                "local": _obj({"path": {"type": "string", "minLength": 1, "maxLength": 4096}}, ("path",)),
                "remote": _obj({"url": {"type": "string", "minLength": 1, "maxLength": 4096,
                                        "pattern": r"^https?://[^/?#]+(?:[/?#].*)?$"},
                                "sha256": {"type": "string", "pattern": r"^[a-f0-9]{64}$"}}, ("url", "sha256")),
            }), allOf=[  # the XValidation rules of DynamicModuleSource (type defaults to Local)
                {"if": {"properties": {"type": {"const": "Remote"}}, "required": ["type"]},
                 "then": {"required": ["remote"], "not": {"required": ["local"]}},
                 "else": {"required": ["local"], "not": {"required": ["remote"]}}}]),
        }, ("name", "source"))},
})}, ("spec",))


def validate_envoyproxy(doc):
    errors = []
    if doc.get("apiVersion") != f"{EG_GROUP}/v1alpha1":
        errors.append(f"apiVersion {doc.get('apiVersion')!r}: EnvoyProxy is served as {EG_GROUP}/v1alpha1")
    errors += crd_schema.validate_metadata(doc)
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    for e in jsonschema.Draft7Validator(ENVOYPROXY_SCHEMA).iter_errors(body):
        errors.append(f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}")
    return errors


namespace = httproutes.namespace
attached_gateways = httproutes.attached_gateways
backend_services = httproutes.backend_services


def filters_of(policy):
    """[(label, config)] of every subset-router filter entry of an EnvoyExtensionPolicy."""
    spec = policy["spec"]
    out = [(f"wasm[{i}]", w.get("config")) for i, w in enumerate(spec.get("wasm") or [])]
    out += [(f"dynamicModule[{i}]", m.get("config")) for i, m in enumerate(spec.get("dynamicModule") or [])]
    return out


def targeted_gateways(policy):
    """(namespace, name) of the Gateways a policy targets as a whole."""
    spec = policy["spec"]
    refs = list(spec.get("targetRefs") or []) + ([spec["targetRef"]] if spec.get("targetRef") else [])
    return {(namespace(policy), r["name"]) for r in refs
            if r.get("kind") == "Gateway" and r.get("group") == GATEWAY_GROUP and not r.get("sectionName")}


def subset_services(manifests, config):
    """{subset: Service} for the subsets the HTTPRoutes among `manifests` route by header."""
    routes = [(p, d) for p, d in manifests if d["kind"] == "HTTPRoute"]
    return httproutes.unrouted(routes, config["subsetHeader"], crd_schema.plugin_subsets(config))[1]


def leak_problems(manifests):
    """Why a forged routing header could reach a backend without passing the filter (empty: none).

    Envoy Gateway adds a policy's filter to the listener disabled and enables it on the routes of
    the policy's targets; the route is chosen before the filter runs. So every policy must target
    a whole Gateway, and every HTTPRoute to a subset's backend must hang off a targeted Gateway."""
    problems = []
    policies = [(p, d) for p, d in manifests if d["kind"] == "EnvoyExtensionPolicy"]
    for path, pol in policies:
        spec = pol["spec"]
        refs = list(spec.get("targetRefs") or []) + ([spec["targetRef"]] if spec.get("targetRef") else [])
        for r in refs:
            if r.get("kind") != "Gateway":
                problems.append(f"{path}: EnvoyExtensionPolicy {pol['metadata']['name']} targets {r.get('kind')} "
                                f"{r.get('name')}: the filter would be enabled only on that resource's routes, and a "
                                f"forged routing header matching another route would skip it. Target the Gateway.")
            elif r.get("sectionName"):
                problems.append(f"{path}: EnvoyExtensionPolicy {pol['metadata']['name']} targets only listener "
                                f"{r['sectionName']} of Gateway {r.get('name')}: target the whole Gateway")
        for sel in spec.get("targetSelectors") or []:
            problems.append(f"{path}: EnvoyExtensionPolicy {pol['metadata']['name']} uses targetSelectors "
                            f"(kind {sel.get('kind')}): target the Gateway by name")
    covered = set()
    for _, pol in policies:
        covered |= targeted_gateways(pol)
    subset_backends = set()
    for _, pol in policies:
        for _, cfg in filters_of(pol):
            if isinstance(cfg, dict) and "default" in cfg:
                subset_backends |= {(namespace(pol), svc) for svc in subset_services(manifests, cfg).values()}
    for path, route in manifests:
        if route["kind"] != "HTTPRoute":
            continue
        services = {(namespace(route), s) for rule in route["spec"].get("rules") or [] for s in backend_services(rule)}
        if services & subset_backends and not attached_gateways(route) & covered:
            problems.append(f"{path}: HTTPRoute {route['metadata']['name']} reaches {sorted(s for _, s in services)} "
                            f"but hangs off no Gateway the subset-router policy targets")
    return problems


class EnvoyGatewayManifests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.crd_path = crd_schema.crd_file(CRD_NAME)
        print(f"\n[envoy-gateway] CRDs: {cls.crd_path}", file=sys.stderr)
        cls.crds = crd_schema.load_crds(cls.crd_path)
        cls.manifests = crd_schema.load_manifests(EXAMPLES)

    def docs(self, kind):
        return [(p, d) for p, d in self.manifests if d["kind"] == kind]

    def policies(self):
        return self.docs("EnvoyExtensionPolicy")

    def main_policy(self):
        docs = [d for p, d in self.policies() if p == "examples/envoy-gateway/policy-oci.yaml"]
        self.assertEqual(len(docs), 1, "examples/envoy-gateway/policy-oci.yaml must hold one EnvoyExtensionPolicy")
        return docs[0]

    def base(self):
        """The manifests applied together in the main path (top-level files of the folder)."""
        return [(p, d) for p, d in self.manifests if os.path.dirname(p) == "examples/envoy-gateway"]

    def test_00_committed_crd_copy_matches_shared(self):
        shared = crd_schema.shared_crd_file(CRD_NAME)
        committed = crd_schema.committed_crd_file(CRD_NAME)
        if shared is None:
            self.skipTest("no shared/ CRD file next to the repository: using the committed copy")
        with open(shared, "rb") as a, open(committed, "rb") as b:
            self.assertEqual(a.read(), b.read(), f"{committed} differs from {shared}: cp {shared} {committed}")

    def test_01_crds_present(self):
        for kind in ("EnvoyExtensionPolicy", "Gateway", "HTTPRoute"):
            self.assertIn(kind, self.crds)
        eep = self.crds["EnvoyExtensionPolicy"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        has_dm = "dynamicModule" in eep["properties"]["spec"]["properties"]
        uses_dm = any(d["spec"].get("dynamicModule") for _, d in self.policies())
        self.assertEqual(has_dm, uses_dm, "a dynamicModule variant exists exactly when the CRD has spec.dynamicModule")

    def test_02_manifests_validate_against_crds(self):
        cel = crd_schema.Cel(CEL_TABLE)
        kinds = set()
        for path, doc in self.manifests:
            kinds.add(doc["kind"])
            with self.subTest(manifest=path, kind=doc["kind"], name=doc["metadata"]["name"]):
                if doc["kind"] == "EnvoyProxy":
                    errors = validate_envoyproxy(doc)
                else:
                    errors = crd_schema.validate_manifest(doc, self.crds, cel)
                self.assertEqual(errors, [], f"{path} ({doc['kind']}) does not match its CRD:\n  " + "\n  ".join(errors))
        self.assertEqual(kinds, {"Gateway", "HTTPRoute", "EnvoyExtensionPolicy", "EnvoyProxy"})
        print(f"[envoy-gateway] {len(self.manifests)} manifests; CEL rules evaluated by hand-written equivalents: "
              f"{len(cel.evaluated)} evaluations of {len(set(cel.evaluated))} distinct rules; without an equivalent: "
              f"{len(cel.unknown)}; EnvoyProxy checked against its Go API type (no CRD in {CRD_NAME})", file=sys.stderr)

    def test_03_schema_check_catches_mistakes(self):
        """The converted schemas and the CEL equivalents are not vacuous: typical mistakes are
        rejected (most of them only by a CEL rule)."""
        pol = self.main_policy()
        http_pol = [d for p, d in self.policies() if p.endswith("variants/policy-http.yaml")][0]
        dm_pol = [d for p, d in self.policies() if d["spec"].get("dynamicModule")][0]
        gw = self.docs("Gateway")[0][1]
        route = self.docs("HTTPRoute")[0][1]
        proxy = self.docs("EnvoyProxy")[0][1]

        def bad(doc, mutate, check=None):
            d = copy.deepcopy(doc)
            mutate(d)
            if check:
                return check(d)
            return crd_schema.validate_manifest(d, self.crds, crd_schema.Cel(CEL_TABLE))

        spec = lambda d: d["spec"]  # noqa: E731
        wasm0 = lambda d: d["spec"]["wasm"][0]  # noqa: E731
        cases = {
            # CEL (EnvoyExtensionPolicy)
            "target kind Service": bad(pol, lambda d: spec(d)["targetRefs"][0].__setitem__("kind", "Service")),
            "target group core": bad(pol, lambda d: spec(d)["targetRefs"][0].__setitem__("group", "")),
            "targetRef and targetRefs": bad(pol, lambda d: spec(d).__setitem__("targetRef", dict(spec(d)["targetRefs"][0]))),
            "no target at all": bad(pol, lambda d: spec(d).pop("targetRefs")),
            "mergeType on a Gateway target": bad(pol, lambda d: spec(d).__setitem__("mergeType", "StrategicMerge")),
            "type Image without image": bad(pol, lambda d: wasm0(d)["code"].__setitem__("type", "HTTP")),
            "type HTTP with image": bad(http_pol, lambda d: wasm0(d)["code"].__setitem__("image", {"url": "r/i:1"})),
            # structural
            "code type OCI": bad(pol, lambda d: wasm0(d)["code"].__setitem__("type", "OCI")),
            "failOpen as a string": bad(pol, lambda d: wasm0(d).__setitem__("failOpen", "false")),
            "unknown wasm field": bad(pol, lambda d: wasm0(d).__setitem__("configuration", {})),
            "image without url": bad(pol, lambda d: wasm0(d)["code"]["image"].pop("url")),
            "module name with underscore": bad(dm_pol, lambda d: spec(d)["dynamicModule"][0].__setitem__("name", "subset_router")),
            "wrong policy version": bad(pol, lambda d: d.__setitem__("apiVersion", "gateway.envoyproxy.io/v1")),
            # CEL (Gateway, HTTPRoute)
            "duplicate listener name": bad(gw, lambda d: spec(d)["listeners"].append(dict(spec(d)["listeners"][0], port=8080))),
            "HTTP listener with tls": bad(gw, lambda d: spec(d)["listeners"][0].__setitem__("tls", {"mode": "Terminate"})),
            "path without leading /": bad(route, lambda d: spec(d)["rules"][0]["matches"][0].__setitem__(
                "path", {"type": "PathPrefix", "value": "api"})),
            "Service backend without port": bad(route, lambda d: spec(d)["rules"][0]["backendRefs"][0].pop("port")),
            "same parentRef twice": bad(route, lambda d: spec(d)["parentRefs"].append(dict(spec(d)["parentRefs"][0]))),
            "duplicate rule name": bad(route, lambda d: spec(d)["rules"][1].__setitem__("name", spec(d)["rules"][0]["name"])),
            "header match type typo": bad(route, lambda d: spec(d)["rules"][0]["matches"][0]["headers"][0].__setitem__(
                "type", "Exactly")),
            # EnvoyProxy (hand-written schema)
            "EnvoyProxy module name with underscore": bad(proxy, lambda d: spec(d)["dynamicModules"][0].__setitem__(
                "name", "subset_router"), validate_envoyproxy),
            "EnvoyProxy Remote without remote": bad(proxy, lambda d: spec(d)["dynamicModules"][0]["source"].__setitem__(
                "type", "Remote"), validate_envoyproxy),
            "EnvoyProxy unknown field": bad(proxy, lambda d: spec(d).__setitem__("dynamicModule", []), validate_envoyproxy),
        }
        for what, errors in cases.items():
            if os.environ.get("VERBOSE"):
                print(f"[envoy-gateway] {what}: {errors}", file=sys.stderr)
            with self.subTest(mistake=what):
                self.assertTrue(errors, f"the CRD check accepted a manifest with: {what}")

    def test_04_filter_config_passes_the_validator(self):
        configs = [(f"{p}: {label}", cfg) for p, d in self.policies() for label, cfg in filters_of(d)]
        self.assertTrue(configs)
        schema_path = os.path.join(ROOT, "examples", "config.schema.json")
        schema = None
        if os.path.isfile(schema_path):
            with open(schema_path, encoding="utf-8") as f:
                schema = json.load(f)
        for where, cfg in configs:
            with self.subTest(config=where):
                self.assertIsInstance(cfg, dict, f"{where}: config must be set (the filter refuses an empty one)")
                rc, err = crd_schema.validate_plugin_config(cfg)
                self.assertEqual(rc, 0, f"subset-router validate rejected {where}:\n{err}")
                self.assertIn("clusterHeader", cfg, "clusterHeader must be set explicitly (null): routes match x-subset")
                self.assertIsNone(cfg["clusterHeader"])
                self.assertTrue(cfg.get("subsetHeader"))
                if schema is not None:
                    cls = jsonschema.validators.validator_for(schema)
                    self.assertEqual([e.message for e in cls(schema).iter_errors(cfg)], [])
        # The fleet variant adds guards; everything else is the same configuration.
        def routing(cfg):
            return {k: v for k, v in cfg.items() if k != "guards"}
        first = configs[0][1]
        for where, cfg in configs[1:]:
            self.assertEqual(routing(cfg), routing(first),
                             f"{where}: every variant carries the same filter configuration")

    def test_05_every_subset_is_routed_by_a_header_match(self):
        cfg = filters_of(self.main_policy())[0][1]
        gateways = targeted_gateways(self.main_policy())
        routes = [(p, d) for p, d in self.base() if d["kind"] == "HTTPRoute" and attached_gateways(d) & gateways]
        self.assertTrue(routes, "no HTTPRoute attached to the targeted Gateway")
        subsets = crd_schema.plugin_subsets(cfg)
        problems, services = httproutes.unrouted(routes, cfg["subsetHeader"], subsets, cfg["default"].get("subset"))
        self.assertEqual(problems, [], "\n".join(problems))
        for s in subsets:
            with self.subTest(subset=s):
                self.assertTrue(services[s].endswith("-" + s), f"`{cfg['subsetHeader']}: {s}` routes to Service {services[s]}")

    def test_06_policies_target_the_gateway_not_a_route(self):
        """The leak shape (a policy on one HTTPRoute) is refused, and the check itself works."""
        problems = leak_problems(self.manifests)
        self.assertEqual(problems, [], "\n".join(problems))
        for _, pol in self.policies():
            with self.subTest(policy=pol["metadata"]["name"]):
                self.assertTrue(targeted_gateways(pol), "the policy must target a whole Gateway")
        # The check is not vacuous: retarget the main policy at the default route's HTTPRoute.
        leaky = [(p, copy.deepcopy(d)) for p, d in self.base()]
        for _, d in leaky:
            if d["kind"] == "EnvoyExtensionPolicy":
                d["spec"]["targetRefs"] = [{"group": GATEWAY_GROUP, "kind": "HTTPRoute", "name": "app"}]
        self.assertTrue(leak_problems(leaky), "a policy targeting HTTPRoute `app` was not flagged")
        # The leaky shape is valid for the CRD: only this test stands between it and a cluster.
        pol = [d for _, d in leaky if d["kind"] == "EnvoyExtensionPolicy"][0]
        self.assertEqual(crd_schema.validate_manifest(pol, self.crds, crd_schema.Cel(CEL_TABLE)), [])

    def test_07_policies_fail_closed_and_replace_each_other(self):
        names = {(namespace(d), d["metadata"]["name"]) for _, d in self.policies()}
        self.assertEqual(len(names), 1, f"the variants must be one policy (same name), so applying one replaces "
                                        f"another instead of adding a second filter: {names}")
        for p, d in self.policies():
            with self.subTest(policy=p):
                self.assertEqual(len(filters_of(d)), 1, "one filter entry per policy")
                for w in d["spec"].get("wasm") or []:
                    self.assertIs(w.get("failOpen"), False, "failOpen must be explicit: false (fail open lets a "
                                                           "forged x-subset through)")

    def test_08_every_module_is_pinned(self):
        pins, problems = oci_digests.all_pins([EXAMPLES])
        self.assertEqual(problems, [], "\n".join(problems))
        kinds = {p.source for p in pins}
        self.assertEqual(kinds, {"oci", "http", "native"}, "pins for the OCI image, the HTTP .wasm and the .so")
        for p in pins:
            with self.subTest(pin=p.where()):
                self.assertRegex(p.value, oci_digests.HEX64, "a sha256 is 64 lower-case hex digits (no sha256: prefix)")

    def test_09_pinned_digests_equal_the_build(self):
        oci_digests.check_pins(self, [EXAMPLES], "examples/envoy-gateway")

    def test_10_dynamic_module_variant(self):
        dm = [(p, d) for p, d in self.policies() if d["spec"].get("dynamicModule")]
        self.assertEqual(len(dm), 1)
        path, pol = dm[0]
        folder = os.path.dirname(path)
        entry = pol["spec"]["dynamicModule"][0]
        self.assertEqual(entry.get("filterName"), "subset_router", "the filter inside libsubset_router.so")
        proxies = [d for p, d in self.manifests if d["kind"] == "EnvoyProxy" and os.path.dirname(p) == folder]
        self.assertEqual(len(proxies), 1, f"{folder}: one EnvoyProxy registers the module")
        proxy = proxies[0]
        registered = {m["name"]: m for m in proxy["spec"].get("dynamicModules") or []}
        self.assertIn(entry["name"], registered, "the policy loads a module no EnvoyProxy registers (Envoy Gateway "
                                                 "would answer 500 on every route)")
        src = registered[entry["name"]]["source"]
        self.assertEqual(src.get("type"), "Local", "type Remote fails open on Envoy 1.40 (a module whose download "
                                                   "fails is skipped): load a local file")
        path_ = src["local"]["path"]
        self.assertTrue(path_.startswith("/") and path_.endswith("/libsubset_router.so"), path_)
        deploy = proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]
        image = deploy["container"]["image"]
        self.assertRegex(image, r":(distroless-)?v1\.40\.\d+$", "the module is built for Envoy 1.40's ABI")
        # The file is put there, verified, by an init container writing the volume Envoy mounts.
        mounts = {m["name"]: m["mountPath"] for m in deploy["container"].get("volumeMounts") or []}
        volume = [n for n, mp in mounts.items() if os.path.dirname(path_) == mp.rstrip("/")]
        self.assertEqual(len(volume), 1, f"no volume of the Envoy container holds {path_}")
        fetchers = [c for c in deploy.get("initContainers") or []
                    for m in c.get("volumeMounts") or [] if m["name"] == volume[0]]
        self.assertEqual(len(fetchers), 1, "one init container fills the module volume")
        script = " ".join(fetchers[0].get("command") or []) + " ".join(fetchers[0].get("args") or [])
        env = {e["name"]: e.get("value") for e in fetchers[0].get("env") or []}
        self.assertIn("sha256sum -c", script, "the init container must verify the module's sha256")
        self.assertIn("$SUBSET_ROUTER_SHA256", script)
        self.assertRegex(env.get("SUBSET_ROUTER_SHA256", ""), oci_digests.HEX64)
        self.assertTrue(env.get("SUBSET_ROUTER_URL", "").startswith("https://"), "fetch the module over HTTPS")
        gws = [d for p, d in self.manifests if d["kind"] == "Gateway" and os.path.dirname(p) == folder]
        self.assertEqual(len(gws), 1, f"{folder}: the Gateway, pointed at the EnvoyProxy")
        ref = gws[0]["spec"].get("infrastructure", {}).get("parametersRef")
        self.assertEqual(ref, {"group": EG_GROUP, "kind": "EnvoyProxy", "name": proxy["metadata"]["name"]})
        self.assertEqual(namespace(gws[0]), namespace(proxy))
        base_gw = [d for _, d in self.base() if d["kind"] == "Gateway"][0]
        same = copy.deepcopy(gws[0])
        same["spec"].pop("infrastructure")
        self.assertEqual(same, base_gw, "the variant's Gateway is gateway.yaml plus infrastructure.parametersRef")

    def test_11_fleet_variant(self):
        """Every fleet guard names a cluster the proxies have: one their EnvoyProxy's bootstrap adds."""
        fleet = [(p, d) for p, d in self.policies()
                 if any(g.get("fleet") for _, c in filters_of(d) for g in (c or {}).get("guards", []))]
        self.assertEqual(len(fleet), 1, "one variant shows the fleet guard")
        path, pol = fleet[0]
        folder = os.path.dirname(path)
        proxies = [d for p, d in self.manifests if d["kind"] == "EnvoyProxy" and os.path.dirname(p) == folder]
        self.assertEqual(len(proxies), 1, f"{folder}: one EnvoyProxy adds the Prometheus cluster")
        boot = proxies[0]["spec"].get("bootstrap") or {}
        self.assertEqual(boot.get("type"), "Merge", "merge the cluster into Envoy Gateway's bootstrap")
        clusters = {c["name"]: c for c in yaml.safe_load(boot["value"])["static_resources"]["clusters"]}
        for _, config in filters_of(pol):
            config = config or {}
            self.assertTrue(config.get("name"), "a fleet guard's policy names its instance (the query selects it)")
            for g in config.get("guards", []):
                if g.get("fleet"):
                    self.assertIn(g["fleet"]["cluster"], clusters,
                                  "the fleet guard's cluster is not in the proxies' bootstrap")
        gws = [d for p, d in self.manifests if d["kind"] == "Gateway" and os.path.dirname(p) == folder]
        self.assertEqual(len(gws), 1)
        self.assertEqual(gws[0]["spec"]["infrastructure"]["parametersRef"]["name"], proxies[0]["metadata"]["name"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
