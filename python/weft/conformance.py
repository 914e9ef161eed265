"""Run a peer project's own test suite against weft.

    python -m weft.conformance greenlet [-k PATTERN] [--keep]
    python -m weft.conformance execnet | xdist

The peer's source distribution is downloaded from PyPI with pip at run time
(cached in $WEFT_CONFORMANCE_CACHE, default ~/.cache/weft-conformance) and its
tests run with the peer's package name answered by weft (weft/alias.py). Its
code is never part of weft. Tests that inspect the peer's private
implementation are skipped with the reason listed here and in
docs/conformance.md. The run ends with `N passed, N failed, N skipped`.
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
    "greenlet.tests.test_greenlet.TestBrokenGreenlets.test_failed_to_initialstub":
        "uses greenlet._greenlet.UnswitchableGreenlet, a fault-injection type of greenlet's C++ core",
    "greenlet.tests.test_greenlet.TestBrokenGreenlets.test_failed_to_switch_into_running":
        "uses greenlet._greenlet.UnswitchableGreenlet, a fault-injection type of greenlet's C++ core",
    "greenlet.tests.test_greenlet.TestBrokenGreenlets.test_failed_to_slp_switch_into_running":
        "runs fail_slp_switch.py, which uses greenlet._greenlet.UnswitchableGreenlet",
    "greenlet.tests.test_greenlet_trash.":
        "reads greenlet._greenlet.get_tstate_trash_delete_nesting, a probe into greenlet's C++ thread state",
    "greenlet.tests.test_cpp.":
        "tests C++ exceptions thrown through greenlet's C++ switch (_test_extension_cpp); weft's core is Rust",
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
    """Compiles the suite's C helper extension against greenlet.h (weft's
    _C_API capsule answers it). Returns what could not be built."""
    missing = []
    try:
        from weft import _weft
        has_capi = hasattr(_weft, "_C_API")
    except ImportError:
        has_capi = False
    if not has_capi:
        return ["_test_extension (weft built without the _C_API capsule)"]
    cc = os.environ.get("CC", "cc")
    inc = sysconfig.get_paths()["include"]
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    src = src_pkg / "tests" / "_test_extension.c"
    out = dest / "tests" / f"_test_extension{suffix}"
    cmd = [cc, "-shared", "-fPIC", "-O1", f"-I{inc}", f"-I{src_pkg}", str(src), "-o", str(out)]
    if subprocess.call(cmd) != 0:
        missing.append("_test_extension (compile failed)")
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
        return run_modules([f"greenlet.tests.{m}" for m in modules], skips, pattern, env, work)
    finally:
        if keep:
            print(f"weft.conformance: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def run_modules(modules: list[str], skips: Path, pattern: str | None, env: dict, cwd: Path) -> int:
    """Runs each test module in its own interpreter, so that a crash costs one
    module, and prints the summed closing line."""
    totals = [0, 0, 0]
    for mod in modules:
        cmd = [sys.executable, "-m", "weft._unittest_runner", mod, str(skips)] + ([pattern] if pattern else [])
        proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sys.stdout.write(proc.stdout)
        counts = _closing_counts(proc.stdout)
        if counts is None:
            passed = proc.stdout.count(" ... ok\n")
            print(f"weft.conformance: {mod} died with exit code {proc.returncode} after {passed} passing tests; counted as 1 failure")
            counts = (passed, 1, 0)
        totals = [a + b for a, b in zip(totals, counts)]
    print(f"{totals[0]} passed, {totals[1]} failed, {totals[2]} skipped", flush=True)
    return 0 if totals[1] == 0 else 1


def _closing_counts(out: str):
    for line in reversed(out.splitlines()):
        parts = line.replace(",", "").split()
        if len(parts) == 6 and parts[1] == "passed" and parts[3] == "failed" and parts[5] == "skipped":
            return int(parts[0]), int(parts[2]), int(parts[4])
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m weft.conformance", description=__doc__.split("\n\n")[0])
    ap.add_argument("suite", choices=["greenlet", "execnet", "xdist"])
    ap.add_argument("-k", dest="pattern", help="only tests whose name matches this pattern")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args(argv)
    if args.suite == "greenlet":
        return run_greenlet(args.pattern, args.keep)
    try:
        from weft import _conformance_execnet
    except ImportError:
        print(f"weft.conformance: the {args.suite} suite runner is not part of this build", file=sys.stderr)
        return 2
    return _conformance_execnet.main([args.suite] + ([ "-k", args.pattern] if args.pattern else []))


if __name__ == "__main__":
    sys.exit(main())
