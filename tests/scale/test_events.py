"""Live events across nodes (docs/scale-out.md): an outbox event committed through node A reaches an app whose
event stream is open on node B at once — PostgreSQL LISTEN/NOTIFY wakes B, not its poll — and a stream that moves
to another node resumes where it was (Last-Event-ID)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.support import postgres
from tests.support.exchange_process import ExchangeProcess, exchange_process

pytestmark = [pytest.mark.postgres]

DND = "/api/v1/me/services/do-not-disturb"
# Far longer than the test waits: an event that arrives came by notification, not by the poll.
SLOW_POLL = {"events_poll_seconds": "600"}


@pytest.fixture
async def nodes(tmp_path: Path, postgres_server: postgres.PostgresServer) -> AsyncIterator[list[ExchangeProcess]]:
    url = await postgres_server.template_copy()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with contextlib.AsyncExitStack() as stack:
        nodes = await asyncio.gather(
            stack.enter_async_context(exchange_process(tmp_path / "a", url, ["bob"], node_id="a", **SLOW_POLL)),
            stack.enter_async_context(exchange_process(tmp_path / "b", url, seed=False, node_id="b", **SLOW_POLL)),
        )
        yield list(nodes)


class Stream:
    """An open live-event stream: its lines as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next_event(self, limit: float) -> tuple[str, str]:
        """The next event's (id, type), skipping comments."""
        event_id = kind = ""
        async with asyncio.timeout(limit):
            async for line in self.lines:
                if line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("event:"):
                    kind = line[6:].strip()
                elif line == "" and kind:
                    return event_id, kind
        raise AssertionError("the stream ended")

    async def connected(self) -> None:
        async for line in self.lines:
            if line.startswith(": connected") or line.startswith(":connected"):
                return


@contextlib.asynccontextmanager
async def stream(http: httpx.AsyncClient, node: ExchangeProcess, token: str, resume: str = "") -> AsyncIterator[Stream]:
    headers = {"Authorization": f"Bearer {token}", **({"Last-Event-ID": resume} if resume else {})}
    async with http.stream("GET", f"{node.url}/api/v1/events", headers=headers) as response:
        assert response.status_code == 200
        opened = Stream(response)
        await opened.connected()
        yield opened


async def test_an_event_committed_through_node_a_reaches_a_stream_on_node_b_at_once(
    nodes: list[ExchangeProcess],
) -> None:
    a, b = nodes
    async with httpx.AsyncClient(timeout=10) as http:
        on_a = await a.login(http, "bob")
        on_b = await b.login(http, "bob")
        async with stream(http, b, on_b) as live:
            started = time.monotonic()
            put = await http.put(f"{a.url}{DND}", json={"active": True}, headers={"Authorization": f"Bearer {on_a}"})
            assert put.status_code == 200, put.text
            first_id, kind = await live.next_event(10)
            assert kind == "service.changed"
            # The poll would take up to 600 s; a loaded machine's two processes and PostgreSQL take a few.
            assert time.monotonic() - started < 10
        # The app moves to node A (its balancer picked another node) and resumes after what it saw.
        put = await http.put(f"{b.url}{DND}", json={"active": False}, headers={"Authorization": f"Bearer {on_b}"})
        assert put.status_code == 200, put.text
        async with stream(http, a, on_a, resume=first_id) as resumed:
            second_id, kind = await resumed.next_event(10)
            assert kind == "service.changed" and int(second_id) > int(first_id)
