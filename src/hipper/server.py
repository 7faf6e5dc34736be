"""`hipper serve`: one process, one event loop, hosting the HTTP API and app (and, later, SIP and media)."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn

from hipper.api.app import create_app
from hipper.config import Settings


async def serve(settings: Settings) -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    await server.serve()


def run(settings: Settings) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(settings))
        return
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(settings))
