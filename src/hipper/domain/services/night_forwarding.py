"""Night forwarding (F9): the administrator switches night mode; the user only sees it."""

from __future__ import annotations

from hipper.domain.services.base import SingleDestination


class NightForwarding(SingleDestination):
    """Read-only for the user: whether night mode is on and where calls then go. Set by the administrator."""

    service = "night-forwarding"
    administrator_only = True
    read_only_fields = frozenset({"night_mode", "destination"})
    missing_reason = "a destination is required when night mode is on"
    loop_reason = "night forwarding to the user's own fixed number or extension would ring straight back to them"
    mobile_is_a_loop = False
    night_mode: bool = False

    def destination_required(self) -> bool:
        return self.night_mode
