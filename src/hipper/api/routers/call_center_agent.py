"""GET/PUT /me/services/call-center-agent: the agent's state and call centers (J1–J3).

Not one of the generic service routes: the document is assembled from the call centers and memberships in the
database, and a change is applied to three places (agent state, membership rows, the fixed-mobile option).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from hipper.api.deps import CurrentUser, Session, State, commit
from hipper.domain.services import CallCenterAgent, ensure_licensed
from hipper.store import call_centers
from hipper.store.users import context_of

router = APIRouter(prefix="/me/services", tags=["services"])

DOC = (CallCenterAgent.__doc__ or "").strip()


@router.get("/call-center-agent", response_model=CallCenterAgent, summary="Read call-center-agent", description=DOC)
async def read_agent(auth: CurrentUser, session: Session) -> CallCenterAgent:
    ctx = await context_of(session, auth.user)
    ensure_licensed(CallCenterAgent, ctx)
    return await call_centers.load_agent(session, auth.user.id, ctx, datetime.now(UTC))


@router.put(
    "/call-center-agent",
    response_model=CallCenterAgent,
    summary="Change call-center-agent",
    description=DOC
    + "\n\nThe state `wrap_up` is entered by the exchange after a call-center call and cannot be chosen (422)."
    " `call_centers` may hold a subset of the user's call centers; only `joined` is taken from it."
    " `wrap_up_seconds`, `wrap_up_until` and `state_since` are read-only (403 `read_only` when changed).",
    responses={403: {"description": "not_licensed or read_only (see `code`)"}},
)
async def change_agent(body: CallCenterAgent, auth: CurrentUser, session: Session, state: State) -> CallCenterAgent:
    ctx = await context_of(session, auth.user)
    ensure_licensed(CallCenterAgent, ctx)
    proposed = body.model_dump(mode="json", exclude_unset=True)
    new = await call_centers.change_agent(
        session, auth.user.id, ctx, proposed, datetime.now(UTC), stepped_up=auth.stepped_up
    )
    await commit(session, state)
    return new
