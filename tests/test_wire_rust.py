"""The Rust codec binding (weft._weft.wire_dumps / wire_loads) must behave
exactly like the pure-Python codec: same bytes, same values, same errors.

Skipped when the compiled module is not built (tests/test_wire.py covers the
Python codec alone).
"""

import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_wire import DOC, Chan, from_desc, ids, same, values  # noqa: E402

_weft = pytest.importorskip("weft._weft")
if not hasattr(_weft, "wire_dumps"):  # pragma: no cover
    pytest.skip("weft._weft was built without the wire binding", allow_module_level=True)
import weft._bootstrap.wire as pywire  # noqa: E402

rdumps, rloads = _weft.wire_dumps, _weft.wire_loads


@pytest.mark.parametrize("vec", DOC["valid"], ids=ids(DOC["valid"]))
def test_valid_vector(vec):
    data = bytes.fromhex(vec["hex"])
    opts = vec.get("options", {})
    want = from_desc(vec["value"])
    got = rloads(data, channel_factory=Chan, **opts)
    assert same(got, want), (got, want)
    if vec["encode"]:
        assert rdumps(want, versioned=opts.get("versioned", False)) == data


@pytest.mark.parametrize("vec", DOC["malformed"], ids=ids(DOC["malformed"]))
def test_malformed_vector(vec):
    with pytest.raises(pywire.LoadError):
        rloads(bytes.fromhex(vec["hex"]), channel_factory=Chan, **vec.get("options", {}))


class BadChan:
    def __init__(self, cid):
        self._weft_channel_id = cid


def _self_ref():
    x = []
    x.append(x)
    return x


@pytest.mark.parametrize(
    "value",
    [object(), bytearray(b"x"), _self_ref(), "\ud800", BadChan(-1), BadChan(True), BadChan(2**31), True.__class__],
    ids=["object", "bytearray", "self-ref", "surrogate", "chan-neg", "chan-bool", "chan-big", "type"],
)
def test_same_dump_errors(value):
    with pytest.raises(pywire.DumpError):
        pywire.dumps(value)
    with pytest.raises(pywire.DumpError):
        rdumps(value)


def test_huge_int_is_dump_error():
    big = 10**4300  # 4301 digits
    with pytest.raises(pywire.DumpError):
        rdumps(big)
    with pytest.raises(pywire.DumpError):
        pywire.dumps(big)


def test_channel_semantics():
    with pytest.raises(pywire.LoadError, match="no channel_factory"):
        rloads(b"B\x00\x00\x00\x01Q")
    assert rloads(b"B\x00\x00\x00\x01Q", channel_factory=Chan) == Chan(1)

    def boom(cid):
        raise KeyError(cid)

    with pytest.raises(KeyError):
        rloads(b"B\x00\x00\x00\x01Q", channel_factory=boom)


def test_channels_are_made_as_the_python_twin_makes_them():
    """Both decoders call the channel factory in the same order, as they meet
    the references (a malformed payload may have made some before its error)."""
    calls = {}

    def factory_for(name):
        def factory(cid):
            calls[name].append(cid)
            return Chan(cid)
        return factory

    good = pywire.dumps([Chan(3), {"x": (Chan(5), 1)}, Chan(3)])
    bad = good[:-1] + b"\xff"
    for name, loads in (("rust", rloads), ("python", pywire.loads)):
        calls[name] = []
        assert loads(good, channel_factory=factory_for(name)) == [Chan(3), {"x": (Chan(5), 1)}, Chan(3)]
        with pytest.raises(pywire.LoadError):
            loads(bad, channel_factory=factory_for(name))
    assert calls["rust"] == calls["python"] == [3, 5, 3, 3, 5, 3]


@given(values)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_hypothesis_identical_bytes(v):
    data = pywire.dumps(v)
    assert rdumps(v) == data
    assert same(rloads(data, channel_factory=Chan), pywire.loads(data, channel_factory=Chan))


ALL = [bytes.fromhex(v["hex"]) for v in DOC["valid"] + DOC["malformed"] if not v.get("options")]


@given(st.data())
@settings(max_examples=1500, deadline=None)
def test_hypothesis_mutants_agree(data):
    raw = bytearray(data.draw(st.sampled_from(ALL)))
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(raw)))
        if data.draw(st.booleans()) and raw:
            raw[min(pos, len(raw) - 1)] = data.draw(st.integers(0, 255))
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=5))
    raw = bytes(raw)
    try:
        want = pywire.loads(raw, channel_factory=Chan)
    except pywire.LoadError:
        with pytest.raises(pywire.LoadError):
            rloads(raw, channel_factory=Chan)
        return
    got = rloads(raw, channel_factory=Chan)
    # duplicate dict keys / set items: Python dedups in both paths alike
    assert same(got, want)


@pytest.mark.parametrize("vec", DOC["limits"], ids=ids(DOC["limits"]))
def test_limit_vector_same_error(vec):
    # the Python decoder meets the same vectors in tests/test_wire.py, with
    # the same expected error text and offset: equal by transitivity
    from test_wire import limit_input

    data = limit_input(vec)
    if vec.get("ok"):
        rloads(data, channel_factory=Chan)
        return
    with pytest.raises(pywire.LoadError) as info:
        rloads(data, channel_factory=Chan)
    assert str(info.value) == "%s (at byte %d)" % (vec["error"], vec["offset"])


def test_channel_factory_calls_bounded_per_message():
    calls = []

    def factory(cid):
        calls.append(cid)
        return Chan(cid)

    with pytest.raises(pywire.LoadError, match="channel references"):
        rloads(b"B\x00\x00\x00\x01" * (pywire.MAX_CHANNELS + 1) + b"Q", channel_factory=factory)
    assert len(calls) == pywire.MAX_CHANNELS


# ------------------------------------------------------------------ hostile objects

class Mutator:
    """A channel whose _weft_channel_id property changes ``target``."""

    def __init__(self, target, how):
        self.target = target
        self.how = how

    @property
    def _weft_channel_id(self):
        self.how(self.target)
        return 1


def _grow_dict(d):
    d[len(d) + 1000] = 1


def _grow_set(s):
    s.add(len(s) + 1000)


@pytest.mark.parametrize("dumps", [rdumps, pywire.dumps], ids=["rust", "python"])
def test_dict_mutated_while_encoding_is_a_dumperror(dumps):
    d = {}
    d["a"] = Mutator(d, _grow_dict)
    d["b"] = 2
    with pytest.raises(pywire.DumpError, match="dict changed during serialization"):
        dumps(d)


@pytest.mark.parametrize("dumps", [rdumps, pywire.dumps], ids=["rust", "python"])
def test_set_mutated_while_encoding_is_a_dumperror(dumps):
    s = set()
    holder = (s,)
    s.add(Mutator(s, _grow_set))
    s.add(5)
    with pytest.raises(pywire.DumpError, match="set changed during serialization"):
        dumps(holder)


def test_list_mutated_while_encoding_stays_decodable():
    for how in (lambda l: l.append(9), lambda l: l.pop(), lambda l: l.clear()):
        out = []
        for dumps in (rdumps, pywire.dumps):
            lst = [1]
            lst.insert(0, Mutator(lst, how))
            lst.append(3)
            data = dumps(lst)
            out.append(data)
            assert len(pywire.loads(data, channel_factory=Chan)) == 3
            assert len(rloads(data, channel_factory=Chan)) == 3
        assert out[0] == out[1]


def test_hostile_dict_through_the_frame_writer():
    w = _weft.FrameWriter(os.open(os.devnull, os.O_WRONLY))
    d = {}
    d["a"] = Mutator(d, _grow_dict)
    with pytest.raises(pywire.DumpError):
        w.send(4, 1, d)
    with pytest.raises(pywire.DumpError):
        _weft.frame_dumps(4, 1, d)


def test_list_indices_do_not_count_towards_the_value_limit(monkeypatch):
    n = pywire.MAX_VALUES - 2  # K, n items, and the last index before its SETITEM
    assert len(rloads(rdumps(list(range(n))))) == n
    import struct
    over = b"K" + struct.pack("!i", n + 1) + b"".join(
        b"F" + struct.pack("!i", i) + b"F" + struct.pack("!i", i) + b"P" for i in range(n + 1)) + b"Q"
    with pytest.raises(pywire.LoadError) as info:
        rloads(over)
    want = "more than %d values in one message" % pywire.MAX_VALUES
    assert str(info.value).startswith(want)
    # the Python decoder counts the same way (a lower limit: it is slower)
    monkeypatch.setattr(pywire, "MAX_VALUES", 1000)
    assert len(pywire.loads(rdumps(list(range(998))))) == 998
    with pytest.raises(pywire.LoadError, match="more than 1000 values"):
        pywire.loads(rdumps(list(range(999))))


def _limit_cases(max_values, max_containers, max_channels):
    """(value, decodes?) pairs at and just over each limit."""
    return [
        (list(range(max_values - 2)), True),
        (list(range(max_values - 1)), False),
        ((None,) * (max_values - 1), True),
        ((None,) * max_values, False),
        (tuple({} for _ in range(max_containers - 1)), True),
        (tuple({} for _ in range(max_containers)), False),
        ([Chan(1)] * max_channels, True),
        ([Chan(1)] * (max_channels + 1), False),
    ]


def test_rust_encoder_refuses_what_the_decoder_would():
    for value, ok in _limit_cases(pywire.MAX_VALUES, pywire.MAX_CONTAINERS,
                                  pywire.MAX_CHANNELS):
        if ok:
            rloads(rdumps(value), channel_factory=Chan)
            rloads(_weft.frame_dumps(4, 1, value)[9:], channel_factory=Chan)
        else:
            with pytest.raises(pywire.DumpError, match="in one message"):
                rdumps(value)
            with pytest.raises(pywire.DumpError, match="in one message"):
                _weft.frame_dumps(4, 1, value)


def test_python_encoder_refuses_what_the_decoder_would(monkeypatch):
    # lower limits: the pure-Python codec is slower (both ends read them)
    monkeypatch.setattr(pywire, "MAX_VALUES", 3000)
    monkeypatch.setattr(pywire, "MAX_CONTAINERS", 500)
    monkeypatch.setattr(pywire, "MAX_CHANNELS", 20)
    for value, ok in _limit_cases(3000, 500, 20):
        if ok:
            pywire.loads(pywire.dumps(value), channel_factory=Chan)
        else:
            with pytest.raises(pywire.DumpError, match="in one message"):
                pywire.dumps(value)
