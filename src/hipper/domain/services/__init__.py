"""The user services of SPEC F–L: one module each, one registry for the API and the call processing."""

from __future__ import annotations

from hipper.domain.services.base import ServiceSettings, change, ensure_licensed
from hipper.domain.services.call_forwarding import (
    CallForwardingAlways,
    CallForwardingAlwaysSecondary,
    CallForwardingBusy,
    CallForwardingNoAnswer,
    CallForwardingNotReachable,
)
from hipper.domain.services.do_not_disturb import DoNotDisturb

SERVICES: dict[str, type[ServiceSettings]] = {
    cls.service: cls
    for cls in (
        CallForwardingAlways,
        CallForwardingAlwaysSecondary,
        CallForwardingBusy,
        CallForwardingNoAnswer,
        CallForwardingNotReachable,
        DoNotDisturb,
    )
}

__all__ = ["SERVICES", "ServiceSettings", "change", "ensure_licensed"]
