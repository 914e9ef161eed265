"""Gateway workloads over popen, one peer per process, shared by
``python -m weft`` and ``benchmarks/gateway_popen.py``:

    python -m weft._tooling.bench.gateway weft|execnet [--quick]

Prints one JSON line: startup (new gateway to the first remote_exec result, s),
roundtrip (echo of a small int, s), small_per_s (one-way rate of a 3-key dict),
bulk_mib_per_s (1 MiB bytes one way).
"""
import json
import sys
import time

ECHO = """
while 1:
    x = channel.receive()
    if x is None: break
    channel.send(x)
"""
COUNT = """
n = 0
while 1:
    x = channel.receive()
    if x is None: break
    n += 1
channel.send(n)
"""


def one_way_rate(gw, payload, n):
    """Messages per second for `n` sends of `payload`, counted by the remote."""
    ch = gw.remote_exec(COUNT)
    t = time.perf_counter()
    for _ in range(n):
        ch.send(payload)
    ch.send(None)
    assert ch.receive() == n
    return n / (time.perf_counter() - t)


def measure(execnet, quick=False):
    n_rt, n_small, n_bulk = (300, 3000, 30) if quick else (2000, 20000, 200)
    t0 = time.perf_counter()
    gw = execnet.makegateway("popen")
    ch = gw.remote_exec("channel.send(1)")
    ch.receive()
    startup = time.perf_counter() - t0
    ch = gw.remote_exec(ECHO)
    t = time.perf_counter()
    for i in range(n_rt):
        ch.send(i)
        ch.receive()
    roundtrip = (time.perf_counter() - t) / n_rt
    ch.send(None)
    small_rate = one_way_rate(gw, {"a": 1, "b": [1, 2, 3], "c": "hello"}, n_small)
    bulk = one_way_rate(gw, b"x" * (1 << 20), n_bulk)
    gw.exit()
    return {"startup": startup, "roundtrip": roundtrip, "small_per_s": small_rate, "bulk_mib_per_s": bulk}


def main(argv):
    peer = argv[0]
    if peer == "weft":
        import weft.execnet as execnet
    else:
        import execnet
    print(json.dumps(measure(execnet, quick="--quick" in argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
