"""CPU of what calls write (store/writer.py), in process: no SIP, no sockets, no call engine.

Usage: .venv/bin/python -m bench.sip.writer [--calls 400] [--rate 40] [--rounds 3]
Against another checkout: PYTHONPATH=<its src> .venv/bin/python bench/sip/writer.py (the `hipper` imports come
from PYTHONPATH).

Each call hands the batch writer what a real call hands it, at the moments it does: its `call.started` event
(`submit`), 10 ms later who is on it (`CallJoined`), 10 ms later that it ended (`CallLeft`) and its call-log row
with its `call.ended` event (`write`, awaited as the call's teardown does). Calls start at `--rate` per second
on a SQLite file in a temporary directory. The figure is the process's CPU per call (the loop and the SQLite
connection's worker thread together, `time.process_time`), best of `--rounds`, and the writer's transactions
per call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import uvloop

import hipper
from hipper.passwords import Hasher
from hipper.store import admin
from hipper.store.active_calls import CallJoined, CallLeft
from hipper.store.call_logs import CallRecord
from hipper.store.db import create_engine, migrate, session_factory
from hipper.store.writer import BatchWriter, OutboxEvent


async def measure(calls: int, rate: float, rounds: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as directory:
        engine = create_engine(f"sqlite+aiosqlite:///{directory}/hipper.db")
        await migrate(engine)
        sessions = session_factory(engine)
        async with sessions() as session:
            company = await admin.create_company(session, "Acme", "+31201234000")
            user = await admin.create_user(
                session, Hasher(1, 1024), username="bench", password="correct horse 1", company=company,
                extension="200",
            )  # fmt: skip
            await session.commit()
            user_id = user.id
        writer = BatchWriter(sessions)
        writer.start()

        async def call(n: int) -> None:
            now = datetime.now(UTC)
            writer.submit([OutboxEvent(user_id, "call.started", {"id": str(n)})])
            await asyncio.sleep(0.01)
            joined = CallJoined(uuid.uuid4().hex, user_id, f"call-{n}", "node", now)
            writer.submit([joined])
            await asyncio.sleep(0.01)
            writer.submit([CallLeft(joined.id)])
            record = CallRecord(
                user_id, "received", now, call_id=f"call-{n}", remote_number="+31201234567", outcome="answered",
                ended_at=datetime.now(UTC), events=(("call.ended", {"id": str(n)}),),
            )  # fmt: skip
            await writer.write([record])

        for n in range(50):  # warm: statements compiled, connections open
            await call(n)
        best_cpu, transactions = float("inf"), 0.0
        for _ in range(rounds):
            cpu, before = time.process_time(), writer.transactions
            tasks = []
            for n in range(calls):
                tasks.append(asyncio.create_task(call(n)))
                await asyncio.sleep(1 / rate)
            await asyncio.gather(*tasks)
            spent = (time.process_time() - cpu) / calls * 1000
            if spent < best_cpu:
                best_cpu, transactions = spent, (writer.transactions - before) / calls
        await writer.close()
        await engine.dispose()
    return {
        "hipper": str(Path(hipper.__file__).parents[1]),
        "calls": calls,
        "rate": rate,
        "cpu_ms_per_call": round(best_cpu, 3),
        "transactions_per_call": round(transactions, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(uvloop.run(measure(args.calls, args.rate, args.rounds))))


if __name__ == "__main__":
    main()
