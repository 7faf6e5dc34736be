"""Licences (service assignments) decide which services a user has (SPEC A5).

A licence is named after the service it unlocks. Two licences unlock more than one service:
`fixed-mobile` (fixed-mobile integration: SPEC F2, F4, F5, G3, J2, K) and `call-center-premium` (the call-center
number as outgoing identity, SPEC G2). Administrators usually assign a package, which expands to licences.
"""

from __future__ import annotations

USER_SERVICES: tuple[str, ...] = (
    "call-forwarding-always",
    "call-forwarding-always-secondary",
    "call-forwarding-busy",
    "call-forwarding-no-answer",
    "call-forwarding-not-reachable",
    "remote-office",
    "personal-assistant",
    "simultaneous-ring",
    "do-not-disturb",
    "call-waiting",
    "night-forwarding",
    "anywhere",
    "fixed-mobile",
    "anonymous",
    "outgoing-identity",
    "call-method",
    "voicemail",
    "call-recording",
    "call-center-agent",
)

EXTRA_LICENCES: tuple[str, ...] = ("call-center-premium",)

ALL_LICENCES: frozenset[str] = frozenset(USER_SERVICES + EXTRA_LICENCES)

# Services that only exist with fixed-mobile integration.
FIXED_MOBILE_ONLY = frozenset({"call-forwarding-always-secondary", "fixed-mobile"})

PACKAGES: dict[str, frozenset[str]] = {
    "basic": frozenset(
        {
            "call-forwarding-always",
            "call-forwarding-busy",
            "call-forwarding-no-answer",
            "call-forwarding-not-reachable",
            "do-not-disturb",
            "call-waiting",
            "anonymous",
            "outgoing-identity",
            "call-method",
            "voicemail",
        }
    ),
    "agent": frozenset(
        {
            "call-forwarding-always",
            "do-not-disturb",
            "call-waiting",
            "outgoing-identity",
            "call-method",
            "voicemail",
            "call-recording",
            "call-center-agent",
        }
    ),
    "full": ALL_LICENCES,
}


class UnknownLicence(ValueError):
    pass


def expand(names: list[str] | set[str] | frozenset[str]) -> frozenset[str]:
    """Expand package names and check licence names; raise UnknownLicence for anything unknown."""
    result: set[str] = set()
    for name in names:
        if name in PACKAGES:
            result |= PACKAGES[name]
        elif name in ALL_LICENCES:
            result.add(name)
        else:
            raise UnknownLicence(f"unknown licence or package '{name}'")
    return frozenset(result)


def licensed_services(licences: frozenset[str]) -> list[str]:
    """The user services this licence set unlocks, in the manual's order."""
    services = []
    for service in USER_SERVICES:
        if service not in licences:
            continue
        if service in FIXED_MOBILE_ONLY and "fixed-mobile" not in licences:
            continue
        services.append(service)
    return services
