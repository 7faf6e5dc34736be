"""What a phone's REFER and Replaces say (apps/phone_control.py), read from real request bytes: RFC 3515 §2.4.2
(exactly one Refer-To), RFC 3891 §6.1 (one Call-ID, one to-tag, one from-tag), RFC 4488 (Refer-Sub)."""

from __future__ import annotations

import pytest

from hipper.apps.phone_control import PhoneRequestError, Replaces, refer_target, wants_subscription
from hipper.sip.message import ParseError, Request, parse_message


def refer(*headers: str) -> Request:
    lines = [
        "REFER sip:hipper@127.0.0.1:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1",
        "From: <sip:alice@example.test>;tag=a1",
        "To: <sip:202@example.test>;tag=x1",
        "Call-ID: c1@example.test",
        "CSeq: 3 REFER",
        "Max-Forwards: 70",
        *headers,
        "Content-Length: 0",
    ]
    message = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def test_a_blind_refer_names_the_number() -> None:
    target = refer_target(refer("Refer-To: <sip:%2B31201234203@example.test;user=phone>"))
    assert (target.dialled, target.replaces) == ("+31201234203", None)
    assert refer_target(refer("r: sip:203@example.test")).dialled == "203"  # compact form, addr-spec


def test_an_attended_refer_carries_the_replaced_dialog() -> None:
    target = refer_target(
        refer("Refer-To: <sip:203@example.test?Replaces=abc%40host%3Bto-tag%3Dours%3Bfrom-tag%3Dtheirs>")
    )
    assert target.replaces == Replaces("abc@host", "ours", "theirs")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ((), 400),
        (("Refer-To: <sip:203@example.test>", "Refer-To: <sip:204@example.test>"), 400),
        (("Refer-To: <sip:203@example.test",), 400),
        (("Refer-To: <tel:+31201234203>",), 416),
        (("Refer-To: <sip:example.test>",), 400),
        (("Refer-To: <sip:203@example.test;method=BYE>",), 400),
        (("Refer-To: <sip:203@example.test?Replaces=abc%3Bto-tag%3Dours>",), 400),
        (("Refer-To: <sip:203%0D%0AX-Evil:%201@example.test>",), 400),
    ],
    ids=["none", "two", "malformed", "tel", "no-number", "not-invite", "replaces-without-from-tag", "escaped-crlf"],
)
def test_a_bad_refer_to_is_refused_with_its_status(headers: tuple[str, ...], status: int) -> None:
    with pytest.raises(PhoneRequestError) as refused:
        refer_target(refer(*headers))
    assert refused.value.status == status


@pytest.mark.parametrize(
    "text",
    ["abc@host;to-tag=1", "abc;to-tag=1;from-tag=2;from-tag=3", ";to-tag=1;from-tag=2", "abc;to-tag=;from-tag=2"],
)
def test_replaces_needs_one_call_id_and_one_of_each_tag(text: str) -> None:
    with pytest.raises(ParseError):
        Replaces.parse(text)


def test_replaces_reads_early_only() -> None:
    assert Replaces.parse("abc;from-tag=2;to-tag=1;early-only") == Replaces("abc", "1", "2", early_only=True)


def test_refer_sub_false_asks_for_no_subscription() -> None:
    assert wants_subscription(refer())
    assert wants_subscription(refer("Refer-Sub: true"))
    assert not wants_subscription(refer("Refer-Sub: false"))
