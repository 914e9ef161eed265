"""The asyncio bridge: weft.aio against greenback and runloom's aio, in one run.

    python benchmarks/aio_bridge.py [--rounds N] [--json out.json] [WORKLOAD ...]

Workloads (each measured in a fresh interpreter, peers interleaved round by
round; the best round is kept):

``await``    one await from synchronous code through the bridge, of
             ``asyncio.sleep(0)`` (one trip through the event loop), ns each:
             ``weft``      a tasklet inside ``weft.aio.scheduler()`` calling
                           ``weft.aio.await_``;
             ``greenback`` a synchronous function inside a task with a
                           greenback portal calling ``greenback.await_``;
             ``asyncio``   the floor: a coroutine's own ``await``;
             ``runloom``   a coroutine's ``await`` on runloom's event loop
                           (``runloom.aio.run``: every task is a fiber), when
                           runloom is installed (CPython 3.13).
``handoff``  one value handed between a coroutine and synchronous code, ns per
             message in a ping-pong of two:
             ``weft``      a coroutine ``await aio.send``/``aio.receive`` on
                           tasklet channels, a tasklet echoing;
             ``greenback`` synchronous code echoing through two asyncio.Queue
                           with ``greenback.await_``;
             ``asyncio``   the floor: two coroutines over two asyncio.Queue.

Peers that are not installed are left out (pip install greenback; runloom
builds on CPython 3.13 only). Nothing here asserts a target.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

WORKLOADS = {"await": ["weft", "greenback", "asyncio", "runloom"],
             "handoff": ["weft", "greenback", "asyncio"]}
SIZES = {"await": 100_000, "handoff": 50_000}
NEEDS = {"weft": "weft.aio", "greenback": "greenback", "runloom": "runloom.aio", "asyncio": "asyncio"}


# ---- await ------------------------------------------------------------------------

def await_weft(n):
    import asyncio
    import weft.aio as aio

    def body():
        t0 = time.perf_counter()
        for _ in range(n):
            aio.await_(asyncio.sleep(0))
        return time.perf_counter() - t0

    async def main():
        async with aio.scheduler():
            return await aio.spawn(body)

    return asyncio.run(main()) / n * 1e9


def await_greenback(n):
    import asyncio
    import greenback

    def body():
        t0 = time.perf_counter()
        for _ in range(n):
            greenback.await_(asyncio.sleep(0))
        return time.perf_counter() - t0

    async def main():
        await greenback.ensure_portal()
        return body()

    return asyncio.run(main()) / n * 1e9


async def _await_loop(n):
    import asyncio

    t0 = time.perf_counter()
    for _ in range(n):
        await asyncio.sleep(0)
    return time.perf_counter() - t0


def await_asyncio(n):
    import asyncio

    return asyncio.run(_await_loop(n)) / n * 1e9


def await_runloom(n):
    import runloom.aio as raio

    return raio.run(_await_loop(n)) / n * 1e9


# ---- handoff ----------------------------------------------------------------------

def handoff_weft(n):
    import asyncio
    import weft.aio as aio
    import weft.stackless as stackless

    ping, pong = stackless.channel(), stackless.channel()

    def echo():
        for _ in range(n):
            pong.send(ping.receive())

    async def main():
        async with aio.scheduler():
            done = aio.spawn(echo)
            t0 = time.perf_counter()
            for i in range(n):
                await aio.send(ping, i)
                await aio.receive(pong)
            dt = time.perf_counter() - t0
            await done
            return dt

    return asyncio.run(main()) / (2 * n) * 1e9


def handoff_greenback(n):
    import asyncio
    import greenback

    async def main():
        ping, pong = asyncio.Queue(), asyncio.Queue()

        def echo():
            for _ in range(n):
                greenback.await_(pong.put(greenback.await_(ping.get())))

        async def echo_task():
            await greenback.ensure_portal()
            echo()

        task = asyncio.ensure_future(echo_task())
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        for i in range(n):
            await ping.put(i)
            await pong.get()
        dt = time.perf_counter() - t0
        await task
        return dt

    return asyncio.run(main()) / (2 * n) * 1e9


def handoff_asyncio(n):
    import asyncio

    async def main():
        ping, pong = asyncio.Queue(), asyncio.Queue()

        async def echo():
            for _ in range(n):
                await pong.put(await ping.get())

        task = asyncio.ensure_future(echo())
        t0 = time.perf_counter()
        for i in range(n):
            await ping.put(i)
            await pong.get()
        dt = time.perf_counter() - t0
        await task
        return dt

    return asyncio.run(main()) / (2 * n) * 1e9


# ---- runner -----------------------------------------------------------------------

def available(peer):
    probe = subprocess.run([sys.executable, "-c", f"import {NEEDS[peer]}"], capture_output=True)
    return probe.returncode == 0


def measure(workload, peer):
    here = os.path.dirname(os.path.abspath(__file__))
    code = (f"import sys; sys.path.insert(0, {here!r}); import aio_bridge as b; "
            f"print(b.{workload}_{peer}({SIZES[workload]}))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"{workload}/{peer} failed:\n{p.stderr[-2000:]}")
    return float(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workloads", nargs="*", choices=list(WORKLOADS) + [[]], default=[])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json")
    a = ap.parse_args()
    print(f"CPython {platform.python_version()} on {platform.machine()}, {a.rounds} rounds")
    results = {}
    for w in a.workloads or list(WORKLOADS):
        peers = [p for p in WORKLOADS[w] if available(p)]
        samples = {p: [] for p in peers}
        for _ in range(a.rounds):
            for p in peers:
                samples[p].append(measure(w, p))
        best = {p: min(v) for p, v in samples.items()}
        results[w] = {"best": best, "samples": samples}
        print(f"{w:8s} " + "  ".join(f"{p} {best[p]:,.0f}" for p in peers) + "  (ns)")
        if "weft" in best:
            print("         " + ", ".join(f"weft/{p} {best['weft'] / best[p]:.2f}x" for p in peers if p != "weft"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
