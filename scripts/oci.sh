#!/usr/bin/env bash
# The filter as an OCI image for Istio (WasmPlugin `url: oci://...`).
#
#   scripts/oci.sh build    (make oci)    build dist/subset_router.wasm, then the image
#   scripts/oci.sh push     (make push REGISTRY=registry.example.com/team)   build, docker push
#   scripts/oci.sh tag      print the image reference only
#
#   REGISTRY  registry and path the image goes under (default: none, i.e. the local name
#             subset-router/subset-router); required for push
#   VERSION   image tag (default: the filter crate's version, filter/core/Cargo.toml)
#
# Image: oci/Dockerfile, FROM scratch + `COPY dist/subset_router.wasm ./plugin.wasm`
# (Istio's compat layout: one layer, the module at /plugin.wasm), built with the classic
# builder (DOCKER_BUILDKIT=0) from a context holding only the .wasm.
# Last stdout line: the image reference (build, tag) or the pushed digest reference (push).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

cmd="${1:-build}"
version="${VERSION:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' filter/core/Cargo.toml | head -n1)}"
[ -n "$version" ] || die "cannot read the version from filter/core/Cargo.toml (set VERSION=)"
registry="${REGISTRY:-}"; registry="${registry%/}"
if [ -n "$registry" ]; then IMAGE="$registry/subset-router:$version"; else IMAGE="subset-router/subset-router:$version"; fi

build() {
  docker_answers || die "no Docker engine answers (start one: scripts/dockerd.sh start)"
  local wasm
  wasm="$(scripts/build-wasm.sh subset-router-wasm "$ROOT/dist/subset_router.wasm" | tail -n1)"
  local ctx="$CACHE_DIR/oci-context"
  rm -rf "$ctx"
  mkdir -p "$ctx/dist"
  cp "$wasm" "$ctx/dist/subset_router.wasm"
  log "DOCKER_BUILDKIT=0 docker build -f oci/Dockerfile -t $IMAGE (context: only dist/subset_router.wasm)"
  DOCKER_BUILDKIT=0 docker build -q --build-arg "VERSION=$version" -f oci/Dockerfile -t "$IMAGE" "$ctx" >&2
  rm -rf "$ctx"
  local layers
  layers="$(docker image inspect -f '{{len .RootFS.Layers}}' "$IMAGE")"
  [ "$layers" = 1 ] || die "$IMAGE has $layers layers; Istio's compat layout needs exactly one"
  log "built $IMAGE: 1 layer, /plugin.wasm = $(stat -c %s "$wasm") bytes (sha256 $(sha256sum "$wasm" | cut -c1-12)...)"
}

case "$cmd" in
  tag) echo "$IMAGE" ;;
  build)
    build
    echo "$IMAGE" ;;
  push)
    [ -n "$registry" ] || die "make push needs REGISTRY=<registry>/<path>, e.g. make push REGISTRY=ghcr.io/your-org"
    build
    log "docker push $IMAGE (needs \`docker login ${registry%%/*}\` first)"
    docker push "$IMAGE" >&2
    digest="$(docker image inspect -f '{{join .RepoDigests "\n"}}' "$IMAGE" | grep -F "${registry}/subset-router@" | head -n1 || true)"
    log "pushed. WasmPlugin: url: oci://$IMAGE${digest:+  (pin: sha256: ${digest##*@sha256:})}"
    echo "${digest:-$IMAGE}" ;;
  *) die "usage: $0 build|push|tag" ;;
esac
