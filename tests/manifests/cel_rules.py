"""Hand-written Python equivalents of the CRDs' CEL rules (`x-kubernetes-validations`) that our
manifests meet, keyed by the rule's exact text (compared whitespace-normalised by crd_schema.Cel).

A rule that is not here fails the manifest it applies to (crd_schema.Cel), so a CRD update that
changes or adds a rule on a field the examples use cannot be silently ignored: read the new rule
and add its equivalent here. Each predicate receives the value at the rule's node (`self`), after
the API server's defaulting (crd_schema.apply_defaults): e.g. an HTTPRoute parentRef always has
`group` and `kind` here, as it does when the API server evaluates the rule.

    ISTIO          istio-crds.yaml: WasmPlugin (VirtualService and DestinationRule meet none)
    GATEWAY_API    Gateway API v1.6.1 Gateway and HTTPRoute (in envoy-gateway-crds.yaml)
    ENVOY_GATEWAY  EnvoyExtensionPolicy (gateway.envoyproxy.io/v1alpha1)
"""
import re


def has(obj, field):
    """CEL `has(obj.field)`."""
    return isinstance(obj, dict) and field in obj


def exists_one(items, pred):
    return sum(1 for x in items if pred(x)) == 1


def cel_or(*terms):
    """CEL `a || b || ...` with its commutative error handling: true if any term is true, even
    when another errors (e.g. reads an absent field); otherwise the first error is raised."""
    error = None
    for term in terms:
        try:
            if term():
                return True
        except (KeyError, TypeError, AttributeError, IndexError) as e:
            error = error or e
    if error is not None:
        raise error
    return False


# ---- Istio ------------------------------------------------------------------------------------

def _url_scheme_ok(url):
    # isURL(self) ? url(self).getScheme() in [...] : isURL("http://" + self) && ...: a URL with a
    # scheme must use one of these; a bare reference ("registry/image:tag") is read as
    # http://registry/... whose scheme is allowed.
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    return (m.group(1).lower() if m else "") in ("", "http", "https", "oci", "file")


ISTIO = {
    # WasmPlugin.spec
    '(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1':
        lambda v: sum(k in v for k in ("selector", "targetRef", "targetRefs")) <= 1,
    # WasmPlugin.spec.url
    'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])':
        _url_scheme_ok,
    # WorkloadSelector.matchLabels
    'self.all(key, !key.contains("*"))': lambda v: all("*" not in k for k in v),
    'self.all(key, key.size() != 0)': lambda v: all(len(k) != 0 for k in v),
    '!self.contains("*")': lambda v: "*" not in v,
    # PolicyTargetReference.namespace (targetRef / targetRefs[*]): no cross-namespace reference
    'self.size() == 0': lambda v: len(v) == 0,
}


# ---- Gateway API v1.6.1: Gateway ----------------------------------------------------------------

def _listener_hostname_pair(l1, l2):
    if has(l1, "hostname") and has(l2, "hostname"):
        return l1["hostname"] == l2["hostname"]
    return not has(l1, "hostname") and not has(l2, "hostname")


GATEWAY = {
    # spec.listeners
    "self.all(l, l.protocol in ['HTTP', 'TCP', 'UDP'] ? !has(l.tls) : true)":
        lambda ls: all(not has(l, "tls") if l["protocol"] in ("HTTP", "TCP", "UDP") else True for l in ls),
    "self.all(l, (l.protocol == 'HTTPS' && has(l.tls)) ? (l.tls.mode == '' || l.tls.mode == 'Terminate') : true)":
        lambda ls: all((l["tls"]["mode"] in ("", "Terminate")) if (l["protocol"] == "HTTPS" and has(l, "tls")) else True
                       for l in ls),
    "self.all(l, (l.protocol == 'TLS' ? has(l.tls) && has(l.tls.mode) && l.tls.mode != '' : true))":
        lambda ls: all((has(l, "tls") and has(l["tls"], "mode") and l["tls"]["mode"] != "") if l["protocol"] == "TLS" else True
                       for l in ls),
    "self.all(l, l.protocol in ['TCP', 'UDP'] ? (!has(l.hostname) || l.hostname == '') : true)":
        lambda ls: all((not has(l, "hostname") or l["hostname"] == "") if l["protocol"] in ("TCP", "UDP") else True
                       for l in ls),
    # spec.listeners[*].tls
    "self.mode == 'Terminate' ? size(self.certificateRefs) > 0 || size(self.options) > 0 : true":
        lambda t: cel_or(lambda: len(t["certificateRefs"]) > 0, lambda: len(t["options"]) > 0)
        if t["mode"] == "Terminate" else True,
    "self.all(l1, self.exists_one(l2, l1.name == l2.name))":
        lambda ls: all(exists_one(ls, lambda l2, l1=l1: l1["name"] == l2["name"]) for l1 in ls),
    "self.all(l1, self.exists_one(l2, l1.port == l2.port && l1.protocol == l2.protocol && (has(l1.hostname) && has(l2.hostname) ? l1.hostname == l2.hostname : !has(l1.hostname) && !has(l2.hostname))))":
        lambda ls: all(exists_one(ls, lambda l2, l1=l1: l1["port"] == l2["port"] and l1["protocol"] == l2["protocol"]
                                  and _listener_hostname_pair(l1, l2)) for l1 in ls),
}


# ---- Gateway API v1.6.1: HTTPRoute --------------------------------------------------------------

def _ns_empty(p):
    return not has(p, "namespace") or p["namespace"] == ""


def _same_ns(p1, p2):
    return (_ns_empty(p1) and _ns_empty(p2)) or (has(p1, "namespace") and has(p2, "namespace")
                                                 and p1["namespace"] == p2["namespace"])


def _no_section(p):
    return not has(p, "sectionName") or p["sectionName"] == ""


def _no_port(p):
    return not has(p, "port") or p["port"] == 0


def _same_parent(p1, p2):
    return p1["group"] == p2["group"] and p1["kind"] == p2["kind"] and p1["name"] == p2["name"] and _same_ns(p1, p2)


def _parent_refs_consistent(refs):
    # Two refs to the same parent must both name a section (port) or both not.
    return all((_no_section(p1) == _no_section(p2) and _no_port(p1) == _no_port(p2)) if _same_parent(p1, p2) else True
               for p1 in refs for p2 in refs)


def _parent_refs_unique(refs):
    def same(p1, p2):
        return (_same_parent(p1, p2)
                and ((_no_section(p1) and _no_section(p2))
                     or (has(p1, "sectionName") and has(p2, "sectionName") and p1["sectionName"] == p2["sectionName"]))
                and ((_no_port(p1) and _no_port(p2))
                     or (has(p1, "port") and has(p2, "port") and p1["port"] == p2["port"])))
    return all(exists_one(refs, lambda p2, p1=p1: same(p1, p2)) for p1 in refs)


def _matches_total(rules):
    # (self.size() > 0 ? self[0].matches.size() : 0) + ... up to self[15]: the first 16 rules.
    return sum(len(r["matches"]) for r in rules[:16]) <= 128


def _prefix_replacing(filters, kind):
    """filters.exists_one(f, has(f.<kind>) && has(f.<kind>.path) && f.<kind>.path.type ==
    'ReplacePrefixMatch' && has(f.<kind>.path.replacePrefixMatch))"""
    return exists_one(filters, lambda f: has(f, kind) and has(f[kind], "path")
                      and f[kind]["path"]["type"] == "ReplacePrefixMatch" and has(f[kind]["path"], "replacePrefixMatch"))


def _single_prefix_match(rule):
    m = rule["matches"]
    return not (len(m) != 1 or not has(m[0], "path") or m[0]["path"]["type"] != "PathPrefix")


def _rule_prefix_filter_ok(rule, kind):
    if has(rule, "filters") and _prefix_replacing(rule["filters"], kind):
        return _single_prefix_match(rule)
    return True


def _backend_prefix_filter_ok(rule, kind):
    if has(rule, "backendRefs") and exists_one(
            rule["backendRefs"], lambda b: has(b, "filters") and _prefix_replacing(b["filters"], kind)):
        return _single_prefix_match(rule)
    return True


PATH_CHARS = re.compile(r"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$")


def _exact_or_prefix(p):
    return p["type"] in ("Exact", "PathPrefix")


def _filter_union(field, type_name):
    """The two rules per HTTPRoute filter union member: `field` set iff type == type_name."""
    return {
        f"!(has(self.{field}) && self.type != '{type_name}')":
            lambda f: not (has(f, field) and f["type"] != type_name),
        f"!(!has(self.{field}) && self.type == '{type_name}')":
            lambda f: not (not has(f, field) and f["type"] == type_name),
    }


def _at_most_one(type_name):
    return {f"self.filter(f, f.type == '{type_name}').size() <= 1":
            lambda fs: sum(1 for f in fs if f["type"] == type_name) <= 1}


HTTPROUTE = {
    # spec.parentRefs
    "self.all(p1, self.all(p2, p1.group == p2.group && p1.kind == p2.kind && p1.name == p2.name && (((!has(p1.__namespace__) || p1.__namespace__ == '') && (!has(p2.__namespace__) || p2.__namespace__ == '')) || (has(p1.__namespace__) && has(p2.__namespace__) && p1.__namespace__ == p2.__namespace__)) ? ((!has(p1.sectionName) || p1.sectionName == '') == (!has(p2.sectionName) || p2.sectionName == '') && (!has(p1.port) || p1.port == 0) == (!has(p2.port) || p2.port == 0)): true))":
        _parent_refs_consistent,
    "self.all(p1, self.exists_one(p2, p1.group == p2.group && p1.kind == p2.kind && p1.name == p2.name && (((!has(p1.__namespace__) || p1.__namespace__ == '') && (!has(p2.__namespace__) || p2.__namespace__ == '')) || (has(p1.__namespace__) && has(p2.__namespace__) && p1.__namespace__ == p2.__namespace__ )) && (((!has(p1.sectionName) || p1.sectionName == '') && (!has(p2.sectionName) || p2.sectionName == '')) || ( has(p1.sectionName) && has(p2.sectionName) && p1.sectionName == p2.sectionName)) && (((!has(p1.port) || p1.port == 0) && (!has(p2.port) || p2.port == 0)) || (has(p1.port) && has(p2.port) && p1.port == p2.port))))":
        _parent_refs_unique,
    # spec.rules
    " + ".join(f"(self.size() > {i} ? self[{i}].matches.size() : 0)" for i in range(16)) + " <= 128":
        _matches_total,
    "self.all(l1, !has(l1.name) || self.exists_one(l2, has(l2.name) && l1.name == l2.name))":
        lambda rules: all(not has(r1, "name") or exists_one(rules, lambda r2, r1=r1: has(r2, "name") and r1["name"] == r2["name"])
                          for r1 in rules),
    # spec.rules[*]
    "(has(self.backendRefs) && size(self.backendRefs) > 0) ? (!has(self.filters) || self.filters.all(f, !has(f.requestRedirect))): true":
        lambda r: (not has(r, "filters") or all(not has(f, "requestRedirect") for f in r["filters"]))
        if (has(r, "backendRefs") and len(r["backendRefs"]) > 0) else True,
    "(has(self.filters) && self.filters.exists_one(f, has(f.requestRedirect) && has(f.requestRedirect.path) && f.requestRedirect.path.type == 'ReplacePrefixMatch' && has(f.requestRedirect.path.replacePrefixMatch))) ? ((size(self.matches) != 1 || !has(self.matches[0].path) || self.matches[0].path.type != 'PathPrefix') ? false : true) : true":
        lambda r: _rule_prefix_filter_ok(r, "requestRedirect"),
    "(has(self.filters) && self.filters.exists_one(f, has(f.urlRewrite) && has(f.urlRewrite.path) && f.urlRewrite.path.type == 'ReplacePrefixMatch' && has(f.urlRewrite.path.replacePrefixMatch))) ? ((size(self.matches) != 1 || !has(self.matches[0].path) || self.matches[0].path.type != 'PathPrefix') ? false : true) : true":
        lambda r: _rule_prefix_filter_ok(r, "urlRewrite"),
    "(has(self.backendRefs) && self.backendRefs.exists_one(b, (has(b.filters) && b.filters.exists_one(f, has(f.requestRedirect) && has(f.requestRedirect.path) && f.requestRedirect.path.type == 'ReplacePrefixMatch' && has(f.requestRedirect.path.replacePrefixMatch))) )) ? ((size(self.matches) != 1 || !has(self.matches[0].path) || self.matches[0].path.type != 'PathPrefix') ? false : true) : true":
        lambda r: _backend_prefix_filter_ok(r, "requestRedirect"),
    "(has(self.backendRefs) && self.backendRefs.exists_one(b, (has(b.filters) && b.filters.exists_one(f, has(f.urlRewrite) && has(f.urlRewrite.path) && f.urlRewrite.path.type == 'ReplacePrefixMatch' && has(f.urlRewrite.path.replacePrefixMatch))) )) ? ((size(self.matches) != 1 || !has(self.matches[0].path) || self.matches[0].path.type != 'PathPrefix') ? false : true) : true":
        lambda r: _backend_prefix_filter_ok(r, "urlRewrite"),
    # spec.rules[*].backendRefs[*]
    "(size(self.group) == 0 && self.kind == 'Service') ? has(self.port) : true":
        lambda b: has(b, "port") if (len(b["group"]) == 0 and b["kind"] == "Service") else True,
    # spec.rules[*].matches[*].path
    "self.type in ['Exact','PathPrefix'] || self.type == 'RegularExpression'":
        lambda p: p["type"] in ("Exact", "PathPrefix", "RegularExpression"),
    "(self.type in ['Exact','PathPrefix']) ? self.value.startsWith('/') : true":
        lambda p: p["value"].startswith("/") if _exact_or_prefix(p) else True,
    "(self.type in ['Exact','PathPrefix']) ? !self.value.contains('//') : true":
        lambda p: "//" not in p["value"] if _exact_or_prefix(p) else True,
    "(self.type in ['Exact','PathPrefix']) ? !self.value.contains('/./') : true":
        lambda p: "/./" not in p["value"] if _exact_or_prefix(p) else True,
    "(self.type in ['Exact','PathPrefix']) ? !self.value.contains('/../') : true":
        lambda p: "/../" not in p["value"] if _exact_or_prefix(p) else True,
    "(self.type in ['Exact','PathPrefix']) ? !self.value.contains('%2f') : true":
        lambda p: "%2f" not in p["value"] if _exact_or_prefix(p) else True,
    "(self.type in ['Exact','PathPrefix']) ? !self.value.contains('%2F') : true":
        lambda p: "%2F" not in p["value"] if _exact_or_prefix(p) else True,
    "(self.type in ['Exact','PathPrefix']) ? !self.value.contains('#') : true":
        lambda p: "#" not in p["value"] if _exact_or_prefix(p) else True,
    "(self.type in ['Exact','PathPrefix']) ? !self.value.endsWith('/..') : true":
        lambda p: not p["value"].endswith("/..") if _exact_or_prefix(p) else True,
    "(self.type in ['Exact','PathPrefix']) ? !self.value.endsWith('/.') : true":
        lambda p: not p["value"].endswith("/.") if _exact_or_prefix(p) else True,
    '(self.type in [\'Exact\',\'PathPrefix\']) ? self.value.matches(r"""^(?:[-A-Za-z0-9/._~!$&\'()*+,;=:@]|[%][0-9a-fA-F]{2})+$""") : true':
        lambda p: bool(PATH_CHARS.match(p["value"])) if _exact_or_prefix(p) else True,
    # spec.rules[*].filters and spec.rules[*].backendRefs[*].filters (same rules at both places)
    "!(self.exists(f, f.type == 'RequestRedirect') && self.exists(f, f.type == 'URLRewrite'))":
        lambda fs: not (any(f["type"] == "RequestRedirect" for f in fs) and any(f["type"] == "URLRewrite" for f in fs)),
    **_at_most_one("CORS"),
    **_at_most_one("RequestHeaderModifier"),
    **_at_most_one("ResponseHeaderModifier"),
    **_at_most_one("RequestRedirect"),
    **_at_most_one("URLRewrite"),
    **_filter_union("cors", "CORS"),
    **_filter_union("requestHeaderModifier", "RequestHeaderModifier"),
    **_filter_union("responseHeaderModifier", "ResponseHeaderModifier"),
    **_filter_union("requestMirror", "RequestMirror"),
    **_filter_union("requestRedirect", "RequestRedirect"),
    **_filter_union("urlRewrite", "URLRewrite"),
    **_filter_union("extensionRef", "ExtensionRef"),
    **_filter_union("externalAuth", "ExternalAuth"),
}

GATEWAY_API = {**GATEWAY, **HTTPROUTE}


# ---- Envoy Gateway: EnvoyExtensionPolicy --------------------------------------------------------

ROUTE_KINDS = ("HTTPRoute", "GRPCRoute", "UDPRoute", "TCPRoute", "TLSRoute")
TARGET_KINDS = ("Gateway", "ListenerSet") + ROUTE_KINDS

ENVOY_GATEWAY = {
    # spec
    "(has(self.targetRef) && !has(self.targetRefs)) || (!has(self.targetRef) && has(self.targetRefs)) || (has(self.targetSelectors) && self.targetSelectors.size() > 0)":
        lambda s: ((has(s, "targetRef") and not has(s, "targetRefs")) or (not has(s, "targetRef") and has(s, "targetRefs"))
                   or (has(s, "targetSelectors") and len(s["targetSelectors"]) > 0)),
    "has(self.targetRef) ? self.targetRef.group == 'gateway.networking.k8s.io' : true":
        lambda s: s["targetRef"]["group"] == "gateway.networking.k8s.io" if has(s, "targetRef") else True,
    "has(self.targetRef) ? self.targetRef.kind in ['Gateway', 'ListenerSet', 'HTTPRoute', 'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute'] : true":
        lambda s: s["targetRef"]["kind"] in TARGET_KINDS if has(s, "targetRef") else True,
    "has(self.targetRefs) ? self.targetRefs.all(ref, ref.group == 'gateway.networking.k8s.io') : true":
        lambda s: all(r["group"] == "gateway.networking.k8s.io" for r in s["targetRefs"]) if has(s, "targetRefs") else True,
    "has(self.targetRefs) ? self.targetRefs.all(ref, ref.kind in ['Gateway', 'ListenerSet', 'HTTPRoute', 'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute']) : true":
        lambda s: all(r["kind"] in TARGET_KINDS for r in s["targetRefs"]) if has(s, "targetRefs") else True,
    "!has(self.mergeType) || ((!has(self.targetRef) || self.targetRef.kind in ['HTTPRoute', 'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute']) && (!has(self.targetRefs) || self.targetRefs.all(ref, ref.kind in ['HTTPRoute', 'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute'])) && (!has(self.targetSelectors) || self.targetSelectors.all(sel, sel.kind in ['HTTPRoute', 'GRPCRoute', 'UDPRoute', 'TCPRoute', 'TLSRoute'])))":
        lambda s: (not has(s, "mergeType")
                   or ((not has(s, "targetRef") or s["targetRef"]["kind"] in ROUTE_KINDS)
                       and (not has(s, "targetRefs") or all(r["kind"] in ROUTE_KINDS for r in s["targetRefs"]))
                       and (not has(s, "targetSelectors") or all(t["kind"] in ROUTE_KINDS for t in s["targetSelectors"])))),
    # spec.mergeType
    "self != 'Replace'": lambda v: v != "Replace",
    # spec.wasm[*].code
    "self.type == 'HTTP' ? has(self.http) : !has(self.http)":
        lambda c: has(c, "http") if c["type"] == "HTTP" else not has(c, "http"),
    "self.type == 'Image' ? has(self.image) : !has(self.image)":
        lambda c: has(c, "image") if c["type"] == "Image" else not has(c, "image"),
    # spec.wasm[*].code.image.pullSecretRef
    "self.kind == 'Secret'": lambda r: r["kind"] == "Secret",
}
