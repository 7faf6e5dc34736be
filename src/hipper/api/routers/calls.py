"""/me/calls: place a call from the app, list one's live calls, hang one up (SPEC D1/D2/D9; apps/click_to_dial.py).

The API and the B2BUA run in one process (`hipper serve` puts the B2BUA on `app.state.calls`), so the live
calls are read straight from the B2BUA's call table: they are never stored.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from hipper.api.deps import CurrentUser, Session, State, commit
from hipper.api.errors import Conflict, invalid_body
from hipper.apps.click_to_dial import AppCalls
from hipper.apps.node import app_calls_of
from hipper.domain.errors import InvalidSetting, NotLicensed
from hipper.domain.numbers import NumberError, normalise
from hipper.domain.outgoing import CallerIdentity, IdentityKind, PlacedCall, callback_legs, outgoing_identity
from hipper.domain.routing.state import service
from hipper.domain.services.call_method import CallMethod
from hipper.engine.b2bua import B2bua
from hipper.store import call_access
from hipper.store.events import add_event
from hipper.store.user_state import is_colleague, load_user_state

router = APIRouter(prefix="/me/calls", tags=["calls"])

PlaceMethod = Literal["callback", "via_exchange", "via_mobile"]


class PlaceCall(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=64, description="The number or extension to call")
    identity: IdentityKind | None = Field(None, description="Which of your numbers the callee sees (D2)")
    method: PlaceMethod | None = Field(None, description="Default: your call-method setting")


class CallPlaced(BaseModel):
    method: PlaceMethod
    to: str  # normalised
    identity: CallerIdentity  # what the callee will see, and why
    id: str | None = None  # callback: the call's id in GET /me/calls
    access_number: str | None = None  # via_exchange: what the app dials from the mobile
    expires_in_seconds: float | None = None  # via_exchange: the window for that call


class LiveCallOut(BaseModel):
    id: str
    direction: Literal["outgoing", "incoming"]
    remote_number: str
    state: Literal["ringing", "active"]
    started_at: datetime


class LiveCalls(BaseModel):
    calls: list[LiveCallOut]


def app_calls(request: Request) -> AppCalls | None:
    """The B2BUA's app calls; None on a node without call processing (an API-only process): it has no live
    calls, and placing one there is a conflict with how it runs (409), not a server fault."""
    b2bua = getattr(request.app.state, "calls", None)
    return app_calls_of(b2bua) if isinstance(b2bua, B2bua) else None


Calls = Annotated[AppCalls | None, Depends(app_calls)]
NO_CALL_PROCESSING = "call processing is not running on this node"
CallId = Annotated[str, Path(min_length=1, max_length=32, pattern="^[0-9a-f]+$")]


@router.post(
    "",
    response_model=CallPlaced,
    responses={
        202: {"description": "callback started, or the access number armed"},
        403: {"description": "not_licensed (see `code`)"},
        409: {
            "description": "`code`: no_call_processing (this node places no calls), no_access_number, "
            "no_mobile_number, nothing_to_call_back, callback_under_way"
        },
    },
)
async def place_call(body: PlaceCall, auth: CurrentUser, session: Session, state: State, calls: Calls,
                     response: Response) -> CallPlaced:  # fmt: skip
    """Place a call: the exchange calls you back first, arms its access number for your mobile, or (via the
    mobile) only tells you which number the callee will see."""
    try:
        to = normalise(body.to, state.settings.default_region)
    except NumberError as exc:
        raise invalid_body("to", str(exc), exc.code) from exc
    user = auth.user
    now = datetime.now(UTC)
    user_state = await load_user_state(session, user, now)
    if "call-method" not in user_state.licences:
        raise NotLicensed("call-method")
    setting = service(user_state, CallMethod) or CallMethod()
    method = body.method or setting.method
    if method == "ask":
        raise invalid_body(
            "method", "your call method is 'ask': choose callback, via_exchange or via_mobile", "choose_method"
        )
    device: Literal["desk", "mobile"] = (
        "mobile" if method != "callback" or setting.callback_device == "mobile" else "desk"
    )
    placed = PlacedCall(dialled=to, device=device, internal=await is_colleague(session, user, to), choice=body.identity)
    try:
        identity = outgoing_identity(placed, user_state)
    except InvalidSetting as exc:
        raise invalid_body(exc.field, exc.reason, exc.code) from exc
    if method == "via_mobile":
        return CallPlaced(method=method, to=to, identity=identity)
    if calls is None:
        raise Conflict("no_call_processing", NO_CALL_PROCESSING)
    if not placed.internal:
        # Call barring (docs/security.md "Toll fraud"): the exchange would pay for this call's outside leg.
        refusal = await calls.b2bua.outbound.barred(to, user.id, user.company_id)
        if refusal is not None:
            raise HTTPException(403, refusal.reason)
    if method == "via_exchange":
        access = state.settings.call_access_number
        if not access:
            raise Conflict("no_access_number", "this exchange has no access number for calls via the exchange")
        if user_state.mobile_number is None:
            raise Conflict(
                "no_mobile_number", "calls via the exchange come from your mobile, and you have no mobile number"
            )
        # In the database: the mobile's call may arrive on another node.
        expires_at = now + timedelta(seconds=state.settings.call_access_seconds)
        await call_access.arm(session, user.id, to, identity, expires_at)
        await session.commit()
        response.status_code = 202
        return CallPlaced(method=method, to=to, identity=identity, access_number=access,
                          expires_in_seconds=state.settings.call_access_seconds)  # fmt: skip
    legs = callback_legs(user_state, setting.callback_device)
    # The callback is addressed (its To) to the number of the device chosen, whichever of the legs answers.
    user_number = legs[0].number or "" if legs else ""
    targets = []
    for leg in legs:
        targets += await calls.user_targets(user.id, leg.device, leg.number, user_number)
    if not targets:
        reason = {
            "desk": "none of your desk phones is registered",
            "mobile": "you have no mobile number, or no mobile network is configured",
            "remote_office": "you have no remote office number",
        }[setting.callback_device]
        raise Conflict("nothing_to_call_back", f"nothing to call you back on: {reason}")
    if any(c.user_id == user.id and c.state == "ringing" for c in calls.callbacks.values()):
        # One at a time: a second tap must not ring the user's phones twice over.
        raise Conflict("callback_under_way", "a callback is already under way: answer it or hang it up first")
    callback = calls.start_callback(user.id, user.company_id, user_number, to, identity, targets)
    add_event(session, user.id, "call.started", {"id": callback.id, "to": to, "method": method})
    await commit(session, state)
    response.status_code = 202
    return CallPlaced(method=method, to=to, identity=identity, id=callback.id)


@router.get("", response_model=LiveCalls)
async def list_calls(auth: CurrentUser, calls: Calls) -> LiveCalls:
    """Your calls going on now (ringing or active), oldest first."""
    live = calls.live(auth.user.id) if calls is not None else []
    return LiveCalls(calls=[LiveCallOut.model_validate(call, from_attributes=True) for call in live])


@router.delete("/{call_id}", status_code=204, responses={404: {"description": "no such call of yours"}})
async def hang_up(call_id: CallId, auth: CurrentUser, calls: Calls) -> Response:
    """Hang up: every leg of the call gets its BYE (or CANCEL while ringing)."""
    if calls is None or not calls.hang_up(auth.user.id, call_id):
        raise HTTPException(404, "no such call")
    return Response(status_code=204)
