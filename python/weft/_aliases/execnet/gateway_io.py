"""Alias: the parts of execnet.gateway_io that weft has a counterpart for.

weft's processes are started by weft.execnet._spawn; the command lines differ
from execnet's (see docs/conformance-execnet.md).
"""
from weft.execnet._spawn import bootline as _bootline
from weft.execnet._spawn import popen_args, ssh_args  # noqa: F401

popen_bootstrapline = _bootline(0)


def vagrant_ssh_args(spec):
    raise NotImplementedError("weft.execnet has no vagrant_ssh gateways")
