"""The followers' wake-ups: many wakes while a follower is busy cost it one pass; a sleep ends on a wake, on stop,
or at its timeout."""

from __future__ import annotations

import asyncio
import time

from v2w_operator.wakeups import Wakeups

KEY = ("Video2WorldJob", "team-a", "job-a")


class Flag:
    """kopf's `stopped` as a daemon sees it: an awaitable wait()."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self) -> None:
        await self.event.wait()


def test_wakes_coalesce_into_one_pass_and_a_sleep_times_out_without_one():
    async def scenario():
        wakeups, stopped = Wakeups(), Flag()
        event = wakeups.open(KEY)
        await wakeups.sleep(event, stopped, 5)  # set at open: the first pass runs at once
        for _ in range(10):
            assert wakeups.wake(KEY)
        started = time.monotonic()
        await wakeups.sleep(event, stopped, 5)
        assert time.monotonic() - started < 0.5
        started = time.monotonic()
        await wakeups.sleep(event, stopped, 0.2)  # the ten wakes were one
        assert time.monotonic() - started >= 0.19
        wakeups.close(KEY, event)
        assert not wakeups.wake(KEY) and len(wakeups) == 0

    asyncio.run(scenario())


def test_a_sleep_ends_when_the_daemon_is_stopped_or_woken_from_the_watch():
    async def scenario():
        wakeups, stopped = Wakeups(), Flag()
        event = wakeups.open(KEY)
        event.clear()
        asyncio.get_running_loop().call_later(0.05, wakeups.wake, KEY)
        started = time.monotonic()
        await wakeups.sleep(event, stopped, None)
        assert time.monotonic() - started < 1
        asyncio.get_running_loop().call_later(0.05, stopped.event.set)
        await wakeups.sleep(event, stopped, None)

    asyncio.run(scenario())
