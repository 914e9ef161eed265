"""Gateways: frames, the receiver thread and message dispatch, shared by both
ends (the local ``weft.execnet.Gateway`` and the remote ``WorkerGateway``)."""

import os
import sys

try:
    from _collections import deque  # not ``collections``: worker start-up
except ImportError:  # pragma: no cover - not CPython
    from collections import deque

from . import codec as _codec
from .channel import ChannelFactory
from .errors import GatewayDied, RemoteError, geterrortext
from .execmodel import ExecModel, get_execmodel
from .threads import new_rlock
from .transport import MAX_FRAME_SIZE
from .waits import block_until
from .wire import (
    CHANNEL_CLOSE,
    CHANNEL_CLOSE_ERROR,
    CHANNEL_DATA,
    CHANNEL_EXEC,
    CHANNEL_LAST_MESSAGE,
    DataFormatError,
    LoadError,
    GATEWAY_TERMINATE,
    HEADER_SIZE,
    RECONFIGURE,
    STATUS,
)

_THREADS = ExecModel()  # the thread model: what runs a local gateway's core


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
        # what runs this gateway's core (receiver, events): its exec model,
        # or threads (docs/gateways.md, "Exec models")
        self._core = self.execmodel if self._core_follows_execmodel() else _THREADS
        self._new_event = self._core.core_event
        self.id = id
        self._strconfig = (True, False)
        self._channelfactory = ChannelFactory(self, _startcount)
        self._receivelock = new_rlock()
        self._receive_done = self._new_event()
        # the Rust transport frames and writes an item in one call
        self._io_send = getattr(io, "send", None)
        # bodiless messages from finalizers, waiting for the writer's turn
        self._deferred = deque()

    def _core_follows_execmodel(self):
        """Whether the exec model runs this gateway's core: on the local side,
        where the transport waits in a green model's hub; else the core has a
        receiver thread (WorkerGateway says otherwise)."""
        return getattr(self._io, "green", None) is not None

    def _trace(self, *msg):
        if _trace_enabled():
            sys.stderr.write("[weft %s %s] %s\n" % (
                self._sysid, os.getpid(), " ".join(str(m) for m in msg)))

    def _initreceive(self):
        self._core.start_core(self._thread_receiver, name="weft-receiver-%s" % (self.id,))

    def _read_frame(self):
        header = self._io.read(HEADER_SIZE)
        code, cid, length = _codec.current.unpack_header(header, MAX_FRAME_SIZE)
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
            except SystemExit as exc:
                # TaskletExit: the tasklet model's receiver was killed (its
                # thread's tasklets at interpreter exit, or by hand)
                self._trace("receiver killed: %r" % (exc,))
                error = GatewayDied("this gateway's receiver was killed (%s); its channels "
                                    "end here" % (type(exc).__name__,))
            except BaseException as exc:  # pragma: no cover - a bug in dispatch
                self._trace("receiver crashed: %s" % geterrortext(exc))
                error = GatewayDied("receiver thread crashed:\n" + geterrortext(exc))
            if read_frames is not None:
                # threads waiting for items stop reading for themselves, and
                # wake-ups this thread held back are sent (docs/gateways.md)
                self._io._reader.close_role()
                _codec.current.flush_wakeups()
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
                text = _codec.current.loads(payload)
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
                config = _codec.current.loads(payload)
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
        self._send(CHANNEL_DATA, cid, _codec.current.dumps(status))
        self._send(CHANNEL_CLOSE, cid)

    def _local_schedulexec(self, channel, payload):
        channel.close("execution disallowed")

    def _terminate_execution(self):
        pass

    def _send_item(self, cid, item):
        """Send ``item`` on channel ``cid`` (CHANNEL_DATA)."""
        send = self._io_send
        if send is None:
            return self._send(CHANNEL_DATA, cid, _codec.current.dumps(item))
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
        frame = _codec.current.pack_message(code, cid, data)
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
        return IOError("cannot send (already closed?) on %r: its transport is closed (the "
                       "gateway exited, or its other side ended); make a new gateway to go on" % (self,))

    def _send_from_finalizer(self, code, cid):
        """Send a bodiless message without waiting for the writer (from
        ``Channel.__del__``): if another write is in progress, possibly in
        this very thread, the message waits in ``_deferred`` and that
        writer sends it when it is done."""
        self._deferred.append(_codec.current.pack_message(code, cid, b""))
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

