#!/usr/bin/env python3
"""Check the OCI image that `make oci` builds, through `docker save` (standard library only).

    python3 tests/examples/check_oci_image.py IMAGE dist/subset_router.wasm

Istio's compat layout: exactly one layer, holding exactly one regular file, `plugin.wasm`
(at the image root), whose bytes equal the built filter. Handles both `docker save`
formats: the legacy one (`<id>/layer.tar`) and the OCI layout of newer engines
(`blobs/sha256/<digest>`), named by manifest.json's `Layers`.
"""
import hashlib
import io
import json
import subprocess
import sys
import tarfile


def main(image, wasm_path):
    with open(wasm_path, "rb") as f:
        want = f.read()
    saved = subprocess.run(["docker", "save", image], check=True, capture_output=True).stdout
    outer = tarfile.open(fileobj=io.BytesIO(saved))
    manifest = json.load(outer.extractfile("manifest.json"))
    if len(manifest) != 1:
        return fail(f"docker save produced {len(manifest)} image manifests, expected 1")
    layers = manifest[0]["Layers"]
    if len(layers) != 1:
        return fail(f"{image} has {len(layers)} layers, expected exactly 1: {layers}")
    layer = tarfile.open(fileobj=outer.extractfile(layers[0]))
    members = [m for m in layer.getmembers() if not m.isdir()]
    names = [m.name.lstrip("./") or m.name for m in members]
    if names != ["plugin.wasm"]:
        return fail(f"the layer holds {names}, expected only plugin.wasm")
    if not members[0].isfile():
        return fail("plugin.wasm in the layer is not a regular file")
    got = layer.extractfile(members[0]).read()
    if got != want:
        return fail(f"plugin.wasm ({len(got)} bytes, sha256 {hashlib.sha256(got).hexdigest()[:12]}) differs from "
                    f"{wasm_path} ({len(want)} bytes, sha256 {hashlib.sha256(want).hexdigest()[:12]})")
    cfg_name = manifest[0].get("Config")
    arch = ""
    if cfg_name:
        cfg = json.load(outer.extractfile(cfg_name))
        arch = f", config os/arch {cfg.get('os')}/{cfg.get('architecture')}"
    print(f"ok: {image}: 1 layer, plugin.wasm = {len(got)} bytes, sha256 {hashlib.sha256(got).hexdigest()}, "
          f"identical to {wasm_path}{arch}")
    return 0


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
