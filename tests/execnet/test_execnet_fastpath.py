"""The Rust fast path: codec/transport negotiation at boot and its fallbacks."""
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

import weft.execnet as execnet
from weft._bootstrap import core

CODEC = "import weft_boot_core as c; channel.send(c.codec_name())"


def _python_without_weft():
    """Another CPython 3.8+ on this machine that cannot import weft."""
    for name in ("/usr/bin/python3", "python3.12", "python3.13", "python3.10", "python3"):
        path = shutil.which(name)
        if not path or os.path.realpath(path) == os.path.realpath(sys.executable):
            continue
        probe = subprocess.run([path, "-c", "import sys; assert sys.version_info >= (3, 8); import weft"],
                               capture_output=True, env={"PATH": os.environ.get("PATH", "")})
        if probe.returncode != 0 and b"No module named 'weft'" in probe.stderr:
            return path
    return None


def test_local_side_uses_rust():
    assert core.codec_name() == "rust"
    assert core.rust_version() is not None


def test_popen_worker_switches_to_rust(gw):
    assert gw.remote_exec(CODEC).receive() == "rust"


def test_worker_without_weft_stays_pure_python(group):
    python = _python_without_weft()
    if python is None:
        pytest.skip("no other interpreter without weft on this machine")
    gw = group.makegateway("popen//python=%s" % python)
    assert gw.remote_exec(CODEC).receive() == "python"
    # and the two codecs still understand each other, both ways
    ch = gw.remote_exec("""
        while 1:
            x = channel.receive()
            if x is None: break
            channel.send(x)
    """)
    values = [{"a": 1, "b": [1, 2, (3, 4.5)], "c": "héllo"}, b"x" * 300000, 2 ** 100,
              frozenset({1, 2}), {1: None, (1, "a"): {True, False}}, -7, 1.5j]
    for v in values:
        ch.send(v)
        assert ch.receive() == v
    ch.send(None)
    ch.waitclose(10)


def test_worker_with_other_weft_version_stays_pure_python(group, monkeypatch):
    monkeypatch.setattr(core, "rust_version", lambda: "0.0.0-not-this-one")
    gw = group.makegateway("popen")
    assert gw.remote_exec(CODEC).receive() == "python"
    ch = gw.remote_exec("channel.send(channel.receive() * 2)")
    ch.send(21)
    assert ch.receive() == 42


def test_env_forces_pure_python_on_both_ends(tmp_path):
    script = tmp_path / "s.py"
    script.write_text(
        "import weft.execnet as e\n"
        "from weft._bootstrap import core\n"
        "gw = e.makegateway('popen')\n"
        "r = gw.remote_exec(%r).receive()\n"
        "ch = gw.remote_exec('channel.send(channel.receive())')\n"
        "ch.send({'k': [1, 2, b'x' * 100000]})\n"
        "assert ch.receive() == {'k': [1, 2, b'x' * 100000]}\n"
        "print(core.codec_name(), r)\n"
        "gw.exit()\n" % CODEC)
    env = dict(os.environ, WEFT_PURE_PYTHON_CODEC="1")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["python", "python"]


# --------------------------------------------------------------- transport

_weft = pytest.importorskip("weft._weft")
from weft._bootstrap import wire as pywire  # noqa: E402


def _pipe_reader(max_frame=1 << 20):
    r, w = os.pipe()
    return _weft.FrameReader(r, max_frame), r, w


def test_popen_gateway_uses_rust_transport_on_both_ends(gw):
    assert getattr(gw._io, "read_frames", None) is not None
    assert gw.remote_exec(
        "channel.send(channel.gateway._io._reader is not None)").receive() is True


def test_frame_reader_batches_and_splits():
    reader, r, w = _pipe_reader()
    try:
        frames = [pywire.pack_message(4, 1, pywire.dumps(i)) for i in range(100)]
        os.write(w, b"".join(frames))
        got = reader.read_frames()
        assert len(got) == 100
        assert [pywire.loads(p) for _, _, p in got] == list(range(100))
        # a frame arriving in pieces
        frame = pywire.pack_message(5, 7, b"abc")
        os.write(w, frame[:4])
        os.write(w, frame[4:])
        assert reader.read_frames() == [(5, 7, b"abc")]
        os.write(w, b"xyz")
        assert reader.read_exact(3) == b"xyz"
    finally:
        os.close(r)
        os.close(w)


def test_frame_reader_eof_mid_frame_and_at_boundary():
    reader, r, w = _pipe_reader()
    os.write(w, pywire.pack_message(4, 1, b"x" * 100)[:50])
    os.close(w)
    with pytest.raises(EOFError, match="inside a frame: expected 109 bytes, got 50"):
        reader.read_frames()
    os.close(r)
    reader, r, w = _pipe_reader()
    os.write(w, pywire.pack_message(5, 1))
    os.close(w)
    assert reader.read_frames() == [(5, 1, b"")]
    with pytest.raises(EOFError, match="connection closed"):
        reader.read_frames()
    os.close(r)


@pytest.mark.parametrize("bad", [
    b"\x08\x00\x00\x00\x01\x00\x00\x00\x00",  # unknown message code
    b"\x04\x80\x00\x00\x01\x00\x00\x00\x00",  # negative channel id
    b"\x04\x00\x00\x00\x01\xff\xff\xff\xff",  # negative length
    b"\x04\x00\x00\x00\x01\x00\x10\x00\x01",  # over max_frame
])
def test_frame_reader_bad_header_after_good_frames(bad):
    reader, r, w = _pipe_reader(max_frame=1 << 20)
    try:
        os.write(w, pywire.pack_message(4, 3, b"ok") + bad)
        assert reader.read_frames() == [(4, 3, b"ok")]
        for _ in range(2):
            with pytest.raises(pywire.LoadError):
                reader.read_frames()
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("item", [b"", b"x" * 100000, {"a": [1, (2, 3.5)]}, "s", None, 2 ** 80])
def test_frame_writer_sends_pack_message_of_dumps(pipe, item):
    r, w = pipe
    writer = threading.Thread(target=_weft.FrameWriter(w).send, args=(4, 9, item))
    writer.start()  # the frame may be bigger than the pipe's buffer
    reader = _weft.FrameReader(r, 1 << 20)
    expected = pywire.pack_message(4, 9, pywire.dumps(item))
    assert reader.read_exact(len(expected)) == expected
    writer.join()
    assert _weft.frame_dumps(4, 9, item) == expected


def test_send_frame_refuses_what_dumps_refuses(pipe):
    r, w = pipe
    writer = _weft.FrameWriter(w)
    with pytest.raises(pywire.DumpError):
        writer.send(4, 1, object())
    with pytest.raises(pywire.DumpError):
        writer.send(8, 1, b"x")
    with pytest.raises(pywire.DumpError):
        writer.send(4, -1 & 0xFFFFFFFF, b"x")
    assert not _readable(r)  # nothing of a refused frame was written
    # on a gateway: DumpError reaches the caller, the channel stays usable


def test_dump_error_on_channel_send_keeps_the_channel(gw):
    ch = gw.remote_exec("channel.send(channel.receive())")
    with pytest.raises(execnet.DumpError):
        ch.send(object())
    ch.send(b"still fine")
    assert ch.receive() == b"still fine"


def test_malformed_frame_from_worker_ends_the_gateway(gw):
    ch = gw.remote_exec("""
        channel.gateway._io.write(b"\\x09\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x00")
        import time; time.sleep(30)
    """)
    with pytest.raises(execnet.GatewayDied):
        ch.receive(20)
    assert gw.join(10)


def test_large_and_many_messages_both_ways(gw):
    ch = gw.remote_exec("""
        for item in channel:
            channel.send(item)
    """)
    big = os.urandom(3 << 20)
    for _ in range(3):
        ch.send(big)
    for i in range(5000):
        ch.send(i)
    for _ in range(3):
        assert ch.receive(20) == big
    assert [ch.receive(20) for _ in range(5000)] == list(range(5000))
    ch.close()


def test_rust_event_semantics():
    ev = _weft.Event()
    assert not ev.is_set()
    assert ev.wait(0) is False
    assert ev.wait(-1) is False
    t0 = time.monotonic()
    assert ev.wait(0.05) is False
    assert time.monotonic() - t0 >= 0.04
    woken = []
    threads = [threading.Thread(target=lambda: woken.append(ev.wait(10))) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    ev.set()
    for t in threads:
        t.join(10)
    assert woken == [True, True, True]
    assert ev.is_set() and ev.wait() is True
    ev.clear()
    assert not ev.is_set()
    assert ev.wait(0.01) is False


def test_rust_event_wait_runs_signal_handlers_in_main_thread():
    import signal

    ev = _weft.Event()

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            ev.wait(30)
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, old)


def test_channel_queue_is_the_rust_queue_and_routed(gw):
    ch = gw.remote_exec("channel.send(channel.receive())")
    assert type(ch._items) is _weft.ItemQueue
    assert type(ch._items.event) is _weft.Event
    with pytest.raises(ch.TimeoutError):
        ch.receive(0.05)
    ch.send(5)
    assert ch.receive(10) == 5


def test_held_back_wakeup_never_strands_a_waiter():
    """On a receiver thread (it called read_frames), Event.set holds the
    wake-up back until the next read; a waiter still wakes within a slice."""
    reader, r, w = _pipe_reader()
    ev = _weft.Event()
    woke = []

    def waiter():
        t0 = time.monotonic()
        assert ev.wait(10)
        woke.append(time.monotonic() - t0)

    def receiver():
        os.write(w, pywire.pack_message(5, 1))
        reader.read_frames()  # this thread now holds wake-ups back
        ev.set()
        time.sleep(2)  # e.g. a slow callback: no read_frames for a while
        _weft.flush_wakeups()

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    rt = threading.Thread(target=receiver)
    rt.start()
    t.join(10)
    rt.join(10)
    os.close(r)
    os.close(w)
    assert woke and woke[0] < 1.5, woke


def _data(cid, obj):
    return pywire.pack_message(pywire.CHANNEL_DATA, cid, pywire.dumps(obj))


def test_routed_items_skip_python_and_keep_order():
    """read_frames puts plain items of routed channels into their queues;
    from the first frame it returns on, it returns every later one too, so
    Python dispatches them in arrival order."""
    reader, r, w = _pipe_reader()
    q1, q2 = _weft.ItemQueue(), _weft.ItemQueue()
    reader.route(1, q1)
    reader.route(2, q2)
    chanref = pywire.pack_message(pywire.CHANNEL_DATA, 1, pywire.dumps(_ChannelRef()))
    os.write(w, _data(1, "a") + _data(2, b"bytes") + _data(3, "unrouted")
             + _data(1, "after") + chanref + pywire.pack_message(pywire.CHANNEL_CLOSE, 2))
    frames = reader.read_frames()
    assert [(c, cid) for c, cid, _ in frames] == [
        (pywire.CHANNEL_DATA, 3), (pywire.CHANNEL_DATA, 1), (pywire.CHANNEL_DATA, 1),
        (pywire.CHANNEL_CLOSE, 2)]
    assert pywire.loads(frames[1][2]) == "after"
    assert (q1.qsize(), q1.get_nowait(), q2.get_nowait()) == (1, "a", b"bytes")
    # a payload needing the channel factory is Python's to decode
    os.write(w, chanref + _data(1, "next"))
    frames = reader.read_frames()
    assert [cid for _, cid, _ in frames] == [1, 1] and q1.qsize() == 0
    os.close(w)
    os.close(r)


def test_undecodable_routed_item_goes_to_python():
    reader, r, w = _pipe_reader()
    q = _weft.ItemQueue()
    reader.route(4, q)
    os.write(w, pywire.pack_message(pywire.CHANNEL_DATA, 4, b"\xff") + _data(4, 1))
    frames = reader.read_frames()
    assert [(cid, p) for _, cid, p in frames] == [(4, b"\xff"), (4, pywire.dumps(1))]
    assert q.qsize() == 0
    os.close(w)
    os.close(r)


def test_unroute_with_queue_spares_a_newer_route():
    reader, r, w = _pipe_reader()
    old, new = _weft.ItemQueue(), _weft.ItemQueue()
    reader.route(5, new)
    reader.unroute(5, old)  # a finalized channel's queue: not the route
    os.write(w, _data(5, "x"))
    assert _drain(reader, w, r) == []
    assert new.get_nowait() == "x"
    reader.unroute(5, new)
    os.write(w, _data(5, "y"))
    assert [cid for _, cid, _ in reader.read_frames()] == [5]
    os.close(w)
    os.close(r)


class _ChannelRef:
    _weft_channel_id = 9


def _drain(reader, w, r):
    """Frames read_frames returns once everything written so far is read
    (a CHANNEL_CLOSE for channel 0 marks the end)."""
    os.write(w, pywire.pack_message(pywire.CHANNEL_CLOSE, 0))
    frames = reader.read_frames()
    assert frames[-1][:2] == (pywire.CHANNEL_CLOSE, 0)
    return frames[:-1]


def test_item_queue_get_times_out_and_wakes():
    q = _weft.ItemQueue()
    with pytest.raises(core.Empty):
        q.get_nowait()
    t0 = time.monotonic()
    with pytest.raises(core.Empty):
        q.get(0.05)
    assert time.monotonic() - t0 >= 0.04
    threading.Timer(0.05, q.put, ("late",)).start()
    assert q.get(10) == "late"


def test_setcallback_while_items_stream_in_loses_nothing(gw):
    """Routed items that arrive while setcallback swaps the queue for a
    callback reach the callback, in order."""
    for _ in range(5):
        ch = gw.remote_exec("for i in range(3000): channel.send(i)")
        got = []
        time.sleep(0.001)
        ch.setcallback(got.append, endmarker=None)
        ch.waitclose(30)
        deadline = time.monotonic() + 10
        while (not got or got[-1] is not None) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == list(range(3000)) + [None]


def test_routed_batches_beyond_the_batch_limit_need_no_more_bytes():
    """More routed frames than one batch holds, all already received: the
    reader must take them all from its buffer before it reads again (here,
    reading again finds the end of the stream)."""
    reader, r, w = _pipe_reader()
    q = _weft.ItemQueue()
    reader.route(1, q)
    os.write(w, b"".join(_data(1, i) for i in range(1500)) + _data(2, "last"))
    os.close(w)
    frames = reader.read_frames()
    assert [(cid, pywire.loads(p)) for _, cid, p in frames] == [(2, "last")]
    assert [q.get_nowait() for _ in range(q.qsize())] == list(range(1500))
    with pytest.raises(EOFError):
        reader.read_frames()
    os.close(r)


# --- direct read: a thread waiting in receive() reads frames itself ---------

def test_waiting_thread_reads_for_itself(gw):
    reader = gw._io._reader
    before = reader.direct_receives
    ch = gw.remote_exec(ECHO)
    for i in range(200):
        ch.send(i)
        assert ch.receive(10) == i
    ch.send(None)
    ch.waitclose(10)
    assert reader.direct_receives - before >= 100
    # the worker's main thread reads for itself too
    n = gw.remote_exec(
        "r = channel.gateway._io._reader; before = r.direct_receives\n"
        "for i in range(50): channel.receive()\n"
        "channel.send(r.direct_receives - before)")
    for i in range(50):
        n.send(i)
        time.sleep(0.001)
    assert n.receive(10) >= 10


ECHO = """
while 1:
    x = channel.receive()
    if x is None:
        break
    channel.send(x)
"""


def test_direct_read_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("WEFT_EXECNET_DIRECT_READ", "0")
    gw = execnet.makegateway("popen")
    try:
        ch = gw.remote_exec(ECHO)
        for i in range(20):
            ch.send(i)
            assert ch.receive(10) == i
        ch.send(None)
        assert gw._io._reader.direct_receives == 0
    finally:
        gw.exit()


def test_direct_read_timeout(gw):
    ch = gw.remote_exec("channel.receive()")
    t0 = time.monotonic()
    with pytest.raises(ch.TimeoutError):
        ch.receive(0.1)
    assert 0.09 <= time.monotonic() - t0 < 2
    ch.send(1)
    ch.waitclose(10)


def test_local_close_wakes_a_direct_reader(gw):
    ch = gw.remote_exec("channel.receive()")
    threading.Timer(0.2, ch.close).start()
    t0 = time.monotonic()
    with pytest.raises(EOFError):
        ch.receive(20)
    assert time.monotonic() - t0 < 5


def test_callbacks_stay_on_the_receiver_thread_while_a_thread_reads(gw):
    """Frames for a callback channel that a direct reader meets are handed to
    the receiver thread: callbacks never run in the waiting thread."""
    threads = []
    cb = gw.newchannel()
    cb.setcallback(lambda item: threads.append(threading.get_ident()))
    ch = gw.remote_exec("""
        cb = channel.receive()
        for i in range(300):
            cb.send(i)
            channel.send(i)
        """)
    ch.send(cb)
    assert [ch.receive(10) for _ in range(300)] == list(range(300))
    ch.waitclose(10)
    deadline = time.monotonic() + 10
    while len(threads) < 300 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(threads) == 300
    assert threading.get_ident() not in threads


def test_threads_waiting_on_channels_of_one_gateway(gw):
    """Several threads receive at once: whichever reads, every item reaches
    its own channel, in order."""
    n_threads, n = 6, 300
    chans = [gw.remote_exec("for i in range(%d): channel.send(i)" % n) for _ in range(n_threads)]
    results = {}

    def consume(k, ch):
        results[k] = [ch.receive(20) for _ in range(n)]

    ts = [threading.Thread(target=consume, args=(k, ch)) for k, ch in enumerate(chans)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert results == {k: list(range(n)) for k in range(n_threads)}


def test_sigint_interrupts_a_direct_reader_and_the_gateway_lives_on(gw):
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        ch = gw.remote_exec(ECHO)
        timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            ch.receive(30)
        timer.join()
    finally:
        signal.signal(signal.SIGUSR1, old)
    for i in range(20):
        ch.send(i)
        assert ch.receive(10) == i
    ch.send(None)
    ch.waitclose(10)


def test_worker_killed_while_a_thread_reads(gw):
    import signal
    pid = gw.remote_exec("import os; channel.send(os.getpid())").receive(10)
    ch = gw.remote_exec("channel.receive()")
    threading.Timer(0.2, os.kill, (pid, signal.SIGKILL)).start()
    t0 = time.monotonic()
    with pytest.raises(EOFError) as info:
        ch.receive(30)
    assert "SIGKILL" in str(info.value)
    assert time.monotonic() - t0 < 10


def test_channel_references_reach_a_direct_reader(gw):
    """A payload with channel references needs the receiver thread (it makes
    the channels); the waiting thread hands it over and still gets it."""
    ch = gw.remote_exec("""
        for i in range(50):
            c = channel.gateway.newchannel()
            channel.send((i, c))
            c.send(i * 2)
        """)
    for i in range(50):
        j, c = ch.receive(10)
        assert j == i and c.receive(10) == i * 2


def _readable(fd):
    import select
    return bool(select.select([fd], [], [], 0)[0])


def test_frame_writer_close_and_concurrent_writers():
    """Frames from many threads arrive whole (one writer at a time, even
    when a frame is larger than the pipe); after close() writes are refused."""
    r, w = os.pipe()
    writer = _weft.FrameWriter(w)
    reader = _weft.FrameReader(r, 1 << 24)
    payloads = {k: bytes([k]) * (100000 + k) for k in range(8)}

    def send(k):
        for _ in range(5):
            writer.send(4, k, payloads[k])

    got = []

    def read():
        while len(got) < 40:
            got.extend(reader.read_frames())

    rt = threading.Thread(target=read)
    rt.start()
    ts = [threading.Thread(target=send, args=(k,)) for k in payloads]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    rt.join(30)
    assert len(got) == 40
    assert all(pywire.loads(p) == payloads[cid] for code, cid, p in got)
    assert writer.close() is True and writer.close() is False
    with pytest.raises(ValueError):
        writer.send(4, 1, 1)
    with pytest.raises(ValueError):
        writer.write(b"x")
    os.close(r)
    os.close(w)
