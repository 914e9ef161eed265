"""``python -m weft``: measure weft on this machine, now, beside greenlet.

Every figure is measured while you wait (nothing is stored or hard-coded), by the
same workload code as ``benchmarks/`` (``weft._tooling.bench.coroutines``), each in a fresh interpreter.
When the ``greenlet`` package is importable its figures are measured the same way,
interleaved with weft's, and the ratio is printed.

    python -m weft            # about half a minute (the million dominates)
    python -m weft --quick    # a few seconds, small counts
    python -m weft --full     # also greenlet's million (several GiB, slower)
"""
from __future__ import annotations

import argparse
import sys
import time

from weft._tooling.bench import coroutines as _bench

# Showcase sizes: shorter than benchmarks/run.py, same workloads.
SHOWCASE = {
    "switch": {"budget": 0.4, "rounds": 2},
    "create": {"budget": 0.4, "rounds": 2},
    "memory": {"count": 30_000, "depth": 10, "rounds": 1},
    "million": {"count": 1_000_000, "depth": 2, "rounds": 1},
}


def _kib(b):
    return f"{b / 1024:,.1f} KiB"


def _compare(res, metric, lower_word, higher_word):
    """'3.1x faster' style phrase for weft against greenlet, or ''."""
    r = _bench.ratio(res, metric)
    if r is None:
        return ""
    if r <= 1:
        return f"{1 / r:.1f}x {lower_word}" if r > 0 else ""
    return f"{r:.1f}x {higher_word}"


def _fig(res, peer, metric, fmt):
    entry = res.get(peer)
    if entry is None:
        return None
    if entry.get("skipped"):
        return "skipped"
    if "error" in entry and not entry.get("figures"):
        return "failed"
    v = entry.get("figures", {}).get(metric)
    return None if v is None else fmt(v)


def _row(title, what, res, metric, fmt, words, peers):
    line = f"  {title:<8} {what:<40}"
    for p in peers:
        v = _fig(res, p, metric, fmt)
        line += f"  {p} {v or '-':>11}"
    if "greenlet" in peers:
        line += f"   {_compare(res, metric, *words)}"
    print(line.rstrip(), flush=True)


def _errors(res):
    for p, entry in res.items():
        if "error" in entry:
            print(f"    ({p} failed: {entry['error'].splitlines()[-1]})", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m weft", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts; a few seconds")
    ap.add_argument("--full", action="store_true",
                    help="also run greenlet's one-million workload (slow, several GiB)")
    ap.add_argument("--no-greenlet", action="store_true",
                    help="measure weft only, even if greenlet is importable")
    args = ap.parse_args(argv)

    params = _bench.QUICK if args.quick else SHOWCASE
    peers = ["weft"]
    if not args.no_greenlet and _bench.peer_available("greenlet"):
        peers.append("greenlet")

    m = _bench.machine_info()
    print(f"weft {m.get('weft_version', '?')}"
          + (f" (commit {m['weft_commit']})" if m.get("weft_commit") else "")
          + " measured on this machine, now")
    print(f"  {m['nproc']} CPUs, {m['cpu']}, {m['implementation']} {m['python']}")
    if "greenlet" in peers:
        print(f"  beside greenlet {m.get('greenlet_version', '?')}; each figure from a "
              "fresh interpreter, peers interleaved")
    else:
        print("  (greenlet is not importable: weft's figures only; "
              "`pip install greenlet` to compare)")
    print(flush=True)
    t0 = time.perf_counter()

    # --- coroutines: weft.greenlet -------------------------------------------
    print("coroutines (weft.greenlet)", flush=True)
    res = _bench.run_workload("switch", peers, params["switch"])
    _row("switch", "ping-pong between two coroutines", res, "ns_per_switch",
         lambda v: f"{v:,.0f} ns", ("faster", "slower"), peers)
    _errors(res)

    res = _bench.run_workload("create", peers, params["create"])
    _row("create", "create, switch into, finish (trivial)", res, "us_per_create",
         lambda v: f"{v:,.2f} µs", ("faster", "slower"), peers)
    _errors(res)

    mem = params["memory"]
    res = _bench.run_workload("memory", peers, mem)
    _row("memory", f"RSS per coroutine, {mem['depth']} frames deep", res,
         "rss_per_coroutine", _kib, ("smaller", "larger"), peers)
    _errors(res)

    mil = dict(params["million"])
    mpeers = peers if args.full else ["weft"]
    per = res.get("weft", {}).get("figures", {}).get("rss_per_coroutine")
    ok, why = _bench.fits_in_memory(mil["count"], per)
    if not ok:
        print(f"  million  skipped: {why}")
    else:
        res = _bench.run_workload("million", mpeers, mil)
        for p in peers:
            if p not in mpeers:
                res[p] = {"skipped": "--full", "runs": []}
        label = f"{mil['count']:,} suspended"
        _row("million", f"{label}: time to create", res, "seconds",
             lambda v: f"{v:.1f} s", ("faster", "slower"), peers)
        _row("", f"{label}: CPU time to create", res, "cpu_seconds",
             lambda v: f"{v:.1f} s", ("less", "more"), peers)
        _row("", f"{label}: total RSS", res, "rss_total",
             lambda v: f"{v / 2**30:.2f} GiB", ("smaller", "larger"), peers)
        _errors(res)
        if "greenlet" in peers and not args.full:
            print("           (greenlet's million: run with --full)")

    # --- tasklets (Stackless-compatible) --------------------------------------
    print()
    _tasklets(args.quick)

    # --- gateways (execnet-compatible) -----------------------------------------
    print()
    _gateways(args.quick)

    print(f"\nmeasured in {time.perf_counter() - t0:.0f} s; ratios are weft against the peer beside it; "
          "full benchmarks: benchmarks/run.py, benchmarks/tasklets.py, benchmarks/gateway_popen.py")


def _tasklets(quick):
    """weft.stackless beside a greenlet-based emulation, asyncio and threads
    (and runloom where installed), each figure in a fresh interpreter
    (weft._tooling.bench.tasklets, the code benchmarks/tasklets.py runs)."""
    from weft._tooling.bench import tasklets as bt

    print("tasklets (weft.stackless; peers: greenlet emulation, asyncio, threads, runloom where installed)")
    rows = [("channel", "one message, microthread to microthread", lambda v: f"{v:,.0f} ns"),
            ("create", "create + run a trivial microthread", lambda v: f"{v:,.2f} µs"),
            ("memory", "RSS per microthread blocked in receive", lambda v: f"{v:,.0f} B"),
            ("xthread", "channel round trip between two threads", lambda v: f"{v:,.1f} µs"),
            ("gateway", "popen echo round trip from a tasklet", lambda v: f"{v:,.1f} µs")]
    for name, what, fmt in rows:
        peers = [p for p in bt.PEERS[name] if bt.available(p)]
        figs = {}
        for p in peers:
            try:
                figs[p], _ = bt.measure(name, p, quick=True)
            except Exception as e:  # noqa: BLE001 - one failing peer must not hide the rest
                print(f"  {name}: {p} failed: {str(e).strip().splitlines()[-1:]}")
        line = f"  {name:<8} {what:<42}"
        for p in peers:
            if p in figs:
                tag = "thread" if (name == "gateway" and p == "threads") else p
                line += f"  {tag} {fmt(figs[p])}"
        print(line, flush=True)
        w = figs.get("weft")
        if w:
            ratios = [f"{w / figs[p]:.2f}x of {p}" for p in peers if p != "weft" and figs.get(p)]
            if ratios:
                print(f"  {'':<8} {'weft: ' + ', '.join(ratios)}", flush=True)


def _gateways(quick):
    """weft.execnet beside execnet over popen, each in a fresh interpreter
    (weft._tooling.bench.gateway); execnet's figures only where it is installed."""
    import importlib.util
    import json
    import subprocess

    peers = ["weft"] + (["execnet"] if importlib.util.find_spec("execnet") else [])
    print(f"gateways (weft.execnet{', beside execnet' if len(peers) > 1 else ''}; popen; Rust codec and transport on both ends)")
    figs = {}
    for peer in peers:
        proc = subprocess.run([sys.executable, "-m", "weft._tooling.bench.gateway", peer] + (["--quick"] if quick else []),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            print(f"  {peer}: failed: {proc.stderr.strip().splitlines()[-1:]}")
            continue
        figs[peer] = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = [("startup", "new gateway to first result", "startup", lambda v: f"{v * 1e3:.1f} ms", True),
            ("echo", "round trip of a small value", "roundtrip", lambda v: f"{v * 1e6:.0f} µs", True),
            ("small", "3-key dicts one way, per second", "small_per_s", lambda v: f"{v:,.0f}", False),
            ("bulk", "1 MiB payloads one way", "bulk_mib_per_s", lambda v: f"{v:.0f} MiB/s", False)]
    for title, what, key, fmt, lower_better in rows:
        line = f"  {title:<8} {what:<40}"
        for p in peers:
            if p in figs:
                line += f"  {p} {fmt(figs[p][key]):>11}"
        if len(figs) == 2:
            w, e = figs["weft"][key], figs["execnet"][key]
            r = (e / w) if lower_better else (w / e)
            line += f"   {r:.2f}x {'better' if r >= 1 else 'worse'}"
        print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
