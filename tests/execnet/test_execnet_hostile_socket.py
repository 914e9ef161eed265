"""socket= gateways under attack (issue 10): a relay that has no secret, slow
and idle clients, thread exhaustion, loosely handled secrets."""
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import weft.execnet as execnet
from weft._bootstrap import core
from weft._bootstrap import socketserver as server_mod
from weft._bootstrap import wire
from weft.execnet import _socket

SERVER = server_mod.__file__
SECRET = "right-secret"


@pytest.fixture
def server():
    """Start a standalone socketserver process (secret SECRET); returns
    (host, port, proc)."""
    procs = []

    def start(*args, secret=SECRET, preexec_fn=None):
        env = dict(os.environ)
        env.pop(server_mod.SECRET_ENV, None)
        if secret is not None:
            env[server_mod.SECRET_ENV] = secret
        proc = subprocess.Popen([sys.executable, SERVER, "--port", "0", *args],
                                stdout=subprocess.PIPE, text=True, env=env,
                                preexec_fn=preexec_fn)
        procs.append(proc)
        line = proc.stdout.readline()
        assert line.startswith("weft socketserver listening on "), line
        host, port = line.rsplit(" ", 1)[1].strip().rsplit(":", 1)
        return host, int(port), proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def _read_to_eof(sock, limit=1 << 20):
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    return data


def _marker_source(path):
    return "open(%r, 'w').write('ran')\n" % str(path)


class Relay:
    """A man in the middle without the secret: it accepts the client, dials
    the server, forwards the three handshake messages unchanged and then
    does what ``after_handshake(client_sock, server_sock)`` says."""

    def __init__(self, server_addr, after_handshake):
        self.server_addr = server_addr
        self.after = after_handshake
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.addr = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.done = threading.Event()
        self.result = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            c, _ = self.listener.accept()
            s = socket.create_connection(self.server_addr)
            c.settimeout(20)
            s.settimeout(20)
            greeting = _recv_exact(s, len(server_mod.MAGIC_AUTH) + server_mod.NONCE_SIZE)
            c.sendall(greeting)
            s.sendall(_recv_exact(c, server_mod.NONCE_SIZE + server_mod.MAC_SIZE))
            c.sendall(_recv_exact(s, 3 + server_mod.MAC_SIZE))
            self.result = self.after(c, s)
        except Exception as exc:  # reported by the test
            self.result = exc
        finally:
            self.done.set()


def _check_nothing_ran(marker, host, port, monkeypatch):
    assert not marker.exists(), "the relay's code ran on the server"
    # and the server still serves the real client
    monkeypatch.setenv(server_mod.SECRET_ENV, SECRET)
    g = execnet.Group()
    try:
        gw = g.makegateway("socket=%s:%d" % (host, port))
        assert gw.remote_exec("channel.send(6 * 7)").receive(10) == 42
    finally:
        g.terminate(2)
    assert not marker.exists()


def test_relay_injecting_its_own_boot_payload_runs_nothing(server, tmp_path, monkeypatch):
    host, port, proc = server()
    marker = tmp_path / "relay-ran"

    def inject(c, s):
        # drop the client's (authenticated) boot payload, send our own, raw
        # and as records with made-up tags
        c.close()
        source = _marker_source(marker).encode()
        payload = b"%d\n%s" % (len(source), source)
        s.sendall(len(payload).to_bytes(4, "big") + payload + b"\0" * 32)
        s.sendall(payload)
        return _read_to_eof(s)

    relay = Relay((host, port), inject)
    monkeypatch.setenv(server_mod.SECRET_ENV, SECRET)
    g = execnet.Group()
    try:
        try:
            g.makegateway("socket=%s" % relay.addr)
        except (OSError, EOFError):
            pass
        assert relay.done.wait(30)
    finally:
        g.terminate(2)
    assert relay.result == b"", relay.result  # the server just hung up on it
    assert proc.poll() is None
    _check_nothing_ran(marker, host, port, monkeypatch)


@pytest.mark.parametrize("attack", ["raw_frame", "replayed_record", "altered_record"])
def test_relay_injecting_after_the_boot_runs_nothing(server, tmp_path, monkeypatch, attack):
    """The relay forwards the handshake and the client's boot records, then
    slips in a CHANNEL_EXEC of its own: raw, or a record of the client's
    replayed, or the client's next record altered."""
    host, port, proc = server()
    marker = tmp_path / "relay-ran"
    boot_records = threading.Event()
    task = wire.dumps((_marker_source(marker), None, None, {}))
    frame = wire.pack_message(wire.CHANNEL_EXEC, 99, task)

    def inject(c, s):
        records = []
        # forward the client's boot payload, record by record
        got = 0
        want = None
        while want is None or got < want:
            head = _recv_exact(c, 4)
            n = int.from_bytes(head, "big")
            body = _recv_exact(c, n + 32)
            records.append(head + body)
            s.sendall(head + body)
            if want is None:
                line = body[:n].split(b"\n", 1)[0]
                want = len(line) + 1 + int(line)
            got += n
        boot_records.set()
        if attack == "raw_frame":
            s.sendall(frame)
        elif attack == "replayed_record":
            s.sendall(records[0])
        else:
            head = _recv_exact(c, 4)
            n = int.from_bytes(head, "big")
            body = bytearray(_recv_exact(c, n + 32))
            body[0] ^= 1
            s.sendall(head + bytes(body))
        # the worker must hang up without running anything
        s.shutdown(socket.SHUT_WR)
        out = _read_to_eof(s)
        c.close()
        return out

    relay = Relay((host, port), inject)
    monkeypatch.setenv(server_mod.SECRET_ENV, SECRET)
    g = execnet.Group()
    try:
        gw = g.makegateway("socket=%s" % relay.addr)
        assert boot_records.wait(30)
        if attack == "altered_record":
            gw.remote_exec("pass")
        assert relay.done.wait(30)
        assert not isinstance(relay.result, Exception), relay.result
    finally:
        g.terminate(2)
    _check_nothing_ran(marker, host, port, monkeypatch)


def test_worker_refuses_an_unauthenticated_record():
    """The worker's record layer itself: a frame not in a valid record is a
    SessionError before any byte of it is used."""
    a, b = socket.socketpair()
    keys = core.session_keys(b"s", b"n" * 32, b"m" * 32)
    io = core.SessionSocketIO(a, keys[0], keys[1])
    b.sendall(wire.pack_message(wire.CHANNEL_DATA, 1, wire.dumps(1)))
    with pytest.raises(core.SessionError, match="announces|failed its check"):
        io.read(9)
    a.close()
    b.close()


def test_session_records_round_trip_and_server_agrees():
    keys = core.session_keys(b"secret", b"s" * 32, b"c" * 32)
    assert keys == server_mod.session_keys(b"secret", b"s" * 32, b"c" * 32)
    a, b = socket.socketpair()
    left = core.SessionSocketIO(a, keys[1], keys[0])
    right = core.SessionSocketIO(b, keys[0], keys[1])
    big = os.urandom(3 * core.RECORD_MAX + 5)
    t = threading.Thread(target=left.write, args=(big,))
    t.start()
    assert right.read(len(big)) == big
    t.join()
    right.write(b"back")
    assert left.read(4) == b"back"
    a.close()
    b.close()


def test_slowloris_gets_one_deadline(server):
    host, port, proc = server("--handshake-timeout", "1")
    s = socket.create_connection((host, port))
    s.settimeout(20)
    _recv_exact(s, len(server_mod.MAGIC_AUTH) + server_mod.NONCE_SIZE)
    t0 = time.monotonic()
    closed = False
    for _ in range(200):  # one byte per 50 ms: each recv is quick, the sum is not
        try:
            s.sendall(b"x")
        except OSError:
            closed = True
            break
        try:
            s.settimeout(0.05)
            if s.recv(100) == b"":
                closed = True
                break
        except socket.timeout:
            pass
        except OSError:
            closed = True
            break
    elapsed = time.monotonic() - t0
    assert closed and elapsed < 5, elapsed
    assert proc.poll() is None


def test_pending_handshakes_are_bounded(server, monkeypatch):
    host, port, proc = server("--max-pending", "4", "--handshake-timeout", "30")
    idle = [socket.create_connection((host, port)) for _ in range(12)]
    turned_away = 0
    for s in idle:
        s.settimeout(10)
        first = _recv_exact(s, 8)
        if first.startswith(b"ERR busy"):
            turned_away += 1
    assert turned_away == 8
    assert proc.poll() is None
    for s in idle:
        s.close()
    monkeypatch.setenv(server_mod.SECRET_ENV, SECRET)
    deadline = time.monotonic() + 20
    g = execnet.Group()
    try:
        while True:  # the slots free as the server sees the closes
            try:
                gw = g.makegateway("socket=%s:%d" % (host, port))
                break
            except _socket.AuthenticationError as exc:
                assert "busy" in str(exc) and time.monotonic() < deadline
        assert gw.remote_exec("channel.send(1)").receive(10) == 1
    finally:
        g.terminate(2)


def test_server_survives_thread_exhaustion(server, monkeypatch):
    """Under a 1 GiB address-space limit, many idle connections: thread starts
    fail (or the pending bound turns them away); the server lives on."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    host, port, proc = server("--max-pending", "200", "--handshake-timeout", "30",
                              preexec_fn=limit)
    idle = []
    for _ in range(120):
        try:
            idle.append(socket.create_connection((host, port), timeout=10))
        except OSError:
            break
    for s in idle:  # every connection got an answer (greeting or refusal)
        s.settimeout(10)
        try:
            s.recv(1)
        except OSError:
            pass
    assert proc.poll() is None
    for s in idle:
        s.close()
    monkeypatch.setenv(server_mod.SECRET_ENV, SECRET)
    g = execnet.Group()
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                gw = g.makegateway("socket=%s:%d" % (host, port))
                break
            except (_socket.AuthenticationError, OSError, EOFError):
                assert time.monotonic() < deadline
        assert gw.remote_exec("channel.send(2)").receive(10) == 2
    finally:
        g.terminate(2)
    assert proc.poll() is None


def test_old_handshake_only_server_is_refused(group, monkeypatch):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def old_server():
        c, _ = listener.accept()
        c.sendall(server_mod.MAGIC_AUTH_V1 + b"n" * 32)
        _read_to_eof(c)

    threading.Thread(target=old_server, daemon=True).start()
    monkeypatch.setenv(server_mod.SECRET_ENV, SECRET)
    with pytest.raises(_socket.AuthenticationError, match="older weft socketserver"):
        group.makegateway("socket=127.0.0.1:%d" % port)
    listener.close()


# -- secrets -----------------------------------------------------------------

def test_secret_in_spec_is_an_error(group):
    with pytest.raises(ValueError, match="in a gateway spec is not supported"):
        group.makegateway("socket=127.0.0.1:1//secret=hunter2")
    assert len(group) == 0


def test_whitespace_secret_env_is_an_error(group, monkeypatch):
    monkeypatch.setenv(server_mod.SECRET_ENV, "  \t ")
    with pytest.raises(ValueError, match="only whitespace"):
        group.makegateway("socket=127.0.0.1:1")


def test_empty_secret_file_is_an_error(group, tmp_path):
    f = tmp_path / "secret"
    f.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        group.makegateway("socket=127.0.0.1:1//secret_file=%s" % f)


@pytest.mark.parametrize("secret", [" ", "\t\n"])
def test_server_refuses_a_whitespace_secret(secret):
    env = dict(os.environ)
    env[server_mod.SECRET_ENV] = secret
    proc = subprocess.run([sys.executable, SERVER, "--port", "0"], capture_output=True,
                          text=True, env=env, timeout=20)
    assert proc.returncode != 0
    assert "only whitespace" in proc.stderr


@pytest.mark.parametrize("config", [{}, {"secret": ""}, {"secret": "   "}, {"secret": None}])
def test_serve_for_channel_needs_a_secret(group, config):
    from weft.execnet import _spawn
    gw = group.makegateway("popen")
    source = _spawn._source("socketserver.py") + "\nserve_for_channel(channel)\n"
    ch = gw.remote_exec(source)
    ch.send(dict(config, port=0))
    with pytest.raises(execnet.RemoteError, match="has no secret"):
        ch.receive(20)


def test_client_refuses_a_server_that_cannot_prove_the_secret(group, monkeypatch):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def fake_server():  # accepts any client MAC, answers with a made-up one
        c, _ = listener.accept()
        c.sendall(server_mod.MAGIC_AUTH + os.urandom(32))
        _recv_exact(c, 64)
        c.sendall(b"OK\n" + os.urandom(32))
        _read_to_eof(c)

    threading.Thread(target=fake_server, daemon=True).start()
    monkeypatch.setenv(server_mod.SECRET_ENV, SECRET)
    with pytest.raises(_socket.AuthenticationError, match="does not know the secret"):
        group.makegateway("socket=127.0.0.1:%d" % port)
    listener.close()


def test_session_with_pure_python_codec_workers(server, group, monkeypatch):
    monkeypatch.setenv("WEFT_PURE_PYTHON_CODEC", "1")  # inherited by the server's workers
    host, port, proc = server()
    monkeypatch.delenv("WEFT_PURE_PYTHON_CODEC")
    monkeypatch.setenv(server_mod.SECRET_ENV, SECRET)
    gw = group.makegateway("socket=%s:%d" % (host, port))
    ch = gw.remote_exec(
        "import weft_boot_core as c; channel.send(c.codec_name());"
        "channel.send(type(channel.gateway._io).__name__);"
        "channel.send(channel.receive())")
    assert ch.receive(10) == "python"
    assert ch.receive(10) == "SessionSocketIO"
    big = os.urandom(3 << 20)
    ch.send(big)
    assert ch.receive(20) == big
