"""Waiting inside a call: for something to happen, unless the call ends first."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Ending(asyncio.Event):
    """A call's "over" event that also tells listeners the moment it is set.

    `race_until` listens instead of waiting on the event in a task of its own: a call waits this way a dozen times
    (every ring, prompt, key), and two tasks plus `asyncio.wait` per wait were a tenth of a call's CPU.
    """

    def __init__(self) -> None:
        super().__init__()
        self._listeners: list[Callable[[], None]] = []

    def set(self) -> None:
        if self.is_set():
            return
        super().set()
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            listener()

    def listen(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def unlisten(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)


async def race_until(awaitable: Awaitable[T], over: asyncio.Event, limit: float | None) -> T | None:
    """`awaitable`'s result, or None when `over` is set (the call ended) or `limit` seconds pass first."""
    if over.is_set():
        if inspect.iscoroutine(awaitable):
            awaitable.close()  # never started: nothing to cancel, and no "never awaited" warning
        return None
    if not isinstance(over, Ending):
        return await _race_with_tasks(awaitable, over, limit)
    task = asyncio.current_task()
    assert task is not None
    racing, ended = True, False

    def call_over() -> None:
        nonlocal ended
        if not racing:
            return
        if asyncio.current_task() is task:
            # Set by this very task (the awaited work ended the call): cancelling now would hit the task's next
            # wait, wherever that is; cancel once it waits here, if it still does.
            asyncio.get_running_loop().call_soon(call_over)
            return
        ended = True
        task.cancel()

    # The call's end cancels this very task (as asyncio.timeout does for its deadline), and the cancellation is
    # taken back below when it was ours, so a cancellation from outside still propagates.
    over.listen(call_over)
    try:
        if limit is None:  # no deadline: no timeout to arm (the call's end is the one way out)
            return await awaitable
        async with asyncio.timeout(limit):
            return await awaitable
    except TimeoutError:
        return None
    except asyncio.CancelledError:
        if ended and task.uncancel() == 0:
            return None
        raise
    finally:
        racing = False
        over.unlisten(call_over)


async def _race_with_tasks(awaitable: Awaitable[T], over: asyncio.Event, limit: float | None) -> T | None:
    task = asyncio.ensure_future(awaitable)
    ended = asyncio.ensure_future(over.wait())
    try:
        done, _ = await asyncio.wait({task, ended}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, ended):
            if not pending.done():
                pending.cancel()
    if task in done and not task.cancelled():
        return task.result()
    return None
