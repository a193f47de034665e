#!/usr/bin/env bash
# Resolve ENVOY_RUNTIME=docker|native|auto (default auto) to `docker` or `native`
# (last stdout line).  auto: docker when a Docker engine answers `docker info`, else native.
# An explicit `docker` with no engine answering is an error (start one with
# scripts/dockerd.sh start), not a silent switch to native.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

want="${1:-${ENVOY_RUNTIME:-auto}}"
case "$want" in
  docker)
    docker_answers || die "ENVOY_RUNTIME=docker but no Docker engine answers (scripts/dockerd.sh start)"
    log "runtime: docker (requested)"; echo docker ;;
  native)
    log "runtime: native (requested)"; echo native ;;
  auto|"")
    if docker_answers; then log "runtime: docker (auto: docker info answers)"; echo docker
    else log "runtime: native (auto: no Docker engine answers)"; echo native
    fi ;;
  *) die "ENVOY_RUNTIME must be docker, native or auto, not '$want'" ;;
esac
