"""Regenerate tests/vectors/wire.json (run: python tests/vectors/make_wire_vectors.py).

The valid vectors' bytes come from the pure-Python codec; they are checked
independently by the Rust codec (crates/weft-wire/tests/vectors.rs), by
hand-written byte literals in tests/test_wire.py, and against execnet's own
serializer when execnet is installed.  Malformed inputs are written by hand.
"""

import json
import math
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python", "weft", "_bootstrap"))

import wire  # noqa: E402


class Chan:
    def __init__(self, cid):
        self._weft_channel_id = cid


def desc(v):
    """JSON description of a Python value (see the "value_format" key)."""
    t = type(v)
    if v is None:
        return {"t": "none"}
    if t is bool:
        return {"t": "bool", "v": v}
    if t is int:
        return {"t": "int", "v": str(v)}
    if t is float:
        return {"t": "float", "bits": struct.pack("!d", v).hex(), "repr": repr(v)}
    if t is complex:
        return {
            "t": "complex",
            "re": struct.pack("!d", v.real).hex(),
            "im": struct.pack("!d", v.imag).hex(),
            "repr": repr(v),
        }
    if t is bytes:
        return {"t": "bytes", "hex": v.hex()}
    if t is str:
        return {"t": "str", "v": v}
    if t in (tuple, list, set, frozenset):
        return {"t": t.__name__, "items": [desc(x) for x in v]}
    if t is dict:
        return {"t": "dict", "items": [[desc(k), desc(x)] for k, x in v.items()]}
    if t is Chan:
        return {"t": "channel", "id": v._weft_channel_id}
    raise TypeError(t)


def nest_tuple(depth):
    v = None
    for _ in range(depth):
        v = (v,)
    return v


def nest_list(depth):
    v = 1
    for _ in range(depth):
        v = [v]
    return v


def nest_dict(depth):
    v = 0
    for _ in range(depth):
        v = {"k": v}
    return v


VALID = [
    ("none", None),
    ("true", True),
    ("false", False),
    ("int zero", 0),
    ("int one", 1),
    ("int minus one", -1),
    ("int i32 max", 2**31 - 1),
    ("int i32 min", -(2**31)),
    ("int i32 max + 1 (LONGINT)", 2**31),
    ("int i32 min - 1 (LONGINT)", -(2**31) - 1),
    ("int i64 max", 2**63 - 1),
    ("int i64 min", -(2**63)),
    ("int i64 max + 1", 2**63),
    ("int i64 min - 1", -(2**63) - 1),
    ("int 2**64", 2**64),
    ("int 2**100", 2**100),
    ("int -(10**50)", -(10**50)),
    ("int with 4300 digits (limit)", 10**4299),
    ("int with -4300 digits (limit)", -(10**4300 - 1)),
    ("float zero", 0.0),
    ("float negative zero", -0.0),
    ("float 1.5", 1.5),
    ("float -2.25e-10", -2.25e-10),
    ("float inf", math.inf),
    ("float -inf", -math.inf),
    ("float nan", math.nan),
    ("float smallest subnormal", 5e-324),
    ("float max", 1.7976931348623157e308),
    ("complex", complex(1.5, -2.0)),
    ("complex zero", 0j),
    ("complex inf nan", complex(math.inf, math.nan)),
    ("bytes empty", b""),
    ("bytes all values", bytes(range(256))),
    ("str empty", ""),
    ("str ascii", "hello"),
    ("str unicode", "h\u00e9llo \u4e16\u754c \U0001f600"),
    ("str nul", "a\x00b"),
    ("tuple empty", ()),
    ("tuple one", (1,)),
    ("tuple mixed", (None, True, 1, 2.0, "s", b"b")),
    ("list empty", []),
    ("list one", [None]),
    ("list mixed", [1, "two", [3, []], (4,), {}]),
    ("dict empty", {}),
    ("dict str keys", {"a": 1, "b": [2], "c": {"d": None}}),
    ("dict mixed keys", {1: "int", "1": "str", b"1": "bytes", (1, 2): "tuple", None: 0, 1.5: 1, frozenset([1]): 2}),
    ("set empty", set()),
    ("set ints", {1, 2, 3}),
    ("frozenset empty", frozenset()),
    ("frozenset ints", frozenset([4, 5])),
    ("set of tuple and frozenset", {(1, 2)}),
    ("frozenset nested", frozenset([frozenset([7])])),
    ("channel 0", Chan(0)),
    ("channel max", Chan(2**31 - 1)),
    ("channels in a dict", {"ch": Chan(3), "others": [Chan(5), (Chan(7),)]}),
    ("nested all kinds", {"t": (1, [2, {3: frozenset([(4, 5)])}]), "s": {b"x"}, "n": [None, [], (), {}]}),
]


def h(s):
    return s.encode("latin-1").hex()


I32 = lambda n: struct.pack("!i", n).decode("latin-1")  # noqa: E731

# Decode-only vectors: accepted bytes that our encoder never produces.
DECODE_ONLY = [
    ("LONG (python 2) opcode G", "G" + I32(-5) + "Q", -5, {}),
    ("LONGLONG (python 2) opcode I", "I" + I32(2) + "99Q", 99, {}),
    ("LONGINT holding a small value", "H" + I32(1) + "7Q", 7, {}),
    ("UNICODE (python 2) opcode S", "S" + I32(2) + "\xc3\xa9Q", "\u00e9", {}),
    ("PY2STRING as latin-1 text (default)", "M" + I32(1) + "\xe9Q", "\u00e9", {}),
    ("PY2STRING as bytes", "M" + I32(1) + "\xe9Q", b"\xe9", {"py2str_as_py3str": False}),
    ("PY3STRING as bytes", "N" + I32(2) + "\xc3\xa9Q", b"\xc3\xa9", {"py3str_as_py2str": True}),
    ("versioned int", "\x02F" + I32(1) + "Q", 1, {"versioned": True}),
    ("dict with repeated key keeps both pairs on the wire", "JLFxxxxPLF" + I32(2) + "PQ", None, {}),
]
# The last one needs exact bytes; fix its int operand.
DECODE_ONLY[-1] = (
    "dict with a key repeated",
    "J" + "L" + "F" + I32(1) + "P" + "L" + "F" + I32(2) + "P" + "Q",
    {None: 2},
    {"python_only": "Python keeps the last value; Rust keeps both pairs in wire order"},
)

K1 = "K" + I32(1)
IDX0 = "F" + I32(0)
MALFORMED = [
    ("empty input", ""),
    ("STOP on empty stack", "Q"),
    ("two values at STOP", "LLQ"),
    ("missing STOP", "L"),
    ("trailing byte after STOP", "LQL"),
    ("unknown opcode 0x00", "\x00Q"),
    ("unknown opcode 0xff", "\xffQ"),
    ("unknown opcode U", "UQ"),
    ("truncated INT", "F\x00\x00"),
    ("truncated FLOAT", "D\x00\x00\x00\x00Q"),
    ("truncated COMPLEX", "T" + "\x00" * 8 + "Q"),
    ("truncated length", "A\x00"),
    ("negative bytes length", "A" + I32(-1) + "Q"),
    ("bytes length beyond input", "A" + I32(10) + "abcQ"),
    ("bytes length 2**31-1", "A" + I32(2**31 - 1) + "Q"),
    ("invalid UTF-8", "N" + I32(1) + "\xffQ"),
    ("UTF-8 encoded surrogate", "N" + I32(3) + "\xed\xa0\x80Q"),
    ("overlong UTF-8", "N" + I32(2) + "\xc0\x80Q"),
    ("truncated UTF-8 sequence", "N" + I32(1) + "\xc3Q"),
    ("LONGINT empty", "H" + I32(0) + "Q"),
    ("LONGINT with plus sign", "H" + I32(2) + "+1Q"),
    ("LONGINT with space", "H" + I32(2) + " 1Q"),
    ("LONGINT with underscore", "H" + I32(3) + "1_0Q"),
    ("LONGINT leading zero", "H" + I32(2) + "01Q"),
    ("LONGINT minus zero", "H" + I32(2) + "-0Q"),
    ("LONGINT lone minus", "H" + I32(1) + "-Q"),
    ("LONGINT non-ascii digit", "H" + I32(2) + "\xd9\xa1Q"),
    ("LONGINT 4301 digits", "H" + I32(4301) + "1" + "0" * 4300 + "Q"),
    ("LONGINT negative length", "H" + I32(-3) + "Q"),
    ("NEWLIST negative length", "K" + I32(-1) + "Q"),
    ("NEWLIST 2**31-1 items", "K" + I32(2**31 - 1) + "Q"),
    ("NEWLIST more items than bytes could hold", "K" + I32(3) + IDX0 + "LP" + "Q"),
    ("inner NEWLIST leaves no byte for the outer SETITEM", K1 + K1 + "Q" + "\x00" * 6),
    ("list announced but never filled", K1 + "Q\x00\x00\x00\x00\x00\x00"),
    ("list index out of order", K1 + "F" + I32(1) + "LPQ"),
    ("list index negative", "K" + I32(2) + "F" + I32(-1) + "LP" + "F" + I32(1) + "LPQ"),
    ("list index is a bool", K1 + "CLP" + "Q\x00\x00\x00\x00"),
    ("SETITEM into a full list", "K" + I32(1) + IDX0 + "LP" + "F" + I32(1) + "LPQ"),
    ("partial list as a tuple item", K1 + "@" + I32(1) + "Q\x00\x00"),
    ("partial list as a dict value", "J" + "L" + K1 + "P" + "Q\x00\x00\x00\x00\x00\x00"),
    ("SETITEM with short stack", "JLPQ"),
    ("SETITEM into a tuple", "@" + I32(0) + "LLPQ"),
    ("SETITEM into None", "LLLPQ"),
    ("dict key is a list", "J" + "K" + I32(0) + "LPQ"),
    ("dict key is a dict", "JJLPQ"),
    ("dict key is a tuple holding a set", "J" + "O" + I32(0) + "@" + I32(1) + "LPQ"),
    ("set item is a list", "K" + I32(0) + "O" + I32(1) + "Q"),
    ("frozenset item is a dict", "JE" + I32(1) + "Q"),
    ("set item is a set", "O" + I32(0) + "O" + I32(1) + "Q"),
    ("BUILDTUPLE more items than stack", "L@" + I32(2) + "Q"),
    ("BUILDTUPLE negative count", "L@" + I32(-1) + "Q"),
    ("SET negative count", "O" + I32(-1) + "Q"),
    ("FROZENSET more items than stack", "E" + I32(1) + "Q"),
    ("channel negative id", "B" + I32(-1) + "Q"),
    ("tuple nested 257", "L" + ("@" + I32(1)) * 257 + "Q"),
    ("list nested 257", "".join(K1 + IDX0 for _ in range(257)) + "F" + I32(1) + "P" * 257 + "Q"),
    ("dict nested 257", "".join("JN" + I32(1) + "k" for _ in range(257)) + "F" + I32(0) + "P" * 257 + "Q"),
    ("set nested 257 via frozensets", "L" + ("E" + I32(1)) * 257 + "Q"),
    ("wrong version byte", "\x03LQ", {"versioned": True}),
    ("versioned but empty", "", {"versioned": True}),
    ("valid body but version byte missing", "LQ", {"versioned": True}),
]

FRAMES = [
    ("STATUS on channel 0, empty", wire.STATUS, 0, b""),
    ("CHANNEL_DATA with payload", wire.CHANNEL_DATA, 5, wire.dumps([1, "x"])),
    ("CHANNEL_EXEC high channel", wire.CHANNEL_EXEC, 2**31 - 1, b"print(1)"),
    ("CHANNEL_LAST_MESSAGE", wire.CHANNEL_LAST_MESSAGE, 9, b""),
]

BAD_HEADERS = [
    ("short header", "\x04\x00\x00\x00\x01\x00\x00\x00"),
    ("long header", "\x04\x00\x00\x00\x01\x00\x00\x00\x00\x00"),
    ("unknown message code 8", "\x08\x00\x00\x00\x01\x00\x00\x00\x00"),
    ("negative message code", "\xff\x00\x00\x00\x01\x00\x00\x00\x00"),
    ("negative channel id", "\x04\xff\xff\xff\xff\x00\x00\x00\x00"),
    ("negative length", "\x04\x00\x00\x00\x01\x80\x00\x00\x00"),
]


# Per-message limits (MAX_VALUES, MAX_CONTAINERS, MAX_CHANNELS): too big to
# spell out, so each vector is a list of [hex, count] parts whose
# concatenation (each hex repeated count times) is the input, with the
# offset and message of the error both decoders must raise (or "ok").
def _tuple_of(item_hex, n):
    return [[item_hex, n], [("@" + I32(n)).encode("latin-1").hex() + "51", 1]]


LIMITS = [
    ("values at the limit", _tuple_of("4c", wire.MAX_VALUES - 1), None),
    ("one value too many", _tuple_of("4c", wire.MAX_VALUES),
     (wire.MAX_VALUES, "more than %d values in one message" % wire.MAX_VALUES)),
    ("containers at the limit", _tuple_of("4a", wire.MAX_CONTAINERS - 1), None),
    ("one container too many", _tuple_of("4a", wire.MAX_CONTAINERS),
     (wire.MAX_CONTAINERS, "more than %d containers in one message" % wire.MAX_CONTAINERS)),
    ("empty sets over the container limit", [["4f00000000", wire.MAX_CONTAINERS + 1], ["51", 1]],
     (5 * wire.MAX_CONTAINERS, "more than %d containers in one message" % wire.MAX_CONTAINERS)),
    ("channels at the limit", _tuple_of("4200000001", wire.MAX_CHANNELS), None),
    ("one channel reference too many", _tuple_of("4200000001", wire.MAX_CHANNELS + 1),
     (5 * wire.MAX_CHANNELS, "more than %d channel references in one message" % wire.MAX_CHANNELS)),
    ("2 MiB of NEWDICT", [["4a", 2 << 20], ["51", 1]],
     (wire.MAX_CONTAINERS, "more than %d containers in one message" % wire.MAX_CONTAINERS)),
]


def main():
    valid = []
    for name, value in VALID:
        valid.append({"name": name, "hex": wire.dumps(value).hex(), "value": desc(value), "encode": True})
    # Deep values get a compact description (JSON parsers limit nesting too).
    for kind, build, leaf in (("tuple", nest_tuple, None), ("list", nest_list, 1), ("dict", nest_dict, 0)):
        d = {"t": "nested", "kind": kind, "depth": wire.MAX_DEPTH, "leaf": desc(leaf)}
        if kind == "dict":
            d["key"] = desc("k")
        valid.append(
            {
                "name": "%s nested %d (limit)" % (kind, wire.MAX_DEPTH),
                "hex": wire.dumps(build(wire.MAX_DEPTH)).hex(),
                "value": d,
                "encode": True,
            }
        )
    for name, raw, value, opts in DECODE_ONLY:
        entry = {"name": name, "hex": h(raw), "value": desc(value), "encode": False}
        if "python_only" in opts:
            entry["python_only"] = opts.pop("python_only")
        if opts:
            entry["options"] = opts
        valid.append(entry)
    malformed = []
    for item in MALFORMED:
        entry = {"name": item[0], "hex": h(item[1])}
        if len(item) > 2:
            entry["options"] = item[2]
        malformed.append(entry)
    frames = [
        {"name": n, "msgcode": c, "channel": ch, "payload_hex": p.hex(), "hex": wire.pack_message(c, ch, p).hex()}
        for n, c, ch, p in FRAMES
    ]
    doc = {
        "format": "weft-wire-vectors/1",
        "spec": "docs/wire.md",
        "value_format": (
            "Tagged JSON: {t: none|bool|int|float|complex|bytes|str|tuple|list|set|"
            "frozenset|dict|channel}. int: v = decimal text. float: bits = big-endian "
            "IEEE-754 hex (repr informational). complex: re/im bits. bytes: hex. str: v. "
            "tuple/list/set/frozenset: items in wire order. dict: items = [[key, value]] "
            "in wire order. channel: id. nested: kind (tuple|list|dict) applied depth "
            "times around leaf, as 1-item containers (dict: {key: inner})."
        ),
        "max_depth": wire.MAX_DEPTH,
        "max_int_digits": wire.MAX_INT_DIGITS,
        "valid": valid,
        "malformed": malformed,
        "frames": frames,
        "bad_headers": [{"name": n, "hex": h(x)} for n, x in BAD_HEADERS],
        "limits": [
            dict({"name": n, "parts": parts},
                 **({"ok": True} if err is None else {"offset": err[0], "error": err[1]}))
            for n, parts, err in LIMITS
        ],
        "max_values": wire.MAX_VALUES,
        "max_containers": wire.MAX_CONTAINERS,
        "max_channels": wire.MAX_CHANNELS,
    }
    path = os.path.join(HERE, "wire.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print("wrote %s: %d valid, %d malformed" % (path, len(valid), len(malformed)))


if __name__ == "__main__":
    main()
