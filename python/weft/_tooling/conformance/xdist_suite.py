"""Referee: pytest-xdist's own test suite with ``execnet`` resolving to weft.

``main(argv) -> int`` downloads pytest-xdist's sdist with pip into a temporary
directory, installs it (and its test dependency ``filelock``) into a private
``--target`` directory, puts weft's alias package first on PYTHONPATH and runs
``pytest testing/`` from the sdist; it ends with ``N passed, N failed, N
skipped`` and exits 0 when every failing test is in KNOWN_FAILURES or
KNOWN_FLAKY.  ``--execnet real`` runs the same suite against the real execnet
(installed into the private directory too) for comparison.
"""

import argparse
import os
import subprocess
import sys
import tempfile

from weft._tooling.conformance.execnet_suite import ALIASES, XPASS_ENV, XPASS_PLUGIN_ARGS, _extract, _gate

XDIST_VERSION = "3.8.0"

# Tests of pytest-xdist 3.8.0's suite that fail, by pytest node id, with why
# (docs/conformance-execnet.md). All of them fail with the real execnet 2.1.2
# on this pytest too (`--execnet real`). They count as failures in the closing
# line; a run passes when every failure is listed here or in KNOWN_FLAKY.
_REAL_TOO = "fails with the real execnet 2.1.2 on pytest 9.2 too: "
_GROUP = _REAL_TOO + "the --dist loadgroup tests find the tests of one xdist_group not kept on one worker (not diagnosed further)"
KNOWN_FAILURES = {
    "testing/acceptance_test.py::TestGroupScope::test_by_module": _GROUP,
    "testing/acceptance_test.py::TestGroupScope::test_by_class": _GROUP,
    "testing/acceptance_test.py::TestGroupScope::test_module_single_start": _GROUP,
    "testing/acceptance_test.py::TestGroupScope::test_multiple_group_marks": _GROUP,
    "testing/acceptance_test.py::TestGroupScope::test_multiple_group_order": _GROUP,
    "testing/test_newhooks.py::TestCrashItem::test_handlecrashitem_one":
        _REAL_TOO + "it matches the short-summary line 'FAILED test_handlecrashitem_one.py::test_b' "
        "exactly, and pytest 9 appends ' - <reason>' to it",
    "testing/test_remote.py::test_remote_usage_prog":
        _REAL_TOO + "its conftest calls Parser._getparser, which pytest 9.2 no longer has",
}
# Tests that pass or fail by timing: a failure is reported, never fatal.
# Both assert that the first scope goes to gw0, while xdist's loadscope hands
# it to whichever worker's "workerready" the controller takes first: a race in
# xdist's test, lost with the real execnet too. Counts (2026-12-02, 30 runs of
# the two tests per execnet, interleaved, on a loaded 2-core machine): weft 13
# of 60 failed, execnet 2.1.2 7 of 60; on a quiet machine the same scenario
# outside pytester flipped 1 run in 20 with each (docs/conformance-execnet.md).
_FIRST_WORKER = ("a race in xdist's test (the first scope goes to whichever worker reports ready "
                 "first, the test wants gw0): fails with execnet 2.1.2 too, 7 of 60 runs under "
                 "load, weft 13 of 60")
KNOWN_FLAKY = {
    "testing/acceptance_test.py::TestLoadScope::test_workqueue_ordered_by_size": _FIRST_WORKER,
    "testing/acceptance_test.py::TestLoadScope::test_workqueue_ordered_by_input": _FIRST_WORKER,
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(prog="python -m weft.conformance xdist")
    parser.add_argument("--version", default=XDIST_VERSION)
    parser.add_argument("--execnet", choices=("weft", "real"), default="weft")
    parser.add_argument("--report")
    parser.add_argument("--timeout", type=int, default=120)
    parser.add_argument("--keep", action="store_true")
    opts = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="weft-conformance-xdist-")
    try:
        pip = [sys.executable, "-m", "pip", "-q"]
        subprocess.run(pip + ["download", "--no-deps", "--no-binary", ":all:",
                              "pytest-xdist==%s" % opts.version, "-d", tmp], check=True)
        sdist = [os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".tar.gz")][0]
        root = _extract(sdist, tmp, "pytest_xdist-*")
        site = os.path.join(tmp, "site")
        wanted = [sdist, "filelock"] + (["execnet==2.1.2"] if opts.execnet == "real" else [])
        subprocess.run(pip + ["install", "--no-deps", "--target", site] + wanted, check=True)
        env = dict(os.environ)
        path = [site]
        if opts.execnet == "weft":
            path.insert(0, ALIASES)
        env["PYTHONPATH"] = os.pathsep.join(path + ([env["PYTHONPATH"]]
                                                     if env.get("PYTHONPATH") else []))
        env.pop("PYTEST_ADDOPTS", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        junit = os.path.join(tmp, "junit.xml")
        env[XPASS_ENV] = xpass_file = os.path.join(tmp, "xpassed.txt")
        cmd = [sys.executable, "-m", "pytest", "testing", "-q", "-p", "no:cacheprovider",
               "--junitxml", junit, "-o", "junit_family=xunit1"] + XPASS_PLUGIN_ARGS
        try:
            import pytest_timeout  # noqa: F401
            cmd += ["--timeout", str(opts.timeout)]
        except ImportError:
            pass
        proc = subprocess.run(cmd + extra, cwd=root, env=env)
        return _gate(junit, proc.returncode, KNOWN_FAILURES, KNOWN_FLAKY, opts.report, xpass_file)
    finally:
        if opts.keep:
            sys.stderr.write("kept %s\n" % tmp)
        else:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
