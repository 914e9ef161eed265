"""Paths that must never crash, hang or lose data: interpreter exit, thread
exit, Ctrl-C, collection of suspended tasklets, hostile callbacks."""
import subprocess
import sys
import textwrap
import threading

import pytest

import weft.stackless as stackless


def run_script(src, timeout=60):
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(src)], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def test_interpreter_exit_with_blocked_and_paused_tasklets():
    rc, out, err = run_script("""
        import threading
        import weft.stackless as s
        ch = s.channel()
        for i in range(100):
            s.tasklet(ch.receive)()
        s.tasklet(s.schedule_remove)()
        s.run()
        def other():
            c2 = s.channel()
            s.tasklet(c2.receive)()
            s.run()
        t = threading.Thread(target=other); t.start(); t.join()
        print("bye")
    """)
    assert rc == 0, err
    assert out.strip() == "bye"


def test_ctrl_c_interrupts_a_blocked_main_tasklet():
    rc, out, err = run_script("""
        import os, signal, threading
        import weft.stackless as s
        ch = s.channel()
        ready = threading.Event()
        def interrupt():
            ready.wait()
            os.kill(os.getpid(), signal.SIGINT)
        threading.Thread(target=interrupt, daemon=True).start()
        ready.set()
        try:
            ch.receive()
        except KeyboardInterrupt:
            print("interrupted", ch.balance, s.getruncount())
    """)
    assert rc == 0, err
    assert out.strip() == "interrupted 0 1"


def test_waiter_of_an_exited_thread_is_skipped_not_handed_the_value():
    ch = stackless.channel()
    ready = threading.Event()

    def dies_blocked():
        stackless.tasklet(ch.receive)()
        stackless.run()
        ready.set()

    th = threading.Thread(target=dies_blocked)
    th.start()
    ready.wait(10)
    th.join(10)
    assert ch.balance == -1
    got = []
    stackless.tasklet(lambda: got.append(ch.receive()))()
    stackless.run()
    # The dead thread's waiter is passed over: the live receiver gets the value.
    ch.send("kept")
    assert got == ["kept"]
    assert ch.balance == 0


def test_many_unreferenced_suspended_tasklets_are_collected():
    import gc

    log = []

    def f(i):
        try:
            stackless.schedule_remove()
        finally:
            log.append(i)

    for i in range(2000):
        stackless.tasklet(f)(i)
    stackless.run()
    gc.collect()
    # Killed at the next scheduler call of the thread (not inside whatever
    # dropped the last reference, which may be the middle of a switch).
    stackless.getruncount()
    assert sorted(log) == list(range(2000))


def test_raising_schedule_callback_does_not_corrupt_the_scheduler():
    def bad(prev, nxt):
        raise ValueError("callback")

    stackless.set_schedule_callback(bad)
    stackless.tasklet(lambda: None)()
    with pytest.raises(ValueError, match="callback"):
        stackless.run()
    stackless.set_schedule_callback(None)
    stackless.run()
    assert stackless.getruncount() == 1


def test_finalizer_that_uses_the_scheduler_gets_a_clear_error_or_works():
    class Nasty:
        def __del__(self):
            try:
                stackless.getcurrent()
            except RuntimeError:
                pass

    def f():
        x = Nasty()  # noqa: F841 - dropped when the tasklet ends
        stackless.schedule()

    for _ in range(50):
        stackless.tasklet(f)()
    stackless.run()
    assert stackless.getruncount() == 1


def test_randomized_operations_never_crash():
    import random

    seed = random.randrange(2**32)
    print("seed", seed)
    rnd = random.Random(seed)
    chans = [stackless.channel() for _ in range(4)]
    tasklets = []

    def body(k):
        for _ in range(rnd.randrange(1, 6)):
            op = rnd.randrange(4)
            c = rnd.choice(chans)
            if op == 0:
                stackless.schedule()
            elif op == 1 and c.balance < 0:
                c.send(k)
            elif op == 2 and c.balance > 0:
                c.receive()
            else:
                stackless.schedule()

    for step in range(400):
        choice = rnd.randrange(6)
        if choice < 3:
            tasklets.append(stackless.tasklet(body)(step))
        elif choice == 3 and tasklets:
            rnd.choice(tasklets).kill()
        elif choice == 4:
            stackless.run()
        else:
            for c in chans:
                if c.balance < 0:
                    c.send(None)
                    break
    for t in tasklets:
        t.kill()
    stackless.run()
    assert stackless.getruncount() == 1
    assert all(c.balance == 0 for c in chans)
