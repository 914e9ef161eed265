"""Behaviours where weft once diverged from greenlet 3.5.6 (found by seeded
random operations), each checked against greenlet's own code: run with
WEFT_GREENLET_IMPL=greenlet to see real greenlet pass them too."""
import threading

import pytest

from gtest_support import GreenletExit, getcurrent, greenlet


# --------------------------------------------------------------------------
# a child dying of GreenletExit hands the exception itself to its parent
# (greenlet's g_handle_exit), not a 1-tuple: an unstarted parent is then
# started as run() with no arguments, a suspended one gets the exception.
# --------------------------------------------------------------------------


def test_unstarted_parent_of_a_child_dying_of_greenletexit_runs_with_no_args():
    seen = []

    def parent_run(*args, **kwargs):
        seen.append((args, kwargs))
        return "parent done"

    p = greenlet(parent_run)

    def child_run():
        raise GreenletExit("bye")

    c = greenlet(child_run, parent=p)
    assert c.switch() == "parent done"
    assert seen == [((), {})]
    assert c.dead and p.dead


def test_unstarted_parent_of_a_killed_child_runs_with_no_args():
    # a kill (throw() with no argument) is the usual way to get there
    seen = []
    main = getcurrent()
    p = greenlet(lambda *a, **k: seen.append((a, k)))
    c = greenlet(lambda: main.switch("suspended"), parent=p)
    assert c.switch() == "suspended"
    assert c.throw() is None  # GreenletExit: p.run() ran and returned None
    assert seen == [((), {})]
    assert c.dead and p.dead


def test_unstarted_parent_whose_run_takes_no_arguments_is_fine():
    p = greenlet(lambda: "no args taken")
    c = greenlet(lambda: (_ for _ in ()).throw(GreenletExit("x")), parent=p)
    assert c.switch() == "no args taken"


def test_suspended_parent_gets_the_greenletexit_instance():
    def prun():
        v = c.switch()
        return type(v), v.args

    p = greenlet(prun)

    def child_run():
        raise GreenletExit("bye2")

    c = greenlet(child_run, parent=p)
    assert p.switch() == (GreenletExit, ("bye2",))


def test_unstarted_parent_of_a_normally_returning_child_gets_the_value():
    seen = []
    p = greenlet(lambda *a: seen.append(a))
    c = greenlet(lambda: 42, parent=p)
    c.switch()
    assert seen == [(42,)]


# --------------------------------------------------------------------------
# greenlet's parent setter compares a started greenlet's thread with the
# thread of the new parent's whole chain (its root main greenlet), not with
# the parent's own.
# --------------------------------------------------------------------------


def _started_suspended():
    s = greenlet(lambda: getcurrent().parent.switch("up"))
    assert s.switch() == "up"
    return s


def test_parent_whose_chain_moved_to_another_thread_is_refused():
    s = _started_suspended()
    u1 = greenlet(lambda: None)
    u2 = greenlet(lambda: None, parent=u1)

    def other_thread():
        u1.parent = getcurrent()  # u1, and with it u2's chain, now ends there

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    with pytest.raises(ValueError, match="parent cannot be on a different thread"):
        s.parent = u2
    assert s.parent is getcurrent()
    s.throw()  # finish it here
    assert s.dead


def test_parent_whose_chain_stays_here_is_accepted():
    s = _started_suspended()
    u1 = greenlet(lambda: None)
    u2 = greenlet(lambda: None, parent=u1)
    s.parent = u2
    assert s.parent is u2
    s.parent = getcurrent()
    s.throw()
    assert s.dead


def test_unstarted_greenlet_may_take_a_parent_of_another_thread():
    # greenlet checks threads only for a started greenlet
    u = greenlet(lambda: None)
    other = {}

    def other_thread():
        other["main"] = getcurrent()

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    u.parent = other["main"]
    assert u.parent is other["main"]
