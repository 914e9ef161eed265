"""weft gateway core: channels, exec models and the message loop, for both ends.

This module is SELF-CONTAINED (standard library plus the sibling ``wire`` codec)
because the gateway bootstrap sends its source text to the remote interpreter,
where nothing of weft is installed.  The local side imports it as
``weft._bootstrap.core``; the remote side receives it as module
``weft_boot_core`` next to ``weft_boot_wire`` (see ``weft.execnet._spawn``).

Layering (each piece is a small class so a Rust fast path can replace it):

* ``Codec``      -- ``dumps``/``loads`` of channel payloads: the wire module,
  or ``rust_codec()`` (``weft._weft``) where weft is importable; a worker
  switches in ``worker_main`` when its parent asks (docs/wire.md).
* ``FdIO`` / ``SocketIO`` -- the byte transport: ``read(n)`` (exactly n bytes
  or ``EOFError``), ``write(data)``, ``close_read()``, ``close_write()``; with
  the Rust codec also ``read_frames()`` (whole frames, in batches, the GIL
  released while blocked) and ``send(code, cid, item)`` (serialize, frame and
  write in one call).
* ``BaseGateway`` -- one receiver thread per gateway reads frames and
  dispatches them to the ``ChannelFactory``.

Blocking waits: every wait that a user-facing call performs (Channel.receive,
Channel.waitclose, Reply.get, WorkerPool.waitall, Gateway.join, ...) goes
through ``block_until(event, timeout)`` below.  ``event`` is anything with
``is_set()`` and ``wait(timeout)`` (a ``threading.Event``).  The local side
installs ``weft.execnet._wait.block_until`` here with ``set_wait_hook``; a
tasklet scheduler takes over blocking by replacing that one function.
"""

import _thread
import os
import sys
import time
import weakref

try:
    from _collections import deque  # not ``collections``: worker start-up
except ImportError:  # pragma: no cover - not CPython
    from collections import deque

if "weft_boot_wire" in sys.modules:  # remote side: installed by the boot stub
    _wire = sys.modules["weft_boot_wire"]
else:  # local side
    from weft._bootstrap import wire as _wire


def set_codec(codec):
    """Swap the codec: any object with the wire module's API (``dumps``,
    ``loads``, ``pack_message``, ``unpack_header``, ``HEADER_SIZE``, the
    message codes and error classes).  This is the seam for the Rust codec;
    both ends must speak the same bytes (docs/wire.md), so swapping one side
    is safe."""
    global _wire
    _wire = codec


def rust_codec(version=None):
    """The Rust codec (weft._weft, crate weft-wire) behind the pure-Python wire
    module's API, or None where weft's compiled module is not importable (or,
    when ``version`` is given, is not that version of weft).
    It raises the same DumpError/LoadError classes (those of
    weft._bootstrap.wire; on a worker that name is an alias of the boot module
    ``weft_boot_wire``), so errors are caught the same way with either codec."""
    try:
        from weft import _weft
        from weft._bootstrap import wire as py_wire
    except ImportError:
        return None
    if _wire is not py_wire or not hasattr(_weft, "wire_dumps"):
        return None
    if version is not None and getattr(_weft, "__version__", None) != version:
        return None

    class RustCodec:
        pass

    codec = RustCodec()
    for name in dir(py_wire):
        if not name.startswith("__"):
            setattr(codec, name, getattr(py_wire, name))
    codec.dumps = _weft.wire_dumps
    codec.loads = _weft.wire_loads
    codec.rust_version = _weft.__version__
    # the Rust transport (crate weft-transport): FdIO/SocketIO use it
    # and a lighter Event for the item queues
    for name in ("FrameReader", "FrameWriter", "Event", "ItemQueue", "flush_wakeups"):
        setattr(codec, name, getattr(_weft, name, None))
    return codec


def codec_name():
    """``"rust"`` or ``"python"``: the codec this side uses now."""
    return "rust" if getattr(_wire, "rust_version", None) else "python"


def rust_version():
    """The weft version whose Rust codec this side uses, or None."""
    return getattr(_wire, "rust_version", None)


DataFormatError = _wire.DataFormatError
DumpError = _wire.DumpError
LoadError = _wire.LoadError
HEADER_SIZE = _wire.HEADER_SIZE

STATUS = _wire.STATUS
RECONFIGURE = _wire.RECONFIGURE
GATEWAY_TERMINATE = _wire.GATEWAY_TERMINATE
CHANNEL_EXEC = _wire.CHANNEL_EXEC
CHANNEL_DATA = _wire.CHANNEL_DATA
CHANNEL_CLOSE = _wire.CHANNEL_CLOSE
CHANNEL_CLOSE_ERROR = _wire.CHANNEL_CLOSE_ERROR
CHANNEL_LAST_MESSAGE = _wire.CHANNEL_LAST_MESSAGE


# --------------------------------------------------------------------------
# Threads, locks, events
# --------------------------------------------------------------------------
# The gateway's own waits and threads use ``_thread`` and, with the Rust
# transport, ``weft._weft.Event``: importing ``threading`` (and the
# ``functools``/``collections`` it pulls in) costs a new worker about 6 ms of
# its start-up.  Where ``threading`` is loaded anyway (the local side, or once
# remote code imports it) threads are made with it, so they carry names.

_Lock = _thread.allocate_lock
_RLock = _thread.RLock
get_ident = _thread.get_ident


def _new_event():
    """An event with ``is_set``/``set``/``clear``/``wait(timeout)``."""
    rust = getattr(_wire, "Event", None)
    if rust is not None:
        return rust()
    import threading
    return threading.Event()


def _start_thread(target, args=(), name=None):
    """Run ``target(*args)`` in a new daemon thread."""
    threading = sys.modules.get("threading")
    if threading is None:
        _thread.start_new_thread(target, tuple(args))
    else:
        threading.Thread(target=target, args=args, name=name, daemon=True).start()


# --------------------------------------------------------------------------
# The one blocking hook
# --------------------------------------------------------------------------

def _thread_block_until(event, timeout=None):
    """Default hook: block the calling OS thread until ``event`` is set."""
    if timeout is not None and timeout < 0:
        timeout = 0
    return event.wait(timeout)


_block_until_hook = _thread_block_until
# True while the hook blocks the calling OS thread (no tasklet scheduler has
# taken it over): then a channel's Rust item queue may block by itself.
_hook_blocks_thread = True


def set_wait_hook(fn, blocks_thread=None):
    """Install ``fn(event, timeout) -> bool`` as the blocking hook;
    ``blocks_thread`` says whether it just blocks the calling OS thread
    (default: only when ``fn`` is None, the built-in hook), or is a function
    that says so for the calling thread at the time of each wait: True,
    False, or a number of seconds the thread may block at a time before it
    asks again (see ``_get_sliced``)."""
    global _block_until_hook, _hook_blocks_thread
    _block_until_hook = fn or _thread_block_until
    if blocks_thread is None:
        blocks_thread = fn is None
    _hook_blocks_thread = blocks_thread if callable(blocks_thread) else bool(blocks_thread)


def block_until(event, timeout=None):
    """Wait until ``event.is_set()`` or ``timeout`` seconds pass; True if set."""
    if event.is_set():
        return True
    return _block_until_hook(event, timeout)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

class RemoteError(Exception):
    """An exception raised on the other side; ``formatted`` is its traceback."""

    def __init__(self, formatted):
        super().__init__(formatted)
        self.formatted = formatted

    def __str__(self):
        return self.formatted

    def __repr__(self):
        return "%s: %s" % (self.__class__.__name__, self.formatted)

    def warn(self):
        if self.formatted != INTERRUPT_TEXT:
            sys.stderr.write("[%s] Warning: unhandled %r\n" % (os.getpid(), self))


class GatewayDied(RemoteError, EOFError):
    """The connection ended without an orderly exit; says how the worker died.

    It is both a ``RemoteError`` and an ``EOFError`` so that code written for
    either (execnet raises ``EOFError`` in this case) catches it.
    """


class TimeoutError(IOError):  # noqa: A001 - execnet's name
    """A blocking channel operation did not finish within its timeout."""


INTERRUPT_TEXT = "keyboard-interrupted"
MAIN_THREAD_ONLY_DEADLOCK_TEXT = (
    "concurrent remote_exec would cause deadlock for main_thread_only execmodel"
)


def geterrortext(exc):
    """The formatted traceback of ``exc`` (what RemoteError carries)."""
    import traceback  # lazily: importing it costs ~15 ms of worker start-up

    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:  # pragma: no cover - formatting itself failed
        return "%s: %s" % (type(exc).__name__, exc)


# --------------------------------------------------------------------------
# Exec models and the worker pool
# --------------------------------------------------------------------------

class ExecModel:
    """How a gateway runs concurrent work: ``thread`` or ``main_thread_only``."""

    def __init__(self, backend):
        self.backend = backend

    def __repr__(self):
        return "<ExecModel %r>" % self.backend

    @property
    def queue(self):
        import queue
        return queue

    @property
    def subprocess(self):
        import subprocess
        return subprocess

    @property
    def socket(self):
        import socket
        return socket

    def start(self, func, args=()):
        _start_thread(func, args)

    def get_ident(self):
        return get_ident()

    def sleep(self, delay):
        time.sleep(delay)

    def fdopen(self, fd, mode, bufsize=-1, closefd=True):
        return os.fdopen(fd, mode, bufsize, closefd=closefd)

    def Lock(self):
        import threading
        return threading.Lock()

    def RLock(self):
        import threading
        return threading.RLock()

    def Event(self):
        import threading
        return threading.Event()


_EXECMODELS = ("thread", "main_thread_only")


def get_execmodel(backend):
    if isinstance(backend, ExecModel):
        return backend
    if backend not in _EXECMODELS:
        raise ValueError(
            "unknown execmodel %r: weft supports %s" % (backend, ", ".join(_EXECMODELS))
        )
    return ExecModel(backend)


class Reply:
    """The result of a ``WorkerPool.spawn``."""

    def __init__(self, task):
        self.task = task
        self._done = _new_event()
        self.running = True
        self._result = None
        self._exc = None

    def get(self, timeout=None):
        self.waitfinish(timeout)
        if self._exc is not None:
            raise self._exc
        return self._result

    def waitfinish(self, timeout=None):
        if not block_until(self._done, timeout):
            raise IOError("timeout waiting for %r" % (self.task,))

    def run(self):
        func, args, kwargs = self.task
        try:
            self._result = func(*args, **kwargs)
        except BaseException as exc:
            self._exc = exc
        finally:
            self.running = False
            self._done.set()


class WorkerPool:
    """Runs tasks in threads; with ``hasprimary`` the calling (main) thread
    takes tasks too, once it calls ``integrate_as_primary_thread``."""

    def __init__(self, execmodel, hasprimary=False, primary_only=False):
        self.execmodel = execmodel
        self._primary_only = primary_only
        self._running_lock = _Lock()
        self._running = set()
        self._shuttingdown = False
        self._idle = _new_event()
        self._idle.set()
        self._primary = None
        if hasprimary:
            self._primary = deque()
            self._primary_wakeup = _new_event()
            # idle from the start: the first task waits in the queue until the
            # main thread enters integrate_as_primary_thread (execnet runs
            # the first remote_exec in the main thread; signal handlers need it)
            self._primary_busy = False

    def integrate_as_primary_thread(self):
        assert self._primary is not None
        while True:
            with self._running_lock:
                self._primary_busy = False
                task = self._primary.popleft() if self._primary else None
                if task is None:
                    if self._shuttingdown:
                        return
                    self._primary_wakeup.clear()
                else:
                    self._primary_busy = True
            if task is None:
                self._primary_wakeup.wait()
                continue
            try:
                task.run()
            finally:
                self._finished(task)

    def trigger_shutdown(self):
        with self._running_lock:
            self._shuttingdown = True
            if self._primary is not None:
                self._primary_wakeup.set()

    def active_count(self):
        return len(self._running)

    def _finished(self, reply):
        with self._running_lock:
            self._running.discard(reply)
            if not self._running:
                self._idle.set()

    def _run_thread(self, reply):
        try:
            reply.run()
        finally:
            self._finished(reply)

    def spawn(self, func, *args, **kwargs):
        reply = Reply((func, args, kwargs))
        with self._running_lock:
            if self._shuttingdown:
                raise ValueError("pool is shutting down")
            self._running.add(reply)
            self._idle.clear()
            if self._primary is not None and (self._primary_only or not self._primary_busy):
                self._primary_busy = True
                self._primary.append(reply)
                self._primary_wakeup.set()
                return reply
        self.execmodel.start(self._run_thread, (reply,))
        return reply

    def terminate(self, timeout=None):
        self.trigger_shutdown()
        return self.waitall(timeout)

    def waitall(self, timeout=None):
        return block_until(self._idle, timeout)


# --------------------------------------------------------------------------
# Transports
# --------------------------------------------------------------------------

# Frames larger than this are refused before anything is allocated for them.
MAX_FRAME_SIZE = int(os.environ.get("WEFT_EXECNET_MAX_FRAME", 1 << 30))
_CHUNK = 1 << 20


def _read_exact(rfile, n):
    """Exactly ``n`` bytes from a buffered binary file, or EOFError.  Large
    reads grow with the data that arrives instead of allocating ``n`` up front."""
    if n <= _CHUNK:
        data = rfile.read(n)
        if len(data) < n:
            raise EOFError("expected %d bytes, got %d" % (n, len(data)))
        return data
    buf = bytearray()
    while len(buf) < n:
        chunk = rfile.read(min(_CHUNK, n - len(buf)))
        if not chunk:
            raise EOFError("expected %d bytes, got %d" % (n, len(buf)))
        buf += chunk
    return bytes(buf)


# Pipes get this much kernel buffer (F_SETPIPE_SZ) where the system allows:
# fewer wake-ups per bulk message than the default 64 KiB.
PIPE_SIZE = 1 << 20


def _grow_pipe(fd):
    try:
        import fcntl
        setsz = fcntl.F_SETPIPE_SZ
    except (ImportError, AttributeError):
        return
    size = PIPE_SIZE
    while size > 65536:
        try:
            fcntl.fcntl(fd, setsz, size)
            return
        except OSError as exc:
            if exc.errno != 1:  # EPERM: over the limit; anything else: no pipe
                return
            size //= 2


_SLICE = 0.05  # seconds a blocked write waits before it looks around again


class _PyWriter:
    """``weft._weft.FrameWriter``'s pure-Python twin: whole frames, one
    thread at a time, refused after ``close()``.

    A write never blocks for long: the descriptor is written without waiting
    (``MSG_DONTWAIT`` on a socket; ``FdIO`` makes its pipes non-blocking)
    and a full one is polled for in slices, so signal handlers run (Ctrl-C)
    and a ``close()`` from another thread is noticed.  A frame cut short
    after some of its bytes went out (a handler raised, ``close()``, an
    error) would leave the peer a torn frame: the writer is then *broken*,
    every later write raises OSError saying why, and nothing more is sent.

    ``encode(data)``, if given, turns a frame into the bytes to write (the
    session record layer) and returns ``(blob, undo)``; ``undo()`` is called
    when not a byte of ``blob`` went out."""

    def __init__(self, fd, sock=None, encode=None):
        self._fd = fd
        self._sock = sock
        if sock is not None:
            import socket
            self._flags = socket.MSG_DONTWAIT
        self._encode = encode
        self._lock = _Lock()
        self._owner = None  # the thread holding _lock
        self._closed = False
        self._close_called = False
        self.broken = None

    @property
    def closed(self):
        """Whether writes are refused (closed, or a frame was torn)."""
        return self._closed

    def _closed_error(self):
        if self.broken:
            return OSError(32, self.broken)
        return ValueError("write to closed transport")

    def _write_some(self, view):
        try:
            if self._sock is not None:
                return self._sock.send(view, self._flags)
            return os.write(self._fd, view)
        except BlockingIOError:
            return 0

    def _wait_writable(self, timeout):
        import select
        poll = select.poll()
        poll.register(self._fd, select.POLLOUT)
        poll.poll(int(timeout * 1000))

    def _write_all(self, data, give_up=None):
        """Write a whole frame, holding the lock; False if ``give_up`` (a
        time.monotonic() value) passed before its first byte went out."""
        undo = None
        if self._encode is not None:
            data, undo = self._encode(data)
        view = memoryview(data)
        total = len(view)
        done = 0
        try:
            while done < total:
                if self._closed:
                    raise OSError(32, "the transport was closed while a frame was being written")
                n = self._write_some(view[done:])
                done += n
                if done < total and not n:
                    if done == 0 and give_up is not None and time.monotonic() >= give_up:
                        if undo is not None:
                            undo()
                        return False
                    self._wait_writable(_SLICE)
        except BaseException as exc:
            if 0 < done < total:
                self._closed = True
                self.broken = (
                    "a frame was cut short after %d of %d bytes (%s: %s); the stream "
                    "cannot go on, so this transport sends nothing more"
                    % (done, total, type(exc).__name__, exc))
            elif done == 0 and undo is not None:
                undo()
            raise
        return True

    def write(self, data):
        me = get_ident()
        if self._owner == me:
            raise RuntimeError("send from a signal handler or finalizer while this thread "
                               "is sending: it would wait for itself")
        with self._lock:
            self._owner = me
            try:
                if self._closed:
                    raise self._closed_error()
                self._write_all(data)
            finally:
                self._owner = None

    def try_write(self, data, timeout=None, write_timeout=None):
        """Write ``data`` if the turn comes within ``timeout`` seconds and
        (with ``write_timeout``) its first bytes go out within that many
        more; False (nothing written) otherwise, or once closed."""
        me = get_ident()
        if self._owner == me:
            return False  # this thread is inside a write (a handler, a finalizer)
        if timeout is None:
            got = self._lock.acquire()
        else:
            got = self._lock.acquire(True, max(0.0, timeout)) if timeout > 0 else \
                self._lock.acquire(False)
        if not got:
            return False
        self._owner = me
        try:
            if self._closed:
                return False
            give_up = None if write_timeout is None else time.monotonic() + write_timeout
            return self._write_all(data, give_up)
        finally:
            self._owner = None
            self._lock.release()

    def close(self):
        """Refuse writes from now on (a write in progress stops within a
        slice); True if this call closed it."""
        first = not self._close_called
        self._close_called = True
        self._closed = True
        if self._owner != get_ident():
            with self._lock:  # the writer in progress, if any, has let go
                pass
        # else: this thread is the writer (close from a signal handler inside
        # its write); that write stops at its next look at _closed
        return first


class _Transport:
    """What ``FdIO`` and ``SocketIO`` share.  With the Rust codec, the Rust
    transport (weft-transport): the receiver reads whole frames, the GIL
    released while it blocks (``read_frames``), and ``send(code, cid, item)``
    serializes and writes a channel item in one call."""

    _reader = None
    _rfile = None

    def _init_transport(self, rfd, wfd, sock=None):
        reader = getattr(_wire, "FrameReader", None)
        if reader is None:
            self._writer = _PyWriter(wfd, sock)
            return False
        self._reader = reader(rfd, min(MAX_FRAME_SIZE, 2 ** 31 - 1))
        self.read_frames = self._reader.read_frames
        self._writer = _wire.FrameWriter(wfd)
        self.send = self._writer.send
        return True

    def read(self, n):
        if self._reader is not None:
            return self._reader.read_exact(n)
        return _read_exact(self._rfile, n)

    def write(self, data):
        self._writer.write(data)

    def try_write(self, data, timeout=None, write_timeout=None):
        return self._writer.try_write(data, timeout, write_timeout)

    @property
    def broken(self):
        """Why this transport cannot send any more (a frame was torn), or None."""
        return self._writer.broken


class FdIO(_Transport):
    """Byte transport over a pair of file descriptors (pipes or a socket fd)."""

    def __init__(self, rfd, wfd):
        self._rfd = rfd
        self._wfd = wfd
        self._rclosed = False
        # writes poll in slices instead of blocking (see _PyWriter); the
        # write end of a pipe is ours alone
        try:
            os.set_blocking(wfd, False)
        except OSError:
            pass
        if not self._init_transport(rfd, wfd):
            self._rfile = os.fdopen(rfd, "rb", 65536)
        _grow_pipe(rfd)
        _grow_pipe(wfd)

    def close_read(self):
        if not self._rclosed:
            self._rclosed = True
            try:
                if self._rfile is not None:
                    self._rfile.close()
                else:
                    os.close(self._rfd)
            except OSError:
                pass

    def close_write(self):
        if self._writer.close():
            try:
                os.close(self._wfd)
            except OSError:
                pass


class SocketIO(_Transport):
    """Byte transport over a connected socket."""

    def __init__(self, sock):
        self.sock = sock
        if not self._init_transport(sock.fileno(), sock.fileno(), sock):
            self._rfile = sock.makefile("rb", 65536)

    def close_read(self):
        import socket
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def close_write(self):
        import socket
        if self._writer.close():
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass


# --------------------------------------------------------------------------
# Authenticated sessions (socket gateways; docs/gateways.md, docs/wire.md)
# --------------------------------------------------------------------------
# After the handshake every byte in either direction travels in records:
#   length (4 bytes, big-endian, 1..RECORD_MAX) + data + tag (32 bytes)
#   tag = HMAC-SHA256(direction key, sequence (8 bytes, big-endian) + length + data)
# The keys come from the secret and both nonces (session_keys), the sequence
# counts the records of that direction from 0.  A record that fails its tag
# (forged, altered, replayed, reordered, from another session) ends the
# connection before any of its bytes is used.

RECORD_MAX = 1 << 20
RECORD_TAG = 32


class SessionError(OSError):
    """A record of an authenticated session failed its check."""


def session_keys(secret, nonce_s, nonce_c):
    """``(client->server key, server->client key)`` of one session."""
    import hmac
    base = hmac.digest(secret, b"weft-session" + nonce_s + nonce_c, "sha256")
    return (hmac.digest(base, b"client->server", "sha256"),
            hmac.digest(base, b"server->client", "sha256"))


class RecordSealer:
    """Turns bytes into records for one direction (``seal``)."""

    def __init__(self, key, seq=0):
        import hmac
        self._digest = hmac.digest
        self._key = key
        self.seq = seq

    def seal(self, data):
        """``(records, undo)``: ``undo()`` takes the sequence numbers back."""
        digest, key = self._digest, self._key
        view = memoryview(data)
        start = self.seq
        out = []
        for i in range(0, len(view), RECORD_MAX):
            chunk = view[i:i + RECORD_MAX]
            head = self.seq.to_bytes(8, "big") + len(chunk).to_bytes(4, "big")
            out.append(head[8:])
            out.append(chunk)
            out.append(digest(key, head + chunk, "sha256"))
            self.seq += 1

        def undo():
            self.seq = start
        return b"".join(out), undo


class RecordOpener:
    """Checks and opens the records of one direction, read with
    ``read_exact(n)`` (exactly n bytes or EOFError)."""

    def __init__(self, key, read_exact, seq=0):
        import hmac
        self._digest = hmac.digest
        self._compare = hmac.compare_digest
        self._key = key
        self._read_exact = read_exact
        self.seq = seq

    def next_record(self):
        head = self._read_exact(4)
        length = int.from_bytes(head, "big")
        if not 0 < length <= RECORD_MAX:
            raise SessionError("authenticated session: record %d announces %d bytes "
                               "(1..%d allowed); the connection is not from our peer "
                               "or was tampered with" % (self.seq, length, RECORD_MAX))
        data = self._read_exact(length)
        tag = self._read_exact(RECORD_TAG)
        want = self._digest(self._key, self.seq.to_bytes(8, "big") + head + data, "sha256")
        if not self._compare(tag, want):
            raise SessionError("authenticated session: record %d failed its check "
                               "(forged, altered, replayed or out of order); "
                               "nothing of it was used" % self.seq)
        self.seq += 1
        return data


class SessionSocketIO(_Transport):
    """Byte transport over a socket whose every byte is in authenticated
    records (pure Python on both ends, whatever the codec)."""

    def __init__(self, sock, key_in, key_out, seq_in=0, seq_out=0):
        self.sock = sock
        self._rfile = sock.makefile("rb", 65536)
        self._opener = RecordOpener(key_in, lambda n: _read_exact(self._rfile, n), seq_in)
        self._sealer = RecordSealer(key_out, seq_out)
        self._writer = _PyWriter(sock.fileno(), sock, self._sealer.seal)
        self._inbuf = bytearray()

    def read(self, n):
        buf = self._inbuf
        while len(buf) < n:
            buf += self._opener.next_record()
        data = bytes(buf[:n])
        del buf[:n]
        return data

    close_read = SocketIO.close_read
    close_write = SocketIO.close_write


class Popen2IO:
    """Byte transport over two binary file objects (for tests and tools)."""

    def __init__(self, outfile, infile, execmodel=None):
        self.outfile = outfile
        self.infile = infile
        self._read = getattr(infile, "read")
        self._write = getattr(outfile, "write")

    def read(self, numbytes):
        """Read exactly ``numbytes`` bytes, or raise EOFError."""
        chunks = []
        missing = numbytes
        while missing > 0:
            data = self._read(missing)
            if not data:
                raise EOFError("expected %d bytes, got %d" % (numbytes, numbytes - missing))
            chunks.append(data)
            missing -= len(data)
        return b"".join(chunks)

    def write(self, data):
        self._write(data)
        flush = getattr(self.outfile, "flush", None)
        if flush is not None:
            flush()

    def close_read(self):
        self.infile.close()

    def close_write(self):
        self.outfile.close()


class Message:
    """One frame: message code, channel id and payload bytes."""

    _types = tuple(range(8))  # the eight message codes, as in execnet

    def __init__(self, msgcode, channelid=0, data=b""):
        self.msgcode = msgcode
        self.channelid = channelid
        self.data = data

    @staticmethod
    def from_io(io):
        code, cid, length = _wire.unpack_header(io.read(HEADER_SIZE))
        return Message(code, cid, io.read(length))

    def to_io(self, io):
        io.write(_wire.pack_message(self.msgcode, self.channelid, self.data))

    def __repr__(self):
        name = _wire.MESSAGE_NAMES.get(self.msgcode, self.msgcode)
        return "<Message %s channel=%d lendata=%d>" % (name, self.channelid, len(self.data))


# --------------------------------------------------------------------------
# Channels
# --------------------------------------------------------------------------

class _Endmarker:
    def __repr__(self):
        return "<ENDMARKER>"


ENDMARKER = _Endmarker()
NO_ENDMARKER_WANTED = object()


class Empty(Exception):
    pass


def _get_blocking(items, timeout=None):
    """The next item of an item queue (``_ItemQueue`` or the Rust
    ``ItemQueue``), waiting through ``block_until``; ``Empty`` after
    ``timeout`` seconds.  The wake-up is cleared, then the queue looked at
    once more, then waited for: a ``put`` after that last look finds the
    wake-up clear and sets it."""
    try:
        return items.get_nowait()
    except Empty:
        pass
    deadline = None if timeout is None else time.monotonic() + timeout
    ready = items.event
    while True:
        ready.clear()
        try:
            return items.get_nowait()
        except Empty:
            pass
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise Empty()
        block_until(ready, remaining)


def _get_sliced(items, timeout, slice_):
    """``items.get`` (which may read the gateway itself), blocking the thread
    at most ``slice_`` seconds at a time; between slices the wait hook is
    asked again whether the thread may still block (a tasklet scheduler: has
    another thread handed one of its tasklets something meanwhile?)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return items.get(slice_ if remaining is None else min(slice_, remaining))
        except Empty:
            if remaining is not None and remaining <= slice_:
                raise
        blocks = _hook_blocks_thread
        if blocks is not True and blocks is not False:
            blocks = blocks()
        if blocks is False:
            return _get_blocking(items, None if deadline is None else max(0.0, deadline - time.monotonic()))
        if blocks is True:
            return items.get(None if deadline is None else max(0.0, deadline - time.monotonic()))
        slice_ = blocks


def _new_item_queue():
    """The Rust item queue where this side uses the Rust transport."""
    rust = getattr(_wire, "ItemQueue", None)
    return rust() if rust is not None else _ItemQueue()


class _ItemQueue:
    """FIFO of received items whose waits go through ``block_until``.

    No lock: ``deque.append``/``popleft`` are atomic, and the event is set
    only when a consumer may be waiting.  The producer appends, then sets the
    event if it is clear; a consumer clears the event, then looks at the deque
    once more before it waits.  Whatever the interleaving, an item appended
    before that last look is found, and one appended after it finds the event
    clear and sets it."""

    def __init__(self):
        self._items = deque()
        self._nonempty = _new_event()

    def put(self, item):
        self._items.append(item)
        if not self._nonempty.is_set():
            self._nonempty.set()

    @property
    def event(self):
        return self._nonempty

    def get_nowait(self):
        try:
            return self._items.popleft()
        except IndexError:
            raise Empty() from None

    get = _get_blocking

    def qsize(self):
        return len(self._items)


class Channel:
    """One end of a bidirectional, ordered message stream between two sides."""

    RemoteError = RemoteError
    TimeoutError = TimeoutError
    # execnet polls with this period; weft's waits are event-driven and do not
    # use it, but code (and execnet's tests) may set it
    _INTERNALWAKEUP = 1000
    _executing = False

    def __init__(self, gateway, id):
        assert isinstance(id, int), id
        self.gateway = gateway
        self.id = id
        self._items = _new_item_queue()
        self._closed = False
        self._receiveclosed = _new_event()
        self._remoteerrors = []

    @property
    def _weft_channel_id(self):
        # the wire codec encodes any object carrying this as a channel reference
        return self.id

    def _trace(self, *msg):
        self.gateway._trace(self.id, *msg)

    def setcallback(self, callback, endmarker=NO_ENDMARKER_WANTED):
        """Call ``callback(item)`` from the receiver thread for every item,
        and ``callback(endmarker)`` when the channel closes (if given)."""
        factory = self.gateway._channelfactory
        with factory._receivelock:
            items = self._items
            if items is None:
                raise IOError("%r has callback already registered" % (self,))
            self._items = None
            factory._unroute(self.id)
            while True:
                try:
                    olditem = items.get_nowait()
                except Empty:
                    break
                if olditem is ENDMARKER:
                    items.put(olditem)  # for other receivers
                    if endmarker is not NO_ENDMARKER_WANTED:
                        callback(endmarker)
                    break
                callback(olditem)
            if not self._closed and not self._receiveclosed.is_set():
                factory._callbacks[self.id] = (callback, endmarker)

    def __repr__(self):
        flag = "closed" if self.isclosed() else "open"
        if not self.isclosed() and self._receiveclosed.is_set():
            flag = "sendonly"
        return "<Channel id=%d %s>" % (self.id, flag)

    def __del__(self):
        # A channel nobody references any more: tell the other side.
        try:
            gateway = self.gateway
            if gateway is None:
                return
            if self._items is not None:
                gateway._channelfactory._unroute(self.id, self._items)
            if self._closed:
                return
            if gateway._channelfactory.finished or self._receiveclosed.is_set():
                return
            code = CHANNEL_LAST_MESSAGE if self._items is None else CHANNEL_CLOSE
            # never waits for the writer: a finalizer may run inside a write
            # (a garbage collection, a signal handler) in this very thread
            gateway._send_from_finalizer(code, self.id)
        except Exception:
            pass

    def _getremoteerror(self):
        if self._remoteerrors:
            return self._remoteerrors[0]
        return self.gateway._error

    def isclosed(self):
        """True once the channel is closed for sending (by either side)."""
        return self._closed

    def makefile(self, mode="w", proxyclose=False):
        """A file-like wrapper: ``'w'`` sends what is written, ``'r'`` reads
        received str/bytes items."""
        if mode == "w":
            return ChannelFileWrite(channel=self, proxyclose=proxyclose)
        if mode == "r":
            return ChannelFileRead(channel=self, proxyclose=proxyclose)
        raise ValueError("mode %r not available: use 'r' or 'w'" % (mode,))

    def close(self, error=None):
        """Close the channel; ``error`` (a string) reaches the other side as
        ``RemoteError``."""
        if self._executing:
            raise IOError("cannot explicitly close channel within remote_exec")
        if self._closed:
            return
        self._closed = True
        # Local state first, the message last: once the other side has seen
        # the close it may inspect us (execnet's tests do), so we must be done.
        if isinstance(error, RemoteError):
            self._remoteerrors.append(error)
        self._receiveclosed.set()
        items = self._items
        if items is not None:
            items.put(ENDMARKER)
        self.gateway._channelfactory._no_longer_opened(self.id)
        try:
            if error is not None:
                self.gateway._send(CHANNEL_CLOSE_ERROR, self.id, _wire.dumps(str(error)))
            else:
                self.gateway._send(CHANNEL_CLOSE, self.id)
        except (IOError, ValueError):
            pass  # connection gone: the channel is closed all the same

    def waitclose(self, timeout=None):
        """Wait until the other side closed the channel; re-raise its error."""
        if not block_until(self._receiveclosed, timeout):
            raise self.TimeoutError("Timeout after %r seconds" % (timeout,))
        error = self._getremoteerror()
        if error:
            raise error

    def send(self, item):
        """Send ``item`` (builtin types and channels) to the other side."""
        if self._closed:
            raise IOError("cannot send to %r" % (self,))
        self.gateway._send_item(self.id, item)

    def receive(self, timeout=None):
        """Return the next item; ``EOFError`` or ``RemoteError`` once closed."""
        items = self._items
        if items is None:
            raise IOError("cannot receive(), channel has receiver callback")
        try:
            blocks = _hook_blocks_thread
            if blocks is not True and blocks is not False:
                blocks = blocks()
            if blocks is True:
                x = items.get(timeout)
            elif blocks is False:
                x = _get_blocking(items, timeout)
            else:
                x = _get_sliced(items, timeout, blocks)
        except Empty:
            raise self.TimeoutError("no item after %r seconds" % (timeout,)) from None
        if x is ENDMARKER:
            items.put(x)  # for other receivers
            raise self._getremoteerror() or EOFError()
        return x

    def __iter__(self):
        return self

    def next(self):
        try:
            return self.receive()
        except EOFError:
            raise StopIteration from None

    __next__ = next

    def reconfigure(self, py2str_as_py3str=True, py3str_as_py2str=False):
        # Python 2 peers are not supported; kept for API compatibility.
        pass


class ChannelFactory:
    """Owns the channels of one gateway, keyed by id."""

    def __init__(self, gateway, startcount=1):
        self._channels = weakref.WeakValueDictionary()
        self._callbacks = {}
        self._writelock = _Lock()
        self._receivelock = _RLock()
        self.gateway = gateway
        self.count = startcount
        self.finished = False
        self._list = list  # for cleanup during interpreter shutdown
        # the Rust transport puts items of routed channels into their queues
        # itself (FrameReader.route); a channel is routed while it has a queue
        self._reader = getattr(getattr(gateway, "_io", None), "_reader", None)
        # ... and a thread waiting in receive() may read frames itself
        # (docs/gateways.md, "Direct read"); WEFT_EXECNET_DIRECT_READ=0: never
        self._direct_read = (self._reader is not None
                             and os.environ.get("WEFT_EXECNET_DIRECT_READ", "1") != "0")

    def new(self, id=None):
        """A new channel, or the one with ``id`` (made if needed)."""
        with self._writelock:
            if self.finished:
                raise IOError("connection already closed: %r" % (self.gateway,))
            if id is None:
                id = self.count
                self.count += 2
            try:
                channel = self._channels[id]
            except KeyError:
                channel = self._channels[id] = Channel(self.gateway, id)
                if self._reader is not None and not isinstance(channel._items, _ItemQueue):
                    self._reader.route(id, channel._items)
                    if self._direct_read:
                        channel._items.attach(self._reader)
            return channel

    def _unroute(self, id, queue=None):
        """Stop routing channel ``id`` (only from ``queue``, if given)."""
        if self._reader is not None:
            self._reader.unroute(id, queue)

    def channels(self):
        return self._list(self._channels.values())

    def _no_longer_opened(self, id):
        self._unroute(id)
        try:
            del self._channels[id]
        except KeyError:
            pass
        try:
            callback, endmarker = self._callbacks.pop(id)
        except KeyError:
            pass
        else:
            if endmarker is not NO_ENDMARKER_WANTED:
                try:
                    callback(endmarker)
                except BaseException as exc:
                    # only this channel's business: report it, go on
                    self._callback_failed(id, exc)

    def _callback_failed(self, id, exc):
        errortext = geterrortext(exc)
        self.gateway._trace("channel %d: callback failed on its endmarker: %r" % (id, exc))
        try:
            sys.stderr.write("[%s] weft: the callback of channel %d raised on its "
                             "endmarker (the channel was closing anyway):\n%s"
                             % (os.getpid(), id, errortext))
        except Exception:
            pass

    def _local_close(self, id, remoteerror=None, sendonly=False):
        channel = self._channels.get(id)
        if channel is None:
            # nobody holds the channel any more
            if remoteerror and not isinstance(remoteerror, GatewayDied):
                remoteerror.warn()
        else:
            if remoteerror:
                channel._remoteerrors.append(remoteerror)
            items = channel._items
            if items is not None:
                items.put(ENDMARKER)
            if not sendonly:
                channel._closed = True
            channel._receiveclosed.set()
        self._no_longer_opened(id)

    def _local_receive(self, id, data):
        with self._receivelock:
            entry = self._callbacks.get(id)
            if entry is None:
                channel = self._channels.get(id)
                items = channel._items if channel is not None else None
                if items is None:
                    return  # nobody listens: drop
                try:
                    items.put(_wire.loads(data, channel_factory=self.new))
                except LoadError as exc:
                    self._reject(id, exc)
                return
            callback, endmarker = entry
            try:
                callback(_wire.loads(data, channel_factory=self.new))
            except BaseException as exc:  # ends this channel, not the gateway
                self._reject(id, exc)

    def _reject(self, id, exc):
        errortext = geterrortext(exc)
        self.gateway._trace("channel %d: callback/decoding failed: %r" % (id, exc))
        try:
            self.gateway._send(CHANNEL_CLOSE_ERROR, id, _wire.dumps(errortext))
        except (IOError, ValueError):
            pass
        self._local_close(id, RemoteError(errortext))

    def _finished_receiving(self, error=None):
        with self._writelock:
            self.finished = True
        if self._reader is not None:
            self._reader.unroute_all()
        for id in self._list(self._channels):
            self._local_close(id, error, sendonly=error is None)
        for id in self._list(self._callbacks):
            self._no_longer_opened(id)


class ChannelFile:
    def __init__(self, channel, proxyclose=True):
        self.channel = channel
        self._proxyclose = proxyclose

    def isatty(self):
        return False

    def close(self):
        if self._proxyclose:
            self.channel.close()

    def __repr__(self):
        state = "closed" if self.channel.isclosed() else "open"
        return "<ChannelFile %d %s>" % (self.channel.id, state)


class ChannelFileWrite(ChannelFile):
    def write(self, out):
        if out:
            self.channel.send(out)

    def flush(self):
        pass


class ChannelFileRead(ChannelFile):
    def __init__(self, channel, proxyclose=True):
        super().__init__(channel, proxyclose)
        self._buffer = None

    def read(self, n):
        try:
            if self._buffer is None:
                self._buffer = self.channel.receive()
            while len(self._buffer) < n:
                self._buffer += self.channel.receive()
        except EOFError:
            self.close()
        if self._buffer is None:
            ret = ""
        else:
            ret = self._buffer[:n]
            self._buffer = self._buffer[n:]
        return ret

    def readline(self):
        if self._buffer is not None:
            i = self._buffer.find("\n")
            if i != -1:
                return self.read(i + 1)
            line = self.read(len(self._buffer) + 1)
        else:
            line = self.read(1)
        while line and line[-1] != "\n":
            c = self.read(1)
            if not c:
                break
            line += c
        return line


# --------------------------------------------------------------------------
# Gateways
# --------------------------------------------------------------------------

class _GatewayTerminate(Exception):
    pass


def _trace_enabled():
    return bool(os.environ.get("WEFT_EXECNET_DEBUG"))


class BaseGateway:
    """Frames, the receiver thread and message dispatch; shared by both ends."""

    _error = None
    _sysid = "local"

    def __init__(self, io, id, execmodel=None, _startcount=2):
        self.execmodel = get_execmodel(execmodel or "thread")
        self._io = io
        self.id = id
        self._strconfig = (True, False)
        self._channelfactory = ChannelFactory(self, _startcount)
        self._receivelock = _RLock()
        self._receive_done = _new_event()
        # the Rust transport frames and writes an item in one call
        self._io_send = getattr(io, "send", None)
        # bodiless messages from finalizers, waiting for the writer's turn
        self._deferred = deque()

    def _trace(self, *msg):
        if _trace_enabled():
            sys.stderr.write("[weft %s %s] %s\n" % (
                self._sysid, os.getpid(), " ".join(str(m) for m in msg)))

    def _initreceive(self):
        _start_thread(self._thread_receiver, name="weft-receiver-%s" % (self.id,))

    def _read_frame(self):
        header = self._io.read(HEADER_SIZE)
        code, cid, length = _wire.unpack_header(header, MAX_FRAME_SIZE)
        return code, cid, self._io.read(length)

    def _thread_receiver(self):
        error = None
        read_frames = getattr(self._io, "read_frames", None)
        dispatch = self._dispatch
        try:
            try:
                if read_frames is not None:  # Rust transport: frames in batches
                    receive = self._channelfactory._local_receive
                    while True:
                        for code, cid, payload in read_frames():
                            if code == CHANNEL_DATA:
                                receive(cid, payload)
                            else:
                                dispatch(code, cid, payload)
                while True:
                    code, cid, payload = self._read_frame()
                    dispatch(code, cid, payload)
            except _GatewayTerminate:
                self._trace("received terminate")
            except EOFError as exc:
                self._trace("EOF on transport: %r" % (exc,))
                error = self._connection_lost(exc)
            except (OSError, ValueError, DataFormatError) as exc:
                self._trace("transport error: %r" % (exc,))
                error = self._connection_lost(exc)
                # the stream is unusable: let the other side see its end
                try:
                    self._io.close_write()
                except Exception:
                    pass
            except BaseException as exc:  # pragma: no cover - a bug in dispatch
                self._trace("receiver crashed: %s" % geterrortext(exc))
                error = GatewayDied("receiver thread crashed:\n" + geterrortext(exc))
            if read_frames is not None:
                # threads waiting for items stop reading for themselves, and
                # wake-ups this thread held back are sent (docs/gateways.md)
                self._io._reader.close_role()
                _wire.flush_wakeups()
            if error is not None:
                self._error = error
            try:
                self._io.close_read()
            except Exception:
                pass
            self._channelfactory._finished_receiving(error)
            self._receiver_finished()
        finally:
            self._receive_done.set()

    def _connection_lost(self, exc):
        """Return the error channels end with (None for an orderly end)."""
        return None

    def _receiver_finished(self):
        pass

    def _dispatch(self, code, cid, payload):
        factory = self._channelfactory
        if code == CHANNEL_DATA:
            factory._local_receive(cid, payload)
        elif code == CHANNEL_CLOSE:
            factory._local_close(cid)
        elif code == CHANNEL_CLOSE_ERROR:
            try:
                text = _wire.loads(payload)
            except LoadError as exc:
                text = ("the other side closed channel %d with an error this side cannot "
                        "decode: %s" % (cid, exc))
            if not isinstance(text, str):
                text = "the other side closed channel %d with a %s, not an error text: %.200r" % (
                    cid, type(text).__name__, text)
            factory._local_close(cid, RemoteError(text))
        elif code == CHANNEL_LAST_MESSAGE:
            factory._local_close(cid, sendonly=True)
        elif code == CHANNEL_EXEC:
            self._local_schedulexec(factory.new(cid), payload)
        elif code == STATUS:
            self._status_reply(cid)
        elif code == RECONFIGURE:
            if cid == 0:
                config = _wire.loads(payload)
                if not (isinstance(config, (tuple, list)) and len(config) == 2
                        and all(isinstance(x, bool) for x in config)):
                    raise DataFormatError(
                        "RECONFIGURE carries %.200r, not a pair of booleans" % (config,))
                self._strconfig = tuple(config)
        elif code == GATEWAY_TERMINATE:
            self._terminate_execution()
            raise _GatewayTerminate()
        else:
            raise DataFormatError("unknown message code %r" % (code,))

    def _status_reply(self, cid):
        pool = getattr(self, "_execpool", None)
        status = {
            "numchannels": len(self._channelfactory._channels),
            "numexecuting": pool.active_count() if pool is not None else 0,
            "execqsize": 0,
        }
        self._send(CHANNEL_DATA, cid, _wire.dumps(status))
        self._send(CHANNEL_CLOSE, cid)

    def _local_schedulexec(self, channel, payload):
        channel.close("execution disallowed")

    def _terminate_execution(self):
        pass

    def _send_item(self, cid, item):
        """Send ``item`` on channel ``cid`` (CHANNEL_DATA)."""
        send = self._io_send
        if send is None:
            return self._send(CHANNEL_DATA, cid, _wire.dumps(item))
        try:
            send(CHANNEL_DATA, cid, item)
        except DataFormatError:
            raise
        except (OSError, ValueError) as exc:
            if isinstance(exc, ValueError) and not getattr(self._io._writer, "closed", True):
                raise  # the item's own error (as the pure-Python dumps raises it)
            raise self._send_failed(exc) from exc
        except BaseException:
            self._check_torn()
            raise
        if self._deferred:
            self._flush_deferred()

    def _send(self, code, cid=0, data=b""):
        frame = _wire.pack_message(code, cid, data)
        try:
            self._io.write(frame)
        except (OSError, ValueError) as exc:
            raise self._send_failed(exc) from exc
        except BaseException:
            self._check_torn()
            raise
        if self._deferred:
            self._flush_deferred()

    def _check_torn(self):
        """After a send was interrupted: if its frame went out in part, the
        stream is over; end the connection so the other side knows it."""
        if getattr(self._io, "broken", None):
            self._trace("frame torn: %s" % (self._io.broken,))
            try:
                self._io.close_write()
            except Exception:
                pass

    def _send_failed(self, exc):
        """The IOError a send raises when the transport refused it."""
        self._trace("failed to send frame: %r" % (exc,))
        self._check_torn()
        broken = getattr(self._io, "broken", None)
        if broken:
            return IOError("cannot send on %r: %s" % (self, broken))
        return IOError("cannot send (already closed?) on %r" % (self,))

    def _send_from_finalizer(self, code, cid):
        """Send a bodiless message without waiting for the writer (from
        ``Channel.__del__``): if another write is in progress, possibly in
        this very thread, the message waits in ``_deferred`` and that
        writer sends it when it is done."""
        self._deferred.append(_wire.pack_message(code, cid, b""))
        self._flush_deferred()

    def _flush_deferred(self):
        deferred = self._deferred
        try_write = getattr(self._io, "try_write", None)
        # twice: a turn taken by someone else after our first try is held
        # by a writer that looks at _deferred again when it is done
        for _ in (0, 1):
            while deferred:
                try:
                    frame = deferred.popleft()
                except IndexError:
                    return
                try:
                    if try_write is None:
                        self._io.write(frame)
                        continue
                    if not try_write(frame, 0):
                        deferred.appendleft(frame)
                        break
                except Exception:
                    deferred.clear()  # the transport is gone
                    return
            else:
                return

    def newchannel(self):
        """Return a new independent channel."""
        return self._channelfactory.new()

    def join(self, timeout=None):
        """Wait for the receiver thread to finish."""
        return block_until(self._receive_done, timeout)


class WorkerGateway(BaseGateway):
    """The remote end: executes ``remote_exec`` tasks."""

    _sysid = "worker"

    def _local_schedulexec(self, channel, payload):
        if self.execmodel.backend == "main_thread_only":
            if not self._executetask_complete.wait(timeout=1):
                channel.close(MAIN_THREAD_ONLY_DEADLOCK_TEXT)
                return
            self._executetask_complete.clear()
        try:
            task = _wire.loads(payload)
            source, file_name, call_name, kwargs = task
            if not (isinstance(source, str) and isinstance(kwargs, dict)):
                raise TypeError("not (str, file_name, call_name, dict)")
        except (LoadError, TypeError, ValueError) as exc:
            channel.close("cannot run this CHANNEL_EXEC: its payload is not a valid task "
                          "(%s: %s)" % (type(exc).__name__, exc))
            return
        try:
            self._execpool.spawn(self.executetask, channel, task)
        except ValueError:
            channel.close("gateway is shutting down")

    def executetask(self, channel, task):
        source, file_name, call_name, kwargs = task
        loc = {"channel": channel, "__name__": "__channelexec__"}
        error = None
        channel._executing = True
        try:
            co = compile(source + "\n", file_name or "<remote exec>", "exec")
            exec(co, loc)
            if call_name:
                loc[call_name](channel, **kwargs)
        except KeyboardInterrupt:
            error = INTERRUPT_TEXT
        except BaseException as exc:
            if not (isinstance(exc, EOFError) and self._channelfactory.finished):
                error = geterrortext(exc)
        finally:
            channel._executing = False
        channel.close(error)
        if self._executetask_complete is not None:
            self._executetask_complete.set()

    def _terminate_execution(self):
        self._execpool.trigger_shutdown()
        # give running tasks a moment; the process exits after serve() anyway
        _start_thread(self._exit_if_stuck)

    def _exit_if_stuck(self):
        if not self._execpool.waitall(5.0):
            self._trace("execution still running 5 s after terminate: exiting")
            os._exit(1)

    def _receiver_finished(self):
        # The connection is gone (or we were told to exit): nobody can talk to
        # us any more, so a task that does not finish soon must not keep this
        # process alive as an orphan.
        self._execpool.trigger_shutdown()
        _start_thread(self._exit_if_stuck)
        try:
            self._io.close_write()
        except Exception:
            pass

    def serve(self):
        self._execpool = WorkerPool(
            self.execmodel, hasprimary=True,
            primary_only=self.execmodel.backend == "main_thread_only")
        self._executetask_complete = None
        if self.execmodel.backend == "main_thread_only":
            self._executetask_complete = _new_event()
            self._executetask_complete.set()
        self._initreceive()
        try:
            self._execpool.integrate_as_primary_thread()
            self.join()
        except KeyboardInterrupt:
            pass


def worker_main(config, boot_fd=None):
    """Entry point of a booted worker; ``config`` comes from the boot stub and
    ``boot_fd`` is the descriptor the boot source was read from."""
    for name, value in config.get("env", {}).items():
        os.environ[name] = value
    if config.get("dont_write_bytecode"):
        sys.dont_write_bytecode = True
    if config.get("nice"):
        try:
            os.nice(int(config["nice"]))
        except (AttributeError, OSError):
            pass
    if config.get("chdir"):
        os.makedirs(config["chdir"], exist_ok=True)
        os.chdir(config["chdir"])
    if config.get("sys_path_cwd", True) and "" not in sys.path:
        sys.path.insert(0, "")
    # Codec negotiation (docs/wire.md): the parent names the weft version whose
    # Rust codec it uses; if that same weft is importable here, use it too.
    # Both codecs write the same bytes, so a worker without weft (or with
    # another version) simply stays on the pure-Python codec.
    wanted = config.get("rust")
    if wanted and not os.environ.get("WEFT_PURE_PYTHON_CODEC"):
        fast = rust_codec(wanted)
        if fast is not None:
            set_codec(fast)
    kind = config["transport"]
    if kind == "fds" and config.get("rfd") is None:
        # fds chosen by whoever spawned us (a via= proxy): "READFD,WRITEFD"
        rfd, wfd = os.environ.pop("WEFT_BOOT_FDS").split(",")
        config["rfd"], config["wfd"] = int(rfd), int(wfd)
    if kind == "socketfd":
        import socket
        # an authenticating server hands us the session on the boot pipe
        # (socketserver.py): "SOCKFD KEY_IN KEY_OUT SEQ_IN SEQ_OUT"
        session = getattr(sys.modules.get("__main__"), "_weft_session", None)
        if session is not None:
            fd, key_in, key_out, seq_in, seq_out = session.split()
            io = SessionSocketIO(socket.socket(fileno=int(fd)), bytes.fromhex(key_in.decode()),
                                 bytes.fromhex(key_out.decode()), int(seq_in), int(seq_out))
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
        else:
            io = SocketIO(socket.socket(fileno=boot_fd))
    elif kind == "fds":
        io = FdIO(config["rfd"], config["wfd"])
        # stdin was the boot channel: detach it so remote code cannot eat it
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    elif kind == "stdio":
        # stdin/stdout are the transport (ssh): keep them on private fds and
        # point fd 1 at stderr so that prints reach the parent's stderr.
        rfd = os.dup(0)
        wfd = os.dup(1)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)
        io = FdIO(rfd, wfd)
    else:
        raise ValueError("unknown transport %r" % (kind,))
    gw = WorkerGateway(io, config.get("id", "worker"), config.get("execmodel", "thread"),
                       _startcount=2)
    if config.get("ack"):
        # the parent's makegateway returns once it reads this (as execnet's)
        io.write(b"1")
    gw.serve()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass
    os._exit(0)
