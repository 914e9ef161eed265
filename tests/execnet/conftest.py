import os
import signal
import sys

import pytest

TEST_TIMEOUT = 60  # seconds, every test


def pytest_collection_modifyitems(config, items):
    # every test gets a timeout: pytest-timeout when installed, else SIGALRM
    if config.pluginmanager.hasplugin("timeout"):
        for item in items:
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(TEST_TIMEOUT))


@pytest.fixture(autouse=True)
def _alarm_timeout(request):
    if request.config.pluginmanager.hasplugin("timeout") or not hasattr(signal, "SIGALRM"):
        yield
        return

    def fail(signum, frame):
        pytest.fail("test timed out after %d s" % TEST_TIMEOUT)

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def group():
    import weft.execnet as execnet

    g = execnet.Group()
    yield g
    g.terminate(2.0)


@pytest.fixture
def gw(group):
    return group.makegateway("popen")


@pytest.fixture(params=["popen", "socket", "via", "main_thread_only"])
def anygw(request, group):
    """The same behaviour over every transport."""
    kind = request.param
    if kind == "popen":
        return group.makegateway("popen")
    if kind == "main_thread_only":
        return group.makegateway("popen//execmodel=main_thread_only")
    group.makegateway("popen//id=proxy")
    if kind == "socket":
        return group.makegateway("socket//installvia=proxy")
    return group.makegateway("popen//via=proxy")


@pytest.fixture
def pipe():
    """A pipe's (read end, write end), both closed after the test unless
    the test closed them itself."""
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass
