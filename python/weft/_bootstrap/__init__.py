"""weft's gateway core for both ends of a gateway.

The modules named in ``BOOT_MODULES`` import only the standard library and
each other (relative imports), because the gateway bootstrap sends their
source to the remote interpreter, where nothing of weft is installed: there
they become the package ``weft_boot`` (see ``weft.execnet._spawn``).
``socketserver.py`` is self-contained and sent on its own.
"""

# The boot modules, in the order a worker loads them: each imports only the
# standard library and modules before it in this list.  This is the one list
# of them; weft.execnet._spawn reads it to build the boot source.
BOOT_MODULES = (
    "wire",       # the codec of docs/wire.md (pure Python)
    "codec",      # which codec this side uses (the Rust one where importable)
    "threads",    # threads, locks, events
    "waits",      # the one blocking hook (block_until)
    "errors",     # RemoteError, GatewayDied, TimeoutError, error texts
    "execmodel",  # exec models: thread, main_thread_only, eventlet, gevent, tasklet
    "pool",       # the worker pool that runs tasks the way a model says
    "transport",  # byte transports (fds, sockets) and frames
    "session",    # authenticated session records (socket gateways)
    "channel",    # channels, item queues, channel factory, channel files
    "gateway",    # BaseGateway: receiver thread and dispatch
    "worker",     # WorkerGateway and worker_main, the remote entry
    "core",       # all of the above under one name (weft._bootstrap.core)
)

# The module and function a booted worker runs: worker_main(config, boot_fd).
BOOT_ENTRY = ("worker", "worker_main")
