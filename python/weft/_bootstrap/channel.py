"""Channels: one end of an ordered message stream, the item queues behind
``receive()``, the factory owning a gateway's channels, and channel files."""

import os
import sys
import time
import weakref

try:
    from _collections import deque  # not ``collections``: worker start-up
except ImportError:  # pragma: no cover - not CPython
    from collections import deque

from . import codec as _codec
from . import waits as _waits
from .errors import GatewayDied, RemoteError, TimeoutError, geterrortext
from .threads import new_event, new_lock, new_rlock
from .waits import block_until
from .wire import CHANNEL_CLOSE, CHANNEL_CLOSE_ERROR, CHANNEL_LAST_MESSAGE, LoadError

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
        blocks = _waits.hook_blocks_thread
        if blocks is not True and blocks is not False:
            blocks = blocks()
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if blocks is False:
            return _get_blocking(items, left)
        if blocks is True:
            return items.get(left)
        slice_ = blocks


def _new_item_queue(new_event, rust_ok=True):
    """The Rust item queue where this side uses the Rust transport (and
    ``rust_ok``: not for a gateway whose core runs in green threads), else one
    whose wake-ups are ``new_event()`` events (the gateway's exec model's)."""
    rust = getattr(_codec.current, "ItemQueue", None) if rust_ok else None
    return rust() if rust is not None else _ItemQueue(new_event)


class _ItemQueue:
    """FIFO of received items whose waits go through ``block_until``.

    No lock: ``deque.append``/``popleft`` are atomic, and the event is set
    only when a consumer may be waiting.  The producer appends, then sets the
    event if it is clear; a consumer clears the event, then looks at the deque
    once more before it waits.  Whatever the interleaving, an item appended
    before that last look is found, and one appended after it finds the event
    clear and sets it."""

    def __init__(self, new_event=new_event):
        self._items = deque()
        self._nonempty = new_event()

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
        # the events of the gateway's exec model (a stand-in gateway without
        # one, as in execnet's tests, gets thread events)
        make_event = getattr(gateway, "_new_event", new_event)
        core = getattr(gateway, "_core", None)
        self._items = _new_item_queue(make_event, rust_ok=not getattr(core, "green", False))
        self._closed = False
        self._receiveclosed = make_event()
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
                self.gateway._send(CHANNEL_CLOSE_ERROR, self.id, _codec.current.dumps(str(error)))
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
            blocks = _waits.hook_blocks_thread
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
        self._writelock = new_lock()
        self._receivelock = new_rlock()
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
                    items.put(_codec.current.loads(data, channel_factory=self.new))
                except LoadError as exc:
                    self._reject(id, exc)
                return
            callback, endmarker = entry
            try:
                callback(_codec.current.loads(data, channel_factory=self.new))
            except BaseException as exc:  # ends this channel, not the gateway
                self._reject(id, exc)

    def _reject(self, id, exc):
        errortext = geterrortext(exc)
        self.gateway._trace("channel %d: callback/decoding failed: %r" % (id, exc))
        try:
            self.gateway._send(CHANNEL_CLOSE_ERROR, id, _codec.current.dumps(errortext))
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

