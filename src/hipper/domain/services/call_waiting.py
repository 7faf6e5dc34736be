"""Call waiting (F9): a second call is offered during a call instead of getting the busy treatment."""

from __future__ import annotations

from hipper.domain.services.base import ServiceSettings


class CallWaiting(ServiceSettings):
    """Offer a second call while in a call; when off, the caller gets the busy treatment (F8, H1)."""

    service = "call-waiting"
    active: bool = True
