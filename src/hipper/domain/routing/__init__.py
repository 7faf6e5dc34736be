"""The routing policy (pure): incoming call + user state snapshot + now -> RoutingPlan. See docs/call-routing.md."""

from hipper.domain.routing.confirmation import AnswerConfirmation
from hipper.domain.routing.history import CallHistory, HistoryEntry, public_number
from hipper.domain.routing.plan import (
    Diversion,
    ForwardStep,
    HangupStep,
    PersonalAssistantStep,
    RejectStep,
    RingSplashStep,
    RingStep,
    RoutingPlan,
    Step,
    Target,
    VoicemailStep,
)
from hipper.domain.routing.policy import plan_for_call, plan_incoming, plan_loop
from hipper.domain.routing.state import IncomingCall, RegisteredDevice, RoutingRules, UserState

__all__ = [
    "AnswerConfirmation",
    "CallHistory",
    "Diversion",
    "ForwardStep",
    "HangupStep",
    "HistoryEntry",
    "IncomingCall",
    "PersonalAssistantStep",
    "RegisteredDevice",
    "RejectStep",
    "RingSplashStep",
    "RingStep",
    "RoutingPlan",
    "RoutingRules",
    "Step",
    "Target",
    "UserState",
    "VoicemailStep",
    "plan_for_call",
    "plan_incoming",
    "plan_loop",
    "public_number",
]
