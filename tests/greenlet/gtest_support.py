"""Shared helpers for the weft.greenlet test suite.

The implementation under test is ``weft.greenlet``.  Setting the environment
variable ``WEFT_GREENLET_IMPL=greenlet`` runs the very same tests against the
real ``greenlet`` package, which is how the expectations in this directory
were checked: every test is meant to pass against real greenlet 3.x.
"""
import importlib
import os
import subprocess
import sys
import textwrap

IMPL = os.environ.get("WEFT_GREENLET_IMPL", "weft.greenlet")
G = importlib.import_module(IMPL)
greenlet = G.greenlet
getcurrent = G.getcurrent
GreenletExit = G.GreenletExit
error = G.error
settrace = G.settrace
gettrace = G.gettrace

HERE = os.path.dirname(os.path.abspath(__file__))

# Every subprocess script starts with this: the same implementation switch.
PRELUDE = """\
import importlib, os, sys
G = importlib.import_module(os.environ["WEFT_GREENLET_IMPL"])
greenlet = G.greenlet
getcurrent = G.getcurrent
GreenletExit = G.GreenletExit
"""

FATAL_MARKERS = (
    "Fatal Python error",
    "Segmentation fault",
    "Aborted",
    "panicked",  # a Rust panic message, even if caught and turned into an exception
    "Traceback (most recent call last)",
    "Exception ignored",
)


def run_script(code, timeout=60, expect_rc=0, allow_stderr=(), env_extra=None, args=()):
    """Run ``PRELUDE + code`` in a fresh interpreter; a crash, a hang or a
    non-empty unexpected stderr is a test failure (not a dead test run).

    Returns the CompletedProcess.  ``allow_stderr`` lists substrings that may
    appear in stderr (lines containing them are ignored for the fatal-marker
    check).
    """
    env = dict(os.environ)
    env["WEFT_GREENLET_IMPL"] = IMPL
    env["PYTHONFAULTHANDLER"] = "1"
    env["PYTHONPATH"] = HERE + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONDEVMODE", None)
    if env_extra:
        env.update(env_extra)
    src = PRELUDE + textwrap.dedent(code)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", src, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            "subprocess hung (> %ss)\nstdout:\n%s\nstderr:\n%s"
            % (timeout, exc.stdout, exc.stderr)
        ) from None
    detail = "rc=%s\nstdout:\n%s\nstderr:\n%s" % (proc.returncode, proc.stdout, proc.stderr)
    assert proc.returncode == expect_rc, detail
    checked = "\n".join(
        line for line in proc.stderr.splitlines() if not any(a in line for a in allow_stderr)
    )
    for marker in FATAL_MARKERS:
        assert marker not in checked, detail
    return proc


def frame_names(frame):
    """co_names along the f_back chain starting at ``frame``."""
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
        assert len(names) < 10000, "f_back chain does not end"
    return names
