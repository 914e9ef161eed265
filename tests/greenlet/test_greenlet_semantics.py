"""Core greenlet semantics, checked against greenlet 3.x behaviour."""
import collections.abc
import contextvars
import gc
import sys
import threading
import weakref

import pytest

from gtest_support import (
    G,
    GreenletExit,
    error,
    frame_names,
    getcurrent,
    gettrace,
    greenlet,
    settrace,
)


class Boom(Exception):
    pass


# --------------------------------------------------------------------------
# switch() argument / return-value rules
# --------------------------------------------------------------------------

SWITCH_CASES = [
    ((), {}, ()),
    ((1,), {}, 1),
    ((None,), {}, None),
    (((1, 2),), {}, (1, 2)),  # a single tuple arrives as that tuple
    ((1, 2), {}, (1, 2)),
    ((1, 2, 3), {}, (1, 2, 3)),
    ((), {"a": 1}, {"a": 1}),
    ((), {"a": 1, "b": 2}, {"a": 1, "b": 2}),
    ((1,), {"a": 1}, ((1,), {"a": 1})),
    ((1, 2), {"a": 1}, ((1, 2), {"a": 1})),
]


@pytest.mark.parametrize("args,kwargs,expected", SWITCH_CASES)
def test_switch_value_into_suspended_greenlet(args, kwargs, expected):
    received = []

    def run():
        received.append(getcurrent().parent.switch())

    g = greenlet(run)
    g.switch()
    g.switch(*args, **kwargs)
    assert g.dead
    assert len(received) == 1
    assert received[0] == expected
    assert type(received[0]) is type(expected)


@pytest.mark.parametrize("args,kwargs,expected", SWITCH_CASES)
def test_switch_value_back_to_parent(args, kwargs, expected):
    def run():
        getcurrent().parent.switch(*args, **kwargs)

    g = greenlet(run)
    got = g.switch()
    assert got == expected
    assert type(got) is type(expected)
    g.switch()
    assert g.dead


def test_first_switch_passes_args_and_kwargs_to_run():
    seen = []

    def run(*args, **kwargs):
        seen.append((args, kwargs))
        return "done"

    assert greenlet(run).switch(1, 2, x=3) == "done"
    assert greenlet(run).switch() == "done"
    assert seen == [((1, 2), {"x": 3}), ((), {})]


def test_return_value_of_run_goes_to_parent_switch():
    def child():
        return 42

    def middle():
        c = greenlet(child)  # parent: middle
        return ("middle", c.switch())

    assert greenlet(middle).switch() == ("middle", 42)


def test_return_value_goes_to_explicit_parent_not_switcher():
    main = getcurrent()
    log = []

    def parent_run():
        log.append(("parent got", main.switch("parent suspended")))
        v = main.switch("parent back")
        log.append(("parent resumed", v))

    p = greenlet(parent_run)
    assert p.switch() == "parent suspended"
    c = greenlet(lambda: "child result", p)
    # child started from main but finishes into its parent p
    assert c.switch() == "parent back"
    assert log == [("parent got", "child result")]
    p.switch("end")
    assert log[-1] == ("parent resumed", "end")


def test_switch_to_self_returns_args():
    cur = getcurrent()
    assert cur.switch(7) == 7
    assert cur.switch() == ()
    assert cur.switch(1, 2) == (1, 2)


def test_switch_to_dead_greenlet_goes_to_its_parent():
    g = greenlet(lambda: None)
    g.switch()
    assert g.dead
    # parent of g is the current greenlet: the values come straight back
    assert g.switch(1, 2) == (1, 2)
    assert g.switch(5) == 5


# --------------------------------------------------------------------------
# run / parent / dead / bool
# --------------------------------------------------------------------------


def test_run_attribute_lifecycle():
    def f():
        getcurrent().parent.switch()

    def h():
        pass

    g = greenlet(f)
    assert g.run is f
    g.run = h
    assert g.run is h
    g.run = f
    g.switch()
    with pytest.raises(AttributeError):
        g.run
    with pytest.raises(AttributeError):
        g.run = h
    g.switch()
    assert g.dead
    with pytest.raises(AttributeError):
        g.run


def test_run_keyword_and_missing_run():
    g = greenlet(run=lambda: "kw")
    assert g.switch() == "kw"
    with pytest.raises(AttributeError):
        greenlet().switch()


def test_state_flags_through_lifecycle():
    states = {}

    def run():
        me = getcurrent()
        states["running"] = (bool(me), me.dead, me.gr_frame)
        getcurrent().parent.switch()

    g = greenlet(run)
    assert not bool(g) and not g.dead
    g.switch()
    assert states["running"] == (True, False, None)
    assert bool(g) and not g.dead
    g.switch()
    assert not bool(g) and g.dead


def test_main_greenlet_properties():
    main = getcurrent()
    assert main.parent is None
    assert bool(main)
    assert not main.dead
    assert main.gr_frame is None  # the running greenlet has no saved frame
    assert getcurrent() is main


def test_default_parent_is_creator():
    main = getcurrent()
    seen = {}

    def outer():
        inner = greenlet(lambda: None)
        seen["inner_parent"] = inner.parent
        seen["outer"] = getcurrent()

    o = greenlet(outer)
    assert o.parent is main
    o.switch()
    assert seen["inner_parent"] is seen["outer"] is o


def test_parent_type_checks():
    g = greenlet(lambda: None)
    with pytest.raises(TypeError):
        g.parent = 1
    with pytest.raises(TypeError):
        greenlet(lambda: None, parent=object())


def test_parent_cannot_be_set_to_none():
    # greenlet 3.x: assigning None is a TypeError ("Expected any type of
    # greenlet, not NoneType"), not an AttributeError.
    g = greenlet(lambda: None)
    with pytest.raises(TypeError):
        g.parent = None


def test_parent_cycles_raise_value_error():
    a = greenlet(lambda: None)
    b = greenlet(lambda: None, a)
    c = greenlet(lambda: None, b)
    with pytest.raises(ValueError, match="cyclic parent chain"):
        a.parent = a
    with pytest.raises(ValueError, match="cyclic parent chain"):
        a.parent = b
    with pytest.raises(ValueError, match="cyclic parent chain"):
        a.parent = c
    assert a.parent is getcurrent()
    # legal reparenting still works
    c.parent = a
    assert c.parent is a


def test_reparent_changes_where_return_goes():
    log = []

    def p_run():
        log.append(("p got", getcurrent().parent.switch("p ready")))

    p = greenlet(p_run)
    assert p.switch() == "p ready"
    c = greenlet(lambda: "from c")
    c.parent = p
    assert c.switch() is None  # p finishes after receiving c's result
    assert log == [("p got", "from c")]
    assert p.dead and c.dead


# --------------------------------------------------------------------------
# gr_frame
# --------------------------------------------------------------------------


def _level4():
    getcurrent().parent.switch("suspended")
    return "finished"


def _level3():
    return _level4()


def _level2():
    return _level3()


def _level1():
    return _level2()


def test_gr_frame_unstarted_and_dead_is_none():
    g = greenlet(_level1)
    assert g.gr_frame is None
    assert g.switch() == "suspended"
    assert g.gr_frame is not None
    assert g.switch() == "finished"
    assert g.gr_frame is None


def test_gr_frame_f_back_walk_of_suspended_greenlet_ends_in_none():
    g = greenlet(_level1)
    g.switch()
    frame = g.gr_frame
    assert frame.f_code.co_name == "_level4"
    # the chain covers exactly the greenlet's own frames and ends in None
    assert frame_names(frame) == ["_level4", "_level3", "_level2", "_level1"]
    assert frame.f_lineno == _level4.__code__.co_firstlineno + 1
    # walking it again (and reading locals) after more switching still works
    g2 = greenlet(_level1)
    g2.switch()
    assert frame_names(g.gr_frame) == ["_level4", "_level3", "_level2", "_level1"]
    assert frame_names(g2.gr_frame) == ["_level4", "_level3", "_level2", "_level1"]
    for f in (g.gr_frame, g.gr_frame.f_back.f_back):
        # a dict up to 3.12, a write-through FrameLocalsProxy from 3.13 (PEP 667)
        assert isinstance(f.f_locals, collections.abc.Mapping)
        assert dict(f.f_locals) == dict(f.f_locals.items())
    assert g.switch() == "finished"
    assert g2.switch() == "finished"


def test_gr_frame_of_greenlet_suspended_deep_in_python_recursion():
    def rec(n):
        if n == 0:
            getcurrent().parent.switch()
            return 0
        return rec(n - 1) + 1

    g = greenlet(lambda: rec(50))
    g.switch()
    names = frame_names(g.gr_frame)
    assert names == ["rec"] * 51 + ["<lambda>"]
    assert g.switch() == 50


def test_gr_frame_of_nested_greenlets():
    main = getcurrent()

    def inner():
        main.switch()

    def outer():
        greenlet(inner).switch()  # inner's parent is outer; outer stays suspended in switch

    o = greenlet(outer)
    o.switch()
    assert frame_names(o.gr_frame) == ["outer"]
    assert frame_names(sys._getframe())[0] == "test_gr_frame_of_nested_greenlets"


# --------------------------------------------------------------------------
# gr_context / contextvars
# --------------------------------------------------------------------------

VAR = contextvars.ContextVar("VAR")


def test_new_greenlet_starts_in_empty_context():
    token = VAR.set("main-value")
    try:
        seen = {}

        def run():
            seen["items"] = list(contextvars.copy_context().items())
            seen["var"] = VAR.get("unset")

        g = greenlet(run)
        assert g.gr_context is None
        g.switch()
        assert seen == {"items": [], "var": "unset"}
        assert VAR.get() == "main-value"
    finally:
        VAR.reset(token)


def test_contextvars_isolated_across_switches():
    token = VAR.set("main")
    try:
        log = []

        def run(name):
            VAR.set(name)
            while True:
                log.append((name, VAR.get()))
                getcurrent().parent.switch()

        a = greenlet(run)
        b = greenlet(run)
        a.switch("a")
        b.switch("b")
        assert VAR.get() == "main"
        a.switch()
        b.switch()
        VAR.set("main2")
        a.switch()
        assert VAR.get() == "main2"
        assert log == [("a", "a"), ("b", "b"), ("a", "a"), ("b", "b"), ("a", "a")]
        assert a.gr_context[VAR] == "a"
        assert b.gr_context[VAR] == "b"
        assert getcurrent().gr_context[VAR] == "main2"
        a.throw()
        b.throw()
    finally:
        VAR.reset(token)


def test_gr_context_assignable_before_start():
    ctx = contextvars.Context()
    ctx.run(VAR.set, "preset")
    seen = []
    g = greenlet(lambda: seen.append(VAR.get("unset")))
    g.gr_context = ctx
    assert g.gr_context is ctx
    g.switch()
    assert seen == ["preset"]


def test_gr_context_assign_to_suspended_greenlet():
    seen = []

    def run():
        seen.append(VAR.get("unset"))
        getcurrent().parent.switch()
        seen.append(VAR.get("unset"))

    g = greenlet(run)
    g.switch()
    ctx = contextvars.Context()
    ctx.run(VAR.set, "swapped")
    g.gr_context = ctx
    g.switch()
    assert seen == ["unset", "swapped"]
    with pytest.raises(TypeError):
        g.gr_context = {"not": "a context"}


def test_gr_context_of_dead_greenlet_is_kept():
    # greenlet 3.x keeps the context a finished greenlet ran in
    def run():
        VAR.set("inside")

    g = greenlet(run)
    g.switch()
    assert g.dead
    ctx = g.gr_context
    assert isinstance(ctx, contextvars.Context)
    assert ctx[VAR] == "inside"


# --------------------------------------------------------------------------
# __dict__, weakref, subclassing, repr, getcurrent
# --------------------------------------------------------------------------


def test_instance_dict():
    g = greenlet(lambda: None)
    g.foo = 1
    assert g.__dict__ == {"foo": 1}
    g.__dict__["bar"] = 2
    assert g.bar == 2
    g.__dict__ = {"baz": 3}
    assert g.baz == 3 and not hasattr(g, "foo")
    with pytest.raises(TypeError):
        g.__dict__ = 42
    getcurrent().marker = "main-attr"
    try:
        assert getcurrent().marker == "main-attr"
    finally:
        del getcurrent().marker


def test_weakref_to_greenlets():
    g = greenlet(lambda: None)
    r = weakref.ref(g)
    assert r() is g
    g.switch()
    del g
    gc.collect()
    assert r() is None

    cb = []
    g = greenlet(lambda: None)
    r = weakref.ref(g, cb.append)
    del g
    gc.collect()
    assert r() is None and cb == [r]

    assert weakref.ref(getcurrent())() is getcurrent()


def test_subclass_overriding_run_and_switch():
    calls = []

    class MyGreenlet(greenlet):
        def __init__(self, tag, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.tag = tag

        def run(self, x):
            calls.append(("run", self.tag, x))
            y = self.parent.switch("from run")
            calls.append(("resumed", y))
            return "ret"

        def switch(self, *args, **kwargs):
            calls.append(("switch", args))
            return super().switch(*args, **kwargs)

    g = MyGreenlet("t")
    assert isinstance(g, greenlet)
    assert g.switch(1) == "from run"
    assert g.switch(2) == "ret"
    assert calls == [
        ("switch", (1,)),
        ("run", "t", 1),
        ("switch", (2,)),
        ("resumed", 2),
    ]
    assert g.dead


def test_subclass_run_method_shadows_constructor_run():
    # greenlet looks ``run`` up as an attribute, so a subclass method wins
    # over a callable passed to the constructor.
    class Sub(greenlet):
        def run(self):
            return "method"

    assert Sub().switch() == "method"
    assert Sub(lambda: "arg").switch() == "method"


def test_subclass_getcurrent_returns_instance():
    seen = []

    class Sub(greenlet):
        def run(self):
            seen.append(getcurrent())

    s = Sub()
    s.switch()
    assert seen == [s] and type(seen[0]) is Sub


def test_repr_states():
    def run():
        getcurrent().parent.switch()

    g = greenlet(run)
    r = repr(g)
    assert "greenlet" in r and "pending" in r
    g.switch()
    r = repr(g)
    assert "suspended" in r and "started" in r and "main" not in r
    g.switch()
    assert "dead" in repr(g)
    m = repr(getcurrent())
    assert "current" in m and "active" in m and "main" in m

    class Named(greenlet):
        pass

    assert "Named" in repr(Named(run))


def test_getcurrent_identity():
    main = getcurrent()
    assert isinstance(main, greenlet)
    assert getcurrent() is main
    inside = []

    def run():
        inside.append(getcurrent())
        inside.append(getcurrent())

    g = greenlet(run)
    g.switch()
    assert inside == [g, g]
    assert getcurrent() is main


def test_exception_hierarchy():
    assert issubclass(GreenletExit, BaseException)
    assert not issubclass(GreenletExit, Exception)
    assert issubclass(error, Exception)


# --------------------------------------------------------------------------
# settrace / gettrace
# --------------------------------------------------------------------------


def test_settrace_switch_and_throw_events():
    events = []

    def tracer(event, args):
        origin, target = args
        events.append((event, origin, target))

    main = getcurrent()

    def run():
        try:
            main.switch("suspended")
        except Boom:
            return "caught"

    g = greenlet(run)
    assert gettrace() is None
    assert settrace(tracer) is None
    try:
        assert gettrace() is tracer
        assert g.switch() == "suspended"
        assert g.throw(Boom) == "caught"
    finally:
        old = settrace(None)
    assert old is tracer
    assert gettrace() is None
    assert events == [
        ("switch", main, g),
        ("switch", g, main),
        ("throw", main, g),
        ("switch", g, main),
    ]
    g2 = greenlet(lambda: None)
    g2.switch()
    assert len(events) == 4  # no tracing after settrace(None)


def test_settrace_events_for_exception_propagation_and_kill_on_drop():
    main = getcurrent()
    names = {id(main): "main"}
    events = []

    def tracer(event, args):
        events.append((event, names.get(id(args[0]), "?"), names.get(id(args[1]), "?")))

    g = greenlet(lambda: main.switch())
    u = greenlet(lambda: None)

    def raiser():
        raise Boom

    r = greenlet(raiser)
    names.update({id(g): "g", id(u): "u", id(r): "r"})
    settrace(tracer)
    try:
        g.switch()
        with pytest.raises(KeyError):
            u.throw(KeyError)
        with pytest.raises(Boom):
            r.switch()
        del g  # killed: GreenletExit is thrown in, then it returns to main
    finally:
        settrace(None)
    assert events == [
        ("switch", "main", "g"),
        ("switch", "g", "main"),
        ("throw", "main", "u"),
        ("throw", "u", "main"),
        ("switch", "main", "r"),
        ("throw", "r", "main"),
        ("throw", "main", "g"),
        ("switch", "g", "main"),
    ]


def test_settrace_is_per_thread_and_returns_previous():
    def t1(event, args):
        pass

    def t2(event, args):
        pass

    other = {}

    def thread_main():
        other["trace"] = gettrace()

    assert settrace(t1) is None
    try:
        assert settrace(t2) is t1
        th = threading.Thread(target=thread_main)
        th.start()
        th.join(10)
        assert other == {"trace": None}
    finally:
        assert settrace(None) is t2


def test_tracer_exception_propagates_and_is_removed():
    # greenlet: an exception in the tracer is raised from switch() and the
    # tracer is uninstalled.
    def bad(event, args):
        raise Boom("tracer")

    settrace(bad)
    try:
        with pytest.raises(Boom):
            greenlet(lambda: None).switch()
        assert gettrace() is None
    finally:
        settrace(None)


# --------------------------------------------------------------------------
# throw()
# --------------------------------------------------------------------------


def test_throw_into_unstarted_greenlet():
    ran = []
    g = greenlet(lambda: ran.append(1))
    with pytest.raises(Boom, match="unstarted"):
        g.throw(Boom("unstarted"))
    assert g.dead and ran == []

    g = greenlet(lambda: ran.append(1))
    res = g.throw()
    assert isinstance(res, GreenletExit)
    assert g.dead and ran == []


def test_throw_into_suspended_greenlet_forms():
    def run():
        caught = []
        while True:
            try:
                getcurrent().parent.switch(caught[:])
            except Boom as e:
                caught.append(e)

    g = greenlet(run)
    g.switch()
    got = g.throw(Boom)
    assert len(got) == 1 and type(got[0]) is Boom
    inst = Boom("inst")
    got = g.throw(inst)
    assert got[-1] is inst
    got = g.throw(Boom, Boom("as value"))
    assert got[-1].args == ("as value",)
    got = g.throw(Boom, "arg")
    assert got[-1].args == ("arg",)
    try:
        raise Boom("with tb")
    except Boom as e:
        tb = e.__traceback__
    got = g.throw(Boom, Boom("tb"), tb)
    assert got[-1].args == ("tb",)
    with pytest.raises(TypeError):
        g.throw(Boom("x"), Boom("y"))  # instance with a separate value
    with pytest.raises(TypeError):
        g.throw(42)
    res = g.throw()  # GreenletExit kills it
    assert isinstance(res, GreenletExit)
    assert g.dead


def test_throw_uncaught_propagates_to_parent_with_frames():
    def inner():
        getcurrent().parent.switch()

    def run():
        inner()

    g = greenlet(run)
    g.switch()
    with pytest.raises(Boom) as info:
        g.throw(Boom("x"))
    assert g.dead
    names = [e.name for e in info.traceback]
    assert "run" in names and "inner" in names


def test_throw_into_dead_greenlet():
    g = greenlet(lambda: None)
    g.switch()
    with pytest.raises(Boom, match="dead"):
        g.throw(Boom("dead"))
    assert isinstance(g.throw(), GreenletExit)


def test_throw_into_current_greenlet_raises_immediately():
    with pytest.raises(Boom):
        getcurrent().throw(Boom)


def test_greenlet_exit_is_returned_not_raised():
    def run():
        getcurrent().parent.switch()

    g = greenlet(run)
    g.switch()
    exc = GreenletExit("bye")
    assert g.throw(exc) is exc


def test_run_that_catches_greenlet_exit_and_returns_value():
    def run():
        try:
            getcurrent().parent.switch()
        except GreenletExit:
            return "cleaned up"

    g = greenlet(run)
    g.switch()
    assert g.throw() == "cleaned up"
    assert g.dead


# --------------------------------------------------------------------------
# threads
# --------------------------------------------------------------------------


class _ThreadHarness:
    """A worker thread that owns greenlets and waits until released."""

    def __init__(self):
        self.ready = threading.Event()
        self.release = threading.Event()
        self.objs = {}
        self.errors = []
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self):
        try:
            self.objs["main"] = getcurrent()
            g = greenlet(lambda: getcurrent().parent.switch() or "g done")
            g.switch()
            self.objs["suspended"] = g
            self.objs["unstarted"] = greenlet(lambda: "u done")
            self.ready.set()
            assert self.release.wait(30)
            self.objs["suspended_result"] = g.switch()
            hook = self.objs.get("run_in_thread")
            if hook is not None:
                self.objs["hook_result"] = hook()
        except BaseException as e:  # reported by the test
            self.errors.append(e)
            self.ready.set()

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(30)
        assert not self.errors, self.errors
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def test_switch_to_greenlet_of_another_thread_raises_error():
    with _ThreadHarness() as h:
        for key in ("main", "suspended", "unstarted"):
            with pytest.raises(error):
                h.objs[key].switch()
            with pytest.raises(error):
                h.objs[key].throw(Boom)
            assert not h.objs[key].dead
    assert not h.errors, h.errors
    # the foreign switch attempts did not disturb the owner thread
    assert h.objs["suspended_result"] == "g done"


def test_parent_from_another_thread_raises_value_error():
    def run():
        getcurrent().parent.switch()

    mine = greenlet(run)
    mine.switch()
    with _ThreadHarness() as h:
        for key in ("main", "suspended"):
            with pytest.raises(ValueError, match="different thread"):
                mine.parent = h.objs[key]
        assert mine.parent is getcurrent()
    mine.switch()
    assert mine.dead


def test_unstarted_greenlet_can_be_moved_to_another_thread_via_parent():
    # greenlet 3.x allows giving an *unstarted* greenlet a parent in another
    # thread; it then belongs to that thread (switching from here is an
    # error, the owner thread can run it).
    def where():
        return threading.current_thread().name

    with _ThreadHarness() as h:
        moved = greenlet(where)
        moved.parent = h.objs["main"]
        with pytest.raises(error):
            moved.switch()
        h.objs["run_in_thread"] = moved.switch
    assert not h.errors, h.errors
    assert h.objs["hook_result"] == h.thread.name
    assert moved.dead


def test_each_thread_has_its_own_main_greenlet():
    mains = {}

    def body(i):
        m = getcurrent()
        g = greenlet(lambda: getcurrent())
        mains[i] = (m, m.parent, g.switch() is g, g.parent is m)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(mains) == 4
    ms = [v[0] for v in mains.values()]
    assert len(set(map(id, ms))) == 4
    assert getcurrent() not in ms
    for m, parent, ok1, ok2 in mains.values():
        assert parent is None and ok1 and ok2


# --------------------------------------------------------------------------
# generators, coroutines and an asyncio bridge inside greenlets
# --------------------------------------------------------------------------


def test_gr_frame_walk_through_generator_and_coroutine_frames():
    def gen():
        yield 1
        getcurrent().parent.switch("in gen")
        yield 2

    def consumer():
        return list(gen())

    g = greenlet(consumer)
    assert g.switch() == "in gen"
    assert frame_names(g.gr_frame) == ["gen", "consumer"]
    assert g.switch() == [1, 2]

    async def co():
        getcurrent().parent.switch("in coro")
        return 5

    def drive():
        c = co()
        try:
            c.send(None)
        except StopIteration as e:
            return e.value

    g = greenlet(drive)
    assert g.switch() == "in coro"
    assert frame_names(g.gr_frame) == ["co", "drive"]
    assert g.switch() == 5


def test_asyncio_bridge_switching_from_inside_coroutines():
    # the SQLAlchemy-style pattern: sync code in a greenlet awaits through
    # its driver coroutine running on the event loop
    import asyncio

    class Bridge(greenlet):
        def __init__(self, fn, driver):
            greenlet.__init__(self, fn, driver)
            self.driver = driver

    def await_only(aw):
        return getcurrent().driver.switch(aw)

    async def spawn(fn, *args):
        ctx = Bridge(fn, getcurrent())
        result = ctx.switch(*args)
        while not ctx.dead:
            try:
                value = await result
            except BaseException:
                result = ctx.throw(*sys.exc_info())
            else:
                result = ctx.switch(value)
        return result

    async def work(x):
        await asyncio.sleep(0.001)
        if x == "boom":
            raise KeyError(x)
        return x * 2

    def sync_code(n):
        total = 0
        for i in range(n):
            total += await_only(work(i))
        try:
            await_only(work("boom"))
        except KeyError:
            total += 1000
        return total

    async def main():
        return await asyncio.gather(*(spawn(sync_code, 10) for _ in range(5)))

    assert asyncio.run(main()) == [1090] * 5


def test_finishing_greenlets_leave_no_references_up_their_parent_chain():
    # A greenlet that finishes hands its result to its parent; walking up the
    # chain must not leave references behind in the dead greenlet's frames
    # (once a leak of one reference to the grandparent per finished greenlet).
    main = getcurrent()

    def outer():
        before = sys.getrefcount(main)
        for _ in range(100):
            assert greenlet(lambda: 7).switch() == 7   # parent: outer; grandparent: main
        return sys.getrefcount(main) - before

    assert greenlet(outer).switch() == 0


def test_replacing_run_whose_finalizer_sets_run_again():
    # The old run is dropped after the coroutine's state is no longer
    # borrowed: its __del__ may touch the greenlet (here: set run again).
    seen = []
    g = greenlet()

    class Run:
        def __call__(self):
            return "first"

        def __del__(self):
            seen.append(g.run is not None)
            g.run = lambda: "from __del__"

    g.run = Run()
    g.run = lambda: "second"
    assert seen == [True]
    assert g.switch() == "from __del__"
