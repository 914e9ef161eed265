"""weft socket gateway server: accepts authenticated connections and boots a
fresh worker interpreter for each.

SELF-CONTAINED (standard library only): copy it to a host and run

    WEFT_EXECNET_SECRET=... python socketserver.py [--host 127.0.0.1] [--port 8888]
    python socketserver.py --secret-file ~/.weft-secret --port 8888
    python socketserver.py --insecure --host 0.0.0.0   # trusted networks only

or let ``socket//installvia=GW`` start it inside another gateway.

Handshake (docs/gateways.md), all over the TCP connection:
  server -> client  b"WEFT-EXECNET 2 AUTH\\n" + nonce_s (32 random bytes)
                    (or b"WEFT-EXECNET 1 NOAUTH\\n" for an --insecure server)
  client -> server  nonce_c (32 bytes) + HMAC-SHA256(secret, b"client" + nonce_s + nonce_c)
  server -> client  b"OK\\n" + HMAC-SHA256(secret, b"server" + nonce_c + nonce_s)
                    or b"ERR <reason>\\n" and the connection closes
then every byte either way is in authenticated records (keys from the secret
and both nonces, a sequence number per direction; docs/wire.md).  The client
sends the boot payload (b"<length>\\n<python source>") in records; the server
checks them all, starts a fresh ``python -c BOOTLINE`` and hands it the
checked payload and the session on a pipe; the socket stays the worker's
transport.  The worker's stdout/stderr are the server's.  One deadline
covers the handshake and the boot payload; at most --max-pending
connections are in it at once; no client can make the server exit.
"""

import _thread
import hashlib
import hmac
import os
import socket
import subprocess
import sys
import threading
import time

MAGIC_AUTH = b"WEFT-EXECNET 2 AUTH\n"
MAGIC_AUTH_V1 = b"WEFT-EXECNET 1 AUTH\n"  # handshake-only servers before records
MAGIC_NOAUTH = b"WEFT-EXECNET 1 NOAUTH\n"
NONCE_SIZE = 32
MAC_SIZE = 32
SECRET_ENV = "WEFT_EXECNET_SECRET"
AUTH_TIMEOUT = 10.0  # seconds for the whole handshake and boot payload
MAX_PENDING = 32  # connections in the handshake at once; more are turned away
MAX_BOOT_PAYLOAD = 64 << 20
RECORD_MAX = 1 << 20  # as weft._bootstrap.core.RECORD_MAX
RECORD_TAG = 32

# Also the popen boot line: weft.execnet._spawn imports it from here.
_BOOTLINE = (
    "import os\n"
    "_weft_boot_fd=%(fd)s\n"
    "def _r(n):\n"
    "    b=b''\n"
    "    while len(b)<n:\n"
    "        c=os.read(_weft_boot_fd,n-len(b))\n"
    "        if not c: raise SystemExit('weft boot: connection closed while booting')\n"
    "        b+=c\n"
    "    return b\n"
    "h=b''\n"
    "while not h.endswith(b'\\n'): h+=_r(1)\n"
    "exec(compile(_r(int(h)),'<weft boot>','exec'))\n"
)

# What an authenticating server runs: it reads from the boot pipe (fd 0) the
# session ("SOCKFD KEY_IN KEY_OUT SEQ_IN SEQ_OUT", for core.worker_main) and
# then the boot payload the server has already checked, both as
# b"<length>\n<bytes>".
_SESSION_BOOTLINE = (
    "import os\n"
    "_weft_boot_fd=0\n"
    "def _r(n):\n"
    "    b=b''\n"
    "    while len(b)<n:\n"
    "        c=os.read(0,n-len(b))\n"
    "        if not c: raise SystemExit('weft boot: the server closed the boot pipe')\n"
    "        b+=c\n"
    "    return b\n"
    "def _l():\n"
    "    h=b''\n"
    "    while not h.endswith(b'\\n'): h+=_r(1)\n"
    "    return _r(int(h))\n"
    "_weft_session=_l()\n"
    "exec(compile(_l(),'<weft boot>','exec'))\n"
)


def mac(secret, label, a, b):
    return hmac.new(secret, label + a + b, hashlib.sha256).digest()


def session_keys(secret, nonce_s, nonce_c):
    """``(client->server key, server->client key)``; the same function as
    weft._bootstrap.core.session_keys (this file is self-contained)."""
    base = hmac.new(secret, b"weft-session" + nonce_s + nonce_c, hashlib.sha256).digest()
    return (hmac.new(base, b"client->server", hashlib.sha256).digest(),
            hmac.new(base, b"server->client", hashlib.sha256).digest())


class HandshakeTimeout(OSError):
    pass


def recv_exact(sock, n, deadline=None):
    """Exactly ``n`` bytes; with ``deadline`` (a time.monotonic() value),
    HandshakeTimeout once it passes, however slowly the bytes trickle in."""
    data = b""
    while len(data) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HandshakeTimeout("handshake deadline passed")
            sock.settimeout(left)
        try:
            chunk = sock.recv(n - len(data))
        except socket.timeout:
            raise HandshakeTimeout("handshake deadline passed") from None
        if not chunk:
            raise EOFError("connection closed during the handshake")
        data += chunk
    return data


def server_handshake(conn, secret, deadline=None):
    """Authenticate a client: its session keys if it may boot a worker,
    True for an --insecure server, None if it was refused."""
    if secret is None:
        conn.sendall(MAGIC_NOAUTH)
        return True
    nonce_s = os.urandom(NONCE_SIZE)
    conn.sendall(MAGIC_AUTH + nonce_s)
    reply = recv_exact(conn, NONCE_SIZE + MAC_SIZE, deadline)
    nonce_c, their_mac = reply[:NONCE_SIZE], reply[NONCE_SIZE:]
    if not hmac.compare_digest(their_mac, mac(secret, b"client", nonce_s, nonce_c)):
        conn.sendall(b"ERR authentication failed: the client's secret does not match\n")
        return None
    conn.sendall(b"OK\n" + mac(secret, b"server", nonce_c, nonce_s))
    return session_keys(secret, nonce_s, nonce_c)


def read_boot_payload(conn, key, deadline):
    """The boot payload (b"<length>\\n<source>") from the client's first
    records, each checked; ``(payload, records read)``.  ValueError for
    anything else (a bad record, a payload not ending with a record)."""
    data = bytearray()
    seq = 0
    want = None
    while want is None or len(data) < want:
        head = recv_exact(conn, 4, deadline)
        length = int.from_bytes(head, "big")
        if not 0 < length <= RECORD_MAX:
            raise ValueError("record %d announces %d bytes" % (seq, length))
        chunk = recv_exact(conn, length, deadline)
        tag = recv_exact(conn, RECORD_TAG, deadline)
        good = hmac.new(key, seq.to_bytes(8, "big") + head + chunk, hashlib.sha256).digest()
        if not hmac.compare_digest(tag, good):
            raise ValueError("record %d failed its check" % seq)
        seq += 1
        data += chunk
        if want is None:
            line, nl, _ = bytes(data[:24]).partition(b"\n")
            if nl:
                if not line.isdigit() or int(line) > MAX_BOOT_PAYLOAD:
                    raise ValueError("bad boot payload length %r" % line[:24])
                want = len(line) + 1 + int(line)
            elif len(data) > 24:
                raise ValueError("bad boot payload header")
    if len(data) != want:
        raise ValueError("the boot payload does not end with a record")
    return bytes(data), seq


def _log(msg):
    try:
        sys.stderr.write("weft socketserver: %s\n" % msg)
        sys.stderr.flush()
    except Exception:
        pass


def handle(conn, secret, python, timeout=AUTH_TIMEOUT, release=None, children=None):
    """Serve one connection: handshake, boot payload, worker.  Never raises."""
    deadline = time.monotonic() + timeout
    proc = None
    try:
        try:
            keys = server_handshake(conn, secret, deadline)
            if keys is None:
                return
            if keys is True:  # --insecure: the worker reads the socket itself
                conn.settimeout(None)
                fd = conn.fileno()
                proc = subprocess.Popen([python, "-c", _BOOTLINE % {"fd": fd}],
                                        pass_fds=(fd,), stdin=subprocess.DEVNULL)
                return
            key_in, key_out = keys
            payload, seq_in = read_boot_payload(conn, key_in, deadline)
            conn.settimeout(None)
            fd = conn.fileno()
            proc = subprocess.Popen([python, "-c", _SESSION_BOOTLINE], pass_fds=(fd,),
                                    stdin=subprocess.PIPE)
        finally:
            if release is not None:
                release()
                release = None
        session = b"%d %s %s %d 0" % (fd, key_in.hex().encode(), key_out.hex().encode(), seq_in)
        try:
            proc.stdin.write(b"%d\n%s%s" % (len(session), session, payload))
            proc.stdin.close()
        except OSError:
            pass  # the worker died early
    except (OSError, EOFError, ValueError) as exc:
        _log("connection refused: %s" % (exc,))
    except Exception as exc:  # MemoryError, RuntimeError...: never the server's end
        _log("connection dropped: %r" % (exc,))
    finally:
        if release is not None:
            release()
        if proc is not None and children is not None:
            children.append(proc)
        try:
            conn.close()  # the worker holds its own copy of the socket
        except OSError:
            pass


def serve(host, port, secret, python=None, ready=None, stop=None, timeout=AUTH_TIMEOUT,
          max_pending=MAX_PENDING):
    """Accept connections until ``stop`` (an Event) is set; ``ready(addr)`` is
    called with the bound (host, port).  At most ``max_pending`` connections
    are in their handshake at once (more are turned away), each has
    ``timeout`` seconds for all of it, and nothing a client does ends this
    loop (a failed accept, thread or process start drops that connection)."""
    python = python or sys.executable
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(64)
    srv.settimeout(0.2)
    if ready is not None:
        ready(srv.getsockname())
    pending = threading.BoundedSemaphore(max_pending)
    children = []
    try:
        while stop is None or not stop.is_set():
            for proc in list(children):  # reap finished workers
                try:
                    if proc.poll() is not None:
                        children.remove(proc)
                except Exception:
                    pass
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            except OSError as exc:  # EMFILE, ENOBUFS, ...: wait and go on
                _log("accept failed: %s" % (exc,))
                time.sleep(0.1)
                continue
            try:
                conn.settimeout(None)
                if not pending.acquire(False):
                    try:
                        conn.setblocking(False)
                        conn.send(b"ERR busy: too many connections in their handshake\n")
                    except OSError:
                        pass
                    conn.close()
                    continue
                try:
                    # A bare thread, not threading.Thread: a Thread whose
                    # start-up fails (MemoryError under an address-space
                    # limit) stays in threading's _limbo with its arguments,
                    # and this connection would never be answered or closed;
                    # a bare thread's arguments are freed, closing it.
                    _thread.start_new_thread(handle, (conn, secret, python, timeout,
                                                      pending.release, children))
                except BaseException:
                    pending.release()
                    raise
            except Exception as exc:  # can't start new thread, MemoryError, ...
                _log("connection dropped: %r" % (exc,))
                try:
                    conn.close()
                except OSError:
                    pass
    finally:
        srv.close()


def serve_for_channel(channel):
    """Run inside a gateway (``installvia``): receive the config over
    ``channel``, send back the bound address, serve until the channel closes.
    The config must carry a non-empty ``secret`` (or ``insecure``: True)."""
    config = channel.receive()
    secret = config.get("secret")
    if config.get("insecure"):
        secret = None
    elif not isinstance(secret, str) or not secret.strip():
        raise ValueError("serve_for_channel: the config has no secret (got %r); "
                         "a socket server without one would run anybody's code"
                         % (type(secret).__name__ if secret is not None else None,))
    else:
        secret = secret.encode()
    stop = threading.Event()
    # the endmarker arrives when the channel or the whole gateway closes
    channel.setcallback(lambda item: stop.set() if item is None else None, endmarker=None)
    t = threading.Thread(
        target=serve, kwargs=dict(host=config.get("host", "127.0.0.1"),
                                  port=config.get("port", 0),
                                  secret=secret,
                                  ready=lambda addr: channel.send(list(addr)),
                                  stop=stop),
        daemon=True)
    t.start()
    t.join()


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8888)
    parser.add_argument("--secret-file")
    parser.add_argument("--secret-env", default=SECRET_ENV)
    parser.add_argument("--insecure", action="store_true",
                        help="accept unauthenticated connections (trusted networks only)")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--handshake-timeout", type=float, default=AUTH_TIMEOUT,
                        help="seconds a client has for the whole handshake")
    parser.add_argument("--max-pending", type=int, default=MAX_PENDING,
                        help="connections in their handshake at once")
    opts = parser.parse_args(argv)
    if opts.insecure:
        secret = None
    elif opts.secret_file:
        with open(opts.secret_file, "rb") as f:
            secret = f.read().strip()
    elif opts.secret_env in os.environ:
        secret = os.environ[opts.secret_env].encode()
        if not secret.strip():
            parser.error("$%s is empty or only whitespace" % opts.secret_env)
    else:
        parser.error("a secret is required: --secret-file FILE or $%s "
                     "(or --insecure on a trusted network)" % opts.secret_env)
    if not opts.insecure and not secret.strip():
        parser.error("the secret is empty")

    def ready(addr):
        print("weft socketserver listening on %s:%d" % addr, flush=True)

    try:  # handshake threads need little stack; more of them fit a low RLIMIT_AS
        threading.stack_size(512 << 10)
    except (ValueError, RuntimeError):
        pass

    try:
        serve(opts.host, opts.port, secret, python=opts.python, ready=ready,
              timeout=opts.handshake_timeout, max_pending=max(1, opts.max_pending))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
