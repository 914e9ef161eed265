"""gevent's own micro-benchmarks, weft against greenlet, in one run.

    python benchmarks/gevent_bench.py [--rounds N] [--quick] [--json out.json]

gevent 26.9.0's compiled wheel (the one `python -m weft.conformance gevent`
installs into its cache, with greenlet 3.5.6 beside it) runs once on weft
(`greenlet` answered by weft's alias) and once on greenlet, each workload in
a fresh interpreter, peers alternating, best of the rounds:

| name | measures | figure |
|---|---|---|
| `spawn_join` | `gevent.spawn(f)` for 10,000 greenlets whose `f` returns at once, then `gevent.joinall` | µs per greenlet |
| `sleep0` | 10 greenlets each calling `gevent.sleep(0)` 10,000 times (every call a switch to the hub and back) | µs per `sleep(0)` |

Lower is better; the ratio is weft / greenlet.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

WORKLOADS = ("spawn_join", "sleep0")


def child(workload, n):
    import gevent
    import greenlet

    def once():
        if workload == "spawn_join":
            t = time.perf_counter()
            gs = [gevent.spawn(int) for _ in range(n)]
            gevent.joinall(gs)
            return (time.perf_counter() - t) / n
        per = n // 10

        def loop():
            for _ in range(per):
                gevent.sleep(0)
        t = time.perf_counter()
        gevent.joinall([gevent.spawn(loop) for _ in range(10)])
        return (time.perf_counter() - t) / (per * 10)

    once()  # warm up: hub, loop, caches
    best = min(once() for _ in range(5))
    on_weft = greenlet.greenlet.__module__ == "greenlet" and "weft._weft" in sys.modules
    print(json.dumps({"seconds": best, "on_weft": on_weft, "greenlet": greenlet.__file__}))


def run(peer, workload, n, site):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([site] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    cmd = [sys.executable, os.path.abspath(__file__), "--child", workload, str(n)]
    if peer == "weft":
        cmd = [sys.executable, "-m", "weft.alias", "greenlet", "--"] + cmd
    out = subprocess.run(cmd, env=env, check=True, stdout=subprocess.PIPE, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    if (peer == "weft") != r["on_weft"]:
        raise SystemExit(f"{peer} run imported greenlet from {r['greenlet']}")
    return r["seconds"]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="benchmarks/gevent_bench.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small counts, one round")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.child:
        return child(args.child[0], int(args.child[1]))
    from weft._tooling.conformance import gevent_suite as cg
    site = str(cg.install(cg.GEVENT_VERSION))
    n = 1000 if args.quick else 10000
    rounds = 1 if args.quick else args.rounds
    results = {w: {"weft": [], "greenlet": []} for w in WORKLOADS}
    for w in WORKLOADS:
        for r in range(rounds):
            for peer in (("weft", "greenlet") if r % 2 == 0 else ("greenlet", "weft")):
                results[w][peer].append(run(peer, w, n, site))
                print(f"  {w:10s} {peer:8s} round {r + 1}/{rounds}", file=sys.stderr, flush=True)
    print(f"\ngevent {cg.GEVENT_VERSION}, greenlet {cg.GREENLET_VERSION}, CPython {sys.version.split()[0]}")
    print(f"{'workload':10s}  {'metric':14s}  {'weft':>9s}  {'greenlet':>9s}  {'weft/greenlet':>13s}")
    print(f"{'-' * 10}  {'-' * 14}  {'-' * 9}  {'-' * 9}  {'-' * 13}")
    summary = {}
    for w in WORKLOADS:
        a, b = min(results[w]["weft"]), min(results[w]["greenlet"])
        metric = "µs/greenlet" if w == "spawn_join" else "µs/sleep(0)"
        print(f"{w:10s}  {metric:14s}  {a * 1e6:8.2f}   {b * 1e6:8.2f}   {a / b:12.2f}x")
        summary[w] = {"weft_s": a, "greenlet_s": b, "ratio": a / b, "samples": results[w]}
    print("(best of rounds; each figure the best of 5 repetitions in a fresh interpreter)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": n, "rounds": rounds, "results": summary}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
