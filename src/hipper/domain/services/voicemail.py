"""Voicemail settings (H1): when calls go to voicemail, and the e-mail notification."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import EmailStr, Field, model_validator

from hipper.domain.context import UserContext
from hipper.domain.errors import InvalidSetting
from hipper.domain.services.base import ServiceSettings
from hipper.domain.services.call_waiting import CallWaiting

ON_BUSY_WITH_CALL_WAITING = (
    "switch call waiting off first: while it is on, a second call is offered as a waiting call "
    "instead of finding you busy, so 'on busy' would almost never send a call to voicemail"
)


class Voicemail(ServiceSettings):
    """Voicemail on/off, all calls to voicemail, on busy (call waiting off), on no answer after N rings, e-mail."""

    service = "voicemail"
    related_services = ("call-waiting",)
    active: bool = True
    all_calls_to_voicemail: bool = False
    on_busy: bool = False
    on_no_answer: bool = True
    # 1 ring is about 5 seconds (manual §7.4.3).
    rings: int = Field(default=4, ge=1, le=20)
    email_notification: bool = False
    email_address: EmailStr | None = None

    @model_validator(mode="after")
    def _needs_address(self) -> Voicemail:
        if self.email_notification and self.email_address is None:
            raise InvalidSetting(
                "email_address", "an e-mail address is required for the e-mail notification", "required"
            )
        return self

    def step_up_values(self) -> set[str]:
        # The messages' audio goes to this address: changing it is a redirection like a forwarding number's.
        return {*super().step_up_values(), *([f"mailto:{self.email_address.lower()}"] if self.email_address else [])}

    def check_change(self, current: ServiceSettings, ctx: UserContext, related: Mapping[str, ServiceSettings]) -> None:
        # The manual (§7.4.1) says "on busy" needs call waiting off. Switching it on while call waiting is on is
        # refused with that explanation. Switching call waiting on later keeps the choice: it then still applies
        # when the user is truly busy (a waiting call is already pending), so it is not wrong, only rarer.
        call_waiting = related.get("call-waiting")
        waiting_on = isinstance(call_waiting, CallWaiting) and call_waiting.active
        if self.on_busy and not getattr(current, "on_busy", False) and waiting_on:
            raise InvalidSetting("on_busy", ON_BUSY_WITH_CALL_WAITING, "busy_with_call_waiting")
