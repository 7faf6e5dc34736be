"""Who the callee sees for a call the user places: identity per call and anonymity (SPEC D2, G1–G3). Pure.

The exchange sends the real identity to the trusted trunk in P-Asserted-Identity (RFC 3325 §9.1) and asks it,
with `Privacy: id`, to withhold it from the callee; the From header itself is anonymous (RFC 3323 §4.1.1.3).
Calls to colleagues stay inside the company and show the extension, anonymous or not: the exchange itself
delivers them, and colleagues see each other's extensions in the company directory anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from hipper.domain.errors import InvalidSetting
from hipper.domain.routing.state import UserState, service
from hipper.domain.services import Anonymous, Anywhere, FixedMobile, OutgoingIdentity, RemoteOffice

IdentityKind = Literal["company", "direct", "department", "mobile", "call_center"]
ANONYMOUS_USER = "anonymous"
ANONYMOUS_HOST = "anonymous.invalid"
ANONYMOUS_DISPLAY = "Anonymous"

# When the configured number is gone (the administrator removed it), fall back in this order.
FALLBACK: tuple[IdentityKind, ...] = ("direct", "company", "department")


@dataclass(frozen=True)
class PlacedCall:
    dialled: str  # extension or E.164, as resolved by the caller of this function
    device: Literal["desk", "mobile"]  # where the user places the call from
    internal: bool = False  # the dialled number is a colleague in the same company
    choice: IdentityKind | None = None  # chosen in the app for this call (D2)


class CallerIdentity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: IdentityKind | Literal["extension"]
    # The user's real number for this call (also P-Asserted-Identity toward the trunk).
    number: str
    anonymous: bool
    # What the From header carries: the number, or anonymous@anonymous.invalid.
    from_user: str
    from_host: str | None  # None: the exchange's own domain
    from_display: str | None
    privacy: Literal["id"] | None
    asserted_identity: str
    reason: str


def outgoing_identity(call: PlacedCall, state: UserState) -> CallerIdentity:
    if call.internal:
        if state.extension is None:
            raise InvalidSetting("internal", "you have no extension to call colleagues with")
        return _shown(
            "extension",
            state.extension,
            hidden=False,
            reason="a call to a colleague shows your extension",
        )
    kind, number, why = _chosen_number(call, state)
    anonymous = service(state, Anonymous)
    hidden = anonymous is not None and (anonymous.mobile if call.device == "mobile" else anonymous.desk)
    if hidden:
        why += f"; anonymous is on for your {call.device}: the callee sees no number"
    return _shown(kind, number, hidden=hidden, reason=why)


def _chosen_number(call: PlacedCall, state: UserState) -> tuple[IdentityKind, str, str]:
    numbers = state.numbers
    if call.choice is not None:
        _check_choice(call.choice, state)
        return call.choice, numbers[call.choice], f"you chose your {_word(call.choice)} number for this call"
    setting = service(state, OutgoingIdentity)
    if (
        call.device == "mobile"
        and setting is not None
        and setting.mobile == "mobile"
        and "fixed-mobile" in state.licences
        and "mobile" in numbers
    ):
        return "mobile", numbers["mobile"], "calls from your mobile show your mobile number"
    configured: IdentityKind = setting.fixed if setting is not None else "direct"
    if configured == "call_center" and "call-center-premium" not in state.licences:
        configured = "direct"
    if configured in numbers:
        return configured, numbers[configured], f"your outgoing number is your {_word(configured)} number"
    for kind in FALLBACK:
        if kind in numbers:
            why = f"your {_word(configured)} number is not set, so your {_word(kind)} number is shown"
            return kind, numbers[kind], why
    raise InvalidSetting("identity", "you have no number to call outside the company with")


def _check_choice(choice: IdentityKind, state: UserState) -> None:
    if choice == "mobile" and "fixed-mobile" not in state.licences:
        raise InvalidSetting("identity", "calling with your mobile number needs fixed-mobile integration")
    if choice == "call_center" and "call-center-premium" not in state.licences:
        raise InvalidSetting("identity", "calling with the call-center number needs the call-center-premium licence")
    if choice not in state.numbers:
        raise InvalidSetting("identity", f"you have no {_word(choice)} number")


def _shown(kind: IdentityKind | Literal["extension"], number: str, *, hidden: bool, reason: str) -> CallerIdentity:
    if hidden:
        return CallerIdentity(
            kind=kind,
            number=number,
            anonymous=True,
            from_user=ANONYMOUS_USER,
            from_host=ANONYMOUS_HOST,
            from_display=ANONYMOUS_DISPLAY,
            privacy="id",
            asserted_identity=number,
            reason=reason,
        )
    return CallerIdentity(
        kind=kind,
        number=number,
        anonymous=False,
        from_user=number,
        from_host=None,
        from_display=None,
        privacy=None,
        asserted_identity=number,
        reason=reason,
    )


def _word(kind: str) -> str:
    return kind.replace("_", "-")


CallbackDevice = Literal["desk", "mobile", "remote_office", "anywhere"]


@dataclass(frozen=True)
class CallbackLeg:
    """One thing a callback rings first: the user's desk phones (registered devices; `number` is the user's fixed
    number, what the callback is addressed to), or a number as `device`."""

    device: CallbackDevice
    number: str | None = None


def callback_legs(state: UserState, callback_device: str) -> list[CallbackLeg]:
    """What "the exchange calls you back" (SPEC D9) rings before it calls the other party: the device chosen in the
    call method; with the desk chosen, also the mobile (fixed-mobile "click-to-dial to mobile") and the active
    Anywhere locations ("click-to-dial rings my locations"). A number that is missing gives no leg."""
    if callback_device == "mobile":
        return [CallbackLeg("mobile", state.mobile_number)] if state.mobile_number else []
    if callback_device == "remote_office":
        remote = service(state, RemoteOffice)
        return [CallbackLeg("remote_office", remote.destination)] if remote is not None and remote.destination else []
    legs = [CallbackLeg("desk", state.fixed_number)]
    fixed_mobile = service(state, FixedMobile)
    if fixed_mobile is not None and fixed_mobile.click_to_dial_to_mobile and state.mobile_number:
        legs.append(CallbackLeg("mobile", state.mobile_number))
    anywhere = service(state, Anywhere)
    if anywhere is not None and anywhere.click_to_dial_rings_locations:
        legs += [CallbackLeg("anywhere", location.number) for location in anywhere.locations if location.active]
    return legs
