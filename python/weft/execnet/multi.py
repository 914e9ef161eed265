"""Groups of gateways and channels over many gateways."""

import atexit
import threading
import time
from functools import partial

from weft._bootstrap import core as _core
# Imported before any group registers its atexit terminate: atexit runs the
# last registered first, so the groups' terminates run before weft.stackless
# kills the tasklets left at exit (a tasklet group's receivers among them),
# and their gateways end in order.
import weft.stackless  # noqa: F401

from . import _wait
from .xspec import XSpec

__all__ = ["Group", "MultiChannel", "default_group", "makegateway", "set_execmodel",
           "safe_terminate"]

NO_ENDMARKER_WANTED = _core.NO_ENDMARKER_WANTED


class Group:
    """A set of gateways, addressable by id, index or the gateway itself."""

    defaultspec = "popen"

    def __init__(self, xspecs=(), execmodel="thread"):
        self._gateways = []
        self._autoidcounter = 0
        self._autoidlock = threading.Lock()
        self._gateways_to_join = []
        self.set_execmodel(execmodel)
        for xspec in xspecs:
            self.makegateway(xspec)
        atexit.register(self._cleanup_atexit)

    @property
    def execmodel(self):
        return self._execmodel

    @property
    def remote_execmodel(self):
        return self._remote_execmodel

    def set_execmodel(self, execmodel, remote_execmodel=None):
        """Set the local and the default remote exec model (``thread`` or
        ``main_thread_only``); only allowed while the group is empty."""
        if self._gateways:
            raise ValueError("can not set execution models if gateways have been created already")
        if remote_execmodel is None:
            remote_execmodel = execmodel
        self._execmodel = _core.get_execmodel(execmodel)
        self._remote_execmodel = _core.get_execmodel(remote_execmodel)

    def __repr__(self):
        idgateways = [gw.id for gw in self]
        return "<Group %r>" % idgateways

    def __getitem__(self, key):
        if isinstance(key, int):
            return self._gateways[key]
        for gw in self._gateways:
            if gw == key or gw.id == key:
                return gw
        raise KeyError(key)

    def __contains__(self, key):
        try:
            self[key]
            return True
        except KeyError:
            return False

    def __len__(self):
        return len(self._gateways)

    def __iter__(self):
        return iter(list(self._gateways))

    def makegateway(self, spec=None):
        """Create and register a gateway from ``spec`` (a string or XSpec)."""
        from . import _connect

        if not spec:
            spec = self.defaultspec
        if not isinstance(spec, XSpec):
            spec = XSpec(spec)
        self.allocate_id(spec)
        if spec.execmodel is None:
            spec.execmodel = self.remote_execmodel.backend
        else:  # a name the worker would not know: say so here, before spawning
            _core.get_execmodel(spec.execmodel)
        gw = _connect.connect(self, spec)
        gw._group = self
        self._register(gw)
        if spec.chdir or spec.nice or spec.env:
            # popen applies these in the worker's boot config already;
            # for via= gateways they are applied the same way.
            pass
        return gw

    def allocate_id(self, spec):
        """Give ``spec`` a unique ``id`` (``gw0``, ``gw1``, ...) if it has none."""
        if spec.id is None:
            with self._autoidlock:
                id = "gw" + str(self._autoidcounter)
                self._autoidcounter += 1
                if id in self:
                    raise ValueError("already have gateway with id %r" % (id,))
                spec.id = id

    def _register(self, gateway):
        assert not hasattr(gateway, "_group") or gateway._group in (None, self)
        assert gateway.id
        assert gateway not in self._gateways
        self._gateways.append(gateway)

    def _unregister(self, gateway):
        self._gateways.remove(gateway)
        self._gateways_to_join.append(gateway)

    def _cleanup_atexit(self):
        self.terminate(timeout=1.0)

    def terminate(self, timeout=None):
        """Exit all gateways, then wait for each worker to end; kill the ones
        that have not ended within ``timeout`` seconds.  Waits happen in
        helper threads, so this returns after about ``timeout`` seconds plus
        the time a kill takes, whatever the workers do."""
        # one bound for all exit messages stuck behind busy writers
        # (Gateway.exit reads it; exit() keeps execnet's signature)
        from .gateway import EXIT_WAIT
        self._exit_deadline = time.monotonic() + 2 * EXIT_WAIT
        try:
            while self:
                for gw in reversed(list(self._gateways)):  # via= users first
                    gw.exit()
        finally:
            self._exit_deadline = None
        gateways = list(self._gateways_to_join)
        del self._gateways_to_join[:]

        def join_wait(gw):
            gw.join()
            gw._io.wait()

        def kill(gw):
            gw._io.kill()

        safe_terminate(self.execmodel, timeout,
                       [(partial(join_wait, gw), partial(kill, gw)) for gw in gateways])

    def remote_exec(self, source, **kwargs):
        """``remote_exec`` on every gateway; returns a MultiChannel."""
        channels = []
        for gw in self:
            channels.append(gw.remote_exec(source, **kwargs))
        return MultiChannel(channels)


class MultiChannel:
    def __init__(self, channels):
        self._channels = channels

    def __len__(self):
        return len(self._channels)

    def __iter__(self):
        return iter(self._channels)

    def __getitem__(self, key):
        return self._channels[key]

    def __contains__(self, chan):
        return chan in self._channels

    def send_each(self, item):
        for ch in self._channels:
            ch.send(item)

    def receive_each(self, withchannel=False):
        result = []
        for ch in self._channels:
            obj = ch.receive()
            result.append((ch, obj) if withchannel else obj)
        return result

    def make_receive_queue(self, endmarker=NO_ENDMARKER_WANTED):
        """A queue of ``(channel, item)`` fed by callbacks on all channels."""
        try:
            return self._queue
        except AttributeError:
            import queue

            self._queue = queue.Queue()
            for ch in self._channels:
                def putreceived(obj, channel=ch):
                    self._queue.put((channel, obj))

                if endmarker is NO_ENDMARKER_WANTED:
                    ch.setcallback(putreceived)
                else:
                    ch.setcallback(putreceived, endmarker=endmarker)
            return self._queue

    def waitclose(self):
        first = None
        for ch in self._channels:
            try:
                ch.waitclose()
            except ch.RemoteError as exc:
                if first is None:
                    first = exc
        if first:
            raise first


def safe_terminate(execmodel, timeout, list_of_paired_functions):
    """Call each ``termfunc`` in a thread; call its ``killfunc`` if it has not
    finished within ``timeout`` seconds."""
    if not list_of_paired_functions:
        return  # nothing to wait for: no helper thread (none may start at exit)
    workerpool = _core.WorkerPool(execmodel)

    def termkill(termfunc, killfunc):
        termreply = workerpool.spawn(termfunc)
        try:
            termreply.get(timeout=timeout)
        except IOError:
            killfunc()

    replylist = []
    pairs = list(list_of_paired_functions)
    for i, (termfunc, killfunc) in enumerate(pairs):
        try:
            replylist.append(workerpool.spawn(termkill, termfunc, killfunc))
        except RuntimeError:
            # CPython 3.12+ starts no thread once the interpreter is shutting
            # down (an atexit terminate): the workers not yet waited for are
            # killed at once instead of waited for.
            for _, kill_rest in pairs[i:]:
                kill_rest()
            break
    for reply in replylist:
        reply.get()


default_group = Group()
makegateway = default_group.makegateway
set_execmodel = default_group.set_execmodel
