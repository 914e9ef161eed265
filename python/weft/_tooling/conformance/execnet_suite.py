"""Referee: execnet's own test suite run against weft.execnet.

``main(argv) -> int`` downloads execnet's source distribution with pip into a
temporary directory (never committed), puts weft's alias package ``execnet``
(weft/_aliases) first on PYTHONPATH, runs ``pytest testing/`` from the sdist
and ends with the line ``N passed, N failed, N skipped``; it exits 0 when
every failing test is in KNOWN_FAILURES or KNOWN_FLAKY (the gate of
weft.conformance.report).

Options: ``--version V`` (default 2.1.2), ``--sdist PATH`` (use a local
tarball instead of downloading), ``--keep`` (keep the temp dir),
``--report FILE`` (write per-test outcomes), ``--no-tasklet`` (leave out
weft's tasklet exec model, which this module's pytest plugin adds to the
suite's execmodel variants), anything after ``--`` goes to pytest (e.g.
``-- -k test_channel --gx ssh=localhost``).  execnet's eventlet and gevent
variants run where those packages are installed (on weft.greenlet: the alias
answers ``import greenlet``) and are skipped by execnet's importorskip where
they are not.
"""

import argparse
import glob
import importlib.util
import os
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET

EXECNET_VERSION = "2.1.2"
# weft/_aliases: this file is weft/_tooling/conformance/execnet_suite.py
ALIASES = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "_aliases"))

# Tests of execnet 2.1.2's suite that fail on weft, by pytest node id, with
# why (docs/conformance-execnet.md has the same list). They count as failures
# in the closing line; a run passes when every failure is listed here. A test
# that starts passing should be taken out.
_REAL_TOO = ("fails with the real execnet 2.1.2 on this machine too: the test imports a module once "
             "per session and deletes its file after the first variant, so inspect.getsource fails "
             "for the other variants")
_STANDALONE_CORE = ("runs inspect.getsource(gateway_base) standalone with init_popen_io/Popen2IO, execnet's "
                    "stdio transport; weft's core is not a standalone script (it needs the wire module) "
                    "and uses private fds, not stdio")
_SETNULL = ("calls gateway_base.init_popen_io, which weft does not have (the worker sets up its fds in "
            "worker_main)")
_EXECTASK = ("calls WorkerGateway(io, id=...) on a BytesIO and executetask with execnet's 3-tuple task; "
             "weft's task is (source, file_name, call_name, kwargs)")
_TRACEBACK = ("expects the file name gateway_base in a remote traceback; weft's worker code shows as "
              "its own module files (weft/_bootstrap/*.py for a popen worker running the parent's "
              "interpreter, weft-boot/*.py for one booted from source)")
_TRACING = ("execnet's EXECNET_DEBUG trace files and gateway_base.trace/notrace; weft traces to stderr "
            "with WEFT_EXECNET_DEBUG=1")
# The exec models execnet's tests run with: execnet's four, and weft's
# tasklet model (added by this module's pytest_generate_tests).
EXECMODELS = ("thread", "main_thread_only", "eventlet", "gevent", "tasklet")
KNOWN_FAILURES = {
    **{"testing/test_gateway.py::TestBasicGateway::test_remote_exec_module_is_removed[%s-%s]" % (m, g): _REAL_TOO
       for m in EXECMODELS for g in ("popen", "proxy", "socket", "ssh")
       if (m, g) != ("thread", "popen")},  # the first variant, which passes
    **{"testing/test_basics.py::%s[%s%s]" % (t, m, suffix): why
       for m in EXECMODELS
       for t, suffix, why in (("test_io_message", "-sys.executable", _STANDALONE_CORE),
                              ("test_popen_io", "-sys.executable", _STANDALONE_CORE),
                              ("test_stdouterrin_setnull", "", _SETNULL),
                              ("test_exectask", "", _EXECTASK))},
    "testing/test_basics.py::test_subprocess_interaction[sys.executable]":
        "expects execnet's boot line (exec(eval(sys.stdin.readline())), a line-based protocol); "
        "weft's boot line reads a length-prefixed source with os.read",
    "testing/test_basics.py::test_serializer_api_version_error":
        "monkeypatches gateway_base.DUMPFORMAT_VERSION; the version byte lives in weft's codec",
    "testing/test_compatibility_regressions.py::test_opcodes":
        "reads gateway_base.opcode; weft's opcodes live in weft/_bootstrap/wire.py (same byte values, "
        "see docs/wire.md)",
    **{"testing/test_gateway.py::TestPopenGateway::test_remoteerror_readable_traceback[%s-popen]" % m: _TRACEBACK
       for m in EXECMODELS},
    "testing/test_threadpool.py::test_primary_thread_integration[tasklet]":
        "expects WorkerPool(hasprimary=True) to refuse every model but thread and main_thread_only; "
        "weft's tasklet model has a primary thread (a worker's main thread runs its tasklets)",
    "testing/test_gateway.py::TestSshPopenGateway::test_sshconfig_config_parsing":
        "monkeypatches gateway_io.Popen2IOMaster",
    "testing/test_gateway.py::TestTracing::test_popen_filetracing": _TRACING,
    "testing/test_gateway.py::TestTracing::test_no_tracing_by_default": _TRACING,
    "testing/test_xspec.py::TestXSpec::test_popen_with_sudo_python":
        "compares the exact popen command line, which ends in execnet's boot line (weft's popen_args "
        "matches execnet's python= parsing and -u: test_gateway::test_popen_args passes)",
    "testing/test_xspec.py::TestXSpec::test_vagrant_options": "vagrant_ssh= gateways are not implemented",
}
# Tests that pass or fail by timing: a failure is reported, never fatal. The
# XPASS entries are execnet's own non-strict xfail tests (reasons quoted from
# its suite): they pass on weft on this machine (so an unexpected success,
# which fails the gate for any test not listed) and may fail elsewhere.
_XFAIL_TIMING = ("execnet marks it xfail (non-strict): 'on some systems this test fails due to timing "
                 "problems'; passes on weft here")
_XFAIL_ACTIVE_COUNT = ("execnet marks it xfail (non-strict): 'active_count() has been broken for some "
                       "time'; passes on weft here")
KNOWN_FLAKY = {
    **{"testing/test_gateway.py::TestBasicGateway::test_gateway_status_busy[%s-%s]" % (m, t): _XFAIL_TIMING
       for m in EXECMODELS for t in ("popen", "proxy", "socket", "ssh")},
    "testing/test_gateway.py::TestThreads::test_status_with_threads": _XFAIL_TIMING,
    **{"testing/test_gateway.py::TestBasicGateway::test_remote_exec_module[main_thread_only-%s]" % g:
       "runs right after test_gateway_status_busy on the same main_thread_only gateway; when that test "
       "(an xfail: it expects two tasks at once) leaves its first task still waiting (timing: which "
       "variant it hits varies between runs), so this test's "
       "remote_exec is refused with execnet's main_thread_only deadlock message, as that model "
       "says. execnet's own run never sees it: its gw fixture hands every variant the gateway of "
       "the first model (this runner gives each variant its own, see pytest_fixture_setup)"
       for g in ("popen", "proxy", "socket", "ssh")},
    "testing/test_gateway.py::test_regression_gevent_hangs[no-interleave-remote-status]":
        "execnet marks it xfail (non-strict): its gevent worker hangs unless a remote_status() comes "
        "between remote_exec and receive (execnet issue 123); passes on weft here, whose green worker "
        "reads in a green thread of its own",
    **{"testing/test_multi.py::test_safe_terminate2[%s]" % m: _XFAIL_ACTIVE_COUNT
       for m in ("main_thread_only", "thread")},
    **{"testing/test_multi.py::test_safe_terminate[%s]" % m: _XFAIL_ACTIVE_COUNT
       for m in ("main_thread_only", "thread")},
    "testing/test_xspec.py::TestMakegateway::test_popen_nice":
        "execnet marks it xfail (non-strict): 'fails due to timing problems on busy single-core VMs'; "
        "passes on weft here",
}


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


def _node_id(case):
    """pytest's node id of a JUnit testcase (xunit1 reports carry its file)."""
    cls, name, path = case.get("classname") or "", case.get("name"), case.get("file")
    if path and path.endswith(".py"):
        module = path[:-3].replace("/", ".")
        if cls == module or cls.startswith(module + "."):
            inner = cls[len(module) + 1:]
            return "::".join([path] + (inner.split(".") if inner else []) + [name])
    return "%s::%s" % (cls, name)


def _count(junit):
    """{node id: "passed" | "failed" | "skipped"} from a JUnit report."""
    tree = ET.parse(junit)
    outcomes = {}
    for case in tree.iter("testcase"):
        name = _node_id(case)
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


# ---- a pytest plugin: unexpected successes ----------------------------------
# A JUnit report records a non-strict xfail test that passes (XPASS) as a plain
# pass, so the gate could not see it. The runners load this module into the
# suite's pytest with `-p weft._tooling.conformance.execnet_suite` (XPASS_PLUGIN_ARGS), and
# this hook appends each XPASS node id to the file named by $WEFT_XPASS_FILE.
XPASS_ENV = "WEFT_XPASS_FILE"
XPASS_PLUGIN_ARGS = ["-p", "weft._tooling.conformance.execnet_suite"]


def pytest_runtest_logreport(report):
    path = os.environ.get(XPASS_ENV)
    if path and report.when == "call" and report.passed and hasattr(report, "wasxfail"):
        with open(path, "a") as f:
            f.write(report.nodeid + "\n")


def _xpassed(path):
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def _gate(junit, returncode, known, flaky, report=None, xpass_file=None):
    """Counts the JUnit report, writes the per-test report if asked, and
    applies weft.conformance's gate (known, flaky and NEW failures,
    unexpected successes from `xpass_file`, closing line). Returns the exit
    status."""
    from weft.conformance import report as gate
    if not os.path.exists(junit):
        return gate((0, 1, 0), ["pytest (exit code %d, no JUnit report)" % returncode], known, flaky,
                    doc="docs/conformance-execnet.md")
    outcomes = _count(junit)
    if report:
        with open(report, "w") as f:
            for name in sorted(outcomes):
                f.write("%s %s\n" % (outcomes[name], name))
    totals = [sum(1 for k in outcomes.values() if k == kind) for kind in ("passed", "failed", "skipped")]
    failed = [t for t, k in outcomes.items() if k == "failed"]
    # pytest's exit status is never ignored: 2-4 (interrupted, internal error,
    # usage error), 5 (no tests collected), or 1 with no failing test in the
    # report (a failure the report does not show) each fail the gate.
    if returncode not in (0, 1) or (returncode == 1 and not failed):
        failed.append("pytest (exit code %d%s)" % (
            returncode, ", no tests collected" if returncode == 5 else
            "" if returncode != 1 else ", no failing test in the JUnit report"))
        totals[1] += 1
    unexpected = _xpassed(xpass_file)
    # An XPASS is a pass in the JUnit report and a failure here (unless the
    # test is a listed flaky one: then it stays a pass).
    passed = [t for t, k in outcomes.items() if k == "passed" and (t not in unexpected or t in flaky)]
    totals[0] = len(passed)
    return gate(totals, failed, known, flaky, passed, doc="docs/conformance-execnet.md",
                unexpected_ids=unexpected)


# ---- a pytest plugin: the tasklet exec model ---------------------------------
# execnet's conftest parametrizes its `execmodel` fixture with thread,
# main_thread_only, eventlet and gevent. With $WEFT_EXECNET_TASKLET set (the
# runner sets it), this hook adds weft's "tasklet" model to those params
# before pytest parametrizes the tests, so every test that takes `execmodel`
# (the remote exec model of its `gw`, or a local WorkerPool's) runs with
# tasklets too. The fixture's own body is kept for the other models; for
# "tasklet" it returns weft's model (execnet's body would importorskip a
# module named "tasklet").
TASKLET_ENV = "WEFT_EXECNET_TASKLET"
GW_PER_MODEL_ENV = "WEFT_EXECNET_GW_PER_MODEL"
GREEN_EXECMODELS = ("eventlet", "gevent")

try:
    import pytest as _pytest
except ImportError:  # pragma: no cover - the runner's own process without pytest
    _pytest = None

if _pytest is not None:
    @_pytest.hookimpl(tryfirst=True)
    def pytest_generate_tests(metafunc):
        if not os.environ.get(TASKLET_ENV) or "execmodel" not in metafunc.fixturenames:
            return
        for fixturedef in metafunc._arg2fixturedefs.get("execmodel", ()):
            params = fixturedef.params
            if params is None or "tasklet" in params or getattr(fixturedef, "_weft_tasklet", False):
                continue
            fixturedef.params = tuple(params) + ("tasklet",)
            fixturedef._weft_tasklet = True
            body = fixturedef.func

            def execmodel(request, _body=body):
                if request.param == "tasklet":
                    from execnet.gateway_base import get_execmodel
                    return get_execmodel("tasklet")
                return _body(request)

            fixturedef.func = execmodel

    # execnet's `gw` fixture keeps its gateways in a session-wide group by id
    # ("popen", "socket", "proxy", "ssh"): made with the exec model of the
    # first test that asks, and handed to every later variant, whatever its
    # model. With $WEFT_EXECNET_GW_PER_MODEL set (the runner sets it), a
    # cached gateway of another model is ended first, so that each variant
    # gets a gateway of its own model. ssh gateways are left alone: the
    # fixture does not give them the model.
    @_pytest.hookimpl(tryfirst=True)
    def pytest_fixture_setup(fixturedef, request):
        if fixturedef.argname != "gw" or not os.environ.get(GW_PER_MODEL_ENV):
            return None
        if getattr(fixturedef, "_weft_per_model", False):
            return None
        fixturedef._weft_per_model = True
        body = fixturedef.func

        def gw(request, execmodel, group, _body=body):
            kind = request.param
            # with their helper gateways, which the fixture makes only with them
            stale = [kind] + {"proxy": ["proxy-transport"], "socket": ["sproxy1"]}.get(kind, [])
            if kind != "ssh" and kind in group and group[kind].spec.execmodel != execmodel.backend:
                for name in stale:
                    if name in group:
                        old = group[name]
                        old.exit()
                        old.join(10)
            return _body(request, execmodel, group)

        fixturedef.func = gw
        return None


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
    parser.add_argument("--no-tasklet", dest="tasklet", action="store_false",
                        help="do not add weft's tasklet exec model to execnet's execmodel variants")
    parser.add_argument("--ssh", choices=("auto", "yes", "no"), default="auto",
                        help="start a throwaway sshd on 127.0.0.1 and run the ssh tests "
                             "(auto: when openssh-server is installed)")
    opts = parser.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="weft-conformance-execnet-")
    sshd = None
    try:
        if opts.ssh != "no":
            from weft._tooling.sshd import start_sshd
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
        # eventlet and gevent (on weft.greenlet: the alias answers `import
        # greenlet`) where they are installed; execnet's own importorskip skips
        # their variants where they are not
        for name in GREEN_EXECMODELS:
            if importlib.util.find_spec(name) is None:
                sys.stderr.write("%s not installed: execnet's %s variants are skipped\n" % (name, name))
        if opts.tasklet:
            env[TASKLET_ENV] = "1"
        env[GW_PER_MODEL_ENV] = "1"
        env.pop("PYTEST_ADDOPTS", None)
        # execnet's tests expect default interpreter flags (test_dont_write_bytecode)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        junit = os.path.join(tmp, "junit.xml")
        env[XPASS_ENV] = xpass_file = os.path.join(tmp, "xpassed.txt")
        cmd = [sys.executable, "-m", "pytest", "testing", "-q", "-p", "no:cacheprovider",
               "--junitxml", junit, "-o", "junit_family=xunit1",
               "--continue-on-collection-errors"] + XPASS_PLUGIN_ARGS
        try:
            import pytest_timeout  # noqa: F401
            cmd += ["--timeout", str(opts.timeout)]
        except ImportError:
            sys.stderr.write("pytest-timeout not installed: tests run without timeouts\n")
        if sshd is not None:
            cmd += ["--gx", "ssh=%s" % sshd.spec_ssh]
        cmd += extra
        proc = subprocess.run(cmd, cwd=root, env=env)
        return _gate(junit, proc.returncode, KNOWN_FAILURES, KNOWN_FLAKY, opts.report, xpass_file)
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
