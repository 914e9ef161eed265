"""Referee: execnet's own test suite run against weft.execnet.

``main(argv) -> int`` downloads execnet's source distribution with pip into a
temporary directory (never committed), puts weft's alias package ``execnet``
(weft/_aliases) first on PYTHONPATH, runs ``pytest testing/`` from the sdist
and ends with the line ``N passed, N failed, N skipped``.

Options: ``--version V`` (default 2.1.2), ``--sdist PATH`` (use a local
tarball instead of downloading), ``--keep`` (keep the temp dir),
``--report FILE`` (write per-test outcomes), anything after ``--`` goes to
pytest (e.g. ``-- -k test_channel --gx ssh=localhost``).
"""

import argparse
import glob
import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET

EXECNET_VERSION = "2.1.2"
ALIASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_aliases")


def _download(version, dest):
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "execnet==%s" % version, "-d", dest, "-q"]
    subprocess.run(cmd, check=True)
    found = glob.glob(os.path.join(dest, "execnet-*.tar.gz"))
    if not found:
        raise SystemExit("pip downloaded no execnet sdist into %s" % dest)
    return found[0]


def _extract(sdist, dest, pattern="execnet-*"):
    with tarfile.open(sdist) as tf:
        tf.extractall(dest, filter="data")
    roots = [d for d in glob.glob(os.path.join(dest, pattern)) if os.path.isdir(d)]
    return roots[0]


def _count(junit):
    tree = ET.parse(junit)
    outcomes = {}
    for case in tree.iter("testcase"):
        name = "%s::%s" % (case.get("classname"), case.get("name"))
        kind = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                kind = "failed"
                break
            if child.tag == "skipped":
                kind = "skipped"
        # a test with a failing teardown appears twice; keep the worst
        if outcomes.get(name) != "failed":
            outcomes[name] = kind
    return outcomes


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = argparse.ArgumentParser(prog="python -m weft.conformance execnet")
    parser.add_argument("--version", default=EXECNET_VERSION)
    parser.add_argument("--sdist")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--report")
    parser.add_argument("--timeout", type=int, default=60, help="per-test timeout (s)")
    parser.add_argument("--ssh", choices=("auto", "yes", "no"), default="auto",
                        help="start a throwaway sshd on 127.0.0.1 and run the ssh tests "
                             "(auto: when openssh-server is installed)")
    opts = parser.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="weft-conformance-execnet-")
    sshd = None
    try:
        if opts.ssh != "no":
            from weft._testing_sshd import start_sshd
            try:
                sshd = start_sshd(os.path.join(tmp, "sshd"))
            except (RuntimeError, OSError) as exc:
                if opts.ssh == "yes":
                    raise SystemExit("cannot start sshd: %s" % exc)
                sys.stderr.write("ssh tests skipped: %s\n" % exc)
        sdist = opts.sdist or _download(opts.version, tmp)
        root = _extract(sdist, tmp)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [ALIASES] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.pop("PYTEST_ADDOPTS", None)
        # execnet's tests expect default interpreter flags (test_dont_write_bytecode)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        junit = os.path.join(tmp, "junit.xml")
        cmd = [sys.executable, "-m", "pytest", "testing", "-q", "-p", "no:cacheprovider",
               "--junitxml", junit, "-o", "junit_family=xunit1",
               "--continue-on-collection-errors"]
        try:
            import pytest_timeout  # noqa: F401
            cmd += ["--timeout", str(opts.timeout)]
        except ImportError:
            sys.stderr.write("pytest-timeout not installed: tests run without timeouts\n")
        if sshd is not None:
            cmd += ["--gx", "ssh=%s" % sshd.spec_ssh]
        cmd += extra
        proc = subprocess.run(cmd, cwd=root, env=env)
        if not os.path.exists(junit):
            print("0 passed, 1 failed, 0 skipped")
            return 1
        outcomes = _count(junit)
        if opts.report:
            with open(opts.report, "w") as f:
                for name in sorted(outcomes):
                    f.write("%s %s\n" % (outcomes[name], name))
        passed = sum(1 for k in outcomes.values() if k == "passed")
        failed = sum(1 for k in outcomes.values() if k == "failed")
        skipped = sum(1 for k in outcomes.values() if k == "skipped")
        print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
        return 0 if failed == 0 and proc.returncode in (0, 1) else 1
    finally:
        if sshd is not None:
            sshd.stop()
        if opts.keep:
            sys.stderr.write("kept %s\n" % tmp)
        else:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
