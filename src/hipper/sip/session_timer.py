"""RFC 4028 session timers: the negotiation, as pure functions of the messages and our policy.

A dialog whose far end vanished without a BYE would keep a user "busy" for ever; session timers make both ends
refresh the session (re-INVITE or UPDATE) within an interval, and end it with BYE when the refresh does not come.
Which side refreshes (`refresher`) is negotiated per refresh transaction: "uac" is the sender of that INVITE /
UPDATE, "uas" its receiver. The runtime side (sending refreshes, watching for them) is engine/leg.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hipper.sip.message import Message, ParseError, Request, Response

Refresher = Literal["uac", "uas"]
# RFC 4028 §4: Min-SE is never below 90 seconds on the public network; tests configure less.
RFC_MIN_SE = 90
MAX_INTERVAL = 86_400


@dataclass(frozen=True)
class SessionTimerPolicy:
    enabled: bool = True
    expires: int = 1800  # the interval we ask for (RFC 4028 §4 recommends 1800 s)
    min_se: int = RFC_MIN_SE  # the smallest interval we accept (422 below it)


@dataclass(frozen=True)
class Session:
    """A negotiated session timer: refresh within `interval` seconds, by `refresher` of the last transaction."""

    interval: int
    refresher: Refresher

    @property
    def refresh_after(self) -> float:
        # §7.4 / §10: the refresher sends the refresh at half the interval.
        return self.interval / 2

    @property
    def expire_after(self) -> float:
        # §10: the other side ends the session this long after the last refresh when none came.
        return self.interval - min(32.0, self.interval / 3)


def _delta(text: str, what: str) -> int:
    value = text.strip()
    if not value.isdigit() or len(value) > 10:
        raise ParseError(f"bad {what}: {text!r}")
    return int(value)


def session_expires(message: Message) -> tuple[int, Refresher | None] | None:
    """Session-Expires (or its compact form x): delta-seconds and the refresher parameter, None when absent."""
    raw = message.headers.get("Session-Expires")
    if raw is None:
        return None
    value, *params = raw.split(";")
    interval = _delta(value, "Session-Expires")
    if interval < 1:
        raise ParseError("Session-Expires must be positive")
    refresher: Refresher | None = None
    for param in params:
        name, _, val = param.partition("=")
        if name.strip().lower() == "refresher":
            choice = val.strip().lower()
            if choice not in ("uac", "uas"):
                raise ParseError(f"bad refresher: {val!r}")
            refresher = "uac" if choice == "uac" else "uas"
    return interval, refresher


def min_se(message: Message) -> int | None:
    raw = message.headers.get("Min-SE")
    return None if raw is None else _delta(raw.split(";")[0], "Min-SE")


def supports_timer(message: Message) -> bool:
    tags: list[str] = []
    for name in ("Supported", "Require"):
        for value in message.headers.get_all(name):
            tags.extend(tag.strip().lower() for tag in value.split(","))
    return "timer" in tags


def too_small(request: Request, policy: SessionTimerPolicy) -> int | None:
    """§9: the Min-SE to answer in a 422 when the request's Session-Expires is below what we accept, else None.
    Raises ParseError for a malformed Session-Expires / Min-SE (a 400)."""
    if not policy.enabled:
        return None
    asked = session_expires(request)
    min_se(request)  # validated here, so a malformed one is refused before the call starts
    if asked is not None and asked[0] < policy.min_se:
        return policy.min_se
    return None


def answer(request: Request, policy: SessionTimerPolicy) -> Session | None:
    """§9: what our 2xx to this INVITE / UPDATE says (None: no session timer on this dialog)."""
    if not policy.enabled:
        return None
    asked = session_expires(request)
    floor = max(policy.min_se, min_se(request) or 0)
    if asked is None:
        # The caller did not ask: we may still use a timer (§9), refreshing it ourselves.
        interval = max(policy.expires, floor)
        return Session(min(interval, MAX_INTERVAL), "uas")
    interval, refresher = asked
    # §9: the UAS may shorten the interval, never below the request's Min-SE (or our own).
    interval = max(min(interval, policy.expires), floor)
    if refresher is None:
        # §9: our choice when the caller left it open. We refresh: a phone that lists "timer" but never refreshes
        # would otherwise lose its call at the interval, and refreshing costs us one UPDATE per half interval.
        refresher = "uas"
    elif refresher == "uac" and not supports_timer(request):
        refresher = "uas"
    return Session(min(interval, MAX_INTERVAL), refresher)


def answer_headers(session: Session) -> list[tuple[str, str]]:
    """The 2xx headers of §9: Session-Expires with the refresher, Require: timer when the UAC must refresh."""
    headers = [("Session-Expires", f"{session.interval};refresher={session.refresher}"), ("Supported", "timer")]
    if session.refresher == "uac":
        headers.append(("Require", "timer"))
    return headers


def offer_headers(policy: SessionTimerPolicy) -> list[tuple[str, str]]:
    """§7.1: what our INVITE carries; the callee picks the refresher (our side refreshes when it picks uac)."""
    if not policy.enabled:
        return []
    return [
        ("Supported", "timer"),
        ("Session-Expires", str(policy.expires)),
        ("Min-SE", str(policy.min_se)),
    ]


def refresh_headers(session: Session) -> list[tuple[str, str]]:
    """A refresh we send keeps us the refresher (§7.4: refresher=uac, we are its UAC)."""
    return [("Session-Expires", f"{session.interval};refresher=uac"), ("Supported", "timer")]


def from_answer(response: Response, offered: bool) -> Session | None:
    """§7.2: the session timer a 2xx to our INVITE / UPDATE set (None: the callee did not take it up)."""
    if not offered:
        return None
    try:
        got = session_expires(response)
    except ParseError:
        return None
    if got is None:
        return None
    interval, refresher = got
    # §7.2: a 2xx without a refresher parameter leaves the refreshing to us (the UAC).
    return Session(min(interval, MAX_INTERVAL), refresher or "uac")
