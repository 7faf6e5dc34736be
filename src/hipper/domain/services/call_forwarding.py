"""Call forwarding: always (F1), the fixed number only (F2), on busy / no answer / not reachable (F8)."""

from __future__ import annotations

from pydantic import Field

from hipper.domain.services.base import SingleDestination


class _Forwarding(SingleDestination):
    active: bool = False

    def destination_required(self) -> bool:
        return self.active


class CallForwardingAlways(SingleDestination):
    """Forward every call to a number or to voicemail."""

    service = "call-forwarding-always"
    missing_reason = "a destination is required when forwarding to a number"
    active: bool = False
    to_voicemail: bool = False
    ring_splash: bool = False

    def destination_required(self) -> bool:
        return self.active and not self.to_voicemail


class CallForwardingAlwaysSecondary(SingleDestination):
    """Fixed-mobile: forward the fixed number while the mobile stays reachable (F2).

    Forwarding the fixed number to one's own mobile is legitimate; to the fixed number itself is a loop.
    """

    service = "call-forwarding-always-secondary"
    extra_licences = frozenset({"fixed-mobile"})
    missing_reason = "a destination is required when forwarding to a number"
    loop_reason = "forwarding the fixed number to itself would ring straight back to it"
    mobile_is_a_loop = False
    active: bool = False
    to_voicemail: bool = False

    def destination_required(self) -> bool:
        return self.active and not self.to_voicemail


class CallForwardingBusy(_Forwarding):
    service = "call-forwarding-busy"


class CallForwardingNoAnswer(_Forwarding):
    service = "call-forwarding-no-answer"
    # 1 ring is about 5 seconds (manual §7.4.3).
    rings: int = Field(default=4, ge=1, le=20)


class CallForwardingNotReachable(_Forwarding):
    service = "call-forwarding-not-reachable"
