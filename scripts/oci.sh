#!/usr/bin/env bash
# The filter as OCI images for Istio (WasmPlugin `url: oci://...`) and Envoy Gateway
# (EnvoyExtensionPolicy `code.type: Image`), built without Docker.
#
#   scripts/oci.sh build    (make oci)   build the .wasm and the .so, write both OCI image layouts,
#                           examples/oci-digests.json, and re-pin the examples from it
#                           (python3 tests/manifests/oci_digests.py --write)
#   scripts/oci.sh layout   the two layouts only, examples/ untouched (what `make test-examples`
#                           checks against the committed pins)
#   scripts/oci.sh push     (make push REGISTRY=registry.example.com/team)   build, then
#                           skopeo copy --preserve-digests both layouts to the registry
#   scripts/oci.sh tag      print the two image references only
#
#   REGISTRY     registry and path the images go under; required for push
#   VERSION      tag (default: the filter crate's version, filter/core/Cargo.toml)
#   SKOPEO_FLAGS extra `skopeo copy` flags for push, e.g. --dest-tls-verify=false or
#                --dest-creds=user:token (default: the credentials of `skopeo login`/`docker login`)
#
# The layouts (crate oci/, binary oci-layout; same bytes on every machine for the same .wasm;
# VERSION only names them in index.json, the digests do not depend on it):
#   dist/oci/artifact  the Wasm OCI artifact: config application/vnd.module.wasm.config.v1+json,
#                      layers [that runtime config, application/vnd.module.wasm.content.layer.v1+wasm
#                      = the .wasm]. Pushed as $REGISTRY/subset-router:$VERSION; the examples pin it.
#   dist/oci/compat    Istio's compat image: OCI image config, one tar+gzip layer holding only
#                      plugin.wasm. Pushed as $REGISTRY/subset-router:$VERSION-compat, for tools
#                      and registries that only handle container images.
# Istio and Envoy Gateway read both (their fetchers' rules: oci/src/lib.rs,
# tests/examples/check_oci_image.py). Last stdout line: the artifact's manifest digest.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

cmd="${1:-build}"
version="${VERSION:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' filter/core/Cargo.toml | head -n1)}"
[ -n "$version" ] || die "cannot read the version from filter/core/Cargo.toml (set VERSION=)"
registry="${REGISTRY:-}"; registry="${registry%/}"
repo="${registry:-subset-router}/subset-router"
ARTIFACT_REF="$repo:$version"
COMPAT_REF="$repo:$version-compat"
OUT=dist/oci
DIGESTS=examples/oci-digests.json

# layouts [--digests FILE]: build the .wasm and the .so, then dist/oci/{artifact,compat}.
layouts() {
  scripts/build-wasm.sh subset-router-wasm "$ROOT/dist/subset_router.wasm" >/dev/null
  scripts/build-native.sh "$ROOT/dist/libsubset_router.so" >/dev/null
  log "oci-layout (cargo run --release -p subset-router-oci): $OUT/artifact and $OUT/compat, tag $version"
  ( host_env; cargo run -q --release -p subset-router-oci --bin oci-layout -- \
      --wasm dist/subset_router.wasm --native dist/libsubset_router.so --out "$OUT" --tag "$version" "$@" )
}

# A python3 that has PyYAML (tests/manifests/oci_digests.py needs it).
yaml_python() {
  local py
  for py in python3 "$CACHE_DIR/venv-examples/bin/python"; do
    if [ -x "$(command -v "$py" || true)" ] && "$py" -c 'import yaml' 2>/dev/null; then echo "$py"; return; fi
  done
  apt_ensure python3-yaml
  echo python3
}

build() {
  local out py
  out="$(layouts --digests "$DIGESTS")"
  printf '%s\n' "$out" | sed '$d'
  py="$(yaml_python)"
  log "re-pinning the examples from $DIGESTS: $py tests/manifests/oci_digests.py --write"
  "$py" tests/manifests/oci_digests.py --write >&2
  local hex; hex="$(tail -n1 <<<"$out")"; hex="${hex#sha256:}"
  log "WasmPlugin / EnvoyExtensionPolicy: url oci://${registry:-<REGISTRY>}/subset-router:$version, sha256 $hex" \
      "(compat image: :$version-compat, sha256 $(sed -n 's/.*"compat_image_digest": "sha256:\([0-9a-f]*\)".*/\1/p' "$DIGESTS"))"
  tail -n1 <<<"$out"
}

push() {
  [ -n "$registry" ] || die "make push needs REGISTRY=<registry>/<path>, e.g. make push REGISTRY=ghcr.io/your-org"
  command -v skopeo >/dev/null 2>&1 || apt_ensure skopeo
  local out layout ref want got tmp
  out="$(build)"
  printf '%s\n' "$out" | sed '$d'
  tmp="$(mktemp)"
  for layout in artifact compat; do
    if [ "$layout" = artifact ]; then ref="$ARTIFACT_REF"; else ref="$COMPAT_REF"; fi
    want="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$OUT/$layout/index.json")"
    log "skopeo copy --preserve-digests oci:$OUT/$layout:$version docker://$ref (log in first: skopeo login ${registry%%/*})"
    # --preserve-digests: fail rather than convert the manifest; the registry must serve these
    # exact bytes, their digest is what the examples pin.
    # shellcheck disable=SC2086  # SKOPEO_FLAGS is a list of flags
    skopeo copy --preserve-digests --digestfile "$tmp" ${SKOPEO_FLAGS:-} "oci:$OUT/$layout:$version" "docker://$ref" >&2
    got="$(cat "$tmp")"
    [ "$got" = "$want" ] || { rm -f "$tmp"; die "docker://$ref got manifest $got, the layout has $want"; }
    log "pushed $ref@$want"
    echo "pushed $ref@$want"
  done
  rm -f "$tmp"
  log "WasmPlugin / EnvoyExtensionPolicy: url oci://$ARTIFACT_REF, sha256 $(tail -n1 <<<"$out" | sed 's/^sha256://')"
  tail -n1 <<<"$out"
}

case "$cmd" in
  tag) printf '%s\n%s\n' "$COMPAT_REF" "$ARTIFACT_REF" ;;
  layout) layouts ;;
  build) build ;;
  push) push ;;
  *) die "usage: $0 build|layout|push|tag" ;;
esac
