#!/usr/bin/env bash
# Ensure a Prometheus container image exists (examples/fleet); last stdout line: its tag.
#
#   PROMETHEUS_IMAGE        wanted image (default prom/prometheus:v2.42.0, the version of
#                           Debian 12's package): used when present locally or `docker pull`
#                           succeeds
#   PROMETHEUS_LOCAL_IMAGE  tag of the fallback image (default subset-router/prometheus:2.42.0),
#                           built from examples/fleet/Dockerfile.prometheus: FROM scratch + the
#                           prometheus binary of Debian's package (scripts/lib.sh
#                           prometheus_tool) + the shared libraries ldd lists
#   PROMETHEUS_PULL_TIMEOUT seconds allowed for `docker pull` (default 30)
#
# The fallback image is rebuilt only when its label does not match the binary's sha256.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

WANT="${PROMETHEUS_IMAGE:-prom/prometheus:v2.42.0}"
LOCAL="${PROMETHEUS_LOCAL_IMAGE:-subset-router/prometheus:2.42.0}"
LABEL=org.subset-router.prometheus-sha256

docker_answers || die "no Docker engine answers (start one with: scripts/dockerd.sh start)"

image_present_or_pulled "$WANT" "${PROMETHEUS_PULL_TIMEOUT:-30}" "$CACHE_DIR/docker-pull-prometheus.err" && exit 0
log "docker pull $WANT failed ($(tail -n1 "$CACHE_DIR/docker-pull-prometheus.err" 2>/dev/null || echo timeout)); using a local image built from Debian's prometheus package"

bin="$(prometheus_tool prometheus)" || die "no prometheus binary (PATH, or Debian's package via apt-get download)"
# The web assets Debian's binary serves its console UI from, when the package has them.
web="$(dirname "$bin")/../share/prometheus/web"
# IMAGE_REV changes the cache key when the image's contents change for the same binary.
IMAGE_REV=1
sha="$(sha256sum "$bin" | cut -d' ' -f1)-r$IMAGE_REV"
have="$(docker image inspect -f "{{ index .Config.Labels \"$LABEL\" }}" "$LOCAL" 2>/dev/null || true)"
if [ "$have" = "$sha" ]; then
  log "local image $LOCAL already built from this binary (sha256 ${sha:0:12}); reusing it"
  echo "$LOCAL"; exit 0
fi

ctx="$CACHE_DIR/prometheus-image"
log "building $LOCAL FROM scratch (DOCKER_BUILDKIT=0); context $ctx"
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/etc/prometheus" "$ctx/rootfs/prometheus" "$ctx/rootfs/tmp"
chmod 1777 "$ctx/rootfs/prometheus" "$ctx/rootfs/tmp"
cp "$bin" "$ctx/rootfs/bin/prometheus"
chmod 0755 "$ctx/rootfs/bin/prometheus"
if [ -d "$web" ]; then
  mkdir -p "$ctx/rootfs/usr/share/prometheus"
  cp -r "$web" "$ctx/rootfs/usr/share/prometheus/web"
fi
# Every absolute path ldd prints (libraries and the dynamic loader), dereferenced, copied to
# the same path inside the image. A static binary lists none, which is fine.
libs="$(ldd "$bin" 2>/dev/null | grep -oE '/[^ ]+' | sort -u || true)"
for lib in $libs; do
  mkdir -p "$ctx/rootfs$(dirname "$lib")"
  cp -L "$lib" "$ctx/rootfs$lib"
  log "  + $lib"
done
# A minimal default config so `docker run IMAGE` alone starts (it scrapes only itself).
cat >"$ctx/rootfs/etc/prometheus/prometheus.yml" <<'YAML'
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["localhost:9090"]
YAML
version="$("$bin" --version 2>&1 | sed -n 's/^prometheus, version \([^ ]*\).*/\1/p')"
start=$(date +%s)
DOCKER_BUILDKIT=0 docker build -q --label "$LABEL=$sha" \
  --label "org.subset-router.prometheus-version=$version" \
  -f "$ROOT/examples/fleet/Dockerfile.prometheus" -t "$LOCAL" "$ctx" >&2
rm -rf "$ctx"
v="$(docker run --rm --network none "$LOCAL" --version 2>&1 | head -n1 || true)"
case "$v" in
  "prometheus, version "*) ;;
  *) die "built image $LOCAL does not run prometheus --version: $v" ;;
esac
log "built $LOCAL in $(( $(date +%s) - start ))s ($(docker image inspect -f '{{.Size}}' "$LOCAL") bytes): $v"
echo "$LOCAL"
