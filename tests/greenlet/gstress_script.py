"""Randomized switch/throw/kill/GC/reparent graphs across OS threads, and
interpreter shutdown in the middle of them (hypothesis, seeded per run).

Run by test_greenlet_stress.py in a subprocess; can also be run directly
(``python gstress_script.py``, WEFT_GREENLET_IMPL / WEFT_STRESS_EXAMPLES /
WEFT_STRESS_SHUTDOWN_EXAMPLES / WEFT_STRESS_SEED).  The run's seed comes from
WEFT_STRESS_SEED, or is drawn at random; it is printed first ("STRESS SEED
N"), and WEFT_STRESS_SEED=N replays the same examples.

test_two_thread_graphs: each example runs two threads at once; each thread
owns NSLOTS greenlets and interprets its own list of operations.  The op
stream of a thread is shared by all of that thread's greenlets: whichever
greenlet is running takes the next op, so switching, throwing and killing
rearrange who executes what.  Ops that touch the other thread's greenlets
must fail cleanly (greenlet.error / ValueError); nothing may crash or hang.
Every outcome that can be predicted is asserted.

test_shutdown_graphs: each example is a fresh interpreter (shutdown_child)
where the main thread, a thread that ends and a daemon thread run op streams
at once; the daemon then stays suspended inside a greenlet, the main thread
leaves greenlets suspended, and the interpreter exits (falling off the end,
sys.exit from inside a greenlet, or after a gc).  The child must print its
verdict and exit 0 with nothing fatal on stderr.
"""
import gc
import json
import os
import random
import subprocess
import sys
import threading
import time

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else ".")
from gtest_support import HERE, G, GreenletExit, getcurrent, greenlet  # noqa: E402

NSLOTS = 4
MAX_EXAMPLES = int(os.environ.get("WEFT_STRESS_EXAMPLES", "150"))
SHUTDOWN_EXAMPLES = int(os.environ.get("WEFT_STRESS_SHUTDOWN_EXAMPLES", "0"))
SEED = int(os.environ.get("WEFT_STRESS_SEED") or random.SystemRandom().randrange(2**32))
JOIN_TIMEOUT = 30
CHILD_TIMEOUT = 60
EXIT_MODES = ("return", "sys.exit in a greenlet", "gc then return")


class Boom(Exception):
    pass


slot_ix = st.integers(0, NSLOTS - 1)
target_ix = st.integers(0, NSLOTS)  # NSLOTS means "the thread's main greenlet"

OP = st.one_of(
    st.tuples(st.just("switch"), slot_ix),
    st.tuples(st.just("throw"), slot_ix),
    st.tuples(st.just("kill"), slot_ix),
    st.tuples(st.just("drop"), slot_ix),
    st.tuples(st.just("reparent"), slot_ix, target_ix),
    st.tuples(st.just("xswitch"), target_ix),
    st.tuples(st.just("xthrow"), target_ix),
    st.tuples(st.just("xparent"), target_ix),
    st.tuples(st.just("frame"), slot_ix),
    st.tuples(st.just("gc")),
    st.tuples(st.just("yield")),
)
OPS = st.lists(OP, max_size=60)


class Runner:
    def __init__(self, name, ops):
        self.name = name
        self.ops = iter(ops)
        self.slots = [None] * NSLOTS
        self.main = None
        self.peer = None
        self.errors = []
        self.all_greenlets = []
        self.done = False

    # -- helpers -------------------------------------------------------
    def slot(self, i):
        g = self.slots[i]
        if g is None or g.dead:
            g = self.slots[i] = greenlet(self.loop)
            self.all_greenlets.append(g)
        return g

    def target(self, i):
        return self.main if i == NSLOTS else self.slot(i)

    def peer_target(self, i):
        p = self.peer
        return p.main if i == NSLOTS else p.slots[i]

    # -- the body of every greenlet of this thread -----------------------
    def loop(self, *args, **kwargs):
        me = getcurrent()
        for op in self.ops:
            assert getcurrent() is me
            try:
                self.do(op)
            except Boom:
                pass
            except GreenletExit:
                if me is self.main:  # never let a kill escape the thread
                    continue
                raise
        return "exhausted"

    def do(self, op):
        kind = op[0]
        cur = getcurrent()
        if kind == "switch":
            g = self.slot(op[1])
            g.switch(op)
            assert getcurrent() is cur
        elif kind == "throw":
            g = self.slot(op[1])
            if g is cur:
                try:
                    g.throw(Boom)
                except Boom:
                    pass
                else:
                    raise AssertionError("throw to self did not raise")
            else:
                g.throw(Boom)
        elif kind == "kill":
            g = self.slot(op[1])
            if g is cur:
                return
            was_started = bool(g) or g.dead
            parent = g.parent
            res = g.throw(GreenletExit)
            if not was_started:
                assert g.dead
                if parent is cur:
                    # (otherwise the GreenletExit went to a parent that
                    # may have run on and returned something else)
                    assert isinstance(res, GreenletExit), res
        elif kind == "drop":
            self.slots[op[1]] = None
        elif kind == "reparent":
            g = self.slot(op[1])
            p = self.target(op[2])
            chain = []
            q = p
            while q is not None:
                chain.append(q)
                q = q.parent
            cyclic = any(q is g for q in chain)
            try:
                g.parent = p
            except ValueError as e:
                assert cyclic, ("unexpected ValueError", e)
            else:
                assert not cyclic, "cyclic parent chain accepted"
                assert g.parent is p
        elif kind == "xswitch":
            t = self.peer_target(op[1])
            if t is None:
                return
            try:
                t.switch()
            except G.error:
                pass
            else:
                raise AssertionError("switched into another thread's greenlet")
            assert getcurrent() is cur
        elif kind == "xthrow":
            t = self.peer_target(op[1])
            if t is None:
                return
            try:
                t.throw(Boom)
            except G.error:
                pass
            else:
                raise AssertionError("threw into another thread's greenlet")
        elif kind == "xparent":
            t = self.peer_target(op[1])
            if t is None:
                return
            # cur is started and alive; a started greenlet cannot move threads
            # (and a main greenlet can never be given a parent)
            expected = AttributeError if cur is self.main else ValueError
            try:
                cur.parent = t
            except expected:
                pass
            else:
                raise AssertionError("parent set to another thread's greenlet")
            assert cur.parent is not t
        elif kind == "frame":
            g = self.slots[op[1]]
            if g is None:
                return
            f = g.gr_frame
            if g is cur or g.dead or not g:
                assert f is None, (g, f)
            else:
                n = 0
                while f is not None:
                    assert f.f_code.co_name in ("do", "loop"), f.f_code.co_name
                    f = f.f_back
                    n += 1
                    assert n < 1000
                assert n >= 2  # at least do -> loop
        elif kind == "gc":
            gc.collect()
        elif kind == "yield":
            time.sleep(0)
        else:
            raise AssertionError(op)

    def thread_main(self, barrier):
        try:
            self.main = getcurrent()
            self.all_greenlets.append(self.main)
            barrier.wait(JOIN_TIMEOUT)
            self.loop()
            assert getcurrent() is self.main
        except BaseException as e:
            import traceback

            self.errors.append("".join(traceback.format_exception(e)))
        finally:
            # greenlets suspended (started, not finished) when the thread ends
            self.suspended_at_exit = [g for g in self.all_greenlets if g]
            self.done = True


def run_pair(ops_a, ops_b):
    a = Runner("a", ops_a)
    b = Runner("b", ops_b)
    a.peer, b.peer = b, a
    barrier = threading.Barrier(2)
    ta = threading.Thread(target=a.thread_main, args=(barrier,))
    tb = threading.Thread(target=b.thread_main, args=(barrier,))
    ta.start()
    tb.start()
    ta.join(JOIN_TIMEOUT)
    tb.join(JOIN_TIMEOUT)
    assert not ta.is_alive() and not tb.is_alive(), "worker thread hung"
    assert not a.errors and not b.errors, a.errors + b.errors
    assert a.done and b.done
    # Both threads are gone: the greenlets that were suspended in them must
    # (soon) report dead, and nothing of theirs may be switched to from here.
    # (Never-started greenlets of a dead thread stay "not dead", as in
    # greenlet.)
    suspended = a.suspended_at_exit + b.suspended_at_exit
    deadline = time.monotonic() + 5
    while not all(g.dead for g in suspended):
        assert time.monotonic() < deadline, [repr(g) for g in suspended if not g.dead]
        time.sleep(0.001)
    everything = a.all_greenlets + b.all_greenlets
    here = getcurrent()
    for g in everything[:3] + suspended[:3]:
        # every one of them belongs to (its parents lead to) an exited thread
        try:
            g.switch()
        except G.error:
            pass
        else:
            raise AssertionError(f"switched into {g!r}, of an exited thread")
        assert getcurrent() is here
    del everything, suspended, a, b
    gc.collect()


SETTINGS = dict(
    deadline=None,
    database=None,
    # no shrinking: replaying a crashing/hanging example many times would
    # only turn a clear failure into a subprocess timeout
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@seed(SEED)
@settings(max_examples=MAX_EXAMPLES, **SETTINGS)
@given(OPS, OPS)
def test_two_thread_graphs(ops_a, ops_b):
    run_pair(ops_a, ops_b)


# -- interpreter shutdown ---------------------------------------------------
def shutdown_child(spec_json):
    """One example of test_shutdown_graphs, in a fresh interpreter: returns
    only through the exit mode's path; prints "CHILD OK" once every check
    before the exit has passed."""
    spec = json.loads(spec_json)
    ops = {k: [tuple(op) for op in spec[k]] for k in ("main", "ends", "daemon")}
    m, a, d = Runner("main", ops["main"]), Runner("ends", ops["ends"]), Runner("daemon", ops["daemon"])
    m.peer, a.peer, d.peer = a, d, m
    barrier = threading.Barrier(3)
    parked = threading.Event()

    def daemon_main():
        d.thread_main(barrier)
        # stay inside a started greenlet (its frames on this thread's stack)
        # until the interpreter ends the thread
        greenlet(lambda: (parked.set(), threading.Event().wait())).switch()

    ta = threading.Thread(target=a.thread_main, args=(barrier,))
    td = threading.Thread(target=daemon_main, daemon=True)
    ta.start()
    td.start()
    m.thread_main(barrier)
    ta.join(JOIN_TIMEOUT)
    assert not ta.is_alive(), "worker thread hung"
    assert parked.wait(JOIN_TIMEOUT), "daemon thread never parked"
    assert not m.errors and not a.errors and not d.errors, m.errors + a.errors + d.errors
    # left for the shutdown: greenlets suspended in this thread, in the ended
    # thread and in the daemon thread, reachable from module globals
    global LEFT
    LEFT = (m, a, d)
    print("CHILD OK", spec["mode"], flush=True)
    if spec["mode"] == "sys.exit in a greenlet":
        greenlet(lambda: sys.exit(0)).switch()
        raise AssertionError("sys.exit in a greenlet did not end the interpreter")
    if spec["mode"] == "gc then return":
        gc.collect()


def run_shutdown_child(ops_main, ops_ends, ops_daemon, mode):
    spec = json.dumps({"main": ops_main, "ends": ops_ends, "daemon": ops_daemon, "mode": mode})
    code = "import sys, gstress_script as s; s.shutdown_child(sys.argv[1])"
    env = dict(os.environ, PYTHONFAULTHANDLER="1",
               PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run([sys.executable, "-c", code, spec], env=env, capture_output=True,
                              text=True, timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"shutdown child hung (> {CHILD_TIMEOUT}s), spec {spec}\n"
                             f"stdout:\n{exc.stdout}\nstderr:\n{exc.stderr}") from None
    detail = f"spec {spec}\nrc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.returncode == 0, detail
    assert proc.stdout.splitlines() == [f"CHILD OK {mode}"], detail
    assert proc.stderr == "", detail


@seed(SEED)
@settings(max_examples=max(SHUTDOWN_EXAMPLES, 1), **SETTINGS)
@given(OPS, OPS, OPS, st.sampled_from(EXIT_MODES))
def test_shutdown_graphs(ops_main, ops_ends, ops_daemon, mode):
    run_shutdown_child(ops_main, ops_ends, ops_daemon, mode)


if __name__ == "__main__":
    print("STRESS SEED", SEED, flush=True)
    test_two_thread_graphs()
    if SHUTDOWN_EXAMPLES:
        test_shutdown_graphs()
    # the main thread's greenlet machinery is still sound afterwards
    assert greenlet(lambda: 42).switch() == 42
    print("STRESS OK", MAX_EXAMPLES, SHUTDOWN_EXAMPLES, flush=True)
