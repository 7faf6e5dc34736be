"""The call engine's CPU per call, in process: a real B2BUA, SIP stack, media engine and SQLite, no SIP sockets.

Usage: .venv/bin/python -m bench.engine.calls [--calls 300] [--rounds 3] [--profile]
Against another checkout: PYTHONPATH=<its src> .venv/bin/python bench/engine/calls.py … (the `hipper` imports come
from PYTHONPATH; this checkout's `bench` package is put on `sys.path` after them).
Instructions (deterministic, docs/performance.md): PYTHONHASHSEED=0 valgrind --tool=cachegrind --cache-sim=no
--cachegrind-out-file=/dev/null .venv/bin/python bench/engine/calls.py --calls N --rounds 1 --warm 20, for N and 3N;
(count(3N) − count(N)) / 2N per call.

Where `bench/sip/stack.py` stands in for the B2BUA, this runs the exchange's own call path (`start_call_processing`:
engine/b2bua.py, call.py, leg.py, fork.py, the applications, the snapshots, the batch writer into SQLite, the media
engine's endpoints on real RTP sockets that carry no packets) and plays the two phones by feeding their bytes to
`SipStack.receive`, as the UDP transport does; what the exchange sends is collected, not written. The callee
(u0001) registers once with digest credentials; each call: the caller's (u0000) INVITE to extension 2001, its
407 and ACK, the INVITE with credentials; the exchange's INVITE to the callee is answered 180 then 200 with SDP,
the caller gets our 200 and ACKs it, then hangs up with a BYE that the exchange passes on and the callee answers;
the call is over when the B2BUA reports it ended and its call-log rows are committed. Transaction timers never
run (a clock that never fires; each call's transactions are dropped at its end, as their timers would). The
figure is the process's CPU per call (the aiosqlite thread included), best of `rounds`.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hipper import logs
from hipper.apps.node import start_call_processing
from hipper.config import Settings
from hipper.engine.call import CallSummary
from hipper.server import create_sip_stack
from hipper.sip.digest import ha1, response
from hipper.sip.message import Request, Response, parse_message
from hipper.sip.stack import SipStack
from hipper.sip.transport import Peer
from hipper.store import db

sys.path.append(str(Path(__file__).resolve().parents[2]))  # after hipper: see the module docstring
from bench.sip.calls import DEVICE_PASSWORD, REALM, add_bench_users
from bench.sip.stack import NONCE, SDP_FOR

CALLER = Peer("udp", "127.0.0.1", 47062)
CALLEE = Peer("udp", "127.0.0.1", 47162)


class Never:
    """A clock that never fires: the transactions' timers are set, none runs."""

    def cancel(self) -> None:
        pass

    def call_later(self, delay: float, callback: Callable[[], None]) -> Never:
        return self


def request(method: str, uri: str, call_id: str, cseq: int, branch: str, from_: str, to: str, peer: Peer,
            *extra: str, body: bytes = b"") -> bytes:  # fmt: skip
    head = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {peer.host}:{peer.port};branch=z9hG4bK{branch};rport",
        f"From: {from_}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:{from_.split('@')[0].split(':')[-1]}@{peer.host}:{peer.port}>",
        "Max-Forwards: 70",
        *extra,
    ]
    if body:
        head.append("Content-Type: application/sdp")
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def authorization(header: str, user: str, method: str, uri: str, challenge: bytes) -> str:
    nonce = NONCE.search(challenge)
    assert nonce is not None, challenge[:300]
    digest = response(
        algorithm="MD5", ha1_hex=ha1(user, REALM, DEVICE_PASSWORD), method=method, uri=uri,
        nonce=nonce[1].decode(), qop="auth", nc="00000001", cnonce="0a4f113b",
    )  # fmt: skip
    return (
        f'{header}: Digest username="{user}", realm="{REALM}", nonce="{nonce[1].decode()}", uri="{uri}", '
        f'response="{digest}", algorithm=MD5, qop=auth, nc=00000001, cnonce="0a4f113b"'
    )


class Phones:
    """Both phones: what the exchange sends them is collected; they answer by feeding bytes to the stack."""

    def __init__(self, stack: SipStack) -> None:
        self.stack = stack
        self.sent: list[tuple[bytes, Peer]] = []
        self._waiting: tuple[Callable[[bytes, Peer], bool], asyncio.Future[bytes]] | None = None
        stack.transports.send_nowait = self._send  # type: ignore[method-assign]
        self.counter = 0
        self.loop = asyncio.get_running_loop()

    def _send(self, data: bytes, peer: Peer) -> None:
        self.sent.append((data, peer))
        waiting = self._waiting
        if waiting is not None and not waiting[1].done() and waiting[0](data, peer):
            waiting[1].set_result(data)

    async def expect(self, to: Peer, start: bytes) -> bytes:
        """The next message the exchange sends `to` that starts with `start` (already sent, or awaited)."""

        def matches(data: bytes, peer: Peer) -> bool:
            return peer.port == to.port and data.startswith(start)

        for index, (data, peer) in enumerate(self.sent):
            if matches(data, peer):
                del self.sent[index]
                return data
        future: asyncio.Future[bytes] = self.loop.create_future()
        self._waiting = (matches, future)
        guard = self.loop.call_later(10, future.cancel)  # never hang (no asyncio.timeout: its work is not the call's)
        try:
            data = await future
        finally:
            guard.cancel()
            self._waiting = None
        self.sent = [(d, p) for d, p in self.sent if d is not data]
        return data

    def next_id(self) -> str:
        self.counter += 1
        return f"{self.counter:08x}"

    async def register_callee(self, port: int) -> None:
        uri = f"sip:127.0.0.1:{port}"
        call_id, address = f"reg-{self.next_id()}", "<sip:u0001@127.0.0.1>"
        extra = ("Expires: 3600",)
        self.stack.receive(request("REGISTER", uri, call_id, 1, self.next_id(), address + ";tag=r1", address, CALLEE,
                                   *extra), CALLEE)  # fmt: skip
        challenge = await self.expect(CALLEE, b"SIP/2.0 401")
        auth = authorization("Authorization", "u0001", "REGISTER", uri, challenge)
        self.stack.receive(request("REGISTER", uri, call_id, 2, self.next_id(), address + ";tag=r1", address, CALLEE,
                                   *extra, auth), CALLEE)  # fmt: skip
        await self.expect(CALLEE, b"SIP/2.0 200")

    async def call(self, port: int, ended: asyncio.Queue[CallSummary]) -> None:
        receive = self.stack.receive
        uri = f"sip:2001@127.0.0.1:{port}"
        call_id = f"call-{self.next_id()}@127.0.0.1"
        from_, to = "<sip:u0000@hipper.test>;tag=caller1", "<sip:2001@hipper.test>"
        first = self.next_id()
        receive(request("INVITE", uri, call_id, 1, first, from_, to, CALLER, body=SDP_FOR % 47000), CALLER)
        challenge = await self.expect(CALLER, b"SIP/2.0 407")
        tag = re.search(rb"To: [^\r]*;tag=([^\r;]+)", challenge)
        assert tag is not None
        receive(request("ACK", uri, call_id, 1, first, from_, f"{to};tag={tag[1].decode()}", CALLER), CALLER)
        auth = authorization("Proxy-Authorization", "u0000", "INVITE", uri, challenge)
        receive(
            request("INVITE", uri, call_id, 2, self.next_id(), from_, to, CALLER, auth, body=SDP_FOR % 47000), CALLER
        )
        invite = parse_message(await self.expect(CALLEE, b"INVITE "))
        assert isinstance(invite, Request)
        callee_tag = f"callee{self.next_id()}"
        for status, body in ((180, b""), (200, SDP_FOR % 47100)):
            answer = Response.for_request(invite, status, to_tag=callee_tag, body=body)
            answer.headers.add("Contact", f"<sip:u0001@{CALLEE.host}:{CALLEE.port}>")
            if body:
                answer.headers.add("Content-Type", "application/sdp")
            receive(answer.serialize(), CALLEE)
        await self.expect(CALLEE, b"ACK ")
        ok = await self.expect(CALLER, b"SIP/2.0 200")
        our_tag = re.search(rb"To: [^\r]*;tag=([^\r;]+)", ok)
        assert our_tag is not None
        to_tagged = f"{to};tag={our_tag[1].decode()}"
        receive(request("ACK", uri, call_id, 2, self.next_id(), from_, to_tagged, CALLER), CALLER)
        receive(request("BYE", uri, call_id, 3, self.next_id(), from_, to_tagged, CALLER), CALLER)
        await self.expect(CALLER, b"SIP/2.0 200")
        bye = parse_message(await self.expect(CALLEE, b"BYE "))
        assert isinstance(bye, Request)
        receive(Response.for_request(bye, 200).serialize(), CALLEE)
        summary = await ended.get()
        assert summary.outcome == "answered", summary
        self.sent.clear()
        # Nothing here ends transactions (no timers run): let them go, as their timers would.
        transactions = self.stack.transactions
        transactions.server.clear()
        transactions.client.clear()
        transactions.awaiting_ack.clear()


async def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings(
            data_dir=Path(directory) / "data",
            database_url=f"sqlite+aiosqlite:///{directory}/hipper.db",
            sip_realm=REALM,
            sip_node="bench",
            sip_max_expires=3600,
            rtp_port_min=40000,
            rtp_port_max=46000,
            rtp_timeout_seconds=120.0,
            prompt_language="en",
        )
        # Logging as `hipper serve` configures it (JSON lines; the one INFO line per call), into /dev/null.
        log_stream = open(os.devnull, "w")  # noqa: SIM115, ASYNC230 (closed below; /dev/null never blocks)
        logs.configure("INFO", json=True, stream=log_stream)
        engine = db.create_engine(settings.resolved_database_url())
        await db.migrate(engine)
        sessions = db.session_factory(engine)
        async with sessions() as session:
            await add_bench_users(session, 2)
            await session.commit()
        stack = SipStack(create_sip_stack(settings, sessions).registrar, clock=Never())
        await stack.start("127.0.0.1", 0, tcp=False)
        b2bua = await start_call_processing(settings, stack, sessions)
        ended = b2bua.ended.watch()
        phones = Phones(stack)
        port = stack.port
        try:
            await phones.register_callee(port)
            for _ in range(args.warm):
                await phones.call(port, ended)
            if args.profile:
                profile = cProfile.Profile()
                profile.enable()
                for _ in range(args.calls):
                    await phones.call(port, ended)
                profile.disable()
                if args.dump:
                    profile.dump_stats(args.dump)
                stats = pstats.Stats(profile)
                stats.sort_stats(args.sort).print_stats(args.profile_lines)
                return {}
            best = float("inf")
            for _ in range(args.rounds):
                start = time.process_time()
                for _ in range(args.calls):
                    await phones.call(port, ended)
                best = min(best, (time.process_time() - start) / args.calls)
        finally:
            await b2bua.close()
            await stack.close()
            await engine.dispose()
            log_stream.close()
    return {"engine_cpu_us_per_call": round(best * 1e6, 1), "calls": args.calls, "rounds": args.rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm", type=int, default=50, help="calls before measuring (caches, first snapshots)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of `calls` calls instead")
    parser.add_argument("--sort", default="tottime", help="the profile's order (tottime, ncalls, cumulative)")
    parser.add_argument("--profile-lines", type=int, default=50)
    parser.add_argument("--dump", help="with --profile: also write the raw profile to this file")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop, as `hipper serve` does")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        result = uvloop.run(run(args))
    else:
        result = asyncio.run(run(args))
    if result:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
