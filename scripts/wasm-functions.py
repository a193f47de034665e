#!/usr/bin/env python3
"""The largest function bodies of a .wasm, in bytes (code section entries, as V8 compiles them).

    scripts/wasm-functions.py MODULE.wasm [N]     prints the N largest (default 1), one per line

Envoy's V8 compiles every function of a module with its optimising compiler when the module
loads, and the memory that takes (kept by the proxy's allocator afterwards) grows with the
largest functions: scripts/build-wasm.sh holds the filter's module to bench/wasm-function-budget.
"""
import sys


def leb128(data, i):
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def function_sizes(path):
    data = open(path, "rb").read()
    if data[:4] != b"\0asm":
        raise SystemExit(f"{path}: not a Wasm module")
    i, sizes = 8, []
    while i < len(data):
        section = data[i]
        length, i = leb128(data, i + 1)
        end = i + length
        if section == 10:  # code
            count, j = leb128(data, i)
            for _ in range(count):
                size, j = leb128(data, j)
                sizes.append(size)
                j += size
        i = end
    return sorted(sizes, reverse=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    for size in function_sizes(sys.argv[1])[:n]:
        print(size)
