"""A million tasklets in one channel ring (size: $WEFT_RING_TASKLETS, default 1,000,000)."""
import gc
import os
import time

import weft.stackless as stackless

RING = int(os.environ.get("WEFT_RING_TASKLETS", "1000000"))


def test_a_million_tasklets_in_one_channel_ring():
    chans = [stackless.channel() for _ in range(RING + 1)]

    def link(i):
        chans[i + 1].send(chans[i].receive() + 1)

    gc.disable()  # a million long-lived objects: keep the collector out of the timing
    try:
        t0 = time.perf_counter()
        for i in range(RING):
            stackless.tasklet(link)(i)
        stackless.run()
        blocked = time.perf_counter() - t0
        assert chans[0].balance == -1 and chans[RING - 1].balance == -1
        chans[0].send(0)
        assert chans[RING].receive() == RING
        passed = time.perf_counter() - t0 - blocked
    finally:
        gc.enable()
    print(f"{RING:,} tasklets: created and blocked in {blocked:.1f} s, message round the ring in {passed:.1f} s")
    assert all(c.balance == 0 for c in chans[:: max(1, RING // 1000)])
    # Each sender was left runnable after its hand-off: let them finish.
    stackless.run()
    assert stackless.getruncount() == 1
