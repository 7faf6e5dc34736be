"""The SIP work of one authenticated call through the stack, in process: CPU per call of `SipStack` itself.

Usage: .venv/bin/python -m bench.sip.stack [--calls 5000] [--rounds 5] [--edge] [--phone] [--profile] [--gap-ms 25]

Where `bench/sip/messages.py` replays what the layers do to messages, this feeds the bytes of one call to a real
`SipStack` with its `Registrar` (`SipStack.receive`, as the UDP transport does) and answers the way the B2BUA does
(engine/b2bua.py, engine/leg.py): the caller's INVITE is challenged statelessly (407), ACKed, sent again with
credentials, screened, given a transaction, authenticated by the registrar (the device's credentials from an
in-memory directory: no database), and forked to one callee through a client transaction; the callee's 180 and 200
go back to the caller, the callee's 200 is ACKed, the caller's ACK stops our 200, the caller's BYE is answered and
passed on. With `--edge` every request of the caller arrives through a trusted edge proxy with the phone's address
in X-Hipper-Source (docs/scale-out.md). With `--phone` the caller's requests and the callee's answers carry
the Allow, Supported and User-Agent headers a desk phone sends (SIPp's scenarios, and so the default, carry none).
Sockets are not written (sends are collected) and transaction timers are
not run (a stepped clock that never steps): the figure is the SIP layer's CPU per call on this process's CPU clock,
best of `rounds`. `--profile` prints a deterministic cProfile of one round instead.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import re
import secrets
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from hipper.sip.dialog import Dialog, new_call_id, new_tag
from hipper.sip.digest import Authenticator, Credentials, ha1, response
from hipper.sip.message import URI, Headers, NameAddr, Request, Response
from hipper.sip.proxies import TrustedProxies
from hipper.sip.registrar import Registrar
from hipper.sip.stack import SipStack
from hipper.sip.transaction import ServerTransaction
from hipper.sip.transport import Peer
from hipper.store.registrations import Device

REALM = "hipper.test"
PASSWORD = "s3cret-pass"
PHONE = Peer("udp", "203.0.113.5", 5062)
EDGE = Peer("udp", "192.0.2.10", 5060)
CALLEE = Peer("udp", "127.0.0.1", 42200)
# A phone's offer or answer, for its RTP port (`SDP_FOR % port`; bench/engine/calls.py uses it too).
SDP_FOR = (
    b"v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio %d RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)
SDP = SDP_FOR % 47000
NONCE = re.compile(rb'nonce="([^"]+)"')  # of a digest challenge
# What a desk phone adds to its INVITE, BYE and 2xx (a Yealink's, roughly).
PHONE_HEADERS = (
    "Allow: INVITE, INFO, PRACK, ACK, BYE, CANCEL, OPTIONS, NOTIFY, REGISTER, SUBSCRIBE, REFER, PUBLISH, UPDATE, "
    "MESSAGE",
    "Supported: replaces, timer, 100rel",
    "User-Agent: Yealink SIP-T54W 96.86.0.70",
    "Allow-Events: talk, hold, conference, refer, check-sync",
)


class Directory:
    """The registrar's device lookup, answered from memory."""

    def __init__(self) -> None:
        self.device = Device(1, 1, Credentials("alice", REALM, ha1("alice", REALM, PASSWORD), ""))

    async def lookup(self, username: str) -> Device | None:
        return self.device if username == "alice" else None


class Never:
    """A clock that never fires: the transactions' timers are set, none runs (nothing here waits for them)."""

    def cancel(self) -> None:
        pass

    def call_later(self, delay: float, callback: Callable[[], None]) -> Never:
        return self


class Node:
    """What the B2BUA does in SIP for one call: authenticate, fork one branch, relay its answer, pass the BYE on."""

    def __init__(self, stack: SipStack) -> None:
        self.stack = stack
        self.pending: list[Coroutine[Any, Any, None]] = []
        self.caller: ServerTransaction | None = None
        self.caller_dialog: Dialog | None = None
        self.callee: Dialog | None = None
        self.out: Request | None = None
        self.contact = "<sip:hipper@127.0.0.1:5060>"

    def on_request(self, tx: ServerTransaction) -> None:
        if tx.method == "INVITE":
            self.pending.append(self._invite(tx))
        elif tx.method == "BYE":
            tx.respond(tx.response(200))
            assert self.callee is not None
            self.stack.send_request(self.callee.create_request("BYE"), CALLEE)

    def on_ack(self, request: Request, peer: Peer) -> None:
        request.to.tag  # noqa: B018 - the B2BUA finds the leg by it

    def on_cancel(self, tx: ServerTransaction, cancel: Request) -> None:
        raise AssertionError("no CANCEL here")

    def on_stray_response(self, response: Response, peer: Peer) -> None:
        raise AssertionError(f"stray {response}")

    async def _invite(self, tx: ServerTransaction) -> None:
        registrar = self.stack.registrar
        assert registrar is not None
        origin = getattr(tx, "origin", None)
        if origin is None:  # before the stack kept the origin on the transaction, the B2BUA asked for it
            self.stack.origin(tx.request, tx.peer)
            device = await registrar.authenticate(tx.request, tx.peer, proxy=True, to_tag=tx.to_tag)
        else:
            device = await registrar.authenticate(tx.request, tx.peer, proxy=True, to_tag=tx.to_tag, origin=origin)
        assert isinstance(device, Device), device
        self.caller = tx
        request = tx.request
        headers = Headers()
        headers.add("From", NameAddr(request.from_.uri, request.from_.display_name, {"tag": new_tag()}))
        headers.add("To", NameAddr(URI.parse("sip:202@hipper.test")))
        headers.add("Call-ID", new_call_id("127.0.0.1"))
        headers.add("CSeq", "1 INVITE")
        headers.add("Max-Forwards", "70")
        headers.add("Contact", self.contact)
        headers.add("Content-Type", "application/sdp")
        self.out = Request("INVITE", URI.parse("sip:202@127.0.0.1:42200"), headers, SDP)
        self.stack.send_request(self.out, CALLEE, self._on_response)

    def _on_response(self, response: Response) -> None:
        assert self.caller is not None and self.out is not None
        tx = self.caller
        if response.status < 200:
            ringing = tx.response(180)
            ringing.headers.add("Contact", self.contact)
            self.caller_dialog = Dialog.as_uas(tx.request, ringing)
            tx.respond(ringing)
            return
        self.callee = Dialog.as_uac(self.out, response)
        ack = self.callee.create_request("ACK")
        ack.headers.prepend("Via", self.stack.transactions.via_for("udp"))
        self.stack.transactions.send(ack.serialize(), CALLEE)
        ok = tx.response(200, body=SDP)
        ok.headers.add("Contact", self.contact)
        ok.headers.add("Content-Type", "application/sdp")
        tx.respond(ok)


def caller_request(
    method: str,
    call_id: str,
    cseq: int,
    branch: str,
    *,
    to_tag: str = "",
    auth: str = "",
    edge: bool = False,
    phone: bool = False,
) -> bytes:
    body = SDP if method == "INVITE" else b""
    to = "<sip:202@hipper.test>" + (f";tag={to_tag}" if to_tag else "")
    head = [
        f"{method} sip:202@127.0.0.1:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 10.0.0.5:5062;branch={branch};rport",
        "From: <sip:alice@hipper.test>;tag=alice1",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Contact: <sip:alice@10.0.0.5:5062>",
        "Max-Forwards: 70",
    ]
    if auth:
        head.append(f"Proxy-Authorization: {auth}")
    if edge:
        head.append(f"X-Hipper-Source: {PHONE}")
    if phone and method != "ACK":
        head.extend(PHONE_HEADERS)
    if body:
        head.append("Content-Type: application/sdp")
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def callee_response(request: Request, status: int, to_tag: str, body: bytes = b"", phone: bool = False) -> bytes:
    answer = Response.for_request(request, status, to_tag=to_tag, body=body)
    answer.headers.add("Contact", "<sip:202@127.0.0.1:42200>")
    for line in PHONE_HEADERS if phone and request.method == "INVITE" else ():
        name, _, value = line.partition(": ")
        answer.headers.add(name, value)
    if body:
        answer.headers.add("Content-Type", "application/sdp")
    return answer.serialize()


class Bench:
    def __init__(self, *, edge: bool, phone: bool = False) -> None:
        proxies = TrustedProxies(frozenset({EDGE.host} if edge else set()))
        registrar = Registrar(Authenticator(REALM), cast(Any, Directory()), cast(Any, None), proxies=proxies)
        self.stack = SipStack(registrar, clock=Never())
        self.node = Node(self.stack)
        self.stack.handler = self.node
        self.sent: list[bytes] = []
        self.stack.transports.send_nowait = self._send  # type: ignore[method-assign]
        self.source = EDGE if edge else PHONE
        self.edge = edge
        self.phone = phone

    def _send(self, data: bytes, peer: Peer) -> None:
        self.sent.append(data)  # what the UDP socket would have sent

    async def start(self) -> None:
        await self.stack.start("127.0.0.1", 0, tcp=False)

    async def call(self) -> None:
        receive, source, edge, node, phone = self.stack.receive, self.source, self.edge, self.node, self.phone
        call_id = secrets.token_hex(8)
        first = "z9hG4bK" + secrets.token_hex(6)
        receive(caller_request("INVITE", call_id, 1, first, edge=edge, phone=phone), source)
        challenge = self.sent[-1]
        nonce = NONCE.search(challenge)
        assert challenge.startswith(b"SIP/2.0 407") and nonce is not None, challenge[:200]
        tag = re.search(rb"To: [^\r]*;tag=([0-9a-f]+)", challenge)
        assert tag is not None
        receive(caller_request("ACK", call_id, 1, first, to_tag=tag[1].decode(), edge=edge), source)
        uri = "sip:202@127.0.0.1:5060"
        digest = response(
            algorithm="MD5", ha1_hex=ha1("alice", REALM, PASSWORD), method="INVITE", uri=uri,
            nonce=nonce[1].decode(), qop="auth", nc="00000001", cnonce="0a4f113b",
        )  # fmt: skip
        auth = (
            f'Digest username="alice", realm="{REALM}", nonce="{nonce[1].decode()}", uri="{uri}", '
            f'response="{digest}", algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f113b"'
        )
        branch = "z9hG4bK" + secrets.token_hex(6)
        receive(caller_request("INVITE", call_id, 2, branch, auth=auth, edge=edge, phone=phone), source)
        for pending in node.pending:
            await pending
        node.pending.clear()
        assert node.out is not None and node.caller is not None
        callee_tag = new_tag()
        receive(callee_response(node.out, 180, callee_tag, phone=phone), CALLEE)
        receive(callee_response(node.out, 200, callee_tag, SDP, phone=phone), CALLEE)
        our_tag = node.caller.to_tag
        receive(caller_request("ACK", call_id, 2, "z9hG4bK" + secrets.token_hex(6), to_tag=our_tag, edge=edge), source)
        bye_branch = "z9hG4bK" + secrets.token_hex(6)
        receive(caller_request("BYE", call_id, 3, bye_branch, to_tag=our_tag, edge=edge, phone=phone), source)
        bye = self.stack.transactions.client
        bye_tx = next(reversed(bye.values()))
        assert bye_tx.request.method == "BYE"
        receive(callee_response(bye_tx.request, 200, callee_tag), CALLEE)
        self.sent.clear()
        # Nothing here ends transactions (no timers run): let them go, as their timers would.
        self.stack.transactions.server.clear()
        self.stack.transactions.client.clear()
        self.stack.transactions.awaiting_ack.clear()


async def run(args: argparse.Namespace) -> None:
    bench = Bench(edge=args.edge, phone=args.phone)
    await bench.start()
    try:
        for _ in range(50):
            await bench.call()  # warm the caches of names and compiled patterns
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(args.calls):
                await bench.call()
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile_lines)
            return
        if args.gap_ms:
            # The same calls with the loop asleep between them, as at a real call rate: the CPU of each call
            # alone (this thread's clock around it), median of the calls (docs/performance.md "Eleventh session":
            # a cold CPU makes the same instructions dearer).
            spent = []
            for _ in range(args.calls):
                await asyncio.sleep(args.gap_ms / 1000)
                start = time.thread_time()
                await bench.call()
                spent.append(time.thread_time() - start)
            best = statistics.median(spent)
            args.rounds = 0
        else:
            best = float("inf")
        for _ in range(args.rounds):
            start = time.process_time()
            for _ in range(args.calls):
                await bench.call()
            best = min(best, (time.process_time() - start) / args.calls)
    finally:
        await bench.stack.close()
    figure = round(best * 1e6, 1)
    print(json.dumps({"edge": args.edge, "phone": args.phone, "gap_ms": args.gap_ms, "stack_cpu_us_per_call": figure,
                      "calls": args.calls}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--edge", action="store_true", help="requests arrive through a trusted edge proxy")
    parser.add_argument("--phone", action="store_true", help="requests and answers carry a desk phone's headers")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one round")
    parser.add_argument("--gap-ms", type=float, default=0.0, help="sleep between calls; median CPU of one call")
    parser.add_argument("--profile-lines", type=int, default=40)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
