"""Tasklet workloads shared by ``benchmarks/tasklets.py`` and ``python -m weft``.

Peers (each measured in a fresh child interpreter, interleaved round by round):

``weft``
    ``weft.stackless``: tasklets and channels in Rust.
``emulation``
    A minimal tasklet/channel layer over the ``greenlet`` package, written the way
    stock-CPython users write one today (a deque run queue, a channel with a deque of
    waiting greenlets, ``switch()`` calls in Python).
``asyncio``
    ``asyncio.Queue`` ping-pong and ``create_task``.
``threads``
    ``queue.Queue`` between OS threads, thread start+join.
``runloom``
    runloom's fibers and unbuffered ``Chan`` (CPython 3.13 only, when installed).
``greenback``
    greenback's ``await_`` from synchronous code inside a task with a portal
    (``pip install greenback``), for the asyncio bridge's workloads.
``stackless``
    A Stackless Python interpreter given by path (``--stackless PATH``): the same
    workloads as weft's, on its ``import stackless``. This file then runs in that
    interpreter as a plain module (it imports nothing of weft's at the top).

Workloads:

``channel``     one message handed from one microthread to another (send+receive),
                ns per message, in a ping-pong of two.
``create``      create a microthread running a trivial function and run it to its
                end, in batches of 1,000; µs each.
``memory``      resident memory per microthread blocked in a receive (100,000 of them),
                started on the channel's bound ``receive`` itself (as Stackless's own
                measurements did): no Python frame of its own.
``memory_py``   the same, each blocked in ``receive`` inside a Python function (one
                Python frame per microthread).
``million``     one million tasklets blocked on channels at once: time and total RSS.
``xthread``     a round trip between two OS threads over channels (weft) or
                ``queue.Queue`` (threads): µs per round trip.
``gateway``     a popen echo round trip from a tasklet (weft) or a plain thread.
``select``      a ping-pong whose receiving side selects over two channels.
``await``       one await of ``asyncio.sleep(0)`` from synchronous code through the
                bridge: a tasklet's ``weft.aio.await_``, greenback's ``await_``; the
                floor, a coroutine's own ``await``, on asyncio's loop and (runloom)
                on runloom's (``runloom.aio.run``); ns per await.
``handoff``     one value between a coroutine and synchronous code, ping-pong: weft.aio
                on tasklet channels, greenback over two ``asyncio.Queue``, and two
                coroutines (the floor); ns per message.

Times are the best of the rounds; memory the lowest. Nothing here asserts a target.
"""
from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time

WORKLOADS = ["channel", "create", "memory", "memory_py", "million", "xthread", "gateway", "select", "await", "handoff"]
# workload -> peers that can run it
PEERS = {
    "channel": ["weft", "emulation", "asyncio", "threads", "runloom"],
    "create": ["weft", "emulation", "asyncio", "threads", "runloom"],
    # runloom's memory workload ends in its deadlock report with 100,000
    # parked fibers; measured by hand (docs/stackless.md), not here.
    "memory": ["weft", "emulation", "asyncio"],
    "memory_py": ["weft", "emulation"],
    "million": ["weft"],
    "xthread": ["weft", "threads"],
    "gateway": ["weft", "threads"],
    "select": ["weft", "plain", "runloom"],
    "await": ["weft", "greenback", "asyncio", "runloom"],
    "handoff": ["weft", "greenback", "asyncio"],
}
# workload -> (metric, unit, {peer: target ratio of weft's figure to that peer's})
METRICS = {
    "channel": ("ns_per_message", "ns/message", {"emulation": 0.2, "runloom": 0.5}),
    "create": ("us_per_create", "µs/create", {"emulation": 0.08}),
    "memory": ("rss_per_tasklet", "B RSS/tasklet", {}),
    "memory_py": ("rss_per_tasklet", "B RSS/tasklet", {}),
    "million": ("seconds", "s", {}),
    "xthread": ("us_per_round_trip", "µs/round trip", {"threads": 1.0}),
    "gateway": ("us_per_round_trip", "µs/round trip", {"threads": 1.2}),
    "select": ("ns_per_message", "ns/message", {"plain": 2.0, "runloom": 0.5}),
    "await": ("ns_per_await", "ns/await", {}),
    "handoff": ("ns_per_message", "ns/message", {}),
}


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---- the greenlet emulation ------------------------------------------------------


def _emulation():
    """A minimal Stackless-style layer over greenlet, as users write one."""
    from collections import deque

    import greenlet

    class Scheduler:
        def __init__(self):
            self.runnable = deque()
            self.main = greenlet.getcurrent()

        def spawn(self, fn, *args):
            g = greenlet.greenlet(lambda: fn(*args), parent=self.main)
            self.runnable.append(g)
            return g

        def run(self):
            while self.runnable:
                self.runnable.popleft().switch()

        def block(self):
            # Back to the scheduler loop (a hub), which runs the next one; a
            # direct switch to the next would nest each start in the blocker's
            # stack and hit the recursion limit in a long chain.
            return self.main.switch()

    sched = Scheduler()

    class Channel:
        def __init__(self):
            self.receivers = deque()
            self.senders = deque()

        def send(self, value):
            if self.receivers:
                r = self.receivers.popleft()
                sched.runnable.append(greenlet.getcurrent())
                r.switch(value)
            else:
                self.senders.append((greenlet.getcurrent(), value))
                sched.block()

        def receive(self):
            if self.senders:
                s, value = self.senders.popleft()
                sched.runnable.append(s)
                return value
            self.receivers.append(greenlet.getcurrent())
            return sched.block()

    return sched, Channel


# ---- workloads, one function per (workload, peer) ---------------------------------


def _drive(n, ping, pong):
    """The main tasklet's side of a weft ping-pong: ns per message."""
    r, s = pong.receive, ping.send
    t0 = time.perf_counter()
    for i in range(n):
        s(i)
        r()
    return (time.perf_counter() - t0) / (2 * n) * 1e9


def channel_weft(n):
    import weft.stackless as stackless

    return _channel_tasklets(n, stackless)


def channel_stackless(n):
    import stackless

    return _channel_tasklets(n, stackless)


def _channel_tasklets(n, stackless):
    ping, pong = stackless.channel(), stackless.channel()

    def ponger():
        r, s = ping.receive, pong.send
        for _ in range(n):
            s(r())

    stackless.tasklet(ponger)()
    return _drive(n, ping, pong)


def _ping_pong(n, spawn, run, make_chan, recv_name):
    """ns per message between two microthreads of a scheduler driven by
    ``spawn(fn)`` and ``run()``, over channels with ``send`` and ``recv_name``."""
    ping, pong = make_chan(), make_chan()
    out = []

    def ponger():
        r = getattr(ping, recv_name)
        for _ in range(n):
            pong.send(r())

    def pinger():
        r = getattr(pong, recv_name)
        t0 = time.perf_counter()
        for i in range(n):
            ping.send(i)
            r()
        out.append(time.perf_counter() - t0)

    spawn(ponger)
    spawn(pinger)
    run()
    return out[0] / (2 * n) * 1e9


def channel_emulation(n):
    sched, Channel = _emulation()
    return _ping_pong(n, sched.spawn, sched.run, Channel, "receive")


def channel_asyncio(n):
    import asyncio

    async def main():
        ping, pong = asyncio.Queue(1), asyncio.Queue(1)

        async def ponger():
            for _ in range(n):
                await pong.put(await ping.get())

        task = asyncio.ensure_future(ponger())
        t0 = time.perf_counter()
        for i in range(n):
            await ping.put(i)
            await pong.get()
        dt = time.perf_counter() - t0
        await task
        return dt

    return asyncio.run(main()) / (2 * n) * 1e9


def _thread_ping_pong(n, ping, pong, put, get):
    """Seconds for ``n`` round trips between this thread and another one."""
    import threading

    def ponger():
        for _ in range(n):
            put(pong, get(ping))

    th = threading.Thread(target=ponger)
    th.start()
    t0 = time.perf_counter()
    for i in range(n):
        put(ping, i)
        get(pong)
    dt = time.perf_counter() - t0
    th.join()
    return dt


def channel_threads(n):
    import queue

    dt = _thread_ping_pong(n, queue.Queue(1), queue.Queue(1), queue.Queue.put, queue.Queue.get)
    return dt / (2 * n) * 1e9


def _runloom():
    import runloom  # noqa: F401  (CPython 3.13 only)

    return runloom


def channel_runloom(n):
    rl = _runloom()
    return _ping_pong(n, rl.fiber, lambda: rl.run(1), rl.Chan, "recv")


BATCH = 1000


def _noop():
    pass


def create_weft(n):
    import weft.stackless as stackless

    return _create_tasklets(n, stackless)


def create_stackless(n):
    import stackless

    return _create_tasklets(n, stackless)


def _create_tasklets(n, stackless):
    tasklet, run = stackless.tasklet, stackless.run
    t0 = time.perf_counter()
    for _ in range(n // BATCH):
        for _ in range(BATCH):
            tasklet(_noop)()
        run()
    return (time.perf_counter() - t0) / n * 1e6


def create_emulation(n):
    sched, _ = _emulation()
    t0 = time.perf_counter()
    for _ in range(n // BATCH):
        for _ in range(BATCH):
            sched.spawn(_noop)
        sched.run()
    return (time.perf_counter() - t0) / n * 1e6


def create_asyncio(n):
    import asyncio

    async def noop():
        pass

    async def main():
        t0 = time.perf_counter()
        for _ in range(n // BATCH):
            await asyncio.gather(*[asyncio.create_task(noop()) for _ in range(BATCH)])
        return time.perf_counter() - t0

    return asyncio.run(main()) / n * 1e6


def create_threads(n):
    import threading

    n = max(BATCH, n // 20)  # threads are slow to start: fewer of them
    t0 = time.perf_counter()
    for _ in range(n // BATCH):
        ts = [threading.Thread(target=_noop) for _ in range(BATCH)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    return (time.perf_counter() - t0) / n * 1e6


def create_runloom(n):
    rl = _runloom()
    t0 = time.perf_counter()
    for _ in range(n // BATCH):
        for _ in range(BATCH):
            rl.fiber(_noop)
        rl.run(1)
    return (time.perf_counter() - t0) / n * 1e6


def memory_weft(n):
    import weft.stackless as stackless

    return _memory_tasklets(n, stackless, frame=False)


def memory_stackless(n):
    import stackless

    return _memory_tasklets(n, stackless, frame=False)


def memory_py_weft(n):
    import weft.stackless as stackless

    return _memory_tasklets(n, stackless, frame=True)


def memory_py_stackless(n):
    import stackless

    return _memory_tasklets(n, stackless, frame=True)


def _wait_in_frame(receive):
    receive()


def _memory_tasklets(n, stackless, frame):
    ch = stackless.channel()
    gc.collect()
    before = _rss()
    for _ in range(n):
        if frame:
            stackless.tasklet(_wait_in_frame)(ch.receive)
        else:
            stackless.tasklet(ch.receive)()
    stackless.run()
    assert ch.balance == -n
    return (_rss() - before) / n


def memory_emulation(n, frame=False):
    sched, Channel = _emulation()
    ch = Channel()
    gc.collect()
    before = _rss()
    for _ in range(n):
        if frame:
            sched.spawn(_wait_in_frame, ch.receive)
        else:
            sched.spawn(ch.receive)
    sched.run()
    assert len(ch.receivers) == n
    return (_rss() - before) / n


def memory_py_emulation(n):
    return memory_emulation(n, frame=True)


def memory_asyncio(n):
    import asyncio

    async def main():
        q = asyncio.Queue()
        gc.collect()
        before = _rss()
        tasks = [asyncio.ensure_future(q.get()) for _ in range(n)]
        await asyncio.sleep(0)
        after = _rss()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return (after - before) / n

    return asyncio.run(main())


def memory_runloom(n):
    rl = _runloom()
    ch = rl.Chan()
    out = []

    def main():
        gc.collect()
        before = _rss()
        for _ in range(n):
            rl.fiber(ch.recv)
        rl.yield_now()  # every fiber runs to its recv and parks
        out.append((_rss() - before) / n)
        ch.close()  # wakes them all: they end

    rl.run(1, main)
    return out[0]


def million_weft(n):
    import weft.stackless as stackless

    n = 1_000_000
    chans = [stackless.channel() for _ in range(1000)]
    gc.collect()
    before = _rss()
    t0 = time.perf_counter()
    for i in range(n):
        stackless.tasklet(chans[i % 1000].receive)()
    stackless.run()
    dt = time.perf_counter() - t0
    total = _rss()
    assert sum(-c.balance for c in chans) == n
    print(json.dumps({"rss_total": total, "rss_per_tasklet": (total - before) / n}), file=sys.stderr)
    return dt


def xthread_weft(n):
    import weft.stackless as stackless

    ping, pong = stackless.channel(), stackless.channel()
    ping.preference = pong.preference = 0
    dt = _thread_ping_pong(n, ping, pong, stackless.channel.send, stackless.channel.receive)
    return dt / n * 1e6


def xthread_threads(n):
    return channel_threads(n) * 2 / 1e3


_ECHO = "while 1:\n    x = channel.receive()\n    if x is None: break\n    channel.send(x)\n"


def _gateway_echo(n):
    import weft.execnet as execnet

    gw = execnet.makegateway("popen")
    ch = gw.remote_exec(_ECHO)
    for i in range(200):  # warm up
        ch.send(i)
        ch.receive()
    t0 = time.perf_counter()
    for i in range(n):
        ch.send(i)
        ch.receive()
    dt = time.perf_counter() - t0
    ch.send(None)
    gw.exit()
    return dt / n * 1e6


def gateway_weft(n):
    """The echo round trip from inside a tasklet (another tasklet of the
    thread blocked on a channel, so the scheduler is in use)."""
    import weft.stackless as stackless

    side = stackless.channel()
    stackless.tasklet(side.receive)()
    stackless.run()
    out = []
    stackless.tasklet(lambda: out.append(_gateway_echo(n)))()
    stackless.run()
    side.send(None)
    return out[0]


def gateway_threads(n):
    """The same round trip from a plain thread (the main thread)."""
    return _gateway_echo(n)


def select_weft(n):
    """A ping-pong whose receiving side selects over two channels (one idle)."""
    import weft.stackless as stackless
    from weft.select import recv, select

    ping, pong, idle = stackless.channel(), stackless.channel(), stackless.channel()

    def ponger():
        cases = [recv(ping), recv(idle)]
        for _ in range(n):
            pong.send(select(cases)[1])

    stackless.tasklet(ponger)()
    return _drive(n, ping, pong)


def select_plain(n):
    """The same ping-pong with a plain receive (what select is measured against)."""
    return channel_weft(n)


def select_runloom(n):
    rl = _runloom()
    ping, pong, idle = rl.Chan(), rl.Chan(), rl.Chan()
    out = []

    def ponger():
        for _ in range(n):
            _, (value, _ok) = rl.select([("recv", ping), ("recv", idle)])
            pong.send(value)

    def pinger():
        t0 = time.perf_counter()
        for i in range(n):
            ping.send(i)
            pong.recv()
        out.append(time.perf_counter() - t0)

    rl.fiber(ponger)
    rl.fiber(pinger)
    rl.run(1)
    return out[0] / (2 * n) * 1e9


# ---- the asyncio bridge (weft.aio) -------------------------------------------------

def _sync_awaits(n, await_):
    """Seconds for ``n`` awaits of ``asyncio.sleep(0)`` from synchronous code
    through ``await_``."""
    import asyncio

    t0 = time.perf_counter()
    for _ in range(n):
        await_(asyncio.sleep(0))
    return time.perf_counter() - t0


def await_weft(n):
    import asyncio
    import weft.aio as aio

    async def main():
        async with aio.scheduler():
            return await aio.spawn(_sync_awaits, n, aio.await_)

    return asyncio.run(main()) / n * 1e9


def await_greenback(n):
    import asyncio
    import greenback

    async def main():
        await greenback.ensure_portal()
        return _sync_awaits(n, greenback.await_)

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


def _queue_ping_pong(n, echo):
    """ns per message between this coroutine and ``echo(ping, pong)`` (a
    coroutine function echoing over two asyncio.Queue)."""
    import asyncio

    async def main():
        ping, pong = asyncio.Queue(), asyncio.Queue()
        task = asyncio.ensure_future(echo(ping, pong))
        await asyncio.sleep(0)
        t0 = time.perf_counter()
        for i in range(n):
            await ping.put(i)
            await pong.get()
        dt = time.perf_counter() - t0
        await task
        return dt

    return asyncio.run(main()) / (2 * n) * 1e9


def handoff_greenback(n):
    import greenback

    async def echo(ping, pong):
        await greenback.ensure_portal()
        for _ in range(n):  # synchronous code, awaiting through greenback
            greenback.await_(pong.put(greenback.await_(ping.get())))

    return _queue_ping_pong(n, echo)


def handoff_asyncio(n):
    async def echo(ping, pong):
        for _ in range(n):
            await pong.put(await ping.get())

    return _queue_ping_pong(n, echo)


# ---- runner ------------------------------------------------------------------------

SIZES = {"channel": 200_000, "create": 100_000, "memory": 100_000, "memory_py": 100_000, "million": 1, "xthread": 20_000, "gateway": 5_000, "select": 100_000, "await": 100_000, "handoff": 50_000}
# The workloads a Stackless interpreter given by path runs.
STACKLESS_WORKLOADS = ("channel", "create", "memory", "memory_py")


def available(peer):
    mod = {"emulation": "greenlet", "runloom": "runloom", "weft": "weft.stackless", "greenback": "greenback"}.get(peer)
    if mod is None:
        return True
    probe = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True)
    return probe.returncode == 0


def measure(workload, peer, quick=False, stackless=None):
    """Runs one measurement in a fresh interpreter; returns the figure.
    The ``stackless`` peer runs in the interpreter at path ``stackless``,
    which imports this file as a plain module (weft is not installed there)."""
    n = SIZES[workload] // (10 if quick and workload != "million" else 1)
    if peer == "stackless":
        here = os.path.dirname(os.path.abspath(__file__))
        exe = stackless
        code = (f"import sys; sys.path.insert(0, {here!r}); import tasklets as b, json; "
                f"print(json.dumps(b.{workload}_{peer}({n})))")
    else:
        exe = sys.executable
        code = f"import weft._tooling.bench.tasklets as b, json; print(json.dumps(b.{workload}_{peer}({n})))"
    p = subprocess.run([exe, "-c", code], capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"{workload}/{peer} failed:\n{p.stderr[-2000:]}")
    extra = {}
    for line in p.stderr.splitlines():
        if line.startswith("{"):
            extra.update(json.loads(line))
    return json.loads(p.stdout.strip().splitlines()[-1]), extra


def check_stackless(path):
    """The interpreter at ``path`` runs ``import stackless``; else a clear error."""
    try:
        probe = subprocess.run([path, "-c", "import stackless, sys; print(sys.version.split()[0])"],
                               capture_output=True, text=True, timeout=60)
    except OSError as e:
        raise SystemExit(f"--stackless {path}: cannot run it ({e}); give the path of a Stackless Python interpreter") from None
    if probe.returncode != 0:
        raise SystemExit(f"--stackless {path}: 'import stackless' fails there; give the path of a Stackless Python interpreter:\n{probe.stderr[-500:]}")
    return probe.stdout.strip()


def run(workloads=None, rounds=3, quick=False, out=print, stackless=None):
    """Measures ``workloads``; ``stackless``, a path to a Stackless Python
    interpreter, adds it as a peer of the workloads in STACKLESS_WORKLOADS."""
    results = {}
    for w in workloads or WORKLOADS:
        peers = [p for p in PEERS[w] if available(p)]
        if stackless and w in STACKLESS_WORKLOADS:
            peers.append("stackless")
        samples = {p: [] for p in peers}
        extras = {}
        for _ in range(1 if w == "million" else rounds):
            for p in peers:
                v, extra = measure(w, p, quick, stackless)
                samples[p].append(v)
                extras.setdefault(p, {}).update(extra)
        best = {p: min(v) for p, v in samples.items()}
        results[w] = {"best": best, "samples": samples, "extra": extras}
        metric, unit, targets = METRICS[w]
        line = f"{w:8s} " + "  ".join(f"{p} {best[p]:,.1f}" for p in peers) + f"  ({unit})"
        ratios = []
        for p in peers:
            if p != "weft" and "weft" in best and best[p]:
                r = best["weft"] / best[p]
                goal = targets.get(p)
                ratios.append(f"weft/{p} {r:.2f}x" + (f" (goal <= {goal}x)" if goal else ""))
        out(line)
        if ratios:
            out("         " + ", ".join(ratios))
        if extras.get("weft"):
            out("         " + ", ".join(f"{k} {v:,.0f}" for k, v in extras["weft"].items()))
    return results
