"""GET /health: liveness for load balancers and monitoring; says whether this node can reach its database and,
where this process runs calls (`hipper serve`), whether its media engine's 20 ms ticker still runs."""

from __future__ import annotations

import asyncio
from typing import Literal

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from hipper.api.deps import State

router = APIRouter(tags=["operations"])
log = structlog.get_logger(__name__)

# A load balancer's probe gives up after a few seconds; answer before it does rather than hang with the database.
DATABASE_CHECK_SECONDS = 2.0


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unreachable"]
    # Absent where this process runs no calls (the API alone); "stopped" when prompts, tones, conferences and
    # recordings would be silent (the ticker has not run for media.engine.LIVENESS_SECONDS).
    media: Literal["ok", "stopped"] | None = None


@router.get(
    "/health",
    response_model=Health,
    response_model_exclude_none=True,
    responses={503: {"model": Health, "description": "the database cannot be reached or the media engine stopped"}},
)
async def health(state: State, request: Request) -> Health | JSONResponse:
    """200 when this node answers, its database runs a trivial query and (where it runs calls) its media engine
    ticks; 503 otherwise. Needs no login."""
    calls = getattr(request.app.state, "calls", None)  # the B2BUA, set by `hipper serve` (server.py)
    media: Literal["ok", "stopped"] | None = None
    if calls is not None:
        media = "ok" if calls.media.alive else "stopped"
        if media == "stopped":
            log.warning("health check: media engine stopped")
    database: Literal["ok", "unreachable"] = "ok"
    try:
        async with asyncio.timeout(DATABASE_CHECK_SECONDS), state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not healthy"; the reason goes to the log, not to the prober
        log.warning("health check: database unreachable", error=repr(exc))
        database = "unreachable"
    if database != "ok" or media == "stopped":
        content = Health(status="unavailable", database=database, media=media).model_dump(exclude_none=True)
        return JSONResponse(status_code=503, content=content)
    return Health(status="ok", database=database, media=media)
