"""Build the FastAPI application. Routers are found in `hipper.api.routers`: one module per area."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware

import hipper
from hipper import logs, metrics
from hipper.api import errors, routers, web
from hipper.api.hardening import OperatorOnly, SecurityHeaders, operator_paths
from hipper.api.limits import BodyGuard
from hipper.api.settings_fast_path import SettingsFastPath
from hipper.api.state import AppState, EventHub
from hipper.config import Settings
from hipper.engine.b2bua import B2bua
from hipper.notify import start_notifications
from hipper.passwords import Hasher
from hipper.store.db import (
    autocommit_engine,
    create_engine,
    migrate,
    session_factory,
)
from hipper.store.events import listen_dsn

API_PREFIX = "/api/v1"


# Starlette matches routes in order, one by one: the app's hot paths (/me/services, /me) go first and the large,
# rarely used admin area last; that ordering alone saved about a third of a settings GET's routing time.
ROUTER_ORDER = ("services", "me", "auth", "events")
LAST = ("admin",)


def _router_rank(name: str) -> tuple[int, int, str]:
    if name in ROUTER_ORDER:
        return (0, ROUTER_ORDER.index(name), name)
    return (2 if name in LAST else 1, 0, name)


def discover_routers() -> list[APIRouter]:
    found = []
    for module_info in sorted(pkgutil.iter_modules(routers.__path__), key=lambda m: _router_rank(m.name)):
        module = importlib.import_module(f"{routers.__name__}.{module_info.name}")
        router = getattr(module, "router", None)
        if isinstance(router, APIRouter):
            found.append(router)
    return found


def attach_calls(app: FastAPI, b2bua: B2bua) -> None:
    """Call processing in this process: the API lists and controls its live calls (api/routers/calls.py), and a
    batch of the calls' events committed wakes this node's live-event streams at once (not at the next poll)."""
    app.state.calls = b2bua
    b2bua.writer.committed.append(app.state.hipper.events.published)


def create_app(settings: Settings, *, run_migrations: bool = True) -> FastAPI:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.resolved_database_url())
    state = AppState(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        autocommit=autocommit_engine(engine),
        hasher=Hasher(settings.argon2_time_cost, settings.argon2_memory_cost),
        events=EventHub(settings.events_poll_seconds, listen_dsn=listen_dsn(settings.resolved_database_url())),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Here rather than at import: uvicorn sets up its own logging after building the app.
        logs.configure(settings.log_level, settings.log_json)
        if run_migrations:
            await migrate(engine)
        state.migrated.set()
        try:
            async with metrics.loop_lag_monitor():
                notifications = await start_notifications(state)  # e-mail and Web Push (hipper.notify)
                yield
                await notifications.close()
        finally:
            await state.close()  # what runs beside the API (call processing), then the database

    app = FastAPI(
        title="Hipper exchange API",
        version=hipper.__version__,
        description="The Hipper+ app's remote control for the Hipper business telephone exchange.",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
    )
    app.state.hipper = state
    errors.install(app)
    # Innermost of ours (added first): inside the body guard, so a settings PUT's body is bounded and strict JSON.
    app.add_middleware(SettingsFastPath, api_prefix=API_PREFIX)
    app.add_middleware(BodyGuard, default_limit=settings.http_max_body_bytes)
    app.add_middleware(
        OperatorOnly,
        paths=operator_paths(API_PREFIX),
        access=settings.http_operator_access,
        token=settings.http_operator_token,
    )
    app.add_middleware(SecurityHeaders, api_prefix=API_PREFIX)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            allow_credentials=False,
        )
    # Added last so it is the outermost of ours: it also counts and logs what CORS answers by itself.
    metrics.install(app)
    for router in discover_routers():
        app.include_router(router, prefix=API_PREFIX)
    web.mount(app, settings.terms_page)  # last: the app's files at / never shadow the API
    return app
