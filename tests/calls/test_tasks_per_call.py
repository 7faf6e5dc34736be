"""How many asyncio tasks the exchange starts for one plain call (issue 9: one task and one inbox per call).

Every task the exchange's own code creates while a real answered call A → B runs (SIPp both sides) is counted by
a task factory on the running loop, by the coroutine that runs in it; SIPp's process handling and the test's own
waits are not the exchange's and are left out. A plain answered call runs one: the call's own (`B2bua._new_call`),
which also handles the call's inbox at rest — requests, and the media events its users' keypad codes and
recording listen to (apps/recording.py `KeypadCodes`: plain state, no task per user) — also when both users
record the call. Any task more on every call fails here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Coroutine, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import hipper
from hipper.domain.services import CallRecording
from hipper.store.models import Recording
from tests.calls.conftest import Exchange, phone, place_call, scenario

pytestmark = pytest.mark.sip

SOURCE = str(Path(hipper.__file__).parent)
CALLS = 3
# The one task of the exchange's own code per plain answered call (issue 9 point 1; it was 4 before: the call's,
# `recording.in_call` and one `user_controls` per user).
THE_CALLS_OWN = "b2bua.B2bua._new_call"
STORING = "recording.CallRecorder._store"  # after the call, one per recording


def _where(coro: Coroutine[Any, Any, Any] | Generator[Any, None, Any]) -> str | None:
    """The exchange function a task runs, or None when it is not the exchange's."""
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    if code is None or not code.co_filename.startswith(SOURCE):
        return None
    return f"{Path(code.co_filename).stem}.{getattr(coro, '__qualname__', code.co_name)}"


@contextlib.contextmanager
def tasks_counted(started: Counter[str]) -> Iterator[None]:
    """Count into `started`, by the exchange function each runs, the tasks created on the running loop."""
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        where = _where(coro)
        if where is not None:
            started[where] += 1
        return asyncio.Task(coro, loop=loop, **kwargs) if previous is None else previous(loop, coro, **kwargs)

    loop.set_task_factory(counting)
    try:
        yield
    finally:
        loop.set_task_factory(previous)


async def answered_calls(exchange: Exchange, started: Counter[str], *, recorded: bool = False) -> None:
    """`CALLS` answered calls from alice, each to a callee of its own (one phone each: each call rings one branch),
    their tasks counted into `started`; `recorded`: both users record their calls (mode "always")."""
    await exchange.add_user("alice", "201")
    for index in range(CALLS):
        await exchange.add_user(f"bob{index}", f"21{index}")
    if recorded:
        for name in ("alice", *(f"bob{index}" for index in range(CALLS))):
            await exchange.set_service(name, CallRecording.model_validate({"mode": "always"}))
    for index in range(CALLS):
        bob = await phone(exchange, f"bob{index}", "bob", scenario("callee.xml", ring_ms=100))
        with tasks_counted(started):
            alice = await place_call(exchange, "alice", f"21{index}", "final_talks.xml", talk_ms=200)
            await alice.succeeded()
            await bob.succeeded()
            assert (await exchange.next_call()).answered


async def test_a_plain_call_runs_one_task(exchange: Exchange) -> None:
    started: Counter[str] = Counter()
    await answered_calls(exchange, started)
    print(f"tasks per call: {sum(started.values()) / CALLS:.1f}", dict(started))
    assert started == Counter({THE_CALLS_OWN: CALLS}), started


async def test_a_call_both_users_record_runs_one_task_and_stores_both_recordings(exchange: Exchange) -> None:
    """The recordings start in the call's own task when it is answered and are stopped by it at its end: no task
    each while the call runs. Each is then stored in a task of its own once the call is over, so the other party's
    BYE does not wait for the file and its row; none is lost."""
    started: Counter[str] = Counter()
    await answered_calls(exchange, started, recorded=True)
    print(f"tasks per recorded call: {sum(started.values()) / CALLS:.1f}", dict(started))
    assert started == Counter({THE_CALLS_OWN: CALLS, STORING: 2 * CALLS}), started
    async with asyncio.timeout(10):
        while (stored := await recordings_stored(exchange)) < 2 * CALLS:  # noqa: ASYNC110 - rows the store commits
            await asyncio.sleep(0.05)
    assert stored == 2 * CALLS  # alice's and the callee's, of every call


async def test_an_answered_calls_re_invite_is_handled_by_the_calls_own_task(exchange: Exchange) -> None:
    """The caller holds with a re-INVITE (answered recvonly from the anchored endpoint): the call's inbox is
    drained by the call's own task while it waits for its end, so no task runs for the request."""
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    started: Counter[str] = Counter()
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    with tasks_counted(started):
        alice = await place_call(exchange, "alice", "202", "final_hold.xml")
        await alice.succeeded()  # its sendonly offer was answered recvonly by the exchange
        await bob.succeeded()
        assert (await exchange.next_call()).answered
    assert not [where for where in started if "renegotiate" in where or "_drain" in where], started


async def recordings_stored(exchange: Exchange) -> int:
    async with exchange.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(Recording)) or 0)
