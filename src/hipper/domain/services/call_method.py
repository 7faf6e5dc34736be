"""Call method (G4, D9): how a call dialled in the app is set up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting
from hipper.domain.services.base import LicenceNeeded, ServiceSettings

Method = Literal["via_exchange", "callback", "via_mobile", "ask"]
CallbackDevice = Literal["desk", "mobile", "remote_office"]


class CallMethod(ServiceSettings):
    """Call via the exchange, let the exchange call you back first (click-to-dial), call via the mobile, or ask."""

    service = "call-method"
    method: Method = "via_exchange"
    # The phone the exchange rings first for a callback (click-to-dial).
    callback_device: CallbackDevice = "desk"

    def check_change(self, current: ServiceSettings, ctx: UserContext, related: Mapping[str, ServiceSettings]) -> None:
        changed_method = self.method != getattr(current, "method", None)
        if changed_method and self.method == "via_mobile" and "mobile" not in ctx.numbers:
            raise InvalidSetting(
                "method", "calling via the mobile needs a mobile number, and you have none", "no_mobile_number"
            )
        if self.callback_device != getattr(current, "callback_device", None):
            if self.callback_device == "mobile" and "mobile" not in ctx.numbers:
                raise InvalidSetting(
                    "callback_device", "you have no mobile number to be called back on", "no_mobile_number"
                )
            if self.callback_device == "remote_office" and not ctx.has("remote-office"):
                raise LicenceNeeded(self.service, "callback_device", "remote-office", "a callback on the remote office")
