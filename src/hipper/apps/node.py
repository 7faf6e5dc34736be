"""The features plugged into the call engine of one node, and the start of call processing.

The engine (engine/b2bua.py, engine/call.py) names no feature: it calls the `NodeApplications` it is given. This
module is that object — the one place that knows which feature takes which moment of a call.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hipper.apps import click_to_dial, groups, recording, voicemail, voicemail_menu
from hipper.apps.call_control import CallControl
from hipper.apps.click_to_dial import AppCalls
from hipper.apps.mwi import Mwi
from hipper.apps.phone_control import PhoneControl
from hipper.config import Settings
from hipper.domain.routing import IncomingCall
from hipper.domain.routing.plan import DiversionReason
from hipper.engine.b2bua import B2bua, LoopbackCaller
from hipper.engine.call import Call
from hipper.engine.directory import Resolved
from hipper.engine.leg import CalleeLeg, Leg, LegOwner
from hipper.media.engine import MediaEngine, engine_from_settings
from hipper.sip.message import Request
from hipper.sip.stack import SipStack
from hipper.sip.transaction import ServerTransaction


class Applications:
    """`engine.b2bua.NodeApplications` for this exchange's features."""

    def __init__(self, b2bua: B2bua) -> None:
        self.mwi = Mwi(b2bua)  # message-summary subscriptions (apps/mwi.py)
        self.app_calls = AppCalls(b2bua)  # calls placed from the app (apps/click_to_dial.py)
        self.call_control = CallControl(self.app_calls)  # hold, transfer, merge, … (apps/call_control.py)
        self.phones = PhoneControl(self.call_control)  # the same from a phone's keys (apps/phone_control.py)

    async def take(self, call: Call, dialled: str) -> bool:
        # An INVITE with Replaces (call pull from another device), the voicemail access code / number (listening by
        # phone), then the app's access number ("via the exchange").
        if await self.phones.take_over(call):
            return True
        self.app_calls.placing(call)  # a user's own call: listed ringing, on every node, until answered or over
        return await voicemail_menu.handles(call, dialled) or await click_to_dial.handles(self.app_calls, call, dialled)

    async def route_group(self, call: Call, resolved: Resolved, incoming: IncomingCall) -> None:
        await groups.route(call, resolved, incoming)

    async def leave_message(self, call: Call, user_id: int, called_number: str, cause: DiversionReason) -> None:
        await voicemail.leave_message(call, user_id, called_number, cause)

    async def in_call(self, call: Call, leg: CalleeLeg) -> None:
        await recording.in_call(call, leg)

    def call_started(self, call: Call) -> None:
        self.app_calls.answered(call)
        click_to_dial.announce_started(call)

    def caller_answered_here(self, call: Call) -> None:
        self.app_calls.answered(call)

    def call_ringing(self, call: Call, user_id: int, ringing: bool) -> None:
        self.app_calls.ringing(call, user_id, ringing)

    async def phone_hold(self, owner: LegOwner, leg: Leg, held: bool) -> None:
        await self.phones.hold(owner, leg, held)

    def phone_refer(self, owner: LegOwner, leg: Leg, tx: ServerTransaction) -> None:
        self.phones.refer(owner, leg, tx)

    def callback_user(self, request: Request) -> LoopbackCaller | None:
        return self.app_calls.callback_user(request)

    def on_subscribe(self, tx: ServerTransaction) -> None:
        self.mwi.on_subscribe(tx)

    async def start(self) -> None:
        await self.mwi.start()

    async def close(self) -> None:
        await self.mwi.close()


async def start_call_processing(
    settings: Settings,
    stack: SipStack,
    sessions: async_sessionmaker[AsyncSession],
    media: MediaEngine | None = None,
) -> B2bua:
    """Attach call processing to a running SIP stack (the media engine is made and started when not given)."""
    own_media = media is None
    if media is None:
        media = engine_from_settings(settings)
        await media.start()
    b2bua = B2bua(settings, stack, sessions, media, Applications, own_media=own_media)
    await b2bua.start()
    return b2bua


def app_calls_of(b2bua: B2bua) -> AppCalls | None:
    """The app's calls of a node started here (the API's calls router reaches them through this)."""
    applications = b2bua.applications
    return applications.app_calls if isinstance(applications, Applications) else None


def call_control_of(b2bua: B2bua) -> CallControl | None:
    """The live call control of a node started here (the API's calls router reaches it through this)."""
    applications = b2bua.applications
    return applications.call_control if isinstance(applications, Applications) else None
