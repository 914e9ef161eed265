"""benchmarks/tasklets.py --stackless PATH: the workloads run in another
interpreter that answers `import stackless`. No real Stackless Python is on
this machine, so a stand-in (this interpreter with weft's `stackless` alias
on its path) plays it: what is tested is the plumbing, not Stackless."""
import os
import stat
import sys

import pytest

import weft
import weft._tooling.bench.tasklets as bench

ALIASES = os.path.join(os.path.dirname(weft.__file__), "_aliases")


@pytest.fixture
def stand_in(tmp_path):
    exe = tmp_path / "stackless-python"
    exe.write_text(f'#!/bin/sh\nPYTHONPATH={ALIASES} exec {sys.executable} "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


def test_stackless_peer_runs_the_workloads(stand_in):
    assert bench.check_stackless(stand_in) == sys.version.split()[0]
    for w in bench.STACKLESS_WORKLOADS:
        v, _ = bench.measure(w, "stackless", quick=True, stackless=stand_in)
        assert v > 0, w


def test_stackless_peer_listed_beside_weft(stand_in):
    lines = []
    res = bench.run(["memory"], rounds=1, quick=True, out=lines.append, stackless=stand_in)
    assert set(res["memory"]["best"]) >= {"weft", "stackless"}
    assert any("weft/stackless" in line for line in lines)


def test_not_a_stackless_interpreter_is_refused_clearly(tmp_path):
    with pytest.raises(SystemExit, match="import stackless' fails there"):
        bench.check_stackless(sys.executable)
    with pytest.raises(SystemExit, match="cannot run it"):
        bench.check_stackless(str(tmp_path / "missing"))
