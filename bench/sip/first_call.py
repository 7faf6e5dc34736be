"""CPU of the snapshot work of a user's first call and of a later one, in process (no SIP, no sockets).

Usage: .venv/bin/python -m bench.sip.first_call [--users 300] [--rounds 3]
Against another checkout: PYTHONPATH=<its src> .venv/bin/python <this file> (the `hipper` imports below come
first, from PYTHONPATH; `bench.sip.calls`, imported after them for its user set-up, would put this checkout's
`src` first on `sys.path` for anything imported later).

One "call" is what `engine/snapshots.py` does for a call to a user's direct number: `resolve` (who the number is)
and `state` (the user's routing snapshot). First calls find nothing cached (a new `SnapshotCache` per round);
later calls find both cached. SQLite in a temporary directory; best round on the process's CPU clock.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from hipper.engine.snapshots import SnapshotCache
from hipper.store import db

sys.path.append(str(Path(__file__).resolve().parents[2]))  # after hipper: see the module docstring
from bench.sip.calls import add_bench_users


async def measure(users: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        engine = db.create_engine(f"sqlite+aiosqlite:///{directory}/hipper.db")
        await db.migrate(engine)
        sessions = db.session_factory(engine)
        async with sessions() as session:
            _, numbers = await add_bench_users(session, users)
            await session.commit()
        first = later = float("inf")
        for _ in range(rounds):
            cache = SnapshotCache(sessions)
            await cache.resolve(numbers[0], None, "NL")  # the first look at the outbox, as after a start
            cache.clear()
            now = datetime.now(UTC)
            for pass_ in ("first", "later"):
                start = time.process_time()
                for number in numbers:
                    resolved = await cache.resolve(number, None, "NL")
                    assert resolved.callee is not None
                    await cache.state(resolved.callee.user_id, now)
                spent = (time.process_time() - start) / len(numbers) * 1000
                if pass_ == "first":
                    first = min(first, spent)
                else:
                    later = min(later, spent)
            cache.close()
        await engine.dispose()
    return {"first_call_ms": round(first, 3), "later_call_ms": round(later, 3), "users": users}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps({"hipper": str(Path(db.__file__).parents[2]), **uvloop.run(measure(args.users, args.rounds))}))


if __name__ == "__main__":
    main()
