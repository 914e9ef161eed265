"""weft.select: one wait on several channel operations (docs/select.md)."""
import collections
import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import weft.stackless as stackless
from weft.select import CLOSED, recv, select, send


def test_ready_case_is_taken_without_blocking():
    a, b = stackless.channel(), stackless.channel()
    stackless.tasklet(b.send)("x")
    stackless.run()
    assert select(recv(a), recv(b)) == (1, "x")
    assert a.balance == b.balance == 0


def test_default_when_nothing_is_ready():
    a = stackless.channel()
    assert select(recv(a), send(a, 1), default="nothing") == (-1, "nothing")
    assert a.balance == 0


def test_blocking_select_in_a_tasklet_blocks_only_it():
    a, b = stackless.channel(), stackless.channel()
    log = []

    def chooser():
        log.append(select(recv(a), recv(b)))

    def other():
        log.append("other ran")
        b.send("from b")

    stackless.tasklet(chooser)()
    stackless.tasklet(other)()
    stackless.run()
    assert log == ["other ran", (1, "from b")]
    assert a.balance == 0 and b.balance == 0


def test_send_case_hands_its_value_over():
    a = stackless.channel()
    got = []
    stackless.tasklet(lambda: got.append(select(send(a, 99))))()
    stackless.run()
    assert a.balance == 1
    assert a.receive() == 99
    stackless.run()
    assert got == [(0, None)]


def test_exactly_one_case_takes_effect_others_keep_their_items():
    a, b = stackless.channel(), stackless.channel()
    stackless.tasklet(a.send)("A")
    stackless.tasklet(b.send)("B")
    stackless.run()
    i, v = select(recv(a), recv(b))
    assert (i, v) in [(0, "A"), (1, "B")]
    left = b if i == 0 else a
    assert left.balance == 1
    assert left.receive() == ("B" if i == 0 else "A")


def test_random_choice_does_not_starve():
    a, b = stackless.channel(), stackless.channel()
    counts = collections.Counter()
    for _ in range(400):
        stackless.tasklet(a.send)("A")
        stackless.tasklet(b.send)("B")
        stackless.run()
        i, _ = select(recv(a), recv(b))
        counts[i] += 1
        (b if i == 0 else a).receive()
    assert counts[0] > 100 and counts[1] > 100


def test_closed_channel_fires_with_closed():
    a, b = stackless.channel(), stackless.channel()
    a.close()
    assert select(recv(a), recv(b)) == (0, CLOSED)


def test_timeout_in_main_and_in_a_tasklet():
    a = stackless.channel()
    with pytest.raises(TimeoutError):
        select(recv(a), timeout=0.05)
    errors = []

    def t():
        try:
            select(recv(a), timeout=0.05)
        except TimeoutError as e:
            errors.append(e)

    stackless.tasklet(t)()
    stackless.tasklet(stackless.schedule)()
    stackless.run()
    assert len(errors) == 1 and a.balance == 0


def test_exception_sent_to_a_select_is_raised():
    a = stackless.channel()
    errors = []

    def t():
        try:
            select(recv(a))
        except KeyError as e:
            errors.append(e)

    stackless.tasklet(t)()
    stackless.run()
    a.send_exception(KeyError, "k")
    stackless.run()
    assert errors and errors[0].args == ("k",)


def test_select_across_threads():
    a, b = stackless.channel(), stackless.channel()
    go = threading.Event()

    def sender():
        go.wait()
        b.send("cross")

    th = threading.Thread(target=sender)
    th.start()
    go.set()
    assert select(recv(a), recv(b), timeout=10) == (1, "cross")
    th.join()


def test_bad_cases_are_clear_errors():
    with pytest.raises(TypeError, match="recv"):
        select(42)
    with pytest.raises(TypeError, match="stackless channel"):
        select(send(object(), 1))
    with pytest.raises(ValueError):
        select()
    with pytest.raises(ValueError):
        select(recv(stackless.channel()), timeout=-1)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), nchan=st.integers(1, 4), senders=st.integers(1, 5), per=st.integers(1, 20))
def test_randomized_select_against_concurrent_senders_loses_nothing(seed, nchan, senders, per):
    print(f"seed={seed}")
    rnd = random.Random(seed)
    chans = [stackless.channel() for _ in range(nchan)]
    for c in chans:
        c.preference = rnd.choice([-1, 0, 1])
    sent = []

    def sender(k):
        for j in range(per):
            c = rnd.randrange(nchan)
            sent.append((c, (k, j)))
            chans[c].send((k, j))
            if rnd.random() < 0.3:
                stackless.schedule()

    for k in range(senders):
        stackless.tasklet(sender)(k)
    got = []
    for _ in range(senders * per):
        i, v = select([recv(c) for c in chans], timeout=10)
        got.append((i, v))
    stackless.run()
    assert sorted(got) == sorted(sent)
    assert all(c.balance == 0 for c in chans)


def test_select_call_errors_say_what_to_do():
    from weft.select import recv, select

    ch = stackless.channel()
    with pytest.raises(ValueError, match="timeout must be None or >= 0"):
        select(recv(ch), timeout=-1)
    with pytest.raises(TypeError, match="takes timeout= and default="):
        select(recv(ch), tmeout=1)
    with pytest.raises(TypeError, match="recv\\(channel\\) or send\\(channel, value\\)"):
        select(42)
    with pytest.raises(ValueError, match="at least one case"):
        select()
    assert select([recv(ch)], default="d") == (-1, "d")
    assert select((recv(ch),), default=None) == (-1, None)


def test_closing_a_channel_a_select_waits_on_fires_closed():
    # The select's own entry must not keep the channel open: closing it
    # wakes the select, whose case then fires with CLOSED (no timeout).
    ch, other = stackless.channel(), stackless.channel()
    out = []

    def waiter():
        out.append(select(recv(ch), recv(other)))

    stackless.tasklet(waiter)()
    stackless.run()
    assert ch.balance == -1  # the select waits in it
    ch.close()
    stackless.run()
    assert out == [(0, CLOSED)]
    assert ch.closed and other.balance == 0


def test_many_cases_and_every_way_of_passing_them():
    # Up to four cases are read into the call's frame, more into a Vec:
    # both, given as arguments, as one list and as one tuple.
    chans = [stackless.channel() for _ in range(7)]
    for n in (1, 4, 5, 7):
        cases = [recv(c) for c in chans[:n]]
        for given in (cases, tuple(cases)):
            stackless.tasklet(chans[n - 1].send)(n)
            stackless.schedule()
            assert select(given) == (n - 1, n)
        stackless.tasklet(chans[n - 1].send)(-n)
        stackless.schedule()
        assert select(*cases) == (n - 1, -n)
    assert select(*[send(c, 0) for c in chans], default="none") == (-1, "none")


def test_a_case_read_from_its_slot_behaves_like_getattr():
    a = stackless.channel()
    r = recv(a)
    del r.channel
    with pytest.raises(AttributeError):
        select(r)
    s = send(a, 1)
    del s.value
    with pytest.raises(AttributeError):
        select(s)


def test_a_changed_case_class_is_read_through_getattr():
    import weft.select as ws

    b = stackless.channel()

    class Recv(ws.recv):
        __slots__ = ()

    # A subclass is not the face's class: built through _case, as before.
    stackless.tasklet(b.send)("sub")
    stackless.schedule()
    assert select(Recv(b)) == (0, "sub")
    old = ws.recv.__dict__["channel"]
    try:
        ws.recv.channel = property(lambda self: b)
        case = ws.recv.__new__(ws.recv)
        stackless.tasklet(b.send)("prop")
        stackless.schedule()
        assert select(case) == (0, "prop")
    finally:
        ws.recv.channel = old
    stackless.tasklet(b.send)("back")
    stackless.schedule()
    assert select(recv(b)) == (0, "back")
