"""`hipper serve` follows the committed device events (server.py `follow_device_events`) on the app's own reads,
also when it starts on a database its API's start-up has yet to migrate."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

from hipper.api.app import create_app
from hipper.api.state import AppState
from hipper.config import Settings
from hipper.server import follow_device_events
from hipper.store.events import add_event
from hipper.store.registrations import DeviceDirectory
from tests.conftest import FAST_ARGON2


class Invalidated:
    """What the follower tells the registrar's device cache."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.dropped = asyncio.Event()

    def invalidate(self, name: str) -> None:
        self.names.append(name)
        self.dropped.set()

    def invalidate_device(self, device_id: int) -> None:
        raise AssertionError(f"device {device_id}: the event names its auth username")


async def test_device_events_are_followed_on_a_database_the_start_up_migrates(tmp_path: Path) -> None:
    """As `hipper serve` does: the follower starts with the SIP stack, then the app's lifespan migrates a new
    database. It waited (before, its first look found no tables and it ended for good: no device change reached
    the registrar's cache), and it reads through the app's one `CallPathReads`, not a connection of its own."""
    settings = Settings(
        data_dir=tmp_path / "data", database_url=f"sqlite+aiosqlite:///{tmp_path / 'new.db'}", **FAST_ARGON2
    )
    app = create_app(settings)
    state: AppState = app.state.hipper
    seen = Invalidated()
    subscribed = asyncio.Event()  # the follower took its starting point and listens (the hub has other listeners)
    subscribe = state.events.subscribe

    def subscribing(*args: Any, **kwargs: Any) -> asyncio.Event:
        if asyncio.current_task() is follower:
            subscribed.set()
        return subscribe(*args, **kwargs)

    state.events.subscribe = subscribing  # type: ignore[method-assign]
    follower = asyncio.create_task(follow_device_events(state, cast(DeviceDirectory, seen)))
    try:
        await asyncio.sleep(0)  # the follower starts before the lifespan, as in `server.serve`
        async with app.router.lifespan_context(app):
            listening = asyncio.ensure_future(subscribed.wait())
            await asyncio.wait([follower, listening], timeout=5, return_when=asyncio.FIRST_COMPLETED)
            listening.cancel()
            if follower.done():
                follower.result()  # what ended it (before: "no such table: events")
            assert subscribed.is_set()
            assert state.reads is not None  # the app's reads, opened by the follower after the migrations
            async with state.sessions() as session:
                add_event(session, None, "device.password_reset", {"id": 1, "auth_username": "alice"})
                await session.commit()
            state.events.published()  # what hipper.api.deps.commit does after every commit
            await asyncio.wait_for(seen.dropped.wait(), 5)
            assert seen.names == ["alice"]
            state.events.close()  # shutting down: the follower ends before the lifespan closes the reads
            await asyncio.wait_for(follower, 5)
    finally:
        follower.cancel()
