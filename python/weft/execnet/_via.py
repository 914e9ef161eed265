"""``via=GWID`` gateways: a worker started by another gateway's worker.

The via gateway runs ``_PROXY`` (below) with ``remote_exec``: it starts
``python -c BOOTLINE`` next to itself, boots it, and relays the transport
bytes both ways over the returned channel (bytes items; the str item "kill"
asks the proxy to kill the child).  When the child ends, the proxy closes the
channel with an error saying how it died.
"""

import threading

from weft._bootstrap import core as _core

from . import _spawn
from .gateway import Gateway

_PROXY = r'''
import os, subprocess, sys, threading
args, payload = channel.receive()
if args[0] is None:
    args[0] = sys.executable
to_child_r, to_child_w = os.pipe()
from_child_r, from_child_w = os.pipe()
env = dict(os.environ)
env["WEFT_BOOT_FDS"] = "%d,%d" % (to_child_r, from_child_w)
def _die_with_us():
    pass
try:  # Linux: the child gets SIGKILL when this process dies (even if stopped)
    import ctypes
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
    def _die_with_us():
        _prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
except Exception:
    pass
proc = subprocess.Popen(args, stdin=subprocess.PIPE, pass_fds=(to_child_r, from_child_w),
                        env=env, preexec_fn=_die_with_us)
os.close(to_child_r)
os.close(from_child_w)
proc.stdin.write(payload)
proc.stdin.close()

# The callback runs in this gateway's receiver thread, which must never
# block on the child (a stopped child would stall the whole gateway): it
# hands the bytes to a writer thread.
import queue
_pending = queue.SimpleQueue()

def _write_to_child():
    global to_child_w
    while True:
        item = _pending.get()
        if item is None:
            break
        view = memoryview(item)
        try:
            while view:
                view = view[os.write(to_child_w, view):]
        except OSError:
            pass
    os.close(to_child_w)

threading.Thread(target=_write_to_child, daemon=True).start()

def _kill_if_stuck():
    # the local side closed the channel (exit() or terminate): a child that
    # has not ended soon after (stopped, or deaf) is killed; the local side's
    # own "kill" cannot reach us over a closed channel
    try:
        proc.wait(5.0)  # as a worker waits for its tasks after an exit
    except subprocess.TimeoutExpired:
        proc.kill()

def _to_child(item):
    if isinstance(item, str):
        if item == "kill" and proc.poll() is None:
            proc.kill()
    else:
        _pending.put(item)  # None (the end) included
        if item is None:
            threading.Thread(target=_kill_if_stuck, daemon=True).start()

channel.setcallback(_to_child, endmarker=None)
while True:
    data = os.read(from_child_r, 65536)
    if not data:
        break
    try:
        channel.send(data)
    except IOError:
        break
rc = proc.wait()
if rc != 0:
    if rc < 0:
        import signal
        how = "was killed by %s (exit status %d)" % (signal.Signals(-rc).name, rc)
    else:
        how = "exited with code %d" % rc
    raise SystemExit("via worker (pid %d) %s" % (proc.pid, how))
'''


class ChannelIO:
    """A byte transport over a channel of a parent gateway."""

    def __init__(self, channel, what):
        self.channel = channel
        self.what = what
        self._buf = bytearray()
        self._death = None

    def read(self, n):
        while len(self._buf) < n:
            try:
                self._buf += self.channel.receive()
            except EOFError:
                raise EOFError("proxy channel closed") from None
            except _core.RemoteError as exc:
                self._death = exc.formatted.strip().splitlines()[-1]
                raise EOFError(self._death) from None
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def write(self, data):
        self.channel.send(bytes(data))

    def close_read(self):
        pass

    def close_write(self):
        if not self.channel.isclosed():
            try:
                self.channel.close()
            except IOError:
                pass

    def kill(self):
        try:
            self.channel.send("kill")
        except IOError:
            pass

    def wait(self, timeout=None):
        try:
            self.channel.waitclose(timeout)
        except _core.TimeoutError:
            return None
        except _core.RemoteError:
            return 1
        return 0

    def describe_death(self):
        return self._death or "%s: the proxy channel was closed" % self.what


def connect_via(group, spec):
    via = group[spec.via]
    if not spec.popen:
        raise ValueError("via= works with popen gateways only: %r" % (spec._spec,))
    config = _spawn.worker_config(spec, "fds", rfd=None, wfd=None)
    args = _spawn.popen_args(spec)
    if not spec.python:
        args[0] = None  # the proxy puts in its own sys.executable
    # One remote_exec only: a main_thread_only via gateway runs one task at a time.
    channel = via.remote_exec(_PROXY)
    channel.send((args, _spawn.boot_payload(config)))
    return Gateway(ChannelIO(channel, "via %s worker" % spec.via), spec,
                   execmodel=group.execmodel)
