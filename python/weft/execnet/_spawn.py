"""Starting worker interpreters and booting them from source.

Boot protocol (the same for popen, ssh and socket gateways): the new
interpreter runs ``python -c BOOTLINE``.  BOOTLINE reads, with unbuffered
``os.read`` calls on one file descriptor (stdin, or the socket), a decimal
length and a newline, then exactly that many bytes of Python source, and
executes them.  That source (``boot_source``) carries the text of the
modules ``weft._bootstrap.BOOT_MODULES`` names, installs them as the package
``weft_boot`` (``weft_boot.wire``, ``weft_boot.channel``, ...; also as
``weft_boot_wire``, ``weft_boot_core``, ...) and calls the entry point
``BOOT_ENTRY`` names (``weft_boot.worker.worker_main(config)``).  Nothing is
installed remotely.

Transports: popen passes a private pipe pair with ``pass_fds`` so that the
worker's own stdout and stderr stay the parent's; ssh has only stdin/stdout,
so the worker moves the transport to private fds and points its fd 1 at fd 2
(worker prints arrive on the local stderr).
"""

import os
import shlex
import signal
import subprocess
import sys
import threading
import time

from weft._bootstrap import BOOT_ENTRY, BOOT_MODULES
from weft._bootstrap import core as _core

_BOOTSTRAP_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "_bootstrap")

# Reads "<length>\n<source>" from fd %(fd)d without buffering, then runs it.
# One definition, shared with the standalone socket server (which must stay
# self-contained, so it owns it).
from weft._bootstrap.socketserver import _BOOTLINE  # noqa: E402


def bootline(fd=0):
    return _BOOTLINE % {"fd": fd}


# Runs in the worker's __main__, where BOOTLINE defined _r and _weft_boot_fd.
# The boot modules become the package ``weft_boot`` (their relative imports
# resolve there); each is also ``weft_boot_NAME`` (the older name, which
# remote code may import) and, if weft is importable here too, stands in for
# ``weft._bootstrap.NAME``, so that "import weft.execnet" reuses them: one
# Channel class and one DumpError per process.
_PRELUDE = """\
import sys
class _WeftSource:
    # a loader, so that linecache (tracebacks) finds the text of boot modules
    def __init__(self, source):
        self.source = source
    def get_source(self, name):
        return self.source
_weft_package = type(sys)("weft_boot")
_weft_package.__path__ = []
sys.modules["weft_boot"] = _weft_package
def _weft_module(name, source, code=None):
    filename = "weft-boot/%s.py" % name
    module = type(sys)("weft_boot." + name)
    module.__file__ = filename
    module.__package__ = "weft_boot"
    module.__loader__ = _WeftSource(source)
    sys.modules["weft_boot." + name] = module
    sys.modules["weft_boot_" + name] = module
    sys.modules.setdefault("weft._bootstrap." + name, module)
    setattr(_weft_package, name, module)
    if code is None:
        code = compile(source, filename, "exec")
    exec(code, module.__dict__)
    return module
"""

# BOOT_MODULES in order, then the entry point.  %(entry)s is BOOT_ENTRY.
_SOURCE_TAIL = """\
for _weft_name, _weft_text in %(sources)r:
    _weft_module(_weft_name, _weft_text)
sys.modules["weft_boot.%(module)s"].%(function)s(%(config)r, _weft_boot_fd)
"""

# Same interpreter on both ends: send code objects (marshal) as well, which
# saves compiling ~60 kB of Python in every new worker (~20 ms).
_MARSHAL_TAIL = """\
for _weft_name, _weft_text, _weft_code in __import__("marshal").loads(_r(%(size)d)):
    _weft_module(_weft_name, _weft_text, _weft_code)
sys.modules["weft_boot.%(module)s"].%(function)s(%(config)r, _weft_boot_fd)
"""

_sources = {}
_marshalled = []


def _source(filename):
    """The text of ``weft/_bootstrap/FILENAME`` (a boot module's, or
    socketserver.py's)."""
    try:
        return _sources[filename]
    except KeyError:
        with open(os.path.join(_BOOTSTRAP_DIR, filename), encoding="utf-8") as f:
            _sources[filename] = text = f.read()
        return text


def _boot_code(name):
    """The code object of boot module ``name``: from the local module's
    cached bytecode where there is one (the same source; saves compiling
    ~60 kB of Python in every new process), else compiled here."""
    filename = name + ".py"
    local = sys.modules.get("weft._bootstrap." + name)
    loader = getattr(getattr(local, "__spec__", None), "loader", None)
    if hasattr(loader, "get_code") and getattr(local, "__file__", "").endswith(filename):
        try:
            return loader.get_code(local.__name__)
        except Exception:
            pass
    return compile(_source(filename), "weft-boot/%s" % filename, "exec")


def _marshal_blob():
    if not _marshalled:
        import marshal

        _marshalled.append(marshal.dumps(tuple(
            (name, _source(name + ".py"), _boot_code(name)) for name in BOOT_MODULES)))
    return _marshalled[0]


def _entry(config):
    module, function = BOOT_ENTRY
    return {"module": module, "function": function, "config": config}


def boot_source(config):
    sources = [(name, _source(name + ".py")) for name in BOOT_MODULES]
    return _PRELUDE + _SOURCE_TAIL % dict(_entry(config), sources=sources)


def boot_payload(config, same_interpreter=False):
    """What BOOTLINE reads: ``<length>\\n<source>``, followed, when
    ``same_interpreter``, by a marshal blob that the source reads itself."""
    if same_interpreter:
        blob = _marshal_blob()
        data = (_PRELUDE + _MARSHAL_TAIL % dict(_entry(config), size=len(blob))).encode()
        return str(len(data)).encode("ascii") + b"\n" + data + blob
    data = boot_source(config).encode("utf-8")
    return str(len(data)).encode("ascii") + b"\n" + data


def worker_config(spec, transport, **extra):
    config = {
        "transport": transport,
        "id": spec.id,
        "execmodel": spec.execmodel or "thread",
        "env": dict(spec.env),
        "chdir": spec.chdir or None,
        "nice": spec.nice or None,
        "dont_write_bytecode": bool(spec.dont_write_bytecode),
        # the worker switches to the Rust codec if this weft is importable there
        "rust": _core.rust_version(),
    }
    config.update(extra)
    return config


def describe_exit(returncode):
    if returncode is None:
        return "closed the connection but is still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "signal %d" % -returncode
        return "was killed by %s (exit status %d)" % (name, returncode)
    return "exited with code %d" % returncode


class ProcessIO(_core.FdIO):
    """The transport to a child process plus the handle to wait for/kill it."""

    def __init__(self, popen, rfd, wfd, what, green=None):
        super().__init__(rfd, wfd, green=green)
        self.popen = popen
        self.what = what

    @property
    def pid(self):
        return self.popen.pid

    def wait(self, timeout=None):
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.popen.poll() is None:
            try:
                self.popen.kill()
            except OSError:
                pass
            self.wait(1.0)  # reap it

    def describe_death(self):
        rc = self.wait(1.0)
        return "%s (pid %d) %s" % (self.what, self.popen.pid, describe_exit(rc))


def _python_args(spec):
    python = spec.python or sys.executable
    args = shlex.split(python) + ["-u"]  # -u: worker prints are not held back
    if spec.dont_write_bytecode:
        args.append("-B")
    return args


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def popen_io(spec, green=None):
    """Start ``python -c BOOTLINE`` locally; the transport is a pipe pair
    (waiting in the hub of ``green``, a green exec model, if given)."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    env = None
    if spec.env:
        env = dict(os.environ)
        env.update(spec.env)
    args = popen_args(spec)
    try:
        popen = subprocess.Popen(
            args, stdin=subprocess.PIPE, pass_fds=(to_child_r, from_child_w),
            env=env, close_fds=True)
    except OSError:
        for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
            os.close(fd)
        raise
    os.close(to_child_r)
    os.close(from_child_w)
    config = worker_config(spec, "fds", rfd=to_child_r, wfd=from_child_w, ack=True)
    try:
        same = spec.python is None or os.path.realpath(spec.python) == os.path.realpath(
            sys.executable)
        popen.stdin.write(boot_payload(config, same_interpreter=same))
        popen.stdin.close()
    except OSError:
        pass  # child died early: no acknowledgement comes
    os.set_inheritable(from_child_r, False)
    os.set_inheritable(to_child_w, False)
    io = ProcessIO(popen, from_child_r, to_child_w, "popen worker", green)
    # As execnet: return once the worker has booted (it writes b"1" before
    # its first frame), so workers made one after another start in order.
    try:
        # a green transport's fd is non-blocking: its read waits in the hub
        ack = io.read(1) if green is not None else os.read(from_child_r, 1)
    except (OSError, EOFError):
        ack = b""
    if ack != b"1":
        why = io.describe_death()
        io.kill()
        io.close_read()
        io.close_write()
        raise _core.GatewayDied("%s failed to start: %s" % (spec._spec, why))
    return io


def ssh_args(spec):
    args = ["ssh", "-C"]
    if spec.ssh_config:
        args += ["-F", spec.ssh_config]
    remote_python = spec.python or "python3"
    host = spec.ssh
    hostargs = shlex.split(host)
    remote_cmd = "%s -c %s" % (remote_python, shlex.quote(bootline(0)))
    # OpenSSH reads options after the host too; BatchMode: never prompt
    return args + hostargs + ["-o", "BatchMode=yes", remote_cmd]


def ssh_io(spec, green=None):
    """Start the worker through the system ssh; stdin/stdout are the transport
    (waiting in the hub of ``green``, a green exec model, if given)."""
    args = ssh_args(spec)
    popen = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             close_fds=True)
    config = worker_config(spec, "stdio")
    wfd = os.dup(popen.stdin.fileno())
    rfd = os.dup(popen.stdout.fileno())
    popen.stdin.close()
    popen.stdout.close()
    try:
        _write_all(wfd, boot_payload(config))
    except OSError:
        pass  # ssh ended early (unknown host, ...): the first round trip reports it
    io = ProcessIO(popen, rfd, wfd, "ssh worker on %s" % spec.ssh, green)
    io.remoteaddress = spec.ssh
    return io


def popen_args(spec):
    """The command line a popen gateway runs for ``spec``."""
    return _python_args(spec) + ["-c", bootline(0)]
