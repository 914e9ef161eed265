"""weft gateway core: every name of the boot modules under one module.

``weft._bootstrap.core`` (``execnet.gateway_base`` through the alias, and
``weft_boot_core`` on a worker) re-exports the names that the gateway core's
users reach for; the code lives in one module per concern (the list is
``weft._bootstrap.BOOT_MODULES``):

* ``codec``     -- ``dumps``/``loads`` of channel payloads: the wire module,
  or ``rust_codec()`` (``weft._weft``) where weft is importable; a worker
  switches in ``worker_main`` when its parent asks (docs/wire.md).
* ``threads``, ``waits`` -- threads, locks, events, and ``block_until``, the
  one blocking hook (a tasklet scheduler takes over blocking by replacing it
  with ``set_wait_hook``).
* ``errors``    -- RemoteError, GatewayDied, TimeoutError.
* ``execmodel``, ``pool`` -- exec models and the worker pool.
* ``transport``, ``session`` -- ``FdIO`` / ``SocketIO`` / ``SessionSocketIO``,
  the byte transports.
* ``channel``   -- Channel, ChannelFactory, channel files.
* ``gateway``   -- ``BaseGateway``: one receiver thread per gateway reads
  frames and dispatches them to the ``ChannelFactory``.
* ``worker``    -- ``WorkerGateway`` and ``worker_main``, the remote end.
"""

if not __package__:  # pragma: no cover - not how weft runs it
    # This file's source run on its own, outside any package (execnet's
    # test_basics runs gateway_base's source so): the names come from the
    # installed weft.
    from weft._bootstrap.core import *  # noqa: F401,F403
else:
    from .channel import (  # noqa: F401
        ENDMARKER,
        NO_ENDMARKER_WANTED,
        Channel,
        ChannelFactory,
        ChannelFile,
        ChannelFileRead,
        ChannelFileWrite,
        Empty,
    )
    from .codec import codec_name, rust_codec, rust_version, set_codec  # noqa: F401
    from .errors import (  # noqa: F401
        INTERRUPT_TEXT,
        MAIN_THREAD_ONLY_DEADLOCK_TEXT,
        GatewayDied,
        RemoteError,
        TimeoutError,
        geterrortext,
    )
    from .execmodel import (  # noqa: F401
        EventletExecModel,
        ExecModel,
        GeventExecModel,
        MainThreadOnlyExecModel,
        TaskletExecModel,
        get_execmodel,
    )
    from .gateway import BaseGateway  # noqa: F401
    from .pool import Reply, WorkerPool  # noqa: F401
    from .session import (  # noqa: F401
        RECORD_MAX,
        RECORD_TAG,
        RecordOpener,
        RecordSealer,
        SessionError,
        SessionSocketIO,
        session_keys,
    )
    from .threads import get_ident  # noqa: F401
    from .transport import (  # noqa: F401
        MAX_FRAME_SIZE,
        PIPE_SIZE,
        FdIO,
        Message,
        Popen2IO,
        SocketIO,
    )
    from .waits import block_until, set_wait_hook  # noqa: F401
    from .wire import (  # noqa: F401
        CHANNEL_CLOSE,
        CHANNEL_CLOSE_ERROR,
        CHANNEL_DATA,
        CHANNEL_EXEC,
        CHANNEL_LAST_MESSAGE,
        GATEWAY_TERMINATE,
        HEADER_SIZE,
        RECONFIGURE,
        STATUS,
        DataFormatError,
        DumpError,
        LoadError,
    )
    from .worker import WorkerGateway, worker_main  # noqa: F401
