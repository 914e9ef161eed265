"""The asyncio bridge: weft.aio against greenback and runloom's aio, in one run.

    python benchmarks/aio_bridge.py [--rounds N] [--json out.json]

The same as ``python benchmarks/tasklets.py await handoff``: one await from
synchronous code through the bridge (weft.aio's ``await_`` in a tasklet,
greenback's ``await_``, and as the floor a coroutine's own ``await`` on
asyncio's loop and on runloom's), and one hand-off between a coroutine and
synchronous code (see python/weft/_tooling/bench/tasklets.py). Peers that are
not installed are left out (pip install greenback; runloom builds on CPython
3.13 only). Nothing here asserts a target.
"""
import argparse
import json
import platform
import sys

import weft._tooling.bench.tasklets as bench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    print(f"CPython {platform.python_version()} on {platform.machine()}, {a.rounds} rounds")
    res = bench.run(["await", "handoff"], rounds=a.rounds)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
