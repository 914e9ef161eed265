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

from weft._bootstrap import core as _core
from weft._bootstrap import socketserver as _server

from . import _spawn
from .gateway import Gateway


class AuthenticationError(IOError):
    """The socket gateway handshake failed (wrong or missing secret)."""


def _spec_secret(spec):
    if spec.secret_file:
        with open(os.path.expanduser(spec.secret_file), "rb") as f:
            return f.read().strip()
    env = os.environ.get(_server.SECRET_ENV)
    return env.encode() if env else None


def client_handshake(sock, secret, insecure, where):
    magic = b""
    while not magic.endswith(b"\n") and len(magic) < 64:
        magic += _server.recv_exact(sock, 1)
    if magic == _server.MAGIC_NOAUTH:
        if not insecure:
            raise AuthenticationError(
                "socket gateway %s accepts unauthenticated connections; refusing it. "
                "Add '//insecure' to the spec only on a trusted network." % where)
        return
    if magic != _server.MAGIC_AUTH:
        raise AuthenticationError("%s is not a weft socket gateway server (greeting %r)"
                                  % (where, magic[:40]))
    if not secret:
        raise AuthenticationError(
            "socket gateway %s requires a shared secret: pass secret_file=PATH in the "
            "spec or set $%s" % (where, _server.SECRET_ENV))
    nonce_s = _server.recv_exact(sock, _server.NONCE_SIZE)
    nonce_c = os.urandom(_server.NONCE_SIZE)
    sock.sendall(nonce_c + _server.mac(secret, b"client", nonce_s, nonce_c))
    status = b""
    try:
        while not status.endswith(b"\n") and len(status) < 200:
            status += _server.recv_exact(sock, 1)
    except EOFError:
        pass
    if status != b"OK\n":
        reason = status.decode("utf-8", "replace").strip() or "connection closed"
        raise AuthenticationError("socket gateway %s refused us: %s" % (where, reason))
    their_mac = _server.recv_exact(sock, _server.MAC_SIZE)
    if not _server.hmac.compare_digest(their_mac,
                                       _server.mac(secret, b"server", nonce_c, nonce_s)):
        raise AuthenticationError("socket gateway %s does not know the secret" % where)


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
        sock = socket.create_connection((host, port))
    except socket.gaierror as exc:
        from ._connect import HostNotFound
        raise HostNotFound("socket gateway host %r not found: %s" % (host, exc)) from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.settimeout(_server.AUTH_TIMEOUT)
        client_handshake(sock, secret, bool(spec.insecure), where)
        sock.settimeout(None)
        config = _spawn.worker_config(spec, "socketfd")
        sock.sendall(_spawn.boot_payload(config))
    except BaseException:
        sock.close()
        raise
    return Gateway(ClientSocketIO(sock, where), spec, execmodel=group.execmodel)
