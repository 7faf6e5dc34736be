"""Live call control from a desk phone's keys (apps/phone_control.py): re-INVITE hold from either party, REFER
blind transfer with its NOTIFYs, REFER with Replaces (attended transfer), INVITE with Replaces (call pull) — real
SIPp phones on a real exchange, judged on the SIP they see and on the audio each phone hears (a test-owned RTP
socket per phone, sending its own tone; tests/media_apps/conftest.py).

Each phone's scenario waits at each step for a *poke* — an OPTIONS the test sends into the phone's dialog — so the
steps follow the test's own checks instead of fixed pauses."""

from __future__ import annotations

import asyncio
import json
import secrets
import string
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import pytest
from sqlalchemy import select

from hipper.apps.click_to_dial import Callback
from hipper.domain.outgoing import CallerIdentity
from hipper.domain.services import SimultaneousRing
from hipper.domain.services.simultaneous_ring import SimultaneousRingTarget
from hipper.engine.call import Call
from hipper.engine.leg import Leg
from hipper.media.tones import MUSIC_ON_HOLD_NOTES
from hipper.store import admin, outbound
from hipper.store.models import Company, Event
from tests.calls.conftest import PASSWORD, Exchange, Sipp, register, start_sipp
from tests.calls.conftest import scenario as calls_scenario
from tests.calls.test_baresip import baresip_config
from tests.media_apps.conftest import SCENARIOS, Ear, answering_phone, ear, poke, settled_calls, tone, utc
from tests.sip.peers import free_udp_port, require, stop

pytestmark = pytest.mark.sip

TONES = {"alice": 500.0, "bob": 800.0, "carol": 1250.0, "alice2": 1900.0}
HOLD_NOTE = MUSIC_ON_HOLD_NOTES[1]
BOB_DIRECT = "+31201234202"
REPLY = """
  <send>
    <![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>"""
HOLD_SDP = """v=0
      o=sipp 1 {version} IN IP4 [local_ip]
      s=-
      c=IN IP4 {address}
      t=0 0
      m=audio $rtp_port RTP/AVP 8 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000
      a={direction}"""


@dataclass
class Script:
    """What a SIPp phone does once its call is answered (the `$end` of caller.xml / callee_in_dialog.xml), step by
    step: requests of its own in the dialog, and what it expects from the exchange."""

    side: Literal["caller", "callee"]
    parts: list[str] = field(default_factory=list)
    variables: list[str] = field(default_factory=list)
    cseq: int = 0
    sdp_version: int = 1

    def __post_init__(self) -> None:
        self.cseq = 2 if self.side == "caller" else 0  # caller.xml used 1 (challenged) and 2

    def _check(self, regexp: str, where: str) -> str:
        name = f"v{len(self.variables)}"
        self.variables.append(name)
        header = f' header="{where}:"' if where != "body" else ""
        search = "hdr" if where != "body" else "body"
        return f'<ereg regexp="{regexp}" search_in="{search}"{header} check_it="true" assign_to="{name}" />'

    def _dialog_lines(self, method: str, cseq: int) -> str:
        if self.side == "caller":
            return (
                f"{method} [next_url] SIP/2.0\n"
                "      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport\n"
                '      From: "SIPp" <sip:$user@[remote_ip]>;tag=[pid]caller[call_number]\n'
                "      To: <sip:[service]@[remote_ip]>[peer_tag_param]\n"
                "      Call-ID: [call_id]\n"
                f"      CSeq: {cseq} {method}\n"
                "      Contact: <sip:$user@[local_ip]:[local_port]>\n"
            )
        return (
            f"{method} [$target] SIP/2.0\n"
            "      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport\n"
            "      From: <sip:callee@[local_ip]>;tag=[pid]callee[call_number]\n"
            "      To:[$remote]\n"
            "      Call-ID: [call_id]\n"
            f"      CSeq: {cseq} {method}\n"
            "      Contact: <sip:callee@[local_ip]:[local_port]>\n"
        )

    def poke(self, capture: str = "") -> Script:
        """Wait for the test's OPTIONS (`poke`); `capture` may keep one of its headers in a variable."""
        self.parts.append(f'\n  <recv request="OPTIONS">{capture}</recv>')
        return self

    def request(
        self, method: str, headers: tuple[str, ...] = (), body: str = "", expect: int = 200, checks: str = ""
    ) -> Script:
        self.cseq += 1
        lines = self._dialog_lines(method, self.cseq) + "      Max-Forwards: 70\n"
        lines += "".join(f"      {header}\n" for header in headers)
        if body:
            lines += "      Content-Type: application/sdp\n"
        lines += "      Content-Length: [len]\n\n      " + body + "\n"
        action = f"<action>{checks}</action>" if checks else ""
        self.parts.append(
            f'\n  <send retrans="500">\n    <![CDATA[\n      {lines}\n    ]]>\n  </send>'
            f'\n  <recv response="100" optional="true" />\n  <recv response="{expect}">{action}</recv>'
        )
        if method == "INVITE":
            ack = self._dialog_lines("ACK", self.cseq).replace(";branch=[branch]", ";branch=[branch]a")
            self.parts.append(
                f"\n  <send>\n    <![CDATA[\n      {ack}      Max-Forwards: 70\n      Content-Length: 0\n\n    ]]>\n"
                "  </send>"
            )
        return self

    def reinvite(self, direction: str, answer: str, address: str = "127.0.0.1") -> Script:
        """Hold or resume: a re-INVITE offering `direction` (and `address` in c=), whose answer must match."""
        self.sdp_version += 1
        body = HOLD_SDP.format(version=self.sdp_version, address=address, direction=direction)
        return self.request("INVITE", body=body, checks=self._check(f"a={answer}", "body"))

    def refer(self, refer_to: str | None, *extra: str, expect: int = 202, checks: tuple[tuple[str, str], ...] = ()
              ) -> Script:  # fmt: skip
        headers = ((f"Refer-To: {refer_to}",) if refer_to is not None else ()) + extra
        return self.request("REFER", headers, expect=expect, checks="".join(self._check(r, w) for r, w in checks))

    def notify(self, fragment: str, state: str) -> Script:
        """Expect the exchange's NOTIFY: `Event: refer`, a message/sipfrag body starting `SIP/2.0 <fragment>`."""
        checks = (
            self._check(f"^SIP/2.0 {fragment}", "body")
            + self._check(state, "Subscription-State")
            + self._check("^ *refer", "Event")
            + self._check("message/sipfrag", "Content-Type")
        )
        self.parts.append(f'\n  <recv request="NOTIFY"><action>{checks}</action></recv>{REPLY}')
        return self

    def notify_held(self, fragment: str) -> Script:
        """Expect a NOTIFY but answer it only at `answer_held_notify` (its headers kept meanwhile)."""
        checks = self._check(f"^SIP/2.0 {fragment}", "body")
        keep = "".join(
            f'<ereg regexp=".*" search_in="hdr" header="{name}:" assign_to="held_{key}" />'
            for name, key in (("Via", "via"), ("From", "from"), ("To", "to"), ("CSeq", "cseq"))
        )
        self.variables += ["held_via", "held_from", "held_to", "held_cseq"]
        self.parts.append(f'\n  <recv request="NOTIFY"><action>{checks}{keep}</action></recv>')
        return self

    def answer_held_notify(self) -> Script:
        self.parts.append(
            "\n  <send>\n    <![CDATA[\n      SIP/2.0 200 OK\n      Via:[$held_via]\n      From:[$held_from]\n"
            "      To:[$held_to]\n      Call-ID: [call_id]\n      CSeq:[$held_cseq]\n      Content-Length: 0\n\n"
            "    ]]>\n  </send>"
        )
        return self

    def bye_received(self) -> Script:
        self.parts.append(f'\n  <recv request="BYE" />{REPLY}')
        return self

    def bye(self) -> Script:
        return self.request("BYE")

    def text(self) -> str:
        references = f'\n  <Reference variables="{",".join(self.variables)}" />' if self.variables else ""
        return "".join(self.parts) + references


@dataclass
class Phone:
    sipp: Sipp
    port: int
    ear: Ear
    call_id: str = ""  # the dialog's Call-ID, once known
    sound: float = 0.0  # the tone it sends, once `talking`


async def calling_phone(exchange: Exchange, user: str, dialled: str, script: Script, *, name: str | None = None,
                        device: str | None = None, replaces: str | None = None, limit: int = 40, **values: Any
                        ) -> Phone:  # fmt: skip
    """`user`'s phone (or their other `device`) calls `dialled` with a Call-ID of the test's choosing (its INVITE
    with a `Replaces` header when given), then does `script`; its audio runs through its own ear."""
    name = name or f"caller-{user}"
    heard = await ear()
    port = free_udp_port()
    call_id = f"{name}-{secrets.token_hex(6)}@127.0.0.1"
    values = {"user": device or user, "from_user": device or user, "rtp_port": heard.port, **values}
    end = string.Template(script.text()).safe_substitute(values)
    text = string.Template((SCENARIOS / "caller.xml").read_text()).safe_substitute({**values, "end": end})
    if replaces is not None:
        text = with_replaces(text, replaces)
    heard.sipp_logs = (exchange.workdir, name)
    sipp = await start_sipp(
        exchange, name, text, "-s", dialled, "-au", device or user, "-ap", PASSWORD, "-cid_str", call_id,
        port=port, limit=limit,
    )  # fmt: skip
    return Phone(sipp, port, heard, call_id)


def with_replaces(text: str, replaces: str) -> str:
    """A caller scenario whose INVITEs carry `Replaces: <replaces>` (RFC 3891)."""
    marker = "      Max-Forwards: 70\n      Content-Type: application/sdp"
    assert marker in text
    return text.replace(marker, f"      Replaces: {replaces}\n{marker}")


def replaces_of(exchange: Exchange, call_id: str) -> str:
    """The Replaces value naming the exchange's dialog with a phone's call `call_id`, as that phone would write it:
    to-tag is the exchange's own tag, from-tag the phone's (RFC 3891 §6.1)."""
    for (dialog_call_id_, local_tag), leg in exchange.b2bua.legs.items():
        if dialog_call_id_ == call_id and leg.dialog is not None:
            return f"{call_id};to-tag={local_tag};from-tag={leg.dialog.remote_tag}"
    raise AssertionError(f"no dialog {call_id}")


async def calling_from_trunk(exchange: Exchange, number: str, dialled: str, script: Script, limit: int = 40
                             ) -> Phone:  # fmt: skip
    """A caller from the public network (the trunk's address) calls `dialled`, then does `script`."""
    heard = await ear()
    call_id = f"trunk-{secrets.token_hex(6)}@127.0.0.1"
    values = {"user": number, "from_user": number, "rtp_port": heard.port}
    end = string.Template(script.text()).safe_substitute(values)
    text = string.Template((SCENARIOS / "trunk_caller.xml").read_text()).safe_substitute({**values, "end": end})
    heard.sipp_logs = (exchange.workdir, "trunk-caller")
    sipp = await start_sipp(
        exchange, "trunk-caller", text, "-s", dialled, "-cid_str", call_id, port=exchange.trunk_port, limit=limit
    )
    return Phone(sipp, exchange.trunk_port, heard, call_id)


async def answering(exchange: Exchange, user: str, script: Script, limit: int = 40) -> Phone:
    """`user` registers a phone that answers the next call and then does `script`."""
    heard = await ear()
    port = free_udp_port()
    await register(exchange, user, port)
    end = string.Template(script.text()).safe_substitute({"rtp_port": heard.port})
    text = string.Template((SCENARIOS / "callee_in_dialog.xml").read_text()).safe_substitute(
        {"rtp_port": heard.port, "end": end}
    )
    heard.sipp_logs = (exchange.workdir, f"callee-{user}")
    return Phone(await start_sipp(exchange, f"callee-{user}", text, port=port, limit=limit), port, heard)


async def answering_on_the_trunk(exchange: Exchange, script: Script, limit: int = 40) -> Phone:
    """The public network (the trunk's address) answers the exchange's next call out, then does `script`."""
    heard = await ear()
    end = string.Template(script.text()).safe_substitute({"rtp_port": heard.port})
    text = string.Template((SCENARIOS / "callee_in_dialog.xml").read_text()).safe_substitute(
        {"rtp_port": heard.port, "end": end}
    )
    heard.sipp_logs = (exchange.workdir, "trunk-callee")
    sipp = await start_sipp(exchange, "trunk-callee", text, port=exchange.trunk_port, limit=limit)
    return Phone(sipp, exchange.trunk_port, heard)


async def talking(phone: Phone, frequency: float) -> None:
    await phone.ear.connected()
    phone.sound = frequency
    phone.ear.keep_talking(tone(frequency, 30.0))


async def hears(phone: Phone, frequency: float, limit: float = 10.0) -> None:
    await phone.ear.wait_for_tone(frequency, limit=limit, after=len(phone.ear.audio()))


async def hear_each_other(one: Phone, other: Phone) -> None:
    """Two phones that are `talking` are connected: each hears the other's tone."""
    await hears(one, other.sound)
    await hears(other, one.sound)


async def transferred_to(target: Phone, frequency: float, party: Phone) -> None:
    """A transfer went through: its `target` (who answered) talks, and it and the transferred `party` hear each
    other."""
    await talking(target, frequency)
    await hear_each_other(party, target)


async def hangs_up(phone: Phone, *others: Phone) -> None:
    """`phone` hangs up (a poke: its script's next step is its BYE); its scenario and the others' end well."""
    await poke(phone.port, phone.call_id)
    await phone.sipp.succeeded()
    for other in others:
        await other.sipp.succeeded()


async def start_callback(exchange: Exchange, user: str, to: str) -> None:
    """The exchange rings `user`'s desk phone, then `to` (apps/click_to_dial.py; what the app's call key starts)."""
    calls = exchange.applications.app_calls
    number = {"alice": "201", "bob": "202", "carol": "203"}[user]
    identity = CallerIdentity(
        kind="extension", number=number, anonymous=False, from_user=number, from_host=None,
        from_display=user.capitalize(), privacy=None, asserted_identity=number, reason="an internal call",
    )  # fmt: skip
    targets = await calls.user_targets(exchange.users[user], "desk", None, number)
    calls.start_callback(secrets.token_hex(8), exchange.users[user], exchange.company_id, number, to, identity, targets)


async def answered_leg(exchange: Exchange, user: str, limit: float = 15.0) -> Leg:
    """The exchange's leg to `user`'s phone in an answered call or callback (the phone learns its Call-ID so)."""
    user_id = exchange.users[user]
    async with asyncio.timeout(limit):
        while True:  # polled: the B2BUA has no event for "answered"
            for call in exchange.b2bua.calls:
                if call.answered_at is not None and call.connected is not None and call.connected.user_id == user_id:
                    return call.connected
            for callback in exchange.applications.app_calls.callbacks.values():
                if callback.user_id == user_id and callback.far_leg is not None and callback.user_leg is not None:
                    return callback.user_leg
            await asyncio.sleep(0.05)


def dialog_call_id(leg: Leg) -> str:
    assert leg.dialog is not None
    return leg.dialog.call_id


@pytest.fixture
async def office(exchange: Exchange) -> AsyncIterator[Exchange]:
    await exchange.add_user("alice", "201")
    await exchange.add_user("bob", "202", direct=BOB_DIRECT)
    await exchange.add_user("carol", "203")
    yield exchange


def close(*phones: Phone) -> None:
    for phone in phones:
        phone.ear.close()


async def alice_calls_bob(exchange: Exchange, alice_script: Script, bob_script: Script) -> tuple[Phone, Phone]:
    """alice's phone calls bob (202) and his phone answers, then each does its script: both talk (each its own tone),
    bob hears alice, and bob's phone knows its dialog's Call-ID (for pokes) as alice's does. The caller `close`s
    both afterwards; a set-up that fails closes them itself."""
    bob = await answering(exchange, "bob", bob_script)
    alice = await calling_phone(exchange, "alice", "202", alice_script)
    try:
        await talking(alice, TONES["alice"])
        await talking(bob, TONES["bob"])
        await hears(bob, TONES["alice"])
        bob.call_id = dialog_call_id(await answered_leg(exchange, "bob"))
    except BaseException:
        close(alice, bob)
        raise
    return alice, bob


# -- hold ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "address", "answer"),
    [("sendonly", "127.0.0.1", "recvonly"), ("inactive", "127.0.0.1", "inactive"), ("sendrecv", "0.0.0.0", "sendrecv")],
    ids=["sendonly", "inactive", "c=0.0.0.0"],
)
async def test_a_calling_phone_holds_and_the_other_party_hears_music_until_it_resumes(
    office: Exchange, direction: str, address: str, answer: str
) -> None:
    exchange = office
    script = (
        Script("caller").poke().reinvite(direction, answer, address).poke().reinvite("sendrecv", "sendrecv")
        .poke().bye()
    )  # fmt: skip
    alice, bob = await alice_calls_bob(exchange, script, Script("callee").bye_received())
    try:
        await poke(alice.port, alice.call_id)  # hold
        await hears(bob, HOLD_NOTE)
        await poke(alice.port, alice.call_id)  # resume
        await hear_each_other(bob, alice)
        await hangs_up(alice, bob)
        await settled_calls(exchange)
        for user, direction_ in (("alice", "placed"), ("bob", "received")):
            [row] = await exchange.call_logs(user)
            assert row.direction == direction_ and row.answered_at is not None

        # alice's apps saw her phone's hold and resume, as after the app's own keys.
        def updates(events: list[dict[str, object]]) -> list[object]:
            return [e["state"] for e in events if e["type"] == "call.updated"]

        seen = updates(await events_until(exchange, "alice", lambda events: len(updates(events)) >= 2))
        assert seen[:2] == ["held", "active"]
    finally:
        close(alice, bob)


async def test_an_answering_phone_holds_and_the_caller_hears_music_until_it_resumes(office: Exchange) -> None:
    exchange = office
    script = (
        Script("callee").poke().reinvite("inactive", "inactive").poke().reinvite("sendrecv", "sendrecv")
        .bye_received()
    )  # fmt: skip
    alice, bob = await alice_calls_bob(exchange, Script("caller").poke().bye(), script)
    try:
        await poke(bob.port, bob.call_id)  # bob holds
        await hears(alice, HOLD_NOTE)
        await poke(bob.port, bob.call_id)  # bob takes the call back
        await hear_each_other(alice, bob)
        await hangs_up(alice, bob)
    finally:
        close(alice, bob)


async def test_a_callback_user_holds_from_the_phone_and_the_far_end_hears_music(office: Exchange) -> None:
    """A callback (apps/click_to_dial.py): the exchange rang bob's desk phone, then carol; bob's phone holds."""
    exchange = office
    script = (
        Script("callee").poke().reinvite("sendonly", "recvonly").poke().reinvite("sendrecv", "sendrecv").poke()
        .bye()
    )  # fmt: skip
    bob = await answering(exchange, "bob", script)
    carol_ear = await ear()
    carol = Phone(await answering_phone(exchange, "carol", carol_ear), 0, carol_ear)
    try:
        await start_callback(exchange, "bob", "203")
        leg = await answered_leg(exchange, "bob")
        # The callback is a call of the engine's whose first step rang bob's phone (apps/click_to_dial.py).
        assert isinstance(leg.call, Call) and isinstance(leg.call.first, Callback)
        bob.call_id = dialog_call_id(leg)
        await talking(bob, TONES["bob"])
        await talking(carol, TONES["carol"])
        await hears(carol, TONES["bob"])
        await poke(bob.port, bob.call_id)
        await hears(carol, HOLD_NOTE)
        await poke(bob.port, bob.call_id)
        await hear_each_other(carol, bob)
        await hangs_up(bob, carol)
        await settled_calls(exchange)
        [row] = await exchange.call_logs("bob")  # the callback's one row; carol's call wrote hers
        assert row.direction == "placed" and row.answered_at is not None
        assert len(await exchange.call_logs("carol")) == 1
    finally:
        close(bob, carol)


# -- REFER: blind transfer -------------------------------------------------------------------------------------


async def test_refer_transfers_the_other_party_to_the_target_with_notify_progress(office: Exchange) -> None:
    """alice called bob; her phone's transfer key sends REFER to carol (203): 202, NOTIFY 100 Trying, her leg
    released, NOTIFY 200 OK once carol answers; bob and carol talk (and when bob holds, carol hears the music);
    carol saw bob's number."""
    exchange = office
    script = (
        Script("caller").poke().refer("<sip:203@127.0.0.1>").notify("100 Trying", "^ *active")
        .bye_received().notify("200 OK", "^ *terminated")
    )  # fmt: skip
    carol = await answering(exchange, "carol", Script("callee").bye_received())
    bob_script = (
        Script("callee").poke().reinvite("sendonly", "recvonly").poke().reinvite("sendrecv", "sendrecv").poke().bye()
    )  # fmt: skip
    alice, bob = await alice_calls_bob(exchange, script, bob_script)
    try:
        await poke(alice.port, alice.call_id)  # the transfer key
        await alice.sipp.succeeded()
        await transferred_to(carol, TONES["carol"], bob)
        await poke(bob.port, bob.call_id)  # bob holds: carol, now his other party, hears the music
        await hears(carol, HOLD_NOTE)
        await poke(bob.port, bob.call_id)
        await hears(carol, TONES["bob"])
        await hangs_up(bob, carol)  # bob hangs up: carol gets her BYE
        await settled_calls(exchange)
        [alice_row] = await exchange.call_logs("alice")
        [bob_row] = await exchange.call_logs("bob")
        [carol_row] = await exchange.call_logs("carol")
        assert (alice_row.direction, bob_row.direction, carol_row.direction) == ("placed", "received", "received")
        assert all(row.answered_at is not None for row in (alice_row, bob_row, carol_row))
        assert carol_row.remote_number == "202"  # the transferred party, not alice
        # alice's app hears that the call left her (apps/call_control.py publishes it, as for the app's own key).
        await events_until(exchange, "alice", lambda events: {"type": "call.updated", "state": "ended"} in events)
    finally:
        close(alice, bob, carol)


async def test_an_answering_desk_phone_transfers_its_incoming_call(office: Exchange) -> None:
    """The usual office case: bob answered alice's call and transfers her to carol with his phone's key (the REFER
    in the dialog the exchange started); an unknown extension first gets NOTIFY 404 and changes nothing."""
    exchange = office
    script = (
        Script("callee").poke().refer("<sip:299@127.0.0.1>").notify("100 Trying", "^ *active")
        .notify("404 ", "^ *terminated").poke().refer("<sip:203@127.0.0.1>").notify("100 Trying", "^ *active")
        .bye_received().notify("200 OK", "^ *terminated")
    )  # fmt: skip
    carol = await answering(exchange, "carol", Script("callee").bye_received())
    alice, bob = await alice_calls_bob(exchange, Script("caller").poke().bye(), script)
    try:
        await poke(bob.port, bob.call_id)  # to 299: nobody
        await wait_for_log(exchange, "callee-bob", "NOTIFY", "404 ")
        await hears(alice, TONES["bob"])
        await poke(bob.port, bob.call_id)  # to carol
        await bob.sipp.succeeded()
        await transferred_to(carol, TONES["carol"], alice)
        await hangs_up(alice, carol)
        await settled_calls(exchange)
        [carol_row] = await exchange.call_logs("carol")
        assert (carol_row.direction, carol_row.remote_number) == ("received", "201")  # she saw alice
        assert [r.direction for r in await exchange.call_logs("bob")] == ["received"]
    finally:
        close(alice, bob, carol)


OUTSIDE = "+31612345678"


async def test_a_transfer_out_through_the_trunk_is_logged_for_the_user_who_pays_for_it(office: Exchange) -> None:
    """bob answered alice's call and transfers her to an outside number: his row of her call ends at the transfer
    and says so (its duration is his part), and the leg out through the trunk — placed on his account — is a row
    of his own with its answer, so its cost is visible."""
    exchange = office
    script = (
        Script("callee").poke().refer(f"<sip:{OUTSIDE}@127.0.0.1>").notify("100 Trying", "^ *active")
        .bye_received().notify("200 OK", "^ *terminated")
    )  # fmt: skip
    outside = await answering_on_the_trunk(exchange, Script("callee").bye_received())
    alice, bob = await alice_calls_bob(exchange, Script("caller").poke().bye(), script)
    try:
        await poke(bob.port, bob.call_id)  # the transfer key
        await wait_for_log(exchange, "callee-bob", "BYE sip:")
        transferred_at = datetime.now(UTC)  # bob's leg got its BYE: he is off the call
        await transferred_to(outside, TONES["carol"], alice)
        await bob.sipp.succeeded()
        await hangs_up(alice, outside)  # alice hangs up: the outside party gets BYE
        await settled_calls(exchange)
        [alice_row] = await exchange.call_logs("alice")
        received, placed = await exchange.call_logs("bob")
        assert (received.direction, received.remote_number) == ("received", "201")
        assert received.outcome == "answered, transferred"
        assert utc(received.ended_at) <= transferred_at
        assert utc(alice_row.ended_at) > transferred_at  # her call went on
        assert (placed.direction, placed.remote_number, placed.outcome) == ("placed", OUTSIDE, "transfer, answered")
        assert utc(placed.answered_at) >= utc(received.answered_at) and utc(placed.ended_at) > transferred_at
    finally:
        close(alice, bob, outside)


async def test_a_callback_user_transfers_the_far_end_from_the_phone(office: Exchange) -> None:
    """A callback (the exchange rang bob's desk phone, then carol): bob's phone REFERs carol to alice."""
    exchange = office
    script = (
        Script("callee").poke().refer("<sip:201@127.0.0.1>").notify("100 Trying", "^ *active").bye_received()
        .notify("200 OK", "^ *terminated")
    )  # fmt: skip
    bob = await answering(exchange, "bob", script)
    carol = await answering(exchange, "carol", Script("callee").bye_received())
    alice = await answering(exchange, "alice", Script("callee").poke().bye())
    try:
        await start_callback(exchange, "bob", "203")
        leg = await answered_leg(exchange, "bob")
        bob.call_id = dialog_call_id(leg)
        await talking(bob, TONES["bob"])
        await talking(carol, TONES["carol"])
        await hears(carol, TONES["bob"])
        await poke(bob.port, bob.call_id)
        await bob.sipp.succeeded()
        await transferred_to(alice, TONES["alice"], carol)
        alice.call_id = dialog_call_id(await answered_leg(exchange, "alice"))
        await hangs_up(alice, carol)  # alice hangs up: carol gets her BYE
        await settled_calls(exchange)
        [bob_row] = await exchange.call_logs("bob")
        assert (bob_row.direction, bob_row.outcome) == ("placed", "callback, answered, transferred")
        [carol_row] = await exchange.call_logs("carol")
        assert bob_row.ended_at is not None and carol_row.ended_at is not None
        assert bob_row.ended_at < carol_row.ended_at  # his part ended at the transfer; carol talked on with alice
        assert [r.direction for r in await exchange.call_logs("alice")] == ["received"]
        assert carol_row.direction == "received"
    finally:
        close(alice, bob, carol)


async def test_refer_to_a_barred_number_is_notified_403_and_the_call_stays(office: Exchange) -> None:
    """A transfer out through the trunk is the user's own call: premium numbers are barred by default."""
    exchange = office
    script = (
        Script("caller").poke().refer("<sip:09001234567@127.0.0.1>").notify("100 Trying", "^ *active")
        .notify("403 ", "^ *terminated").poke().bye()
    )  # fmt: skip
    alice, bob = await alice_calls_bob(exchange, script, Script("callee").bye_received())
    try:
        await poke(alice.port, alice.call_id)
        await wait_for_log(exchange, "alice", "NOTIFY", "403 ")
        await hear_each_other(bob, alice)  # unchanged: still alice
        await hangs_up(alice, bob)
        await settled_calls(exchange)
        assert [r.direction for r in await exchange.call_logs("alice")] == ["placed"]
        assert [r.direction for r in await exchange.call_logs("bob")] == ["received"]
    finally:
        close(alice, bob)


# The company's hunt group in Brussels: a number abroad (from NL), yet inside the exchange.
HUNT_GROUP_ABROAD = "+3225550100"


async def hunt_group_abroad(exchange: Exchange, member: str, barred_user: str) -> None:
    """A hunt group numbered abroad whose one member is `member`; `barred_user` may not call abroad."""
    async with exchange.sessions() as session:
        company = await session.get(Company, exchange.company_id)
        assert company is not None
        await admin.create_hunt_group(
            session, company, "Brussels desk", number=HUNT_GROUP_ABROAD, member_user_ids=[exchange.users[member]]
        )
        await outbound.set_policy(
            session, user_id=exchange.users[barred_user], barred=["international"], prefixes=[], max_calls=None
        )
        await session.commit()


async def test_refer_to_a_number_inside_the_exchange_is_not_barred(office: Exchange) -> None:
    """A hunt group's number is no call out, whatever its country code: alice, who may not call abroad, transfers
    bob to the company's Brussels hunt group (carol answers) — as the app's transfer key does
    (tests/media_apps/test_live_call_control.py: both ask apps/call_control.CallControl.target)."""
    exchange = office
    await hunt_group_abroad(exchange, "carol", "alice")
    script = (
        Script("caller").poke().refer(f"<sip:{HUNT_GROUP_ABROAD}@127.0.0.1>").notify("100 Trying", "^ *active")
        .bye_received().notify("200 OK", "^ *terminated")
    )  # fmt: skip
    carol = await answering(exchange, "carol", Script("callee").bye_received())
    alice, bob = await alice_calls_bob(exchange, script, Script("callee").poke().bye())
    try:
        await poke(alice.port, alice.call_id)  # the transfer key
        await alice.sipp.succeeded()
        await transferred_to(carol, TONES["carol"], bob)
        await hangs_up(bob, carol)
    finally:
        close(alice, bob, carol)


async def test_bad_refers_get_their_4xx_and_leave_the_call_as_it_was(office: Exchange) -> None:
    """No Refer-To, a non-SIP one, a malformed one: 400 / 416 / 400; a second REFER while the first runs: 491.
    Then `Refer-Sub: false` (RFC 4488): 202 saying so, and no NOTIFY at all."""
    exchange = office
    script = (
        Script("caller").poke()
        .refer(None, expect=400)
        .refer("<tel:+31201234203>", expect=416)
        .refer("<sip:203@127.0.0.1", expect=400)
        .refer("<sip:203@127.0.0.1>").notify_held("100 Trying")
        .refer("<sip:203@127.0.0.1>", expect=491).answer_held_notify()
        .bye_received().notify("200 OK", "^ *terminated")
    )  # fmt: skip
    carol = await answering(exchange, "carol", Script("callee").bye_received())
    alice, bob = await alice_calls_bob(exchange, script, Script("callee").poke().bye())
    try:
        await poke(alice.port, alice.call_id)
        await alice.sipp.succeeded()
        await transferred_to(carol, TONES["carol"], bob)
        await hangs_up(bob, carol)
    finally:
        close(alice, bob, carol)


async def test_refer_sub_false_is_honoured(office: Exchange) -> None:
    exchange = office
    script = (
        Script("caller").poke()
        .refer("<sip:203@127.0.0.1>", "Refer-Sub: false", checks=(("^ *false", "Refer-Sub"),))
        .bye_received()
    )  # fmt: skip
    carol = await answering(exchange, "carol", Script("callee").bye_received())
    alice, bob = await alice_calls_bob(exchange, script, Script("callee").poke().bye())
    try:
        await poke(alice.port, alice.call_id)
        await alice.sipp.succeeded()  # a NOTIFY would have been an unexpected message
        await transferred_to(carol, TONES["carol"], bob)
        await hangs_up(bob, carol)
    finally:
        close(alice, bob, carol)


async def test_a_refer_from_an_outside_caller_is_refused(office: Exchange) -> None:
    """Only the user's own phone transfers: a caller from the public network gets 403 and stays connected."""
    exchange = office
    script = Script("caller").poke().refer("<sip:203@127.0.0.1>", expect=403).poke().bye()
    bob = await answering(exchange, "bob", Script("callee").bye_received())
    outside = await calling_from_trunk(exchange, "+31612345678", BOB_DIRECT, script)
    try:
        await talking(outside, TONES["alice"])
        await talking(bob, TONES["bob"])
        await hears(bob, TONES["alice"])
        await poke(outside.port, outside.call_id)
        await wait_for_log(exchange, "trunk", "403")
        await hears(bob, TONES["alice"])
        await hangs_up(outside, bob)
    finally:
        close(outside, bob)


# -- whose phone: a colleague's phone rung for the user acts for nobody but the colleague ------------------------

UK_NUMBER = "+441632960123"  # international from NL: bob may call it, carol is barred from it


async def colleague_answers_for_bob(exchange: Exchange, alice_script: Script, carol_script: Script
                                    ) -> tuple[Phone, Phone]:  # fmt: skip
    """bob's simultaneous ring rings carol's desk phone (bob has no phone of his own registered); alice calls bob,
    carol's phone answers: the call is bob's (his plan, his row), the phone is carol's. carol may not call abroad,
    bob may."""
    await exchange.set_service("bob", SimultaneousRing(active=True, targets=[SimultaneousRingTarget(number="203")]))
    async with exchange.sessions() as session:
        await outbound.set_policy(
            session, user_id=exchange.users["carol"], barred=["international"], prefixes=[], max_calls=None
        )
        await session.commit()
    carol = await answering(exchange, "carol", carol_script)
    alice = await calling_phone(exchange, "alice", "202", alice_script)
    await talking(alice, TONES["alice"])
    await talking(carol, TONES["carol"])
    await hears(carol, TONES["alice"])
    leg = await answered_leg(exchange, "bob")  # the call is bob's; its answered leg reaches carol's phone
    assert leg.device_user_id == exchange.users["carol"]
    carol.call_id = dialog_call_id(leg)
    return alice, carol


async def test_a_refer_from_a_colleagues_phone_rung_for_the_user_is_refused(office: Exchange) -> None:
    """Toll fraud: carol's phone, rung by bob's simultaneous ring, must not transfer on bob's account — its REFER
    to a number bob may call but carol may not gets 403 and the call stays as it was."""
    exchange = office
    script = Script("callee").poke().refer(f"<sip:{UK_NUMBER}@127.0.0.1>", expect=403).poke().bye()
    alice, carol = await colleague_answers_for_bob(exchange, Script("caller").bye_received(), script)
    try:
        await poke(carol.port, carol.call_id)  # carol's transfer key
        await wait_for_log(exchange, "callee-carol", "SIP/2.0 403")
        await hear_each_other(alice, carol)  # unchanged: still alice and carol
        await hangs_up(carol, alice)  # carol hangs up
        await settled_calls(exchange)
        [bob_row] = await exchange.call_logs("bob")  # the call was bob's, and nothing went out on his account
        assert (bob_row.direction, bob_row.remote_number) == ("received", "201")
        assert [r.direction for r in await exchange.call_logs("alice")] == ["placed"]
    finally:
        close(alice, carol)


async def test_invite_with_replaces_naming_a_colleagues_phone_is_refused(office: Exchange) -> None:
    """The same for a pull: bob's own device may not take over the call from carol's phone (it is not bob's
    phone, though the call is his): 403, and alice and carol talk on."""
    exchange = office
    alice, carol = await colleague_answers_for_bob(
        exchange, Script("caller").poke().bye(), Script("callee").bye_received()
    )
    try:
        replaces = replaces_of(exchange, carol.call_id)
        text = with_replaces(calls_scenario("caller.xml", final="final_rejected.xml", user="bob", status=403), replaces)
        intruder = await start_sipp(exchange, "bob-pulls", text, "-s", "202", "-au", "bob", "-ap", PASSWORD)
        await intruder.succeeded()
        await hear_each_other(alice, carol)  # the call is as it was
        await hangs_up(alice, carol)
    finally:
        close(alice, carol)


async def wait_for_log(exchange: Exchange, name: str, *texts: str, limit: float = 10.0) -> None:
    """Wait until a SIPp phone's message log shows `texts` (in one message): it got that far in its scenario."""
    async with asyncio.timeout(limit):
        while True:  # polled: SIPp writes its log as it goes, with nothing to wait on
            for log in exchange.workdir.glob(f"*{name}*_messages.log"):
                messages = log.read_text(errors="replace").split("-----------------------------------------------")
                if any(all(text in message for text in texts) for message in messages):
                    return
            await asyncio.sleep(0.05)


async def events_of(exchange: Exchange, name: str) -> list[dict[str, object]]:
    """The user's outbox events (what their apps are told), as type plus the payload's state."""
    async with exchange.sessions() as session:
        rows = await session.execute(select(Event).where(Event.user_id == exchange.users[name]).order_by(Event.id))
        return [{"type": row.type, "state": row.payload.get("state")} for row in rows.scalars()]


async def events_until(
    exchange: Exchange, name: str, done: Callable[[list[dict[str, object]]], bool], limit: float = 10.0
) -> list[dict[str, object]]:
    """The user's outbox events once `done` holds for them: call events are written through the batch writer,
    after the call that sent them may already be gone."""
    async with asyncio.timeout(limit):
        while not done(events := await events_of(exchange, name)):  # noqa: ASYNC110 - rows the writer commits
            await asyncio.sleep(0.05)
    return events


# -- REFER with Replaces: attended transfer ------------------------------------------------------------------------

CAPTURE_REPLACES = '<action><ereg regexp="[^ ]+" search_in="hdr" header="X-Replaces:" assign_to="replaces" /></action>'


async def test_refer_with_replaces_connects_the_two_other_parties(office: Exchange) -> None:
    """alice's desk phone: a call to bob, put on hold; a second call to carol; then the transfer key sends REFER on
    bob's dialog with Refer-To carrying Replaces for the carol dialog: bob and carol talk, both of alice's legs are
    released, NOTIFY 200."""
    exchange = office
    first = (
        Script("caller").poke().reinvite("sendonly", "recvonly").poke(CAPTURE_REPLACES)
        .refer("<sip:203@127.0.0.1?Replaces=[$replaces]>").notify("100 Trying", "^ *active").bye_received()
        .notify("200 OK", "^ *terminated")
    )  # fmt: skip
    carol = await answering(exchange, "carol", Script("callee").bye_received())
    alice, bob = await alice_calls_bob(exchange, first, Script("callee").poke().bye())
    consultation: Phone | None = None
    try:
        await poke(alice.port, alice.call_id)  # hold
        await hears(bob, HOLD_NOTE)
        consultation = await calling_phone(exchange, "alice", "203", Script("caller").bye_received(), name="alice2")
        await talking(consultation, TONES["alice2"])
        await talking(carol, TONES["carol"])
        await hears(carol, TONES["alice2"])
        replaces = quote(replaces_of(exchange, consultation.call_id), safe="")
        await poke(alice.port, alice.call_id, f"X-Replaces: {replaces}")  # the transfer key
        await alice.sipp.succeeded()
        await consultation.sipp.succeeded()  # its leg got BYE too
        await hear_each_other(bob, carol)
        await hangs_up(bob, carol)  # bob hangs up: carol, on the other call, gets BYE
        await settled_calls(exchange)
        assert [r.direction for r in await exchange.call_logs("alice")] == ["placed", "placed"]
        assert [r.direction for r in await exchange.call_logs("bob")] == ["received"]
        assert [r.direction for r in await exchange.call_logs("carol")] == ["received"]
        ended = {"type": "call.updated", "state": "ended"}
        events = await events_until(exchange, "alice", lambda events: events.count(ended) >= 2)
        assert events.count(ended) == 2  # both of alice's calls left her
    finally:
        close(*(p for p in (alice, bob, carol, consultation) if p is not None))


async def test_an_attended_transfer_to_an_outside_call_keeps_its_cost_on_the_users_log(office: Exchange) -> None:
    """alice's desk phone: bob on hold, a second call out through the trunk, then REFER with Replaces: bob and the
    outside party talk on over alice's call out. Her two rows end at the transfer (her part, "transferred"); the
    call out goes on on her account, so a third row of hers runs from the transfer to its end."""
    exchange = office
    first = (
        Script("caller").poke().reinvite("sendonly", "recvonly").poke(CAPTURE_REPLACES)
        .refer("<sip:203@127.0.0.1?Replaces=[$replaces]>").notify("100 Trying", "^ *active").bye_received()
        .notify("200 OK", "^ *terminated")
    )  # fmt: skip
    outside = await answering_on_the_trunk(exchange, Script("callee").bye_received())
    alice, bob = await alice_calls_bob(exchange, first, Script("callee").poke().bye())
    consultation: Phone | None = None
    try:
        await poke(alice.port, alice.call_id)  # hold
        await hears(bob, HOLD_NOTE)
        consultation = await calling_phone(exchange, "alice", OUTSIDE, Script("caller").bye_received(), name="alice2")
        await talking(consultation, TONES["alice2"])
        await talking(outside, TONES["carol"])
        await hears(outside, TONES["alice2"])
        replaces = quote(replaces_of(exchange, consultation.call_id), safe="")
        await poke(alice.port, alice.call_id, f"X-Replaces: {replaces}")  # the transfer key
        await alice.sipp.succeeded()
        await consultation.sipp.succeeded()
        transferred_at = datetime.now(UTC)  # both of alice's legs got their BYE
        await hear_each_other(bob, outside)
        await hangs_up(bob, outside)  # bob hangs up: the outside party, on the other call, gets BYE
        await settled_calls(exchange)
        to_bob, out, rest = await exchange.call_logs("alice")
        assert (to_bob.remote_number, to_bob.outcome) == ("202", "answered, transferred")
        assert (out.remote_number, out.outcome) == (OUTSIDE, "answered, transferred")
        assert utc(to_bob.ended_at) <= transferred_at and utc(out.ended_at) <= transferred_at
        assert (rest.direction, rest.remote_number, rest.outcome) == ("placed", OUTSIDE, "transfer, answered")
        assert utc(rest.answered_at) == utc(out.ended_at) and utc(rest.ended_at) > transferred_at
    finally:
        close(*(p for p in (alice, bob, outside, consultation) if p is not None))


async def test_refer_with_replaces_naming_no_call_is_notified_481_and_the_call_stays(office: Exchange) -> None:
    exchange = office
    script = (
        Script("caller").poke()
        .refer("<sip:203@127.0.0.1?Replaces=nothing%40here%3Bto-tag%3Da%3Bfrom-tag%3Db>")
        .notify("100 Trying", "^ *active").notify("481 ", "^ *terminated").poke().bye()
    )  # fmt: skip
    alice, bob = await alice_calls_bob(exchange, script, Script("callee").bye_received())
    try:
        await poke(alice.port, alice.call_id)
        await wait_for_log(exchange, "caller-alice", "NOTIFY", "481 ")
        await hear_each_other(bob, alice)
        await hangs_up(alice, bob)
    finally:
        close(alice, bob)


# -- INVITE with Replaces: call pull -------------------------------------------------------------------------------


async def test_invite_with_replaces_from_the_users_other_device_takes_the_call_over(office: Exchange) -> None:
    exchange = office
    await exchange.add_device("alice", "alice-desk2")
    alice, bob = await alice_calls_bob(exchange, Script("caller").bye_received(), Script("callee").poke().bye())
    other: Phone | None = None
    try:
        pulled = Script("caller").poke().reinvite("inactive", "inactive").poke().reinvite("sendrecv", "sendrecv")
        other = await calling_phone(
            exchange, "alice", "202", pulled.bye_received(), name="alice2", device="alice-desk2",
            replaces=replaces_of(exchange, alice.call_id),
        )  # fmt: skip
        await alice.sipp.succeeded()  # the old leg got BYE
        [listed] = exchange.applications.app_calls.live(exchange.users["alice"])  # still one call to the app
        assert listed.direction == "outgoing" and listed.remote_number == "202"
        await transferred_to(other, TONES["alice2"], bob)
        await poke(other.port, other.call_id)  # the new device holds the call it took over: music for bob
        await hears(bob, HOLD_NOTE)
        await poke(other.port, other.call_id)
        await hears(bob, TONES["alice2"])
        await hangs_up(bob, other)  # bob hangs up: the new device gets BYE
        await settled_calls(exchange)
        [alice_row] = await exchange.call_logs("alice")  # one call, one row, though two devices had it
        [bob_row] = await exchange.call_logs("bob")
        assert (alice_row.direction, bob_row.direction) == ("placed", "received")
    finally:
        close(*(p for p in (alice, bob, other) if p is not None))


@pytest.mark.parametrize(
    ("who", "status"), [("carol", 403), ("alice", 481)], ids=["someone-elses-call", "no-such-call"]
)
async def test_invite_with_replaces_for_a_call_not_yours_is_refused_and_changes_nothing(
    office: Exchange, who: str, status: int
) -> None:
    exchange = office
    alice, bob = await alice_calls_bob(exchange, Script("caller").poke().bye(), Script("callee").bye_received())
    try:
        replaces = replaces_of(exchange, alice.call_id) if who == "carol" else "gone@x;to-tag=a;from-tag=b"
        text = with_replaces(
            calls_scenario("caller.xml", final="final_rejected.xml", user=who, status=status), replaces
        )
        intruder = await start_sipp(exchange, f"intruder-{who}", text, "-s", "202", "-au", who, "-ap", PASSWORD)
        await intruder.succeeded()
        await hear_each_other(bob, alice)  # the call is as it was
        await hangs_up(alice, bob)
    finally:
        close(alice, bob)


# -- a real softphone ----------------------------------------------------------------------------------------------

BARESIP_TONE = 440.0  # what tests/calls/test_baresip.baresip_config makes it send


async def baresip_command(port: int, command: str, params: str) -> dict[str, object]:
    """One command over baresip's ctrl_tcp (JSON in netstrings); its answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        payload = json.dumps({"command": command, "params": params, "token": "t1"})
        writer.write(f"{len(payload)}:{payload},".encode())
        await writer.drain()
        async with asyncio.timeout(10):
            while True:
                length = int((await reader.readuntil(b":"))[:-1])
                answer = json.loads((await reader.readexactly(length + 1))[:-1])
                if answer.get("response"):
                    return dict(answer)
    finally:
        writer.close()


async def test_baresip_transfers_a_call_with_its_transfer_command(office: Exchange, tmp_path: Path) -> None:
    """baresip (bob's softphone, auto-answering) takes alice's call, and its `transfer` command sends REFER to
    carol: alice and carol talk, bob's softphone is released."""
    exchange = office
    baresip = require("baresip")
    config = tmp_path / "baresip"
    baresip_config(config, free_udp_port(), exchange.port, "bob")
    control = free_udp_port()
    with (config / "config").open("a") as extra:
        extra.write(f"module_app ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:{control}\n")
    output = (tmp_path / "baresip.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        baresip, "-f", str(config), "-t", "40",
        stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    carol = await answering(exchange, "carol", Script("callee").bye_received())
    alice: Phone | None = None
    try:
        async with asyncio.timeout(10):
            while not await exchange.registrations("bob"):  # noqa: ASYNC110 - polling the database
                await asyncio.sleep(0.1)
        alice = await calling_phone(exchange, "alice", "202", Script("caller").poke().bye())
        await talking(alice, TONES["alice"])
        await hears(alice, BARESIP_TONE)
        answer = await baresip_command(control, "transfer", f"sip:203@127.0.0.1:{exchange.port}")
        assert answer.get("ok") is True, answer
        await transferred_to(carol, TONES["carol"], alice)
        await hangs_up(alice, carol)
        await settled_calls(exchange)
        [carol_row] = await exchange.call_logs("carol")
        assert (carol_row.direction, carol_row.remote_number) == ("received", "201")
        assert [r.direction for r in await exchange.call_logs("bob")] == ["received"]
    finally:
        await stop(process)
        output.close()
        close(*(p for p in (alice, carol) if p is not None))
    log = (tmp_path / "baresip.log").read_text(errors="replace")
    assert "transferring call to sip:203@" in log, log[-2000:]
