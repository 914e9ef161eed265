"""Fuzz the gateway's frame dispatch: a peer that passed the handshake (or a
booted worker) and then sends arbitrary frames.

Local target (many runs): a local ``Gateway`` over a socket pair, fed a
random mix of well-formed and broken frames (every message code, random
channel ids, payloads from the wire fuzz corpus, valid values, garbage),
then the peer's end of the stream.  Each run must end with the receiver
finished within seconds (no hang), no exception escaping a thread, and the
gateway's error, if any, a ``GatewayDied`` that names a cause (never
"receiver thread crashed").

Worker targets (fewer runs): a real popen worker, and a socket worker after a
valid handshake (frames inside valid records), fed the same kind of frames
after it booted (no CHANNEL_EXEC, so no code is asked to run): it must end
(by itself, once its input ends) within seconds, never hang.

    python scripts/fuzz_dispatch.py [--runs N] [--worker-runs N] [--seed S]
"""

import argparse
import os
import random
import socket
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "tests", "vectors", "fuzz-corpus")

import weft.execnet as execnet  # noqa: E402
from weft._bootstrap import core, wire  # noqa: E402
from weft.execnet.gateway import Gateway  # noqa: E402

PAYLOADS = []


def load_payloads():
    if os.path.isdir(CORPUS):
        for name in sorted(os.listdir(CORPUS)):
            with open(os.path.join(CORPUS, name), "rb") as f:
                PAYLOADS.append(f.read())
    for v in (None, 1, "text", b"bytes", (True, False), [1, 2], {"k": 1}, "x" * 1000,
              ("source", None, None, {}), (1, 2, 3, 4)):
        PAYLOADS.append(wire.dumps(v))
    PAYLOADS.append(b"")


def random_frames(rng, codes, n):
    out = []
    for _ in range(n):
        r = rng.random()
        code = rng.choice(codes)
        cid = rng.choice([0, 1, 2, 3, 4, 5, 7, rng.randrange(1 << 31)])
        payload = rng.choice(PAYLOADS)
        if r < 0.05:  # a broken header
            out.append(bytes(rng.randrange(256) for _ in range(9)))
        elif r < 0.1:  # truncated frame
            frame = wire.pack_message(code, cid, payload)
            out.append(frame[:rng.randrange(len(frame) + 1)])
            break
        else:
            if r < 0.2 and payload:
                payload = bytearray(payload)
                payload[rng.randrange(len(payload))] = rng.randrange(256)
                payload = bytes(payload)
            out.append(wire.pack_message(code, cid, payload))
    return b"".join(out)


ESCAPED = []


def local_run(rng):
    a, b = socket.socketpair()
    gw = Gateway(core.SocketIO(a), execnet.XSpec("socket=fuzz//id=fuzz"))
    channels = [gw.newchannel() for _ in range(3)]
    if rng.random() < 0.5:
        got = []
        channels[1].setcallback(got.append, endmarker=None)
    data = random_frames(rng, list(range(8)), rng.randrange(1, 12))
    try:
        b.sendall(data)
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    if not gw.join(10):
        raise AssertionError("receiver did not finish: frames %s" % data.hex()[:400])
    err = gw._error
    if err is not None:
        text = str(err)
        if not isinstance(err, core.GatewayDied) or "receiver thread crashed" in text:
            raise AssertionError("bad end %r for frames %s" % (err, data.hex()[:400]))
    gw.exit()
    a.close()
    b.close()


def worker_run(rng, group):
    gw = group.makegateway("popen")
    codes = [c for c in range(8) if c != wire.CHANNEL_EXEC]
    data = random_frames(rng, codes, rng.randrange(1, 12))
    pid = gw._io.pid
    try:
        gw._io.write(data)
        gw._io.close_write()
    except OSError:
        pass
    rc = gw._io.wait(10)
    if rc is None:
        gw._io.kill()
        raise AssertionError("worker %d still running 10 s after its input ended: frames %s"
                             % (pid, data.hex()[:400]))
    gw.join(10)
    group._unregister(gw) if gw in group else None


def socket_run(rng, group, addr):
    """A socket worker after a valid handshake and boot, fed frames inside
    valid records (no CHANNEL_EXEC): the connection must end within seconds."""
    gw = group.makegateway("socket=%s:%d" % addr)
    codes = [c for c in range(8) if c != wire.CHANNEL_EXEC]
    data = random_frames(rng, codes, rng.randrange(1, 12))
    try:
        gw._io.write(data)
        gw._io.close_write()
    except OSError:
        pass
    if not gw.join(10):
        raise AssertionError("socket worker still connected 10 s after its input ended: "
                             "frames %s" % data.hex()[:400])
    if gw in group:
        group._unregister(gw)


def start_server():
    from weft._bootstrap import socketserver
    secret = os.urandom(16).hex()
    os.environ[socketserver.SECRET_ENV] = secret
    ready = []
    got = threading.Event()
    stop = threading.Event()

    def on_ready(addr):
        ready.append(addr)
        got.set()

    threading.Thread(target=socketserver.serve, args=("127.0.0.1", 0, secret.encode()),
                     kwargs=dict(ready=on_ready, stop=stop), daemon=True).start()
    got.wait(10)
    return ready[0], stop


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=int(os.environ.get("WEFT_DISPATCH_RUNS", 1500)))
    ap.add_argument("--worker-runs", type=int,
                    default=int(os.environ.get("WEFT_DISPATCH_WORKER_RUNS", 25)))
    ap.add_argument("--socket-runs", type=int,
                    default=int(os.environ.get("WEFT_DISPATCH_SOCKET_RUNS", 10)))
    ap.add_argument("--seed", type=int, default=1234)
    opts = ap.parse_args(argv)
    load_payloads()
    threading.excepthook = lambda args: ESCAPED.append(args)
    rng = random.Random(opts.seed)
    t0 = time.monotonic()
    stderr = sys.stderr
    failures = 0
    saved_fd2 = os.dup(2)
    with open(os.devnull, "w") as quiet:
        # remote-error warnings of dropped channels, here and in the workers
        sys.stderr = quiet
        os.dup2(quiet.fileno(), 2)
        try:
            for _ in range(opts.runs):
                try:
                    local_run(rng)
                except AssertionError as exc:
                    failures += 1
                    print("FAIL (local): %s" % exc, flush=True)
            group = execnet.Group()
            for _ in range(opts.worker_runs):
                try:
                    worker_run(rng, group)
                except AssertionError as exc:
                    failures += 1
                    print("FAIL (worker): %s" % exc, flush=True)
            if opts.socket_runs:
                addr, stop = start_server()
                for _ in range(opts.socket_runs):
                    try:
                        socket_run(rng, group, addr)
                    except AssertionError as exc:
                        failures += 1
                        print("FAIL (socket): %s" % exc, flush=True)
                stop.set()
            group.terminate(2)
        finally:
            os.dup2(saved_fd2, 2)
            os.close(saved_fd2)
            sys.stderr = stderr
    for args in ESCAPED:
        failures += 1
        print("FAIL: exception escaped thread %s: %r" % (args.thread, args.exc_value))
    print("fuzz-dispatch: %d local runs, %d popen worker runs, %d socket worker runs, "
          "%.1f s, seed %d, %d failures"
          % (opts.runs, opts.worker_runs, opts.socket_runs, time.monotonic() - t0, opts.seed,
             failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
