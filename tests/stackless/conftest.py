import pytest

import weft.stackless as stackless


@pytest.fixture(autouse=True)
def clean_scheduler():
    """Every test starts and ends with only the main tasklet runnable."""
    assert stackless.getruncount() == 1, "a previous test left tasklets runnable"
    yield
    leftovers = []
    t = stackless.getmain().next
    while t is not None and t is not stackless.getmain():
        leftovers.append(t)
        t = t.next
    for t in leftovers:
        t.kill()
    stackless.set_channel_callback(None)
    stackless.set_schedule_callback(None)
    stackless.set_error_handler(None)
    assert stackless.getruncount() == 1
