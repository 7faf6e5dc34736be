"""Live-event streams are capped per user and end at once at SIGTERM (issue 11, medium "Live events").

One token opened 2,000 streams, lagging the loop that SIP and RTP share, and a shutdown waited 43 s for streams.
Against a real `hipper serve`: of many streams opened at once by one user, exactly the cap stays open (the rest
get a 429 or end at once), another user still gets theirs, and after SIGTERM every stream is closed at once (not
after uvicorn's graceful-shutdown wait) and the process exits.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx

from hipper.server import GRACEFUL_SHUTDOWN_SECONDS
from tests.support.exchange_process import exchange_process

CAP = 3


async def open_stream(http: httpx.AsyncClient, url: str, token: str, opened: list[httpx.Response]) -> float | None:
    """Follow one stream; returns when it ends (the monotonic time) or None when refused."""
    async with http.stream("GET", f"{url}/api/v1/events", headers={"Authorization": f"Bearer {token}"}) as response:
        if response.status_code != 200:
            assert response.status_code == 429
            return None
        opened.append(response)
        try:
            async for _ in response.aiter_bytes():
                pass
        except httpx.TransportError:
            pass
        opened.remove(response)
        return time.monotonic()


async def test_streams_are_capped_per_user_and_end_before_the_graceful_shutdown_wait(tmp_path: Path) -> None:
    async with (
        exchange_process(tmp_path, users=["alice", "bob"], events_max_streams_per_user=str(CAP)) as exchange,
        httpx.AsyncClient(timeout=httpx.Timeout(10, read=None), limits=httpx.Limits(max_connections=50)) as http,
    ):
        alice, bob = await exchange.login(http, "alice"), await exchange.login(http, "bob")
        opened: list[httpx.Response] = []
        attack = [asyncio.create_task(open_stream(http, exchange.url, alice, opened)) for _ in range(20)]
        async with asyncio.timeout(10):
            while sum(task.done() for task in attack) < 20 - CAP:  # noqa: ASYNC110 - the tasks end by themselves
                await asyncio.sleep(0.05)
        assert len(opened) == CAP  # exactly the cap stays open
        bobs = asyncio.create_task(open_stream(http, exchange.url, bob, opened))
        async with asyncio.timeout(5):
            while len(opened) < CAP + 1:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        assert (await http.get(f"{exchange.url}/api/v1/me", headers={"Authorization": f"Bearer {alice}"})).is_success

        sent = time.monotonic()
        exchange.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            # Streams over the cap that got in at the same moment ended at once, long before the signal.
            ended = [end for end in await asyncio.gather(*attack, bobs) if end is not None and end > sent]
            await exchange.process.wait()
        exited = time.monotonic() - sent
        assert len(ended) == CAP + 1
        # Ended at once, not after uvicorn's graceful-shutdown wait for requests still running (5 s, then cancelled):
        # the bounds leave a loaded machine's process the rest of it, and fail when the streams wait it out.
        assert max(ended) - sent < GRACEFUL_SHUTDOWN_SECONDS - 1, f"streams took {max(ended) - sent:.2f} s to close"
        # A clean shutdown: uvicorn re-raises the captured SIGTERM once done, so the exit status is the signal's.
        assert exchange.process.returncode in (0, -signal.SIGTERM)
        assert exited < GRACEFUL_SHUTDOWN_SECONDS, f"the exchange took {exited:.2f} s to exit"
