"""The parser on real-world messages, RFC 4475-style torture cases, and hypothesis fuzzing."""

from __future__ import annotations

import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hipper.sip.message import URI, Headers, NameAddr, ParseError, Request, Response, Via, parse_message

# As SIPp 3.6 sends it (captured on loopback), bare LF line ends folded into CRLF by SIPp itself.
SIPP_REGISTER = (
    b"REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-12345-1-0;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:alice@hipper.test>;tag=12345SIPpTag1\r\n"
    b"To: <sip:alice@hipper.test>\r\n"
    b"Call-ID: 1-12345@127.0.0.1\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Contact: <sip:alice@192.0.2.1:5061>\r\n"
    b"Expires: 120\r\n"
    b'Authorization: Digest username="alice",realm="hipper.test",uri="sip:127.0.0.1:5060",'
    b'nonce="abc",response="0123456789abcdef0123456789abcdef",algorithm=MD5\r\n'
    b"Content-Length: 0\r\n\r\n"
)

# baresip 1.0 style INVITE with SDP body, compact forms mixed in and a multi-value Allow.
INVITE = (
    b"INVITE sip:bob@[2001:db8::10]:5080;transport=udp SIP/2.0\r\n"
    b"v: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKnashds8;rport,\r\n"
    b" SIP/2.0/UDP 192.0.2.2:5062;branch=z9hG4bKold\r\n"
    b"Max-Forwards: 70\r\n"
    b'f: "Alice \\"A\\" Smith" <sip:alice@hipper.test>;tag=1928301774\r\n'
    b"t: Bob <sip:bob@hipper.test>\r\n"
    b"i: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b'm: <sip:alice@[2001:db8::1]:5060;transport=udp>;+sip.instance="<urn:uuid:1>"\r\n'
    b"Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER\r\n"
    b"Subject: folded\r\n"
    b"\tsubject line\r\n"
    b"c: application/sdp\r\n"
    b"l: 30\r\n\r\n"
    b"v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\n"
)


def test_sipp_register() -> None:
    message = parse_message(SIPP_REGISTER)
    assert isinstance(message, Request)
    message.validate()
    assert message.method == "REGISTER" and message.uri.port == 5060
    assert message.cseq == (2, "REGISTER")
    assert message.top_via.params == {"branch": "z9hG4bK-12345-1-0", "rport": None}
    assert message.contacts[0].uri.host == "192.0.2.1"
    assert message.int_header("expires") == 120
    assert message.headers.get(
        "authorization",
    ).startswith("Digest")  # type: ignore[union-attr]


def test_compact_forms_folding_ipv6_and_lists() -> None:
    message = parse_message(INVITE)
    assert isinstance(message, Request)
    message.validate()
    assert message.uri.host == "2001:db8::10" and message.uri.port == 5080 and message.uri.transport == "udp"
    vias = message.vias
    assert [(v.host, v.port) for v in vias] == [("2001:db8::1", 5060), ("192.0.2.2", 5062)]
    assert message.from_.display_name == 'Alice "A" Smith' and message.from_.tag == "1928301774"
    assert message.to.display_name == "Bob" and message.to.tag is None
    assert message.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert len(message.headers.get_all("Allow")) == 11
    assert message.headers.get("Subject") == "folded subject line"
    assert message.contacts[0].params["+sip.instance"] == "<urn:uuid:1>"
    assert message.body == b"v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\n"
    # Round trip: what we write, we read back the same.
    again = parse_message(message.serialize())
    assert isinstance(again, Request)
    assert str(again.uri) == str(message.uri)
    assert [str(v) for v in again.vias] == [str(v) for v in vias]
    assert again.body == message.body
    assert "[2001:db8::1]:5060" in str(vias[0])


def test_headers_any_spelling_and_every_change_kept_in_order() -> None:
    headers = Headers([("Via", "v1"), ("x-custom", "a")])
    headers.add("v", "v2")  # compact form of Via
    headers.add("X-CUSTOM", "b")
    headers.prepend("VIA", "v0")
    assert [name for name, _ in headers] == ["Via", "Via", "x-custom", "Via", "X-CUSTOM"]
    assert headers.get("via") == "v0" and headers.get("X-Custom") == "a"
    assert headers.get_all("v") == ["v0", "v1", "v2"] and headers.get_all("x-custom") == ["a", "b"]
    assert headers.get("Missing") is None and headers.get_all("Missing") == []
    assert headers.pop_first("Via") == "v0" and headers.get("Via") == "v1"
    copy = headers.copy()
    headers.set("via", "only")  # replaces every Via in the place of the first
    assert [value for _, value in headers] == ["only", "a", "b"]
    assert copy.get_all("Via") == ["v1", "v2"]  # the copy is its own
    headers.remove("X-Custom")
    assert list(headers) == [("Via", "only")] and headers.get("x-custom") is None
    headers.set("Subject", "new")  # absent: appended
    assert headers.get("s") == "new" and len(headers) == 2


def test_parsed_headers_follow_changes_of_their_value() -> None:
    message = parse_message(SIPP_REGISTER)
    assert isinstance(message, Request)
    assert message.to.tag is None and message.cseq == (2, "REGISTER")
    assert message.to is message.to  # parsed once while the value stays the same
    message.headers.set("To", "<sip:alice@hipper.test>;tag=abc")
    message.headers.set("CSeq", "3 REGISTER")
    assert message.to.tag == "abc" and message.cseq == (3, "REGISTER")
    kept = message.to
    message.forget_parsed()  # what a finished transaction does: parsed again when asked
    assert message.to is not kept and message.to == kept
    message.headers.prepend("Via", "SIP/2.0/TCP 192.0.2.9:5070;branch=z9hG4bKnew")
    assert message.top_via.transport == "TCP" and message.top_via.branch == "z9hG4bKnew"
    message.headers.set("From", "not a uri")
    with pytest.raises(ParseError):
        message.from_  # noqa: B018 - a bad new value is an error however often it is read
    with pytest.raises(ParseError):
        message.from_  # noqa: B018
    message.headers.remove("To")
    with pytest.raises(ParseError, match="missing To"):
        message.to  # noqa: B018


def test_a_kept_parse_goes_with_every_change_of_its_value() -> None:
    # The accessors trust a kept parse without comparing texts: each change of a first value must drop or replace it.
    message = parse_message(INVITE)
    assert isinstance(message, Request)
    first, second = message.headers.get_all("Via")[:2]
    assert message.top_via == Via.parse(first)
    message.headers.pop_first("Via")
    assert message.top_via == Via.parse(second)
    message.headers.prepend("v", first)  # text, in a compact spelling: parsed again when read
    assert message.top_via == Via.parse(first)
    contacts = message.contacts
    message.headers.add("Contact", "<sip:other@192.0.2.8>")  # a second value: the list changes, the first does not
    assert len(message.contacts) == len(contacts) + 1 and message.contacts[0] == contacts[0]
    copy = Headers()
    copy.add("From", "<sip:someone-else@hipper.test>;tag=x")
    message.from_  # noqa: B018 - parsed on the original
    copy.share_parsed(message.headers, "From")  # another value: not taken over
    assert Request("INVITE", message.uri, copy).from_.uri.user == "someone-else"


def test_typed_values_are_serialised_once_and_never_parsed_back() -> None:
    # Issue 9 point 3: what the exchange builds is written out once; its own accessors hand back the very
    # objects it was built from (no text round trip), and a response or an ACK made from it shares them.
    from_ = NameAddr(URI.parse("sip:alice@hipper.test"), "Alice", {"tag": "t1"})
    to = NameAddr(URI.parse("sip:bob@hipper.test"))
    via = Via("UDP", "192.0.2.1", 5060, {"branch": "z9hG4bKabc", "rport": None})
    headers = Headers()
    headers.add("f", from_)  # any spelling
    headers.add("To", to)
    headers.add("Call-ID", "c1@x")
    headers.add("CSeq", "1 INVITE")
    request = Request("INVITE", URI.parse("sip:bob@192.0.2.2"), headers)
    request.headers.prepend("Via", via)
    assert request.from_ is from_ and request.to is to and request.top_via is via
    assert request.headers.get("From") == str(from_) and request.headers.get("Via") == str(via)
    again = parse_message(request.serialize())
    assert again.from_ == from_ and again.to == to and again.top_via == via
    response = Response.for_request(request, 180, to_tag="callee1")
    assert response.top_via is via and response.from_ is from_
    assert response.to.tag == "callee1" and response.to.uri is to.uri
    assert response.headers.get("To") == f"{to};tag=callee1"  # the text and the parse agree
    assert parse_message(response.serialize()).to == response.to
    # A later text value replaces the parse; a second value does not touch the first one's.
    request.headers.add("Via", Via("TCP", "192.0.2.9", None, {"branch": "z9hG4bKdef"}))
    assert request.top_via is via
    request.headers.set("From", "<sip:carol@hipper.test>;tag=t2")
    assert request.from_.uri.user == "carol" and request.from_.tag == "t2"
    # Received messages: contacts parsed once while they stay the same.
    received = parse_message(INVITE)
    assert received.contacts is received.contacts and received.contacts[0].uri.host == "2001:db8::1"
    received.headers.set("Contact", "<sip:alice@192.0.2.7>")
    assert received.contacts[0].uri.host == "192.0.2.7"


def test_header_names_seen_before_are_still_checked_for_their_colon() -> None:
    # The parser skips the token check for names it met before; a line without a colon is still refused.
    with pytest.raises(ParseError, match="bad header line"):
        parse_message(SIPP_REGISTER.replace(b"Max-Forwards: 70", b"Max-Forwards 70"))
    with pytest.raises(ParseError, match="bad header line"):
        parse_message(SIPP_REGISTER.replace(b"Max-Forwards: 70", b"Via"))
    with pytest.raises(ParseError, match="too many headers"):
        parse_message(SIPP_REGISTER.replace(b"Expires: 120\r\n", b"X: 1\r\n" * 1100))


def test_response_and_body_rules() -> None:
    text = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 INVITE\r\n\r\nbody-without-length"
    response = parse_message(text)
    assert isinstance(response, Response) and response.status == 180
    assert response.body == b"body-without-length"  # datagram: to its end (§18.3)
    with pytest.raises(ParseError):
        parse_message(text, stream=True)  # a stream needs Content-Length
    with pytest.raises(ParseError, match="larger"):
        parse_message(text.replace(b"CSeq", b"Content-Length: 500\r\nCSeq"))
    truncated = parse_message(text.replace(b"CSeq", b"Content-Length: 4\r\nCSeq"))
    assert truncated.body == b"body"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (b"INVITE sip:a@b SIP/3.0\r\n\r\n", "unsupported SIP version"),
        (b"INVITE  sip:a@b\r\n\r\n", "bad request line"),
        (b"SIP/2.0 99 Odd\r\n\r\n", "bad status code"),
        (b"INVITE sip:a@[::1 SIP/2.0\r\n\r\n", "unterminated IPv6"),
        (b"INVITE sip:a@b:99999 SIP/2.0\r\n\r\n", "port out of range"),
        (b"INVITE sip:a@b SIP/2.0\r\n no header before\r\n\r\n", "continuation"),
        (b"INVITE sip:a@b SIP/2.0\r\nNo colon here\r\n\r\n", "bad header line"),
    ],
)
def test_malformed_start_and_header_lines(text: bytes, problem: str) -> None:
    with pytest.raises(ParseError, match=problem):
        parse_message(text)


@pytest.mark.parametrize(
    ("header", "value", "problem"),
    [
        ("CSeq", "1 REGISTER", "CSeq method"),
        ("CSeq", "99999999999 INVITE", "CSeq"),
        ("Max-Forwards", "-1", "Max-Forwards"),
        ("Max-Forwards", "\u00b2", "Max-Forwards"),  # a digit to str.isdigit(), not to int()
        ("CSeq", "\u00b9 INVITE", "CSeq"),
        ("To", '"unterminated <sip:a@b>', "unterminated"),
        ("Via", "SIP/2.0/UDP", "bad Via"),
        ("Via", "SIP/2.0/UDP :5060;branch=z9hG4bK1", "bad host"),
    ],
)
def test_semantic_errors_name_the_header(header: str, value: str, problem: str) -> None:
    base = parse_message(INVITE)
    assert isinstance(base, Request)
    base.headers.set(header, value)
    with pytest.raises(ParseError, match=problem):
        parse_message(base.serialize()).validate()  # type: ignore[union-attr]


def test_uri_name_addr_and_via_forms() -> None:
    uri = URI.parse("sips:+31201234567;phone-context=x@Example.COM:5061;user=phone;lr?subject=hi")
    assert (uri.scheme, uri.user, uri.host, uri.port) == ("sips", "+31201234567;phone-context=x", "example.com", 5061)
    assert uri.params == {"user": "phone", "lr": None} and uri.headers == "subject=hi"
    assert str(URI.parse(str(uri))) == str(uri)
    assert URI.parse("tel:+31201234567").user == "+31201234567"
    bare = NameAddr.parse("sip:bob@biloxi.example.com;tag=a6c85cf")  # addr-spec: the param is the header's
    assert bare.tag == "a6c85cf" and bare.uri.params == {}
    assert NameAddr.parse("*").wildcard
    via = Via.parse("SIP / 2.0 / TCP  host.example.com:5061 ; branch = z9hG4bK1 ; received=10.0.0.1")
    assert (via.transport, via.host, via.port, via.branch) == ("TCP", "host.example.com", 5061, "z9hG4bK1")
    assert via.params["received"] == "10.0.0.1"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_only_ever_raise_parse_error(data: bytes) -> None:
    try:
        message = parse_message(data)
        if isinstance(message, Request):
            message.validate()
    except ParseError:
        pass


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=len(INVITE) - 1), st.binary(min_size=0, max_size=8)),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_real_messages_only_ever_raise_parse_error(edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(INVITE)
    for position, replacement in edits:
        data[position : position + len(replacement)] = replacement
    try:
        message = parse_message(bytes(data))
        if isinstance(message, Request):
            message.validate()
            message.contacts  # noqa: B018
            message.vias  # noqa: B018
        parse_message(message.serialize())
    except ParseError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    user=st.from_regex(r"[A-Za-z0-9_.~-]{1,20}", fullmatch=True),
    host=st.one_of(
        st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,5}){0,2}", fullmatch=True),
        st.ip_addresses().map(str),
    ),
    port=st.one_of(st.none(), st.integers(min_value=1, max_value=65535)),
    tag=st.from_regex(r"[A-Za-z0-9]{1,16}", fullmatch=True),
)
def test_name_addr_round_trip(user: str, host: str, port: int | None, tag: str) -> None:
    host_text = f"[{host}]" if ":" in host else host
    text = f'"Some One" <sip:{user}@{host_text}{f":{port}" if port else ""}>;tag={tag}'
    parsed = NameAddr.parse(text)
    assert (parsed.uri.user, parsed.uri.host, parsed.uri.port, parsed.tag) == (user, host.lower(), port, tag)
    assert NameAddr.parse(str(parsed)) == parsed


@settings(max_examples=500, deadline=None)
@given(
    name=st.sampled_from(["Via", "v", "From", "To", "Contact", "m", "CSeq", "Call-ID", "Max-Forwards", "Expires", "l"]),
    value=st.text(max_size=60),
)
def test_any_unicode_header_value_only_ever_raises_parse_error(name: str, value: str) -> None:
    if "\r" in value or "\n" in value:
        value = value.replace("\r", " ").replace("\n", " ")
    base = parse_message(INVITE)
    base.headers.set(name, value)
    data = base.serialize().replace(b"Content-Length: 30", b"") if name == "l" else base.serialize()
    try:
        message = parse_message(data)
        assert isinstance(message, Request)
        message.validate()
        message.contacts  # noqa: B018
        message.vias  # noqa: B018
    except ParseError:
        pass


# In the spirit of RFC 4475 §3.1.1 (valid but unusual): odd whitespace, folding, case, escapes, other schemes.
UNUSUAL = (
    b"OPTIONS sip:%61lice@Hipper.TEST;Transport=TCP SIP/2.0\r\n"
    b"TO :\r\n sip:%61lice@hipper.test ;   tag = 1918181833n\r\n"
    b'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8\r\n'
    b"MaX-fOrWaRdS: 0068\r\n"
    b"Call-ID: wsinv.ndaksdj@192.0.2.1\r\n"
    b"cseq: 0009\r\n  OPTIONS\r\n"
    b"Via  : SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;rport;branch=z9hG4bK390skdjuw\r\n"
    b"s :\r\n"
    b"NewFangledHeader:   newfangled value\r\n continued newfangled value\r\n"
    b"UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n"
    b"Contact: <urn:service:sos>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_unusual_but_valid_message() -> None:
    message = parse_message(UNUSUAL)
    assert isinstance(message, Request)
    message.validate()
    assert message.uri.user == "%61lice" and message.uri.host == "hipper.test" and message.uri.transport == "tcp"
    assert message.to.tag == "1918181833n"
    assert message.from_.tag == "98asjd8" and message.from_.display_name == 'J Rosenberg \\"'
    assert message.int_header("Max-Forwards") == 68
    assert message.cseq == (9, "OPTIONS")
    assert (message.top_via.transport, message.top_via.host, message.top_via.port) == ("UDP", "192.0.2.2", None)
    assert message.headers.get("Subject") == ""
    assert message.headers.get("newfangledheader") == "newfangled value continued newfangled value"
    assert message.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert message.contacts[0].uri.scheme == "urn"


@pytest.mark.parametrize(
    "replacement",
    [
        (b"Content-Length: 0", b"Content-Length: -5"),
        (b"Content-Length: 0", b"Content-Length: 0\r\nContent-Length: abc"),
        (b"MaX-fOrWaRdS: 0068", b"Max-Forwards: 99999999999"),
        (b"Call-ID: wsinv.ndaksdj@192.0.2.1\r\n", b""),
        (b"OPTIONS sip:", b"OPTIONS sip :"),
    ],
)
def test_invalid_variants_are_parse_errors(replacement: tuple[bytes, bytes]) -> None:
    with pytest.raises(ParseError):
        message = parse_message(UNUSUAL.replace(*replacement))
        assert isinstance(message, Request)
        message.validate()


def test_long_texts_from_a_sender_are_not_kept_by_the_parser() -> None:
    """The parser keeps the answers for names, host:port texts, URIs and name-addrs it saw (bounded in number): a
    sender of requests each naming a different 12 KB URI, header name and host must not make it keep them (4,096 such
    entries would pin hundreds of MB before any authentication). Before, 200 of them kept ≈ 12 MB."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(200):
            long = f"{index}-" + "x" * 12_000
            request = (
                f"OPTIONS sip:{long}@example.com SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP h{long}.example.com:5060;branch=z9hG4bK{index}\r\n"
                f"From: <sip:a@example.com>;tag={index}\r\nTo: <sip:{long}@example.com>\r\n"
                f"Call-ID: {index}@example.com\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                f"X-{long}: 1\r\nContent-Length: 0\r\n\r\n"
            ).encode()
            message = parse_message(request)
            assert isinstance(message, Request)
            message.uri.host  # noqa: B018 - read what the call path reads
            message.top_via.host  # noqa: B018
            message.to.uri.user  # noqa: B018 - a name-addr's answer is kept per text too
        del message
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 1_000_000, kept


def test_a_name_addr_parsed_again_is_a_new_one() -> None:
    # Each text's answer is kept; what is handed out is a copy, so a caller that changes its own cannot change
    # the next call's (the same From in another message, another call).
    first = NameAddr.parse("<sip:alice@hipper.test;transport=udp>;tag=1")
    first.params["tag"] = "changed"
    first.uri.params["transport"] = "tcp"
    first.uri.user = "mallory"
    again = NameAddr.parse("<sip:alice@hipper.test;transport=udp>;tag=1")
    assert again.tag == "1" and again.uri.params == {"transport": "udp"} and again.uri.user == "alice"
    assert again is not first and again.uri is not first.uri
