"""Leak checks: long create/finish and switch/kill loops keep RSS flat.

Each check runs in a fresh interpreter (so the test suite's own allocations do
not move RSS, and a crash is a failure rather than a dead run).  Method: run
a warm-up of WARMUP cycles (lets pymalloc arenas, free lists, caches and the
greenlet implementation's own pools reach steady state), take RSS, run
CYCLES more, take RSS again.

Slack: RSS moves in page / arena granularity even without a leak -- pymalloc
allocates 1 MiB arenas (CPython >= 3.10, 64-bit), glibc malloc keeps freed
memory below its trim threshold, and a stack or two of pages may be touched
for the first time.  2 MiB covers one or two such steps.  A real leak of even
24 bytes per cycle is 100,000 * 24 B = 2.4 MB and fails; a leaked greenlet,
frame or switch-argument object is several times that.  In addition, the
reference counts of the objects every cycle touches (the run function and a
sentinel argument) must be unchanged, which catches object leaks exactly.
"""
import textwrap

from gtest_support import run_script

SLACK = 2 * 1024 * 1024
WARMUP = 10_000
CYCLES = 100_000

LEAK_PRELUDE = """
import gc, sys, psutil
_proc = psutil.Process()
SLACK, WARMUP, CYCLES = %d, %d, %d

def rss():
    gc.collect()
    return _proc.memory_info().rss

def check(name, cycle, watched):
    for _ in range(WARMUP):
        cycle()
    gc.collect()
    refs0 = [sys.getrefcount(o) for o in watched]
    before = rss()
    for _ in range(CYCLES):
        cycle()
    after = rss()
    refs1 = [sys.getrefcount(o) for o in watched]
    growth = after - before
    print("%%s: rss before=%%d after=%%d growth=%%d refs %%s -> %%s"
          %% (name, before, after, growth, refs0, refs1), flush=True)
    assert refs0 == refs1, (name, "reference leak", refs0, refs1)
    assert growth <= SLACK, (name, "RSS grew by %%d bytes" %% growth)
""" % (SLACK, WARMUP, CYCLES)


def _run(code, timeout=300):
    proc = run_script(LEAK_PRELUDE + textwrap.dedent(code), timeout=timeout)
    return proc


def test_create_and_finish_cycles_flat_rss_subprocess():
    _run(
        """
        SENTINEL = object()

        def run(x, y=None):
            return x

        def cycle():
            g = greenlet(run)
            assert g.switch(SENTINEL, y=SENTINEL) is SENTINEL

        check("create/finish", cycle, [run, SENTINEL])

        def unstarted():
            greenlet(run)

        check("create/drop unstarted", unstarted, [run])
        print("OK")
        """
    )


def test_switch_cycles_with_suspended_greenlets_killed_flat_rss_subprocess():
    _run(
        """
        SENTINEL = object()
        main = getcurrent()

        def run(x):
            try:
                while True:
                    x = main.switch(x)
            finally:
                pass

        def cycle():
            g = greenlet(run)
            for _ in range(3):
                assert g.switch(SENTINEL) is SENTINEL
            # g is suspended; dropping the last reference kills it

        check("switch + kill on drop", cycle, [run, SENTINEL, main])

        def cycle_throw():
            g = greenlet(run)
            g.switch(SENTINEL)
            assert isinstance(g.throw(), GreenletExit)

        check("switch + kill by throw()", cycle_throw, [run, SENTINEL, main])

        def nested(x):
            inner = greenlet(run, main)
            inner.switch(x)
            main.switch(x)

        def cycle_nested():
            g = greenlet(nested)
            g.switch(SENTINEL)
            # drop g: killing it releases its frame and with it the
            # suspended inner greenlet, which is killed too

        check("nested kill on drop", cycle_nested, [run, nested, SENTINEL, main])
        print("OK")
        """
    )


def test_exception_and_throw_cycles_flat_rss_subprocess():
    _run(
        """
        class E(Exception):
            pass

        def raiser():
            getcurrent().parent.switch()
            raise E("x")

        def cycle():
            g = greenlet(raiser)
            g.switch()
            try:
                g.switch()
            except E:
                pass

        check("exception propagated to parent", cycle, [raiser, E])

        def catcher():
            try:
                getcurrent().parent.switch()
            except E as e:
                return e

        def cycle_throw():
            g = greenlet(catcher)
            g.switch()
            assert isinstance(g.throw(E), E)

        check("throw caught", cycle_throw, [catcher, E])
        print("OK")
        """
    )


def test_thread_exit_with_suspended_greenlets_flat_rss_subprocess():
    # Fewer cycles: each one is an OS thread.  Still 2000 threads x 5
    # greenlets; leaking the per-thread state or the suspended greenlets
    # (each with a Python frame) would exceed the slack.
    run_script(
        """
        import gc, threading, psutil
        proc = psutil.Process()
        def run():
            try:
                getcurrent().parent.switch()
            finally:
                pass
        def body():
            gs = [greenlet(run) for _ in range(5)]
            for g in gs:
                g.switch()
        def batch(n):
            for _ in range(n):
                t = threading.Thread(target=body)
                t.start()
                t.join()
        batch(500)
        gc.collect()
        before = proc.memory_info().rss
        batch(2000)
        gc.collect()
        after = proc.memory_info().rss
        print("threads: growth", after - before, flush=True)
        assert after - before <= 2 * 1024 * 1024, after - before
        """,
        timeout=300,
    )


def test_greenlets_left_suspended_by_exited_thread_dropped_in_main_flat_rss_subprocess():
    # The greenlets outlive their thread (the main thread holds them) and are
    # dropped there, where they cannot be killed: as in greenlet, their data
    # stacks must still be given back. 200 threads x 100 greenlets, some deep
    # enough to need more than their first data-stack chunk; a leaked chunk
    # is 2 KiB or more, so a leak is 40 MB against 2 MiB of slack.
    run_script(
        """
        import gc, threading, time, psutil
        proc = psutil.Process()
        def deep(n):
            if n:
                return deep(n - 1)
            getcurrent().parent.switch()
        def run(depth):
            deep(depth)
        def cycle(n_threads):
            for _ in range(n_threads):
                held = []
                def body():
                    for i in range(100):
                        g = greenlet(run)
                        g.switch(200 if i % 10 == 0 else 1)
                        held.append(g)
                t = threading.Thread(target=body)
                t.start()
                t.join()
                while not all(g.dead for g in held):
                    time.sleep(0.001)  # the thread's greenlet state goes with the OS thread
                del held[:]
        cycle(50)
        gc.collect()
        before = proc.memory_info().rss
        cycle(200)
        gc.collect()
        after = proc.memory_info().rss
        print("dropped after thread exit: growth", after - before, flush=True)
        assert after - before <= 2 * 1024 * 1024, after - before
        """,
        timeout=300,
    )
