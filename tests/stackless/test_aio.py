"""weft.aio: tasklets and asyncio coroutines in one thread."""
import asyncio

import pytest

import weft.aio as aio
import weft.stackless as stackless


def run(coro):
    return asyncio.run(coro)


def test_tasklet_awaits_and_only_it_blocks():
    log = []

    def work():
        log.append("tasklet start")
        v = aio.await_(asyncio.sleep(0.05, result=7))
        log.append(("tasklet got", v))
        return v * 2

    async def main():
        async with aio.scheduler():
            t = aio.spawn(work)
            for i in range(3):
                log.append(("coroutine", i))
                await asyncio.sleep(0.01)
            return await t

    assert run(main()) == 14
    assert log.index(("coroutine", 1)) < log.index(("tasklet got", 7))


def test_exceptions_cross_both_ways():
    async def boom():
        raise KeyError("async")

    def work():
        try:
            aio.await_(boom())
        except KeyError as e:
            raise ValueError(f"tasklet saw {e.args[0]}") from e

    async def main():
        async with aio.scheduler():
            with pytest.raises(ValueError, match="tasklet saw async"):
                await aio.spawn(work)

    run(main())


def test_coroutine_and_tasklet_exchange_over_a_channel():
    ch = stackless.channel()
    back = stackless.channel()

    def echo():
        for _ in range(5):
            back.send(ch.receive() + 1)

    async def main():
        async with aio.scheduler():
            aio.spawn(echo)
            out = []
            for i in range(5):
                await aio.send(ch, i)
                out.append(await aio.receive(back))
            return out

    assert run(main()) == [1, 2, 3, 4, 5]


def test_cancelling_a_receive_withdraws_it():
    ch = stackless.channel()

    async def main():
        async with aio.scheduler():
            task = asyncio.ensure_future(aio.receive(ch))
            await asyncio.sleep(0.01)
            assert ch.balance == -1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0)
            assert ch.balance == 0

    run(main())


def test_cancelling_the_awaitable_raises_cancelled_error_in_the_tasklet():
    seen = []

    def work():
        try:
            aio.await_(asyncio.sleep(10))
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def main():
        async with aio.scheduler():
            t = aio.spawn(work)
            await asyncio.sleep(0.02)
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task() and "sleep" in repr(task.get_coro()):
                    task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t

    run(main())
    assert seen == ["cancelled"]


def test_killing_the_tasklet_cancels_its_awaitable():
    started = []

    async def slow():
        started.append(1)
        await asyncio.sleep(10)

    def work():
        aio.await_(slow())

    async def main():
        async with aio.scheduler():
            t = aio.spawn(work)
            await asyncio.sleep(0.02)
            t.tasklet.kill()
            with pytest.raises(asyncio.CancelledError):
                await t
            await asyncio.sleep(0)
            pending = [x for x in asyncio.all_tasks() if x is not asyncio.current_task() and "slow" in repr(x.get_coro())]
            assert all(x.cancelled() or x.done() for x in pending)

    run(main())
    assert started == [1]


def test_await_outside_a_tasklet_is_a_clear_error():
    with pytest.raises(RuntimeError, match="tasklets"):
        aio.await_(asyncio.sleep(0))

    async def main():
        with pytest.raises(RuntimeError, match="scheduler"):
            aio.spawn(lambda: None)

    run(main())
