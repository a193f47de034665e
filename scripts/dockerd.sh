#!/usr/bin/env bash
# Make sure a Docker engine answers, starting a minimal dockerd only when none does.
#
#   scripts/dockerd.sh start   last stdout line: "started" (we started it; PID in
#                              .cache/dockerd.pid) or "running" (an engine already
#                              answered; nothing done, nothing to stop)
#   scripts/dockerd.sh stop    stops only the daemon whose PID is in .cache/dockerd.pid,
#                              i.e. one this script started; never anything else
#   scripts/dockerd.sh status
#
# The daemon we start is the lightest one that runs the tests (BUILD-NOTES.md):
#   dockerd --iptables=false --ip-forward=false --bridge=none
# (no firewall rules, no bridge; containers use --network host). Log: .cache/dockerd.log
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

PIDFILE="$CACHE_DIR/dockerd.pid"
LOGFILE="$CACHE_DIR/dockerd.log"
START_TIMEOUT="${DOCKERD_START_TIMEOUT:-30}"

our_pid() {
  # PID from the pidfile, only if that process is still a dockerd.
  [ -f "$PIDFILE" ] || return 1
  local pid; pid="$(cat "$PIDFILE")"
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = dockerd ] || return 1
  echo "$pid"
}

cmd_start() {
  if docker_answers; then
    if pid="$(our_pid)"; then
      log "docker engine answers (dockerd PID $pid, started earlier by this script)"
    else
      log "docker engine already answers; not starting dockerd (and will not stop it)"
    fi
    echo running
    return 0
  fi
  if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    log "dockerd/docker missing: installing Debian docker.io"
    apt_ensure docker.io
  fi
  # A stale socket from a dead daemon would make dockerd refuse to start.
  if pid="$(our_pid)"; then
    die "dockerd PID $pid (ours) is alive but does not answer; see $LOGFILE"
  fi
  mkdir -p "$CACHE_DIR"
  log "starting: dockerd --iptables=false --ip-forward=false --bridge=none (log $LOGFILE)"
  # setsid: the daemon outlives this shell and make's process group.
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  # `exec` so that $! is the dockerd process itself (setsid execs in place: the
  # daemon gets its own session and outlives make's process group).
  ( exec ${sudo[@]+"${sudo[@]}"} setsid dockerd --iptables=false --ip-forward=false --bridge=none \
      >>"$LOGFILE" 2>&1 </dev/null ) &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  local t0; t0=$(date +%s)
  until docker_answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PIDFILE"
      tail -n 20 "$LOGFILE" >&2 || true
      die "dockerd exited during start-up; see $LOGFILE"
    fi
    if [ $(( $(date +%s) - t0 )) -ge "$START_TIMEOUT" ]; then
      tail -n 20 "$LOGFILE" >&2 || true
      die "docker info did not answer within ${START_TIMEOUT}s (dockerd PID $pid still running; stop with: $0 stop)"
    fi
    sleep 0.3
  done
  # dockerd writes its own PID to /var/run/docker.pid; prefer that (with sudo, $! is sudo's).
  if [ -r /var/run/docker.pid ] && [ "$(cat "/proc/$(cat /var/run/docker.pid)/comm" 2>/dev/null)" = dockerd ]; then
    pid="$(cat /var/run/docker.pid)"
    echo "$pid" >"$PIDFILE"
  fi
  log "dockerd PID $pid answers after $(( $(date +%s) - t0 ))s; PID in $PIDFILE"
  echo started
}

cmd_stop() {
  local pid
  if ! pid="$(our_pid)"; then
    log "no dockerd started by this script is running; nothing to stop"
    rm -f "$PIDFILE"
    return 0
  fi
  log "stopping dockerd PID $pid"
  as_root kill -TERM "$pid"
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "dockerd PID $pid still alive after 20s; sending KILL"
    as_root kill -KILL "$pid" || true
  fi
  rm -f "$PIDFILE"
  log "stopped"
}

cmd_status() {
  local pid=""
  pid="$(our_pid)" || pid=""
  if docker_answers; then
    if [ -n "$pid" ]; then echo "running (ours, PID $pid)"; else echo "running (not ours)"; fi
  else
    echo "not running"
  fi
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) die "usage: $0 start|stop|status" ;;
esac
