"""Byte transports of a gateway: ``read(n)`` (exactly n bytes or
``EOFError``), ``write(data)``, ``close_read()``, ``close_write()``; with the
Rust codec also ``read_frames()`` (whole frames, in batches, the GIL released
while blocked) and ``send(code, cid, item)`` (serialize, frame and write in
one call).  Plus ``Message``, one frame."""

import os
import time

from . import codec as _codec
from .threads import get_ident, new_lock
from .wire import HEADER_SIZE

# Frames larger than this are refused before anything is allocated for them.
MAX_FRAME_SIZE = int(os.environ.get("WEFT_EXECNET_MAX_FRAME", 1 << 30))
_CHUNK = 1 << 20


def read_exact(rfile, n):
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


class WaitingReader:
    """A binary file's ``read(n)`` (n bytes, fewer only at the end) over a
    non-blocking descriptor, waiting for data with ``wait_readable(fd)``
    (a green exec model's: the hub runs the other green threads meanwhile)."""

    def __init__(self, fd, wait_readable):
        os.set_blocking(fd, False)
        self._fd = fd
        self._wait = wait_readable
        self._buf = bytearray()
        self.closed = False

    def read(self, n):
        buf = self._buf
        while len(buf) < n:
            try:
                chunk = os.read(self._fd, max(65536, n - len(buf)))
            except BlockingIOError:
                self._wait(self._fd)
                continue
            if not chunk:
                break
            buf += chunk
        data = bytes(buf[:n])
        del buf[:n]
        return data

    def close(self):
        if not self.closed:
            self.closed = True
            os.close(self._fd)


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


class PyWriter:
    """``weft._weft.FrameWriter``'s pure-Python twin: whole frames, one
    thread at a time, refused after ``close()``.

    A write never blocks for long: the descriptor is written without waiting
    (``MSG_DONTWAIT`` on a socket; ``FdIO`` makes its pipes non-blocking)
    and a full one is polled for in slices, so signal handlers run (Ctrl-C)
    and a ``close()`` from another thread is noticed.  A frame cut short
    after some of its bytes went out (a handler raised, ``close()``, an
    error) would leave the peer a torn frame: the writer is then *broken*,
    every later write raises OSError saying why, and nothing more is sent.

    With ``green`` (an eventlet or gevent exec model) a full descriptor is
    waited for in the model's hub, so the other green threads run meanwhile.

    ``encode(data)``, if given, turns a frame into the bytes to write (the
    session record layer) and returns ``(blob, undo)``; ``undo()`` is called
    when not a byte of ``blob`` went out."""

    def __init__(self, fd, sock=None, encode=None, green=None):
        self._fd = fd
        self._sock = sock
        if sock is not None:
            import socket
            self._flags = socket.MSG_DONTWAIT
        self._encode = encode
        if green is not None:
            # a green exec model: a full descriptor is waited for in its hub,
            # so the lock and the owner are its (green threads take turns)
            self._lock = green.core_lock()
            self._ident = green.get_ident
            self._green_wait = green.wait_writable
        else:
            self._lock = new_lock()
            self._ident = get_ident
            self._green_wait = None
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
        return ValueError("write to closed transport: this gateway connection was closed "
                          "(gateway.exit(), or its other side ended); make a new gateway to send more")

    def _write_some(self, view):
        try:
            if self._sock is not None:
                return self._sock.send(view, self._flags)
            return os.write(self._fd, view)
        except BlockingIOError:
            return 0

    def _wait_writable(self, timeout):
        if self._green_wait is not None:
            self._green_wait(self._fd, timeout)
            return
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
        me = self._ident()
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
        me = self._ident()
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
        if self._owner != self._ident():
            with self._lock:  # the writer in progress, if any, has let go
                pass
        # else: this thread is the writer (close from a signal handler inside
        # its write); that write stops at its next look at _closed
        return first


class Transport:
    """What ``FdIO`` and ``SocketIO`` share.  With the Rust codec, the Rust
    transport (weft-transport): the receiver reads whole frames, the GIL
    released while it blocks (``read_frames``), and ``send(code, cid, item)``
    serializes and writes a channel item in one call."""

    _reader = None
    _rfile = None
    # the green or tasklet exec model this transport's reads and writes wait in (None: threads)
    green = None

    def _init_transport(self, rfd, wfd, sock=None, green=None):
        """The Rust transport, if the codec has one and the exec model
        (``green``, None for threads) can use it; False otherwise."""
        reader = getattr(_codec.current, "FrameReader", None)
        if green is not None and not green.rust_transport:
            return False
        if reader is None:
            self._writer = PyWriter(wfd, sock)
            return False
        self._reader = reader(rfd, min(MAX_FRAME_SIZE, 2 ** 31 - 1))
        self.read_frames = self._reader.read_frames
        self._writer = _codec.current.FrameWriter(wfd)
        self.send = self._writer.send
        return True

    def read(self, n):
        if self._reader is not None:
            return self._reader.read_exact(n)
        return read_exact(self._rfile, n)

    def write(self, data):
        self._writer.write(data)

    def try_write(self, data, timeout=None, write_timeout=None):
        return self._writer.try_write(data, timeout, write_timeout)

    @property
    def broken(self):
        """Why this transport cannot send any more (a frame was torn), or None."""
        return self._writer.broken


class FdIO(Transport):
    """Byte transport over a pair of file descriptors (pipes or a socket fd)."""

    def __init__(self, rfd, wfd, green=None):
        self._rfd = rfd
        self._wfd = wfd
        self._rclosed = False
        # writes poll in slices instead of blocking (see PyWriter); the
        # write end of a pipe is ours alone
        try:
            os.set_blocking(wfd, False)
        except OSError:
            pass
        self.green = green  # a green or tasklet model: reads and writes wait in it
        if not self._init_transport(rfd, wfd, green=green):
            if green is not None:
                self._writer = PyWriter(wfd, green=green)
                self._rfile = WaitingReader(rfd, green.wait_readable)
            else:
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


class SocketIO(Transport):
    """Byte transport over a connected socket."""

    def __init__(self, sock, green=None):
        self.sock = sock
        self.green = green  # a green or tasklet model: reads and writes wait in it
        if not self._init_transport(sock.fileno(), sock.fileno(), sock, green=green):
            if green is not None:
                self._writer = PyWriter(sock.fileno(), sock, green=green)
                self._rfile = WaitingReader(os.dup(sock.fileno()), green.wait_readable)
            else:
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
        code, cid, length = _codec.current.unpack_header(io.read(HEADER_SIZE))
        return Message(code, cid, io.read(length))

    def to_io(self, io):
        io.write(_codec.current.pack_message(self.msgcode, self.channelid, self.data))

    def __repr__(self):
        name = _codec.current.MESSAGE_NAMES.get(self.msgcode, self.msgcode)
        return "<Message %s channel=%d lendata=%d>" % (name, self.channelid, len(self.data))

