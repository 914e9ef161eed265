"""Referee: pytest-xdist's own test suite with ``execnet`` resolving to weft.

``main(argv) -> int`` downloads pytest-xdist's sdist with pip into a temporary
directory, installs it (and its test dependency ``filelock``) into a private
``--target`` directory, puts weft's alias package first on PYTHONPATH and runs
``pytest testing/`` from the sdist; it ends with ``N passed, N failed, N
skipped``.  ``--execnet real`` runs the same suite against the real execnet
(installed into the private directory too) for comparison.
"""

import argparse
import os
import subprocess
import sys
import tempfile

from weft._conformance_execnet import ALIASES, _count, _extract

XDIST_VERSION = "3.8.0"


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
        cmd = [sys.executable, "-m", "pytest", "testing", "-q", "-p", "no:cacheprovider",
               "--junitxml", junit, "-o", "junit_family=xunit1"]
        try:
            import pytest_timeout  # noqa: F401
            cmd += ["--timeout", str(opts.timeout)]
        except ImportError:
            pass
        proc = subprocess.run(cmd + extra, cwd=root, env=env)
        if not os.path.exists(junit):
            print("0 passed, 1 failed, 0 skipped")
            return 1
        outcomes = _count(junit)
        if opts.report:
            with open(opts.report, "w") as f:
                for name in sorted(outcomes):
                    f.write("%s %s\n" % (outcomes[name], name))
        counts = {k: sum(1 for v in outcomes.values() if v == k)
                  for k in ("passed", "failed", "skipped")}
        print("%(passed)d passed, %(failed)d failed, %(skipped)d skipped" % counts)
        return 0 if counts["failed"] == 0 and proc.returncode in (0, 1) else 1
    finally:
        if opts.keep:
            sys.stderr.write("kept %s\n" % tmp)
        else:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
