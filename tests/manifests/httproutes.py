"""How Gateway API HTTPRoutes route on subset-router's `subsetHeader`: shared by the Istio and the
Envoy Gateway manifest tests.

A subset is *routed* when some rule matches `<subsetHeader>: <subset>` (Exact) and otherwise the
same requests as a default rule (a rule with no condition on that header), and sends them to a
single Service. So a request the filter marks `x-subset: v2` goes to v2's Service for every
path and hostname the default rule serves.
"""
import copy

GATEWAY_GROUP = "gateway.networking.k8s.io"


def namespace(doc):
    return (doc.get("metadata") or {}).get("namespace", "default")


def parents(route):
    """(group, kind, namespace, name) of each parentRef, with Gateway API's defaults."""
    return {(p.get("group", GATEWAY_GROUP), p.get("kind", "Gateway"), p.get("namespace", namespace(route)), p["name"])
            for p in route["spec"].get("parentRefs") or []}


def attached_gateways(route):
    """(namespace, name) of the Gateways an HTTPRoute attaches to."""
    return {(ns, name) for g, k, ns, name in parents(route) if g == GATEWAY_GROUP and k == "Gateway"}


def attached_services(route):
    """(namespace, name) of the Services an HTTPRoute attaches to (GAMMA: mesh routes)."""
    return {(ns, name) for g, k, ns, name in parents(route) if g in ("", "core") and k == "Service"}


def backend_services(rule):
    return [b["name"] for b in rule.get("backendRefs") or []
            if b.get("kind", "Service") == "Service" and b.get("group", "") == ""]


def norm_match(m):
    """A match with Gateway API's defaults filled in and header names lower-cased."""
    m = copy.deepcopy(m or {})
    path = m.get("path") or {}
    m["path"] = {"type": path.get("type", "PathPrefix"), "value": path.get("value", "/")}
    m["headers"] = sorted(({"name": h["name"].lower(), "type": h.get("type", "Exact"), "value": h["value"]}
                           for h in m.get("headers") or []), key=lambda h: (h["name"], h["value"]))
    return m


def rule_matches(rule):
    return [norm_match(m) for m in (rule.get("matches") or [{}])]


def split_subset_condition(match, header):
    """(subset, the rest of the match) when the match has one Exact condition on `header`,
    (None, match) when it has none; raises ValueError for any other use of the header."""
    conds = [h for h in match["headers"] if h["name"] == header.lower()]
    if not conds:
        return None, match
    if len(conds) > 1 or conds[0]["type"] != "Exact":
        raise ValueError(f"match {match} uses {header} other than as one Exact condition")
    rest = dict(match, headers=[h for h in match["headers"] if h["name"] != header.lower()])
    return conds[0]["value"], rest


def routing(routes, header):
    """(by_subset, defaults) over [(path, HTTPRoute)]: by_subset = {subset: [(where, services,
    rest of the match)]}, defaults = [(where, services, match)] for the rules without a condition on
    `header`. Hostnames are folded into the match (key "hostnames")."""
    by_subset, defaults = {}, []
    for path, route in routes:
        hosts = sorted(route["spec"].get("hostnames") or ["*"])
        for i, rule in enumerate(route["spec"].get("rules") or []):
            where = f"{path}: HTTPRoute {route['metadata']['name']} rule {rule.get('name', i)}"
            for m in rule_matches(rule):
                subset, rest = split_subset_condition(m, header)
                rest = dict(rest, hostnames=hosts)
                if subset is None:
                    defaults.append((where, backend_services(rule), rest))
                else:
                    by_subset.setdefault(subset, []).append((where, backend_services(rule), rest))
    return by_subset, defaults


def unrouted(routes, header, subsets, default_subset=None):
    """Problems (empty: none): a subset without a header-matched rule covering every default
    rule's requests with one Service; two subsets on one Service; the default rule not going to
    the default subset's Service. Returns (problems, {subset: service})."""
    problems = []
    by_subset, defaults = routing(routes, header)
    if not defaults:
        problems.append(f"no default rule (a rule without a {header} condition) for requests the filter did not mark")
    services = {}
    for s in subsets:
        entries = by_subset.get(s) or []
        if not entries:
            problems.append(f"the configuration can choose {s}, but no HTTPRoute rule matches `{header}: {s}` (Exact)")
            continue
        svcs = {tuple(svcs) for _, svcs, _ in entries}
        if len(svcs) != 1 or len(next(iter(svcs))) != 1:
            problems.append(f"`{header}: {s}` must go to exactly one Service; rules {[w for w, _, _ in entries]} go to {svcs}")
            continue
        services[s] = next(iter(svcs))[0]
        covered = [rest for _, _, rest in entries]
        for where, _, match in defaults:
            if match not in covered:
                problems.append(f"{where} serves {match}, but no `{header}: {s}` rule covers the same requests "
                                f"(a request marked {s} there would fall through to the default)")
    if len(set(services.values())) != len(services):
        problems.append(f"two subsets share a Service: {services}")
    if default_subset and default_subset in services:
        for where, svcs, _ in defaults:
            if svcs != [services[default_subset]]:
                problems.append(f"{where}: the default rule goes to {svcs}, not to the default subset "
                                f"{default_subset}'s Service {services[default_subset]}")
    return problems, services
