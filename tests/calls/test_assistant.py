"""Slice (d): the Personal Assistant answers, announces reason and return time; 0 transfers; exceptions ring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from hipper.domain.services import PersonalAssistant, Voicemail
from hipper.domain.services.personal_assistant import PersonalAssistantException
from tests.calls.conftest import RING_SPLASH_ALERT_INFO, Exchange, expect_headers, phone, place_call, scenario, trunk

pytestmark = pytest.mark.sip

EXTERNAL = "+31612345678"
PRESS_0 = """
  <pause milliseconds="1500" />
  <nop>
    <action>
      <exec play_pcap_audio="/usr/share/sip-tester/dtmf_2833_0.pcap" />
    </action>
  </nop>
"""


def assistant(**changes: object) -> PersonalAssistant:
    values: dict[str, object] = {
        "active": True,
        "presence": "meeting",
        "until": datetime.now(UTC) + timedelta(hours=2),
        "transfer_to": EXTERNAL,
    }
    values.update(changes)
    return PersonalAssistant.model_validate(values)


async def test_pressing_0_during_the_announcement_transfers_and_the_desk_gets_a_ring_splash(
    exchange: Exchange,
) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service("bob", assistant(alert_tone=True))
    await exchange.set_service("bob", Voicemail(active=False))
    desk = await phone(
        exchange, "bob", "bob", scenario("callee_rings.xml", **expect_headers(("Alert-Info", RING_SPLASH_ALERT_INFO)))
    )
    network = await trunk(exchange, "trunk", scenario("callee_hangs_up.xml"))
    alice = await place_call(exchange, "alice", "202", "final_application.xml", keys=PRESS_0)
    await desk.succeeded()
    await network.succeeded()  # the transfer target answered, talked a second and hung up
    await alice.succeeded()  # answered by the assistant, pressed 0, connected, then got the BYE
    call = await exchange.next_call()
    assert call.answered
    assert ("forward", 200) in call.branches
    rows = await exchange.call_logs("bob")
    assert [(r.direction, r.outcome) for r in rows] == [("missed", "assistant, transferred")]
    assert rows[0].plan is not None and rows[0].plan["steps"][-1]["action"] == "personal_assistant"


async def test_without_a_key_the_announcement_plays_and_the_call_ends(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service("bob", assistant(transfer_to=None))
    await exchange.set_service("bob", Voicemail(active=False))
    alice = await place_call(exchange, "alice", "202", "final_application.xml", limit=30)
    await alice.succeeded(35)
    call = await exchange.next_call(35)
    # "The person you are calling is in a meeting until today at … " reached the caller as several seconds of RTP.
    assert call.media["caller_packets_sent"] > 150
    assert [(r.direction, r.outcome) for r in await exchange.call_logs("bob")] == [("missed", "assistant")]


async def test_a_caller_in_the_exceptions_rings_through(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202")
    await exchange.set_service("bob", assistant(exceptions=[PersonalAssistantException(name="Alice", number="201")]))
    bob = await phone(exchange, "bob", "bob", scenario("callee.xml", ring_ms=100), "-rtp_echo")
    alice = await place_call(exchange, "alice", "202", "final_talks.xml", talk_ms=1000)
    await alice.succeeded()
    await bob.succeeded()
    call = await exchange.next_call()
    assert call.answered and call.branches == [("desk", 200)]
    rows = await exchange.call_logs("bob")
    assert rows[0].plan is not None and any("exception" in note for note in rows[0].plan["notes"])
