"""GET /health: liveness for load balancers and monitoring; says whether this node can reach its database."""

from __future__ import annotations

import asyncio
from typing import Literal

import structlog
from fastapi import APIRouter
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


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "the database cannot be reached"}},
)
async def health(state: State) -> Health | JSONResponse:
    """200 when this node answers and its database runs a trivial query; 503 otherwise. Needs no login."""
    try:
        async with asyncio.timeout(DATABASE_CHECK_SECONDS), state.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not healthy"; the reason goes to the log, not to the prober
        log.warning("health check: database unreachable", error=repr(exc))
        return JSONResponse(status_code=503, content=Health(status="unavailable", database="unreachable").model_dump())
    return Health(status="ok", database="ok")
