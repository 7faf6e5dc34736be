"""Fixed-mobile integration (F4, F5, J2, K): the mobile number is served by the exchange like the fixed one."""

from __future__ import annotations

from typing import Literal

from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting
from hipper.domain.services.base import ServiceSettings

Rings = Literal["desk", "mobile", "both"]


class FixedMobile(ServiceSettings):
    """Which phones ring for calls to the fixed and to the mobile number; the master switch is always on."""

    service = "fixed-mobile"
    read_only_fields = frozenset({"enabled", "call_control_mode"})
    # The master switch is shown but cannot be switched off (manual §7.7).
    enabled: bool = True
    # How a waiting call reaches the mobile: offered by the exchange as a separate call, or left to the
    # mobile network's own call waiting. Set by the administrator.
    call_control_mode: Literal["exchange", "mobile_network"] = "exchange"
    fixed_rings: Rings = "both"
    mobile_rings: Rings = "both"
    # Hunt-group and call-center calls also ring the mobile (the same option as the agent's, J2).
    group_calls_to_mobile: bool = False
    click_to_dial_to_mobile: bool = False

    def check(self, ctx: UserContext) -> None:
        # Checked here, after the read-only fields were applied, so that a user's `false` is answered as a
        # read-only field (403) and only the administrator learns that the switch cannot be turned off.
        if not self.enabled:
            raise InvalidSetting("enabled", "fixed-mobile integration is always on while the licence is assigned")
