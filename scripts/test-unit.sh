#!/usr/bin/env bash
# Host unit tests and clippy for the filter crates, with rustup's toolchain.
#   scripts/test-unit.sh
# Clippy covers every crate of filter/ and the Envoy-config renderer -- the core, the CLI, both adapters (the proxy-wasm
# adapter compiles for the host too, so its FFI module and host calls are linted) -- with
# -D warnings and each crate's own deny list. A missing clippy fails under CI=true.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
host_env
log "host toolchain: $(command -v cargo) ($(cargo --version)), $(rustc --version)"
pkgs=(-p subset-router-core -p subset-router-cli -p subset-router-wasm -p subset-router-envoy-config)
# The native adapter joins once its crate is in the workspace.
if cargo metadata -q --no-deps --format-version 1 | grep '"name":"subset-router-native"' >/dev/null; then
  pkgs+=(-p subset-router-native)
fi
# --all-features: the schema derives, the JSON Schema staleness test and the reader/serde cross-check.
log "cargo test ${pkgs[*]} --all-features"
cargo test "${pkgs[@]}" --all-features
if cargo clippy --version >/dev/null 2>&1; then
  log "cargo clippy ${pkgs[*]} --all-targets --all-features -- -D warnings ($(cargo clippy --version))"
  cargo clippy "${pkgs[@]}" --all-targets --all-features -- -D warnings
  log "clippy clean"
elif [ "${CI:-}" = true ]; then
  die "cargo-clippy is not installed for this toolchain: under CI=true the lint is required"
else
  log "SKIPPED (loud): clippy is not installed for this toolchain; the adapters and core were NOT linted"
fi
