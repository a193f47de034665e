#!/usr/bin/env bash
# examples/observability checked offline and against real Envoys (make test-observability).
#
#   scripts/test-observability.sh
#
#   static   promtool check rules rules.yaml; promtool check config prometheus.yml;
#            promtool test rules tests.yaml (every alert firing and not firing); the unit
#            tests of the two checkers below (tests/observability/test_tools.py); docs/operations.md's
#            Istio bootstrap snippet holds the renderer's stats_tags (check_readme_tags.py)
#   scrape   per build (FILTER=wasm|native|both, default both): the suite's Envoy 1.40 with
#            examples/progressive/config.json delivered by ECDS, sticky / keyless / debug /
#            forged-header traffic, an invalid config pushed through ECDS (rejected);
#            /stats/prometheus before and after saved under .cache/test-observability/
#            (tests/src/bin/observability-scrape.rs, which also checks the labelled families
#            against the requests it sent)
#   series   tests/observability/check_series.py: every series name and label the rules and
#            the dashboard use is in those scrapes, both builds covered by every expression,
#            the dashboard's PromQL valid
#   replay   tests/observability/replay_rules.py: the real scrapes as promtool input series;
#            `promtool test rules` asserts the recording rules' values and the alerts the
#            traffic triggers (config rejected) on them
#
# Prerequisites: promtool (from PATH, or PROMTOOL=; else extracted from Debian's `prometheus`
# package into .cache/prometheus-deb without installing its service; `apt_ensure prometheus`
# as the last resort), python3 with PyYAML (else a venv under .cache/venv-examples), the
# native envoy (scripts/envoy-native.sh) or Docker (ENVOY_RUNTIME), the filter builds (made
# when missing). Exit 1 if any step failed; a build not scraped (FILTER=wasm|native) is
# reported as SKIPPED, and is a failure under CI=true.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

OBS="$ROOT/examples/observability"
OUT="$CACHE_DIR/test-observability"
mkdir -p "$OUT"
ci() { [[ "${CI:-}" =~ ^([Tt][Rr][Uu][Ee]|1)$ ]]; }
rc=0
summary=()
pass() { summary+=("$1: PASS${2:+ ($2)}"); }
fail() { summary+=("$1: FAIL${2:+ ($2)}"); rc=1; }

# ---- prerequisites ----
find_promtool() {
  if [ -n "${PROMTOOL:-}" ]; then echo "$PROMTOOL"; return; fi
  # promtool ships only inside Debian's `prometheus` package, whose install would also enable a
  # Prometheus server: prometheus_tool takes the binary out of the .deb instead.
  if prometheus_tool promtool; then return; fi
  apt_ensure prometheus
  command -v promtool
}
PROMTOOL="$(find_promtool)"
[ -x "$PROMTOOL" ] || die "no promtool"
export PROMTOOL
log "promtool: $PROMTOOL ($("$PROMTOOL" --version 2>&1 | head -n1))"

PY=python3
python3 -c 'import yaml' 2>/dev/null || PY="$(examples_python)"

# step NAME CMD...: runs it with its output indented; PASS/FAIL with the last line.
step() {
  local name="$1"; shift
  log "== $name: $*"
  local log_file="$OUT/$name.log" status=0
  set +e
  "$@" 2>&1 | tee "$log_file" | sed -u "s/^/  [$name] /"
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" = 0 ]; then pass "$name" "$(grep -v "^[[:space:]]*$" "$log_file" | tail -n1 | cut -c1-150)"
  else fail "$name" "see $log_file"; fi
  return 0
}

# ---- static: rules, config, unit tests ----
step check-rules "$PROMTOOL" check rules "$OBS/rules.yaml"
step check-config "$PROMTOOL" check config "$OBS/prometheus.yml"
step test-rules "$PROMTOOL" test rules "$OBS/tests.yaml"
step checker-tests env -C "$ROOT/tests/observability" "$PY" -m unittest -q test_tools
step readme-tags "$PY" tests/observability/check_readme_tags.py docs/operations.md examples/progressive/envoy.yaml

# ---- scrape: each build in a real Envoy ----
mapfile -t builds < <(filter_builds)
envoy_env
( host_env; cargo build --release -q -p subset-router-integration --bin observability-scrape )
SCRAPE_BIN="$ROOT/target/release/observability-scrape"
scrape_args=()
replay_args=()
for b in "${builds[@]}"; do
  rm -f "$OUT/$b.prom" "$OUT/$b.before.prom"
  step "scrape-$b" env FILTER="$b" WASM="${WASM:-$ROOT/dist/subset_router.wasm}" \
    NATIVE_SO="${NATIVE_SO:-$ROOT/dist/libsubset_router.so}" \
    "$SCRAPE_BIN" "$OUT/$b.prom" --before "$OUT/$b.before.prom"
  if [ -s "$OUT/$b.prom" ] && [ -s "$OUT/$b.before.prom" ]; then
    scrape_args+=(--scrape "$b=$OUT/$b.prom")
    replay_args+=(--scrape "$b=$OUT/$b.before.prom,$OUT/$b.prom")
  fi
done
for b in wasm native; do
  if [[ " ${builds[*]} " != *" $b "* ]]; then
    if ci; then fail "scrape-$b" "not run (FILTER=${FILTER:-both}), CI=true"
    else summary+=("scrape-$b: SKIPPED (FILTER=${FILTER:-both}): the $b build's names are not checked"); fi
  fi
done

# ---- series and replay ----
if [ "${#scrape_args[@]}" -gt 0 ]; then
  step series "$PY" tests/observability/check_series.py --rules "$OBS/rules.yaml" \
    --dashboard "$OBS/dashboard.json" --promtool "$PROMTOOL" "${scrape_args[@]}"
  step replay-generate "$PY" tests/observability/replay_rules.py --rules "$OBS/rules.yaml" \
    "${replay_args[@]}" -o "$OUT/replay-tests.yaml"
  step replay "$PROMTOOL" test rules "$OUT/replay-tests.yaml"
else
  fail series "no scrape"
fi

echo
for line in "${summary[@]}"; do log "$line"; done
log "observability: $([ "$rc" = 0 ] && echo PASS || echo FAIL)"
exit "$rc"
