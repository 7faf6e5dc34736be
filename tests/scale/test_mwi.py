"""MWI across nodes (issue 9 item 5, docs/scale-out.md): with `mwi_unsolicited`, every node reads each voicemail
change from the outbox, yet one node sends the unsolicited NOTIFY; and a phone subscribed on node A gets no
unsolicited NOTIFY from node B (subscriptions are rows in the shared store)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import string
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from hipper.media.tones import sine
from hipper.media.wavfile import write_wav
from hipper.store import voicemails
from hipper.store.models import Event
from tests.calls.conftest import PASSWORD, Exchange, Sipp, register, start_sipp
from tests.calls.test_two_nodes import Nodes, nodes
from tests.media_apps.conftest import SCENARIOS
from tests.media_apps.test_mwi import notifies_seen, subscriber
from tests.sip.peers import free_udp_port

pytestmark = [pytest.mark.sip, pytest.mark.postgres]

__all__ = ["nodes"]  # the fixture: two exchanges on one PostgreSQL database


async def deposit(exchange: Exchange, name: str) -> int:
    """A voicemail for the user; the id of its outbox event."""
    wav = exchange.workdir / "m.wav"
    write_wav(wav, sine(440.0, 1.0))
    async with exchange.sessions() as session:
        await voicemails.deposit(
            session, exchange.settings.data_dir, exchange.users[name], wav.read_bytes(), received_at=datetime.now(UTC)
        )
        return int((await session.execute(select(func.max(Event.id)))).scalar_one())


async def dealt_with(nodes: Nodes, event_id: int) -> None:
    """Until both nodes have sent what they send for the event."""
    async with asyncio.timeout(10):
        while min(n.applications.mwi.position for n in (nodes.a, nodes.b)) < event_id:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_one_node_sends_each_unsolicited_notify(nodes: Nodes) -> None:
    for node in (nodes.a, nodes.b):
        node.settings.mwi_unsolicited = True
    await nodes.add_user("bob", "202")
    port = free_udp_port()
    await register(nodes.a, "bob", port)
    phone = await lingering_phone(nodes.a, "mwi-phone", port)
    try:
        first = await deposit(nodes.a, "bob")
        await dealt_with(nodes, first)  # both nodes read it: each would have sent its NOTIFY by now
        await deposit(nodes.b, "bob")
        # The second deposit's NOTIFY left after every NOTIFY for the first one: once it is in, all of those are.
        async with asyncio.timeout(10):
            while not notifies(nodes.a, "2/0"):  # noqa: ASYNC110 - SIPp's message log is its only output
                await asyncio.sleep(0.05)
        assert len(notifies(nodes.a, "1/0")) == 1
        assert len(notifies(nodes.a, "2/0")) == 1
    finally:
        with contextlib.suppress(TimeoutError):
            await phone.result(0.1)


async def lingering_phone(exchange: Exchange, name: str, port: int) -> Sipp:
    """A registered phone that answers the first NOTIFY and stays up until stopped; SIPp logs every NOTIFY that
    reaches it, also those of other Call-IDs, which it does not answer."""
    step = string.Template((SCENARIOS / "mwi_notify.xml").read_text()).safe_substitute(regexp="Voice-Message", n=0)
    text = string.Template((SCENARIOS / "mwi_unsolicited.xml").read_text()).safe_substitute(
        notifies=step + '\n  <pause milliseconds="30000" />'
    )
    return await start_sipp(exchange, name, text, port=port)


def notifies(exchange: Exchange, counts: str, sipp: str = "mwi-phone") -> set[str]:
    """The Call-IDs of the NOTIFYs SIPp `sipp` received saying `Voice-Message: <counts>` (any: ""), each once."""
    calls = set()
    for log in exchange.workdir.glob(f"{sipp}_*_messages.log"):
        for block in log.read_text(errors="replace").split("-----------------------------------------------"):
            if "\nNOTIFY sip:" in block and f"Voice-Message: {counts}" in block:
                found = re.search(r"^Call-ID: *(\S+)", block, re.MULTILINE)
                if found:
                    calls.add(found[1])
    return calls


async def test_a_phone_subscribed_on_node_a_gets_no_unsolicited_notify_from_node_b(nodes: Nodes) -> None:
    for node in (nodes.a, nodes.b):
        node.settings.mwi_unsolicited = True
    await nodes.add_user("bob", "202")
    port = free_udp_port()
    await register(nodes.a, "bob", port)
    other = free_udp_port()  # another contact of Bob's that would get unsolicited NOTIFYs, listening throughout
    await register(nodes.a, "bob", other)
    observer = await lingering_phone(nodes.a, "mwi-other", other)
    expected = [r"Voice-Message: 0/0 ", r"Messages-Waiting: yes.*Voice-Message: 1/0 "]
    sipp = await start_sipp(nodes.a, "mwi", subscriber("bob", expected), "-au", "bob", "-ap", PASSWORD, port=port)
    await notifies_seen(nodes.a.workdir, "mwi", 1)  # subscribed: its row is in the shared store
    event = await deposit(nodes.b, "bob")
    await dealt_with(nodes, event)
    await sipp.succeeded(20)
    # Every NOTIFY went to the subscription: none out of dialog, from either node, to any of Bob's contacts.
    assert len(notifies(nodes.a, "", "mwi")) == 1
    assert not notifies(nodes.a, "", "mwi-other")
    with contextlib.suppress(TimeoutError):
        await observer.result(0.1)
