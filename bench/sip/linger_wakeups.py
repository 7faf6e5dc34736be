"""Loop wake-ups for the timers that end lingering transactions: exact deadlines against a grid of T1.

Usage: .venv/bin/python -m bench.sip.linger_wakeups [--calls 400] [--rate 40] [--loop uvloop|asyncio] [--rounds 3]

Each call arms what one call through the exchange leaves behind (`bench.sip.lingering`): Timers L and M together
(our 2xx and the callee's, the same moment), Timer J at the BYE a few milliseconds later, and Timer K (T4) for our
BYE, through `TransactionLayer.call_later` (exact, as before) or `TransactionLayer.call_at_least` (rounded up to
T1 = 0.5 s), on the real event loop at `--rate` calls a second. The 32 s and 5 s waits are shortened to 4 s and
0.6 s (what is counted depends on the grid and the call rate, not on the wait). Each timer records when it fired;
firings less than 1 ms apart are one wake-up. Printed per mode: wake-ups per call and the process's CPU for the
whole run (the loop's sleeps between calls included, the same in both modes), alternating modes for `--rounds`.
For the system calls themselves: `strace -f -c -e trace=epoll_wait,epoll_pwait` around one mode.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from hipper.sip.transaction import TimerConfig, TransactionLayer

WAIT, SHORT_WAIT = 4.0, 0.6  # stand-ins for 64·T1 (Timers J, L, M) and T4 (Timer K)


async def run(mode: str, calls: int, rate: float) -> dict[str, Any]:
    layer = TransactionLayer(cast(Any, None), cast(Any, None), TimerConfig())
    arm = layer.call_later if mode == "exact" else layer.call_at_least
    fired: list[float] = []
    all_fired = asyncio.Event()

    def fire() -> None:
        fired.append(time.monotonic())
        if len(fired) == 4 * calls:
            all_fired.set()

    started = time.process_time()
    for _ in range(calls):
        arm(WAIT, fire)  # Timer L (our 2xx) …
        arm(WAIT, fire)  # … and Timer M (the callee's 2xx), in the same turn of the loop
        await asyncio.sleep(0.003)
        arm(WAIT, fire)  # Timer J (the caller's BYE)
        arm(SHORT_WAIT, fire)  # Timer K (our BYE to the callee)
        await asyncio.sleep(1 / rate)
    await all_fired.wait()
    cpu = time.process_time() - started
    wakeups = 1 + sum(1 for before, after in itertools.pairwise(fired) if after - before > 0.001)
    return {"mode": mode, "wakeups_per_call": round(wakeups / calls, 3), "cpu_ms": round(cpu * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=("exact", "grid", "both"), default="both")
    args = parser.parse_args()
    modes = ("exact", "grid") if args.mode == "both" else (args.mode,)
    for _ in range(args.rounds):
        for mode in modes:
            if args.loop == "uvloop":
                import uvloop

                result = uvloop.run(run(mode, args.calls, args.rate))
            else:
                result = asyncio.run(run(mode, args.calls, args.rate))
            print(json.dumps({"loop": args.loop, **result}))


if __name__ == "__main__":
    main()
