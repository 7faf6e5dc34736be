"""Outbound call barring and concurrent-call limits: what stops toll fraud with a stolen or abused phone.

Pure rules (no I/O): the store reads the policies (store/outbound.py), the call path asks `OutboundGate.admit`
once where a call leaves through the trunk, and releases the call when it ends (docs/security.md "Toll fraud").

Barring classes, decided on the E.164 number:
- ``premium``: premium-rate numbers (phonenumbers' PREMIUM_RATE type: 0900/0906/0909 in NL, 09xx in GB, 900 in
  the US, the international premium-rate code +979).
- ``international``: a country code other than the exchange's own region's.
- ``high_cost``: satellite and international network codes (+870 Inmarsat, +881 GMSS: Iridium, Globalstar,
  Thuraya; +882/+883 international networks) and destinations known for international revenue-share fraud.
- a configurable list of prefixes per company and per user (``+3190``, ``+44``, …).

A company's policy applies to all its users; a user's policy adds to it (a user can be barred from more than the
company, never less). Without a stored company policy the exchange's default classes apply.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

import phonenumbers
from phonenumbers import PhoneNumberType


class BarringClass(StrEnum):
    PREMIUM = "premium"
    INTERNATIONAL = "international"
    HIGH_COST = "high_cost"


# Satellite and international networks (ITU-T E.164 shared codes), and the international premium-rate code
# +979 (also PREMIUM by type). +252 (Somalia) is the destination seen in the fraud that prompted this
# (issue 11); further countries belong in a company's prefix list, where the administrator can see them.
HIGH_COST_PREFIXES: Final = ("+870", "+881", "+882", "+883", "+979", "+252")
# What a company without a stored policy may not call (Settings.outbound_barred_default overrides).
DEFAULT_BARRED: Final = frozenset({BarringClass.PREMIUM, BarringClass.HIGH_COST})
PREFIX_PATTERN: Final = re.compile(r"^\+[0-9]{1,15}$")
MAX_PREFIXES: Final = 200

# SIP reason phrases (RFC 3261 §21.4.4 403 Forbidden with the reason in the phrase): the phone shows them.
REASONS: Final = {
    BarringClass.PREMIUM: "Premium-Rate Numbers Barred",
    BarringClass.INTERNATIONAL: "International Calls Barred",
    BarringClass.HIGH_COST: "High-Cost Destination Barred",
}
PREFIX_REASON: Final = "Destination Barred"


class PolicyError(ValueError):
    """A barring class or prefix an administrator typed that is not one."""


@dataclass(frozen=True, slots=True)
class Policy:
    """One company's or one user's barring: the classes, extra prefixes, and a concurrent-call limit (None: no
    limit of its own)."""

    barred: frozenset[BarringClass] = frozenset()
    prefixes: tuple[str, ...] = ()
    max_calls: int | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an outbound call is not placed: the SIP status and reason phrase, the rule (a bounded metric label:
    a class, ``prefix`` or ``user_limit``/``company_limit``/``trunk_limit``) and a detail for the log."""

    status: int
    reason: str
    rule: str
    detail: str = ""


def parse_classes(names: list[str] | tuple[str, ...]) -> frozenset[BarringClass]:
    try:
        return frozenset(BarringClass(name) for name in names)
    except ValueError as error:
        known = ", ".join(c.value for c in BarringClass)
        raise PolicyError(f"unknown barring class in {list(names)!r}: use {known}") from error


def parse_prefixes(prefixes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    if len(prefixes) > MAX_PREFIXES:
        raise PolicyError(f"at most {MAX_PREFIXES} barred prefixes")
    for prefix in prefixes:
        if not PREFIX_PATTERN.match(prefix):
            raise PolicyError(f"barred prefix {prefix!r} must be '+' and 1-15 digits (E.164, e.g. +3190)")
    return tuple(sorted(set(prefixes)))


def classes_of(e164: str, home_region: str) -> frozenset[BarringClass]:
    """The barring classes an E.164 number falls in (an empty set for an ordinary national number)."""
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        # Not a number phonenumbers reads: only the prefix rules can judge it; treat as international.
        return frozenset({BarringClass.INTERNATIONAL})
    classes: set[BarringClass] = set()
    if phonenumbers.number_type(number) == PhoneNumberType.PREMIUM_RATE:
        classes.add(BarringClass.PREMIUM)
    if number.country_code != phonenumbers.country_code_for_region(home_region):
        classes.add(BarringClass.INTERNATIONAL)
    if e164.startswith(HIGH_COST_PREFIXES):
        classes.add(BarringClass.HIGH_COST)
    return frozenset(classes)


def barred(e164: str, home_region: str, policies: list[Policy]) -> Refusal | None:
    """The first rule of any policy that bars the number (classes before prefixes), else None."""
    classes = classes_of(e164, home_region)
    for barring_class in (BarringClass.PREMIUM, BarringClass.HIGH_COST, BarringClass.INTERNATIONAL):
        if barring_class in classes and any(barring_class in policy.barred for policy in policies):
            return Refusal(403, REASONS[barring_class], barring_class.value, e164[:6])
    for policy in policies:
        for prefix in policy.prefixes:
            if e164.startswith(prefix):
                return Refusal(403, PREFIX_REASON, "prefix", prefix)
    return None


@dataclass(frozen=True, slots=True)
class Limits:
    """Concurrent outbound calls allowed (None: unlimited), and the status a limit answers with (403 the policy
    refuses, or 503 a busy resource the caller may retry)."""

    per_user: int | None = None
    per_company: int | None = None
    per_trunk: int | None = None
    status: int = 403


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted call: what `OutboundGate.release` gives back when it ends."""

    user_id: int
    company_id: int | None


@dataclass
class OutboundGate:
    """Counts the outbound calls in progress (on this node) and admits a new one only within every limit.

    Counting is in memory: one node's calls. Several nodes share the trunk's limit only if each is given its
    share (docs/security.md "Toll fraud")."""

    limits: Limits
    users: Counter[int] = field(default_factory=Counter)
    companies: Counter[int] = field(default_factory=Counter)
    tickets: dict[str, Ticket] = field(default_factory=dict)  # by call id

    @property
    def trunk(self) -> int:
        return len(self.tickets)

    def admit(
        self,
        call_id: str,
        e164: str,
        user_id: int,
        company_id: int | None,
        home_region: str,
        company: Policy,
        user: Policy,
    ) -> Refusal | None:
        """None when the call may go out (it then counts until `release(call_id)`), else why not."""
        refusal = barred(e164, home_region, [company, user])
        if refusal is not None:
            return refusal
        if call_id in self.tickets:
            return None  # counted already (a call forwarded out again after a first attempt)
        limits = self.limits
        per_user = _own_or_default(user.max_calls, limits.per_user)
        if per_user is not None and self.users[user_id] >= per_user:
            return Refusal(limits.status, "Too Many Calls for This User", "user_limit", str(per_user))
        per_company = _own_or_default(company.max_calls, limits.per_company)
        if company_id is not None and per_company is not None and self.companies[company_id] >= per_company:
            return Refusal(limits.status, "Too Many Calls for This Company", "company_limit", str(per_company))
        if limits.per_trunk is not None and self.trunk >= limits.per_trunk:
            return Refusal(503, "Trunk Busy", "trunk_limit", str(limits.per_trunk))
        self.users[user_id] += 1
        if company_id is not None:
            self.companies[company_id] += 1
        self.tickets[call_id] = Ticket(user_id, company_id)
        return None

    def release(self, call_id: str) -> None:
        """The call ended (any way): it no longer counts. Unknown ids (never admitted) are ignored."""
        ticket = self.tickets.pop(call_id, None)
        if ticket is None:
            return
        _decrement(self.users, ticket.user_id)
        if ticket.company_id is not None:
            _decrement(self.companies, ticket.company_id)


def _own_or_default(own: int | None, default: int | None) -> int | None:
    """A company's or user's own limit, set by the administrator, replaces the exchange's default (up or down:
    a call-center agent may need more than the default, a shared lobby phone fewer)."""
    return default if own is None else own


def _decrement(counter: Counter[int], key: int) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
