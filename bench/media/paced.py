"""CPU cost and pacing accuracy of paced sources: N endpoints each playing a looped prompt (ringback-like).

Usage: .venv/bin/python bench/media/paced.py [--endpoints 200] [--seconds 5] [--no-uvloop]

Every endpoint sends 50 packets/s encoded per 20 ms frame from linear audio, to one sink socket in this process
that drains what it can. Reported: packets sent per second, engine process CPU, packets per CPU-second, and the
lateness of the 20 ms ticker (how far after its deadline each tick ran).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from hipper.media import tones
from hipper.media.engine import CreateEndpoint, EndpointCreated, MediaEngine, PlayPcm, StartSending
from hipper.media.sdp import build_offer


async def measure(endpoints: int, seconds: float) -> dict[str, float]:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setblocking(False)
    sink_port = sink.getsockname()[1]
    loop = asyncio.get_running_loop()
    received = 0

    def drain() -> None:
        nonlocal received
        try:
            while True:
                sink.recv(2048)
                received += 1
        except BlockingIOError:
            pass

    loop.add_reader(sink.fileno(), drain)
    engine = MediaEngine(port_min=54000, port_max=58000, rtp_timeout_seconds=3600)
    lateness: list[float] = []
    async with engine:
        original_tick = engine._tick  # measurement hook only: wrap the ticker to record its lateness

        def timed_tick() -> None:
            lateness.append(loop.time() - engine._deadline)
            original_tick()

        engine._tick = timed_tick  # type: ignore[method-assign]
        ringback = tones.ringback()
        ids = []
        for _ in range(endpoints):
            reply = await engine.execute(CreateEndpoint(build_offer("127.0.0.1", sink_port, ("PCMA",)).serialize()))
            assert isinstance(reply, EndpointCreated)
            await engine.execute(StartSending(reply.endpoint_id))  # our answer went out
            ids.append(reply.endpoint_id)
        for endpoint_id in ids:
            await engine.execute(PlayPcm(endpoint_id, ringback, loop=True))
        sent_before = sum(engine.stats(i)["packets_sent"] for i in ids)
        lateness.clear()
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu_start, time.perf_counter() - wall_start
        sent = sum(engine.stats(i)["packets_sent"] for i in ids) - sent_before
    loop.remove_reader(sink.fileno())
    sink.close()
    ordered = sorted(lateness)
    return {
        "packets_per_second": sent / wall,
        "expected_per_second": endpoints * 50,
        "process_cpu_percent": 100 * cpu / wall,
        "packets_per_cpu_second": sent / max(cpu, 1e-9),
        "tick_lateness_p50_ms": 1000 * ordered[len(ordered) // 2],
        "tick_lateness_p99_ms": 1000 * ordered[int(len(ordered) * 0.99)],
        "tick_lateness_max_ms": 1000 * ordered[-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    runner = asyncio.run
    loop_name = "asyncio"
    if not args.no_uvloop:
        try:
            import uvloop

            runner = uvloop.run
            loop_name = "uvloop"
        except ImportError:
            pass
    figures = runner(measure(args.endpoints, args.seconds))
    print(f"loop={loop_name} endpoints={args.endpoints} (looped ringback, PCMA)")
    for name, value in figures.items():
        print(f"  {name:24} {value:,.1f}")


if __name__ == "__main__":
    main()
