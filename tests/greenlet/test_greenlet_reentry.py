"""Python code that runs while weft changes a greenlet's state, and reaches the
same greenlet again: a `__del__`, a weakref callback, or a collection run by
the drop of an old value.

weft keeps no exclusive borrow of a greenlet's state across such a drop (its
fields are cells, see `Coro` in crates/weft-py/src/greenlet/mod.rs), and the
old value is released only once the new one is in place. These tests pin
what the re-entering code sees: the new value, never a half-updated state.
Every test is meant to pass against real greenlet 3.x too
(WEFT_GREENLET_IMPL=greenlet).
"""
import contextvars
import gc
import weakref

import pytest

from gtest_support import getcurrent, greenlet


def snapshot(g):
    """What Python code can see of `g` (without switching to it)."""
    try:
        run = g.run
    except AttributeError:
        run = AttributeError
    return {
        "run": run,
        "parent": g.parent,
        "dead": g.dead,
        "bool": bool(g),
        "repr": "pending" in repr(g) or "dead" in repr(g) or "suspended" in repr(g) or "current" in repr(g),
    }


class OnDel:
    """Calls `fn()` from its `__del__`."""

    def __init__(self, fn):
        self.fn = fn

    def __del__(self):
        self.fn()


def test_old_parent_dropped_by_set_parent_sees_new_parent_and_reparents():
    # The old parent is referenced only by g.parent; its dict holds an object
    # whose __del__ reads g and sets g.parent once more.
    main = getcurrent()
    seen = []
    g = greenlet(lambda: "done")
    p1 = greenlet()
    p2 = greenlet(lambda r: ("p2 got", r))
    old = greenlet()
    g.parent = old

    def on_old_gone():
        seen.append(snapshot(g))
        g.parent = p2

    old.payload = OnDel(on_old_gone)
    del old
    assert seen == []
    g.parent = p1
    assert len(seen) == 1
    s = seen[0]
    assert s["parent"] is p1
    assert s["run"] is not AttributeError and s["run"]() == "done"
    assert s["dead"] is False and s["bool"] is False and s["repr"]
    # The __del__'s assignment is the last one.
    assert g.parent is p2
    assert p2.parent is main
    # g's result goes to p2 (which starts with it), p2's to main.
    assert g.switch() == ("p2 got", "done")
    assert g.dead and p2.dead


def test_old_parent_weakref_callback_reads_greenlet():
    seen = []
    g = greenlet(lambda: 42)
    old = greenlet()
    g.parent = old
    new = greenlet(lambda r: r * 2)

    def cb(_ref):
        seen.append((g.parent is new, g.dead, bool(g), g.run()))

    ref = weakref.ref(old, cb)
    del old
    g.parent = new
    assert ref() is None
    assert seen == [(True, False, False, 42)]
    assert g.switch() == 84


def test_old_parent_subclass_del_reads_greenlet():
    seen = []

    class Parent(greenlet):
        def __del__(self):
            seen.append((g.parent is getcurrent(), g.dead))

    g = greenlet(lambda: "ok")
    g.parent = Parent()
    g.parent = getcurrent()
    gc.collect()
    assert seen == [(True, False)]
    assert g.switch() == "ok"


def test_deleted_run_del_reads_greenlet_and_sets_run():
    main = getcurrent()
    seen = []

    class Run:
        def __call__(self):
            return "old"

        def __del__(self):
            seen.append(snapshot(g))
            g.run = lambda: "set in __del__"

    g = greenlet(Run())
    del g.run
    assert len(seen) == 1
    s = seen[0]
    assert s["run"] is AttributeError  # already gone when __del__ runs
    assert s["parent"] is main and s["dead"] is False and s["bool"] is False
    assert g.switch() == "set in __del__"


def test_replaced_run_del_deletes_the_new_run():
    seen = []

    class Run:
        def __call__(self):
            return "old"

        def __del__(self):
            seen.append(g.run())
            del g.run

    g = greenlet(Run())
    g.run = lambda: "new"
    assert seen == ["new"]
    with pytest.raises(AttributeError):
        g.run
    g.run = lambda: "again"
    assert g.switch() == "again"


def test_run_call_released_in_the_finishing_greenlet():
    # Once the greenlet has started, its `run` is held only by the call in
    # progress; released when that returns, in the greenlet itself.
    main = getcurrent()
    seen = []

    class Run:
        def __call__(self):
            return "result"

        def __del__(self):
            cur = getcurrent()
            try:
                cur.run
                run = "present"
            except AttributeError:
                run = "absent"
            seen.append((cur is g, cur.dead, bool(cur), cur.parent is main, run))

    g = greenlet(Run())
    assert g.switch() == "result"
    assert seen == [(True, False, True, True, "absent")]
    assert g.dead


def test_gr_context_replacement_whose_old_context_value_reads_greenlet():
    var = contextvars.ContextVar("v")
    seen = []
    g = greenlet(lambda: var.get("unset"))

    def fill():
        var.set(OnDel(lambda: seen.append((g.gr_context is new, g.dead))))

    old = contextvars.Context()
    old.run(fill)
    g.gr_context = old
    del old
    new = contextvars.Context()
    g.gr_context = new
    assert seen == [(True, False)]
    assert g.switch() == "unset"


def test_gr_context_of_suspended_greenlet_replaced_while_it_holds_a_del():
    var = contextvars.ContextVar("v")
    seen = []
    main = getcurrent()

    def body():
        var.set(OnDel(lambda: seen.append((g.gr_context is not None, g.dead, bool(g)))))
        main.switch("suspended")
        return var.get("fresh")

    g = greenlet(body)
    assert g.switch() == "suspended"
    g.gr_context = contextvars.Context()
    assert seen == [(True, False, True)]
    assert g.switch() == "fresh"


def test_collected_suspended_greenlet_whose_locals_inspect_it():
    # A suspended greenlet dropped for good is killed: its frames unwind,
    # and a local's __del__ looks at the greenlet while that happens.
    main = getcurrent()
    seen = []

    def body():
        me = weakref.ref(getcurrent())

        def look():
            g = me()
            seen.append((g is getcurrent(), g.dead, bool(g), g.parent is main, g.gr_frame is None))

        local = OnDel(look)
        try:
            main.switch()
        except BaseException:
            del local  # released while the kill unwinds this greenlet
            raise

    g = greenlet(body)
    g.switch()
    ref = weakref.ref(g)
    del g
    gc.collect()
    assert ref() is None
    assert seen == [(True, False, True, True, True)]


def test_collected_cycle_through_run_and_parent():
    # An unstarted greenlet in a cycle (g -> run -> g): the collector runs
    # the run's __del__ first (PEP 442: before any tp_clear, so it still
    # finds everything in place), then clears the greenlet's run and parent.
    seen = []
    main = getcurrent()

    def make():
        g = greenlet()

        class Run:
            def __call__(self):
                return g

            def __del__(self):
                try:
                    g.run
                    run = "present"
                except AttributeError:
                    run = "absent"
                seen.append((run, g.parent is main or g.parent is None, g.dead, bool(g)))

        g.run = Run()
        return weakref.ref(g)

    ref = make()
    gc.collect()
    assert ref() is None
    assert seen == [("present", True, False, False)]


def test_dealloc_releases_context_whose_value_reads_a_weakref_to_the_greenlet():
    var = contextvars.ContextVar("v")
    seen = []

    def body():
        me = weakref.ref(getcurrent())
        var.set(OnDel(lambda: seen.append(me())))
        return "done"

    g = greenlet(body)
    assert g.switch() == "done"
    del g
    gc.collect()
    # The greenlet is gone by the time its saved context is released.
    assert seen == [None]
