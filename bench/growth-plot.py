#!/usr/bin/env python3
"""Decision time against the rule count (BENCHMARKS.md, "Growth"): bench/results/growth.png.

    bench/growth-plot.py   (needs matplotlib; the numbers are the table's, from make bench-core)
"""
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RULES = [1, 20, 200, 2_000, 20_000]
SCAN_NS = [323, 1_310, 10_600, 113_000, 3_380_000]
INDEX_NS = [237, 212, 214, 252, 319]
ONE_OF_NS = 341  # one oneOf of 100,000 values, hit

fig, ax = plt.subplots(figsize=(7, 4.2))
ax.loglog(RULES, SCAN_NS, "o-", label="exact-match rules, linear scan")
ax.loglog(RULES, INDEX_NS, "s-", label="exact-match rules, with the index")
ax.axhline(ONE_OF_NS, color="gray", linestyle="--", label="one oneOf of 100,000 values")
ax.set_xlabel("rules in the configuration (the match at the last)")
ax.set_ylabel("decision time per request (ns, host)")
ax.set_title("subset-router: decision time against the rule count (make bench-core)")
ax.grid(True, which="both", alpha=0.3)
ax.legend()
fig.tight_layout()
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "growth.png")
fig.savefig(out, dpi=110)
print(out)
