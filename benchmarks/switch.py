"""Workload 'switch': Ping-pong switch between two greenlets: ns per switch.

The workload code is in python/weft/_tooling/bench/coroutines.py (shared with `python -m weft`).

    python benchmarks/switch.py [--quick] [--json out.json]
"""
from _common import main

if __name__ == "__main__":
    main("switch")
