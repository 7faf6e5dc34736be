"""The headers calls to the outside world carry (pure functions of engine/peers.py)."""

from __future__ import annotations

from hipper.domain.outgoing import CallerIdentity
from hipper.domain.routing import CallHistory
from hipper.engine.peers import diversions_so_far, history_headers, identity_headers, number_of, received_history
from hipper.sip.message import URI, Headers, NameAddr, Request


def request(*headers: tuple[str, str]) -> Request:
    return Request("INVITE", URI("sip", "example.net", user="+31201234102"), Headers(list(headers)))


def test_diversions_are_counted_from_diversion_counters_or_history_info_causes() -> None:
    assert diversions_so_far(request()) == 0
    assert diversions_so_far(request(("Diversion", "<sip:+31201@x>;reason=unconditional;counter=2"))) == 2
    two = request(("Diversion", "<sip:a@x>;reason=user-busy, <sip:b@x>;reason=no-answer"))
    assert diversions_so_far(two) == 2
    history = request(
        ("History-Info", "<sip:a@x>;index=1, <sip:b@x;cause=302>;index=1.1, <sip:c@x;cause=486>;index=1.1.1")
    )
    assert diversions_so_far(history) == 2


def test_a_forward_carries_history_info_with_the_rfc_4458_cause_and_diversion_with_the_counter() -> None:
    history = CallHistory().reach("+31201234102", 1, None).reach("+31612345678", None, "no-answer")
    headers = dict(history_headers(history, "hipper.test"))
    assert headers["History-Info"] == (
        "<sip:+31201234102@hipper.test>;index=1,<sip:+31612345678@hipper.test;cause=408>;index=1.1;mp=1"
    )
    assert headers["Diversion"] == "<sip:+31201234102@hipper.test>;reason=no-answer;counter=1"


def test_the_history_a_call_arrived_with_is_read_with_its_last_index_and_bounded() -> None:
    arrived = received_history(
        request(
            ("History-Info", "<sip:a@x>;index=1, <sip:b@x;cause=302>;index=1.1;mp=1"),
            ("Diversion", "<sip:a@x>;reason=unconditional;counter=1"),
        )
    )
    assert arrived.received_history == ("<sip:a@x>;index=1", "<sip:b@x;cause=302>;index=1.1;mp=1")
    assert arrived.received_index == "1.1" and arrived.received_target == "b"
    assert arrived.received_diversions == ("<sip:a@x>;reason=unconditional;counter=1",)
    flood = received_history(request(("History-Info", ",".join(f"<sip:{n}@x>;index=1" for n in range(100)))))
    assert len(flood.received_history) == 20
    assert received_history(request(("History-Info", "<sip:a@x>;index=1.x"))).received_index is None


def test_anonymous_identity_hides_from_but_asserts_to_a_trusted_trunk_only() -> None:
    identity = CallerIdentity(
        kind="direct", number="+31201234101", anonymous=True, from_user="anonymous", from_host="anonymous.invalid",
        from_display="Anonymous", privacy="id", asserted_identity="+31201234101", reason="test",
    )  # fmt: skip
    from_, trusted = identity_headers(identity, "hipper.test", trusted=True)
    assert str(from_) == '"Anonymous" <sip:anonymous@anonymous.invalid>'
    assert trusted == [("Privacy", "id"), ("P-Asserted-Identity", "<sip:+31201234101@hipper.test>")]
    _, untrusted = identity_headers(identity, "hipper.test", trusted=False)
    assert untrusted == [("Privacy", "id")]


def test_anonymous_callers_have_no_number() -> None:
    assert number_of(NameAddr.parse("<sip:anonymous@anonymous.invalid>")) is None
    assert number_of(NameAddr.parse('"Bob" <sip:+31301234567@example.net>')) == "+31301234567"
