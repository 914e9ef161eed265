"""The gateway core's exceptions and the text a remote error carries."""

import os
import sys

class RemoteError(Exception):
    """An exception raised on the other side; ``formatted`` is its traceback."""

    def __init__(self, formatted):
        super().__init__(formatted)
        self.formatted = formatted

    def __str__(self):
        return self.formatted

    def __repr__(self):
        return "%s: %s" % (self.__class__.__name__, self.formatted)

    def warn(self):
        if self.formatted != INTERRUPT_TEXT:
            sys.stderr.write("[%s] Warning: unhandled %r\n" % (os.getpid(), self))


class GatewayDied(RemoteError, EOFError):
    """The connection ended without an orderly exit; says how the worker died.

    It is both a ``RemoteError`` and an ``EOFError`` so that code written for
    either (execnet raises ``EOFError`` in this case) catches it.
    """


class TimeoutError(IOError):  # noqa: A001 - execnet's name
    """A blocking channel operation did not finish within its timeout."""


INTERRUPT_TEXT = "keyboard-interrupted"
MAIN_THREAD_ONLY_DEADLOCK_TEXT = (
    "concurrent remote_exec would cause deadlock for main_thread_only execmodel"
)


def geterrortext(exc):
    """The formatted traceback of ``exc`` (what RemoteError carries)."""
    import traceback  # lazily: importing it costs ~15 ms of worker start-up

    try:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:  # pragma: no cover - formatting itself failed
        return "%s: %s" % (type(exc).__name__, exc)
