"""Tasklets and channels: weft.stackless against the peers, in one run.

    python benchmarks/tasklets.py [--quick] [--rounds N] [--json out.json]
                                  [--stackless PATH] [WORKLOAD ...]

Workloads: channel, create, memory, memory_py, million, xthread, gateway, select
(see weft/_tooling/bench/tasklets.py). Peers: a greenlet-based emulation, asyncio,
threads, runloom on CPython 3.13 when installed (pip install runloom), and a
Stackless Python interpreter given by path (--stackless PATH: channel, create,
memory, memory_py). Each figure is measured in a fresh process, peers
interleaved; the printed ratios are weft's figure over the peer's.
"""
import argparse
import json
import platform
import sys

import weft._tooling.bench.tasklets as bench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workloads", nargs="*", choices=bench.WORKLOADS + [[]], default=[])
    ap.add_argument("--quick", action="store_true", help="a tenth of the sizes")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    ap.add_argument("--stackless", metavar="PATH", help="a Stackless Python interpreter to measure beside weft")
    a = ap.parse_args()
    print(f"CPython {platform.python_version()} on {platform.machine()}, {a.rounds} rounds")
    if a.stackless:
        print(f"Stackless: {a.stackless} (Python {bench.check_stackless(a.stackless)})")
    res = bench.run(a.workloads or None, rounds=a.rounds, quick=a.quick, stackless=a.stackless)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
