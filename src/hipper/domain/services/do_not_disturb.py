"""Do not disturb (F9): every call gets the busy treatment."""

from __future__ import annotations

from hipper.domain.services.base import ServiceSettings


class DoNotDisturb(ServiceSettings):
    service = "do-not-disturb"
    active: bool = False
    # Desk phones that support it play a short ring splash for a call that DND turned away.
    ring_splash: bool = False
