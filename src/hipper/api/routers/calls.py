"""/me/calls: place a call from the app, list one's live calls, hang one up (SPEC D1/D2/D9; apps/click_to_dial.py),
and control them (manual 5.2: hold, transfer, consult, merge, recording, pull; apps/call_control.py).

The API and the B2BUA run in one process (`hipper serve` puts the B2BUA on `app.state.calls`), so the live
calls are read straight from the B2BUA's call table: they are never stored. A call another node carries is
asked of that node (api/forwarding.py): the list merges its calls, and control of one of them goes there.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from hipper.api.deps import CurrentUser, Session, State, commit
from hipper.api.errors import ApiProblem, Conflict, invalid_body
from hipper.api.forwarding import AnsweredElsewhere, fetch_json, forward, forwarded, node_carrying, nodes_with_calls
from hipper.api.state import AppState
from hipper.apps.call_control import CallControl, CallControlError, RecordingAction, RecordingState, UserControls
from hipper.apps.click_to_dial import AppCalls, Callback
from hipper.apps.node import app_calls_of, call_control_of
from hipper.config import Settings
from hipper.domain.errors import InvalidSetting, NotLicensed
from hipper.domain.numbers import NumberError, normalise
from hipper.domain.outgoing import CallerIdentity, IdentityKind, PlacedCall, callback_legs, outgoing_identity
from hipper.domain.routing import UserState
from hipper.domain.routing.state import service
from hipper.domain.services.call_method import CallMethod
from hipper.engine.b2bua import B2bua
from hipper.engine.fork import Branch
from hipper.engine.leg import Leg
from hipper.media.engine import MediaError
from hipper.store import call_access
from hipper.store.active_calls import claim_callback
from hipper.store.events import add_event
from hipper.store.models import User
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
    remote_name: str = ""
    state: Literal["ringing", "active", "held"]
    started_at: datetime
    held: bool = False
    merged: bool = False  # a three-way call (Samenvoegen)
    consultation_of: str | None = None  # a consultation: the id of the call it consults for (on hold meanwhile)
    recording: RecordingState | None = None  # None: no recording control on this call


class LiveCalls(BaseModel):
    calls: list[LiveCallOut]


async def app_calls(request: Request) -> AppCalls | None:
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
    # Call barring (docs/security.md "Toll fraud"): the exchange would pay for this call's outside leg — judged as
    # the callback's far leg and the access number's call are (`AppCalls.barring`), a transfer's too.
    _, refusal = await calls.barring(to, user.id, user.company_id)
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
    callback = await _start_callback(session, calls, user.id, user.company_id, to, identity, user_state, setting)
    add_event(session, user.id, "call.started", {"id": callback.id, "to": to, "method": method})
    await commit(session, state)
    response.status_code = 202
    return CallPlaced(method=method, to=to, identity=identity, id=callback.id)


async def _start_callback(
    session: AsyncSession, calls: AppCalls, user_id: int, company_id: int | None, to: str, identity: CallerIdentity,
    user_state: UserState, setting: CallMethod,
) -> Callback:  # fmt: skip
    """Ring the user's chosen device, then `to` (apps/click_to_dial.py); 409 when there is nothing to ring."""
    legs = callback_legs(user_state, setting.callback_device)
    # The callback is addressed (its To) to the number of the device chosen, whichever of the legs answers.
    user_number = legs[0].number or "" if legs else ""
    targets = []
    for leg in legs:
        targets += await calls.user_targets(user_id, leg.device, leg.number, user_number)
    if not targets:
        reason = {
            "desk": "none of your desk phones is registered",
            "mobile": "you have no mobile number, or no mobile network is configured",
            "remote_office": "you have no remote office number",
        }[setting.callback_device]
        raise Conflict("nothing_to_call_back", f"nothing to call you back on: {reason}")
    # One at a time, on every node: a second tap must not ring the user's phones twice over. The shared row is
    # written (and committed) before anything rings; apps/click_to_dial.py clears `ringing` and removes it.
    callback_id = secrets.token_hex(8)
    if not await claim_callback(session, callback_id, user_id, _node_id(calls), datetime.now(UTC)):
        raise Conflict("callback_under_way", "a callback is already under way: answer it or hang it up first")
    return calls.start_callback(callback_id, user_id, company_id, user_number, to, identity, targets)


@router.get("", response_model=LiveCalls)
async def list_calls(request: Request, auth: CurrentUser, session: Session, calls: Calls,
                     control: Control) -> LiveCalls:  # fmt: skip
    """Your calls going on now (ringing, active or held), oldest first, whichever node carries them."""
    found = _live(auth.user.id, calls, control)
    if not forwarded(request):
        others = await nodes_with_calls(session, auth.user.id, _node_id(calls))
        for answer in await asyncio.gather(*(fetch_json(request, api_url) for api_url in others)):
            with contextlib.suppress(ValidationError):  # a node answering something else shows none of its calls
                found += LiveCalls.model_validate(answer).calls
    return LiveCalls(calls=sorted(found, key=lambda call: call.started_at))


def _node_id(calls: AppCalls | None) -> str:
    """This node's id among those sharing the database; "" on a node without call processing (it carries none)."""
    return calls.b2bua.presence.node_id if calls is not None else ""


async def carried_here(request: Request, call_id: CallId, auth: CurrentUser, session: Session, calls: Calls) -> None:
    """A request about a call another node carries is answered by that node (api/forwarding.py)."""
    if forwarded(request) or (calls is not None and any(c.id == call_id for c in calls.live(auth.user.id))):
        return
    api_url = await node_carrying(session, auth.user.id, call_id, _node_id(calls))
    if api_url is not None:
        raise AnsweredElsewhere(await forward(request, api_url))


CarriedHere = Depends(carried_here)


def _live(user_id: int, calls: AppCalls | None, control: CallControl | None) -> list[LiveCallOut]:
    found = []
    for call in calls.live(user_id) if calls is not None else []:
        out = LiveCallOut.model_validate(call, from_attributes=True)
        if control is not None:
            if control.hidden(user_id, call.id):
                continue  # transferred away: it goes on without you
            out = out.model_copy(update=control.listed(user_id, call.id, answered=call.state == "active"))
        found.append(out)
    return found


@router.delete(
    "/{call_id}", status_code=204, responses={404: {"description": "no such call of yours"}}, dependencies=[CarriedHere]
)
async def hang_up(call_id: CallId, auth: CurrentUser, calls: Calls, control: Control) -> Response:
    """Hang up: every leg of the call gets its BYE (or CANCEL while ringing). An incoming call still ringing is
    declined: your phones stop ringing and the call goes on as your plan says for busy (voicemail, forward on busy;
    else the caller hears busy); a hunt group's colleagues' phones ring on. A consultation hung up leaves the call
    it consulted for on hold, to be resumed."""
    hidden = control is not None and control.hidden(auth.user.id, call_id)
    controls = control.state_of(auth.user.id, call_id) if control is not None else None
    if controls is not None and controls.merged and not controls.gone and control is not None:
        await control.leave(controls)  # a three-way call: you leave, the other two talk on
        return Response(status_code=204)
    if calls is None or hidden or not calls.hang_up(auth.user.id, call_id):
        raise HTTPException(404, "no such call")
    return Response(status_code=204)


# -- live call control (manual 5.2; apps/call_control.py) ------------------------------------------------------

CONTROL_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such call of yours"},
    409: {"description": "`code`: not_answered, already_held, not_held, merged, no_consultation, operation_pending, "
                         "recording_not_allowed, recording_paused, recording_running, no_call_processing"},
}  # fmt: skip


async def control_of(request: Request) -> CallControl | None:
    b2bua = getattr(request.app.state, "calls", None)
    return call_control_of(b2bua) if isinstance(b2bua, B2bua) else None


Control = Annotated[CallControl | None, Depends(control_of)]


async def running_control(control: Control, _here: Annotated[None, CarriedHere]) -> CallControl:
    """Call control of this node (for a call it carries: others are asked of their node); 409 on a node without
    call processing (an API-only process) when no node carries the call."""
    if control is None:
        raise Conflict("no_call_processing", NO_CALL_PROCESSING)
    return control


Running = Annotated[CallControl, Depends(running_control)]


def _controls(control: CallControl, user_id: int, call_id: str) -> UserControls:
    try:
        return control.controls_of(user_id, call_id)
    except CallControlError as error:
        raise _problem(error) from error


def _problem(error: CallControlError) -> Exception:
    if error.status == 409:
        return Conflict(error.code, error.reason)
    return ApiProblem(error.status, error.code, error.reason)


async def _run(operation: Awaitable[None]) -> None:
    try:
        await operation
    except CallControlError as error:
        raise _problem(error) from error
    except MediaError as error:
        # An endpoint went away under the operation: a party hung up at that moment (a race, not a fault).
        raise Conflict("call_changed", "the call changed meanwhile (a party hung up): look again") from error


def _answer(control: CallControl, user_id: int, call_id: str) -> LiveCallOut:
    for call in _live(user_id, control.app_calls, control):
        if call.id == call_id:
            return call
    raise HTTPException(404, "the call has ended")


@router.post("/{call_id}/hold", response_model=LiveCallOut, responses=CONTROL_ERRORS)
async def hold(call_id: CallId, auth: CurrentUser, control: Running) -> LiveCallOut:
    """Put the call on hold: the other party hears music on hold."""
    controls = _controls(control, auth.user.id, call_id)
    await _run(control.hold(controls))
    return _answer(control, auth.user.id, call_id)


@router.post("/{call_id}/resume", response_model=LiveCallOut, responses=CONTROL_ERRORS)
async def resume(call_id: CallId, auth: CurrentUser, control: Running) -> LiveCallOut:
    """Take the call back from hold; another of your calls that is active goes on hold (swap)."""
    controls = _controls(control, auth.user.id, call_id)
    await _run(control.resume(controls))
    return _answer(control, auth.user.id, call_id)


class Transfer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["blind", "attended"]
    to: str | None = Field(None, min_length=1, max_length=64, description="blind: the number or extension")
    consultation: str | None = Field(
        None, min_length=1, max_length=32, pattern="^[0-9a-f]+$", description="attended: your other call's id"
    )


async def _number(to: str, auth_user: User, state: AppState, control: CallControl) -> str:
    """`to` as the exchange dials it (`CallControl.target`, as for a phone's REFER); 422 when it is no number or
    nobody's, 403 when it leaves through the trunk and the user's call barring bars it."""
    try:
        number = normalise(to, state.settings.default_region)
    except NumberError as exc:
        raise invalid_body("to", str(exc), exc.code) from exc
    try:
        return await control.target(number, auth_user.id, auth_user.company_id)
    except CallControlError as error:
        if error.code == "unknown_number":
            raise invalid_body("to", error.reason, error.code) from error
        raise _problem(error) from error


@router.post("/{call_id}/transfer", status_code=202, response_class=Response, responses={
    **CONTROL_ERRORS, 202: {"description": "blind: the other party is being connected; your leg is released"},
    403: {"description": "`code`: barred"},
    422: {"description": "`to` is no number (field code `unknown_number`: nobody's), or the body is incomplete"},
})  # fmt: skip
async def transfer(call_id: CallId, body: Transfer, auth: CurrentUser, state: State, control: Running) -> Response:
    """Blind: the other party is connected to `to` (its own routing applies if nobody answers); attended: the other
    party is connected to the other party of your consultation call, and you leave both calls."""
    controls = _controls(control, auth.user.id, call_id)
    if body.mode == "blind":
        if body.to is None:
            raise invalid_body("to", "a blind transfer needs the number to transfer to", "missing")
        number = await _number(body.to, auth.user, state, control)
        await _run(control.transfer_blind(controls, number))
    else:
        if body.consultation is None:
            raise invalid_body("consultation", "an attended transfer needs your consultation call's id", "missing")
        consultation = _controls(control, auth.user.id, body.consultation)
        await _run(control.transfer_attended(controls, consultation))
    return Response(status_code=202 if body.mode == "blind" else 200)


class Consultation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=64, description="The number or extension to consult")


@router.post("/{call_id}/consultations", response_model=CallPlaced, status_code=202, responses={
    **CONTROL_ERRORS, 403: {"description": "`code`: not_licensed (call-method), barred"},
})  # fmt: skip
async def consult(call_id: CallId, body: Consultation, auth: CurrentUser, session: Session, state: State,
                  control: Running) -> CallPlaced:  # fmt: skip
    """Add or consult (Toevoegen, Doorverbinden met ruggespraak): this call waits on hold; the exchange calls
    your device, then `to`. Then merge the two, transfer one to the other, or hang up the consultation."""
    controls = _controls(control, auth.user.id, call_id)
    user = auth.user
    to = await _number(body.to, user, state, control)
    user_state = await load_user_state(session, user, datetime.now(UTC))
    if "call-method" not in user_state.licences:
        raise NotLicensed("call-method")
    setting = service(user_state, CallMethod) or CallMethod()
    placed = PlacedCall(dialled=to, device="mobile" if setting.callback_device == "mobile" else "desk",
                        internal=await is_colleague(session, user, to))  # fmt: skip
    try:
        identity = outgoing_identity(placed, user_state)
    except InvalidSetting as exc:
        raise invalid_body(exc.field, exc.reason, exc.code) from exc
    try:
        control.may_consult(controls)
    except CallControlError as error:
        raise _problem(error) from error
    calls = control.app_calls
    callback = await _start_callback(session, calls, user.id, user.company_id, to, identity, user_state, setting)
    try:
        await _run(control.consulting(controls, callback))
    except Exception:
        calls.hang_up(user.id, callback.id)  # the first call could not wait: nothing rings for nothing
        raise
    return CallPlaced(method="callback", to=to, identity=identity, id=callback.id)


class Merge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    with_: str = Field(alias="with", min_length=1, max_length=32, pattern="^[0-9a-f]+$")


@router.post("/{call_id}/merge", response_model=LiveCallOut, responses=CONTROL_ERRORS)
async def merge(call_id: CallId, body: Merge, auth: CurrentUser, control: Running) -> LiveCallOut:
    """Samenvoegen: a three-way call of you and the other parties of both calls."""
    controls = _controls(control, auth.user.id, call_id)
    second = _controls(control, auth.user.id, body.with_)
    await _run(control.merge(controls, second))
    return _answer(control, auth.user.id, call_id)


class RecordingChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: RecordingAction


@router.post("/{call_id}/recording", response_model=LiveCallOut, responses={
    **CONTROL_ERRORS, 403: {"description": "`code`: not_licensed (call-recording)"},
})  # fmt: skip
async def recording(call_id: CallId, body: RecordingChange, auth: CurrentUser, session: Session,
                    control: Running) -> LiveCallOut:  # fmt: skip
    """Start, pause, resume, stop or keep this call's recording, as your recording mode allows (SPEC I)."""
    controls = _controls(control, auth.user.id, call_id)
    user_state = await load_user_state(session, auth.user, datetime.now(UTC))
    if "call-recording" not in user_state.licences:
        raise NotLicensed("call-recording")
    await _run(control.recording(controls, body.action))
    return _answer(control, auth.user.id, call_id)


def _on_now(target: Branch, own: Leg, settings: Settings) -> bool:
    """Whether `target` is the phone the user's side of the call is on now. Its contact's address says so; its
    address does too, except behind an edge proxy (Kamailio, docs/scale-out.md), where every phone has the edge's."""
    contact = own.dialog.remote_target if own.dialog is not None else None
    if contact is not None and (target.uri.host, target.uri.port) == (contact.host, contact.port):
        return True
    return target.peer == own.peer and own.peer.host not in settings.sip_trusted_proxies


class Pull(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: Literal["mobile", "desk"] = "mobile"


@router.post("/{call_id}/pull", response_model=LiveCallOut, responses=CONTROL_ERRORS)
async def pull(call_id: CallId, body: Pull, auth: CurrentUser, session: Session, control: Running) -> LiveCallOut:
    """Gesprek overnemen: the call moves to your mobile (or your desk phones); the other party stays on."""
    controls = _controls(control, auth.user.id, call_id)
    user = auth.user
    user_state = await load_user_state(session, user, datetime.now(UTC))
    number = user_state.mobile_number if body.device == "mobile" else None
    own_number = user.extension or user.direct_number or ""
    targets = await control.app_calls.user_targets(user.id, body.device, number, own_number)
    targets = [target for target in targets if not _on_now(target, controls.own, control.b2bua.settings)]
    if not targets:
        raise Conflict("nothing_to_pull_to", f"you have no {body.device} to take the call on")
    await _run(control.pull(controls, targets))
    return _answer(control, auth.user.id, call_id)
