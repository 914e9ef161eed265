"""A tasklet that waits on a weft.execnet channel blocks only itself."""
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
