"""run(timeout=N): preemption by instruction ticks, atomic, soft, totaltimeout, nesting."""
import sys
import threading

import weft.stackless as stackless


def spinner(counter):
    while True:
        counter[0] += 1


def test_run_timeout_interrupts_and_returns_the_tasklet():
    n = [0]
    t = stackless.tasklet(spinner)(n)
    victim = stackless.run(1000)
    assert victim is t
    assert t.alive and not t.scheduled and n[0] > 0
    t.kill()


def test_a_one_instruction_loop_is_interrupted_too():
    def f():
        while True:
            pass

    t = stackless.tasklet(f)()
    assert stackless.run(500) is t
    t.kill()


def test_interrupted_tasklet_resumes_where_it_was():
    n = [0]
    t = stackless.tasklet(spinner)(n)
    assert stackless.run(1000) is t
    first = n[0]
    t.insert()
    assert stackless.run(1000) is t
    assert n[0] > first
    t.kill()


def test_atomic_tasklets_are_not_interrupted():
    done = []

    def f():
        with stackless.atomic():
            total = 0
            for i in range(20_000):
                total += i
            done.append(total)
        # Interruptible again from here on: the budget ran out long ago.
        while True:
            pass

    t = stackless.tasklet(f)()
    assert stackless.run(100) is t
    assert done == [sum(range(20_000))]
    t.kill()


def test_round_robin_preemption_with_reinsert():
    counts = {"a": 0, "b": 0}

    def work(name):
        for _ in range(30_000):
            counts[name] += 1

    stackless.tasklet(work)("a")
    stackless.tasklet(work)("b")
    rounds = 0
    while stackless.getruncount() > 1 or rounds == 0:
        t = stackless.run(2000)
        rounds += 1
        if t is None:
            break
        t.insert()
    assert counts == {"a": 30_000, "b": 30_000}
    assert rounds > 2


def test_soft_timeout_returns_at_the_next_schedule_point():
    log = []

    def f():
        for i in range(5):
            for _ in range(2000):
                pass
            log.append(i)
            stackless.schedule()

    t = stackless.tasklet(f)()
    assert stackless.run(500, soft=True) is None
    assert t.alive and t.scheduled and len(log) < 5
    stackless.run()
    assert log == [0, 1, 2, 3, 4]


def test_totaltimeout_counts_across_tasklets():
    def polite():
        for _ in range(10_000):
            stackless.schedule()

    a = stackless.tasklet(polite)()
    b = stackless.tasklet(polite)()
    t = stackless.run(5000, totaltimeout=True)
    assert t in (a, b)
    for x in (a, b):
        x.kill()


def test_without_timeout_a_switching_tasklet_is_never_interrupted():
    def polite():
        for _ in range(1000):
            stackless.schedule()

    stackless.tasklet(polite)()
    assert stackless.run() is None


def test_tracer_is_restored_after_a_watched_run():
    calls = []

    def tracer(frame, event, arg):
        calls.append(event)
        return None

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        stackless.tasklet(lambda: None)()
        stackless.run(100)
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(old)


def test_nested_run_from_a_tasklet():
    log = []

    def inner():
        log.append("inner")

    def outer():
        stackless.tasklet(inner)()
        stackless.run()
        log.append("outer after nested run")

    stackless.tasklet(outer)()
    stackless.run()
    assert log == ["inner", "outer after nested run"]


def test_preemption_in_another_thread():
    result = []

    def thread_main():
        n = [0]
        t = stackless.tasklet(spinner)(n)
        result.append(stackless.run(1000) is t)
        t.kill()
        result.append(stackless.getruncount())

    th = threading.Thread(target=thread_main)
    th.start()
    th.join(30)
    assert result == [True, 1]
