"""The database work of a call, one part at a time, in process, for instruction counts (no SIP, no timers).

Usage: .venv/bin/python -m bench.sip.store_parts PART N [--no-presence]
Against another checkout: PYTHONPATH=<its src> .venv/bin/python bench/sip/store_parts.py PART N (the `hipper`
imports come first, from PYTHONPATH; `bench.sip.calls`, imported after them for its user set-up, would put this
checkout's `src` first on `sys.path` for anything imported later).

Parts (each repeated N times after a warm-up, on a SQLite file in a temporary directory, 50 users each with one
registered device):
- `call`: what a later call to a user asks of the snapshot cache (`resolve` + `state`: the outbox look and the
  user's bindings; both cached);
- `catch_up`: one outbox look with nothing new;
- `reachable`: the bindings read alone;
- `write`: one batch writer transaction with two calls' items, as at 40 calls/s with a 50 ms window (each call:
  its `call.started` event, who is on it and that they left, its call-log row with a routing plan and its
  `call.ended` event), written the way the batch task writes it (`_commit(..., hold=True)`);
- `document`: a user's first call's recording mode at answer (`SnapshotCache.document`, nothing cached), after
  the call's `resolve` and `state`.

Instructions per unit, deterministic and load-independent (docs/performance.md "The SIP layer, instruction by
instruction"):
    for n in 100 300; do PYTHONHASHSEED=0 valgrind --tool=cachegrind --cache-sim=no \
        --cachegrind-out-file=/dev/null .venv/bin/python -m bench.sip.store_parts call $n 2>&1 | grep 'I *refs'; done
and (count(300) − count(100)) / 200. Without valgrind it prints the process CPU per unit (noisy).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from hipper.domain.routing import IncomingCall, plan_incoming
from hipper.domain.services import CallRecording
from hipper.engine.snapshots import SnapshotCache
from hipper.store import db
from hipper.store.active_calls import CallJoined, CallLeft
from hipper.store.call_logs import CallRecord
from hipper.store.models import Registration, SipDevice
from hipper.store.user_state import reachable
from hipper.store.writer import BatchWriter, OutboxEvent

sys.path.append(str(Path(__file__).resolve().parents[2]))  # after hipper: see the module docstring
from bench.sip.calls import add_bench_users

USERS = 50


async def run(part: str, count: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        engine = db.create_engine(f"sqlite+aiosqlite:///{directory}/hipper.db")
        await db.migrate(engine)
        sessions = db.session_factory(engine)
        now = datetime.now(UTC)
        async with sessions() as session:
            _, numbers = await add_bench_users(session, USERS)
            await session.flush()
            for device_id, user_id in (await session.execute(select(SipDevice.id, SipDevice.user_id))).all():
                session.add(
                    Registration(
                        device_id=device_id, user_id=user_id, contact=f"<sip:u{device_id}@192.0.2.7:5060>",
                        source="udp:192.0.2.7:5060", call_id=uuid.uuid4().hex, cseq=1, user_agent="bench",
                        node="bench", expires_at=now + timedelta(hours=1),
                    )
                )  # fmt: skip
            await session.commit()
        cache = SnapshotCache(sessions)
        writer = BatchWriter(sessions)
        resolved = [await cache.resolve(number, None, "NL") for number in numbers]
        user_ids = [r.callee.user_id for r in resolved if r.callee is not None]
        state = await cache.state(user_ids[0], now)
        assert state is not None
        plan = plan_incoming(IncomingCall("+31201234567", "fixed"), state, now).model_dump(mode="json")

        def items(n: int) -> list[object]:
            user_id = user_ids[n % len(user_ids)]
            joined = CallJoined(uuid.uuid4().hex, user_id, f"call-{n}", "bench", now)
            record = CallRecord(
                user_id, "received", now, call_id=f"call-{n}", remote_number="+31201234567", outcome="answered",
                answered_at=now, ended_at=datetime.now(UTC), plan=plan, events=(("call.ended", {"id": str(n)}),),
            )  # fmt: skip
            if "--no-presence" in sys.argv:  # calls that are nobody's presence (`write` without active_calls rows)
                return [OutboxEvent(user_id, "call.started", {"id": str(n)}), record]
            return [OutboxEvent(user_id, "call.started", {"id": str(n)}), joined, CallLeft(joined.id), record]

        async def one(n: int) -> None:
            if part == "call":
                r = await cache.resolve(numbers[n % len(numbers)], None, "NL")
                assert r.callee is not None
                await cache.state(r.callee.user_id, now)
            elif part == "catch_up":
                async with cache.reads.connect() as reads:
                    await cache._catch_up(reads)
            elif part == "reachable":
                async with cache.reads.connect() as reads:
                    await reachable(reads, user_ids[n % len(user_ids)], now, "bench")
            elif part == "write":
                await writer._commit([*items(2 * n), *items(2 * n + 1)], hold=True)  # type: ignore[list-item]
            elif part == "document":
                cache.clear()
                r = await cache.resolve(numbers[n % len(numbers)], None, "NL")
                assert r.callee is not None
                await cache.state(r.callee.user_id, now)
                await cache.document(r.callee.user_id, CallRecording)
            else:
                raise SystemExit(f"unknown part {part}")

        for n in range(50):  # warm: statements compiled, connections open, caches filled
            await one(n)
        start = time.process_time()
        for n in range(count):
            await one(n)
        spent = (time.process_time() - start) / count * 1e6
        await writer._release_held()
        cache.close()
        await engine.dispose()
    return spent


def main() -> None:
    part, count = sys.argv[1], int(sys.argv[2])
    print(f"{part}: {asyncio.run(run(part, count)):.1f} µs per unit (process CPU)")


if __name__ == "__main__":
    main()
