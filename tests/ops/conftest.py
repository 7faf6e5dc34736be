"""A real HTTP server (uvicorn on a free port, in the test's event loop) in front of the test app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tests.support.ports import server_port


def free_port() -> int:
    return server_port()


@pytest.fixture
async def live_url(app: FastAPI) -> AsyncIterator[str]:
    state = app.state.hipper
    # Short intervals so the tests see keepalives and cross-node polling within a second or two.
    state.events.poll_seconds = 0.2
    state.events.keepalive_seconds = 0.5
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    server.force_exit = True
    async with asyncio.timeout(10):
        await task


@pytest.fixture
async def http(live_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as client:
        yield client
