"""socket= gateways: the authenticated handshake, refusals, malformed peers."""
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import weft.execnet as execnet
from weft._bootstrap import socketserver as server_mod
from weft._bootstrap import wire
from weft.execnet import _socket

SERVER = server_mod.__file__


@pytest.fixture
def server(tmp_path):
    """A standalone socketserver process with secret 'right-secret'."""
    procs = []

    def start(*args, secret="right-secret"):
        env = dict(os.environ)
        env.pop(server_mod.SECRET_ENV, None)
        if secret is not None:
            env[server_mod.SECRET_ENV] = secret
        proc = subprocess.Popen([sys.executable, SERVER, "--port", "0", *args],
                                stdout=subprocess.PIPE, text=True, env=env)
        procs.append(proc)
        line = proc.stdout.readline()
        assert line.startswith("weft socketserver listening on "), line
        return line.rsplit(" ", 1)[1].strip()

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_right_secret_from_env(server, group, monkeypatch):
    addr = server()
    monkeypatch.setenv(server_mod.SECRET_ENV, "right-secret")
    gw = group.makegateway("socket=%s" % addr)
    assert gw.remote_exec("channel.send(6 * 7)").receive(10) == 42
    assert gw._rinfo().pid != os.getpid()


def test_right_secret_from_file(server, group, tmp_path, monkeypatch):
    addr = server()
    monkeypatch.delenv(server_mod.SECRET_ENV, raising=False)
    f = tmp_path / "secret"
    f.write_text("right-secret\n")
    gw = group.makegateway("socket=%s//secret_file=%s" % (addr, f))
    assert gw.remote_exec("channel.send(1)").receive(10) == 1


def test_wrong_secret_is_refused(server, group, monkeypatch):
    addr = server()
    monkeypatch.setenv(server_mod.SECRET_ENV, "wrong-secret")
    with pytest.raises(_socket.AuthenticationError, match="secret does not match"):
        group.makegateway("socket=%s" % addr)
    assert len(group) == 0


def test_missing_secret_is_refused(server, group, monkeypatch):
    addr = server()
    monkeypatch.delenv(server_mod.SECRET_ENV, raising=False)
    with pytest.raises(_socket.AuthenticationError, match="requires a shared secret"):
        group.makegateway("socket=%s" % addr)


def test_insecure_server_needs_explicit_opt_in(server, group, monkeypatch):
    addr = server("--insecure", secret=None)
    monkeypatch.setenv(server_mod.SECRET_ENV, "right-secret")
    with pytest.raises(_socket.AuthenticationError, match="insecure"):
        group.makegateway("socket=%s" % addr)
    gw = group.makegateway("socket=%s//insecure" % addr)
    assert gw.remote_exec("channel.send(2)").receive(10) == 2


def test_server_refuses_to_start_without_secret(tmp_path):
    env = dict(os.environ)
    env.pop(server_mod.SECRET_ENV, None)
    proc = subprocess.run([sys.executable, SERVER, "--port", "0"], capture_output=True,
                          text=True, env=env, timeout=20)
    assert proc.returncode != 0
    assert "secret is required" in proc.stderr


def test_raw_client_with_garbage_gets_no_worker(server):
    addr = server()
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.settimeout(10)
    greeting = s.recv(len(server_mod.MAGIC_AUTH) + server_mod.NONCE_SIZE)
    assert greeting.startswith(server_mod.MAGIC_AUTH)
    s.sendall(b"\x00" * 64)  # a wrong MAC
    reply = b""
    while True:
        chunk = s.recv(100)
        if not chunk:
            break
        reply += chunk
    assert reply.startswith(b"ERR authentication failed")
    s.close()


def test_host_not_found(group):
    with pytest.raises(execnet.HostNotFound):
        group.makegateway("socket=no-such-host.invalid:9000")


def test_installvia(group):
    group.makegateway("popen//id=p")
    gw = group.makegateway("socket//installvia=p")
    assert gw.spec.socket.startswith("127.0.0.1:")
    assert gw.remote_exec("channel.send(3)").receive(10) == 3


@pytest.mark.parametrize("garbage", [
    b"\x04\x00\x00\x00\x01\x7f\xff\xff\xff",           # a 2 GiB frame announced
    b"\x63\x00\x00\x00\x01\x00\x00\x00\x00",           # unknown message code
    wire.pack_message(wire.CHANNEL_DATA, 1, b"\xffnot a value"),  # undecodable payload
    wire.pack_message(wire.CHANNEL_CLOSE_ERROR, 1, b"Z"),
    b"\x04\x00\x00",                                   # truncated header, then EOF
])
def test_malformed_frames_from_socket_peer(garbage):
    """A peer that sends nonsense ends its channels with an error; nothing hangs."""
    from weft._bootstrap import core
    from weft.execnet.gateway import Gateway

    a, b = socket.socketpair()
    gw = Gateway(core.SocketIO(a), execnet.XSpec("socket=peer//id=peer"))
    ch = gw.newchannel()
    assert ch.id == 1
    b.sendall(garbage)
    if garbage.startswith(b"\x04\x00\x00") and len(garbage) == 3:
        b.shutdown(socket.SHUT_WR)
    with pytest.raises((EOFError, execnet.RemoteError)):
        while True:
            ch.receive(10)
    b.close()
    assert gw.join(10)


@pytest.mark.parametrize("model", [
    "tasklet",
    *[pytest.param(m, marks=pytest.mark.skipif(importlib.util.find_spec(m) is None,
                                               reason="%s is not installed" % m))
      for m in ("eventlet", "gevent")],
])
def test_authenticated_session_with_each_execmodel(server, group, model, tmp_path, monkeypatch):
    """A worker of the standalone server reads its authenticated records
    in the model's way (green: waiting in the hub); tasks wait concurrently."""
    from weft import alias
    # the server's workers run gevent/eventlet on weft.greenlet
    monkeypatch.setenv("PYTHONPATH", str(alias.make_alias_dir(["greenlet"], tmp_path)))
    addr = server()
    monkeypatch.setenv(server_mod.SECRET_ENV, "right-secret")
    gw = group.makegateway("socket=%s//execmodel=%s" % (addr, model))
    ch = gw.remote_exec("""
        import greenlet, weft.greenlet
        channel.send((channel.gateway.execmodel.backend, greenlet.greenlet is weft.greenlet.greenlet,
                      type(channel.gateway._io).__name__))
    """)
    assert ch.receive(10) == (model, True, "SessionSocketIO")
    chs = [gw.remote_exec("channel.send(channel.receive() + 1)") for _ in range(3)]
    for i, c in reversed(list(enumerate(chs))):
        c.send(i)
    assert [c.receive(10) for c in chs] == [1, 2, 3]
    big = gw.remote_exec("channel.send(channel.receive())")
    big.send(b"x" * (3 << 20))  # several records each way
    assert big.receive(30) == b"x" * (3 << 20)
