"""Kubernetes manifests checked offline against the openAPIV3Schema of their CRDs.

One implementation, shared by test_istio_manifests.py and test_envoy_gateway_manifests.py: find
the CRD file (shared/ or the committed copy), turn a CRD's structural schema into a JSON Schema
the way the API server reads a manifest, apply the schema's defaults first (as the API server
does before it validates), and evaluate the CEL rules (`x-kubernetes-validations`) with
hand-written Python equivalents supplied by each test, keyed by the exact rule text.

What the conversion does:
  * `nullable: true` also admits null;
  * objects with `properties` reject unknown fields (kubectl's default strict field validation;
    the API server would otherwise prune them silently), unless
    `x-kubernetes-preserve-unknown-fields: true`;
  * `x-kubernetes-int-or-string` admits an integer or a string;
  * `x-kubernetes-list-type: map` requires the `x-kubernetes-list-map-keys` to be unique, `set`
    requires unique items;
  * `default`s are applied before validation, like the API server's structural defaulting
    (k8s.io/apiextensions-apiserver .../schema/defaulting): non-nullable nulls without a default
    are pruned, a missing (or non-nullable null) field with a `default` gets it, recursively,
    also inside the defaulted value. CEL rules therefore see defaulted fields
    (e.g. an HTTPRoute parentRef's `group` and `kind`), as they do in a cluster;
  * `x-kubernetes-validations`: each rule is looked up in the test's table of equivalents
    (whitespace-normalised rule text -> Python predicate on `self`); a rule that is not in the
    table fails the manifest, so a CRD update that adds a rule on a field we use cannot be
    silently ignored. Transition rules (they read `oldSelf`) do not run on create and are
    recorded as skipped.
"""
import copy
import json
import os
import re
import subprocess
import tempfile

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


# ---- where the CRDs come from -----------------------------------------------------------------

def shared_crd_file(name):
    """<name> from the shared/ directory if reachable: $SUBSET_ROUTER_SHARED (the shared/
    directory, its schemas/ directory, or the CRD file itself, when its file name is <name>),
    then <repo>/../shared/schemas/<name>. None when neither exists."""
    env = os.environ.get("SUBSET_ROUTER_SHARED", "").strip()
    candidates = []
    if env:
        if os.path.basename(env) == name:
            candidates.append(env)
        candidates += [os.path.join(env, "schemas", name), os.path.join(env, name)]
    candidates.append(os.path.join(os.path.dirname(ROOT), "shared", "schemas", name))
    for c in candidates:
        if os.path.isfile(c):
            return os.path.abspath(c)
    return None


def committed_crd_file(name):
    """The unchanged copy of shared/schemas/<name> committed next to the tests (for a clone
    without shared/)."""
    return os.path.join(HERE, name)


def crd_file(name):
    return shared_crd_file(name) or committed_crd_file(name)


def load_crds(*paths):
    """{kind: CRD document} from one or more CRD files (a later file may not redefine a kind)."""
    by_kind = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for d in yaml.safe_load_all(f):
                if d and d.get("kind") == "CustomResourceDefinition":
                    kind = d["spec"]["names"]["kind"]
                    if kind in by_kind:
                        raise ValueError(f"{path}: {kind} is already defined by another CRD file")
                    d["_source"] = path
                    by_kind[kind] = d
    return by_kind


# ---- structural schema -> JSON Schema ---------------------------------------------------------

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
                   "x-kubernetes-embedded-resource", "default"):
            continue  # `default` is applied by apply_defaults(), before validation
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


def _field_schema(s, key):
    if not isinstance(s, dict):
        return None
    props = s.get("properties") or {}
    if key in props:
        return props[key]
    ap = s.get("additionalProperties")
    return ap if isinstance(ap, dict) else None


def apply_defaults(x, s):
    """The API server's structural defaulting, in place: prune non-nullable nulls that have no
    default, then fill each missing (or non-nullable null) property that has a `default`, and
    recurse (into defaulted values too)."""
    if not isinstance(s, dict):
        return x
    if isinstance(x, dict):
        for k in list(x):
            sub = _field_schema(s, k)
            if x[k] is None and sub is not None and not sub.get("nullable") and "default" not in sub:
                del x[k]
        for k, prop in (s.get("properties") or {}).items():
            if "default" in prop and (k not in x or (x[k] is None and not prop.get("nullable"))):
                x[k] = copy.deepcopy(prop["default"])
        for k, v in x.items():
            sub = _field_schema(s, k)
            if sub is not None:
                apply_defaults(v, sub)
    elif isinstance(x, list):
        items = s.get("items")
        if isinstance(items, dict):
            for v in x:
                apply_defaults(v, items)
    return x


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


# ---- CEL ------------------------------------------------------------------------------------

def norm_rule(rule):
    return " ".join(rule.split())


class Cel:
    """Evaluates `x-kubernetes-validations` with hand-written equivalents.

    equivalents: {rule text: predicate(self) -> bool}; the text is compared whitespace-normalised.
    Records what ran (evaluated), what had no equivalent (unknown: the manifest fails) and the
    transition rules skipped on create."""

    def __init__(self, equivalents):
        self.table = {norm_rule(k): f for k, f in equivalents.items()}
        self.evaluated = []
        self.unknown = []
        self.skipped = []

    def keyword(self, validator, rules, instance, schema):
        for r in rules:
            rule = norm_rule(r["rule"])
            if re.search(r"\boldSelf\b", rule):
                self.skipped.append(rule)  # transition rule: not evaluated when an object is created
                continue
            fn = self.table.get(rule)
            if fn is None:
                self.unknown.append(rule)
                yield jsonschema.ValidationError(
                    f"CEL rule not evaluated by this test (add a hand-written equivalent): {rule}")
                continue
            self.evaluated.append(rule)
            try:
                ok = fn(instance)
            except (KeyError, TypeError, AttributeError, IndexError) as e:
                # CEL would fail with "no such key" / a type error: the API server rejects the object.
                yield jsonschema.ValidationError(f"CEL rule errors on this value ({type(e).__name__}: {e}): {rule}")
                continue
            if not ok:
                yield jsonschema.ValidationError(r.get("message") or f"CEL rule failed: {rule}")


def make_validator(schema, cel):
    base = jsonschema.validators.validator_for({"$schema": "http://json-schema.org/draft-07/schema#"})
    cls = jsonschema.validators.extend(base, {
        "x-kubernetes-list-type": _list_type,
        "x-kubernetes-validations": cel.keyword,
    })
    return cls(schema)


# ---- manifests ------------------------------------------------------------------------------

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_metadata(doc):
    errors = []
    meta = doc.get("metadata") or {}
    name = meta.get("name", "")
    if not (isinstance(name, str) and len(name) <= 253 and DNS1123_SUBDOMAIN.match(name)):
        errors.append(f"metadata.name {name!r}: not a DNS-1123 subdomain")
    ns = meta.get("namespace")
    if ns is not None and not (isinstance(ns, str) and len(ns) <= 63 and DNS1123_LABEL.match(ns)):
        errors.append(f"metadata.namespace {ns!r}: not a DNS-1123 label")
    for extra in set(doc) - {"apiVersion", "kind", "metadata", "spec"}:
        errors.append(f"{extra}: unexpected top-level field in a manifest")
    return errors


def validate_manifest(doc, crds, cel):
    """Errors of one manifest against its CRD (empty list: valid). The manifest is not modified
    (defaults are applied to a copy)."""
    kind = doc.get("kind")
    crd = crds.get(kind)
    if crd is None:
        return [f"kind {kind!r}: no CRD for it in {sorted({c['_source'] for c in crds.values()})}"]
    group = crd["spec"]["group"]
    versions = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    api = doc.get("apiVersion", "")
    g, _, ver = api.partition("/")
    if g != group or ver not in versions:
        return [f"apiVersion {api!r}: {kind} is served as {', '.join(group + '/' + v for v in versions)}"]
    errors = validate_metadata(doc)
    structural = versions[ver]["schema"]["openAPIV3Schema"]
    body = {k: copy.deepcopy(v) for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    apply_defaults(body, structural)
    for e in sorted(make_validator(convert(structural), cel).iter_errors(body), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in e.absolute_path) or "(root)"
        errors.append(f"{path}: {e.message}")
    return errors


def load_manifests(directory):
    """[(path relative to the repository, document)] of every YAML file under `directory`,
    recursively, in a stable order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.endswith((".yaml", ".yml")):
                path = os.path.join(dirpath, fn)
                with open(path, encoding="utf-8") as f:
                    for d in yaml.safe_load_all(f):
                        if d:
                            out.append((os.path.relpath(path, ROOT), d))
    return out


# ---- the filter's own validator ---------------------------------------------------------------

def cli():
    path = os.environ.get("SUBSET_ROUTER_CLI") or os.path.join(ROOT, "target", "release", "subset-router")
    if not os.path.isfile(path):
        raise AssertionError(f"validator CLI {path} not built: "
                             "cargo build --release -p subset-router-cli --bin subset-router")
    return path


def validate_plugin_config(config):
    """(exit status, stderr) of `subset-router validate` on a plugin configuration (a dict)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(config, f)
    try:
        r = subprocess.run([cli(), "validate", f.name], capture_output=True, text=True)
    finally:
        os.unlink(f.name)
    return r.returncode, r.stderr


def plugin_subsets(config):
    """Every subset a plugin configuration can choose (rules, then default), in order."""
    subsets = []

    def route(r):
        for n in ([r["subset"]] if "subset" in r else []) + [e["subset"] for e in r.get("split") or []]:
            if n not in subsets:
                subsets.append(n)
    for rule in config.get("rules") or []:
        route(rule["route"])
    route(config["default"])
    return subsets
