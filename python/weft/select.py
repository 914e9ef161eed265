"""Wait on several channel operations at once, local or remote.

    from weft.select import select, recv, send, CLOSED

    index, value = select(recv(tasklet_channel), send(other, 42), recv(gateway_channel),
                          timeout=5.0)

A case is ``recv(ch)`` or ``send(ch, value)`` on a ``weft.stackless.channel``,
or ``recv(ch)`` on a ``weft.execnet`` channel (any gateway kind). ``select``
returns ``(index, value)`` of the one case that took effect: the value
received (``None`` for a send). The rules (docs/select.md):

* When several cases are ready, one is chosen at random: none starves.
* Exactly one case takes effect. The items of the other cases stay in their
  channels: nothing is lost or taken twice.
* A case on a closed channel fires with ``CLOSED`` as its value (a
  weft.execnet channel closed with an error raises that error instead).
* ``timeout`` seconds without a case: ``TimeoutError``. ``default=...``: do
  not wait; ``(-1, default)`` when no case is ready now.
* In a tasklet, ``select`` blocks only that tasklet; in a plain thread it
  blocks the thread (GIL released), woken by the channels' partners in any
  thread or by a gateway's reader. No busy waiting.
"""
from weft._weft import stackless as _sl

__all__ = ["select", "recv", "send", "CLOSED"]


class _Closed:
    __slots__ = ()

    def __repr__(self):
        return "weft.select.CLOSED"

    def __reduce__(self):
        return "CLOSED"


CLOSED = _Closed()
_RECV, _SEND, _POLL = 0, 1, 2


class recv:
    """A receive case: from a weft.stackless channel or a weft.execnet channel.
    A case object may be used in any number of selects."""

    __slots__ = ("channel", "_built")

    def __init__(self, channel):
        self.channel = channel
        self._built = None

    def __repr__(self):
        return f"recv({self.channel!r})"


class send:
    """A send case: ``value`` to a weft.stackless channel."""

    __slots__ = ("channel", "value")

    def __init__(self, channel, value):
        self.channel = channel
        self.value = value

    def __repr__(self):
        return f"send({self.channel!r}, {self.value!r})"


def _gateway_case(ch):
    """A poll function and wake-up event for a weft.execnet channel."""
    items = getattr(ch, "_items", None)
    if items is None:
        raise ValueError(f"cannot select on {ch!r}: it has a receiver callback (its items go there)")
    from weft._bootstrap import core

    event = getattr(items, "event", None)

    def poll():
        if event is not None:
            event.clear()  # looked at below; a later item sets it again
        try:
            x = items.get_nowait()
        except core.Empty:
            return (False, None)
        if x is core.ENDMARKER:
            items.put(x)  # for other receivers
            err = ch._getremoteerror()
            if err:
                raise err
            return (True, CLOSED)
        return (True, x)

    return (_POLL, poll, None, event)


def _case(c):
    built = getattr(c, "_built", None)  # a recv case builds its tuple once
    if built is not None:
        return built
    if isinstance(c, send):
        if not isinstance(c.channel, _sl.channel):
            raise TypeError(f"send cases need a weft.stackless channel, not {type(c.channel).__name__} "
                            "(a weft.execnet channel's send never blocks: call it directly)")
        return (_SEND, c.channel, c.value, None)
    if isinstance(c, recv):
        if isinstance(c.channel, _sl.channel):
            c._built = (_RECV, c.channel, None, None)
            return c._built
        if hasattr(c.channel, "receive") and hasattr(c.channel, "_items"):
            c._built = _gateway_case(c.channel)
            return c._built
        raise TypeError(f"cannot receive from {type(c.channel).__name__} in select: "
                        "use a weft.stackless channel or a weft.execnet channel")
    raise TypeError(f"select cases are recv(channel) or send(channel, value), not {type(c).__name__}")


# select(*cases, timeout=None, default=...): wait until one of ``cases`` takes
# effect; returns ``(index, value)`` (one list or tuple of cases works too).
# One call into Rust: cases on weft.stackless channels are read there, the
# others (gateway channels, bad input) go through ``_case`` above.
_sl._set_select_faces(recv, send, _case, CLOSED)
select = _sl.select_cases
