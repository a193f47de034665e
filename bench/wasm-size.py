#!/usr/bin/env python3
"""What each part of the .wasm costs, in bytes of code and data.

    bench/wasm-size.py            (make wasm-size)

Builds the proxy-wasm module once more with its function names kept and without wasm-opt
(into target/wasm-size/), lists every function with `twiggy top` (crates.io: `cargo install
twiggy`), and adds up the bytes per crate and, for the decision core, per module. The shipped
module is the same code after `wasm-opt -Oz` and without names, so the shares carry over while
the absolute numbers shrink by the ratio printed at the end.
"""
import collections
import csv
import io
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "target", "wasm-size", "subset_router.names.wasm")
SHIPPED = os.path.join(ROOT, "dist", "subset_router.wasm")


def build():
    env = dict(os.environ, CARGO_PROFILE_RELEASE_STRIP="false", WASM_OPT="0",
               WASM_FALLBACK_TARGET_DIR=os.path.join(ROOT, "target", "wasm-size", "cargo"))
    subprocess.run([os.path.join(ROOT, "scripts", "build-wasm.sh"), "subset-router-wasm", OUT],
                   env=env, check=True, stdout=subprocess.DEVNULL)


def twiggy():
    exe = shutil.which("twiggy") or os.path.expanduser("~/.cargo/bin/twiggy")
    if not os.path.exists(exe):
        sys.exit("twiggy not found: cargo install twiggy")
    out = subprocess.run([exe, "top", "-n", "1000000", "--format", "csv", OUT],
                         check=True, capture_output=True, text=True).stdout
    return [(r["Name"], int(r["ShallowSize"])) for r in csv.DictReader(io.StringIO(out))]


def part(name):
    """(group, subgroup) of one twiggy item."""
    if name.startswith("custom section") or name.endswith("subsection"):
        return ("names and debug info (not shipped)", "")
    if name.startswith("data segment"):
        return ("data (string constants, tables)", "")
    # Generic instances are named after their outermost type: look for our crates first.
    m = re.search(r"subset_router_core\[[0-9a-f]+\]::(\w+)", name)
    if m:
        return ("subset_router_core (decision core)", m.group(1))
    for crate, label in [("talc[", "allocator and libc"),
                         ("subset_router_wasm", "subset_router_wasm (adapter)"),
                         ("proxy_wasm", "proxy_wasm (SDK dispatch)"),
                         ("regex_lite", "regex_lite (regex)"),
                         ("serde_json", "serde_json (JSON)"), ("serde_core", "serde_json (JSON)"),
                         ("libm", "libm (ln for sticky hashing)"),
                         ("hashbrown", "std collections"), ("alloc", "alloc (Vec, String, fmt)"),
                         ("core[", "core (fmt, slices, str)"), ("std[", "std")]:
        if crate in name:
            return (label, "")
    if re.match(r"(dl|dispose_chunk|tmalloc|sys_|internal_memalign|__)", name):
        return ("allocator and libc", "")
    return ("other", "")


def main():
    if "--no-build" not in sys.argv:
        build()
    items = twiggy()
    groups = collections.Counter()
    core = collections.Counter()
    for name, size in items:
        g, sub = part(name)
        groups[g] += size
        if sub:
            core[sub] += size
    total = sum(groups.values())
    shipped_parts = total - groups["names and debug info (not shipped)"]
    shipped = os.path.getsize(SHIPPED) if os.path.exists(SHIPPED) else None
    print(f"| part | bytes before wasm-opt | share of code and data |")
    print(f"|---|---:|---:|")
    for g, size in groups.most_common():
        if g.startswith("names"):
            continue
        print(f"| {g} | {size:,} | {100 * size / shipped_parts:.1f}% |")
    print(f"| **code and data** | **{shipped_parts:,}** | 100% |")
    print()
    print("| decision core module | bytes before wasm-opt |")
    print("|---|---:|")
    for sub, size in core.most_common():
        print(f"| `{sub}` | {size:,} |")
    if shipped:
        print(f"\nShipped .wasm: {shipped:,} B ({shipped / shipped_parts:.2f} of the code and data above, "
              "after wasm-opt -Oz and without names).")


if __name__ == "__main__":
    main()
