"""What happens when the last reference to a suspended greenlet goes away:
Python subclasses, greenlets that refuse to die, greenlets dropped by another
thread, and greenlets whose thread has exited.  Each case was a gap found by
greenlet's own suite (see docs/conformance.md); every test here passes against
real greenlet too (WEFT_GREENLET_IMPL=greenlet), but one it crashes on.
"""
import gc
import sys
import threading
import weakref

import pytest

from gtest_support import IMPL, G, GreenletExit, getcurrent, greenlet, run_script


class Sub(greenlet):
    """A Python subclass: CPython gives its type no tp_finalize."""


def _suspend_forever(log):
    try:
        getcurrent().parent.switch()
    except GreenletExit:
        # Its instance dict is still there while it dies.
        log.append(("killed", getcurrent().tag))
        raise


@pytest.mark.parametrize("cls", [greenlet, Sub], ids=["base", "subclass"])
def test_dropping_a_suspended_greenlet_kills_it(cls):
    log = []
    g = cls(_suspend_forever)
    g.tag = "tagged"
    g.switch(log)
    w = weakref.ref(g)
    del g
    assert log == [("killed", "tagged")]
    assert w() is None


def test_subclass_resurrected_by_its_kill_keeps_type_refcount():
    # greenlet issue 245: a greenlet that saves itself while dying must not
    # take or drop a reference to its (heap) type.
    class Mine(greenlet):
        pass

    saved = []

    def body():
        try:
            getcurrent().parent.switch()
        except GreenletExit:
            saved.append(getcurrent())

    gc.collect()
    before = sys.getrefcount(Mine)
    for _ in range(10):
        Mine(body).switch()
    assert len(saved) == 10 and all(g.dead for g in saved)
    # Each live instance holds its type once.
    assert sys.getrefcount(Mine) == before + 10
    refs = [weakref.ref(g) for g in saved]
    del saved[:]
    gc.collect()
    assert all(r() is None for r in refs)
    assert sys.getrefcount(Mine) == before


@pytest.mark.parametrize("cls", [greenlet, Sub], ids=["base", "subclass"])
def test_greenlet_refusing_to_die_is_killed_again_on_every_dealloc(cls):
    kills = []
    keep = []

    def stubborn():
        while True:
            try:
                getcurrent().parent.switch()
            except GreenletExit:
                kills.append(len(kills) + 1)
                if len(kills) == 3:
                    return "gave up"
                # Refuse: stay alive, referenced from outside, and go back.
                keep.append(getcurrent())
                getcurrent().kills_seen = len(kills)

    g = cls(stubborn)
    g.switch()
    w = weakref.ref(g)
    del g
    assert kills == [1]
    assert w() is not None and not w().dead
    assert w().kills_seen == 1
    del keep[:]  # second dealloc: killed again
    assert kills == [1, 2]
    assert w() is not None and not w().dead
    assert w().kills_seen == 2
    del keep[:]  # third: it gives up
    assert kills == [1, 2, 3]
    assert w() is None


def test_greenlet_dropped_by_another_thread_is_killed_when_its_thread_creates_one():
    # greenlet kills such greenlets at its thread's next getcurrent(), switch
    # or greenlet creation; creation alone must do it.
    seen = []
    handed_over = []
    dropped = threading.Event()
    checked = threading.Event()
    result = {}

    def body():
        try:
            getcurrent().parent.switch()
        except GreenletExit:
            seen.append("killed in its own thread")
            raise

    def owner():
        g = greenlet(body)
        g.switch()
        handed_over.append(g)
        del g
        assert dropped.wait(10)
        result["before"] = list(seen)
        greenlet()  # no switch, no getcurrent(): creation drains the queue
        result["after"] = list(seen)
        checked.set()

    t = threading.Thread(target=owner)
    t.start()
    while not handed_over and t.is_alive():
        threading.Event().wait(0.01)
    ref = weakref.ref(handed_over[0])
    del handed_over[:]  # last reference dropped in this thread
    dropped.set()
    assert checked.wait(10)
    t.join(10)
    assert result == {"before": [], "after": ["killed in its own thread"]}
    gc.collect()
    assert ref() is None


def _suspended_in_exited_thread(body):
    out = []

    def run():
        g = greenlet(body)
        g.switch()
        out.append(g)

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    # The thread's greenlet bookkeeping goes when the OS thread does, which can
    # lag join() a little: a switch attempt tells us it has.
    g = out[0]
    for _ in range(500):
        try:
            g.switch()
        except G.error as e:
            if "exited" in str(e):
                break
        threading.Event().wait(0.01)
    return g


def test_gr_frame_of_greenlet_suspended_in_exited_thread():
    def waiting_here():
        marker = "local of the suspended frame"  # noqa: F841
        getcurrent().parent.switch()

    g = _suspended_in_exited_thread(waiting_here)
    frame = g.gr_frame
    assert frame is not None
    assert frame.f_code.co_name == "waiting_here"
    assert frame.f_locals["marker"] == "local of the suspended frame"
    with pytest.raises(RuntimeError):
        frame.clear()  # it is still executing, as far as CPython knows
    del frame
    # Once something asks whether it is dead, it is (greenlet's rule), and its
    # frames are gone with its stack.
    assert g.dead
    assert g.gr_frame is None
    assert repr(g).endswith(" (thread exited) dead>")
    with pytest.raises(G.error):
        g.switch()


# The subprocess tests use the same helper (run_script puts this folder on
# the child's path).
_EXITED_THREAD_HELPER = """
import gc
from test_greenlet_dealloc import _suspended_in_exited_thread as suspended_in_exited_thread
"""


@pytest.mark.skipif(
    IMPL == "greenlet",
    reason="greenlet 3.5.6 frees the data stack anyway; reading the kept frame then crashes",
)
def test_frames_of_greenlet_from_exited_thread_stay_readable_while_referenced():
    # Dropping such a greenlet gives its data stack back only if nothing else
    # can reach its frames: a frame object kept from gr_frame keeps them. (A
    # subprocess: reading freed chunks would crash.)
    run_script(_EXITED_THREAD_HELPER + """
def waiting_here(depth):
    if depth:
        return waiting_here(depth - 1)
    marker = "still here"
    getcurrent().parent.switch()

def body():
    waiting_here(50)  # deeper than the first data-stack chunk

g = suspended_in_exited_thread(body)
frame = g.gr_frame
del g
gc.collect()
for _ in range(3):
    junk = [bytearray(4096) for _ in range(1000)]  # reuse freed memory, if any
    del junk
assert frame.f_locals["marker"] == "still here"
names = []
f = frame
while f is not None:
    names.append(f.f_code.co_name)
    f = f.f_back
assert names == ["waiting_here"] * 51 + ["body"], names
del f, frame
gc.collect()
print("OK")
""")


def test_greenlet_from_exited_thread_suspended_inside_a_generator():
    # A generator running in the greenlet links its frame into the chain; its
    # object may outlive the greenlet and must find valid frames when cleared.
    run_script(_EXITED_THREAD_HELPER + """
def gen():
    getcurrent().parent.switch()
    yield 1

keep = []

def body():
    it = gen()
    keep.append(it)
    next(it)

g = suspended_in_exited_thread(body)
del g
gc.collect()
it = keep.pop()
del it  # clearing a generator that is still executing somewhere
gc.collect()
print("OK")
""")


def test_an_orphaned_greenlet_releases_its_run_callable():
    import functools

    def body():
        getcurrent().parent.switch()

    run = functools.partial(body)  # referenced by no frame, only by the call
    run_ref = weakref.ref(run)
    g = _suspended_in_exited_thread(run)
    del run
    assert run_ref() is not None
    del g
    # What a thread leaves behind when it exits (its TLS destructor runs after
    # join() returns) is released at the next entry into weft, as in greenlet.
    getcurrent()
    gc.collect()
    assert run_ref() is None, "the run callable of a greenlet left by an exited thread leaked"


@pytest.mark.skipif(sys.version_info < (3, 15), reason="before 3.15 a suspended frame's references cannot be released (nor are they by greenlet)")
def test_an_orphaned_greenlets_frames_release_what_they_hold():
    class Marker:
        pass

    marker = Marker()
    marker_ref = weakref.ref(marker)

    def body(m=None):
        held = [marker]  # a local of the suspended frame
        getcurrent().parent.switch()
        return held

    g = _suspended_in_exited_thread(body)
    del marker
    assert marker_ref() is not None
    del g
    getcurrent()
    gc.collect()
    assert marker_ref() is None
