"""What an ended call's SIP transactions keep alive while their absorb timers run (RFC 3261 Timers D, I, J, K, L, M).

Usage: .venv/bin/python -m bench.sip.lingering [--calls 1000] [--collect-every 0] [--types 0] [--gap-ms 5] [--rate 40]

Drives `bench/sip/stack.py`'s call (an authenticated INVITE forked to one callee, 180, 200, ACKs, BYE both ways)
through a real `SipStack`, but unlike that benchmark it leaves every transaction where its timers put it: the
layer's tables keep them and a clock holds every armed timer's callback, as the event loop would, without ever
firing one (the calls of the last 32 s at any call rate). Then it counts the objects the garbage collector tracks
per call (`gc.get_objects()` after a full collection, before and after the calls), and how many of the armed
timers always fire (never cancelled: each a loop wake-up, unless it shares one), with their virtual deadlines at
`--rate` calls a second (a call's messages `--gap-ms` apart), and how many distinct wake-ups those make
(deadlines within 1 ms are one).

`--collect-every N` runs `gc.collect(1)` (a middle collection) every N calls, as the collector would; with the
collector's production thresholds (5,000, 10, 10; `server.tune_collector`) and the start-up heap frozen. For
instructions per call (deterministic, load-independent), run it under valgrind at two sizes and take the difference:

    PYTHONHASHSEED=0 valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
        .venv/bin/python -m bench.sip.lingering --calls 300 --collect-every 100

`--time-collect` keeps the collector off during the calls and then times one `gc.collect(1)`: what walking the
kept objects of `--calls` calls costs (1,280 calls: 32 s at 40 calls/s).
`--steady` lets the timers fire as the virtual time passes them (the loop would): after a warm-up of 34 s of calls
the last 32 s of calls linger and older ones go; it reports the collector's CPU per call (`gc.callbacks`) and the
process's, with production thresholds. The exchange allocates far more per call than this benchmark, so its
collector runs far more often: `--young-every 18 --collect-every 200` gives the 65 young and 6 middle collections
per 1,200 calls measured end to end at 40 calls/s (docs/performance.md).
`--types K` prints the K commonest types among the objects kept.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import heapq
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from bench.sip.stack import Bench


class Held:
    """A timer the clock holds (its callback stays alive, as an event loop's handle keeps it) until cancelled."""

    __slots__ = ("callback", "cancelled", "clock", "when")

    def __init__(self, clock: HoldingClock, when: float, callback: Callable[[], None]) -> None:
        self.clock = clock
        self.when = when
        self.callback: Callable[[], None] | None = callback
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.callback = None
            self.clock.live.discard(self)


class HoldingClock:
    """The transactions' clock: virtual time moved by the benchmark, timers armed and held, none fired."""

    def __init__(self) -> None:
        self.now = 0.0
        self.live: set[Held] = set()
        self.armed = 0
        self._due: list[tuple[float, int, Held]] = []

    def fire_due(self) -> None:
        """What the loop would have run by now (`--steady`): every live timer whose deadline has passed."""
        while self._due and self._due[0][0] <= self.now:
            held = heapq.heappop(self._due)[2]
            callback = held.callback
            if callback is not None:
                held.cancel()
                callback()

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Held:
        return self.call_at(self.now + delay, callback)

    def call_at(self, when: float, callback: Callable[[], None]) -> Held:
        held = Held(self, when, callback)
        self.live.add(held)
        self.armed += 1
        heapq.heappush(self._due, (when, self.armed, held))
        return held


class KeepAll(dict[Any, Any]):
    """A transaction table `Bench.call` cannot clear: what its timers would keep, stays."""

    def clear(self) -> None:
        pass


async def steady(args: argparse.Namespace) -> dict[str, Any]:
    """At a steady call rate the timers do fire: the calls of the last 32 s linger, older ones go. The collector's
    CPU (`gc.callbacks`, by generation) and the process's per call, with production thresholds, after a warm-up
    long enough to fill the lingering population."""
    bench = Bench(edge=False)
    clock = HoldingClock()
    layer = bench.stack.transactions
    await bench.start()
    for _ in range(50):
        await bench.call()
    layer.clock = clock
    layer.server, layer.client, layer.awaiting_ack = KeepAll(), KeepAll(), KeepAll()
    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 10, 10)
    spent_gc = [0.0, 0.0, 0.0]
    counts = [0, 0, 0]
    started_gc = [0.0]

    def watch(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started_gc[0] = time.process_time()
        else:
            spent_gc[info["generation"]] += time.process_time() - started_gc[0]
            counts[info["generation"]] += 1

    warm = int(args.rate * 34)
    number = 0
    for number in range(warm):
        clock.now = number / args.rate
        clock.fire_due()
        await bench.call()
    gc.callbacks.append(watch)
    started = time.process_time()
    for number in range(warm, warm + args.calls):
        clock.now = number / args.rate
        clock.fire_due()
        await bench.call()
        if args.collect_every and number % args.collect_every == 0:
            gc.collect(1)
        elif args.young_every and number % args.young_every == 0:
            gc.collect(0)
    spent = time.process_time() - started
    gc.callbacks.remove(watch)
    lingering = len(layer.server) + len(layer.client)
    gc.unfreeze()
    await bench.stack.close()
    return {
        "calls": args.calls,
        "steady": True,
        "lingering_transactions": lingering,
        "cpu_us_per_call": round(spent / args.calls * 1e6, 1),
        "gc_us_per_call": round(sum(spent_gc) / args.calls * 1e6, 1),
        "collections": counts,
        "gc_ms_by_generation": [round(value * 1000, 1) for value in spent_gc],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.steady:
        return await steady(args)
    bench = Bench(edge=False)
    clock = HoldingClock()
    layer = bench.stack.transactions
    await bench.start()
    for _ in range(50):
        await bench.call()  # warm the caches (Never's clock: nothing kept)
    layer.clock = clock
    receive = bench.stack.receive

    def arrive(data: bytes, peer: Any) -> None:
        clock.now += args.gap_ms / 1000  # the call's messages come some milliseconds apart
        receive(data, peer)

    bench.stack.receive = arrive  # type: ignore[method-assign]
    layer.server, layer.client, layer.awaiting_ack = KeepAll(), KeepAll(), KeepAll()
    gc.collect()
    gc.freeze()
    gc.set_threshold(5000, 10, 10)
    before = len(gc.get_objects())
    types_before = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
    if args.time_collect:
        gc.disable()  # every survivor stays young: one timed middle collection walks them all
    started = time.process_time()
    for number in range(args.calls):
        clock.now = max(clock.now, number / args.rate)
        await bench.call()
        if args.collect_every and (number + 1) % args.collect_every == 0:
            gc.collect(1)
    spent = time.process_time() - started
    collect_ms = 0.0
    if args.time_collect:
        started = time.perf_counter()
        gc.collect(1)
        collect_ms = (time.perf_counter() - started) * 1000
        gc.enable()
    gc.collect()
    after = len(gc.get_objects())
    result: dict[str, Any] = {
        "calls": args.calls,
        "cpu_us_per_call": round(spent / args.calls * 1e6, 1),
        "tracked_objects_per_call": round((after - before) / args.calls, 2),
        "transactions_per_call": round((len(layer.server) + len(layer.client)) / args.calls, 2),
        "timers_armed_per_call": round(clock.armed / args.calls, 2),
        "timers_left_per_call": round(len(clock.live) / args.calls, 2),
        "wakeups_per_call": round(len({math.ceil(held.when * 1000) for held in clock.live}) / args.calls, 3),
    }
    if args.time_collect:
        result["middle_collection_ms"] = round(collect_ms, 2)
        result["middle_collection_us_per_call"] = round(collect_ms * 1000 / args.calls, 2)
    if args.types:
        kept = collections.Counter(type(o).__qualname__ for o in gc.get_objects()) - types_before
        result["kept_types_per_call"] = {
            name: round(count / args.calls, 2) for name, count in kept.most_common(args.types)
        }
    gc.unfreeze()
    await bench.stack.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=40.0, help="calls a second (virtual: for the deadlines)")
    parser.add_argument("--gap-ms", type=float, default=5.0, help="virtual time between a call's messages")
    parser.add_argument("--collect-every", type=int, default=0, help="gc.collect(1) every N calls")
    parser.add_argument(
        "--time-collect", action="store_true", help="collector off during the calls, then time one gc.collect(1)"
    )
    parser.add_argument("--young-every", type=int, default=0, help="gc.collect(0) every N calls (--steady)")
    parser.add_argument("--steady", action="store_true", help="timers fire: the collector's CPU at a steady rate")
    parser.add_argument("--types", type=int, default=0, help="show the K commonest types kept")
    result = asyncio.run(run(parser.parse_args()))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
