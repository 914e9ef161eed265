"""Fault handling: recursion, exceptions across switches, GC, killing,
threads dying, interpreter shutdown.  Anything that could take the
interpreter down runs in a subprocess (see gtest_support.run_script)."""
import gc
import sys
import threading
import traceback
import weakref

import pytest

from gtest_support import GreenletExit, getcurrent, greenlet, run_script


class Boom(Exception):
    pass


# --------------------------------------------------------------------------
# recursion
# --------------------------------------------------------------------------


def test_deep_python_recursion_in_greenlet_raises_recursion_error_subprocess():
    run_script(
        """
        import threading
        def rec(n):
            return rec(n + 1)

        def run():
            for _ in range(3):  # repeatedly hitting the limit is fine
                try:
                    rec(0)
                except RecursionError:
                    pass
                else:
                    raise AssertionError("no RecursionError")
            v = getcurrent().parent.switch("survived")
            return ("still works", v)

        g = greenlet(run)
        assert g.switch() == "survived"
        assert g.switch(1) == ("still works", 1)
        assert g.dead

        # uncaught: propagates to the parent, greenlet is dead, others work
        g = greenlet(lambda: rec(0))
        try:
            g.switch()
        except RecursionError:
            pass
        else:
            raise AssertionError("RecursionError did not propagate")
        assert g.dead
        assert greenlet(lambda: 5).switch() == 5
        try:
            rec(0)
        except RecursionError:
            pass
        else:
            raise AssertionError("no RecursionError in the main greenlet after a greenlet's")

        # the same in a non-main thread
        out = []
        def body():
            g = greenlet(lambda: rec(0))
            try:
                g.switch()
            except RecursionError:
                out.append("ok")
            out.append(greenlet(lambda: "after").switch())
        t = threading.Thread(target=body)
        t.start(); t.join(30)
        assert out == ["ok", "after"], out
        print("OK")
        """
    )


def test_deep_c_level_recursion_in_greenlet_raises_recursion_error_subprocess():
    # recursion through a C function (map) consumes real C stack per level:
    # the greenlet must have enough C stack for the default recursion limit
    run_script(
        """
        import threading
        def rec():
            return list(map(lambda _: rec(), [0]))

        def run():
            try:
                rec()
            except RecursionError:
                return "RecursionError"

        assert greenlet(run).switch() == "RecursionError"
        # nested greenlets each recursing
        def outer():
            r1 = greenlet(run).switch()
            return (r1, run())
        assert greenlet(outer).switch() == ("RecursionError", "RecursionError")
        out = []
        t = threading.Thread(target=lambda: out.append(greenlet(run).switch()))
        t.start(); t.join(30)
        assert out == ["RecursionError"], out
        """
    )


def _depth_capacity():
    n = 0

    def r():
        nonlocal n
        n += 1
        r()

    try:
        r()
    except RecursionError:
        pass
    return n


def _at_depth(k, fn):
    if k == 0:
        return fn()
    return _at_depth(k - 1, fn)


def test_recursion_depth_is_saved_per_greenlet():
    baseline = _depth_capacity()

    def suspended_deep():
        return _at_depth(300, lambda: (getcurrent().parent.switch(), _depth_capacity())[1])

    g = greenlet(suspended_deep)
    g.switch()
    # frames of a suspended greenlet do not count against the main greenlet
    assert abs(_depth_capacity() - baseline) <= 2
    # and the greenlet resumes with its own depth (300 frames deep)
    cap_inside = g.switch()
    assert baseline - 320 <= cap_inside <= baseline - 295


# --------------------------------------------------------------------------
# exceptions and tracebacks across switches
# --------------------------------------------------------------------------


def _tb_names(exc):
    return [fs.name for fs in traceback.extract_tb(exc.__traceback__)]


def test_exception_from_child_propagates_to_parent_with_traceback():
    def leaf():
        raise Boom("leaf")

    def middle():
        leaf()

    def run():
        middle()

    g = greenlet(run)
    with pytest.raises(Boom) as info:
        g.switch()
    names = _tb_names(info.value)
    assert names[-3:] == ["run", "middle", "leaf"]
    assert g.dead
    # the traceback's frames are real and readable
    tb = info.value.__traceback__
    while tb.tb_next:
        tb = tb.tb_next
    assert tb.tb_frame.f_code.co_name == "leaf"
    assert tb.tb_lineno == leaf.__code__.co_firstlineno + 1


def _leaf_with_locals(v):
    local_marker = v  # noqa: F841 (read back through the traceback)
    getcurrent().parent.switch()
    raise KeyError(v)


def test_traceback_frames_intact_after_greenlet_died_and_was_collected():
    def mid():
        _leaf_with_locals("x")

    def run():
        mid()

    g = greenlet(run)
    g.switch()
    with pytest.raises(KeyError) as info:
        g.switch()
    del g
    gc.collect()
    # churn: other greenlets reuse whatever the dead one used
    greenlet(lambda: [greenlet(lambda: None).switch() for _ in range(50)]).switch()
    tb = info.value.__traceback__
    rows = []
    while tb is not None:
        f = tb.tb_frame
        rows.append((f.f_code.co_name, tb.tb_lineno - f.f_code.co_firstlineno))
        if f.f_code.co_name == "_leaf_with_locals":
            assert f.f_locals["local_marker"] == "x"
            assert f.f_locals["v"] == "x"
            back = []
            b = f.f_back
            while b is not None:
                back.append(b.f_code.co_name)
                b = b.f_back
            assert back == ["mid", "run"]
        tb = tb.tb_next
    assert rows[-3:] == [("run", 1), ("mid", 1), ("_leaf_with_locals", 3)]


def test_exception_propagates_through_parent_chain():
    def c():
        raise Boom("deep")

    def b():
        greenlet(c).switch()

    def a():
        greenlet(b).switch()

    with pytest.raises(Boom, match="deep") as info:
        greenlet(a).switch()
    names = _tb_names(info.value)
    assert names.index("a") < names.index("b") < names.index("c")


def test_exception_raised_after_switches_keeps_frames_of_both_sides():
    main = getcurrent()

    def worker():
        for i in range(3):
            main.switch(i)
        raise Boom("after switching")

    g = greenlet(worker)
    assert [g.switch() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(Boom) as info:
        g.switch()
    assert _tb_names(info.value)[-1] == "worker"


def test_thrown_exception_traceback_includes_switch_point():
    def inner():
        getcurrent().parent.switch()

    def run():
        try:
            inner()
        except Boom as e:
            return e

    g = greenlet(run)
    g.switch()
    exc = g.throw(Boom("in"))
    assert _tb_names(exc) == ["run", "inner"]


def test_exception_context_chaining_across_switch():
    def run():
        try:
            raise KeyError("first")
        except KeyError:
            getcurrent().parent.switch("handling")
            raise Boom("second")

    g = greenlet(run)
    try:
        raise ValueError("main's own")
    except ValueError:
        assert g.switch() == "handling"
        with pytest.raises(Boom) as info:
            g.switch()
        assert sys.exc_info()[0] is ValueError
    ctx = info.value.__context__
    assert isinstance(ctx, KeyError)  # not main's ValueError


def test_exc_info_is_per_greenlet():
    seen = {}

    def run():
        seen["start"] = sys.exc_info()
        try:
            raise KeyError
        except KeyError:
            getcurrent().parent.switch()
            seen["resumed"] = sys.exc_info()[0]

    try:
        raise ValueError
    except ValueError:
        g = greenlet(run)
        g.switch()
        assert sys.exc_info()[0] is ValueError
        g.switch()
        assert sys.exc_info()[0] is ValueError
    assert seen == {"start": (None, None, None), "resumed": KeyError}


def test_keyboard_interrupt_crosses_switch():
    def inner():
        raise KeyboardInterrupt

    def run():
        getcurrent().parent.switch()
        inner()

    g = greenlet(run)
    g.switch()
    with pytest.raises(KeyboardInterrupt) as info:
        g.switch()
    assert _tb_names(info.value)[-2:] == ["run", "inner"]
    assert g.dead

    g = greenlet(lambda: getcurrent().parent.switch())
    g.switch()
    with pytest.raises(KeyboardInterrupt):
        g.throw(KeyboardInterrupt)
    assert g.dead


def test_sigint_delivered_while_in_greenlet_subprocess():
    run_script(
        """
        import os, signal, time
        # A shell starts background jobs with SIGINT ignored, and Python then
        # keeps it ignored: install the KeyboardInterrupt handler explicitly so
        # the test does not depend on how the test run itself was started.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        def run():
            try:
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(10_000_000):
                    pass
                time.sleep(5)
            except KeyboardInterrupt:
                return "caught in greenlet"
            return "not interrupted"
        assert greenlet(run).switch() == "caught in greenlet"

        def run2():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        g = greenlet(run2)
        try:
            g.switch()
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("KeyboardInterrupt lost")
        assert g.dead
        print("OK")
        """,
        timeout=60,
    )


def test_system_exit_from_greenlet_exits_process_subprocess():
    proc = run_script(
        """
        def run():
            getcurrent().parent.switch()
            sys.exit(3)
        g = greenlet(run)
        g.switch()
        g.switch()
        print("not reached")
        """,
        expect_rc=3,
    )
    assert "not reached" not in proc.stdout


# --------------------------------------------------------------------------
# GC
# --------------------------------------------------------------------------


def _collected(make):
    ref = make()
    for _ in range(3):
        gc.collect()
    return ref() is None


def test_gc_cycle_through_unstarted_greenlet_via_dict():
    def make():
        g = greenlet(lambda: None)
        g.me = g
        return weakref.ref(g)

    assert _collected(make)


def test_gc_cycle_through_unstarted_greenlet_via_run():
    def make():
        holder = []

        def run():
            return holder

        g = greenlet(run)
        holder.append(g)
        return weakref.ref(g)

    assert _collected(make)


def test_gc_cycle_through_unstarted_greenlet_via_parent_and_context():
    import contextvars

    var = contextvars.ContextVar("gcvar")

    def make():
        p = greenlet(lambda: None)
        c = greenlet(lambda: None, p)
        p.child = c  # p -> c -> (parent) p
        ctx = contextvars.Context()
        ctx.run(var.set, c)  # c -> ctx -> c
        c.gr_context = ctx
        return weakref.ref(c)

    assert _collected(make)


def test_gc_cycle_through_dead_greenlet():
    def make():
        g = greenlet(lambda: None)
        g.switch()
        assert g.dead
        g.me = g
        return weakref.ref(g)

    assert _collected(make)


def test_gc_cycle_through_dead_greenlet_via_returned_value():
    def make():
        box = []

        def run():
            box.append(box)
            return getcurrent()  # returned to the parent, then stored below

        g = greenlet(run)
        box.append(g.switch())  # g -> run -> box -> g
        assert box[-1] is g and g.dead
        return weakref.ref(g)

    assert _collected(make)


def test_gc_cycle_through_dead_greenlet_that_raised():
    def make():
        box = []

        def run():
            box.append(getcurrent())
            raise Boom

        g = greenlet(run)
        try:
            g.switch()
        except Boom as e:
            box.append(e)  # exception -> traceback -> frames -> box -> greenlet
        return weakref.ref(g)

    assert _collected(make)


def test_gc_many_cycles_mixed_states():
    refs = []
    for i in range(200):
        g = greenlet(lambda: getcurrent())
        g.me = g
        if i % 2:
            g.switch()
        refs.append(weakref.ref(g))
    del g
    gc.collect()
    gc.collect()
    assert all(r() is None for r in refs)


# --------------------------------------------------------------------------
# killing suspended greenlets
# --------------------------------------------------------------------------


def test_dropping_last_ref_kills_suspended_greenlet_with_greenlet_exit():
    log = []
    main = getcurrent()

    def inner():
        try:
            main.switch("suspended")
        except GreenletExit as e:
            log.append(("exit", type(e).__name__, getcurrent() is not main))
            raise
        finally:
            log.append("finally")

    def run():
        try:
            inner()
        finally:
            log.append("outer finally")

    g = greenlet(run)
    assert g.switch() == "suspended"
    r = weakref.ref(g)
    del g
    assert log == [("exit", "GreenletExit", True), "finally", "outer finally"]
    gc.collect()
    assert r() is None
    assert getcurrent() is main


def test_killed_greenlet_may_swallow_greenlet_exit_and_return():
    log = []

    def run():
        try:
            getcurrent().parent.switch()
        except GreenletExit:
            log.append("swallowed")
        return "value ignored"

    g = greenlet(run)
    g.switch()
    del g
    assert log == ["swallowed"]


def test_dropping_greenlets_with_nested_children():
    log = []
    main = getcurrent()

    def child():
        try:
            main.switch()
        finally:
            log.append("child")

    def parent():
        try:
            c = greenlet(child, main)  # no parent link back to us: no cycle
            c.switch()
        finally:
            log.append("parent")

    p = greenlet(parent)
    p.switch()
    rp = weakref.ref(p)
    del p
    # killing p releases its frame, the last reference to the suspended
    # child, which is killed in turn
    assert log == ["parent", "child"]
    gc.collect()
    assert rp() is None


def test_suspended_greenlet_dropped_in_other_thread_is_killed_in_its_own_thread():
    log = []
    holder = []
    ready = threading.Event()
    dropped = threading.Event()
    results = {}

    def run():
        try:
            getcurrent().parent.switch()
        except GreenletExit:
            log.append(("GreenletExit", threading.get_ident()))
            raise
        finally:
            log.append(("finally", threading.get_ident()))

    def owner():
        try:
            g = greenlet(run)
            g.switch()
            holder.append(g)
            del g
            ready.set()
            assert dropped.wait(30)
            results["before"] = list(log)
            getcurrent()  # any greenlet API call in the owner thread runs the pending kill
            greenlet(lambda: None).switch()
            results["after"] = list(log)
            results["ident"] = threading.get_ident()
        except BaseException as e:
            results["error"] = e

    t = threading.Thread(target=owner)
    t.start()
    assert ready.wait(30)
    holder.clear()  # last reference dropped in the main thread
    gc.collect()
    assert log == []  # not killed here: it cannot run in this thread
    dropped.set()
    t.join(30)
    assert not t.is_alive()
    assert "error" not in results, results
    ident = results["ident"]
    assert results["before"] == []
    assert results["after"] == [("GreenletExit", ident), ("finally", ident)]


def test_suspended_greenlets_dropped_from_another_thread_after_owner_exits_subprocess():
    run_script(
        """
        import gc, threading, weakref
        holder, refs = [], []
        def run():
            try:
                getcurrent().parent.switch()
            finally:
                pass
        def owner():
            for _ in range(50):
                g = greenlet(run); g.switch(); holder.append(g); refs.append(weakref.ref(g))
        t = threading.Thread(target=owner); t.start(); t.join(30)
        holder.clear()
        for _ in range(3):
            gc.collect()
        greenlet(lambda: None).switch()
        print("OK")
        """
    )


# --------------------------------------------------------------------------
# thread exit with suspended greenlets
# --------------------------------------------------------------------------


def test_thread_exits_while_greenlets_suspended_subprocess():
    run_script(
        """
        import gc, threading, time
        kept = {}
        def run(i):
            try:
                getcurrent().parent.switch(i)
            finally:
                pass
        def body():
            kept["main"] = getcurrent()
            gs = [greenlet(run) for _ in range(10)]
            for i, g in enumerate(gs):
                assert g.switch(i) == i
            # nested: a greenlet suspended while its own child is suspended
            def outer():
                c = greenlet(lambda: kept["main"].switch("inner suspended"))
                c.switch()
            o = greenlet(outer)
            assert o.switch() == "inner suspended"
            gs.append(o)
            kept["gs"] = gs
            kept["unstarted"] = greenlet(lambda: None)
            # and some that nobody else references
            for i in range(10):
                greenlet(run).switch(i)
        ts = [threading.Thread(target=body) for _ in range(3)]
        for t in ts:
            t.start()
            t.join(30)
            assert not t.is_alive()
        deadline = time.monotonic() + 10
        while not all(g.dead for g in kept["gs"] + [kept["main"]]):
            assert time.monotonic() < deadline, [g.dead for g in kept["gs"]]
            time.sleep(0.01)
            gc.collect()
        for g in kept["gs"] + [kept["main"]]:
            assert g.dead and not g
            assert g.gr_frame is None
            # switching to a dead greenlet of a dead thread must not resurrect
            # it: the switch goes to its parents, all of that thread, which
            # is gone (greenlet: "cannot switch to a different thread (which
            # happens to have exited)")
            try:
                g.switch()
            except G.error:
                pass
            else:
                raise AssertionError(f"switched into {g!r} of an exited thread")
        # an unstarted greenlet of a dead thread cannot start here either
        try:
            kept["unstarted"].switch()
        except G.error:
            pass
        else:
            raise AssertionError("started an unstarted greenlet of an exited thread")
        assert not kept["unstarted"].dead and not kept["unstarted"]
        kept.clear()
        for _ in range(3):
            gc.collect()
        assert greenlet(lambda: 7).switch() == 7
        print("OK")
        """
    )


# --------------------------------------------------------------------------
# interpreter shutdown
# --------------------------------------------------------------------------


def test_shutdown_with_suspended_greenlets_in_main_subprocess():
    proc = run_script(
        """
        import atexit
        def run(i):
            try:
                getcurrent().parent.switch()
            finally:
                pass
        # module globals: cleared during finalization
        gs = [greenlet(run) for i in range(20)]
        for i, g in enumerate(gs):
            g.switch(i)
        def nested():
            greenlet(lambda: getcurrent().parent.parent.switch()).switch()
        n = greenlet(nested); n.switch()
        cyc = greenlet(run); cyc.me = cyc; cyc.switch(0)
        unstarted = greenlet(run)
        atexit.register(lambda: print("atexit ran", flush=True))
        print("END", flush=True)
        """
    )
    assert "END" in proc.stdout and "atexit ran" in proc.stdout
    assert proc.stderr == ""


def test_shutdown_with_suspended_greenlets_in_threads_subprocess():
    proc = run_script(
        """
        import threading, time
        started = threading.Barrier(3)
        keep = []
        def daemon_body():
            gs = [greenlet(lambda: getcurrent().parent.switch()) for _ in range(10)]
            for g in gs:
                g.switch()
            keep.extend(gs)
            def looping():
                while True:
                    time.sleep(0.001)
                    getcurrent().parent.switch()
            lg = greenlet(looping)
            started.wait()
            while True:  # still running greenlet code at shutdown
                lg.switch()
        def normal_body():
            gs = [greenlet(lambda: getcurrent().parent.switch()) for _ in range(10)]
            for g in gs:
                g.switch()
            started.wait()
        threading.Thread(target=daemon_body, daemon=True).start()
        t = threading.Thread(target=normal_body)
        t.start()
        started.wait()
        g = greenlet(lambda: getcurrent().parent.switch())
        g.switch()
        print("END", flush=True)
        """
    )
    assert "END" in proc.stdout
    assert proc.stderr == ""


def test_shutdown_while_inside_a_greenlet_subprocess():
    # the main script ends (sys.exit) while a non-main greenlet is running
    proc = run_script(
        """
        keep = []
        def run():
            keep.append(greenlet(lambda: getcurrent().parent.switch()))
            keep[-1].switch()
            print("exiting from greenlet", flush=True)
            raise SystemExit(0)
        greenlet(run).switch()
        """
    )
    assert "exiting from greenlet" in proc.stdout
    assert proc.stderr == ""


def test_shutdown_while_daemon_thread_blocked_inside_greenlet_subprocess():
    # A daemon thread that is in a GIL-releasing call (time.sleep) inside a
    # greenlet when the interpreter finalizes: on reacquiring the GIL CPython
    # terminates the thread (pthread_exit); that must not abort the process.
    for _ in range(3):
        proc = run_script(
            """
            import threading, time
            ev = threading.Event()
            def s():
                ev.set()
                while True:
                    time.sleep(0.001)
            threading.Thread(target=lambda: greenlet(s).switch(), daemon=True).start()
            ev.wait()
            print("END", flush=True)
            """
        )
        assert "END" in proc.stdout
        assert proc.stderr == ""


def test_switching_and_killing_from_finalizers_during_gc_subprocess():
    # __del__ methods run by the cyclic GC (in main and inside a greenlet)
    # create, switch and kill greenlets; suspended greenlets holding cycles
    # are around while collections run inside other greenlets
    proc = run_script(
        """
        import gc
        main = getcurrent()
        log = []
        class Switchy:
            def __init__(self):
                self.me = self
            def __del__(self):
                log.append(greenlet(lambda: getcurrent().parent.switch("from del")).switch())
                if getcurrent() is main:
                    g = greenlet(lambda: main.switch())
                    g.switch()
                    del g  # killed right here, inside a finalizer run by gc
                    log.append("killed in del")
        def in_greenlet():
            for i in range(100):
                Switchy()
            gc.collect()
            return "ok"
        assert greenlet(in_greenlet).switch() == "ok"
        assert log == ["from del"] * 100, log
        for i in range(100):
            Switchy()
        gc.collect()
        assert log[100:] == ["from del", "killed in del"] * 100, log[100:]

        def holder(i):
            x = [None]; x[0] = x
            getcurrent().parent.switch()
        gs = [greenlet(holder) for i in range(200)]
        for i, g in enumerate(gs):
            g.switch(i)
        def collector():
            gc.collect()
            return "c"
        assert greenlet(collector).switch() == "c"
        del gs, g
        gc.collect()
        print("OK")
        """
    )
    assert "OK" in proc.stdout
