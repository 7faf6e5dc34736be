"""REGISTER throughput of the SIP stack + registrar, and the parser's per-message cost.

Usage: .venv/bin/python bench/sip/register.py [--rate 200] [--count 2000] [--postgres-url URL]

The stack runs in this process on uvloop with a SQLite database in a temporary directory (or the given
PostgreSQL URL); SIPp (the other core) registers one device again and again: REGISTER → 401 → REGISTER with
digest → 200, each a new Call-ID. Reported: completed registrations per second, failures, this process's CPU
time per registration (two requests, two responses, one database write) and device-credential queries made.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from hipper.config import Settings
from hipper.passwords import Hasher
from hipper.server import create_sip_stack
from hipper.sip.message import parse_message
from hipper.store import admin
from hipper.store.db import create_engine, migrate, session_factory
from hipper.store.models import SipDevice

SCENARIO = Path(__file__).parent / "register_once.xml"
SAMPLE = (
    b"REGISTER sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-1-0;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:alice@hipper.test>;tag=1SIPpTag1\r\nTo: <sip:alice@hipper.test>\r\n"
    b"Call-ID: 1-1@127.0.0.1\r\nCSeq: 2 REGISTER\r\nContact: <sip:alice@192.0.2.1:5061>\r\nExpires: 120\r\n"
    b'Authorization: Digest username="alice",realm="hipper.test",uri="sip:127.0.0.1:5060",nonce="abc",'
    b'response="0123456789abcdef0123456789abcdef",algorithm=MD5\r\nContent-Length: 0\r\n\r\n'
)


def parser_cost(rounds: int = 20000) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        message = parse_message(SAMPLE)
        message.validate()  # type: ignore[union-attr]
        message.serialize()
    return (time.perf_counter() - start) / rounds * 1e6


async def run(rate: int, count: int, database_url: str | None) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="hipper-sip-bench-"))
    try:
        url = database_url or f"sqlite+aiosqlite:///{workdir / 'hipper.db'}"
        settings = Settings(data_dir=workdir, database_url=url, sip_realm="hipper.test", sip_node="bench")
        engine = create_engine(url)
        await migrate(engine)
        sessions = session_factory(engine)
        async with sessions() as session:
            user = await admin.create_user(session, Hasher(1, 1024), username="alice", password="x" * 12)
            a1 = b"alice:hipper.test:bench-pass"
            session.add(
                SipDevice(
                    user_id=user.id,
                    auth_username="alice",
                    realm="hipper.test",
                    ha1_md5=hashlib.md5(a1).hexdigest(),
                    ha1_sha256=hashlib.sha256(a1).hexdigest(),
                    created_at=datetime.now(UTC),
                )
            )
            await session.commit()
        stack = create_sip_stack(settings, sessions)
        await stack.start("127.0.0.1", 0, tcp=False)
        cpu, wall = time.process_time(), time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            "sipp",
            f"127.0.0.1:{stack.port}",
            "-sf",
            str(SCENARIO),
            "-i",
            "127.0.0.1",
            "-p",
            "0",
            "-s",
            "alice",
            "-au",
            "alice",
            "-ap",
            "bench-pass",
            "-r",
            str(rate),
            "-m",
            str(count),
            "-nostdin",
            "-timeout",
            "120s",
            "-trace_stat",
            "-stf",
            str(workdir / "stat.csv"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=workdir,
        )
        code = await process.wait()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        lines = (workdir / "stat.csv").read_text().splitlines()
        header, last = lines[0].split(";"), lines[-1].split(";")
        stats = dict(zip(header, last, strict=False))
        ok, failed = int(stats["SuccessfulCall(C)"]), int(stats["FailedCall(C)"])
        directory = stack.registrar.devices  # type: ignore[union-attr]
        print(f"SIPp exit {code}: {ok} registrations ok, {failed} failed, in {wall:.1f} s at -r {rate}")
        print(f"  {ok / wall:.0f} registrations/s; stack CPU {cpu / max(ok, 1) * 1000:.2f} ms per registration")
        print(f"  device-credential queries: {directory.queries}; malformed: {stack.malformed}")
        await stack.close()
        await engine.dispose()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--postgres-url")
    args = parser.parse_args()
    print(f"parse + validate + serialise a REGISTER: {parser_cost():.1f} µs")
    import uvloop

    uvloop.run(run(args.rate, args.count, args.postgres_url))


if __name__ == "__main__":
    main()
