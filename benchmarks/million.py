"""Workload 'million': One million coroutines suspended at once (2 frames deep): time to create, total RSS.

The workload code is in python/weft/_tooling/bench/coroutines.py (shared with `python -m weft`).

    python benchmarks/million.py [--quick] [--json out.json]
"""
from _common import main

if __name__ == "__main__":
    main("million")
