"""One scheduler per thread; channels shared between threads."""
import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import weft.stackless as stackless


def run_in_thread(fn, timeout=30):
    out = {}

    def body():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported to the test
            out["error"] = e

    th = threading.Thread(target=body)
    th.start()
    th.join(timeout)
    assert not th.is_alive(), "thread did not finish"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_each_thread_has_its_own_main_and_scheduler():
    mine = stackless.getmain()

    def other():
        m = stackless.getmain()
        return m is not mine, m.is_main, stackless.getruncount(), m.thread_id == threading.get_ident()

    assert run_in_thread(other) == (True, True, 1, True)
    assert threading.get_ident() in stackless.getthreads()


def test_main_tasklet_blocks_until_another_thread_sends():
    ch = stackless.channel()
    started = threading.Event()

    def sender():
        started.wait()
        ch.send("from the other thread")

    th = threading.Thread(target=sender)
    th.start()
    started.set()
    assert ch.receive() == "from the other thread"
    th.join()


def test_send_from_a_thread_to_a_tasklet_blocked_in_another():
    ch = stackless.channel()
    got = []
    ready = threading.Event()

    def receiver_thread():
        def r():
            got.append(ch.receive())

        stackless.tasklet(r)()
        stackless.run()  # r blocks; run returns
        ready.set()
        # Idle here until the other thread's send makes r runnable again.
        stackless.run(threadblock=True)
        return got

    th = threading.Thread(target=lambda: results.append(receiver_thread()))
    results = []
    th.start()
    ready.wait(10)
    assert ch.balance == -1
    ch.send(99)
    th.join(10)
    assert results == [[99]]


def test_switching_to_another_threads_tasklet_is_refused():
    box = []

    def make():
        t = stackless.tasklet(lambda: None)
        t.bind(lambda: None, ())
        box.append(t)

    run_in_thread(make)
    t = box[0]
    with pytest.raises(RuntimeError, match="another thread"):
        t.run()
    with pytest.raises(RuntimeError, match="another thread"):
        t.switch()


def test_cross_thread_round_trips():
    ping, pong = stackless.channel(), stackless.channel()
    n = 500

    def echo():
        for _ in range(n):
            pong.send(ping.receive() * 2)

    th = threading.Thread(target=echo)
    th.start()
    for i in range(n):
        ping.send(i)
        assert pong.receive() == 2 * i
    th.join()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), threads=st.integers(2, 4), per_thread=st.integers(1, 6), items=st.integers(1, 40))
def test_randomized_cross_thread_traffic_loses_nothing(seed, threads, per_thread, items):
    """Producers in several threads (several tasklets each) send to one channel;
    consumers in other threads receive. Every item arrives exactly once."""
    print(f"seed={seed} threads={threads} per_thread={per_thread} items={items}")
    rnd = random.Random(seed)
    ch = stackless.channel()
    ch.preference = rnd.choice([-1, 0, 1])
    total = threads * per_thread * items
    received = []
    lock = threading.Lock()
    consumers = 2
    counts = [total // consumers + (1 if i < total % consumers else 0) for i in range(consumers)]

    def producer_thread(tid):
        def produce(k):
            for j in range(items):
                ch.send((tid, k, j))
                if rnd.random() < 0.3:
                    stackless.schedule()

        for k in range(per_thread):
            stackless.tasklet(produce)(k)
        stackless.run(threadblock=True)

    def consumer_thread(count):
        got = []
        for _ in range(count):
            got.append(ch.receive())
        with lock:
            received.extend(got)

    ths = [threading.Thread(target=producer_thread, args=(t,)) for t in range(threads)]
    ths += [threading.Thread(target=consumer_thread, args=(c,)) for c in counts]
    rnd.shuffle(ths)
    for t in ths:
        t.start()
    for t in ths:
        t.join(60)
        assert not t.is_alive(), f"seed {seed}: a thread hung"
    assert sorted(received) == sorted((t, k, j) for t in range(threads) for k in range(per_thread) for j in range(items))


def test_thread_info_of_another_thread():
    ready, go = threading.Event(), threading.Event()
    box = {}

    def other():
        ch = stackless.channel()
        stackless.tasklet(lambda: None)()  # runnable, not run yet
        box["main"] = stackless.getmain()
        box["id"] = stackless.getcurrent().thread_id
        stackless.tasklet(ch.receive)()
        stackless.schedule()  # a switch publishes the run count
        ready.set()
        go.wait(30)

    th = threading.Thread(target=other)
    th.start()
    try:
        assert ready.wait(30)
        main, cur, n = stackless.get_thread_info(box["id"])
        assert main is box["main"]
        assert cur is box["main"]  # it waits in its main tasklet
        assert n >= 1
    finally:
        go.set()
        th.join()
    with pytest.raises(ValueError, match="getthreads"):
        stackless.get_thread_info(box["id"])  # exited
