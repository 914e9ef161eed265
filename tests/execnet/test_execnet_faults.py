"""Faults that must stay local and errors that must say their cause (issue
10): a raising callback, garbage from the peer, finalizers inside a write."""
import os
import socket
import subprocess
import sys
import textwrap

import pytest

import weft.execnet as execnet
from weft._bootstrap import core
from weft._bootstrap import wire
from weft.execnet.gateway import Gateway


def test_callback_raising_on_its_endmarker_ends_only_its_channel(gw, capfd):
    # the worker closes only after the callback is set: the endmarker then
    # reaches it in the receiver thread (were the channel closed already,
    # setcallback would call it itself, raising in this thread)
    ch1 = gw.remote_exec("channel.send(1); channel.receive()")
    got = []

    def callback(item):
        if item == "END":
            raise ValueError("callback blew up on the endmarker")
        got.append(item)

    ch1.setcallback(callback, endmarker="END")
    ch1.send("close now")
    ch1.waitclose(10)
    # the gateway lives on
    ch2 = gw.remote_exec("channel.send(channel.receive() + 1)")
    ch2.send(41)
    assert ch2.receive(10) == 42
    assert got == [1]
    err = capfd.readouterr().err
    assert "callback blew up on the endmarker" in err
    assert "raised on its endmarker" in err


def test_callback_raising_on_an_item_ends_only_its_channel(gw):
    ch1 = gw.remote_exec("channel.send(1); channel.receive()")

    def callback(item):
        raise KeyError("bad item")

    ch1.setcallback(callback)
    ch2 = gw.remote_exec("channel.send(channel.receive() * 2)")
    ch2.send(21)
    assert ch2.receive(10) == 42
    with pytest.raises(execnet.RemoteError):
        ch1.waitclose(10)


def _peer():
    a, b = socket.socketpair()
    gw = Gateway(core.SocketIO(a), execnet.XSpec("socket=peer//id=peer"))
    return gw, b


def _error_of(gw, ch):
    with pytest.raises((EOFError, execnet.RemoteError)) as info:
        while True:
            ch.receive(10)
    assert gw.join(10)
    return str(info.value)


@pytest.mark.parametrize("garbage, cause", [
    (b"\x04\x00\x00\x00\x01\x7f\xff\xff\xff", "LoadError"),       # a 2 GiB frame announced
    (b"\x63\x00\x00\x00\x01\x00\x00\x00\x00", "LoadError"),       # unknown message code
    (wire.pack_message(wire.RECONFIGURE, 0, wire.dumps(5)), "RECONFIGURE carries 5"),
    (wire.pack_message(wire.RECONFIGURE, 0, b"\xff"), "LoadError"),
])
def test_protocol_errors_name_their_cause(garbage, cause):
    gw, b = _peer()
    ch = gw.newchannel()
    b.sendall(garbage)
    text = _error_of(gw, ch)
    assert cause in text, text
    assert "receiver thread crashed" not in text
    b.close()


def test_garbage_close_error_payload_ends_only_that_channel():
    gw, b = _peer()
    ch = gw.newchannel()
    other = gw.newchannel()
    b.sendall(wire.pack_message(wire.CHANNEL_CLOSE_ERROR, ch.id, b"Z"))
    with pytest.raises(execnet.RemoteError, match="cannot decode"):
        ch.receive(10)
    b.sendall(wire.pack_message(wire.CHANNEL_DATA, other.id, wire.dumps("still here")))
    assert other.receive(10) == "still here"
    b.close()


def test_garbage_from_a_popen_worker_is_reported_as_such(gw):
    ch = gw.remote_exec(
        "import os; os.write(channel.gateway._io._wfd, b'\\x63' * 9); channel.receive()")
    with pytest.raises(EOFError) as info:
        ch.receive(10)
    text = str(info.value)
    assert "LoadError" in text and "unknown message code" in text, text


def test_bad_channel_exec_payload_ends_only_that_channel(gw):
    ch = gw.newchannel()
    gw._send(core.CHANNEL_EXEC, ch.id, wire.dumps(("only", "three", "items")))
    with pytest.raises(execnet.RemoteError, match="not a valid task"):
        ch.receive(10)
    assert gw.remote_exec("channel.send(1)").receive(10) == 1


@pytest.mark.parametrize("codec", ["rust", "python"])
def test_channel_finalizer_inside_a_locked_write_does_not_deadlock(codec):
    """A Channel dropped while this very thread holds the writer (a garbage
    collection inside a write): its close waits and goes out after."""
    body = textwrap.dedent('''
        import gc, weft.execnet as execnet
        from weft._bootstrap import core
        g = execnet.Group()
        gw = g.makegateway("popen")
        ch = gw.remote_exec("""
            other = channel.receive()
            try:
                other.receive()
            except EOFError:
                channel.send("closed")
        """)
        c2 = gw.newchannel()
        ch.send(c2)
        io = gw._io
        # hold the writer's turn as a write in progress would
        if hasattr(io._writer, "_lock"):
            io._writer._lock.acquire()
            release = io._writer._lock.release
        else:  # the Rust writer: a turn held by a try_write in a finalizer
            release = None
        del c2
        gc.collect()
        if release is not None:
            assert list(gw._deferred), "the close was not deferred"
            release()
            ch.send("poke")  # the next writer sends what was deferred
        assert ch.receive(10) == "closed"
        g.terminate(2)
        print("ok")
    ''')
    env = dict(os.environ)
    env.pop("WEFT_PURE_PYTHON_CODEC", None)
    if codec == "python":
        env["WEFT_PURE_PYTHON_CODEC"] = "1"
    proc = subprocess.run([sys.executable, "-c", body], capture_output=True, text=True,
                          timeout=40, env=env)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr


class _RaisingChannelId:
    @property
    def _weft_channel_id(self):
        raise ValueError("my own error")


def test_an_items_own_error_is_not_reported_as_a_closed_gateway(gw):
    ch = gw.remote_exec("channel.receive()")
    with pytest.raises(ValueError, match="my own error"):
        ch.send(_RaisingChannelId())
    ch.send(1)  # the gateway is fine
    ch.waitclose(10)
