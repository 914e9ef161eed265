"""Load the shared workload module, ``weft/_tooling/bench/coroutines.py``.

Prefer the copy in this source tree (``../python/weft/_tooling/bench/coroutines.py``), so the scripts
measure with the code they were checked out with, even when the importable ``weft``
is another checkout's build; fall back to the installed ``weft._tooling.bench.coroutines``.
"""
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_SRC = os.path.join(_HERE, os.pardir, "python", "weft", "_tooling", "bench", "coroutines.py")


def load_bench():
    if os.path.exists(_SRC):
        spec = importlib.util.spec_from_file_location("_weft_bench", os.path.abspath(_SRC))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        return mod
    from weft._tooling.bench import coroutines as _bench

    return _bench


def main(workload=None):
    bench = load_bench()
    prog = os.path.basename(sys.argv[0])
    bench.cli(sys.argv[1:], workloads=[workload] if workload else None, prog=prog)
