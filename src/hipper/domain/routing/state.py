"""What the routing policy reads: the incoming call, the user's snapshot, and the exchange's limits.

The snapshot holds the user's service documents (the models of `hipper.domain.services`) by service name, only
for services the user is licensed for: a missing service is simply off. The policy reads the documents as the real
models (`service(state, Voicemail)`), so a renamed field fails the type check instead of a call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from hipper.domain.services.base import ServiceSettings

DeviceKind = Literal["desk", "mobile"]
CalledNumber = Literal["fixed", "mobile"]


@dataclass(frozen=True)
class IncomingCall:
    caller: str | None  # E.164 or extension; None when the caller is anonymous
    called: CalledNumber  # which of the user's numbers was dialled (fixed: direct/extension; mobile)
    # Loop protection, from the incoming INVITE: Diversion/History-Info entries already present, Max-Forwards.
    diversion_count: int = 0
    max_forwards: int = 70


@dataclass(frozen=True)
class RegisteredDevice:
    id: int
    kind: DeviceKind
    name: str = ""


@dataclass(frozen=True)
class UserState:
    user_id: int
    extension: str | None
    # kind -> number, kinds of hipper.domain.context.NUMBER_KINDS
    numbers: Mapping[str, str]
    licences: frozenset[str]
    # service name -> its settings document; only services the user is licensed for
    services: Mapping[str, ServiceSettings]
    # live facts
    on_call: bool = False
    devices: Sequence[RegisteredDevice] = ()
    # Plans made from this snapshot (`policy.plan_for_call`), by what the call adds: the per-call copies made with
    # `dataclasses.replace` (engine/snapshots.py: the devices, "on a call") share it, and it goes with the snapshot.
    plans: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def fixed_number(self) -> str | None:
        return self.numbers.get("direct") or self.extension

    @property
    def mobile_number(self) -> str | None:
        return self.numbers.get("mobile")


@dataclass(frozen=True)
class RoutingRules:
    """Exchange-wide limits; tests shorten `seconds_per_ring`."""

    # Manual §7.4.3: one ring is about 5 seconds.
    seconds_per_ring: int = 5
    # A call that was already diverted this often is not forwarded again (see docs/call-routing.md, "Loops").
    diversion_limit: int = 5


Document = TypeVar("Document", bound=ServiceSettings)


def service(state: UserState, settings_class: type[Document]) -> Document | None:
    """The user's document of this service, or None when the user does not have the service."""
    document = state.services.get(settings_class.service)
    if document is None:
        return None
    if not isinstance(document, settings_class):
        # A snapshot is built from the registry; anything else is a programming error, not a user's setting.
        raise TypeError(f"the snapshot holds {type(document).__name__} under '{settings_class.service}'")
    return document


__all__ = ["CalledNumber", "DeviceKind", "IncomingCall", "RegisteredDevice", "RoutingRules", "UserState", "service"]
