# shellcheck shell=bash
# Shared helpers for the build/test scripts. Source it; do not execute it.
#
# Conventions: progress messages go to stderr (prefixed with the script name);
# a script's *result* (a path, a tag, a word) is the last line on stdout.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="$ROOT/.cache"
CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export CARGO_HOME

ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root to run: $*"
  fi
}

# Is a Debian package installed?
deb_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# apt_ensure PKG... : install the Debian packages that are missing.
# `apt-get update` runs at most once per process tree (APT_UPDATED=1 is exported
# after it; .ci/run sets it after its own update).
apt_ensure() {
  local missing=() p
  for p in "$@"; do deb_installed "$p" || missing+=("$p"); done
  if [ "${#missing[@]}" -eq 0 ]; then
    log "apt: already installed: $*"
    return 0
  fi
  command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get"
  if [ "${APT_UPDATED:-0}" != 1 ]; then
    log "apt: apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    export APT_UPDATED=1
  fi
  log "apt: installing ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The toolchains the shipped artifacts are pinned to (examples/oci-digests.json records their
# digests): the host rustc in rust-toolchain.toml for the .so, and for the .wasm the Debian
# packages of the offline path (scripts/wasm-toolchain.sh) and binaryen's wasm-opt.
HOST_RUST_PIN="$(sed -nE 's/^channel *= *"([^"]+)".*/\1/p' "$ROOT/rust-toolchain.toml" 2>/dev/null)"
WASM_RUSTC_DEB="1.96.0+dfsg1-1~deb12u2"   # rustc-web, cargo-web, rust-web-src
WASM_OPT_DEB="108-1"                      # binaryen

# pin_check WHAT WANT HAVE: a toolchain that differs from its pin still builds, but its output
# will not match the pinned digests; say so loudly (and fail where byte identity is the point).
pin_check() {
  local what="$1" want="$2" have="$3"
  [ "$want" = "$have" ] && return 0
  log "WARNING: $what is '$have', pinned '$want': the build works, but its bytes will not match the digests in examples/oci-digests.json"
  [ "${PIN_STRICT:-0}" = 1 ] && die "$what differs from its pin (PIN_STRICT=1)"
  return 0
}

# reproducible_rustflags: RUSTFLAGS that make an artifact independent of where the checkout and
# the cargo home live. Panic locations and debug strings embed source paths
# ($CARGO_HOME/registry/src/.../regex-lite-0.1.9/src/...); map both to fixed prefixes.
reproducible_rustflags() {
  if [[ "$ROOT$CARGO_HOME" =~ [[:space:]] ]]; then
    log "WARNING: a space in '$ROOT' or '$CARGO_HOME': no --remap-path-prefix, the artifact will embed them"
    return 0
  fi
  export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }--remap-path-prefix=$CARGO_HOME=/cargo --remap-path-prefix=$ROOT=/subset-router"
  log "reproducible paths: --remap-path-prefix $CARGO_HOME=/cargo, $ROOT=/subset-router"
}

# Host toolchain: rustup's proxies first, so `cargo` is rustup's cargo and it runs
# rustup's rustc. (With /usr/bin first, rustup's cargo would pick up Debian's
# /usr/bin/rustc from PATH -- never mix the two.)
host_env() {
  if [ -x "$CARGO_HOME/bin/rustup" ]; then
    PATH="$CARGO_HOME/bin:$PATH"
    export PATH
  fi
  unset RUSTC RUSTDOC RUSTC_BOOTSTRAP
  rust_toolchain_ensure
}

# rust_toolchain_ensure: rust-toolchain.toml names a version (e.g. 1.95.0). A machine whose
# rustup has that version only as `stable` would otherwise try to download it (and hang
# offline): give the installed one the pinned name (what rustup would have installed under
# it). Elsewhere rustup installs the pinned version itself, as usual.
rust_toolchain_ensure() {
  [ -n "$HOST_RUST_PIN" ] && command -v rustup >/dev/null 2>&1 || return 0
  local home="${RUSTUP_HOME:-$HOME/.rustup}" triple sysroot
  triple="$(RUSTUP_TOOLCHAIN=stable rustc -vV 2>/dev/null | sed -n 's/^host: //p')"
  [ -n "$triple" ] || return 0
  [ -e "$home/toolchains/$HOST_RUST_PIN-$triple" ] && return 0
  if RUSTUP_TOOLCHAIN=stable rustc --version 2>/dev/null | grep -q "^rustc $HOST_RUST_PIN "; then
    sysroot="$(RUSTUP_TOOLCHAIN=stable rustc --print sysroot)"
    ln -s "$sysroot" "$home/toolchains/$HOST_RUST_PIN-$triple" &&
      log "rust-toolchain.toml pins $HOST_RUST_PIN: the installed stable toolchain is that version; named it so"
    return 0
  fi
  log "WARNING: rust-toolchain.toml pins rustc $HOST_RUST_PIN, which rustup does not have; rustup will try to install it"
}

docker_answers() {
  command -v docker >/dev/null 2>&1 && timeout 10 docker info >/dev/null 2>&1
}

# image_present_or_pulled IMAGE TIMEOUT ERRFILE: prints IMAGE and succeeds when it is present
# locally or `docker pull` gets it within TIMEOUT seconds (the pull's errors go to ERRFILE);
# fails otherwise, so the caller can build its fallback image.
image_present_or_pulled() {
  local image="$1" timeout_s="$2" errfile="$3"
  if docker image inspect "$image" >/dev/null 2>&1; then
    log "image $image present locally"
    echo "$image"; return 0
  fi
  log "image $image not present locally; trying docker pull (timeout ${timeout_s}s)"
  mkdir -p "$(dirname "$errfile")"
  if timeout "$timeout_s" docker pull -q "$image" >&2 2>"$errfile"; then
    log "pulled $image"
    echo "$image"; return 0
  fi
  return 1
}

# examples_python: a python3 with jsonschema and pyyaml for the checks written in Python, the
# venv $CACHE_DIR/venv-examples (created when missing, from PyPI); prints its path.
examples_python() {
  local venv="$CACHE_DIR/venv-examples"
  if ! "$venv/bin/python" -c 'import jsonschema, yaml' 2>/dev/null; then
    python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || apt_ensure python3-venv >&2
    log "creating $venv: pip install jsonschema pyyaml"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install -q --disable-pip-version-check jsonschema pyyaml >&2
  fi
  echo "$venv/bin/python"
}

# envoy_env: resolve ENVOY_RUNTIME (docker|native|auto) and export what the Rust suites read:
# ENVOY_RUNTIME=docker|native, ENVOY_BIN (always: `envoy --mode validate` runs natively),
# ENVOY_IMAGE (docker only).
envoy_env() {
  local runtime
  runtime="$("$ROOT/scripts/envoy-runtime.sh" | tail -n1)"
  ENVOY_BIN="$("$ROOT/scripts/envoy-native.sh" | tail -n1)"
  if [ "$runtime" = docker ]; then
    ENVOY_IMAGE="$("$ROOT/scripts/envoy-image.sh" | tail -n1)"
    export ENVOY_IMAGE
  else
    unset ENVOY_IMAGE
  fi
  export ENVOY_BIN ENVOY_RUNTIME="$runtime"
}

# envoy_config ARGS...: the project's one Envoy-config renderer (envoy/config, Rust), built on
# first use with the host toolchain.
envoy_config() {
  ( host_env; cd "$ROOT" && cargo run -q --release -p subset-router-envoy-config -- "$@" )
}

# filter_builds: the builds FILTER names (wasm | native | both; default both), one a line.
# Each build's file (WASM, NATIVE_SO; defaults in dist/) is built when missing.
filter_builds() {
  local builds
  case "${FILTER:-both}" in
    wasm|native) builds=("$FILTER") ;;
    both) builds=(wasm native) ;;
    *) die "FILTER must be wasm, native or both, not '${FILTER}'" ;;
  esac
  local b
  for b in "${builds[@]}"; do
    if [ "$b" = wasm ] && [ ! -f "${WASM:-$ROOT/dist/subset_router.wasm}" ]; then
      log "${WASM:-dist/subset_router.wasm} missing: building it"
      "$ROOT/scripts/build-wasm.sh" subset-router-wasm "${WASM:-$ROOT/dist/subset_router.wasm}" >/dev/null
    fi
    if [ "$b" = native ] && [ ! -f "${NATIVE_SO:-$ROOT/dist/libsubset_router.so}" ]; then
      log "${NATIVE_SO:-dist/libsubset_router.so} missing: building it"
      "$ROOT/scripts/build-native.sh" "${NATIVE_SO:-$ROOT/dist/libsubset_router.so}" >/dev/null
    fi
    echo "$b"
  done
}

# prometheus_tool NAME: the path of Prometheus's `prometheus` or `promtool` binary: from PATH,
# else taken out of Debian's `prometheus` package into .cache/prometheus-deb (apt-get download +
# dpkg-deb -x: installing the package would also enable a Prometheus service). Returns 1 when
# neither works.
prometheus_tool() {
  local name="$1" extracted="$CACHE_DIR/prometheus-deb/usr/bin/$1"
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  if [ ! -x "$extracted" ] && command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
    local tmp deb; tmp="$(mktemp -d)"
    if ! (cd "$tmp" && apt-get download prometheus >&2 2>/dev/null); then
      log "apt-get download prometheus failed: apt-get update, then again"
      as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || true
      export APT_UPDATED=1
      (cd "$tmp" && apt-get download prometheus >&2) || true
    fi
    deb="$(ls "$tmp"/prometheus_*.deb 2>/dev/null | head -n1 || true)"
    if [ -n "$deb" ]; then
      log "extracting $name from $(basename "$deb") into $CACHE_DIR/prometheus-deb"
      mkdir -p "$CACHE_DIR/prometheus-deb"
      dpkg-deb -x "$deb" "$CACHE_DIR/prometheus-deb"
    fi
    rm -rf "$tmp"
  fi
  [ -x "$extracted" ] || return 1
  echo "$extracted"
}
