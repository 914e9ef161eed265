"""Coroutines whose body is a builtin function start without a Python data
stack (see pystate.c's run_new); one that then runs Python code gets
CPython's own chunk, which must go back to CPython's allocator, not weft's
pool. These tests drive every way such a coroutine ends."""
import gc
import subprocess
import sys
import textwrap
import threading

import weft.greenlet as greenlet
import weft.stackless as stackless


def deep(n):
    """Python frames, enough to need more than one data-stack chunk."""
    return 0 if n == 0 else 1 + deep(n - 1)


def test_builtin_body_that_calls_python_finishes():
    ch = stackless.channel()
    out = []
    # sorted is a builtin; its key function is Python code, run on the
    # chunk CPython makes for the coroutine.
    t = stackless.tasklet(sorted)([3, 1, 2], key=lambda x: (ch.send(x) if x == 1 else None, -x)[1])
    stackless.tasklet(lambda: out.append(ch.receive()))()
    stackless.run()
    assert out == [1]
    assert not t.alive


def test_builtin_body_runs_deep_python_then_blocks_and_is_killed():
    ch = stackless.channel()
    started = []

    def f():
        started.append(deep(300))
        ch.receive()

    # map is a builtin class, not a builtin function: the exact check keeps
    # its chunk. functools.reduce is a builtin function calling f.
    import functools

    t = stackless.tasklet(functools.reduce)(lambda a, b: f(), [1, 2])
    stackless.run()
    assert started == [300]
    assert t.blocked == -1
    t.kill()
    assert not t.alive


def test_many_builtin_bodies_collected_while_suspended():
    ch = stackless.channel()
    for _ in range(200):
        stackless.tasklet(ch.receive)()
    stackless.run()
    assert ch.balance == -200
    del ch
    gc.collect()
    stackless.schedule()  # the collected tasklets are killed here
    assert stackless.getruncount() == 1


def test_greenlet_with_builtin_run_calls_python():
    seen = []
    g = greenlet.greenlet(run=sorted)
    assert g.switch([2, 1], key=lambda x: seen.append(deep(50)) or x) == [1, 2]
    assert seen == [50, 50]
    assert g.dead


def test_greenlet_with_builtin_run_left_suspended_in_python_by_dead_thread():
    # A greenlet whose builtin body called Python code and switched away
    # inside it, in a thread that then exits: its chunks (CPython's root
    # among them) are released when the greenlet is retired.
    box = []

    def run():
        main = greenlet.getcurrent()

        def key(x):
            deep(20)
            main.switch(x)
            return x

        g = greenlet.greenlet(run=sorted)
        box.append(g.switch([5], key=key))
        box.append(g)

    th = threading.Thread(target=run)
    th.start()
    th.join()
    assert box[0] == 5
    g = box.pop()
    repr(g)  # touching it is safe after its thread died
    del g
    box.clear()
    gc.collect()
    # The retired greenlet's memory went back: a new one in this thread runs.
    assert greenlet.greenlet(run=sorted).switch([2, 1], key=lambda x: (deep(30), x)[1]) == [1, 2]


def test_builtin_body_tasklets_at_interpreter_exit():
    code = textwrap.dedent(
        """
        import functools
        import weft.stackless as stackless
        ch = stackless.channel()
        def f(a, b):
            ch.receive()
        for _ in range(50):
            stackless.tasklet(ch.receive)()
            stackless.tasklet(functools.reduce)(f, [1, 2])
        stackless.run()
        assert ch.balance == -100, ch.balance
        print("ok")
        """
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"
