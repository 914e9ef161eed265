"""Benchmark workloads shared by ``benchmarks/`` and ``python -m weft``.

One piece of code measures every peer: a *peer* is a module with the greenlet API
(``weft.greenlet`` or the ``greenlet`` package).  Each measurement runs in a fresh
child interpreter, so one peer's allocations never inflate the other's memory figures,
and the runner interleaves the peers round by round, so that load from other work on
the machine falls on both.

Workloads (the names are the same for every peer):

``switch``
    Two greenlets switch back and forth (ping-pong); nanoseconds per switch.
``create``
    Create a greenlet running a trivial function, switch into it, let it finish;
    microseconds each (creation, first switch, finish and deallocation).
``memory``
    Resident memory per coroutine suspended ``depth`` (10) Python frames deep: RSS
    after creating ``count`` of them minus RSS before, divided by ``count``.  USS the
    same way when psutil is available.
``million``
    One million coroutines suspended at once, 2 frames deep: time to create them
    (wall clock, and CPU time, which other load on the machine disturbs less) and the
    process's total RSS.

Figures: times are the best (lowest) sample, the usual practice for timings, since
noise only adds time; memory is the lowest of the rounds for the same reason.
Ratios are weft's figure divided by greenlet's: below 1.0 means weft is faster or
smaller.

Nothing here asserts a target; the targets are printed for reference only.
"""
from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from itertools import repeat

# peer name -> module that provides greenlet, getcurrent
PEERS = {"weft": "weft.greenlet", "greenlet": "greenlet"}

# workload -> (metric key, unit, lower-is-better figure, target ratio or None)
METRICS = {
    "switch": [("ns_per_switch", "ns/switch", 0.7)],
    "create": [("us_per_create", "µs/create", 0.2)],
    "memory": [
        ("rss_per_coroutine", "B RSS/coroutine", 0.7),
        ("uss_per_coroutine", "B USS/coroutine", None),
        ("seconds", "s to create", None),
        ("cpu_seconds", "CPU s to create", None),
    ],
    "million": [
        ("seconds", "s to create", None),
        ("cpu_seconds", "CPU s to create", None),
        ("rss_total", "B RSS total", None),
        ("rss_per_coroutine", "B RSS/coroutine", None),
    ],
}
WORKLOADS = list(METRICS)

# Default parameters; ``quick`` shrinks them to a few seconds in all.
DEFAULTS = {
    "switch": {"budget": 1.5, "rounds": 3},
    "create": {"budget": 1.5, "rounds": 3},
    "memory": {"count": 100_000, "depth": 10, "rounds": 2},
    "million": {"count": 1_000_000, "depth": 2, "rounds": 1},
}
QUICK = {
    "switch": {"budget": 0.2, "rounds": 1},
    "create": {"budget": 0.2, "rounds": 1},
    "memory": {"count": 5_000, "depth": 10, "rounds": 1},
    "million": {"count": 20_000, "depth": 2, "rounds": 1},
}

# Bytes per suspended coroutine assumed for the memory check before 'million' when
# the 'memory' workload has not run first (both peers measure 6-8 KB at 10 frames).
ASSUMED_BYTES_PER_COROUTINE = 8192


# ---------------------------------------------------------------------------
# Child side: the workloads themselves.  Each returns a dict of figures.
# ---------------------------------------------------------------------------

def _load_peer(peer):
    mod = __import__(PEERS[peer], fromlist=["greenlet"])
    if peer == "weft":
        import weft

        version, origin = weft.__version__, weft.__file__
    else:
        version, origin = mod.__version__, mod.__file__
    return mod.greenlet, mod.getcurrent, {"version": version, "file": origin}


def _rss_uss():
    """(RSS, USS or None) of this process in bytes."""
    try:
        import psutil
    except ImportError:
        with open("/proc/self/statm") as f:  # Linux without psutil: RSS only
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"), None
    info = psutil.Process().memory_full_info()
    return info.rss, info.uss


def _timed_samples(run_n, budget, min_sample=0.05):
    """Calibrate n so one sample takes >= min_sample, then sample for ``budget`` s.

    ``run_n(n)`` performs n operations and returns the elapsed seconds.
    Returns seconds per operation: best, median, and all samples.
    """
    n = 64
    while True:
        dt = run_n(n)
        if dt >= min_sample:
            break
        n = int(n * min(10.0, max(2.0, 1.2 * min_sample / max(dt, 1e-9))))
    samples = [dt / n]
    end = time.perf_counter() + budget
    while time.perf_counter() < end or len(samples) < 3:
        samples.append(run_n(n) / n)
    return {"best": min(samples), "median": statistics.median(samples),
            "samples": samples, "n": n}


def work_switch(greenlet, getcurrent, budget):
    """Ping-pong between two (non-main) greenlets; seconds per switch."""

    def run_n(n):
        def ping():
            sw = pong_g.switch
            for _ in repeat(None, n):
                sw()

        def pong():
            sw = ping_g.switch
            while True:
                sw()

        ping_g = greenlet(ping)
        pong_g = greenlet(pong)
        t0 = time.perf_counter()
        ping_g.switch()  # returns when ping finishes: 2n switches
        dt = time.perf_counter() - t0
        pong_g.throw()  # kill the pong greenlet (GreenletExit)
        return dt

    # one operation of run_n is a round trip: two switches (ping->pong->ping)
    r = _timed_samples(run_n, budget)
    return {"ns_per_switch": r["best"] * 1e9 / 2,
            "ns_median": r["median"] * 1e9 / 2, "round_trips": r["n"],
            "samples_ns": [s * 1e9 / 2 for s in r["samples"]]}


def work_create(greenlet, getcurrent, budget):
    """Create + first switch + finish of a greenlet running a trivial function."""

    def trivial():
        return None

    def run_n(n):
        g = greenlet
        f = trivial
        t0 = time.perf_counter()
        for _ in repeat(None, n):
            g(f).switch()
        return time.perf_counter() - t0

    r = _timed_samples(run_n, budget)
    return {"us_per_create": r["best"] * 1e6,
            "us_median": r["median"] * 1e6, "n": r["n"],
            "samples_us": [s * 1e6 for s in r["samples"]]}


def work_suspended(greenlet, getcurrent, count, depth):
    """``count`` coroutines each suspended ``depth`` Python frames deep.

    The coroutine runs ``descend(depth)``, which recurses until ``depth`` frames of it
    are on the coroutine's stack, then switches back to main and stays suspended.
    """
    main = getcurrent()

    def descend(d):
        if d > 1:
            return descend(d - 1)
        main.switch()

    def make(n, into):
        for i in range(n):
            g = greenlet(descend)
            g.switch(depth)
            into[i] = g

    keep = [None] * 100
    make(100, keep)  # warm up one-time allocations; kept, so nothing is freed
    held = [None] * count  # preallocated: list growth is not counted
    gc.collect()
    rss0, uss0 = _rss_uss()
    t0, c0 = time.perf_counter(), time.process_time()
    make(count, held)
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0  # user + system: less sensitive to load
    gc.collect()
    rss1, uss1 = _rss_uss()
    out = {"count": count, "depth": depth, "seconds": seconds,
           "cpu_seconds": cpu_seconds,
           "rss_total": rss1, "rss_before": rss0,
           "rss_per_coroutine": (rss1 - rss0) / count}
    if uss0 is not None:
        out["uss_per_coroutine"] = (uss1 - uss0) / count
    return out


def _child(argv):
    """Entry point of a measuring child: ``workload peer params-json``."""
    workload, peer, params = argv[0], argv[1], json.loads(argv[2])
    greenlet, getcurrent, info = _load_peer(peer)
    if workload == "switch":
        res = work_switch(greenlet, getcurrent, params["budget"])
    elif workload == "create":
        res = work_create(greenlet, getcurrent, params["budget"])
    elif workload in ("memory", "million"):
        res = work_suspended(greenlet, getcurrent, params["count"], params["depth"])
    else:
        raise SystemExit(f"unknown workload {workload!r}; expected one of {WORKLOADS}")
    res["peer"] = info
    sys.stdout.write(json.dumps(res) + "\n")
    sys.stdout.flush()
    # Skip teardown: killing 10^5..10^6 suspended coroutines one by one (each gets
    # GreenletExit thrown in) would only cost time and measures nothing here.
    os._exit(0)


# ---------------------------------------------------------------------------
# Parent side: run children, interleave peers, collect figures.
# ---------------------------------------------------------------------------

# The child loads this very file by path (not ``import weft._tooling.bench.coroutines``), so it runs the
# same code whichever weft build is importable; ``-P`` keeps the cwd off sys.path.
_BOOT = (
    "import sys, importlib.util as u\n"
    "s = u.spec_from_file_location('_weft_bench_child', sys.argv[1])\n"
    "m = u.module_from_spec(s); sys.modules[s.name] = m; s.loader.exec_module(m)\n"
    "m._child(sys.argv[2:])\n"
)


class ChildFailed(RuntimeError):
    pass


def run_child(workload, peer, params, timeout=900):
    """Run one workload for one peer in a fresh interpreter; return its figures."""
    cmd = [sys.executable, "-P", "-c", _BOOT, os.path.abspath(__file__),
           workload, peer, json.dumps(params)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise ChildFailed(f"{workload}/{peer} child exited {proc.returncode}: "
                          f"{proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peer_available(peer):
    try:
        __import__(PEERS[peer], fromlist=["greenlet"])
    except ImportError:
        return False
    return True


def _best(results, key):
    vals = [r[key] for r in results if key in r]
    return min(vals) if vals else None


def run_workload(workload, peers, params, log=None):
    """Run ``workload`` for each peer, ``params['rounds']`` rounds interleaved.

    Returns ``{peer: {"figures": {metric: best}, "runs": [child results]}}``;
    a peer whose child failed has ``{"error": message}`` instead.
    """
    params = dict(params)
    rounds = params.pop("rounds", 1)
    out = {p: {"runs": []} for p in peers}
    for r in range(rounds):
        # alternate the order each round so neither peer always goes first
        order = peers if r % 2 == 0 else list(reversed(peers))
        for peer in order:
            if "error" in out[peer]:
                continue
            if log:
                log(f"  {workload:8s} {peer:9s} round {r + 1}/{rounds}")
            try:
                out[peer]["runs"].append(run_child(workload, peer, params))
            except (ChildFailed, subprocess.TimeoutExpired) as e:
                out[peer]["error"] = str(e)
    for peer in peers:
        runs = out[peer]["runs"]
        if runs:
            out[peer]["figures"] = {m: _best(runs, m) for m, _, _ in METRICS[workload]}
            out[peer]["info"] = runs[0]["peer"]
    return out


def ratio(results, metric, num="weft", den="greenlet"):
    try:
        a = results[num]["figures"][metric]
        b = results[den]["figures"][metric]
    except KeyError:
        return None
    if a is None or b is None or b == 0:
        return None
    return a / b


# ---------------------------------------------------------------------------
# Machine description
# ---------------------------------------------------------------------------

def _git_rev(path):
    """Short commit of the git checkout containing ``path`` (+ '-dirty'), or None."""
    d = path if os.path.isdir(path) else os.path.dirname(path)
    try:
        rev = subprocess.run(["git", "-C", d, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", d, "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def machine_info():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }
    try:
        import psutil

        info["memory_total_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        import weft

        info["weft_version"] = weft.__version__
        info["weft_commit"] = _git_rev(os.path.dirname(weft.__file__))
    except ImportError:
        pass
    try:
        import greenlet

        info["greenlet_version"] = greenlet.__version__
    except ImportError:
        pass
    info["bench_commit"] = _git_rev(os.path.dirname(os.path.abspath(__file__)))
    return info


def available_memory():
    try:
        import psutil
    except ImportError:
        return None
    return psutil.virtual_memory().available


def fits_in_memory(count, per_coroutine):
    """(ok, message): would ``count`` coroutines fit in available memory, 25% spare?"""
    avail = available_memory()
    need = count * (per_coroutine or ASSUMED_BYTES_PER_COROUTINE) * 1.25
    if avail is None or need < avail:
        return True, ""
    return False, (f"needs about {need / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB "
                   f"available; lower the count with --million-count")


# ---------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------

def fmt_value(metric, v):
    if v is None:
        return "-"
    if metric.startswith("rss_total"):
        return f"{v / 2**30:.2f} GiB"
    if metric.endswith("per_coroutine"):
        return f"{v:,.0f} B"
    if metric in ("seconds", "cpu_seconds"):
        return f"{v:.2f} s"
    if metric.startswith("ns_"):
        return f"{v:,.1f} ns"
    if metric.startswith("us_"):
        return f"{v:,.2f} µs"
    return f"{v:.4g}"


def table(all_results, peers):
    """Rows: workload, metric, each peer's figure, weft/greenlet ratio, target."""
    head = ["workload", "metric"] + peers
    with_ratio = "weft" in peers and "greenlet" in peers
    if with_ratio:
        head += ["weft/greenlet", "target"]
    rows = [head]
    for workload, res in all_results.items():
        for metric, label, target in METRICS[workload]:
            if not any(metric in res[p].get("figures", {}) and
                       res[p]["figures"][metric] is not None for p in peers):
                continue
            row = [workload, label]
            for p in peers:
                if "error" in res[p] and not res[p].get("figures"):
                    row.append("failed")
                elif res[p].get("skipped"):
                    row.append("skipped")
                else:
                    row.append(fmt_value(metric, res[p].get("figures", {}).get(metric)))
            if with_ratio:
                r = ratio(res, metric)
                row.append("-" if r is None else f"{r:.2f}x")
                row.append("" if target is None else f"<= {target}x")
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# The runner (benchmarks/run.py and benchmarks/<workload>.py)
# ---------------------------------------------------------------------------

def cli(argv=None, workloads=None, prog=None):
    import argparse

    ap = argparse.ArgumentParser(
        prog=prog, description="Run weft's benchmark workloads against each peer.")
    ap.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                    help=f"which workloads (default: all of {', '.join(WORKLOADS)})")
    ap.add_argument("--quick", action="store_true",
                    help="small counts and short budgets: a few seconds in all")
    ap.add_argument("--peers", default="weft,greenlet",
                    help="comma-separated peers (default: weft,greenlet)")
    ap.add_argument("--rounds", type=int, help="rounds per workload (interleaved)")
    ap.add_argument("--budget", type=float,
                    help="seconds of sampling per child for switch/create")
    ap.add_argument("--memory-count", type=int, help="coroutines for 'memory'")
    ap.add_argument("--million-count", type=int, help="coroutines for 'million'")
    ap.add_argument("--no-million-greenlet", action="store_true",
                    help="run 'million' for weft only (greenlet's run is the slowest)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = ap.parse_args(argv)

    chosen = args.workloads or workloads or WORKLOADS
    for w in chosen:
        if w not in METRICS:
            ap.error(f"unknown workload {w!r}; expected some of {', '.join(WORKLOADS)}")
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    for p in peers:
        if p not in PEERS:
            ap.error(f"unknown peer {p!r}; expected some of {', '.join(PEERS)}")
    missing = [p for p in peers if not peer_available(p)]
    for p in missing:
        print(f"note: peer {p!r} is not importable ({PEERS[p]}); skipping it",
              file=sys.stderr)
    peers = [p for p in peers if p not in missing]
    if not peers:
        raise SystemExit("no peer is importable")

    base = QUICK if args.quick else DEFAULTS
    params = {w: dict(base[w]) for w in chosen}
    for w in chosen:
        if args.rounds:
            params[w]["rounds"] = args.rounds
        if args.budget and "budget" in params[w]:
            params[w]["budget"] = args.budget
    if args.memory_count and "memory" in params:
        params["memory"]["count"] = args.memory_count
    if args.million_count and "million" in params:
        params["million"]["count"] = args.million_count

    machine = machine_info()
    print(_machine_lines(machine))
    print(f"peers: {', '.join(peers)}; params: {json.dumps(params)}", flush=True)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    results = {}
    t0 = time.perf_counter()
    for w in chosen:
        wp = peers
        if w == "million" and args.no_million_greenlet:
            wp = [p for p in peers if p != "greenlet"]
        skipped = {p: "--no-million-greenlet" for p in peers if p not in wp}
        if w == "million":
            for p in wp:
                per = (results.get("memory", {}).get(p, {})
                       .get("figures", {}).get("rss_per_coroutine"))
                ok, why = fits_in_memory(params[w]["count"], per)
                if not ok:
                    skipped[p] = why
                    print(f"note: million/{p} skipped: {why}", file=sys.stderr)
        wp = [p for p in wp if p not in skipped]
        results[w] = run_workload(w, wp, params[w], log=log) if wp else {}
        for p, why in skipped.items():
            results[w][p] = {"skipped": why, "runs": []}
    elapsed = time.perf_counter() - t0

    print()
    print(table(results, peers))
    for w, res in results.items():
        for p in peers:
            if "error" in res[p]:
                print(f"\n{w}/{p} failed: {res[p]['error']}", file=sys.stderr)
    print(f"\n(figures: best of rounds; ratio = weft / greenlet, lower is better; "
          f"{elapsed:.0f} s in all)")
    if args.json:
        doc = {"machine": machine, "peers": peers, "params": params,
               "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
               "elapsed_seconds": elapsed, "results": results,
               "ratios": {w: {m: ratio(results[w], m) for m, _, _ in METRICS[w]}
                          for w in results}}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        print(f"wrote {args.json}")
    return results


def _machine_lines(m):
    parts = [f"machine: {m['nproc']} CPUs, {m['cpu']}"]
    if "memory_total_gb" in m:
        parts[0] += f", {m['memory_total_gb']} GiB RAM"
    parts.append(f"python:  {m['implementation']} {m['python']} ({m['platform']})")
    if "weft_version" in m:
        parts.append(f"weft:    {m['weft_version']} "
                     f"(commit {m.get('weft_commit') or 'unknown'})")
    if "greenlet_version" in m:
        parts.append(f"greenlet: {m['greenlet_version']}")
    return "\n".join(parts)
