"""Per-test time bound for the in-process greenlet tests.

pytest-timeout is not a dependency, so each test gets a SIGALRM that raises
in the main thread after TEST_TIMEOUT seconds (a hang becomes a failure), and
faulthandler is armed as a hard backstop that dumps every thread's stack and
exits if even that does not work (e.g. a deadlock in native code).
"""
import faulthandler
import signal

import pytest

TEST_TIMEOUT = 60
# tests named *_subprocess bound themselves with subprocess timeouts (<= 300s)
SUBPROCESS_TEST_TIMEOUT = 600
HARD_TIMEOUT = 900


class TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _bounded_runtime(request):
    limit = TEST_TIMEOUT
    if request.node.name.split("[")[0].endswith("_subprocess"):
        limit = SUBPROCESS_TEST_TIMEOUT

    def on_alarm(signum, frame):
        raise TestTimeout("test exceeded %ss" % limit)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(limit)
    faulthandler.dump_traceback_later(HARD_TIMEOUT, exit=True)
    try:
        yield
    finally:
        signal.alarm(0)
        faulthandler.cancel_dump_traceback_later()
        signal.signal(signal.SIGALRM, old)
