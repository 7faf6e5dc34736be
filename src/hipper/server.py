"""`hipper serve`: one process, one event loop, hosting the HTTP API and app, and the SIP stack (registrar)."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.api.app import create_app
from hipper.config import Settings
from hipper.sip.digest import Authenticator
from hipper.sip.registrar import Registrar, RegistrarPolicy
from hipper.sip.stack import SipStack
from hipper.store.registrations import DeviceDirectory, LocationStore


def create_sip_stack(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> SipStack:
    """The SIP stack with its registrar; the B2BUA attaches itself later as `stack.handler`."""
    registrar = Registrar(
        Authenticator(
            settings.sip_realm,
            nonce_lifetime=settings.sip_nonce_seconds,
            algorithms=tuple(settings.sip_digest_algorithms),
        ),
        DeviceDirectory(sessions, settings.sip_realm),
        LocationStore(sessions, node=settings.sip_node or socket.gethostname()),
        RegistrarPolicy(min_expires=settings.sip_min_expires, max_expires=settings.sip_max_expires),
    )
    return SipStack(registrar)


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
    # The registrar only touches the database on a REGISTER; uvicorn's lifespan migrates right at startup.
    stack = create_sip_stack(settings, app.state.hipper.sessions)
    await stack.start(settings.sip_host, settings.sip_port, tcp=settings.sip_tcp)
    app.state.sip = stack
    try:
        await server.serve()
    finally:
        await stack.close()


def run(settings: Settings) -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(settings))
        return
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(settings))
