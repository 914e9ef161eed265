"""``socket=HOST:PORT`` gateways (client side of the authenticated handshake).

The secret comes from, in order: the spec's ``secret_file=PATH``, the
environment variable ``WEFT_EXECNET_SECRET``.  ``insecure`` in the spec allows
talking to a server started with ``--insecure``.  ``installvia=GWID`` starts a
server inside that gateway (port 0, a fresh random secret) and connects to it.
See docs/gateways.md.
"""

import os
import secrets
import socket
import time

from weft._bootstrap import core as _core
from weft._bootstrap import socketserver as _server

from . import _spawn
from .gateway import Gateway


class AuthenticationError(IOError):
    """The socket gateway handshake failed (wrong or missing secret)."""


def _spec_secret(spec):
    if spec.secret_file:
        path = os.path.expanduser(spec.secret_file)
        with open(path, "rb") as f:
            secret = f.read().strip()
        if not secret:
            raise ValueError("the secret file %s is empty" % path)
        return secret
    env = os.environ.get(_server.SECRET_ENV)
    if env is None or env == "":
        return None
    if not env.strip():
        raise ValueError("$%s is only whitespace; set it to the server's secret"
                         % _server.SECRET_ENV)
    return env.encode()


def client_handshake(sock, secret, insecure, where, deadline=None):
    """Authenticate both ends; the session keys ``(client->server,
    server->client)``, or None for an --insecure server."""
    recv = _server.recv_exact
    magic = b""
    while not magic.endswith(b"\n") and len(magic) < 64:
        magic += recv(sock, 1, deadline)
    if magic == _server.MAGIC_NOAUTH:
        if not insecure:
            raise AuthenticationError(
                "socket gateway %s accepts unauthenticated connections; refusing it. "
                "Add '//insecure' to the spec only on a trusted network." % where)
        return None
    if magic == _server.MAGIC_AUTH_V1:
        raise AuthenticationError(
            "socket gateway %s runs an older weft socketserver that authenticates only "
            "the handshake, not the session; start the server of this weft version" % where)
    if magic != _server.MAGIC_AUTH:
        raise AuthenticationError("%s is not a weft socket gateway server (greeting %r)"
                                  % (where, magic[:40]))
    if not secret:
        raise AuthenticationError(
            "socket gateway %s requires a shared secret: pass secret_file=PATH in the "
            "spec or set $%s" % (where, _server.SECRET_ENV))
    nonce_s = recv(sock, _server.NONCE_SIZE, deadline)
    nonce_c = os.urandom(_server.NONCE_SIZE)
    sock.sendall(nonce_c + _server.mac(secret, b"client", nonce_s, nonce_c))
    status = b""
    try:
        while not status.endswith(b"\n") and len(status) < 200:
            status += recv(sock, 1, deadline)
    except EOFError:
        pass
    if status != b"OK\n":
        reason = status.decode("utf-8", "replace").strip() or "connection closed"
        raise AuthenticationError("socket gateway %s refused us: %s" % (where, reason))
    their_mac = recv(sock, _server.MAC_SIZE, deadline)
    if not _server.hmac.compare_digest(their_mac,
                                       _server.mac(secret, b"server", nonce_c, nonce_s)):
        raise AuthenticationError("socket gateway %s does not know the secret" % where)
    return _core.session_keys(secret, nonce_s, nonce_c)


class ClientSocketIO(_core.SocketIO):
    def __init__(self, sock, where):
        super().__init__(sock)
        self.remoteaddress = where

    def describe_death(self):
        return "the socket connection to %s was closed" % (self.remoteaddress,)

    def kill(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def wait(self, timeout=None):
        return 0


class ClientSessionIO(_core.SessionSocketIO):
    """The client end of an authenticated session (every byte in records)."""

    describe_death = ClientSocketIO.describe_death
    kill = ClientSocketIO.kill
    wait = ClientSocketIO.wait

    def __init__(self, sock, where, keys):
        super().__init__(sock, key_in=keys[1], key_out=keys[0])
        self.remoteaddress = where


def _start_server_via(group, spec):
    gw = group[spec.installvia]
    secret = secrets.token_hex(32)
    source = _spawn._source("socketserver.py") + "\nserve_for_channel(channel)\n"
    channel = gw.remote_exec(source)
    channel.send({"host": "127.0.0.1", "port": 0, "secret": secret})
    host, port = channel.receive()
    # keep the server alive as long as the proxy gateway
    gw._weft_socketservers = getattr(gw, "_weft_socketservers", []) + [channel]
    return host, port, secret.encode()


def connect_socket(group, spec):
    if spec.secret is not None:
        raise ValueError(
            "'secret=' in a gateway spec is not supported: a spec ends up in process "
            "listings, logs and tracebacks. Use secret_file=PATH or $%s" % _server.SECRET_ENV)
    if spec.installvia:
        host, port, secret = _start_server_via(group, spec)
        spec.socket = "%s:%d" % (host, port)
    else:
        host, _, port = spec.socket.rpartition(":")
        host = host or "127.0.0.1"
        port = int(port)
        secret = _spec_secret(spec)
    where = "%s:%d" % (host, port)
    try:
        sock = socket.create_connection((host, port), timeout=_server.AUTH_TIMEOUT)
    except socket.gaierror as exc:
        from ._connect import HostNotFound
        raise HostNotFound("socket gateway host %r not found: %s" % (host, exc)) from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        deadline = time.monotonic() + _server.AUTH_TIMEOUT
        keys = client_handshake(sock, secret, bool(spec.insecure), where, deadline)
        sock.settimeout(None)
        config = _spawn.worker_config(spec, "socketfd")
        if keys is None:
            io = ClientSocketIO(sock, where)
            sock.sendall(_spawn.boot_payload(config))
        else:
            io = ClientSessionIO(sock, where, keys)
            io.write(_spawn.boot_payload(config))  # its own records
    except BaseException:
        sock.close()
        raise
    return Gateway(io, spec, execmodel=group.execmodel)
