"""Workload 'memory': RSS (and USS) per coroutine suspended 10 Python frames deep, over 100,000 of them.

The workload code is in python/weft/_tooling/bench/coroutines.py (shared with `python -m weft`).

    python benchmarks/memory.py [--quick] [--json out.json]
"""
from _common import main

if __name__ == "__main__":
    main("memory")
