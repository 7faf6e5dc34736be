"""Anonymous (G1): calling-line-identity restriction for the desk phone and, with fixed-mobile, the mobile."""

from __future__ import annotations

from collections.abc import Mapping

from hipper.domain.context import UserContext
from hipper.domain.services.base import LicenceNeeded, ServiceSettings


class Anonymous(ServiceSettings):
    """Hide the user's number on outgoing calls from the desk phone and (with fixed-mobile) the mobile."""

    service = "anonymous"
    desk: bool = False
    mobile: bool = False

    def check_change(self, current: ServiceSettings, ctx: UserContext, related: Mapping[str, ServiceSettings]) -> None:
        # Calls from the mobile pass through the exchange only with fixed-mobile integration.
        if self.mobile and not getattr(current, "mobile", False) and not ctx.has("fixed-mobile"):
            raise LicenceNeeded(self.service, "mobile", "fixed-mobile", "hiding your number on the mobile")
