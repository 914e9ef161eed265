"""weft socket gateway server: accepts authenticated connections and boots a
fresh worker interpreter for each.

SELF-CONTAINED (standard library only): copy it to a host and run

    WEFT_EXECNET_SECRET=... python socketserver.py [--host 127.0.0.1] [--port 8888]
    python socketserver.py --secret-file ~/.weft-secret --port 8888
    python socketserver.py --insecure --host 0.0.0.0   # trusted networks only

or let ``socket//installvia=GW`` start it inside another gateway.

Handshake (docs/gateways.md), all over the TCP connection:
  server -> client  b"WEFT-EXECNET 1 AUTH\\n" + nonce_s (32 random bytes)
                    (or b"WEFT-EXECNET 1 NOAUTH\\n" for an --insecure server)
  client -> server  nonce_c (32 bytes) + HMAC-SHA256(secret, b"client" + nonce_s + nonce_c)
  server -> client  b"OK\\n" + HMAC-SHA256(secret, b"server" + nonce_c + nonce_s)
                    or b"ERR <reason>\\n" and the connection closes
then the client sends the boot payload (b"<length>\\n<python source>"), which a
new ``python -c BOOTLINE`` process reads from the socket; the socket stays the
worker's transport.  The worker's stdout/stderr are the server's.
"""

import hashlib
import hmac
import os
import socket
import subprocess
import sys
import threading

MAGIC_AUTH = b"WEFT-EXECNET 1 AUTH\n"
MAGIC_NOAUTH = b"WEFT-EXECNET 1 NOAUTH\n"
NONCE_SIZE = 32
MAC_SIZE = 32
SECRET_ENV = "WEFT_EXECNET_SECRET"
AUTH_TIMEOUT = 10.0

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


def mac(secret, label, a, b):
    return hmac.new(secret, label + a + b, hashlib.sha256).digest()


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed during the handshake")
        data += chunk
    return data


def server_handshake(conn, secret):
    """Authenticate a client; returns True if it may boot a worker."""
    if secret is None:
        conn.sendall(MAGIC_NOAUTH)
        return True
    nonce_s = os.urandom(NONCE_SIZE)
    conn.sendall(MAGIC_AUTH + nonce_s)
    reply = recv_exact(conn, NONCE_SIZE + MAC_SIZE)
    nonce_c, their_mac = reply[:NONCE_SIZE], reply[NONCE_SIZE:]
    if not hmac.compare_digest(their_mac, mac(secret, b"client", nonce_s, nonce_c)):
        conn.sendall(b"ERR authentication failed: the client's secret does not match\n")
        return False
    conn.sendall(b"OK\n" + mac(secret, b"server", nonce_c, nonce_s))
    return True


def handle(conn, secret, python):
    try:
        conn.settimeout(AUTH_TIMEOUT)
        if not server_handshake(conn, secret):
            return
        conn.settimeout(None)
    except (OSError, EOFError):
        return
    finally:
        if conn.gettimeout() is not None:
            conn.close()
    fd = conn.fileno()
    try:
        proc = subprocess.Popen([python, "-c", _BOOTLINE % {"fd": fd}], pass_fds=(fd,),
                                stdin=subprocess.DEVNULL)
    finally:
        conn.close()  # the worker holds its own copy of the socket
    threading.Thread(target=proc.wait, daemon=True).start()


def serve(host, port, secret, python=None, ready=None, stop=None):
    """Accept connections until ``stop`` (an Event) is set; ``ready(addr)`` is
    called with the bound (host, port)."""
    python = python or sys.executable
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(16)
    srv.settimeout(0.2)
    if ready is not None:
        ready(srv.getsockname())
    try:
        while stop is None or not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            conn.settimeout(None)
            threading.Thread(target=handle, args=(conn, secret, python), daemon=True).start()
    finally:
        srv.close()


def serve_for_channel(channel):
    """Run inside a gateway (``installvia``): receive the config over
    ``channel``, send back the bound address, serve until the channel closes."""
    config = channel.receive()
    secret = config.get("secret")
    stop = threading.Event()
    # the endmarker arrives when the channel or the whole gateway closes
    channel.setcallback(lambda item: stop.set() if item is None else None, endmarker=None)
    t = threading.Thread(
        target=serve, kwargs=dict(host=config.get("host", "127.0.0.1"),
                                  port=config.get("port", 0),
                                  secret=secret.encode() if secret else None,
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
    opts = parser.parse_args(argv)
    if opts.insecure:
        secret = None
    elif opts.secret_file:
        with open(opts.secret_file, "rb") as f:
            secret = f.read().strip()
    elif os.environ.get(opts.secret_env):
        secret = os.environ[opts.secret_env].encode()
    else:
        parser.error("a secret is required: --secret-file FILE or $%s "
                     "(or --insecure on a trusted network)" % opts.secret_env)
    if not secret and not opts.insecure:
        parser.error("the secret is empty")

    def ready(addr):
        print("weft socketserver listening on %s:%d" % addr, flush=True)

    try:
        serve(opts.host, opts.port, secret, python=opts.python, ready=ready)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
