"""The remote end: ``WorkerGateway`` runs ``remote_exec`` tasks, and
``worker_main`` is what a booted worker calls (see weft.execnet._spawn)."""

import os
import sys

from . import codec as _codec
from .errors import INTERRUPT_TEXT, MAIN_THREAD_ONLY_DEADLOCK_TEXT, geterrortext
from .execmodel import get_execmodel
from .gateway import BaseGateway
from .pool import WorkerPool
from .session import SessionSocketIO
from .threads import new_event
from .waits import set_wait_hook
from .transport import FdIO, SocketIO
from .wire import LoadError

class WorkerGateway(BaseGateway):
    """The remote end: executes ``remote_exec`` tasks."""

    _sysid = "worker"

    def _core_follows_execmodel(self):
        return True  # a worker's model runs its receiver, tasks and waits

    def _local_schedulexec(self, channel, payload):
        if self.execmodel.backend == "main_thread_only":
            if not self._executetask_complete.wait(timeout=1):
                channel.close(MAIN_THREAD_ONLY_DEADLOCK_TEXT)
                return
            self._executetask_complete.clear()
        try:
            task = _codec.current.loads(payload)
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
        self._core.start_core(self._exit_if_stuck)

    def _exit_if_stuck(self):
        if not self._execpool.waitall(5.0):
            self._trace("execution still running 5 s after terminate: exiting")
            os._exit(1)

    def _receiver_finished(self):
        # The connection is gone (or we were told to exit): nobody can talk to
        # us any more, so a task that does not finish soon must not keep this
        # process alive as an orphan.
        self._execpool.trigger_shutdown()
        self._core.start_core(self._exit_if_stuck)
        try:
            self._io.close_write()
        except Exception:
            pass

    def serve(self):
        model = self.execmodel
        self._execpool = WorkerPool(model, hasprimary=model.has_primary,
                                    primary_only=model.primary_only)
        self._executetask_complete = None
        if self.execmodel.backend == "main_thread_only":
            self._executetask_complete = new_event()
            self._executetask_complete.set()
        self._initreceive()
        try:
            if model.has_primary:
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
    # The exec model: what it runs on is imported now (a clear ImportError
    # before the parent hears from us), and its blocking hook installed.
    model = get_execmodel(config.get("execmodel", "thread"))
    wait_hook = model.prepare()
    if wait_hook is not None:
        set_wait_hook(wait_hook, blocks_thread=False)
    green = model if model.green else None  # the transport waits in its hub
    # Codec negotiation (docs/wire.md): the parent names the weft version whose
    # Rust codec it uses; if that same weft is importable here, use it too.
    # Both codecs write the same bytes, so a worker without weft (or with
    # another version) simply stays on the pure-Python codec.  eventlet and
    # gevent run the core in green threads, whose reads wait in the hub: such
    # a worker keeps the pure-Python transport (the Rust one reads in a
    # thread of its own).
    wanted = config.get("rust")
    if wanted and model.rust_transport and not os.environ.get("WEFT_PURE_PYTHON_CODEC"):
        fast = _codec.rust_codec(wanted)
        if fast is not None:
            _codec.set_codec(fast)
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
                                 bytes.fromhex(key_out.decode()), int(seq_in), int(seq_out),
                                 green=green)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
        else:
            io = SocketIO(socket.socket(fileno=boot_fd), green=green)
    elif kind == "fds":
        io = FdIO(config["rfd"], config["wfd"], green=green)
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
        io = FdIO(rfd, wfd, green=green)
    else:
        raise ValueError("unknown transport %r" % (kind,))
    gw = WorkerGateway(io, config.get("id", "worker"), model, _startcount=2)
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
