"""Workload 'create': Create + first switch + finish of a greenlet running a trivial function: µs each.

The workload code is in python/weft/_tooling/bench/coroutines.py (shared with `python -m weft`).

    python benchmarks/create.py [--quick] [--json out.json]
"""
from _common import main

if __name__ == "__main__":
    main("create")
