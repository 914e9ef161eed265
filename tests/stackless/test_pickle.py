"""Pickling as Stackless defines it: unstarted tasklets, bombs, channels."""
import pickle

import pytest

import weft.stackless as stackless

RESULTS = []


def record(*args, **kwargs):
    RESULTS.append((args, kwargs))


def test_unstarted_tasklet_round_trips_and_runs():
    RESULTS.clear()
    t = stackless.tasklet(record)(1, 2, key="v")
    t.set_atomic(False)
    data = pickle.dumps(t)
    t.kill()
    t2 = pickle.loads(data)
    assert t2.alive and t2.scheduled
    stackless.run()
    assert RESULTS == [((1, 2), {"key": "v"})]


def test_bound_paused_tasklet_stays_paused():
    t = stackless.tasklet()
    t.bind(record, (3,))
    t2 = pickle.loads(pickle.dumps(t))
    assert t2.alive and t2.paused
    t2.kill()


def test_flags_survive():
    t = stackless.tasklet(record)
    t.block_trap = True
    t2 = pickle.loads(pickle.dumps(t))
    assert t2.block_trap and not t2.alive


def test_started_tasklet_is_refused_with_a_clear_error():
    t = stackless.tasklet(stackless.schedule_remove)()
    stackless.run()
    assert t.alive and not t.restorable
    with pytest.raises(TypeError, match="started"):
        pickle.dumps(t)
    t.kill()
    with pytest.raises(TypeError, match="main tasklet"):
        pickle.dumps(stackless.getmain())


def test_channel_round_trips_and_refuses_waiters():
    ch = stackless.channel()
    ch.preference = 1
    ch.schedule_all = True
    ch.close()
    ch2 = pickle.loads(pickle.dumps(ch))
    assert (ch2.preference, ch2.schedule_all, ch2.closing) == (1, True, True)
    busy = stackless.channel()
    t = stackless.tasklet(busy.receive)()
    stackless.run()
    with pytest.raises(TypeError, match="waiting"):
        pickle.dumps(busy)
    t.kill()


def test_bomb_round_trips():
    b = stackless.bomb(ValueError, ValueError("x"))
    b2 = pickle.loads(pickle.dumps(b))
    assert b2.type is ValueError and str(b2.value) == "x"
    with pytest.raises(ValueError, match="x"):
        b2.raise_()
