"""select over weft.execnet channels, mixed with tasklet channels."""
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


@pytest.fixture(scope="module")
def remote_gateways():
    g = execnet.Group()
    gws = [g.makegateway("popen") for _ in range(2)]
    yield gws
    g.terminate(5)


# The remote side sends its items and ends, which closes the channel right
# behind the last item.
SENDS_THEN_ENDS = """
n, tag = channel.receive()
for j in range(n):
    channel.send((tag, j))
"""


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1))
def test_randomized_select_against_senders_closers_and_gateways(remote_gateways, seed):
    # Tasklet channels fed by sender tasklets and closed at random moments
    # (a send that finds its channel closed fails, so it was not sent), and
    # gateway channels whose remote side sends and closes: the select loop
    # gets every item that was sent exactly once, and each channel's CLOSED
    # once, whatever the interleaving.
    print(f"seed={seed}")
    t0 = time.monotonic()
    rnd = random.Random(seed)
    local = [stackless.channel() for _ in range(rnd.randint(1, 3))]
    for c in local:
        c.preference = rnd.choice([-1, 0, 1])
    sent = []

    def sender(k, ch):
        for j in range(rnd.randint(0, 8)):
            try:
                ch.send(("local", k, j))
            except ValueError:  # closed meanwhile: this one was not sent
                break
            sent.append(("local", k, j))
            if rnd.random() < 0.4:
                stackless.schedule()

    def closer(ch, turns):
        for _ in range(turns):
            stackless.schedule()
        ch.close()

    for k, ch in enumerate(local):
        stackless.tasklet(sender)(k, ch)
        stackless.tasklet(closer)(ch, rnd.randint(0, 12))
    remote = []
    for r, gw in enumerate(rnd.sample(remote_gateways, rnd.randint(0, len(remote_gateways)))):
        ch = gw.remote_exec(SENDS_THEN_ENDS)
        n = rnd.randint(0, 10)
        ch.send((n, "remote%d" % r))
        sent.extend(("remote%d" % r, j) for j in range(n))
        remote.append(ch)
    cases = [recv(c) for c in local + remote]
    open_ = list(range(len(cases)))
    got, closed = [], []
    while open_:
        i, v = select([cases[k] for k in open_], timeout=30)
        k = open_[i]
        if v is CLOSED:
            closed.append(k)
            open_.remove(k)
        else:
            got.append(tuple(v) if v[0] == "local" else v)
    stackless.run()
    print(f"took {time.monotonic() - t0:.2f} s")
    assert sorted(got) == sorted(sent)
    assert sorted(closed) == list(range(len(cases)))
