"""The routing policy (pure): incoming call + user state snapshot + now -> RoutingPlan. See docs/call-routing.md."""

from hipper.domain.routing.plan import (
    Diversion,
    Forward,
    Hangup,
    PersonalAssistant,
    Reject,
    Ring,
    RingSplash,
    RoutingPlan,
    Step,
    Target,
    Voicemail,
)
from hipper.domain.routing.policy import plan_incoming
from hipper.domain.routing.state import IncomingCall, RegisteredDevice, RoutingRules, UserState

__all__ = [
    "Diversion",
    "Forward",
    "Hangup",
    "IncomingCall",
    "PersonalAssistant",
    "RegisteredDevice",
    "Reject",
    "Ring",
    "RingSplash",
    "RoutingPlan",
    "RoutingRules",
    "Step",
    "Target",
    "UserState",
    "Voicemail",
    "plan_incoming",
]
