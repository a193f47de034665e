#!/usr/bin/env python3
"""The README's Istio bootstrap snippet carries exactly the stats_tags the renderer writes.

    check_readme_tags.py README.md ENVOY.yaml

ENVOY.yaml is an Envoy config rendered for the Wasm build (examples/progressive/envoy.yaml);
the README's ```yaml block holding `custom_bootstrap.json` must be a ConfigMap whose JSON has
the same `stats_config.stats_tags`, in the same order. Needs PyYAML.
"""
import json
import re
import sys

import yaml


def main(readme, envoy):
    with open(envoy, encoding="utf-8") as f:
        want = yaml.safe_load(f)["stats_config"]["stats_tags"]
    with open(readme, encoding="utf-8") as f:
        blocks = re.findall(r"```yaml\n(.*?)```", f.read(), re.S)
    found = [b for b in blocks if "custom_bootstrap.json" in b]
    if len(found) != 1:
        print(f"FAIL: {len(found)} README blocks hold custom_bootstrap.json, expected 1")
        return 1
    cm = yaml.safe_load(found[0])
    got = json.loads(cm["data"]["custom_bootstrap.json"])["stats_config"]["stats_tags"]
    if got != want:
        print(f"FAIL: README stats_tags differ from {envoy}:\n  README: {got}\n  render: {want}")
        return 1
    print(f"README Istio bootstrap snippet: the {len(want)} stats_tags of {envoy}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
