"""A tasklet that waits on a weft.execnet channel blocks only itself."""
import random
import threading

import pytest

import weft.stackless as stackless

execnet = pytest.importorskip("weft.execnet")


@pytest.fixture
def gw():
    g = execnet.makegateway("popen")
    yield g
    g.exit()


ECHO = """
while True:
    item = channel.receive()
    if item is None:
        break
    channel.send(item)
"""


def test_other_tasklets_run_while_one_waits_on_a_gateway(gw):
    ch = gw.remote_exec("import time; time.sleep(0.5); channel.send('late')")
    log = []

    def waiter():
        log.append(("got", ch.receive()))

    def worker():
        for i in range(5):
            log.append(("tick", i))
            stackless.schedule()

    stackless.tasklet(waiter)()
    stackless.tasklet(worker)()
    stackless.run()
    # The worker ran all its turns while the waiter was parked on the gateway.
    assert log[:5] == [("tick", i) for i in range(5)]
    assert log[-1] == ("got", "late")


def test_many_tasklets_echo_over_one_gateway(gw):
    results = {}

    def client(k):
        ch = gw.remote_exec(ECHO)
        for i in range(20):
            ch.send((k, i))
            assert ch.receive() == (k, i)
        ch.send(None)
        ch.waitclose(10)
        results[k] = True

    for k in range(4):
        stackless.tasklet(client)(k)
    stackless.run()
    assert results == {k: True for k in range(4)}


def test_receive_timeout_in_a_tasklet(gw):
    ch = gw.remote_exec("channel.receive()")
    errors = []

    def waiter():
        try:
            ch.receive(timeout=0.2)
        except ch.TimeoutError as e:
            errors.append(e)

    def other():
        stackless.schedule()

    stackless.tasklet(waiter)()
    stackless.tasklet(other)()
    stackless.run()
    assert len(errors) == 1
    ch.send(1)
    ch.waitclose(5)


def test_main_tasklet_alone_still_uses_the_thread_path(gw):
    ch = gw.remote_exec(ECHO)
    for i in range(50):
        ch.send(i)
        assert ch.receive() == i
    ch.send(None)
    ch.waitclose(5)


@pytest.mark.parametrize("seed", [random.randrange(1 << 30) for _ in range(2)])
def test_tasklets_on_several_gateways_all_idle(seed):
    # Every tasklet waits on a gateway of its own and nothing else can run:
    # the thread idles in the scheduler, which wakes for whichever item
    # comes first; each reply releases the next gateway's, in a random order.
    print("seed", seed)
    rng = random.Random(seed)
    gws = [execnet.makegateway("popen") for _ in range(3)]
    try:
        chans = [gw.remote_exec("channel.send(channel.receive() * 2)") for gw in gws]
        order = list(range(3))
        rng.shuffle(order)
        got = []

        def waiter(k):
            got.append((k, chans[k].receive(30)))
            nxt = order.index(k) + 1
            if nxt < len(order):
                chans[order[nxt]].send(order[nxt])

        for k in range(3):
            stackless.tasklet(waiter)(k)
        chans[order[0]].send(order[0])
        stackless.run()
        assert got == [(k, 2 * k) for k in order]
    finally:
        for gw in gws:
            gw.exit()


def test_idle_tasklet_on_a_gateway_and_one_on_a_channel_fed_by_a_thread(gw):
    ch = gw.remote_exec("channel.send(channel.receive())")
    local = stackless.channel()
    got = []

    def from_gateway():
        got.append(("gw", ch.receive(30)))

    def from_thread():
        v = local.receive()
        got.append(("thread", v))
        ch.send("echo")  # only now does the gateway waiter get its item

    stackless.tasklet(from_gateway)()
    stackless.tasklet(from_thread)()
    th = threading.Thread(target=lambda: local.send("hi"))
    th.start()
    # run() waits while a tasklet is parked on the gateway; the thread's
    # hand-off wakes the other one, whose send releases the first.
    stackless.run()
    th.join()
    assert got == [("thread", "hi"), ("gw", "echo")]
