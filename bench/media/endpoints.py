"""What one call asks of the media engine, in process: CPU per call of `MediaEngine` on the set-up/teardown path.

Usage: .venv/bin/python bench/media/endpoints.py [--calls 2000] [--rounds 5] [--rate 40] [--seconds 10]
       [--no-paced] [--no-uvloop] [--profile]

Each call does what engine/call.py, engine/fork.py and engine/leg.py ask for an answered call that sends no RTP
(`bench/sip/calls.py --parts setup`): the caller's endpoint from its INVITE's offer (`CreateEndpoint(remote_sdp,
signalling_host)`), the callee's endpoint with our offer (`CreateEndpoint(signalling_host)` as the fork does), the
callee's 200 (`SetRemoteSdp` with its answer), the bridge (`Connect`), our 200 to the caller (`StartSending`),
and at the end the call log's `stats` of both and `Release` of both. The steps are separate turns of the loop, as
in a real call (each yields once: a watcher added and removed in one turn would cost libuv no system call at all).

The engine's range is 1,000 pairs and the warm-up uses every one: from then on each pair drawn is one that an
earlier call released (when none has rested yet, the oldest resting one), as on a node that has run for
PORT_REST_SECONDS.

Two figures:

- **commands**: the calls back to back, CPU per call on this process's clock, best of `rounds` (the commands and
  the loop turns between them; the 20 ms ticker runs as it is due);
- **paced**: `--rate` calls per second for `--seconds` (each call ≈ 30 ms from INVITE to BYE, like the SIPp call),
  this process's CPU over the whole window divided by the calls — the ticker, timers and loop wake-ups included —,
  and the same window with no call (idle CPU per second); net = (paced − idle) per call.

Old and new compare as ratios in one window: copy this file into an exported tree (`git archive <commit> | tar -x
-C /tmp/base`) and run the two alternately with the same interpreter. On a shared machine the other processes move
a run's figure by ±15 %; `--against /tmp/base/src/hipper/media/engine.py` instead loads that engine module beside
this tree's (the rest of the package is this tree's: use it when only engine.py differs) and runs both in this
process, in turns of 100 calls each, so that the load falls on both alike: the figure is then the ratio.

The remote "phones" are sockets of this process that never send RTP (a closed port would answer RTCP with ICMP
errors).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import importlib.util
import os
import pstats
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any

import prometheus_client

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from hipper.media.engine import (
    Connect,
    CreateEndpoint,
    EndpointCreated,
    MediaEngine,
    Release,
    SetRemoteSdp,
    StartSending,
)

PHONE_HOST = "127.0.0.1"
PORTS = (56000, 58000)  # the engine's range: 1,000 pairs
PAIRS = (PORTS[1] - PORTS[0]) // 2
# The SIPp caller's offer and callee's answer (bench/sip/call_uac.xml, call_uas.xml), ports filled in.
OFFER = (
    "v=0\r\no=sipp 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
)
ANSWER = (
    "v=0\r\no=sipp 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)


def machine_busy_seconds() -> float:
    """CPU seconds all cores have been busy (/proc/stat), to tell how much others used meanwhile."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def phone_sockets() -> list[socket.socket]:
    """Two bound RTP/RTCP pairs standing for the caller's and the callee's phones (they only receive)."""
    sockets = []
    for _ in range(2):
        for _ in range(20):
            rtp, rtcp = (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
            )
            rtp.bind((PHONE_HOST, 0))
            try:
                rtcp.bind((PHONE_HOST, rtp.getsockname()[1] + 1))
            except OSError:
                rtp.close()
                rtcp.close()
                continue
            sockets += [rtp, rtcp]
            break
    return sockets


async def one_call(engine: MediaEngine, offer: str, answer: str, pause: Callable[[float], Coroutine[Any, Any, None]],
                   gaps: tuple[float, float, float]) -> None:  # fmt: skip
    caller = await engine.execute(CreateEndpoint(remote_sdp=offer, signalling_host=PHONE_HOST))
    assert isinstance(caller, EndpointCreated)
    await pause(gaps[0])  # routing; the fork rings the callee
    callee = await engine.execute(CreateEndpoint(signalling_host=PHONE_HOST))
    assert isinstance(callee, EndpointCreated)
    await pause(gaps[1])  # the callee answers
    await engine.execute(SetRemoteSdp(callee.endpoint_id, answer, signalling_host=PHONE_HOST))
    await engine.execute(Connect(caller.endpoint_id, callee.endpoint_id))
    await engine.execute(StartSending(caller.endpoint_id))
    await pause(gaps[2])  # the call, then the BYE
    engine.stats(caller.endpoint_id)
    engine.stats(callee.endpoint_id)
    await engine.execute(Release(caller.endpoint_id))
    await engine.execute(Release(callee.endpoint_id))
    await pause(0)


async def paced(engine: MediaEngine, offer: str, answer: str, rate: float, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    idle_start, idle_wall = time.process_time(), loop.time()
    await asyncio.sleep(seconds)
    idle = (time.process_time() - idle_start) / (loop.time() - idle_wall)
    tasks: set[asyncio.Task[None]] = set()
    count = int(rate * seconds)
    start, wall = time.process_time(), loop.time()
    for index in range(count):
        await asyncio.sleep(max(0.0, wall + index / rate - loop.time()))
        task = loop.create_task(one_call(engine, offer, answer, asyncio.sleep, (0.005, 0.01, 0.015)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.wait(set(tasks))
    cpu, elapsed = time.process_time() - start, loop.time() - wall
    print(
        f"paced: {cpu / count * 1e6:.1f} µs CPU per call at {rate}/s over {elapsed:.1f} s "
        f"(idle {idle * 100:.2f} % of a core; net of idle {(cpu - idle * elapsed) / count * 1e6:.1f} µs per call)"
    )


async def run(args: argparse.Namespace) -> None:
    phones = phone_sockets()
    offer = OFFER.format(port=phones[0].getsockname()[1])
    answer = ANSWER.format(port=phones[2].getsockname()[1])
    engine = MediaEngine(port_min=PORTS[0], port_max=PORTS[1], rtp_timeout_seconds=30.0)

    async def turn(_: float) -> None:
        await asyncio.sleep(0)

    busy_before, cpu_before, wall_before = machine_busy_seconds(), time.process_time(), time.perf_counter()
    async with engine:
        # Warm-up: caches, the allocator, and every pair of the range used once, so that from now on each pair
        # drawn is one an earlier call released — a node's steady state once it has run for PORT_REST_SECONDS.
        for _ in range(PAIRS // 2 + 200):
            await one_call(engine, offer, answer, turn, (0, 0, 0))
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(args.calls):
                await one_call(engine, offer, answer, turn, (0, 0, 0))
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return
        best = float("inf")
        for _ in range(args.rounds):
            start = time.process_time()
            for _ in range(args.calls):
                await one_call(engine, offer, answer, turn, (0, 0, 0))
            best = min(best, (time.process_time() - start) / args.calls)
        print(f"commands: {best * 1e6:.1f} µs CPU per call (best of {args.rounds} x {args.calls} calls)")
        if not args.no_paced:
            await paced(engine, offer, answer, args.rate, args.seconds)
    for sock in phones:
        sock.close()
    others = machine_busy_seconds() - busy_before - (time.process_time() - cpu_before)
    print(f"others used {100 * max(0.0, others) / (time.perf_counter() - wall_before):.0f} % of a core meanwhile")


def load_engine(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_other_engine", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    counter = prometheus_client.Counter
    # Its metrics are not registered (this tree's engine registered the same names).
    setattr(prometheus_client, "Counter", functools.partial(counter, registry=None))  # noqa: B010
    try:
        spec.loader.exec_module(module)
    finally:
        setattr(prometheus_client, "Counter", counter)  # noqa: B010
    return module


async def compare(args: argparse.Namespace) -> None:
    """This tree's engine against another engine.py, in one process, in turns (see the module's notes)."""
    other = load_engine(Path(args.against))
    phones = phone_sockets()
    offer = OFFER.format(port=phones[0].getsockname()[1])
    answer = ANSWER.format(port=phones[2].getsockname()[1])

    async def turn(_: float) -> None:
        await asyncio.sleep(0)

    async def calls(engine: Any, module: Any, count: int) -> None:
        for _ in range(count):
            caller = await engine.execute(module.CreateEndpoint(remote_sdp=offer, signalling_host=PHONE_HOST))
            await turn(0)
            callee = await engine.execute(module.CreateEndpoint(signalling_host=PHONE_HOST))
            await turn(0)
            await engine.execute(module.SetRemoteSdp(callee.endpoint_id, answer, signalling_host=PHONE_HOST))
            await engine.execute(module.Connect(caller.endpoint_id, callee.endpoint_id))
            await engine.execute(module.StartSending(caller.endpoint_id))
            await turn(0)
            engine.stats(caller.endpoint_id)
            engine.stats(callee.endpoint_id)
            await engine.execute(module.Release(caller.endpoint_id))
            await engine.execute(module.Release(callee.endpoint_id))
            await turn(0)

    import hipper.media.engine as this

    sides = [
        ("other", other, other.MediaEngine(port_min=PORTS[0], port_max=PORTS[1], rtp_timeout_seconds=30.0)),
        ("this", this, this.MediaEngine(port_min=PORTS[1], port_max=PORTS[1] + 2 * PAIRS, rtp_timeout_seconds=30.0)),
    ]
    for _, module, engine in sides:
        await engine.start()
        await calls(engine, module, PAIRS // 2 + 200)
    spent = {name: 0.0 for name, _, _ in sides}
    for _ in range(max(1, args.calls * args.rounds // 100)):
        for name, module, engine in sides:
            start = time.process_time()
            await calls(engine, module, 100)
            spent[name] += time.process_time() - start
    count = max(1, args.calls * args.rounds // 100) * 100
    print(
        f"{args.against}: {spent['other'] / count * 1e6:.1f} µs, this tree: {spent['this'] / count * 1e6:.1f} µs "
        f"CPU per call ({count} calls each, in turns of 100): ratio {spent['this'] / spent['other']:.3f}"
    )
    for _, _, engine in sides:
        await engine.stop()
    for sock in phones:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-paced", action="store_true", help="only the back-to-back figure")
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--profile", action="store_true", help="a cProfile of one round instead")
    parser.add_argument("--against", help="another engine.py to run in turns with this tree's (see above)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}")
    main_coroutine = compare(args) if args.against else run(args)
    if args.no_uvloop:
        asyncio.run(main_coroutine)
    else:
        import uvloop

        uvloop.run(main_coroutine)


if __name__ == "__main__":
    main()
