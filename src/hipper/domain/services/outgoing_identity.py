"""Outgoing identity (G2, G3, D2): which of the user's numbers callees see."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting
from hipper.domain.services.base import LicenceNeeded, ServiceSettings

FixedIdentity = Literal["company", "direct", "department", "call_center"]


class OutgoingIdentity(ServiceSettings):
    """The number shown on calls from the desk phone (and, with fixed-mobile, from the mobile)."""

    service = "outgoing-identity"
    fixed: FixedIdentity = "direct"
    # With fixed-mobile, calls from the mobile show the fixed choice or always the mobile number.
    mobile: Literal["same_as_fixed", "mobile"] = "same_as_fixed"
    # The app asks which identity to use for each call until the user ticks "don't ask again".
    ask_each_call: bool = True

    def check_change(self, current: ServiceSettings, ctx: UserContext, related: Mapping[str, ServiceSettings]) -> None:
        # Only a changed choice is judged: a number the administrator removed later must not block
        # the user from changing something else in this document.
        if self.fixed != getattr(current, "fixed", None):
            if self.fixed == "call_center" and not ctx.has("call-center-premium"):
                raise LicenceNeeded(self.service, "fixed", "call-center-premium", "the call-center number")
            if self.fixed not in ctx.numbers:
                raise InvalidSetting(
                    "fixed", f"you have no {self.fixed.replace('_', '-')} number to call with", "no_such_number"
                )
        if self.mobile == "mobile" and getattr(current, "mobile", None) != "mobile":
            if not ctx.has("fixed-mobile"):
                raise LicenceNeeded(self.service, "mobile", "fixed-mobile", "calling with your mobile number")
            if "mobile" not in ctx.numbers:
                raise InvalidSetting("mobile", "you have no mobile number to call with", "no_mobile_number")
