"""Channel behaviour over every transport (popen, socket, via, main_thread_only)."""
import gc
import threading
import time

import pytest

import weft.execnet as execnet


def test_roundtrip(anygw):
    ch = anygw.remote_exec("channel.send(channel.receive() + 1)")
    ch.send(41)
    assert ch.receive() == 42
    ch.waitclose(10)
    with pytest.raises(EOFError):
        ch.receive()


def test_remote_exec_function_with_kwargs(anygw):
    def double(channel, x, y=0):
        channel.send(x * 2 + y)

    assert anygw.remote_exec(double, x=20, y=2).receive() == 42


def test_remote_exec_namespace(anygw):
    ch = anygw.remote_exec("channel.send(__name__)")
    assert ch.receive() == "__channelexec__"


def test_remote_exec_raising(anygw):
    ch = anygw.remote_exec("def f():\n    raise ValueError('boom 17')\nf()")
    with pytest.raises(execnet.RemoteError) as excinfo:
        ch.receive()
    text = str(excinfo.value)
    assert text.startswith("Traceback (most recent call last):")
    assert "ValueError: boom 17" in text
    assert excinfo.value.formatted == text
    with pytest.raises(execnet.RemoteError):
        ch.waitclose(5)


def test_send_after_close(anygw):
    ch = anygw.remote_exec("channel.receive()")
    ch.close()
    assert ch.isclosed()
    with pytest.raises(OSError, match="cannot send"):
        ch.send(1)


def test_send_after_remote_close(anygw):
    ch = anygw.remote_exec("pass")
    ch.waitclose(10)
    assert ch.isclosed()
    with pytest.raises(OSError):
        ch.send(1)


def test_receive_timeout(anygw):
    ch = anygw.remote_exec("channel.send(channel.receive())")
    t0 = time.monotonic()
    with pytest.raises(execnet.TimeoutError):
        ch.receive(timeout=0.2)
    assert 0.15 < time.monotonic() - t0 < 5
    assert isinstance(ch.TimeoutError(), IOError)
    ch.send("still works")
    assert ch.receive(10) == "still works"


def test_waitclose_timeout(anygw):
    ch = anygw.remote_exec("channel.receive()")
    with pytest.raises(ch.TimeoutError):
        ch.waitclose(0.1)
    ch.send(None)
    ch.waitclose(10)


class Custom:
    pass


@pytest.mark.parametrize("value, typename", [
    (Custom(), "Custom"), (object(), "object"), ([1, {2: bytearray(b"x")}], "bytearray"),
])
def test_unsupported_types(anygw, value, typename):
    ch = anygw.remote_exec("channel.receive()")
    with pytest.raises(execnet.DumpError, match=typename):
        ch.send(value)
    ch.send(None)  # the channel still works
    ch.waitclose(10)


def test_remote_unsupported_type_becomes_remote_error(anygw):
    ch = anygw.remote_exec("channel.send(object())")
    with pytest.raises(execnet.RemoteError, match="object"):
        ch.receive()


def test_values_roundtrip(anygw):
    values = [None, True, False, 0, -1, 2**100, 1.5, 2j, b"\x00bytes", "text\u20ac",
              (1, (2,)), [1, [2]], {"a": [1], (1, 2): None}, {1, 2}, frozenset([3])]
    ch = anygw.remote_exec("for x in channel: channel.send(x)")
    for v in values:
        ch.send(v)
        assert ch.receive(10) == v
    ch.close()


def test_iteration(anygw):
    ch = anygw.remote_exec("for i in range(5): channel.send(i)")
    assert list(ch) == [0, 1, 2, 3, 4]


def test_channel_over_channel(anygw):
    ch = anygw.remote_exec("""
        sub = channel.receive()
        sub.send(channel.gateway.newchannel() is not None)
        other = channel.gateway.newchannel()
        channel.send(other)
        other.send(42)
    """)
    sub = anygw.newchannel()
    ch.send(sub)
    assert sub.receive(10) is True
    other = ch.receive(10)
    assert isinstance(other, execnet.Channel)
    assert other.receive(10) == 42


def test_callback_and_endmarker(anygw):
    got = []
    done = threading.Event()
    ch = anygw.remote_exec("for i in range(3): channel.send(i)")

    def cb(item):
        got.append(item)
        if item == "END":
            done.set()

    ch.setcallback(cb, endmarker="END")
    assert done.wait(10)
    assert got == [0, 1, 2, "END"]
    with pytest.raises(OSError):
        ch.receive()


def test_callback_error_closes_channel(anygw):
    # The item is sent only once the callback is set: an item queued before
    # setcallback is handed to the callback inside setcallback, in this
    # thread (as in execnet), and the error would surface there instead.
    ch = anygw.remote_exec("""
        channel.receive()
        channel.send(1)
        channel.waitclose()
    """)
    ch.setcallback(lambda item: 1 / 0)
    ch.send("go")
    with pytest.raises(execnet.RemoteError, match="ZeroDivisionError"):
        ch.waitclose(10)


def test_makefile(anygw):
    ch = anygw.remote_exec("""
        f = channel.makefile("w")
        f.write("hello\\nworld")
        channel.send(1)
    """)
    f = ch.makefile("r")
    assert f.readline() == "hello\n"
    assert f.read(5) == "world"
    with pytest.raises(ValueError):
        ch.makefile("x")


def test_close_with_error(anygw):
    ch = anygw.remote_exec("channel.close('bad input')")
    with pytest.raises(execnet.RemoteError, match="cannot explicitly close"):
        ch.waitclose(10)
    ch2 = anygw.remote_exec("""
        try:
            channel.receive()
        except Exception as e:
            channel.gateway.newchannel()  # still alive
    """)
    ch2.close("local problem")
    ch2.waitclose(10)


def test_gc_closes_channel(anygw):
    ch = anygw.remote_exec("""
        sub = channel.receive()
        try:
            sub.receive()
        except EOFError:
            channel.send("sub got EOF")
    """)
    sub = anygw.newchannel()
    ch.send(sub)
    del sub
    gc.collect()
    assert ch.receive(10) == "sub got EOF"


def test_multichannel(group):
    group.makegateway("popen")
    group.makegateway("popen")
    mch = group.remote_exec("import os; channel.send(os.getpid())")
    pids = mch.receive_each()
    assert len(set(pids)) == 2
    mch.waitclose()
    mch = group.remote_exec("channel.send(channel.gateway.id)")
    q = mch.make_receive_queue(endmarker=None)
    items = [q.get(timeout=10) for _ in range(4)]
    assert sorted(x for _, x in items if x is not None) == ["gw0", "gw1"]


def test_one_thousand_channels_no_loss_no_reordering(gw):
    n_channels, n_messages = 1000, 20
    ctl = gw.remote_exec("""
        # echo every item on every channel we are given, via callbacks
        for sub in channel:
            sub.setcallback(sub.send)
    """)
    channels = [gw.newchannel() for _ in range(n_channels)]
    for ch in channels:
        ctl.send(ch)
    for seq in range(n_messages):
        for i, ch in enumerate(channels):
            ch.send((i, seq))
    for i, ch in enumerate(channels):
        assert [ch.receive(30) for _ in range(n_messages)] == [(i, s) for s in range(n_messages)]
    status = gw.remote_status()
    assert status.numchannels >= n_channels
    ctl.close()
