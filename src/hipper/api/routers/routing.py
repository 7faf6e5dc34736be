"""GET /me/routing/explain: what would happen to a call for me, step by step, with the reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from hipper.api.deps import CurrentUser, Session, State
from hipper.api.errors import invalid_query
from hipper.domain.errors import InvalidSetting
from hipper.domain.moments import aware
from hipper.domain.numbers import NumberError, normalise
from hipper.domain.outgoing import CallerIdentity, IdentityKind, PlacedCall, outgoing_identity
from hipper.domain.routing import IncomingCall, RoutingPlan, RoutingRules, plan_incoming
from hipper.store.user_state import is_colleague, load_user_state

router = APIRouter(prefix="/me/routing", tags=["routing"])


class Explanation(BaseModel):
    plan: RoutingPlan
    # The plan as indented sentences, branches included ("if busy", "if no answer", "if not reachable").
    summary: list[str]


@router.get("/explain", response_model=Explanation)
async def explain(
    auth: CurrentUser,
    session: Session,
    app: State,
    caller: Annotated[str | None, Query(description="The caller's number; omit for an anonymous caller")] = None,
    at: Annotated[datetime | None, Query(description="When the call comes in (ISO 8601); default now")] = None,
    called: Annotated[Literal["fixed", "mobile"], Query(description="Which of your numbers is called")] = "fixed",
    on_call: Annotated[bool, Query(description="Explain as if you were on a call already")] = False,
) -> Explanation:
    """The routing plan for a call to you, as the exchange would run it, with the reason for every step.

    Registrations are read as they are now, whatever `at` says: the devices registered at that time are unknown.
    """
    caller_number: str | None = None
    if caller is not None and caller.strip():
        try:
            caller_number = normalise(caller)
        except NumberError as exc:
            raise invalid_query("caller", str(exc), exc.code) from exc
    real_now = datetime.now(UTC)
    moment = real_now if at is None else aware(at)
    user = auth.user
    state = await load_user_state(session, user, real_now, on_call=on_call)
    if called == "mobile" and (state.mobile_number is None or "fixed-mobile" not in state.licences):
        raise invalid_query(
            "called",
            "calls to your mobile number pass through the exchange only with fixed-mobile",
            "needs_fixed_mobile",
        )
    # The exchange's own ring length, so the timeouts shown are the ones a real call gets.
    rules = RoutingRules(seconds_per_ring=app.settings.seconds_per_ring)
    plan = plan_incoming(IncomingCall(caller=caller_number, called=called), state, moment, rules)
    return Explanation(plan=plan, summary=plan.describe())


@router.get("/outgoing-identity", response_model=CallerIdentity)
async def explain_outgoing(
    auth: CurrentUser,
    session: Session,
    dialled: Annotated[str, Query(description="The number or extension to call")],
    device: Annotated[Literal["desk", "mobile"], Query(description="Where you call from")] = "desk",
    identity: Annotated[IdentityKind | None, Query(description="Your choice for this call (D2)")] = None,
) -> CallerIdentity:
    """Which number the callee would see for this call, and whether it is hidden (SPEC D1, D2, G1–G3)."""
    try:
        number = normalise(dialled)
    except NumberError as exc:
        raise invalid_query("dialled", str(exc), exc.code) from exc
    user = auth.user
    now = datetime.now(UTC)
    state = await load_user_state(session, user, now)
    if device == "mobile" and "fixed-mobile" not in state.licences:
        raise invalid_query(
            "device", "calls from your mobile pass through the exchange only with fixed-mobile", "needs_fixed_mobile"
        )
    call = PlacedCall(
        dialled=number, device=device, internal=await is_colleague(session, user, number), choice=identity
    )
    try:
        return outgoing_identity(call, state)
    except InvalidSetting as exc:
        raise invalid_query(exc.field, exc.reason, exc.code) from exc
