"""Issue 11, medium "Outbound": toll fraud through the trunk. Premium-rate, satellite and +252 numbers went out
from any phone; now the exchange's default barring refuses them with 403 and a reason phrase, an administrator
bars more per company and per user (admin API, `hipper barring`), and the trunk never sees a barred INVITE."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator

import httpx
import pytest

from hipper.api.app import create_app
from hipper.domain.services import CallForwardingAlways, SimultaneousRing, Voicemail
from hipper.domain.services.simultaneous_ring import SimultaneousRingTarget
from hipper.passwords import Hasher
from hipper.store import admin
from hipper.store.models import Company
from tests.calls.conftest import PASSWORD, Exchange, exchange, phone, place_call, register, scenario, start_sipp  # noqa: F401 - the fixture
from tests.security.calls_support import refused_call, still_serves
from tests.sip.peers import free_udp_port


class Trunk:
    """The trunk's address held by a plain socket: whatever the exchange sends the trunk lands here."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.setblocking(False)

    def received(self) -> list[bytes]:
        messages = []
        while True:
            try:
                messages.append(self.sock.recv(65535))
            except BlockingIOError:
                return messages

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def admin_http(exchange: Exchange) -> AsyncIterator[httpx.AsyncClient]:  # noqa: F811
    """The admin API of the exchange's database, logged in as an administrator of its company."""
    async with exchange.sessions() as session:
        company = await session.get(Company, exchange.company_id)
        await admin.create_user(
            session, Hasher(1, 1024), username="boss", password="correct horse 1", company=company, role="admin"
        )
        await session.commit()
    app = create_app(exchange.settings, run_migrations=False)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
            login = await client.post("/api/v1/auth/login", json={"username": "boss", "password": "correct horse 1"})
            client.headers["Authorization"] = f"Bearer {login.json()['token']}"
            yield client
    finally:
        await app.state.hipper.engine.dispose()


async def hipper_cli(exchange: Exchange, *args: str) -> str:  # noqa: F811
    """`hipper <args>` as an operator runs it, on the exchange's database while the exchange runs."""
    env = {**os.environ, "HIPPER_DATABASE_URL": exchange.settings.database_url, "HIPPER_LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hipper", "--data-dir", str(exchange.settings.data_dir), *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


DEFAULT_BARRED = [
    ("09001234567", "Premium-Rate Numbers Barred"),  # Dutch premium rate
    ("+881631234567", "High-Cost Destination Barred"),  # Iridium satellite
    ("0025261234567", "High-Cost Destination Barred"),  # Somalia, as dialled from a desk phone
]


@pytest.mark.parametrize(("dialled", "reason"), DEFAULT_BARRED)
async def test_premium_satellite_and_high_cost_numbers_are_barred_by_default(
    exchange: Exchange,  # noqa: F811
    dialled: str,
    reason: str,
) -> None:
    await exchange.add_user("mallory", "266", direct="+31201234166")
    trunk = Trunk(exchange.trunk_port)
    try:
        await refused_call(exchange, "mallory", dialled, 403, reason)
        await asyncio.sleep(0.2)  # an INVITE sent would be on its way by now
        assert trunk.received() == [], "a barred call reached the trunk"
    finally:
        trunk.close()
    await still_serves(exchange)


async def test_the_administrator_bars_international_and_prefixes_per_company_and_user(
    exchange: Exchange,  # noqa: F811
    admin_http: httpx.AsyncClient,
) -> None:
    mallory = await exchange.add_user("mallory", "266", direct="+31201234166")
    await exchange.add_user("alice", "201", direct="+31201234101")
    policy = f"/api/v1/admin/companies/{exchange.company_id}/outbound-policy"
    assert (await admin_http.get(policy)).json() == {
        "barred": ["high_cost", "premium"], "barred_prefixes": [], "max_calls": None, "stored": False,
    }  # fmt: skip
    bad = await admin_http.put(policy, json={"barred": ["premium"], "barred_prefixes": ["0900"]})
    assert bad.status_code == 422
    stored = await admin_http.put(
        policy, json={"barred": ["premium", "high_cost", "international"], "barred_prefixes": ["+3130"]}
    )
    assert stored.status_code == 200 and stored.json()["stored"] is True
    user_policy = await admin_http.put(
        f"/api/v1/admin/users/{mallory}/outbound-policy", json={"barred_prefixes": ["+3161"]}
    )
    assert user_policy.status_code == 200
    await refused_call(exchange, "mallory", "+4930123456", 403, "International Calls Barred")
    await refused_call(exchange, "alice", "0301234567", 403, "Destination Barred")  # the company's prefix
    await refused_call(exchange, "mallory", "0612345678", 403, "Destination Barred")  # Mallory's own prefix
    # Alice is not barred from mobiles: her call goes out and is answered by the network.
    network = await start_sipp(exchange, "trunk", scenario("callee.xml", ring_ms=100), "-rtp_echo",
                               port=exchange.trunk_port)  # fmt: skip
    text = scenario("caller.xml", final="final_talks.xml", user="alice", talk_ms=500)
    alice = await start_sipp(
        exchange, "caller-alice", text, "-s", "0612345678", "-au", "alice", "-ap", "phone-secret-1"
    )
    await alice.succeeded()
    await network.succeeded()
    # The CLI reads and replaces the same policy.
    assert "barred: high_cost, international, premium  prefixes: +3130" in await hipper_cli(
        exchange, "barring", "show", "--company", "Acme"
    )
    assert "barred: (none)" in await hipper_cli(exchange, "barring", "set", "--user", "mallory")
    await still_serves(exchange)


async def test_forwarding_to_a_barred_number_is_refused(exchange: Exchange) -> None:  # noqa: F811
    """Someone with Mallory's app login forwards her phone to a premium-rate number and calls it: the forward is
    her call out, under her company's barring."""
    await exchange.add_user("mallory", "266", direct="+31201234166")
    await exchange.add_user("alice", "201")
    await exchange.set_service("mallory", CallForwardingAlways(active=True, destination="+319001234567"))
    await exchange.set_service("mallory", Voicemail(active=False))
    trunk = Trunk(exchange.trunk_port)
    try:
        await refused_call(exchange, "alice", "266", 403, "Premium-Rate Numbers Barred")
        await asyncio.sleep(0.2)  # an INVITE sent would be on its way by now
        assert trunk.received() == [], "the forward reached the trunk"
    finally:
        trunk.close()
    await still_serves(exchange)


async def test_the_app_cannot_place_a_callback_or_access_call_to_a_barred_number(exchange: Exchange) -> None:  # noqa: F811
    """With Mallory's app login: a callback (the exchange rings her phone, then the number) or a call via the
    access number to a premium-rate number is refused before anything rings or is armed."""
    await exchange.add_user("mallory", "266", direct="+31201234166", mobile="+31612340266")
    await register(exchange, "mallory", free_udp_port())  # a desk phone the callback would ring first
    trunk = Trunk(exchange.trunk_port)
    app = create_app(exchange.settings, run_migrations=False)
    app.state.calls = exchange.b2bua
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost") as http:
            login = await http.post("/api/v1/auth/login", json={"username": "mallory", "password": "correct horse 1"})
            headers = {"Authorization": f"Bearer {login.json()['token']}"}
            for method in ("callback", "via_exchange"):
                placed = await http.post(
                    "/api/v1/me/calls", json={"to": "0900 1234567", "method": method}, headers=headers
                )
                assert placed.status_code == 403, (method, placed.text)  # today: 202, the callback rang
                assert placed.json()["detail"] == "Premium-Rate Numbers Barred"
            assert not exchange.applications.app_calls.callbacks
        await asyncio.sleep(0.2)  # an INVITE sent would be on its way by now
        assert trunk.received() == []
    finally:
        trunk.close()
        await app.state.hipper.engine.dispose()
    await still_serves(exchange)


async def test_a_simultaneous_ring_target_that_is_barred_is_not_rung(exchange: Exchange) -> None:  # noqa: F811
    """Mallory's simultaneous ring set to a premium-rate number: a call to her rings her desk phone only."""
    await exchange.add_user("mallory", "266", direct="+31201234166")
    await exchange.add_user("alice", "201")
    await exchange.set_service(
        "mallory", SimultaneousRing(active=True, targets=[SimultaneousRingTarget(number="+319001234567")])
    )
    await exchange.set_service("mallory", Voicemail(active=False))
    trunk = Trunk(exchange.trunk_port)
    try:
        desk = await phone(exchange, "mallory", "mallory-desk", scenario("callee.xml", ring_ms=300), "-rtp_echo")
        alice = await place_call(exchange, "alice", "266", "final_talks.xml", talk_ms=500)
        await alice.succeeded()
        await desk.succeeded()
        call = await exchange.next_call()
        assert call.answered and [label for label, _ in call.branches] == ["desk"]
        assert trunk.received() == [], "the premium-rate target was rung"
    finally:
        trunk.close()
    await still_serves(exchange)
