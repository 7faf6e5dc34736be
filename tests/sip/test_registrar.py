"""The registrar over real UDP/TCP sockets and a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime

from sqlalchemy import select

from hipper.sip.digest import parse_credentials
from hipper.sip.message import URI, Headers, Request, Response, parse_message
from hipper.sip.transport import Peer
from hipper.store.models import Registration, SipDevice
from tests.sip.conftest import PASSWORD, RawClient, SipServer, authorization_for, register_text


async def registrations(server: SipServer) -> list[Registration]:
    async with server.sessions() as session:
        return list((await session.execute(select(Registration).order_by(Registration.id))).scalars())


async def register(
    server: SipServer, client: RawClient, *, algorithm: str = "MD5", cseq: int = 1, **fields: object
) -> Response:
    """REGISTER, take the 401, answer it: the two-step exchange every phone makes."""
    client.send(register_text(port=server.port, client_port=client.port, cseq=cseq, **fields), server.port)  # type: ignore[arg-type]
    challenge = await client.receive()
    assert challenge.status == 401, challenge
    auth = authorization_for(
        challenge, algorithm=algorithm, user=str(fields.get("user", "alice")), uri=f"sip:127.0.0.1:{server.port}"
    )
    text = register_text(port=server.port, client_port=client.port, cseq=cseq + 1, authorization=auth, **fields)  # type: ignore[arg-type]
    client.send(text, server.port)
    return await client.receive()


async def test_challenge_offers_the_configured_algorithms(sip_server: SipServer, udp_client: RawClient) -> None:
    udp_client.send(register_text(port=sip_server.port, client_port=udp_client.port), sip_server.port)
    default = await udp_client.receive()
    assert [parse_credentials(v)["algorithm"] for v in default.headers.get_all("WWW-Authenticate")] == ["MD5"]
    sip_server.stack.registrar.authenticator.algorithms = ("SHA-256", "MD5")  # type: ignore[union-attr]
    udp_client.send(register_text(port=sip_server.port, client_port=udp_client.port), sip_server.port)
    challenge = await udp_client.receive()
    assert challenge.status == 401
    offers = [parse_credentials(v) for v in challenge.headers.get_all("WWW-Authenticate")]
    assert [o["algorithm"] for o in offers] == ["SHA-256", "MD5"]
    assert all(o["realm"] == "hipper.test" and o["qop"] == "auth" for o in offers)
    assert challenge.to.tag  # §8.2.6.2


async def test_register_behind_nat_stores_the_real_source(sip_server: SipServer, udp_client: RawClient) -> None:
    # The phone believes it is 192.0.2.1 (its Contact); its packets come from 127.0.0.1:<port>.
    ok = await register(sip_server, udp_client, contact="<sip:alice@192.0.2.1:5060>", expires=120)
    assert ok.status == 200, ok
    contacts = ok.contacts
    assert [str(c.uri) for c in contacts] == ["sip:alice@192.0.2.1:5060"]
    assert 118 <= int(contacts[0].params["expires"] or 0) <= 120
    (row,) = await registrations(sip_server)
    assert row.source == f"udp:127.0.0.1:{udp_client.port}"
    assert row.user_id == sip_server.user_id and row.device_id == sip_server.device_id
    assert row.node == "test-node" and row.user_agent == "raw-test"
    expires_at = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    assert 110 < (expires_at - datetime.now(UTC)).total_seconds() <= 120
    # A request to the device goes where it registered from, not to the Contact's 192.0.2.1.
    bindings = await sip_server.stack.registrar.locations.for_user(sip_server.user_id)  # type: ignore[union-attr]
    headers = Headers()
    for name, value in (
        ("From", "<sip:hipper@hipper.test>;tag=x1"),
        ("To", "<sip:alice@hipper.test>"),
        ("Call-ID", "opt-1"),
        ("CSeq", "1 OPTIONS"),
    ):
        headers.add(name, value)
    assert bindings[0].peer == Peer("udp", "127.0.0.1", udp_client.port)
    tx = sip_server.stack.send_request(Request("OPTIONS", URI.parse(bindings[0].contact), headers), bindings[0].peer)
    async with asyncio.timeout(2):
        data = await udp_client.queue.get()
    options = parse_message(data)
    assert isinstance(options, Request) and options.method == "OPTIONS"
    assert str(options.uri) == "sip:alice@192.0.2.1:5060"
    tx.final.cancel()


async def test_sha256_registration(sip_server: SipServer, udp_client: RawClient) -> None:
    sip_server.stack.registrar.authenticator.algorithms = ("SHA-256", "MD5")  # type: ignore[union-attr]
    ok = await register(sip_server, udp_client, algorithm="SHA-256")
    assert ok.status == 200


async def test_interval_too_brief(sip_server: SipServer, udp_client: RawClient) -> None:
    response = await register(sip_server, udp_client, expires=10)
    assert response.status == 423
    assert response.headers.get("Min-Expires") == "30"
    assert await registrations(sip_server) == []


async def test_unknown_user_and_foreign_or_wrong_credentials(sip_server: SipServer, udp_client: RawClient) -> None:
    uri = f"sip:127.0.0.1:{sip_server.port}"
    # An unknown user is challenged like a known one, and refused like a wrong password (no enumeration).
    udp_client.send(register_text(port=sip_server.port, client_port=udp_client.port, user="nobody"), sip_server.port)
    challenge = await udp_client.receive()
    assert challenge.status == 401
    auth = authorization_for(challenge, user="nobody", uri=uri)
    udp_client.send(
        register_text(port=sip_server.port, client_port=udp_client.port, user="nobody", authorization=auth, cseq=2),
        sip_server.port,
    )
    unknown = await udp_client.receive()
    assert (unknown.status, unknown.reason) == (403, "Wrong credentials")
    await sip_server.add_device("bob", "bobs-password")
    # bob's (right) credentials used to register alice's address: refused.
    udp_client.send(register_text(port=sip_server.port, client_port=udp_client.port), sip_server.port)
    challenge = await udp_client.receive()
    auth = authorization_for(challenge, user="bob", password="bobs-password", uri=uri)
    udp_client.send(
        register_text(port=sip_server.port, client_port=udp_client.port, authorization=auth), sip_server.port
    )
    assert (await udp_client.receive()).status == 403
    auth = authorization_for(challenge, password="not-" + PASSWORD, uri=uri)
    udp_client.send(
        register_text(port=sip_server.port, client_port=udp_client.port, cseq=3, authorization=auth), sip_server.port
    )
    wrong = await udp_client.receive()
    assert (wrong.status, wrong.reason) == (403, "Wrong credentials")
    assert await registrations(sip_server) == []


async def test_stale_nonce_is_rechallenged_with_stale_true(sip_server: SipServer, udp_client: RawClient) -> None:
    udp_client.send(register_text(port=sip_server.port, client_port=udp_client.port), sip_server.port)
    challenge = await udp_client.receive()
    sip_server.stack.registrar.authenticator.nonce_lifetime = -10  # type: ignore[union-attr]
    auth = authorization_for(challenge, uri=f"sip:127.0.0.1:{sip_server.port}")
    udp_client.send(
        register_text(port=sip_server.port, client_port=udp_client.port, authorization=auth), sip_server.port
    )
    stale = await udp_client.receive()
    assert stale.status == 401
    assert all("stale=true" in v for v in stale.headers.get_all("WWW-Authenticate"))


async def test_multiple_contacts_removal_and_wildcard(sip_server: SipServer, udp_client: RawClient) -> None:
    two = "<sip:alice@127.0.0.1:5070>;expires=100, <sip:alice@127.0.0.1:5071>"
    ok = await register(sip_server, udp_client, contact=two, expires=200)
    assert ok.status == 200
    assert {(str(c.uri), c.params["expires"]) for c in ok.contacts} == {
        ("sip:alice@127.0.0.1:5070", "100"),
        ("sip:alice@127.0.0.1:5071", "200"),
    }
    # Expires: 0 on one contact removes just that one.
    ok = await register(sip_server, udp_client, contact="<sip:alice@127.0.0.1:5070>", expires=0, cseq=3)
    assert [str(c.uri) for c in ok.contacts] == ["sip:alice@127.0.0.1:5071"]
    # "*" needs Expires: 0 …
    bad = await register(sip_server, udp_client, contact="*", expires=60, cseq=5)
    assert bad.status == 400
    # … and then removes everything.
    ok = await register(sip_server, udp_client, contact="*", expires=0, cseq=7)
    assert ok.status == 200 and ok.contacts == []
    assert await registrations(sip_server) == []


async def test_expired_bindings_are_ignored(sip_server: SipServer, udp_client: RawClient) -> None:
    assert (await register(sip_server, udp_client, expires=60)).status == 200
    async with sip_server.sessions() as session:
        row = (await session.execute(select(Registration))).scalar_one()
        row.expires_at = datetime(2020, 1, 1, tzinfo=UTC)
        await session.commit()
    locations = sip_server.stack.registrar.locations  # type: ignore[union-attr]
    assert await locations.for_user(sip_server.user_id) == []
    query = await register(sip_server, udp_client, contact="", expires=None, cseq=3)
    assert query.status == 200 and query.contacts == []


async def test_out_of_order_cseq_is_refused(sip_server: SipServer, udp_client: RawClient) -> None:
    assert (await register(sip_server, udp_client, cseq=10)).status == 200
    late = await register(sip_server, udp_client, cseq=2)
    assert late.status == 500


async def test_options_keepalive(sip_server: SipServer, udp_client: RawClient) -> None:
    text = (
        f"OPTIONS sip:127.0.0.1:{sip_server.port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{udp_client.port};branch=z9hG4bKopt1\r\n"
        "From: <sip:alice@hipper.test>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    udp_client.send(text, sip_server.port)
    ok = await udp_client.receive()
    assert ok.status == 200 and "REGISTER" in ok.headers.get_all("Allow")
    # The retransmission is answered from the transaction, identically.
    udp_client.send(text, sip_server.port)
    again = await udp_client.receive()
    assert again.to.tag == ok.to.tag


async def test_malformed_input_never_stops_the_server(sip_server: SipServer, udp_client: RawClient) -> None:
    import random

    rng = random.Random(7)
    valid = register_text(port=sip_server.port, client_port=udp_client.port).encode()
    garbage = [rng.randbytes(rng.randint(1, 1500)) for _ in range(200)]
    garbage += [valid[:n] for n in range(0, len(valid), 7)]
    garbage += [
        valid.replace(b"Content-Length: 0", b"Content-Length: 99999999999"),
        valid.replace(b"Content-Length: 0", b"Content-Length: -1"),
        valid.replace(b"CSeq: 1 REGISTER", b"CSeq: x REGISTER"),
        b"\x00" * 65000,
        b"INVITE sip:a@b SIP/2.0\r\n" + b"X: " + b"a" * 60000 + b"\r\n\r\n",
    ]
    for index, data in enumerate(garbage):
        udp_client.send(data, sip_server.port)
        if index % 10 == 0:
            await asyncio.sleep(0.005)  # stay under the loopback socket buffer: we test parsing, not loss
    # A well-formed OPTIONS last: the stack reads its socket in order, so once this is answered every piece of
    # garbage before it has been handled (a fixed sleep was too short on a loaded machine).
    udp_client.send(
        f"OPTIONS sip:127.0.0.1:{sip_server.port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{udp_client.port};branch=z9hG4bKlast;rport\r\nFrom: <sip:a@hipper.test>;tag=1\r\n"
        "To: <sip:127.0.0.1>\r\nCall-ID: after-the-garbage\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n",
        sip_server.port,
    )
    while (answer := await udp_client.receive(10)).headers.get("Call-ID") != "after-the-garbage":
        assert answer.status in (400, 401)
    assert answer.status == 200
    assert sip_server.stack.malformed >= len(garbage) - 20
    # The rest from a fresh socket: challenges for the REGISTER-like garbage may still be on their way to the
    # first one (the registrar answers in tasks of its own, after the OPTIONS).
    loop = asyncio.get_running_loop()
    transport, fresh = await loop.create_datagram_endpoint(RawClient, local_addr=("127.0.0.1", 0))
    try:
        # A request with Via but a bad CSeq gets a 400 that names the problem.
        fresh.send(
            register_text(port=sip_server.port, client_port=fresh.port).replace("CSeq: 1 REGISTER", "CSeq: x REGISTER"),
            sip_server.port,
        )
        bad = await fresh.receive()
        assert (bad.status, bad.reason) == (400, "bad CSeq")
        assert (await register(sip_server, fresh, call_id="after-garbage")).status == 200
    finally:
        transport.close()


async def test_register_over_tcp_and_reach_the_device_on_its_connection(sip_server: SipServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", sip_server.port)
    local_port = writer.get_extra_info("sockname")[1]

    async def read_message() -> Request | Response:
        async with asyncio.timeout(2):
            head = await reader.readuntil(b"\r\n\r\n")
            message = parse_message(head, stream=True)
            length = message.int_header("Content-Length") or 0
            message.body = await reader.readexactly(length)
        return message

    try:
        # Keepalive ping (RFC 5626 double CRLF) → pong, and it must not disturb framing.
        writer.write(b"\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(2):
            assert await reader.readexactly(2) == b"\r\n"
        fields = {
            "port": sip_server.port,
            "client_port": local_port,
            "transport": "TCP",
            "contact": f"<sip:alice@192.0.2.1:{local_port};transport=tcp>",
        }
        writer.write(register_text(**fields).encode())
        challenge = await read_message()
        assert isinstance(challenge, Response) and challenge.status == 401
        auth = authorization_for(challenge, uri=f"sip:127.0.0.1:{sip_server.port}")
        # One message split across two TCP segments: framing waits for Content-Length bytes.
        text = register_text(cseq=2, authorization=auth, **fields).encode()
        writer.write(text[:40])
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(text[40:])
        ok = await read_message()
        assert isinstance(ok, Response) and ok.status == 200, ok
        (row,) = await registrations(sip_server)
        assert row.source == f"tcp:127.0.0.1:{local_port}"
        headers = Headers()
        for name, value in (
            ("From", "<sip:h@hipper.test>;tag=1"),
            ("To", "<sip:alice@hipper.test>"),
            ("Call-ID", "tcp-opt"),
            ("CSeq", "1 OPTIONS"),
        ):
            headers.add(name, value)
        tx = sip_server.stack.send_request(Request("OPTIONS", URI.parse(row.contact), headers), Peer.parse(row.source))
        options = await read_message()
        assert isinstance(options, Request) and options.method == "OPTIONS"
        reply = Response.for_request(options, 200, to_tag="dev")
        writer.write(reply.serialize())
        async with asyncio.timeout(2):
            final = await tx.final
        assert final.status == 200
        # An absurd Content-Length cannot be framed: the server drops that connection, and only that one.
        other_reader, other_writer = await asyncio.open_connection("127.0.0.1", sip_server.port)
        other_writer.write(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 99999999\r\n\r\n")
        async with asyncio.timeout(2):
            assert await other_reader.read() == b""  # closed by the server
        other_writer.close()
        writer.write(b"\r\n\r\n")
        async with asyncio.timeout(2):
            assert await reader.readexactly(2) == b"\r\n"  # the registered connection lives on
    finally:
        writer.close()


async def test_device_credentials_are_cached_until_invalidated(sip_server: SipServer, udp_client: RawClient) -> None:
    directory = sip_server.stack.registrar.devices  # type: ignore[union-attr]
    for round_ in range(3):
        assert (await register(sip_server, udp_client, cseq=1 + 2 * round_)).status == 200
    assert directory.queries == 1  # six REGISTERs, one credentials query
    # The administrator resets the password (device.password_reset event → invalidate_device).
    async with sip_server.sessions() as session:
        device = await session.get(SipDevice, sip_server.device_id)
        assert device is not None
        device.ha1_md5 = hashlib.md5(b"alice:hipper.test:new-password").hexdigest()
        await session.commit()
    directory.invalidate_device(sip_server.device_id)
    refused = await register(sip_server, udp_client, cseq=7)
    assert refused.status == 403 and directory.queries == 2


async def test_authenticate_is_reusable_for_invite(sip_server: SipServer) -> None:
    registrar = sip_server.stack.registrar
    assert registrar is not None
    text = (
        "INVITE sip:bob@hipper.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKi1\r\n"
        "From: <sip:alice@hipper.test>;tag=1\r\nTo: <sip:bob@hipper.test>\r\nCall-ID: inv\r\nCSeq: 1 INVITE\r\n"
        "Contact: <sip:alice@127.0.0.1:5999>\r\nMax-Forwards: 70\r\n\r\n"
    )
    invite = parse_message(text.encode())
    assert isinstance(invite, Request)
    source = Peer("udp", "127.0.0.1", 5999)
    challenge = await registrar.authenticate(invite, source, proxy=True)
    assert isinstance(challenge, Response) and challenge.status == 407
    auth = authorization_for(challenge, method="INVITE", uri="sip:bob@hipper.test")
    invite.headers.add("Proxy-Authorization", auth)
    device = await registrar.authenticate(invite, source, proxy=True)
    assert not isinstance(device, Response) and device.id == sip_server.device_id
    invite.method = "BYE"  # the same credentials do not authorise another method: its nonce was for an INVITE
    refused = await registrar.authenticate(invite, source, proxy=True)
    assert isinstance(refused, Response) and refused.status == 407


async def test_a_burst_of_lookups_makes_one_query(sip_server: SipServer) -> None:
    directory = sip_server.stack.registrar.devices  # type: ignore[union-attr]
    directory.invalidate()
    before = directory.queries
    found = await asyncio.gather(*(directory.lookup("alice") for _ in range(20)), directory.lookup("ghost"))
    assert all(device is not None and device.id == sip_server.device_id for device in found[:20])
    assert found[20] is None
    assert directory.queries - before == 2


async def test_committed_device_events_drop_cached_credentials(sip_server: SipServer) -> None:
    from hipper.api.state import AppState
    from hipper.server import follow_device_events
    from hipper.store.events import add_event

    directory = sip_server.stack.registrar.devices  # type: ignore[union-attr]
    engine = sip_server.sessions.kw["bind"]
    state = AppState(settings=sip_server.settings, engine=engine, sessions=sip_server.sessions, hasher=None)  # type: ignore[arg-type]
    state.migrated.set()  # what the app's lifespan does
    follower = asyncio.create_task(follow_device_events(state, directory))
    try:
        async with asyncio.timeout(5):
            # It notes the newest event id, then subscribes: once subscribed, the change below is after that id.
            while not state.events._waiters:  # noqa: ASYNC110 - the follower has no hook to await
                await asyncio.sleep(0.01)
        assert await directory.lookup("alice") is not None
        async with sip_server.sessions() as session:
            add_event(session, sip_server.user_id, "device.password_reset", {"id": 1, "auth_username": "alice"})
            await session.commit()
        state.events.published()  # what hipper.api.deps.commit does after every commit
        async with asyncio.timeout(2):
            # The follower is another task with no completion hook to await; watch its effect, bounded.
            while "alice" in directory._cache:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        follower.cancel()
        if state.reads is not None:  # the app's reads (`deps.reads_of`), which its lifespan would close
            state.reads.close()


async def test_tcp_connections_that_send_nothing_are_closed(sip_server: SipServer) -> None:
    sip_server.stack.transports.tcp.first_message_timeout = 0.3
    reader, writer = await asyncio.open_connection("127.0.0.1", sip_server.port)
    writer.write(b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/TCP")  # and then nothing more (slowloris)
    try:
        async with asyncio.timeout(2):
            assert await reader.read() == b""
    finally:
        writer.close()
    assert not sip_server.stack.transports.tcp.connections


async def test_responses_follow_rport_and_received(sip_server: SipServer, udp_client: RawClient) -> None:
    def options(via: str, branch: str) -> str:
        return (
            f"OPTIONS sip:127.0.0.1:{sip_server.port} SIP/2.0\r\nVia: SIP/2.0/UDP {via};branch={branch}\r\n"
            "From: <sip:alice@hipper.test>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: nat\r\nCSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )

    # Behind NAT with rport: the Via names a private address; the answer goes to where the packet came from.
    udp_client.send(options("192.0.2.1:5060;rport", "z9hG4bKnat1"), sip_server.port)
    ok = await udp_client.receive()
    assert ok.top_via.params["received"] == "127.0.0.1" and ok.top_via.params["rport"] == str(udp_client.port)
    # Without rport (RFC 3261 §18.2.2): to the source address (`received`) but the port the Via names.
    loop = asyncio.get_running_loop()
    other_transport, other = await loop.create_datagram_endpoint(RawClient, local_addr=("127.0.0.1", 0))
    try:
        udp_client.send(options(f"192.0.2.1:{other.port}", "z9hG4bKnat2"), sip_server.port)
        answer = await other.receive()
        assert answer.status == 200 and answer.top_via.params["received"] == "127.0.0.1"
        await udp_client.nothing(0.2)
    finally:
        other_transport.close()
