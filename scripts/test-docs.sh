#!/usr/bin/env bash
# The documentation checked against the repository and the command-line tool (make test-docs).
#
#   scripts/test-docs.sh
#
# tests/docs/check_docs.py: every relative link of every Markdown file resolves inside the
# repository (anchors included); every ```json plugin configuration in README.md and docs/
# passes `subset-router validate` (blocks marked `<!-- fragment -->` are skipped and counted);
# every ```yaml block parses; every `$ subset-router …` line of a ```console block in README.md
# and docs/ prints exactly the output shown under it.
#
# Prerequisites: the CLI (built here: cargo build --release -p subset-router-cli), python3
# with PyYAML (else a venv under .cache/venv-examples, as the other checks use).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
host_env

log "cargo build --release -p subset-router-cli --bin subset-router"
cargo build -q --release -p subset-router-cli --bin subset-router
CLI="$ROOT/target/release/subset-router"

PY=python3
python3 -c 'import yaml' 2>/dev/null || PY="$(examples_python)"

log "$PY tests/docs/check_docs.py . $CLI"
"$PY" tests/docs/check_docs.py "$ROOT" "$CLI"
