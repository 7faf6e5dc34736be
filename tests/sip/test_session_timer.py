"""RFC 4028 negotiation (sip/session_timer.py): what our 2xx says, when 422 is due, what a 2xx to us set."""

from __future__ import annotations

import pytest

from hipper.sip.message import URI, Headers, ParseError, Request, Response
from hipper.sip.session_timer import (
    Session,
    SessionTimerPolicy,
    answer,
    answer_headers,
    from_answer,
    offer_headers,
    too_small,
)

POLICY = SessionTimerPolicy(enabled=True, expires=1800, min_se=90)


def invite(*headers: tuple[str, str]) -> Request:
    message = Headers()
    for name, value in headers:
        message.add(name, value)  # as the parser stores them: compact forms under their full names
    return Request("INVITE", URI("sip", "example.com", user="bob"), message)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # No timer asked, none supported: we still set one and refresh it ourselves (§9).
        ((), Session(1800, "uas")),
        # Supported but not asked: we refresh all the same (a phone listing "timer" may still never refresh).
        ((("Supported", "timer"),), Session(1800, "uas")),
        # Asked with a refresher: kept; a longer interval than ours is shortened to ours.
        ((("Supported", "timer"), ("Session-Expires", "3600;refresher=uas")), Session(1800, "uas")),
        ((("Supported", "timer"), ("Session-Expires", "600;refresher=uac")), Session(600, "uac")),
        # Compact forms (k, x) and no refresher: our choice, ourselves.
        ((("k", "timer"), ("x", "600")), Session(600, "uas")),
        ((("k", "timer"), ("x", "600;refresher=uac")), Session(600, "uac")),
        # A proxy inserted Session-Expires for a caller without timer support: only we can refresh (§9).
        ((("Session-Expires", "600;refresher=uac"),), Session(600, "uas")),
        # The request's Min-SE is a floor for the interval we choose.
        ((("Supported", "timer"), ("Session-Expires", "600"), ("Min-SE", "900")), Session(900, "uas")),
    ],
)
def test_our_answer(headers: tuple[tuple[str, str], ...], expected: Session) -> None:
    assert answer(invite(*headers), POLICY) == expected


def test_too_small_is_answered_with_our_minimum() -> None:
    assert too_small(invite(("Session-Expires", "30")), POLICY) == 90
    assert too_small(invite(("Session-Expires", "90")), POLICY) is None
    assert too_small(invite(), POLICY) is None
    assert too_small(invite(("Session-Expires", "30")), SessionTimerPolicy(enabled=False)) is None


@pytest.mark.parametrize("value", ["abc", "-5", "0", "600;refresher=someone", "99999999999"])
def test_malformed_session_expires_is_a_parse_error(value: str) -> None:
    with pytest.raises(ParseError):
        too_small(invite(("Session-Expires", value)), POLICY)


def test_disabled_policy_sets_nothing() -> None:
    off = SessionTimerPolicy(enabled=False)
    assert answer(invite(("Session-Expires", "600")), off) is None
    assert offer_headers(off) == []


def test_answer_headers_require_timer_only_when_the_uac_refreshes() -> None:
    assert ("Require", "timer") in answer_headers(Session(600, "uac"))
    assert ("Require", "timer") not in answer_headers(Session(600, "uas"))
    assert ("Session-Expires", "600;refresher=uas") in answer_headers(Session(600, "uas"))


def test_what_a_2xx_to_our_invite_set() -> None:
    ok = Response(200, headers=Headers([("Session-Expires", "1200;refresher=uas")]))
    assert from_answer(ok, offered=True) == Session(1200, "uas")
    # §7.2: no refresher parameter leaves the refreshing to the UAC (us).
    assert from_answer(Response(200, headers=Headers([("Session-Expires", "1200")])), offered=True) == Session(
        1200, "uac"
    )
    assert from_answer(Response(200), offered=True) is None
    assert from_answer(ok, offered=False) is None


def test_expiry_and_refresh_points() -> None:
    assert Session(1800, "uac").refresh_after == 900
    assert Session(1800, "uac").expire_after == 1800 - 32
    assert Session(6, "uac").expire_after == 4
