"""Remote office (F3): every incoming call is delivered to the given number (a home or hotel phone)."""

from __future__ import annotations

from hipper.domain.services.base import SingleDestination


class RemoteOffice(SingleDestination):
    """Deliver all incoming calls to another number; one's own mobile is a legitimate remote office."""

    service = "remote-office"
    missing_reason = "a destination is required when remote office is active"
    loop_reason = "your own fixed number or extension as remote office would ring straight back to you"
    mobile_is_a_loop = False
    active: bool = False

    def destination_required(self) -> bool:
        return self.active
