"""The pure-Python wire codec (python/weft/_bootstrap/wire.py) against the
shared vectors, execnet's own serializer (when installed) and hypothesis.

Runs without the compiled weft module: wire.py is imported by path.
"""

import ast
import enum
import importlib.util
import json
import math
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIRE_PATH = os.path.join(ROOT, "python", "weft", "_bootstrap", "wire.py")
VECTORS = os.path.join(ROOT, "tests", "vectors", "wire.json")


def _load_wire():
    spec = importlib.util.spec_from_file_location("weft_bootstrap_wire", WIRE_PATH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


wire = _load_wire()

with open(VECTORS, encoding="utf-8") as f:
    DOC = json.load(f)


class Chan:
    """Stands for a channel: encodes as a channel reference."""

    def __init__(self, cid):
        self._weft_channel_id = cid

    def __eq__(self, other):
        return type(other) is Chan and other._weft_channel_id == self._weft_channel_id

    def __hash__(self):
        return hash(("Chan", self._weft_channel_id))

    def __repr__(self):
        return "Chan(%d)" % self._weft_channel_id


def bits(h):
    return struct.unpack("!d", bytes.fromhex(h))[0]


def from_desc(d):
    t = d["t"]
    if t == "none":
        return None
    if t == "bool":
        return d["v"]
    if t == "int":
        return int(d["v"])
    if t == "float":
        return bits(d["bits"])
    if t == "complex":
        return complex(bits(d["re"]), bits(d["im"]))
    if t == "bytes":
        return bytes.fromhex(d["hex"])
    if t == "str":
        return d["v"]
    if t in ("tuple", "list", "set", "frozenset"):
        items = [from_desc(x) for x in d["items"]]
        return {"tuple": tuple, "list": list, "set": set, "frozenset": frozenset}[t](items)
    if t == "dict":
        return {from_desc(k): from_desc(v) for k, v in d["items"]}
    if t == "channel":
        return Chan(d["id"])
    if t == "nested":
        v = from_desc(d["leaf"])
        for _ in range(d["depth"]):
            if d["kind"] == "tuple":
                v = (v,)
            elif d["kind"] == "list":
                v = [v]
            else:
                v = {from_desc(d["key"]): v}
        return v
    raise AssertionError("unknown tag %r" % t)


def same(a, b):
    """Equality that also checks types, float bits and dict order."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack("!d", a) == struct.pack("!d", b)
    if type(a) is complex:
        return same(a.real, b.real) and same(a.imag, b.imag)
    if type(a) in (tuple, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return len(a) == len(b) and all(
            same(k1, k2) and same(v1, v2) for (k1, v1), (k2, v2) in zip(a.items(), b.items())
        )
    return a == b


def ids(entries):
    return [e["name"] for e in entries]


# ------------------------------------------------------------------ vectors


@pytest.mark.parametrize("vec", DOC["valid"], ids=ids(DOC["valid"]))
def test_valid_vector(vec):
    data = bytes.fromhex(vec["hex"])
    opts = vec.get("options", {})
    want = from_desc(vec["value"])
    got = wire.loads(data, channel_factory=Chan, **opts)
    assert same(got, want), (got, want)
    if vec["encode"]:
        assert wire.dumps(want, versioned=opts.get("versioned", False)) == data


@pytest.mark.parametrize("vec", DOC["malformed"], ids=ids(DOC["malformed"]))
def test_malformed_vector(vec):
    with pytest.raises(wire.LoadError) as info:
        wire.loads(bytes.fromhex(vec["hex"]), channel_factory=Chan, **vec.get("options", {}))
    assert str(info.value)


@pytest.mark.parametrize("vec", DOC["frames"], ids=ids(DOC["frames"]))
def test_frame_vector(vec):
    payload = bytes.fromhex(vec["payload_hex"])
    frame = wire.pack_message(vec["msgcode"], vec["channel"], payload)
    assert frame.hex() == vec["hex"]
    assert wire.unpack_header(frame[: wire.HEADER_SIZE]) == (vec["msgcode"], vec["channel"], len(payload))


@pytest.mark.parametrize("vec", DOC["bad_headers"], ids=ids(DOC["bad_headers"]))
def test_bad_header_vector(vec):
    with pytest.raises(wire.LoadError):
        wire.unpack_header(bytes.fromhex(vec["hex"]))


def test_vector_file_limits_match_module():
    assert DOC["max_depth"] == wire.MAX_DEPTH == 256
    assert DOC["max_int_digits"] == wire.MAX_INT_DIGITS == 4300


# ------------------------------------------------------ hand-written bytes


@pytest.mark.parametrize(
    "value, data",
    [
        (None, b"LQ"),
        (True, b"RQ"),
        (False, b"CQ"),
        (7, b"F\x00\x00\x00\x07Q"),
        (-(2**31), b"F\x80\x00\x00\x00Q"),
        (2**31, b"H\x00\x00\x00\x0a2147483648Q"),
        (-(2**31) - 1, b"H\x00\x00\x00\x0b-2147483649Q"),
        (1.0, b"D\x3f\xf0\x00\x00\x00\x00\x00\x00Q"),
        (1j, b"T" + b"\x00" * 8 + b"\x3f\xf0" + b"\x00" * 6 + b"Q"),
        (b"ab", b"A\x00\x00\x00\x02abQ"),
        ("\u00e9", b"N\x00\x00\x00\x02\xc3\xa9Q"),
        ((1, None), b"F\x00\x00\x00\x01L@\x00\x00\x00\x02Q"),
        (["x"], b"K\x00\x00\x00\x01F\x00\x00\x00\x00N\x00\x00\x00\x01xPQ"),
        ({"a": None}, b"JN\x00\x00\x00\x01aLPQ"),
        ({1}, b"F\x00\x00\x00\x01O\x00\x00\x00\x01Q"),
        (frozenset(), b"E\x00\x00\x00\x00Q"),
        (Chan(5), b"B\x00\x00\x00\x05Q"),
    ],
)
def test_literal_bytes(value, data):
    assert wire.dumps(value) == data
    assert same(wire.loads(data, channel_factory=Chan), value)


def test_versioned_form():
    assert wire.dumps(None, versioned=True) == b"\x02LQ"
    assert wire.loads(b"\x02LQ", versioned=True) is None


def test_pack_message_layout():
    assert wire.HEADER_SIZE == 9
    assert wire.pack_message(wire.CHANNEL_DATA, 258, b"xy") == b"\x04\x00\x00\x01\x02\x00\x00\x00\x02xy"
    codes = [
        wire.STATUS,
        wire.RECONFIGURE,
        wire.GATEWAY_TERMINATE,
        wire.CHANNEL_EXEC,
        wire.CHANNEL_DATA,
        wire.CHANNEL_CLOSE,
        wire.CHANNEL_CLOSE_ERROR,
        wire.CHANNEL_LAST_MESSAGE,
    ]
    assert codes == list(range(8))
    assert [wire.MESSAGE_NAMES[c] for c in codes][-1] == "CHANNEL_LAST_MESSAGE"


@pytest.mark.parametrize(
    "args",
    [(8, 0, b""), (-1, 0, b""), (wire.STATUS, -1, b""), (wire.STATUS, 2**31, b""), (wire.STATUS, 0, "text")],
)
def test_pack_message_rejects(args):
    with pytest.raises(wire.DumpError):
        wire.pack_message(*args)


def test_unpack_header_max_length():
    header = wire.pack_message(wire.CHANNEL_DATA, 1, b"x" * 10)[:9]
    assert wire.unpack_header(header, max_length=10) == (4, 1, 10)
    with pytest.raises(wire.LoadError, match="exceeds the limit of 9"):
        wire.unpack_header(header, max_length=9)


# -------------------------------------------------------------- dump errors


class Color(enum.IntEnum):
    RED = 1


class BadChan:
    def __init__(self, cid):
        self._weft_channel_id = cid


def _self_ref():
    x = []
    x.append(x)
    return x


@pytest.mark.parametrize(
    "value, match",
    [
        (object(), "type object"),
        (Color.RED, "test_wire.Color"),
        (bytearray(b"x"), "type bytearray"),
        ([1, {2: object()}], "type object"),
        (_self_ref(), "nested deeper than 256"),
        ("\ud800", "not UTF-8 encodable"),
        (BadChan(-1), "_weft_channel_id is -1"),
        (BadChan(True), "_weft_channel_id is True"),
        (BadChan("3"), "_weft_channel_id is '3'"),
        (BadChan(2**31), "_weft_channel_id"),
        pytest.param(10**4300, "exceeds the limit of 4300|too large", id="int-4301-digits"),
    ],
)
def test_dump_errors(value, match):
    with pytest.raises(wire.DumpError, match=match):
        wire.dumps(value)


def test_error_hierarchy():
    assert issubclass(wire.DumpError, wire.DataFormatError)
    assert issubclass(wire.LoadError, wire.DataFormatError)
    assert not issubclass(wire.LoadError, wire.DumpError)


def test_channel_needs_factory():
    with pytest.raises(wire.LoadError, match="no channel_factory"):
        wire.loads(b"B\x00\x00\x00\x01Q")


def test_channel_factory_errors_propagate():
    def factory(cid):
        raise KeyError(cid)

    with pytest.raises(KeyError):
        wire.loads(b"B\x00\x00\x00\x01Q", channel_factory=factory)


def test_loads_rejects_non_bytes():
    with pytest.raises(TypeError):
        wire.loads("LQ")
    assert wire.loads(bytearray(b"LQ")) is None
    assert wire.loads(memoryview(b"F\x00\x00\x00\x02Q")) == 2


def test_module_is_self_contained_and_py38():
    with open(WIRE_PATH, encoding="utf-8") as f:
        src = f.read()
    tree = ast.parse(src, feature_version=(3, 8))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported == {"struct"}, imported
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not names & {"eval", "exec", "compile", "__import__", "getattr_static"}, names


# --------------------------------------------------------- execnet compare

try:  # execnet is optional: it only proves byte compatibility with the peer
    from execnet import gateway_base  # type: ignore
except ImportError:  # pragma: no cover
    gateway_base = None

needs_execnet = pytest.mark.skipif(gateway_base is None, reason="execnet not installed")


def _execnet_encodable(v):
    """execnet packs every int up to 2**31-1 with '!i', so it fails below -2**31."""
    t = type(v)
    if t is int:
        return v >= -(2**31)
    if t in (tuple, list, set, frozenset):
        return all(_execnet_encodable(x) for x in v)
    if t is dict:
        return all(_execnet_encodable(k) and _execnet_encodable(x) for k, x in v.items())
    return t is not Chan


@needs_execnet
@pytest.mark.parametrize("vec", [v for v in DOC["valid"] if v["encode"]], ids=ids([v for v in DOC["valid"] if v["encode"]]))
def test_execnet_agrees_on_vectors(vec):
    value = from_desc(vec["value"])
    data = bytes.fromhex(vec["hex"])
    if _execnet_encodable(value):
        assert gateway_base.dumps_internal(value) == data
        assert gateway_base.dumps(value) == wire.dumps(value, versioned=True)
    if _no_chan(value):
        assert same(gateway_base.loads_internal(data), value)


def _no_chan(v):
    t = type(v)
    if t is Chan:
        return False
    if t in (tuple, list, set, frozenset):
        return all(_no_chan(x) for x in v)
    if t is dict:
        return all(_no_chan(k) and _no_chan(x) for k, x in v.items())
    return True


# --------------------------------------------------------------- hypothesis

floats_hashable = st.floats(allow_nan=False)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**60), max_value=10**60),
    st.floats(),
    st.complex_numbers(allow_nan=False),
    st.binary(max_size=40),
    st.text(max_size=40),
    st.integers(min_value=0, max_value=2**31 - 1).map(Chan),
)
hashable = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), floats_hashable, st.binary(max_size=10), st.text(max_size=10)),
    lambda inner: st.one_of(st.tuples(inner, inner), st.frozensets(inner, max_size=4)),
    max_leaves=8,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.lists(inner, max_size=6).map(tuple),
        st.dictionaries(hashable, inner, max_size=5),
        st.sets(hashable, max_size=5),
        st.frozensets(hashable, max_size=5),
    ),
    max_leaves=30,
)


def _has_set(v):
    t = type(v)
    if t in (set, frozenset):
        return True
    if t in (tuple, list):
        return any(_has_set(x) for x in v)
    if t is dict:
        return any(_has_set(k) or _has_set(x) for k, x in v.items())
    return False


@given(values)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_hypothesis_round_trip(v):
    data = wire.dumps(v)
    back = wire.loads(data, channel_factory=Chan)
    # sets compare with ==: the strategies keep NaN out of hashables
    assert same(back, v)
    if not _has_set(v):
        assert wire.dumps(back) == data


@needs_execnet
@given(values.filter(lambda v: _execnet_encodable(v) and _no_chan(v)))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_hypothesis_matches_execnet(v):
    data = wire.dumps(v)
    assert gateway_base.dumps_internal(v) == data
    assert same(gateway_base.loads_internal(data), v)


ALL_VALID = [bytes.fromhex(v["hex"]) for v in DOC["valid"] if not v.get("options")]


@given(st.data())
@settings(max_examples=1500, deadline=None)
def test_hypothesis_mutated_inputs_only_raise_loaderror(data):
    base = bytearray(data.draw(st.sampled_from(ALL_VALID)))
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.integers(0, 3))
        pos = data.draw(st.integers(0, len(base)))
        if kind == 0 and base:
            base[min(pos, len(base) - 1)] = data.draw(st.integers(0, 255))
        elif kind == 1:
            base[pos:pos] = data.draw(st.binary(min_size=1, max_size=6))
        elif kind == 2:
            del base[pos : pos + data.draw(st.integers(1, 8))]
        else:
            base = base[:pos]
    try:
        wire.loads(bytes(base), channel_factory=Chan)
    except wire.LoadError:
        pass


@given(st.binary(max_size=200))
@settings(max_examples=1000, deadline=None)
def test_hypothesis_random_bytes_only_raise_loaderror(raw):
    try:
        wire.loads(raw, channel_factory=Chan)
    except wire.LoadError:
        pass


def test_nan_round_trips_by_bits():
    back = wire.loads(wire.dumps([math.nan, complex(math.nan, -0.0)]))
    assert math.isnan(back[0]) and math.isnan(back[1].real)
    assert math.copysign(1.0, back[1].imag) == -1.0


# ------------------------------------------------------------------ per-message limits

def limit_input(vec):
    return b"".join(bytes.fromhex(part) * count for part, count in vec["parts"])


def test_limit_constants_match_vectors():
    assert (wire.MAX_VALUES, wire.MAX_CONTAINERS, wire.MAX_CHANNELS) == (
        DOC["max_values"], DOC["max_containers"], DOC["max_channels"])


@pytest.mark.parametrize("vec", DOC["limits"], ids=ids(DOC["limits"]))
def test_limit_vector(vec):
    data = limit_input(vec)
    if vec.get("ok"):
        wire.loads(data, channel_factory=Chan)
        return
    with pytest.raises(wire.LoadError) as info:
        wire.loads(data, channel_factory=Chan)
    assert str(info.value) == "%s (at byte %d)" % (vec["error"], vec["offset"])
