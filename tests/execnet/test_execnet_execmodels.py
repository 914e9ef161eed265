"""The eventlet, gevent and tasklet exec models of weft.execnet (issue 13).

eventlet and gevent run on weft.greenlet: their workers get weft's alias
first on PYTHONPATH (``env:PYTHONPATH=``), so their ``import greenlet`` is
weft's, which each test checks from inside the worker. They are skipped where
the library is not installed (the [test] extra installs eventlet; CI installs
gevent too).
"""
import importlib.util
import os
import subprocess
import sys
import textwrap
import threading

import pytest

import weft.execnet as execnet
from weft import alias

GREEN = [pytest.param(name, marks=pytest.mark.skipif(
    importlib.util.find_spec(name) is None, reason="%s is not installed" % name))
    for name in ("eventlet", "gevent")]


@pytest.fixture(scope="module")
def alias_dir(tmp_path_factory):
    return alias.make_alias_dir(["greenlet"], tmp_path_factory.mktemp("alias"))


@pytest.fixture
def group():
    g = execnet.Group()
    yield g
    g.terminate(5)


def green_gateway(group, model, alias_dir):
    gw = group.makegateway("popen//execmodel=%s//env:PYTHONPATH=%s" % (model, alias_dir))
    # the worker runs the model on weft's greenlet, in green threads
    ch = gw.remote_exec("""
        import greenlet, weft.greenlet
        channel.send((channel.gateway.execmodel.backend,
                      greenlet.greenlet is weft.greenlet.greenlet,
                      greenlet.getcurrent().parent is not None))
    """)
    assert ch.receive(10) == (model, True, True)
    return gw


# ---- a name that is not an exec model ----------------------------------------

@pytest.mark.parametrize("name", ["threads", "greenlet", "", None, 3])
def test_unknown_execmodel_is_a_clear_valueerror(name):
    with pytest.raises(ValueError) as info:
        execnet.Group(execmodel=name)
    text = str(info.value)
    assert repr(name) in text
    for model in ("thread", "main_thread_only", "eventlet", "gevent", "tasklet"):
        assert model in text


def test_unknown_execmodel_in_a_spec_fails_before_spawning(group):
    with pytest.raises(ValueError, match="unknown execmodel 'bogus'"):
        group.makegateway("popen//execmodel=bogus")
    assert len(group) == 0


# ---- eventlet and gevent -------------------------------------------------------

@pytest.mark.parametrize("model", GREEN)
def test_green_remote_exec_round_trip(group, model, alias_dir):
    gw = green_gateway(group, model, alias_dir)
    ch = gw.remote_exec("channel.send(channel.receive() + 1)")
    ch.send(41)
    assert ch.receive(10) == 42
    ch.waitclose(10)
    assert gw.remote_status().numexecuting == 0


@pytest.mark.parametrize("model", GREEN)
def test_green_tasks_wait_concurrently(group, model, alias_dir):
    """Five tasks all wait in receive() at once, in green threads of one OS
    thread; each gets its answer in whatever order the items come."""
    gw = green_gateway(group, model, alias_dir)
    chs = [gw.remote_exec("""
        import threading
        channel.send(threading.get_ident())
        channel.send(channel.receive() * 2)
    """) for _ in range(5)]
    idents = {ch.receive(10) for ch in chs}
    assert len(idents) == 1  # one OS thread
    for i, ch in reversed(list(enumerate(chs))):
        ch.send(i)
    assert [ch.receive(10) for ch in chs] == [0, 2, 4, 6, 8]


@pytest.mark.parametrize("model", GREEN)
def test_green_sleep_lets_the_other_tasks_run(group, model, alias_dir):
    """A task in the model's sleep (the hub's timer) does not hold up another
    task's round trips."""
    gw = green_gateway(group, model, alias_dir)
    sleeper = gw.remote_exec("""
        channel.send("asleep")
        channel.gateway.execmodel.sleep(30)
    """)
    assert sleeper.receive(10) == "asleep"
    echo = gw.remote_exec("for x in channel: channel.send(x)")
    for i in range(20):
        echo.send(i)
        assert echo.receive(10) == i
    echo.close()


@pytest.mark.parametrize("model", GREEN)
def test_green_channel_callbacks(group, model, alias_dir):
    """Callbacks both ways: the worker's run in its receiver (a green thread),
    and their replies reach a local callback."""
    gw = green_gateway(group, model, alias_dir)
    ch = gw.remote_exec("""
        done = channel.gateway.execmodel.Event()
        def double(item):
            channel.send(item * 2)
            if item == 3:
                done.set()
        channel.setcallback(double)
        done.wait()
    """)
    got = []
    closed = threading.Event()

    def collect(item):
        if item is None:
            closed.set()
        else:
            got.append(item)

    ch.setcallback(collect, endmarker=None)
    for i in (1, 2, 3):
        ch.send(i)
    assert closed.wait(10)
    assert got == [2, 4, 6]


@pytest.mark.parametrize("model", GREEN)
def test_green_remote_error_and_exit(group, model, alias_dir):
    gw = green_gateway(group, model, alias_dir)
    ch = gw.remote_exec("raise ValueError('green boom')")
    with pytest.raises(execnet.RemoteError, match="green boom"):
        ch.waitclose(10)
    gw.exit()
    assert gw.join(10)


@pytest.mark.parametrize("model", GREEN)
def test_green_execmodel_locally(model, alias_dir, tmp_path):
    """The model's own API and a WorkerPool in this process (run under the
    alias in a fresh interpreter: gevent and eventlet on weft.greenlet)."""
    script = tmp_path / "local.py"
    script.write_text(textwrap.dedent("""
        import os, sys, warnings
        warnings.simplefilter("ignore")
        import greenlet, weft.greenlet
        assert greenlet.greenlet is weft.greenlet.greenlet
        import weft.execnet as execnet
        from weft._bootstrap.pool import WorkerPool
        model = execnet.Group(execmodel=sys.argv[1]).execmodel
        assert model.backend == sys.argv[1]
        lib = __import__(sys.argv[1])
        q = model.queue.Queue()
        pool = WorkerPool(model)
        def task(i):
            q.put(i)
            model.sleep(0.001)
            return model.get_ident()
        replies = [pool.spawn(task, i) for i in range(3)]
        assert sorted(q.get() for _ in range(3)) == [0, 1, 2]
        idents = {r.get(5) for r in replies}
        assert len(idents) == 3 and model.get_ident() not in idents  # green threads
        assert pool.waitall(5) and pool.active_count() == 0
        ev = model.Event()
        model.start(ev.set)
        assert ev.wait(5)
        r, w = os.pipe()
        os.write(w, b"data"); os.close(w)
        f = model.fdopen(r, "rb")
        assert f.read() == b"data"
        f.close()
        with model.Lock(), model.RLock():
            pass
        assert model.socket.socket and model.subprocess.Popen
        print("local OK")
    """))
    proc = subprocess.run([sys.executable, "-m", "weft.alias", "greenlet", "--", sys.executable,
                           str(script), model], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "local OK" in proc.stdout


LOCAL_GREEN = """
import sys, time, warnings
warnings.simplefilter("ignore")
import greenlet, weft.greenlet
assert greenlet.greenlet is weft.greenlet.greenlet
import weft.execnet as execnet
local, remote = sys.argv[1], sys.argv[2]
group = execnet.Group()
group.set_execmodel(local, remote)
model = group.execmodel
gw = group.makegateway("popen")
assert gw._core is model and type(gw._io._rfile).__name__ == "WaitingReader"
ch = gw.remote_exec("channel.send(channel.receive() + 1)")
ch.send(1)
assert ch.receive(10) == 2

# two green threads wait in receive() at once while a third one ticks
a = gw.remote_exec("channel.send(channel.receive())")
b = gw.remote_exec("channel.send(channel.receive())")
got, ticks = [], [0]
def waiter(c):
    got.append(c.receive(10))
def ticker():
    while len(got) < 2:
        ticks[0] += 1
        model.sleep(0.001)
model.start(waiter, (a,))
model.start(waiter, (b,))
model.start(ticker)
model.sleep(0.05)
assert got == [] and ticks[0] > 5, (got, ticks)  # the hub ran while they waited
done = model.Event()
model.start(lambda: (b.send("b"), a.send("a")))
deadline = time.time() + 10
while len(got) < 2 and time.time() < deadline:
    done.wait(0.005)
assert sorted(got) == ["a", "b"], got

# a local callback runs in the receiver, a green thread
items, closed = [], model.Event()
c = gw.remote_exec("for i in range(3): channel.send(i)")
c.setcallback(lambda x: closed.set() if x is None else items.append(x), endmarker=None)
assert closed.wait(10) and items == [0, 1, 2]

# 16 MiB each way at once: a full pipe waits in the hub on both sides
N = 16 << 20
up = gw.remote_exec("channel.send(len(channel.receive()))")
down = gw.remote_exec("channel.send(b'y' * %d)" % N)
bulk = []
model.start(lambda: (up.send(b"x" * N), bulk.append(up.receive(60))))
model.start(lambda: bulk.append(len(down.receive(60))))
deadline = time.time() + 60
while len(bulk) < 2 and time.time() < deadline:
    done.wait(0.01)
assert bulk == [N, N] or sorted(bulk) == [N, N], bulk
group.terminate(10)
print("local green OK")
"""


@pytest.mark.parametrize("remote", ["thread", "same"])
@pytest.mark.parametrize("model", GREEN)
def test_green_group_runs_its_gateways_in_the_hub(model, remote, tmp_path):
    """A green group's popen gateways are green locally too: their receiver
    is a green thread reading in the hub, so local green threads wait in
    receive() concurrently, callbacks run in the hub, and bulk data both
    ways at once does not block either side (remote: a thread worker, or
    one of the same model)."""
    script = tmp_path / "local_green.py"
    script.write_text(LOCAL_GREEN)
    proc = subprocess.run([sys.executable, "-m", "weft.alias", "greenlet", "--", sys.executable,
                           str(script), model, model if remote == "same" else remote],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "local green OK" in proc.stdout


# ---- tasklet -------------------------------------------------------------------

@pytest.fixture
def tgw(group):
    gw = group.makegateway("popen//execmodel=tasklet")
    yield gw


def test_tasklet_remote_exec_round_trip(tgw):
    ch = tgw.remote_exec("""
        from weft import stackless
        me = stackless.getcurrent()
        channel.send((channel.gateway.execmodel.backend, me.is_main, me.thread_id == stackless.getmain().thread_id))
        channel.send(channel.receive() + 1)
    """)
    assert ch.receive(10) == ("tasklet", False, True)
    ch.send(41)
    assert ch.receive(10) == 42
    ch.waitclose(10)


def test_tasklet_others_run_while_one_waits(tgw):
    """One remote_exec waits in receive() (its tasklet parks); other tasks
    start, run and finish meanwhile, in the same thread."""
    waiter = tgw.remote_exec("""
        import threading
        channel.send(threading.get_ident())
        channel.send(("got", channel.receive()))
    """)
    waiter_thread = waiter.receive(10)
    for i in range(3):
        other = tgw.remote_exec("""
            import threading
            from weft import stackless
            channel.send((threading.get_ident(), stackless.getruncount() >= 1, channel.receive() * 10))
        """)
        other.send(i)
        assert other.receive(10) == (waiter_thread, True, i * 10)
        other.waitclose(10)
    assert tgw.remote_status().numexecuting == 1  # the waiter, still waiting
    waiter.send("late")
    assert waiter.receive(10) == ("got", "late")
    waiter.waitclose(10)


def test_tasklet_channel_callbacks(tgw):
    ch = tgw.remote_exec("""
        done = channel.gateway.execmodel.Event()
        def double(item):
            channel.send(item * 2)
            if item == 3:
                done.set()
        channel.setcallback(double)
        done.wait()
    """)
    got = []
    closed = threading.Event()
    ch.setcallback(lambda item: closed.set() if item is None else got.append(item), endmarker=None)
    for i in (1, 2, 3):
        ch.send(i)
    assert closed.wait(10)
    assert got == [2, 4, 6]


def test_tasklet_remote_error(tgw):
    ch = tgw.remote_exec("raise ValueError('tasklet boom')")
    with pytest.raises(execnet.RemoteError, match="tasklet boom"):
        ch.waitclose(10)


@pytest.mark.parametrize("codec, writer", [("rust", "FrameWriter"), ("pure", "PyWriter")])
def test_tasklet_worker_both_transports(group, codec, writer):
    """The tasklet worker's receiver parks on its descriptor with the Rust
    transport (FrameReader.read_frames from a tasklet) and with the
    pure-Python one (a worker without weft's codec: WaitingReader and
    PyWriter, their waits through the scheduler)."""
    spec = "popen//execmodel=tasklet"
    if codec == "pure":
        spec += "//env:WEFT_PURE_PYTHON_CODEC=1"
    gw = group.makegateway(spec)
    ch = gw.remote_exec("""
        channel.send(type(channel.gateway._io._writer).__name__)
        for item in channel:
            channel.send(item)
    """)
    assert ch.receive(10) == writer
    big = bytes(range(256)) * (8 << 10)  # 2 MiB: several reads and full writes
    for item in (1, big, "x" * 100, big):
        ch.send(item)
        assert ch.receive(30) == item
    ch.close()
    ch.waitclose(10)


LINUX = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts threads in /proc/self/task")


@LINUX
def test_tasklet_worker_receiver_is_a_tasklet(tgw):
    """The tasklet worker has one OS thread: its receiver is a tasklet of the
    main thread, whose scheduler polls the pipe while the task waits."""
    ch = tgw.remote_exec("""
        import os
        channel.send(len(os.listdir("/proc/self/task")))
        for item in channel:
            channel.send(item)
    """)
    assert ch.receive(10) == 1
    for i in range(200):
        ch.send(i)
        assert ch.receive(10) == i
    ch.close()
    ch.waitclose(10)


def test_tasklet_worker_big_items_both_ways(tgw):
    """Items larger than the pipe: the receiver tasklet reads a frame in many
    parked reads, and three tasks writing big frames at once take turns
    (their full-pipe writes park on the descriptor)."""
    big = bytes(range(256)) * (16 << 10)  # 4 MiB
    echo = tgw.remote_exec("channel.send(channel.receive())")
    echo.send(big)
    assert echo.receive(30) == big
    writers = [tgw.remote_exec("""
        n = channel.receive()
        for i in range(3):
            channel.send((n, i, bytes([n]) * (2 << 20)))
    """) for n in range(3)]
    for n, w in enumerate(writers):
        w.send(n)
    for n, w in enumerate(writers):
        for i in range(3):
            assert w.receive(30) == (n, i, bytes([n]) * (2 << 20))
        w.waitclose(10)


def test_tasklet_group_locally_reads_in_a_tasklet(tmp_path):
    """A tasklet group's popen gateway starts no thread: its receiver is a
    tasklet of the thread that made it. The main tasklet's waits and those of
    other tasklets park, the idle scheduler polls the pipe; ``run()`` returns
    while only the receiver listens; exit is clean."""
    script = tmp_path / "local_tasklets.py"
    script.write_text(textwrap.dedent("""
        import os, sys
        import weft.execnet as execnet
        from weft import stackless

        def threads():
            return len(os.listdir("/proc/self/task")) if sys.platform.startswith("linux") else 1

        before = threads()
        group = execnet.Group(execmodel="tasklet")
        gw = group.makegateway("popen")
        assert threads() == before, (threads(), before)
        ch = gw.remote_exec("for x in channel: channel.send(x + 1)")
        for i in range(100):
            ch.send(i)
            assert ch.receive(10) == i + 1
        got = []
        def client(k):
            c = gw.remote_exec("for x in channel: channel.send(x * 2)")
            for i in range(20):
                c.send(i)
                got.append((k, i, c.receive(10)))
            c.close()
            c.waitclose(10)
        for k in range(4):
            stackless.tasklet(client)(k)
        stackless.run()  # returns once the clients end, the receiver still listening
        assert sorted(got) == sorted((k, i, i * 2) for k in range(4) for i in range(20))
        assert threads() == before
        ch.send(41)
        assert ch.receive(10) == 42
        ch.close()
        left = gw.remote_exec("channel.send(1)")
        assert left.receive(10) == 1
        print("local tasklets OK")
        # exit with the gateway still open: the group terminates it at exit
    """))
    env = dict(os.environ, WEFT_EXECNET_DEBUG="1")  # the core traces how the receiver ends
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "local tasklets OK" in proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    # the group's atexit terminate ran before the tasklets left were killed
    assert "received terminate" in proc.stderr, proc.stderr
    assert "receiver killed" not in proc.stderr, proc.stderr


def test_wait_fd_parks_only_the_tasklet(pipe):
    """``_wait_fd``: a tasklet waiting for a pipe to become readable parks;
    ``run()`` does not wait for a listening tasklet, ``run(threadblock=True)``
    does, and the idle scheduler wakes it when the pipe is written."""
    from weft import stackless
    from weft._weft import stackless as engine

    r, w = pipe
    events = []

    def listener():
        engine._wait_fd(r)
        events.append(("readable", os.read(r, 10)))

    def other():
        events.append("other ran")

    stackless.tasklet(listener)()
    stackless.tasklet(other)()
    stackless.run()
    assert events == ["other ran"]  # the listener still waits
    os.write(w, b"go")
    stackless.run(threadblock=True)
    assert events == ["other ran", ("readable", b"go")]


def test_wait_fd_without_a_scheduler_and_bad_input(pipe):
    import time
    from weft._weft import stackless as engine

    r, w = pipe
    done = []
    t = threading.Thread(target=lambda: done.append(engine._wait_fd(r, False, 0.01)))
    t.start()
    t.join(10)
    assert done == [None]  # the timeout passed: the caller looks again
    os.write(w, b"x")
    start = time.monotonic()
    engine._wait_fd(r, False, 30)  # readable already: returns at once
    assert time.monotonic() - start < 10
    engine._wait_fd(w, True, 30)
    with pytest.raises(ValueError, match="not a file descriptor"):
        engine._wait_fd(-1)
    with pytest.raises(ValueError, match="timeout must be"):
        engine._wait_fd(0, False, -1.0)


def test_tasklet_execmodel_locally():
    """Locally the model's start() makes tasklets of the calling thread; a
    wait on a reply, the model's queue or Event parks the waiter so they run."""
    from weft import stackless
    from weft._bootstrap.pool import WorkerPool

    model = execnet.Group(execmodel="tasklet").execmodel
    assert model.backend == "tasklet"
    q = model.queue.Queue()
    pool = WorkerPool(model)
    ran_in = []

    def task(i):
        ran_in.append(stackless.getcurrent().is_main)
        q.put(i)
        model.sleep(0.001)
        return i * 2

    replies = [pool.spawn(task, i) for i in range(3)]
    assert ran_in == []  # nothing ran yet: tasklets wait for this one to give way
    assert sorted(q.get(timeout=5) for _ in range(3)) == [0, 1, 2]
    assert [r.get(5) for r in replies] == [0, 2, 4]
    assert ran_in == [False, False, False]
    assert pool.waitall(5)
    with pytest.raises(model.queue.Empty):
        q.get(timeout=0.01)
    ev = model.Event()
    model.start(ev.set)
    assert ev.wait(5)


@pytest.mark.parametrize("model, needs", [("tasklet", "weft (weft.stackless)"),
                                          ("gevent", "gevent"), ("eventlet", "eventlet")])
def test_model_needs_its_library_in_the_worker(model, needs, tmp_path):
    """A worker where the model's library is not importable cannot run it:
    the gateway does not start, and the worker says why."""
    # a bare interpreter: -I ignores PYTHONPATH and user site; -S skips site
    # (where an editable or installed weft would be)
    python = "%s -I -S" % sys.executable
    err = tmp_path / "stderr"
    with open(err, "w") as f:
        proc = subprocess.run([sys.executable, "-c", textwrap.dedent("""
            import sys, weft.execnet as execnet
            try:
                execnet.makegateway("popen//python=%s//execmodel=%s")
            except execnet.GatewayDied as exc:
                print("died:", exc)
        """ % (python, model))], stdout=subprocess.PIPE, stderr=f, text=True, timeout=60)
    assert "died:" in proc.stdout and "failed to start" in proc.stdout, proc.stdout
    assert "execmodel %r needs %s importable here" % (model, needs) in err.read_text()
