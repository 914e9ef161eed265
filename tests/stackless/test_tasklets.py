"""Tasklets and the scheduler, as Stackless 3.7's documentation defines them."""
import gc
import sys
import weakref

import pytest

import weft.stackless as stackless
from weft.stackless import TaskletExit


def test_tasklet_idiom_inserts_and_run_runs_in_order():
    out = []
    for name in "abc":
        stackless.tasklet(out.append)(name)
    assert stackless.getruncount() == 4
    stackless.run()
    assert out == ["a", "b", "c"]
    assert stackless.getruncount() == 1


def test_bind_setup_insert_equivalents():
    out = []
    t = stackless.tasklet()
    assert not t.alive
    t.bind(out.append)
    assert not t.alive
    t.setup(1)
    assert t.alive and t.scheduled
    t2 = stackless.tasklet()
    t2.bind(out.append, (2,))
    assert t2.alive and t2.paused and not t2.scheduled
    t2.insert()
    stackless.run()
    assert out == [1, 2]
    assert not t.alive and not t2.alive


def test_kwargs_are_passed():
    got = {}

    def f(*a, **k):
        got.update(args=a, kwargs=k)

    stackless.tasklet(f)(1, 2, name="x")
    stackless.run()
    assert got == {"args": (1, 2), "kwargs": {"name": "x"}}


def test_round_robin_schedule():
    out = []

    def f(name, n):
        for i in range(n):
            out.append((name, i))
            stackless.schedule()

    stackless.tasklet(f)("a", 3)
    stackless.tasklet(f)("b", 2)
    stackless.run()
    assert out == [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2)]


def test_schedule_returns_retval_and_current_by_default():
    seen = []

    def f():
        seen.append(stackless.schedule(42))
        seen.append(stackless.schedule() is stackless.getcurrent())

    stackless.tasklet(f)()
    stackless.run()
    assert seen == [42, True]


def test_main_current_and_properties():
    assert stackless.main is stackless.current
    assert stackless.getmain().is_main and stackless.getmain().is_current
    assert stackless.runcount == 1
    seen = []

    def f():
        c = stackless.current
        seen.append((c.is_main, c.is_current, c is stackless.getcurrent(), stackless.getcurrentid() == id(c)))

    stackless.tasklet(f)()
    stackless.run()
    assert seen == [(False, True, True, True)]
    assert stackless.getthreads() and isinstance(stackless.getthreads()[0], int)


def test_main_is_paused_during_run_and_next_prev_link_the_ring():
    seen = []

    def f():
        m = stackless.getmain()
        seen.append((m.scheduled, m.paused, stackless.getruncount()))

    a = stackless.tasklet(f)()
    b = stackless.tasklet(f)()
    m = stackless.getmain()
    assert m.next is a and a.next is b and b.next is m
    assert m.prev is b and a.prev is m
    stackless.run()
    assert seen == [(False, True, 2), (False, True, 1)]


def test_tasklet_run_rotates_the_ring():
    # Stackless's documented example: running t2 directly skips t1 (main is before it).
    out = []

    def f(name):
        out.append(name)

    stackless.tasklet(f)("t1")
    t2 = stackless.tasklet(f)("t2")
    stackless.tasklet(f)("t3")
    t2.run()
    # t2 and t3 ran, then main (before t1 in the chain); t1 is still runnable.
    assert out == ["t2", "t3"]
    stackless.run()
    assert out == ["t2", "t3", "t1"]


def test_run_of_a_removed_tasklet_runs_it_before_the_caller():
    out = []

    def f():
        out.append(stackless.getcurrent().next is stackless.getmain())

    t = stackless.tasklet(f)()
    t.remove()
    assert t.paused and not t.scheduled
    t.run()
    assert out == [True]


def test_switch_pauses_the_caller():
    out = []

    def f():
        out.append(stackless.getmain().scheduled)
        stackless.getmain().switch()

    t = stackless.tasklet(f)()
    t.switch()
    assert out == [False]
    assert t.alive and t.paused
    t.kill()
    assert not t.alive


def test_schedule_remove_pauses_current():
    def f():
        stackless.schedule_remove()
        pytest.fail("resumed without being inserted")

    t = stackless.tasklet(f)()
    stackless.run()
    assert t.alive and t.paused and not t.scheduled
    t.kill()
    assert not t.alive


def test_uncaught_exception_goes_to_main():
    def bad():
        raise ValueError("boom")

    stackless.tasklet(bad)()
    with pytest.raises(ValueError, match="boom"):
        stackless.run()


def test_error_handler_gets_uncaught_exceptions():
    got = []
    old = stackless.set_error_handler(lambda t, v, tb: got.append((t, str(v), tb is not None)))
    assert old is None

    def bad():
        raise KeyError("k")

    stackless.tasklet(bad)()
    stackless.run()
    assert got == [(KeyError, "'k'", True)]


def test_tasklet_exit_is_quiet_and_in_builtins():
    import builtins

    assert builtins.TaskletExit is TaskletExit
    assert issubclass(TaskletExit, SystemExit)

    def f():
        raise TaskletExit

    stackless.tasklet(f)()
    stackless.run()


def test_kill_blocked_tasklet_unblocks_and_runs_finally():
    ch = stackless.channel()
    log = []

    def f():
        try:
            ch.receive()
        except TaskletExit:
            log.append("exit")
            raise
        finally:
            log.append("finally")

    t = stackless.tasklet(f)()
    stackless.run()
    assert t.blocked == -1 and ch.balance == -1
    t.kill()
    assert log == ["exit", "finally"]
    assert not t.alive and ch.balance == 0


def test_kill_pending_makes_runnable_without_switching():
    log = []

    def f():
        try:
            stackless.schedule_remove()
        except TaskletExit:
            log.append("killed")
            raise

    t = stackless.tasklet(f)()
    stackless.run()
    t.kill(pending=True)
    assert log == [] and t.scheduled
    stackless.run()
    assert log == ["killed"] and not t.alive


def test_kill_unstarted_tasklet_just_ends_it():
    ran = []
    t = stackless.tasklet(ran.append)(1)
    t.kill()
    assert not t.alive and not t.scheduled
    stackless.run()
    assert ran == []
    t.kill()  # dead: nothing happens


def test_throw_into_suspended_tasklet():
    caught = []

    def f():
        try:
            stackless.schedule_remove()
        except ZeroDivisionError as e:
            caught.append(e.args)

    t = stackless.tasklet(f)()
    stackless.run()
    t.throw(ZeroDivisionError, ("x",))
    assert caught == [("x",)]


def test_throw_into_dead_tasklet_raises_runtime_error_except_tasklet_exit():
    t = stackless.tasklet(lambda: None)()
    stackless.run()
    with pytest.raises(RuntimeError):
        t.throw(ValueError)
    t.throw(TaskletExit)
    with pytest.raises(RuntimeError):
        t.raise_exception(ValueError, 1)


def test_raise_exception_instantiates_with_args():
    caught = []

    def f():
        try:
            stackless.schedule_remove()
        except KeyError as e:
            caught.append(e.args)

    t = stackless.tasklet(f)()
    stackless.run()
    t.raise_exception(KeyError, 1, 2)
    assert caught == [(1, 2)]


def test_throw_into_unstarted_non_exit_is_refused():
    t = stackless.tasklet(lambda: None)()
    with pytest.raises(RuntimeError, match="not started"):
        t.throw(ValueError)
    t.kill()


def test_atomic_context_manager_and_flag():
    t = stackless.getcurrent()
    assert not t.atomic
    with stackless.atomic():
        assert t.atomic
        with stackless.atomic():
            assert t.atomic
        assert t.atomic
    assert not t.atomic
    assert t.set_atomic(True) is False
    assert t.set_atomic(False) is True


def test_ignore_nesting_and_nesting_level():
    t = stackless.getcurrent()
    assert t.set_ignore_nesting(True) is False
    assert t.ignore_nesting
    assert t.set_ignore_nesting(False) is True
    assert t.nesting_level == 0


def test_subclass_and_weakref():
    class My(stackless.tasklet):
        def __init__(self, func, label):
            super().__init__(func)
            self.label = label

    out = []
    t = My(out.append, "x")
    assert t.label == "x"
    t(5)
    r = weakref.ref(t)
    stackless.run()
    assert out == [5]
    del t
    gc.collect()
    assert r() is None


def test_unreferenced_paused_tasklet_is_killed_not_leaked():
    log = []

    def f():
        try:
            stackless.schedule_remove()
        finally:
            log.append("cleaned up")

    stackless.tasklet(f)()
    stackless.run()
    # The only reference was the run queue's; schedule_remove dropped it.
    gc.collect()
    stackless.getruncount()  # the next scheduler call kills it
    assert log == ["cleaned up"]


def test_bind_errors():
    t = stackless.tasklet(lambda: stackless.schedule_remove())()
    stackless.run()
    with pytest.raises(RuntimeError, match="started"):
        t.bind(print)
    t.kill()
    with pytest.raises(TypeError):
        stackless.tasklet(42)
    with pytest.raises(RuntimeError):
        stackless.getcurrent().bind(print)


def test_insert_and_run_errors():
    with pytest.raises(RuntimeError):
        stackless.tasklet().insert()
    with pytest.raises(RuntimeError):
        stackless.tasklet().run()
    ch = stackless.channel()
    t = stackless.tasklet(ch.receive)()
    stackless.run()
    with pytest.raises(RuntimeError, match="blocked"):
        t.insert()
    with pytest.raises(RuntimeError, match="blocked"):
        t.run()
    with pytest.raises(RuntimeError, match="blocked"):
        t.remove()
    t.kill()


def test_rebind_after_death():
    out = []
    t = stackless.tasklet(out.append)(1)
    stackless.run()
    t.bind(out.append, (2,))
    t.insert()
    stackless.run()
    assert out == [1, 2]


def test_bind_none_unbinds_a_paused_unstarted_tasklet():
    t = stackless.tasklet()
    t.bind(print, ())
    assert t.alive
    t.bind(None)
    assert not t.alive


def test_tempval_and_restorable():
    t = stackless.tasklet(lambda: None)
    t.tempval = 5
    assert t.tempval == 5
    assert t.restorable


def test_frame_of_current_and_suspended():
    frames = []

    def marker():
        frames.append(stackless.getcurrent().frame.f_code.co_name)
        stackless.schedule_remove()

    t = stackless.tasklet(marker)()
    stackless.run()
    assert frames == ["marker"]
    assert t.frame is not None
    t.kill()
    assert t.frame is None


def test_schedule_callback_sees_switches():
    seen = []
    stackless.set_schedule_callback(lambda prev, nxt: seen.append((prev, nxt)))
    assert stackless.get_schedule_callback() is not None
    t = stackless.tasklet(lambda: None)()
    stackless.run()
    stackless.set_schedule_callback(None)
    main = stackless.getmain()
    assert (main, t) in seen and (t, main) in seen


def test_switch_trap_refuses_switches():
    stackless.tasklet(lambda: None)()
    old = stackless.switch_trap(1)
    try:
        with pytest.raises(RuntimeError, match="switch_trap"):
            stackless.run()
    finally:
        stackless.switch_trap(-1)
    assert old == 0
    stackless.run()


def test_enable_softswitch_answers_honestly():
    assert stackless.enable_softswitch(None) is False
    assert stackless.enable_softswitch(False) is False
    with pytest.raises(RuntimeError):
        stackless.enable_softswitch(True)


def test_thread_info():
    main, cur, n = stackless.get_thread_info()
    assert main is stackless.main and cur is stackless.current and n == 1
    assert stackless.getcurrent().thread_id == stackless.getthreads()[-1] or stackless.getcurrent().thread_id in stackless.getthreads()


def test_context_is_shared_with_creator_and_context_run():
    import contextvars

    var = contextvars.ContextVar("v", default="unset")
    var.set("outer")
    seen = []
    stackless.tasklet(lambda: seen.append(var.get()))()
    stackless.run()
    assert seen == ["outer"]


def test_greenlet_inside_a_tasklet_is_refused_clearly():
    from weft.greenlet import greenlet

    errors = []

    def in_greenlet():
        try:
            stackless.schedule()
        except RuntimeError as e:
            errors.append(str(e))

    def f():
        greenlet(in_greenlet).switch()

    stackless.tasklet(f)()
    stackless.run()
    assert errors and "greenlet" in errors[0]


def test_greenlets_inside_a_tasklet_work():
    from weft.greenlet import greenlet

    out = []

    def f():
        g = greenlet(lambda x: x * 2)
        out.append(g.switch(21))
        stackless.schedule()
        out.append("after")

    stackless.tasklet(f)()
    stackless.run()
    assert out == [42, "after"]


def test_trace_function_per_tasklet():
    events = []

    def tracer(frame, event, arg):
        if event == "call":
            events.append(frame.f_code.co_name)
        return None

    def traced():
        pass

    def f():
        stackless.schedule()
        traced()

    t = stackless.tasklet(f)()
    t.trace_function = tracer
    assert t.trace_function is tracer
    stackless.run()
    assert "traced" in events
    assert sys.gettrace() is None
