"""Call-center agent (J1–J3): ACD state, call-center calls to the mobile, joining the user's call centers.

The document combines three owners: the state is the user's (wrap-up excepted, see `domain.agent_state`),
membership of call centers and the wrap-up time are the administrator's, `joined` is the user's.
`calls_to_mobile` is the same option as fixed-mobile's `group_calls_to_mobile` (manual §7.7) and is stored there.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from hipper.domain.agent_state import WRAP_UP_IS_AUTOMATIC, AcdState
from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting
from hipper.domain.services.base import LicenceNeeded, ServiceSettings


class CallCenterMembership(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int = Field(ge=1, le=2**63 - 1)
    # Name and number are the administrator's; they are shown, and ignored when sent back.
    name: str = ""
    number: str | None = None
    joined: bool = True


class CallCenterAgent(ServiceSettings):
    """ACD state, call-center calls to the mobile (fixed-mobile) and joining or leaving one's call centers."""

    service = "call-center-agent"
    read_only_fields = frozenset({"wrap_up_seconds", "wrap_up_until", "state_since"})
    state: AcdState = AcdState.SIGNED_OUT
    state_since: AwareDatetime | None = None
    calls_to_mobile: bool = False
    call_centers: list[CallCenterMembership] = Field(default_factory=list)
    # The longest wrap-up time of the user's call centers (each call center has its own).
    wrap_up_seconds: int = Field(default=0, ge=0)
    # While in wrap-up: when the agent becomes available again.
    wrap_up_until: AwareDatetime | None = None

    def check_change(self, current: ServiceSettings, ctx: UserContext, related: Mapping[str, ServiceSettings]) -> None:
        assert isinstance(current, CallCenterAgent)
        if self.state is AcdState.WRAP_UP and current.state is not AcdState.WRAP_UP:
            raise InvalidSetting("state", WRAP_UP_IS_AUTOMATIC, "wrap_up_automatic")
        if self.calls_to_mobile and not current.calls_to_mobile and not ctx.has("fixed-mobile"):
            raise LicenceNeeded(self.service, "calls_to_mobile", "fixed-mobile", "call-center calls to the mobile")
        members = {membership.id: membership for membership in current.call_centers}
        seen: set[int] = set()
        for index, membership in enumerate(self.call_centers):
            if membership.id not in members:
                raise InvalidSetting(
                    f"call_centers.{index}.id", "you are not a member of this call center; ask your administrator"
                )
            if membership.id in seen:
                raise InvalidSetting(f"call_centers.{index}.id", "this call center is in the list twice", "duplicate")
            seen.add(membership.id)

    def joined_by_id(self, current: CallCenterAgent) -> dict[int, bool]:
        """The user's join/leave choice per call center; centers left out of the list keep theirs."""
        joined = {membership.id: membership.joined for membership in current.call_centers}
        joined.update({membership.id: membership.joined for membership in self.call_centers})
        return joined
