#!/usr/bin/env python3
"""The sha256 values pinned in the Istio and Envoy Gateway examples, against the digests the build
records in examples/oci-digests.json.

    python3 tests/manifests/oci_digests.py            show every pin and whether it matches
    python3 tests/manifests/oci_digests.py --write    rewrite the pins from examples/oci-digests.json
                                                      (only the quoted value changes; comments stay)

examples/oci-digests.json (written by the OCI build, `make oci`):

    {
      "wasm_sha256":              "<64 hex>",          sha256 of dist/subset_router.wasm
      "compat_image_digest":      "sha256:<64 hex>",   manifest digest of the compat image
      "artifact_manifest_digest": "sha256:<64 hex>",   manifest digest of the Wasm OCI artifact
                                                       (config + one application/vnd.module.wasm.
                                                       content.layer.v1+wasm layer)
      "native_sha256":            "<64 hex>"           sha256 of dist/libsubset_router.so
    }

Which digest each pin must equal (PIN_SOURCES): an OCI reference (WasmPlugin `url: oci://...`,
EnvoyExtensionPolicy `code.type: Image`) pins the image's manifest digest, which is what Istio
and Envoy Gateway compare `sha256` with (without the "sha256:" prefix); the examples reference
the Wasm OCI artifact, whose digest the build computes offline and reproducibly. An HTTP(S)
reference pins the file's own sha256; the dynamic module pins the .so's sha256 (the EnvoyProxy's
init container that fetches it checks env SUBSET_ROUTER_SHA256).
Change PIN_SOURCES["oci"] to "compat_image_digest" if the examples' image reference is the
compat image instead.
"""
import json
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DIGESTS_FILE = os.path.join(ROOT, "examples", "oci-digests.json")
EXAMPLE_DIRS = [os.path.join(ROOT, "examples", d) for d in ("istio", "envoy-gateway")]

PIN_SOURCES = {
    "oci": "artifact_manifest_digest",
    "http": "wasm_sha256",
    "native": "native_sha256",
}
HEX64 = re.compile(r"^[a-f0-9]{64}$")
DIGEST_FORMATS = {
    "wasm_sha256": HEX64,
    "native_sha256": HEX64,
    "compat_image_digest": re.compile(r"^sha256:[a-f0-9]{64}$"),
    "artifact_manifest_digest": re.compile(r"^sha256:[a-f0-9]{64}$"),
}


class Pin:
    """One pinned sha256: where it is (file, YAML path, the scalar node for rewriting) and which
    entry of oci-digests.json it must equal."""

    def __init__(self, path, doc_index, yaml_path, node, source):
        self.path, self.doc_index, self.yaml_path, self.node, self.source = path, doc_index, yaml_path, node, source

    @property
    def value(self):
        return self.node.value

    def where(self):
        return f"{os.path.relpath(self.path, ROOT)}#{self.doc_index}:{'.'.join(map(str, self.yaml_path))}"


def _get(node, *keys):
    """The YAML node at keys (mapping keys / sequence indexes), or None."""
    for k in keys:
        if isinstance(k, int):
            if not isinstance(node, yaml.SequenceNode) or k >= len(node.value):
                return None
            node = node.value[k]
        else:
            if not isinstance(node, yaml.MappingNode):
                return None
            for kn, vn in node.value:
                if kn.value == k:
                    node = vn
                    break
            else:
                return None
    return node


def _seq_len(node):
    return len(node.value) if isinstance(node, yaml.SequenceNode) else 0


def pins_in_file(path):
    """Every pinned (or pin-able) sha256 in one YAML file, and the problems found (a WasmPlugin
    or a Wasm code source without a sha256)."""
    pins, problems = [], []
    with open(path, encoding="utf-8") as f:
        docs = list(yaml.compose_all(f))
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        kind = getattr(_get(doc, "kind"), "value", None)
        spec = _get(doc, "spec")
        rel = f"{os.path.relpath(path, ROOT)}#{i} ({kind})"
        if kind == "WasmPlugin":
            url = getattr(_get(spec, "url"), "value", "")
            source = "http" if re.match(r"^https?://", url) else ("oci" if not url.startswith("file://") else None)
            node = _get(spec, "sha256")
            if source and node is None:
                problems.append(f"{rel}: url {url} is not pinned (no spec.sha256)")
            elif source:
                pins.append(Pin(path, i, ("spec", "sha256"), node, source))
        elif kind == "EnvoyExtensionPolicy":
            for w in range(_seq_len(_get(spec, "wasm"))):
                code = _get(spec, "wasm", w, "code")
                ctype = getattr(_get(code, "type"), "value", None)
                key, source = {"Image": ("image", "oci"), "HTTP": ("http", "http")}.get(ctype, (None, None))
                if key is None:
                    continue
                node = _get(code, key, "sha256")
                if node is None:
                    problems.append(f"{rel}: spec.wasm[{w}].code.{key} is not pinned (no sha256)")
                else:
                    pins.append(Pin(path, i, ("spec", "wasm", w, "code", key, "sha256"), node, source))
        elif kind == "EnvoyProxy":
            # A module fetched by an init container that checks it: env SUBSET_ROUTER_SHA256.
            deploy = _get(spec, "provider", "kubernetes", "envoyDeployment")
            for c in range(_seq_len(_get(deploy, "initContainers"))):
                env = _get(deploy, "initContainers", c, "env")
                for e in range(_seq_len(env)):
                    if getattr(_get(env, e, "name"), "value", None) == "SUBSET_ROUTER_SHA256":
                        node = _get(env, e, "value")
                        pins.append(Pin(path, i, ("spec", "provider", "kubernetes", "envoyDeployment",
                                                  "initContainers", c, "env", e, "value"), node, "native"))
            # A module Envoy downloads itself (source.type Remote).
            for m in range(_seq_len(_get(spec, "dynamicModules"))):
                node = _get(spec, "dynamicModules", m, "source", "remote", "sha256")
                if node is not None:
                    pins.append(Pin(path, i, ("spec", "dynamicModules", m, "source", "remote", "sha256"), node, "native"))
    return pins, problems


def all_pins(dirs=None):
    pins, problems = [], []
    for d in dirs or EXAMPLE_DIRS:
        for dirpath, dirnames, filenames in os.walk(d):
            dirnames.sort()
            for fn in sorted(filenames):
                if fn.endswith((".yaml", ".yml")):
                    p, q = pins_in_file(os.path.join(dirpath, fn))
                    pins += p
                    problems += q
    return pins, problems


def load_digests(path=DIGESTS_FILE):
    """The digests file as a dict, or None when it does not exist. Raises ValueError when it
    exists but is malformed."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except ValueError as e:
            raise ValueError(f"{path}: not JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    for k, v in data.items():
        fmt = DIGEST_FORMATS.get(k)
        if fmt is not None and not (isinstance(v, str) and fmt.match(v)):
            raise ValueError(f"{path}: {k} = {v!r} is not in the form {fmt.pattern}")
    return data


def expected(pin, digests):
    """The hex the pin must hold, or None when oci-digests.json has no entry for it."""
    v = digests.get(PIN_SOURCES[pin.source])
    if v is None:
        return None
    return v.split(":", 1)[1] if v.startswith("sha256:") else v


def write(pins, digests):
    """Rewrite every pin that differs, in place, keeping the rest of each file byte for byte."""
    changed = 0
    by_file = {}
    for p in pins:
        want = expected(p, digests)
        if want is not None and p.value != want:
            by_file.setdefault(p.path, []).append((p, want))
    for path, edits in by_file.items():
        with open(path, encoding="utf-8") as f:
            text = f.read()
        # Bottom-up, so earlier offsets stay valid.
        for p, want in sorted(edits, key=lambda e: e[0].node.start_mark.index, reverse=True):
            s, e = p.node.start_mark.index, p.node.end_mark.index
            text = text[:s] + f'"{want}"' + text[e:]
            changed += 1
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return changed


def check_pins(test, dirs, label):
    """unittest helper: the pins under `dirs` equal examples/oci-digests.json. Without that file:
    fail under CI=true, else a loud SKIP naming the file."""
    rel = os.path.relpath(DIGESTS_FILE, ROOT)
    digests = load_digests()
    if digests is None:
        msg = (f"{rel} does not exist, so the sha256 pinned in {label} cannot be checked against the build. "
               f"The OCI build (make oci) must write it as "
               f'{{"wasm_sha256": "<hex>", "compat_image_digest": "sha256:<hex>", '
               f'"artifact_manifest_digest": "sha256:<hex>", "native_sha256": "<hex>"}}; '
               f"then: python3 tests/manifests/oci_digests.py --write")
        if os.environ.get("CI", "").strip().lower() == "true":
            test.fail(msg)
        print("\n" + "!" * 100 + f"\n!! SKIP (not under CI=true): {msg}\n" + "!" * 100, file=sys.stderr)
        test.skipTest(f"{rel} missing (this check fails under CI=true)")
    pins, _ = all_pins(dirs)
    test.assertTrue(pins, f"no pinned sha256 in {label}")
    for p in pins:
        with test.subTest(pin=p.where()):
            want = expected(p, digests)
            test.assertIsNotNone(want, f"{rel} has no {PIN_SOURCES[p.source]} (needed by {p.where()})")
            test.assertEqual(p.value, want, f"{p.where()} pins {p.value}, the build's {PIN_SOURCES[p.source]} "
                                            f"is {want}: python3 tests/manifests/oci_digests.py --write")


def main(argv):
    do_write = "--write" in argv
    try:
        digests = load_digests()
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1
    pins, problems = all_pins()
    for q in problems:
        print(f"NOT PINNED  {q}")
    if digests is None:
        print(f"{os.path.relpath(DIGESTS_FILE, ROOT)} does not exist: build the OCI artifacts first (make oci)")
        for p in pins:
            print(f"  {p.where()}: {p.value}  ({PIN_SOURCES[p.source]})")
        return 1
    bad = 0
    for p in pins:
        want = expected(p, digests)
        state = "ok" if p.value == want else ("no entry" if want is None else "DIFFERS")
        bad += state != "ok"
        print(f"  {state:8} {p.where()}: {p.value}  ({PIN_SOURCES[p.source]}: {want})")
    if do_write:
        n = write(pins, digests)
        print(f"rewrote {n} pin(s)")
        return 1 if problems else 0
    return 1 if (bad or problems) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
