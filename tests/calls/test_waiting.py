"""`race_until` (engine/waiting.py): a call's waits end with the call, on the call's own task, without leaving a
stray cancellation behind — with the listening `Ending` and with a plain event alike."""

from __future__ import annotations

import asyncio

import pytest

from hipper.engine.waiting import Ending, race_until

EVENTS = [Ending, asyncio.Event]


@pytest.mark.parametrize("kind", EVENTS)
async def test_the_result_when_it_comes_first(kind: type[asyncio.Event]) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    queue.put_nowait(7)
    assert await race_until(queue.get(), kind(), 5.0) == 7


@pytest.mark.parametrize("kind", EVENTS)
async def test_none_when_the_call_ends_and_the_task_goes_on_unharmed(kind: type[asyncio.Event]) -> None:
    over = kind()
    queue: asyncio.Queue[int] = asyncio.Queue()
    asyncio.get_running_loop().call_soon(over.set)
    assert await race_until(queue.get(), over, None) is None
    await asyncio.sleep(0)  # no cancellation left over for the task's next wait
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", EVENTS)
async def test_none_when_the_limit_passes(kind: type[asyncio.Event]) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    assert await race_until(queue.get(), kind(), 0.01) is None


@pytest.mark.parametrize("kind", EVENTS)
async def test_none_at_once_when_already_over(kind: type[asyncio.Event]) -> None:
    over = kind()
    over.set()
    queue: asyncio.Queue[int] = asyncio.Queue()
    assert await race_until(queue.get(), over, None) is None


@pytest.mark.parametrize("kind", EVENTS)
async def test_a_cancellation_from_outside_still_cancels(kind: type[asyncio.Event]) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    waiting = asyncio.ensure_future(race_until(queue.get(), kind(), None))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_the_awaited_work_ending_the_call_itself_keeps_its_result() -> None:
    over = Ending()

    async def work() -> str:
        over.set()  # e.g. the work hangs up the call, then finishes without waiting again
        return "done"

    assert await race_until(work(), over, None) == "done"
    await asyncio.sleep(0)  # the task is not cancelled later, somewhere else
    await asyncio.sleep(0)


async def test_the_awaited_work_ending_the_call_and_waiting_on_is_stopped() -> None:
    over = Ending()
    forever: asyncio.Queue[int] = asyncio.Queue()

    async def work() -> int:
        over.set()
        return await forever.get()

    assert await race_until(work(), over, None) is None
    await asyncio.sleep(0)
