"""Wake-ups of the jobs' followers: one asyncio.Event per job, set by the watch, waited on by the job's follower.

Setting an event that is already set does nothing, so any number of watch events that arrive while a follower is
busy cost it one more pass, not one each: this is what keeps a burst of PyTorchJob events from becoming a burst
of status writes. Used from the event loop only (kopf's async handlers and daemons), never from threads.
"""

from __future__ import annotations

import asyncio
from typing import Any, Hashable

Key = tuple[str, str, str]  # (kind, namespace, name) of a job


class Wakeups:
    def __init__(self) -> None:
        self._events: dict[Hashable, asyncio.Event] = {}

    def open(self, key: Key) -> asyncio.Event:
        """The follower of `key` starts: its event (set, so its first pass runs at once)."""
        event = self._events[key] = asyncio.Event()
        event.set()
        return event

    def close(self, key: Key, event: asyncio.Event) -> None:
        if self._events.get(key) is event:
            del self._events[key]

    def wake(self, key: Key) -> bool:
        """Wake the follower of `key`; False when it has none (not started, or the job is gone)."""
        event = self._events.get(key)
        if event is None:
            return False
        event.set()
        return True

    def __len__(self) -> int:
        return len(self._events)

    @staticmethod
    async def sleep(event: asyncio.Event, stopped: Any, timeout: float | None) -> None:
        """Until `event` is set, kopf's `stopped` flag is, or `timeout` seconds pass (None: no timeout); the event
        is cleared on the way out, so what wakes the follower after this point wakes it again."""

        async def stopping() -> None:
            await stopped.wait()

        waits = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopping())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            event.clear()
