"""The user services of SPEC F–L: one module each, one registry for the API and the call processing."""

from __future__ import annotations

from hipper.domain.services.anonymous import Anonymous
from hipper.domain.services.anywhere import Anywhere, AnywhereLocation
from hipper.domain.services.base import LicenceNeeded, ServiceSettings, change, ensure_licensed
from hipper.domain.services.call_center_agent import CallCenterAgent, CallCenterMembership
from hipper.domain.services.call_forwarding import (
    CallForwardingAlways,
    CallForwardingAlwaysSecondary,
    CallForwardingBusy,
    CallForwardingNoAnswer,
    CallForwardingNotReachable,
)
from hipper.domain.services.call_method import CallMethod
from hipper.domain.services.call_recording import CallRecording
from hipper.domain.services.call_waiting import CallWaiting
from hipper.domain.services.do_not_disturb import DoNotDisturb
from hipper.domain.services.fixed_mobile import FixedMobile
from hipper.domain.services.night_forwarding import NightForwarding
from hipper.domain.services.outgoing_identity import OutgoingIdentity
from hipper.domain.services.personal_assistant import PersonalAssistant, PersonalAssistantException
from hipper.domain.services.remote_office import RemoteOffice
from hipper.domain.services.simultaneous_ring import SimultaneousRing, SimultaneousRingTarget
from hipper.domain.services.voicemail import Voicemail

# In the manual's order (the same as hipper.domain.licences.USER_SERVICES).
SERVICES: dict[str, type[ServiceSettings]] = {
    cls.service: cls
    for cls in (
        CallForwardingAlways,
        CallForwardingAlwaysSecondary,
        CallForwardingBusy,
        CallForwardingNoAnswer,
        CallForwardingNotReachable,
        RemoteOffice,
        PersonalAssistant,
        SimultaneousRing,
        DoNotDisturb,
        CallWaiting,
        NightForwarding,
        Anywhere,
        FixedMobile,
        Anonymous,
        OutgoingIdentity,
        CallMethod,
        Voicemail,
        CallRecording,
        CallCenterAgent,
    )
}

__all__ = [
    "SERVICES",
    "Anonymous",
    "Anywhere",
    "AnywhereLocation",
    "CallCenterAgent",
    "CallCenterMembership",
    "CallForwardingAlways",
    "CallForwardingAlwaysSecondary",
    "CallForwardingBusy",
    "CallForwardingNoAnswer",
    "CallForwardingNotReachable",
    "CallMethod",
    "CallRecording",
    "CallWaiting",
    "DoNotDisturb",
    "FixedMobile",
    "LicenceNeeded",
    "NightForwarding",
    "OutgoingIdentity",
    "PersonalAssistant",
    "PersonalAssistantException",
    "RemoteOffice",
    "ServiceSettings",
    "SimultaneousRing",
    "SimultaneousRingTarget",
    "Voicemail",
    "change",
    "ensure_licensed",
]
