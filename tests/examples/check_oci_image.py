#!/usr/bin/env python3
"""Check the two OCI image layouts `make oci` writes (dist/oci/artifact, dist/oci/compat) the way
their consumers read them. Standard library + skopeo (Debian package skopeo); no Docker.

    python3 tests/examples/check_oci_image.py [--layouts dist/oci] [--wasm dist/subset_router.wasm]
        [--native dist/libsubset_router.so] [--digests examples/oci-digests.json] [--tag 0.1.0]

1. skopeo reads each layout: `skopeo inspect --raw oci:<dir>:<tag>` (the manifest bytes, whose
   sha256 must be index.json's digest) and `--config`; `skopeo copy --preserve-digests` to a
   `dir:` copy keeps that digest (what `make push` relies on).
2. Each manifest, read from the skopeo copy, is fed to FETCHER below, a transcription of the Wasm
   image fetcher of Istio and Envoy Gateway, and must yield bytes equal to the .wasm; then the
   stricter shape this project promises (RULES_ARTIFACT / RULES_COMPAT) is checked. The fetcher
   transcription is itself checked against the published failures (higress#4528: a manifest
   whose only layer is the raw wasm; engineerd/wasm-to-oci#45: wasm config as `config` + one
   wasm layer), which it must reject with the fetchers' own error text.
3. examples/oci-digests.json equals what was just built (wasm_sha256, artifact_manifest_digest,
   compat_image_digest, native_sha256), so a stale pin fails here.

FETCHER -- istio/istio pkg/wasm/imagefetcher.go (PrepareFetch, extractDockerImage,
extractOCIStandardImage, extractOCIArtifactImage, extractWasmPluginBinary) and its copy
envoyproxy/gateway internal/wasm/imagefetcher.go (read 2026, commit 0b8ea0eb), over
go-containerregistry, where `img.Layers()` is `manifest.layers` (never the config) and a layer's
media type is that of the first descriptor with its digest, the config's first
(partial.BlobDescriptor):
  * sha256 pin = hex of sha256(manifest bytes) (`img.Digest()`), compared by the caller.
  * manifest mediaType application/vnd.docker.distribution.manifest.v2+json: the last layer must
    be application/vnd.docker.image.rootfs.diff.tar.gzip (then as compat below).
  * otherwise "compat" first: at least one layer ("number of layers must be greater than zero");
    the LAST layer's media type must be application/vnd.oci.image.layer.v1.tar+gzip ("invalid
    media type %s (expect %s)"); it is gunzipped and untarred and the first entry whose
    filepath.Base is plugin.wasm is the module ("plugin.wasm not found in the archive");
  * then the "oci" variant: exactly two layers ("number of layers must be 2 but got %d"); the
    first with media type application/vnd.module.wasm.content.layer.v1+wasm is the module, read
    raw ("could not find the layer of type ..."); the other layer is not read.
  * both failing: "the given image is in invalid format as an OCI image".
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
REF_NAME = "org.opencontainers.image.ref.name"


class Rejected(Exception):
    pass


def sha256(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


# ---- FETCHER: what Istio and Envoy Gateway accept (see the module docstring) ----

def _layer_media_type(manifest, desc):
    cfg = manifest.get("config") or {}
    if cfg.get("digest") == desc["digest"]:
        return cfg.get("mediaType")
    return desc.get("mediaType")


def _plugin_from_tar_gzip(data):
    try:
        tar = tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:")
    except (OSError, EOFError, tarfile.TarError) as e:
        raise Rejected(f"failed to parse layer as tar.gz: {e}")
    for member in tar:
        if os.path.basename(member.name) == "plugin.wasm":
            f = tar.extractfile(member)
            return f.read() if f else b""
    raise Rejected("plugin.wasm not found in the archive")


def _extract_last_tar_layer(manifest, blob, want_type):
    layers = manifest.get("layers") or []
    if not layers:
        raise Rejected("number of layers must be greater than zero")
    mt = _layer_media_type(manifest, layers[-1])
    if mt != want_type:
        raise Rejected(f"invalid media type {mt} (expect {want_type})")
    return _plugin_from_tar_gzip(blob(layers[-1]["digest"]))


def _extract_oci_artifact(manifest, blob):
    layers = manifest.get("layers") or []
    if len(layers) != 2:
        raise Rejected(f"number of layers must be 2 but got {len(layers)}")
    for desc in layers:
        if _layer_media_type(manifest, desc) == WASM_LAYER:
            return blob(desc["digest"])
    raise Rejected(f"could not find the layer of type {WASM_LAYER}")


def fetch(manifest, blob):
    """(variant, module bytes) as the fetchers would extract them, or Rejected with their error."""
    if manifest.get("mediaType") == DOCKER_MANIFEST:
        return "docker", _extract_last_tar_layer(manifest, blob, DOCKER_LAYER)
    try:
        return "compat", _extract_last_tar_layer(manifest, blob, OCI_TAR_GZIP)
    except Rejected as e:
        err_compat = e
    try:
        return "oci", _extract_oci_artifact(manifest, blob)
    except Rejected as e:
        err_oci = e
    raise Rejected("the given image is in invalid format as an OCI image: "
                   f"could not parse as compat variant: {err_compat}; could not parse as oci variant: {err_oci}")


def self_test_fetcher():
    """The transcription must reproduce the published failures and accept the spec's shapes."""
    wasm = b"\0asm\x01\0\0\0"
    cfg = b"{}"
    plugin_tgz = io.BytesIO()
    with tarfile.open(fileobj=plugin_tgz, mode="w:gz") as t:
        info = tarfile.TarInfo("plugin.wasm")
        info.size = len(wasm)
        t.addfile(info, io.BytesIO(wasm))
    blobs = {sha256(b): b for b in (wasm, cfg, plugin_tgz.getvalue())}

    def d(mt, b):
        return {"mediaType": mt, "digest": sha256(b), "size": len(b)}

    cases = [
        # (what, manifest, expected variant or the error text the fetchers print)
        ("higress#4528: the raw wasm as the only layer",
         {"mediaType": OCI_MANIFEST, "config": d("application/vnd.oci.empty.v1+json", cfg), "layers": [d(WASM_LAYER, wasm)]},
         "number of layers must be 2 but got 1"),
        ("wasm-to-oci#45: wasm config as config, one wasm layer",
         {"mediaType": OCI_MANIFEST, "config": d(WASM_CONFIG, cfg), "layers": [d(WASM_LAYER, wasm)]},
         "number of layers must be 2 but got 1"),
        ("three layers",
         {"mediaType": OCI_MANIFEST, "config": d(WASM_CONFIG, cfg), "layers": [d(WASM_CONFIG, cfg), d(WASM_LAYER, wasm), d(WASM_LAYER, wasm)]},
         "number of layers must be 2 but got 3"),
        ("compat layer as uncompressed tar media type",
         {"mediaType": OCI_MANIFEST, "config": d(IMAGE_CONFIG, cfg), "layers": [d("application/vnd.oci.image.layer.v1.tar", plugin_tgz.getvalue())]},
         "invalid media type application/vnd.oci.image.layer.v1.tar"),
        ("spec oci variant: config layer + wasm layer",
         {"mediaType": OCI_MANIFEST, "config": d(WASM_CONFIG, cfg), "layers": [d(WASM_CONFIG, cfg), d(WASM_LAYER, wasm)]},
         "oci"),
        ("compat: one tar+gzip layer with plugin.wasm",
         {"mediaType": OCI_MANIFEST, "config": d(IMAGE_CONFIG, cfg), "layers": [d(OCI_TAR_GZIP, plugin_tgz.getvalue())]},
         "compat"),
    ]
    for what, manifest, want in cases:
        try:
            variant, got = fetch(manifest, blobs.__getitem__)
            if variant != want or got != wasm:
                raise AssertionError(f"fetcher transcription: {what}: got {variant}, expected {want}")
        except Rejected as e:
            if want in ("oci", "compat") or want not in str(e):
                raise AssertionError(f"fetcher transcription: {what}: rejected with {e}, expected {want}")
    return len(cases)


# ---- RULES: the stricter shapes this project builds (oci/src/lib.rs) ----

def rules_common(manifest, index_entry, tag):
    problems = []
    if manifest.get("schemaVersion") != 2 or manifest.get("mediaType") != OCI_MANIFEST:
        problems.append(f"schemaVersion/mediaType {manifest.get('schemaVersion')}/{manifest.get('mediaType')}, "
                        f"expected 2/{OCI_MANIFEST}")
    if tag and (index_entry.get("annotations") or {}).get(REF_NAME) != tag:
        problems.append(f"index.json {REF_NAME} is {(index_entry.get('annotations') or {}).get(REF_NAME)!r}, expected {tag!r}")
    return problems


def rules_artifact(manifest, blob, wasm):
    """Config = the solo-io runtime config; layers = [that config, the raw module]."""
    p = []
    cfg, layers = manifest.get("config") or {}, manifest.get("layers") or []
    if cfg.get("mediaType") != WASM_CONFIG:
        p.append(f"config mediaType {cfg.get('mediaType')}, expected {WASM_CONFIG}")
    types = [l.get("mediaType") for l in layers]
    if types != [WASM_CONFIG, WASM_LAYER]:
        p.append(f"layer media types {types}, expected [{WASM_CONFIG}, {WASM_LAYER}]")
        return p
    if layers[0]["digest"] != cfg.get("digest"):
        p.append("the runtime-config layer is not the config blob")
    try:
        rc = json.loads(blob(cfg["digest"]))
        if rc.get("type") != "envoy_proxy" or not rc.get("abiVersions") or \
                not all(re.fullmatch(r"proxy_abi_version_\d+_\d+_\d+", v) for v in rc["abiVersions"]):
            p.append(f"runtime config {rc} lacks type envoy_proxy / proxy_abi_version_* abiVersions")
        for v in rc.get("abiVersions") or []:
            if v.encode() not in wasm:
                p.append(f"the module does not export {v}")
    except ValueError as e:
        p.append(f"runtime config is not JSON: {e}")
    if layers[1]["size"] != len(wasm) or layers[1]["digest"] != sha256(wasm):
        p.append("the wasm layer descriptor is not the module's size/digest")
    return p


def rules_compat(manifest, blob, wasm):
    """One tar+gzip layer holding exactly one regular file plugin.wasm; fixed metadata."""
    p = []
    cfg, layers = manifest.get("config") or {}, manifest.get("layers") or []
    if cfg.get("mediaType") != IMAGE_CONFIG:
        p.append(f"config mediaType {cfg.get('mediaType')}, expected {IMAGE_CONFIG}")
    if [l.get("mediaType") for l in layers] != [OCI_TAR_GZIP]:
        p.append(f"layers {[l.get('mediaType') for l in layers]}, expected exactly one {OCI_TAR_GZIP}")
        return p
    gz = blob(layers[0]["digest"])
    flags, mtime = gz[3], int.from_bytes(gz[4:8], "little")
    if gz[:3] != b"\x1f\x8b\x08" or flags != 0 or mtime != 0:
        p.append(f"gzip header flags {flags:#x} mtime {mtime}: expected no name/comment/extra and mtime 0")
    raw = gzip.decompress(gz)
    members = list(tarfile.open(fileobj=io.BytesIO(raw), mode="r:"))
    if [m.name for m in members] != ["plugin.wasm"]:
        p.append(f"the layer holds {[m.name for m in members]}, expected only plugin.wasm")
    for m in members:
        if not m.isreg() or (m.mode, m.uid, m.gid, m.mtime, m.uname, m.gname) != (0o644, 0, 0, 0, "", ""):
            p.append(f"{m.name}: type {m.type!r} mode {m.mode:o} uid/gid {m.uid}/{m.gid} mtime {m.mtime} "
                     f"owner {m.uname!r}/{m.gname!r}; expected a regular file 644 0/0 mtime 0, no owner names")
    try:
        conf = json.loads(blob(cfg["digest"]))
        if (conf.get("rootfs") or {}).get("diff_ids") != [sha256(raw)] or conf["rootfs"].get("type") != "layers":
            p.append(f"config rootfs {conf.get('rootfs')} does not name the layer's diff_id {sha256(raw)}")
        if not conf.get("os") or not conf.get("architecture"):
            p.append("config lacks os/architecture")
    except ValueError as e:
        p.append(f"image config is not JSON: {e}")
    return p


# ---- skopeo ----

def skopeo(*args, binary=True):
    r = subprocess.run(["skopeo", *args], capture_output=True)
    if r.returncode != 0:
        raise SystemExit(f"FAIL: skopeo {' '.join(args)}: {r.stderr.decode(errors='replace').strip()}")
    return r.stdout if binary else r.stdout.decode()


def check_layout(kind, layout, tag, wasm, tmp):
    """Returns (manifest digest, problems)."""
    problems = []
    with open(os.path.join(layout, "index.json"), "rb") as f:
        index = json.loads(f.read())
    entries = index.get("manifests") or []
    if index.get("schemaVersion") != 2 or len(entries) != 1 or entries[0].get("mediaType") != OCI_MANIFEST:
        return None, [f"index.json must name exactly one {OCI_MANIFEST}: {index}"]
    entry = entries[0]
    tag = tag or (entry.get("annotations") or {}).get(REF_NAME)
    ref = f"oci:{layout}:{tag}"

    raw = skopeo("inspect", "--raw", ref)
    digest = sha256(raw)
    if digest != entry["digest"] or len(raw) != entry["size"]:
        problems.append(f"skopeo reads manifest {digest} ({len(raw)} bytes), index.json names {entry['digest']} ({entry['size']})")
    manifest = json.loads(raw)
    config = skopeo("inspect", "--raw", "--config", ref)
    if sha256(config) != manifest["config"]["digest"]:
        problems.append("skopeo's --config bytes are not the config blob")

    # Every descriptor's blob is in the layout with its size and digest, and nothing else is.
    blob_dir = os.path.join(layout, "blobs", "sha256")
    wanted = {digest} | {d["digest"] for d in [manifest["config"], *manifest["layers"]]}
    for d in [manifest["config"], *manifest["layers"]]:
        path = os.path.join(blob_dir, d["digest"].split(":", 1)[1])
        with open(path, "rb") as f:
            b = f.read()
        if sha256(b) != d["digest"] or len(b) != d["size"]:
            problems.append(f"blob {d['digest']} does not match its descriptor")
    extra = sorted(set("sha256:" + n for n in os.listdir(blob_dir)) - wanted)
    if extra:
        problems.append(f"unreferenced blobs in {blob_dir}: {extra}")

    # The copy a registry would receive (make push uses the same skopeo copy).
    copy_dir = os.path.join(tmp, kind)
    skopeo("copy", "-q", "--preserve-digests", ref, f"dir:{copy_dir}")
    with open(os.path.join(copy_dir, "manifest.json"), "rb") as f:
        if sha256(f.read()) != digest:
            problems.append("skopeo copy changed the manifest digest")

    def blob(dg):
        with open(os.path.join(copy_dir, dg.split(":", 1)[1]), "rb") as f:
            return f.read()

    try:
        variant, module = fetch(manifest, blob)
    except Rejected as e:
        return digest, problems + [f"Istio/Envoy Gateway would reject it: {e}"]
    want_variant = "oci" if kind == "artifact" else "compat"
    if variant != want_variant:
        problems.append(f"the fetchers read it as the {variant} variant, expected {want_variant}")
    if module != wasm:
        problems.append(f"the extracted module ({len(module)} bytes, {sha256(module)}) differs from the .wasm "
                        f"({len(wasm)} bytes, {sha256(wasm)})")
    problems += rules_common(manifest, entry, tag)
    problems += (rules_artifact if kind == "artifact" else rules_compat)(manifest, blob, wasm)

    layers = ", ".join(f"{l['mediaType']} {l['size']} B" for l in manifest["layers"])
    print(f"{kind:8} {ref}: {digest}; manifest {len(raw)} B; config {manifest['config']['mediaType']} "
          f"{manifest['config']['size']} B; layers [{layers}]; fetchers read it as '{variant}', "
          f"module = {len(module)} bytes {'==' if module == wasm else '!='} the .wasm")
    return digest, problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layouts", default=os.path.join(ROOT, "dist", "oci"))
    ap.add_argument("--wasm", default=os.path.join(ROOT, "dist", "subset_router.wasm"))
    ap.add_argument("--native", default=os.path.join(ROOT, "dist", "libsubset_router.so"))
    ap.add_argument("--digests", default=os.path.join(ROOT, "examples", "oci-digests.json"))
    ap.add_argument("--tag", default=None, help="expected org.opencontainers.image.ref.name (default: any)")
    a = ap.parse_args()

    n = self_test_fetcher()
    print(f"fetcher transcription: {n} cases (higress#4528 and wasm-to-oci#45 rejected with the fetchers' errors)")
    with open(a.wasm, "rb") as f:
        wasm = f.read()
    problems, built = [], {"wasm_sha256": hashlib.sha256(wasm).hexdigest()}
    with tempfile.TemporaryDirectory(prefix="check-oci-") as tmp:
        for kind, key in (("artifact", "artifact_manifest_digest"), ("compat", "compat_image_digest")):
            digest, p = check_layout(kind, os.path.join(a.layouts, kind), a.tag, wasm, tmp)
            problems += [f"{kind}: {x}" for x in p]
            built[key] = digest
    with open(a.native, "rb") as f:
        built["native_sha256"] = hashlib.sha256(f.read()).hexdigest()

    rel = os.path.relpath(a.digests, ROOT)
    try:
        with open(a.digests, encoding="utf-8") as f:
            pinned = json.load(f)
    except (OSError, ValueError) as e:
        pinned = {}
        problems.append(f"{rel}: {e}")
    stale = [k for k in ("wasm_sha256", "artifact_manifest_digest", "compat_image_digest", "native_sha256")
             if pinned.get(k) != built[k]]
    for k in stale:
        problems.append(f"{rel}: {k} is {pinned.get(k)}, the fresh build gives {built[k]}")
    if stale:
        problems.append(f"stale pins: run `make oci` (writes {rel} and re-pins examples/istio and examples/envoy-gateway)")
    else:
        print(f"{rel}: all four digests equal the fresh build")

    if problems:
        for p in problems:
            print(f"FAIL: {p}", file=sys.stderr)
        return 1
    print(f"ok: artifact {built['artifact_manifest_digest']}, compat {built['compat_image_digest']}, "
          f"wasm {built['wasm_sha256']} ({len(wasm)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
