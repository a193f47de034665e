#!/usr/bin/env bash
# Host unit tests and clippy for a package (default subset-router), with rustup's toolchain.
#   scripts/test-unit.sh [package]
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
pkg="${1:-subset-router}"
cd "$ROOT"
host_env
log "host toolchain: $(command -v cargo) ($(cargo --version)), $(rustc --version)"
# --all-features: also the CLI, the JSON Schema staleness test and the reader/serde cross-check.
log "cargo test -p $pkg --all-features"
cargo test -p "$pkg" --all-features
if cargo clippy --version >/dev/null 2>&1; then
  log "cargo clippy -p $pkg --all-targets --all-features -- -D warnings ($(cargo clippy --version))"
  cargo clippy -p "$pkg" --all-targets --all-features -- -D warnings
  log "clippy clean"
else
  log "SKIPPED clippy: cargo-clippy is not installed for this toolchain (rustup component add clippy needs the network)"
fi
