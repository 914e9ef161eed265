"""The garbage collector and suspended greenlets.

From CPython 3.15 a suspended greenlet reports what its frames reference
(tp_traverse), as greenlet does there: a cycle through it is garbage, broken by
its finalizer (a kill with GreenletExit). Before 3.15 a suspended greenlet is
kept out of the collector's reach and such a cycle stays alive, again as in
greenlet. On every version, a collection must never free what a suspended
frame still uses.
"""
import gc
import sys
import threading
import weakref

from weft.greenlet import getcurrent, greenlet

FRAMES_TRAVERSED = sys.version_info >= (3, 15)


def _kill_if_alive(ref):
    g = ref()
    if g is not None and not g.dead:
        g.throw()
    return g


def test_objects_only_a_suspended_frame_holds_survive_collections():
    def body():
        data = {"k": [1, 2, 3]}
        cyc = []
        cyc.append(cyc)
        name = "".join(["we", "ft"])  # a fresh str, referenced from the frame only
        getcurrent().parent.switch()
        return data["k"], cyc[0] is cyc, name

    g = greenlet(body)
    g.switch()
    for _ in range(3):
        gc.collect()
    assert g.switch() == ([1, 2, 3], True, "weft")


def test_cycle_through_a_suspended_greenlets_dict():
    finished = []

    def body():
        try:
            getcurrent().parent.switch()
        finally:
            finished.append(True)

    g = greenlet(body)
    g.switch()
    holder = [g]
    g.holder = holder
    ref = weakref.ref(g)
    del g, holder
    gc.collect()
    if FRAMES_TRAVERSED:
        assert ref() is None
        assert finished == [True]
    else:
        g = _kill_if_alive(ref)
        assert g is not None, "a suspended greenlet was collected before 3.15"
        assert finished == [True]
        g.holder = None


def test_cycle_through_a_suspended_greenlets_own_frame():
    finished = []

    def body():
        me = getcurrent()  # the frame holds the greenlet itself
        try:
            me.parent.switch()
        finally:
            finished.append(me.dead)

    g = greenlet(body)
    g.switch()
    ref = weakref.ref(g)
    del g
    gc.collect()
    if FRAMES_TRAVERSED:
        assert ref() is None
        assert finished == [False]
    else:
        g = _kill_if_alive(ref)
        assert g is not None
        assert finished == [False]


def test_collection_in_one_thread_of_a_cycle_suspended_in_another():
    ready = threading.Event()
    collected = threading.Event()
    finished = []
    refs = []

    def body():
        try:
            getcurrent().parent.switch()
        finally:
            finished.append(threading.current_thread().name)

    def worker():
        g = greenlet(body)
        g.switch()
        g.me = g
        refs.append(weakref.ref(g))
        del g
        ready.set()
        collected.wait(10)
        getcurrent()  # a weft entry: pending kills from other threads run here

    t = threading.Thread(target=worker, name="gc-worker")
    t.start()
    assert ready.wait(10)
    gc.collect()
    collected.set()
    t.join(10)
    assert not t.is_alive()
    if FRAMES_TRAVERSED:
        # Found as garbage by this thread, killed in its own thread.
        assert finished == ["gc-worker"]
        gc.collect()
        assert refs[0]() is None
    else:
        assert finished == []
