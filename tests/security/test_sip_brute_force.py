"""SIP brute force (issue 11, medium): no account enumeration, bans per source and per account, a log line and a
metric per failure."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from hipper.sip.message import Response
from tests.security.calls_support import still_serves
from tests.security.conftest import (
    PASSWORD,
    Exchange,
    RawClient,
    answer,
    attacker,
    final,
    register_text,
)

pytestmark = pytest.mark.sip


async def try_password(exchange: Exchange, client: RawClient, user: str, password: str, cseq: int) -> Response:
    """REGISTER as `user`, answer the 401 with `password`: what one guess costs a guesser."""
    client.send(register_text(port=exchange.port, client_port=client.port, user=user, cseq=cseq), exchange.port)
    challenge = await final(client)
    assert challenge.status == 401, challenge
    auth = answer(challenge, uri=f"sip:127.0.0.1:{exchange.port}", method="REGISTER", user=user, password=password)
    text = register_text(port=exchange.port, client_port=client.port, user=user, cseq=cseq + 1, authorization=auth)
    client.send(text, exchange.port)
    return await final(client)


def failures(reason: str) -> float:
    return REGISTRY.get_sample_value("hipper_sip_auth_failures_total", {"method": "REGISTER", "reason": reason}) or 0.0


async def test_an_unknown_user_is_answered_like_a_wrong_password(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    async with attacker("127.0.0.2") as guesser:
        answers = []
        for cseq, user in ((1, "alice"), (3, "ghost")):
            guesser.send(
                register_text(port=exchange.port, client_port=guesser.port, user=user, cseq=cseq), exchange.port
            )
            challenge = await final(guesser)
            refused = await try_password(exchange, guesser, user, "guess-1", cseq + 10)
            answers.append((challenge.status, challenge.reason, refused.status, refused.reason))
        assert answers[0] == answers[1] == (401, "Unauthorized", 403, "Wrong credentials")
    await still_serves(exchange)


@pytest.mark.parametrize("exchange", [{"sip_auth_source_failures": 5, "sip_auth_ban_seconds": 60}], indirect=True)
async def test_a_guessing_source_is_banned_and_each_failure_is_logged_and_counted(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    await exchange.add_user("alice", "201")
    before = failures("password")
    caplog.set_level(logging.WARNING, logger="hipper.sip.guard")
    async with attacker("127.0.0.2") as guesser:
        for attempt in range(5):
            refused = await try_password(exchange, guesser, "alice", f"guess-{attempt}", 1 + 2 * attempt)
            assert refused.status == 403
        # Banned: even the next challenge is not sent (dropped like a firewall would).
        guesser.send(register_text(port=exchange.port, client_port=guesser.port, cseq=20), exchange.port)
        await guesser.nothing(0.5)
    lines = [record for record in caplog.records if record.getMessage() == "sip.auth_failed"]
    assert len(lines) == 5
    assert all(
        getattr(line, "source", None) == "127.0.0.2" and str(getattr(line, "peer", "")).startswith("udp:127.0.0.2:")
        for line in lines
    )
    assert all(getattr(line, "username", None) == "alice" for line in lines)
    assert failures("password") - before == 5
    assert any(record.getMessage() == "sip.auth_banned" for record in caplog.records)
    # The phones elsewhere (127.0.0.1) are not affected.
    await still_serves(exchange)


@pytest.mark.parametrize(
    "exchange", [{"sip_auth_source_failures": 50, "sip_auth_account_failures": 4}], indirect=True
)  # fmt: skip
async def test_guesses_spread_over_addresses_lock_the_account_but_not_its_phone(exchange: Exchange) -> None:
    await exchange.add_user("alice", "201")
    async with attacker("127.0.0.1") as alice_phone:
        ok = await try_password(exchange, alice_phone, "alice", PASSWORD, 1)
        assert ok.status == 200
        for index in range(4):
            async with attacker(f"127.0.0.{10 + index}") as guesser:
                assert (await try_password(exchange, guesser, "alice", f"guess-{index}", 1)).status == 403
        # Locked: the right password from a new address is refused too …
        async with attacker("127.0.0.30") as guesser:
            assert (await try_password(exchange, guesser, "alice", PASSWORD, 1)).status == 403
        # … while alice's phone, which authenticated from its address before, re-registers.
        assert (await try_password(exchange, alice_phone, "alice", PASSWORD, 5)).status == 200
    await still_serves(exchange)
