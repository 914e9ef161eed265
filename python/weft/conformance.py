"""Run a peer project's own test suite against weft.

    python -m weft.conformance greenlet [-k PATTERN] [--keep]
    python -m weft.conformance execnet | xdist
    python -m weft.conformance gevent [--greenlet real] [--all] [MODULE ...]

The peer's source distribution is downloaded from PyPI with pip at run time
(cached in $WEFT_CONFORMANCE_CACHE, default ~/.cache/weft-conformance) and its
tests run with the peer's package name answered by weft (weft/alias.py). Its
code is never part of weft. Tests that inspect the peer's private
implementation are skipped with the reason listed here and in
docs/conformance.md. The run ends with `N passed, N failed, N skipped`
(N failed: the failing test ids, known failures included) and exits 0 only
when every failing test is a known one, no expected failure passed, no known
failure passed (it must leave the list), every child exited as its output
says and at least one test ran; report() is that gate, shared by every
runner (weft/_tooling/conformance/: execnet_suite.py, xdist_suite.py,
gevent_suite.py).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path

from weft import alias

GREENLET_VERSION = "3.5.6"

# Tests of greenlet's private implementation, with why weft does not run them.
GREENLET_SKIPS = {
    "greenlet.tests.test_greenlet_trash.":
        "reads greenlet._greenlet.get_tstate_trash_delete_nesting, a probe into greenlet's C++ thread state",
}


# Tests of greenlet's public behaviour that weft fails today: counted as
# failures in the closing line, listed here with the gap behind them (and in
# docs/conformance.md). A run passes when every failure is one of these; a
# test on this list that passes fails the run until it is taken out.
GREENLET_KNOWN_FAILURES = {
}


def cache_dir() -> Path:
    d = Path(os.environ.get("WEFT_CONFORMANCE_CACHE", Path.home() / ".cache" / "weft-conformance"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def fetch_sdist(name: str, version: str) -> Path:
    """The extracted source distribution of name==version, downloaded once."""
    root = cache_dir() / f"{name}-{version}"
    if root.is_dir():
        return root
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                               "--no-binary", ":all:", f"{name}=={version}", "-d", tmp])
        (archive,) = Path(tmp).glob("*.tar.gz")
        with tarfile.open(archive) as tf:
            tf.extractall(cache_dir(), filter="data") if sys.version_info >= (3, 12) else tf.extractall(cache_dir())
    if not root.is_dir():
        raise SystemExit(f"weft.conformance: {archive.name} did not unpack to {root}")
    return root


def build_c_helpers(src_pkg: Path, dest: Path) -> list[str]:
    """Compiles the suite's C and C++ helper extensions against greenlet.h
    (weft's _C_API capsule answers it). Returns what could not be built."""
    inc = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    missing = []
    for name, compiler in (("_test_extension.c", os.environ.get("CC", "cc")), ("_test_extension_cpp.cpp", os.environ.get("CXX", "c++"))):
        src = src_pkg / "tests" / name
        out = dest / "tests" / (src.stem + suffix)
        cmd = [compiler, "-shared", "-fPIC", "-O1", f"-I{inc}", f"-I{src_pkg}", str(src), "-o", str(out)]
        if subprocess.call(cmd) != 0:
            missing.append(f"{src.stem} (compile failed: {' '.join(cmd)})")
    return missing


def run_greenlet(pattern: str | None, keep: bool) -> int:
    sdist = fetch_sdist("greenlet", GREENLET_VERSION)
    src_pkg = sdist / "src" / "greenlet"
    work = Path(tempfile.mkdtemp(prefix="weft-conformance-greenlet-"))
    try:
        pkg = work / "greenlet"
        shutil.copytree(alias.ALIASES / "greenlet", pkg, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(src_pkg / "tests", pkg / "tests", ignore=shutil.ignore_patterns("*.c", "*.cpp", "__pycache__"))
        for m in build_c_helpers(src_pkg, pkg):
            print(f"weft.conformance: not built: {m}", file=sys.stderr)
        skips = work / "skips.json"
        skips.write_text(json.dumps(GREENLET_SKIPS))
        env = alias.env_with_aliases(work)
        modules = sorted(p.stem for p in (pkg / "tests").glob("test_*.py"))
        return run_modules([f"greenlet.tests.{m}" for m in modules], skips, pattern, env, work, GREENLET_KNOWN_FAILURES)
    finally:
        if keep:
            print(f"weft.conformance: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def run_modules(modules: list[str], skips: Path, pattern: str | None, env: dict, cwd: Path,
                known: dict[str, str] | None = None) -> int:
    """Runs each test module in its own interpreter, so that a crash costs one
    module, and prints the summed closing line. Exits 0 only when the gate
    (report()) passes."""
    totals = [0, 0, 0]
    failed_ids: list[str] = []
    passed_ids: list[str] = []
    unexpected_ids: list[str] = []
    for mod in modules:
        cmd = [sys.executable, "-m", "weft._tooling.conformance.unittest_runner", mod, str(skips)] + ([pattern] if pattern else [])
        proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sys.stdout.write(proc.stdout)
        counts, failed, passed, unexpected = module_result(mod, proc.stdout, proc.returncode)
        totals = [a + b for a, b in zip(totals, counts)]
        failed_ids += failed
        passed_ids += passed
        unexpected_ids += unexpected
    return report(totals, failed_ids, known or {}, passed_ids=passed_ids, unexpected_ids=unexpected_ids,
                  doc="docs/conformance.md")


def module_result(mod: str, out: str, returncode: int):
    """What one `weft._tooling.conformance.unittest_runner` child reported: (counts, failed ids,
    passed ids, unexpected-success ids). A child that died before its closing
    line counts as one failure, `MOD (crashed)`; one that exited non-zero
    without naming a failing test (or exited 0 despite naming some) adds the
    failure `MOD (exit code N)`: its exit status is never ignored."""
    counts = _closing_counts(out)
    failed = _failed_ids(out)
    passed = _passed_ids(out)
    unexpected = _unexpected_ids(out)
    if counts is None:
        n = out.count(" ... ok\n")
        print(f"weft.conformance: {mod} died with exit code {returncode} after {n} passing tests; "
              "counted as 1 failure")
        return (n, 1, 0), failed + [f"{mod} (crashed)"], passed, unexpected
    named = bool(failed or unexpected)
    if (returncode != 0) != named:
        print(f"weft.conformance: {mod} exited with code {returncode} "
              f"{'naming' if named else 'without naming'} a failing test; counted as 1 failure")
        failed = failed + [f"{mod} (exit code {returncode})"]
    return counts, failed, passed, unexpected


def report(totals, failed_ids, known: dict[str, str], flaky: dict[str, str] | None = None,
           passed_ids=(), doc: str = "docs/conformance.md", unexpected_ids=()) -> int:
    """The gate shared by every suite. totals is (passed, failed, skipped) as
    the runner counted them; failed_ids names the failing tests (known and
    flaky ones included; a runner adds pseudo-ids such as `pytest (exit code
    N)` for a failure no test owns); unexpected_ids names the tests that were
    expected to fail and passed; passed_ids the tests that passed.

    Prints the known failures, the flaky ones that failed this time, the
    known failures that passed, the unexpected successes, the NEW failures,
    then the closing line `N passed, N failed, N skipped`, where N failed is
    the number of distinct failing test ids (unexpected successes included).
    An unexpected success of a test listed in `flaky` (the peer's own
    non-strict xfail of a timing-dependent test) is printed, not fatal.
    Returns 1 (the run fails) on any of: a NEW failure, an unexpected
    success, a known failure that passed (until it leaves the list), a run
    in which no test passed or failed (nothing collected, or a pattern that
    matched nothing); else 0."""
    flaky = flaky or {}
    failed = set(failed_ids)
    # The peer's own non-strict xfail tests that pass or fail by timing, when
    # listed as flaky: their XPASS is printed, not fatal, and not a failure.
    flaky_xpass = sorted(t for t in set(unexpected_ids) - failed if t in flaky)
    unexpected = sorted(set(unexpected_ids) - failed - set(flaky_xpass))
    knowns = sorted(t for t in failed if t in known)
    flakies = sorted(t for t in failed if t in flaky and t not in known)
    unknown = sorted(t for t in failed if t not in known and t not in flaky)
    fixed = sorted(t for t in set(passed_ids) - failed if t in known)
    n_failed = len(failed) + len(unexpected)
    n_passed = totals[0]
    empty = n_passed == 0 and n_failed == 0
    if knowns:
        print(f"\nknown failures ({len(knowns)}, see {doc}):")
        for t in knowns:
            print(f"  {t}: {known[t]}")
    if flakies:
        print(f"\nknown-flaky tests that failed this time ({len(flakies)}, not fatal):")
        for t in flakies:
            print(f"  {t}: {flaky[t]}")
    if flaky_xpass:
        print(f"\nknown-flaky xfail tests that passed this time ({len(flaky_xpass)}, not fatal):")
        for t in flaky_xpass:
            print(f"  {t}: {flaky[t]}")
    if fixed:
        print(f"\nknown failures that PASSED ({len(fixed)}; fatal until they leave the known-failure list):")
        for t in fixed:
            print(f"  {t}")
    if unexpected:
        print(f"\nUNEXPECTED successes ({len(unexpected)}; an expected failure passed: fatal):")
        for t in unexpected:
            print(f"  {t}")
    if unknown:
        print(f"\nNEW failures ({len(unknown)}):")
        for t in unknown:
            print(f"  {t}")
    if empty:
        print(f"\nNO TESTS RAN ({totals[2]} skipped): nothing was collected or the pattern matched nothing; "
              "an empty run fails the gate")
    print(f"{n_passed} passed, {n_failed} failed, {totals[2]} skipped", flush=True)
    return 1 if (unknown or unexpected or fixed or empty) else 0


def _passed_ids(out: str) -> list[str]:
    return [line[line.index("(") + 1:line.index(")")] for line in out.splitlines()
            if line.endswith(" ... ok") and "(" in line]


def _unexpected_ids(out: str) -> list[str]:
    return [line[line.index("(") + 1:line.index(")")] for line in out.splitlines()
            if line.endswith(" ... unexpected success") and "(" in line]


def _failed_ids(out: str) -> list[str]:
    ids = []
    for line in out.splitlines():
        if line.startswith(("FAIL: ", "ERROR: ")) and "(" in line:
            ids.append(line[line.index("(") + 1:line.index(")")].split(")")[0])
    return ids


def _closing_counts(out: str):
    for line in reversed(out.splitlines()):
        parts = line.replace(",", "").split()
        if len(parts) == 6 and parts[1] == "passed" and parts[3] == "failed" and parts[5] == "skipped":
            return int(parts[0]), int(parts[2]), int(parts[4])
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m weft.conformance", description=__doc__.split("\n\n")[0])
    ap.add_argument("suite", choices=["greenlet", "execnet", "xdist", "gevent"])
    ap.add_argument("-k", dest="pattern", help="only tests whose name matches this pattern")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args, rest = ap.parse_known_args(argv)
    if args.suite == "gevent":
        # gevent's runner (weft/_tooling/conformance/gevent_suite.py) has its own options.
        from weft._tooling.conformance import gevent_suite as gevent_runner
        return gevent_runner.main((["--keep"] if args.keep else []) + rest)
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.suite == "greenlet":
        return run_greenlet(args.pattern, args.keep)
    if args.suite == "execnet":
        from weft._tooling.conformance import execnet_suite as runner
    else:
        from weft._tooling.conformance import xdist_suite as runner
    return runner.main((["--keep"] if args.keep else []) + (["--", "-k", args.pattern] if args.pattern else []))


if __name__ == "__main__":
    sys.exit(main())
