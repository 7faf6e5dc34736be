"""Comma-separated header values (RFC 3261 §7.3.1) are split character by character only where quotes or angle
brackets can hide a comma: a phone's Allow and Supported are split with str.split (issue 9), to the same values."""

from __future__ import annotations

import pytest

from hipper.sip import message as message_module
from hipper.sip.message import Request, parse_message

INVITE = (
    "INVITE sip:202@hipper.test SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-e, SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-p;rport\r\n"
    "From: <sip:alice@hipper.test>;tag=1\r\nTo: <sip:202@hipper.test>\r\nCall-ID: lists\r\nCSeq: 1 INVITE\r\n"
    'Contact: "Alice, desk" <sip:alice@10.0.0.5:5062>, <sip:alice@10.0.0.6>\r\n'
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, NOTIFY, PRACK\r\n"
    "Supported: replaces,timer , 100rel\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.skipif(not str(message_module.__file__).endswith(".py"), reason="counts calls inside the pure module")
def test_plain_lists_are_split_without_the_quote_aware_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    split: list[str] = []
    real = message_module._split_outside_quotes

    def counting(text: str, separator: str) -> list[str]:
        split.append(text)
        return real(text, separator)

    monkeypatch.setattr(message_module, "_split_outside_quotes", counting)
    message = parse_message(INVITE.encode())
    assert isinstance(message, Request)
    headers = message.headers
    assert headers.get_all("Allow") == [
        "INVITE",
        "ACK",
        "CANCEL",
        "BYE",
        "OPTIONS",
        "UPDATE",
        "INFO",
        "REFER",
        "NOTIFY",
        "PRACK",
    ]
    assert headers.get_all("Supported") == ["replaces", "timer", "100rel"]
    assert [via.branch for via in message.vias] == ["z9hG4bK-e", "z9hG4bK-p"]
    assert [(c.display_name, str(c.uri)) for c in message.contacts] == [
        ("Alice, desk", "sip:alice@10.0.0.5:5062"),
        ("", "sip:alice@10.0.0.6"),
    ]
    # Only the Contact, whose display name holds a comma, needed the character loop.
    assert [value.split(" ")[0] for value in split] == ['"Alice,']
