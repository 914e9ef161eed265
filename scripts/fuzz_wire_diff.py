"""Differential fuzzer of the two wire decoders (docs/wire.md).

Mutates inputs from the seed corpus (tests/vectors/wire.json and the files
in tests/vectors/fuzz-corpus/) and feeds every mutant to the Rust decoder
(weft._weft.wire_loads) and the pure-Python one (weft._bootstrap.wire.loads),
with the same options and a recording channel factory.  They must agree:
both return the same value (same types, float bits, dict order, set items)
after the same channel-factory calls, or both raise LoadError.  Anything else
(disagreement, another exception type, a crash) is a failure: the input is
written to tests/vectors/fuzz-crashes/ (turn it into a vector in
tests/vectors/make_wire_vectors.py) and the run exits 1.

    python scripts/fuzz_wire_diff.py [--iters N] [--seed S] [--grow-corpus]

--grow-corpus keeps mutants with an outcome not seen before (a cheap
coverage proxy: error message shape, or result type signature) in
tests/vectors/fuzz-corpus/.  CI runs 1,000,000 iterations (scripts/test.sh).
"""

import argparse
import hashlib
import json
import os
import random
import re
import struct
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VECTORS = os.path.join(ROOT, "tests", "vectors", "wire.json")
CORPUS = os.path.join(ROOT, "tests", "vectors", "fuzz-corpus")
CRASHES = os.path.join(ROOT, "tests", "vectors", "fuzz-crashes")

from weft import _weft  # noqa: E402
from weft._bootstrap import wire  # noqa: E402

rloads, ploads = _weft.wire_loads, wire.loads
LoadError = wire.LoadError

# Interesting operand bytes: boundaries of i32 counts and every opcode (as
# crates/weft-wire/tests/mutate.rs).
DICT = [
    b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00",
    b"\x00\x00\x00\x01", b"P", b"Q", b"K\x00\x00\x00\x01", b"J", b"@\x00\x00\x00\x02",
    b"F\x00\x00\x00\x00", b"H\x00\x00\x00\x01", b"O\x00\x00\x00\x01", b"E\x00\x00\x00\x01",
    b"B\x00\x00\x00\x03", b"N\x00\x00\x00\x02\xc3\xa9", b"M\x00\x00\x00\x01\xe9",
    b"D\x7f\xf8\x00\x00\x00\x00\x00\x01", b"T" + b"\x00" * 16, b"A\x00\x00\x00\x00",
    b"L", b"R", b"C", b"\x02",
]

OPTIONS = [
    {},
    {"versioned": True},
    {"py2str_as_py3str": False},
    {"py3str_as_py2str": True},
    {"versioned": True, "py2str_as_py3str": False, "py3str_as_py2str": True},
]


def seeds():
    with open(VECTORS, encoding="utf-8") as f:
        doc = json.load(f)
    out = [bytes.fromhex(v["hex"]) for sec in ("valid", "malformed") for v in doc[sec]]
    for sec in ("frames", "bad_headers"):
        out += [bytes.fromhex(v["hex"])[9:] for v in doc[sec]]
    if os.path.isdir(CORPUS):
        for name in sorted(os.listdir(CORPUS)):
            with open(os.path.join(CORPUS, name), "rb") as f:
                out.append(f.read())
    return [s for s in out if len(s) <= 65536]


def mutate(rng, data):
    data = bytearray(data)
    for _ in range(1 + rng.randrange(4)):
        pos = rng.randrange(len(data) + 1)
        k = rng.randrange(7)
        if k == 0 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif k == 1 and data:
            data[min(pos, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif k == 2:
            data[pos:pos] = DICT[rng.randrange(len(DICT))]
        elif k == 3:
            end = min(pos + 1 + rng.randrange(8), len(data))
            del data[min(pos, end):end]
        elif k == 4:
            del data[pos:]
        elif k == 5:
            start = rng.randrange(len(data) + 1)
            end = min(start + rng.randrange(16), len(data))
            data[pos:pos] = data[start:end]
        else:  # splice in a piece of another seed
            other = SEEDS[rng.randrange(len(SEEDS))]
            start = rng.randrange(len(other) + 1)
            data[pos:pos] = other[start:start + rng.randrange(24)]
    return bytes(data)


class Chan:
    __slots__ = ("cid",)

    def __init__(self, cid):
        self.cid = cid


def canon(v):
    """A comparable picture of a decoded value: types, float bits, order."""
    t = type(v)
    if t is float:
        return ("f", struct.pack("!d", v))
    if t is complex:
        return ("c", struct.pack("!dd", v.real, v.imag))
    if t is tuple or t is list:
        return (t.__name__, tuple(canon(x) for x in v))
    if t is dict:
        return ("d", tuple((canon(k), canon(x)) for k, x in v.items()))
    if t is set or t is frozenset:
        return (t.__name__, tuple(sorted((canon(x) for x in v), key=repr)))
    if t is Chan:
        return ("chan", v.cid)
    return (t.__name__, v)


def run_one(loads, data, opts):
    calls = []

    def factory(cid):
        calls.append(cid)
        return Chan(cid)

    try:
        value = loads(data, channel_factory=factory, **opts)
    except LoadError as exc:
        return ("error", str(exc)), calls
    return ("ok", canon(value)), calls


def _types(c, depth=0):
    if depth > 1 or not isinstance(c, tuple) or not c:
        return ""
    if not isinstance(c[0], str):  # a dict's (key, value) pair
        return ":".join(_types(x, depth) for x in c[:2])
    tag, rest = c[0], c[1:]
    inner = rest[0] if rest and isinstance(rest[0], tuple) else ()
    return tag + "(" + ",".join(sorted({_types(x, depth + 1) for x in inner
                                        if isinstance(x, tuple)})) + ")"


def outcome_shape(result):
    """Coarse: the error's words without numbers or quoted parts, or the
    decoded value's types two levels deep."""
    kind, what = result
    if kind == "error":
        text = re.sub(r"'[^']*'|\"[^\"]*\"|b'[^']*'|0x[0-9a-f]+|-?\d+", "", what)
        return "E:" + " ".join(text.split()[:6])
    return "V:" + _types(what)


def check(data, opts):
    """The two decoders' shared outcome; raises AssertionError if they differ."""
    try:
        r, rcalls = run_one(rloads, data, opts)
    except Exception as exc:
        raise AssertionError("Rust decoder raised %r" % (exc,))
    try:
        p, pcalls = run_one(ploads, data, opts)
    except Exception as exc:
        raise AssertionError("Python decoder raised %r" % (exc,))
    if r[0] != p[0]:
        raise AssertionError("Rust %s, Python %s" % (r, p))
    if r[0] == "ok" and (r[1] != p[1] or rcalls != pcalls):
        raise AssertionError("different values: Rust %r / Python %r (factory %r / %r)"
                             % (r[1], p[1], rcalls, pcalls))
    return p


def save(directory, data):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, hashlib.sha1(data).hexdigest()[:16])
    with open(path, "wb") as f:
        f.write(data)
    return path


SEEDS = []


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=int(os.environ.get("WEFT_WIRE_DIFF_ITERS",
                                                                    1000000)))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("WEFT_WIRE_DIFF_SEED",
                                                                   0x5EEDF00D)))
    ap.add_argument("--grow-corpus", action="store_true")
    opts = ap.parse_args(argv)
    SEEDS[:] = seeds()
    rng = random.Random(opts.seed)
    seen = set()
    decoded = failures = 0
    t0 = time.monotonic()
    for i in range(opts.iters):
        base = SEEDS[rng.randrange(len(SEEDS))]
        data = mutate(rng, base)
        o = OPTIONS[rng.randrange(len(OPTIONS))] if i % 4 == 0 else OPTIONS[0]
        try:
            result = check(data, o)
        except AssertionError as exc:
            failures += 1
            path = save(CRASHES, data)
            print("DISAGREEMENT on %s (options %r): %s\n  saved %s"
                  % (data.hex()[:200], o, str(exc)[:500], path), flush=True)
            if failures >= 10:
                break
            continue
        if result[0] == "ok":
            decoded += 1
        if opts.grow_corpus and len(data) <= 4096:
            shape = outcome_shape(result)
            if shape not in seen:
                seen.add(shape)
                save(CORPUS, data)
    took = time.monotonic() - t0
    print("fuzz-wire-diff: %d executions (both decoders each), %d decoded, %d seeds, "
          "%.1f s (%.0f/s), seed %d, %d failures"
          % (i + 1, decoded, len(SEEDS), took, (i + 1) / took, opts.seed, failures))
    if failures:
        return 1
    if decoded * 50 < i + 1:
        print("fuzz-wire-diff: too few mutants decode (%d): the mutator only reaches "
              "the first error checks" % decoded)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
