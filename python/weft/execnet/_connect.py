"""Turning an XSpec into a connected Gateway (popen, ssh, socket, via)."""

from . import _spawn
from .gateway import Gateway


class HostNotFound(Exception):
    """The host of an ssh= or socket= gateway could not be reached."""


def connect(group, spec):
    if spec.via:
        from . import _via
        return _via.connect_via(group, spec)
    # a green group's popen and ssh gateways read in its hub (docs/gateways.md)
    green = group.execmodel if group.execmodel.green else None
    if spec.popen:
        io = _spawn.popen_io(spec, green)
        return Gateway(io, spec, execmodel=group.execmodel)
    if spec.ssh:
        io = _spawn.ssh_io(spec, green)
        gw = Gateway(io, spec, execmodel=group.execmodel)
        try:
            # one round trip: fails fast if ssh could not connect or boot
            gw._rinfo()
        except (EOFError, IOError) as exc:
            io.kill()
            raise HostNotFound("ssh to %r failed: %s" % (spec.ssh, exc)) from exc
        return gw
    if spec.socket:
        from . import _socket
        return _socket.connect_socket(group, spec)
    raise ValueError("no gateway type found for %r" % (spec._spec,))
