"""The local end of a gateway: remote_exec, status, exit."""

import inspect
import linecache
import os
import sys
import textwrap
import time
import types

from weft._bootstrap import core as _core
from weft._bootstrap import wire as _wire

from . import _wait  # noqa: F401  (installs the blocking hook)

__all__ = ["Gateway", "RInfo", "RemoteStatus", "rinfo_source"]

# Most seconds exit() waits for the writer's turn, and then for the first
# byte of its message to go out, before it closes the transport anyway.
EXIT_WAIT = 0.5


class Gateway(_core.BaseGateway):
    """Gateway to a local or remote Python interpreter.

    Instances take arbitrary attributes (pytest-xdist sets ``gw.node``).
    """

    _group = None

    def __init__(self, io, spec, execmodel=None):
        super().__init__(io=io, id=spec.id, execmodel=execmodel, _startcount=1)
        self.spec = spec
        self._exiting = False
        self._initreceive()

    @property
    def remoteaddress(self):
        return getattr(self._io, "remoteaddress", None)

    def __repr__(self):
        r = "receive-live" if self.hasreceiver() else "not-receiving"
        n = len(self._channelfactory.channels())
        return "<%s id=%r %s, %s model, %s active channels>" % (
            self.__class__.__name__, self.id, r, self.execmodel.backend, n)

    def _connection_lost(self, exc):
        if self._exiting:
            return None
        describe = getattr(self._io, "describe_death", None)
        how = describe() if describe is not None else "the connection was closed (%s)" % (exc,)
        text = str(exc)
        if not (isinstance(exc, EOFError)
                and (text in ("", "connection closed") or text.startswith("expected 9 bytes, got 0"))):
            # not a plain end of the stream: say what really ended it
            how = "%s: %s; %s" % (type(exc).__name__, text, how)
        broken = getattr(self._io, "broken", None)
        if broken:
            how = "this side stopped sending: %s; %s" % (broken, how)
        return _core.GatewayDied("gateway %r: %s" % (self.id, how))

    def hasreceiver(self):
        """Whether the gateway still receives data."""
        return not self._receive_done.is_set()

    def exit(self):
        """Ask the remote side to exit; ``Group.terminate`` waits and kills.
        (Inside ``Group.terminate`` the wait for a busy writer is bounded by
        one deadline across all the group's gateways.)"""
        group = self._group
        _deadline = getattr(group, "_exit_deadline", None)
        if group is not None:
            if self not in group:
                return
            group._unregister(self)
        if self._exiting:
            return
        self._exiting = True
        try:
            try_write = getattr(self._io, "try_write", None)
            if try_write is None:
                self._send(_core.GATEWAY_TERMINATE)
            elif not try_write(_wire.pack_message(_core.GATEWAY_TERMINATE, 0, b""),
                               *_exit_waits(_deadline)):
                # another thread is stuck sending (a stopped worker, a full
                # pipe): don't wait for it; closing stops that write, and
                # Group.terminate kills what does not end
                self._trace("exit message not sent within %s s: closing" % (EXIT_WAIT,))
        except (ValueError, EOFError, OSError) as exc:
            self._trace("could not send termination: %r" % (exc,))
        try:
            self._io.close_write()
        except (ValueError, EOFError, OSError) as exc:
            self._trace("could not close: %r" % (exc,))

    def reconfigure(self, py2str_as_py3str=True, py3str_as_py2str=False):
        """Set the string coercion for Python-2 strings (kept for execnet)."""
        self._strconfig = (py2str_as_py3str, py3str_as_py2str)
        self._send(_core.RECONFIGURE, 0, _wire.dumps(self._strconfig))

    def _rinfo(self, update=False):
        """Information about the remote interpreter (cached)."""
        if update or not hasattr(self, "_cache_rinfo"):
            ch = self.remote_exec(rinfo_source)
            try:
                self._cache_rinfo = RInfo(ch.receive())
            finally:
                ch.waitclose()
        return self._cache_rinfo

    def remote_status(self):
        """Number of channels and executing tasks on the remote side."""
        channel = self.newchannel()
        self._send(_core.STATUS, channel.id)
        statusdict = channel.receive()
        self._channelfactory._local_close(channel.id)
        return RemoteStatus(statusdict)

    def remote_exec(self, source, **kwargs):
        """Run ``source`` remotely with a ``channel`` connected to the one returned.

        ``source`` is a string, a module (its source runs) or a pure function
        (its source is sent and it is called as ``f(channel, **kwargs)``).
        """
        call_name = None
        file_name = None
        if isinstance(source, types.ModuleType):
            file_name = inspect.getsourcefile(source)
            linecache.updatecache(file_name)
            source = inspect.getsource(source)
        elif isinstance(source, types.FunctionType):
            call_name = source.__name__
            file_name = inspect.getsourcefile(source)
            source = _source_of_function(source)
        else:
            source = textwrap.dedent(str(source))
        if not call_name and kwargs:
            raise TypeError("can't pass kwargs to non-function remote_exec")
        channel = self.newchannel()
        self._send(_core.CHANNEL_EXEC, channel.id,
                   _wire.dumps((source, file_name, call_name, kwargs)))
        return channel

    def remote_init_threads(self, num=None):
        """No-op kept for old callers (execnet made it one in 1.2)."""
        import warnings
        warnings.warn("remote_init_threads() is a no-op", DeprecationWarning, stacklevel=2)

    def _terminate_execution(self):
        pass


def _exit_waits(deadline):
    """(turn timeout, write timeout) for an exit message."""
    if deadline is None:
        return EXIT_WAIT, EXIT_WAIT
    left = max(0.0, deadline - time.monotonic())
    return left / 2, left / 2


class RInfo:
    def __init__(self, kwargs):
        self.__dict__.update(kwargs)

    def __repr__(self):
        info = ", ".join("%s=%s" % item for item in sorted(self.__dict__.items()))
        return "<RInfo %r>" % info


RemoteStatus = RInfo


def rinfo_source(channel):
    import os
    import sys

    channel.send(dict(
        executable=sys.executable,
        version_info=sys.version_info[:5],
        platform=sys.platform,
        cwd=os.getcwd(),
        pid=os.getpid(),
    ))


def _find_non_builtin_globals(source, codeobj):
    import ast
    import builtins

    vars = dict.fromkeys(codeobj.co_varnames)
    return [
        node.id
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Name)
        and node.id not in vars
        and node.id not in builtins.__dict__
    ]


def _source_of_function(function):
    if function.__name__ == "<lambda>":
        raise ValueError("can't evaluate lambda functions: remote_exec sends a function's "
                         "source, so pass a function defined with def at module level "
                         "(its first argument `channel`), or the code as a string")
    args = inspect.getfullargspec(function).args
    if not args or args[0] != "channel":
        raise ValueError("expected first function argument to be `channel`")
    closure = function.__closure__
    codeobj = function.__code__
    if closure is not None:
        raise ValueError("functions with closures can't be passed: remote_exec sends only the "
                         "function's source; pass what it needs as keyword arguments "
                         "(remote_exec(f, name=value)) instead of closing over it")
    try:
        source = inspect.getsource(function)
    except OSError as exc:
        raise ValueError("can't find source file for %s" % function) from exc
    source = textwrap.dedent(source)
    used_globals = _find_non_builtin_globals(source, codeobj)
    if used_globals:
        raise ValueError("the use of non-builtin globals isn't supported", used_globals)
    leading_ws = "\n" * (codeobj.co_firstlineno - 1)
    return leading_ws + source
