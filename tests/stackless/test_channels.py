"""Channels: hand-off, balance, preference, schedule_all, exceptions, closing."""
import pytest

import weft.stackless as stackless


def order_of(preference, sender_first=False, schedule_all=False):
    """Who runs after a send to a waiting receiver (or a receive from a waiting sender)."""
    ch = stackless.channel()
    ch.preference = preference
    ch.schedule_all = schedule_all
    log = []

    def receiver():
        log.append("r-wait")
        log.append(("got", ch.receive()))
        log.append("r-after")

    def sender():
        log.append("s-wait")
        ch.send("x")
        log.append("s-after")

    first, second = (sender, receiver) if sender_first else (receiver, sender)
    stackless.tasklet(first)()
    stackless.tasklet(second)()
    stackless.run()
    return log


def test_default_preference_runs_the_receiver_first():
    assert order_of(-1) == ["r-wait", "s-wait", ("got", "x"), "r-after", "s-after"]


def test_sender_preference_lets_the_sender_go_on():
    assert order_of(1) == ["r-wait", "s-wait", "s-after", ("got", "x"), "r-after"]


def test_no_preference_lets_the_caller_go_on():
    assert order_of(0) == ["r-wait", "s-wait", "s-after", ("got", "x"), "r-after"]
    # A receive from a waiting sender: the receiver (caller) goes on.
    assert order_of(0, sender_first=True) == ["s-wait", "r-wait", ("got", "x"), "r-after", "s-after"]


def test_receive_from_waiting_sender_with_sender_preference():
    assert order_of(1, sender_first=True) == ["s-wait", "r-wait", "s-after", ("got", "x"), "r-after"]


def test_schedule_all_always_gives_way():
    log = order_of(-1, schedule_all=True)
    # The sender schedules away; the receiver was made runnable at the end.
    assert log == ["r-wait", "s-wait", ("got", "x"), "r-after", "s-after"]
    log = order_of(1, schedule_all=True)
    assert log == ["r-wait", "s-wait", ("got", "x"), "r-after", "s-after"]


def test_balance_and_queue():
    ch = stackless.channel()
    ts = [stackless.tasklet(ch.receive)() for _ in range(3)]
    stackless.run()
    assert ch.balance == -3
    assert ch.queue is ts[0]
    assert ts[0].next is ts[1] and ts[1].prev is ts[0]
    assert [t.blocked for t in ts] == [-1, -1, -1]
    for i in range(3):
        ch.send(i)
    assert ch.balance == 0 and ch.queue is None
    senders = [stackless.tasklet(ch.send)(i) for i in range(2)]
    stackless.run()
    assert ch.balance == 2 and [t.blocked for t in senders] == [1, 1]
    assert [ch.receive(), ch.receive()] == [0, 1]


def test_send_exception_and_send_throw():
    ch = stackless.channel()
    caught = []

    def r():
        for _ in range(2):
            try:
                ch.receive()
            except Exception as e:
                caught.append((type(e), e.args))

    stackless.tasklet(r)()
    stackless.run()
    ch.send_exception(KeyError, "a", "b")
    ch.send_throw(ValueError("v"))
    assert caught == [(KeyError, ("a", "b")), (ValueError, ("v",))]


def test_bomb_sent_as_value_is_raised():
    ch = stackless.channel()
    caught = []

    def r():
        try:
            ch.receive()
        except IndexError as e:
            caught.append(e)

    stackless.tasklet(r)()
    stackless.run()
    try:
        raise IndexError("in a bomb")
    except IndexError:
        b = stackless.bomb()
    ch.send(b)
    assert caught and str(caught[0]) == "in a bomb"


def test_send_sequence_and_iteration_ended_by_stop_iteration():
    ch = stackless.channel()
    got = []

    def consumer():
        for item in ch:
            got.append(item)

    stackless.tasklet(consumer)()
    stackless.run()
    assert ch.send_sequence(range(4)) == 4
    ch.send_exception(StopIteration)
    stackless.run()
    assert got == [0, 1, 2, 3]


def test_close_and_open():
    ch = stackless.channel()
    t = stackless.tasklet(ch.send)(1)
    stackless.run()
    ch.close()
    assert ch.closing and not ch.closed
    assert ch.receive() == 1
    assert ch.closed
    with pytest.raises(ValueError, match="closed"):
        ch.receive()
    with pytest.raises(ValueError, match="closed"):
        ch.send(2)
    assert list(ch) == []
    ch.open()
    assert not ch.closing
    stackless.run()
    assert not t.alive


def test_deadlock_is_an_error_not_a_hang():
    ch = stackless.channel()
    with pytest.raises(RuntimeError, match="Deadlock"):
        ch.receive()
    with pytest.raises(RuntimeError, match="Deadlock"):
        ch.send(1)
    assert ch.balance == 0


def test_block_trap():
    ch = stackless.channel()
    errors = []

    def f():
        stackless.getcurrent().block_trap = True
        try:
            ch.receive()
        except RuntimeError as e:
            errors.append(str(e))

    stackless.tasklet(f)()
    stackless.run()
    assert errors and "blocked" in errors[0]


def test_channel_callback():
    seen = []
    stackless.set_channel_callback(lambda ch, t, sending, willblock: seen.append((sending, willblock)))
    ch = stackless.channel()
    stackless.tasklet(ch.receive)()
    stackless.run()
    ch.send(1)
    stackless.set_channel_callback(None)
    assert seen == [(False, True), (True, False)]
    assert stackless.get_channel_callback() is None


def test_channel_subclass():
    class Counting(stackless.channel):
        def __init__(self):
            self.sent = 0

        def send(self, v):
            self.sent += 1
            return super().send(v)

    ch = Counting()
    stackless.tasklet(ch.receive)()
    stackless.run()
    ch.send(1)
    assert ch.sent == 1


def test_ping_pong_many_messages():
    ping, pong = stackless.channel(), stackless.channel()
    n = 10_000

    def ponger():
        for _ in range(n):
            pong.send(ping.receive() + 1)

    stackless.tasklet(ponger)()
    v = 0
    for _ in range(n):
        ping.send(v)
        v = pong.receive()
    assert v == n


def test_many_tasklets_in_a_channel_ring():
    n = 20_000
    chans = [stackless.channel() for _ in range(n + 1)]

    def link(i):
        chans[i + 1].send(chans[i].receive() + 1)

    for i in range(n):
        stackless.tasklet(link)(i)
    stackless.run()
    assert all(c.balance == -1 for c in chans[:n])
    chans[0].send(0)
    assert chans[n].receive() == n


def test_send_takes_its_value_by_keyword_and_reports_bad_calls():
    # channel.send has a fast entry for one positional argument; every other
    # call goes to the method PyO3 made, with its parsing and messages.
    import inspect

    ch = stackless.channel()
    got = []
    stackless.tasklet(lambda: got.append(ch.receive()))()
    stackless.schedule()
    ch.send(value="kw")
    stackless.tasklet(lambda: got.append(ch.receive()))()
    stackless.schedule()
    stackless.channel.send(ch, "unbound")
    assert got == ["kw", "unbound"]
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'value'"):
        ch.send()
    with pytest.raises(TypeError, match="takes 1 positional arguments but 2 were given"):
        ch.send(1, 2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'x'"):
        ch.send(value=1, x=2)
    with pytest.raises(TypeError):
        stackless.channel.send(1, 2)
    assert str(inspect.signature(stackless.channel.send)) == "(self, /, value)"
    assert ch.balance == 0
