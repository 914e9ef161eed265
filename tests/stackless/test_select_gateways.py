"""select over weft.execnet channels, mixed with tasklet channels."""
import pytest

import weft.stackless as stackless
from weft.select import CLOSED, recv, select

execnet = pytest.importorskip("weft.execnet")


@pytest.fixture
def group():
    g = execnet.Group()
    yield g
    g.terminate(5)


def test_fan_out_to_gateways_and_collect_with_select(group):
    gws = [group.makegateway("popen") for _ in range(3)]
    chans = [gw.remote_exec("n = channel.receive(); channel.send(n * n)") for gw in gws]
    for n, ch in enumerate(chans):
        ch.send(n + 2)
    results = {}
    while len(results) < 3:
        i, v = select([recv(c) for c in chans], timeout=30)
        if v is not CLOSED:
            results[i] = v
    assert sorted(results.values()) == [4, 9, 16]


def test_gateway_channel_and_tasklet_channel_in_one_select(group):
    gw = group.makegateway("popen")
    # The remote side stays open until told to end: only one case is ready at a time.
    remote = gw.remote_exec("import time; time.sleep(0.3); channel.send('remote'); channel.receive()")
    local = stackless.channel()
    assert select(recv(remote), recv(local), timeout=30) == (0, "remote")
    stackless.tasklet(local.send)("local")
    stackless.run()
    assert select(recv(remote), recv(local), timeout=30) == (1, "local")
    remote.send("end")
    remote.waitclose(10)
    assert select(recv(remote), timeout=30) == (0, CLOSED)


def test_select_in_a_tasklet_blocks_only_it(group):
    gw = group.makegateway("popen")
    remote = gw.remote_exec("import time; time.sleep(0.3); channel.send('late')")
    log = []

    def chooser():
        log.append(select(recv(remote), timeout=30))

    def ticker():
        for i in range(3):
            log.append(i)
            stackless.schedule()

    stackless.tasklet(chooser)()
    stackless.tasklet(ticker)()
    stackless.run()
    assert log[:3] == [0, 1, 2] and log[-1] == (0, "late")


def test_remote_error_is_raised(group):
    gw = group.makegateway("popen")
    ch = gw.remote_exec("raise ValueError('remote boom')")
    with pytest.raises(execnet.RemoteError, match="remote boom"):
        for _ in range(3):
            select(recv(ch), timeout=30)
