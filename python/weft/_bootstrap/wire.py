"""weft wire codec: message framing and the execnet-2.1-compatible serializer.

This module is SELF-CONTAINED: it imports only the standard library, never
``weft``, and runs on CPython 3.8+, because the gateway bootstrap sends its
source text to remote interpreters.  The full specification is docs/wire.md;
crates/weft-wire is the Rust twin and must produce identical bytes.

Serializer API
--------------
``dumps(obj, versioned=False) -> bytes``
    Encode ``obj``.  Supported (exact types only, no subclasses, as execnet):
    None, bool, int (any size up to MAX_INT_DIGITS decimal digits), float,
    complex, bytes, str, tuple, list, dict, set, frozenset, and channel
    references.  Anything else raises ``DumpError`` naming the type.
    Containers may nest at most MAX_DEPTH (256) deep; a self-referencing
    container therefore raises ``DumpError`` rather than recursing forever.
    ``versioned=True`` prepends the version byte 0x02 as ``execnet.dumps``
    does; the default is execnet's unversioned internal form used for
    channel payloads.

``loads(data, channel_factory=None, versioned=False,
        py2str_as_py3str=True, py3str_as_py2str=False) -> object``
    Decode one value.  Every malformed input raises ``LoadError``, with the
    byte offset in the message; trailing bytes after STOP are an error.
    Exceptions raised by ``channel_factory`` itself propagate unchanged.
    The two string options are execnet's "strconfig" (the defaults are an
    execnet channel's defaults): PY2STRING (``M``) decodes as latin-1 text
    when ``py2str_as_py3str`` is true, else as bytes; PY3STRING (``N``)
    decodes as bytes when ``py3str_as_py2str`` is true, else as UTF-8 text.
    The encoder never emits the Python-2 opcodes.

Channel-reference protocol
--------------------------
An object that is not one of the builtin types above is encoded as a
channel reference (opcode ``B`` + signed 4-byte id) when it has an attribute
``_weft_channel_id`` whose value is an ``int`` (not bool) in 0..2**31-1.
A present but invalid attribute is a ``DumpError``.  On decoding,
``channel_factory(id)`` builds the object; without a factory a channel
reference is a ``LoadError``.

Framing API
-----------
``HEADER_SIZE`` (9), ``pack_message(msgcode, channelid, payload)``,
``unpack_header(header) -> (msgcode, channelid, length)`` and the message
codes STATUS .. CHANNEL_LAST_MESSAGE, named and numbered as in execnet.

The codec never evaluates, imports or unpickles anything it decodes.
"""

import struct

__all__ = [
    "DataFormatError",
    "DumpError",
    "LoadError",
    "dumps",
    "loads",
    "HEADER_SIZE",
    "pack_message",
    "unpack_header",
    "STATUS",
    "RECONFIGURE",
    "GATEWAY_TERMINATE",
    "CHANNEL_EXEC",
    "CHANNEL_DATA",
    "CHANNEL_CLOSE",
    "CHANNEL_CLOSE_ERROR",
    "CHANNEL_LAST_MESSAGE",
    "MESSAGE_NAMES",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_VALUES",
    "MAX_CONTAINERS",
    "MAX_CHANNELS",
    "DUMPFORMAT_VERSION",
]


class DataFormatError(Exception):
    """Base class of the codec's errors (same hierarchy as execnet)."""


class DumpError(DataFormatError):
    """An object could not be serialized."""


class LoadError(DataFormatError):
    """A byte string is not a valid serialized value or frame."""


# ---------------------------------------------------------------- framing

_HEADER = struct.Struct("!bii")  # msgcode (i8), channel id (i32), length (i32)
HEADER_SIZE = _HEADER.size  # 9

STATUS = 0
RECONFIGURE = 1
GATEWAY_TERMINATE = 2
CHANNEL_EXEC = 3
CHANNEL_DATA = 4
CHANNEL_CLOSE = 5
CHANNEL_CLOSE_ERROR = 6
CHANNEL_LAST_MESSAGE = 7

MESSAGE_NAMES = {
    STATUS: "STATUS",
    RECONFIGURE: "RECONFIGURE",
    GATEWAY_TERMINATE: "GATEWAY_TERMINATE",
    CHANNEL_EXEC: "CHANNEL_EXEC",
    CHANNEL_DATA: "CHANNEL_DATA",
    CHANNEL_CLOSE: "CHANNEL_CLOSE",
    CHANNEL_CLOSE_ERROR: "CHANNEL_CLOSE_ERROR",
    CHANNEL_LAST_MESSAGE: "CHANNEL_LAST_MESSAGE",
}

INT4_MIN = -(2**31)
INT4_MAX = 2**31 - 1


def pack_message(msgcode, channelid, payload=b""):
    """Return the 9-byte header followed by ``payload``."""
    if type(msgcode) is not int or msgcode not in MESSAGE_NAMES:
        raise DumpError("unknown message code %r (known: 0..7)" % (msgcode,))
    if type(channelid) is not int or not 0 <= channelid <= INT4_MAX:
        raise DumpError("channel id %r is not an int in 0..2**31-1" % (channelid,))
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise DumpError("payload must be bytes, not %s" % type(payload).__name__)
    payload = bytes(payload)
    if len(payload) > INT4_MAX:
        raise DumpError("payload of %d bytes exceeds 2**31-1" % len(payload))
    return _HEADER.pack(msgcode, channelid, len(payload)) + payload


def unpack_header(header, max_length=None):
    """Parse a 9-byte header into ``(msgcode, channelid, length)``.

    Raises LoadError for a wrong size, an unknown message code, a negative
    channel id or length, or a length above ``max_length`` when given.
    """
    if len(header) != HEADER_SIZE:
        raise LoadError(
            "message header must be %d bytes, got %d" % (HEADER_SIZE, len(header))
        )
    msgcode, channelid, length = _HEADER.unpack(header)
    if msgcode not in MESSAGE_NAMES:
        raise LoadError("unknown message code %d in header" % msgcode)
    if channelid < 0:
        raise LoadError("negative channel id %d in header" % channelid)
    if length < 0:
        raise LoadError("negative payload length %d in header" % length)
    if max_length is not None and length > max_length:
        raise LoadError(
            "payload length %d exceeds the limit of %d" % (length, max_length)
        )
    return msgcode, channelid, length


# ------------------------------------------------------------- serializer

DUMPFORMAT_VERSION = 2
MAX_DEPTH = 256  # containers nested deeper than this are refused both ways
MAX_INT_DIGITS = 4300  # decimal digits of a LONGINT (CPython's str limit)
# Most values / containers / channel references one message may make
# (checked as they are decoded; docs/wire.md, "Resource limits").
MAX_VALUES = 1000000
MAX_CONTAINERS = 250000
MAX_CHANNELS = 1000
_LIMIT_NAMES = ("values", "containers", "channel references")
_MIN_LIST_ITEM = 7  # bytes: INT index (5) + smallest value (1) + SETITEM (1)

# opcodes (execnet 2.1 numbering)
BUILDTUPLE = 0x40  # @  n:i32     pop n items, push tuple
BYTES = 0x41  # A  n:i32 raw
CHANNEL = 0x42  # B  id:i32
FALSE = 0x43  # C
FLOAT = 0x44  # D  f64 big-endian
FROZENSET = 0x45  # E  n:i32     pop n items, push frozenset
INT = 0x46  # F  i32
LONG = 0x47  # G  i32 (Python 2 long; decode only)
LONGINT = 0x48  # H  n:i32 ascii decimal
LONGLONG = 0x49  # I  n:i32 ascii decimal (Python 2; decode only)
NEWDICT = 0x4A  # J
NEWLIST = 0x4B  # K  n:i32
NONE = 0x4C  # L
PY2STRING = 0x4D  # M  n:i32 raw (decode only)
PY3STRING = 0x4E  # N  n:i32 utf-8
SET = 0x4F  # O  n:i32     pop n items, push set
SETITEM = 0x50  # P           pop value, key; store into top
STOP = 0x51  # Q
TRUE = 0x52  # R
UNICODE = 0x53  # S  n:i32 utf-8 (Python 2; decode only)
COMPLEX = 0x54  # T  f64 f64 big-endian

# The operand each opcode is followed by: that many bytes, or SIZED (an i32
# length, then that many bytes).  STOP ends a value.  Read by code that skips
# over values without decoding them (weft.execnet.load).
SIZED = -1
OPERAND_SIZE = {
    BUILDTUPLE: 4, BYTES: SIZED, CHANNEL: 4, FALSE: 0, FLOAT: 8, FROZENSET: 4,
    INT: 4, LONG: 4, LONGINT: SIZED, LONGLONG: SIZED, NEWDICT: 0, NEWLIST: 4,
    NONE: 0, PY2STRING: SIZED, PY3STRING: SIZED, SET: 4, SETITEM: 0, STOP: 0,
    TRUE: 0, UNICODE: SIZED, COMPLEX: 16,
}

_I4 = struct.Struct("!i")
_F8 = struct.Struct("!d")
_C16 = struct.Struct("!dd")


def _type_name(tp):
    mod = getattr(tp, "__module__", None)
    qual = getattr(tp, "__qualname__", tp.__name__)
    if mod in (None, "builtins"):
        return qual
    return "%s.%s" % (mod, qual)


def _len4(buf, n, what):
    if n > INT4_MAX:
        raise DumpError("%s of length %d is too long for the wire (max 2**31-1)" % (what, n))
    buf += _I4.pack(n)


def dumps(obj, versioned=False):
    """Serialize ``obj`` to bytes (see the module docstring)."""
    buf = bytearray()
    if versioned:
        buf.append(DUMPFORMAT_VERSION)
    _save(buf, obj, 0, [0, 0, 0])
    buf.append(STOP)
    return bytes(buf)


def _count(counts, what):
    """Count one value (what=0), container (1) or channel (2) as the decoder
    will: more than it accepts is a DumpError here, not a LoadError there."""
    counts[what] += 1
    limit = MAX_VALUES if what == 0 else MAX_CONTAINERS if what == 1 else MAX_CHANNELS
    if counts[what] > limit:
        raise DumpError("more than %d %s in one message" % (limit, _LIMIT_NAMES[what]))


def _save(buf, obj, depth, counts):
    # counts: [values, containers, channels] so far, exactly as the decoder
    # counts them (docs/wire.md, "Resource limits")
    tp = type(obj)
    counts[0] += 1
    if counts[0] > MAX_VALUES and not (tp is tuple or tp is set or tp is frozenset):
        raise DumpError("more than %d values in one message" % MAX_VALUES)
    if obj is None:
        buf.append(NONE)
    elif tp is bool:
        buf.append(TRUE if obj else FALSE)
    elif tp is int:
        if INT4_MIN <= obj <= INT4_MAX:
            buf.append(INT)
            buf += _I4.pack(obj)
        else:
            try:
                digits = str(obj).encode("ascii")
            except ValueError as e:  # CPython's int_max_str_digits
                raise DumpError("int too large to serialize: %s" % e) from None
            if len(digits) - (digits[0] == 0x2D) > MAX_INT_DIGITS:
                raise DumpError(
                    "int with %d decimal digits exceeds the limit of %d"
                    % (len(digits), MAX_INT_DIGITS)
                )
            buf.append(LONGINT)
            buf += _I4.pack(len(digits))
            buf += digits
    elif tp is float:
        buf.append(FLOAT)
        buf += _F8.pack(obj)
    elif tp is complex:
        buf.append(COMPLEX)
        buf += _C16.pack(obj.real, obj.imag)
    elif tp is bytes:
        buf.append(BYTES)
        _len4(buf, len(obj), "bytes")
        buf += obj
    elif tp is str:
        try:
            raw = obj.encode("utf-8")
        except UnicodeEncodeError as e:
            raise DumpError("str is not UTF-8 encodable: %s" % e) from None
        buf.append(PY3STRING)
        _len4(buf, len(raw), "str")
        buf += raw
    elif tp is tuple or tp is list or tp is dict or tp is set or tp is frozenset:
        depth += 1
        if depth > MAX_DEPTH:
            raise DumpError(
                "containers nested deeper than %d (a self-referencing %s?)"
                % (MAX_DEPTH, tp.__name__)
            )
        if tp is list:
            # the items as they are now: encoding one can run Python code
            # (a channel's _weft_channel_id property) that changes the list,
            # and the count is written first (the Rust twin does the same)
            _count(counts, 1)
            items = obj[:]
            buf.append(NEWLIST)
            _len4(buf, len(items), "list")
            i = 0
            for item in items:
                _count(counts, 0)  # the index
                buf.append(INT)
                buf += _I4.pack(i)
                _save(buf, item, depth, counts)
                buf.append(SETITEM)
                counts[0] -= 1  # stored: the index no longer counts
                i += 1
        elif tp is dict:
            _count(counts, 1)
            buf.append(NEWDICT)
            try:
                for key, value in obj.items():
                    _save(buf, key, depth, counts)
                    _save(buf, value, depth, counts)
                    buf.append(SETITEM)
            except RuntimeError as e:  # changed size during iteration
                raise DumpError("dict changed during serialization: %s" % e) from None
        else:
            # the decoder meets this container's opcode after its items
            counts[0] -= 1
            n = 0
            try:
                for item in obj:
                    _save(buf, item, depth, counts)
                    n += 1
            except RuntimeError as e:
                raise DumpError("%s changed during serialization: %s" % (tp.__name__, e)) from None
            _count(counts, 0)
            _count(counts, 1)
            buf.append(BUILDTUPLE if tp is tuple else SET if tp is set else FROZENSET)
            _len4(buf, n, tp.__name__)
    else:
        cid = getattr(obj, "_weft_channel_id", None)
        if cid is None:
            raise DumpError(
                "can't serialize object of type %s (supported: None, bool, int, "
                "float, complex, bytes, str, tuple, list, dict, set, frozenset, "
                "channels)" % _type_name(tp)
            )
        if type(cid) is not int or not 0 <= cid <= INT4_MAX:
            raise DumpError(
                "%s._weft_channel_id is %r, expected an int in 0..2**31-1"
                % (_type_name(tp), cid)
            )
        _count(counts, 2)
        buf.append(CHANNEL)
        buf += _I4.pack(cid)


class _ListBuilder(object):
    """A list on the decode stack whose items are still arriving."""

    __slots__ = ("items", "size")

    def __init__(self, size):
        self.items = []
        self.size = size


_OPNAMES = {
    BUILDTUPLE: "BUILDTUPLE",
    SET: "SET",
    FROZENSET: "FROZENSET",
}


def loads(
    data,
    channel_factory=None,
    versioned=False,
    py2str_as_py3str=True,
    py3str_as_py2str=False,
):
    """Deserialize one value from ``data`` (see the module docstring)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("loads() needs bytes, not %s" % type(data).__name__)
    data = bytes(data)
    end = len(data)
    pos = 0
    if versioned:
        if end < 1 or data[0] != DUMPFORMAT_VERSION:
            raise LoadError(
                "wrong dump format version %r, expected %d"
                % (data[:1], DUMPFORMAT_VERSION)
            )
        pos = 1
    stack = []
    depths = []  # nesting depth of each stack entry: scalar 0, container >= 1
    open_lists = 0  # _ListBuilder entries on the stack
    missing = 0  # list items announced by NEWLIST and not yet stored
    values = containers = channels = 0
    unpack_i4 = _I4.unpack_from

    def fail(msg, at):
        raise LoadError("%s (at byte %d)" % (msg, at))

    def read_i4(at):
        if end - at < 4:
            fail("truncated 4-byte integer", at)
        return unpack_i4(data, at)[0]

    def read_len(at, what):
        n = read_i4(at)
        if n < 0:
            fail("negative %s length %d" % (what, n), at)
        if n > end - at - 4:
            fail("%s length %d exceeds the %d remaining bytes" % (what, n, end - at - 4), at)
        return n

    def finished(entry, at):
        if type(entry) is _ListBuilder:
            fail("list used before its %d items were all stored" % entry.size, at)

    while True:
        if pos >= end:
            fail("truncated: no STOP opcode", pos)
        op = data[pos]
        at = pos
        pos += 1
        if op != SETITEM and op != STOP:
            values += 1
            if values > MAX_VALUES:
                fail("more than %d values in one message" % MAX_VALUES, at)
        if op == NONE:
            stack.append(None)
            depths.append(0)
        elif op == TRUE:
            stack.append(True)
            depths.append(0)
        elif op == FALSE:
            stack.append(False)
            depths.append(0)
        elif op == INT or op == LONG:
            stack.append(read_i4(pos))
            depths.append(0)
            pos += 4
        elif op == LONGINT or op == LONGLONG:
            n = read_len(pos, "long int")
            pos += 4
            raw = data[pos : pos + n]
            pos += n
            digits = raw[1:] if raw[:1] == b"-" else raw
            if not digits.isdigit():
                fail("malformed long int %r" % raw[:40], at)
            if len(digits) > MAX_INT_DIGITS:
                fail("long int of %d digits exceeds the limit of %d" % (len(digits), MAX_INT_DIGITS), at)
            if (digits[0] == 0x30 and len(digits) > 1) or raw == b"-0":
                fail("non-canonical long int %r" % raw[:40], at)
            try:
                value = int(raw)
            except ValueError as e:
                fail("long int not convertible: %s" % e, at)
            stack.append(value)
            depths.append(0)
        elif op == FLOAT:
            if end - pos < 8:
                fail("truncated float", at)
            stack.append(_F8.unpack_from(data, pos)[0])
            depths.append(0)
            pos += 8
        elif op == COMPLEX:
            if end - pos < 16:
                fail("truncated complex", at)
            re_, im = _C16.unpack_from(data, pos)
            stack.append(complex(re_, im))
            depths.append(0)
            pos += 16
        elif op in (BYTES, PY3STRING, PY2STRING, UNICODE):
            n = read_len(pos, "string")
            pos += 4
            raw = data[pos : pos + n]
            pos += n
            if op == BYTES or (op == PY3STRING and py3str_as_py2str):
                value = raw
            elif op == PY2STRING:
                value = raw.decode("latin-1") if py2str_as_py3str else raw
            else:
                try:
                    value = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    fail("invalid UTF-8 in string: %s" % e, at)
            stack.append(value)
            depths.append(0)
        elif op == NEWDICT:
            containers += 1
            if containers > MAX_CONTAINERS:
                fail("more than %d containers in one message" % MAX_CONTAINERS, at)
            stack.append({})
            depths.append(1)
        elif op == NEWLIST:
            containers += 1
            if containers > MAX_CONTAINERS:
                fail("more than %d containers in one message" % MAX_CONTAINERS, at)
            n = read_i4(pos)
            if n < 0:
                fail("negative list length %d" % n, pos)
            pos += 4
            if n == 0:
                stack.append([])
            else:
                # Budget (docs/wire.md, "Resource limits"): each of the n new
                # items needs >= 7 bytes of its own, each item still missing
                # from an enclosing list >= 1 (its SETITEM).
                if n * _MIN_LIST_ITEM + missing > end - pos:
                    fail(
                        "list of %d items cannot fit in the %d remaining bytes"
                        % (n, end - pos),
                        at,
                    )
                missing += n
                stack.append(_ListBuilder(n))
                open_lists += 1
            depths.append(1)
        elif op == SETITEM:
            if len(stack) < 3:
                fail("SETITEM needs a container, a key and a value", at)
            value = stack.pop()
            key = stack.pop()
            vd = depths.pop()
            kd = depths.pop()
            if open_lists:
                finished(value, at)
                finished(key, at)
            target = stack[-1]
            tt = type(target)
            if tt is dict:
                try:
                    target[key] = value
                except TypeError:
                    fail("unhashable dict key of type %s" % type(key).__name__, at)
            elif tt is _ListBuilder:
                items = target.items
                if type(key) is not int or key != len(items):
                    fail(
                        "list index %r out of order, expected %d" % (key, len(items)),
                        at,
                    )
                items.append(value)
                missing -= 1
                values -= 1  # the index is gone: it does not count
                if len(items) == target.size:
                    stack[-1] = items
                    open_lists -= 1
            else:
                fail("SETITEM target is a %s, not a dict or an unfilled list" % tt.__name__, at)
            d = 1 + (kd if kd > vd else vd)
            if d > depths[-1]:
                if d > MAX_DEPTH:
                    fail("containers nested deeper than %d" % MAX_DEPTH, at)
                depths[-1] = d
        elif op == BUILDTUPLE or op == SET or op == FROZENSET:
            containers += 1
            if containers > MAX_CONTAINERS:
                fail("more than %d containers in one message" % MAX_CONTAINERS, at)
            n = read_i4(pos)
            pos += 4
            if n < 0 or n > len(stack):
                fail(
                    "%s of %d items but the stack holds %d"
                    % (_OPNAMES[op], n, len(stack)),
                    at,
                )
            if n:
                items = stack[-n:]
                del stack[-n:]
                d = 1 + max(depths[-n:])
                del depths[-n:]
                if d > MAX_DEPTH:
                    fail("containers nested deeper than %d" % MAX_DEPTH, at)
                if open_lists:
                    for item in items:
                        finished(item, at)
            else:
                items = ()
                d = 1
            if op == BUILDTUPLE:
                value = tuple(items)
            else:
                try:
                    value = set(items) if op == SET else frozenset(items)
                except TypeError:
                    fail("unhashable item in %s" % _OPNAMES[op].lower(), at)
            stack.append(value)
            depths.append(d)
        elif op == CHANNEL:
            channels += 1
            if channels > MAX_CHANNELS:
                fail("more than %d channel references in one message" % MAX_CHANNELS, at)
            cid = read_i4(pos)
            pos += 4
            if cid < 0:
                fail("negative channel id %d" % cid, at)
            if channel_factory is None:
                fail("channel reference %d but no channel_factory was given" % cid, at)
            stack.append(channel_factory(cid))
            depths.append(0)
        elif op == STOP:
            if len(stack) != 1:
                fail("STOP with %d values on the stack, expected 1" % len(stack), at)
            if pos != end:
                fail("%d trailing bytes after STOP" % (end - pos), pos)
            finished(stack[0], at)
            return stack[0]
        else:
            fail("unknown opcode 0x%02x" % op, at)
